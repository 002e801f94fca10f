//! No request can take filedrop down: hostile credentials are refused before data moves, a task
//! that panics fails its run and not its process (a panicking API call is answered), a task that kills every process that takes
//! it is dead-lettered after the delivery limit and fails its run, and malformed Arrow IPC is
//! refused without a panic. Every test ends with the processes alive (but for the ones a
//! test kills on purpose) and a normal export delivered on the same workers.

use arrow_flight::FlightData;
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{
    AccessKeyCredential, ErrorCode, ExportRequest, FileFormat, ListRunsRequest, RowNumber, Run,
    RunState,
};
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "poison";
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A normal export, on the stack as it is: delivered, with its marker.
async fn a_normal_export_succeeds(stack: &Stack, moto: &Moto, prefix: &str) {
    let api = stack.api();
    let request = client::request_to(moto, BUCKET, prefix, FileFormat::Csv);
    let run = client::export_to_end(&api, &request, data::table(2_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let keys: Vec<String> = s3::list(&s3, BUCKET, prefix)
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    assert!(
        keys.iter().any(|key| key.ends_with(".DONE")),
        "the marker is delivered: {keys:?}"
    );
}

/// `status` refuses the request as invalid, naming `field` first.
fn assert_refused_naming(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "{status:?}"
    );
}

fn assert_all_running(stack: &mut Stack) {
    let exited = stack.exited();
    assert!(exited.is_empty(), "processes exited: {exited:?}");
}

/// The run's error, which it must have.
fn error_of(run: &Run) -> (ErrorCode, String) {
    let error = run
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("no error: {run:?}"));
    (error.code(), error.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_cannot_be_sent_are_refused_naming_the_field() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let secret_part = "SECRETTOKENPART";
    type SpoilKey = fn(&mut AccessKeyCredential);
    let cases: [(&str, SpoilKey, &str); 4] = [
        (
            "access_key_id",
            |key| key.access_key_id = "AKIA\u{7f}BAD".into(),
            "DEL (0x7F)",
        ),
        (
            "session_token",
            |key| key.session_token = "FwoGZXIvYXdzEBYaD\nSECRETTOKENPART".into(),
            "a line break",
        ),
        (
            "secret_access_key",
            |key| key.secret_access_key.push('\n'),
            "often ends with one",
        ),
        (
            "access_key_id",
            |key| key.access_key_id = "AKIA BAD KEY".into(),
            "a space",
        ),
    ];
    for (field, spoil, says) in cases {
        // Inline in an export.
        let mut request = client::request_to(&moto, BUCKET, "inline/", FileFormat::Csv);
        spoil(
            request
                .destination
                .as_mut()
                .unwrap()
                .access_key
                .as_mut()
                .unwrap(),
        );
        let status = client::export(&api, &request, data::table(10, 10))
            .await
            .unwrap_err();
        assert_refused_naming(&status, &format!("destination.access_key.{field}"));
        assert!(status.message().contains(says), "{status:?}");
        assert!(!status.message().contains(secret_part), "{status:?}");
        assert!(
            !status.message().contains(&moto.secret_access_key),
            "{status:?}"
        );

        // As a stored credential.
        let mut key = AccessKeyCredential {
            access_key_id: moto.access_key_id.clone(),
            secret_access_key: moto.secret_access_key.clone(),
            ..Default::default()
        };
        spoil(&mut key);
        let status = client::create_access_key_credential(&api, &key)
            .await
            .unwrap_err();
        assert_refused_naming(&status, &format!("access_key.{field}"));
        assert!(!status.message().contains(secret_part), "{status:?}");
    }
    let runs = client::list_runs(&api, ListRunsRequest::default())
        .await
        .unwrap();
    assert!(runs.runs.is_empty(), "no run was started: {runs:?}");

    // The rest of what reaches a header or a URL.
    type SpoilRequest = fn(&mut ExportRequest);
    let spoiled: [(&str, SpoilRequest); 3] = [
        ("destination.endpoint_url", |request| {
            request.destination.as_mut().unwrap().endpoint_url = "http://user:pw@127.0.0.1:1".into()
        }),
        ("destination.region", |request| {
            request.destination.as_mut().unwrap().region = "us-east-1\r\nx-amz-acl: public".into()
        }),
        ("destination.kms_key_id", |request| {
            let destination = request.destination.as_mut().unwrap();
            destination.server_side_encryption =
                filedrop_proto::v1::ServerSideEncryption::AwsKms.into();
            destination.kms_key_id = "alias/exports\u{7f}".into();
        }),
    ];
    for (field, spoil) in spoiled {
        let mut request = client::request_to(&moto, BUCKET, "inline/", FileFormat::Csv);
        spoil(&mut request);
        let status = client::export(&api, &request, data::table(10, 10))
            .await
            .unwrap_err();
        assert_refused_naming(&status, field);
    }
    assert_all_running(&mut stack);
    a_normal_export_succeeds(&stack, &moto, "after/").await;
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(s3::list(&s3, BUCKET, "inline/").await.is_empty());
}

/// Where each fault is injected, the marker that selects its run, and the words the run's
/// error names the failed work with.
const PANICS: &[(&str, &str, &str)] = &[
    ("encode", "poison_encode", "the encoding of segment 0"),
    ("upload", "poison-upload", "the upload of file 1"),
    ("finalize", "poison-finalize", "the finalize step"),
    (
        "events",
        "poison-events",
        "the handling of the report that segment 0 is encoded",
    ),
    ("ingest", "poison-ingest", "receiving the stream"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_fails_its_run_and_its_process_goes_on() {
    let moto = Moto::start(&[BUCKET]);
    let rules = |places: &[&str]| {
        PANICS
            .iter()
            .filter(|(place, _, _)| places.contains(place))
            .map(|(place, marker, _)| format!("{place}:panic:{marker}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut stack = Stack::start(StackOptions {
        worker_env: vec![(
            "FILEDROP_TEST_FAULTS".into(),
            rules(&["encode", "upload", "finalize"]),
        )],
        control_plane_env: vec![(
            "FILEDROP_TEST_FAULTS".into(),
            format!("{},api:panic:RetryRun", rules(&["events", "ingest"])),
        )],
        ..StackOptions::default()
    });
    let api = stack.api();
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    for (place, marker, names) in PANICS {
        // The encode marker travels as the row number column's name; the others as the
        // prefix (in the object keys and the run's request).
        let prefix = format!("{marker}/");
        let mut request = client::request_to(&moto, BUCKET, &prefix, FileFormat::Csv);
        if *place == "encode" {
            request.row_number = Some(RowNumber {
                enabled: true,
                column_name: marker.to_string(),
            });
        }
        let run = match client::export(&api, &request, data::table(1_000, 500)).await {
            Ok(accepted) => client::run_to_end(&api, &accepted.run_id, RUN_TIMEOUT).await,
            Err(status) => {
                // The ingest's panic is the DoPut's answer; its run is failed too.
                assert_eq!(*place, "ingest", "{status:?}");
                assert_eq!(status.code(), Code::Internal, "{status:?}");
                assert!(status.message().contains("panicked at"), "{status:?}");
                let runs = client::list_runs(&api, ListRunsRequest::default())
                    .await
                    .unwrap();
                let newest = runs.runs.into_iter().next().expect("the run was created");
                client::run_to_end(&api, &newest.run_id, RUN_TIMEOUT).await
            }
        };
        assert_eq!(run.state(), RunState::Failed, "{place}: {run:?}");
        let (code, message) = error_of(&run);
        assert_eq!(code, ErrorCode::Internal, "{place}: {message}");
        assert!(
            message.contains(names) && message.contains("panicked at"),
            "{place}: {message}"
        );
        assert!(
            !message.contains(&moto.secret_access_key),
            "{place}: {message}"
        );
        // Nothing that says the delivery is complete, and no upload left open.
        let keys: Vec<String> = s3::list(&s3, BUCKET, &prefix)
            .await
            .into_iter()
            .map(|object| object.key)
            .collect();
        assert!(
            !keys
                .iter()
                .any(|key| key.ends_with(".DONE") || key.contains("manifest-")),
            "{place}: {keys:?}"
        );
        if *place != "finalize" {
            assert!(keys.is_empty(), "{place}: {keys:?}");
        }
        assert_all_running(&mut stack);
    }
    let open = s3::open_uploads(&s3, BUCKET).await;
    assert!(open.is_empty(), "{open:?}");
    // A panic in an API call's handler is an answer, and the control plane goes on.
    let runs = client::list_runs(&api, ListRunsRequest::default())
        .await
        .unwrap();
    let status = client::retry_run(&api, &runs.runs[0].run_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().starts_with(
            "/filedrop.v1.RunService/RetryRun failed unexpectedly (filedrop panicked at"
        ),
        "{status:?}"
    );
    assert_all_running(&mut stack);
    // The tasks that panicked are kept in the dead-letter queue for the operators (the encode,
    // upload and finalize tasks at least), and the control plane saw its copy of each.
    let kept = stack
        .take_tasks("dead-letter", 3, Duration::from_secs(30))
        .await;
    assert_eq!(kept.len(), 3);
    let log = stack.control_plane_log();
    assert!(
        log.matches("a rejected task was dead-lettered").count() >= 3,
        "{log}"
    );
    a_normal_export_succeeds(&stack, &moto, "after/").await;
    assert_all_running(&mut stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_kills_every_worker_is_dead_lettered_and_fails_its_run() {
    let moto = Moto::start(&[BUCKET]);
    // One task at a time, so the poison task never takes another run's task down with it.
    let worker_env = [
        ("FILEDROP_TEST_FAULTS", "encode:abort:poison_abort"),
        ("FILEDROP_ENCODE__CONCURRENCY", "1"),
    ];
    let mut stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    });
    stack.start_worker_with(&worker_env);
    let api = stack.api();
    let mut poison = client::request_to(&moto, BUCKET, "killer/", FileFormat::Csv);
    poison.row_number = Some(RowNumber {
        enabled: true,
        column_name: "poison_abort".into(),
    });
    let killer = client::export(&api, &poison, data::table(100, 100))
        .await
        .expect("the export is accepted")
        .run_id;
    let innocent = client::export(
        &api,
        &client::request_to(&moto, BUCKET, "innocent/", FileFormat::Csv),
        data::table(3_000, 500),
    )
    .await
    .expect("the export is accepted")
    .run_id;

    // A supervisor, as Kubernetes would be: a worker that dies is started again.
    let mut restarts = 0;
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    let run = loop {
        let run = client::get_run(&api, &killer).await;
        if matches!(run.state(), RunState::Failed | RunState::Succeeded) {
            break run;
        }
        if stack.worker_exited(0) {
            restarts += 1;
            assert!(restarts <= 20, "the worker was restarted {restarts} times");
            stack.restart_worker(0, &worker_env);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not end: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("the worker died {restarts} times before the task was dead-lettered");
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let (code, message) = error_of(&run);
    assert_eq!(code, ErrorCode::Internal, "{message}");
    assert!(
        message.contains("the encoding of segment 0 was given to a process"),
        "{message}"
    );
    // The poison task is kept in the dead-letter queue, for the operators to look at.
    let kept = stack
        .take_tasks("dead-letter", 1, Duration::from_secs(30))
        .await;
    let task = <filedrop_proto::jobs::v1::EncodeTask as prost::Message>::decode(kept[0].as_slice())
        .expect("an encode task");
    assert_eq!(task.run_id, killer);
    let limit = filedrop_runtime::broker::DELIVERY_LIMIT as usize + 1;
    assert!(
        (1..=limit).contains(&restarts),
        "the task was taken {restarts} times; the limit is {limit}"
    );
    // The other run went on meanwhile, on the same (restarted) worker; the last death of
    // the worker may have come after the loop's last look.
    if stack.worker_exited(0) {
        stack.restart_worker(0, &worker_env);
    }
    let other = client::run_to_end(&api, &innocent, RUN_TIMEOUT).await;
    assert_eq!(other.state(), RunState::Succeeded, "{other:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(s3::list(&s3, BUCKET, "killer/").await.is_empty());
    a_normal_export_succeeds(&stack, &moto, "after/").await;
    assert_all_running(&mut stack);
}

/// A valid stream of `batches` for `request`, as Flight messages.
async fn flight_messages(request: &ExportRequest, batches: usize) -> Vec<FlightData> {
    client::flight_messages(
        request,
        (0..batches).map(|index| data::batch(index as i64 * 100, 100)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_record_batches_are_refused_and_their_run_fails() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions {
        control_plane_env: vec![("FILEDROP_INGEST__MAX_VALUE_BYTES".into(), "4096".into())],
        ..StackOptions::default()
    });
    let api = stack.api();
    let request = client::request_to(&moto, BUCKET, "malformed/", FileFormat::Csv);

    // A buffer past the end of the body (the decoder's panic, "the offset of the new Buffer
    // cannot exceed the existing length"), in the fourth batch: the run exists by then.
    let mut messages = flight_messages(&request, 5).await;
    let body = messages[4].data_body.clone();
    messages[4].data_body = body.slice(..body.len() / 3);
    let status = client::do_put_messages(&api, messages).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("is not inside the"), "{status:?}");
    // A batch declaring more rows than a message may.
    let mut messages = flight_messages(&request, 1).await;
    let header = messages[1].data_header.to_vec();
    let rows = 100i64.to_le_bytes();
    let at = header
        .windows(8)
        .position(|window| window == rows)
        .expect("the batch header holds its row count");
    let mut changed = header.clone();
    // Every 100 in the header: the batch's row count and its arrays' lengths.
    for start in at..changed.len().saturating_sub(7) {
        if changed[start..start + 8] == rows {
            changed[start..start + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        }
    }
    messages[1].data_header = changed.into();
    let status = client::do_put_messages(&api, messages).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("declares 1099511627776 rows"),
        "{status:?}"
    );

    // A value over the service's limit for one value (4096 bytes here).
    let long = arrow_array::RecordBatch::try_from_iter([(
        "note",
        std::sync::Arc::new(arrow_array::StringArray::from(vec!["x".repeat(5_000)]))
            as arrow_array::ArrayRef,
    )])
    .unwrap();
    let status = client::export(&api, &request, [long]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("a value of column \"note\" is 5000 bytes"),
        "{status:?}"
    );

    let runs = client::list_runs(&api, ListRunsRequest::default())
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 1, "only the first stream had begun a run");
    let run = client::run_to_end(&api, &runs.runs[0].run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(s3::list(&s3, BUCKET, "malformed/").await.is_empty());
    assert_all_running(&mut stack);
    a_normal_export_succeeds(&stack, &moto, "after/").await;
}
