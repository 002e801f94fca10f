//! S3 clients for destinations, with the destination's access key or any credentials
//! provider (see [`crate::credentials`]).

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, IdentityCache, Region, SharedCredentialsProvider};
use filedrop_proto::v1::S3Destination;
use std::time::Duration;

/// Limits the client applies to every call.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Attempts per call, the first included, for errors the SDK deems transient.
    pub max_attempts: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one attempt of one call may take.
    pub attempt_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(120),
        }
    }
}

/// A client that writes to `destination` with its access key.
pub fn client_for(destination: &S3Destination, limits: &ClientLimits) -> aws_sdk_s3::Client {
    let key = destination.access_key.clone().unwrap_or_default();
    client_with(
        destination,
        SharedCredentialsProvider::new(crate::credentials::key_credentials(&key)),
        limits,
    )
}

/// A client that writes to `destination` with `credentials`, asked before every call: the
/// providers of [`crate::credentials`] keep and renew credentials themselves.
pub fn client_with(
    destination: &S3Destination,
    credentials: SharedCredentialsProvider,
    limits: &ClientLimits,
) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(destination.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(destination.force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(limits.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect_timeout)
                .operation_attempt_timeout(limits.attempt_timeout)
                .build(),
        )
        .identity_cache(IdentityCache::no_cache());
    if !destination.endpoint_url.is_empty() {
        config = config.endpoint_url(destination.endpoint_url.clone());
    }
    aws_sdk_s3::Client::from_conf(config.build())
}
