//! The rules of a destination's object settings: server-side encryption, storage class,
//! canned ACL, tags and write mode, checked before any data moves.

use filedrop_proto::v1::{S3Destination, ServerSideEncryption, WriteMode};
use std::collections::HashMap;

/// The storage classes S3 accepts on a write.
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
];

/// The canned ACLs S3 accepts on an object.
pub const CANNED_ACLS: &[&str] = &[
    "private",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
];

/// Most characters of a KMS key id, alias or ARN (KMS's limit).
const MAX_KMS_KEY_ID_CHARS: usize = 2048;
/// Most tags on an object.
const MAX_TAGS: usize = 10;
/// Longest tag key, in characters.
const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in characters.
const MAX_TAG_VALUE_CHARS: usize = 256;

/// Checks the object settings of `destination`; the error names the field and the fix.
pub fn validate_object_settings(destination: &S3Destination) -> Result<(), (&'static str, String)> {
    let encryption =
        ServerSideEncryption::try_from(destination.server_side_encryption).map_err(|_| {
            (
                "destination.server_side_encryption",
                format!(
                    "unknown value {}: use SERVER_SIDE_ENCRYPTION_AES256 or \
                     SERVER_SIDE_ENCRYPTION_AWS_KMS, or leave it unset for the bucket's default",
                    destination.server_side_encryption
                ),
            )
        })?;
    if WriteMode::try_from(destination.write_mode).is_err() {
        return Err((
            "destination.write_mode",
            format!(
                "unknown value {}: use WRITE_MODE_REPLACE, WRITE_MODE_FAIL_IF_EXISTS or \
                 WRITE_MODE_KEEP_EXISTING, or leave it unset to replace",
                destination.write_mode
            ),
        ));
    }
    if !destination.kms_key_id.is_empty() && encryption != ServerSideEncryption::AwsKms {
        return Err((
            "destination.kms_key_id",
            "a KMS key goes with server_side_encryption SERVER_SIDE_ENCRYPTION_AWS_KMS; set it, \
             or leave kms_key_id empty"
                .into(),
        ));
    }
    if !destination.kms_key_id.is_empty() {
        validate_kms_key_id(&destination.kms_key_id)
            .map_err(|problem| ("destination.kms_key_id", problem))?;
    }
    if !destination.storage_class.is_empty()
        && !STORAGE_CLASSES.contains(&destination.storage_class.as_str())
    {
        return Err((
            "destination.storage_class",
            format!(
                "unknown storage class {:?}: use one of {}, or leave it empty",
                destination.storage_class,
                STORAGE_CLASSES.join(", ")
            ),
        ));
    }
    if !destination.canned_acl.is_empty() && !CANNED_ACLS.contains(&destination.canned_acl.as_str())
    {
        return Err((
            "destination.canned_acl",
            format!(
                "unknown canned ACL {:?}: use one of {} (bucket-owner-full-control for a bucket \
                 in another account), or leave it empty",
                destination.canned_acl,
                CANNED_ACLS.join(", ")
            ),
        ));
    }
    validate_tags(&destination.tags).map_err(|problem| ("destination.tags", problem))
}

/// Checks a KMS key id as S3's `x-amz-server-side-encryption-aws-kms-key-id` header takes
/// it: a key id, a key ARN, an alias (`alias/…`) or an alias ARN — up to 2,048 letters,
/// digits and `:/_-`.
fn validate_kms_key_id(key: &str) -> Result<(), String> {
    let example = "e.g. 'alias/exports', '1234abcd-12ab-34cd-56ef-1234567890ab' or \
                   'arn:aws:kms:us-east-1:111122223333:key/1234abcd-…'";
    if key.chars().count() > MAX_KMS_KEY_ID_CHARS {
        return Err(format!(
            "a KMS key id has at most {MAX_KMS_KEY_ID_CHARS} characters, {example}"
        ));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":/_-".contains(*c)))
    {
        return Err(format!(
            "a KMS key id is letters, digits and :/_-; {} is not allowed, {example}",
            crate::credential_rules::describe(bad)
        ));
    }
    Ok(())
}

fn validate_tags(tags: &HashMap<String, String>) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "{} tags: S3 keeps at most {MAX_TAGS} on an object",
            tags.len()
        ));
    }
    let allowed = |text: &str| {
        text.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c))
    };
    for (key, value) in tags {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_TAG_KEY_CHARS || !allowed(key) {
            return Err(format!(
                "tag key {key:?}: 1 to {MAX_TAG_KEY_CHARS} letters, digits, spaces and +-=._:/@"
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS || !allowed(value) {
            return Err(format!(
                "the value of tag {key:?}: at most {MAX_TAG_VALUE_CHARS} letters, digits, spaces \
                 and +-=._:/@"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(destination: &S3Destination) -> &'static str {
        validate_object_settings(destination).unwrap_err().0
    }

    #[test]
    fn accepts_known_settings_and_refuses_the_rest_by_field() {
        let mut good = S3Destination {
            server_side_encryption: ServerSideEncryption::AwsKms.into(),
            kms_key_id: "alias/exports".into(),
            storage_class: "STANDARD_IA".into(),
            canned_acl: "bucket-owner-full-control".into(),
            ..Default::default()
        };
        good.tags.insert("team".into(), "growth analytics".into());
        assert_eq!(validate_object_settings(&good), Ok(()));
        assert_eq!(validate_object_settings(&S3Destination::default()), Ok(()));

        let mut d = good.clone();
        d.server_side_encryption = 7;
        assert_eq!(field_of(&d), "destination.server_side_encryption");
        let mut d = good.clone();
        d.write_mode = WriteMode::KeepExisting.into();
        assert_eq!(validate_object_settings(&d), Ok(()));
        d.write_mode = 9;
        assert_eq!(field_of(&d), "destination.write_mode");
        let mut d = good.clone();
        d.server_side_encryption = ServerSideEncryption::Aes256.into();
        assert_eq!(field_of(&d), "destination.kms_key_id");
        for bad_key in [
            "alias/exports\r\nx-amz-acl: public-read",
            "key id",
            "alias/ü",
        ] {
            let mut d = good.clone();
            d.kms_key_id = bad_key.into();
            assert_eq!(field_of(&d), "destination.kms_key_id", "{bad_key:?}");
        }
        let mut d = good.clone();
        d.kms_key_id = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd_x".into();
        assert_eq!(validate_object_settings(&d), Ok(()));
        let mut d = good.clone();
        d.storage_class = "COLD".into();
        assert_eq!(field_of(&d), "destination.storage_class");
        let mut d = good.clone();
        d.canned_acl = "owner".into();
        assert_eq!(field_of(&d), "destination.canned_acl");
        let mut d = good.clone();
        d.tags.insert("bad*key".into(), "v".into());
        assert_eq!(field_of(&d), "destination.tags");
        let mut d = good.clone();
        for i in 0..10 {
            d.tags.insert(format!("k{i}"), "v".into());
        }
        assert!(
            validate_object_settings(&d)
                .unwrap_err()
                .1
                .contains("at most 10")
        );
    }
}
