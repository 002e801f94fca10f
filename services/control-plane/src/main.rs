//! `filedrop-control-plane`: parse the configuration, start logs, bind, serve until SIGTERM.

use clap::Parser;
use filedrop_control_plane::config::ControlPlaneConfig;
use std::path::PathBuf;

/// The filedrop control plane (Arrow Flight exports, run API, planner).
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
    let config: ControlPlaneConfig =
        filedrop_runtime::settings::load(args.config.as_deref(), &["listen_addr"])?;
    filedrop_runtime::telemetry::init(&config.log);
    let (trigger, shutdown) = filedrop_runtime::shutdown::channel();
    trigger.raise_on_signals();
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    if let Err(error) = filedrop_control_plane::serve(config, listener, shutdown).await {
        tracing::error!(error = %format!("{error:#}"), "control plane failed");
        return Err(error);
    }
    Ok(())
}
