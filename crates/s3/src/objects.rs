//! How objects are stored ([`ObjectOptions`]), and the small object operations of the
//! finalize step.

use crate::errors::{S3Failure, classify};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectCannedAcl, ServerSideEncryption, StorageClass};
use filedrop_proto::v1::S3Destination;
use std::collections::HashSet;
use tracing::{info, warn};

fn not_implemented<E: ProvideErrorMetadata>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    error.code() == Some("NotImplemented")
        || error.raw_response().map(|r| r.status().as_u16()) == Some(501)
}

/// How every object filedrop writes to a destination is stored: its content type, and the
/// destination's server-side encryption, storage class, canned ACL and tags (validated with
/// the export, see `filedrop_core::object_settings`).
#[derive(Debug, Clone, Default)]
pub struct ObjectOptions {
    pub(crate) content_type: String,
    pub(crate) encryption: Option<ServerSideEncryption>,
    pub(crate) kms_key_id: Option<String>,
    pub(crate) storage_class: Option<StorageClass>,
    pub(crate) acl: Option<ObjectCannedAcl>,
    /// The tags as S3's `x-amz-tagging` header wants them: a URL query, keys sorted.
    pub(crate) tagging: Option<String>,
}

impl ObjectOptions {
    /// The options of `destination`'s objects, with `content_type`.
    pub fn new(destination: &S3Destination, content_type: &str) -> Self {
        use filedrop_proto::v1::ServerSideEncryption as Sse;
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        let encryption = match Sse::try_from(destination.server_side_encryption) {
            Ok(Sse::Aes256) => Some(ServerSideEncryption::Aes256),
            Ok(Sse::AwsKms) => Some(ServerSideEncryption::AwsKms),
            _ => None,
        };
        let mut tags: Vec<(&String, &String)> = destination.tags.iter().collect();
        tags.sort();
        let tagging = tags
            .iter()
            .map(|(key, value)| format!("{}={}", url_encode(key), url_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        Self {
            content_type: content_type.to_owned(),
            encryption,
            kms_key_id: non_empty(&destination.kms_key_id),
            storage_class: non_empty(&destination.storage_class).map(|class| class.as_str().into()),
            acl: non_empty(&destination.canned_acl).map(|acl| acl.as_str().into()),
            tagging: non_empty(&tagging),
        }
    }

    /// The same options with another content type.
    pub fn with_content_type(&self, content_type: &str) -> Self {
        Self {
            content_type: content_type.to_owned(),
            ..self.clone()
        }
    }
}

/// Sets `options` on a `PutObject` or `CreateMultipartUpload` request builder.
macro_rules! with_options {
    ($builder:expr, $options:expr) => {
        $builder
            .content_type(&$options.content_type)
            .set_server_side_encryption($options.encryption.clone())
            .set_ssekms_key_id($options.kms_key_id.clone())
            .set_storage_class($options.storage_class.clone())
            .set_acl($options.acl.clone())
            .set_tagging($options.tagging.clone())
    };
}
pub(crate) use with_options;

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An object as the destination describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its size in bytes.
    pub size: u64,
    /// Its entity tag, quotes included, as S3 gives it.
    pub e_tag: String,
}

/// What a write expects to find at its key. The write carries it as a precondition
/// (`If-None-Match: *` or `If-Match`), so that it never replaces an object written since the
/// key was looked at: the destination refuses it with 412, and the writer looks again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there, if anything (no precondition).
    Anything,
    /// Nothing is at the key.
    Nothing,
    /// The object with this entity tag is at the key.
    ETag(String),
}

impl Expect {
    pub(crate) fn if_none_match(&self) -> Option<String> {
        matches!(self, Self::Nothing).then(|| "*".to_owned())
    }

    pub(crate) fn if_match(&self) -> Option<String> {
        match self {
            Self::Anything | Self::Nothing => None,
            Self::ETag(e_tag) => Some(e_tag.clone()),
        }
    }
}

/// The object at `s3://bucket/key`, or `None` if there is none.
pub async fn stored_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<StoredObject>, S3Failure> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some(StoredObject {
            size: head.content_length().unwrap_or_default() as u64,
            e_tag: head.e_tag().unwrap_or_default().to_owned(),
        })),
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

/// Writes a small object in one call, if the key holds what `expect` says; returns the new
/// object's entity tag.
pub async fn put_small_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &ObjectOptions,
    body: impl Into<ByteStream>,
    expect: &Expect,
) -> Result<String, S3Failure> {
    let written = with_options!(client.put_object().bucket(bucket).key(key), options)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .set_if_none_match(expect.if_none_match())
        .set_if_match(expect.if_match())
        .body(body.into())
        .send()
        .await
        .map_err(|error| classify(&error, "PutObject", bucket, key))?;
    Ok(written.e_tag().unwrap_or_default().to_owned())
}

/// Deletes the object at `s3://bucket/key` if it is still the one with entity tag `e_tag`
/// (an object written there since stays); says whether one was deleted.
pub async fn delete_if_unchanged(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    e_tag: &str,
) -> Result<bool, S3Failure> {
    match stored_object(client, bucket, key).await? {
        Some(object) if object.e_tag == e_tag => {
            client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|error| classify(&error, "DeleteObject", bucket, key))?;
            Ok(true)
        }
        _ => Ok(false),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_destinations_settings_and_tags_as_a_sorted_query() {
        let mut destination = S3Destination {
            server_side_encryption: filedrop_proto::v1::ServerSideEncryption::AwsKms.into(),
            kms_key_id: "alias/x".into(),
            storage_class: "STANDARD_IA".into(),
            canned_acl: "bucket-owner-full-control".into(),
            ..Default::default()
        };
        destination
            .tags
            .insert("team".into(), "growth analytics".into());
        destination.tags.insert("a/b".into(), "x=y".into());
        let options = ObjectOptions::new(&destination, "text/csv");
        assert_eq!(options.encryption, Some(ServerSideEncryption::AwsKms));
        assert_eq!(options.kms_key_id.as_deref(), Some("alias/x"));
        assert_eq!(options.storage_class, Some(StorageClass::StandardIa));
        assert_eq!(options.acl, Some(ObjectCannedAcl::BucketOwnerFullControl));
        assert_eq!(
            options.tagging.as_deref(),
            Some("a%2Fb=x%3Dy&team=growth%20analytics")
        );
        let plain = ObjectOptions::new(&S3Destination::default(), "text/plain");
        assert_eq!(plain.encryption, None);
        assert_eq!(plain.tagging, None);
        assert_eq!(
            plain.with_content_type("application/json").content_type,
            "application/json"
        );
    }
}
