//! What an S3 error means for the run: the one place that maps S3 error codes and HTTP
//! statuses to run failure codes and decides whether an error is worth retrying.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::ErrorCode;

/// A failed S3 call, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{failure}")]
pub struct S3Failure {
    /// What the user sees.
    pub failure: RunFailure,
    /// Whether trying again later may succeed.
    pub retryable: bool,
    /// The destination refused temporary credentials as expired (`ExpiredToken`): a client
    /// whose credentials can be renewed renews them and tries again at once; with a fixed
    /// session token the failure is permanent.
    pub credentials_expired: bool,
}

impl S3Failure {
    /// A failure that trying again will not mend.
    pub fn permanent(failure: RunFailure) -> Self {
        Self {
            failure,
            retryable: false,
            credentials_expired: false,
        }
    }

    /// A failure that may pass if tried again later.
    pub fn transient(failure: RunFailure) -> Self {
        Self {
            failure,
            retryable: true,
            credentials_expired: false,
        }
    }
}

/// Classifies an SDK error from `operation` (e.g. `PutObject`) on `s3://bucket/key`.
///
/// The message names the operation and the object, and never the server's own text, which
/// could echo request details.
pub fn classify<E>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    operation: &str,
    bucket: &str,
    key: &str,
) -> S3Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(failure) = crate::credentials::credentials_failure(error) {
        return failure;
    }
    let status = error.raw_response().map(|r| r.status().as_u16());
    let target = if key.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{key}")
    };
    match error {
        SdkError::DispatchFailure(_) if untrusted_certificate(error) => {
            return S3Failure::permanent(RunFailure::new(
                ErrorCode::DestinationUnreachable,
                format!(
                    "the destination's TLS certificate is not trusted ({operation} on {target}): \
                     it must be valid for the endpoint's host name and chain to a CA in the \
                     system's store, or to one the operators name with SSL_CERT_FILE"
                ),
            ));
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return S3Failure::transient(RunFailure::new(
                ErrorCode::DestinationUnreachable,
                format!(
                    "could not reach the destination for {operation} on {target}: check the \
                     endpoint URL and region, and that the store is up"
                ),
            ));
        }
        _ => {}
    }
    classify_code(error.code(), status, operation, &target)
}

/// Whether a call failed because the TLS handshake refused the server's certificate (the
/// TLS library's error sits deep in the chain, named only in its text).
fn untrusted_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
            return true;
        }
        current = error.source();
    }
    false
}

/// Classifies by S3 error code and HTTP status; split out so it is tested without the SDK.
pub fn classify_code(
    code: Option<&str>,
    status: Option<u16>,
    operation: &str,
    target: &str,
) -> S3Failure {
    let described = match code {
        Some(code) => format!("{code} on {operation} {target}"),
        None => format!(
            "HTTP {} on {operation} {target}",
            status.map_or("error".to_owned(), |s| s.to_string())
        ),
    };
    // A HEAD answer has no body, so S3 cannot name its reason: a bare 400 there is, in
    // practice, a session token that expired.
    let bare_head_400 = code.is_none() && status == Some(400) && operation.starts_with("Head");
    let credentials_expired =
        matches!(code, Some("ExpiredToken" | "TokenRefreshRequired")) || bare_head_400;
    let (code, retryable, message) = match (code, status) {
        (Some("ExpiredToken" | "TokenRefreshRequired"), _) => (
            ErrorCode::InvalidCredentials,
            false,
            format!(
                "the destination refused the credential's session token as expired \
                 ({described}): give the credential a fresh session token, or a role to assume \
                 (filedrop renews assumed roles' credentials itself), and retry the run"
            ),
        ),
        _ if bare_head_400 => (
            ErrorCode::InvalidCredentials,
            false,
            format!(
                "the destination refused the request ({described}) without a reason, as it \
                 answers HEAD requests; the usual cause is an expired session token: give the \
                 credential a fresh one, or a role to assume, and retry the run"
            ),
        ),
        (Some("BadDigest" | "XAmzContentSHA256Mismatch" | "XAmzContentChecksumMismatch"), _) => (
            ErrorCode::DestinationUnreachable,
            true,
            format!(
                "the destination received bytes that do not match their checksum \
                 ({described}): they were damaged on the way"
            ),
        ),
        (
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "InvalidSecurity"
                | "InvalidClientTokenId",
            ),
            _,
        ) => (
            ErrorCode::InvalidCredentials,
            false,
            format!(
                "the destination refused the credential ({described}): check the access key id \
                 and secret access key (and session token), fix the credential and retry the run"
            ),
        ),
        (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => (
            ErrorCode::Internal,
            true,
            format!(
                "{target} changed while filedrop wrote it ({described}): something else writes \
                 the same key; filedrop looks again before it retries, and a run whose keys \
                 keep changing fails — give each export its own prefix"
            ),
        ),
        (Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem"), _) => (
            ErrorCode::AccessDenied,
            false,
            format!(
                "access denied ({described}): the credential is valid but may not call \
                 s3:{operation} there; grant it in the bucket or IAM policy and retry the run"
            ),
        ),
        (Some("NotFound") | None, Some(404)) if operation == "HeadBucket" => (
            ErrorCode::BucketNotFound,
            false,
            format!("the bucket does not exist ({described}): check the bucket name and region"),
        ),
        (Some("NoSuchBucket"), _) => (
            ErrorCode::BucketNotFound,
            false,
            format!("the bucket does not exist ({described}): check the bucket name and region"),
        ),
        (Some(kms), _) if kms.starts_with("KMS.") || kms == "KMSAccessDenied" => (
            ErrorCode::KmsKeyError,
            false,
            format!("the KMS key could not be used ({described}): check the key id and its policy"),
        ),
        (Some("NotImplemented"), _) | (_, Some(501)) => (
            ErrorCode::Internal,
            false,
            format!("the destination does not implement this call ({described})"),
        ),
        (Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded"), _)
        | (_, Some(429 | 503)) => (
            ErrorCode::Throttled,
            true,
            format!("the destination is throttling requests ({described})"),
        ),
        (Some("RequestTimeout" | "InternalError" | "ServiceUnavailable"), _) => (
            ErrorCode::DestinationUnreachable,
            true,
            format!("the destination failed a request ({described})"),
        ),
        (_, Some(status)) if status >= 500 => (
            ErrorCode::DestinationUnreachable,
            true,
            format!("the destination failed a request ({described})"),
        ),
        (_, Some(403)) => (
            ErrorCode::AccessDenied,
            false,
            format!(
                "the destination refused the request ({described}): check the credential and \
                 its permissions"
            ),
        ),
        _ => (
            ErrorCode::Internal,
            false,
            format!("unexpected answer from the destination ({described})"),
        ),
    };
    S3Failure {
        failure: RunFailure::new(code, message),
        retryable,
        credentials_expired,
    }
}

#[cfg(test)]
mod tests {
    use super::classify_code;
    use filedrop_proto::v1::ErrorCode;

    fn code_of(code: Option<&str>, status: Option<u16>) -> (ErrorCode, bool) {
        let failure = classify_code(code, status, "PutObject", "s3://b/k");
        (failure.failure.code, failure.retryable)
    }

    #[test]
    fn maps_codes_to_failures() {
        assert_eq!(
            code_of(Some("SignatureDoesNotMatch"), Some(403)),
            (ErrorCode::InvalidCredentials, false)
        );
        assert_eq!(
            code_of(Some("InvalidAccessKeyId"), Some(403)),
            (ErrorCode::InvalidCredentials, false)
        );
        assert_eq!(
            code_of(Some("AccessDenied"), Some(403)),
            (ErrorCode::AccessDenied, false)
        );
        assert_eq!(
            code_of(Some("NoSuchBucket"), Some(404)),
            (ErrorCode::BucketNotFound, false)
        );
        let head = classify_code(Some("NotFound"), Some(404), "HeadBucket", "s3://b");
        assert_eq!(head.failure.code, ErrorCode::BucketNotFound);
        assert_eq!(
            code_of(Some("SlowDown"), Some(503)),
            (ErrorCode::Throttled, true)
        );
        assert_eq!(code_of(None, Some(429)), (ErrorCode::Throttled, true));
        assert_eq!(
            code_of(None, Some(502)),
            (ErrorCode::DestinationUnreachable, true)
        );
        assert_eq!(
            code_of(Some("KMS.NotFoundException"), Some(400)),
            (ErrorCode::KmsKeyError, false)
        );
        let expired = classify_code(Some("ExpiredToken"), Some(400), "UploadPart", "s3://b/k");
        assert_eq!(expired.failure.code, ErrorCode::InvalidCredentials);
        assert!(expired.credentials_expired && !expired.retryable);
        assert!(
            !classify_code(Some("InvalidToken"), None, "PutObject", "s3://b/k").credentials_expired
        );
        let head = classify_code(None, Some(400), "HeadObject", "s3://b/k");
        assert!(head.credentials_expired, "a HEAD answer cannot say why");
        assert_eq!(head.failure.code, ErrorCode::InvalidCredentials);
        assert!(!classify_code(None, Some(400), "PutObject", "s3://b/k").credentials_expired);
        assert_eq!(
            code_of(Some("BadDigest"), Some(400)),
            (ErrorCode::DestinationUnreachable, true)
        );
        assert_eq!(
            code_of(Some("PreconditionFailed"), Some(412)),
            (ErrorCode::Internal, true)
        );
        assert_eq!(
            code_of(Some("Weird"), Some(400)),
            (ErrorCode::Internal, false)
        );
    }

    #[test]
    fn messages_say_what_to_fix() {
        let failure = classify_code(
            Some("SignatureDoesNotMatch"),
            Some(403),
            "PutObject",
            "s3://b/k",
        );
        assert!(failure.failure.message.contains("fix the credential"));
        assert!(failure.failure.message.contains("s3://b/k"));
    }
}
