//! Structured logs with `tracing`. Secrets never reach a log line: they are sealed before they
//! leave the API layer, and types that hold them do not print them.

use crate::settings::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, and the panic hook that logs panics through it (see
/// [`crate::panic`]). Logs go to stderr.
pub fn init(config: &LogConfig) {
    crate::panic::install_hook();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.filter.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
