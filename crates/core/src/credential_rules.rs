//! The rules of credentials that assume a role: role ARNs, External IDs, session names, and
//! the trust policy a bucket owner pastes for an iam-role-to-role credential.

/// Fewest characters of an External ID (STS's limit).
const MIN_EXTERNAL_ID_CHARS: usize = 2;
/// Most characters of an External ID (STS's limit).
const MAX_EXTERNAL_ID_CHARS: usize = 1224;
/// Most characters of an STS role session name.
const MAX_SESSION_NAME_CHARS: usize = 64;
/// Fewest characters of an access key id. AWS's have 16 to 128; S3-compatible stores use
/// shorter ones (MinIO's may have 3).
const MIN_ACCESS_KEY_ID_CHARS: usize = 3;
/// Most characters of an access key id (IAM's limit).
const MAX_ACCESS_KEY_ID_CHARS: usize = 128;
/// Most characters of a secret access key (AWS's have 40).
const MAX_SECRET_CHARS: usize = 1024;
/// Most characters of a session token. STS's grow with session policies and tags, to a few
/// kilobytes; this leaves room while keeping the header a store accepts.
const MAX_SESSION_TOKEN_CHARS: usize = 16_384;

/// Checks an access key id: 3 to 128 letters, digits and `_.~-`. It is sent in the
/// `Authorization` header of every request (the SigV4 credential scope), so anything else —
/// a space, a control character, a `/` — would make a request that cannot be signed.
pub fn validate_access_key_id(id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if !(MIN_ACCESS_KEY_ID_CHARS..=MAX_ACCESS_KEY_ID_CHARS).contains(&length) {
        return Err(format!(
            "an access key id has {MIN_ACCESS_KEY_ID_CHARS} to {MAX_ACCESS_KEY_ID_CHARS} \
             characters (AWS's look like 'AKIAIOSFODNN7EXAMPLE'); this one has {length}"
        ));
    }
    if let Some((position, bad)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_.~-".contains(*c)))
    {
        return Err(format!(
            "an access key id is letters, digits and _.~- (AWS's look like \
             'AKIAIOSFODNN7EXAMPLE'); character {} is {}: copy the id again",
            position + 1,
            describe(bad)
        ));
    }
    Ok(())
}

/// Checks a secret access key: 1 to 1,024 printable ASCII characters, no spaces. The message
/// never repeats the secret: it says where the fault is and what it is.
pub fn validate_secret_access_key(secret: &str) -> Result<(), String> {
    check_token_text("a secret access key", secret, MAX_SECRET_CHARS)
}

/// Checks a session token: 1 to 16,384 printable ASCII characters, no spaces. It travels in
/// the `x-amz-security-token` header, which cannot carry anything else. The message never
/// repeats the token.
pub fn validate_session_token(token: &str) -> Result<(), String> {
    check_token_text("a session token", token, MAX_SESSION_TOKEN_CHARS)
}

/// Checks secret text (a secret, a token): printable ASCII without spaces, at most `most`
/// characters. Says which character is wrong without showing the others.
fn check_token_text(what: &str, text: &str, most: usize) -> Result<(), String> {
    let length = text.chars().count();
    if length == 0 || length > most {
        return Err(format!(
            "{what} has 1 to {most} characters; this one has {length}"
        ));
    }
    if let Some((position, bad)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        let hint = if bad == '\n' || bad == '\r' {
            " (text read from a file often ends with one)"
        } else {
            ""
        };
        return Err(format!(
            "{what} is printable ASCII without spaces; character {} of {length} is {}{hint}: \
             copy it again",
            position + 1,
            describe(bad)
        ));
    }
    Ok(())
}

/// A character as a message shows it: by name when it cannot be seen, otherwise quoted.
pub fn describe(c: char) -> String {
    match c {
        '\n' => "a line break (LF)".into(),
        '\r' => "a carriage return (CR)".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        '\u{7f}' => "DEL (0x7F), a control character".into(),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c if !c.is_ascii() => format!("{c:?} (U+{:04X}), not ASCII", c as u32),
        c => format!("{c:?}"),
    }
}

/// Checks that `arn` names an IAM role: `arn:<partition>:iam::<12-digit account>:role/<name>`,
/// the name possibly under a path. Returns what is wrong.
pub fn validate_role_arn(arn: &str) -> Result<(), String> {
    let example = "e.g. arn:aws:iam::123456789012:role/filedrop-exports";
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = fields[..] else {
        return Err(format!("{arn:?} is not a role ARN, {example}"));
    };
    let partition_ok = !partition.is_empty()
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-');
    if prefix != "arn" || !partition_ok || service != "iam" || !region.is_empty() {
        return Err(format!("{arn:?} is not an IAM ARN, {example}"));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{arn:?} does not name a 12-digit AWS account, {example}"
        ));
    }
    let name = resource
        .strip_prefix("role/")
        .ok_or_else(|| format!("{arn:?} names no role (`:role/<name>`), {example}"))?;
    let name_ok = !name.is_empty()
        && !name.ends_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
    if !name_ok {
        return Err(format!(
            "{arn:?}: a role name is letters, digits and +=,.@_- (a path with /), {example}"
        ));
    }
    Ok(())
}

/// Checks an External ID against STS's rules: 2 to 1,224 characters of `[A-Za-z0-9+=,.@:/-]`.
pub fn validate_external_id(external_id: &str) -> Result<(), String> {
    let length = external_id.chars().count();
    if !(MIN_EXTERNAL_ID_CHARS..=MAX_EXTERNAL_ID_CHARS).contains(&length) {
        return Err(format!(
            "an External ID has {MIN_EXTERNAL_ID_CHARS} to {MAX_EXTERNAL_ID_CHARS} characters; \
             this one has {length}"
        ));
    }
    if let Some(bad) = external_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@:/-".contains(*c)))
    {
        return Err(format!(
            "an External ID is letters, digits and +=,.@:/-; {bad:?} is not allowed"
        ));
    }
    Ok(())
}

/// The External ID of a new iam-role-to-role credential: `filedrop-` and 32 hexadecimal
/// digits of the given random bytes, unique per credential and never chosen by a customer (so
/// one customer cannot make filedrop assume another's role).
pub fn external_id_from(random: [u8; 16]) -> String {
    let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("filedrop-{hex}")
}

/// The role session name of a run's AssumeRole calls, which the bucket owner sees in
/// CloudTrail: `filedrop-<run id>`, cut to STS's 64 characters.
pub fn session_name(run_id: &str) -> String {
    let name: String = format!("filedrop-{run_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SESSION_NAME_CHARS)
        .collect();
    name
}

/// The trust policy a bucket owner gives the role of an iam-role-to-role credential: filedrop's
/// principal may assume it only with the credential's External ID.
pub fn trust_policy_json(principal_arn: &str, external_id: &str) -> String {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    });
    serde_json::to_string_pretty(&policy).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_name_an_iam_role_in_an_account() {
        for good in [
            "arn:aws:iam::123456789012:role/exports",
            "arn:aws-cn:iam::123456789012:role/team/filedrop_exports-1",
            "arn:aws-us-gov:iam::123456789012:role/a+b=c,d.e@f",
        ] {
            assert_eq!(validate_role_arn(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("exports", "not a role ARN"),
            ("arn:aws:s3:::bucket:x", "not an IAM ARN"),
            (
                "arn:aws:iam:us-east-1:123456789012:role/x",
                "not an IAM ARN",
            ),
            ("arn:aws:iam::1234:role/x", "12-digit"),
            ("arn:aws:iam::123456789012:user/x", "names no role"),
            ("arn:aws:iam::123456789012:role/", "a role name is"),
            ("arn:aws:iam::123456789012:role/a b", "a role name is"),
        ] {
            let error = validate_role_arn(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn access_key_ids_are_short_words_that_a_header_can_carry() {
        for good in [
            "AKIAIOSFODNN7EXAMPLE",
            "minioadmin",
            "GK31c2f218a2e44f485b94239e",
            "a_b.c~d-e",
        ] {
            assert_eq!(validate_access_key_id(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("AKIA\u{7f}BAD", "character 5 is DEL (0x7F)"),
            ("AKIA BAD", "character 5 is a space"),
            ("AKIA/BAD", "character 5 is '/'"),
            ("AKIAÉBAD", "not ASCII"),
            ("AK", "this one has 2"),
        ] {
            let error = validate_access_key_id(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        assert!(validate_access_key_id(&"A".repeat(129)).is_err());
        assert_eq!(validate_access_key_id(&"A".repeat(128)), Ok(()));
    }

    #[test]
    fn secrets_and_tokens_are_printable_ascii_and_messages_never_show_them() {
        assert_eq!(
            validate_secret_access_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            Ok(())
        );
        assert_eq!(validate_session_token("FwoGZXIvYXdzE+/=="), Ok(()));
        let error = validate_session_token("FwoGZXIvYXdz\nSECRETPART").unwrap_err();
        assert!(
            error.contains("character 13 of 23 is a line break"),
            "{error}"
        );
        assert!(
            !error.contains("SECRETPART") && !error.contains("FwoG"),
            "{error}"
        );
        let error = validate_secret_access_key("secret-value\n").unwrap_err();
        assert!(error.contains("often ends with one"), "{error}");
        assert!(!error.contains("secret-value"), "{error}");
        assert!(validate_secret_access_key("").is_err());
        assert!(validate_secret_access_key("with space").is_err());
        assert!(validate_session_token(&"a".repeat(16_385)).is_err());
    }

    #[test]
    fn external_ids_follow_the_sts_rules_and_generated_ones_pass_them() {
        assert_eq!(validate_external_id("ab"), Ok(()));
        assert_eq!(validate_external_id("A-z0+=,.@:/9"), Ok(()));
        assert!(
            validate_external_id("a")
                .unwrap_err()
                .contains("this one has 1")
        );
        assert!(validate_external_id(&"a".repeat(1225)).is_err());
        assert_eq!(validate_external_id(&"a".repeat(1224)), Ok(()));
        assert!(
            validate_external_id("with space")
                .unwrap_err()
                .contains("' '")
        );
        let generated = external_id_from([0xab; 16]);
        assert_eq!(generated, format!("filedrop-{}", "ab".repeat(16)));
        assert_eq!(validate_external_id(&generated), Ok(()));
    }

    #[test]
    fn session_names_name_filedrop_and_the_run_within_the_sts_limit() {
        let run = "0190a4c2-7b1e-7c3d-8e4f-123456789abc";
        assert_eq!(session_name(run), format!("filedrop-{run}"));
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(session_name("a/b c"), "filedrop-a-b-c");
    }

    #[test]
    fn the_trust_policy_requires_the_external_id_from_the_principal() {
        let json = trust_policy_json("arn:aws:iam::111122223333:user/filedrop", "filedrop-x1");
        let policy: serde_json::Value = serde_json::from_str(&json).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::111122223333:user/filedrop"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            "filedrop-x1"
        );
    }
}
