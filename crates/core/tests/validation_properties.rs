//! Properties of request validation against hostile input: it never panics, and whatever it
//! accepts can be sent — every value that becomes an HTTP header is a valid header value, the
//! endpoint is a URI the HTTP stack parses, and the object keys render.
//!
//! Seeds: proptest prints the failing input and keeps it in `proptest-regressions/`;
//! `PROPTEST_CASES` raises the count.

use chrono::{TimeZone, Utc};
use filedrop_core::credential_rules::{
    validate_access_key_id, validate_external_id, validate_role_arn, validate_secret_access_key,
    validate_session_token,
};
use filedrop_core::endpoint::{validate_endpoint_url, validate_region};
use filedrop_core::export::ExportSpec;
use filedrop_proto::v1::{
    AccessKeyCredential, CsvOptions, ExportRequest, FileFormat, S3Destination,
    ServerSideEncryption, Split, SuccessFile,
};
use proptest::prelude::*;

fn header_ok(text: &str) -> bool {
    http::HeaderValue::from_str(text).is_ok()
}

/// Text that is mostly plausible with hostile characters mixed in: control bytes, DEL,
/// separators, non-ASCII, and the characters each rule is about.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[A-Za-z0-9_./:@=+~-]{0,40}",
        "[A-Z0-9]{16,24}[\\x00-\\x1f\\x7f ]?[A-Z0-9]{0,4}",
        "(https?|ftp)://[a-z0-9.\\[\\]:@/?#%-]{0,30}",
        proptest::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
    ]
}

fn request_with(fields: &[String; 12]) -> ExportRequest {
    let [
        key_id,
        secret,
        token,
        region,
        endpoint,
        kms,
        role_arn,
        external_id,
        prefix,
        name,
        template,
        variable,
    ] = fields.clone();
    let mut request = ExportRequest {
        destination: Some(S3Destination {
            endpoint_url: endpoint,
            region,
            force_path_style: true,
            bucket: "exports".into(),
            prefix,
            name,
            access_key: Some(AccessKeyCredential {
                access_key_id: key_id,
                secret_access_key: secret,
                session_token: token,
                role_arn,
                external_id,
            }),
            server_side_encryption: ServerSideEncryption::AwsKms.into(),
            kms_key_id: kms,
            ..Default::default()
        }),
        format: FileFormat::Csv.into(),
        csv: Some(CsvOptions {
            header: true,
            ..Default::default()
        }),
        filename_template: template,
        split: Some(Split {
            rows_per_file: 50_000,
            ..Default::default()
        }),
        success_file: Some(SuccessFile {
            enabled: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    request.variables.insert("campaign".into(), variable);
    request
}

/// A field replaced by a plausible value, so that validation gets past it to the next.
fn plausible(index: usize) -> String {
    [
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "",
        "us-east-1",
        "http://127.0.0.1:9000",
        "alias/exports",
        "",
        "",
        "daily/",
        "orders",
        "orders-{{campaign}}-{{file_number}}.csv",
        "spring",
    ][index]
        .to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_credentials_fit_in_headers(text in hostile_text()) {
        if validate_access_key_id(&text).is_ok() {
            let authorization =
                format!("AWS4-HMAC-SHA256 Credential={text}/20260101/us-east-1/s3/aws4_request");
            prop_assert!(header_ok(&authorization));
        }
        if validate_session_token(&text).is_ok() {
            prop_assert!(header_ok(&text));
        }
        if validate_secret_access_key(&text).is_ok() {
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()));
        }
        if validate_region(&text).is_ok() {
            prop_assert!(header_ok(&text));
        }
        if validate_role_arn(&text).is_ok() || validate_external_id(&text).is_ok() {
            prop_assert!(header_ok(&text));
        }
    }

    #[test]
    fn accepted_endpoints_are_uris_with_a_host(text in hostile_text()) {
        if validate_endpoint_url(&text).is_ok() {
            let uri: http::Uri = text.parse().expect("an accepted endpoint parses as a URI");
            prop_assert!(uri.host().is_some_and(|host| !host.is_empty()));
            prop_assert!(matches!(uri.scheme_str(), Some("http" | "https")));
        }
    }

    /// Every field of a request that reaches a header, a URL or a key, hostile one at a time
    /// (the others plausible): validation never panics, and what it accepts is sendable.
    #[test]
    fn an_accepted_request_is_sendable(
        hostile in proptest::collection::vec(hostile_text(), 12),
        chosen in proptest::collection::vec(any::<bool>(), 12),
    ) {
        let fields: [String; 12] = std::array::from_fn(|index| {
            if chosen[index] { hostile[index].clone() } else { plausible(index) }
        });
        let Ok(spec) = ExportSpec::validate(request_with(&fields)) else {
            return Ok(());
        };
        let destination = &spec.destination;
        let key = destination.access_key.as_ref().expect("an access key");
        for value in [
            &key.access_key_id,
            &key.session_token,
            &key.role_arn,
            &key.external_id,
            &destination.region,
            &destination.kms_key_id,
        ] {
            prop_assert!(header_ok(value), "{value:?} is not a header value");
        }
        // Empty: AWS's own endpoint for the region.
        if !destination.endpoint_url.is_empty() {
            let uri: http::Uri = destination.endpoint_url.parse().expect("the endpoint parses");
            prop_assert!(uri.host().is_some());
        }
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let run_id = "0190a4c2-7b1e-7c3d-8e4f-123456789abc";
        for file_number in [1, 2, 9_999_999] {
            if let Ok(key) = spec.object_key(run_id, now, file_number, &Default::default()) {
                prop_assert!(!key.chars().any(char::is_control), "{key:?}");
            }
        }
        if let Ok(Some(key)) = spec.marker_key(run_id, now) {
            prop_assert!(!key.chars().any(char::is_control), "{key:?}");
        }
    }
}
