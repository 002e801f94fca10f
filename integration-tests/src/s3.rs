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
