//! Stored credentials through the real control plane: an access key stored once and named by
//! exports, shown without its secrets, listed a page at a time and deleted; and its secret
//! searched for everywhere it must not be — API answers, logs, the run store's files, staging
//! and the delivered objects.

use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{AccessKeyCredential, ErrorCode, FileFormat, RunState, credential};
use std::path::Path;
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "stored-keys";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_access_key_delivers_and_its_secret_is_nowhere_to_be_read() {
    let moto = Moto::start(&[BUCKET]);
    let (key_id, secret) = moto.create_user(
        "exporter",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}"#,
    );
    let stack = Stack::start(StackOptions {
        env: moto.identity_env(),
        ..StackOptions::default()
    });
    let api = stack.api();
    let mut answers = Vec::new();

    // Stored: the key id and its role are shown, the secrets only as set or unset.
    let key = AccessKeyCredential {
        access_key_id: key_id.clone(),
        secret_access_key: secret.clone(),
        ..Default::default()
    };
    let stored = client::create_access_key_credential(&api, &key)
        .await
        .expect("CreateCredential");
    answers.push(format!("{stored:?}"));
    match &stored.kind {
        Some(credential::Kind::AccessKey(shown)) => {
            assert_eq!(shown.access_key_id, key_id);
            assert!(shown.secret_access_key_set && !shown.session_token_set);
        }
        other => panic!("not an access key: {other:?}"),
    }
    let missing_secret = AccessKeyCredential {
        access_key_id: key_id.clone(),
        ..Default::default()
    };
    let status = client::create_access_key_credential(&api, &missing_secret)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("access_key.secret_access_key"),
        "{status:?}"
    );

    // Named by an export and by a connection test.
    let request = client::with_credential(
        client::request_to(&moto, BUCKET, "stored/", FileFormat::Csv),
        &stored.credential_id,
    );
    let response = client::test_connection(&api, request.destination.as_ref().unwrap())
        .await
        .expect("TestConnection");
    answers.push(format!("{response:?}"));
    assert!(response.ok, "{response:?}");
    let run = client::export_to_end(&api, &request, data::table(2_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    answers.push(format!("{run:?}"));
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "stored/").await;
    assert_eq!(objects.len(), 3, "the file, the manifest and the marker");

    // Listed a page at a time, newest first.
    let mut ids = vec![stored.credential_id.clone()];
    for name in ["one", "two"] {
        let role =
            client::create_role_credential(&api, &format!("arn:aws:iam::123456789012:role/{name}"))
                .await
                .expect("CreateCredential");
        ids.push(role.credential_id);
    }
    ids.reverse();
    let first = client::list_credentials(&api, 2, "").await.unwrap();
    answers.push(format!("{first:?}"));
    assert_eq!(
        first
            .credentials
            .iter()
            .map(|c| c.credential_id.clone())
            .collect::<Vec<_>>(),
        ids[..2]
    );
    assert!(!first.next_page_token.is_empty());
    let last = client::list_credentials(&api, 2, &first.next_page_token)
        .await
        .unwrap();
    answers.push(format!("{last:?}"));
    assert_eq!(last.credentials.len(), 1);
    assert_eq!(last.credentials[0].credential_id, ids[2]);
    assert!(last.next_page_token.is_empty());
    let status = client::list_credentials(&api, 501, "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let other_tenant = api.with_token(&stack.create_token("tenant-b"));
    assert!(
        client::list_credentials(&other_tenant, 0, "")
            .await
            .unwrap()
            .credentials
            .is_empty()
    );

    // Deleted: gone, and an export naming it is refused before data moves.
    client::delete_credential(&api, &stored.credential_id)
        .await
        .expect("DeleteCredential");
    let status = client::get_credential(&api, &stored.credential_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client::delete_credential(&api, &stored.credential_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client::export(&api, &request, data::table(10, 10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("filedrop-error-code")
            .and_then(|v| v.to_str().ok()),
        Some(ErrorCode::InvalidCredentials.as_str_name()),
        "{status:?}"
    );

    // The secret is nowhere: not in an answer, a log, the run store's files, staging, or a
    // delivered object.
    for answer in &answers {
        assert!(!answer.contains(&secret), "an API answer holds the secret");
    }
    let holding = files_holding(&stack.dir, secret.as_bytes());
    assert!(
        holding.is_empty(),
        "these files hold the secret: {holding:?}"
    );
    // The run store's own contents too, whichever store it is (a PostgreSQL database is not
    // in the stack's directory).
    let stored = stack.run_store_contents();
    assert!(
        stored
            .windows(b"api_tokens".len())
            .any(|w| w == b"api_tokens"),
        "the run store was read"
    );
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the run store holds the secret"
    );
    for object in objects {
        let bytes = s3::get(&s3, BUCKET, &object.key).await;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret",
            object.key
        );
    }
}
