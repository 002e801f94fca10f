//! What every filedrop process shares.
//!
//! # Layout
//! - [`settings`]: loading a binary's configuration from a file plus `FILEDROP_`-prefixed
//!   environment variables, and the sections every binary has (broker, staging, secrets, log).
//! - [`telemetry`]: structured `tracing` logs.
//! - [`broker`]: RabbitMQ through `lapin` — the topology declared on boot, publishing with
//!   confirms, consuming with manual acks and bounded prefetch, reconnection with backoff.
//! - [`staging`]: the staging store (`object_store`; a local directory by default) and the
//!   layout of staged keys.
//! - [`secrets`]: sealing secrets (AES-256-GCM) so they never travel or rest in clear text.
//! - [`panic`]: panics caught at a task's boundary, with the place they happened.
//! - [`tasks`]: what a queued message is about (its run, its work), in words.
//! - [`faults`]: faults injected on purpose (a panic, an abort) to test the boundaries.
//! - [`shutdown`]: a signal every long-running loop watches, raised by SIGINT or SIGTERM.

pub mod broker;
pub mod faults;
pub mod panic;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod staging;
pub mod tasks;
pub mod telemetry;
