//! `filedrop export`: a file (Parquet, CSV, Arrow IPC) read on a blocking thread and sent to a
//! stored destination as an Arrow Flight stream, with a progress bar; then its run followed to
//! its end.

use super::{CommandOutcome, Interrupted, refused, runs, variables};
use crate::api::Authorized;
use crate::input::{self, InputFormat, Progress};
use crate::output::Printer;
use anyhow::Context;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use clap::Args;
use filedrop_proto::v1::{ExportAccepted, ExportRequest};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ExportArgs {
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

/// Why an export's sending stopped before the file's end.
enum Stopped {
    /// Ctrl-C.
    Interrupted,
    /// The file could not be read to its end: why.
    Unreadable(String),
}

/// Sends the file, then follows its run unless `--no-wait`.
pub async fn execute(
    channel: &Authorized,
    out: &Printer,
    args: ExportArgs,
) -> anyhow::Result<Option<CommandOutcome>> {
    let request = ExportRequest {
        stored_destination: args.destination.clone(),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        variables: variables(&args.variables)?,
        ..ExportRequest::default()
    };
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
    runs::follow(channel, out, &accepted.run_id, started).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn export(line: &[&str]) -> ExportArgs {
        let cli = Cli::try_parse_from([&["filedrop", "export"][..], line].concat()).unwrap();
        match cli.command {
            Command::Export(args) => args,
            other => panic!("not an export: {other:?}"),
        }
    }

    #[test]
    fn an_export_takes_its_file_destination_variables_and_options() {
        let args = export(&[
            "orders.data",
            "--destination",
            "orders",
            "--var",
            "region=eu",
            "--var",
            "day=2024-05-01",
            "--input-format",
            "csv",
            "--idempotency-key",
            "orders-2024-05-01",
            "--no-wait",
        ]);
        assert_eq!(args.file, "orders.data");
        assert_eq!(args.destination, "orders");
        assert_eq!(args.variables, ["region=eu", "day=2024-05-01"]);
        assert_eq!(args.input_format, Some(InputFormat::Csv));
        assert_eq!(args.idempotency_key.as_deref(), Some("orders-2024-05-01"));
        assert!(args.no_wait);
    }

    #[test]
    fn an_export_reads_standard_input_from_a_dash_and_follows_its_run_by_default() {
        let args = export(&["-", "-d", "orders"]);
        assert_eq!(args.file, "-");
        assert_eq!(args.destination, "orders");
        assert_eq!(args.input_format, None);
        assert!(args.variables.is_empty());
        assert!(!args.no_wait);
    }

    #[test]
    fn an_export_without_a_destination_is_refused_and_says_what_is_missing() {
        let error = Cli::try_parse_from(["filedrop", "export", "orders.parquet"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        let message = error.to_string();
        assert!(message.contains("--destination <DESTINATION>"), "{message}");
        assert!(message.contains("Usage: filedrop export"), "{message}");
    }

    #[test]
    fn an_unknown_input_format_is_refused_with_the_formats_to_choose_from() {
        let error = Cli::try_parse_from([
            "filedrop",
            "export",
            "orders.xlsx",
            "-d",
            "orders",
            "--input-format",
            "xlsx",
        ])
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidValue);
        assert!(
            error
                .to_string()
                .contains("[possible values: parquet, csv, arrow, arrow-stream]"),
            "{error}"
        );
    }
}
