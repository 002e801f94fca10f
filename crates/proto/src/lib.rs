//! Generated protobuf types, compiled from `proto/` at build time.
//!
//! # Layout
//! - [`v1`]: `filedrop.v1`, the public API — the export request carried by Flight `DoPut`, and
//!   the `RunService`.
//! - [`jobs::v1`]: `filedrop.jobs.v1`, the queue contract between the control plane and the
//!   workers (tasks and worker events).
//! - [`FILE_DESCRIPTOR_SET`]: the descriptors of both, for gRPC server reflection.
//! - [`RUN_ID_HEADER`]: the `DoPut` response header naming the run.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

/// The encoded `FileDescriptorSet` of every file of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/filedrop_descriptors.bin"));

/// The response header of an export's `DoPut` naming its run (or the run an idempotency key
/// found). It is sent as soon as the run exists, before the client's stream ends, so that a
/// client interrupted mid-stream can say which run it stopped; Flight SQL clients, whose
/// answer holds only the row count, find the run by it too.
pub const RUN_ID_HEADER: &str = "x-filedrop-run-id";

/// The public API, package `filedrop.v1`.
pub mod v1 {
    tonic::include_proto!("filedrop.v1");

    /// Prints the key id and whether a secret and a token are set, never their values, so a
    /// request or destination can be logged with `?` safely.
    impl std::fmt::Debug for AccessKeyCredential {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let set = |value: &str| if value.is_empty() { "<unset>" } else { "<set>" };
            f.debug_struct("AccessKeyCredential")
                .field("access_key_id", &self.access_key_id)
                .field("secret_access_key", &set(&self.secret_access_key))
                .field("session_token", &set(&self.session_token))
                .field("role_arn", &self.role_arn)
                .field("external_id", &set(&self.external_id))
                .finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{AccessKeyCredential, ExportRequest, S3Destination};

    #[test]
    fn debug_output_never_holds_the_secret() {
        let request = ExportRequest {
            destination: Some(S3Destination {
                access_key: Some(AccessKeyCredential {
                    access_key_id: "AKIDEXAMPLE".into(),
                    secret_access_key: "wJalrXUtnFEMI-secret".into(),
                    session_token: "token-secret".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let printed = format!("{request:?}");
        assert!(printed.contains("AKIDEXAMPLE"), "{printed}");
        assert!(!printed.contains("wJalrXUtnFEMI-secret"), "{printed}");
        assert!(!printed.contains("token-secret"), "{printed}");
    }
}

/// The queue contract, package `filedrop.jobs.v1`.
pub mod jobs {
    /// Version 1 of the queue contract.
    pub mod v1 {
        tonic::include_proto!("filedrop.jobs.v1");
    }
}
