//! Configuration: one struct per binary, read from a TOML file plus environment variables
//! (`FILEDROP_<SECTION>__<FIELD>`, e.g. `FILEDROP_BROKER__URL`), which win over the file.
//! The sections below are shared by every binary; each has defaults that work on one machine.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Loads `T` from `file` (if given) and the environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(true));
    }
    builder
        .add_source(
            config::Environment::with_prefix("FILEDROP")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("roles"),
        )
        .build()?
        .try_deserialize()
}

/// The RabbitMQ connection and the names of the topology.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// AMQP URL, credentials included (they are never logged).
    pub url: String,
    /// Prefix of every exchange and queue name, so several deployments (or tests) can share
    /// one broker.
    pub namespace: String,
    /// How long to keep trying to reach the broker at start before giving up, in seconds.
    pub connect_timeout_secs: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            namespace: "filedrop".to_owned(),
            connect_timeout_secs: 30,
        }
    }
}

/// Where staged segments and blocks live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StagingConfig {
    /// A local directory shared by the control plane and the workers.
    pub dir: PathBuf,
}

impl Default for StagingConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/filedrop/staging"),
        }
    }
}

/// The key that seals secrets in tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// File holding the base64 of a 32-byte key, shared by the control plane and the workers.
    /// Created with a random key by the first process that finds it missing.
    pub key_file: PathBuf,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("var/filedrop/secret.key"),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `info,filedrop_worker=debug`; `RUST_LOG` wins.
    pub filter: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
