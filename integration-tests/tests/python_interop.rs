//! Interop with clients nobody here wrote: runs `integration-tests/python/test_interop.py`
//! (pyarrow) against a stack started here (moto, control plane, worker), and
//! `test_reflection.py` (grpcio's reflection client) against a control plane.

use filedrop_integration_tests::services::{Moto, run_pytest};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use std::ffi::OsStr;

#[test]
fn pyarrow_flight_client_and_pyarrow_s3_reader() {
    let moto = Moto::start(&["interop"]);
    let stack = Stack::start(StackOptions::default());
    let flight_url = format!("grpc://127.0.0.1:{}", stack.port);
    run_pytest(
        "test_interop.py",
        &[
            ("FILEDROP_INTEROP_FLIGHT_URL", OsStr::new(&flight_url)),
            ("FILEDROP_INTEROP_TOKEN", OsStr::new(&stack.token())),
            (
                "FILEDROP_INTEROP_S3_ENDPOINT",
                OsStr::new(moto.endpoint.trim_start_matches("http://")),
            ),
            (
                "FILEDROP_INTEROP_ACCESS_KEY_ID",
                OsStr::new(&moto.access_key_id),
            ),
            (
                "FILEDROP_INTEROP_SECRET_ACCESS_KEY",
                OsStr::new(&moto.secret_access_key),
            ),
            ("FILEDROP_INTEROP_BUCKET", OsStr::new("interop")),
        ],
        2,
    );
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
