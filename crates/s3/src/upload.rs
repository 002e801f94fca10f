//! Streaming uploads. A synchronous producer (the assembler) writes into a [`PartWriter`],
//! which cuts the stream into parts and hands them over a bounded channel to
//! [`upload_stream`], which uploads them with bounded concurrency. Memory stays at about
//! `part_size × (parts_in_flight + 2)` whatever the file size.
//!
//! A file that fits in one part goes out as a single `PutObject`. A multipart upload is
//! completed only after the producer says the file is whole ([`Piece::End`]); if the producer
//! stops early or a part fails, the upload is aborted, so no partial object ever appears at
//! the key.

use crate::errors::{S3Failure, classify};
use crate::objects::{Expect, ObjectOptions, with_options};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::io::{self, Write};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// S3's smallest part size (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest part size.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// What the producer sends to the uploader.
#[derive(Debug)]
pub enum Piece {
    /// The next part's bytes.
    Data(Bytes),
    /// The file is complete.
    End,
}

/// The part size for a file of about `estimated_size` bytes: the configured size, raised so
/// the file needs fewer than [`MAX_PARTS`] parts (with headroom for estimate error).
pub fn part_size_for(configured: usize, estimated_size: u64) -> usize {
    let needed = estimated_size.div_ceil(MAX_PARTS * 9 / 10) as usize;
    configured.max(needed).clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// A `Write` that cuts what is written into parts of `part_size` bytes and sends them to
/// [`upload_stream`]. Call [`PartWriter::finish`] when the file is complete; dropping it
/// without finishing makes the uploader abort.
pub struct PartWriter {
    buffer: Vec<u8>,
    part_size: usize,
    sender: mpsc::Sender<Piece>,
}

impl PartWriter {
    /// A writer that sends parts of `part_size` bytes to `sender`.
    pub fn new(part_size: usize, sender: mpsc::Sender<Piece>) -> Self {
        Self {
            buffer: Vec::with_capacity(part_size),
            part_size,
            sender,
        }
    }

    /// Sends what remains and marks the file complete.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.send(Piece::Data(Bytes::from(rest)))?;
        }
        self.send(Piece::End)
    }

    fn send(&self, piece: Piece) -> io::Result<()> {
        self.sender.blocking_send(piece).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the upload stopped before the file ended",
            )
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.part_size - self.buffer.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == self.part_size {
                let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
                self.send(Piece::Data(Bytes::from(part)))?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Parts are sent when full; a flush must not cut a short part mid-file.
        Ok(())
    }
}

/// An object that was written.
#[derive(Debug, Clone)]
pub struct UploadedObject {
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lowercase hexadecimal (for the manifest, and for anyone
    /// checking the object against it).
    pub sha256: String,
    /// Its entity tag, as the destination gave it.
    pub e_tag: String,
}

/// The SHA-256 of what was sent, piece by piece, in order.
#[derive(Default)]
struct Digest(sha2::Sha256);

impl Digest {
    fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    fn hex(self) -> String {
        sha2::Digest::finalize(self.0)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The producer's pieces, hashed in stream order as they arrive (whatever order the parts
/// are then uploaded in).
struct HashedPieces {
    receiver: mpsc::Receiver<Piece>,
    digest: Digest,
    /// Parts received (and hashed) to tell a small file from a large one, not yet uploaded.
    held: std::collections::VecDeque<Bytes>,
}

impl HashedPieces {
    async fn recv(&mut self) -> Option<Piece> {
        if let Some(part) = self.held.pop_front() {
            return Some(Piece::Data(part));
        }
        let piece = self.receiver.recv().await;
        if let Some(Piece::Data(bytes)) = &piece {
            self.digest.update(bytes);
        }
        piece
    }
}

/// Why an upload did not complete. Whatever the cause, nothing is left at the key and no
/// multipart upload is left open (unless the abort itself failed, which is logged).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The destination refused or failed a call.
    #[error(transparent)]
    Destination(#[from] S3Failure),
    /// The producer stopped before the end of the file; its own error says why.
    #[error("the file ended before it was complete")]
    Incomplete,
}

/// Uploads the pieces received on `pieces` to `s3://bucket/key`, provided the key still holds
/// what `expect` says when the object is completed.
pub async fn upload_stream(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &ObjectOptions,
    expect: &Expect,
    pieces: mpsc::Receiver<Piece>,
    parts_in_flight: usize,
) -> Result<UploadedObject, UploadError> {
    let mut pieces = HashedPieces {
        receiver: pieces,
        digest: Digest::default(),
        held: std::collections::VecDeque::new(),
    };
    let first = match pieces.recv().await {
        None => return Err(UploadError::Incomplete),
        Some(Piece::End) => Bytes::new(),
        Some(Piece::Data(first)) => match pieces.recv().await {
            None => return Err(UploadError::Incomplete),
            Some(Piece::End) => first,
            Some(Piece::Data(second)) => {
                pieces.held.extend([first, second]);
                return upload_multipart(
                    client,
                    bucket,
                    key,
                    options,
                    expect,
                    pieces,
                    parts_in_flight,
                )
                .await;
            }
        },
    };
    let size = first.len() as u64;
    let e_tag =
        crate::objects::put_small_object(client, bucket, key, options, first, expect).await?;
    Ok(UploadedObject {
        size,
        sha256: pieces.digest.hex(),
        e_tag,
    })
}

async fn upload_multipart(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &ObjectOptions,
    expect: &Expect,
    mut pieces: HashedPieces,
    parts_in_flight: usize,
) -> Result<UploadedObject, UploadError> {
    let created = with_options!(
        client.create_multipart_upload().bucket(bucket).key(key),
        options
    )
    .checksum_algorithm(ChecksumAlgorithm::Crc32)
    .send()
    .await
    .map_err(|error| classify(&error, "CreateMultipartUpload", bucket, key))?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    debug!(bucket, key, upload_id, "multipart upload started");
    let result = upload_parts(
        client,
        bucket,
        key,
        &upload_id,
        &mut pieces,
        parts_in_flight,
    )
    .await;
    let completed = match result {
        Ok((parts, size)) => client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .set_if_none_match(expect.if_none_match())
            .set_if_match(expect.if_match())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|completed| (completed, size))
            .map_err(|error| {
                UploadError::from(classify(&error, "CompleteMultipartUpload", bucket, key))
            }),
        Err(error) => Err(error),
    };
    match completed {
        Ok((completed, size)) => Ok(UploadedObject {
            size,
            sha256: pieces.digest.hex(),
            e_tag: completed.e_tag().unwrap_or_default().to_owned(),
        }),
        Err(error) => {
            if let Err(abort_error) = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                let abort = classify(&abort_error, "AbortMultipartUpload", bucket, key);
                warn!(bucket, key, upload_id, error = %abort, "could not abort multipart upload");
            }
            Err(error)
        }
    }
}

async fn upload_parts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    pieces: &mut HashedPieces,
    parts_in_flight: usize,
) -> Result<(Vec<CompletedPart>, u64), UploadError> {
    let upload_part = |number: i32, body: Bytes| async move {
        let response = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| classify(&error, "UploadPart", bucket, key))?;
        Ok::<_, S3Failure>(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(response.e_tag().map(str::to_owned))
                .set_checksum_crc32(response.checksum_crc32().map(str::to_owned))
                .build(),
        )
    };
    let mut in_flight = FuturesUnordered::new();
    let mut completed = Vec::new();
    let mut size = 0u64;
    let mut next_number = 1i32;
    let mut ended = false;
    loop {
        while !ended && in_flight.len() < parts_in_flight.max(1) {
            let part = match pieces.recv().await {
                Some(Piece::Data(part)) => part,
                Some(Piece::End) => {
                    ended = true;
                    break;
                }
                None => return Err(UploadError::Incomplete),
            };
            if next_number as u64 > MAX_PARTS {
                return Err(UploadError::Destination(S3Failure::permanent(
                    filedrop_core::failure::RunFailure::internal(format!(
                        "s3://{bucket}/{key} needs more than {MAX_PARTS} parts; raise the part size"
                    )),
                )));
            }
            size += part.len() as u64;
            in_flight.push(upload_part(next_number, part));
            next_number += 1;
        }
        match in_flight.next().await {
            Some(result) => completed.push(result?),
            None if ended => break,
            None => {}
        }
    }
    completed.sort_by_key(|part| part.part_number());
    Ok((completed, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_writer_cuts_full_parts_and_ends() {
        let (sender, mut receiver) = mpsc::channel(16);
        let mut writer = PartWriter::new(4, sender);
        writer.write_all(b"abcdefghij").unwrap();
        writer.flush().unwrap();
        writer.write_all(b"k").unwrap();
        writer.finish().unwrap();
        let mut pieces = Vec::new();
        while let Ok(piece) = receiver.try_recv() {
            pieces.push(match piece {
                Piece::Data(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                Piece::End => "<end>".to_owned(),
            });
        }
        assert_eq!(pieces, ["abcd", "efgh", "ijk", "<end>"]);
    }

    #[test]
    fn part_size_keeps_files_under_the_part_limit() {
        assert_eq!(part_size_for(MIN_PART_SIZE, 1), MIN_PART_SIZE);
        let big = 200 * 1024 * 1024 * 1024u64;
        let size = part_size_for(MIN_PART_SIZE, big);
        assert!(big.div_ceil(size as u64) < MAX_PARTS);
        assert_eq!(part_size_for(1, 1), MIN_PART_SIZE);
    }
}
