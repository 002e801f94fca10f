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
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return S3Failure {
                failure: RunFailure::new(
                    ErrorCode::DestinationUnreachable,
                    format!(
                        "could not reach the destination for {operation} on {target}: check the \
                         endpoint URL and region, and that the store is up"
                    ),
                ),
                retryable: true,
            };
        }
        _ => {}
    }
    classify_code(error.code(), status, operation, &target)
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
    let (code, retryable, message) = match (code, status) {
        (
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "TokenRefreshRequired"
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
