//! An [`ExportRequest`] validated into an [`ExportSpec`]: every rule a request must pass before
//! any data is read, and the object keys of a run's files and marker.
//!
//! # Layout
//! - this module: [`ExportSpec`], [`InvalidRequest`], and [`ExportSpec::validate`], which
//!   checks the concerns below in turn and returns the first broken rule.
//! - `destination`: the bucket, region, endpoint, prefix, name, object settings and
//!   credentials of a destination ([`validate_destination`], [`validate_access_key`]).
//! - `format`: the file format and its options (delimited, Parquet, JSON), the line ending and
//!   the row number column, as the workers' `Encoding`; the Parquet [`Layout`].
//! - `compression`: compression or archive of each file, Zip64, and the PGP key.
//! - `templates`: the export's variables, the filename and split templates, whether they give
//!   each file a name of its own, and the sample render that proves they render.
//! - `split`: rows or megabytes per file, and what a run without rows delivers.
//! - `marker`: the success [`Marker`] and the manifest.
//! - `partitions`: the `partition_by` columns, and that the templates name each partition.
//! - `idempotency`: the key that makes an export safe to send again.
//! - `keys`: the object keys of a run's files, its marker and its manifest
//!   ([`ExportSpec::object_key`], [`ExportSpec::marker_key`], [`ExportSpec::manifest_key`]).

mod compression;
mod destination;
mod format;
mod idempotency;
mod keys;
mod marker;
mod partitions;
mod split;
mod templates;

#[cfg(test)]
mod fixtures;

pub use destination::{validate_access_key, validate_destination};
pub use format::{DEFAULT_ROW_NUMBER_COLUMN, Layout};
pub use idempotency::MAX_IDEMPOTENCY_KEY_CHARS;
pub use marker::Marker;
pub use split::{
    MAX_MEGABYTES_PER_FILE, MAX_ROWS_PER_FILE, MIN_MEGABYTES_PER_FILE, MIN_ROWS_PER_FILE,
};

use crate::template::FilenameTemplate;
use filedrop_proto::jobs::v1::Encoding;
use filedrop_proto::v1::{ErrorCode, ExportRequest, S3Destination};
use format::Format;
use split::FileLimits;
use std::collections::BTreeMap;
use templates::{FileNames, TemplateParser};

/// A request that cannot be accepted: the field at fault and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    /// The field, as a path in the request (`destination.bucket`).
    pub field: &'static str,
    /// The code the failure maps to.
    pub code: ErrorCode,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl InvalidRequest {
    fn new(field: &'static str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }

    fn missing(field: &'static str, example: &str) -> Self {
        Self::new(
            field,
            ErrorCode::Unspecified,
            format!("{field} is required, e.g. {example}"),
        )
    }
}

/// A validated export: everything the run needs, in checked form. It serializes (serde) so
/// that a run keeps the export it was accepted with and is never validated again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportSpec {
    /// The destination, with its prefix normalized to end in `/` (or empty).
    #[serde(with = "crate::serde_prost")]
    pub destination: S3Destination,
    /// The output format, as the workers receive it.
    #[serde(with = "crate::serde_prost")]
    pub encoding: Encoding,
    /// The filename template: each file's name (or the Parquet directory's), and the name the
    /// `.DONE` marker is derived from.
    pub template: FilenameTemplate,
    /// In a split, the name of each file, in place of `template`.
    pub split_filename_template: Option<FilenameTemplate>,
    /// In a split, the folder the files go in.
    pub split_directory_template: Option<FilenameTemplate>,
    /// Where the files go under the prefix.
    pub layout: Layout,
    /// The export's template variables.
    pub variables: BTreeMap<String, String>,
    /// Rows per file, when rows are split.
    pub rows_per_file: Option<u64>,
    /// The most bytes of a delivered file, when files are split by size.
    pub bytes_per_file: Option<u64>,
    /// A run without rows delivers no file (only the marker).
    pub skip_empty: bool,
    /// The columns the rows are partitioned by; empty when they are not.
    pub partition_by: Vec<String>,
    /// The success marker, when one is wanted.
    pub marker: Option<Marker>,
    /// Whether a manifest is written before the marker.
    pub manifest: bool,
    /// The key that makes the export safe to send again; `None` when it has none.
    pub idempotency_key: Option<String>,
    /// The id of the stored destination the export was sent to, when it names one (the
    /// control plane puts the id there in place of the name the client gave).
    pub stored_destination: Option<String>,
    /// Settings that are valid but probably not what the user wants, with what to do instead.
    pub warnings: Vec<String>,
}

impl ExportSpec {
    /// Checks every rule of the request; the first broken one is returned.
    pub fn validate(request: ExportRequest) -> Result<Self, InvalidRequest> {
        // A request that breaks several rules is refused for the first one checked here, so
        // this order decides which error a client sees.
        let destination = validate_destination(request.destination)?;
        let Format {
            format,
            mut encoding,
            layout,
            mut warnings,
        } = format::validate_format(
            request.format,
            request.csv,
            request.parquet,
            request.line_ending,
            request.row_number.as_ref(),
        )?;
        warnings.extend(compression::validate_packaging(
            format,
            request.compression,
            request.zip64,
            &request.pgp_public_key,
            &mut encoding,
        )?);
        let variables = templates::validate_variables(request.variables)?;
        let partition_by = partitions::validate_partition_by(request.partition_by)?;
        let parser = TemplateParser {
            variables: &variables,
            partition_by: &partition_by,
            destination_name: &destination.name,
        };
        let FileNames {
            template,
            split_filename_template,
            split_directory_template,
        } = parser.parse_file_names(&request.filename_template, request.split.as_ref())?;
        let FileLimits {
            rows_per_file,
            bytes_per_file,
        } = split::validate_file_limits(request.split.as_ref())?;
        let marker = marker::validate_marker(request.success_file, &parser)?;
        let manifest = marker::manifest_wanted(request.manifest);
        let idempotency_key = idempotency::validate_idempotency_key(&request.idempotency_key)?;
        let skip_empty = split::validate_empty_result(request.empty_result)?;
        templates::check_layout(
            layout,
            &template,
            rows_per_file.is_some() || bytes_per_file.is_some(),
            split_filename_template.as_ref(),
            split_directory_template.is_some(),
        )?;
        partitions::check_partition_names(
            layout,
            &partition_by,
            &template,
            split_filename_template.as_ref(),
            split_directory_template.as_ref(),
        )?;
        let spec = Self {
            destination,
            encoding,
            template,
            split_filename_template,
            split_directory_template,
            layout,
            variables,
            rows_per_file,
            bytes_per_file,
            skip_empty,
            partition_by,
            marker,
            manifest,
            idempotency_key,
            stored_destination: (!request.stored_destination.is_empty())
                .then(|| request.stored_destination.clone()),
            warnings,
        };
        // Render once with sample values, so a template that cannot render (a bad date
        // pattern, a key that leaves the prefix) is refused now rather than mid-run.
        templates::check_sample_render(&spec)?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::ExportSpec;
    use super::fixtures::{field_of, request};
    use filedrop_proto::v1::{ErrorCode, FileFormat, Split};

    #[test]
    fn refuses_each_invalid_field_by_name() {
        let mut r = request();
        r.destination.as_mut().unwrap().bucket = "Bad_Bucket".into();
        let error = ExportSpec::validate(r).unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("destination.bucket", ErrorCode::InvalidBucketName)
        );

        let mut r = request();
        r.destination = None;
        assert_eq!(field_of(r), "destination");
        let mut r = request();
        r.destination.as_mut().unwrap().region.clear();
        assert_eq!(field_of(r), "destination.region");
        let mut r = request();
        r.destination.as_mut().unwrap().prefix = "/abs".into();
        assert_eq!(field_of(r), "destination.prefix");
        let mut r = request();
        r.destination.as_mut().unwrap().prefix = "a/../b".into();
        assert_eq!(field_of(r), "destination.prefix");
        let mut r = request();
        r.destination.as_mut().unwrap().endpoint_url = "127.0.0.1:9000".into();
        assert_eq!(field_of(r), "destination.endpoint_url");
        let mut r = request();
        r.destination
            .as_mut()
            .unwrap()
            .access_key
            .as_mut()
            .unwrap()
            .secret_access_key = String::new();
        assert_eq!(field_of(r), "destination.access_key.secret_access_key");
        let mut r = request();
        r.format = FileFormat::Unspecified.into();
        assert_eq!(field_of(r), "format");
        let mut r = request();
        r.split = Some(Split {
            rows_per_file: 10,
            ..Default::default()
        });
        assert_eq!(field_of(r), "split.rows_per_file");
        let mut r = request();
        r.filename_template = "{{nope}}".into();
        assert_eq!(field_of(r), "filename_template");
    }
}
