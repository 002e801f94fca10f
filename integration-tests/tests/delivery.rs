//! Delivery to a bucket someone else owns, through the real services against moto with
//! authentication on: filedrop's own identity (the IAM user `filedrop`) assumes the bucket
//! owner's role with the External ID filedrop generated, and a role that does not trust it
//! fails the run with `ROLE_ASSUMPTION_FAILED`, leaving nothing behind.

use filedrop_integration_tests::services::{FaultProxy, Faults, MOTO_FILEDROP_USER_ARN, Moto};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{
    ErrorCode, FileFormat, RoleToRole, RunState, ServerSideEncryption, TestConnectionResponse,
    credential,
};
use std::time::Duration;

const BUCKET: &str = "owned-by-someone-else";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn role_to_role(credential: &filedrop_proto::v1::Credential) -> &RoleToRole {
    match &credential.kind {
        Some(credential::Kind::RoleToRole(role)) => role,
        other => panic!("not a role-to-role credential: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_to_role_export_assumes_the_owners_role_with_filedrops_external_id() {
    let moto = Moto::start_recording(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });

    // The bucket owner asks filedrop for a credential, then creates the role it describes.
    let role_arn = "arn:aws:iam::123456789012:role/filedrop-exports";
    let credential = client::create_role_credential(&stack.api(), role_arn)
        .await
        .expect("CreateCredential");
    let role = role_to_role(&credential);
    assert_eq!(role.role_arn, role_arn);
    assert_eq!(role.filedrop_principal_arn, MOTO_FILEDROP_USER_ARN);
    assert!(role.external_id.starts_with("filedrop-"), "{role:?}");
    let policy: serde_json::Value = serde_json::from_str(&role.trust_policy_json).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Principal"]["AWS"], MOTO_FILEDROP_USER_ARN);
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"],
        role.external_id.as_str()
    );
    assert_eq!(
        moto.create_role("filedrop-exports", &role.trust_policy_json),
        role_arn
    );
    let again = client::get_credential(&stack.api(), &credential.credential_id)
        .await
        .expect("GetCredential");
    assert_eq!(role_to_role(&again), role, "the same credential reads back");

    let request = client::with_credential(
        client::split(
            client::request_to(&moto, BUCKET, "trusted/", FileFormat::Csv),
            50_000,
        ),
        &credential.credential_id,
    );
    let run = client::export_to_end(
        &stack.api(),
        &request,
        data::table(120_000, 20_000),
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "trusted/").await;
    assert_eq!(
        objects.len(),
        5,
        "three files, the manifest and the marker: {objects:?}"
    );

    // Every AssumeRole filedrop made carried the External ID and a session name naming the run.
    let calls = moto.assume_role_calls();
    assert!(!calls.is_empty(), "the role was assumed");
    for call in &calls {
        assert_eq!(call.get("RoleArn").map(String::as_str), Some(role_arn));
        assert_eq!(
            call.get("ExternalId"),
            Some(&role.external_id),
            "every AssumeRole carries the External ID: {call:?}"
        );
        assert_eq!(
            call.get("RoleSessionName"),
            Some(&format!("filedrop-{}", run.run_id)),
            "{call:?}"
        );
    }

    // A role that trusts filedrop only with another External ID cannot be assumed.
    let other_arn = "arn:aws:iam::123456789012:role/expects-another-id";
    let other = client::create_role_credential(&stack.api(), other_arn)
        .await
        .expect("CreateCredential");
    let other_role = role_to_role(&other);
    assert_ne!(
        other_role.external_id, role.external_id,
        "one External ID per credential"
    );
    let foreign_policy = other_role
        .trust_policy_json
        .replace(&other_role.external_id, "an-id-of-another-service");
    moto.create_role("expects-another-id", &foreign_policy);
    let request = client::with_credential(
        client::request_to(&moto, BUCKET, "untrusted/", FileFormat::Csv),
        &other.credential_id,
    );
    let run =
        client::export_to_end(&stack.api(), &request, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let error = run.error.expect("a failed run has an error");
    assert_eq!(error.code(), ErrorCode::RoleAssumptionFailed, "{error:?}");
    assert!(
        error.message.contains(other_arn) && error.message.contains("trust_policy_json"),
        "{}",
        error.message
    );
    assert!(s3::list(&s3, BUCKET, "untrusted/").await.is_empty());
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());

    // filedrop's own secret never reaches a log.
    for log in std::fs::read_dir(&stack.dir).unwrap().flatten() {
        if log.path().extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(log.path()).unwrap();
            assert!(
                !text.contains(&moto.secret_access_key),
                "{} logs filedrop's secret",
                log.path().display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_destinations_naming_them_are_checked_before_data_moves() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });
    let status = client::create_role_credential(&stack.api(), "arn:aws:iam::123456789012:user/me")
        .await
        .expect_err("a user ARN is not a role");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("role_to_role.role_arn: "),
        "{status:?}"
    );
    let status = client::get_credential(&stack.api(), "no-such-credential")
        .await
        .expect_err("an unknown credential");
    assert_eq!(status.code(), tonic::Code::NotFound);

    let request = client::with_credential(
        client::request_to(&moto, BUCKET, "unknown/", FileFormat::Csv),
        "no-such-credential",
    );
    let status = client::export(&stack.api(), &request, data::table(10, 10))
        .await
        .expect_err("an unknown credential is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("destination.credential_id: "),
        "{status:?}"
    );
    let mut both = client::request_to(&moto, BUCKET, "both/", FileFormat::Csv);
    both.destination.as_mut().unwrap().credential_id = "some-id".into();
    let status = client::export(&stack.api(), &both, data::table(10, 10))
        .await
        .expect_err("a key and a credential id at once are refused");
    assert!(
        status.message().starts_with("destination.credential_id: "),
        "{status:?}"
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(
        s3::list(&s3, BUCKET, "").await.is_empty(),
        "nothing is written"
    );
}

/// moto does not expire temporary credentials, so expiry is brought forward instead: the
/// workers renew assumed credentials once less than 899 of their 900 seconds are left, that is
/// after one second, and a run of several seconds (a slow stream, its files uploaded as
/// multipart uploads while it arrives) must renew them (each AssumeRole again with the
/// External ID) and still deliver every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_credentials_are_renewed_during_a_long_run_which_succeeds() {
    let moto = Moto::start_recording(&[BUCKET]);
    let mut env = moto.identity_env();
    env.push((
        "FILEDROP_AWS_IDENTITY__SESSION_SECONDS".into(),
        "900".into(),
    ));
    env.push((
        "FILEDROP_AWS_IDENTITY__REFRESH_BEFORE_EXPIRY_SECS".into(),
        "899".into(),
    ));
    let stack = Stack::start(StackOptions {
        env,
        ..StackOptions::default()
    });
    let role_arn = "arn:aws:iam::123456789012:role/long-runs";
    let credential = client::create_role_credential(&stack.api(), role_arn)
        .await
        .expect("CreateCredential");
    moto.create_role("long-runs", &role_to_role(&credential).trust_policy_json);
    let request = client::with_credential(
        client::split(
            client::request_to(&moto, BUCKET, "long/", FileFormat::Csv),
            100_000,
        ),
        &credential.credential_id,
    );
    let started = std::time::Instant::now();
    // A slow stream: a file of two parts is ready every half second, for five seconds.
    let slowly = data::table(1_000_000, 50_000)
        .into_iter()
        .inspect(|_| std::thread::sleep(Duration::from_millis(250)));
    let run = client::export_to_end(&stack.api(), &request, slowly, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert_eq!(
        s3::list(&s3, BUCKET, "long/").await.len(),
        12,
        "10 files, the manifest and the marker"
    );
    let calls = moto.assume_role_calls();
    assert!(
        calls.len() >= 3,
        "a run of {:?} renewed its credentials: {} AssumeRole calls",
        started.elapsed(),
        calls.len()
    );
    let external_id = &role_to_role(&credential).external_id;
    assert!(
        calls
            .iter()
            .all(|call| call.get("ExternalId") == Some(external_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_store_refuses_as_expired_mid_run_are_renewed_and_the_run_succeeds() {
    let moto = Moto::start_recording(&[BUCKET]);
    // The store refuses the first assumed credentials after three requests, as S3 refuses a
    // session that expired before the clock said it would.
    let proxy = FaultProxy::start(
        Some(&moto.endpoint),
        &Faults {
            expire_session_after: Some(3),
            ..Faults::default()
        },
    );
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });
    let role_arn = "arn:aws:iam::123456789012:role/expiring";
    let credential = client::create_role_credential(&stack.api(), role_arn)
        .await
        .expect("CreateCredential");
    moto.create_role("expiring", &role_to_role(&credential).trust_policy_json);
    let mut request = client::with_credential(
        client::split(
            client::request_to(&moto, BUCKET, "expiring/", FileFormat::Csv),
            50_000,
        ),
        &credential.credential_id,
    );
    request.destination.as_mut().unwrap().endpoint_url = proxy.endpoint.clone();
    let run = client::export_to_end(
        &stack.api(),
        &request,
        data::table(250_000, 50_000),
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let refused = proxy
        .requests()
        .iter()
        .filter(|r| r.fault.as_deref() == Some("expired-token"))
        .count();
    assert!(refused >= 1, "the store refused the first credentials");
    assert!(
        moto.assume_role_calls().len() >= 2,
        "the role was assumed again"
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert_eq!(
        s3::list(&s3, BUCKET, "expiring/").await.len(),
        7,
        "five files, the manifest and the marker"
    );
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_task_is_delivered_twice_is_written_once_and_counted_done() {
    let moto = Moto::start(&[BUCKET]);
    let proxy = FaultProxy::start(Some(&moto.endpoint), &Faults::default());
    // Encoders only, at first: the upload tasks wait in their queue.
    let mut stack = Stack::start(StackOptions {
        worker_env: vec![("FILEDROP_ROLES".into(), "encode".into())],
        ..StackOptions::default()
    });
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "twice/", FileFormat::Csv),
        50_000,
    );
    request.destination.as_mut().unwrap().endpoint_url = proxy.endpoint.clone();
    let accepted = client::export(&stack.api(), &request, data::table(150_000, 50_000))
        .await
        .expect("the export is accepted");
    // Every upload task comes twice in a row, as a broker delivers a task again when it
    // cannot tell that it was done.
    let tasks = stack
        .take_tasks("upload", 3, Duration::from_secs(120))
        .await;
    let twice: Vec<Vec<u8>> = tasks
        .iter()
        .flat_map(|task| [task.clone(), task.clone()])
        .collect();
    stack.publish_tasks("upload", &twice).await;
    stack.start_worker_with(&[
        ("FILEDROP_ROLES", "upload"),
        ("FILEDROP_UPLOAD__CONCURRENCY", "1"),
    ]);
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");

    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "twice/").await;
    assert_eq!(
        objects.len(),
        5,
        "three files, manifest, marker: {objects:?}"
    );
    let requests = proxy.requests();
    for object in objects.iter().filter(|o| o.key.ends_with(".csv")) {
        let path = format!("/{BUCKET}/{}", object.key);
        let writes = requests
            .iter()
            .filter(|r| r.path == path)
            .filter(|r| {
                (r.method == "PUT" && !r.query.contains("partNumber"))
                    || (r.method == "POST" && r.query.contains("uploads"))
            })
            .count();
        assert_eq!(writes, 1, "{} was written {writes} times", object.key);
    }
    let log = std::fs::read_to_string(stack.dir.join("worker-2.log")).unwrap();
    let counted = log.matches("counted done, not uploaded again").count();
    // The copies of the first two files come before the third file is uploaded; the third
    // file's copy may find the run finished already.
    assert!(counted >= 2, "{counted} tasks were found done:\n{log}");
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_written_once_its_ca_is_trusted() {
    let moto = Moto::start(&[BUCKET]);
    let https = FaultProxy::start(
        Some(&moto.endpoint),
        &Faults {
            tls: true,
            ..Faults::default()
        },
    );
    let mut request = client::request_to(&moto, BUCKET, "tls/", FileFormat::Csv);
    request.destination.as_mut().unwrap().endpoint_url = https.endpoint.clone();

    // A private CA that nobody named: refused, and the message says how to trust it.
    let stack = Stack::start(StackOptions::default());
    let run =
        client::export_to_end(&stack.api(), &request, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let error = run.error.expect("a failed run has an error");
    assert_eq!(error.code(), ErrorCode::DestinationUnreachable, "{error:?}");
    assert!(error.message.contains("SSL_CERT_FILE"), "{}", error.message);
    drop(stack);

    // The same CA named by SSL_CERT_FILE, as the system's roots are loaded: delivered.
    let ca = https.ca_file().to_string_lossy().into_owned();
    let stack = Stack::start(StackOptions {
        env: vec![("SSL_CERT_FILE".into(), ca)],
        ..StackOptions::default()
    });
    let response = client::test_connection(&stack.api(), request.destination.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        outcome(&response),
        (
            vec!["bucket", "write", "delete"],
            "",
            ErrorCode::Unspecified
        ),
        "{response:?}"
    );
    let run =
        client::export_to_end(&stack.api(), &request, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert_eq!(
        s3::list(&s3, BUCKET, "tls/").await.len(),
        3,
        "the file, the manifest and the marker"
    );
}

/// The checks that passed and, when one failed, its name and code.
fn outcome(response: &TestConnectionResponse) -> (Vec<&str>, &str, ErrorCode) {
    (
        response.passed.iter().map(String::as_str).collect(),
        response.failed_check.as_str(),
        response
            .error
            .as_ref()
            .map_or(ErrorCode::Unspecified, |error| error.code()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_passes_a_good_destination_and_names_each_failure_with_its_code() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });
    let url = stack.api();
    let good = client::request_to(&moto, BUCKET, "probe/", FileFormat::Csv)
        .destination
        .unwrap();
    let response = client::test_connection(&url, &good).await.unwrap();
    assert!(response.ok, "{response:?}");
    assert_eq!(
        outcome(&response),
        (
            vec!["bucket", "write", "delete"],
            "",
            ErrorCode::Unspecified
        )
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(
        s3::list(&s3, BUCKET, "").await.is_empty(),
        "the probe object is deleted"
    );

    // A role-to-role credential, trusted and not.
    let role_arn = "arn:aws:iam::123456789012:role/probed";
    let credential = client::create_role_credential(&url, role_arn)
        .await
        .unwrap();
    moto.create_role("probed", &role_to_role(&credential).trust_policy_json);
    let mut with_role = good.clone();
    with_role.access_key = None;
    with_role.credential_id = credential.credential_id.clone();
    let response = client::test_connection(&url, &with_role).await.unwrap();
    assert_eq!(
        outcome(&response),
        (
            vec!["credentials", "role", "bucket", "write", "delete"],
            "",
            ErrorCode::Unspecified
        ),
        "{response:?}"
    );
    let untrusted = client::create_role_credential(&url, "arn:aws:iam::123456789012:role/nope")
        .await
        .unwrap();
    let policy = role_to_role(&untrusted)
        .trust_policy_json
        .replace(&role_to_role(&untrusted).external_id, "someone-elses-id");
    moto.create_role("nope", &policy);
    with_role.credential_id = untrusted.credential_id.clone();
    let response = client::test_connection(&url, &with_role).await.unwrap();
    assert_eq!(
        outcome(&response),
        (vec!["credentials"], "role", ErrorCode::RoleAssumptionFailed),
        "{response:?}"
    );

    // A wrong secret, a missing bucket, a user without S3 permissions, a closed port.
    let mut wrong_secret = good.clone();
    wrong_secret.access_key.as_mut().unwrap().secret_access_key = "not-the-secret".into();
    let response = client::test_connection(&url, &wrong_secret).await.unwrap();
    assert_eq!(
        outcome(&response),
        (vec![], "write", ErrorCode::InvalidCredentials),
        "{response:?}"
    );
    assert!(!format!("{response:?}").contains("not-the-secret"));
    let mut missing = good.clone();
    missing.bucket = "no-such-bucket".into();
    let response = client::test_connection(&url, &missing).await.unwrap();
    assert_eq!(
        outcome(&response),
        (vec![], "bucket", ErrorCode::BucketNotFound),
        "{response:?}"
    );
    let (key_id, secret) = moto.create_user(
        "reader",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]}"#,
    );
    let mut denied = good.clone();
    let key = denied.access_key.as_mut().unwrap();
    key.access_key_id = key_id;
    key.secret_access_key = secret;
    let response = client::test_connection(&url, &denied).await.unwrap();
    assert_eq!(
        outcome(&response),
        (vec![], "write", ErrorCode::AccessDenied),
        "{response:?}"
    );
    let mut unreachable = good.clone();
    unreachable.endpoint_url = format!(
        "http://127.0.0.1:{}",
        filedrop_integration_tests::services::free_port()
    );
    let response = client::test_connection(&url, &unreachable).await.unwrap();
    assert_eq!(
        outcome(&response),
        (vec![], "bucket", ErrorCode::DestinationUnreachable),
        "{response:?}"
    );
    assert!(
        s3::list(&s3, BUCKET, "").await.is_empty(),
        "no probe is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_error_fails_the_run_with_its_code_and_leaves_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let url = stack.api();
    let base = client::split(
        client::request_to(&moto, BUCKET, "errors/", FileFormat::Csv),
        50_000,
    );
    let (key_id, secret) = moto.create_user(
        "no-writes",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}"#,
    );
    let mut missing = base.clone();
    missing.destination.as_mut().unwrap().bucket = "no-such-bucket".into();
    let mut denied = base.clone();
    let key = denied
        .destination
        .as_mut()
        .unwrap()
        .access_key
        .as_mut()
        .unwrap();
    key.access_key_id = key_id;
    key.secret_access_key = secret;
    let mut unreachable = base.clone();
    unreachable.destination.as_mut().unwrap().endpoint_url = format!(
        "http://127.0.0.1:{}",
        filedrop_integration_tests::services::free_port()
    );
    for (request, code, says) in [
        (missing, ErrorCode::BucketNotFound, "no-such-bucket"),
        (denied, ErrorCode::AccessDenied, "s3:"),
        (unreachable, ErrorCode::DestinationUnreachable, "endpoint"),
    ] {
        let accepted = client::export(&url, &request, data::table(120_000, 20_000))
            .await
            .expect("the export is accepted; the destination answers the upload");
        let run = client::run_to_end(&url, &accepted.run_id, RUN_TIMEOUT).await;
        assert_eq!(run.state(), RunState::Failed, "{run:?}");
        let error = run.error.expect("a failed run has an error");
        assert_eq!(error.code(), code, "{error:?}");
        assert!(error.message.contains(says), "{}", error.message);
    }
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(
        s3::list(&s3, BUCKET, "").await.is_empty(),
        "no object is left"
    );
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());

    // A store that keeps answering SlowDown: THROTTLED once the retries are spent, and the
    // connection test says so too.
    let throttling = FaultProxy::start(
        None,
        &Faults {
            throttle: true,
            ..Faults::default()
        },
    );
    let mut throttled = base.clone();
    throttled.destination.as_mut().unwrap().endpoint_url = throttling.endpoint.clone();
    let run = client::export_to_end(&url, &throttled, data::table(1_000, 1_000), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let error = run.error.expect("a failed run has an error");
    assert_eq!(error.code(), ErrorCode::Throttled, "{error:?}");
    let response = client::test_connection(&url, throttled.destination.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        outcome(&response),
        (vec![], "bucket", ErrorCode::Throttled),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_stored_with_the_destinations_encryption_class_acl_and_tags() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let mut request = client::request_to(&moto, BUCKET, "stored/", FileFormat::Csv);
    let destination = request.destination.as_mut().unwrap();
    destination.server_side_encryption = ServerSideEncryption::Aes256.into();
    destination.storage_class = "STANDARD_IA".into();
    destination.canned_acl = "bucket-owner-full-control".into();
    destination
        .tags
        .insert("team".into(), "growth analytics".into());
    destination
        .tags
        .insert("source".into(), "filedrop/v1".into());
    // One file large enough for a multipart upload (5 MiB parts), then the marker.
    let run = client::export_to_end(
        &stack.api(),
        &request,
        data::table(400_000, 50_000),
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "stored/").await;
    assert_eq!(
        objects.len(),
        3,
        "the file, the manifest and the marker: {objects:?}"
    );
    assert!(
        objects.iter().any(|o| o.size > 10 * 1024 * 1024),
        "one object went out in parts: {objects:?}"
    );
    for object in &objects {
        let head = s3
            .head_object()
            .bucket(BUCKET)
            .key(&object.key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256),
            "{}",
            object.key
        );
        assert_eq!(
            head.storage_class(),
            Some(&aws_sdk_s3::types::StorageClass::StandardIa),
            "{}",
            object.key
        );
        let tagging = s3
            .get_object_tagging()
            .bucket(BUCKET)
            .key(&object.key)
            .send()
            .await
            .unwrap();
        let mut tags: Vec<(&str, &str)> = tagging
            .tag_set()
            .iter()
            .map(|tag| (tag.key(), tag.value()))
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            [("source", "filedrop/v1"), ("team", "growth analytics")],
            "{}",
            object.key
        );
        let acl = s3
            .get_object_acl()
            .bucket(BUCKET)
            .key(&object.key)
            .send()
            .await
            .unwrap();
        assert!(
            acl.grants().iter().any(
                |grant| grant.permission() == Some(&aws_sdk_s3::types::Permission::FullControl)
            ),
            "{}: {acl:?}",
            object.key
        );
    }

    // The manifest's SHA-256 of the file that went out in parts is that of its bytes.
    let big = objects.iter().find(|o| o.size > 10 * 1024 * 1024).unwrap();
    let manifest = s3::get(
        &s3,
        BUCKET,
        &client::manifest_key("stored/", BUCKET, &run.run_id),
    )
    .await;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        manifest["files"][0]["sha256"],
        data::sha256_hex(&s3::get(&s3, BUCKET, &big.key).await).as_str()
    );

    // In one account the owner has full control anyway: another canned ACL shows it is sent.
    let mut public = request.clone();
    let destination = public.destination.as_mut().unwrap();
    destination.canned_acl = "public-read".into();
    destination.prefix = "public/".into();
    let run = client::export_to_end(&stack.api(), &public, data::table(10, 10), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    for object in s3::list(&s3, BUCKET, "public/").await {
        let acl = s3
            .get_object_acl()
            .bucket(BUCKET)
            .key(&object.key)
            .send()
            .await
            .unwrap();
        assert!(
            acl.grants().iter().any(|grant| {
                grant.permission() == Some(&aws_sdk_s3::types::Permission::Read)
                    && grant
                        .grantee()
                        .and_then(|grantee| grantee.uri())
                        .is_some_and(|uri| uri.ends_with("/global/AllUsers"))
            }),
            "{}: {acl:?}",
            object.key
        );
    }

    let mut bad = request.clone();
    bad.destination.as_mut().unwrap().storage_class = "COLD".into();
    let status = client::export(&stack.api(), &bad, data::table(10, 10))
        .await
        .expect_err("an unknown storage class is refused");
    assert!(
        status.message().starts_with("destination.storage_class: "),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_lists_every_delivered_object_and_the_marker_comes_last() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let mut request = client::request_to(&moto, BUCKET, "manifested/", FileFormat::Csv);
    request.split = Some(filedrop_proto::v1::Split {
        megabytes_per_file: 1,
        ..Default::default()
    });
    // The blocks of a split by size are cut from segments: the rows per file come from them.
    let sent = data::table(200_000, 25_000);
    let run = client::export_to_end(&stack.api(), &request, sent, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "manifested/").await;
    let manifest_key = client::manifest_key("manifested/", BUCKET, &run.run_id);
    let text = s3::get(&s3, BUCKET, &manifest_key).await;
    let manifest: serde_json::Value = serde_json::from_slice(&text).expect("the manifest is JSON");
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(!text.contains(&moto.secret_access_key) && !text.contains(&moto.access_key_id));

    assert_eq!(manifest["flowRunId"], run.run_id.as_str());
    let scheduled = manifest["scheduledTime"].as_str().unwrap();
    assert!(
        scheduled.ends_with('Z') && chrono_like(scheduled),
        "{scheduled}"
    );
    let files: Vec<&s3::Object> = objects
        .iter()
        .filter(|object| object.key.ends_with(".csv"))
        .collect();
    assert!(files.len() > 2, "a split by size: {} files", files.len());
    assert_eq!(files.len() as u64, run.files);
    let results = manifest["exportResults"].as_array().unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!((results.len(), listed.len()), (files.len(), files.len()));
    let mut total_rows = 0;
    for ((object, result), listed) in files.iter().zip(results).zip(listed) {
        let (folder, name) = object.key.rsplit_once('/').unwrap();
        assert_eq!(result["sinkPath"], format!("/{folder}").as_str());
        assert_eq!(result["name"], name);
        assert_eq!(result["size"], object.size);
        assert_eq!(listed["key"], object.key.as_str());
        assert_eq!(listed["size"], object.size);
        let bytes = s3::get(&s3, BUCKET, &object.key).await;
        assert_eq!(
            listed["sha256"],
            data::sha256_hex(&bytes).as_str(),
            "{}",
            object.key
        );
        let rows = data::csv_rows(bytes);
        assert_eq!(
            listed["rows"], rows,
            "{}: rows besides the header",
            object.key
        );
        total_rows += rows;
    }
    assert_eq!(manifest["rows"], total_rows);
    assert_eq!(total_rows, 200_000);
    let fields: Vec<&str> = manifest["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id", "amount", "label", "created_at", "active"]);
    assert_eq!(manifest["settings"]["format"], "FILE_FORMAT_CSV");
    assert_eq!(
        manifest["settings"]["destination"]["credential"]["type"],
        "iam-credential"
    );

    // The marker is written last: no object is newer.
    let marker = objects
        .iter()
        .find(|object| object.key.ends_with(".DONE"))
        .expect("a marker");
    assert!(
        objects
            .iter()
            .all(|object| object.last_modified <= marker.last_modified),
        "{objects:?}"
    );

    // Without a manifest, and with a marker named by the user.
    let mut plain = client::request_to(&moto, BUCKET, "plain/", FileFormat::Csv);
    plain.manifest = Some(filedrop_proto::v1::ManifestOptions { disabled: true });
    plain.success_file = Some(filedrop_proto::v1::SuccessFile {
        enabled: true,
        name: filedrop_proto::v1::SuccessFileName::Custom.into(),
        custom_name: "ready/{{run_id}}.txt".into(),
    });
    let run = client::export_to_end(&stack.api(), &plain, data::table(100, 100), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let keys: Vec<String> = s3::list(&s3, BUCKET, "plain/")
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], format!("plain/ready/{}.txt", run.run_id));
    assert!(keys[1].ends_with("-0000001.csv"), "{keys:?}");
}

/// `2026-01-02T03:04:05.678Z`.
fn chrono_like(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 24 && bytes[4] == b'-' && bytes[10] == b'T' && bytes[19] == b'.'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_the_middle_of_a_multipart_upload_is_replaced_and_nothing_is_left_open()
{
    let moto = Moto::start(&[BUCKET]);
    // One part at a time, so that the upload of a file of several parts stays open a while.
    let mut stack = Stack::start(StackOptions {
        worker_env: vec![("FILEDROP_UPLOAD__PARTS_IN_FLIGHT".into(), "1".into())],
        ..StackOptions::default()
    });
    let request = client::request_to(&moto, BUCKET, "killed/", FileFormat::Csv);
    let accepted = client::export(&stack.api(), &request, data::table(1_000_000, 50_000))
        .await
        .expect("the export is accepted");
    // Wait for the file's multipart upload to be open (tens of MB in 5 MiB parts), then kill
    // the worker uploading it.
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let open = loop {
        let open = s3::open_uploads(&s3, BUCKET).await;
        if !open.is_empty() {
            break open;
        }
        let run = client::get_run(&stack.api(), &accepted.run_id).await;
        assert!(
            run.state() != RunState::Succeeded && std::time::Instant::now() < deadline,
            "no multipart upload was seen open: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stack.kill_worker(0);
    assert!(
        !s3::open_uploads(&s3, BUCKET).await.is_empty(),
        "an upload is left open by the killed worker: {open:?}"
    );
    stack.start_worker();
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let keys: Vec<String> = s3::list(&s3, BUCKET, "killed/")
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    let files = keys.iter().filter(|key| key.ends_with(".csv")).count();
    assert_eq!(
        (files, keys.len()),
        (1, 3),
        "the file, the manifest and the marker, each once: {keys:?}"
    );
    assert_eq!(
        s3::open_uploads(&s3, BUCKET).await,
        Vec::<String>::new(),
        "the abandoned upload is aborted before the marker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_has_the_uploads_left_open_on_its_keys_aborted() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    // An upload left open on the run's first file's key, as by a worker that died mid-file.
    let key = "abandoned/fixed-0000001.csv";
    s3.create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("CreateMultipartUpload");
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, [key]);
    // The run's key may list and abort uploads, but not write: the run fails.
    let (key_id, secret) = moto.create_user(
        "cannot-write",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload", "s3:ListBucket", "s3:GetObject"], "Resource": "*"}]}"#,
    );
    let mut request = client::request_to(&moto, BUCKET, "abandoned/", FileFormat::Csv);
    request.filename_template = "fixed-{{file_number}}.csv".into();
    let access_key = request
        .destination
        .as_mut()
        .unwrap()
        .access_key
        .as_mut()
        .unwrap();
    access_key.access_key_id = key_id;
    access_key.secret_access_key = secret;
    let run = client::export_to_end(
        &stack.api(),
        &request,
        data::table(1_000, 1_000),
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    assert_eq!(run.error.unwrap().code(), ErrorCode::AccessDenied);
    // The failed run's keys are cleaned up after it fails.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !s3::open_uploads(&s3, BUCKET).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload left open on the failed run's key is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s3::list(&s3, BUCKET, "abandoned/").await.is_empty());
}
