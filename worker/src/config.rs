//! The worker's configuration (see `deploy/config/worker.example.toml`).

use filedrop_runtime::settings::{BrokerConfig, LogConfig, SecretsConfig, StagingConfig};
use filedrop_s3::credentials::AwsIdentityConfig;
use serde::Deserialize;

/// A role a worker process takes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Encode segments into blocks.
    Encode,
    /// Upload files and write success markers.
    Upload,
}

/// The whole configuration of a worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// The roles this process takes.
    pub roles: Vec<Role>,
    /// The encode role.
    pub encode: EncodeConfig,
    /// The upload role.
    pub upload: UploadConfig,
    /// RabbitMQ.
    pub broker: BrokerConfig,
    /// The staging store.
    pub staging: StagingConfig,
    /// The key that opens sealed destinations.
    pub secrets: SecretsConfig,
    /// filedrop's own AWS identity, which assumes iam-role-to-role credentials' roles.
    pub aws_identity: AwsIdentityConfig,
    /// Logs.
    pub log: LogConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            roles: vec![Role::Encode, Role::Upload],
            encode: EncodeConfig::default(),
            upload: UploadConfig::default(),
            broker: BrokerConfig::default(),
            staging: StagingConfig::default(),
            secrets: SecretsConfig::default(),
            aws_identity: AwsIdentityConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// Refuses settings that cannot work, naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.roles.is_empty() {
            return Err("roles is empty: give at least one of \"encode\", \"upload\"".into());
        }
        self.aws_identity.validate()?;
        if !(5..=5 * 1024).contains(&self.upload.part_size_mib) {
            return Err(format!(
                "upload.part_size_mib is {}: S3 parts are 5 MiB to 5 GiB, so give 5 to 5120",
                self.upload.part_size_mib
            ));
        }
        for (field, value) in [
            ("encode.concurrency", usize::from(self.encode.concurrency)),
            ("upload.concurrency", usize::from(self.upload.concurrency)),
            ("upload.parts_in_flight", self.upload.parts_in_flight),
            ("upload.attempts", self.upload.attempts as usize),
        ] {
            if value == 0 {
                return Err(format!("{field} is 0: give at least 1"));
            }
        }
        Ok(())
    }
}

/// The encode role.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeConfig {
    /// Segments encoded at once (and the queue prefetch).
    pub concurrency: u16,
}

impl Default for EncodeConfig {
    fn default() -> Self {
        Self { concurrency: 2 }
    }
}

/// The upload role.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Files uploaded at once (and the queue prefetch).
    pub concurrency: u16,
    /// Multipart part size in MiB, at least 5; raised for files that would need more than
    /// 10,000 parts.
    pub part_size_mib: usize,
    /// Parts of one file uploaded at once.
    pub parts_in_flight: usize,
    /// Attempts of a whole file upload when the destination fails in a transient way (on top of
    /// the SDK's own retries of each call).
    pub attempts: u32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            part_size_mib: 8,
            parts_in_flight: 4,
            attempts: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_part_sizes_s3_does_not_accept_and_zero_concurrency() {
        let mut config = super::WorkerConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.upload.part_size_mib = 4;
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("upload.part_size_mib is 4")
        );
        config.upload.part_size_mib = 8;
        config.upload.parts_in_flight = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("upload.parts_in_flight is 0")
        );
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        filedrop_runtime::settings::assert_example_documents_defaults::<super::WorkerConfig>(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/config/worker.example.toml"
            )
            .as_ref(),
        );
    }
}
