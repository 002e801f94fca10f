//! Pending uploads: files uploaded but not yet visible, as staging records them
//! (`PendingUpload` under `runs/<run>/uploads/<file>/<tag>`).
//!
//! The uploader records an upload the moment it exists and again once every part is up; the
//! commit ([`commit_file`]) makes the file visible and records that too; a stopped run's
//! cleanup ([`undo`]) aborts what is pending and deletes what its commit completed. Each step
//! reads the record first, so a step redone after a crash finds where the last one stopped:
//! every upload is completed or aborted exactly once, and only objects a record shows this run
//! wrote are ever deleted.

use crate::destination_clients::Connected;
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{PendingUpload, UploadedPart};
use filedrop_runtime::staging::{Staging, StagingError, uploads_of_file, uploads_of_run};
use filedrop_s3::S3Failure;
use filedrop_s3::objects::{
    Expect, ObjectOptions, delete_if_unchanged, put_small_object, stored_object,
};
use filedrop_s3::upload::{Completion, Part, abort_upload, complete_upload, multipart_e_tag};
use prost::Message;

/// A pending upload and the staging key of its record.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Where the record is.
    pub key: String,
    /// The record.
    pub upload: PendingUpload,
}

/// A staging failure, as a failure of the attempt (tried again).
pub fn staging_failure(what: &str, error: &StagingError) -> S3Failure {
    S3Failure::transient(RunFailure::internal(format!("staging: {what}: {error}")))
}

/// Writes `upload`'s record at `key`.
pub async fn keep(staging: &Staging, key: &str, upload: &PendingUpload) -> Result<(), S3Failure> {
    staging
        .put(key, upload.encode_to_vec().into())
        .await
        .map_err(|error| staging_failure("recording a pending upload", &error))
}

/// The records under `prefix` (one file's, or the run's), in key order. A record that cannot
/// be decoded is a fault: it is reported, not skipped, as it may name an open upload.
async fn records_under(staging: &Staging, prefix: &str) -> Result<Vec<Recorded>, S3Failure> {
    let keys = staging
        .list(prefix)
        .await
        .map_err(|error| staging_failure("listing pending uploads", &error))?;
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = match staging.get(&key).await {
            Ok(bytes) => bytes,
            // Deleted meanwhile by a cleanup or a commit of another copy.
            Err(StagingError::NotFound { .. }) => continue,
            Err(error) => return Err(staging_failure("reading a pending upload", &error)),
        };
        let upload = PendingUpload::decode(bytes).map_err(|error| {
            S3Failure::permanent(RunFailure::internal(format!(
                "the pending upload recorded at {key} is corrupt: {error}"
            )))
        })?;
        records.push(Recorded { key, upload });
    }
    Ok(records)
}

/// The pending uploads of one file of a run.
pub async fn of_file(
    staging: &Staging,
    run_id: &str,
    file_number: u64,
) -> Result<Vec<Recorded>, S3Failure> {
    records_under(staging, &uploads_of_file(run_id, file_number)).await
}

/// The pending uploads of every file of a run.
pub async fn of_run(staging: &Staging, run_id: &str) -> Result<Vec<Recorded>, S3Failure> {
    records_under(staging, &uploads_of_run(run_id)).await
}

/// The upload of a file that its commit uses: of those for `object_key` with every part up,
/// the first by key (two copies of an upload task may both have finished; they hold the same
/// bytes, and the others are aborted).
pub fn chosen<'a>(records: &'a [Recorded], object_key: &str) -> Option<&'a Recorded> {
    records
        .iter()
        .find(|record| record.upload.uploaded && record.upload.object_key == object_key)
}

/// The parts of a recorded multipart upload, as the S3 calls take them.
pub fn parts_of(upload: &PendingUpload) -> Vec<Part> {
    upload
        .parts
        .iter()
        .map(|part| Part {
            number: part.number,
            e_tag: part.e_tag.clone(),
            checksum_crc32: (!part.checksum_crc32.is_empty()).then(|| part.checksum_crc32.clone()),
        })
        .collect()
}

/// Uploaded parts, as a record keeps them.
pub fn recorded_parts(parts: &[Part]) -> Vec<UploadedPart> {
    parts
        .iter()
        .map(|part| UploadedPart {
            number: part.number,
            e_tag: part.e_tag.clone(),
            checksum_crc32: part.checksum_crc32.clone().unwrap_or_default(),
        })
        .collect()
}

/// Makes a file visible at its key, if the key holds what `expect` says: completes its
/// multipart upload, or puts its staged bytes; then records the object's entity tag, and
/// answers it. A file its record shows completed is checked to be still there, not written
/// again.
pub async fn commit_file(
    staging: &Staging,
    connected: &Connected,
    recorded: &Recorded,
    expect: &Expect,
) -> Result<String, S3Failure> {
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let upload = &recorded.upload;
    let key = upload.object_key.as_str();
    if !upload.e_tag.is_empty() {
        let stored = stored_object(client, bucket, key).await?;
        if stored.is_some_and(|stored| stored.e_tag == upload.e_tag) {
            return Ok(upload.e_tag.clone());
        }
        return Err(S3Failure::permanent(RunFailure::internal(format!(
            "s3://{bucket}/{key} changed after this run's commit wrote it: something else \
             writes there; retry the run"
        ))));
    }
    let e_tag = if upload.upload_id.is_empty() {
        let bytes = match staging.get(&upload.staged_key).await {
            Ok(bytes) => bytes,
            Err(StagingError::NotFound { .. }) => {
                return Err(S3Failure::permanent(RunFailure::internal(format!(
                    "the staged bytes of {key} are gone; retry the run"
                ))));
            }
            Err(error) => return Err(staging_failure("reading a staged file", &error)),
        };
        let options = ObjectOptions::new(&connected.destination, &upload.content_type);
        put_small_object(client, bucket, key, &options, bytes, expect).await?
    } else {
        let parts = parts_of(upload);
        match complete_upload(client, bucket, key, &upload.upload_id, &parts, expect).await? {
            Completion::Completed(e_tag) => e_tag,
            // Completed by an earlier attempt whose answer was lost, if the object there is
            // the one these parts make; otherwise aborted, and the file is lost.
            Completion::Gone => {
                let stored = stored_object(client, bucket, key).await?;
                match (stored, multipart_e_tag(&parts)) {
                    (Some(stored), Some(expected))
                        if stored.e_tag == expected && stored.size == upload.size =>
                    {
                        stored.e_tag
                    }
                    _ => {
                        return Err(S3Failure::permanent(RunFailure::internal(format!(
                            "the upload of s3://{bucket}/{key} is gone before its commit \
                             (aborted by a cleanup or a lifecycle rule); retry the run"
                        ))));
                    }
                }
            }
        }
    };
    let committed = PendingUpload {
        e_tag: e_tag.clone(),
        ..upload.clone()
    };
    keep(staging, &recorded.key, &committed).await?;
    Ok(e_tag)
}

/// Takes back one upload of a run that will not deliver it: a pending one is aborted (its
/// staged bytes deleted); one its commit completed is deleted if the object at its key is
/// still the one it wrote. Then its record goes. With `pending_only`, a completed one is left
/// alone (the run delivered it).
pub async fn undo(
    staging: &Staging,
    connected: &Connected,
    recorded: &Recorded,
    pending_only: bool,
) -> Result<Undone, S3Failure> {
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let upload = &recorded.upload;
    let undone = if !upload.e_tag.is_empty() {
        if pending_only {
            return Ok(Undone::Kept);
        }
        if delete_if_unchanged(client, bucket, &upload.object_key, &upload.e_tag).await? {
            Undone::Deleted
        } else {
            Undone::Kept
        }
    } else if !upload.upload_id.is_empty() {
        abort_upload(client, bucket, &upload.object_key, &upload.upload_id).await?;
        Undone::Aborted
    } else {
        Undone::Aborted
    };
    if !upload.staged_key.is_empty() {
        staging
            .delete(&upload.staged_key)
            .await
            .map_err(|error| staging_failure("deleting a staged file", &error))?;
    }
    staging
        .delete(&recorded.key)
        .await
        .map_err(|error| staging_failure("deleting a pending upload", &error))?;
    Ok(undone)
}

/// What [`undo`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    /// A pending upload was aborted (or a staged file dropped).
    Aborted,
    /// A completed object was deleted.
    Deleted,
    /// A completed object stayed: something else was written there since, or the run
    /// delivered it.
    Kept,
}
