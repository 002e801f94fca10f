//! What the commands print: text for people, or JSON for scripts (`--json`). The JSON of each
//! object is built here, and its line of text from that JSON.

use filedrop_proto::v1::credential::Kind;
use filedrop_proto::v1::{Credential, Destination, Run, RunError, RunState};
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde_json::{Value, json};
use std::time::Duration;

/// Where results go: text for people, or JSON.
pub struct Printer {
    /// JSON on standard output, and no progress bars.
    pub json: bool,
}

impl Printer {
    /// One result: its JSON, or the text `text` makes of it.
    pub fn show(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    /// A list: a JSON array, or a line per item (`empty` when there is none).
    pub fn list(&self, items: &[Value], empty: &str, line: impl Fn(&Value) -> String) {
        self.show(&Value::Array(items.to_vec()), || {
            if items.is_empty() {
                empty.to_owned()
            } else {
                items.iter().map(line).collect::<Vec<_>>().join("\n")
            }
        });
    }

    /// The error that ended a command, of `kind`: JSON on standard output, or a line on
    /// standard error.
    pub fn error(&self, kind: &str, error: &anyhow::Error) {
        if self.json {
            println!("{}", error_json(kind, error));
        } else {
            eprintln!("filedrop: {error:#}");
        }
    }

    /// A progress bar on standard error, hidden for `--json` and when it is not a terminal.
    pub fn bar(&self, bar: ProgressBar) -> ProgressBar {
        if self.json {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar
    }
}

/// The `--json` form of the error that ended a command.
fn error_json(kind: &str, error: &anyhow::Error) -> Value {
    json!({"error": {"kind": kind, "message": format!("{error:#}")}})
}

/// A run state as the command line names it: `succeeded`, `failed`, ….
pub fn state_name(state: RunState) -> String {
    state
        .as_str_name()
        .trim_start_matches("RUN_STATE_")
        .to_lowercase()
}

/// Why a run failed (or a connection test found a problem), as JSON.
pub fn run_error_json(error: &RunError) -> Value {
    json!({
        "code": run_error_code(error),
        "message": error.message,
    })
}

/// Why a run failed, as the indented line under the run.
fn run_error_line(error: &RunError) -> String {
    format!("\n  {}: {}", run_error_code(error), error.message)
}

fn run_error_code(error: &RunError) -> &'static str {
    error.code().as_str_name().trim_start_matches("ERROR_CODE_")
}

pub fn run_json(run: &Run) -> Value {
    json!({
        "run_id": run.run_id,
        "state": state_name(run.state()),
        "rows": run.rows,
        "files": run.files,
        "files_uploaded": run.files_uploaded,
        "bytes_uploaded": run.bytes_uploaded,
        "error": run.error.as_ref().map(run_error_json),
        "created_at": run.created_at.map(|t| t.seconds),
    })
}

pub fn run_line(run: &Run) -> String {
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
        line.push_str(&run_error_line(error));
    }
    line
}

/// The summary of a run followed to its end, `elapsed` after it was started.
pub fn run_summary(run: &Run, elapsed: Duration) -> String {
    // Only a run that succeeded delivered anything: a failed or cancelled one's uploads were
    // taken back, whatever its counts say.
    let mut summary = if run.state() == RunState::Succeeded {
        format!(
            "run {} succeeded: {} rows, {} of {} files, {} bytes delivered in {:.1} s",
            run.run_id,
            run.rows,
            run.files_uploaded,
            run.files,
            run.bytes_uploaded,
            elapsed.as_secs_f64()
        )
    } else {
        format!(
            "run {} {} after {:.1} s: nothing was delivered",
            run.run_id,
            state_name(run.state()),
            elapsed.as_secs_f64()
        )
    };
    if let Some(error) = &run.error {
        summary.push_str(&run_error_line(error));
    }
    summary
}

/// An object stored under the tenant, as `list`, `get` and `delete` print it.
pub trait Stored {
    /// What it is called in messages: `destination`, `credential`.
    const NOUN: &'static str;
    /// Its JSON.
    fn json(&self) -> Value;
    /// Its line of text, from its JSON.
    fn line(value: &Value) -> String;
}

impl Stored for Destination {
    const NOUN: &'static str = "destination";

    fn json(&self) -> Value {
        destination_json(self)
    }

    fn line(value: &Value) -> String {
        format!(
            "{}  {}  s3://{}/{}{}",
            value["destination_id"].as_str().unwrap_or_default(),
            value["name"].as_str().unwrap_or_default(),
            value["bucket"].as_str().unwrap_or_default(),
            value["prefix"].as_str().unwrap_or_default(),
            value["filename_template"].as_str().unwrap_or_default()
        )
    }
}

impl Stored for Credential {
    const NOUN: &'static str = "credential";

    fn json(&self) -> Value {
        credential_json(self)
    }

    fn line(value: &Value) -> String {
        format!(
            "{}  {}  {}",
            value["credential_id"].as_str().unwrap_or_default(),
            value["kind"].as_str().unwrap_or_default(),
            value["detail"]
        )
    }
}

/// A destination as JSON: its name and where its files go.
fn destination_json(destination: &Destination) -> Value {
    let settings = destination.settings.as_ref();
    let s3 = settings.and_then(|s| s.destination.as_ref());
    json!({
        "destination_id": destination.destination_id,
        "name": destination.name,
        "bucket": s3.map(|d| d.bucket.clone()),
        "prefix": s3.map(|d| d.prefix.clone()),
        "filename_template": settings.map(|s| s.filename_template.clone()),
    })
}

/// A credential as JSON: its kind and what the bucket owner needs to know, its secrets only as
/// set or unset.
pub fn credential_json(credential: &Credential) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use filedrop_proto::v1::{
        ErrorCode, ExportRequest, RoleToRole, S3Destination, StoredAccessKey,
    };

    fn failed_run() -> Run {
        Run {
            run_id: "01a2-run".to_owned(),
            state: RunState::Failed.into(),
            rows: 1_500,
            files: 3,
            files_uploaded: 2,
            bytes_uploaded: 4_096,
            error: Some(RunError {
                code: ErrorCode::BucketNotFound.into(),
                message: "the bucket orders does not exist".to_owned(),
                ..RunError::default()
            }),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            ..Run::default()
        }
    }

    fn succeeded_run() -> Run {
        Run {
            state: RunState::Succeeded.into(),
            files_uploaded: 3,
            error: None,
            created_at: None,
            ..failed_run()
        }
    }

    #[test]
    fn a_state_is_named_in_lowercase_without_its_prefix() {
        assert_eq!(state_name(RunState::Succeeded), "succeeded");
        assert_eq!(state_name(RunState::Committing), "committing");
        assert_eq!(state_name(RunState::Unspecified), "unspecified");
    }

    #[test]
    fn a_run_line_shows_its_counts_and_its_error_indented_below() {
        assert_eq!(
            run_line(&failed_run()),
            "01a2-run  failed            1500 rows  2/3 files  4096 bytes\n  \
             BUCKET_NOT_FOUND: the bucket orders does not exist"
        );
        assert_eq!(
            run_line(&succeeded_run()),
            "01a2-run  succeeded         1500 rows  3/3 files  4096 bytes"
        );
    }

    #[test]
    fn a_run_as_json_has_its_counts_its_error_code_and_its_creation_in_seconds() {
        assert_eq!(
            run_json(&failed_run()),
            json!({
                "run_id": "01a2-run",
                "state": "failed",
                "rows": 1500,
                "files": 3,
                "files_uploaded": 2,
                "bytes_uploaded": 4096,
                "error": {"code": "BUCKET_NOT_FOUND", "message": "the bucket orders does not exist"},
                "created_at": 1_700_000_000,
            })
        );
        let succeeded = run_json(&succeeded_run());
        assert_eq!(succeeded["error"], Value::Null);
        assert_eq!(succeeded["created_at"], Value::Null);
    }

    #[test]
    fn a_succeeded_runs_summary_says_what_was_delivered() {
        assert_eq!(
            run_summary(&succeeded_run(), Duration::from_millis(2_340)),
            "run 01a2-run succeeded: 1500 rows, 3 of 3 files, 4096 bytes delivered in 2.3 s"
        );
    }

    #[test]
    fn a_failed_runs_summary_says_nothing_was_delivered_whatever_its_counts() {
        assert_eq!(
            run_summary(&failed_run(), Duration::from_secs(61)),
            "run 01a2-run failed after 61.0 s: nothing was delivered\n  \
             BUCKET_NOT_FOUND: the bucket orders does not exist"
        );
    }

    #[test]
    fn a_role_credential_shows_its_role_and_external_id() {
        let credential = Credential {
            credential_id: "cred-1".to_owned(),
            kind: Some(Kind::RoleToRole(RoleToRole {
                role_arn: "arn:aws:iam::123456789012:role/exports".to_owned(),
                external_id: "ext-9".to_owned(),
                trust_policy_json: "{}".to_owned(),
                ..RoleToRole::default()
            })),
            ..Credential::default()
        };
        let value = credential_json(&credential);
        assert_eq!(
            value,
            json!({
                "credential_id": "cred-1",
                "kind": "iam-role-to-role",
                "detail": {
                    "role_arn": "arn:aws:iam::123456789012:role/exports",
                    "external_id": "ext-9",
                },
            })
        );
        assert_eq!(
            Credential::line(&value),
            "cred-1  iam-role-to-role  \
             {\"external_id\":\"ext-9\",\"role_arn\":\"arn:aws:iam::123456789012:role/exports\"}"
        );
    }

    #[test]
    fn an_access_key_credential_shows_its_secrets_only_as_set_or_unset() {
        let credential = Credential {
            credential_id: "cred-2".to_owned(),
            kind: Some(Kind::AccessKey(StoredAccessKey {
                access_key_id: "AKIAEXAMPLE".to_owned(),
                secret_access_key_set: true,
                session_token_set: false,
                ..StoredAccessKey::default()
            })),
            ..Credential::default()
        };
        assert_eq!(
            credential_json(&credential),
            json!({
                "credential_id": "cred-2",
                "kind": "iam-credential",
                "detail": {
                    "access_key_id": "AKIAEXAMPLE",
                    "secret_access_key": "set",
                    "session_token": "unset",
                },
            })
        );
        let unknown = Credential {
            kind: None,
            ..credential
        };
        assert_eq!(credential_json(&unknown)["kind"], "unknown");
        assert_eq!(credential_json(&unknown)["detail"], Value::Null);
    }

    #[test]
    fn a_destination_shows_its_name_and_where_its_files_go() {
        let destination = Destination {
            destination_id: "dest-1".to_owned(),
            name: "orders".to_owned(),
            settings: Some(ExportRequest {
                destination: Some(S3Destination {
                    bucket: "acme".to_owned(),
                    prefix: "daily/".to_owned(),
                    ..S3Destination::default()
                }),
                filename_template: "orders-{{file_number}}.csv".to_owned(),
                ..ExportRequest::default()
            }),
            ..Destination::default()
        };
        let value = destination.json();
        assert_eq!(
            value,
            json!({
                "destination_id": "dest-1",
                "name": "orders",
                "bucket": "acme",
                "prefix": "daily/",
                "filename_template": "orders-{{file_number}}.csv",
            })
        );
        assert_eq!(
            Destination::line(&value),
            "dest-1  orders  s3://acme/daily/orders-{{file_number}}.csv"
        );
    }

    #[test]
    fn a_destination_without_settings_shows_empty_places() {
        let destination = Destination {
            destination_id: "dest-2".to_owned(),
            name: "bare".to_owned(),
            ..Destination::default()
        };
        let value = destination.json();
        assert_eq!(value["bucket"], Value::Null);
        assert_eq!(Destination::line(&value), "dest-2  bare  s3:///");
    }

    #[test]
    fn an_error_as_json_carries_its_kind_and_its_whole_chain() {
        let error = anyhow::anyhow!("no such file").context("cannot read orders.csv");
        assert_eq!(
            error_json("input", &error),
            json!({"error": {"kind": "input", "message": "cannot read orders.csv: no such file"}})
        );
    }
}
