//! Reading back what was delivered, with the AWS SDK (independent of filedrop's own S3 code).

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;

/// One delivered object.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// When it was last written.
    pub last_modified: aws_sdk_s3::primitives::DateTime,
}

/// A client of the test's S3 server.
pub fn client(endpoint: &str, access_key_id: &str, secret_access_key: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Every object under `prefix`, sorted by key.
pub async fn list(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<Object> {
    let mut objects = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.expect("ListObjectsV2").contents() {
            objects.push(Object {
                key: object.key().unwrap_or_default().to_owned(),
                size: object.size().unwrap_or_default() as u64,
                last_modified: *object.last_modified().expect("LastModified"),
            });
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    objects
}

/// The object's bytes.
pub async fn get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Bytes {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("reading the body")
        .into_bytes()
}

/// Keys of the multipart uploads still open in the bucket.
pub async fn open_uploads(client: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("ListMultipartUploads");
    listed
        .uploads()
        .iter()
        .map(|upload| upload.key().unwrap_or_default().to_owned())
        .collect()
}

/// Every object under `prefix` with its entity tag, sorted by key: what tells one write of a
/// key from another.
pub async fn list_with_e_tags(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, String)> {
    let mut tagged = Vec::new();
    for object in list(client, bucket, prefix).await {
        let head = client
            .head_object()
            .bucket(bucket)
            .key(&object.key)
            .send()
            .await
            .expect("HeadObject");
        tagged.push((object.key, head.e_tag().unwrap_or_default().to_owned()));
    }
    tagged
}

/// Waits until no multipart upload is open in the bucket (a stopped run's cleanup runs after
/// the run has ended); fails the test if one still is after `within`.
pub async fn wait_until_no_open_uploads(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    within: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let open = open_uploads(client, bucket).await;
        if open.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "multipart uploads left open: {open:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
