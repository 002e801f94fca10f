//! Where the files go: the bucket, region and endpoint of a destination, its prefix and name,
//! the settings of the objects it receives, and the credentials that reach it.

use super::InvalidRequest;
use crate::bucket::validate_bucket_name;
use crate::credential_rules::{
    validate_access_key_id, validate_external_id, validate_role_arn, validate_secret_access_key,
    validate_session_token,
};
use crate::endpoint::{validate_endpoint_url, validate_region};
use filedrop_proto::v1::{AccessKeyCredential, ErrorCode, S3Destination};

/// Longest destination name, in characters.
const MAX_DESTINATION_NAME_CHARS: usize = 256;

/// Checks a destination (every `destination.*` rule of an export), with its prefix normalized.
pub fn validate_destination(
    destination: Option<S3Destination>,
) -> Result<S3Destination, InvalidRequest> {
    let mut destination =
        destination.ok_or_else(|| InvalidRequest::missing("destination", "an S3 bucket"))?;
    if destination.bucket.is_empty() {
        return Err(InvalidRequest::missing(
            "destination.bucket",
            "'my-exports'",
        ));
    }
    validate_bucket_name(&destination.bucket).map_err(|rule| {
        InvalidRequest::new(
            "destination.bucket",
            ErrorCode::InvalidBucketName,
            format!(
                "invalid bucket name {:?}: {rule}; give the name of an existing bucket",
                destination.bucket
            ),
        )
    })?;
    if destination.region.is_empty() {
        return Err(InvalidRequest::missing("destination.region", "'us-east-1'"));
    }
    validate_region(&destination.region).map_err(|problem| {
        InvalidRequest::new("destination.region", ErrorCode::Unspecified, problem)
    })?;
    if !destination.endpoint_url.is_empty() {
        validate_endpoint_url(&destination.endpoint_url).map_err(|problem| {
            InvalidRequest::new("destination.endpoint_url", ErrorCode::Unspecified, problem)
        })?;
    }
    destination.prefix = normalize_prefix(&destination.prefix)?;
    if destination.name.chars().count() > MAX_DESTINATION_NAME_CHARS {
        return Err(InvalidRequest::new(
            "destination.name",
            ErrorCode::Unspecified,
            format!("the destination name is longer than {MAX_DESTINATION_NAME_CHARS} characters"),
        ));
    }
    if let Some(bad) = destination.name.chars().find(|c| c.is_control()) {
        return Err(InvalidRequest::new(
            "destination.name",
            ErrorCode::Unspecified,
            format!(
                "the destination name contains {}; names are text on one line",
                crate::credential_rules::describe(bad)
            ),
        ));
    }
    crate::object_settings::validate_object_settings(&destination)
        .map_err(|(field, message)| InvalidRequest::new(field, ErrorCode::Unspecified, message))?;
    match (
        &destination.access_key,
        destination.credential_id.is_empty(),
    ) {
        (None, true) => {
            return Err(InvalidRequest::missing(
                "destination.access_key",
                "an access key id and secret, or destination.credential_id naming a stored \
                 credential",
            ));
        }
        (Some(_), false) => {
            return Err(InvalidRequest::new(
                "destination.credential_id",
                ErrorCode::Unspecified,
                "give either destination.access_key or destination.credential_id, not both",
            ));
        }
        (None, false) => {}
        (Some(key), true) => validate_access_key(key)?,
    }
    Ok(destination)
}

/// Checks an iam-credential: the key pair, and the role it assumes, if any. Fields are named
/// as in an export (`destination.access_key.…`).
pub fn validate_access_key(key: &AccessKeyCredential) -> Result<(), InvalidRequest> {
    if key.access_key_id.is_empty() {
        return Err(InvalidRequest::missing(
            "destination.access_key.access_key_id",
            "'AKIA…'",
        ));
    }
    let refused = |field: &'static str| {
        move |problem: String| InvalidRequest::new(field, ErrorCode::InvalidCredentials, problem)
    };
    validate_access_key_id(&key.access_key_id)
        .map_err(refused("destination.access_key.access_key_id"))?;
    if key.secret_access_key.is_empty() {
        return Err(InvalidRequest::missing(
            "destination.access_key.secret_access_key",
            "the secret of the access key",
        ));
    }
    validate_secret_access_key(&key.secret_access_key)
        .map_err(refused("destination.access_key.secret_access_key"))?;
    if !key.session_token.is_empty() {
        validate_session_token(&key.session_token)
            .map_err(refused("destination.access_key.session_token"))?;
    }
    if !key.role_arn.is_empty() {
        validate_role_arn(&key.role_arn).map_err(|problem| {
            InvalidRequest::new(
                "destination.access_key.role_arn",
                ErrorCode::Unspecified,
                problem,
            )
        })?;
    }
    if !key.external_id.is_empty() {
        if key.role_arn.is_empty() {
            return Err(InvalidRequest::new(
                "destination.access_key.external_id",
                ErrorCode::Unspecified,
                "an External ID goes with a role to assume: set access_key.role_arn, or leave \
                 external_id empty",
            ));
        }
        validate_external_id(&key.external_id).map_err(|problem| {
            InvalidRequest::new(
                "destination.access_key.external_id",
                ErrorCode::Unspecified,
                problem,
            )
        })?;
    }
    Ok(())
}

/// Checks a prefix and gives it a trailing `/` (an empty prefix is the bucket root).
fn normalize_prefix(prefix: &str) -> Result<String, InvalidRequest> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let invalid = |message: &str| {
        InvalidRequest::new(
            "destination.prefix",
            ErrorCode::Unspecified,
            format!("prefix {prefix:?} {message}"),
        )
    };
    if prefix.starts_with('/') {
        return Err(invalid(
            "must not start with '/'; write 'exports/' not '/exports/'",
        ));
    }
    if let Some(bad) = prefix.chars().find(|c| c.is_control()) {
        return Err(invalid(&format!(
            "contains {}; S3 keys filedrop writes hold no control characters",
            crate::credential_rules::describe(bad)
        )));
    }
    let trimmed = prefix.trim_end_matches('/');
    if trimmed
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(invalid("must not contain '.' or '..' segments"));
    }
    if trimmed.split('/').any(str::is_empty) {
        return Err(invalid("must not contain empty segments ('//')"));
    }
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};
    use filedrop_proto::v1::{AccessKeyCredential, ExportRequest};

    #[test]
    fn a_destination_has_an_access_key_or_a_stored_credential_and_roles_are_checked() {
        fn key(r: &mut ExportRequest) -> &mut AccessKeyCredential {
            r.destination.as_mut().unwrap().access_key.as_mut().unwrap()
        }
        let mut r = request();
        key(&mut r).role_arn = "arn:aws:iam::123456789012:role/exports".into();
        key(&mut r).external_id = "given-by-the-owner".into();
        assert!(ExportSpec::validate(r).is_ok());
        let mut r = request();
        key(&mut r).role_arn = "arn:aws:iam::123456789012:user/me".into();
        assert_eq!(field_of(r), "destination.access_key.role_arn");
        let mut r = request();
        key(&mut r).external_id = "lonely".into();
        assert_eq!(field_of(r), "destination.access_key.external_id");
        let mut r = request();
        key(&mut r).role_arn = "arn:aws:iam::123456789012:role/exports".into();
        key(&mut r).external_id = "bad id".into();
        assert_eq!(field_of(r), "destination.access_key.external_id");

        let mut stored = request();
        let destination = stored.destination.as_mut().unwrap();
        destination.access_key = None;
        destination.credential_id = "cred-1".into();
        assert!(ExportSpec::validate(stored.clone()).is_ok());
        stored.destination.as_mut().unwrap().access_key = request().destination.unwrap().access_key;
        assert_eq!(field_of(stored), "destination.credential_id");
        let mut neither = request();
        neither.destination.as_mut().unwrap().access_key = None;
        assert_eq!(field_of(neither), "destination.access_key");
    }
}
