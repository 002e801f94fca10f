//! The export domain of filedrop: settings, validation and naming. Pure functions, no I/O, so
//! every rule here is tested with plain unit tests and shared by the control plane and workers.
//!
//! # Layout
//! - [`bucket`]: the S3 bucket naming rules.
//! - [`joda`]: Joda-Time date patterns (`yyyy-MM-dd`) translated to `chrono` formats.
//! - [`template`]: filename templates (`{{run_id}}`, `{{file_number}}`, `{{now|format:'…'}}`).
//! - [`endpoint`]: endpoint URLs and regions of destinations.
//! - [`credential_rules`]: access key ids, secrets and session tokens, role ARNs, External IDs,
//!   session names and trust policies of credentials
//!   that assume a role.
//! - [`export`]: an `ExportRequest` validated into an [`export::ExportSpec`], with object keys.
//! - [`object_settings`]: server-side encryption, storage class, canned ACL and tags of the
//!   objects a destination receives, and what its runs do with objects already there.
//! - [`commit`]: whether an export stream was committed (its `ExportCommit` and what arrived).
//! - [`plan`]: which file each staged segment belongs to when rows are split.
//! - [`serde_prost`]: serde for protobuf messages, as their encoded bytes.
//! - [`failure`]: run failures with a stable code, a message that says what to fix, and
//!   resolutions.

pub mod bucket;
pub mod commit;
pub mod credential_rules;
pub mod endpoint;
pub mod export;
pub mod failure;
pub mod joda;
pub mod object_settings;
pub mod plan;
pub mod serde_prost;
pub mod template;
