//! Configuration: one struct per binary, read from a TOML file plus environment variables,
//! which win over the file: `FILEDROP_<SECTION>__<FIELD>` (e.g. `FILEDROP_BROKER__URL`) and
//! `FILEDROP_<TOP_LEVEL_FIELD>` for the top-level fields a binary names (e.g.
//! `FILEDROP_LISTEN_ADDR`). Other `FILEDROP_*` variables belong to tools and are ignored, so
//! that unknown fields can still be refused (`deny_unknown_fields`) to catch typos.
//! The sections below are shared by every binary; each has defaults that work on one machine.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The prefix of configuration variables.
const ENV_PREFIX: &str = "FILEDROP_";

/// Loads `T` from `file` (if given) and the environment. `top_level` names the top-level
/// scalar fields that may come from `FILEDROP_<FIELD>`; list fields among them (`roles`) are
/// comma-separated.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    top_level: &[&str],
) -> Result<T, config::ConfigError> {
    load_from(file, top_level, std::env::vars())
}

/// [`load`] with the environment given, for tests.
pub fn load_from<T: DeserializeOwned>(
    file: Option<&Path>,
    top_level: &[&str],
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(true));
    }
    let settings: HashMap<String, String> = vars
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX).is_some_and(|rest| {
                rest.contains("__") || top_level.contains(&rest.to_ascii_lowercase().as_str())
            })
        })
        .collect();
    let mut environment = config::Environment::with_prefix("FILEDROP")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(settings));
    if top_level.contains(&"roles") {
        // Without a list key, a list separator would turn every value into a list.
        environment = environment.list_separator(",").with_list_parse_key("roles");
    }
    builder.add_source(environment).build()?.try_deserialize()
}

/// Checks that the example configuration file at `path` parses into `T` and documents exactly
/// the defaults; binaries call it from a unit test so their example file stays in sync.
pub fn assert_example_documents_defaults<T>(path: &Path)
where
    T: DeserializeOwned + Default + std::fmt::Debug,
{
    let example: T = load_from(Some(path), &[], Vec::new())
        .unwrap_or_else(|error| panic!("{} does not load: {error}", path.display()));
    assert_eq!(
        format!("{example:#?}"),
        format!("{:#?}", T::default()),
        "{} must show every setting with its default",
        path.display()
    );
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
    /// How long a failed run's staged data is kept so that the run can be retried, in hours
    /// (0: deleted when the run fails; it cannot be retried). The control plane's sweep
    /// deletes it after that, and the stop marks of cancelled runs too.
    pub keep_failed_hours: u64,
    /// How often the control plane sweeps staging for what ended runs left, in seconds.
    pub sweep_interval_secs: u64,
}

impl Default for StagingConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/filedrop/staging"),
            keep_failed_hours: 24,
            sweep_interval_secs: 300,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        listen_addr: String,
        roles: Vec<String>,
        broker: BrokerConfig,
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_sections_and_named_top_level_fields_and_ignores_tool_variables() {
        let sample: Sample = load_from(
            None,
            &["listen_addr", "roles"],
            vars(&[
                ("FILEDROP_BROKER__NAMESPACE", "ns"),
                ("FILEDROP_BROKER__URL", "amqp://127.0.0.1/%2f"),
                ("FILEDROP_LISTEN_ADDR", "127.0.0.1:1"),
                ("FILEDROP_ROLES", "encode,upload"),
                ("FILEDROP_VENV", "/somewhere"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(sample.broker.namespace, "ns");
        assert_eq!(sample.broker.url, "amqp://127.0.0.1/%2f");
        assert_eq!(sample.listen_addr, "127.0.0.1:1");
        assert_eq!(sample.roles, ["encode", "upload"]);
    }

    #[test]
    fn values_stay_scalars_without_list_fields() {
        let broker: BrokerOnly =
            load_from(None, &[], vars(&[("FILEDROP_BROKER__NAMESPACE", "a,b")])).unwrap();
        assert_eq!(broker.broker.namespace, "a,b");
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct BrokerOnly {
        broker: BrokerConfig,
    }

    #[test]
    fn refuses_misspelled_fields() {
        let error =
            load_from::<Sample>(None, &[], vars(&[("FILEDROP_BROKER__URLL", "x")])).unwrap_err();
        assert!(error.to_string().contains("urll"), "{error}");
    }
}
