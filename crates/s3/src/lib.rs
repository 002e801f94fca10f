//! The destination side of filedrop: S3 clients built from a destination, streaming multipart
//! uploads, and the one place that decides what an S3 error means.
//!
//! # Layout
//! - [`client`]: an `aws-sdk-s3` client for an [`S3Destination`](filedrop_proto::v1::S3Destination).
//! - [`credentials`]: the credentials of a destination (its access key, possibly assuming a
//!   role, or an iam-role-to-role grant assumed by filedrop's own [`credentials::ServiceIdentity`]),
//!   and the classification of STS failures.
//! - [`errors`]: S3 errors classified into run failure codes, retryable or permanent.
//! - [`upload`]: [`upload::PartWriter`] (a `std::io::Write` that cuts a stream into parts) and
//!   [`upload::upload_pending`] (parts to a multipart upload left open, or a small file in
//!   hand), completed at the commit ([`upload::complete_upload`]).
//! - [`objects`]: how objects are stored ([`objects::ObjectOptions`]), what a write expects at
//!   its key ([`objects::Expect`], sent as `If-None-Match`/`If-Match`), and the small
//!   operations of the finalize step: check a file, write a marker, abort abandoned uploads.
//! - [`probe`]: a destination tested without sending data (credentials, role, bucket, a probe
//!   object written and deleted).

pub mod client;
pub mod credentials;
pub mod errors;
pub mod objects;
pub mod probe;
pub mod upload;

pub use errors::S3Failure;
