//! API tokens and tenants, through the real control plane: a request without a valid token is
//! refused on gRPC and on Flight, and one tenant can neither see nor use another's runs and
//! credentials (they are "not found", so their existence does not leak).

use arrow_flight::{FlightClient, FlightDescriptor};
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data};
use filedrop_proto::v1::run_service_client::RunServiceClient;
use filedrop_proto::v1::{FileFormat, GetRunRequest, RunState};
use futures::TryStreamExt;
use prost::Message;
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "tenancy";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_can_neither_see_nor_use_anothers_runs_and_credentials() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });
    let tenant_a = stack.api();
    let tenant_b = tenant_a.with_token(&stack.create_token("tenant-b"));

    // Tenant A's credential and run.
    let credential = client::create_role_credential(
        &tenant_a,
        "arn:aws:iam::123456789012:role/tenant-a-exports",
    )
    .await
    .expect("CreateCredential");
    let request = client::request_to(&moto, BUCKET, "a/", FileFormat::Csv);
    let run =
        client::export_to_end(&tenant_a, &request, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!(
        client::try_get_run(&tenant_a, &run.run_id)
            .await
            .unwrap()
            .state(),
        RunState::Succeeded
    );

    // Tenant B sees none of it, exactly as if it did not exist.
    let unknown = client::try_get_run(&tenant_b, "01a20000-0000-7000-8000-000000000000")
        .await
        .unwrap_err();
    let status = client::try_get_run(&tenant_b, &run.run_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message().replace(&run.run_id, "<id>"),
        unknown
            .message()
            .replace("01a20000-0000-7000-8000-000000000000", "<id>"),
        "another tenant's run reads as a missing one"
    );
    let status = client::try_watch_run(&tenant_b, &run.run_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Not "it has succeeded": that would tell B the run exists.
    let status = client::cancel_run(&tenant_b, &run.run_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client::retry_run(&tenant_b, &run.run_id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client::get_credential(&tenant_b, &credential.credential_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Nor can it use tenant A's credential: refused before any data moves.
    let borrowed = client::with_credential(
        client::request_to(&moto, BUCKET, "b/", FileFormat::Csv),
        &credential.credential_id,
    );
    let status = client::export(&tenant_b, &borrowed, data::table(1_000, 500))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("destination.credential_id"),
        "{status:?}"
    );
    let status = client::test_connection(&tenant_b, borrowed.destination.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Tenant B's own export works, and tenant A cannot see it.
    let own = client::request_to(&moto, BUCKET, "b/", FileFormat::Csv);
    let run_b = client::export_to_end(&tenant_b, &own, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run_b.state(), RunState::Succeeded, "{run_b:?}");
    let status = client::try_get_run(&tenant_a, &run_b.run_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_on_grpc_and_flight() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    });
    let wrong = stack.api().with_token("fdt_not-a-token");
    let connect = || async {
        tonic::transport::Channel::from_shared(stack.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    };

    // gRPC: no token, a wrong token, a header that is not a bearer token.
    let status = RunServiceClient::new(connect().await)
        .get_run(GetRunRequest {
            run_id: "any".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("Bearer"), "{status:?}");
    let status = client::try_get_run(&wrong, "any").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mut request = tonic::Request::new(GetRunRequest {
        run_id: "any".into(),
    });
    request
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let status = RunServiceClient::new(connect().await)
        .get_run(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Flight: no token, a wrong token.
    let request = client::request_to(&moto, BUCKET, "refused/", FileFormat::Csv);
    let command = request.encode_to_vec();
    let send = |client: FlightClient| {
        let command = command.clone();
        async move {
            let mut client = client;
            let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(FlightDescriptor::new_cmd(command)))
                .build(futures::stream::iter(
                    data::table(100, 100).into_iter().map(Ok),
                ));
            match client.do_put(stream).await {
                Ok(results) => results.try_collect::<Vec<_>>().await.map(|_| ()),
                Err(error) => Err(error),
            }
        }
    };
    for token in [None, Some("fdt_not-a-token")] {
        let mut flight = FlightClient::new(connect().await);
        if let Some(token) = token {
            flight
                .add_header("authorization", &format!("Bearer {token}"))
                .unwrap();
        }
        match send(flight).await {
            Err(arrow_flight::error::FlightError::Tonic(status)) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            }
            other => panic!("DoPut without a valid token: {other:?}"),
        }
    }

    // Health checks need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(connect().await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_serves_tls_when_given_a_certificate() {
    let moto = Moto::start(&[BUCKET]);
    let dir = std::env::temp_dir().join(format!(
        "filedrop-listener-tls-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let (ca, certificate, key) = filedrop_integration_tests::services::make_certificates(&dir);
    let stack = Stack::start(StackOptions {
        control_plane_env: vec![
            (
                "FILEDROP_TLS__CERT_FILE".into(),
                certificate.display().to_string(),
            ),
            ("FILEDROP_TLS__KEY_FILE".into(), key.display().to_string()),
        ],
        ..StackOptions::default()
    });
    let tls = client::Api::new(format!("https://127.0.0.1:{}", stack.port), stack.token())
        .with_ca(std::fs::read(&ca).unwrap());

    // Flight and gRPC over TLS, the token inside.
    let request = client::request_to(&moto, BUCKET, "tls/", FileFormat::Csv);
    let run = client::export_to_end(&tls, &request, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!(
        client::try_get_run(&tls, &run.run_id).await.unwrap().run_id,
        run.run_id
    );

    // A plaintext client gets nowhere; nor does one that does not trust the CA.
    assert!(
        client::try_get_run(&stack.api(), &run.run_id)
            .await
            .is_err()
    );
    let untrusted = client::Api::new(format!("https://127.0.0.1:{}", stack.port), stack.token())
        .with_ca(std::fs::read(&certificate).unwrap());
    assert!(
        untrusted.connect().await.is_err()
            || client::try_get_run(&untrusted, &run.run_id).await.is_err()
    );
    let _ = std::fs::remove_dir_all(dir);
}
