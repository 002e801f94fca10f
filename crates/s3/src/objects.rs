//! The small object operations of the finalize step.

use crate::errors::{S3Failure, classify};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use std::collections::HashSet;
use tracing::{info, warn};

fn not_implemented<E: ProvideErrorMetadata>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    error.code() == Some("NotImplemented")
        || error.raw_response().map(|r| r.status().as_u16()) == Some(501)
}

/// The size of `s3://bucket/key`, or `None` if there is no such object.
pub async fn object_size(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<u64>, S3Failure> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some(head.content_length().unwrap_or_default() as u64)),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|service| service.is_not_found()) =>
        {
            Ok(None)
        }
        Err(error) => Err(classify(&error, "HeadObject", bucket, key)),
    }
}

/// Writes a small object in one call.
pub async fn put_small_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    content_type: &str,
    body: impl Into<ByteStream>,
) -> Result<(), S3Failure> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(body.into())
        .send()
        .await
        .map_err(|error| classify(&error, "PutObject", bucket, key))?;
    Ok(())
}

/// Aborts every multipart upload still open under `prefix` for one of `keys`: uploads left
/// behind by a worker that stopped mid-file. Returns how many were aborted.
///
/// Some S3-compatible stores do not implement `ListMultipartUploads` (s3s-fs answers 501);
/// there the cleanup is skipped with a warning rather than failing a complete delivery.
pub async fn abort_open_uploads(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    keys: &HashSet<String>,
) -> Result<usize, S3Failure> {
    let mut aborted = 0;
    let mut key_marker: Option<String> = None;
    let mut upload_id_marker: Option<String> = None;
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(upload_id_marker.take())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(error) if not_implemented(&error) => {
                warn!(
                    bucket,
                    prefix,
                    "the store does not implement ListMultipartUploads; abandoned uploads \
                     cannot be found and are left to the bucket's lifecycle rules"
                );
                return Ok(aborted);
            }
            Err(error) => return Err(classify(&error, "ListMultipartUploads", bucket, prefix)),
        };
        for upload in page.uploads() {
            let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            if !keys.contains(key) {
                continue;
            }
            client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|error| classify(&error, "AbortMultipartUpload", bucket, key))?;
            info!(
                bucket,
                key, upload_id, "aborted an abandoned multipart upload"
            );
            aborted += 1;
        }
        if page.is_truncated() != Some(true) {
            return Ok(aborted);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
    }
}
