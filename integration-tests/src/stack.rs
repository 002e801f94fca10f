//! A control plane and workers, the real binaries, in their own directory and RabbitMQ
//! namespace. Dropping the stack stops the processes (SIGTERM, then SIGKILL), deletes the
//! namespace's queues and exchanges, and prints the processes' logs if the test failed.

use crate::client::Api;
use crate::services::{amqp_url, free_port, require_rabbitmq};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Worker processes (each takes both roles).
    pub workers: usize,
    /// Multipart part size, MiB.
    pub part_size_mib: usize,
    /// More environment variables for every process (e.g. filedrop's own AWS identity).
    pub env: Vec<(String, String)>,
    /// More environment variables for the workers only (e.g. `FILEDROP_UPLOAD__…`).
    pub worker_env: Vec<(String, String)>,
    /// More environment variables for the control plane only (e.g. `FILEDROP_TLS__…`).
    pub control_plane_env: Vec<(String, String)>,
    /// The run store: SQLite, or PostgreSQL when `FILEDROP_TEST_RUN_STORE=postgres`.
    pub run_store: RunStoreKind,
}

/// Which run store a stack's control plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStoreKind {
    /// A SQLite file in the stack's directory.
    Sqlite,
    /// A database of its own on the PostgreSQL server at `FILEDROP_TEST_POSTGRES_URL`
    /// (`postgres://postgres@127.0.0.1:5432` by default), dropped with the stack.
    Postgres,
}

impl RunStoreKind {
    /// `FILEDROP_TEST_RUN_STORE`: `postgres`, or SQLite when unset.
    pub fn from_env() -> Self {
        match std::env::var("FILEDROP_TEST_RUN_STORE").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("FILEDROP_TEST_RUN_STORE={other:?}: give sqlite or postgres"),
        }
    }
}

/// The PostgreSQL server the tests use (no database named).
fn postgres_server() -> String {
    std::env::var("FILEDROP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Runs `sql` on the PostgreSQL server's `postgres` database with `psql`; fails, saying how
/// to start the server, when it does not answer.
fn psql(sql: &str) {
    let output = Command::new("psql")
        .arg(format!("{}/postgres", postgres_server()))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect(
            "running psql (Debian's postgresql-client); install it, or run deploy/local/test.sh",
        );
    assert!(
        output.status.success(),
        "psql failed on {sql:?}: {}\nstart PostgreSQL with `bash deploy/local/services.sh start \
         postgres` (or set FILEDROP_TEST_POSTGRES_URL)",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            part_size_mib: 5,
            env: Vec::new(),
            worker_env: Vec::new(),
            control_plane_env: Vec::new(),
            run_store: RunStoreKind::from_env(),
        }
    }
}

/// A running control plane and its workers.
pub struct Stack {
    /// Working directory: staging, run store, secret key, logs.
    pub dir: PathBuf,
    /// RabbitMQ namespace of this stack.
    pub namespace: String,
    /// The control plane's port (Flight and gRPC).
    pub port: u16,
    /// The API token of the stack's tenant, [`Stack::TENANT`].
    token: String,
    options: StackOptions,
    control_plane: Option<Child>,
    /// More control planes on the same run store, broker and staging.
    replicas: Vec<Child>,
    control_plane_restarts: usize,
    workers: Vec<Option<Child>>,
    worker_starts: usize,
    /// The control plane's run store.
    run_store_url: String,
    /// The PostgreSQL database created for the stack, dropped with it.
    postgres_database: Option<String>,
}

/// The path of the workspace binary `name`, built beside the test binaries.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

impl Stack {
    /// Starts a control plane and `options.workers` workers, and waits for the control plane.
    pub fn start(options: StackOptions) -> Self {
        require_rabbitmq();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("filedrop-test-{id}"));
        std::fs::create_dir_all(&dir).expect("creating the stack directory");
        let port = free_port();
        let (run_store_url, postgres_database) = match options.run_store {
            RunStoreKind::Sqlite => (format!("sqlite://{}/runs.db", dir.display()), None),
            RunStoreKind::Postgres => {
                let database = format!("filedrop_test_{id}");
                psql(&format!("CREATE DATABASE {database}"));
                (format!("{}/{database}", postgres_server()), Some(database))
            }
        };
        let mut stack = Self {
            dir,
            namespace: format!("filedrop-test-{id}"),
            port,
            token: String::new(),
            options: options.clone(),
            control_plane: None,
            replicas: Vec::new(),
            control_plane_restarts: 0,
            workers: Vec::new(),
            worker_starts: 0,
            run_store_url,
            postgres_database,
        };
        stack.token = stack.create_token(Self::TENANT);
        stack.control_plane = Some(stack.spawn(
            "filedrop-control-plane",
            "control-plane.log",
            &stack.control_plane_env(),
        ));
        stack.wait_for_control_plane(Duration::from_secs(60));
        for _ in 0..options.workers {
            stack.start_worker();
        }
        stack
    }

    /// Waits until the control plane listens; fails at once, with its log, if it exits.
    fn wait_for_control_plane(&mut self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let child = self.control_plane.as_mut().expect("started");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the control plane exited ({status}) before listening:\n{}",
                    self.logs()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the control plane did not listen within {within:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tenant of the stack's own token.
    pub const TENANT: &str = "tenant-a";

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The control plane, called with the stack's token (tenant [`Stack::TENANT`]).
    pub fn api(&self) -> Api {
        Api::new(self.url(), self.token.clone())
    }

    /// The stack's own API token (for clients built elsewhere, such as the Python tests).
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Creates an API token for `tenant` with the control plane's `token create`.
    pub fn create_token(&self, tenant: &str) -> String {
        let output = self
            .command("filedrop-control-plane", &self.control_plane_env())
            .args(["token", "create", "--tenant", tenant, "--name", "tests"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("running filedrop-control-plane token create");
        assert!(
            output.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("the token is UTF-8")
            .trim()
            .to_owned()
    }

    fn control_plane_env(&self) -> Vec<(&str, String)> {
        let mut env = vec![
            ("FILEDROP_LISTEN_ADDR", format!("127.0.0.1:{}", self.port)),
            ("FILEDROP_RUN_STORE__URL", self.run_store_url.clone()),
        ];
        env.extend(
            self.options
                .control_plane_env
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone())),
        );
        env
    }

    /// Starts another control plane on the stack's run store, broker and staging (a replica,
    /// as a cluster runs several); returns its URL once it listens.
    pub fn start_replica(&mut self) -> String {
        let port = free_port();
        let mut env = self.control_plane_env();
        env.retain(|(name, _)| *name != "FILEDROP_LISTEN_ADDR");
        env.push(("FILEDROP_LISTEN_ADDR", format!("127.0.0.1:{port}")));
        let log = format!("control-plane-{}.log", self.replicas.len() + 2);
        self.replicas
            .push(self.spawn("filedrop-control-plane", &log, &env));
        crate::services::wait_for_port(port, Duration::from_secs(60), "the replica control plane");
        format!("http://127.0.0.1:{port}")
    }

    /// Everything the run store holds, as bytes to search: the SQLite file (with its
    /// write-ahead log), or a `pg_dump` of the PostgreSQL database.
    pub fn run_store_contents(&self) -> Vec<u8> {
        match &self.postgres_database {
            None => {
                let mut bytes = std::fs::read(self.dir.join("runs.db")).expect("reading runs.db");
                bytes.extend(std::fs::read(self.dir.join("runs.db-wal")).unwrap_or_default());
                bytes
            }
            Some(_) => {
                let output = Command::new("pg_dump")
                    .arg(&self.run_store_url)
                    .output()
                    .expect("running pg_dump (Debian's postgresql-client)");
                assert!(
                    output.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }
        }
    }

    /// The staging directory.
    pub fn staging_dir(&self) -> PathBuf {
        self.dir.join("staging")
    }

    fn spawn(&self, name: &str, log: &str, extra: &[(&str, String)]) -> Child {
        let log = File::create(self.dir.join(log)).expect("creating a log file");
        self.command(name, extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error}"))
    }

    /// A command running binary `name` with the stack's environment and `extra`.
    fn command(&self, name: &str, extra: &[(&str, String)]) -> Command {
        let mut command = Command::new(binary(name));
        command
            .current_dir(&self.dir)
            .env("FILEDROP_BROKER__URL", amqp_url())
            .env("FILEDROP_BROKER__NAMESPACE", &self.namespace)
            .env("FILEDROP_STAGING__DIR", self.staging_dir())
            .env("FILEDROP_SECRETS__KEY_FILE", self.dir.join("secret.key"))
            .env("FILEDROP_LOG__FILTER", "info")
            .env_remove("RUST_LOG");
        for (key, value) in extra {
            command.env(key, value);
        }
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        command
    }

    /// Starts one more worker; returns its index.
    pub fn start_worker(&mut self) -> usize {
        self.start_worker_with(&[])
    }

    /// Starts one more worker with `env` on top of the stack's (e.g. `FILEDROP_ROLES`);
    /// returns its index.
    pub fn start_worker_with(&mut self, extra: &[(&str, &str)]) -> usize {
        self.worker_starts += 1;
        let mut env: Vec<(&str, String)> = vec![(
            "FILEDROP_UPLOAD__PART_SIZE_MIB",
            self.options.part_size_mib.to_string(),
        )];
        env.extend(
            self.options
                .worker_env
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone())),
        );
        env.extend(
            extra
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        let child = self.spawn(
            "filedrop-worker",
            &format!("worker-{}.log", self.worker_starts),
            &env,
        );
        self.workers.push(Some(child));
        self.workers.len() - 1
    }

    /// Process ids of the control plane and the running workers.
    pub fn pids(&self) -> Vec<u32> {
        self.control_plane
            .iter()
            .chain(self.workers.iter().flatten())
            .map(Child::id)
            .collect()
    }

    /// Asks a worker to stop (SIGTERM) and waits for it to exit; returns how it exited.
    pub fn terminate_worker(&mut self, index: usize, within: Duration) -> std::process::ExitStatus {
        let mut child = self.workers[index].take().expect("the worker is running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("sending SIGTERM");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the worker") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not stop within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Takes `count` messages off the stack's `queue` (`upload`, `finalize`, …), waiting for
    /// them up to `within`; returns their payloads in queue order.
    pub async fn take_tasks(&self, queue: &str, count: usize, within: Duration) -> Vec<Vec<u8>> {
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .expect("connecting to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        let name = format!("{}.{queue}", self.namespace);
        let deadline = std::time::Instant::now() + within;
        let mut payloads = Vec::new();
        while payloads.len() < count {
            let got = channel
                .basic_get(
                    name.as_str().into(),
                    lapin::options::BasicGetOptions::default(),
                )
                .await
                .expect("basic.get");
            match got {
                Some(message) => {
                    payloads.push(message.delivery.data.clone());
                    message
                        .delivery
                        .ack(lapin::options::BasicAckOptions::default())
                        .await
                        .expect("ack");
                }
                None => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{name} held {} of the {count} messages expected within {within:?}",
                        payloads.len()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let _ = connection.close(0, "done".into()).await;
        payloads
    }

    /// Publishes `payloads` to the stack's task `queue`, in order, as the control plane does.
    pub async fn publish_tasks(&self, queue: &str, payloads: &[Vec<u8>]) {
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .expect("connecting to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("publisher confirms");
        let exchange = format!("{}.tasks", self.namespace);
        for payload in payloads {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    queue.into(),
                    lapin::options::BasicPublishOptions::default(),
                    payload,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publishing")
                .await
                .expect("the broker confirms");
        }
        let _ = connection.close(0, "done".into()).await;
    }

    /// The processes of the stack that have exited, with how (`control plane: signal 6`,
    /// `worker 0: exit status: 1`); empty while every one runs.
    pub fn exited(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        if let Some(child) = self.control_plane.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            exited.push(format!("control plane: {status}"));
        }
        for (index, worker) in self.workers.iter_mut().enumerate() {
            if let Some(child) = worker
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push(format!("worker {index}: {status}"));
            }
        }
        exited
    }

    /// Whether worker `index` has exited; if so it is reaped, and [`Stack::restart_worker`]
    /// starts it again.
    pub fn worker_exited(&mut self, index: usize) -> bool {
        match &mut self.workers[index] {
            Some(child) => match child.try_wait() {
                Ok(Some(_)) => {
                    self.workers[index] = None;
                    true
                }
                _ => false,
            },
            None => true,
        }
    }

    /// Starts worker `index` again, with `extra` environment (as it was started), after it
    /// exited.
    pub fn restart_worker(&mut self, index: usize, extra: &[(&str, &str)]) {
        assert!(self.workers[index].is_none(), "worker {index} still runs");
        let restarted = self.start_worker_with(extra);
        self.workers.swap(index, restarted);
        self.workers.pop();
    }

    /// Everything the control plane has logged so far.
    pub fn control_plane_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("control-plane.log")).unwrap_or_default()
    }

    /// Kills a worker at once (SIGKILL), as a crash would.
    pub fn kill_worker(&mut self, index: usize) {
        if let Some(mut child) = self.workers[index].take() {
            child.kill().expect("killing a worker");
            child.wait().expect("reaping a worker");
        }
    }

    /// Kills the control plane with SIGKILL (no shutdown, no goodbye to its clients), then
    /// starts it again on the same port, store, broker and staging; returns once it listens.
    pub fn kill_and_restart_control_plane(&mut self) {
        if let Some(mut child) = self.control_plane.take() {
            child.kill().expect("killing the control plane");
            child.wait().expect("reaping the control plane");
        }
        self.control_plane_restarts += 1;
        let log = format!("control-plane-restart-{}.log", self.control_plane_restarts);
        self.control_plane =
            Some(self.spawn("filedrop-control-plane", &log, &self.control_plane_env()));
        self.wait_for_control_plane(Duration::from_secs(60));
    }

    /// Kills the replica control plane `index` (in the order [`Stack::start_replica`] started
    /// them) with SIGKILL: no shutdown, no goodbye to its clients.
    pub fn kill_replica(&mut self, index: usize) {
        let child = &mut self.replicas[index];
        child.kill().expect("killing a replica");
        child.wait().expect("reaping a replica");
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "log"))
            .collect();
        entries.sort_by_key(|entry| entry.path());
        for entry in entries {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            out.push_str(&format!(
                "----- {} (last {} lines) -----\n{}\n",
                entry.path().display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in self.workers.drain(..).flatten() {
            terminate(child);
        }
        if let Some(child) = self.control_plane.take() {
            terminate(child);
        }
        for child in self.replicas.drain(..) {
            terminate(child);
        }
        if let Some(database) = self.postgres_database.take() {
            let _ = std::panic::catch_unwind(|| {
                psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            });
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let namespace = self.namespace.clone();
        let _ = std::thread::spawn(move || delete_topology(&namespace)).join();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn delete_topology(namespace: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for cleanup");
    runtime.block_on(async {
        let Ok(connection) =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        let Ok(channel) = connection.create_channel().await else {
            return;
        };
        for queue in [
            "encode",
            "upload",
            "finalize",
            "events",
            "dead-letter",
            "dead-letter.runs",
        ] {
            let _ = channel
                .queue_delete(
                    format!("{namespace}.{queue}").as_str().into(),
                    Default::default(),
                )
                .await;
        }
        for exchange in ["tasks", "events", "dead-letter"] {
            let _ = channel
                .exchange_delete(
                    format!("{namespace}.{exchange}").as_str().into(),
                    Default::default(),
                )
                .await;
        }
        let _ = connection.close(200, "cleanup done".into()).await;
    });
}
