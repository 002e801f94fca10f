//! `filedrop credentials`: store an iam-role-to-role credential or an access key; list, get and
//! delete stored credentials (their secrets shown only as set or unset).

use super::{CommandOutcome, deleted, list, refused, show};
use crate::api::Authorized;
use crate::output::{Printer, credential_json};
use anyhow::Context;
use clap::Subcommand;
use filedrop_proto::v1::credential::Kind;
use filedrop_proto::v1::credential_service_client::CredentialServiceClient;
use filedrop_proto::v1::{
    AccessKeyCredential, CreateCredentialRequest, Credential, DeleteCredentialRequest,
    GetCredentialRequest, ListCredentialsRequest, RoleToRoleRequest, create_credential_request,
};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Create an iam-role-to-role credential: prints the External ID and the trust policy
    /// the role's owner adds to the role.
    CreateRole {
        /// The role's ARN, e.g. `arn:aws:iam::123456789012:role/filedrop-exports`.
        #[arg(long)]
        role_arn: String,
    },
    /// Store an access key (iam-credential). The secret is read from
    /// FILEDROP_SECRET_ACCESS_KEY, or from the first line of standard input.
    CreateKey {
        /// The access key id.
        #[arg(long)]
        access_key_id: String,
    },
    /// The tenant's credentials (secrets are shown as set or unset, never their values).
    List,
    /// One credential.
    Get {
        /// Its id.
        credential_id: String,
    },
    /// Delete a credential.
    Delete {
        /// Its id.
        credential_id: String,
    },
}

/// Runs the command.
pub async fn execute(
    channel: &Authorized,
    out: &Printer,
    command: CredentialsCommand,
) -> anyhow::Result<Option<CommandOutcome>> {
    let mut client = CredentialServiceClient::new(channel.clone());
    match command {
        CredentialsCommand::CreateRole { role_arn } => {
            let created = client
                .create_credential(CreateCredentialRequest {
                    kind: Some(create_credential_request::Kind::RoleToRole(
                        RoleToRoleRequest { role_arn },
                    )),
                })
                .await
                .map_err(refused)?
                .into_inner()
                .credential
                .context("no credential")?;
            let mut value = credential_json(&created);
            if let Some(Kind::RoleToRole(role)) = &created.kind {
                value["trust_policy_json"] = json!(role.trust_policy_json);
                out.show(&value, || {
                    format!(
                        "credential {}\nExternal ID: {}\nAdd this trust policy to the role:\n{}",
                        created.credential_id, role.external_id, role.trust_policy_json
                    )
                });
            }
        }
        CredentialsCommand::CreateKey { access_key_id } => {
            let secret = secret_access_key()?;
            let created = client
                .create_credential(CreateCredentialRequest {
                    kind: Some(create_credential_request::Kind::AccessKey(
                        AccessKeyCredential {
                            access_key_id,
                            secret_access_key: secret,
                            ..Default::default()
                        },
                    )),
                })
                .await
                .map_err(refused)?
                .into_inner()
                .credential;
            show(out, created, "created ")?;
        }
        CredentialsCommand::List => {
            list(out, |page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_credentials(ListCredentialsRequest {
                            page_size: 100,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((page.credentials, page.next_page_token))
                }
            })
            .await?;
        }
        CredentialsCommand::Get { credential_id } => {
            let found = client
                .get_credential(GetCredentialRequest { credential_id })
                .await
                .map_err(refused)?
                .into_inner()
                .credential;
            show(out, found, "")?;
        }
        CredentialsCommand::Delete { credential_id } => {
            client
                .delete_credential(DeleteCredentialRequest {
                    credential_id: credential_id.clone(),
                })
                .await
                .map_err(refused)?;
            deleted::<Credential>(out, &credential_id);
        }
    }
    Ok(None)
}

/// The secret of `create-key`: FILEDROP_SECRET_ACCESS_KEY, or the first line of standard
/// input.
fn secret_access_key() -> anyhow::Result<String> {
    let secret = match std::env::var("FILEDROP_SECRET_ACCESS_KEY") {
        Ok(secret) => secret,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the secret access key from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(
        !secret.is_empty(),
        "no secret access key: set FILEDROP_SECRET_ACCESS_KEY or write it on standard input"
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn credentials(line: &[&str]) -> CredentialsCommand {
        let cli = Cli::try_parse_from([&["filedrop", "credentials"][..], line].concat()).unwrap();
        match cli.command {
            Command::Credentials(command) => command,
            other => panic!("not a credentials command: {other:?}"),
        }
    }

    #[test]
    fn credentials_are_created_from_a_role_or_an_access_key_id() {
        let arn = "arn:aws:iam::123456789012:role/filedrop-exports";
        assert!(matches!(
            credentials(&["create-role", "--role-arn", arn]),
            CredentialsCommand::CreateRole { role_arn } if role_arn == arn
        ));
        assert!(matches!(
            credentials(&["create-key", "--access-key-id", "AKIAEXAMPLE"]),
            CredentialsCommand::CreateKey { access_key_id } if access_key_id == "AKIAEXAMPLE"
        ));
    }

    #[test]
    fn credentials_are_listed_got_and_deleted_by_id() {
        assert!(matches!(credentials(&["list"]), CredentialsCommand::List));
        assert!(matches!(
            credentials(&["get", "cred-1"]),
            CredentialsCommand::Get { credential_id } if credential_id == "cred-1"
        ));
        assert!(matches!(
            credentials(&["delete", "cred-1"]),
            CredentialsCommand::Delete { credential_id } if credential_id == "cred-1"
        ));
    }

    #[test]
    fn a_secret_given_on_the_command_line_is_refused() {
        let error = Cli::try_parse_from([
            "filedrop",
            "credentials",
            "create-key",
            "--access-key-id",
            "AKIAEXAMPLE",
            "--secret-access-key",
            "shh",
        ])
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownArgument);
        assert!(
            error
                .to_string()
                .contains("unexpected argument '--secret-access-key'"),
            "{error}"
        );
    }

    #[test]
    fn a_role_credential_without_its_role_is_refused_and_says_what_is_missing() {
        let error = Cli::try_parse_from(["filedrop", "credentials", "create-role"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        assert!(
            error.to_string().contains("--role-arn <ROLE_ARN>"),
            "{error}"
        );
    }
}
