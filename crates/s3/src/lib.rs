//! The destination side of filedrop: S3 clients built from a destination, streaming multipart
//! uploads, and the one place that decides what an S3 error means.
//!
//! # Layout
//! - [`client`]: an `aws-sdk-s3` client for an [`S3Destination`](filedrop_proto::v1::S3Destination).
//! - [`errors`]: S3 errors classified into run failure codes, retryable or permanent.
//! - [`upload`]: [`upload::PartWriter`] (a `std::io::Write` that cuts a stream into parts) and
//!   [`upload::upload_stream`] (parts to a multipart upload, or one `PutObject` when small).
//! - [`objects`]: the small operations of the finalize step: check a file, write a marker,
//!   abort abandoned uploads.

pub mod client;
pub mod errors;
pub mod objects;
pub mod upload;

pub use errors::S3Failure;
