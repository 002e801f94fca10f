//! One export, end to end: Arrow Flight in, RabbitMQ between, real workers, a real S3 server
//! (moto, authentication on) out. Files are read back with the `parquet` and `arrow-csv`
//! readers and compared with what was sent.

use arrow_array::RecordBatch;
use bytes::Bytes;
use filedrop_integration_tests::gpg::{Gpg, KeyKind};
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{
    Compression, EmptyResult, ErrorCode, ExportAccepted, ExportRequest, FileFormat, LineEnding,
    QuoteMode, RowNumber, Run, RunState, Split,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::time::Duration;

const BUCKET: &str = "exports";
const ROWS: i64 = 1_000_000;
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn read_parquet(bytes: Bytes) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("a Parquet file")
        .build()
        .expect("a Parquet reader");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("reading Parquet");
    data::concat(&batches)
}

fn read_csv(bytes: Bytes) -> RecordBatch {
    read_delimited(bytes, b',')
}

fn read_delimited(bytes: Bytes, delimiter: u8) -> RecordBatch {
    let reader = arrow_csv::ReaderBuilder::new(data::schema())
        .with_header(true)
        .with_delimiter(delimiter)
        .build(std::io::Cursor::new(bytes))
        .expect("a CSV reader");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("reading CSV");
    data::concat(&batches)
}

/// Reads NDJSON (any line ending) with `arrow-json`, typed by `schema`.
fn read_ndjson(bytes: &[u8], schema: arrow_schema::SchemaRef) -> RecordBatch {
    let reader = arrow_json::ReaderBuilder::new(schema.clone())
        .build(std::io::Cursor::new(bytes.to_vec()))
        .expect("a JSON reader");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("reading JSON");
    arrow_select::concat::concat_batches(&schema, &batches).expect("one schema")
}

/// The date part of the sample filename template, as the control plane rendered it.
fn run_date(run: &Run) -> String {
    civil_date(run.created_at.as_ref().expect("created_at").seconds)
}

/// The `yyyy-MM-dd` date of a Unix time in seconds (UTC; add an offset for another zone).
fn civil_date(seconds: i64) -> String {
    // Civil date from Unix days, so the test does not depend on a date crate.
    let days = seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The stable error code a refusal carries in its metadata.
fn error_code(status: &tonic::Status) -> Option<ErrorCode> {
    let name = status
        .metadata()
        .get("filedrop-error-code")?
        .to_str()
        .ok()?;
    ErrorCode::from_str_name(name)
}

fn staged_files(stack: &Stack) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&stack.staging_dir(), &mut files);
    files
}

/// Exports the 1,000,000-row sample as Parquet split every 250,000 rows to `daily/`; returns
/// the accepted run and what was sent, for [`assert_split_delivery`].
async fn export_split_parquet(moto: &Moto, stack: &Stack) -> (ExportAccepted, Vec<RecordBatch>) {
    let request = client::split(
        client::request_to(moto, BUCKET, "daily", FileFormat::Parquet),
        250_000,
    );
    let sent = data::table(ROWS, 50_000);
    let accepted = client::export(&stack.api(), &request, sent.clone())
        .await
        .expect("the export is accepted");
    assert_eq!(accepted.rows, ROWS as u64);
    (accepted, sent)
}

/// Exports `sent` with `request`, waits for the run to succeed, and returns the run and the
/// bytes of its single file, `<prefix>sample-<date>-<run id>-0000001.<extension>`, or for
/// Parquet `<prefix>sample-<date>-<run id>.parquet/part-00000.<extension>`.
async fn export_one_file(
    moto: &Moto,
    stack: &Stack,
    request: &ExportRequest,
    sent: &[RecordBatch],
    extension: &str,
) -> (Run, Bytes) {
    let accepted = client::export(&stack.api(), request, sent.to_vec())
        .await
        .expect("accepted");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{extension}: {run:?}");
    let prefix = &request.destination.as_ref().unwrap().prefix;
    let stem = format!("{prefix}sample-{}-{}", run_date(&run), run.run_id);
    let key = if extension.starts_with("parquet") {
        format!("{stem}.parquet/part-00000.{extension}")
    } else {
        format!("{stem}-0000001.{extension}")
    };
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let bytes = s3::get(&s3, BUCKET, &key).await;
    (run, bytes)
}

async fn assert_split_delivery(moto: &Moto, stack: &Stack, run: &Run, sent: &[RecordBatch]) {
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!(
        (run.rows, run.files, run.files_uploaded),
        (ROWS as u64, 4, 4)
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "").await;
    // The default Parquet layout: a directory of numbered parts, the marker beside it.
    let stem = format!("daily/sample-{}-{}", run_date(run), run.run_id);
    let part = |n: u64| format!("{stem}.parquet/part-{:05}.parquet", n - 1);
    let mut expected: Vec<String> = (1..=4).map(part).collect();
    expected.push(format!("{stem}.DONE"));
    expected.push(client::manifest_key("daily/", BUCKET, &run.run_id));
    expected.sort();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys, expected,
        "exactly four files, the manifest and one marker"
    );

    let marker = objects.iter().find(|o| o.key.ends_with(".DONE")).unwrap();
    assert_eq!(marker.size, 0);
    for object in objects.iter().filter(|o| !o.key.ends_with(".DONE")) {
        assert!(
            object.last_modified <= marker.last_modified,
            "{} was written after the marker",
            object.key
        );
    }

    let mut read = Vec::new();
    for n in 1..=4 {
        let file = read_parquet(s3::get(&s3, BUCKET, &part(n)).await);
        assert_eq!(file.num_rows(), 250_000, "file {n}");
        read.push(file);
    }
    assert_eq!(
        data::concat(&read),
        data::concat(sent),
        "the files read back equal the input"
    );
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());
    assert_eq!(
        staged_files(stack),
        Vec::<std::path::PathBuf>::new(),
        "staging is cleaned up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_split_by_rows_delivers_four_files_then_the_marker() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let (accepted, sent) = export_split_parquet(&moto, &stack).await;

    let states = client::watch_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    let order: Vec<RunState> = states.iter().map(Run::state).collect();
    assert!(
        order.windows(2).all(|w| w[0] as i32 <= w[1] as i32),
        "states only move forward: {order:?}"
    );
    let run = states.last().unwrap();
    assert_split_delivery(&moto, &stack, run, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_header_reads_back_equal_to_the_input() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let request = client::request_to(&moto, BUCKET, "csv/", FileFormat::Csv);
    let sent = data::table(ROWS, 100_000);
    let accepted = client::export(&stack.api(), &request, sent.clone())
        .await
        .expect("accepted");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");

    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "csv/").await;
    let stem = format!("csv/sample-{}-{}-", run_date(&run), run.run_id);
    let file = format!("{stem}0000001.csv");
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            client::manifest_key("csv/", BUCKET, &run.run_id),
            format!("{stem}.csv.DONE"),
            file.clone()
        ],
        "one file, the manifest and the marker"
    );
    assert!(
        objects[2].size > 5 * 1024 * 1024,
        "large enough to need a multipart upload"
    );
    let bytes = s3::get(&s3, BUCKET, &file).await;
    assert!(
        bytes.starts_with(b"id,amount,label,created_at,active\n"),
        "one header row"
    );
    assert_eq!(read_csv(bytes), data::concat(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bucket_name_is_refused_before_anything_is_written() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let mut request = client::request_to(&moto, "Not_A_Bucket", "", FileFormat::Parquet);
    let status = client::export(&stack.api(), &request, data::table(200_000, 10_000))
        .await
        .expect_err("an invalid bucket name is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("destination.bucket: invalid bucket name"),
        "{status:?}"
    );
    assert_eq!(error_code(&status), Some(ErrorCode::InvalidBucketName));
    assert_eq!(
        staged_files(&stack),
        Vec::<std::path::PathBuf>::new(),
        "nothing staged"
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(
        s3::list(&s3, BUCKET, "").await.is_empty(),
        "nothing delivered"
    );

    request.destination.as_mut().unwrap().bucket = BUCKET.to_owned();
    request.filename_template = "{{unknown}}.parquet".to_owned();
    let status = client::export(&stack.api(), &request, data::table(10, 10))
        .await
        .expect_err("an invalid template is refused");
    assert!(
        status.message().starts_with("filename_template: "),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_fails_the_run_with_invalid_credentials_and_leaves_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let wrong_secret = "wrong-secret-Zq9vX2";
    let request = client::request(
        &moto.endpoint,
        BUCKET,
        "denied/",
        &moto.access_key_id,
        wrong_secret,
        FileFormat::Csv,
    );
    let accepted = client::export(&stack.api(), &request, data::table(300_000, 50_000))
        .await
        .expect("the stream is accepted; the credential is checked by the upload");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let error = run.error.as_ref().expect("a failed run has an error");
    assert_eq!(error.code(), ErrorCode::InvalidCredentials, "{error:?}");
    assert!(
        error.message.contains("fix the credential"),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains(wrong_secret),
        "the secret never appears in errors"
    );

    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(
        s3::list(&s3, BUCKET, "").await.is_empty(),
        "no object is left"
    );
    assert_eq!(
        s3::open_uploads(&s3, BUCKET).await,
        Vec::<String>::new(),
        "no open upload"
    );
    for log in std::fs::read_dir(&stack.dir).unwrap().flatten() {
        if log.path().extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(log.path()).unwrap();
            assert!(
                !text.contains(wrong_secret),
                "{} logs the secret",
                log.path().display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_and_restarted_still_delivers_every_file_once() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions::default());
    let (accepted, sent) = export_split_parquet(&moto, &stack).await;
    stack.kill_worker(0);
    let before = client::get_run(&stack.api(), &accepted.run_id).await;
    assert!(
        matches!(before.state(), RunState::Encoding | RunState::Uploading),
        "the worker must be stopped mid-run; the run was already {:?}",
        before.state()
    );
    stack.start_worker();
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_split_delivery(&moto, &stack, &run, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_the_format_cannot_carry_is_refused_when_the_schema_arrives() {
    use arrow_array::{ArrayRef, Int64Array, ListArray, types::Int32Type};
    use std::sync::Arc;

    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let tags = ListArray::from_iter_primitive::<Int32Type, _, _>([Some(vec![Some(1), None])]);
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ("tags", Arc::new(tags) as ArrayRef),
    ])
    .unwrap();
    let request = client::request_to(&moto, BUCKET, "typed/", FileFormat::Csv);
    let status = client::export(&stack.api(), &request, vec![batch])
        .await
        .expect_err("a list column cannot go out as CSV");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("column \"tags\""), "{status:?}");
    assert_eq!(error_code(&status), Some(ErrorCode::UnsupportedType));
    assert_eq!(
        staged_files(&stack),
        Vec::<std::path::PathBuf>::new(),
        "no run was started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_delivers_a_header_only_file_and_the_marker_or_only_the_marker() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let request = client::request_to(&moto, BUCKET, "empty/", FileFormat::Csv);
    let accepted =
        client::export_with_schema(&stack.api(), &request, Some(data::schema()), Vec::new())
            .await
            .expect("an empty result is accepted");
    assert_eq!(accepted.rows, 0);
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!(run.files, 1);

    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let stem = format!("empty/sample-{}-{}-", run_date(&run), run.run_id);
    let keys: Vec<String> = s3::list(&s3, BUCKET, "empty/")
        .await
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            client::manifest_key("empty/", BUCKET, &run.run_id),
            format!("{stem}.csv.DONE"),
            format!("{stem}0000001.csv")
        ]
    );
    let file = s3::get(&s3, BUCKET, &format!("{stem}0000001.csv")).await;
    assert_eq!(file.as_ref(), b"id,amount,label,created_at,active\n");

    // Skipping the files: the marker alone, and nothing left staged.
    let mut skip = client::request_to(&moto, BUCKET, "skipped/", FileFormat::Csv);
    skip.empty_result = EmptyResult::SkipFiles.into();
    let accepted =
        client::export_with_schema(&stack.api(), &skip, Some(data::schema()), Vec::new())
            .await
            .expect("an empty result is accepted");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!(run.files, 0);
    let keys: Vec<String> = s3::list(&s3, BUCKET, "skipped/")
        .await
        .into_iter()
        .map(|o| o.key)
        .collect();
    let stem = format!("skipped/sample-{}-{}-", run_date(&run), run.run_id);
    assert_eq!(
        keys,
        [
            client::manifest_key("skipped/", BUCKET, &run.run_id),
            format!("{stem}.csv.DONE")
        ],
        "the manifest, listing no file, and the marker"
    );
    assert_eq!(
        staged_files(&stack),
        Vec::<std::path::PathBuf>::new(),
        "staging is cleaned up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_reports_every_service_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let stack = Stack::start(StackOptions::default());
    let channel = tonic::transport::Channel::from_shared(stack.url())
        .unwrap()
        .connect()
        .await
        .expect("connecting");
    let mut health = HealthClient::new(channel);
    for service in [
        "",
        "arrow.flight.protocol.FlightService",
        "filedrop.v1.RunService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| panic!("health of {service:?}: {status:?}"))
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_finishes_its_tasks_and_exits_cleanly() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions::default());
    let (accepted, sent) = export_split_parquet(&moto, &stack).await;
    let status = stack.terminate_worker(0, Duration::from_secs(120));
    assert!(
        status.success(),
        "the worker exits cleanly on SIGTERM: {status}"
    );
    let log = std::fs::read_to_string(stack.dir.join("worker-1.log")).unwrap();
    assert!(log.contains("shutdown requested"), "{log}");

    stack.start_worker();
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_split_delivery(&moto, &stack, &run, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_files_use_the_chosen_codec_and_read_back_equal() {
    use filedrop_proto::v1::{ParquetCompression, ParquetOptions};
    use parquet::basic::Compression;

    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(120_000, 40_000);
    for (compression, expected) in [
        (ParquetCompression::Zstd, "ZSTD"),
        (ParquetCompression::Gzip, "GZIP"),
        (ParquetCompression::Lz4, "LZ4_RAW"),
        (ParquetCompression::None, "UNCOMPRESSED"),
    ] {
        let prefix = format!("codec-{expected}/");
        let mut request = client::request_to(&moto, BUCKET, &prefix, FileFormat::Parquet);
        request.parquet = Some(ParquetOptions {
            compression: compression.into(),
            ..Default::default()
        });
        let (_, bytes) = export_one_file(&moto, &stack, &request, &sent, "parquet").await;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        for column in builder
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
        {
            let codec = match column.compression() {
                Compression::GZIP(_) => "GZIP".to_owned(),
                Compression::ZSTD(_) => "ZSTD".to_owned(),
                other => other.to_string(),
            };
            assert_eq!(codec, expected);
        }
        assert_eq!(read_parquet(bytes), data::concat(&sent), "{expected}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsv_psv_and_custom_delimited_files_read_back_equal() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(120_000, 40_000);
    for (format, delimiter, extension) in [
        (FileFormat::Tsv, b'\t', "tsv"),
        (FileFormat::Psv, b'|', "psv"),
        (FileFormat::Delimited, b';', "txt"),
    ] {
        let prefix = format!("{extension}/");
        let request = client::request_to(&moto, BUCKET, &prefix, format);
        let (_, bytes) = export_one_file(&moto, &stack, &request, &sent, extension).await;
        let d = delimiter as char;
        let header = format!("id{d}amount{d}label{d}created_at{d}active\n");
        assert!(
            bytes.starts_with(header.as_bytes()),
            "{format:?}: one header row"
        );
        assert_eq!(
            read_delimited(bytes, delimiter),
            data::concat(&sent),
            "{format:?}"
        );
    }
}

/// 300,000 rows make three segments, so every file below is assembled from several blocks.
const MULTI_BLOCK_ROWS: i64 = 300_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_and_ndjson_files_read_back_equal() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    let expected = data::concat(&sent);

    let request = client::request_to(&moto, BUCKET, "json/", FileFormat::Json);
    let (_, bytes) = export_one_file(&moto, &stack, &request, &sent, "json").await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("one JSON array");
    assert_eq!(rows.len(), MULTI_BLOCK_ROWS as usize);
    let lines: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
    assert_eq!(
        read_ndjson(lines.join("\n").as_bytes(), data::schema()),
        expected,
        "JSON array"
    );

    let mut request = client::request_to(&moto, BUCKET, "ndjson/", FileFormat::Ndjson);
    request.line_ending = LineEnding::Crlf.into();
    let (_, bytes) = export_one_file(&moto, &stack, &request, &sent, "ndjson").await;
    let text = std::str::from_utf8(&bytes).expect("UTF-8");
    assert_eq!(text.matches("\r\n").count(), MULTI_BLOCK_ROWS as usize);
    assert_eq!(
        text.matches('\n').count(),
        MULTI_BLOCK_ROWS as usize,
        "no bare LF"
    );
    assert_eq!(read_ndjson(&bytes, data::schema()), expected, "NDJSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_templates_variables_and_the_destination_name_place_the_files() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "named/", FileFormat::Csv),
        100_000,
    );
    request.destination.as_mut().unwrap().name = "acme-daily".to_owned();
    request.variables = [("campaign_name", "spring sale"), ("group_name", "B")]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    request.filename_template = "{{campaign_name}}-{{run_id}}".to_owned();
    let split = request.split.as_mut().unwrap();
    split.directory_template =
        "{{destination}}/{{now|local:'Asia/Tokyo'|format:'yyyy-MM-dd'}}".to_owned();
    split.filename_template = "{{group_name}}-{{file_number}}.csv".to_owned();
    let accepted = client::export(&stack.api(), &request, sent.clone())
        .await
        .expect("accepted");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");

    let created = run.created_at.as_ref().unwrap().seconds;
    let tokyo_date = civil_date(created + 9 * 3600);
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let keys: Vec<String> = s3::list(&s3, BUCKET, "named/")
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    let file = |n: u32| format!("named/acme-daily/{tokyo_date}/B-{n:07}.csv");
    let mut expected: Vec<String> = (1..=3).map(file).collect();
    expected.push(format!("named/spring sale-{}.DONE", run.run_id));
    expected.push(client::manifest_key("named/", "acme-daily", &run.run_id));
    expected.sort();
    assert_eq!(keys, expected);
    let mut read = Vec::new();
    for n in 1..=3 {
        read.push(read_csv(s3::get(&s3, BUCKET, &file(n)).await));
    }
    assert_eq!(data::concat(&read), data::concat(&sent));

    // A template variable that was not given is refused before any data moves.
    let mut unknown = request.clone();
    unknown.split.as_mut().unwrap().filename_template = "{{region}}-{{file_number}}.csv".into();
    let status = client::export(&stack.api(), &unknown, sent.clone())
        .await
        .expect_err("an unknown variable is refused");
    assert!(
        status
            .message()
            .starts_with("split.filename_template: the template uses unknown variable(s) region"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_export_delivers_a_numbered_file_set_per_value() {
    use arrow_array::{Array, BooleanArray, Int64Array, UInt32Array};

    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    // `active` is true, false or null: 120,000, 120,000 and 60,000 rows.
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "partitioned/", FileFormat::Csv),
        100_000,
    );
    request.partition_by = vec!["active".to_owned()];
    request.filename_template = "active={{partition.active}}/part-{{file_number}}.csv".into();
    let accepted = client::export(&stack.api(), &request, sent.clone())
        .await
        .expect("accepted");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");

    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let keys: Vec<String> = s3::list(&s3, BUCKET, "partitioned/")
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    // Each partition's files are numbered from 1; one marker, the partition rendered empty.
    let manifest = client::manifest_key("partitioned/", BUCKET, &run.run_id);
    let expected = [
        "partitioned/active=/part-.csv.DONE",
        "partitioned/active=__HIVE_DEFAULT_PARTITION__/part-0000001.csv",
        "partitioned/active=false/part-0000001.csv",
        "partitioned/active=false/part-0000002.csv",
        "partitioned/active=true/part-0000001.csv",
        "partitioned/active=true/part-0000002.csv",
        manifest.as_str(),
    ];
    assert_eq!(keys, expected);
    assert_eq!(run.files, 5);

    let mut read = Vec::new();
    for key in keys.iter().filter(|key| key.ends_with(".csv")) {
        let batch = read_csv(s3::get(&s3, BUCKET, key).await);
        let active = batch
            .column_by_name("active")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        let value = key.split('/').nth(1).unwrap().trim_start_matches("active=");
        let in_partition = (0..active.len()).all(|row| match value {
            "true" => active.is_valid(row) && active.value(row),
            "false" => active.is_valid(row) && !active.value(row),
            _ => active.is_null(row),
        });
        assert!(in_partition, "{key} holds rows of another partition");
        // A row split within each partition: 100,000 rows, then the remainder.
        let rows = if key.ends_with("0000001.csv") && value != "__HIVE_DEFAULT_PARTITION__" {
            100_000
        } else if value == "__HIVE_DEFAULT_PARTITION__" {
            60_000
        } else {
            20_000
        };
        assert_eq!(batch.num_rows(), rows, "{key}");
        read.push(batch);
    }
    let by_id = |batch: RecordBatch| {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_by_key(|&row| ids.value(row as usize));
        arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order)).unwrap()
    };
    assert_eq!(by_id(data::concat(&read)), data::concat(&sent));

    // Partition columns are checked when the schema arrives, before a run starts.
    for (column, code, message) in [
        (
            "region",
            None,
            "partition_by: the data has no column \"region\"",
        ),
        (
            "amount",
            Some(ErrorCode::UnsupportedType),
            "partition_by: column \"amount\" has type Float64",
        ),
    ] {
        let mut refused = request.clone();
        refused.partition_by = vec![column.to_owned()];
        refused.filename_template = format!("{{{{partition.{column}}}}}-{{{{file_number}}}}.csv");
        let status = client::export(&stack.api(), &refused, sent.clone())
            .await
            .expect_err("refused");
        assert!(status.message().starts_with(message), "{status:?}");
        assert_eq!(error_code(&status), code, "{status:?}");
    }
    assert_eq!(staged_files(&stack), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_by_megabytes_keeps_every_delivered_object_at_or_under_the_limit() {
    const LIMIT: u64 = 1_000_000;
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let by_size = |prefix: &str, format: FileFormat| {
        let mut request = client::request_to(&moto, BUCKET, prefix, format);
        request.split = Some(Split {
            megabytes_per_file: 1,
            ..Default::default()
        });
        request
    };
    // gzip: blocks are compressed by the encoders, so files fill up to the limit.
    let mut gzip = by_size("sized-gzip/", FileFormat::Csv);
    gzip.compression = Compression::Gzip.into();
    gzip.filename_template = gzip.filename_template.replace(".csv", ".csv.gz");
    // Parquet parts in the default directory layout.
    let parquet = by_size("sized-parquet/", FileFormat::Parquet);

    for (request, prefix) in [(gzip, "sized-gzip/"), (parquet, "sized-parquet/")] {
        let accepted = client::export(&stack.api(), &request, sent.clone())
            .await
            .expect("accepted");
        let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
        assert_eq!(run.state(), RunState::Succeeded, "{prefix}: {run:?}");
        let objects: Vec<_> = s3::list(&s3, BUCKET, prefix)
            .await
            .into_iter()
            .filter(|object| !object.key.ends_with(".DONE") && !object.key.ends_with(".json"))
            .collect();
        assert_eq!(objects.len() as u64, run.files, "{prefix}");
        assert!(run.files >= 3, "{prefix}: {} files", run.files);
        let total: u64 = objects.iter().map(|object| object.size).sum();
        for object in &objects {
            assert!(
                object.size <= LIMIT,
                "{} is {} bytes, over the limit",
                object.key,
                object.size
            );
        }
        // Packed, not one block per file: fewer files than twice the minimum.
        assert!(
            run.files <= 2 * total.div_ceil(LIMIT),
            "{prefix}: {} files for {total} bytes",
            run.files
        );
        let mut read = Vec::new();
        for object in &objects {
            let bytes = s3::get(&s3, BUCKET, &object.key).await;
            read.push(if prefix == "sized-gzip/" {
                read_csv(Bytes::from(decompress_with_tool("gzip", &bytes)))
            } else {
                read_parquet(bytes)
            });
        }
        assert_eq!(data::concat(&read), data::concat(&sent), "{prefix}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_numbers_run_across_split_files_with_quote_all_and_crlf() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "numbered", FileFormat::Csv),
        100_000,
    );
    request.line_ending = LineEnding::Crlf.into();
    request.csv.as_mut().unwrap().quote_mode = QuoteMode::All.into();
    request.row_number = Some(RowNumber {
        enabled: true,
        column_name: String::new(),
    });
    let accepted = client::export(&stack.api(), &request, sent.clone())
        .await
        .expect("accepted");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    assert_eq!(run.files, 3);

    let mut fields = vec![arrow_schema::Field::new(
        "row_number",
        arrow_schema::DataType::Int64,
        false,
    )];
    fields.extend(data::schema().fields().iter().map(|f| f.as_ref().clone()));
    let numbered = std::sync::Arc::new(arrow_schema::Schema::new(fields));
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let stem = format!("numbered/sample-{}-{}-", run_date(&run), run.run_id);
    let mut read = Vec::new();
    for n in 1..=3 {
        let bytes = s3::get(&s3, BUCKET, &format!("{stem}{n:07}.csv")).await;
        assert!(
            bytes.starts_with(
                b"\"row_number\",\"id\",\"amount\",\"label\",\"created_at\",\"active\"\r\n"
            ),
            "file {n}: a quoted header with the row number first"
        );
        let reader = arrow_csv::ReaderBuilder::new(numbered.clone())
            .with_header(true)
            .build(std::io::Cursor::new(bytes))
            .expect("a CSV reader");
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("reading CSV");
        read.push(data::concat(&batches));
    }
    let read = data::concat(&read);
    let numbers = read
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    assert!(
        numbers.values().iter().copied().eq(1..=MULTI_BLOCK_ROWS),
        "row numbers run 1..={MULTI_BLOCK_ROWS} across the files"
    );
    assert_eq!(read.project(&[1, 2, 3, 4, 5]).unwrap(), data::concat(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_format_options_are_refused_naming_the_setting_and_risky_ones_warn() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let base = client::request_to(&moto, BUCKET, "bad", FileFormat::Csv);
    let mut cases: Vec<(&str, ExportRequest)> = Vec::new();
    let mut r = base.clone();
    r.csv.as_mut().unwrap().quote_mode = 17;
    cases.push(("csv.quote_mode", r));
    let mut r = base.clone();
    r.format = FileFormat::Delimited.into();
    r.csv.as_mut().unwrap().delimiter = ";;".into();
    cases.push(("csv.delimiter", r));
    let mut r = base.clone();
    r.csv.as_mut().unwrap().escape = "ab".into();
    cases.push(("csv.escape", r));
    let mut r = base.clone();
    r.row_number = Some(RowNumber {
        enabled: true,
        column_name: "row number".into(),
    });
    cases.push(("row_number.column_name", r));
    let mut r = base.clone();
    r.filename_template = "exports/../{{run_id}}.csv".into();
    cases.push(("filename_template", r));
    let mut r = base.clone();
    r.filename_template = "{{campaign}}-{{file_number}}.csv".into();
    cases.push(("filename_template", r));
    for (rows, megabytes, field) in [
        (49_999, 0, "split.rows_per_file"),
        (10_000_001, 0, "split.rows_per_file"),
        (0, 2001, "split.megabytes_per_file"),
        (100_000, 10, "split.megabytes_per_file"),
    ] {
        let split = Split {
            rows_per_file: rows,
            megabytes_per_file: megabytes,
            ..Default::default()
        };
        cases.push((
            field,
            ExportRequest {
                split: Some(split),
                ..base.clone()
            },
        ));
    }
    for (field, request) in cases {
        let status = client::export(&stack.api(), &request, data::table(10, 10))
            .await
            .expect_err(field);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    }
    let mut clash = base.clone();
    clash.row_number = Some(RowNumber {
        enabled: true,
        column_name: "label".into(),
    });
    let status = client::export(&stack.api(), &clash, data::table(10, 10))
        .await
        .expect_err("a row number column named as a data column");
    assert!(
        status.message().contains("row_number.column_name"),
        "{status:?}"
    );
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert_eq!(
        s3::list(&s3, BUCKET, "").await.len(),
        0,
        "nothing is written"
    );

    let mut unescaped = base.clone();
    unescaped.csv.as_mut().unwrap().quote_mode = QuoteMode::None.into();
    let accepted = client::export(&stack.api(), &unescaped, data::table(10, 10))
        .await
        .expect("QUOTE_MODE_NONE without an escape character is accepted");
    assert!(
        accepted.warnings.iter().any(|w| w.contains("csv.escape")),
        "with a warning that says to set csv.escape: {:?}",
        accepted.warnings
    );
    let run = client::run_to_end(&stack.api(), &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
}

/// Checks `bytes` with `<tool> -t` and decompresses them with `<tool> -dc`: the standard tools,
/// not this project's code, judge the compressed files.
/// Writes `bytes` to a temporary file, runs `use_file` on its path, and removes it.
fn with_temp_file<T>(bytes: &[u8], use_file: impl FnOnce(&std::ffi::OsStr) -> T) -> T {
    let dir = std::env::temp_dir().join(format!("filedrop-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    std::fs::write(&path, bytes).unwrap();
    let result = use_file(path.as_os_str());
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

fn decompress_with_tool(tool: &str, bytes: &[u8]) -> Vec<u8> {
    with_temp_file(bytes, |path| {
        run_tool(tool, &[std::ffi::OsStr::new("-t"), path]);
        run_tool(tool, &[std::ffi::OsStr::new("-dc"), path])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_zstd_and_bzip2_files_pass_their_tools_and_read_back_equal() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    for (compression, tool, extension) in [
        (Compression::Gzip, "gzip", "gz"),
        (Compression::Zstd, "zstd", "zst"),
        (Compression::Bzip2, "bzip2", "bz2"),
    ] {
        let mut request =
            client::request_to(&moto, BUCKET, &format!("{extension}/"), FileFormat::Csv);
        request.compression = compression.into();
        request.filename_template = request.filename_template.replace(".csv", ".csv.") + extension;
        let (_, bytes) =
            export_one_file(&moto, &stack, &request, &sent, &format!("csv.{extension}")).await;
        let plain = decompress_with_tool(tool, &bytes);
        assert_eq!(
            read_csv(Bytes::from(plain)),
            data::concat(&sent),
            "{compression:?}"
        );
    }
}

/// Runs `program` with `args`, asserting success; its standard output.
fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {program} (install it: apt-get install {program}): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The one entry of an archive, checked and extracted by `unzip` or `tar`; asserts its name.
fn unpack_with_tool(compression: Compression, bytes: &[u8], entry: &str) -> Vec<u8> {
    let os = |arg: &'static str| std::ffi::OsStr::new(arg);
    let entry_arg = std::ffi::OsStr::new(entry);
    let (names, data) = with_temp_file(bytes, |path| match compression {
        Compression::Zip => {
            run_tool("unzip", &[os("-t"), path]);
            (
                run_tool("unzip", &[os("-Z1"), path]),
                run_tool("unzip", &[os("-p"), path, entry_arg]),
            )
        }
        Compression::Tar => (
            run_tool("tar", &[os("-tf"), path]),
            run_tool("tar", &[os("-xOf"), path, entry_arg]),
        ),
        Compression::Tgz => (
            run_tool("tar", &[os("-tzf"), path]),
            run_tool("tar", &[os("-xzOf"), path, entry_arg]),
        ),
        other => panic!("{other:?} is not an archive"),
    });
    assert_eq!(String::from_utf8(names).unwrap(), format!("{entry}\n"));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_tar_and_tgz_archives_hold_the_file_under_its_name_and_read_back_equal() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    for (compression, extension, content_type) in [
        (Compression::Zip, "zip", "application/zip"),
        (Compression::Tar, "tar", "application/x-tar"),
        (Compression::Tgz, "tgz", "application/gzip"),
    ] {
        let mut request =
            client::request_to(&moto, BUCKET, &format!("{extension}/"), FileFormat::Ndjson);
        request.compression = compression.into();
        request.zip64 = compression == Compression::Zip;
        request.filename_template =
            request.filename_template.replace(".ndjson", ".ndjson.") + extension;
        let (run, bytes) = export_one_file(
            &moto,
            &stack,
            &request,
            &sent,
            &format!("ndjson.{extension}"),
        )
        .await;
        let entry = format!("sample-{}-{}-0000001.ndjson", run_date(&run), run.run_id);
        let plain = unpack_with_tool(compression, &bytes, &entry);
        assert_eq!(read_ndjson(&plain, data::schema()), data::concat(&sent));
        let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
        let key = format!("{extension}/{entry}.{extension}");
        let head = s3
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some(content_type), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgp_encrypted_files_decrypt_with_gpg_after_compression_and_bad_keys_are_refused() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let gpg = Gpg::new();
    let sent = data::table(MULTI_BLOCK_ROWS, 50_000);
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);

    // RSA, after gzip: serialize, compress, then encrypt.
    let mut request = client::request_to(&moto, BUCKET, "rsa/", FileFormat::Csv);
    request.compression = Compression::Gzip.into();
    request.filename_template = request.filename_template.replace(".csv", ".csv.gz");
    request.pgp_public_key = gpg.generate("rsa@example.com", KeyKind::Rsa);
    let (run, bytes) = export_one_file(&moto, &stack, &request, &sent, "csv.gz.pgp").await;
    let plain = decompress_with_tool("gzip", &gpg.decrypt(&bytes));
    assert_eq!(read_csv(Bytes::from(plain)), data::concat(&sent));
    let key = format!(
        "rsa/sample-{}-{}-0000001.csv.gz.pgp",
        run_date(&run),
        run.run_id
    );
    let head = s3
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/pgp-encrypted"));

    // Curve25519, a Parquet file (encryption wraps every format).
    let mut request = client::request_to(&moto, BUCKET, "cv25519/", FileFormat::Parquet);
    request.pgp_public_key = gpg.generate("cv25519@example.com", KeyKind::Curve25519);
    let (_, bytes) = export_one_file(&moto, &stack, &request, &sent, "parquet.pgp").await;
    assert_eq!(
        read_parquet(Bytes::from(gpg.decrypt(&bytes))),
        data::concat(&sent)
    );

    // A key that cannot receive encrypted files is refused before anything is written.
    for (armored, says) in [
        (
            gpg.generate("primary@example.com", KeyKind::PrimaryOnly),
            "PGP public key has no encryption subkey",
        ),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnonsense\n".to_owned(),
            "not an ASCII-armored",
        ),
    ] {
        let mut request = client::request_to(&moto, BUCKET, "refused/", FileFormat::Csv);
        request.pgp_public_key = armored;
        let status = client::export(&stack.api(), &request, data::table(10, 10))
            .await
            .expect_err("a key without an encryption subkey");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with("pgp_public_key: ") && status.message().contains(says),
            "{status:?}"
        );
    }
    assert_eq!(s3::list(&s3, BUCKET, "refused/").await.len(), 0);
}
