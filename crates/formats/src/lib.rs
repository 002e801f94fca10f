//! File formats: encoding staged Arrow segments into *blocks*, and assembling a file's blocks
//! into the delivered bytes.
//!
//! A block is what one encoder produces from one segment; a file is one or more blocks from
//! consecutive segments. Blocks are what make one file parallel: delimited and NDJSON blocks
//! concatenate, JSON array blocks are joined with commas inside brackets, and Parquet blocks
//! are small Parquet files whose row groups the assembler appends under one footer.
//!
//! # Layout
//! - [`format`]: the output of a run ([`format::Output`]: format, options, row numbers) and the
//!   types each format can carry.
//! - [`compress`]: gzip, zstd and bzip2, whose members concatenate.
//! - [`archive`]: zip, tar and tgz archives holding the assembled file.
//! - [`pgp`]: OpenPGP encryption of the delivered file, streamed, last.
//! - [`delimited`]: the delimited text writer (quote modes, escapes, null and empty literals,
//!   line endings).
//! - [`segment`]: reading and writing Arrow IPC segments (the staged form of received rows).
//! - [`encode`]: one segment to one block.
//! - [`assemble`]: a file's blocks to the delivered bytes, written to any `std::io::Write`.
//! - [`partition`]: rows grouped by the key text of their partition columns' values.
//! - [`untrusted`]: checks of clients' Arrow IPC messages before the decoder sees them.
//! - [`size`]: upper bounds on a delivered file's size from its blocks' sizes (splits by size).

pub mod archive;
pub mod assemble;
pub mod compress;
pub mod delimited;
pub mod encode;
pub mod format;
pub mod partition;
pub mod pgp;
pub mod segment;
pub mod size;
pub mod untrusted;

/// Errors of encoding and assembling.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Arrow could not read or write the data.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Parquet could not read or write the data.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Blocks of one file disagree with each other or with the run's schema.
    #[error("inconsistent blocks: {0}")]
    Inconsistent(String),
    /// The file is larger than its container allows.
    #[error("{0}")]
    FileTooLarge(String),
}
