//! Flight SQL transactions over bulk ingest, as the Flight SQL protocol defines them: ingests
//! that name a transaction (`CommandStatementIngest.transaction_id`, here each sent on a
//! connection of its own) are received but delivered only at `EndTransaction` COMMIT; a
//! rollback, a failed ingest in the transaction, or a transaction nobody ends delivers nothing
//! of it, and leaves no multipart upload open. (ADBC's driver, which ties its ingests to the
//! transaction by its connection instead, is tested in `python/test_adbc_ingest.py`.)

use arrow_flight::sql::CommandStatementIngest;
use filedrop_integration_tests::client::{self, Api};
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{data, s3};
use filedrop_proto::v1::{CreateDestinationRequest, ErrorCode, FileFormat, RunState};
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "transactions";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// A stored destination `name`: CSV files of 50,000 rows named after their run under
/// `<name>/`, so that a run's full files are uploaded while its stream is still open.
async fn create_destination(api: &Api, moto: &Moto, name: &str) {
    let key = client::store_moto_key(api, moto).await;
    let mut settings = client::with_credential(
        client::split(
            client::request_to(moto, BUCKET, &format!("{name}/"), FileFormat::Csv),
            50_000,
        ),
        &key.credential_id,
    );
    settings.filename_template = "{{run_id}}-{{file_number}}.csv".into();
    client::destinations(api)
        .await
        .create_destination(CreateDestinationRequest {
            name: name.into(),
            settings: Some(settings),
        })
        .await
        .expect("CreateDestination");
}

fn ingest_into(table: &str, transaction_id: &bytes::Bytes) -> CommandStatementIngest {
    CommandStatementIngest {
        table: table.into(),
        transaction_id: Some(transaction_id.clone()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_delivers_its_ingests_only_at_its_commit() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    create_destination(&api, &moto, "orders").await;
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);

    let transaction = client::begin_transaction(&api)
        .await
        .expect("BeginTransaction");
    let mut ingested = Vec::new();
    for rows in [120_000, 30_000] {
        let command = ingest_into("orders", &transaction);
        let ingest = client::sql_ingest(&api, &command, data::table(rows, 10_000))
            .await
            .expect("an ingest in the transaction is accepted");
        assert_eq!(ingest.record_count, rows);
        ingested.push((ingest.run_id, rows as u64));
    }
    // Received and held: the 120,000-row run's two full files are uploaded (pending) while
    // it waits, and still nothing is at a final key.
    let (held, _) = &ingested[0];
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let run = client::get_run(&api, held).await;
        assert_eq!(run.state(), RunState::Receiving, "{run:?}");
        if run.files_uploaded >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held run's full files were never uploaded: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (run_id, _) in &ingested {
        let run = client::get_run(&api, run_id).await;
        assert_eq!(run.state(), RunState::Receiving, "{run:?}");
    }
    assert_eq!(s3::list(&reader, BUCKET, "orders/").await.len(), 0);

    client::end_transaction(&api, transaction.clone(), true)
        .await
        .expect("the commit is accepted");
    for (run_id, rows) in &ingested {
        let run = client::run_to_end(&api, run_id, RUN_TIMEOUT).await;
        assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
        assert_eq!(run.rows, *rows);
        let mut delivered = 0;
        for object in s3::list(&reader, BUCKET, &format!("orders/{run_id}-")).await {
            delivered += data::csv_rows(s3::get(&reader, BUCKET, &object.key).await);
        }
        assert_eq!(delivered, *rows);
    }
    // Ended: it cannot be committed again, nor joined.
    let again = client::end_transaction(&api, transaction.clone(), true)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    let late = client::sql_ingest(
        &api,
        &ingest_into("orders", &transaction),
        data::table(10, 10),
    )
    .await
    .unwrap_err();
    assert_eq!(late.code(), Code::NotFound, "{late:?}");
    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_failed_or_abandoned_transaction_delivers_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions {
        control_plane_env: vec![(
            "FILEDROP_INGEST__TRANSACTION_TIMEOUT_SECS".into(),
            "3".into(),
        )],
        ..StackOptions::default()
    });
    let api = stack.api();
    create_destination(&api, &moto, "orders").await;
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);

    // Rolled back: the run is cancelled.
    let rolled_back = client::begin_transaction(&api).await.unwrap();
    let ingest = client::sql_ingest(
        &api,
        &ingest_into("orders", &rolled_back),
        data::table(100_000, 10_000),
    )
    .await
    .unwrap();
    client::end_transaction(&api, rolled_back, false)
        .await
        .expect("the rollback is accepted");
    let run = client::run_to_end(&api, &ingest.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Cancelled, "{run:?}");

    // An ingest that fails dooms its transaction: no other may join, and its commit rolls
    // back the ingest that was received.
    let doomed = client::begin_transaction(&api).await.unwrap();
    let received = client::sql_ingest(
        &api,
        &ingest_into("orders", &doomed),
        data::table(20_000, 10_000),
    )
    .await
    .unwrap();
    let refused = client::sql_ingest(
        &api,
        &ingest_into("no-such-destination", &doomed),
        data::table(10, 10),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let after = client::sql_ingest(&api, &ingest_into("orders", &doomed), data::table(10, 10))
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition, "{after:?}");
    assert!(
        after.message().contains("there is no destination"),
        "{after:?}"
    );
    let commit = client::end_transaction(&api, doomed, true)
        .await
        .unwrap_err();
    assert_eq!(commit.code(), Code::Aborted, "{commit:?}");
    assert!(commit.message().contains("rolled back"), "{commit:?}");
    let run = client::run_to_end(&api, &received.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    assert_eq!(
        run.error.as_ref().unwrap().code(),
        ErrorCode::StreamIncomplete
    );

    // Never ended: rolled back after the timeout, its run failed.
    let abandoned = client::begin_transaction(&api).await.unwrap();
    let forgotten = client::sql_ingest(
        &api,
        &ingest_into("orders", &abandoned),
        data::table(20_000, 10_000),
    )
    .await
    .unwrap();
    let run = client::run_to_end(&api, &forgotten.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let error = run.error.as_ref().unwrap();
    assert_eq!(error.code(), ErrorCode::StreamIncomplete);
    assert!(
        error.message.contains("neither committed nor rolled back"),
        "{error:?}"
    );
    let late = client::end_transaction(&api, abandoned, true)
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::NotFound, "{late:?}");

    // A transaction id nobody began.
    let unknown = client::sql_ingest(
        &api,
        &ingest_into("orders", &bytes::Bytes::from_static(b"no-such-transaction")),
        data::table(10, 10),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
    assert_eq!(s3::list(&reader, BUCKET, "").await.len(), 0);
}
