//! The one mapping from control-plane errors to `tonic::Status`. Refusals carry the stable
//! error code in the `filedrop-error-code` metadata key, beside a message naming the field.

use filedrop_proto::v1::ErrorCode;
use tonic::{Code, Status};

/// Metadata key of the stable error code on refusals.
pub const ERROR_CODE_KEY: &str = "filedrop-error-code";

/// A refused request: `INVALID_ARGUMENT` with the message and, when known, the error code.
pub fn invalid_argument(code: ErrorCode, message: impl Into<String>) -> Status {
    with_code(Status::new(Code::InvalidArgument, message.into()), code)
}

/// A fault inside the control plane. The detail is logged; the caller learns only that it was
/// internal (the detail could name paths or hosts).
pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::error!(%error, context, "internal error");
    with_code(
        Status::internal(format!("internal error while {context}; retry the export")),
        ErrorCode::Internal,
    )
}

fn with_code(mut status: Status, code: ErrorCode) -> Status {
    if code != ErrorCode::Unspecified
        && let Ok(value) = code.as_str_name().parse()
    {
        status.metadata_mut().insert(ERROR_CODE_KEY, value);
    }
    status
}

/// A call whose error is a fault inside the control plane, answered as [`internal`]:
/// `store.get_run(id).await.or_internal("reading the run")?`.
pub trait OrInternal<T> {
    /// The value, or `INTERNAL` saying what the control plane was doing.
    fn or_internal(self, context: &str) -> Result<T, Status>;
}

impl<T, E: std::fmt::Display> OrInternal<T> for Result<T, E> {
    fn or_internal(self, context: &str) -> Result<T, Status> {
        self.map_err(|error| internal(context, &error))
    }
}

/// A refusal with its stable error code, answered as [`invalid_argument`].
pub trait Refused {
    /// `INVALID_ARGUMENT` with the message and code.
    fn refused(self) -> Status;
}

impl Refused for filedrop_core::export::InvalidRequest {
    fn refused(self) -> Status {
        invalid_argument(self.code, self.to_string())
    }
}

impl Refused for filedrop_core::failure::RunFailure {
    fn refused(self) -> Status {
        invalid_argument(self.code, self.message)
    }
}

impl Refused for filedrop_formats::format::SchemaProblem {
    fn refused(self) -> Status {
        let code = match self {
            Self::UnsupportedType { .. } => ErrorCode::UnsupportedType,
            Self::RowNumberClash(_) => ErrorCode::Unspecified,
        };
        invalid_argument(code, self.to_string())
    }
}

impl Refused for filedrop_formats::partition::PartitionProblem {
    fn refused(self) -> Status {
        let code = match self {
            Self::UnsupportedType { .. } => ErrorCode::UnsupportedType,
            Self::MissingColumn { .. } => ErrorCode::Unspecified,
        };
        invalid_argument(code, self.to_string())
    }
}
