//! The `filedrop` command line, driven as a person and as a script would: a Parquet file sent
//! from a terminal shows its progress and the run's summary; `--json` output parses; exit
//! codes tell a failed run, a refused request and a refused token apart.

use filedrop_integration_tests::services::{Moto, venv};
use filedrop_integration_tests::stack::{Stack, StackOptions, binary};
use filedrop_integration_tests::{data, s3};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BUCKET: &str = "cli";

/// `filedrop ARGS` with the stack's address and `token`.
fn filedrop(stack: &Stack, token: &str, args: &[&str]) -> Output {
    filedrop_with(stack, token, args, &[])
}

/// `filedrop ARGS` with the stack's address, `token` and more environment variables.
fn filedrop_with(stack: &Stack, token: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary("filedrop"))
        .args(args)
        .env("FILEDROP_SERVER", stack.url())
        .env("FILEDROP_TOKEN", token)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running filedrop")
}

/// `filedrop ARGS` in a terminal (`run_in_pty.py`): what it drew, and its exit code.
fn filedrop_in_terminal(stack: &Stack, args: &[&str]) -> (String, Option<i32>) {
    let script =
        filedrop_integration_tests::repo_root().join("integration-tests/python/run_in_pty.py");
    let output = Command::new(venv().join("bin/python"))
        .arg(script)
        .arg(binary("filedrop"))
        .args(args)
        .env("FILEDROP_SERVER", stack.url())
        .env("FILEDROP_TOKEN", stack.token())
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .expect("running run_in_pty.py");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code(),
    )
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn write_parquet(path: &Path, rows: i64) {
    let table = data::table(rows, 50_000);
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, data::schema(), None).unwrap();
    for batch in &table {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_file_sent_from_a_terminal_shows_progress_then_the_runs_summary() {
    let moto = Moto::start(&[BUCKET]);
    // filedrop's own AWS identity (moto's), which role-to-role credentials name.
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });
    let token = stack.token();

    // Set up from the command line: a stored key (its secret from the environment, never
    // shown), a destination naming it, and one whose bucket does not exist.
    let created = filedrop_with(
        &stack,
        &token,
        &[
            "--json",
            "credentials",
            "create-key",
            "--access-key-id",
            &moto.access_key_id,
        ],
        &[("FILEDROP_SECRET_ACCESS_KEY", &moto.secret_access_key)],
    );
    assert_eq!(created.status.code(), Some(0), "{created:?}");
    assert!(!String::from_utf8_lossy(&created.stdout).contains(&moto.secret_access_key));
    let created = json(&created);
    assert_eq!(created["detail"]["secret_access_key"], "set", "{created}");
    let credential_id = created["credential_id"].as_str().unwrap().to_owned();
    for (name, bucket) in [("orders", BUCKET), ("nowhere", "no-such-bucket")] {
        let made = filedrop(
            &stack,
            &token,
            &[
                "destinations",
                "create",
                name,
                "--bucket",
                bucket,
                "--prefix",
                "cli/",
                "--endpoint-url",
                &moto.endpoint,
                "--path-style",
                "--credential",
                &credential_id,
                "--format",
                "csv",
                "--filename-template",
                "{{campaign}}-{{run_id}}-{{file_number}}.csv",
                "--rows-per-file",
                "50000",
                "--var",
                "campaign=default",
            ],
        );
        assert_eq!(made.status.code(), Some(0), "{made:?}");
    }
    let role = filedrop(
        &stack,
        &token,
        &[
            "--json",
            "credentials",
            "create-role",
            "--role-arn",
            "arn:aws:iam::123456789012:role/cli",
        ],
    );
    assert_eq!(role.status.code(), Some(0), "{role:?}");
    let role = json(&role);
    let external_id = role["detail"]["external_id"].as_str().unwrap();
    assert!(!external_id.is_empty(), "{role}");
    assert!(
        role["trust_policy_json"]
            .as_str()
            .unwrap()
            .contains(external_id),
        "{role}"
    );
    // A bad setting is refused, naming it.
    let refused = filedrop(
        &stack,
        &token,
        &[
            "destinations",
            "create",
            "bad",
            "--bucket",
            "Not_A_Bucket",
            "--credential",
            &credential_id,
            "--filename-template",
            "x.csv",
        ],
    );
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("bucket"),
        "{refused:?}"
    );

    let parquet = stack.dir.join("orders.parquet");
    write_parquet(&parquet, 200_000);
    let parquet = parquet.to_str().unwrap();

    // A person at a terminal: a progress bar while the file goes, then the run's summary.
    let (drawn, code) = filedrop_in_terminal(
        &stack,
        &[
            "export",
            parquet,
            "--destination",
            "orders",
            "--var",
            "campaign=spring",
        ],
    );
    assert_eq!(code, Some(0), "{drawn}");
    assert!(drawn.contains("sending"), "no progress bar:\n{drawn}");
    assert!(
        drawn.contains("200000/200000 rows"),
        "no row count:\n{drawn}"
    );
    assert!(
        drawn.contains("succeeded: 200000 rows, 4 of 4 files"),
        "no summary:\n{drawn}"
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "cli/").await;
    let mut rows = 0;
    for object in objects.iter().filter(|o| o.key.ends_with(".csv")) {
        assert!(object.key.starts_with("cli/spring-"), "{}", object.key);
        rows += data::csv_rows(s3::get(&s3, BUCKET, &object.key).await);
    }
    assert_eq!(rows, 200_000);

    // A script: --json answers parse, and say the same.
    let listed = json(&filedrop(&stack, &token, &["--json", "runs", "list"]));
    let runs = listed.as_array().expect("a list of runs");
    assert_eq!(runs.len(), 1, "{listed}");
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["rows"], 200_000);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let got = json(&filedrop(
        &stack,
        &token,
        &["--json", "runs", "get", &run_id],
    ));
    assert_eq!(got["files_uploaded"], 4, "{got}");
    let sent = filedrop(
        &stack,
        &token,
        &["--json", "export", parquet, "--destination", "orders"],
    );
    assert_eq!(sent.status.code(), Some(0), "{sent:?}");
    let sent = json(&sent);
    assert_eq!(
        (sent["state"].as_str(), sent["rows"].as_u64()),
        (Some("succeeded"), Some(200_000))
    );
    let listed = json(&filedrop(
        &stack,
        &token,
        &["--json", "destinations", "list"],
    ));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let tested = filedrop(&stack, &token, &["--json", "test-connection", "orders"]);
    assert_eq!(tested.status.code(), Some(0), "{tested:?}");
    assert_eq!(json(&tested)["ok"], true);

    // Exit codes scripts can branch on.
    let failed = filedrop(
        &stack,
        &token,
        &["--json", "export", parquet, "--destination", "nowhere"],
    );
    assert_eq!(failed.status.code(), Some(1), "a failed run: {failed:?}");
    assert_eq!(json(&failed)["error"]["code"], "BUCKET_NOT_FOUND");
    let refused = filedrop(
        &stack,
        &token,
        &["export", parquet, "--destination", "unknown"],
    );
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("there is no destination"),
        "{refused:?}"
    );
    let missing = filedrop(
        &stack,
        &token,
        &["runs", "get", "01a20000-0000-7000-8000-000000000000"],
    );
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    let unauthenticated = filedrop(&stack, "not-a-token", &["runs", "list"]);
    assert_eq!(
        unauthenticated.status.code(),
        Some(4),
        "{unauthenticated:?}"
    );
    let said = String::from_utf8_lossy(&unauthenticated.stderr);
    assert_eq!(
        said.matches("token is not valid").count(),
        1,
        "said once: {said}"
    );
    let usage = filedrop(&stack, &token, &["export"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let unreadable = filedrop(
        &stack,
        &token,
        &["export", "/no/such/file.parquet", "--destination", "orders"],
    );
    assert_eq!(unreadable.status.code(), Some(3), "{unreadable:?}");
}
