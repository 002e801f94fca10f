//! Destinations as the upload role reaches them: the sealed access opened, its credentials
//! resolved, and one S3 client kept per run for the run's tasks, so that a role is assumed
//! once per run (not per file) and its credentials are renewed by the client as they age.

use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::DestinationAccess;
use filedrop_proto::v1::S3Destination;
use filedrop_runtime::secrets::SecretBox;
use filedrop_s3::S3Failure;
use filedrop_s3::client::{ClientLimits, client_with};
use filedrop_s3::credentials::{Renewal, ServiceIdentity, credentials_for};
use prost::Message;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// A run's client is dropped when no task has used it for this long.
const IDLE_CLIENT: Duration = Duration::from_secs(15 * 60);

/// The destinations of the runs this worker is serving.
#[derive(Debug)]
pub struct Destinations {
    identity: ServiceIdentity,
    secrets: SecretBox,
    clients: Mutex<HashMap<String, Connected>>,
    /// One connection attempt at a time per run: tasks of a run that start together share
    /// one client (one role assumption) instead of each making its own.
    connecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A destination and a client that writes there.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The destination.
    pub destination: S3Destination,
    /// A client with the destination's credentials.
    pub client: aws_sdk_s3::Client,
    /// Renews the client's credentials early, when they are an assumed role's.
    renewal: Option<Renewal>,
    used: Instant,
}

impl Connected {
    /// Runs `attempt` until it succeeds, fails for good, or `attempts` attempts have failed.
    /// A transient destination failure is tried again after a pause that doubles (with
    /// jitter); credentials
    /// the destination refused as expired are renewed and tried again at once, when they can
    /// be renewed (an assumed role's). `destination_failure` finds the destination's failure
    /// in `E`, if that is what failed.
    pub async fn with_attempts<T, E, F, Fut>(
        &self,
        attempts: u32,
        destination_failure: impl Fn(&E) -> Option<&S3Failure>,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut pause = Duration::from_millis(500);
        let mut number = 1;
        loop {
            let started = Instant::now();
            let failed = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            let failure = destination_failure(&failed);
            let renew = failure.is_some_and(|f| f.credentials_expired);
            let again = match (&self.renewal, renew) {
                (Some(_), true) => true,
                _ => failure.is_some_and(|f| f.retryable),
            };
            if !again || number >= attempts.max(1) {
                return Err(failed);
            }
            warn!(attempt = number, error = %failed, "destination failure, trying again");
            match (&self.renewal, renew) {
                (Some(renewal), true) => renewal.renew_obtained_before(started).await,
                _ => {
                    // Jittered, so the tasks a failure hit together do not retry together.
                    let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0);
                    tokio::time::sleep(pause.mul_f64(jitter)).await;
                    pause *= 2;
                }
            }
            number += 1;
        }
    }
}

impl Destinations {
    /// Destinations reached with filedrop's own `identity`, opened with `secrets`.
    pub fn new(identity: ServiceIdentity, secrets: SecretBox) -> Self {
        Self {
            identity,
            secrets,
            clients: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
        }
    }

    /// The destination sealed in a task of `run_id`, with a client for it: the run's client
    /// when one is kept, else a new one whose credentials were just checked.
    pub async fn connect(&self, sealed: &[u8], run_id: &str) -> Result<Connected, S3Failure> {
        if let Some(connected) = self.kept(run_id) {
            return Ok(connected);
        }
        let turn = {
            let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
            connecting.entry(run_id.to_owned()).or_default().clone()
        };
        let _one_at_a_time = turn.lock().await;
        if let Some(connected) = self.kept(run_id) {
            return Ok(connected);
        }
        let access = self.open(sealed).map_err(S3Failure::permanent)?;
        let credentials = credentials_for(&access, &self.identity, run_id).await?;
        let destination = access.destination.unwrap_or_default();
        let client = client_with(&destination, credentials.provider, &ClientLimits::default());
        let connected = Connected {
            destination,
            client,
            renewal: credentials.renewal,
            used: Instant::now(),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|_, kept| kept.used.elapsed() < IDLE_CLIENT);
        clients.insert(run_id.to_owned(), connected.clone());
        let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
        connecting.retain(|run, turn| clients.contains_key(run) || Arc::strong_count(turn) > 1);
        Ok(connected)
    }

    /// Forgets a run's client (when the run has ended).
    pub fn forget(&self, run_id: &str) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.remove(run_id);
        let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
        connecting.remove(run_id);
    }

    fn kept(&self, run_id: &str) -> Option<Connected> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let kept = clients.get_mut(run_id)?;
        kept.used = Instant::now();
        Some(kept.clone())
    }

    fn open(&self, sealed: &[u8]) -> Result<DestinationAccess, RunFailure> {
        let plain = self.secrets.open(sealed).map_err(|error| {
            RunFailure::internal(format!(
                "{error}; the control plane and the workers must share secrets.key_file"
            ))
        })?;
        DestinationAccess::decode(plain.as_slice()).map_err(|error| {
            RunFailure::internal(format!("sealed destination is corrupt: {error}"))
        })
    }
}
