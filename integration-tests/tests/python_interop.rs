//! Interop with a client nobody here wrote: runs the pytest suite in `integration-tests/python`
//! against a stack started here (moto, control plane, worker).

use filedrop_integration_tests::repo_root;
use filedrop_integration_tests::services::{Moto, venv};
use filedrop_integration_tests::stack::{Stack, StackOptions};

#[test]
fn pyarrow_flight_client_and_pyarrow_s3_reader() {
    let moto = Moto::start(&["interop"]);
    let stack = Stack::start(StackOptions::default());
    let output = std::process::Command::new(venv().join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo_root().join("integration-tests/python/test_interop.py"))
        .env(
            "FILEDROP_INTEROP_FLIGHT_URL",
            format!("grpc://127.0.0.1:{}", stack.port),
        )
        .env(
            "FILEDROP_INTEROP_S3_ENDPOINT",
            moto.endpoint.trim_start_matches("http://"),
        )
        .env("FILEDROP_INTEROP_ACCESS_KEY_ID", &moto.access_key_id)
        .env(
            "FILEDROP_INTEROP_SECRET_ACCESS_KEY",
            &moto.secret_access_key,
        )
        .env("FILEDROP_INTEROP_BUCKET", "interop")
        .output()
        .expect("running pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "pytest failed:\n{report}");
    assert!(report.contains("1 passed"), "pytest ran no test:\n{report}");
}
