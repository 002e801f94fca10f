//! `filedrop runs`: list, get, watch, cancel and retry runs; and following a run to its end,
//! which `export` does too.

use super::{CommandOutcome, Interrupted, refused};
use crate::api::Authorized;
use crate::output::{Printer, run_json, run_line, run_summary, state_name};
use anyhow::Context;
use clap::Subcommand;
use filedrop_proto::v1::run_service_client::RunServiceClient;
use filedrop_proto::v1::{
    CancelRunRequest, GetRunRequest, ListRunsRequest, RetryRunRequest, RunState, WatchRunRequest,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
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

/// Runs the command; `watch`, and `retry` unless `--no-wait`, follow the run to its end.
pub async fn execute(
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

/// Follows the run to its end with a progress bar of its files; prints the summary.
pub async fn follow(
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
    out.show(&run_json(&run), || run_summary(&run, started.elapsed()));
    Ok((run.state() != RunState::Succeeded).then_some(CommandOutcome::Failed))
}

/// A `--state` flag: a run state by its name, in any case.
fn parse_state(name: &str) -> anyhow::Result<i32> {
    RunState::from_str_name(&format!("RUN_STATE_{}", name.to_uppercase()))
        .filter(|state| *state != RunState::Unspecified)
        .map(|state| state as i32)
        .with_context(|| format!("--state {name:?}: give receiving, encoding, uploading, committing, succeeded, failed or cancelled"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn runs(line: &[&str]) -> RunsCommand {
        let cli = Cli::try_parse_from([&["filedrop", "runs"][..], line].concat()).unwrap();
        match cli.command {
            Command::Runs(command) => command,
            other => panic!("not a runs command: {other:?}"),
        }
    }

    #[test]
    fn runs_are_listed_by_state_and_destination_twenty_at_a_time_by_default() {
        let RunsCommand::List {
            states,
            destination,
            limit,
        } = runs(&[
            "list",
            "--state",
            "failed",
            "--state",
            "cancelled",
            "--destination",
            "orders",
        ])
        else {
            panic!("not a list");
        };
        assert_eq!(states, ["failed", "cancelled"]);
        assert_eq!(destination.as_deref(), Some("orders"));
        assert_eq!(limit, 20);
        assert!(matches!(
            runs(&["list", "--limit", "5"]),
            RunsCommand::List { limit: 5, .. }
        ));
    }

    #[test]
    fn a_retry_follows_the_run_unless_told_not_to_wait() {
        assert!(matches!(
            runs(&["retry", "run-1"]),
            RunsCommand::Retry { run_id, no_wait: false } if run_id == "run-1"
        ));
        assert!(matches!(
            runs(&["retry", "run-1", "--no-wait"]),
            RunsCommand::Retry { no_wait: true, .. }
        ));
        assert!(
            matches!(runs(&["watch", "run-2"]), RunsCommand::Watch { run_id } if run_id == "run-2")
        );
        assert!(
            matches!(runs(&["cancel", "run-3"]), RunsCommand::Cancel { run_id } if run_id == "run-3")
        );
    }

    #[test]
    fn a_limit_that_is_not_a_number_is_refused_and_named() {
        let error =
            Cli::try_parse_from(["filedrop", "runs", "list", "--limit", "many"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(
            error
                .to_string()
                .contains("invalid value 'many' for '--limit <LIMIT>'"),
            "{error}"
        );
    }

    #[test]
    fn getting_a_run_without_its_id_is_refused_and_says_what_is_missing() {
        let error = Cli::try_parse_from(["filedrop", "runs", "get"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        assert!(error.to_string().contains("<RUN_ID>"), "{error}");
    }

    #[test]
    fn runs_without_a_subcommand_shows_the_help() {
        let error = Cli::try_parse_from(["filedrop", "runs"]).unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert!(error.to_string().contains("retry"), "{error}");
    }

    #[test]
    fn a_state_name_is_parsed_case_insensitively() {
        assert_eq!(parse_state("failed").unwrap(), RunState::Failed as i32);
        assert_eq!(parse_state("FAILED").unwrap(), RunState::Failed as i32);
        assert_eq!(
            parse_state("Succeeded").unwrap(),
            RunState::Succeeded as i32
        );
    }

    #[test]
    fn every_state_a_run_can_be_in_is_accepted() {
        for state in [
            RunState::Receiving,
            RunState::Encoding,
            RunState::Uploading,
            RunState::Committing,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Cancelled,
        ] {
            assert_eq!(parse_state(&state_name(state)).unwrap(), state as i32);
        }
    }

    #[test]
    fn an_unknown_or_unspecified_state_is_refused_with_the_states_to_choose_from() {
        for name in ["finished", "unspecified", "RUN_STATE_FAILED", ""] {
            assert_eq!(
                parse_state(name).unwrap_err().to_string(),
                format!(
                    "--state {name:?}: give receiving, encoding, uploading, committing, \
                     succeeded, failed or cancelled"
                )
            );
        }
    }
}
