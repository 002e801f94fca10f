//! Testing a destination without sending data: the credential, the role, the bucket, and a
//! probe object written and deleted under the prefix. Failures carry the codes runs use.

use crate::S3Failure;
use crate::client::{ClientLimits, client_with};
use crate::credentials::{ServiceIdentity, credentials_for, verify_identity};
use crate::errors::classify;
use crate::objects::{ObjectOptions, stored_object, with_options};
use aws_sdk_s3::primitives::ByteStream;
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::DestinationAccess;
use filedrop_proto::v1::ErrorCode;

/// The checks of a connection test, in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// STS `GetCallerIdentity` with the identity that signs or assumes (on AWS, or when a
    /// role is assumed).
    Credentials,
    /// The role is assumed (STS `AssumeRole`).
    Role,
    /// The bucket exists (`HeadBucket`).
    Bucket,
    /// A probe object is written under the prefix (`PutObject`), stored as the destination's
    /// objects are (encryption, storage class, ACL, tags), so their permissions are checked too.
    Write,
    /// The probe object is deleted (`DeleteObject`).
    Delete,
}

impl Check {
    /// The check's name, as the API reports it.
    pub fn name(self) -> &'static str {
        match self {
            Check::Credentials => "credentials",
            Check::Role => "role",
            Check::Bucket => "bucket",
            Check::Write => "write",
            Check::Delete => "delete",
        }
    }
}

/// What a connection test found: the checks that passed, in order, and the failure that
/// stopped it, if any.
#[derive(Debug, Clone)]
pub struct ConnectionReport {
    /// The checks that passed.
    pub passed: Vec<Check>,
    /// The check that failed, and why.
    pub failed: Option<(Check, RunFailure)>,
}

/// Tests `access`; `probe_id` makes the probe object's key unique
/// (`<prefix>.filedrop-connection-test-<probe_id>`).
pub async fn test_connection(
    access: &DestinationAccess,
    identity: &ServiceIdentity,
    probe_id: &str,
) -> ConnectionReport {
    let mut report = ConnectionReport {
        passed: Vec::new(),
        failed: None,
    };
    if let Err((check, failure)) = run_checks(access, identity, probe_id, &mut report.passed).await
    {
        report.failed = Some((check, failure.failure));
    }
    report
}

async fn run_checks(
    access: &DestinationAccess,
    identity: &ServiceIdentity,
    probe_id: &str,
    passed: &mut Vec<Check>,
) -> Result<(), (Check, S3Failure)> {
    let destination = access.destination.clone().unwrap_or_default();
    let assumes_role = access.role_to_role.is_some()
        || destination
            .access_key
            .as_ref()
            .is_some_and(|key| !key.role_arn.is_empty());
    if destination.endpoint_url.is_empty() || assumes_role {
        verify_identity(access, identity)
            .await
            .map_err(|failure| (Check::Credentials, failure))?;
        passed.push(Check::Credentials);
    }
    let credentials = credentials_for(access, identity, "connection-test")
        .await
        .map_err(|failure| (Check::Role, failure))?;
    if assumes_role {
        passed.push(Check::Role);
    }
    let client = client_with(&destination, credentials.provider, &ClientLimits::default());
    let bucket = destination.bucket.as_str();
    let key = format!("{}.filedrop-connection-test-{probe_id}", destination.prefix);

    // HEAD answers carry no body: a 404 is a missing bucket, but a 403 may be a bad key as
    // well as a missing s3:ListBucket. The write below tells them apart.
    let head_denied = match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => false,
        Err(error) => {
            let failure = classify(&error, "HeadBucket", bucket, "");
            if failure.failure.code != ErrorCode::AccessDenied {
                return Err((Check::Bucket, failure));
            }
            true
        }
    };
    let options = ObjectOptions::new(&destination, "text/plain");
    with_options!(client.put_object().bucket(bucket).key(&key), options)
        .body(ByteStream::from_static(
            b"filedrop connection test; deleted at once\n",
        ))
        .send()
        .await
        .map_err(|error| (Check::Write, classify(&error, "PutObject", bucket, &key)))?;
    let deleted = client
        .delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|error| classify(&error, "DeleteObject", bucket, &key));
    if head_denied {
        return Err((
            Check::Bucket,
            S3Failure::permanent(RunFailure::new(
                ErrorCode::AccessDenied,
                format!(
                    "the credential can write to s3://{bucket} but may not call HeadBucket \
                     (s3:ListBucket on the bucket): grant it, so that a missing file is told \
                     apart from a denied one"
                ),
            )),
        ));
    }
    passed.push(Check::Bucket);
    passed.push(Check::Write);
    deleted.map_err(|failure| (Check::Delete, failure))?;
    passed.push(Check::Delete);
    Ok(())
}

/// Whether an object is at `key` in `access`'s bucket, asked with the credentials a run of
/// `run_id` would use (a role assumed as for the run): what `WRITE_MODE_FAIL_IF_EXISTS` looks
/// at before an export's data moves.
pub async fn object_exists(
    access: &DestinationAccess,
    identity: &ServiceIdentity,
    run_id: &str,
    key: &str,
) -> Result<bool, S3Failure> {
    let destination = access.destination.clone().unwrap_or_default();
    let credentials = credentials_for(access, identity, run_id).await?;
    let client = client_with(&destination, credentials.provider, &ClientLimits::default());
    Ok(stored_object(&client, &destination.bucket, key)
        .await?
        .is_some())
}
