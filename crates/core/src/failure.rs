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

    /// A piece of work that a fault inside filedrop stopped (a panic, a process that died on
    /// it each time): `the <work> <what happened>; the run cannot go on …`. Says it is not the
    /// data's or the destination's fault, and what to do.
    pub fn fault(work: &str, what_happened: impl std::fmt::Display) -> Self {
        Self::internal(format!(
            "the {work} {what_happened}; the run cannot go on. This is a fault in filedrop, not \
             in the data or the destination: retry the run, and tell the operators if it fails \
             the same way again"
        ))
    }

    /// A piece of work that panicked, at the place `panic` names (never its message, which
    /// may quote data).
    pub fn panicked(work: &str, panic: impl std::fmt::Display) -> Self {
        Self::fault(work, format_args!("failed unexpectedly (filedrop {panic})"))
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
        C::StreamIncomplete => vec![R::SendAgain],
        C::ObjectExists => vec![R::FixDestination, R::Retry],
        C::Unspecified => vec![],
    }
}
