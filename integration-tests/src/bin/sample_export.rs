//! `filedrop-sample-export`: streams the generated sample table (1,000,000 rows by default) to
//! a running control plane, follows the run to its end, and lists what was delivered.
//! The quickstart (`deploy/local/quickstart.sh`) runs it against the local stack.

use clap::Parser;
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{FileFormat, RunState};
use std::time::{Duration, Instant};

/// Stream a sample table to filedrop and show the delivered files.
#[derive(Debug, Parser)]
struct Args {
    /// The control plane's URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    control_plane: String,
    /// The API token (from `filedrop-control-plane token create`).
    #[arg(long, env = "FILEDROP_TOKEN", hide_env_values = true)]
    token: String,
    /// The S3 endpoint the files go to.
    #[arg(long, env = "MOTO_ENDPOINT")]
    endpoint: String,
    /// Access key id of the destination.
    #[arg(long, env = "MOTO_ACCESS_KEY_ID")]
    access_key_id: String,
    /// Secret access key of the destination (read from the environment; never printed).
    #[arg(long, env = "MOTO_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    /// The bucket.
    #[arg(long, default_value = "filedrop-demo")]
    bucket: String,
    /// Key prefix.
    #[arg(long, default_value = "quickstart/")]
    prefix: String,
    /// Rows to send.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Rows per delivered file.
    #[arg(long, default_value_t = 250_000)]
    rows_per_file: u64,
    /// `parquet` or `csv`.
    #[arg(long, default_value = "parquet")]
    format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let format = match args.format.as_str() {
        "csv" => FileFormat::Csv,
        "parquet" => FileFormat::Parquet,
        other => anyhow::bail!("--format must be parquet or csv, not {other:?}"),
    };
    let mut request = client::request(
        &args.endpoint,
        &args.bucket,
        &args.prefix,
        &args.access_key_id,
        &args.secret_access_key,
        format,
    );
    // Parquet goes to a directory of parts named by the template; CSV files are numbered.
    request.filename_template = if format == FileFormat::Parquet {
        "orders-{{now|format:'yyyy-MM-dd'}}".to_owned()
    } else {
        "orders-{{now|format:'yyyy-MM-dd'}}-{{file_number}}.csv".to_owned()
    };
    let request = client::split(request, args.rows_per_file);

    println!(
        "sending {} rows (integers, floats, strings with commas, quotes, newlines and non-ASCII, \
         timestamps, nulls) to {} ...",
        args.rows, args.control_plane
    );
    let api = client::Api::new(args.control_plane.clone(), args.token.clone());
    let started = Instant::now();
    let accepted = client::export(&api, &request, data::table(args.rows, 65_536))
        .await
        .map_err(|status| anyhow::anyhow!("export refused: {}", status.message()))?;
    println!(
        "run {} accepted: {} rows staged",
        accepted.run_id, accepted.rows
    );
    let states = client::watch_to_end(&api, &accepted.run_id, Duration::from_secs(900)).await;
    let mut last_state = None;
    for run in &states {
        if last_state != Some(run.state()) {
            println!(
                "  {:<10} files {}/{}",
                run.state()
                    .as_str_name()
                    .trim_start_matches("RUN_STATE_")
                    .to_lowercase(),
                run.files_uploaded,
                run.files
            );
            last_state = Some(run.state());
        }
    }
    let run = states.last().expect("a watch yields the run");
    if run.state() != RunState::Succeeded {
        let error = run.error.clone().unwrap_or_default();
        anyhow::bail!(
            "run {} {:?}: {:?} {}",
            run.run_id,
            run.state(),
            error.code(),
            error.message
        );
    }
    println!("delivered in {:.1} s\n", started.elapsed().as_secs_f64());

    let s3 = s3::client(&args.endpoint, &args.access_key_id, &args.secret_access_key);
    println!("objects in s3://{}/{} :", args.bucket, args.prefix);
    for object in s3::list(&s3, &args.bucket, &args.prefix).await {
        println!(
            "  {:>12} bytes  {}  {}",
            object.size, object.last_modified, object.key
        );
    }
    Ok(())
}
