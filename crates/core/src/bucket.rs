//! The S3 bucket naming rules, checked before any data moves.
//!
//! See <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>.

/// Checks `name` against the S3 general-purpose bucket naming rules. The error says which rule
/// is broken, in words a user can act on.
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!(
            "bucket names are 3 to 63 characters long; this one has {len}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "bucket names use only lowercase letters, digits, '-' and '.'; found {bad:?}"
        ));
    }
    let is_alnum =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !is_alnum(name.chars().next()) || !is_alnum(name.chars().last()) {
        return Err("bucket names begin and end with a letter or a digit".to_owned());
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err("bucket names have no '..', '.-' or '-.'".to_owned());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("bucket names are not IP addresses".to_owned());
    }
    for reserved in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(reserved) {
            return Err(format!("bucket names do not start with {reserved:?}"));
        }
    }
    for reserved in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(reserved) {
            return Err(format!("bucket names do not end with {reserved:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_bucket_name;

    #[test]
    fn accepts_valid_names() {
        for name in [
            "abc",
            "my-bucket",
            "my.bucket.1",
            "0123456789",
            &"a".repeat(63),
        ] {
            assert_eq!(validate_bucket_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_invalid_names_with_the_rule() {
        let cases = [
            ("ab", "3 to 63"),
            (&*"a".repeat(64), "3 to 63"),
            ("My_Bucket", "lowercase"),
            ("my bucket", "lowercase"),
            ("-bucket", "begin and end"),
            ("bucket.", "begin and end"),
            ("my..bucket", "'..'"),
            ("my.-bucket", "'..'"),
            ("192.168.1.1", "IP addresses"),
            ("xn--bucket", "xn--"),
            ("bucket-s3alias", "-s3alias"),
        ];
        for (name, expected) in cases {
            let error = validate_bucket_name(name).expect_err(name);
            assert!(error.contains(expected), "{name}: {error}");
        }
    }
}
