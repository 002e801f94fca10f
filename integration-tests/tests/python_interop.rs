//! Interop with clients nobody here wrote: runs `integration-tests/python/test_interop.py`
//! (pyarrow) against a stack started here (moto, control plane, worker), `test_commit.py`
//! (pyarrow scripts that fail before they commit),
//! `test_adbc_ingest.py` (ADBC's Flight SQL driver, with autocommit on and off) against a
//! stack with stored destinations,
//! and `test_reflection.py` (grpcio's reflection client) against a control plane.

use filedrop_integration_tests::client;
use filedrop_integration_tests::services::{Moto, run_pytest};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_proto::v1::{CreateDestinationRequest, FileFormat};
use std::ffi::OsStr;

/// The variables that tell the Python tests where the stack is (see `conftest.py`).
fn stack_env(stack: &Stack, moto: &Moto, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "FILEDROP_INTEROP_FLIGHT_URL",
            format!("grpc://127.0.0.1:{}", stack.port),
        ),
        ("FILEDROP_INTEROP_TOKEN", stack.token()),
        (
            "FILEDROP_INTEROP_S3_ENDPOINT",
            moto.endpoint.trim_start_matches("http://").to_owned(),
        ),
        ("FILEDROP_INTEROP_ACCESS_KEY_ID", moto.access_key_id.clone()),
        (
            "FILEDROP_INTEROP_SECRET_ACCESS_KEY",
            moto.secret_access_key.clone(),
        ),
        ("FILEDROP_INTEROP_BUCKET", bucket.to_owned()),
    ]
}

fn pytest(file: &str, env: &[(&str, String)], passed: usize) {
    let env: Vec<(&str, &OsStr)> = env
        .iter()
        .map(|(name, value)| (*name, OsStr::new(value.as_str())))
        .collect();
    run_pytest(file, &env, passed);
}

#[test]
fn pyarrow_flight_client_and_pyarrow_s3_reader() {
    let moto = Moto::start(&["interop"]);
    let stack = Stack::start(StackOptions::default());
    pytest("test_interop.py", &stack_env(&stack, &moto, "interop"), 2);
}

#[test]
fn pyarrow_exports_that_are_not_committed_deliver_nothing() {
    let moto = Moto::start(&["commit"]);
    let stack = Stack::start(StackOptions::default());
    pytest("test_commit.py", &stack_env(&stack, &moto, "commit"), 4);
}

#[test]
fn adbc_flight_sql_ingest_delivers_to_a_stored_destination() {
    let moto = Moto::start(&["adbc"]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    // Stored destinations, as their owner would set them up: a stored key, Parquet. One for
    // autocommit ingests, and one per transaction case, `adbc-<case>` writing under `<case>/`.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let credential = client::store_moto_key(&api, &moto).await;
        for (name, prefix) in [
            ("adbc-orders", "adbc/"),
            ("adbc-commit", "commit/"),
            ("adbc-rollback", "rollback/"),
            ("adbc-closed", "closed/"),
            ("adbc-doomed", "doomed/"),
        ] {
            let mut settings = client::with_credential(
                client::request_to(&moto, "adbc", prefix, FileFormat::Parquet),
                &credential.credential_id,
            );
            settings.filename_template = "orders-{{run_id}}.parquet".into();
            settings.destination.as_mut().unwrap().name = name.into();
            client::destinations(&api)
                .await
                .create_destination(CreateDestinationRequest {
                    name: name.into(),
                    settings: Some(settings),
                })
                .await
                .expect("CreateDestination");
        }
    });
    let mut env = stack_env(&stack, &moto, "adbc");
    env.push(("FILEDROP_INTEROP_DESTINATION", "adbc-orders".to_owned()));
    pytest("test_adbc_ingest.py", &env, 7);
}

#[test]
fn grpc_reflection_lists_and_describes_the_services() {
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    });
    let address = format!("127.0.0.1:{}", stack.port);
    run_pytest(
        "test_reflection.py",
        &[("FILEDROP_REFLECTION_ADDRESS", OsStr::new(&address))],
        2,
    );
}
