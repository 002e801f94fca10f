//! `filedrop destinations`: create, list, get and delete stored destinations; and
//! `filedrop test-connection`, which checks that one can be written.

use super::{CommandOutcome, deleted, list, refused, show, variables};
use crate::api::Authorized;
use crate::output::{Printer, run_error_json};
use anyhow::Context;
use clap::{Args, Subcommand};
use filedrop_proto::v1::destination_service_client::DestinationServiceClient;
use filedrop_proto::v1::{
    Compression, CreateDestinationRequest, CsvOptions, DeleteDestinationRequest, Destination,
    ExportRequest, FileFormat, GetDestinationRequest, ListDestinationsRequest, S3Destination,
    Split, SuccessFile, TestConnectionRequest, WriteMode,
};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// Store a destination under a name (its most used settings; every setting through
    /// `DestinationService.CreateDestination`).
    Create(Box<CreateDestinationArgs>),
    /// The tenant's stored destinations.
    List,
    /// One destination's settings.
    Get {
        /// Its name or id.
        destination: String,
    },
    /// Delete a destination.
    Delete {
        /// Its name or id.
        destination: String,
    },
}

/// The settings `filedrop destinations create` takes.
#[derive(Debug, Args)]
pub struct CreateDestinationArgs {
    /// The destination's name, which exports name.
    name: String,
    /// The bucket.
    #[arg(long)]
    bucket: String,
    /// The key prefix the files go under.
    #[arg(long, default_value = "")]
    prefix: String,
    /// The bucket's region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// An S3-compatible endpoint instead of Amazon S3's.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Path-style addressing (most S3-compatible stores want it).
    #[arg(long)]
    path_style: bool,
    /// The stored credential that writes there (`filedrop credentials create-…`).
    #[arg(long)]
    credential: String,
    /// csv, tsv, psv, json, ndjson or parquet.
    #[arg(long, default_value = "csv")]
    format: String,
    /// The filename template, e.g. `orders-{{now|format:'yyyy-MM-dd'}}-{{file_number}}.csv`.
    #[arg(long)]
    filename_template: String,
    /// Split the delivery into files of this many rows.
    #[arg(long)]
    rows_per_file: Option<u64>,
    /// Split the delivery into files of at most this many megabytes.
    #[arg(long)]
    megabytes_per_file: Option<u64>,
    /// none, gzip, zstd, bzip2, zip, tar or tgz (text formats).
    #[arg(long)]
    compression: Option<String>,
    /// A template variable's default, `name=value` (repeat for more).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// No success marker.
    #[arg(long)]
    no_success_file: bool,
    /// What a run does with objects already at its keys: replace (the default),
    /// fail-if-exists or keep-existing (both fail the run with OBJECT_EXISTS).
    #[arg(long, value_enum, default_value = "replace")]
    write_mode: WriteModeArg,
}

/// `--write-mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WriteModeArg {
    Replace,
    FailIfExists,
    KeepExisting,
}

impl From<WriteModeArg> for WriteMode {
    fn from(mode: WriteModeArg) -> Self {
        match mode {
            WriteModeArg::Replace => Self::Replace,
            WriteModeArg::FailIfExists => Self::FailIfExists,
            WriteModeArg::KeepExisting => Self::KeepExisting,
        }
    }
}

/// Runs the command.
pub async fn execute(
    channel: &Authorized,
    out: &Printer,
    command: DestinationsCommand,
) -> anyhow::Result<Option<CommandOutcome>> {
    let mut client = DestinationServiceClient::new(channel.clone());
    match command {
        DestinationsCommand::Create(args) => {
            let created = client
                .create_destination(CreateDestinationRequest {
                    name: args.name.clone(),
                    settings: Some(destination_settings(&args)?),
                })
                .await
                .map_err(refused)?
                .into_inner()
                .destination;
            show(out, created, "created ")?;
        }
        DestinationsCommand::List => {
            list(out, |page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_destinations(ListDestinationsRequest {
                            page_size: 100,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((page.destinations, page.next_page_token))
                }
            })
            .await?;
        }
        DestinationsCommand::Get { destination } => {
            let found = client
                .get_destination(GetDestinationRequest { destination })
                .await
                .map_err(refused)?
                .into_inner()
                .destination;
            show(out, found, "")?;
        }
        DestinationsCommand::Delete { destination } => {
            client
                .delete_destination(DeleteDestinationRequest {
                    destination: destination.clone(),
                })
                .await
                .map_err(refused)?;
            deleted::<Destination>(out, &destination);
        }
    }
    Ok(None)
}

/// The export settings of `filedrop destinations create`.
fn destination_settings(args: &CreateDestinationArgs) -> anyhow::Result<ExportRequest> {
    let format = match args.format.as_str() {
        "csv" => FileFormat::Csv,
        "tsv" => FileFormat::Tsv,
        "psv" => FileFormat::Psv,
        "json" => FileFormat::Json,
        "ndjson" => FileFormat::Ndjson,
        "parquet" => FileFormat::Parquet,
        other => anyhow::bail!("--format {other:?}: give csv, tsv, psv, json, ndjson or parquet"),
    };
    let compression = match args.compression.as_deref() {
        None => Compression::Unspecified,
        Some(name) => Compression::from_str_name(&format!("COMPRESSION_{}", name.to_uppercase()))
            .filter(|c| *c != Compression::Unspecified)
            .with_context(|| {
                format!("--compression {name:?}: give none, gzip, zstd, bzip2, zip, tar or tgz")
            })?,
    };
    let variables = variables(&args.variables)?;
    let delimited = matches!(format, FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv);
    Ok(ExportRequest {
        destination: Some(S3Destination {
            endpoint_url: args.endpoint_url.clone().unwrap_or_default(),
            region: args.region.clone(),
            force_path_style: args.path_style,
            bucket: args.bucket.clone(),
            prefix: args.prefix.clone(),
            credential_id: args.credential.clone(),
            write_mode: WriteMode::from(args.write_mode).into(),
            ..Default::default()
        }),
        format: format.into(),
        csv: delimited.then(|| CsvOptions {
            header: true,
            ..Default::default()
        }),
        filename_template: args.filename_template.clone(),
        split: (args.rows_per_file.is_some() || args.megabytes_per_file.is_some()).then(|| Split {
            rows_per_file: args.rows_per_file.unwrap_or_default(),
            megabytes_per_file: args.megabytes_per_file.unwrap_or_default(),
            ..Default::default()
        }),
        success_file: Some(SuccessFile {
            enabled: !args.no_success_file,
            ..Default::default()
        }),
        compression: compression.into(),
        variables,
        ..Default::default()
    })
}

/// Asks the control plane to check that `destination` can be written; a failed check is
/// [`CommandOutcome::Failed`].
pub async fn test_connection(
    channel: &Authorized,
    out: &Printer,
    destination: String,
) -> anyhow::Result<Option<CommandOutcome>> {
    let answer = DestinationServiceClient::new(channel.clone())
        .test_connection(TestConnectionRequest {
            stored_destination: destination.clone(),
            ..TestConnectionRequest::default()
        })
        .await
        .map_err(refused)?
        .into_inner();
    let value = json!({
        "destination": destination,
        "ok": answer.ok,
        "passed": answer.passed,
        "failed_check": answer.failed_check,
        "error": answer.error.as_ref().map(run_error_json),
    });
    out.show(&value, || {
        if answer.ok {
            format!("{destination}: ok ({})", answer.passed.join(", "))
        } else {
            format!(
                "{destination}: the {} check failed: {}",
                answer.failed_check,
                answer
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or_default()
            )
        }
    });
    Ok((!answer.ok).then_some(CommandOutcome::Failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    const CREATE: [&str; 10] = [
        "filedrop",
        "destinations",
        "create",
        "orders",
        "--bucket",
        "acme-exports",
        "--credential",
        "cred-1",
        "--filename-template",
        "orders-{{file_number}}.csv",
    ];

    fn destinations(line: &[&str]) -> DestinationsCommand {
        let line = [&["filedrop", "destinations"][..], line].concat();
        match Cli::try_parse_from(line).unwrap().command {
            Command::Destinations(command) => command,
            other => panic!("not a destinations command: {other:?}"),
        }
    }

    /// `destinations create orders` with the required flags and `more`.
    fn create(more: &[&str]) -> CreateDestinationArgs {
        match destinations(&[&CREATE[2..], more].concat()) {
            DestinationsCommand::Create(args) => *args,
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn a_destination_is_csv_with_a_header_and_a_success_file_unless_told_otherwise() {
        let args = create(&[]);
        assert_eq!(args.name, "orders");
        let settings = destination_settings(&args).unwrap();
        assert_eq!(
            settings,
            ExportRequest {
                destination: Some(S3Destination {
                    region: "us-east-1".to_owned(),
                    bucket: "acme-exports".to_owned(),
                    credential_id: "cred-1".to_owned(),
                    write_mode: WriteMode::Replace.into(),
                    ..S3Destination::default()
                }),
                format: FileFormat::Csv.into(),
                csv: Some(CsvOptions {
                    header: true,
                    ..CsvOptions::default()
                }),
                filename_template: "orders-{{file_number}}.csv".to_owned(),
                success_file: Some(SuccessFile {
                    enabled: true,
                    ..SuccessFile::default()
                }),
                ..ExportRequest::default()
            }
        );
    }

    #[test]
    fn every_setting_of_the_command_line_reaches_the_destination() {
        let args = create(&[
            "--prefix",
            "daily/",
            "--region",
            "eu-west-1",
            "--endpoint-url",
            "http://127.0.0.1:9000",
            "--path-style",
            "--format",
            "ndjson",
            "--rows-per-file",
            "100000",
            "--megabytes-per-file",
            "64",
            "--compression",
            "GZIP",
            "--var",
            "team=sales",
            "--no-success-file",
            "--write-mode",
            "fail-if-exists",
        ]);
        let settings = destination_settings(&args).unwrap();
        let s3 = settings.destination.clone().unwrap();
        assert_eq!(s3.prefix, "daily/");
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.endpoint_url, "http://127.0.0.1:9000");
        assert!(s3.force_path_style);
        assert_eq!(s3.write_mode(), WriteMode::FailIfExists);
        assert_eq!(settings.format(), FileFormat::Ndjson);
        assert_eq!(settings.csv, None);
        let split = settings.split.clone().unwrap();
        assert_eq!(
            (split.rows_per_file, split.megabytes_per_file),
            (100_000, 64)
        );
        assert_eq!(settings.compression(), Compression::Gzip);
        assert_eq!(settings.variables["team"], "sales");
        assert!(!settings.success_file.unwrap().enabled);
    }

    #[test]
    fn rows_per_file_alone_splits_the_delivery() {
        let settings = destination_settings(&create(&["--rows-per-file", "10"])).unwrap();
        let split = settings.split.unwrap();
        assert_eq!((split.rows_per_file, split.megabytes_per_file), (10, 0));
    }

    #[test]
    fn only_delimited_formats_get_a_header() {
        for (format, header) in [
            ("tsv", true),
            ("psv", true),
            ("json", false),
            ("parquet", false),
        ] {
            let settings = destination_settings(&create(&["--format", format])).unwrap();
            assert_eq!(settings.csv.is_some(), header, "{format}");
        }
    }

    #[test]
    fn keep_existing_is_a_write_mode() {
        let args = create(&["--write-mode", "keep-existing"]);
        let s3 = destination_settings(&args).unwrap().destination.unwrap();
        assert_eq!(s3.write_mode(), WriteMode::KeepExisting);
    }

    #[test]
    fn an_unknown_format_is_refused_with_the_formats_to_choose_from() {
        let error = destination_settings(&create(&["--format", "xlsx"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--format \"xlsx\": give csv, tsv, psv, json, ndjson or parquet"
        );
    }

    #[test]
    fn an_unknown_or_unspecified_compression_is_refused_with_the_ones_to_choose_from() {
        for name in ["rar", "unspecified"] {
            let error = destination_settings(&create(&["--compression", name])).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("--compression {name:?}: give none, gzip, zstd, bzip2, zip, tar or tgz")
            );
        }
    }

    #[test]
    fn a_default_variable_without_an_equals_sign_is_refused() {
        let error = destination_settings(&create(&["--var", "team"])).unwrap_err();
        assert_eq!(error.to_string(), "--var \"team\": write it as name=value");
    }

    #[test]
    fn an_unknown_write_mode_is_refused_with_the_modes_to_choose_from() {
        let line = [&CREATE[..], &["--write-mode", "sometimes"]].concat();
        let error = Cli::try_parse_from(line).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidValue);
        assert!(
            error
                .to_string()
                .contains("[possible values: replace, fail-if-exists, keep-existing]"),
            "{error}"
        );
    }

    #[test]
    fn a_destination_without_a_bucket_is_refused_and_says_what_is_missing() {
        let line = [&CREATE[..4], &CREATE[6..]].concat();
        assert!(!line.contains(&"--bucket"));
        let error = Cli::try_parse_from(line).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        assert!(error.to_string().contains("--bucket <BUCKET>"), "{error}");
    }

    #[test]
    fn destinations_are_got_and_deleted_by_name_or_id() {
        assert!(matches!(destinations(&["list"]), DestinationsCommand::List));
        assert!(matches!(
            destinations(&["get", "orders"]),
            DestinationsCommand::Get { destination } if destination == "orders"
        ));
        assert!(matches!(
            destinations(&["delete", "dest-1"]),
            DestinationsCommand::Delete { destination } if destination == "dest-1"
        ));
    }
}
