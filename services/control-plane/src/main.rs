//! `filedrop-control-plane`: parse the configuration, start logs, bind, serve until SIGTERM;
//! or, with `token create`, make an API token.

use clap::{Parser, Subcommand};
use filedrop_control_plane::config::ControlPlaneConfig;
use filedrop_runtime::faults::Faults;
use std::path::PathBuf;

/// The filedrop control plane (Arrow Flight exports, run API, planner).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML); `FILEDROP_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// What to do instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates an API token for a tenant and prints it, once: the run store keeps only its
    /// SHA-256.
    Create {
        /// The tenant the token acts for (created with its first token).
        #[arg(long)]
        tenant: String,
        /// What the token is for, to tell tokens apart.
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: ControlPlaneConfig =
        filedrop_runtime::settings::load(args.config.as_deref(), &["listen_addr"])?;
    if let Some(Command::Token {
        command: TokenCommand::Create { tenant, name },
    }) = args.command
    {
        let token =
            filedrop_control_plane::auth::create_token(&config.run_store.url, &tenant, &name)
                .await?;
        println!("{token}");
        return Ok(());
    }
    filedrop_runtime::telemetry::init(&config.log);
    let (trigger, shutdown) = filedrop_runtime::shutdown::channel();
    trigger.raise_on_signals();
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    // Faults injected on purpose, by the tests of failure handling only.
    let faults = Faults::parse(&std::env::var("FILEDROP_TEST_FAULTS").unwrap_or_default())
        .map_err(|problem| anyhow::anyhow!("FILEDROP_TEST_FAULTS: {problem}"))?;
    if let Err(error) = filedrop_control_plane::serve(config, listener, faults, shutdown).await {
        tracing::error!(error = %format!("{error:#}"), "control plane failed");
        return Err(error);
    }
    Ok(())
}
