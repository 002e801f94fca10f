//! The servers tests run against: RabbitMQ, moto, s3s-fs, and a fault-injecting proxy.

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

/// The faults a [`FaultProxy`] injects.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The first temporary credentials seen get this many requests through; later requests
    /// signed with them are answered `ExpiredToken`.
    pub expire_session_after: Option<u32>,
    /// The body of this upload request (PutObject or UploadPart, counted from 1) has a byte
    /// flipped on the way.
    pub corrupt_upload: Option<u32>,
    /// Every request is answered 503 `SlowDown` (no upstream is needed).
    pub throttle: bool,
    /// Serve HTTPS with a certificate of a private CA ([`FaultProxy::ca_file`]).
    pub tls: bool,
}

/// Makes a private CA and a server certificate it signed for 127.0.0.1 and localhost in `dir`
/// (with `s3_fault_proxy.py --write-certs`); returns the CA, the certificate and its key (PEM
/// files).
pub fn make_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let output = Command::new(venv().join("bin/python"))
        .arg(crate::repo_root().join("integration-tests/python/s3_fault_proxy.py"))
        .arg("--write-certs")
        .arg(dir)
        .output()
        .expect("running s3_fault_proxy.py --write-certs");
    assert!(
        output.status.success(),
        "making certificates failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A request the proxy saw.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    /// `PUT`, `POST`, …
    pub method: String,
    /// `/bucket/key`.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The status answered.
    pub status: u16,
    /// The fault injected, if any: `expired-token`, `corrupted-upload`, `throttled`.
    pub fault: Option<String>,
}

/// A proxy on loopback in front of an S3 server that injects [`Faults`] and records every
/// request (`integration-tests/python/s3_fault_proxy.py`); stopped when dropped.
pub struct FaultProxy {
    child: Child,
    /// `http://127.0.0.1:<port>` (`https://` with TLS): a destination's endpoint URL.
    pub endpoint: String,
    log: PathBuf,
    tls_dir: Option<PathBuf>,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream` (an endpoint URL; `None` with `faults.throttle`).
    pub fn start(upstream: Option<&str>, faults: &Faults) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "filedrop-proxy-{}.jsonl",
            uuid::Uuid::new_v4().simple()
        ));
        let mut command = Command::new(venv().join("bin/python"));
        command
            .arg(crate::repo_root().join("integration-tests/python/s3_fault_proxy.py"))
            .args(["--port", &port.to_string()])
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(upstream) = upstream {
            command.args(["--upstream", upstream]);
        }
        if let Some(after) = faults.expire_session_after {
            command.args(["--expire-session-after", &after.to_string()]);
        }
        if let Some(upload) = faults.corrupt_upload {
            command.args(["--corrupt-upload", &upload.to_string()]);
        }
        if faults.throttle {
            command.arg("--throttle");
        }
        let tls_dir = faults.tls.then(|| log.with_extension("tls"));
        if let Some(dir) = &tls_dir {
            command.arg("--tls-dir").arg(dir);
        }
        let child = command.spawn().expect("starting s3_fault_proxy.py");
        wait_for_port(port, Duration::from_secs(30), "s3_fault_proxy.py");
        let scheme = if faults.tls { "https" } else { "http" };
        Self {
            child,
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            log,
            tls_dir,
        }
    }

    /// The private CA that signed the proxy's certificate (PEM), with [`Faults::tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.tls_dir
            .as_ref()
            .expect("the proxy was started with TLS")
            .join("ca.pem")
    }

    /// Every request the proxy answered so far, in order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).expect("the proxy logs JSON lines");
                let text = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
                ProxiedRequest {
                    method: text("method"),
                    path: text("path"),
                    query: text("query"),
                    status: entry["status"].as_u64().unwrap_or_default() as u16,
                    fault: entry["fault"].as_str().map(str::to_owned),
                }
            })
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// An s3s-fs server (an S3 server on a directory, checking checksums, signatures and
/// conditional writes) for one test, with its own directory; stopped when dropped.
pub struct S3sFs {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl S3sFs {
    /// The access key s3s-fs is started with.
    pub const ACCESS_KEY_ID: &str = "filedrop-test";
    /// Its secret.
    pub const SECRET_ACCESS_KEY: &str = "filedrop-test-secret";

    /// Starts s3s-fs with `buckets` (installed by `deploy/local/services.sh install`).
    pub fn start(buckets: &[&str]) -> Self {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cargo")
            });
        let binary = home.join("bin/s3s-fs");
        assert!(
            binary.exists(),
            "s3s-fs is not installed at {}: run `bash deploy/local/services.sh install`",
            binary.display()
        );
        let dir =
            std::env::temp_dir().join(format!("filedrop-s3s-fs-{}", uuid::Uuid::new_v4().simple()));
        for bucket in buckets {
            std::fs::create_dir_all(dir.join(bucket)).expect("creating a bucket directory");
        }
        let port = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", Self::ACCESS_KEY_ID])
            .args(["--secret-key", Self::SECRET_ACCESS_KEY])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        wait_for_port(port, Duration::from_secs(30), "s3s-fs");
        Self {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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

    /// Replaces, as the bucket owner, the policy of IAM user `name` with `policy` (JSON).
    pub fn put_user_policy(&self, name: &str, policy: &str) {
        self.moto_iam(&[
            "put-user-policy",
            "--endpoint",
            &self.endpoint,
            "--name",
            name,
            "--policy",
            policy,
        ]);
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

/// `rabbitmqctl` for the broker the tests use: `FILEDROP_TEST_RABBITMQCTL` (set by
/// `deploy/local/test.sh` when it started its own node), else the one on `PATH`.
pub fn rabbitmqctl() -> std::process::Command {
    std::process::Command::new(
        std::env::var("FILEDROP_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into()),
    )
}

/// The broker connections (Erlang pids) of the given processes, which name their connections
/// `filedrop-<pid>`.
pub fn connections_of(pids: &[u32]) -> Vec<String> {
    let listed = rabbitmqctl()
        .args(["list_connections", "--silent", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl must be on PATH: it comes with RabbitMQ (deploy/local/services.sh)");
    assert!(
        listed.status.success(),
        "rabbitmqctl list_connections failed"
    );
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, properties)| {
            pids.iter()
                .any(|pid| properties.contains(&format!("\"filedrop-{pid}\"")))
        })
        .map(|(connection, _)| connection.to_owned())
        .collect()
}

/// Closes the broker connections of the given processes, as a broker restart or a network cut
/// would; returns how many were closed.
pub fn close_connections_of(pids: &[u32]) -> usize {
    let connections = connections_of(pids);
    for connection in &connections {
        let closed = rabbitmqctl()
            .args(["close_connection", connection, "connection loss test"])
            .status()
            .expect("rabbitmqctl close_connection");
        assert!(closed.success(), "closing a connection failed");
    }
    connections.len()
}
