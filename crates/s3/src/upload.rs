//! Streaming uploads. A synchronous producer (the assembler) writes into a [`PartWriter`],
//! which cuts the stream into parts and hands them over a bounded channel to
//! [`upload_stream`], which uploads them with bounded concurrency. Memory stays at about
//! `part_size × (parts_in_flight + 2)` whatever the file size.
//!
//! Nothing becomes visible here: [`upload_pending`] leaves a file pending, its multipart
//! upload open with every part up (or, for a file of one part, its bytes in hand), and the
//! commit makes it visible later with [`complete_upload`] (or a put). If the producer stops
//! early or a part fails, the upload is aborted.

use crate::errors::{S3Failure, classify};
use crate::objects::{Expect, ObjectOptions, with_options};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::future::Future;
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

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its number, from 1.
    pub number: i32,
    /// Its entity tag, quotes included, as the destination gave it.
    pub e_tag: String,
    /// Its CRC32 (base64), as the destination computed it.
    pub checksum_crc32: Option<String>,
}

/// A file whose bytes are all up (or staged) but not yet visible at its key: the commit
/// completes it ([`complete_upload`], or a put of the small file's bytes).
#[derive(Debug, Clone)]
pub enum Pending {
    /// Smaller than one part: the bytes, put whole at the commit.
    Small {
        /// The file.
        bytes: Bytes,
        /// Its SHA-256, lowercase hexadecimal.
        sha256: String,
    },
    /// A multipart upload with every part up.
    Multipart {
        /// The upload.
        upload_id: String,
        /// Its parts, in order.
        parts: Vec<Part>,
        /// The file's size in bytes.
        size: u64,
        /// Its SHA-256, lowercase hexadecimal.
        sha256: String,
    },
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

/// Why an upload did not reach its pending state. Whatever the cause, the multipart upload
/// it created is aborted (unless the abort itself failed, which is logged).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The destination refused or failed a call.
    #[error(transparent)]
    Destination(#[from] S3Failure),
    /// The producer stopped before the end of the file; its own error says why.
    #[error("the file ended before it was complete")]
    Incomplete,
    /// The upload could not be recorded once created (see `upload_pending`'s `created`).
    #[error("the upload could not be recorded: {0}")]
    NotRecorded(String),
}

/// Uploads the pieces received on `pieces` for `s3://bucket/key` without making anything
/// visible there: a file of one part comes back whole ([`Pending::Small`]); a larger one goes
/// up as a multipart upload that is left open ([`Pending::Multipart`]), `created` being
/// called with its id as soon as it exists (to record it before any part goes up). A failure
/// aborts the upload.
pub async fn upload_pending<Created, Recorded>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &ObjectOptions,
    pieces: mpsc::Receiver<Piece>,
    parts_in_flight: usize,
    created: Created,
) -> Result<Pending, UploadError>
where
    Created: FnOnce(String) -> Recorded,
    Recorded: Future<Output = Result<(), String>>,
{
    let mut pieces = HashedPieces {
        receiver: pieces,
        digest: Digest::default(),
        held: std::collections::VecDeque::new(),
    };
    let bytes = match pieces.recv().await {
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
                    pieces,
                    parts_in_flight,
                    created,
                )
                .await;
            }
        },
    };
    Ok(Pending::Small {
        bytes,
        sha256: pieces.digest.hex(),
    })
}

async fn upload_multipart<Created, Recorded>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &ObjectOptions,
    mut pieces: HashedPieces,
    parts_in_flight: usize,
    created: Created,
) -> Result<Pending, UploadError>
where
    Created: FnOnce(String) -> Recorded,
    Recorded: Future<Output = Result<(), String>>,
{
    let started = with_options!(
        client.create_multipart_upload().bucket(bucket).key(key),
        options
    )
    .checksum_algorithm(ChecksumAlgorithm::Crc32)
    .send()
    .await
    .map_err(|error| classify(&error, "CreateMultipartUpload", bucket, key))?;
    let upload_id = started.upload_id().unwrap_or_default().to_owned();
    debug!(bucket, key, upload_id, "multipart upload started");
    let uploaded = match created(upload_id.clone()).await {
        Ok(()) => {
            upload_parts(
                client,
                bucket,
                key,
                &upload_id,
                &mut pieces,
                parts_in_flight,
            )
            .await
        }
        Err(why) => Err(UploadError::NotRecorded(why)),
    };
    match uploaded {
        Ok((parts, size)) => Ok(Pending::Multipart {
            upload_id,
            parts,
            size,
            sha256: pieces.digest.hex(),
        }),
        Err(error) => {
            if let Err(abort) = abort_upload(client, bucket, key, &upload_id).await {
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
) -> Result<(Vec<Part>, u64), UploadError> {
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
        Ok::<_, S3Failure>(Part {
            number,
            e_tag: response.e_tag().unwrap_or_default().to_owned(),
            checksum_crc32: response.checksum_crc32().map(str::to_owned),
        })
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
    completed.sort_by_key(|part| part.number);
    Ok((completed, size))
}

/// What completing a multipart upload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The object is at its key now, with this entity tag.
    Completed(String),
    /// The destination knows no such upload: completed before (by an earlier attempt whose
    /// answer was lost) or aborted. [`multipart_e_tag`] tells the two apart.
    Gone,
}

/// Completes the multipart upload `upload_id` of `s3://bucket/key` from its `parts`, if the key
/// holds what `expect` says: the moment the object becomes visible.
pub async fn complete_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[Part],
    expect: &Expect,
) -> Result<Completion, S3Failure> {
    let parts = parts
        .iter()
        .map(|part| {
            CompletedPart::builder()
                .part_number(part.number)
                .e_tag(&part.e_tag)
                .set_checksum_crc32(part.checksum_crc32.clone())
                .build()
        })
        .collect();
    let completed = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .set_if_none_match(expect.if_none_match())
        .set_if_match(expect.if_match())
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    match completed {
        Ok(completed) => Ok(Completion::Completed(
            completed.e_tag().unwrap_or_default().to_owned(),
        )),
        Err(error) if upload_gone(&error) => Ok(Completion::Gone),
        Err(error) => Err(classify(&error, "CompleteMultipartUpload", bucket, key)),
    }
}

/// Aborts the multipart upload `upload_id` of `s3://bucket/key`; one already gone is fine.
pub async fn abort_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), S3Failure> {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if upload_gone(&error) => Ok(()),
        Err(error) => Err(classify(&error, "AbortMultipartUpload", bucket, key)),
    }
}

/// Whether an error says the upload does not exist (any more).
fn upload_gone<E>(error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    let code = match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    code == Some("NoSuchUpload")
        || (code.is_none() && error.raw_response().map(|r| r.status().as_u16()) == Some(404))
}

/// The entity tag S3 gives an object completed from `parts`: the MD5 of the parts' MD5s, a
/// dash and the part count, quoted. `None` when a part's tag is not an MD5 (SSE-KMS, some
/// S3-compatible stores): then only the upload's own answer can say it completed.
pub fn multipart_e_tag(parts: &[Part]) -> Option<String> {
    use md5::Digest as _;
    let mut digest = md5::Md5::new();
    for part in parts {
        let hex = part.e_tag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        for pair in hex.as_bytes().chunks(2) {
            let byte = std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())?;
            digest.update([byte]);
        }
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Some(format!("\"{hex}-{}\"", parts.len()))
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
    fn the_multipart_e_tag_is_the_md5_of_the_parts_md5s() {
        // Two parts of "a" and "b": MD5("a") and MD5("b"), then MD5 of their 32 bytes.
        let parts = [
            Part {
                number: 1,
                e_tag: "\"0cc175b9c0f1b6a831c399e269772661\"".into(),
                checksum_crc32: None,
            },
            Part {
                number: 2,
                e_tag: "\"92eb5ffee6ae2fec3ad71c777531578f\"".into(),
                checksum_crc32: None,
            },
        ];
        let mut both = Vec::new();
        for hex in [
            "0cc175b9c0f1b6a831c399e269772661",
            "92eb5ffee6ae2fec3ad71c777531578f",
        ] {
            for pair in hex.as_bytes().chunks(2) {
                both.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
            }
        }
        use md5::Digest as _;
        let expected: String = md5::Md5::digest(&both)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(multipart_e_tag(&parts), Some(format!("\"{expected}-2\"")));
        let kms = Part {
            e_tag: "\"not-an-md5\"".into(),
            ..parts[0].clone()
        };
        assert_eq!(multipart_e_tag(&[kms]), None);
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
