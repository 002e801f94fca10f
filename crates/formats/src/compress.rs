//! Stream compression of text files: gzip, Zstandard and bzip2.
//!
//! All three formats concatenate: a file made of several complete members (gzip), frames
//! (zstd) or streams (bzip2) decompresses to the concatenation of their contents, in every
//! standard tool. So each encoder compresses its block on its own, in parallel with the others,
//! and the assembler compresses the few framing bytes (a header row, JSON brackets) as members
//! of their own.

use std::io::Write;

/// A compression whose outputs concatenate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCompression {
    /// gzip, default level (6).
    Gzip,
    /// Zstandard, default level (3).
    Zstd,
    /// bzip2, level 6: 600 kB blocks, a balance of speed and ratio like gzip's default.
    Bzip2,
}

impl StreamCompression {
    /// `data` as one complete member, frame or stream.
    pub fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let capacity = data.len() / 4 + 64;
        match self {
            Self::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(capacity),
                    flate2::Compression::default(),
                );
                encoder.write_all(data)?;
                encoder.finish()
            }
            Self::Zstd => zstd::stream::encode_all(data, zstd::DEFAULT_COMPRESSION_LEVEL),
            Self::Bzip2 => {
                let mut encoder = bzip2::write::BzEncoder::new(
                    Vec::with_capacity(capacity),
                    bzip2::Compression::new(6),
                );
                encoder.write_all(data)?;
                encoder.finish()
            }
        }
    }

    /// The HTTP content type of a compressed file.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Gzip => "application/gzip",
            Self::Zstd => "application/zstd",
            Self::Bzip2 => "application/x-bzip2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn concatenated_outputs_decompress_to_the_concatenated_inputs() {
        let parts: [&[u8]; 3] = [b"header\n", b"", b"row 1\nrow 2\n"];
        for codec in [
            StreamCompression::Gzip,
            StreamCompression::Zstd,
            StreamCompression::Bzip2,
        ] {
            let mut file = Vec::new();
            for part in parts {
                file.extend(codec.compress(part).unwrap());
            }
            let mut plain = Vec::new();
            match codec {
                StreamCompression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&file[..]).read_to_end(&mut plain)
                }
                StreamCompression::Zstd => zstd::stream::read::Decoder::new(&file[..])
                    .unwrap()
                    .read_to_end(&mut plain),
                StreamCompression::Bzip2 => {
                    bzip2::read::MultiBzDecoder::new(&file[..]).read_to_end(&mut plain)
                }
            }
            .unwrap();
            assert_eq!(plain, b"header\nrow 1\nrow 2\n", "{codec:?}");
        }
    }
}
