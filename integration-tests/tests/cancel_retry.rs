//! Cancelling and retrying runs through the real control plane and workers: a cancelled run
//! leaves nothing at the destination and nothing open, even for tasks that arrive late; a run
//! that failed on a credential's missing permission during its commit leaves nothing either,
//! and, retried once the permission is granted, delivers every file.

use filedrop_integration_tests::services::{FaultProxy, Faults, Moto};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::jobs::v1::UploadTask;
use filedrop_proto::v1::{AccessKeyCredential, ErrorCode, FileFormat, RunState};
use prost::Message;
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "lifecycle";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits until `done` holds, up to `within`, then returns its last answer.
async fn eventually<T, F, Fut>(within: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) || std::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that `answer` was refused as not possible now, with a message that `says`.
fn assert_not_possible<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, says: &str) {
    let status = answer.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains(says), "{status:?}");
}

fn keys(objects: &[s3::Object]) -> Vec<String> {
    objects.iter().map(|object| object.key.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_leaves_no_object_and_no_open_upload() {
    let moto = Moto::start(&[BUCKET]);
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    // Not the run's: it stays.
    s3.put_object()
        .bucket(BUCKET)
        .key("cancel/keep.txt")
        .body(b"someone else's".to_vec().into())
        .send()
        .await
        .unwrap();
    // Encoders only, at first: the upload tasks wait in their queue.
    let mut stack = Stack::start(StackOptions {
        worker_env: vec![("FILEDROP_ROLES".into(), "encode".into())],
        ..StackOptions::default()
    });
    let api = stack.api();
    let request = client::split(
        client::request_to(&moto, BUCKET, "cancel/", FileFormat::Csv),
        50_000,
    );
    let accepted = client::export(&api, &request, data::table(150_000, 50_000))
        .await
        .expect("the export is accepted");
    let run_id = accepted.run_id.as_str();
    let tasks = stack
        .take_tasks("upload", 3, Duration::from_secs(120))
        .await;
    let file_keys: Vec<String> = tasks
        .iter()
        .map(|task| UploadTask::decode(task.as_slice()).unwrap().object_key)
        .collect();

    // The first file is delivered; a worker is midway through the second (its multipart
    // upload open); the third has not begun.
    stack.publish_tasks("upload", &tasks[..1]).await;
    stack.start_worker_with(&[("FILEDROP_ROLES", "upload")]);
    let run = eventually(
        RUN_TIMEOUT,
        || client::get_run(&api, run_id),
        |run| run.files_uploaded == 1,
    )
    .await;
    assert_eq!(run.files_uploaded, 1, "{run:?}");
    s3.create_multipart_upload()
        .bucket(BUCKET)
        .key(&file_keys[1])
        .send()
        .await
        .unwrap();
    assert_eq!(s3::open_uploads(&s3, BUCKET).await.len(), 1);

    let cancelled = client::cancel_run(&api, run_id).await.expect("CancelRun");
    assert_eq!(cancelled.state(), RunState::Cancelled, "{cancelled:?}");
    assert_eq!(cancelled.error, None);
    // Tasks that arrive after the cancellation (a broker's redelivery, a slow queue) are
    // dropped, and nothing is written for them.
    stack.publish_tasks("upload", &tasks[1..]).await;

    let log = stack.dir.join("worker-2.log");
    let dropped = eventually(
        RUN_TIMEOUT,
        || async { std::fs::read_to_string(&log).unwrap_or_default() },
        |log| log.matches("run stopped; dropping task").count() == 2,
    )
    .await;
    assert_eq!(
        dropped.matches("run stopped; dropping task").count(),
        2,
        "{dropped}"
    );
    let objects = eventually(
        RUN_TIMEOUT,
        || s3::list(&s3, BUCKET, "cancel/"),
        |objects| objects.len() == 1,
    )
    .await;
    assert_eq!(keys(&objects), vec!["cancel/keep.txt".to_owned()]);
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());
    let staged = stack.staging_dir().join("runs").join(run_id);
    let staged = eventually(RUN_TIMEOUT, || async { staged.exists() }, |exists| !exists).await;
    assert!(!staged, "the cancelled run's staging is deleted");

    // Cancelling again changes nothing; a watch ends at once.
    let again = client::cancel_run(&api, run_id).await.expect("CancelRun");
    assert_eq!(again.state(), RunState::Cancelled);
    let watched = client::watch_to_end(&api, run_id, Duration::from_secs(10)).await;
    assert_eq!(watched.last().unwrap().state(), RunState::Cancelled);
    // A cancelled run is not retried.
    assert_not_possible(client::retry_run(&api, run_id).await, "is cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failed_by_a_credential_during_its_commit_is_taken_back_then_retried_after_the_fix() {
    let moto = Moto::start(&[BUCKET]);
    let proxy = FaultProxy::start(Some(&moto.endpoint), &Faults::default());
    let policy = |put: &str| {
        format!(
            r#"{{"Version": "2012-10-17", "Statement": [
                {{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket",
                  "s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload",
                  "s3:DeleteObject"], "Resource": "*"}},
                {{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "{put}"}}]}}"#
        )
    };
    let (key_id, secret) = moto.create_user("mended", &policy("arn:aws:s3:::nothing/*"));
    let mut stack = Stack::start(StackOptions {
        worker_env: vec![("FILEDROP_ROLES".into(), "encode".into())],
        ..StackOptions::default()
    });
    let api = stack.api();
    let credential = client::create_access_key_credential(
        &api,
        &AccessKeyCredential {
            access_key_id: key_id,
            secret_access_key: secret,
            ..AccessKeyCredential::default()
        },
    )
    .await
    .expect("CreateCredential");
    let mut request = client::with_credential(
        client::split(
            client::request_to(&moto, BUCKET, "retry/", FileFormat::Csv),
            50_000,
        ),
        &credential.credential_id,
    );
    request.destination.as_mut().unwrap().endpoint_url = proxy.endpoint.clone();
    let accepted = client::export(&api, &request, data::table(150_000, 50_000))
        .await
        .expect("the export is accepted");
    let run_id = accepted.run_id.as_str();

    // The credential may write the first file only: the commit completes it, the second is
    // refused, the run fails, and what its commit completed is taken back.
    let tasks = stack
        .take_tasks("upload", 3, Duration::from_secs(120))
        .await;
    let first_key = UploadTask::decode(tasks[0].as_slice()).unwrap().object_key;
    moto.put_user_policy(
        "mended",
        &policy(&format!("arn:aws:s3:::{BUCKET}/{first_key}")),
    );
    stack.publish_tasks("upload", &tasks).await;
    stack.start_worker_with(&[
        ("FILEDROP_ROLES", "upload"),
        ("FILEDROP_UPLOAD__CONCURRENCY", "1"),
    ]);
    let failed = client::run_to_end(&api, run_id, RUN_TIMEOUT).await;
    assert_eq!(failed.state(), RunState::Failed, "{failed:?}");
    let error = failed.error.clone().expect("a failed run has an error");
    assert_eq!(error.code(), ErrorCode::AccessDenied, "{error:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !s3::list(&s3, BUCKET, "retry/").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed run's first file was not taken back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_path = format!("/{BUCKET}/{first_key}");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path == first_path && r.method == "DELETE" && r.status < 300),
        "the first file was written by the commit, then deleted"
    );

    // The bucket owner grants the permission; the run resumes from its staged data.
    moto.put_user_policy("mended", &policy(&format!("arn:aws:s3:::{BUCKET}/*")));
    let retried = client::retry_run(&api, run_id).await.expect("RetryRun");
    assert_ne!(retried.state(), RunState::Failed, "{retried:?}");
    assert_eq!(retried.error, None, "the error is cleared");
    let run = client::run_to_end(&api, run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!((run.files, run.files_uploaded), (3, 3), "{run:?}");

    let objects = s3::list(&s3, BUCKET, "retry/").await;
    assert_eq!(
        objects.len(),
        5,
        "three files, manifest, marker: {:?}",
        keys(&objects)
    );
    let mut rows = 0;
    let requests = proxy.requests();
    for object in objects.iter().filter(|o| o.key.ends_with(".csv")) {
        rows += data::csv_rows(s3::get(&s3, BUCKET, &object.key).await);
        let path = format!("/{BUCKET}/{}", object.key);
        let writes = requests
            .iter()
            .filter(|r| r.path == path && r.status < 300)
            .filter(|r| {
                (r.method == "PUT" && !r.query.contains("partNumber"))
                    || (r.method == "POST" && r.query.contains("uploadId"))
            })
            .count();
        // The first file once by the failed commit (then deleted), once by the retry.
        let expected = if object.key == first_key { 2 } else { 1 };
        assert_eq!(
            writes, expected,
            "{} was written {writes} times",
            object.key
        );
    }
    assert_eq!(rows, 150_000);
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());

    // A delivered run is neither retried nor cancelled.
    assert_not_possible(client::retry_run(&api, run_id).await, "is succeeded");
    assert_not_possible(client::cancel_run(&api, run_id).await, "has succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_whose_data_is_not_kept_cannot_be_retried() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        control_plane_env: vec![("FILEDROP_STAGING__KEEP_FAILED_HOURS".into(), "0".into())],
        ..StackOptions::default()
    });
    let api = stack.api();
    let mut request = client::request_to(&moto, BUCKET, "kept/", FileFormat::Csv);
    request.destination.as_mut().unwrap().bucket = "no-such-bucket".into();
    let run = client::export_to_end(&api, &request, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    assert_not_possible(
        client::retry_run(&api, &run.run_id).await,
        "(the service keeps a failed run's data for staging.keep_failed_hours): export the data again",
    );
    assert!(!stack.staging_dir().join("runs").join(&run.run_id).exists());
    // A failed run can be given up: cancelled, it is final.
    let cancelled = client::cancel_run(&api, &run.run_id).await.unwrap();
    assert_eq!(cancelled.state(), RunState::Cancelled);
    assert_eq!(cancelled.error, None);
}
