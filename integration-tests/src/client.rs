//! Exporting over Arrow Flight and following runs, as a client of filedrop would.

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightDescriptor};
use filedrop_proto::v1::credential_service_client::CredentialServiceClient;
use filedrop_proto::v1::run_service_client::RunServiceClient;
use filedrop_proto::v1::{
    AccessKeyCredential, CsvOptions, ExportAccepted, ExportRequest, FileFormat, GetRunRequest, Run,
    RunState, S3Destination, Split, SuccessFile, SuccessFileName, WatchRunRequest,
};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use std::time::Duration;
use tonic::transport::Channel;

/// An export request to a bucket on `endpoint` with the given key.
pub fn request(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    access_key_id: &str,
    secret_access_key: &str,
    format: FileFormat,
) -> ExportRequest {
    let extension = match format {
        FileFormat::Csv => "csv",
        FileFormat::Tsv => "tsv",
        FileFormat::Psv => "psv",
        FileFormat::Delimited => "txt",
        FileFormat::Json => "json",
        FileFormat::Ndjson => "ndjson",
        _ => "parquet",
    };
    let delimited = matches!(
        format,
        FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv | FileFormat::Delimited
    );
    ExportRequest {
        destination: Some(S3Destination {
            endpoint_url: endpoint.to_owned(),
            region: "us-east-1".to_owned(),
            force_path_style: true,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            access_key: Some(AccessKeyCredential {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.to_owned(),
                session_token: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        format: format.into(),
        csv: delimited.then(|| CsvOptions {
            header: true,
            delimiter: if format == FileFormat::Delimited {
                ";".to_owned()
            } else {
                String::new()
            },
            ..Default::default()
        }),
        parquet: None,
        // Parquet goes to a directory of numbered parts, which the template names.
        filename_template: if format == FileFormat::Parquet {
            "sample-{{now|format:'yyyy-MM-dd'}}-{{run_id}}".to_owned()
        } else {
            format!(
                "sample-{{{{now|format:'yyyy-MM-dd'}}}}-{{{{run_id}}}}-{{{{file_number}}}}.\
                 {extension}"
            )
        },
        split: None,
        success_file: Some(SuccessFile {
            enabled: true,
            name: SuccessFileName::DoneSuffix.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A request to `bucket` on the test's moto server, with its IAM user's key.
pub fn request_to(
    moto: &crate::services::Moto,
    bucket: &str,
    prefix: &str,
    format: FileFormat,
) -> ExportRequest {
    request(
        &moto.endpoint,
        bucket,
        prefix,
        &moto.access_key_id,
        &moto.secret_access_key,
        format,
    )
}

/// The same request, split every `rows` rows.
pub fn split(mut request: ExportRequest, rows: u64) -> ExportRequest {
    request.split = Some(Split {
        rows_per_file: rows,
        ..Default::default()
    });
    request
}

/// Where the control plane listens, and the API token calls carry (never printed).
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:<port>`, or `https://…` with [`Api::with_ca`].
    pub url: String,
    token: String,
    /// The CA that signed the control plane's certificate (PEM), for `https://` URLs.
    ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("url", &self.url)
            .field("token", &"<set>")
            .finish()
    }
}

impl Api {
    /// The control plane at `url`, called with `token`.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            ca: None,
        }
    }

    /// The same control plane, called with another token (another tenant's, or a wrong one).
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// The same API over TLS, trusting the CA in `ca_pem`.
    pub fn with_ca(&self, ca_pem: Vec<u8>) -> Self {
        Self {
            ca: Some(ca_pem),
            ..self.clone()
        }
    }

    /// A connection to the control plane (TLS when a CA is given).
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        let mut endpoint = Channel::from_shared(self.url.clone()).expect("a valid URL");
        if let Some(ca) = &self.ca {
            endpoint = endpoint.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            )?;
        }
        endpoint.connect().await
    }

    fn bearer(&self) -> Bearer {
        Bearer(
            format!("Bearer {}", self.token)
                .parse()
                .expect("a token is ASCII"),
        )
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authorized = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

async fn channel(api: &Api) -> Authorized {
    let channel = api
        .connect()
        .await
        .expect("connecting to the control plane");
    tonic::service::interceptor::InterceptedService::new(channel, api.bearer())
}

/// Streams `batches` to the control plane as one export, and commits it. Batches are pulled
/// as the stream goes, so a lazy iterator sends any amount of data in bounded memory.
pub async fn export(
    api: &Api,
    request: &ExportRequest,
    batches: impl IntoIterator<Item = RecordBatch, IntoIter: Send + 'static>,
) -> Result<ExportAccepted, tonic::Status> {
    export_with_schema(api, request, None, batches).await
}

/// [`export`], sending `schema` first even when there are no batches (an empty result).
pub async fn export_with_schema(
    api: &Api,
    request: &ExportRequest,
    schema: Option<arrow_schema::SchemaRef>,
    batches: impl IntoIterator<Item = RecordBatch, IntoIter: Send + 'static>,
) -> Result<ExportAccepted, tonic::Status> {
    export_stream(
        api,
        request,
        schema,
        futures::stream::iter(batches.into_iter().map(Ok)),
    )
    .await
}

/// [`export`] of batches as a stream produces them (a slow source, one that fails midway).
pub async fn export_stream(
    api: &Api,
    request: &ExportRequest,
    schema: Option<arrow_schema::SchemaRef>,
    batches: impl futures::Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Result<ExportAccepted, tonic::Status> {
    let channel = api
        .connect()
        .await
        .expect("connecting to the control plane");
    let mut client = FlightClient::new(channel);
    client
        .add_header("authorization", &format!("Bearer {}", api.token))
        .expect("a token is ASCII");
    let descriptor = FlightDescriptor::new_cmd(request.encode_to_vec());
    let mut builder = FlightDataEncoderBuilder::new().with_flight_descriptor(Some(descriptor));
    if let Some(schema) = schema {
        builder = builder.with_schema(schema);
    }
    let stream = filedrop_client::committed(builder.build(batches));
    let results: Vec<_> = client
        .do_put(stream)
        .await
        .map_err(status)?
        .try_collect()
        .await
        .map_err(status)?;
    let result = results.last().expect("DoPut answers with a PutResult");
    Ok(ExportAccepted::decode(result.app_metadata.as_ref()).expect("ExportAccepted metadata"))
}

/// The messages of a committed export of `batches` for `request`: the descriptor with the
/// schema, the record batches, the commit (for tests that change them before sending).
pub async fn flight_messages(
    request: &ExportRequest,
    batches: impl IntoIterator<Item = RecordBatch, IntoIter: Send + 'static>,
) -> Vec<arrow_flight::FlightData> {
    let descriptor = FlightDescriptor::new_cmd(request.encode_to_vec());
    filedrop_client::committed(
        FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(futures::stream::iter(batches.into_iter().map(Ok))),
    )
    .try_collect()
    .await
    .expect("encoding the stream")
}

/// Sends `messages` as they are as one `DoPut` (a client that encodes its own stream, or a
/// broken one); answers with the `PutResult`s, or the status the control plane refused with.
pub async fn do_put_messages(
    api: &Api,
    messages: Vec<arrow_flight::FlightData>,
) -> Result<Vec<arrow_flight::PutResult>, tonic::Status> {
    let channel = api
        .connect()
        .await
        .expect("connecting to the control plane");
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let mut request = tonic::Request::new(futures::stream::iter(messages));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", api.token)
            .parse()
            .expect("a token is ASCII"),
    );
    client
        .do_put(request)
        .await?
        .into_inner()
        .try_collect()
        .await
}

/// What a Flight SQL bulk ingest answered: the run it started (the `x-filedrop-run-id`
/// response header) and the rows it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The run.
    pub run_id: String,
    /// `DoPutUpdateResult.record_count`.
    pub record_count: i64,
}

/// Sends `batches` as a Flight SQL bulk ingest (`CommandStatementIngest` through `DoPut`), as
/// ADBC's Flight SQL driver does.
pub async fn sql_ingest(
    api: &Api,
    command: &arrow_flight::sql::CommandStatementIngest,
    batches: impl IntoIterator<Item = RecordBatch, IntoIter: Send + 'static>,
) -> Result<Ingested, tonic::Status> {
    use arrow_flight::sql::{DoPutUpdateResult, ProstMessageExt};
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map(|data| data.expect("encoding a batch"));
    let mut client =
        arrow_flight::flight_service_client::FlightServiceClient::new(channel(api).await);
    let response = client.do_put(data).await?;
    let run_id = response
        .metadata()
        .get("x-filedrop-run-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let results: Vec<_> = response.into_inner().try_collect().await?;
    let result = results.last().expect("DoPut answers with a PutResult");
    let counted = DoPutUpdateResult::decode(result.app_metadata.as_ref())
        .expect("DoPutUpdateResult metadata");
    Ok(Ingested {
        run_id,
        record_count: counted.record_count,
    })
}

/// Calls the Flight action `action` with `body`; answers the bodies of its results.
pub async fn flight_action(
    api: &Api,
    action: &str,
    body: Vec<u8>,
) -> Result<Vec<bytes::Bytes>, tonic::Status> {
    let mut client =
        arrow_flight::flight_service_client::FlightServiceClient::new(channel(api).await);
    let results: Vec<_> = client
        .do_action(arrow_flight::Action {
            r#type: action.to_owned(),
            body: body.into(),
        })
        .await?
        .into_inner()
        .try_collect()
        .await?;
    Ok(results.into_iter().map(|result| result.body).collect())
}

/// Begins a Flight SQL transaction (`BeginTransaction`, on a connection of its own); answers
/// its id.
pub async fn begin_transaction(api: &Api) -> Result<bytes::Bytes, tonic::Status> {
    use arrow_flight::sql::{
        ActionBeginTransactionRequest, ActionBeginTransactionResult, Any, ProstMessageExt,
    };
    let request = ActionBeginTransactionRequest {}.as_any().encode_to_vec();
    let results = flight_action(api, "BeginTransaction", request).await?;
    let [result] = results.as_slice() else {
        panic!(
            "BeginTransaction answers with one result, not {}",
            results.len()
        );
    };
    let begun: ActionBeginTransactionResult = Any::decode(result.as_ref())
        .expect("an Any")
        .unpack()
        .expect("an ActionBeginTransactionResult")
        .expect("an ActionBeginTransactionResult");
    Ok(begun.transaction_id)
}

/// Commits (`commit`) or rolls back the Flight SQL transaction `transaction_id`
/// (`EndTransaction`, on a connection of its own).
pub async fn end_transaction(
    api: &Api,
    transaction_id: bytes::Bytes,
    commit: bool,
) -> Result<(), tonic::Status> {
    use arrow_flight::sql::EndTransaction;
    use arrow_flight::sql::{ActionEndTransactionRequest, ProstMessageExt};
    let action = if commit {
        EndTransaction::Commit
    } else {
        EndTransaction::Rollback
    };
    let request = ActionEndTransactionRequest {
        transaction_id,
        action: action as i32,
    };
    flight_action(api, "EndTransaction", request.as_any().encode_to_vec()).await?;
    Ok(())
}

fn status(error: FlightError) -> tonic::Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// Creates an iam-role-to-role credential for `role_arn`.
pub async fn create_role_credential(
    api: &Api,
    role_arn: &str,
) -> Result<filedrop_proto::v1::Credential, tonic::Status> {
    use filedrop_proto::v1::{
        CreateCredentialRequest, RoleToRoleRequest, create_credential_request,
    };
    let response = CredentialServiceClient::new(channel(api).await)
        .create_credential(CreateCredentialRequest {
            kind: Some(create_credential_request::Kind::RoleToRole(
                RoleToRoleRequest {
                    role_arn: role_arn.to_owned(),
                },
            )),
        })
        .await?
        .into_inner();
    Ok(response.credential.expect("a credential"))
}

/// Stores `key` as an iam-credential.
pub async fn create_access_key_credential(
    api: &Api,
    key: &AccessKeyCredential,
) -> Result<filedrop_proto::v1::Credential, tonic::Status> {
    use filedrop_proto::v1::{CreateCredentialRequest, create_credential_request};
    let response = CredentialServiceClient::new(channel(api).await)
        .create_credential(CreateCredentialRequest {
            kind: Some(create_credential_request::Kind::AccessKey(key.clone())),
        })
        .await?
        .into_inner();
    Ok(response.credential.expect("a credential"))
}

/// Stores the key of `moto`'s IAM user as an iam-credential of the tenant.
pub async fn store_moto_key(
    api: &Api,
    moto: &crate::services::Moto,
) -> filedrop_proto::v1::Credential {
    create_access_key_credential(
        api,
        &AccessKeyCredential {
            access_key_id: moto.access_key_id.clone(),
            secret_access_key: moto.secret_access_key.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("CreateCredential")
}

/// A page of the tenant's credentials.
pub async fn list_credentials(
    api: &Api,
    page_size: i32,
    page_token: &str,
) -> Result<filedrop_proto::v1::ListCredentialsResponse, tonic::Status> {
    Ok(CredentialServiceClient::new(channel(api).await)
        .list_credentials(filedrop_proto::v1::ListCredentialsRequest {
            page_size,
            page_token: page_token.to_owned(),
        })
        .await?
        .into_inner())
}

/// Deletes the credential `credential_id`.
pub async fn delete_credential(api: &Api, credential_id: &str) -> Result<(), tonic::Status> {
    CredentialServiceClient::new(channel(api).await)
        .delete_credential(filedrop_proto::v1::DeleteCredentialRequest {
            credential_id: credential_id.to_owned(),
        })
        .await?;
    Ok(())
}

/// The credential `credential_id`.
pub async fn get_credential(
    api: &Api,
    credential_id: &str,
) -> Result<filedrop_proto::v1::Credential, tonic::Status> {
    let response = CredentialServiceClient::new(channel(api).await)
        .get_credential(filedrop_proto::v1::GetCredentialRequest {
            credential_id: credential_id.to_owned(),
        })
        .await?
        .into_inner();
    Ok(response.credential.expect("a credential"))
}

/// Tests `destination` without sending data.
pub async fn test_connection(
    api: &Api,
    destination: &filedrop_proto::v1::S3Destination,
) -> Result<filedrop_proto::v1::TestConnectionResponse, tonic::Status> {
    use filedrop_proto::v1::destination_service_client::DestinationServiceClient;
    Ok(DestinationServiceClient::new(channel(api).await)
        .test_connection(filedrop_proto::v1::TestConnectionRequest {
            destination: Some(destination.clone()),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// The key of a run's manifest under `prefix`: `manifest-<destination>-<run id>.json`, the
/// destination being its name or, without one, its bucket.
pub fn manifest_key(prefix: &str, destination: &str, run_id: &str) -> String {
    format!("{prefix}manifest-{destination}-{run_id}.json")
}

/// The same request, written with the stored credential `credential_id` instead of a key.
pub fn with_credential(mut request: ExportRequest, credential_id: &str) -> ExportRequest {
    let destination = request.destination.as_mut().expect("a destination");
    destination.access_key = None;
    destination.credential_id = credential_id.to_owned();
    request
}

/// Exports `batches` and follows the run to its end; panics if the export is refused.
pub async fn export_to_end(
    api: &Api,
    request: &ExportRequest,
    batches: impl IntoIterator<Item = RecordBatch, IntoIter: Send + 'static>,
    within: Duration,
) -> Run {
    let accepted = export(api, request, batches)
        .await
        .expect("the export is accepted");
    run_to_end(api, &accepted.run_id, within).await
}

/// The run's current state.
pub async fn get_run(api: &Api, run_id: &str) -> Run {
    try_get_run(api, run_id).await.expect("GetRun")
}

/// The run's current state, or the status the control plane answered.
pub async fn try_get_run(api: &Api, run_id: &str) -> Result<Run, tonic::Status> {
    Ok(RunServiceClient::new(channel(api).await)
        .get_run(GetRunRequest {
            run_id: run_id.to_owned(),
        })
        .await?
        .into_inner()
        .run
        .expect("a run"))
}

/// Cancels the run; answers the run as cancelled, or the status the control plane answered.
pub async fn cancel_run(api: &Api, run_id: &str) -> Result<Run, tonic::Status> {
    Ok(RunServiceClient::new(channel(api).await)
        .cancel_run(filedrop_proto::v1::CancelRunRequest {
            run_id: run_id.to_owned(),
        })
        .await?
        .into_inner()
        .run
        .expect("a run"))
}

/// Retries the failed run; answers the resumed run, or the status the control plane answered.
pub async fn retry_run(api: &Api, run_id: &str) -> Result<Run, tonic::Status> {
    Ok(RunServiceClient::new(channel(api).await)
        .retry_run(filedrop_proto::v1::RetryRunRequest {
            run_id: run_id.to_owned(),
        })
        .await?
        .into_inner()
        .run
        .expect("a run"))
}

/// The tenant's destination service.
pub async fn destinations(
    api: &Api,
) -> filedrop_proto::v1::destination_service_client::DestinationServiceClient<Authorized> {
    filedrop_proto::v1::destination_service_client::DestinationServiceClient::new(
        channel(api).await,
    )
}

/// A page of the tenant's runs.
pub async fn list_runs(
    api: &Api,
    request: filedrop_proto::v1::ListRunsRequest,
) -> Result<filedrop_proto::v1::ListRunsResponse, tonic::Status> {
    Ok(RunServiceClient::new(channel(api).await)
        .list_runs(request)
        .await?
        .into_inner())
}

/// The first answer of a watch of the run: its state, or the status the control plane
/// answered.
pub async fn try_watch_run(api: &Api, run_id: &str) -> Result<Run, tonic::Status> {
    let mut stream = RunServiceClient::new(channel(api).await)
        .watch_run(WatchRunRequest {
            run_id: run_id.to_owned(),
        })
        .await?
        .into_inner();
    let first = stream
        .next()
        .await
        .expect("a watch answers at least once")?;
    Ok(first.run.expect("a run"))
}

/// Watches the run until it ends; returns every state seen, in order.
pub async fn watch_to_end(api: &Api, run_id: &str, within: Duration) -> Vec<Run> {
    let mut stream = RunServiceClient::new(channel(api).await)
        .watch_run(WatchRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .expect("WatchRun")
        .into_inner();
    let mut seen = Vec::new();
    tokio::time::timeout(within, async {
        while let Some(update) = stream.next().await {
            seen.push(update.expect("a watch update").run.expect("a run"));
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "run {run_id} did not end within {within:?}; last: {:?}",
            seen.last()
        )
    });
    seen
}

/// Watches the run until it ends and returns its final state.
pub async fn run_to_end(api: &Api, run_id: &str, within: Duration) -> Run {
    watch_to_end(api, run_id, within)
        .await
        .pop()
        .expect("a watch yields the run at least once")
}

/// Waits until the run reaches one of `states`.
pub async fn wait_for_state(api: &Api, run_id: &str, states: &[RunState], within: Duration) -> Run {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let run = get_run(api, run_id).await;
        if states.contains(&run.state()) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run_id} did not reach {states:?} within {within:?}: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
