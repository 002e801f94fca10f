//! `CredentialService`: a tenant's stored credentials.
//!
//! - iam-role-to-role: filedrop generates the External ID (never the caller: a customer must not
//!   be able to pick another customer's) and answers with the trust policy the bucket owner
//!   gives the role.
//! - iam-credential: an access key, sealed whole with the secrets key before it is stored; the
//!   API shows its key id, its role, and whether each secret is set, never a secret.

use crate::auth::tenant_of;
use crate::error::OrInternal;
use crate::store::{CredentialRecord, RunStore, StoredCredential, now_ms};
use crate::wire;
use filedrop_core::credential_rules::{external_id_from, trust_policy_json, validate_role_arn};
use filedrop_core::export::validate_access_key;
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::credential_service_server::CredentialService;
use filedrop_proto::v1::{
    AccessKeyCredential, CreateCredentialRequest, CreateCredentialResponse, Credential,
    DeleteCredentialRequest, DeleteCredentialResponse, GetCredentialRequest, GetCredentialResponse,
    ListCredentialsRequest, ListCredentialsResponse, RoleToRole, StoredAccessKey,
    create_credential_request, credential,
};
use filedrop_runtime::secrets::SecretBox;
use filedrop_s3::credentials::ServiceIdentity;
use prost::Message;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The credential service.
#[derive(Debug, Clone)]
pub struct CredentialEndpoint {
    store: RunStore,
    secrets: SecretBox,
    identity: Arc<ServiceIdentity>,
}

impl CredentialEndpoint {
    /// A credential service over `store`, sealing access keys with `secrets` and naming
    /// `identity` in trust policies.
    pub fn new(store: RunStore, secrets: SecretBox, identity: Arc<ServiceIdentity>) -> Self {
        Self {
            store,
            secrets,
            identity,
        }
    }

    /// The wire form of a stored credential, with the setup its bucket owner needs.
    async fn to_proto(&self, record: CredentialRecord) -> Result<Credential, Status> {
        let kind = match record.kind {
            StoredCredential::RoleToRole {
                role_arn,
                external_id,
            } => {
                let principal = self
                    .identity
                    .principal_arn()
                    .await
                    .map_err(|failure| Status::failed_precondition(failure.message))?;
                credential::Kind::RoleToRole(RoleToRole {
                    trust_policy_json: trust_policy_json(&principal, &external_id),
                    role_arn,
                    external_id,
                    filedrop_principal_arn: principal,
                })
            }
            StoredCredential::AccessKey {
                access_key_id,
                sealed_key,
            } => {
                let key = open_key(&self.secrets, &sealed_key)
                    .or_internal("opening a stored access key")?;
                credential::Kind::AccessKey(StoredAccessKey {
                    access_key_id,
                    secret_access_key_set: !key.secret_access_key.is_empty(),
                    session_token_set: !key.session_token.is_empty(),
                    role_arn: key.role_arn,
                    external_id_set: !key.external_id.is_empty(),
                })
            }
        };
        Ok(Credential {
            credential_id: record.credential_id,
            created_at: Some(wire::timestamp(record.created_at)),
            kind: Some(kind),
        })
    }
}

/// A stored access key, opened; the failure a run gets when it cannot be (for the operators:
/// the secrets key is not the one the key was sealed with).
pub fn open_key(secrets: &SecretBox, sealed_key: &[u8]) -> Result<AccessKeyCredential, RunFailure> {
    let plain = secrets.open(sealed_key).map_err(|error| {
        RunFailure::internal(format!(
            "a stored access key could not be opened ({error}): the control plane's \
             secrets.key_file must be the one the credential was stored with"
        ))
    })?;
    AccessKeyCredential::decode(plain.as_slice())
        .map_err(|error| RunFailure::internal(format!("a stored access key is corrupt ({error})")))
}

#[tonic::async_trait]
impl CredentialService for CredentialEndpoint {
    async fn create_credential(
        &self,
        request: Request<CreateCredentialRequest>,
    ) -> Result<Response<CreateCredentialResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let kind = match request.into_inner().kind {
            Some(create_credential_request::Kind::RoleToRole(role)) => {
                validate_role_arn(&role.role_arn).map_err(|problem| {
                    Status::invalid_argument(format!("role_to_role.role_arn: {problem}"))
                })?;
                StoredCredential::RoleToRole {
                    role_arn: role.role_arn,
                    external_id: external_id_from(uuid::Uuid::new_v4().into_bytes()),
                }
            }
            Some(create_credential_request::Kind::AccessKey(key)) => {
                validate_access_key(&key).map_err(|invalid| {
                    // The rules are an export's; the fields here are the request's own.
                    Status::invalid_argument(
                        invalid
                            .to_string()
                            .replace("destination.access_key", "access_key"),
                    )
                })?;
                StoredCredential::AccessKey {
                    access_key_id: key.access_key_id.clone(),
                    sealed_key: self.secrets.seal(&key.encode_to_vec()),
                }
            }
            None => {
                return Err(Status::invalid_argument(
                    "kind: give role_to_role (the bucket owner's role_arn) or access_key",
                ));
            }
        };
        let record = CredentialRecord {
            credential_id: uuid::Uuid::now_v7().to_string(),
            kind,
            created_at: now_ms(),
        };
        // The wire form first: a credential whose trust policy cannot be told is not stored.
        let credential = self.to_proto(record.clone()).await?;
        self.store
            .add_credential(&tenant, &record)
            .await
            .or_internal("storing the credential")?;
        tracing::info!(credential_id = %record.credential_id, "credential created");
        Ok(Response::new(CreateCredentialResponse {
            credential: Some(credential),
        }))
    }

    async fn get_credential(
        &self,
        request: Request<GetCredentialRequest>,
    ) -> Result<Response<GetCredentialResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let id = request.into_inner().credential_id;
        let record = self
            .store
            .credential_of(&tenant, &id)
            .await
            .or_internal("reading the credential")?
            .ok_or_else(|| not_found(&id))?;
        Ok(Response::new(GetCredentialResponse {
            credential: Some(self.to_proto(record).await?),
        }))
    }

    async fn list_credentials(
        &self,
        request: Request<ListCredentialsRequest>,
    ) -> Result<Response<ListCredentialsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let request = request.into_inner();
        let page_size = wire::page_size(request.page_size)?;
        let records = self
            .store
            .credentials_of(
                &tenant,
                wire::page_start(&request.page_token),
                page_size + 1,
            )
            .await
            .or_internal("listing credentials")?;
        let (records, next_page_token) =
            wire::page(records, page_size, |record| &record.credential_id);
        let mut credentials = Vec::with_capacity(records.len());
        for record in records {
            credentials.push(self.to_proto(record).await?);
        }
        Ok(Response::new(ListCredentialsResponse {
            credentials,
            next_page_token,
        }))
    }

    async fn delete_credential(
        &self,
        request: Request<DeleteCredentialRequest>,
    ) -> Result<Response<DeleteCredentialResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let id = request.into_inner().credential_id;
        let deleted = self
            .store
            .delete_credential_of(&tenant, &id)
            .await
            .or_internal("deleting the credential")?;
        if !deleted {
            return Err(not_found(&id));
        }
        tracing::info!(credential_id = %id, "credential deleted");
        Ok(Response::new(DeleteCredentialResponse {}))
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("credential {id:?} not found"))
}
