//! `DestinationService`: a destination tested without sending data.

use crate::error::internal;
use crate::planner::resolve_access;
use crate::store::RunStore;
use filedrop_core::export::validate_destination;
use filedrop_proto::v1::destination_service_server::DestinationService;
use filedrop_proto::v1::{TestConnectionRequest, TestConnectionResponse};
use filedrop_runtime::secrets::SecretBox;
use filedrop_s3::credentials::ServiceIdentity;
use filedrop_s3::probe::test_connection;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The destination service.
#[derive(Debug, Clone)]
pub struct DestinationEndpoint {
    store: RunStore,
    secrets: SecretBox,
    identity: Arc<ServiceIdentity>,
}

impl DestinationEndpoint {
    /// A destination service resolving stored credentials in `store` (access keys opened with
    /// `secrets`).
    pub fn new(store: RunStore, secrets: SecretBox, identity: Arc<ServiceIdentity>) -> Self {
        Self {
            store,
            secrets,
            identity,
        }
    }
}

#[tonic::async_trait]
impl DestinationService for DestinationEndpoint {
    async fn test_connection(
        &self,
        request: Request<TestConnectionRequest>,
    ) -> Result<Response<TestConnectionResponse>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let destination = validate_destination(request.into_inner().destination)
            .map_err(|invalid| crate::error::invalid_argument(invalid.code, invalid.to_string()))?;
        let access = resolve_access(&self.store, &self.secrets, &tenant, &destination)
            .await
            .map_err(|error| internal("reading the credential", &error))?
            .map_err(|failure| crate::error::invalid_argument(failure.code, failure.message))?;
        let probe_id = uuid::Uuid::new_v4().simple().to_string();
        let report = test_connection(&access, &self.identity, &probe_id).await;
        let passed = report
            .passed
            .iter()
            .map(|check| check.name().to_owned())
            .collect();
        let response = match report.failed {
            None => TestConnectionResponse {
                ok: true,
                passed,
                failed_check: String::new(),
                error: None,
            },
            Some((check, failure)) => {
                tracing::info!(
                    bucket = %destination.bucket,
                    check = check.name(),
                    code = ?failure.code,
                    "connection test failed"
                );
                TestConnectionResponse {
                    ok: false,
                    passed,
                    failed_check: check.name().to_owned(),
                    error: Some(failure.to_proto()),
                }
            }
        };
        Ok(Response::new(response))
    }
}
