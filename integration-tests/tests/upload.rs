//! `filedrop_s3::upload` against a real S3 server (moto, authentication on): a pending
//! multipart upload shows nothing at its key until it is completed, then every part in order;
//! and an upload whose producer stops mid-file is aborted, leaving no object and no open
//! multipart upload.

use bytes::Bytes;
use filedrop_integration_tests::s3;
use filedrop_integration_tests::services::Moto;
use filedrop_proto::v1::{AccessKeyCredential, S3Destination};
use filedrop_s3::client::{ClientLimits, client_for};
use filedrop_s3::objects::{Expect, ObjectOptions};
use filedrop_s3::upload::{
    Completion, MIN_PART_SIZE, Pending, Piece, UploadError, complete_upload, multipart_e_tag,
    upload_pending,
};
use tokio::sync::mpsc;

const BUCKET: &str = "uploads";

fn destination(moto: &Moto) -> S3Destination {
    S3Destination {
        endpoint_url: moto.endpoint.clone(),
        region: "us-east-1".to_owned(),
        force_path_style: true,
        bucket: BUCKET.to_owned(),
        prefix: String::new(),
        access_key: Some(AccessKeyCredential {
            access_key_id: moto.access_key_id.clone(),
            secret_access_key: moto.secret_access_key.clone(),
            session_token: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn part(byte: u8, len: usize) -> Piece {
    Piece::Data(Bytes::from(vec![byte; len]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_delivers_every_part_in_order() {
    let moto = Moto::start(&[BUCKET]);
    let client = client_for(&destination(&moto), &ClientLimits::default());
    let (sender, receiver) = mpsc::channel(8);
    for piece in [
        part(b'a', MIN_PART_SIZE),
        part(b'b', MIN_PART_SIZE),
        part(b'c', MIN_PART_SIZE),
        part(b'd', 1000),
        Piece::End,
    ] {
        sender.send(piece).await.unwrap();
    }
    let mut recorded = None;
    let pending = upload_pending(
        &client,
        BUCKET,
        "whole.bin",
        &ObjectOptions::new(&destination(&moto), "application/octet-stream"),
        receiver,
        2,
        |upload_id| {
            recorded = Some(upload_id);
            async { Ok(()) }
        },
    )
    .await
    .expect("every part goes up");
    let Pending::Multipart {
        upload_id,
        parts,
        size,
        ..
    } = pending
    else {
        panic!("four parts are a multipart upload: {pending:?}");
    };
    assert_eq!(recorded.as_deref(), Some(upload_id.as_str()), "recorded");
    assert_eq!(size, 3 * MIN_PART_SIZE as u64 + 1000);
    assert_eq!(parts.len(), 4);

    // Nothing is visible until the commit completes it.
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(s3::list(&reader, BUCKET, "").await.is_empty());
    assert_eq!(s3::open_uploads(&reader, BUCKET).await, ["whole.bin"]);
    let completed = complete_upload(
        &client,
        BUCKET,
        "whole.bin",
        &upload_id,
        &parts,
        &Expect::Nothing,
    )
    .await
    .expect("CompleteMultipartUpload");
    let Completion::Completed(e_tag) = completed else {
        panic!("{completed:?}");
    };
    assert_eq!(
        Some(e_tag.clone()),
        multipart_e_tag(&parts),
        "S3's multipart entity tag"
    );
    // Completing again (an answer lost, the commit redone) is harmless: the same object again,
    // as S3 answers for a while, or the upload gone, and the commit recognises its object by
    // the entity tag above.
    let again = complete_upload(
        &client,
        BUCKET,
        "whole.bin",
        &upload_id,
        &parts,
        &Expect::Anything,
    )
    .await
    .expect("an answer");
    assert!(
        again == Completion::Completed(e_tag.clone()) || again == Completion::Gone,
        "{again:?}"
    );

    let body = s3::get(&reader, BUCKET, "whole.bin").await;
    assert_eq!(body.len() as u64, size);
    let starts: Vec<u8> = (0..4).map(|i| body[i * MIN_PART_SIZE]).collect();
    assert_eq!(starts, b"abcd", "parts in order");
    assert_eq!(
        s3::open_uploads(&reader, BUCKET).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_producer_stops_is_aborted_and_leaves_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let client = client_for(&destination(&moto), &ClientLimits::default());
    let (sender, receiver) = mpsc::channel(8);
    for piece in [
        part(b'a', MIN_PART_SIZE),
        part(b'b', MIN_PART_SIZE),
        part(b'c', 10),
    ] {
        sender.send(piece).await.unwrap();
    }
    drop(sender); // the assembler failed: no `Piece::End`
    let result = upload_pending(
        &client,
        BUCKET,
        "partial.bin",
        &ObjectOptions::new(&destination(&moto), "application/octet-stream"),
        receiver,
        2,
        |_| async { Ok(()) },
    )
    .await;
    assert!(matches!(result, Err(UploadError::Incomplete)), "{result:?}");

    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(
        s3::list(&reader, BUCKET, "").await.is_empty(),
        "no object at the key"
    );
    assert_eq!(
        s3::open_uploads(&reader, BUCKET).await,
        Vec::<String>::new(),
        "the upload was aborted"
    );
}
