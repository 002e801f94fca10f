//! `filedrop-worker`: parse the configuration, start logs, run the roles until SIGTERM.

use clap::Parser;
use filedrop_runtime::faults::Faults;
use filedrop_worker::config::WorkerConfig;
use std::path::PathBuf;

/// A filedrop worker (encode and/or upload roles).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML); `FILEDROP_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: WorkerConfig =
        filedrop_runtime::settings::load(args.config.as_deref(), &["roles"])?;
    filedrop_runtime::telemetry::init(&config.log);
    let (trigger, shutdown) = filedrop_runtime::shutdown::channel();
    trigger.raise_on_signals();
    // Faults injected on purpose, by the tests of failure handling only.
    let faults = Faults::parse(&std::env::var("FILEDROP_TEST_FAULTS").unwrap_or_default())
        .map_err(|problem| anyhow::anyhow!("FILEDROP_TEST_FAULTS: {problem}"))?;
    if let Err(error) = filedrop_worker::run(config, faults, shutdown).await {
        tracing::error!(error = %format!("{error:#}"), "worker failed");
        return Err(error);
    }
    Ok(())
}
