//! Archives: the assembled file as the one entry of a zip, tar or gzip-compressed tar archive.
//!
//! An archive wraps the whole file, so it is written by the assembler as one stream, after the
//! blocks are joined (zip and tgz compress on the uploader's thread; see `docs/FORMATS.md`).
//! The file's size is known before the first byte is written — blocks are staged, framing is
//! computed — which is what a tar header needs and what lets a zip that would need Zip64 be
//! refused before anything is uploaded.

use crate::FormatError;
use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest size a zip archive's fields hold without Zip64 (`0xFFFF_FFFF` means "see the
/// Zip64 record", so it is itself out of reach).
const ZIP32_LIMIT: u64 = u32::MAX as u64;

/// Permissions of the archived file: readable by all, writable by its owner.
const FILE_MODE: u32 = 0o644;

/// An archive holding the delivered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// A zip archive; the entry is deflated (default level).
    Zip {
        /// Zip64 records may be written (they are, when the file needs them).
        zip64: bool,
    },
    /// A tar archive (GNU format: long names and sizes over 8 GiB are allowed).
    Tar,
    /// A tar archive compressed with gzip (default level).
    Tgz,
}

impl Archive {
    /// The HTTP content type of the archive.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Zip { .. } => "application/zip",
            Self::Tar => "application/x-tar",
            Self::Tgz => "application/gzip",
        }
    }

    /// The name of the file inside the archive: the last segment of the delivered object's key
    /// without the archive's extension (`orders.csv.zip` holds `orders.csv`), or the whole
    /// segment when it has no such extension.
    pub fn entry_name(self, object_key: &str) -> String {
        let name = object_key.rsplit('/').next().unwrap_or(object_key);
        let extensions: &[&str] = match self {
            Self::Zip { .. } => &[".zip"],
            Self::Tar => &[".tar"],
            Self::Tgz => &[".tgz", ".tar.gz"],
        };
        let lowercase = name.to_ascii_lowercase();
        extensions
            .iter()
            .find(|extension| lowercase.ends_with(*extension) && name.len() > extension.len())
            .map(|extension| name[..name.len() - extension.len()].to_owned())
            .unwrap_or_else(|| name.to_owned())
    }

    /// Refuses a file the archive cannot hold: over 4 GiB in a zip without Zip64. Checked
    /// before writing, so that no broken archive is ever started.
    pub fn check_size(self, entry_name: &str, size: u64) -> Result<(), FormatError> {
        if let Self::Zip { zip64: false } = self {
            // The archive's end must stay addressable in 32 bits: the local header, the
            // deflated data at its worst (zlib's `deflateBound`), and the data descriptor.
            let deflated_bound = size + (size >> 12) + (size >> 14) + (size >> 25) + 13;
            let archive_bound = 30 + entry_name.len() as u64 + deflated_bound + 16;
            if size >= ZIP32_LIMIT || archive_bound >= ZIP32_LIMIT {
                return Err(FormatError::FileTooLarge(format!(
                    "the file is {size} bytes, too large for a zip archive without Zip64 (4 GiB \
                     at most): set zip64 to true, or split the output into smaller files"
                )));
            }
        }
        Ok(())
    }

    /// Writes an archive holding `data` (exactly `size` bytes) as `entry_name` to `out`.
    pub fn write<R, W>(self, entry_name: &str, size: u64, data: R, out: W) -> Result<W, FormatError>
    where
        R: BufRead,
        W: Write,
    {
        self.check_size(entry_name, size)?;
        let modified = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default();
        match self {
            Self::Zip { .. } => write_zip(entry_name, modified, data, out),
            Self::Tar => write_tar(entry_name, size, modified, data, out),
            Self::Tgz => {
                let gzip = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                Ok(write_tar(entry_name, size, modified, data, gzip)?.finish()?)
            }
        }
    }
}

fn write_zip<R: BufRead, W: Write>(
    entry_name: &str,
    modified: u64,
    mut data: R,
    out: W,
) -> Result<W, FormatError> {
    let zip_error = |error: rawzip::Error| FormatError::Io(std::io::Error::other(error));
    let mut archive = rawzip::ZipArchiveWriter::new(out);
    let (mut entry, config) = archive
        .new_file(entry_name)
        .compression_method(rawzip::CompressionMethod::Deflate)
        .last_modified(rawzip::time::UtcDateTime::from_unix(modified as i64))
        .unix_permissions(FILE_MODE)
        .start()
        .map_err(zip_error)?;
    let deflate = flate2::write::DeflateEncoder::new(&mut entry, flate2::Compression::default());
    let mut writer = config.wrap(deflate);
    copy_buffered(&mut data, &mut writer)?;
    let (deflate, descriptor) = writer.finish().map_err(zip_error)?;
    deflate.finish()?;
    entry.finish(descriptor).map_err(zip_error)?;
    archive.finish().map_err(zip_error)
}

fn write_tar<R: BufRead, W: Write>(
    entry_name: &str,
    size: u64,
    modified: u64,
    data: R,
    out: W,
) -> Result<W, FormatError> {
    let mut builder = tar::Builder::new(out);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(FILE_MODE);
    header.set_mtime(modified);
    builder.append_data(&mut header, entry_name, data)?;
    Ok(builder.into_inner()?)
}

/// Copies a buffered reader to a writer without an intermediate buffer: each slice the reader
/// holds (a whole staged block) is written at once.
pub(crate) fn copy_buffered<R: BufRead, W: Write>(
    reader: &mut R,
    writer: &mut W,
) -> std::io::Result<u64> {
    let mut copied = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(copied);
        }
        writer.write_all(available)?;
        let length = available.len();
        copied += length as u64;
        reader.consume(length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn entries_are_named_after_the_object_without_the_archive_extension() {
        let zip = Archive::Zip { zip64: false };
        assert_eq!(
            zip.entry_name("out/orders-0000001.csv.zip"),
            "orders-0000001.csv"
        );
        assert_eq!(zip.entry_name("orders.CSV.ZIP"), "orders.CSV");
        assert_eq!(zip.entry_name("orders.csv"), "orders.csv");
        assert_eq!(zip.entry_name("a/.zip"), ".zip");
        assert_eq!(Archive::Tar.entry_name("x/y.tsv.tar"), "y.tsv");
        assert_eq!(Archive::Tgz.entry_name("y.ndjson.tar.gz"), "y.ndjson");
        assert_eq!(Archive::Tgz.entry_name("y.ndjson.tgz"), "y.ndjson");
    }

    #[test]
    fn a_zip_that_needs_zip64_is_refused_without_the_switch_and_allowed_with_it() {
        let without = Archive::Zip { zip64: false };
        let with = Archive::Zip { zip64: true };
        let four_gib = 4 * 1024 * 1024 * 1024;
        for size in [four_gib, four_gib - 1, four_gib - 1_000_000] {
            let error = without.check_size("f.csv", size).unwrap_err();
            assert!(
                matches!(&error, FormatError::FileTooLarge(message)
                    if message.contains("set zip64 to true")),
                "{error}"
            );
            with.check_size("f.csv", size).unwrap();
            // Refused before a byte is written.
            let mut out = Vec::new();
            assert!(without.write("f.csv", size, &b""[..], &mut out).is_err());
            assert!(out.is_empty());
        }
        without.check_size("f.csv", four_gib - 10_000_000).unwrap();
        Archive::Tar.check_size("f.csv", 10 * four_gib).unwrap();
    }

    #[test]
    fn tar_and_tgz_archives_hold_the_file_under_its_name() {
        let data = b"id,name\n1,\xc3\xbc\n".repeat(100);
        for archive in [Archive::Tar, Archive::Tgz] {
            let name = format!("{}.csv", "long-name-".repeat(15));
            let bytes = archive
                .write(&name, data.len() as u64, &data[..], Vec::new())
                .unwrap();
            let plain = match archive {
                Archive::Tgz => {
                    let mut plain = Vec::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_end(&mut plain)
                        .unwrap();
                    plain
                }
                _ => bytes,
            };
            let mut tar = tar::Archive::new(&plain[..]);
            let mut entries = tar.entries().unwrap();
            let mut entry = entries.next().unwrap().unwrap();
            assert_eq!(entry.path().unwrap().to_str().unwrap(), name);
            assert_eq!(entry.header().mode().unwrap(), FILE_MODE);
            let mut read = Vec::new();
            entry.read_to_end(&mut read).unwrap();
            assert_eq!(read, data);
            drop(entry);
            assert!(entries.next().is_none(), "one entry");
        }
    }

    #[test]
    fn zip_archives_hold_the_deflated_file_with_its_checksum() {
        let data = b"id,name\n1,\xc3\xbc\n".repeat(1000);
        let bytes = Archive::Zip { zip64: false }
            .write("f.csv", data.len() as u64, &data[..], Vec::new())
            .unwrap();
        assert!(bytes.len() < data.len() / 10, "deflated");
        let archive = rawzip::ZipArchive::from_slice(&bytes).unwrap();
        let mut entries = archive.entries();
        let entry = entries.next_entry().unwrap().unwrap();
        assert_eq!(entry.file_path().as_ref(), b"f.csv");
        assert_eq!(
            entry.compression_method(),
            rawzip::CompressionMethod::Deflate
        );
        let local = archive.get_entry(entry.wayfinder()).unwrap();
        let mut read = Vec::new();
        local
            .verifying_reader(flate2::bufread::DeflateDecoder::new(local.data()))
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, data);
        assert!(entries.next_entry().unwrap().is_none(), "one entry");
    }
}
