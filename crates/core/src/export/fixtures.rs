//! The requests the unit tests of the export rules start from.

use super::ExportSpec;
use filedrop_proto::v1::{
    AccessKeyCredential, CsvOptions, ExportRequest, FileFormat, ParquetLayout, ParquetOptions,
    S3Destination, Split, SuccessFile, SuccessFileName,
};

/// A valid CSV export to a local S3 server, split by rows, with a `.DONE` marker.
pub(super) fn request() -> ExportRequest {
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

/// The field `request` is refused for.
pub(super) fn field_of(request: ExportRequest) -> &'static str {
    ExportSpec::validate(request).unwrap_err().field
}

/// `request()` as Parquet, named by `template` in `layout`.
pub(super) fn parquet_request(template: &str, layout: ParquetLayout) -> ExportRequest {
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
