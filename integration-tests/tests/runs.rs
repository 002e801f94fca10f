//! The run API through the real control plane: an export sent again with its idempotency key
//! starts no second run, and a tenant's runs are listed newest first, by page and filter.

use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{FileFormat, ListRunsRequest, RunState};
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "runs";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_sent_again_with_its_idempotency_key_starts_no_second_run() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut request = client::request_to(&moto, BUCKET, "keyed/", FileFormat::Csv);
    request.idempotency_key = "nightly-2026-11-22".into();

    let first = client::export(&api, &request, data::table(1_000, 500))
        .await
        .expect("the export is accepted");
    assert!(!first.replayed);
    let run = client::run_to_end(&api, &first.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let delivered = s3::list(&s3, BUCKET, "keyed/").await;
    assert_eq!(delivered.len(), 3, "the file, the manifest and the marker");

    // Sent again (a retry after a lost answer, say): the first run is the answer.
    let again = client::export(&api, &request, data::table(3_000, 500))
        .await
        .expect("the export is accepted");
    assert!(again.replayed, "{again:?}");
    assert_eq!(again.run_id, first.run_id);
    assert_eq!(again.rows, 1_000, "the first run's rows");
    let listed = client::list_runs(&api, ListRunsRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.runs.len(), 1, "{listed:?}");
    assert_eq!(
        s3::list(&s3, BUCKET, "keyed/")
            .await
            .iter()
            .map(|o| (o.key.clone(), o.last_modified))
            .collect::<Vec<_>>(),
        delivered
            .iter()
            .map(|o| (o.key.clone(), o.last_modified))
            .collect::<Vec<_>>(),
        "nothing was written again"
    );

    // Keys are a tenant's own: another tenant's same key starts its own run.
    let other = api.with_token(&stack.create_token("tenant-b"));
    let mut theirs = client::request_to(&moto, BUCKET, "theirs/", FileFormat::Csv);
    theirs.idempotency_key = request.idempotency_key.clone();
    let accepted = client::export(&other, &theirs, data::table(10, 10))
        .await
        .expect("the export is accepted");
    assert!(!accepted.replayed);
    assert_ne!(accepted.run_id, first.run_id);

    let mut spaced = request.clone();
    spaced.idempotency_key = "two words".into();
    let status = client::export(&api, &spaced, data::table(10, 10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("idempotency_key"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_runs_are_listed_newest_first_by_page_and_filter() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut ids = Vec::new();
    for (name, bucket) in [("crm", BUCKET), ("ads", "no-such-bucket"), ("crm", BUCKET)] {
        let mut request = client::request_to(&moto, bucket, &format!("{name}/"), FileFormat::Csv);
        request.destination.as_mut().unwrap().name = name.into();
        let run = client::export_to_end(&api, &request, data::table(100, 100), RUN_TIMEOUT).await;
        ids.push(run.run_id);
    }
    ids.reverse();
    let list = |request: ListRunsRequest| {
        let api = api.clone();
        async move {
            client::list_runs(&api, request)
                .await
                .unwrap()
                .runs
                .into_iter()
                .map(|run| run.run_id)
                .collect::<Vec<_>>()
        }
    };

    assert_eq!(list(ListRunsRequest::default()).await, ids, "newest first");
    let first = client::list_runs(
        &api,
        ListRunsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first.runs.len(), 2);
    let last = client::list_runs(
        &api,
        ListRunsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(last.runs.len(), 1);
    assert_eq!(last.runs[0].run_id, ids[2]);
    assert!(last.next_page_token.is_empty());

    assert_eq!(
        list(ListRunsRequest {
            states: vec![RunState::Failed.into()],
            ..Default::default()
        })
        .await,
        [ids[1].clone()]
    );
    assert_eq!(
        list(ListRunsRequest {
            destination_name: "crm".into(),
            ..Default::default()
        })
        .await,
        [ids[0].clone(), ids[2].clone()]
    );
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    assert!(
        list(ListRunsRequest {
            created_after: Some(prost_types::Timestamp {
                seconds: in_an_hour,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        list(ListRunsRequest {
            created_before: Some(prost_types::Timestamp {
                seconds: in_an_hour,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .len(),
        3
    );

    let other = api.with_token(&stack.create_token("tenant-b"));
    assert!(
        client::list_runs(&other, ListRunsRequest::default())
            .await
            .unwrap()
            .runs
            .is_empty()
    );
    for bad in [
        ListRunsRequest {
            page_size: 501,
            ..Default::default()
        },
        ListRunsRequest {
            states: vec![0],
            ..Default::default()
        },
    ] {
        let status = client::list_runs(&api, bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}
