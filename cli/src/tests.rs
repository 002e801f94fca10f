//! The command line as a whole: its global flags, its top-level commands, and the exit code
//! and `--json` kind of each error.

use super::*;
use clap::error::ErrorKind;

#[test]
fn global_flags_are_taken_after_the_command_too() {
    let cli = Cli::try_parse_from([
        "filedrop",
        "runs",
        "list",
        "--json",
        "--server",
        "https://filedrop.example:443",
        "--token",
        "t0ken",
        "--ca-file",
        "/etc/filedrop/ca.pem",
    ])
    .unwrap();
    assert!(cli.json);
    assert_eq!(cli.server, "https://filedrop.example:443");
    assert_eq!(cli.token.as_deref(), Some("t0ken"));
    assert_eq!(
        cli.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/filedrop/ca.pem"))
    );
}

#[test]
fn test_connection_takes_the_destination_to_check() {
    let cli = Cli::try_parse_from(["filedrop", "test-connection", "orders"]).unwrap();
    assert!(!cli.json);
    assert!(
        matches!(&cli.command, Command::TestConnection { destination } if destination == "orders"),
        "{:?}",
        cli.command
    );
}

#[test]
fn a_command_line_without_a_command_is_refused_with_the_usage() {
    let error = Cli::try_parse_from(["filedrop", "--json"]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MissingSubcommand);
    assert!(error.to_string().contains("Usage: filedrop"), "{error}");
}

#[test]
fn an_unknown_command_is_refused_and_named() {
    let error = Cli::try_parse_from(["filedrop", "upload", "orders.csv"]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidSubcommand);
    assert!(
        error
            .to_string()
            .contains("unrecognized subcommand 'upload'"),
        "{error}"
    );
}

#[test]
fn test_connection_without_a_destination_is_refused_and_says_what_is_missing() {
    let error = Cli::try_parse_from(["filedrop", "test-connection"]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
    assert!(error.to_string().contains("<DESTINATION>"), "{error}");
}

fn refusal(code: Code) -> anyhow::Error {
    commands::refused(tonic::Status::new(code, "the server says no"))
}

#[test]
fn a_refused_token_exits_4() {
    assert_eq!(
        classify(&refusal(Code::Unauthenticated)),
        (4, "unauthenticated")
    );
    assert_eq!(
        classify(&refusal(Code::PermissionDenied)),
        (4, "unauthenticated")
    );
}

#[test]
fn a_request_the_server_refuses_exits_3() {
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::FailedPrecondition,
        Code::AlreadyExists,
        Code::Aborted,
        Code::ResourceExhausted,
        Code::Unimplemented,
    ] {
        assert_eq!(classify(&refusal(code)), (3, "refused"), "{code:?}");
    }
}

#[test]
fn a_server_that_fails_exits_5() {
    for code in [
        Code::Internal,
        Code::Unavailable,
        Code::Unknown,
        Code::DeadlineExceeded,
    ] {
        assert_eq!(classify(&refusal(code)), (5, "server"), "{code:?}");
    }
    let unreachable = anyhow::Error::new(api::Unreachable("http://127.0.0.1:1".to_owned()));
    assert_eq!(classify(&unreachable), (5, "unreachable"));
}

#[test]
fn ctrl_c_exits_130_as_a_shell_reports_sigint() {
    let interrupted = anyhow::Error::new(Interrupted("interrupted".to_owned()));
    assert_eq!(classify(&interrupted), (130, "interrupted"));
}

#[test]
fn any_other_error_is_the_inputs_and_exits_3() {
    assert_eq!(
        classify(&anyhow::anyhow!("orders.xlsx: cannot tell the format")),
        (3, "input")
    );
}

#[test]
fn an_error_keeps_its_exit_code_under_added_context() {
    let refused = refusal(Code::Unauthenticated).context("listing runs");
    assert_eq!(classify(&refused), (4, "unauthenticated"));
}

#[test]
fn a_refusal_reads_as_the_servers_message() {
    assert_eq!(refusal(Code::NotFound).to_string(), "the server says no");
}
