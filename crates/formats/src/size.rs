//! Upper bounds on a delivered file's size, from its blocks' sizes alone.
//!
//! A split by size plans files before they are assembled: it packs consecutive blocks into a
//! file while [`SizeBound::file`] of the blocks stays at or under the limit, so that every
//! delivered object is at or under it, whatever the compression, archive and encryption add.
//!
//! - Text files: exact before archiving and encryption. The framing (header row, JSON
//!   brackets and commas) grows linearly with the number of non-empty blocks, so the framing
//!   of a one-block and a two-block file say what every file's framing is.
//! - zip and tgz deflate the whole file on the uploader: bounded by zlib's `deflateBound`
//!   (stored blocks when data does not compress), so such files usually come out well under
//!   the limit.
//! - tar: 512-byte headers (two more for a GNU long name), the data padded to 512 bytes, and
//!   the 1,024-byte end.
//! - Parquet: blocks are Parquet files whose column chunks are copied under one footer; the
//!   merged footer holds the schema once and every row group's metadata, which the blocks'
//!   footers already held, so the blocks' sum bounds it, with a margin for offsets that need
//!   more bytes in a larger file.
//! - OpenPGP: the session key packet (at most a 16,384-bit RSA key's), the literal data header
//!   with the file name, the cipher's prefix, the integrity code, and one length byte per
//!   partial-body chunk of each of the two nested packets.

use crate::FormatError;
use crate::archive::Archive;
use crate::assemble::framing_size;
use crate::encode::parquet_properties;
use crate::format::{Output, OutputFormat};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;

/// S3's longest key, which bounds an archive entry's name.
const MAX_NAME_BYTES: u64 = 1024;
/// What a Parquet file's merged footer may need beyond the blocks' footers, per block.
const PARQUET_MARGIN_PER_BLOCK: u64 = 1024;
/// What OpenPGP adds besides the per-chunk lengths: session key packet, literal data header,
/// cipher prefix, integrity code, packet tags.
const PGP_FIXED_OVERHEAD: u64 = 8 * 1024;
/// rPGP's partial body chunk size.
const PGP_CHUNK: u64 = 512 * 1024;

/// The size bounds of one run's files.
#[derive(Debug, Clone)]
pub struct SizeBound {
    layout: Layout,
    archive: Option<Archive>,
    encrypted: bool,
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// A text file: framing of an empty file, of one block, and what each further block adds.
    Text {
        empty: u64,
        one_block: u64,
        per_block: u64,
    },
    /// A Parquet file, and the size of one without rows.
    Parquet { empty: u64 },
}

impl SizeBound {
    /// The bounds of files of `output` with rows of `schema`.
    pub fn new(output: &Output, schema: &SchemaRef) -> Result<Self, FormatError> {
        let layout = match &output.format {
            OutputFormat::Parquet { codec } => {
                let mut empty = Vec::new();
                ArrowWriter::try_new(
                    &mut empty,
                    output.file_schema(schema),
                    Some(parquet_properties(*codec)),
                )?
                .close()?;
                Layout::Parquet {
                    empty: empty.len() as u64,
                }
            }
            _ => {
                let one_block = framing_size(output, schema, &[1])?;
                Layout::Text {
                    empty: framing_size(output, schema, &[])?,
                    one_block,
                    per_block: framing_size(output, schema, &[1, 1])?.saturating_sub(one_block),
                }
            }
        };
        Ok(Self {
            layout,
            archive: output.archive,
            encrypted: output.encryption.is_some(),
        })
    }

    /// The most bytes a delivered file of `blocks` blocks holding `block_bytes` bytes in all
    /// can have.
    pub fn file(&self, block_bytes: u64, blocks: u64) -> u64 {
        let plain = match self.layout {
            Layout::Text { empty, .. } if blocks == 0 => empty,
            Layout::Text {
                empty,
                one_block,
                per_block,
            } => (one_block + per_block * (blocks - 1)).max(empty) + block_bytes,
            Layout::Parquet { empty } if blocks == 0 => empty,
            Layout::Parquet { .. } => block_bytes + PARQUET_MARGIN_PER_BLOCK * blocks,
        };
        let packed = match self.archive {
            None => plain,
            Some(Archive::Zip { .. }) => zip_bound(plain),
            Some(Archive::Tar) => tar_bound(plain),
            Some(Archive::Tgz) => gzip_bound(tar_bound(plain)),
        };
        if self.encrypted {
            pgp_bound(packed)
        } else {
            packed
        }
    }

    /// The largest block that fits in a file of at most `limit` bytes on its own, or `None`
    /// when not even an empty block does.
    pub fn largest_block(&self, limit: u64) -> Option<u64> {
        if self.file(0, 1) > limit {
            return None;
        }
        // `file` grows with the block's size: search for the last size that fits.
        let (mut fits, mut too_big) = (0, limit + 1);
        while too_big - fits > 1 {
            let middle = fits + (too_big - fits) / 2;
            if self.file(middle, 1) <= limit {
                fits = middle;
            } else {
                too_big = middle;
            }
        }
        Some(fits)
    }
}

/// zlib's `deflateBound`: stored blocks when data does not compress, and the stream's ends.
fn deflate_bound(size: u64) -> u64 {
    size + (size >> 12) + (size >> 14) + (size >> 25) + 13
}

/// A gzip member: deflate plus the 10-byte header and 8-byte trailer.
fn gzip_bound(size: u64) -> u64 {
    deflate_bound(size) + 18
}

/// A zip archive of one entry, with Zip64 records: local header, data descriptor, central
/// directory entry, Zip64 end records and end of central directory, the name twice.
fn zip_bound(size: u64) -> u64 {
    deflate_bound(size) + 2 * MAX_NAME_BYTES + 512
}

/// A tar archive of one entry: a GNU long-name header and its data, the entry's header, the
/// data padded to 512 bytes, and the end.
fn tar_bound(size: u64) -> u64 {
    let long_name = 512 + MAX_NAME_BYTES.next_multiple_of(512);
    long_name + 512 + size.next_multiple_of(512) + 1024
}

/// An OpenPGP message around `size` bytes: two nested packets with partial-body chunks.
fn pgp_bound(size: u64) -> u64 {
    let chunks = size / PGP_CHUNK + 1;
    size + 2 * (chunks + 5) + PGP_FIXED_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::assemble;
    use crate::compress::StreamCompression;
    use crate::delimited::{DelimitedOptions, LineEnding};
    use crate::encode::encode_block;
    use crate::format::{JsonLayout, ParquetCodec};
    use crate::pgp::PgpRecipient;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use bytes::Bytes;
    use std::sync::Arc;

    /// Pseudo-random, incompressible bytes (a linear congruential generator).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("label", DataType::Utf8, true),
        ]))
    }

    /// A batch of `rows` rows whose text is hex of incompressible bytes.
    fn batch(seed: u64, rows: usize) -> RecordBatch {
        let bytes = noise(seed, rows * 64);
        let labels: Vec<String> = bytes
            .chunks(64)
            .map(|chunk| chunk.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(StringArray::from_iter_values(labels)),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    fn rsa_recipient() -> PgpRecipient {
        PgpRecipient::from_armored(crate::pgp::test_keys::RSA).unwrap()
    }

    fn outputs() -> Vec<Output> {
        let csv = OutputFormat::Delimited(DelimitedOptions::with_delimiter(b','));
        let array = OutputFormat::Json {
            layout: JsonLayout::Array,
            line_ending: LineEnding::CrLf,
        };
        let parquet = OutputFormat::Parquet {
            codec: ParquetCodec::None,
        };
        let recipient = rsa_recipient();
        let mut outputs = Vec::new();
        for format in [csv.clone(), array] {
            for compression in [
                None,
                Some(StreamCompression::Gzip),
                Some(StreamCompression::Zstd),
                Some(StreamCompression::Bzip2),
            ] {
                outputs.push(Output {
                    compression,
                    ..Output::plain(format.clone())
                });
            }
            for archive in [Archive::Zip { zip64: false }, Archive::Tar, Archive::Tgz] {
                outputs.push(Output {
                    archive: Some(archive),
                    ..Output::plain(format.clone())
                });
            }
        }
        outputs.push(Output::plain(parquet.clone()));
        outputs.push(Output {
            encryption: Some(recipient.clone()),
            ..Output::plain(parquet)
        });
        outputs.push(Output {
            archive: Some(Archive::Tgz),
            encryption: Some(recipient),
            ..Output::plain(csv)
        });
        outputs
    }

    #[test]
    fn delivered_files_never_exceed_their_bound() {
        let schema = schema();
        for output in outputs() {
            let bound = SizeBound::new(&output, &schema).unwrap();
            for rows in [
                vec![],
                vec![0],
                vec![1],
                vec![3, 0, 700],
                vec![2_000, 9_000, 5],
            ] {
                let blocks: Vec<Bytes> = rows
                    .iter()
                    .enumerate()
                    .map(|(seed, &rows)| {
                        encode_block(&output, &schema, &[batch(seed as u64, rows)], 1).unwrap()
                    })
                    .collect();
                let sizes: Vec<u64> = blocks.iter().map(|b| b.len() as u64).collect();
                let written = assemble(
                    &output,
                    &schema,
                    "exports/a-rather-long-name-for-a-file.txt",
                    &sizes,
                    |index| Ok(blocks[index].clone()),
                    Vec::new(),
                )
                .unwrap();
                let limit = bound.file(sizes.iter().sum(), sizes.len() as u64);
                assert!(
                    written.len() as u64 <= limit,
                    "{:?} {:?} {:?}: {} bytes over the bound {limit}",
                    output.format,
                    output.compression,
                    output.archive,
                    written.len()
                );
                // Exact for text files of non-empty blocks before archiving and encryption (an
                // empty block adds no framing, which the bound still counts).
                let text = !matches!(output.format, OutputFormat::Parquet { .. });
                let exact = text
                    && output.archive.is_none()
                    && output.encryption.is_none()
                    && sizes.iter().all(|size| *size > 0);
                if exact {
                    assert_eq!(written.len() as u64, limit, "text files are exact");
                }
            }
        }
    }

    #[test]
    fn archives_of_incompressible_data_stay_within_their_bound() {
        let data = noise(7, 3_000_000);
        for (archive, bound) in [
            (Archive::Zip { zip64: true }, zip_bound as fn(u64) -> u64),
            (Archive::Tar, tar_bound),
            (Archive::Tgz, |size| gzip_bound(tar_bound(size))),
        ] {
            let name = "n".repeat(1000);
            let written = archive
                .write(&name, data.len() as u64, &data[..], Vec::new())
                .unwrap();
            assert!(
                written.len() as u64 <= bound(data.len() as u64),
                "{archive:?}: {} over {}",
                written.len(),
                bound(data.len() as u64)
            );
        }
        let mut encrypted = Vec::new();
        rsa_recipient()
            .encrypt(&"n".repeat(255), &mut encrypted, |pipe| {
                std::io::Write::write_all(pipe, &data).map_err(FormatError::from)
            })
            .unwrap();
        assert!(encrypted.len() as u64 <= pgp_bound(data.len() as u64));
    }

    #[test]
    fn the_largest_block_fits_and_one_byte_more_does_not() {
        let output = Output {
            archive: Some(Archive::Tgz),
            ..Output::plain(OutputFormat::Delimited(DelimitedOptions::with_delimiter(
                b',',
            )))
        };
        let bound = SizeBound::new(&output, &schema()).unwrap();
        let largest = bound.largest_block(1_000_000).unwrap();
        assert!(bound.file(largest, 1) <= 1_000_000);
        assert!(bound.file(largest + 1, 1) > 1_000_000);
        assert!(largest > 990_000, "{largest}");
        assert_eq!(bound.largest_block(100), None);
    }
}
