//! How each file is packaged after it is encoded: compressed or archived (text formats only),
//! with or without Zip64 records, then perhaps encrypted to a PGP key.

use super::InvalidRequest;
use filedrop_proto::jobs::v1::Encoding;
use filedrop_proto::v1::{Compression, ErrorCode, FileFormat};

/// Checks the compression, and records it, the Zip64 switch and the PGP key in `encoding`;
/// returns the warning a setting without effect deserves.
pub(super) fn validate_packaging(
    format: FileFormat,
    compression: i32,
    zip64: bool,
    pgp_public_key: &str,
    encoding: &mut Encoding,
) -> Result<Option<String>, InvalidRequest> {
    let compression = validate_compression(format, compression)?;
    encoding.compression = compression.into();
    encoding.zip64 = zip64;
    // Checked by the control plane, which can read keys (see `filedrop_formats::pgp`).
    encoding.pgp_public_key = pgp_public_key.trim().to_owned();
    if zip64 && compression != Compression::Zip {
        return Ok(Some(
            "zip64: has no effect without compression COMPRESSION_ZIP; leave it unset".into(),
        ));
    }
    Ok(None)
}

/// Checks the compression or archive of the files: text formats only.
fn validate_compression(
    format: FileFormat,
    compression: i32,
) -> Result<Compression, InvalidRequest> {
    let invalid =
        |message: String| InvalidRequest::new("compression", ErrorCode::Unspecified, message);
    match Compression::try_from(compression) {
        Ok(Compression::Unspecified | Compression::None) => Ok(Compression::None),
        Ok(_) if format == FileFormat::Parquet => Err(invalid(
            "Parquet files compress their column chunks and are delivered as they are: leave \
             compression unset and choose a codec with parquet.compression"
                .to_owned(),
        )),
        Ok(known) => Ok(known),
        Err(_) => Err(invalid(format!(
            "unknown compression {compression}; use COMPRESSION_NONE, COMPRESSION_GZIP, \
             COMPRESSION_ZSTD, COMPRESSION_BZIP2, COMPRESSION_ZIP, COMPRESSION_TAR or \
             COMPRESSION_TGZ"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};
    use filedrop_proto::v1::{Compression, FileFormat};

    #[test]
    fn compression_and_archives_are_for_text_formats_and_zip64_warns_without_zip() {
        let with = |format: FileFormat, compression: Compression| {
            let mut r = request();
            r.format = format.into();
            r.compression = compression.into();
            if format == FileFormat::Parquet {
                r.filename_template = "orders".into();
            }
            ExportSpec::validate(r)
        };
        for compression in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Bzip2,
            Compression::Zip,
            Compression::Tar,
            Compression::Tgz,
        ] {
            for format in [FileFormat::Csv, FileFormat::Json, FileFormat::Ndjson] {
                let spec = with(format, compression).unwrap();
                assert_eq!(spec.encoding.compression(), compression);
            }
            let error = with(FileFormat::Parquet, compression).unwrap_err();
            assert_eq!(error.field, "compression");
            assert!(error.message.contains("parquet.compression"), "{error}");
        }
        assert_eq!(
            with(FileFormat::Parquet, Compression::None)
                .unwrap()
                .encoding
                .compression(),
            Compression::None
        );
        let mut r = request();
        r.compression = Compression::Zip.into();
        r.zip64 = true;
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert!(spec.encoding.zip64);
        assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
        r.compression = Compression::Tgz.into();
        let spec = ExportSpec::validate(r).unwrap();
        assert!(
            spec.warnings[0].starts_with("zip64:"),
            "{:?}",
            spec.warnings
        );
        let mut r = request();
        r.compression = 99;
        assert_eq!(field_of(r), "compression");
    }
}
