//! Generated protobuf types, compiled from `proto/` at build time.
//!
//! # Layout
//! - [`v1`]: `filedrop.v1`, the public API — the export request carried by Flight `DoPut`, and
//!   the `RunService`.
//! - [`jobs::v1`]: `filedrop.jobs.v1`, the queue contract between the control plane and the
//!   workers (tasks and worker events).

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

/// The public API, package `filedrop.v1`.
pub mod v1 {
    tonic::include_proto!("filedrop.v1");
}

/// The queue contract, package `filedrop.jobs.v1`.
pub mod jobs {
    /// Version 1 of the queue contract.
    pub mod v1 {
        tonic::include_proto!("filedrop.jobs.v1");
    }
}
