//! Fuzz campaigns against the real binaries, bounded so that they run with the other tests:
//! mutated `ExportRequest`s (each of its fields, those of its destination and options, and raw
//! bytes), mutated stored destinations and credentials, and Flight streams with bytes
//! of a message's header or body changed. After the campaigns every process still runs, every
//! run they started has ended (succeeded, or failed with a code), and a normal export is
//! delivered.
//!
//! The seed and the counts are printed; `FILEDROP_FUZZ_SEED=<seed>` replays a campaign and
//! `FILEDROP_FUZZ_CASES=<n>` sets the number of cases of each.

use arrow_flight::FlightData;
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{
    AccessKeyCredential, CreateDestinationRequest, ErrorCode, ExportRequest, FileFormat,
    ListRunsRequest, RowNumber, RunState,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

const BUCKET: &str = "fuzz";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Answers counted by kind: `refused INVALID_ARGUMENT`, `accepted`, …
#[derive(Debug, Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn count(&mut self, outcome: Result<(), tonic::Status>) {
        let key = match outcome {
            Ok(()) => "accepted".to_owned(),
            Err(status) => {
                // Every refusal is an answer with a message, never a reset stream.
                assert_ne!(status.code(), tonic::Code::Unknown, "{status:?}");
                assert!(!status.message().is_empty(), "{status:?}");
                format!("refused {:?}", status.code())
            }
        };
        *self.0.entry(key).or_default() += 1;
    }
}

/// A value that is hostile to one field: control characters (DEL, CR LF, NUL), separators,
/// non-ASCII, empty, very long, or plausible with one character changed.
fn hostile(rng: &mut StdRng, plausible: &str) -> String {
    const NASTY: &[&str] = &[
        "\u{7f}", "\r\n", "\n", "\0", " ", "/", "..", "%", "{{", "}}", "@", ":", "é", "\u{202e}",
        "\u{fffd}", "\"", "'", "\\", "?", "#", "&", "=",
    ];
    match rng.gen_range(0..6) {
        0 => String::new(),
        1 => plausible.repeat(rng.gen_range(20..200)),
        2 => {
            let mut text: Vec<char> = plausible.chars().collect();
            let at = rng.gen_range(0..=text.len());
            let nasty = NASTY[rng.gen_range(0..NASTY.len())];
            for (offset, c) in nasty.chars().enumerate() {
                text.insert(at + offset, c);
            }
            text.into_iter().collect()
        }
        3 => (0..rng.gen_range(1..24))
            .map(|_| char::from_u32(rng.gen_range(0..0x3000)).unwrap_or('\u{fffd}'))
            .collect(),
        4 => NASTY[rng.gen_range(0..NASTY.len())].to_owned(),
        _ => {
            let mut text = plausible.to_owned();
            text.push_str(NASTY[rng.gen_range(0..NASTY.len())]);
            text
        }
    }
}

/// One field of `request` made hostile.
fn mutate_field(rng: &mut StdRng, request: &mut ExportRequest) {
    let destination = request.destination.as_mut().expect("a destination");
    let key = destination.access_key.as_mut().expect("an access key");
    match rng.gen_range(0..29) {
        0 => key.access_key_id = hostile(rng, &key.access_key_id.clone()),
        1 => key.secret_access_key = hostile(rng, &key.secret_access_key.clone()),
        2 => key.session_token = hostile(rng, "FwoGZXIvYXdzEBYaDH"),
        3 => {
            key.role_arn = hostile(rng, "arn:aws:iam::123456789012:role/exports");
            if rng.gen_bool(0.5) {
                key.external_id = hostile(rng, "filedrop-0123456789abcdef");
            }
        }
        4 => destination.endpoint_url = hostile(rng, &destination.endpoint_url.clone()),
        5 => destination.region = hostile(rng, "us-east-1"),
        6 => destination.bucket = hostile(rng, BUCKET),
        7 => destination.prefix = hostile(rng, "daily/"),
        8 => {
            destination.server_side_encryption = rng.gen_range(0..4);
            destination.kms_key_id = hostile(rng, "alias/exports");
        }
        9 => destination.storage_class = hostile(rng, "STANDARD_IA"),
        10 => destination.canned_acl = hostile(rng, "bucket-owner-full-control"),
        11 => {
            destination
                .tags
                .insert(hostile(rng, "team"), hostile(rng, "growth"));
        }
        12 => request.filename_template = hostile(rng, "orders-{{file_number}}.csv"),
        13 => {
            request
                .variables
                .insert(hostile(rng, "campaign"), hostile(rng, "spring"));
        }
        14 => {
            request.row_number = Some(RowNumber {
                enabled: true,
                column_name: hostile(rng, "row_number"),
            })
        }
        15 => request.format = rng.gen_range(-1..10),
        16 => {
            destination.force_path_style = rng.r#gen();
            destination.name = hostile(rng, "orders");
        }
        17 => {
            let parquet = request.parquet.get_or_insert_default();
            parquet.compression = rng.gen_range(-1..8);
            parquet.layout = rng.gen_range(-1..5);
            request.format = FileFormat::Parquet.into();
            request.csv = None;
        }
        18 => {
            let split = request.split.get_or_insert_default();
            let bounds = [0, 1, 49_999, 50_000, 10_000_000, 10_000_001, u64::MAX];
            if rng.r#gen() {
                split.rows_per_file = bounds[rng.gen_range(0..bounds.len())];
            } else {
                split.megabytes_per_file = [0, 1, 2_000, 2_001, u64::MAX][rng.gen_range(0..5)];
            }
            split.filename_template = hostile(rng, "{{file_number}}.csv");
            split.directory_template = hostile(rng, "orders-{{now|format:'yyyy'}}");
        }
        19 => {
            let success = request.success_file.get_or_insert_default();
            success.enabled = rng.r#gen();
            success.name = rng.gen_range(-1..5);
            success.custom_name = hostile(rng, "_DONE-{{run_id}}");
        }
        20 => {
            request.line_ending = rng.gen_range(-1..4);
            request.compression = rng.gen_range(-1..9);
            request.zip64 = rng.r#gen();
        }
        21 => {
            request.pgp_public_key = hostile(
                rng,
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGV\n-----END PGP PUBLIC KEY BLOCK-----",
            )
        }
        22 => request.empty_result = rng.gen_range(-1..4),
        23 => {
            request.partition_by = (0..rng.gen_range(0..10))
                .map(|_| hostile(rng, "country"))
                .collect()
        }
        24 => {
            request.manifest = Some(filedrop_proto::v1::ManifestOptions {
                disabled: rng.r#gen(),
            })
        }
        25 => request.idempotency_key = hostile(rng, "nightly-2026-11-30"),
        26 => request.stored_destination = hostile(rng, "orders-daily"),
        27 => {
            let csv = request.csv.get_or_insert_default();
            csv.header = rng.r#gen();
            csv.quote_mode = rng.gen_range(-1..7);
            csv.escape = hostile(rng, "\\");
            csv.empty_value = Some(hostile(rng, "\"\""));
        }
        _ => {
            if let Some(csv) = request.csv.as_mut() {
                csv.delimiter = hostile(rng, ";");
                csv.null_value = Some(hostile(rng, "NULL"));
            }
        }
    }
}

/// Bytes of `bytes` changed, cut or added to.
fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    match rng.gen_range(0..4) {
        0 if !bytes.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.r#gen();
            }
        }
        1 if !bytes.is_empty() => {
            let keep = rng.gen_range(0..bytes.len());
            bytes.truncate(keep);
        }
        2 if bytes.len() >= 8 => {
            // A little-endian number (a length, an offset) made large or negative.
            let at = rng.gen_range(0..bytes.len() - 7);
            let value: i64 = match rng.gen_range(0..3) {
                0 => -1,
                1 => rng.gen_range(1 << 20..1 << 40),
                _ => rng.r#gen(),
            };
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        _ => {
            let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.r#gen()).collect();
            let at = rng.gen_range(0..=bytes.len());
            bytes.splice(at..at, extra);
        }
    }
}

fn seed() -> u64 {
    std::env::var("FILEDROP_FUZZ_SEED")
        .ok()
        .map(|seed| seed.parse().expect("FILEDROP_FUZZ_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos() as u64
        })
}

fn cases() -> usize {
    std::env::var("FILEDROP_FUZZ_CASES")
        .ok()
        .map(|cases| cases.parse().expect("FILEDROP_FUZZ_CASES is a number"))
        .unwrap_or(300)
}

/// A valid stream of small batches for `request`, as Flight messages.
async fn flight_messages(request: &ExportRequest) -> Vec<FlightData> {
    client::flight_messages(request, (0..4).map(|index| data::batch(index * 50, 50))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_streams_and_settings_take_nothing_down() {
    let seed = seed();
    let cases = cases();
    println!("fuzz seed {seed} (replay: FILEDROP_FUZZ_SEED={seed}), {cases} cases a campaign");
    let mut rng = StdRng::seed_from_u64(seed);
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions {
        workers: 2,
        // An endpoint a fuzzed request reaches that answers nothing gives up quickly.
        worker_env: vec![("FILEDROP_UPLOAD__ATTEMPTS".into(), "1".into())],
        ..StackOptions::default()
    });
    let api = stack.api();
    let base = client::request_to(&moto, BUCKET, "fuzz/", FileFormat::Csv);

    // 1. ExportRequest: hostile fields, and raw bytes changed.
    let mut requests = Tally::default();
    for case in 0..cases {
        let outcome = if case % 3 == 2 {
            let mut bytes = base.encode_to_vec();
            mutate_bytes(&mut rng, &mut bytes);
            let mut messages = flight_messages(&base).await;
            if let Some(descriptor) = messages[0].flight_descriptor.as_mut() {
                descriptor.cmd = bytes.into();
            }
            client::do_put_messages(&api, messages).await.map(|_| ())
        } else {
            let mut request = base.clone();
            for _ in 0..rng.gen_range(1..3) {
                mutate_field(&mut rng, &mut request);
            }
            client::export(&api, &request, data::table(200, 100))
                .await
                .map(|_| ())
        };
        requests.count(outcome);
    }
    println!("ExportRequest campaign: {:?}", requests.0);
    let exited = stack.exited();
    assert!(exited.is_empty(), "after the requests: {exited:?}");

    // 2. Stored destinations and credentials.
    let mut stored = Tally::default();
    let mut destinations = client::destinations(&api).await;
    let credential = client::store_moto_key(&api, &moto).await;
    for case in 0..cases {
        let outcome = if case % 2 == 0 {
            let mut settings = base.clone();
            for _ in 0..rng.gen_range(1..3) {
                mutate_field(&mut rng, &mut settings);
            }
            let settings = client::with_credential(settings, &credential.credential_id);
            destinations
                .create_destination(CreateDestinationRequest {
                    name: hostile(&mut rng, &format!("fuzz-{case}")),
                    settings: Some(settings),
                })
                .await
                .map(|_| ())
        } else {
            let mut key = AccessKeyCredential {
                access_key_id: moto.access_key_id.clone(),
                secret_access_key: moto.secret_access_key.clone(),
                ..Default::default()
            };
            match rng.gen_range(0..4) {
                0 => key.access_key_id = hostile(&mut rng, &moto.access_key_id),
                1 => key.secret_access_key = hostile(&mut rng, &moto.secret_access_key),
                2 => key.session_token = hostile(&mut rng, "FwoGZXIvYXdzEBYaDH"),
                _ => key.role_arn = hostile(&mut rng, "arn:aws:iam::123456789012:role/x"),
            }
            client::create_access_key_credential(&api, &key)
                .await
                .map(|_| ())
        };
        stored.count(outcome);
    }
    println!("stored settings campaign: {:?}", stored.0);
    let exited = stack.exited();
    assert!(exited.is_empty(), "after the stored settings: {exited:?}");

    // 3. Flight streams: a byte of a message's header or body changed.
    let mut streams = Tally::default();
    let valid = flight_messages(&base).await;
    for _ in 0..cases {
        let mut messages = valid.clone();
        let target = rng.gen_range(0..messages.len());
        if rng.gen_bool(0.6) {
            let mut header = messages[target].data_header.to_vec();
            mutate_bytes(&mut rng, &mut header);
            messages[target].data_header = header.into();
        } else {
            let mut body = messages[target].data_body.to_vec();
            mutate_bytes(&mut rng, &mut body);
            messages[target].data_body = body.into();
        }
        streams.count(client::do_put_messages(&api, messages).await.map(|_| ()));
    }
    println!("Flight stream campaign: {:?}", streams.0);
    let exited = stack.exited();
    assert!(exited.is_empty(), "after the streams: {exited:?}");

    // Every run the campaigns started ends, with a code when it failed.
    let mut ended = BTreeMap::<String, usize>::new();
    let mut page_token = String::new();
    loop {
        let page = client::list_runs(
            &api,
            ListRunsRequest {
                page_size: 100,
                page_token: page_token.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("ListRuns");
        for listed in &page.runs {
            let run = client::run_to_end(&api, &listed.run_id, RUN_TIMEOUT).await;
            let state = run.state();
            assert!(
                matches!(state, RunState::Succeeded | RunState::Failed),
                "{run:?}"
            );
            let key = match &run.error {
                Some(error) => {
                    assert_ne!(error.code(), ErrorCode::Unspecified, "{run:?}");
                    // A panic that a boundary caught is counted apart: survived, but worth a
                    // look (the seed replays it).
                    let caught = if error.message.contains("panicked at") {
                        " (a caught panic)"
                    } else {
                        ""
                    };
                    format!("failed {:?}{caught}", error.code())
                }
                None => format!("{state:?}"),
            };
            *ended.entry(key).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    println!("runs started by the campaigns, as they ended: {ended:?}");
    let exited = stack.exited();
    assert!(exited.is_empty(), "after the runs: {exited:?}");

    let run = client::export_to_end(
        &api,
        &client::request_to(&moto, BUCKET, "after/", FileFormat::Csv),
        data::table(1_000, 500),
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    assert!(!s3::list(&s3, BUCKET, "after/").await.is_empty());
}
