//! `DestinationService`: a tenant's stored destinations (named export settings, validated as
//! an export is, holding no secret), and a destination tested without sending data.

use crate::acceptance::{self, Acceptance, Given};
use crate::error::OrInternal;
use crate::store::{DestinationRecord, RunStore, now_ms};
use crate::wire;
use filedrop_proto::v1::destination_service_server::DestinationService;
use filedrop_proto::v1::{
    CreateDestinationRequest, CreateDestinationResponse, DeleteDestinationRequest,
    DeleteDestinationResponse, Destination, ExportRequest, GetDestinationRequest,
    GetDestinationResponse, ListDestinationsRequest, ListDestinationsResponse,
    TestConnectionRequest, TestConnectionResponse, UpdateDestinationRequest,
    UpdateDestinationResponse,
};
use filedrop_runtime::secrets::SecretBox;
use filedrop_s3::credentials::ServiceIdentity;
use filedrop_s3::probe::test_connection;
use prost::Message;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The destination service.
#[derive(Debug, Clone)]
pub struct DestinationEndpoint {
    store: RunStore,
    secrets: SecretBox,
    identity: Arc<ServiceIdentity>,
}

impl DestinationEndpoint {
    /// A destination service resolving stored credentials in `store` (access keys opened with
    /// `secrets`).
    pub fn new(store: RunStore, secrets: SecretBox, identity: Arc<ServiceIdentity>) -> Self {
        Self {
            store,
            secrets,
            identity,
        }
    }
}

#[tonic::async_trait]
impl DestinationService for DestinationEndpoint {
    async fn test_connection(
        &self,
        request: Request<TestConnectionRequest>,
    ) -> Result<Response<TestConnectionResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let request = request.into_inner();
        let destination = if request.stored_destination.is_empty() {
            request.destination
        } else {
            let stored = self.stored(&tenant, &request.stored_destination).await?;
            settings_of(&stored)?.destination
        };
        let (destination, access) = self.acceptance().destination(&tenant, destination).await?;
        let probe_id = uuid::Uuid::new_v4().simple().to_string();
        let report = test_connection(&access, &self.identity, &probe_id).await;
        let passed = report
            .passed
            .iter()
            .map(|check| check.name().to_owned())
            .collect();
        let response = match report.failed {
            None => TestConnectionResponse {
                ok: true,
                passed,
                failed_check: String::new(),
                error: None,
            },
            Some((check, failure)) => {
                tracing::info!(
                    bucket = %destination.bucket,
                    check = check.name(),
                    code = ?failure.code,
                    "connection test failed"
                );
                TestConnectionResponse {
                    ok: false,
                    passed,
                    failed_check: check.name().to_owned(),
                    error: Some(failure.to_proto()),
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn create_destination(
        &self,
        request: Request<CreateDestinationRequest>,
    ) -> Result<Response<CreateDestinationResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let request = request.into_inner();
        let settings = self
            .checked_settings(&tenant, &request.name, request.settings)
            .await?;
        let now = now_ms();
        let record = DestinationRecord {
            destination_id: uuid::Uuid::now_v7().to_string(),
            name: request.name,
            settings: settings.encode_to_vec(),
            created_at: now,
            updated_at: now,
        };
        let added = self
            .store
            .add_destination(&tenant, &record)
            .await
            .or_internal("storing the destination")?;
        if !added {
            return Err(name_taken(&record.name));
        }
        tracing::info!(destination_id = %record.destination_id, name = %record.name, "destination created");
        Ok(Response::new(CreateDestinationResponse {
            destination: Some(to_proto(&record)?),
        }))
    }

    async fn get_destination(
        &self,
        request: Request<GetDestinationRequest>,
    ) -> Result<Response<GetDestinationResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let record = self
            .stored(&tenant, &request.into_inner().destination)
            .await?;
        Ok(Response::new(GetDestinationResponse {
            destination: Some(to_proto(&record)?),
        }))
    }

    async fn list_destinations(
        &self,
        request: Request<ListDestinationsRequest>,
    ) -> Result<Response<ListDestinationsResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let request = request.into_inner();
        let page_size = wire::page_size(request.page_size)?;
        let records = self
            .store
            .destinations_of(
                &tenant,
                wire::page_start(&request.page_token),
                page_size + 1,
            )
            .await
            .or_internal("listing destinations")?;
        let (records, next_page_token) = wire::page(records, page_size, |record| &record.name);
        Ok(Response::new(ListDestinationsResponse {
            destinations: records.iter().map(to_proto).collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }

    async fn update_destination(
        &self,
        request: Request<UpdateDestinationRequest>,
    ) -> Result<Response<UpdateDestinationResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let request = request.into_inner();
        let current = self.stored(&tenant, &request.destination).await?;
        let settings = self
            .checked_settings(&tenant, &request.name, request.settings)
            .await?;
        let record = DestinationRecord {
            name: request.name,
            settings: settings.encode_to_vec(),
            updated_at: now_ms(),
            ..current
        };
        let updated = self
            .store
            .update_destination(&tenant, &record)
            .await
            .or_internal("updating the destination")?;
        if !updated {
            return Err(name_taken(&record.name));
        }
        tracing::info!(destination_id = %record.destination_id, name = %record.name, "destination updated");
        Ok(Response::new(UpdateDestinationResponse {
            destination: Some(to_proto(&record)?),
        }))
    }

    async fn delete_destination(
        &self,
        request: Request<DeleteDestinationRequest>,
    ) -> Result<Response<DeleteDestinationResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let record = self
            .stored(&tenant, &request.into_inner().destination)
            .await?;
        self.store
            .delete_destination(&tenant, &record.destination_id)
            .await
            .or_internal("deleting the destination")?;
        tracing::info!(destination_id = %record.destination_id, name = %record.name, "destination deleted");
        Ok(Response::new(DeleteDestinationResponse {}))
    }
}

/// The longest destination name.
const MAX_NAME_CHARS: usize = 128;

impl DestinationEndpoint {
    /// The tenant's destination named `name_or_id` (by name or id).
    fn acceptance(&self) -> Acceptance<'_> {
        Acceptance {
            store: &self.store,
            secrets: &self.secrets,
        }
    }

    async fn stored(&self, tenant: &str, name_or_id: &str) -> Result<DestinationRecord, Status> {
        self.store
            .destination_of(tenant, name_or_id)
            .await
            .or_internal("reading the destination")?
            .ok_or_else(|| Status::not_found(format!("destination {name_or_id:?} not found")))
    }

    /// `settings` checked as a stored destination's, as they are stored: valid as an export
    /// is, naming an existing credential of the tenant, holding no secret.
    async fn checked_settings(
        &self,
        tenant: &str,
        name: &str,
        settings: Option<ExportRequest>,
    ) -> Result<ExportRequest, Status> {
        check_name(name)?;
        let mut settings = settings.ok_or_else(|| {
            Status::invalid_argument("settings: give the destination's export settings")
        })?;
        if !settings.stored_destination.is_empty() {
            return Err(Status::invalid_argument(
                "settings.stored_destination: a stored destination cannot name another",
            ));
        }
        if !settings.idempotency_key.is_empty() {
            return Err(Status::invalid_argument(
                "settings.idempotency_key: give it with each export, not with the destination",
            ));
        }
        if let Some(destination) = settings.destination.as_mut() {
            if destination.access_key.is_some() {
                return Err(Status::invalid_argument(
                    "settings.destination.access_key: a stored destination holds no secret; \
                     store the key with CredentialService.CreateCredential and name it in \
                     destination.credential_id",
                ));
            }
            destination.name = name.to_owned();
        }
        acceptance::validate(settings.clone(), Given::StoredDestination)?
            .with_access(&self.acceptance(), tenant)
            .await?;
        Ok(settings)
    }
}

/// Checks a destination's name: 1 to 128 letters, digits, `_`, `-` and `.`, starting with a
/// letter or digit (it names a table in Flight SQL, and a destination on the command line).
fn check_name(name: &str) -> Result<(), Status> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "name: {name:?} is not a destination name; give 1 to {MAX_NAME_CHARS} letters, \
             digits, '_', '-' and '.', starting with a letter or digit"
        )))
    }
}

fn name_taken(name: &str) -> Status {
    Status::already_exists(format!(
        "name: there is a destination named {name:?} already; choose another name"
    ))
}

/// A stored destination's settings.
pub fn settings_of(record: &DestinationRecord) -> Result<ExportRequest, Status> {
    ExportRequest::decode(record.settings.as_slice()).or_internal("reading a stored destination")
}

fn to_proto(record: &DestinationRecord) -> Result<Destination, Status> {
    let timestamp = wire::timestamp;
    Ok(Destination {
        destination_id: record.destination_id.clone(),
        name: record.name.clone(),
        settings: Some(settings_of(record)?),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
    })
}
