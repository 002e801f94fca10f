//! The commands, a module each and all of the same shape: the command's arguments (a clap
//! `Args` or `Subcommand`) and `execute`, which runs it against the control plane and prints
//! what it found.
//!
//! - [`export`]: `filedrop export`, a file sent and its run followed to its end.
//! - [`runs`]: `filedrop runs`: list, get, watch, cancel, retry.
//! - [`destinations`]: `filedrop destinations` (create, list, get, delete) and
//!   `filedrop test-connection`.
//! - [`credentials`]: `filedrop credentials`: create-role, create-key, list, get, delete.
//!
//! This module holds what they share: the connection, the errors whose exit codes `classify`
//! tells apart, `--var` flags, and the list, get and delete of stored objects.

pub mod credentials;
pub mod destinations;
pub mod export;
pub mod runs;

use crate::api::{self, Authorized};
use crate::output::{Printer, Stored};
use anyhow::Context;
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

/// How a command ended, beyond success: each has its exit code.
#[derive(Debug)]
pub enum CommandOutcome {
    /// The run ended failed or cancelled, or the connection test found a problem.
    Failed,
}

/// Connects to the control plane at `server` with the API token, trusting the CA of
/// `ca_file` when there is one.
pub async fn connect(
    server: &str,
    token: Option<String>,
    ca_file: Option<&Path>,
) -> anyhow::Result<Authorized> {
    let token = token.context(
        "no API token: pass --token or set FILEDROP_TOKEN (operators make one with \
         `filedrop-control-plane token create --tenant <tenant>`)",
    )?;
    let ca = ca_file
        .map(|path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display())))
        .transpose()?;
    api::connect(server, &token, ca).await
}

/// A call the server refused: shown as the server's message, its code read by `classify`.
#[derive(Debug)]
pub struct Refused(tonic::Status);

impl Refused {
    /// The code the server answered with.
    pub fn code(&self) -> tonic::Code {
        self.0.code()
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for Refused {}

/// A gRPC failure as an error whose code `classify` reads, its message the server's.
pub fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(Refused(status))
}

/// The user pressed Ctrl-C: exit code 130, as a shell reports SIGINT.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Template variables given as `--var name=value` flags (the last of a name wins).
pub fn variables(flags: &[String]) -> anyhow::Result<HashMap<String, String>> {
    flags
        .iter()
        .map(|variable| {
            let (name, value) = variable
                .split_once('=')
                .with_context(|| format!("--var {variable:?}: write it as name=value"))?;
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Prints every stored object of a kind. `page` is asked for the page of a token (empty: the
/// first) and answers its objects and the next token (empty: the last page).
pub async fn list<T, F, Fut>(out: &Printer, mut page: F) -> anyhow::Result<()>
where
    T: Stored,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await.map_err(refused)?;
        all.extend(items.iter().map(T::json));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    out.list(&all, &format!("no {}s", T::NOUN), T::line);
    Ok(())
}

/// Prints the stored object a call answered with, its line of text after `lead` (`created `
/// after a create); an answer without one is an error.
pub fn show<T: Stored>(out: &Printer, answered: Option<T>, lead: &str) -> anyhow::Result<()> {
    let value = answered.with_context(|| format!("no {}", T::NOUN))?.json();
    out.show(&value, || format!("{lead}{}", T::line(&value)));
    Ok(())
}

/// Prints that the stored object `id` names is deleted.
pub fn deleted<T: Stored>(out: &Printer, id: &str) {
    out.show(&json!({"deleted": id}), || {
        format!("{} {id} deleted", T::NOUN)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|flag| flag.to_string()).collect()
    }

    #[test]
    fn a_command_without_a_token_is_refused_with_how_to_get_one() {
        let connecting = connect("http://127.0.0.1:50051", None, None);
        let error = futures::executor::block_on(connecting).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no API token: pass --token or set FILEDROP_TOKEN (operators make one with \
             `filedrop-control-plane token create --tenant <tenant>`)"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let ca_file = Path::new("/no/such/dir/ca.pem");
        let connecting = connect("https://127.0.0.1:50051", Some("t".into()), Some(ca_file));
        let error = futures::executor::block_on(connecting).unwrap_err();
        assert_eq!(error.to_string(), "cannot read /no/such/dir/ca.pem");
    }

    #[test]
    fn a_variable_is_split_at_its_first_equals_sign() {
        let variables = variables(&flags(&["filter=a=b", "empty="])).unwrap();
        assert_eq!(variables.len(), 2);
        assert_eq!(variables["filter"], "a=b");
        assert_eq!(variables["empty"], "");
    }

    #[test]
    fn the_last_value_of_a_variable_wins() {
        let variables = variables(&flags(&["day=monday", "day=tuesday"])).unwrap();
        assert_eq!(variables, HashMap::from([("day".into(), "tuesday".into())]));
    }

    #[test]
    fn a_variable_without_an_equals_sign_is_refused_and_shown_how_to_write_it() {
        let error = variables(&flags(&["day=monday", "region"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--var \"region\": write it as name=value"
        );
    }
}
