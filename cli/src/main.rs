//! `filedrop`, the command line of filedrop: send a file as an export and watch it go, and
//! follow, cancel and retry runs, list destinations and credentials, test a destination.
//!
//! # Layout
//! - `main.rs`: the global flags and the commands, dispatch, and the exit codes.
//! - [`commands`]: a module per command, each with its arguments and its handler: `export`,
//!   `runs`, `destinations` (with `test-connection`), `credentials`.
//! - [`output`]: what the commands print, for people or `--json` for scripts.
//! - [`api`]: the connection to the control plane (address, token, TLS).
//! - [`input`]: the files an export reads (Parquet, CSV, Arrow IPC file or stream).
//! - `tests.rs`: the unit tests of the global flags, the top-level commands and the exit codes.
//!
//! Exit codes: 0 done (a run that succeeded); 1 the run failed or was cancelled, or the
//! connection test found a problem; 2 bad usage;
//! 3 the server refused the request (invalid, not found, not possible now) or the input
//! cannot be read; 4 the token was refused; 5 the server could not be reached or failed.

mod api;
mod commands;
mod input;
mod output;

use clap::{Parser, Subcommand};
use commands::{CommandOutcome, Interrupted, Refused, credentials, destinations, export, runs};
use output::Printer;
use std::process::ExitCode;
use tonic::Code;

/// Send files to filedrop and follow their delivery.
#[derive(Debug, Parser)]
#[command(name = "filedrop", version)]
struct Cli {
    /// The control plane's address.
    #[arg(
        long,
        env = "FILEDROP_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// The API token (from `filedrop-control-plane token create`); never printed.
    #[arg(long, env = "FILEDROP_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// PEM of the CA that signed the server's certificate, for an https:// server.
    #[arg(long, env = "FILEDROP_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// Print JSON for scripts instead of text for people (and no progress bars).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a file (Parquet, CSV, Arrow; `-` for an Arrow IPC stream on standard input) to a
    /// stored destination, then follow the run to its end.
    Export(export::ExportArgs),
    /// Runs: list, get, watch, cancel, retry.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Stored destinations: create, list, get, delete.
    #[command(subcommand)]
    Destinations(destinations::DestinationsCommand),
    /// Stored credentials: create-role, create-key, list, get, delete.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Check that a stored destination can be written, without sending data.
    TestConnection {
        /// The destination's name or id.
        destination: String,
    },
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("filedrop: cannot start: {error}");
            return ExitCode::from(5);
        }
    };
    let code = runtime.block_on(command());
    // The process ends here, its tasks with it: a send stopped early (Ctrl-C, an unreadable
    // file) still has its stream open, and the connection closing with it tells the server
    // the stream broke. Shutting the runtime down would end that stream cleanly instead, and
    // wait for a reader blocked on standard input.
    std::process::exit(i32::from(code));
}

async fn command() -> u8 {
    let cli = Cli::parse();
    input::quiet_reader_panics();
    let out = Printer { json: cli.json };
    match run(cli, &out).await {
        Ok(None) => 0,
        Ok(Some(CommandOutcome::Failed)) => 1,
        Err(error) => {
            let (code, kind) = classify(&error);
            out.error(kind, &error);
            code
        }
    }
}

/// The exit code of an error, and its kind for `--json`.
fn classify(error: &anyhow::Error) -> (u8, &'static str) {
    if error.downcast_ref::<api::Unreachable>().is_some() {
        return (5, "unreachable");
    }
    if error.downcast_ref::<Interrupted>().is_some() {
        return (130, "interrupted");
    }
    match error.downcast_ref::<Refused>().map(Refused::code) {
        Some(Code::Unauthenticated | Code::PermissionDenied) => (4, "unauthenticated"),
        Some(
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Unimplemented,
        ) => (3, "refused"),
        Some(_) => (5, "server"),
        None => (3, "input"),
    }
}

async fn run(cli: Cli, out: &Printer) -> anyhow::Result<Option<CommandOutcome>> {
    let channel = commands::connect(&cli.server, cli.token, cli.ca_file.as_deref()).await?;
    match cli.command {
        Command::Export(args) => export::execute(&channel, out, args).await,
        Command::Runs(command) => runs::execute(&channel, out, command).await,
        Command::Destinations(command) => destinations::execute(&channel, out, command).await,
        Command::Credentials(command) => credentials::execute(&channel, out, command).await,
        Command::TestConnection { destination } => {
            destinations::test_connection(&channel, out, destination).await
        }
    }
}

#[cfg(test)]
mod tests;
