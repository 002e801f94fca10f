//! `CredentialService`: iam-role-to-role credentials. filedrop generates each one's External
//! ID (never the caller: a customer must not be able to pick another customer's) and answers
//! with the trust policy the bucket owner gives the role.

use crate::auth::tenant_of;
use crate::error::internal;
use crate::store::{RoleCredentialRecord, RunStore, now_ms};
use filedrop_core::credential::{external_id_from, trust_policy_json, validate_role_arn};
use filedrop_proto::v1::credential_service_server::CredentialService;
use filedrop_proto::v1::{
    CreateCredentialRequest, CreateCredentialResponse, Credential, GetCredentialRequest,
    GetCredentialResponse, RoleToRole, create_credential_request, credential,
};
use filedrop_s3::credentials::ServiceIdentity;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The credential service.
#[derive(Debug, Clone)]
pub struct CredentialEndpoint {
    store: RunStore,
    identity: Arc<ServiceIdentity>,
}

impl CredentialEndpoint {
    /// A credential service over `store`, naming `identity` in trust policies.
    pub fn new(store: RunStore, identity: Arc<ServiceIdentity>) -> Self {
        Self { store, identity }
    }

    /// The wire form of a stored credential, with the setup its bucket owner needs.
    async fn to_proto(&self, record: RoleCredentialRecord) -> Result<Credential, Status> {
        let principal = self
            .identity
            .principal_arn()
            .await
            .map_err(|failure| Status::failed_precondition(failure.message))?;
        Ok(Credential {
            credential_id: record.credential_id,
            created_at: Some(prost_types::Timestamp {
                seconds: record.created_at.div_euclid(1000),
                nanos: (record.created_at.rem_euclid(1000) * 1_000_000) as i32,
            }),
            kind: Some(credential::Kind::RoleToRole(RoleToRole {
                trust_policy_json: trust_policy_json(&principal, &record.external_id),
                role_arn: record.role_arn,
                external_id: record.external_id,
                filedrop_principal_arn: principal,
            })),
        })
    }
}

#[tonic::async_trait]
impl CredentialService for CredentialEndpoint {
    async fn create_credential(
        &self,
        request: Request<CreateCredentialRequest>,
    ) -> Result<Response<CreateCredentialResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let Some(create_credential_request::Kind::RoleToRole(role)) = request.into_inner().kind
        else {
            return Err(Status::invalid_argument(
                "kind: give role_to_role with the bucket owner's role_arn",
            ));
        };
        validate_role_arn(&role.role_arn).map_err(|problem| {
            Status::invalid_argument(format!("role_to_role.role_arn: {problem}"))
        })?;
        let record = RoleCredentialRecord {
            credential_id: uuid::Uuid::now_v7().to_string(),
            role_arn: role.role_arn,
            external_id: external_id_from(uuid::Uuid::new_v4().into_bytes()),
            created_at: now_ms(),
        };
        // The principal first: a credential whose trust policy cannot be told is not stored.
        let credential = self.to_proto(record.clone()).await?;
        self.store
            .add_role_credential(&tenant, &record)
            .await
            .map_err(|error| internal("storing the credential", &error))?;
        tracing::info!(credential_id = %record.credential_id, role_arn = %record.role_arn, "credential created");
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
            .role_credential_of(&tenant, &id)
            .await
            .map_err(|error| internal("reading the credential", &error))?
            .ok_or_else(|| Status::not_found(format!("credential {id:?} not found")))?;
        Ok(Response::new(GetCredentialResponse {
            credential: Some(self.to_proto(record).await?),
        }))
    }
}
