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
    // A person is told nothing was delivered, whatever was uploaded before the failure.
    let failed = filedrop(
        &stack,
        &token,
        &["export", parquet, "--destination", "nowhere"],
    );
    assert_eq!(failed.status.code(), Some(1), "a failed run: {failed:?}");
    let said = String::from_utf8_lossy(&failed.stdout);
    assert!(said.contains("failed after"), "{said}");
    assert!(said.contains("nothing was delivered"), "{said}");
    assert!(said.contains("BUCKET_NOT_FOUND"), "{said}");
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

/// Runs of the destination `name`, each followed to its end.
async fn ended_runs_of(
    api: &filedrop_integration_tests::client::Api,
    name: &str,
) -> Vec<filedrop_proto::v1::Run> {
    use filedrop_integration_tests::client;
    let listed = client::list_runs(
        api,
        filedrop_proto::v1::ListRunsRequest {
            page_size: 100,
            destination_name: name.to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect("ListRuns");
    let mut ended = Vec::new();
    for run in listed.runs {
        ended.push(client::run_to_end(api, &run.run_id, std::time::Duration::from_secs(120)).await);
    }
    ended
}

/// What a failed export leaves: at most one run (none when the stream was reset before its
/// first batch arrived), failed with STREAM_INCOMPLETE, and nothing at all in the bucket (no
/// object, no marker, no open multipart upload).
async fn assert_failed_and_nothing_delivered(
    stack: &Stack,
    moto: &Moto,
    what: &str,
) -> Option<filedrop_proto::v1::Run> {
    use filedrop_proto::v1::{ErrorCode, RunState};
    let runs = ended_runs_of(&stack.api(), "orders").await;
    assert!(runs.len() <= 1, "{what}: {runs:?}");
    let run = runs.into_iter().next();
    if let Some(run) = &run {
        assert_eq!(run.state(), RunState::Failed, "{what}: {run:?}");
        let error = run.error.clone().expect("an error");
        assert_eq!(error.code(), ErrorCode::StreamIncomplete, "{what}: {run:?}");
    }
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let keys: Vec<String> = s3::list(&s3, BUCKET, "")
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    assert_eq!(keys, Vec::<String>::new(), "{what}");
    assert_eq!(
        s3::open_uploads(&s3, BUCKET).await,
        Vec::<String>::new(),
        "{what}"
    );
    run
}

/// A stack with the stored destination `orders`: CSV files of 50,000 rows in the bucket.
async fn stack_with_orders(moto: &Moto) -> Stack {
    use filedrop_integration_tests::client;
    use filedrop_proto::v1::{CreateDestinationRequest, FileFormat};
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let credential = client::store_moto_key(&api, moto).await;
    let mut settings = client::split(
        client::with_credential(
            client::request_to(moto, BUCKET, "orders/", FileFormat::Csv),
            &credential.credential_id,
        ),
        50_000,
    );
    settings.filename_template = "orders-{{file_number}}.csv".into();
    client::destinations(&api)
        .await
        .create_destination(CreateDestinationRequest {
            name: "orders".into(),
            settings: Some(settings),
        })
        .await
        .expect("CreateDestination");
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_deep_in_a_csv_file_delivers_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = stack_with_orders(&moto).await;
    let csv = stack.dir.join("orders.csv");
    let mut text = String::from("id,amount,label\n");
    for id in 0..300_000 {
        if id == 250_000 {
            text.push_str("250000,not-a-number,bad\n");
        } else {
            text.push_str(&format!("{id},{},row {id}\n", id * 3));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let csv = csv.to_str().unwrap();

    let sent = filedrop(
        &stack,
        &stack.token(),
        &["export", csv, "--destination", "orders"],
    );
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let said = String::from_utf8_lossy(&sent.stderr);
    assert!(said.contains(csv), "names the file: {said}");
    assert!(said.contains("nothing was delivered"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    let run = assert_failed_and_nothing_delivered(&stack, &moto, "a bad CSV value")
        .await
        .expect("the run of the rows sent before the bad one");
    // How far the server got before the reset reached it is a race (the run may not even have
    // been named to the CLI yet); a run named is this one.
    if said.contains("(run ") {
        assert!(said.contains(&format!("(run {})", run.run_id)), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_corrupt_parquet_file_delivers_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = stack_with_orders(&moto).await;
    let token = stack.token();
    // Row groups of 50,000 rows, so that a corrupt middle is met after rows were sent.
    let whole = stack.dir.join("whole.parquet");
    {
        let file = std::fs::File::create(&whole).unwrap();
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(50_000))
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, data::schema(), Some(properties)).unwrap();
        for batch in &data::table(300_000, 50_000) {
            writer.write(batch).unwrap();
        }
        writer.close().unwrap();
    }
    let bytes = std::fs::read(&whole).unwrap();

    // Cut in half: no footer, so nothing is sent at all.
    let truncated = stack.dir.join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let truncated = truncated.to_str().unwrap();
    let sent = filedrop(
        &stack,
        &token,
        &["export", truncated, "--destination", "orders"],
    );
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let said = String::from_utf8_lossy(&sent.stderr);
    assert!(said.contains(truncated), "names the file: {said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(ended_runs_of(&stack.api(), "orders").await.is_empty());

    // Garbage over the middle of the data: met after the first row groups were sent.
    let corrupt = stack.dir.join("corrupt.parquet");
    let mut damaged = bytes.clone();
    let middle = damaged.len() * 2 / 3;
    for byte in &mut damaged[middle..middle + 64 * 1024] {
        *byte = 0xA5;
    }
    std::fs::write(&corrupt, &damaged).unwrap();
    let corrupt = corrupt.to_str().unwrap();
    let sent = filedrop(
        &stack,
        &token,
        &["export", corrupt, "--destination", "orders"],
    );
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let said = String::from_utf8_lossy(&sent.stderr);
    assert!(said.contains(corrupt), "names the file: {said}");
    assert!(said.contains("nothing was delivered"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert_failed_and_nothing_delivered(&stack, &moto, "a corrupt Parquet file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_send_cancels_the_export_and_delivers_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = stack_with_orders(&moto).await;
    // An Arrow IPC stream on standard input, written by hand: the send is under way and
    // waiting for more when Ctrl-C comes.
    let mut child = Command::new(binary("filedrop"))
        .args(["export", "-", "--destination", "orders"])
        .env("FILEDROP_SERVER", stack.url())
        .env("FILEDROP_TOKEN", stack.token())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running filedrop");
    let stdin = child.stdin.take().unwrap();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(stdin, &data::schema()).unwrap();
    for batch in data::table(120_000, 20_000) {
        writer.write(&batch).unwrap();
    }
    writer.flush().unwrap();
    // Until the run is receiving its rows.
    let api = stack.api();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed = filedrop_integration_tests::client::list_runs(
            &api,
            filedrop_proto::v1::ListRunsRequest {
                destination_name: "orders".into(),
                ..Default::default()
            },
        )
        .await
        .expect("ListRuns");
        if listed.runs.first().is_some_and(|run| run.rows >= 100_000) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the send never began: {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = child.id().to_string();
    let signalled = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(signalled.success());
    // It exits without waiting for the rest of its input, which stays open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("filedrop did not exit after Ctrl-C");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().unwrap();
    drop(writer);
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("interrupted"), "{said}");
    assert!(said.contains("nothing was delivered"), "{said}");
    let run = assert_failed_and_nothing_delivered(&stack, &moto, "Ctrl-C")
        .await
        .expect("the run receiving when Ctrl-C came");
    // The server named the run as soon as it existed, so the interrupted CLI can say which.
    assert!(said.contains(&format!("(run {})", run.run_id)), "{said}");
    // Whether the server reads the reset as a broken stream or as an end without a commit
    // depends on which frame reaches it first; either way nothing was committed.
    let message = run.error.unwrap().message;
    assert!(
        message.contains("broke before its end") || message.contains("without an ExportCommit"),
        "{message}"
    );
}
