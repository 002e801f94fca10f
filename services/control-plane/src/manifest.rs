//! The run's manifest, written just before the success marker: the fields Adobe Experience
//! Platform writes (`flowRunId`, `scheduledTime`, `exportResults[{sinkPath, name, size}]`), so
//! loaders built for those read it, and filedrop's own: the run's rows, every file's key,
//! size, rows and SHA-256, the schema, and the settings used, without secrets.

use crate::store::{FileRecord, RunRecord};
use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_formats::segment::schema_from_bytes;
use filedrop_proto::v1::{
    Compression, EmptyResult, ExportRequest, FileFormat, LineEnding, ParquetCompression,
    ParquetLayout, QuoteMode, ServerSideEncryption, SuccessFileName,
};
use serde_json::{Value, json};

/// The manifest of `run`, whose files are `files` (every one uploaded), as JSON.
pub fn manifest_json(
    request: &ExportRequest,
    spec: &ExportSpec,
    run: &RunRecord,
    files: &[FileRecord],
) -> Result<Vec<u8>, RunFailure> {
    let schema = schema_from_bytes(&run.arrow_schema)
        .map_err(|error| RunFailure::internal(format!("the stored schema: {error}")))?;
    let scheduled = chrono::DateTime::from_timestamp_millis(run.created_at)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let export_results: Vec<Value> = files
        .iter()
        .map(|file| {
            let (folder, name) = file
                .object_key
                .rsplit_once('/')
                .unwrap_or(("", &file.object_key));
            json!({
                "sinkPath": format!("/{folder}"),
                "name": name,
                "size": file.uploaded_size.unwrap_or_default(),
            })
        })
        .collect();
    let file_list: Vec<Value> = files
        .iter()
        .map(|file| {
            json!({
                "key": file.object_key,
                "size": file.uploaded_size.unwrap_or_default(),
                "rows": file.rows,
                "sha256": file.sha256,
            })
        })
        .collect();
    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|field| {
            json!({
                "name": field.name(),
                "type": field.data_type().to_string(),
                "nullable": field.is_nullable(),
            })
        })
        .collect();
    let manifest = json!({
        "flowRunId": run.run_id,
        "scheduledTime": scheduled,
        "exportResults": export_results,
        "bucket": spec.destination.bucket,
        "rows": run.rows,
        "files": file_list,
        "schema": {"fields": fields},
        "settings": settings(request, spec),
    });
    serde_json::to_vec_pretty(&manifest)
        .map_err(|error| RunFailure::internal(format!("writing the manifest: {error}")))
}

/// The export's settings, as given, without secrets: the credential is named by its type
/// only, and a PGP key by whether there is one.
fn settings(request: &ExportRequest, spec: &ExportSpec) -> Value {
    let destination = &spec.destination;
    let credential = match &destination.access_key {
        Some(key) if !key.role_arn.is_empty() => json!({
            "type": "iam-credential", "roleArn": key.role_arn,
        }),
        Some(_) => json!({"type": "iam-credential"}),
        None => json!({"type": "stored", "credentialId": destination.credential_id}),
    };
    let name = |value: Option<&'static str>| value.map_or(Value::Null, |name| json!(name));
    let csv = request.csv.as_ref().map(|csv| {
        json!({
            "header": csv.header,
            "delimiter": csv.delimiter,
            "quoteMode": name(QuoteMode::try_from(csv.quote_mode).ok().map(|m| m.as_str_name())),
            "escape": csv.escape,
            "nullValue": csv.null_value,
            "emptyValue": csv.empty_value,
        })
    });
    let parquet = request.parquet.as_ref().map(|parquet| {
        json!({
            "compression": name(
                ParquetCompression::try_from(parquet.compression).ok().map(|c| c.as_str_name())
            ),
            "layout": name(ParquetLayout::try_from(parquet.layout).ok().map(|l| l.as_str_name())),
        })
    });
    let split = request.split.as_ref().map(|split| {
        json!({
            "rowsPerFile": split.rows_per_file,
            "megabytesPerFile": split.megabytes_per_file,
            "filenameTemplate": split.filename_template,
            "directoryTemplate": split.directory_template,
        })
    });
    let success_file = request.success_file.as_ref().map(|success| {
        json!({
            "enabled": success.enabled,
            "name": name(SuccessFileName::try_from(success.name).ok().map(|n| n.as_str_name())),
            "customName": success.custom_name,
        })
    });
    json!({
        "destination": {
            "name": destination.name,
            "bucket": destination.bucket,
            "prefix": destination.prefix,
            "region": destination.region,
            "endpointUrl": destination.endpoint_url,
            "forcePathStyle": destination.force_path_style,
            "credential": credential,
            "serverSideEncryption": name(
                ServerSideEncryption::try_from(destination.server_side_encryption)
                    .ok()
                    .map(|e| e.as_str_name())
            ),
            "kmsKeyId": destination.kms_key_id,
            "storageClass": destination.storage_class,
            "cannedAcl": destination.canned_acl,
            "tags": destination.tags,
        },
        "format": name(FileFormat::try_from(request.format).ok().map(|f| f.as_str_name())),
        "csv": csv,
        "parquet": parquet,
        "lineEnding": name(LineEnding::try_from(request.line_ending).ok().map(|l| l.as_str_name())),
        "rowNumber": request.row_number.as_ref().map(|row_number| json!({
            "enabled": row_number.enabled, "columnName": row_number.column_name,
        })),
        "compression": name(Compression::try_from(request.compression).ok().map(|c| c.as_str_name())),
        "zip64": request.zip64,
        "pgpEncrypted": !request.pgp_public_key.is_empty(),
        "filenameTemplate": request.filename_template,
        "split": split,
        "partitionBy": request.partition_by,
        "variables": request.variables,
        "emptyResult": name(EmptyResult::try_from(request.empty_result).ok().map(|e| e.as_str_name())),
        "successFile": success_file,
    })
}
