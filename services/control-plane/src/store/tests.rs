//! The store against SQLite in memory: states, tenants, keys and the records of a run.

use super::*;
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::ErrorCode;
use std::collections::BTreeMap;

fn new_run<'a>(tenant_id: &'a str, run_id: &'a str) -> NewRun<'a> {
    NewRun {
        tenant_id,
        run_id,
        destination_name: "",
        idempotency_key: None,
        sealed_request: b"sealed",
        sealed_spec: b"spec",
        arrow_schema: b"schema",
        receiver: "replica-a",
    }
}

#[tokio::test]
async fn a_receiving_run_whose_replica_stopped_beating_is_orphaned() {
    let dir = std::env::temp_dir().join(format!("filedrop-leases-{}", std::process::id()));
    let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
        .await
        .unwrap();
    let before_a = now_ms() - 1;
    store.heartbeat("replica-a").await.unwrap();
    store.create_run(&new_run("t1", "held")).await.unwrap();
    let orphan = NewRun {
        receiver: "replica-b",
        ..new_run("t1", "orphan")
    };
    store.create_run(&orphan).await.unwrap();
    let received = NewRun {
        receiver: "replica-b",
        ..new_run("t1", "received")
    };
    store.create_run(&received).await.unwrap();
    assert!(store.end_stream("received", 0, 0).await.unwrap());
    // Only replica-a beats: replica-b never did. A received run is not orphaned.
    assert_eq!(
        store.orphaned_receiving_runs(before_a).await.unwrap(),
        ["orphan"]
    );
    // Once replica-a is silent too, its run is orphaned as well.
    let later = now_ms() + 1;
    let mut orphaned = store.orphaned_receiving_runs(later).await.unwrap();
    orphaned.sort();
    assert_eq!(orphaned, ["held", "orphan"]);
    store.forget_replicas(later).await.unwrap();
    store.heartbeat("replica-a").await.unwrap();
    assert_eq!(
        store.orphaned_receiving_runs(before_a).await.unwrap(),
        ["orphan"]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn runs_move_forward_only_and_fail_once() {
    let dir = std::env::temp_dir().join(format!("filedrop-store-{}", std::process::id()));
    let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
        .await
        .unwrap();
    store.create_run(&new_run("t1", "r1")).await.unwrap();
    let segment = |segment_index, partition_index, row_offset, row_count| NewSegment {
        segment_index,
        partition_index,
        row_offset,
        row_count,
    };
    store
        .add_segment("r1", &segment(0, 0, 0, 10), 10)
        .await
        .unwrap();
    assert!(store.end_stream("r1", 10, 1).await.unwrap());
    assert!(!store.end_stream("r1", 10, 1).await.unwrap());
    store
        .add_segment("r1", &segment(1, 0, 10, 0), 10)
        .await
        .unwrap();
    let block = |size, rows| Block { size, rows };
    store
        .segment_encoded("r1", 0, &EncodedBlocks::Whole { size: 99 })
        .await
        .unwrap();
    store
        .segment_encoded(
            "r1",
            1,
            &EncodedBlocks::Split(vec![block(10, 4), block(20, 6)]),
        )
        .await
        .unwrap();
    let segments = store.segments("r1").await.unwrap();
    assert_eq!(
        segments[0].blocks,
        Some(vec![block(99, 10)]),
        "one block holds every row"
    );
    assert_eq!(
        segments[1].blocks,
        Some(vec![block(10, 4), block(20, 6)]),
        "several blocks keep their sizes and rows"
    );
    let file = FileRecord {
        file_number: 1,
        partition_index: 0,
        number_in_partition: 1,
        object_key: "k".into(),
        rows: 10,
        uploaded_size: None,
        sha256: None,
    };
    store.add_file("r1", &file).await.unwrap();
    store.add_file("r1", &file).await.unwrap();
    store.file_uploaded("r1", 1, 42, "ab12").await.unwrap();
    let stored = &store.files("r1").await.unwrap()[0];
    assert_eq!(
        (stored.rows, stored.uploaded_size, stored.sha256.as_deref()),
        (10, Some(42), Some("ab12"))
    );
    let run = store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(
        (
            run.state,
            run.rows,
            run.files,
            run.files_uploaded,
            run.bytes_uploaded
        ),
        (RunState::Encoding, 10, 1, 1, 42)
    );
    let failure = RunFailure::new(ErrorCode::InvalidCredentials, "fix it");
    assert!(store.fail("r1", &failure).await.unwrap());
    assert!(!store.fail("r1", &failure).await.unwrap());
    assert!(
        !store
            .advance("r1", super::states::Transition::Encoded)
            .await
            .unwrap()
    );
    let run = store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.failure, Some(failure));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn partitions_segments_and_files_keep_their_partition() {
    let dir = std::env::temp_dir().join(format!("filedrop-parts-{}", std::process::id()));
    let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
        .await
        .unwrap();
    store.create_run(&new_run("t1", "r1")).await.unwrap();
    let values = vec!["DE".to_owned(), "a%2Fb".to_owned()];
    store.add_partition("r1", 1, &values).await.unwrap();
    store.add_partition("r1", 1, &values).await.unwrap();
    assert_eq!(
        store.partitions("r1").await.unwrap(),
        BTreeMap::from([(1, values)])
    );
    let segment = NewSegment {
        segment_index: 3,
        partition_index: 1,
        row_offset: 500,
        row_count: 20,
    };
    store.add_segment("r1", &segment, 900).await.unwrap();
    let stored = &store.segments("r1").await.unwrap()[0];
    assert_eq!((stored.partition_index, stored.row_offset), (1, 500));
    assert_eq!(store.get_run("r1").await.unwrap().unwrap().rows, 900);
    let file = FileRecord {
        file_number: (1 << 32) + 2,
        partition_index: 1,
        number_in_partition: 2,
        object_key: "DE/2.csv".into(),
        rows: 0,
        uploaded_size: None,
        sha256: None,
    };
    store.add_file("r1", &file).await.unwrap();
    let stored = &store.files("r1").await.unwrap()[0];
    assert_eq!(
        (
            stored.file_number,
            stored.partition_index,
            stored.number_in_partition
        ),
        (file.file_number, 1, 2)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn runs_are_listed_newest_first_by_filter_and_keyed_once() {
    let dir = std::env::temp_dir().join(format!("filedrop-listing-{}", std::process::id()));
    let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
        .await
        .unwrap();
    for (run_id, destination_name) in [("r1", "crm"), ("r2", "ads"), ("r3", "crm")] {
        let run = NewRun {
            destination_name,
            ..new_run("t1", run_id)
        };
        assert!(store.create_run(&run).await.unwrap());
    }
    store.create_run(&new_run("t2", "r4")).await.unwrap();
    store.end_stream("r2", 0, 0).await.unwrap();
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let all = RunFilter::default();
    assert_eq!(
        ids(store.runs_of("t1", &all, None, 10).await.unwrap()),
        ["r3", "r2", "r1"]
    );
    assert_eq!(
        ids(store.runs_of("t1", &all, Some("r3"), 1).await.unwrap()),
        ["r2"]
    );
    let encoding = RunFilter {
        states: vec![RunState::Encoding],
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.runs_of("t1", &encoding, None, 10).await.unwrap()),
        ["r2"]
    );
    let crm = RunFilter {
        destination_name: Some("crm".into()),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.runs_of("t1", &crm, None, 10).await.unwrap()),
        ["r3", "r1"]
    );
    let future = RunFilter {
        created_after: Some(now_ms() + 60_000),
        ..RunFilter::default()
    };
    assert!(
        store
            .runs_of("t1", &future, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let keyed = |run_id| NewRun {
        idempotency_key: Some("k"),
        ..new_run("t1", run_id)
    };
    assert!(store.create_run(&keyed("r5")).await.unwrap());
    assert!(
        !store.create_run(&keyed("r6")).await.unwrap(),
        "the key is taken"
    );
    assert!(store.get_run("r6").await.unwrap().is_none());
    let found = store.run_by_idempotency_key("t1", "k").await.unwrap();
    assert_eq!(found.map(|r| r.run_id).as_deref(), Some("r5"));
    assert!(
        store
            .run_by_idempotency_key("t2", "k")
            .await
            .unwrap()
            .is_none()
    );
    let other_tenant = NewRun {
        idempotency_key: Some("k"),
        ..new_run("t2", "r7")
    };
    assert!(
        store.create_run(&other_tenant).await.unwrap(),
        "keys are per tenant"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn credentials_runs_and_tokens_are_found_only_by_their_tenant() {
    let dir = std::env::temp_dir().join(format!("filedrop-credentials-{}", std::process::id()));
    let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
        .await
        .unwrap();
    let credential = CredentialRecord {
        credential_id: "c1".into(),
        kind: StoredCredential::RoleToRole {
            role_arn: "arn:aws:iam::123456789012:role/exports".into(),
            external_id: "filedrop-0123".into(),
        },
        created_at: 1_700_000_000_000,
    };
    store.add_credential("t1", &credential).await.unwrap();
    let key = CredentialRecord {
        credential_id: "c2".into(),
        kind: StoredCredential::AccessKey {
            access_key_id: "AKID".into(),
            sealed_key: vec![1, 2, 3],
        },
        created_at: 1_700_000_000_001,
    };
    store.add_credential("t1", &key).await.unwrap();
    assert_eq!(
        store.credential_of("t1", "c1").await.unwrap(),
        Some(credential.clone())
    );
    assert_eq!(
        store.credential_of("t1", "c2").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.credential_of("t1", "c3").await.unwrap(), None);
    assert_eq!(store.credential_of("t2", "c1").await.unwrap(), None);
    assert_eq!(
        store.credentials_of("t1", None, 10).await.unwrap(),
        vec![key.clone(), credential.clone()]
    );
    assert_eq!(
        store.credentials_of("t1", Some("c2"), 10).await.unwrap(),
        vec![credential.clone()]
    );
    assert!(
        store
            .credentials_of("t2", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.delete_credential_of("t2", "c2").await.unwrap());
    assert!(store.delete_credential_of("t1", "c2").await.unwrap());
    assert_eq!(store.credential_of("t1", "c2").await.unwrap(), None);

    store.create_run(&new_run("t1", "r1")).await.unwrap();
    assert!(store.get_run_of("t1", "r1").await.unwrap().is_some());
    assert!(store.get_run_of("t2", "r1").await.unwrap().is_none());
    assert_eq!(store.get_run("r1").await.unwrap().unwrap().tenant_id, "t1");

    store.add_token("hash-a", "t1", "ci").await.unwrap();
    assert_eq!(
        store.tenant_of_token("hash-a").await.unwrap().as_deref(),
        Some("t1")
    );
    assert_eq!(store.tenant_of_token("hash-b").await.unwrap(), None);
    std::fs::remove_dir_all(dir).unwrap();
}
