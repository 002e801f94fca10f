//! The credentials a destination is written with, and filedrop's own AWS identity.
//!
//! - iam-credential: the destination's access key, or that key assuming `access_key.role_arn`
//!   (STS at the destination's endpoint when it has one, as S3-compatible stores serve STS
//!   there, else AWS's).
//! - iam-role-to-role: filedrop's own identity ([`ServiceIdentity`]) assumes the bucket owner's
//!   role with the credential's External ID and a session name naming the run.
//!
//! Assumed-role credentials are kept ([`Renewing`]) and renewed once less than
//! `aws_identity.refresh_before_expiry_secs` of their lifetime is left, so a run may outlast
//! many lifetimes.
//! Every STS failure is classified here into the run's error codes.

use crate::errors::S3Failure;
use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::future::ProvideCredentials as ProvideCredentialsFuture;
use aws_sdk_s3::config::{Credentials, ProvideCredentials, Region, SharedCredentialsProvider};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use filedrop_core::credential_rules::session_name;
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::DestinationAccess;
use filedrop_proto::v1::{AccessKeyCredential, ErrorCode};
use serde::Deserialize;
use std::error::Error;
use std::time::{Duration, Instant, SystemTime};

/// filedrop's own AWS identity: what assumes bucket owners' roles for iam-role-to-role
/// credentials. The secret is never printed (`Debug` shows whether it is set).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsIdentityConfig {
    /// Where the identity's credentials come from.
    pub source: AwsIdentitySource,
    /// With `source = "profile"`: the profile's name in the shared AWS config files.
    pub profile: String,
    /// With `source = "static"`: the access key id.
    pub access_key_id: String,
    /// With `source = "static"`: the secret access key (better given as
    /// `FILEDROP_AWS_IDENTITY__SECRET_ACCESS_KEY` than in a file).
    pub secret_access_key: String,
    /// The region of the STS endpoint.
    pub region: String,
    /// STS endpoint URL; empty: AWS's endpoint for the region.
    pub sts_endpoint_url: String,
    /// The principal bucket owners' trust policies name; empty: the identity's own ARN, as STS
    /// `GetCallerIdentity` gives it (an assumed role's role ARN, without its path).
    pub principal_arn: String,
    /// Lifetime asked for assumed-role credentials, 900 to 43,200 seconds.
    pub session_seconds: u64,
    /// Credentials are renewed when they have less than this many seconds left.
    pub refresh_before_expiry_secs: u64,
}

impl Default for AwsIdentityConfig {
    fn default() -> Self {
        Self {
            source: AwsIdentitySource::Default,
            profile: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            region: "us-east-1".to_owned(),
            sts_endpoint_url: String::new(),
            principal_arn: String::new(),
            session_seconds: 3600,
            refresh_before_expiry_secs: 300,
        }
    }
}

impl std::fmt::Debug for AwsIdentityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = if self.secret_access_key.is_empty() {
            "<unset>"
        } else {
            "<set>"
        };
        f.debug_struct("AwsIdentityConfig")
            .field("source", &self.source)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &set)
            .field("region", &self.region)
            .field("sts_endpoint_url", &self.sts_endpoint_url)
            .field("principal_arn", &self.principal_arn)
            .field("session_seconds", &self.session_seconds)
            .field(
                "refresh_before_expiry_secs",
                &self.refresh_before_expiry_secs,
            )
            .finish()
    }
}

impl AwsIdentityConfig {
    /// Refuses settings that cannot work, naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if !(900..=43_200).contains(&self.session_seconds) {
            return Err(format!(
                "aws_identity.session_seconds is {}: STS gives 900 to 43200 seconds",
                self.session_seconds
            ));
        }
        if self.refresh_before_expiry_secs >= self.session_seconds {
            return Err(format!(
                "aws_identity.refresh_before_expiry_secs ({}) must be under session_seconds ({})",
                self.refresh_before_expiry_secs, self.session_seconds
            ));
        }
        if !self.region.is_empty() {
            filedrop_core::endpoint::validate_region(&self.region)
                .map_err(|problem| format!("aws_identity.region: {problem}"))?;
        }
        if !self.sts_endpoint_url.is_empty() {
            filedrop_core::endpoint::validate_endpoint_url(&self.sts_endpoint_url)
                .map_err(|problem| format!("aws_identity.sts_endpoint_url: {problem}"))?;
        }
        match self.source {
            AwsIdentitySource::Profile if self.profile.is_empty() => {
                Err("aws_identity.profile is empty: name the profile, or use another source".into())
            }
            AwsIdentitySource::Static
                if self.access_key_id.is_empty() || self.secret_access_key.is_empty() =>
            {
                Err(
                    "aws_identity: source \"static\" needs access_key_id and secret_access_key"
                        .into(),
                )
            }
            // The same rules as a destination's key: these become request headers too.
            AwsIdentitySource::Static => {
                use filedrop_core::credential_rules::{
                    validate_access_key_id, validate_secret_access_key,
                };
                validate_access_key_id(&self.access_key_id)
                    .map_err(|problem| format!("aws_identity.access_key_id: {problem}"))?;
                validate_secret_access_key(&self.secret_access_key)
                    .map_err(|problem| format!("aws_identity.secret_access_key: {problem}"))
            }
            _ => Ok(()),
        }
    }
}

/// Where filedrop's own AWS credentials come from.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AwsIdentitySource {
    /// The AWS default chain: environment variables, the shared config files' default
    /// profile, web identity (EKS), the container and instance metadata endpoints.
    Default,
    /// A named profile of the shared config files.
    Profile,
    /// `access_key_id` and `secret_access_key`.
    Static,
}

/// filedrop's own AWS identity, which assumes bucket owners' roles.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    sdk_config: aws_config::SdkConfig,
    /// The configured principal, or the one STS named, once asked.
    principal_arn: tokio::sync::OnceCell<String>,
    session_length: Duration,
    refresh_before_expiry: Duration,
}

impl ServiceIdentity {
    /// Loads the identity as `config` says (credentials are resolved lazily, on first use).
    pub async fn load(config: &AwsIdentityConfig) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()));
        if !config.sts_endpoint_url.is_empty() {
            loader = loader.endpoint_url(config.sts_endpoint_url.clone());
        }
        loader = match config.source {
            AwsIdentitySource::Default => loader,
            AwsIdentitySource::Profile => loader.profile_name(config.profile.clone()),
            AwsIdentitySource::Static => loader.credentials_provider(Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
                None,
                None,
                "filedrop-identity",
            )),
        };
        Self {
            sdk_config: loader.load().await,
            principal_arn: if config.principal_arn.is_empty() {
                tokio::sync::OnceCell::new()
            } else {
                tokio::sync::OnceCell::new_with(Some(config.principal_arn.clone()))
            },
            session_length: Duration::from_secs(config.session_seconds),
            refresh_before_expiry: Duration::from_secs(config.refresh_before_expiry_secs),
        }
    }

    /// The principal bucket owners trust: the configured one, or the identity's ARN as STS
    /// `GetCallerIdentity` gives it, an assumed-role session turned into its role's ARN.
    pub async fn principal_arn(&self) -> Result<String, RunFailure> {
        self.principal_arn
            .get_or_try_init(|| self.caller_arn())
            .await
            .cloned()
    }

    async fn caller_arn(&self) -> Result<String, RunFailure> {
        let sts = aws_sdk_sts::Client::new(&self.sdk_config);
        let identity = sts.get_caller_identity().send().await.map_err(|error| {
            RunFailure::new(
                ErrorCode::Internal,
                format!(
                    "filedrop's own AWS identity could not be read (STS GetCallerIdentity: {}): \
                     the operators must configure aws_identity",
                    describe_sts_error(&error)
                ),
            )
        })?;
        let arn = identity.arn().unwrap_or_default();
        Ok(role_arn_of_session(arn).unwrap_or_else(|| arn.to_owned()))
    }

    /// A provider of the credentials of `role_arn` assumed with `external_id`, for `run_id`.
    async fn assume(&self, role_arn: &str, external_id: &str, run_id: &str) -> AssumeRoleProvider {
        AssumeRoleProvider::builder(role_arn)
            .external_id(external_id)
            .session_name(session_name(run_id))
            .session_length(self.session_length)
            .configure(&self.sdk_config)
            .build()
            .await
    }
}

/// `arn:aws:sts::<account>:assumed-role/<role>/<session>` → `arn:aws:iam::<account>:role/<role>`:
/// a trust policy names the role, not one of its sessions.
fn role_arn_of_session(arn: &str) -> Option<String> {
    let (head, resource) = arn.split_once(":assumed-role/")?;
    let (role, _session) = resource.split_once('/')?;
    let head = head.replacen(":sts:", ":iam:", 1);
    Some(format!("{head}:role/{role}"))
}

/// Checks with STS `GetCallerIdentity` that the identity which signs (the destination's key) or
/// assumes the role (filedrop's own) is one STS knows.
pub async fn verify_identity(
    access: &DestinationAccess,
    identity: &ServiceIdentity,
) -> Result<(), S3Failure> {
    let destination = access.destination.clone().unwrap_or_default();
    let (sdk_config, ours) = match (&access.role_to_role, &destination.access_key) {
        (None, Some(key)) => (key_sdk_config(&destination, key).await, false),
        _ => (identity.sdk_config.clone(), true),
    };
    let sts = aws_sdk_sts::Client::new(&sdk_config);
    let Err(error) = sts.get_caller_identity().send().await else {
        return Ok(());
    };
    let status = error.raw_response().map(|r| r.status().as_u16());
    let described = describe_sts_error(&error);
    let (code, retryable, message) = match (&error, status) {
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => (
            ErrorCode::DestinationUnreachable,
            true,
            "could not reach STS: check the endpoint URL and region".to_owned(),
        ),
        (_, Some(status)) if status >= 500 || status == 429 => (
            ErrorCode::DestinationUnreachable,
            true,
            format!("STS failed GetCallerIdentity ({described})"),
        ),
        _ if ours => (
            ErrorCode::Internal,
            false,
            format!(
                "STS refused filedrop's own AWS identity ({described}): the operators must fix \
                 aws_identity"
            ),
        ),
        _ => (
            ErrorCode::InvalidCredentials,
            false,
            format!(
                "STS refused the access key ({described}): check the access key id and secret \
                 access key (and session token), and fix the credential"
            ),
        ),
    };
    let failure = RunFailure::new(code, message);
    Err(if retryable {
        S3Failure::transient(failure)
    } else {
        S3Failure::permanent(failure)
    })
}

/// A destination's access key as SDK credentials (its session token, if any, included).
pub fn key_credentials(key: &AccessKeyCredential) -> Credentials {
    Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.clone(),
        (!key.session_token.is_empty()).then(|| key.session_token.clone()),
        None,
        "filedrop-destination",
    )
}

/// An SDK configuration signing with the destination's key, calling STS at the destination's
/// endpoint when it has one.
async fn key_sdk_config(
    destination: &filedrop_proto::v1::S3Destination,
    key: &AccessKeyCredential,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(destination.region.clone()))
        .credentials_provider(key_credentials(key));
    if !destination.endpoint_url.is_empty() {
        loader = loader.endpoint_url(destination.endpoint_url.clone());
    }
    loader.load().await
}

/// Which credential a destination uses, for the messages of failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AccessKeyAssumingRole,
    RoleToRole,
    /// Credentials a client renews mid-run, of either kind.
    Renewal,
}

/// A destination's credentials as a client takes them, and, when they are an assumed role's,
/// the means to renew them before their time.
#[derive(Debug, Clone)]
pub struct DestinationCredentials {
    /// What a client signs with.
    pub provider: SharedCredentialsProvider,
    /// Renews assumed-role credentials early; `None` for a fixed key.
    pub renewal: Option<Renewal>,
}

/// The credentials of `access` for `run_id`, checked once (an assumed role is assumed now, so
/// a trust policy or External ID problem fails here with a clear code, before any upload).
pub async fn credentials_for(
    access: &DestinationAccess,
    identity: &ServiceIdentity,
    run_id: &str,
) -> Result<DestinationCredentials, S3Failure> {
    let destination = access.destination.clone().unwrap_or_default();
    let (kind, provider, role_arn) = match (&access.role_to_role, &destination.access_key) {
        (Some(grant), _) => (
            Kind::RoleToRole,
            Renewing::shared(
                identity
                    .assume(&grant.role_arn, &grant.external_id, run_id)
                    .await,
                identity.refresh_before_expiry,
            ),
            grant.role_arn.clone(),
        ),
        (None, Some(key)) => {
            if key.role_arn.is_empty() {
                return Ok(DestinationCredentials {
                    provider: SharedCredentialsProvider::new(key_credentials(key)),
                    renewal: None,
                });
            }
            let sdk_config = key_sdk_config(&destination, key).await;
            let mut builder = AssumeRoleProvider::builder(&key.role_arn)
                .session_name(session_name(run_id))
                .session_length(identity.session_length)
                .configure(&sdk_config);
            if !key.external_id.is_empty() {
                builder = builder.external_id(&key.external_id);
            }
            (
                Kind::AccessKeyAssumingRole,
                Renewing::shared(builder.build().await, identity.refresh_before_expiry),
                key.role_arn.clone(),
            )
        }
        (None, None) => {
            return Err(S3Failure::permanent(RunFailure::internal(
                "the destination carries no credential",
            )));
        }
    };
    let (provider, renewal) = provider;
    match provider.provide_credentials().await {
        Ok(_) => Ok(DestinationCredentials {
            provider,
            renewal: Some(renewal),
        }),
        Err(error) => Err(classify_credentials_error(&error, kind, &role_arn)),
    }
}

/// Credentials that expire, kept and renewed once less than `refresh_before` of their lifetime
/// is left. Renewals are one at a time, so the tasks of a run sharing a client assume the role
/// once per renewal. (The SDK's own identity cache spreads renewals at random over half the
/// margin; this one renews at the margin the configuration gives.)
#[derive(Debug)]
struct Renewing {
    inner: SharedCredentialsProvider,
    refresh_before: Duration,
    kept: std::sync::Arc<tokio::sync::Mutex<Option<Kept>>>,
}

/// Credentials as they were obtained.
#[derive(Debug)]
struct Kept {
    credentials: Credentials,
    obtained: Instant,
}

/// Renews a destination's assumed-role credentials before their time: when the destination
/// refuses them as expired (its clock, or a revoked session, may disagree with their expiry).
#[derive(Debug, Clone)]
pub struct Renewal {
    kept: std::sync::Arc<tokio::sync::Mutex<Option<Kept>>>,
}

impl Renewal {
    /// Drops the credentials obtained before `refused_since` (when the refused request's
    /// attempt began), so the next request assumes the role again. Credentials obtained since
    /// are kept: several requests refused together renew once.
    pub async fn renew_obtained_before(&self, refused_since: Instant) {
        let mut kept = self.kept.lock().await;
        if kept.as_ref().is_some_and(|k| k.obtained <= refused_since) {
            *kept = None;
        }
    }
}

impl Renewing {
    /// `inner`'s credentials, kept and renewed, as a provider a client takes, and the handle
    /// that renews them early.
    fn shared(
        inner: impl ProvideCredentials + 'static,
        refresh_before: Duration,
    ) -> (SharedCredentialsProvider, Renewal) {
        let kept = std::sync::Arc::new(tokio::sync::Mutex::new(None));
        let provider = SharedCredentialsProvider::new(Self {
            inner: SharedCredentialsProvider::new(inner),
            refresh_before,
            kept: kept.clone(),
        });
        (provider, Renewal { kept })
    }
}

impl ProvideCredentials for Renewing {
    fn provide_credentials<'a>(&'a self) -> ProvideCredentialsFuture<'a>
    where
        Self: 'a,
    {
        ProvideCredentialsFuture::new(async move {
            let mut kept = self.kept.lock().await;
            if let Some(Kept { credentials, .. }) = kept.as_ref() {
                let fresh = credentials
                    .expiry()
                    .is_none_or(|expiry| SystemTime::now() + self.refresh_before < expiry);
                if fresh {
                    return Ok(credentials.clone());
                }
            }
            let credentials = self.inner.provide_credentials().await?;
            *kept = Some(Kept {
                credentials: credentials.clone(),
                obtained: Instant::now(),
            });
            Ok(credentials)
        })
    }
}

/// The failure of assuming `role_arn`.
fn classify_credentials_error(error: &CredentialsError, kind: Kind, role_arn: &str) -> S3Failure {
    let sts =
        find_in_chain::<SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>>(error);
    let status = sts
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    let code = sts.and_then(|e| e.code());
    let who = match kind {
        Kind::RoleToRole | Kind::Renewal => "filedrop",
        Kind::AccessKeyAssumingRole => "the access key",
    };
    let (code, retryable, message) = match (error, sts, code, status) {
        (CredentialsError::CredentialsNotLoaded(_), _, _, _) => (
            ErrorCode::Internal,
            false,
            "filedrop has no AWS identity of its own to assume the role with: the operators \
             must configure aws_identity"
                .to_owned(),
        ),
        (_, Some(SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)), _, _) => (
            ErrorCode::DestinationUnreachable,
            true,
            format!("could not reach STS to assume {role_arn}: check the endpoint and region"),
        ),
        (_, _, Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken"), _)
            if kind == Kind::RoleToRole =>
        {
            (
                ErrorCode::Internal,
                false,
                "STS refused filedrop's own AWS identity: the operators must fix aws_identity"
                    .to_owned(),
            )
        }
        (_, _, Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken"), _) => (
            ErrorCode::InvalidCredentials,
            false,
            format!(
                "STS refused the access key used to assume {role_arn}: check the access key id \
                 and secret access key (and session token), fix the credential and retry the run"
            ),
        ),
        (_, _, Some("Throttling" | "RequestLimitExceeded"), _) | (_, _, _, Some(429)) => (
            ErrorCode::Throttled,
            true,
            format!("STS is throttling the requests to assume {role_arn}"),
        ),
        (_, _, _, Some(status)) if status >= 500 => (
            ErrorCode::DestinationUnreachable,
            true,
            format!("STS failed the request to assume {role_arn} (HTTP {status})"),
        ),
        // AccessDenied, and 403s whose body does not parse (some STS-compatible servers).
        _ => (
            ErrorCode::RoleAssumptionFailed,
            false,
            match kind {
                Kind::RoleToRole => format!(
                    "{who} may not assume {role_arn}: the role's trust policy must allow \
                     filedrop's principal to call sts:AssumeRole with the credential's External \
                     ID; paste the credential's trust_policy_json into the role and retry the run"
                ),
                Kind::AccessKeyAssumingRole => format!(
                    "{who} may not assume {role_arn}: the role's trust policy must allow the \
                     key's user to call sts:AssumeRole (with the External ID it asks for, if \
                     any), and the user's policy must allow sts:AssumeRole on the role"
                ),
                Kind::Renewal => "the destination's role could no longer be assumed when its \
                     credentials were renewed: check the role's trust policy and retry the run"
                    .to_owned(),
            },
        ),
    };
    let failure = RunFailure::new(code, message);
    if retryable {
        S3Failure::transient(failure)
    } else {
        S3Failure::permanent(failure)
    }
}

/// The failure of an S3 call whose credentials could not be renewed mid-run, if that is why
/// it failed.
pub fn credentials_failure(error: &(dyn Error + 'static)) -> Option<S3Failure> {
    find_in_chain::<CredentialsError>(error)
        .map(|credentials| classify_credentials_error(credentials, Kind::Renewal, "the role"))
}

/// The first error of type `T` in `error`'s source chain, `error` included.
fn find_in_chain<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// An STS error as a short text without the server's message (which may echo the request).
fn describe_sts_error<E: ProvideErrorMetadata>(
    error: &SdkError<E, aws_sdk_sts::config::http::HttpResponse>,
) -> String {
    match (
        error.code(),
        error.raw_response().map(|r| r.status().as_u16()),
    ) {
        (Some(code), _) => code.to_owned(),
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => "no answer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filedrops_own_key_region_and_sts_endpoint_are_checked_as_a_destinations_are() {
        let statically = |access_key_id: &str, secret_access_key: &str| AwsIdentityConfig {
            source: AwsIdentitySource::Static,
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            ..AwsIdentityConfig::default()
        };
        assert_eq!(
            statically("AKIAIOSFODNN7EXAMPLE", "secret").validate(),
            Ok(())
        );
        let error = statically("AKIA\u{7f}BAD", "secret")
            .validate()
            .unwrap_err();
        assert!(error.starts_with("aws_identity.access_key_id:"), "{error}");
        let error = statically("AKIAIOSFODNN7EXAMPLE", "hunter2\n")
            .validate()
            .unwrap_err();
        assert!(
            error.starts_with("aws_identity.secret_access_key:") && !error.contains("hunter2"),
            "{error}"
        );
        let mut config = AwsIdentityConfig {
            region: "us-east-1\r\n".into(),
            ..AwsIdentityConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("aws_identity.region:")
        );
        config.region = "us-east-1".into();
        config.sts_endpoint_url = "http://user:pw@127.0.0.1:5000".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("aws_identity.sts_endpoint_url:")
        );
    }

    #[test]
    fn an_assumed_role_session_is_trusted_as_its_role() {
        assert_eq!(
            role_arn_of_session("arn:aws:sts::123456789012:assumed-role/filedrop/i-0abc")
                .as_deref(),
            Some("arn:aws:iam::123456789012:role/filedrop")
        );
        assert_eq!(
            role_arn_of_session("arn:aws:iam::123456789012:user/filedrop"),
            None
        );
    }

    /// Credentials that expire in 60 seconds, counting how often they are asked for.
    #[derive(Debug, Default)]
    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> ProvideCredentialsFuture<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ProvideCredentialsFuture::ready(Ok(Credentials::new(
                "AKID",
                "secret",
                None,
                Some(SystemTime::now() + Duration::from_secs(60)),
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn credentials_are_kept_until_the_renewal_margin_then_renewed() {
        let counting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, _) = Renewing::shared(Counting(counting.clone()), Duration::from_secs(30));
        for _ in 0..3 {
            kept.provide_credentials().await.unwrap();
        }
        assert_eq!(
            counting.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "kept"
        );
        let (renewed, _) = Renewing::shared(Counting(counting.clone()), Duration::from_secs(61));
        for _ in 0..3 {
            renewed.provide_credentials().await.unwrap();
        }
        assert_eq!(
            counting.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "renewed each time: less than the margin is always left"
        );
    }

    #[tokio::test]
    async fn credentials_refused_as_expired_are_renewed_once() {
        let counting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, renewal) = Renewing::shared(Counting(counting.clone()), Duration::from_secs(30));
        let asked = || counting.load(std::sync::atomic::Ordering::SeqCst);
        kept.provide_credentials().await.unwrap();
        let refused_since = Instant::now();
        // Two requests refused together: one renewal.
        renewal.renew_obtained_before(refused_since).await;
        kept.provide_credentials().await.unwrap();
        renewal.renew_obtained_before(refused_since).await;
        kept.provide_credentials().await.unwrap();
        assert_eq!(asked(), 2);
        // A refusal of the renewed credentials renews again.
        renewal.renew_obtained_before(Instant::now()).await;
        kept.provide_credentials().await.unwrap();
        assert_eq!(asked(), 3);
    }

    #[test]
    fn a_missing_identity_and_a_refused_role_say_who_must_fix_what() {
        let missing = CredentialsError::not_loaded("no credentials in the chain");
        let failure = classify_credentials_error(&missing, Kind::RoleToRole, "arn:r");
        assert_eq!(failure.failure.code, ErrorCode::Internal);
        assert!(failure.failure.message.contains("aws_identity"));

        let refused = CredentialsError::provider_error("denied");
        let failure = classify_credentials_error(&refused, Kind::RoleToRole, "arn:r");
        assert_eq!(failure.failure.code, ErrorCode::RoleAssumptionFailed);
        assert!(!failure.retryable);
        assert!(failure.failure.message.contains("trust_policy_json"));
        let failure = classify_credentials_error(&refused, Kind::AccessKeyAssumingRole, "arn:r");
        assert!(
            failure
                .failure
                .message
                .starts_with("the access key may not assume arn:r")
        );
    }
}
