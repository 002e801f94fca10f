//! The client side of filedrop's export protocol, for Rust clients (the `filedrop` command
//! line, the test harness, the quickstart's sample export).
//!
//! # Layout
//! - [`commit`]: an export stream that ends with its `ExportCommit`, counted from the
//!   messages it sends, and only when its source ended without an error.

pub mod commit;

pub use commit::committed;
