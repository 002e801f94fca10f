//! The filedrop worker: one binary with two roles that scale apart.
//!
//! - **encode**: a staged Arrow segment → an encoded block in staging → `SegmentEncoded`.
//! - **upload**: a file's blocks → a pending upload (multipart, left open; or a small file
//!   staged) → `FileUploaded`; and the commit: every file's upload completed → abandoned
//!   uploads aborted → manifest → success marker → `RunFinalized`. Nothing is visible at a
//!   final key before the commit.
//!
//! Every task may arrive twice: keys are deterministic, so doing it again gives the same
//! result, and a file already uploaded is found by its record and not uploaded again. A task
//! that cannot succeed reports `TaskFailed` (which fails the run) and is dead-lettered.
//!
//! # Layout
//! - [`boundary`]: the boundary of every task — a panic fails the task's run, not the process.
//! - [`config`]: the worker's configuration.
//! - [`encoder`]: the encode role.
//! - [`destination_clients`]: sealed destinations opened, credentials resolved, a client per
//!   run, and the attempts at a destination call (transient failures retried, expired
//!   credentials renewed).
//! - [`uploader`]: the upload role (files, uploaded pending their commit).
//! - [`pending`]: pending uploads as staging records them; committing and undoing one.
//! - [`finalizer`]: the commit (files made visible, manifest, success marker), and the cleanup
//!   of runs that stopped.
//! - [`report`]: publishing worker events, and the outcome of a failed task.

pub mod boundary;
pub mod config;
pub mod destination_clients;
pub mod encoder;
pub mod finalizer;
pub mod pending;
pub mod report;
pub mod uploader;

use config::{Role, WorkerConfig};
use destination_clients::Destinations;
use filedrop_runtime::broker::Broker;
use filedrop_runtime::faults::Faults;
use filedrop_runtime::secrets::SecretBox;
use filedrop_runtime::shutdown::Shutdown;
use filedrop_runtime::staging::Staging;
use filedrop_s3::credentials::ServiceIdentity;
use std::sync::Arc;

/// What every handler needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The broker, for events.
    pub broker: Arc<Broker>,
    /// The staging store.
    pub staging: Staging,
    /// Opens sealed destinations and keeps a client per run.
    pub destinations: Arc<Destinations>,
    /// The configuration.
    pub config: Arc<WorkerConfig>,
    /// Faults injected for tests; none in production.
    pub faults: Arc<Faults>,
}

/// Runs the configured roles until `shutdown` is raised and in-flight tasks are done. `faults`
/// are injected for tests (see `filedrop_runtime::faults`); pass none in production.
pub async fn run(config: WorkerConfig, faults: Faults, shutdown: Shutdown) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    let staging = Staging::local(&config.staging.dir)?;
    let secrets = SecretBox::load_or_create(&config.secrets.key_file)?;
    let broker = Broker::connect(config.broker.clone(), shutdown.clone()).await?;
    let identity = ServiceIdentity::load(&config.aws_identity).await;
    let context = Context {
        broker: broker.clone(),
        staging,
        destinations: Arc::new(Destinations::new(identity, secrets)),
        config: Arc::new(config),
        faults: Arc::new(faults),
    };
    let mut roles = tokio::task::JoinSet::new();
    for role in context.config.roles.clone() {
        let context = context.clone();
        match role {
            Role::Encode => {
                roles.spawn(encoder::run(context));
            }
            Role::Upload => {
                roles.spawn(uploader::run(context.clone()));
                roles.spawn(finalizer::run(context));
            }
        }
    }
    tracing::info!(roles = ?context.config.roles, "worker started");
    while let Some(result) = roles.join_next().await {
        result??;
    }
    broker.close().await;
    Ok(())
}
