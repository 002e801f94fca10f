//! `filedrop`, the command line of filedrop: send a file as an export and watch it go, and
//! follow, cancel and retry runs, list destinations and credentials, test a destination.
//!
//! # Layout
//! - `main.rs`: the commands, their output (for people, or `--json` for scripts) and the exit
//!   codes.
//! - [`api`]: the connection to the control plane (address, token, TLS).
//! - [`input`]: the files an export reads (Parquet, CSV, Arrow IPC file or stream).
//!
//! Exit codes: 0 done (a run that succeeded); 1 the run failed or was cancelled, or the
//! connection test found a problem; 2 bad usage;
//! 3 the server refused the request (invalid, not found, not possible now) or the input
//! cannot be read; 4 the token was refused; 5 the server could not be reached or failed.

mod api;
mod input;

use anyhow::Context;
use api::Authorized;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use clap::{Args, Parser, Subcommand};
use filedrop_proto::v1::credential_service_client::CredentialServiceClient;
use filedrop_proto::v1::destination_service_client::DestinationServiceClient;
use filedrop_proto::v1::run_service_client::RunServiceClient;
use filedrop_proto::v1::{
    CancelRunRequest, CreateCredentialRequest, CreateDestinationRequest, DeleteCredentialRequest,
    DeleteDestinationRequest, ExportAccepted, ExportRequest, GetCredentialRequest,
    GetDestinationRequest, GetRunRequest, ListCredentialsRequest, ListDestinationsRequest,
    ListRunsRequest, RetryRunRequest, RoleToRoleRequest, Run, RunState, TestConnectionRequest,
    WatchRunRequest, create_credential_request,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use input::{InputFormat, Progress};
use prost::Message;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    Export(ExportArgs),
    /// Runs: list, get, watch, cancel, retry.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Stored destinations: create, list, get, delete.
    #[command(subcommand)]
    Destinations(DestinationsCommand),
    /// Stored credentials: create-role, create-key, list, get, delete.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Check that a stored destination can be written, without sending data.
    TestConnection {
        /// The destination's name or id.
        destination: String,
    },
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The file to send; `-` reads an Arrow IPC stream from standard input.
    file: String,
    /// The stored destination (name or id).
    #[arg(long, short)]
    destination: String,
    /// A template variable, `name=value` (repeat for more); over the destination's defaults.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// The file's format, when its extension does not tell.
    #[arg(long)]
    input_format: Option<InputFormat>,
    /// Sending again with the same key starts no second run.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Return once the rows are accepted, without following the run.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// The tenant's runs, newest first.
    List {
        /// Only runs in this state (repeat for more): receiving, encoding, uploading,
        /// committing, succeeded, failed, cancelled.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only runs to this destination name.
        #[arg(long)]
        destination: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// One run.
    Get {
        /// The run id.
        run_id: String,
    },
    /// Follow a run to its end.
    Watch {
        /// The run id.
        run_id: String,
    },
    /// Cancel a run: its work stops and what it delivered is deleted.
    Cancel {
        /// The run id.
        run_id: String,
    },
    /// Retry a failed run from its staged data, then follow it to its end.
    Retry {
        /// The run id.
        run_id: String,
        /// Return at once, without following the run.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DestinationsCommand {
    /// Store a destination under a name (its most used settings; every setting through
    /// `DestinationService.CreateDestination`).
    Create(Box<CreateDestinationArgs>),
    /// The tenant's stored destinations.
    List,
    /// One destination's settings.
    Get {
        /// Its name or id.
        destination: String,
    },
    /// Delete a destination.
    Delete {
        /// Its name or id.
        destination: String,
    },
}

/// The settings `filedrop destinations create` takes.
#[derive(Debug, Args)]
struct CreateDestinationArgs {
    /// The destination's name, which exports name.
    name: String,
    /// The bucket.
    #[arg(long)]
    bucket: String,
    /// The key prefix the files go under.
    #[arg(long, default_value = "")]
    prefix: String,
    /// The bucket's region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// An S3-compatible endpoint instead of Amazon S3's.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Path-style addressing (most S3-compatible stores want it).
    #[arg(long)]
    path_style: bool,
    /// The stored credential that writes there (`filedrop credentials create-…`).
    #[arg(long)]
    credential: String,
    /// csv, tsv, psv, json, ndjson or parquet.
    #[arg(long, default_value = "csv")]
    format: String,
    /// The filename template, e.g. `orders-{{now|format:'yyyy-MM-dd'}}-{{file_number}}.csv`.
    #[arg(long)]
    filename_template: String,
    /// Split the delivery into files of this many rows.
    #[arg(long)]
    rows_per_file: Option<u64>,
    /// Split the delivery into files of at most this many megabytes.
    #[arg(long)]
    megabytes_per_file: Option<u64>,
    /// none, gzip, zstd, bzip2, zip, tar or tgz (text formats).
    #[arg(long)]
    compression: Option<String>,
    /// A template variable's default, `name=value` (repeat for more).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// No success marker.
    #[arg(long)]
    no_success_file: bool,
    /// What a run does with objects already at its keys: replace (the default),
    /// fail-if-exists or keep-existing (both fail the run with OBJECT_EXISTS).
    #[arg(long, value_enum, default_value = "replace")]
    write_mode: WriteModeArg,
}

/// `--write-mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WriteModeArg {
    Replace,
    FailIfExists,
    KeepExisting,
}

impl From<WriteModeArg> for filedrop_proto::v1::WriteMode {
    fn from(mode: WriteModeArg) -> Self {
        match mode {
            WriteModeArg::Replace => Self::Replace,
            WriteModeArg::FailIfExists => Self::FailIfExists,
            WriteModeArg::KeepExisting => Self::KeepExisting,
        }
    }
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Create an iam-role-to-role credential: prints the External ID and the trust policy
    /// the role's owner adds to the role.
    CreateRole {
        /// The role's ARN, e.g. `arn:aws:iam::123456789012:role/filedrop-exports`.
        #[arg(long)]
        role_arn: String,
    },
    /// Store an access key (iam-credential). The secret is read from
    /// FILEDROP_SECRET_ACCESS_KEY, or from the first line of standard input.
    CreateKey {
        /// The access key id.
        #[arg(long)]
        access_key_id: String,
    },
    /// The tenant's credentials (secrets are shown as set or unset, never their values).
    List,
    /// One credential.
    Get {
        /// Its id.
        credential_id: String,
    },
    /// Delete a credential.
    Delete {
        /// Its id.
        credential_id: String,
    },
}

/// How a command ended, beyond success: each has its exit code.
#[derive(Debug)]
enum CommandOutcome {
    /// The run ended failed or cancelled, or the connection test found a problem.
    Failed,
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
    let json = cli.json;
    match run(cli).await {
        Ok(None) => 0,
        Ok(Some(CommandOutcome::Failed)) => 1,
        Err(error) => {
            let (code, kind) = classify(&error);
            if json {
                println!(
                    "{}",
                    json!({"error": {"kind": kind, "message": format!("{error:#}")}})
                );
            } else {
                eprintln!("filedrop: {error:#}");
            }
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
    match error
        .downcast_ref::<Refused>()
        .map(|refused| refused.0.code())
    {
        Some(tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
            (4, "unauthenticated")
        }
        Some(
            tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition
            | tonic::Code::AlreadyExists
            | tonic::Code::Aborted
            | tonic::Code::ResourceExhausted
            | tonic::Code::Unimplemented,
        ) => (3, "refused"),
        Some(_) => (5, "server"),
        None => (3, "input"),
    }
}

/// A call the server refused: shown as the server's message, its code read by `classify`.
#[derive(Debug)]
struct Refused(tonic::Status);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for Refused {}

/// A gRPC failure as an error whose code `classify` reads, its message the server's.
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(Refused(status))
}

async fn run(cli: Cli) -> anyhow::Result<Option<CommandOutcome>> {
    let token = cli.token.clone().context(
        "no API token: pass --token or set FILEDROP_TOKEN (operators make one with \
         `filedrop-control-plane token create --tenant <tenant>`)",
    )?;
    let ca = match &cli.ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let channel = api::connect(&cli.server, &token, ca).await?;
    let out = Printer { json: cli.json };
    match cli.command {
        Command::Export(args) => export(&channel, &out, args).await,
        Command::Runs(command) => runs(&channel, &out, command).await,
        Command::Destinations(command) => {
            destinations(&channel, &out, command).await.map(|()| None)
        }
        Command::Credentials(command) => credentials(&channel, &out, command).await.map(|()| None),
        Command::TestConnection { destination } => {
            test_connection(&channel, &out, destination).await
        }
    }
}

/// Where results go: text for people, or JSON.
struct Printer {
    json: bool,
}

impl Printer {
    fn show(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    /// A list: a JSON array, or a line per item (`empty` when there is none).
    fn list(&self, items: &[Value], empty: &str, line: impl Fn(&Value) -> String) {
        self.show(&Value::Array(items.to_vec()), || {
            if items.is_empty() {
                empty.to_owned()
            } else {
                items.iter().map(line).collect::<Vec<_>>().join("\n")
            }
        });
    }

    /// A progress bar on standard error, hidden for `--json` and when it is not a terminal.
    fn bar(&self, bar: ProgressBar) -> ProgressBar {
        if self.json {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar
    }
}

fn state_name(state: RunState) -> String {
    state
        .as_str_name()
        .trim_start_matches("RUN_STATE_")
        .to_lowercase()
}

fn run_json(run: &Run) -> Value {
    json!({
        "run_id": run.run_id,
        "state": state_name(run.state()),
        "rows": run.rows,
        "files": run.files,
        "files_uploaded": run.files_uploaded,
        "bytes_uploaded": run.bytes_uploaded,
        "error": run.error.as_ref().map(|error| json!({
            "code": error.code().as_str_name().trim_start_matches("ERROR_CODE_"),
            "message": error.message,
        })),
        "created_at": run.created_at.map(|t| t.seconds),
    })
}

fn run_line(run: &Run) -> String {
    let mut line = format!(
        "{}  {:<10}  {:>10} rows  {}/{} files  {} bytes",
        run.run_id,
        state_name(run.state()),
        run.rows,
        run.files_uploaded,
        run.files,
        run.bytes_uploaded
    );
    if let Some(error) = &run.error {
        line.push_str(&format!(
            "\n  {}: {}",
            error.code().as_str_name().trim_start_matches("ERROR_CODE_"),
            error.message
        ));
    }
    line
}

async fn export(
    channel: &Authorized,
    out: &Printer,
    args: ExportArgs,
) -> anyhow::Result<Option<CommandOutcome>> {
    let mut request = ExportRequest {
        stored_destination: args.destination.clone(),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        ..ExportRequest::default()
    };
    for variable in &args.variables {
        let (name, value) = variable
            .split_once('=')
            .with_context(|| format!("--var {variable:?}: write it as name=value"))?;
        request.variables.insert(name.to_owned(), value.to_owned());
    }
    let format = match args.input_format {
        Some(format) => format,
        None => InputFormat::of(&args.file)?,
    };
    let progress = Arc::new(Progress::default());
    let path = args.file.clone();
    let opened_progress = progress.clone();
    let opened = tokio::task::spawn_blocking(move || {
        input::guarded(&path, || input::open(&path, format, opened_progress))
    })
    .await??;
    let (total_bytes, total_rows) = (opened.total_bytes, opened.total_rows);
    let schema = opened.schema.clone();

    // Read on a blocking thread, sent as they come: one batch in hand, one on the way.
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<anyhow::Result<arrow_array::RecordBatch>>(2);
    let reader_progress = progress.clone();
    let reader_path = args.file.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batches = opened.batches;
        loop {
            // A reader that panics on a malformed file is an error like any other, and the
            // last thing read: its state is unknown after the panic.
            let (batch, last) = match input::guarded(&reader_path, || Ok(batches.next())) {
                Ok(None) => return,
                Ok(Some(batch)) => {
                    let last = batch.is_err();
                    (batch, last)
                }
                Err(error) => (Err(error), true),
            };
            if let Ok(batch) = &batch {
                reader_progress
                    .rows
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            if sender.blocking_send(batch).is_err() || last {
                return;
            }
        }
    });
    let bar = out.bar(match total_bytes {
        Some(bytes) => ProgressBar::new(bytes),
        None => ProgressBar::new_spinner(),
    });
    // A bar only over a known total (a file); standard input gets a count, not a bar that
    // would claim a fraction it cannot know.
    bar.set_style(
        ProgressStyle::with_template(if total_bytes.is_some() {
            "{spinner} sending  [{bar:30}] {binary_bytes}/{binary_total_bytes}  {msg}  {binary_bytes_per_sec}  {elapsed}"
        } else {
            "{spinner} sending  {binary_bytes}  {msg}  {binary_bytes_per_sec}  {elapsed}"
        })?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let ticker = {
        let bar = bar.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                let rows = progress.rows.load(Ordering::Relaxed);
                bar.set_position(progress.bytes.load(Ordering::Relaxed));
                bar.set_message(match total_rows {
                    Some(total) => format!("{rows}/{total} rows"),
                    None => format!("{rows} rows"),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let batches = tokio_stream::wrappers::ReceiverStream::new(receiver).map(|batch| {
        batch.map_err(|error| arrow_flight::error::FlightError::ExternalError(error.into()))
    });
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(request.encode_to_vec());
    // The stream ends with its commit once the whole file is read; a file that cannot be read
    // to its end gets no commit, and its stream is cancelled below.
    let mut data = Box::pin(filedrop_client::committed(
        FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .with_schema(schema)
            .build(batches),
    ));
    let (data_sender, data_receiver) = tokio::sync::mpsc::channel(2);
    // On an error the pump hands its sender back rather than dropping it: a dropped sender
    // would end the stream cleanly, where the send must break off (see `main`).
    let pump = tokio::spawn(async move {
        while let Some(item) = data.next().await {
            match item {
                Ok(flight_data) => {
                    if data_sender.send(flight_data).await.is_err() {
                        return Ok(());
                    }
                }
                Err(error) => return Err((error, data_sender)),
            }
        }
        Ok(())
    });
    let mut client = FlightServiceClient::new(channel.clone());
    // The server names the run in the response headers as soon as it exists, before the
    // stream ends: an export stopped midway can still say which run it was.
    let run_id = Arc::new(std::sync::OnceLock::<String>::new());
    let answer = {
        let run_id = run_id.clone();
        async move {
            let response = client
                .do_put(tokio_stream::wrappers::ReceiverStream::new(data_receiver))
                .await?;
            if let Some(id) = response
                .metadata()
                .get(filedrop_proto::RUN_ID_HEADER)
                .and_then(|value| value.to_str().ok())
            {
                let _ = run_id.set(id.to_owned());
            }
            let results: Vec<_> = response.into_inner().collect().await;
            results.into_iter().collect::<Result<Vec<_>, _>>()
        }
    };
    let mut answer = std::pin::pin!(answer);
    let mut pump = std::pin::pin!(pump);
    // Whatever stops the sending early (the file cannot be read, Ctrl-C) drops the call,
    // which resets the stream: the server fails the run, and nothing is delivered.
    let stopped = tokio::select! {
        answer = &mut answer => Ok(answer),
        pumped = &mut pump => match pumped {
            Ok(Ok(())) => tokio::select! {
                answer = &mut answer => Ok(answer),
                _ = tokio::signal::ctrl_c() => Err(Stopped::Interrupted),
            },
            Ok(Err((error, open))) => {
                // Held until the process exits, so that the stream is never ended cleanly.
                std::mem::forget(open);
                Err(Stopped::Unreadable(match error {
                    arrow_flight::error::FlightError::ExternalError(error) => error.to_string(),
                    other => other.to_string(),
                }))
            }
            Err(panicked) => Err(Stopped::Unreadable(panicked.to_string())),
        },
        _ = tokio::signal::ctrl_c() => Err(Stopped::Interrupted),
    };
    ticker.abort();
    let answer = match stopped {
        Ok(answer) => answer,
        Err(stopped) => {
            bar.abandon();
            reader.abort();
            let export = match run_id.get() {
                Some(run_id) => format!("the export of {} (run {run_id})", args.file),
                None => format!("the export of {}", args.file),
            };
            return Err(match stopped {
                Stopped::Interrupted => anyhow::Error::new(Interrupted(format!(
                    "interrupted: {export} was cancelled; nothing was delivered"
                ))),
                Stopped::Unreadable(error) => anyhow::anyhow!(
                    "{}: {error}; {export} was cancelled and nothing was delivered",
                    args.file
                ),
            });
        }
    };
    let results = match answer {
        Ok(results) => results,
        Err(status) => {
            bar.abandon();
            return Err(refused(status));
        }
    };
    bar.set_position(total_bytes.unwrap_or(progress.bytes.load(Ordering::Relaxed)));
    bar.finish_and_clear();
    let accepted = results
        .last()
        .map(|result| ExportAccepted::decode(result.app_metadata.as_ref()))
        .transpose()?
        .context("the server answered the export without a run")?;
    if !out.json {
        eprintln!(
            "sent {} rows in {:.1} s: run {}{}",
            accepted.rows,
            started.elapsed().as_secs_f64(),
            accepted.run_id,
            if accepted.replayed {
                " (sent before with this idempotency key)"
            } else {
                ""
            }
        );
        for warning in &accepted.warnings {
            eprintln!("warning: {warning}");
        }
    }
    if args.no_wait {
        out.show(&json!({"run_id": accepted.run_id, "rows": accepted.rows, "replayed": accepted.replayed}), || accepted.run_id.clone());
        return Ok(None);
    }
    follow(channel, out, &accepted.run_id, started).await
}

/// Why an export's sending stopped before the file's end.
enum Stopped {
    /// Ctrl-C.
    Interrupted,
    /// The file could not be read to its end: why.
    Unreadable(String),
}

/// The user pressed Ctrl-C: exit code 130, as a shell reports SIGINT.
#[derive(Debug)]
struct Interrupted(String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Follows the run to its end with a progress bar of its files; prints the summary.
async fn follow(
    channel: &Authorized,
    out: &Printer,
    run_id: &str,
    started: Instant,
) -> anyhow::Result<Option<CommandOutcome>> {
    let mut stream = RunServiceClient::new(channel.clone())
        .watch_run(WatchRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let bar = out.bar(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<10} [{bar:30}] {pos}/{len} files  {elapsed}",
        )?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut last = None;
    loop {
        let answer = tokio::select! {
            answer = stream.next() => answer,
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                return Err(anyhow::Error::new(Interrupted(format!(
                    "stopped following run {run_id}, which goes on: follow it again with \
                     `filedrop runs watch {run_id}`, or stop it with `filedrop runs cancel \
                     {run_id}`"
                ))));
            }
        };
        let Some(answer) = answer else { break };
        let run = answer
            .map_err(refused)?
            .run
            .context("a watch answer without its run")?;
        bar.set_length(run.files.max(run.files_uploaded));
        bar.set_position(run.files_uploaded);
        bar.set_message(state_name(run.state()));
        last = Some(run);
    }
    bar.finish_and_clear();
    let run = last.context("the watch ended without the run")?;
    out.show(&run_json(&run), || {
        // Only a run that succeeded delivered anything: a failed or cancelled one's uploads
        // were taken back, whatever its counts say.
        let mut summary = if run.state() == RunState::Succeeded {
            format!(
                "run {} succeeded: {} rows, {} of {} files, {} bytes delivered in {:.1} s",
                run.run_id,
                run.rows,
                run.files_uploaded,
                run.files,
                run.bytes_uploaded,
                started.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "run {} {} after {:.1} s: nothing was delivered",
                run.run_id,
                state_name(run.state()),
                started.elapsed().as_secs_f64()
            )
        };
        if let Some(error) = &run.error {
            summary.push_str(&format!(
                "\n  {}: {}",
                error.code().as_str_name().trim_start_matches("ERROR_CODE_"),
                error.message
            ));
        }
        summary
    });
    Ok((run.state() != RunState::Succeeded).then_some(CommandOutcome::Failed))
}

/// Every item of a paged list: `page` is asked for the page of a token (empty: the first) and
/// answers its items and the next token (empty: the last page).
async fn all_pages<F, Fut>(mut page: F) -> anyhow::Result<Vec<Value>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Value>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await.map_err(refused)?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

fn parse_state(name: &str) -> anyhow::Result<i32> {
    RunState::from_str_name(&format!("RUN_STATE_{}", name.to_uppercase()))
        .filter(|state| *state != RunState::Unspecified)
        .map(|state| state as i32)
        .with_context(|| format!("--state {name:?}: give receiving, encoding, uploading, committing, succeeded, failed or cancelled"))
}

async fn runs(
    channel: &Authorized,
    out: &Printer,
    command: RunsCommand,
) -> anyhow::Result<Option<CommandOutcome>> {
    let mut client = RunServiceClient::new(channel.clone());
    match command {
        RunsCommand::List {
            states,
            destination,
            limit,
        } => {
            let states = states
                .iter()
                .map(|s| parse_state(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let runs = client
                .list_runs(ListRunsRequest {
                    page_size: limit,
                    states,
                    destination_name: destination.unwrap_or_default(),
                    ..ListRunsRequest::default()
                })
                .await
                .map_err(refused)?
                .into_inner()
                .runs;
            out.show(&Value::Array(runs.iter().map(run_json).collect()), || {
                if runs.is_empty() {
                    "no runs".to_owned()
                } else {
                    runs.iter().map(run_line).collect::<Vec<_>>().join("\n")
                }
            });
            Ok(None)
        }
        RunsCommand::Get { run_id } => {
            let run = client
                .get_run(GetRunRequest { run_id })
                .await
                .map_err(refused)?
                .into_inner()
                .run
                .context("no run")?;
            out.show(&run_json(&run), || run_line(&run));
            Ok(None)
        }
        RunsCommand::Watch { run_id } => follow(channel, out, &run_id, Instant::now()).await,
        RunsCommand::Cancel { run_id } => {
            let run = client
                .cancel_run(CancelRunRequest { run_id })
                .await
                .map_err(refused)?
                .into_inner()
                .run
                .context("no run")?;
            out.show(&run_json(&run), || {
                format!(
                    "run {} cancelled; what it delivered is being deleted",
                    run.run_id
                )
            });
            Ok(None)
        }
        RunsCommand::Retry { run_id, no_wait } => {
            let run = client
                .retry_run(RetryRunRequest { run_id })
                .await
                .map_err(refused)?
                .into_inner()
                .run
                .context("no run")?;
            if no_wait {
                out.show(&run_json(&run), || run_line(&run));
                return Ok(None);
            }
            if !out.json {
                eprintln!("run {} retried", run.run_id);
            }
            follow(channel, out, &run.run_id, Instant::now()).await
        }
    }
}

async fn destinations(
    channel: &Authorized,
    out: &Printer,
    command: DestinationsCommand,
) -> anyhow::Result<()> {
    let mut client = DestinationServiceClient::new(channel.clone());
    let summary = |destination: &filedrop_proto::v1::Destination| {
        let s3 = destination
            .settings
            .as_ref()
            .and_then(|s| s.destination.as_ref());
        json!({
            "destination_id": destination.destination_id,
            "name": destination.name,
            "bucket": s3.map(|d| d.bucket.clone()),
            "prefix": s3.map(|d| d.prefix.clone()),
            "filename_template": destination.settings.as_ref().map(|s| s.filename_template.clone()),
        })
    };
    let line = |value: &Value| {
        format!(
            "{}  {}  s3://{}/{}{}",
            value["destination_id"].as_str().unwrap_or_default(),
            value["name"].as_str().unwrap_or_default(),
            value["bucket"].as_str().unwrap_or_default(),
            value["prefix"].as_str().unwrap_or_default(),
            value["filename_template"].as_str().unwrap_or_default()
        )
    };
    match command {
        DestinationsCommand::Create(args) => {
            let created = client
                .create_destination(CreateDestinationRequest {
                    name: args.name.clone(),
                    settings: Some(destination_settings(&args)?),
                })
                .await
                .map_err(refused)?
                .into_inner()
                .destination
                .context("no destination")?;
            let value = summary(&created);
            out.show(&value, || format!("created {}", line(&value)));
        }
        DestinationsCommand::List => {
            let all = all_pages(|page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_destinations(ListDestinationsRequest {
                            page_size: 100,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    let items = page.destinations.iter().map(summary).collect();
                    Ok((items, page.next_page_token))
                }
            })
            .await?;
            out.list(&all, "no destinations", line);
        }
        DestinationsCommand::Get { destination } => {
            let found = client
                .get_destination(GetDestinationRequest { destination })
                .await
                .map_err(refused)?
                .into_inner()
                .destination
                .context("no destination")?;
            let value = summary(&found);
            out.show(&value, || line(&value));
        }
        DestinationsCommand::Delete { destination } => {
            client
                .delete_destination(DeleteDestinationRequest {
                    destination: destination.clone(),
                })
                .await
                .map_err(refused)?;
            out.show(&json!({"deleted": destination}), || {
                format!("destination {destination} deleted")
            });
        }
    }
    Ok(())
}

/// The export settings of `filedrop destinations create`.
fn destination_settings(args: &CreateDestinationArgs) -> anyhow::Result<ExportRequest> {
    use filedrop_proto::v1::{
        Compression, CsvOptions, FileFormat, S3Destination, Split, SuccessFile,
    };
    let format = match args.format.as_str() {
        "csv" => FileFormat::Csv,
        "tsv" => FileFormat::Tsv,
        "psv" => FileFormat::Psv,
        "json" => FileFormat::Json,
        "ndjson" => FileFormat::Ndjson,
        "parquet" => FileFormat::Parquet,
        other => anyhow::bail!("--format {other:?}: give csv, tsv, psv, json, ndjson or parquet"),
    };
    let compression = match args.compression.as_deref() {
        None => Compression::Unspecified,
        Some(name) => Compression::from_str_name(&format!("COMPRESSION_{}", name.to_uppercase()))
            .filter(|c| *c != Compression::Unspecified)
            .with_context(|| {
                format!("--compression {name:?}: give none, gzip, zstd, bzip2, zip, tar or tgz")
            })?,
    };
    let mut variables = std::collections::HashMap::new();
    for variable in &args.variables {
        let (name, value) = variable
            .split_once('=')
            .with_context(|| format!("--var {variable:?}: write it as name=value"))?;
        variables.insert(name.to_owned(), value.to_owned());
    }
    let delimited = matches!(format, FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv);
    Ok(ExportRequest {
        destination: Some(S3Destination {
            endpoint_url: args.endpoint_url.clone().unwrap_or_default(),
            region: args.region.clone(),
            force_path_style: args.path_style,
            bucket: args.bucket.clone(),
            prefix: args.prefix.clone(),
            credential_id: args.credential.clone(),
            write_mode: filedrop_proto::v1::WriteMode::from(args.write_mode).into(),
            ..Default::default()
        }),
        format: format.into(),
        csv: delimited.then(|| CsvOptions {
            header: true,
            ..Default::default()
        }),
        filename_template: args.filename_template.clone(),
        split: (args.rows_per_file.is_some() || args.megabytes_per_file.is_some()).then(|| Split {
            rows_per_file: args.rows_per_file.unwrap_or_default(),
            megabytes_per_file: args.megabytes_per_file.unwrap_or_default(),
            ..Default::default()
        }),
        success_file: Some(SuccessFile {
            enabled: !args.no_success_file,
            ..Default::default()
        }),
        compression: compression.into(),
        variables,
        ..Default::default()
    })
}

fn credential_json(credential: &filedrop_proto::v1::Credential) -> Value {
    use filedrop_proto::v1::credential::Kind;
    let (kind, detail) = match &credential.kind {
        Some(Kind::RoleToRole(role)) => (
            "iam-role-to-role",
            json!({"role_arn": role.role_arn, "external_id": role.external_id}),
        ),
        Some(Kind::AccessKey(key)) => (
            "iam-credential",
            json!({
                "access_key_id": key.access_key_id,
                "secret_access_key": if key.secret_access_key_set { "set" } else { "unset" },
                "session_token": if key.session_token_set { "set" } else { "unset" },
            }),
        ),
        None => ("unknown", Value::Null),
    };
    json!({"credential_id": credential.credential_id, "kind": kind, "detail": detail})
}

async fn credentials(
    channel: &Authorized,
    out: &Printer,
    command: CredentialsCommand,
) -> anyhow::Result<()> {
    let mut client = CredentialServiceClient::new(channel.clone());
    let line = |value: &Value| {
        format!(
            "{}  {}  {}",
            value["credential_id"].as_str().unwrap_or_default(),
            value["kind"].as_str().unwrap_or_default(),
            value["detail"]
        )
    };
    match command {
        CredentialsCommand::CreateRole { role_arn } => {
            let created = client
                .create_credential(CreateCredentialRequest {
                    kind: Some(create_credential_request::Kind::RoleToRole(
                        RoleToRoleRequest { role_arn },
                    )),
                })
                .await
                .map_err(refused)?
                .into_inner()
                .credential
                .context("no credential")?;
            let mut value = credential_json(&created);
            if let Some(filedrop_proto::v1::credential::Kind::RoleToRole(role)) = &created.kind {
                value["trust_policy_json"] = json!(role.trust_policy_json);
                out.show(&value, || {
                    format!(
                        "credential {}\nExternal ID: {}\nAdd this trust policy to the role:\n{}",
                        created.credential_id, role.external_id, role.trust_policy_json
                    )
                });
            }
        }
        CredentialsCommand::CreateKey { access_key_id } => {
            let secret = match std::env::var("FILEDROP_SECRET_ACCESS_KEY") {
                Ok(secret) => secret,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the secret access key from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            anyhow::ensure!(
                !secret.is_empty(),
                "no secret access key: set FILEDROP_SECRET_ACCESS_KEY or write it on standard input"
            );
            let created = client
                .create_credential(CreateCredentialRequest {
                    kind: Some(create_credential_request::Kind::AccessKey(
                        filedrop_proto::v1::AccessKeyCredential {
                            access_key_id,
                            secret_access_key: secret,
                            ..Default::default()
                        },
                    )),
                })
                .await
                .map_err(refused)?
                .into_inner()
                .credential
                .context("no credential")?;
            let value = credential_json(&created);
            out.show(&value, || format!("created {}", line(&value)));
        }
        CredentialsCommand::List => {
            let all = all_pages(|page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_credentials(ListCredentialsRequest {
                            page_size: 100,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    let items = page.credentials.iter().map(credential_json).collect();
                    Ok((items, page.next_page_token))
                }
            })
            .await?;
            out.list(&all, "no credentials", line);
        }
        CredentialsCommand::Get { credential_id } => {
            let found = client
                .get_credential(GetCredentialRequest { credential_id })
                .await
                .map_err(refused)?
                .into_inner()
                .credential
                .context("no credential")?;
            let value = credential_json(&found);
            out.show(&value, || line(&value));
        }
        CredentialsCommand::Delete { credential_id } => {
            client
                .delete_credential(DeleteCredentialRequest {
                    credential_id: credential_id.clone(),
                })
                .await
                .map_err(refused)?;
            out.show(&json!({"deleted": credential_id}), || {
                format!("credential {credential_id} deleted")
            });
        }
    }
    Ok(())
}

async fn test_connection(
    channel: &Authorized,
    out: &Printer,
    destination: String,
) -> anyhow::Result<Option<CommandOutcome>> {
    let answer = DestinationServiceClient::new(channel.clone())
        .test_connection(TestConnectionRequest {
            stored_destination: destination.clone(),
            ..TestConnectionRequest::default()
        })
        .await
        .map_err(refused)?
        .into_inner();
    let error = answer.error.as_ref().map(|error| {
        json!({
            "code": error.code().as_str_name().trim_start_matches("ERROR_CODE_"),
            "message": error.message,
        })
    });
    let value = json!({
        "destination": destination,
        "ok": answer.ok,
        "passed": answer.passed,
        "failed_check": answer.failed_check,
        "error": error,
    });
    out.show(&value, || {
        if answer.ok {
            format!("{destination}: ok ({})", answer.passed.join(", "))
        } else {
            format!(
                "{destination}: the {} check failed: {}",
                answer.failed_check,
                answer
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or_default()
            )
        }
    });
    Ok((!answer.ok).then_some(CommandOutcome::Failed))
}
