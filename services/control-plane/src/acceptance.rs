//! One way in: the checks an export's settings pass before any data moves, the same whether
//! they come with an export (`ingest`), are stored as a destination, or are tried by
//! `TestConnection` (`destination_service`):
//!
//! stored destination merged → settings validated ([`ExportSpec::validate`]) → PGP key read →
//! credential resolved ([`ValidatedSettings::with_access`]).
//!
//! An export checks its idempotency key between the last two steps: an export sent again
//! after its run delivered is answered with that run, whatever became of its credential.

use filedrop_core::export::{ExportSpec, validate_destination};
use filedrop_core::failure::RunFailure;
use filedrop_formats::pgp::PgpRecipient;
use filedrop_proto::jobs::v1::DestinationAccess;
use filedrop_proto::v1::{ErrorCode, ExportRequest, S3Destination};
use filedrop_runtime::secrets::SecretBox;
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::error::{OrInternal, Refused, invalid_argument};
use crate::messages;
use crate::planner::resolve_access;
use crate::store::{RunRecord, RunStore};

/// Where settings were given, for naming their fields in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    /// With an export (or a connection test): fields by their own names.
    Export,
    /// As a stored destination's settings: fields under `settings.`.
    StoredDestination,
}

impl Given {
    fn field(self, field: impl std::fmt::Display) -> String {
        match self {
            Self::Export => field.to_string(),
            Self::StoredDestination => format!("settings.{field}"),
        }
    }
}

/// The store and key acceptance reads credentials and stored destinations with.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance<'a> {
    /// Stored destinations and credentials.
    pub store: &'a RunStore,
    /// Opens stored access keys.
    pub secrets: &'a SecretBox,
}

/// Settings that passed every check but the credential's.
#[derive(Debug)]
pub struct ValidatedSettings {
    /// The settings as they are run (a stored destination's merged in).
    pub request: ExportRequest,
    /// What they mean.
    pub spec: ExportSpec,
    given: Given,
}

/// Settings that passed every check, with the access workers reach the destination by.
#[derive(Debug)]
pub struct ValidatedExport {
    /// The settings as they are run.
    pub request: ExportRequest,
    /// What they mean.
    pub spec: ExportSpec,
    /// The destination with its stored credential resolved.
    pub access: DestinationAccess,
}

impl Acceptance<'_> {
    /// `request` as it is run: when it names a stored destination, that destination's
    /// settings with the request's variables over its defaults.
    pub async fn with_stored_destination(
        &self,
        tenant: &str,
        request: ExportRequest,
    ) -> Result<ExportRequest, Status> {
        if request.stored_destination.is_empty() {
            return Ok(request);
        }
        let only_what_an_export_adds = ExportRequest {
            variables: request.variables.clone(),
            idempotency_key: request.idempotency_key.clone(),
            stored_destination: request.stored_destination.clone(),
            commit_at_stream_end: request.commit_at_stream_end,
            ..ExportRequest::default()
        };
        if request != only_what_an_export_adds {
            return Err(invalid_argument(
                ErrorCode::Unspecified,
                "stored_destination: an export to a stored destination carries only variables, \
                 idempotency_key and commit_at_stream_end; change the other settings on the \
                 destination",
            ));
        }
        let stored = self
            .store
            .destination_of(tenant, &request.stored_destination)
            .await
            .or_internal("reading the destination")?
            .ok_or_else(|| {
                invalid_argument(
                    ErrorCode::Unspecified,
                    format!(
                        "stored_destination: there is no destination {:?}; create it with \
                         DestinationService.CreateDestination",
                        request.stored_destination
                    ),
                )
            })?;
        let mut settings = crate::destination_service::settings_of(&stored)?;
        settings.variables.extend(request.variables);
        settings.idempotency_key = request.idempotency_key;
        settings.commit_at_stream_end = request.commit_at_stream_end;
        // The id, whatever the client named it by: the run's manifest is named after it.
        settings.stored_destination = stored.destination_id;
        Ok(settings)
    }

    /// An export's request, its stored destination merged in, checked but for its
    /// credential.
    pub async fn export(
        &self,
        tenant: &str,
        request: ExportRequest,
    ) -> Result<ValidatedSettings, Status> {
        let request = self.with_stored_destination(tenant, request).await?;
        validate(request, Given::Export)
    }

    /// A destination alone (a connection test), with its access.
    pub async fn destination(
        &self,
        tenant: &str,
        destination: Option<S3Destination>,
    ) -> Result<(S3Destination, DestinationAccess), Status> {
        let destination = validate_destination(destination).map_err(Refused::refused)?;
        let access = self.access(tenant, &destination, Given::Export).await?;
        Ok((destination, access))
    }

    /// The access workers reach `destination` by: its stored credential resolved.
    async fn access(
        &self,
        tenant: &str,
        destination: &S3Destination,
        given: Given,
    ) -> Result<DestinationAccess, Status> {
        resolve_access(self.store, self.secrets, tenant, destination)
            .await
            .or_internal("reading the credential")?
            .map_err(|failure| invalid_argument(failure.code, given.field(failure.message)))
    }
}

/// Settings checked but for their credential: valid as an export, with a PGP key that can be
/// read.
pub fn validate(settings: ExportRequest, given: Given) -> Result<ValidatedSettings, Status> {
    let spec = ExportSpec::validate(settings.clone())
        .map_err(|invalid| invalid_argument(invalid.code, given.field(&invalid)))?;
    if !spec.encoding.pgp_public_key.is_empty() {
        PgpRecipient::from_armored(&spec.encoding.pgp_public_key).map_err(|problem| {
            invalid_argument(
                ErrorCode::InvalidPgpKey,
                given.field(format!("pgp_public_key: {problem}")),
            )
        })?;
    }
    Ok(ValidatedSettings {
        request: settings,
        spec,
        given,
    })
}

impl ValidatedSettings {
    /// The last check: the credential the destination names is the tenant's, and can be
    /// opened.
    pub async fn with_access(
        self,
        acceptance: &Acceptance<'_>,
        tenant: &str,
    ) -> Result<ValidatedExport, Status> {
        let access = acceptance
            .access(tenant, &self.spec.destination, self.given)
            .await?;
        Ok(ValidatedExport {
            request: self.request,
            spec: self.spec,
            access,
        })
    }
}

/// An export as it was accepted, kept (sealed: its destination may hold a key) with its run:
/// the validated settings, and what was derived from them with the stream's schema. The
/// planner reads it back rather than validating the request again, so that a rule added in a
/// later release never fails a run an earlier one accepted.
#[derive(Debug, Serialize, Deserialize)]
pub struct AcceptedExport {
    /// The validated settings.
    pub spec: ExportSpec,
    /// See `EncodeTask.max_block_bytes`.
    pub max_block_bytes: u64,
}

/// [`AcceptedExport`] borrowed, to be sealed.
#[derive(Serialize)]
struct AcceptedExportRef<'a> {
    spec: &'a ExportSpec,
    max_block_bytes: u64,
}

impl AcceptedExport {
    /// `spec` with its derived block limit, sealed for the run's record.
    pub fn seal(
        secrets: &SecretBox,
        spec: &ExportSpec,
        max_block_bytes: u64,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let accepted = AcceptedExportRef {
            spec,
            max_block_bytes,
        };
        Ok(secrets.seal(&serde_json::to_vec(&accepted)?))
    }

    /// The export `run` was accepted with. A run accepted before that was kept has its request
    /// validated again, and its block limit derived again.
    pub fn of_run(secrets: &SecretBox, run: &RunRecord) -> Result<Self, RunFailure> {
        if let Some(sealed) = &run.sealed_spec {
            let json = secrets
                .open(sealed)
                .map_err(|error| RunFailure::internal(error.to_string()))?;
            return serde_json::from_slice(&json).map_err(|error| {
                RunFailure::internal(format!("the stored export is corrupt: {error}"))
            });
        }
        let spec = ExportSpec::validate(request_of(secrets, run)?)
            .map_err(|invalid| RunFailure::new(invalid.code, invalid.to_string()))?;
        let max_block_bytes = match spec.bytes_per_file {
            None => 0,
            Some(_) => {
                let bound = messages::size_bound(&spec, &run.arrow_schema)?;
                messages::max_block_bytes(&spec, &bound)?
            }
        };
        Ok(Self {
            spec,
            max_block_bytes,
        })
    }
}

/// The request `run` was sent with (its stored destination merged in): opened and decoded.
pub fn request_of(secrets: &SecretBox, run: &RunRecord) -> Result<ExportRequest, RunFailure> {
    let plain = secrets
        .open(&run.sealed_request)
        .map_err(|error| RunFailure::internal(error.to_string()))?;
    ExportRequest::decode(plain.as_slice())
        .map_err(|error| RunFailure::internal(format!("stored request is corrupt: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::request;
    use tonic::Code;

    fn refused(settings: ExportRequest, given: Given) -> Status {
        validate(settings, given).expect_err("refused")
    }

    #[test]
    fn valid_settings_pass_as_they_were_given() {
        let validated = validate(request(), Given::Export).expect("valid");
        assert_eq!(validated.request, request());
        assert_eq!(validated.spec.rows_per_file, Some(50_000));
    }

    #[test]
    fn a_refusal_names_the_field_where_it_was_given() {
        let mut settings = request();
        settings.filename_template = "orders-{{nope}}.csv".into();
        let export = refused(settings.clone(), Given::Export);
        assert_eq!(export.code(), Code::InvalidArgument);
        assert!(
            export.message().starts_with("filename_template"),
            "{export:?}"
        );
        let stored = refused(settings, Given::StoredDestination);
        assert!(
            stored.message().starts_with("settings.filename_template"),
            "{stored:?}"
        );
    }

    #[test]
    fn a_pgp_key_that_cannot_be_read_is_refused_before_any_data_moves() {
        let mut settings = request();
        settings.pgp_public_key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnot a key\n".into();
        let status = refused(settings, Given::StoredDestination);
        assert!(
            status.message().starts_with("settings.pgp_public_key: "),
            "{status:?}"
        );
        assert_eq!(
            status.metadata().get(crate::error::ERROR_CODE_KEY).unwrap(),
            ErrorCode::InvalidPgpKey.as_str_name()
        );
    }

    fn accepted_run(
        secrets: &SecretBox,
        request: &ExportRequest,
        spec: Option<&[u8]>,
    ) -> RunRecord {
        RunRecord {
            sealed_request: secrets.seal(&request.encode_to_vec()),
            sealed_spec: spec.map(<[u8]>::to_vec),
            ..crate::fixtures::run(filedrop_proto::v1::RunState::Encoding, Some(1))
        }
    }

    #[test]
    fn a_run_keeps_the_export_it_was_accepted_with_whatever_the_rules_say_later() {
        let secrets = SecretBox::from_key(&[7; 32]);
        let accepted = validate(request(), Given::Export).expect("valid").spec;
        let sealed = AcceptedExport::seal(&secrets, &accepted, 4_096).expect("sealed");
        // A request today's rules refuse: the run reads back what was accepted, as it was.
        let refused_now = ExportRequest::default();
        assert!(ExportSpec::validate(refused_now.clone()).is_err());
        let run = accepted_run(&secrets, &refused_now, Some(&sealed));
        let read = AcceptedExport::of_run(&secrets, &run).expect("the accepted export");
        assert_eq!(read.max_block_bytes, 4_096);
        assert_eq!(format!("{:?}", read.spec), format!("{accepted:?}"));
        let key = |spec: &ExportSpec| {
            spec.object_key(
                crate::fixtures::RUN,
                chrono::DateTime::UNIX_EPOCH,
                3,
                &Default::default(),
            )
        };
        assert_eq!(key(&read.spec), key(&accepted));
        // Sealed with the control plane's key (the destination may hold a secret): another
        // key cannot read it.
        let other = SecretBox::from_key(&[8; 32]);
        assert!(AcceptedExport::of_run(&other, &run).is_err());
    }

    #[test]
    fn a_run_accepted_before_the_export_was_kept_is_validated_again() {
        let secrets = SecretBox::from_key(&[7; 32]);
        let run = accepted_run(&secrets, &request(), None);
        let read = AcceptedExport::of_run(&secrets, &run).expect("validated again");
        assert_eq!(
            (read.spec.rows_per_file, read.max_block_bytes),
            (Some(50_000), 0)
        );
        let run = accepted_run(&secrets, &ExportRequest::default(), None);
        assert!(AcceptedExport::of_run(&secrets, &run).is_err());
    }
}
