//! Values the unit tests share: a valid export request, its spec, and a run record.

use crate::store::RunRecord;
use filedrop_core::export::ExportSpec;
use filedrop_proto::v1::{
    AccessKeyCredential, CsvOptions, ExportRequest, FileFormat, RunState, S3Destination, Split,
    SuccessFile,
};

/// A run id.
pub const RUN: &str = "01a22f38-8cbe-75ae-923d-51341e08a98b";
/// 2026-12-01T00:00:00Z, the `now` of the run's templates.
pub const CREATED_AT: i64 = 1_796_083_200_000;

/// A valid CSV export to `s3://exports/daily/`, 50,000 rows a file, with a marker.
pub fn request() -> ExportRequest {
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
                ..Default::default()
            }),
            ..Default::default()
        }),
        format: FileFormat::Csv.into(),
        csv: Some(CsvOptions {
            header: true,
            ..Default::default()
        }),
        filename_template: "orders-{{now|format:'yyyyMMdd'}}-{{file_number}}.csv".into(),
        split: Some(Split {
            rows_per_file: 50_000,
            ..Default::default()
        }),
        success_file: Some(SuccessFile {
            enabled: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `request`, validated.
pub fn spec(request: ExportRequest) -> ExportSpec {
    ExportSpec::validate(request).expect("a valid request")
}

/// Run [`RUN`], created at [`CREATED_AT`], in `state`.
pub fn run(state: RunState, segment_count: Option<u64>) -> RunRecord {
    RunRecord {
        run_id: RUN.into(),
        tenant_id: "tenant".into(),
        state,
        sealed_request: Vec::new(),
        sealed_spec: None,
        created_at: CREATED_AT,
        updated_at: CREATED_AT,
        rows: 0,
        segment_count,
        arrow_schema: Vec::new(),
        files: 0,
        files_uploaded: 0,
        bytes_uploaded: 0,
        failure: None,
    }
}
