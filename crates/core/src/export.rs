//! An [`ExportRequest`] validated into an [`ExportSpec`]: every rule a request must pass before
//! any data is read, and the object keys of a run's files and marker.

use crate::bucket::validate_bucket_name;
use crate::credential::{
    validate_access_key_id, validate_external_id, validate_role_arn, validate_secret_access_key,
    validate_session_token,
};
use crate::endpoint::{validate_endpoint_url, validate_region};
use crate::failure::RunFailure;
use crate::template::{BUILT_IN_VARIABLES, FilenameTemplate, PARTITION_VARIABLE, TemplateValues};
use chrono::{DateTime, Utc};
use filedrop_proto::jobs::v1::Encoding;
use filedrop_proto::v1::{
    AccessKeyCredential, Compression, CsvOptions, EmptyResult, ErrorCode, ExportRequest,
    FileFormat, LineEnding, ParquetCompression, ParquetLayout, ParquetOptions, QuoteMode,
    RowNumber, S3Destination, SuccessFileName,
};
use std::collections::{BTreeMap, HashMap};

/// Fewest rows per file a row split accepts.
pub const MIN_ROWS_PER_FILE: u64 = 50_000;
/// Most rows per file a row split accepts.
pub const MAX_ROWS_PER_FILE: u64 = 10_000_000;
/// Smallest size limit a split by size accepts, in megabytes.
pub const MIN_MEGABYTES_PER_FILE: u64 = 1;
/// Largest size limit a split by size accepts, in megabytes.
pub const MAX_MEGABYTES_PER_FILE: u64 = 2000;
/// A megabyte of `split.megabytes_per_file`: decimal, so that a file at the limit is under it
/// in binary megabytes too.
const BYTES_PER_MEGABYTE: u64 = 1_000_000;
/// S3's limit on key length, in bytes.
const MAX_KEY_BYTES: usize = 1024;
/// Longest destination name, in characters.
const MAX_DESTINATION_NAME_CHARS: usize = 256;
/// Longest export variable name, in characters.
const MAX_VARIABLE_NAME_CHARS: usize = 64;
/// Longest export variable value, in bytes.
const MAX_VARIABLE_VALUE_BYTES: usize = 1024;
/// Most columns an export may partition by.
const MAX_PARTITION_COLUMNS: usize = 8;
/// The row number column's name when none is given.
pub const DEFAULT_ROW_NUMBER_COLUMN: &str = "row_number";
/// Row number column names are shorter than this, in characters.
const ROW_NUMBER_COLUMN_LIMIT: usize = 1028;

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

/// Which marker the run writes last.
#[derive(Debug, Clone)]
pub enum Marker {
    /// `<rendered filename template>.DONE`, with `{{file_number}}` rendered empty.
    DoneSuffix,
    /// `_SUCCESS` under the prefix.
    UnderscoreSuccess,
    /// A name of the user's, rendered like the filename template (partition values and
    /// `{{file_number}}` empty).
    Custom(FilenameTemplate),
}

/// Where a run's files go under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each file is named by the templates.
    Files,
    /// Parquet's directory layout: `<rendered template>[.parquet]/part-00000.parquet`, …
    ParquetDirectory {
        /// Append `.parquet` to the directory name (unless it already ends so).
        extension: bool,
    },
}

/// A validated export: everything the run needs, in checked form.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// The destination, with its prefix normalized to end in `/` (or empty).
    pub destination: S3Destination,
    /// The output format, as the workers receive it.
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
        let destination = validate_destination(request.destination)?;
        let format = FileFormat::try_from(request.format).unwrap_or(FileFormat::Unspecified);
        let mut warnings = Vec::new();
        let mut layout = Layout::Files;
        let mut encoding = match format {
            FileFormat::Unspecified => {
                return Err(InvalidRequest::new(
                    "format",
                    ErrorCode::Unspecified,
                    "format is required: FILE_FORMAT_PARQUET, FILE_FORMAT_CSV, FILE_FORMAT_TSV, \
                     FILE_FORMAT_PSV, FILE_FORMAT_DELIMITED, FILE_FORMAT_JSON or \
                     FILE_FORMAT_NDJSON",
                ));
            }
            FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv | FileFormat::Delimited => {
                let csv = request.csv.clone().unwrap_or(CsvOptions {
                    header: true,
                    ..Default::default()
                });
                validate_delimiter(format, &csv.delimiter)?;
                warnings.extend(validate_csv_options(format, &csv)?);
                Encoding {
                    format: format.into(),
                    csv: Some(csv),
                    ..Default::default()
                }
            }
            FileFormat::Json | FileFormat::Ndjson => Encoding {
                format: format.into(),
                ..Default::default()
            },
            FileFormat::Parquet => {
                let options = request.parquet.unwrap_or_default();
                layout = match ParquetLayout::try_from(options.layout) {
                    Ok(ParquetLayout::Unspecified | ParquetLayout::Directory) => {
                        Layout::ParquetDirectory { extension: true }
                    }
                    Ok(ParquetLayout::DirectoryWithoutExtension) => {
                        Layout::ParquetDirectory { extension: false }
                    }
                    Ok(ParquetLayout::SingleFile) => Layout::Files,
                    Err(_) => {
                        return Err(InvalidRequest::new(
                            "parquet.layout",
                            ErrorCode::Unspecified,
                            format!(
                                "unknown Parquet layout {}; use PARQUET_LAYOUT_DIRECTORY, \
                                 PARQUET_LAYOUT_DIRECTORY_WITHOUT_EXTENSION or \
                                 PARQUET_LAYOUT_SINGLE_FILE",
                                options.layout
                            ),
                        ));
                    }
                };
                let compression = options.compression;
                let compression = match ParquetCompression::try_from(compression) {
                    Ok(ParquetCompression::Unspecified) => ParquetCompression::Snappy,
                    Ok(known) => known,
                    Err(_) => {
                        return Err(InvalidRequest::new(
                            "parquet.compression",
                            ErrorCode::Unspecified,
                            format!(
                                "unknown Parquet compression {compression}; use SNAPPY, ZSTD, \
                                 GZIP, LZ4 or NONE"
                            ),
                        ));
                    }
                };
                Encoding {
                    format: format.into(),
                    parquet: Some(ParquetOptions {
                        compression: compression.into(),
                        layout: options.layout,
                    }),
                    ..Default::default()
                }
            }
        };
        encoding.line_ending = match LineEnding::try_from(request.line_ending) {
            Ok(LineEnding::Unspecified) => LineEnding::Lf,
            Ok(known) => known,
            Err(_) => {
                return Err(InvalidRequest::new(
                    "line_ending",
                    ErrorCode::Unspecified,
                    format!(
                        "unknown line ending {}; use LINE_ENDING_LF or LINE_ENDING_CRLF",
                        request.line_ending
                    ),
                ));
            }
        }
        .into();
        encoding.row_number_column = validate_row_number(request.row_number.as_ref())?;
        let compression = validate_compression(format, request.compression)?;
        encoding.compression = compression.into();
        encoding.zip64 = request.zip64;
        // Checked by the control plane, which can read keys (see `filedrop_formats::pgp`).
        encoding.pgp_public_key = request.pgp_public_key.trim().to_owned();
        if request.zip64 && compression != Compression::Zip {
            warnings.push(
                "zip64: has no effect without compression COMPRESSION_ZIP; leave it unset".into(),
            );
        }
        let variables = validate_variables(request.variables)?;
        let partition_by = validate_partition_by(request.partition_by)?;
        let parse = |field: &'static str, source: &str| {
            let partition = (!partition_by.is_empty()).then_some(PARTITION_VARIABLE);
            let template = FilenameTemplate::parse(
                source,
                variables.keys().map(String::as_str).chain(partition),
            )
            .map_err(|message| InvalidRequest::new(field, ErrorCode::InvalidTemplate, message))?;
            if let Some(column) = template
                .partition_columns()
                .iter()
                .find(|column| !partition_by.contains(column))
            {
                return Err(InvalidRequest::new(
                    field,
                    ErrorCode::InvalidTemplate,
                    format!(
                        "the template uses partition.{column}, but {column:?} is not a \
                         partition column; partition_by has {}",
                        partition_by.join(", ")
                    ),
                ));
            }
            if template.uses("destination") && destination.name.is_empty() {
                return Err(InvalidRequest::new(
                    field,
                    ErrorCode::InvalidTemplate,
                    "the template uses {{destination}}, but the destination has no name: set \
                     destination.name",
                ));
            }
            Ok(template)
        };
        let template = parse("filename_template", &request.filename_template)?;
        let mut split_filename_template = None;
        let mut split_directory_template = None;
        let mut bytes_per_file = None;
        let rows_per_file = match request.split {
            None => None,
            Some(split) => {
                if !split.filename_template.trim().is_empty() {
                    split_filename_template =
                        Some(parse("split.filename_template", &split.filename_template)?);
                }
                if !split.directory_template.trim().is_empty() {
                    split_directory_template = Some(parse(
                        "split.directory_template",
                        &split.directory_template,
                    )?);
                }
                let (rows, megabytes) = (split.rows_per_file, split.megabytes_per_file);
                let invalid = |field: &'static str, message: String| {
                    Err(InvalidRequest::new(field, ErrorCode::Unspecified, message))
                };
                match (rows, megabytes) {
                    (0, 0) => {
                        return invalid(
                            "split",
                            "a split needs rows_per_file or megabytes_per_file; leave split \
                             unset for one file"
                                .into(),
                        );
                    }
                    (0, megabytes) => {
                        if !(MIN_MEGABYTES_PER_FILE..=MAX_MEGABYTES_PER_FILE).contains(&megabytes) {
                            return invalid(
                                "split.megabytes_per_file",
                                format!(
                                    "megabytes per file must be between \
                                     {MIN_MEGABYTES_PER_FILE} and {MAX_MEGABYTES_PER_FILE}; got \
                                     {megabytes}"
                                ),
                            );
                        }
                        bytes_per_file = Some(megabytes * BYTES_PER_MEGABYTE);
                    }
                    (_, 0) => {}
                    _ => {
                        return invalid(
                            "split.megabytes_per_file",
                            "set either rows_per_file or megabytes_per_file, not both".into(),
                        );
                    }
                }
                if bytes_per_file.is_some() {
                    None
                } else if !(MIN_ROWS_PER_FILE..=MAX_ROWS_PER_FILE).contains(&rows) {
                    return Err(InvalidRequest::new(
                        "split.rows_per_file",
                        ErrorCode::Unspecified,
                        format!(
                            "rows per file must be between {MIN_ROWS_PER_FILE} and \
                             {MAX_ROWS_PER_FILE}; got {rows}"
                        ),
                    ));
                } else {
                    Some(rows)
                }
            }
        };
        let marker = match request.success_file {
            Some(success) if success.enabled => match SuccessFileName::try_from(success.name) {
                Ok(SuccessFileName::UnderscoreSuccess) => Some(Marker::UnderscoreSuccess),
                Ok(SuccessFileName::Unspecified | SuccessFileName::DoneSuffix) => {
                    Some(Marker::DoneSuffix)
                }
                Ok(SuccessFileName::Custom) if success.custom_name.is_empty() => {
                    return Err(InvalidRequest::missing(
                        "success_file.custom_name",
                        "'READY' or '{{now|format:'yyyyMMdd'}}/_DONE'",
                    ));
                }
                Ok(SuccessFileName::Custom) => Some(Marker::Custom(parse(
                    "success_file.custom_name",
                    &success.custom_name,
                )?)),
                Err(_) => {
                    return Err(InvalidRequest::new(
                        "success_file.name",
                        ErrorCode::Unspecified,
                        format!(
                            "unknown marker name {}: use SUCCESS_FILE_NAME_DONE_SUFFIX, \
                                 SUCCESS_FILE_NAME_UNDERSCORE_SUCCESS or SUCCESS_FILE_NAME_CUSTOM",
                            success.name
                        ),
                    ));
                }
            },
            _ => None,
        };
        let manifest = !request.manifest.is_some_and(|manifest| manifest.disabled);
        let idempotency_key = validate_idempotency_key(&request.idempotency_key)?;
        let skip_empty = match EmptyResult::try_from(request.empty_result) {
            Ok(EmptyResult::Unspecified | EmptyResult::WriteFile) => false,
            Ok(EmptyResult::SkipFiles) => true,
            Err(_) => {
                return Err(InvalidRequest::new(
                    "empty_result",
                    ErrorCode::Unspecified,
                    format!(
                        "unknown empty result {}; use EMPTY_RESULT_WRITE_FILE or \
                         EMPTY_RESULT_SKIP_FILES",
                        request.empty_result
                    ),
                ));
            }
        };
        check_layout(
            layout,
            &template,
            rows_per_file.is_some() || bytes_per_file.is_some(),
            split_filename_template.as_ref(),
            split_directory_template.is_some(),
        )?;
        check_partition_names(
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
        let sample_time = Utc::now();
        let sample_run = "00000000-0000-0000-0000-000000000000";
        let field = if spec.split_filename_template.is_some() {
            "split.filename_template"
        } else {
            "filename_template"
        };
        let sample_partition = spec
            .partition_by
            .iter()
            .map(|column| (column.clone(), "value".to_owned()))
            .collect();
        spec.object_key(sample_run, sample_time, 1, &sample_partition)
            .map_err(|failure| InvalidRequest::new(field, failure.code, failure.message))?;
        let marker_field = match spec.marker {
            Some(Marker::Custom(_)) => "success_file.custom_name",
            _ => "filename_template",
        };
        spec.marker_key(sample_run, sample_time)
            .map_err(|failure| InvalidRequest::new(marker_field, failure.code, failure.message))?;
        Ok(spec)
    }

    /// The key of file `file_number` of a run, or of a partition's file set (`partition`: the
    /// partition's key text by column; empty when the export is not partitioned).
    pub fn object_key(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        file_number: u64,
        partition: &BTreeMap<String, String>,
    ) -> Result<String, RunFailure> {
        let render =
            |template, file_number| self.render(template, run_id, now, file_number, partition);
        let mut name = match self.layout {
            Layout::ParquetDirectory { extension } => {
                let mut directory = render(&self.template, None)?;
                if extension && !directory.ends_with(".parquet") {
                    directory.push_str(".parquet");
                }
                format!("{directory}/part-{:05}.parquet", file_number - 1)
            }
            Layout::Files => {
                let template = self
                    .split_filename_template
                    .as_ref()
                    .unwrap_or(&self.template);
                let file = render(template, Some(file_number))?;
                match &self.split_directory_template {
                    None => file,
                    Some(directory) => {
                        let directory = render(directory, Some(file_number))?;
                        format!("{directory}/{file}")
                    }
                }
            }
        };
        if !self.encoding.pgp_public_key.is_empty() {
            name.push_str(".pgp");
        }
        join_key(&self.destination.prefix, &name)
    }

    /// The key of the success marker, if one is wanted. In a partitioned export the `.DONE`
    /// marker's name renders every partition value empty and drops the empty folders that
    /// leaves (`{{partition.country}}/orders.csv` → `orders.csv.DONE`): one marker for the run.
    pub fn marker_key(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, RunFailure> {
        let no_partition: BTreeMap<String, String> = self
            .partition_by
            .iter()
            .map(|column| (column.clone(), String::new()))
            .collect();
        let render_name = |template: &FilenameTemplate| {
            let name = self.render(template, run_id, now, None, &no_partition)?;
            Ok::<_, RunFailure>(
                name.split('/')
                    .filter(|folder| !folder.is_empty())
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        };
        match &self.marker {
            None => Ok(None),
            Some(Marker::UnderscoreSuccess) => {
                join_key(&self.destination.prefix, "_SUCCESS").map(Some)
            }
            Some(Marker::DoneSuffix) => {
                let name = render_name(&self.template)?;
                join_key(&self.destination.prefix, &format!("{name}.DONE")).map(Some)
            }
            Some(Marker::Custom(template)) => {
                join_key(&self.destination.prefix, &render_name(template)?).map(Some)
            }
        }
    }

    /// The key of the run's manifest, if one is wanted: `manifest-<destination>-<run id>.json`
    /// under the prefix, the destination being the stored destination's id (as Adobe names
    /// it), or else its name, or else its bucket.
    pub fn manifest_key(&self, run_id: &str) -> Result<Option<String>, RunFailure> {
        if !self.manifest {
            return Ok(None);
        }
        let destination = match &self.stored_destination {
            Some(id) => id,
            None if self.destination.name.is_empty() => &self.destination.bucket,
            None => &self.destination.name,
        };
        let destination: String = destination
            .chars()
            .map(|c| if c == '/' { '-' } else { c })
            .collect();
        join_key(
            &self.destination.prefix,
            &format!("manifest-{destination}-{run_id}.json"),
        )
        .map(Some)
    }

    fn render(
        &self,
        template: &FilenameTemplate,
        run_id: &str,
        now: DateTime<Utc>,
        file_number: Option<u64>,
        partition: &BTreeMap<String, String>,
    ) -> Result<String, RunFailure> {
        template
            .render(&TemplateValues {
                run_id,
                file_number,
                now,
                destination: &self.destination.name,
                variables: &self.variables,
                partition,
            })
            .map_err(|message| RunFailure::new(ErrorCode::InvalidTemplate, message))
    }
}

/// Checks that the templates give every file of the run its own name in `layout`.
fn check_layout(
    layout: Layout,
    template: &FilenameTemplate,
    split: bool,
    split_filename_template: Option<&FilenameTemplate>,
    split_directory_template: bool,
) -> Result<(), InvalidRequest> {
    let invalid = |field: &'static str, message: &str| {
        Err(InvalidRequest::new(
            field,
            ErrorCode::InvalidTemplate,
            message.to_owned(),
        ))
    };
    match layout {
        Layout::ParquetDirectory { .. } => {
            if template.uses("file_number") {
                return invalid(
                    "filename_template",
                    "in the Parquet directory layout the template names the directory, and \
                     its files are numbered part-00000.parquet, part-00001.parquet, …: remove \
                     {{file_number}}, or set parquet.layout to PARQUET_LAYOUT_SINGLE_FILE",
                );
            }
            if split_filename_template.is_some() {
                return invalid(
                    "split.filename_template",
                    "the Parquet directory layout names its files part-00000.parquet, …: \
                     leave the split templates empty, or set parquet.layout to \
                     PARQUET_LAYOUT_SINGLE_FILE",
                );
            }
            if split_directory_template {
                return invalid(
                    "split.directory_template",
                    "in the Parquet directory layout the filename template names the \
                     directory: leave the split templates empty, or set parquet.layout to \
                     PARQUET_LAYOUT_SINGLE_FILE",
                );
            }
        }
        Layout::Files if split => match split_filename_template {
            Some(file) if !file.uses("file_number") => {
                return invalid(
                    "split.filename_template",
                    "a split delivers several files and this template would give them one \
                     name: add {{file_number}}, e.g. '{{file_number}}.csv'",
                );
            }
            None if !template.uses("file_number") => {
                return invalid(
                    "filename_template",
                    "a split delivers several files and this template would give them one \
                     name: add {{file_number}}, e.g. 'orders-{{file_number}}.csv', or set \
                     split.filename_template",
                );
            }
            _ => {}
        },
        Layout::Files => {}
    }
    Ok(())
}

/// Checks that in a partitioned export the templates naming the files use every partition
/// column, so that each partition's files get keys of their own.
fn check_partition_names(
    layout: Layout,
    partition_by: &[String],
    template: &FilenameTemplate,
    split_filename_template: Option<&FilenameTemplate>,
    split_directory_template: Option<&FilenameTemplate>,
) -> Result<(), InvalidRequest> {
    let (field, naming): (&'static str, Vec<&FilenameTemplate>) = match layout {
        Layout::ParquetDirectory { .. } => ("filename_template", vec![template]),
        Layout::Files => match split_filename_template {
            Some(file) => (
                "split.filename_template",
                [Some(file), split_directory_template]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
            None => (
                "filename_template",
                [Some(template), split_directory_template]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
        },
    };
    let unused: Vec<&str> = partition_by
        .iter()
        .filter(|column| {
            !naming
                .iter()
                .any(|template| template.partition_columns().contains(*column))
        })
        .map(String::as_str)
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = unused
        .iter()
        .map(|column| format!("{{{{partition.{column}}}}}"))
        .collect();
    Err(InvalidRequest::new(
        field,
        ErrorCode::InvalidTemplate,
        format!(
            "a partitioned export delivers files for each value of {}, and this template would \
             give them one name: add {}, e.g. '{}/orders-{{{{file_number}}}}.csv'",
            unused.join(", "),
            placeholders.join(" and "),
            placeholders.join("/"),
        ),
    ))
}

/// Checks the columns to partition by: named, each once, at most [`MAX_PARTITION_COLUMNS`].
/// Whether the data has them is checked when its schema arrives.
fn validate_partition_by(columns: Vec<String>) -> Result<Vec<String>, InvalidRequest> {
    let invalid = |message: String| {
        Err(InvalidRequest::new(
            "partition_by",
            ErrorCode::Unspecified,
            message,
        ))
    };
    if columns.len() > MAX_PARTITION_COLUMNS {
        return invalid(format!(
            "{} columns given; partition by at most {MAX_PARTITION_COLUMNS}",
            columns.len()
        ));
    }
    for (position, column) in columns.iter().enumerate() {
        if column.trim().is_empty() {
            return invalid("a column name is empty; name the columns to partition by".into());
        }
        if columns[..position].contains(column) {
            return invalid(format!("column {column:?} is named twice; name it once"));
        }
    }
    Ok(columns)
}

/// Checks the export's template variables: names a template can use, none of the built-in
/// ones, and values of bounded size.
fn validate_variables(
    variables: HashMap<String, String>,
) -> Result<BTreeMap<String, String>, InvalidRequest> {
    let invalid = |message: String| {
        Err(InvalidRequest::new(
            "variables",
            ErrorCode::InvalidTemplate,
            message,
        ))
    };
    for (name, value) in &variables {
        let mut chars = name.chars();
        let identifier = chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier || name.chars().count() > MAX_VARIABLE_NAME_CHARS {
            return invalid(format!(
                "variable name {name:?} is not usable in templates: a letter or '_', then \
                 letters, digits and '_', at most {MAX_VARIABLE_NAME_CHARS} characters, e.g. \
                 'campaign_name'"
            ));
        }
        if BUILT_IN_VARIABLES.contains(&name.as_str()) || name == PARTITION_VARIABLE {
            return invalid(format!(
                "variable {name:?} is built in ({}, {PARTITION_VARIABLE}); choose another name",
                BUILT_IN_VARIABLES.join(", ")
            ));
        }
        if let Some(bad) = value.chars().find(|c| c.is_control()) {
            return invalid(format!(
                "the value of variable {name:?} contains {}; values become part of object \
                 keys, which hold no control characters",
                crate::credential::describe(bad)
            ));
        }
        if value.len() > MAX_VARIABLE_VALUE_BYTES {
            return invalid(format!(
                "the value of variable {name:?} is {} bytes; at most \
                 {MAX_VARIABLE_VALUE_BYTES} are allowed",
                value.len()
            ));
        }
    }
    Ok(variables.into_iter().collect())
}

/// Checks a destination (every `destination.*` rule of an export), with its prefix normalized.
pub fn validate_destination(
    destination: Option<S3Destination>,
) -> Result<S3Destination, InvalidRequest> {
    let mut destination =
        destination.ok_or_else(|| InvalidRequest::missing("destination", "an S3 bucket"))?;
    if destination.bucket.is_empty() {
        return Err(InvalidRequest::missing(
            "destination.bucket",
            "'my-exports'",
        ));
    }
    validate_bucket_name(&destination.bucket).map_err(|rule| {
        InvalidRequest::new(
            "destination.bucket",
            ErrorCode::InvalidBucketName,
            format!(
                "invalid bucket name {:?}: {rule}; give the name of an existing bucket",
                destination.bucket
            ),
        )
    })?;
    if destination.region.is_empty() {
        return Err(InvalidRequest::missing("destination.region", "'us-east-1'"));
    }
    validate_region(&destination.region).map_err(|problem| {
        InvalidRequest::new("destination.region", ErrorCode::Unspecified, problem)
    })?;
    if !destination.endpoint_url.is_empty() {
        validate_endpoint_url(&destination.endpoint_url).map_err(|problem| {
            InvalidRequest::new("destination.endpoint_url", ErrorCode::Unspecified, problem)
        })?;
    }
    destination.prefix = normalize_prefix(&destination.prefix)?;
    if destination.name.chars().count() > MAX_DESTINATION_NAME_CHARS {
        return Err(InvalidRequest::new(
            "destination.name",
            ErrorCode::Unspecified,
            format!("the destination name is longer than {MAX_DESTINATION_NAME_CHARS} characters"),
        ));
    }
    if let Some(bad) = destination.name.chars().find(|c| c.is_control()) {
        return Err(InvalidRequest::new(
            "destination.name",
            ErrorCode::Unspecified,
            format!(
                "the destination name contains {}; names are text on one line",
                crate::credential::describe(bad)
            ),
        ));
    }
    crate::object_settings::validate_object_settings(&destination)
        .map_err(|(field, message)| InvalidRequest::new(field, ErrorCode::Unspecified, message))?;
    match (
        &destination.access_key,
        destination.credential_id.is_empty(),
    ) {
        (None, true) => {
            return Err(InvalidRequest::missing(
                "destination.access_key",
                "an access key id and secret, or destination.credential_id naming a stored \
                 credential",
            ));
        }
        (Some(_), false) => {
            return Err(InvalidRequest::new(
                "destination.credential_id",
                ErrorCode::Unspecified,
                "give either destination.access_key or destination.credential_id, not both",
            ));
        }
        (None, false) => {}
        (Some(key), true) => validate_access_key(key)?,
    }
    Ok(destination)
}

/// The longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// Checks `idempotency_key`: empty (none), or up to 128 printable ASCII characters.
fn validate_idempotency_key(key: &str) -> Result<Option<String>, InvalidRequest> {
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidRequest::new(
            "idempotency_key",
            ErrorCode::Unspecified,
            format!(
                "give up to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without \
                 spaces (a UUID, say), or leave it empty"
            ),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Checks an iam-credential: the key pair, and the role it assumes, if any. Fields are named
/// as in an export (`destination.access_key.…`).
pub fn validate_access_key(key: &AccessKeyCredential) -> Result<(), InvalidRequest> {
    if key.access_key_id.is_empty() {
        return Err(InvalidRequest::missing(
            "destination.access_key.access_key_id",
            "'AKIA…'",
        ));
    }
    let refused = |field: &'static str| {
        move |problem: String| InvalidRequest::new(field, ErrorCode::InvalidCredentials, problem)
    };
    validate_access_key_id(&key.access_key_id)
        .map_err(refused("destination.access_key.access_key_id"))?;
    if key.secret_access_key.is_empty() {
        return Err(InvalidRequest::missing(
            "destination.access_key.secret_access_key",
            "the secret of the access key",
        ));
    }
    validate_secret_access_key(&key.secret_access_key)
        .map_err(refused("destination.access_key.secret_access_key"))?;
    if !key.session_token.is_empty() {
        validate_session_token(&key.session_token)
            .map_err(refused("destination.access_key.session_token"))?;
    }
    if !key.role_arn.is_empty() {
        validate_role_arn(&key.role_arn).map_err(|problem| {
            InvalidRequest::new(
                "destination.access_key.role_arn",
                ErrorCode::Unspecified,
                problem,
            )
        })?;
    }
    if !key.external_id.is_empty() {
        if key.role_arn.is_empty() {
            return Err(InvalidRequest::new(
                "destination.access_key.external_id",
                ErrorCode::Unspecified,
                "an External ID goes with a role to assume: set access_key.role_arn, or leave \
                 external_id empty",
            ));
        }
        validate_external_id(&key.external_id).map_err(|problem| {
            InvalidRequest::new(
                "destination.access_key.external_id",
                ErrorCode::Unspecified,
                problem,
            )
        })?;
    }
    Ok(())
}

/// Checks `csv.delimiter`: one ASCII character, not `"`, CR or LF, for a custom-delimited
/// format; empty for the formats whose delimiter is fixed.
fn validate_delimiter(format: FileFormat, delimiter: &str) -> Result<(), InvalidRequest> {
    let invalid =
        |message: String| InvalidRequest::new("csv.delimiter", ErrorCode::Unspecified, message);
    if format != FileFormat::Delimited {
        if delimiter.is_empty() {
            return Ok(());
        }
        return Err(invalid(format!(
            "{} has a fixed delimiter; leave csv.delimiter empty, or use FILE_FORMAT_DELIMITED",
            format.as_str_name()
        )));
    }
    let mut chars = delimiter.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() && !matches!(c, '"' | '\r' | '\n') => Ok(()),
        _ => Err(invalid(format!(
            "the delimiter must be one ASCII character other than '\"', CR and LF, e.g. ';'; \
             got {delimiter:?}"
        ))),
    }
}

/// Checks the quoting options of delimited output; returns the warnings they deserve.
fn validate_csv_options(
    format: FileFormat,
    csv: &CsvOptions,
) -> Result<Vec<String>, InvalidRequest> {
    let delimiter = match format {
        FileFormat::Tsv => '\t',
        FileFormat::Psv => '|',
        FileFormat::Delimited => csv.delimiter.chars().next().unwrap_or(','),
        _ => ',',
    };
    let quote_mode = QuoteMode::try_from(csv.quote_mode).map_err(|_| {
        InvalidRequest::new(
            "csv.quote_mode",
            ErrorCode::Unspecified,
            format!(
                "unknown quote mode {}; use QUOTE_MODE_ALL, QUOTE_MODE_NON_NULL, \
                 QUOTE_MODE_SPECIAL_CHARACTERS, QUOTE_MODE_NON_NUMERIC or QUOTE_MODE_NONE",
                csv.quote_mode
            ),
        )
    })?;
    let mut chars = csv.escape.chars();
    match (chars.next(), chars.next()) {
        (None, _) => {}
        (Some(c), None) if c.is_ascii() && !matches!(c, '\r' | '\n') && c != delimiter => {}
        _ => {
            return Err(InvalidRequest::new(
                "csv.escape",
                ErrorCode::Unspecified,
                format!(
                    "the escape character must be one ASCII character other than the \
                     delimiter, CR and LF, e.g. '\\'; or empty to double quotes; got {:?}",
                    csv.escape
                ),
            ));
        }
    }
    for (field, value) in [
        ("csv.null_value", &csv.null_value),
        ("csv.empty_value", &csv.empty_value),
    ] {
        if let Some(value) = value
            && value.contains([delimiter, '\r', '\n'])
        {
            return Err(InvalidRequest::new(
                field,
                ErrorCode::Unspecified,
                format!(
                    "{value:?} holds the delimiter or a line break, which would shift the \
                     columns of every row holding it; use a literal such as NULL or \"\""
                ),
            ));
        }
    }
    let mut warnings = Vec::new();
    if quote_mode == QuoteMode::None && csv.escape.is_empty() {
        warnings.push(
            "csv.quote_mode is QUOTE_MODE_NONE without csv.escape: values holding the \
             delimiter, quotes or line breaks go out as they are and break their rows; set \
             csv.escape (e.g. '\\') if the data may hold them"
                .to_owned(),
        );
    }
    Ok(warnings)
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

/// Checks the row number option; returns the column name, empty when there is no column.
fn validate_row_number(row_number: Option<&RowNumber>) -> Result<String, InvalidRequest> {
    let Some(row_number) = row_number.filter(|r| r.enabled) else {
        return Ok(String::new());
    };
    let name = match row_number.column_name.as_str() {
        "" => DEFAULT_ROW_NUMBER_COLUMN,
        name => name,
    };
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_chars || name.chars().count() >= ROW_NUMBER_COLUMN_LIMIT {
        return Err(InvalidRequest::new(
            "row_number.column_name",
            ErrorCode::Unspecified,
            format!(
                "the row number column name may hold only letters, digits, '_' and '-', and \
                 must be shorter than {ROW_NUMBER_COLUMN_LIMIT} characters, e.g. \
                 'row_number'; got {name:?}"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Checks a prefix and gives it a trailing `/` (an empty prefix is the bucket root).
fn normalize_prefix(prefix: &str) -> Result<String, InvalidRequest> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let invalid = |message: &str| {
        InvalidRequest::new(
            "destination.prefix",
            ErrorCode::Unspecified,
            format!("prefix {prefix:?} {message}"),
        )
    };
    if prefix.starts_with('/') {
        return Err(invalid(
            "must not start with '/'; write 'exports/' not '/exports/'",
        ));
    }
    if let Some(bad) = prefix.chars().find(|c| c.is_control()) {
        return Err(invalid(&format!(
            "contains {}; S3 keys filedrop writes hold no control characters",
            crate::credential::describe(bad)
        )));
    }
    let trimmed = prefix.trim_end_matches('/');
    if trimmed
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(invalid("must not contain '.' or '..' segments"));
    }
    if trimmed.split('/').any(str::is_empty) {
        return Err(invalid("must not contain empty segments ('//')"));
    }
    Ok(format!("{trimmed}/"))
}

/// Joins a normalized prefix and a rendered name into a key that stays under the prefix.
fn join_key(prefix: &str, name: &str) -> Result<String, RunFailure> {
    let invalid = |what: &str| {
        RunFailure::new(
            ErrorCode::InvalidTemplate,
            format!("the file name renders as {name:?}, which {what}"),
        )
    };
    if name.is_empty() {
        return Err(invalid("is empty"));
    }
    if name.starts_with('/') {
        return Err(invalid("starts with '/'"));
    }
    if name
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(invalid(
            "has '.' or '..' segments and would leave the prefix",
        ));
    }
    if name.split('/').any(str::is_empty) {
        return Err(invalid("has an empty folder name ('//' or a trailing '/')"));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control()) {
        return Err(invalid(&format!(
            "contains {}; give variables and partition values without control characters",
            crate::credential::describe(bad)
        )));
    }
    let key = format!("{prefix}{name}");
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid("makes a key longer than S3's 1024 bytes"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use filedrop_proto::v1::{Split, SuccessFile};

    fn request() -> ExportRequest {
        ExportRequest {
            destination: Some(S3Destination {
                endpoint_url: "http://127.0.0.1:9000".into(),
                region: "us-east-1".into(),
                force_path_style: true,
                bucket: "exports".into(),
                prefix: "daily".into(),
                access_key: Some(AccessKeyCredential {
                    access_key_id: "AKIDEXAMPLE".into(),
                    secret_access_key: "secret".into(),
                    session_token: String::new(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            format: FileFormat::Csv.into(),
            csv: Some(CsvOptions {
                header: true,
                ..Default::default()
            }),
            parquet: None,
            filename_template: "orders-{{now|format:'yyyyMMdd'}}-{{file_number}}.csv".into(),
            split: Some(Split {
                rows_per_file: 250_000,
                ..Default::default()
            }),
            success_file: Some(SuccessFile {
                enabled: true,
                name: SuccessFileName::Unspecified.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field_of(request: ExportRequest) -> &'static str {
        ExportSpec::validate(request).unwrap_err().field
    }

    #[test]
    fn an_idempotency_key_is_short_printable_ascii() {
        let mut keyed = request();
        keyed.idempotency_key = "order-2026-01-02/7".into();
        let spec = ExportSpec::validate(keyed.clone()).unwrap();
        assert_eq!(spec.idempotency_key.as_deref(), Some("order-2026-01-02/7"));
        assert_eq!(
            ExportSpec::validate(request()).unwrap().idempotency_key,
            None
        );
        for bad in ["with space", "é", &"k".repeat(129)] {
            keyed.idempotency_key = bad.to_owned();
            assert_eq!(field_of(keyed.clone()), "idempotency_key", "{bad:?}");
        }
    }

    #[test]
    fn names_files_and_marker_under_the_prefix() {
        let spec = ExportSpec::validate(request()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            spec.object_key("r", now, 3, &BTreeMap::new()).unwrap(),
            "daily/orders-20260102-0000003.csv"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders-20260102-.csv.DONE")
        );
    }

    #[test]
    fn encrypted_files_get_pgp_appended_and_the_marker_does_not() {
        let mut encrypted = request();
        encrypted.pgp_public_key = "  -----BEGIN PGP PUBLIC KEY BLOCK----- …\n".into();
        let spec = ExportSpec::validate(encrypted).unwrap();
        assert!(
            spec.encoding.pgp_public_key.starts_with("-----BEGIN"),
            "trimmed"
        );
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            spec.object_key("r", now, 3, &BTreeMap::new()).unwrap(),
            "daily/orders-20260102-0000003.csv.pgp"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders-20260102-.csv.DONE")
        );
    }

    #[test]
    fn a_custom_marker_and_the_manifest_are_named_under_the_prefix() {
        let mut custom = request();
        let success = custom.success_file.as_mut().unwrap();
        success.name = SuccessFileName::Custom.into();
        success.custom_name = "{{now|format:'yyyyMMdd'}}/READY".into();
        let spec = ExportSpec::validate(custom.clone()).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/20260102/READY")
        );
        assert_eq!(
            spec.manifest_key("r").unwrap().as_deref(),
            Some("daily/manifest-exports-r.json"),
            "on by default, named after the bucket without a destination name"
        );
        custom.destination.as_mut().unwrap().name = "acme/daily".into();
        custom.manifest = Some(filedrop_proto::v1::ManifestOptions { disabled: false });
        assert_eq!(
            ExportSpec::validate(custom.clone())
                .unwrap()
                .manifest_key("r")
                .unwrap()
                .as_deref(),
            Some("daily/manifest-acme-daily-r.json")
        );
        custom.manifest = Some(filedrop_proto::v1::ManifestOptions { disabled: true });
        assert_eq!(
            ExportSpec::validate(custom.clone())
                .unwrap()
                .manifest_key("r")
                .unwrap(),
            None
        );

        let mut r = custom.clone();
        r.success_file.as_mut().unwrap().custom_name = String::new();
        assert_eq!(field_of(r), "success_file.custom_name");
        let mut r = custom.clone();
        r.success_file.as_mut().unwrap().custom_name = "../escape".into();
        assert_eq!(field_of(r), "success_file.custom_name");
        let mut r = custom;
        r.success_file.as_mut().unwrap().custom_name = "{{unknown}}".into();
        assert_eq!(field_of(r), "success_file.custom_name");
    }

    #[test]
    fn underscore_success_and_no_marker() {
        let mut with_success = request();
        with_success.success_file.as_mut().unwrap().name =
            SuccessFileName::UnderscoreSuccess.into();
        let spec = ExportSpec::validate(with_success).unwrap();
        assert_eq!(
            spec.marker_key("r", Utc::now()).unwrap().as_deref(),
            Some("daily/_SUCCESS")
        );
        let mut without = request();
        without.success_file = None;
        assert!(ExportSpec::validate(without).unwrap().marker.is_none());
    }

    #[test]
    fn a_destination_has_an_access_key_or_a_stored_credential_and_roles_are_checked() {
        fn key(r: &mut ExportRequest) -> &mut AccessKeyCredential {
            r.destination.as_mut().unwrap().access_key.as_mut().unwrap()
        }
        let mut r = request();
        key(&mut r).role_arn = "arn:aws:iam::123456789012:role/exports".into();
        key(&mut r).external_id = "given-by-the-owner".into();
        assert!(ExportSpec::validate(r).is_ok());
        let mut r = request();
        key(&mut r).role_arn = "arn:aws:iam::123456789012:user/me".into();
        assert_eq!(field_of(r), "destination.access_key.role_arn");
        let mut r = request();
        key(&mut r).external_id = "lonely".into();
        assert_eq!(field_of(r), "destination.access_key.external_id");
        let mut r = request();
        key(&mut r).role_arn = "arn:aws:iam::123456789012:role/exports".into();
        key(&mut r).external_id = "bad id".into();
        assert_eq!(field_of(r), "destination.access_key.external_id");

        let mut stored = request();
        let destination = stored.destination.as_mut().unwrap();
        destination.access_key = None;
        destination.credential_id = "cred-1".into();
        assert!(ExportSpec::validate(stored.clone()).is_ok());
        stored.destination.as_mut().unwrap().access_key = request().destination.unwrap().access_key;
        assert_eq!(field_of(stored), "destination.credential_id");
        let mut neither = request();
        neither.destination.as_mut().unwrap().access_key = None;
        assert_eq!(field_of(neither), "destination.access_key");
    }

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

    #[test]
    fn delimiters_are_one_ascii_character_and_only_for_custom_delimited_output() {
        let with = |format: FileFormat, delimiter: &str| {
            let mut r = request();
            r.format = format.into();
            r.csv = Some(CsvOptions {
                header: true,
                delimiter: delimiter.into(),
                ..Default::default()
            });
            ExportSpec::validate(r).map(|_| ()).map_err(|e| e.field)
        };
        assert_eq!(with(FileFormat::Delimited, ";"), Ok(()));
        assert_eq!(with(FileFormat::Tsv, ""), Ok(()));
        assert_eq!(with(FileFormat::Psv, ""), Ok(()));
        for bad in ["", ";;", "\"", "\n", "é"] {
            assert_eq!(
                with(FileFormat::Delimited, bad),
                Err("csv.delimiter"),
                "{bad:?}"
            );
        }
        assert_eq!(with(FileFormat::Csv, ";"), Err("csv.delimiter"));
    }

    #[test]
    fn parquet_compression_defaults_to_snappy_and_refuses_unknown_codecs() {
        let mut r = request();
        r.format = FileFormat::Parquet.into();
        r.filename_template = "orders".into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.encoding.parquet.unwrap().compression(),
            ParquetCompression::Snappy
        );
        r.parquet = Some(ParquetOptions {
            compression: ParquetCompression::Zstd.into(),
            ..Default::default()
        });
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.encoding.parquet.unwrap().compression(),
            ParquetCompression::Zstd
        );
        r.parquet = Some(ParquetOptions {
            compression: 99,
            ..Default::default()
        });
        assert_eq!(field_of(r.clone()), "parquet.compression");
        r.parquet = Some(ParquetOptions {
            layout: 99,
            ..Default::default()
        });
        assert_eq!(field_of(r), "parquet.layout");
    }

    fn parquet_request(template: &str, layout: ParquetLayout) -> ExportRequest {
        let mut r = request();
        r.format = FileFormat::Parquet.into();
        r.csv = None;
        r.filename_template = template.into();
        r.parquet = Some(ParquetOptions {
            layout: layout.into(),
            ..Default::default()
        });
        r
    }

    #[test]
    fn parquet_goes_to_a_directory_of_numbered_parts_by_default() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let keys = |request: ExportRequest| {
            let spec = ExportSpec::validate(request).unwrap();
            (
                spec.object_key("r", now, 1, &BTreeMap::new()).unwrap(),
                spec.object_key("r", now, 12, &BTreeMap::new()).unwrap(),
                spec.marker_key("r", now).unwrap().unwrap(),
            )
        };
        let template = "orders-{{now|format:'yyyyMMdd'}}";
        for layout in [ParquetLayout::Unspecified, ParquetLayout::Directory] {
            assert_eq!(
                keys(parquet_request(template, layout)),
                (
                    "daily/orders-20260102.parquet/part-00000.parquet".to_owned(),
                    "daily/orders-20260102.parquet/part-00011.parquet".to_owned(),
                    "daily/orders-20260102.DONE".to_owned()
                )
            );
        }
        // A template that already ends in `.parquet` does not get a second one.
        assert_eq!(
            keys(parquet_request("orders.parquet", ParquetLayout::Directory)).0,
            "daily/orders.parquet/part-00000.parquet"
        );
        assert_eq!(
            keys(parquet_request(
                template,
                ParquetLayout::DirectoryWithoutExtension
            )),
            (
                "daily/orders-20260102/part-00000.parquet".to_owned(),
                "daily/orders-20260102/part-00011.parquet".to_owned(),
                "daily/orders-20260102.DONE".to_owned()
            )
        );
        let mut encrypted = parquet_request(template, ParquetLayout::Directory);
        encrypted.pgp_public_key = "key".into();
        assert_eq!(
            keys(encrypted).0,
            "daily/orders-20260102.parquet/part-00000.parquet.pgp"
        );
        assert_eq!(
            keys(parquet_request(
                "orders-{{file_number}}.parquet",
                ParquetLayout::SingleFile
            )),
            (
                "daily/orders-0000001.parquet".to_owned(),
                "daily/orders-0000012.parquet".to_owned(),
                "daily/orders-.parquet.DONE".to_owned()
            )
        );
    }

    #[test]
    fn the_parquet_directory_layout_refuses_file_numbers_and_split_templates() {
        let error = ExportSpec::validate(parquet_request(
            "orders-{{file_number}}",
            ParquetLayout::Unspecified,
        ))
        .unwrap_err();
        assert_eq!(error.field, "filename_template");
        assert!(
            error.message.contains("PARQUET_LAYOUT_SINGLE_FILE"),
            "{error}"
        );
        for (field, set) in [
            ("split.filename_template", 0),
            ("split.directory_template", 1),
        ] {
            let mut r = parquet_request("orders", ParquetLayout::DirectoryWithoutExtension);
            let split = r.split.as_mut().unwrap();
            if set == 0 {
                split.filename_template = "{{file_number}}.parquet".into();
            } else {
                split.directory_template = "day".into();
            }
            let error = ExportSpec::validate(r).unwrap_err();
            assert_eq!(
                (error.field, error.code),
                (field, ErrorCode::InvalidTemplate)
            );
        }
    }

    #[test]
    fn split_files_are_named_by_the_split_templates() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut r = request();
        r.filename_template = "orders-{{now|format:'yyyyMMdd'}}".into();
        let split = r.split.as_mut().unwrap();
        split.filename_template = "{{campaign}}-{{file_number}}.csv".into();
        split.directory_template = "{{destination}}/{{now|format:'yyyy/MM/dd'}}".into();
        r.variables = HashMap::from([("campaign".to_owned(), "spring".to_owned())]);
        r.destination.as_mut().unwrap().name = "acme".into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.object_key("r", now, 2, &BTreeMap::new()).unwrap(),
            "daily/acme/2026/01/02/spring-0000002.csv"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders-20260102.DONE")
        );
        // Only the directory: the filename template names each file.
        let mut only_directory = r.clone();
        let split = only_directory.split.as_mut().unwrap();
        split.filename_template.clear();
        only_directory.filename_template = "{{file_number}}.csv".into();
        assert_eq!(
            ExportSpec::validate(only_directory)
                .unwrap()
                .object_key("r", now, 3, &BTreeMap::new())
                .unwrap(),
            "daily/acme/2026/01/02/0000003.csv"
        );
    }

    #[test]
    fn a_split_needs_a_file_number_in_the_name_of_each_file() {
        let mut r = request();
        r.filename_template = "orders.csv".into();
        let error = ExportSpec::validate(r.clone()).unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("filename_template", ErrorCode::InvalidTemplate)
        );
        assert!(error.message.contains("{{file_number}}"), "{error}");
        r.split.as_mut().unwrap().filename_template = "part.csv".into();
        assert_eq!(field_of(r.clone()), "split.filename_template");
        // Without a split, one file needs no number.
        r.split = None;
        ExportSpec::validate(r).unwrap();
    }

    #[test]
    fn partitioned_files_and_parquet_directories_are_named_by_their_values() {
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        let partition = BTreeMap::from([
            ("country".to_owned(), "DE".to_owned()),
            ("group".to_owned(), "control".to_owned()),
        ]);
        let mut r = request();
        r.partition_by = vec!["country".into(), "group".into()];
        r.filename_template =
            "{{partition.country}}/{{partition.group}}-{{file_number}}.csv".into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.object_key("r", now, 2, &partition).unwrap(),
            "daily/DE/control-0000002.csv"
        );
        // One marker for the run: the partition values rendered empty, empty folders dropped.
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/-.csv.DONE")
        );

        // In a split, the split templates together name each partition's files.
        r.split.as_mut().unwrap().directory_template = "country={{partition.country}}".into();
        r.split.as_mut().unwrap().filename_template =
            "{{partition.group}}-{{file_number}}.csv".into();
        r.filename_template = "orders.csv".into();
        let spec = ExportSpec::validate(r).unwrap();
        assert_eq!(
            spec.object_key("r", now, 1, &partition).unwrap(),
            "daily/country=DE/control-0000001.csv"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders.csv.DONE")
        );

        let mut parquet = parquet_request(
            "orders/country={{partition.country}}",
            ParquetLayout::Directory,
        );
        parquet.partition_by = vec!["country".into()];
        let spec = ExportSpec::validate(parquet).unwrap();
        let partition = BTreeMap::from([("country".to_owned(), "FR".to_owned())]);
        assert_eq!(
            spec.object_key("r", now, 2, &partition).unwrap(),
            "daily/orders/country=FR.parquet/part-00001.parquet"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders/country=.DONE")
        );
    }

    #[test]
    fn partitioning_needs_every_column_in_the_names_and_known_columns_only() {
        let partitioned = |columns: &[&str], template: &str| {
            let mut r = request();
            r.split = None;
            r.partition_by = columns.iter().map(|c| (*c).to_owned()).collect();
            r.filename_template = template.into();
            ExportSpec::validate(r)
        };
        let error = partitioned(&["country", "group"], "{{partition.country}}.csv").unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("filename_template", ErrorCode::InvalidTemplate)
        );
        assert!(error.message.contains("{{partition.group}}"), "{error}");
        let error = partitioned(&["country"], "{{partition.region}}.csv").unwrap_err();
        assert!(
            error
                .message
                .contains("\"region\" is not a partition column"),
            "{error}"
        );
        let error = partitioned(&["country", "country"], "{{partition.country}}.csv");
        assert_eq!(error.unwrap_err().field, "partition_by");
        let error = partitioned(&[""], "x.csv").unwrap_err();
        assert_eq!(error.field, "partition_by");
        let nine: Vec<String> = (0..9).map(|n| format!("c{n}")).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(
            partitioned(&nine, "x.csv").unwrap_err().field,
            "partition_by"
        );
        // `partition` is reserved, even as an export variable.
        let mut r = request();
        r.variables.insert("partition".into(), "x".into());
        assert_eq!(field_of(r), "variables");
    }

    #[test]
    fn splits_are_by_rows_or_by_megabytes() {
        let split = |rows: u64, megabytes: u64| {
            let mut r = request();
            r.split = Some(Split {
                rows_per_file: rows,
                megabytes_per_file: megabytes,
                ..Default::default()
            });
            ExportSpec::validate(r)
        };
        let spec = split(0, 5).unwrap();
        assert_eq!(
            (spec.rows_per_file, spec.bytes_per_file),
            (None, Some(5_000_000))
        );
        let spec = split(50_000, 0).unwrap();
        assert_eq!(
            (spec.rows_per_file, spec.bytes_per_file),
            (Some(50_000), None)
        );
        split(0, 2000).unwrap();
        for (rows, megabytes, field) in [
            (0, 0, "split"),
            (0, 2001, "split.megabytes_per_file"),
            (50_000, 5, "split.megabytes_per_file"),
            (49_999, 0, "split.rows_per_file"),
        ] {
            assert_eq!(split(rows, megabytes).unwrap_err().field, field);
        }
        // A split by size numbers files too.
        let mut r = request();
        r.filename_template = "orders.csv".into();
        r.split = Some(Split {
            megabytes_per_file: 5,
            ..Default::default()
        });
        assert_eq!(field_of(r), "filename_template");
    }

    #[test]
    fn empty_results_write_a_file_unless_skipped() {
        assert!(!ExportSpec::validate(request()).unwrap().skip_empty);
        let mut r = request();
        r.empty_result = EmptyResult::SkipFiles.into();
        assert!(ExportSpec::validate(r.clone()).unwrap().skip_empty);
        r.empty_result = 7;
        assert_eq!(field_of(r), "empty_result");
    }

    #[test]
    fn variables_and_the_destination_name_are_checked() {
        let with = |name: &str, value: &str| {
            let mut r = request();
            r.variables = HashMap::from([(name.to_owned(), value.to_owned())]);
            ExportSpec::validate(r)
        };
        with("group_name", "A").unwrap();
        with("_x9", "A").unwrap();
        for bad in [
            "9lives",
            "group-name",
            "",
            "run_id",
            "destination",
            &"v".repeat(65),
        ] {
            let error = with(bad, "A").unwrap_err();
            assert_eq!(error.field, "variables", "{bad}");
        }
        assert_eq!(
            with("big", &"x".repeat(1025)).unwrap_err().field,
            "variables"
        );

        let mut r = request();
        r.filename_template = "{{destination}}-{{file_number}}.csv".into();
        let error = ExportSpec::validate(r.clone()).unwrap_err();
        assert_eq!(error.field, "filename_template");
        assert!(error.message.contains("destination.name"), "{error}");
        r.destination.as_mut().unwrap().name = "n".repeat(257);
        assert_eq!(field_of(r), "destination.name");

        // A value that would leave the prefix is caught when the template renders.
        let mut r = request();
        r.variables = HashMap::from([("group".to_owned(), "../up".to_owned())]);
        r.filename_template = "{{group}}/{{file_number}}.csv".into();
        let error = ExportSpec::validate(r).unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("filename_template", ErrorCode::InvalidTemplate)
        );
    }

    #[test]
    fn refuses_templates_that_leave_the_prefix() {
        for template in [
            "../{{run_id}}",
            "/{{run_id}}",
            "a//{{run_id}}",
            "a/./b",
            "x/",
        ] {
            let mut r = request();
            r.split = None;
            r.filename_template = template.into();
            let error = ExportSpec::validate(r).unwrap_err();
            assert_eq!(error.field, "filename_template", "{template}");
            assert_eq!(error.code, ErrorCode::InvalidTemplate, "{template}");
        }
    }

    #[test]
    fn quoting_options_are_checked_and_quote_mode_none_without_escape_warns() {
        let with = |csv: CsvOptions| {
            let mut r = request();
            r.csv = Some(CsvOptions {
                header: true,
                ..csv
            });
            ExportSpec::validate(r)
        };
        let spec = with(CsvOptions {
            quote_mode: QuoteMode::NonNumeric.into(),
            escape: "\\".into(),
            null_value: Some("NULL".into()),
            empty_value: Some("\"\"".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(spec.warnings.is_empty());
        let error = with(CsvOptions {
            quote_mode: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "csv.quote_mode");
        assert!(error.message.contains("QUOTE_MODE_NON_NULL"), "{error}");
        for escape in ["\\\\", ",", "\n", "é"] {
            let error = with(CsvOptions {
                escape: escape.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(error.field, "csv.escape", "{escape:?}");
        }
        let error = with(CsvOptions {
            null_value: Some("a,b".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "csv.null_value");
        let error = with(CsvOptions {
            empty_value: Some("\n".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "csv.empty_value");
        let spec = with(CsvOptions {
            quote_mode: QuoteMode::None.into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(spec.warnings.len(), 1);
        assert!(
            spec.warnings[0].contains("csv.escape"),
            "{:?}",
            spec.warnings
        );
    }

    #[test]
    fn row_number_names_default_and_are_checked() {
        let with = |enabled: bool, name: &str| {
            let mut r = request();
            r.row_number = Some(RowNumber {
                enabled,
                column_name: name.into(),
            });
            ExportSpec::validate(r).map(|spec| spec.encoding.row_number_column)
        };
        assert_eq!(with(false, "ignored"), Ok(String::new()));
        assert_eq!(with(true, ""), Ok("row_number".into()));
        assert_eq!(with(true, "Row-No_2"), Ok("Row-No_2".into()));
        assert!(with(true, &"n".repeat(1027)).is_ok());
        for bad in ["row number", "n\u{e9}", "a.b"] {
            assert_eq!(
                with(true, bad).unwrap_err().field,
                "row_number.column_name",
                "{bad:?}"
            );
        }
        assert_eq!(
            with(true, &"n".repeat(1028)).unwrap_err().field,
            "row_number.column_name"
        );
    }

    #[test]
    fn json_formats_and_line_endings_are_accepted_and_unknown_line_endings_refused() {
        let mut r = request();
        r.format = FileFormat::Ndjson.into();
        r.line_ending = LineEnding::Crlf.into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(spec.encoding.line_ending(), LineEnding::Crlf);
        assert_eq!(spec.encoding.csv, None);
        r.format = FileFormat::Json.into();
        r.line_ending = LineEnding::Unspecified.into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(spec.encoding.line_ending(), LineEnding::Lf);
        r.line_ending = 7;
        assert_eq!(field_of(r), "line_ending");
    }

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
