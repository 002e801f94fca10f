//! A run's destination as the workers reach it: a stored credential resolved (a role grant,
//! or the stored access key opened), then sealed for the task messages.

use super::Planner;
use crate::store::{RunStore, StoreError, StoredCredential};
use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{DestinationAccess, RoleGrant};
use filedrop_proto::v1::{ErrorCode, S3Destination};
use filedrop_runtime::secrets::SecretBox;
use prost::Message;

/// `destination` with its stored credential (one of `tenant_id`'s), if it names one, resolved
/// for the workers: a role grant, or the stored access key opened with `secrets` (the result
/// is sealed again before it leaves the control plane).
pub async fn resolve_access(
    store: &RunStore,
    secrets: &SecretBox,
    tenant_id: &str,
    destination: &S3Destination,
) -> Result<Result<DestinationAccess, RunFailure>, StoreError> {
    let mut destination = destination.clone();
    let role_to_role = if destination.credential_id.is_empty() {
        None
    } else {
        match store
            .credential_of(tenant_id, &destination.credential_id)
            .await?
            .map(|credential| credential.kind)
        {
            Some(StoredCredential::RoleToRole {
                role_arn,
                external_id,
            }) => Some(RoleGrant {
                role_arn,
                external_id,
            }),
            Some(StoredCredential::AccessKey { sealed_key, .. }) => {
                match crate::credential_service::open_key(secrets, &sealed_key) {
                    Ok(key) => destination.access_key = Some(key),
                    Err(failure) => return Ok(Err(failure)),
                }
                None
            }
            None => {
                return Ok(Err(RunFailure::new(
                    ErrorCode::InvalidCredentials,
                    format!(
                        "destination.credential_id: there is no credential {:?}; create one \
                         with CredentialService.CreateCredential",
                        destination.credential_id
                    ),
                )));
            }
        }
    };
    Ok(Ok(DestinationAccess {
        destination: Some(destination),
        role_to_role,
    }))
}

impl Planner {
    /// The run's destination with what workers need to reach it (a stored credential
    /// resolved), sealed; kept in `sealed` for the rest of the planning step. A credential
    /// deleted since the export was accepted fails the run.
    pub(super) async fn sealed_access(
        &self,
        tenant_id: &str,
        spec: &ExportSpec,
        sealed: &mut Option<Vec<u8>>,
    ) -> Result<Result<Vec<u8>, RunFailure>, StoreError> {
        if let Some(sealed) = sealed {
            return Ok(Ok(sealed.clone()));
        }
        let access =
            match resolve_access(&self.store, &self.secrets, tenant_id, &spec.destination).await? {
                Ok(access) => access,
                Err(failure) => return Ok(Err(failure)),
            };
        let bytes = self.secrets.seal(&access.encode_to_vec());
        *sealed = Some(bytes.clone());
        Ok(Ok(bytes))
    }
}
