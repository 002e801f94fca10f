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
    /// The run store.
    pub run_store: RunStoreConfig,
    /// How received streams are cut into segments.
    pub ingest: IngestConfig,
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
            run_store: RunStoreConfig::default(),
            ingest: IngestConfig::default(),
            broker: BrokerConfig::default(),
            staging: StagingConfig::default(),
            secrets: SecretsConfig::default(),
            aws_identity: AwsIdentityConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The run store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunStoreConfig {
    /// Database URL; `sqlite://<path>` (created if missing).
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
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            segment_max_rows: 131_072,
            segment_max_bytes: 32 * 1024 * 1024,
            max_partitions: 10_000,
            partition_buffer_bytes: 128 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
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
