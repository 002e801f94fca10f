//! RabbitMQ and moto for tests.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The AMQP URL tests use (`FILEDROP_TEST_AMQP_URL`, default the local broker).
pub fn amqp_url() -> String {
    std::env::var("FILEDROP_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Fails the test unless RabbitMQ listens on 127.0.0.1:5672.
pub fn require_rabbitmq() {
    if std::env::var("FILEDROP_TEST_AMQP_URL").is_err()
        && TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(2))
            .is_err()
    {
        panic!(
            "RabbitMQ is not listening on 127.0.0.1:5672: start it with \
             `bash deploy/local/services.sh start rabbitmq` (or set FILEDROP_TEST_AMQP_URL)"
        );
    }
}

/// The Python virtualenv with moto, pyarrow and pytest.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("FILEDROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/filedrop/venv")
        });
    if !venv.join("bin/moto_server").exists() {
        panic!(
            "moto is not installed in {}: run `bash deploy/local/services.sh install`",
            venv.display()
        );
    }
    venv
}

/// Runs one pytest file of `integration-tests/python` with the virtualenv's Python and `env`
/// set; fails the test, with pytest's report, unless it passes and ran `passed` tests.
pub fn run_pytest(file: &str, env: &[(&str, &std::ffi::OsStr)], passed: usize) {
    let output = std::process::Command::new(venv().join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(
            crate::repo_root()
                .join("integration-tests/python")
                .join(file),
        )
        .envs(env.iter().copied())
        .output()
        .expect("running pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "pytest failed:\n{report}");
    assert!(
        report.contains(&format!("{passed} passed")),
        "pytest did not run the {passed} tests expected:\n{report}"
    );
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A moto server (S3, STS, IAM) with authentication on, for one test.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The access key of an IAM user allowed `s3:*`.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

impl Moto {
    /// Starts moto, creates `buckets` and an IAM user with a key, and switches authentication on.
    pub fn start(buckets: &[&str]) -> Self {
        let venv = venv();
        let port = free_port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        wait_for_port(port, Duration::from_secs(30), "moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut setup = Command::new(venv.join("bin/python"));
        setup
            .arg(crate::repo_root().join("deploy/local/moto_setup.py"))
            .args(["--endpoint", &endpoint]);
        for bucket in buckets {
            setup.args(["--bucket", bucket]);
        }
        let output = setup.output().expect("running moto_setup.py");
        assert!(
            output.status.success(),
            "moto_setup.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let credentials: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("moto_setup.py prints JSON");
        Self {
            child,
            endpoint,
            access_key_id: credentials["access_key_id"].as_str().unwrap().to_owned(),
            secret_access_key: credentials["secret_access_key"]
                .as_str()
                .unwrap()
                .to_owned(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
