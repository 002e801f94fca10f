//! The control plane's configuration (see `deploy/config/control-plane.example.toml`).

use filedrop_runtime::settings::{BrokerConfig, LogConfig, SecretsConfig, StagingConfig};
use filedrop_s3::credentials::AwsIdentityConfig;
use serde::Deserialize;
use std::net::SocketAddr;

/// The whole configuration of the control plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Address of the gRPC listener: Arrow Flight, RunService and health share it.
    pub listen_addr: SocketAddr,
    /// TLS on the listener.
    pub tls: TlsConfig,
    /// The run store.
    pub run_store: RunStoreConfig,
    /// How received streams are cut into segments.
    pub ingest: IngestConfig,
    /// The replicas' leases on the streams they receive.
    pub leases: LeaseConfig,
    /// RabbitMQ.
    pub broker: BrokerConfig,
    /// The staging store.
    pub staging: StagingConfig,
    /// The key that seals secrets.
    pub secrets: SecretsConfig,
    /// filedrop's own AWS identity, named in the trust policies of iam-role-to-role
    /// credentials.
    pub aws_identity: AwsIdentityConfig,
    /// Logs.
    pub log: LogConfig,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls: TlsConfig::default(),
            run_store: RunStoreConfig::default(),
            ingest: IngestConfig::default(),
            leases: LeaseConfig::default(),
            broker: BrokerConfig::default(),
            staging: StagingConfig::default(),
            secrets: SecretsConfig::default(),
            aws_identity: AwsIdentityConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// TLS on the listener (rustls): both files, or neither for plaintext (behind a proxy or a
/// mesh that terminates TLS, or on loopback).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM.
    pub cert_file: String,
    /// Its private key, PEM.
    pub key_file: String,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The certificate chain.
    pub certificate: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl TlsConfig {
    /// The certificate and key, read; `None` when TLS is off. Refuses one file without the
    /// other, naming the field.
    pub fn identity(&self) -> Result<Option<TlsIdentity>, String> {
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => {
                let read = |field: &str, path: &str| {
                    std::fs::read(path).map_err(|error| format!("tls.{field} {path:?}: {error}"))
                };
                Ok(Some(TlsIdentity {
                    certificate: read("cert_file", &self.cert_file)?,
                    key: read("key_file", &self.key_file)?,
                }))
            }
            (true, false) => Err("tls.key_file is set but tls.cert_file is not: give both, \
                                  or neither for plaintext"
                .into()),
            (false, true) => Err("tls.cert_file is set but tls.key_file is not: give both, \
                                  or neither for plaintext"
                .into()),
        }
    }
}

/// The run store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunStoreConfig {
    /// Database URL: `sqlite://<path>` (created if missing), or
    /// `postgres://<user>[:<password>]@<host>[:<port>]/<database>` (the database must exist) for
    /// several control planes sharing one store.
    pub url: String,
}

impl Default for RunStoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://var/filedrop/runs.db".to_owned(),
        }
    }
}

/// How received streams are cut into segments: a segment ends at whichever limit comes first,
/// and always at a file boundary of a row split.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Most rows in a segment.
    pub segment_max_rows: u64,
    /// Most bytes (Arrow IPC) in a segment; bounds the memory of the ingest and the encoders.
    pub segment_max_bytes: usize,
    /// Most distinct partitions a partitioned run may have; a stream with more fails.
    pub max_partitions: usize,
    /// Most bytes (Arrow IPC) held in the open segments of all partitions of a run; past it
    /// the largest is staged early.
    pub partition_buffer_bytes: usize,
    /// Most fields (nested ones counted) in a stream's schema; a wider schema is refused.
    pub max_columns: usize,
    /// Most rows one record batch may declare; a larger one is refused before it is decoded.
    pub max_batch_rows: u64,
    /// Largest gRPC message accepted, in bytes: one Flight record batch. Larger ones are
    /// refused with `RESOURCE_EXHAUSTED`; clients send large tables in several batches.
    pub max_message_bytes: usize,
    /// Largest single value (a string, a binary), in bytes; a batch holding a larger one is
    /// refused.
    pub max_value_bytes: usize,
    /// Seconds a stream may send nothing before it is dropped and its run fails
    /// (`STREAM_INCOMPLETE`): a client that hung without closing its connection.
    pub idle_timeout_secs: u64,
    /// Seconds a Flight SQL transaction may go without a call (an ingest in it, its end)
    /// before it is rolled back: a client that began one and went away. Its ingests' runs fail
    /// (`STREAM_INCOMPLETE`).
    pub transaction_timeout_secs: u64,
    /// Whether a Flight SQL ingest that names no transaction joins the transaction last begun
    /// on its own connection, as in a database session. ADBC's Flight SQL driver, with
    /// autocommit off, sends its ingests so. Turn it off behind a proxy that carries several
    /// clients' calls on one connection: then only an ingest's `transaction_id` joins it.
    pub transactions_follow_connection: bool,
}

/// Each control-plane replica holds a lease on the runs whose streams it receives: it writes a
/// heartbeat to the run store, and a run still receiving whose replica has been silent for
/// `expiry_secs` (killed, its node lost) is failed by any live replica with
/// `STREAM_INCOMPLETE`, its pending uploads aborted.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// Seconds between heartbeats (and looks for orphaned runs).
    pub heartbeat_secs: u64,
    /// Seconds of silence after which a replica's receiving runs are failed.
    pub expiry_secs: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 5,
            expiry_secs: 30,
        }
    }
}

impl LeaseConfig {
    /// Checks that a lease outlives a few heartbeats.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_secs == 0 || self.expiry_secs < 2 * self.heartbeat_secs {
            return Err(format!(
                "leases.expiry_secs ({}) must be at least twice leases.heartbeat_secs ({}), \
                 which is at least 1: a replica must miss two heartbeats before its runs are \
                 failed",
                self.expiry_secs, self.heartbeat_secs
            ));
        }
        Ok(())
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            segment_max_rows: 131_072,
            segment_max_bytes: 32 * 1024 * 1024,
            max_partitions: 10_000,
            partition_buffer_bytes: 128 * 1024 * 1024,
            max_columns: 10_000,
            max_batch_rows: 16 * 1024 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
            max_value_bytes: 16 * 1024 * 1024,
            idle_timeout_secs: 600,
            transaction_timeout_secs: 900,
            transactions_follow_connection: true,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lease_outlives_two_heartbeats() {
        assert_eq!(super::LeaseConfig::default().validate(), Ok(()));
        let short = super::LeaseConfig {
            heartbeat_secs: 5,
            expiry_secs: 9,
        };
        assert!(short.validate().unwrap_err().contains("leases.expiry_secs"));
        let never = super::LeaseConfig {
            heartbeat_secs: 0,
            expiry_secs: 30,
        };
        assert!(never.validate().is_err());
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        let off = super::TlsConfig::default();
        assert_eq!(off.identity(), Ok(None));
        let half = super::TlsConfig {
            cert_file: "server.pem".into(),
            key_file: String::new(),
        };
        assert!(
            half.identity()
                .unwrap_err()
                .starts_with("tls.cert_file is set")
        );
        let missing = super::TlsConfig {
            cert_file: "/nonexistent/server.pem".into(),
            key_file: "/nonexistent/server.key".into(),
        };
        assert!(missing.identity().unwrap_err().starts_with("tls.cert_file"));
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        filedrop_runtime::settings::assert_example_documents_defaults::<super::ControlPlaneConfig>(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../deploy/config/control-plane.example.toml"
            )
            .as_ref(),
        );
    }
}
