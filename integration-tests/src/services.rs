//! RabbitMQ and moto for tests.

use std::collections::HashMap;
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
    /// The access key of the IAM user `filedrop`, allowed `s3:*` and `sts:AssumeRole`.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// The key of the IAM user `bucket-owner`, allowed `iam:*` and `s3:*`.
    owner_key: (String, String),
    /// Where moto records the requests it serves, when it was started recording.
    recording: Option<PathBuf>,
}

/// An S3 endpoint on loopback that answers every request with 503 `SlowDown`
/// (`integration-tests/python/throttling_s3.py`); stopped when dropped.
pub struct ThrottlingS3 {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl ThrottlingS3 {
    /// Starts the endpoint.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(venv().join("bin/python"))
            .arg(crate::repo_root().join("integration-tests/python/throttling_s3.py"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting throttling_s3.py");
        wait_for_port(port, Duration::from_secs(30), "throttling_s3.py");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ThrottlingS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ARN moto gives the IAM user `filedrop`.
pub const MOTO_FILEDROP_USER_ARN: &str = "arn:aws:iam::123456789012:user/filedrop";

impl Moto {
    /// Starts moto, creates `buckets`, the IAM users `filedrop` and `bucket-owner` with their
    /// keys, and switches authentication on.
    pub fn start(buckets: &[&str]) -> Self {
        Self::start_with(buckets, None)
    }

    /// [`Moto::start`], recording every request moto serves (see [`Moto::assume_role_calls`]).
    pub fn start_recording(buckets: &[&str]) -> Self {
        let file = std::env::temp_dir().join(format!(
            "filedrop-moto-recording-{}.jsonl",
            uuid::Uuid::new_v4().simple()
        ));
        Self::start_with(buckets, Some(file))
    }

    fn start_with(buckets: &[&str], recording: Option<PathBuf>) -> Self {
        let venv = venv();
        let port = free_port();
        let mut server = Command::new(venv.join("bin/moto_server"));
        server
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(file) = &recording {
            server
                .env("MOTO_ENABLE_RECORDING", "True")
                .env("MOTO_RECORDER_FILEPATH", file);
        }
        let child = server.spawn().expect("starting moto_server");
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
        let field = |name: &str| credentials[name].as_str().unwrap().to_owned();
        Self {
            child,
            endpoint,
            access_key_id: field("access_key_id"),
            secret_access_key: field("secret_access_key"),
            owner_key: (
                field("owner_access_key_id"),
                field("owner_secret_access_key"),
            ),
            recording,
        }
    }

    /// Environment variables that make filedrop's own AWS identity the IAM user `filedrop`,
    /// with STS at this server (for the control plane and the workers).
    pub fn identity_env(&self) -> Vec<(String, String)> {
        [
            ("FILEDROP_AWS_IDENTITY__SOURCE", "static"),
            ("FILEDROP_AWS_IDENTITY__ACCESS_KEY_ID", &self.access_key_id),
            (
                "FILEDROP_AWS_IDENTITY__SECRET_ACCESS_KEY",
                &self.secret_access_key,
            ),
            ("FILEDROP_AWS_IDENTITY__STS_ENDPOINT_URL", &self.endpoint),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    fn moto_iam(&self, args: &[&str]) -> String {
        let output = Command::new(venv().join("bin/python"))
            .arg(crate::repo_root().join("integration-tests/python/moto_iam.py"))
            .args(args)
            .env("MOTO_OWNER_ACCESS_KEY_ID", &self.owner_key.0)
            .env("MOTO_OWNER_SECRET_ACCESS_KEY", &self.owner_key.1)
            .output()
            .expect("running moto_iam.py");
        assert!(
            output.status.success(),
            "moto_iam.py {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    }

    /// Creates, as the bucket owner, the role `name` with `trust_policy` (JSON) and a policy
    /// allowing `s3:*`; returns its ARN.
    pub fn create_role(&self, name: &str, trust_policy: &str) -> String {
        self.moto_iam(&[
            "create-role",
            "--endpoint",
            &self.endpoint,
            "--name",
            name,
            "--trust-policy",
            trust_policy,
        ])
    }

    /// Creates, as the bucket owner, the IAM user `name` with `policy` (JSON) and an access
    /// key; returns the key id and secret.
    pub fn create_user(&self, name: &str, policy: &str) -> (String, String) {
        let json = self.moto_iam(&[
            "create-user",
            "--endpoint",
            &self.endpoint,
            "--name",
            name,
            "--policy",
            policy,
        ]);
        let key: serde_json::Value = serde_json::from_str(&json).expect("moto_iam.py prints JSON");
        let field = |name: &str| key[name].as_str().expect("a key field").to_owned();
        (field("access_key_id"), field("secret_access_key"))
    }

    /// The parameters of every STS `AssumeRole` call moto served so far (started with
    /// [`Moto::start_recording`]).
    pub fn assume_role_calls(&self) -> Vec<HashMap<String, String>> {
        let file = self
            .recording
            .as_ref()
            .expect("moto was started with start_recording");
        let json = self.moto_iam(&["assume-role-calls", "--recording", &file.to_string_lossy()]);
        serde_json::from_str(&json).expect("moto_iam.py prints JSON")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(file) = &self.recording {
            let _ = std::fs::remove_file(file);
        }
    }
}
