//! Run failures: what a user sees when a run fails. Each has a stable [`ErrorCode`], a message
//! that says what to fix, and the [`Resolution`]s that apply.

use filedrop_proto::v1::{ErrorCode, Resolution, RunError};

/// Why a run failed, in terms a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RunFailure {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened and what to fix.
    pub message: String,
    /// What can resolve it.
    pub resolutions: Vec<Resolution>,
}

impl RunFailure {
    /// A failure with the resolutions that usually apply to `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            resolutions: default_resolutions(code),
        }
    }

    /// A fault inside filedrop.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The wire form.
    pub fn to_proto(&self) -> RunError {
        RunError {
            code: self.code.into(),
            message: self.message.clone(),
            resolutions: self.resolutions.iter().map(|r| (*r).into()).collect(),
        }
    }
}

/// The resolutions that apply to a code when nothing more specific is known.
pub fn default_resolutions(code: ErrorCode) -> Vec<Resolution> {
    use ErrorCode as C;
    use Resolution as R;
    match code {
        C::InvalidBucketName | C::BucketNotFound => vec![R::FixDestination],
        C::InvalidCredentials | C::RoleAssumptionFailed => vec![R::FixCredential, R::Retry],
        C::AccessDenied | C::KmsKeyError => vec![R::FixCredential, R::FixDestination, R::Retry],
        C::Throttled | C::DestinationUnreachable | C::Internal => vec![R::Retry],
        C::InvalidPgpKey | C::InvalidTemplate | C::UnsupportedType | C::FileTooLarge => {
            vec![R::FixRequest]
        }
        C::Unspecified => vec![],
    }
}
