//! Against s3s-fs, an S3 server that checks what moto does not: that the bytes of every upload
//! match the checksums they were sent with (the signed payload's SHA-256, then the object's
//! CRC32), and the preconditions of conditional writes (`If-None-Match`, `If-Match`).

use bytes::Bytes;
use filedrop_integration_tests::services::{FaultProxy, Faults, S3sFs};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{AccessKeyCredential, ErrorCode, FileFormat, RunState, S3Destination};
use filedrop_s3::client::{ClientLimits, client_for};
use filedrop_s3::objects::{Expect, ObjectOptions, put_small_object, stored_object};
use filedrop_s3::upload::{
    Completion, MIN_PART_SIZE, Pending, Piece, UploadError, complete_upload, upload_pending,
};
use std::time::Duration;
use tokio::sync::mpsc;

const BUCKET: &str = "checked";

fn destination(s3s: &S3sFs) -> S3Destination {
    S3Destination {
        endpoint_url: s3s.endpoint.clone(),
        region: "us-east-1".to_owned(),
        force_path_style: true,
        bucket: BUCKET.to_owned(),
        access_key: Some(AccessKeyCredential {
            access_key_id: S3sFs::ACCESS_KEY_ID.to_owned(),
            secret_access_key: S3sFs::SECRET_ACCESS_KEY.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An object a test wrote.
#[derive(Debug)]
struct Written {
    e_tag: String,
}

/// Uploads `parts` (each one part of a multipart upload; a single one is put whole) to `key`
/// and commits it as the finalize step does, expecting `expect` there.
async fn upload(
    client: &aws_sdk_s3::Client,
    key: &str,
    expect: &Expect,
    parts: &[Bytes],
) -> Result<Written, UploadError> {
    let (sender, receiver) = mpsc::channel(parts.len() + 1);
    for part in parts {
        sender.send(Piece::Data(part.clone())).await.unwrap();
    }
    sender.send(Piece::End).await.unwrap();
    let options = ObjectOptions::new(&S3Destination::default(), "text/plain");
    let pending = upload_pending(client, BUCKET, key, &options, receiver, 2, |_| async {
        Ok(())
    })
    .await?;
    let e_tag = match pending {
        Pending::Small { bytes, .. } => {
            put_small_object(client, BUCKET, key, &options, bytes, expect).await?
        }
        Pending::Multipart {
            upload_id, parts, ..
        } => match complete_upload(client, BUCKET, key, &upload_id, &parts, expect).await? {
            Completion::Completed(e_tag) => e_tag,
            Completion::Gone => panic!("the upload of {key} is gone"),
        },
    };
    Ok(Written { e_tag })
}

fn refused_as_changed(result: Result<Written, UploadError>) {
    match result {
        Err(UploadError::Destination(failure)) => {
            assert!(failure.retryable, "{failure:?}");
            assert!(
                failure
                    .failure
                    .message
                    .contains("changed while filedrop wrote it"),
                "{}",
                failure.failure.message
            );
        }
        other => panic!("the write should have been refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carry_what_they_expect_at_the_key_and_are_refused_when_it_changed() {
    let s3s = S3sFs::start(&[BUCKET]);
    let client = client_for(&destination(&s3s), &ClientLimits::default());
    let small = [Bytes::from_static(b"first version\n")];
    let big = [
        Bytes::from(vec![b'a'; MIN_PART_SIZE]),
        Bytes::from(vec![b'b'; 1024]),
    ];

    // A new key: written only while nothing is there.
    let first = upload(&client, "file", &Expect::Nothing, &small)
        .await
        .expect("nothing was there");
    refused_as_changed(upload(&client, "file", &Expect::Nothing, &small).await);
    let stored = stored_object(&client, BUCKET, "file")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.e_tag, first.e_tag);
    assert_eq!(stored.size, small[0].len() as u64);

    // Replacing: only the object that was looked at, single and multipart alike.
    let second = upload(&client, "file", &Expect::ETag(first.e_tag.clone()), &big)
        .await
        .expect("the object looked at was still there");
    assert_ne!(second.e_tag, first.e_tag);
    refused_as_changed(upload(&client, "file", &Expect::ETag(first.e_tag.clone()), &big).await);
    refused_as_changed(upload(&client, "file", &Expect::ETag(first.e_tag.clone()), &small).await);
    let stored = stored_object(&client, BUCKET, "file")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.e_tag, second.e_tag,
        "the refused writes left it alone"
    );
    assert_eq!(stored.size, (MIN_PART_SIZE + 1024) as u64);
    let third = upload(&client, "file", &Expect::ETag(second.e_tag), &small)
        .await
        .expect("the object looked at was still there");
    assert_eq!(
        s3::get(&client, BUCKET, "file").await,
        small[0],
        "the last write is what is stored"
    );
    assert_eq!(
        stored_object(&client, BUCKET, "file")
            .await
            .unwrap()
            .unwrap()
            .e_tag,
        third.e_tag
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_damaged_on_the_way_is_refused_by_its_checksum_and_sent_again() {
    let s3s = S3sFs::start(&[BUCKET]);
    // One file of about 12 MiB, three parts; the second part's body has a byte flipped
    // between filedrop and the store.
    let proxy = FaultProxy::start(
        Some(&s3s.endpoint),
        &Faults {
            corrupt_upload: Some(2),
            ..Faults::default()
        },
    );
    let stack = Stack::start(StackOptions::default());
    let request = client::request(
        &proxy.endpoint,
        BUCKET,
        "damaged/",
        S3sFs::ACCESS_KEY_ID,
        S3sFs::SECRET_ACCESS_KEY,
        FileFormat::Csv,
    );
    let run = client::export_to_end(
        &stack.api(),
        &request,
        data::table(200_000, 50_000),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert!(run.error.is_none_or(|e| e.code() == ErrorCode::Unspecified));
    let requests = proxy.requests();
    let damaged: Vec<_> = requests
        .iter()
        .filter(|r| r.fault.as_deref() == Some("corrupted-upload"))
        .collect();
    assert_eq!(damaged.len(), 1, "{requests:?}");
    assert!(damaged[0].query.contains("partNumber"), "{:?}", damaged[0]);
    // s3s-fs finds the payload's SHA-256 wrong as the body streams in, and answers 500.
    assert!(
        damaged[0].status >= 400,
        "the store refused the damaged part: {:?}",
        damaged[0]
    );
    let file_path = damaged[0].path.clone();
    // The same part of the same upload, sent again (the SDK retries a 500 itself; a 400
    // BadDigest would be retried by filedrop, with the whole file).
    let again: Vec<_> = requests
        .iter()
        .filter(|r| r.path == file_path && r.query == damaged[0].query && r.fault.is_none())
        .collect();
    assert_eq!(again.len(), 1, "{requests:?}");
    assert_eq!(
        again[0].status, 200,
        "the part was sent again: {requests:?}"
    );

    // What is stored is what filedrop meant to send: the manifest's SHA-256 (hashed before
    // sending) matches the object, and the rows are all there.
    let s3 = s3::client(
        &s3s.endpoint,
        S3sFs::ACCESS_KEY_ID,
        S3sFs::SECRET_ACCESS_KEY,
    );
    let manifest_key = client::manifest_key("damaged/", BUCKET, &run.run_id);
    let manifest: serde_json::Value =
        serde_json::from_slice(&s3::get(&s3, BUCKET, &manifest_key).await).unwrap();
    let file = &manifest["files"][0];
    let key = file["key"].as_str().unwrap();
    assert_eq!(format!("/{BUCKET}/{key}"), file_path);
    let bytes = s3::get(&s3, BUCKET, key).await;
    assert_eq!(file["sha256"].as_str().unwrap(), data::sha256_hex(&bytes));
    assert_eq!(data::csv_rows(bytes), 200_000);
}
