//! The integration-test harness: the real filedrop binaries against a real RabbitMQ and a real
//! moto server (authentication on), all on loopback.
//!
//! # Layout
//! - [`services`]: finding RabbitMQ and starting a moto server per test ([`services::Moto`]).
//! - [`stack`]: a control plane and workers in their own directory and RabbitMQ namespace
//!   ([`stack::Stack`]), stopped and cleaned up on drop.
//! - [`data`]: the sample table — integers, floats, awkward strings, timestamps, nulls.
//! - [`client`]: exporting over Arrow Flight and following runs.
//! - [`s3`]: reading back what was delivered.
//! - [`gpg`]: keys made by GnuPG, and `gpg --decrypt`.
//!
//! A test whose service is missing fails and says how to start it; nothing is skipped.

pub mod client;
pub mod data;
pub mod gpg;
pub mod s3;
pub mod services;
pub mod stack;

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests sits in the repository")
        .to_path_buf()
}
