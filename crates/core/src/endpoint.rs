//! The rules of where a destination is: its endpoint URL and its region. Both reach the AWS
//! SDK (the URL every request goes to, the region in every signature), so nothing the SDK
//! could stumble on gets past them.

/// Most characters of a region name.
const MAX_REGION_CHARS: usize = 64;

/// Checks a region: 1 to 64 letters, digits, `-`, `_` and `.` (`us-east-1`; S3-compatible
/// stores use names such as `garage` or `auto`). It is part of the signature's credential
/// scope and, on AWS, of the host name.
pub fn validate_region(region: &str) -> Result<(), String> {
    let length = region.chars().count();
    if length == 0 || length > MAX_REGION_CHARS {
        return Err(format!(
            "a region has 1 to {MAX_REGION_CHARS} characters, e.g. 'us-east-1'; this one has \
             {length}"
        ));
    }
    if let Some(bad) = region
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "a region is letters, digits, '-', '_' and '.', e.g. 'us-east-1'; {} is not \
             allowed",
            crate::credential_rules::describe(bad)
        ));
    }
    Ok(())
}

/// Checks an endpoint URL: `http://` or `https://`, a host, maybe a port, and nothing else (no
/// user or password, path, query or fragment), in ASCII. The message repeats the URL only when
/// it holds no `@`, which could be a password.
pub fn validate_endpoint_url(endpoint: &str) -> Result<(), String> {
    let shown = if endpoint.contains('@') {
        "the endpoint URL".to_owned()
    } else {
        format!("endpoint URL {endpoint:?}")
    };
    let example = "e.g. 'https://s3.example.com' or 'http://127.0.0.1:9000'";
    if let Some(bad) = endpoint
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == ' ')
    {
        return Err(format!(
            "{shown} contains {}; give scheme, host and port only, {example}",
            crate::credential_rules::describe(bad)
        ));
    }
    if endpoint.contains('@') {
        return Err(format!(
            "{shown} must not hold a user or password: give the credentials in \
             destination.access_key or destination.credential_id, {example}"
        ));
    }
    // What a scheme, a host name or address and a port are written with; percent-encoding,
    // backslashes and the rest would be read differently by different URL parsers.
    if let Some(bad) = endpoint
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-:/[]".contains(*c)))
    {
        return Err(format!(
            "{shown} contains {}; give scheme, host and port only, {example}",
            crate::credential_rules::describe(bad)
        ));
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(format!(
            "{shown} must start with http:// or https://, {example}"
        ));
    }
    let after_scheme = endpoint.split_once("://").map_or("", |(_, rest)| rest);
    if after_scheme.is_empty() || after_scheme.starts_with('/') {
        return Err(format!("{shown} names no host, {example}"));
    }
    let url = url::Url::parse(endpoint)
        .map_err(|error| format!("{shown} is not a URL ({error}), {example}"))?;
    match url.host() {
        Some(url::Host::Domain(name))
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') => {}
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {}
        Some(url::Host::Domain(_)) => {
            return Err(format!(
                "{shown}: a host name is letters, digits, '-' and '.', {example}"
            ));
        }
        None => return Err(format!("{shown} names no host, {example}")),
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "{shown} has a path; give scheme, host and port only (the bucket is \
             destination.bucket, the folder destination.prefix), {example}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_short_names_of_plain_characters() {
        for good in ["us-east-1", "eu-central-2", "garage", "auto", "US_WEST.1"] {
            assert_eq!(validate_region(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "this one has 0"),
            ("us-east-1\n", "a line break"),
            ("us east", "a space"),
            ("us/east", "'/'"),
            ("üs-east-1", "not ASCII"),
        ] {
            let error = validate_region(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        assert!(validate_region(&"a".repeat(65)).is_err());
    }

    #[test]
    fn endpoints_are_a_scheme_a_host_and_a_port() {
        for good in [
            "https://s3.example.com",
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/",
            "https://[::1]:8443",
            "http://minio",
        ] {
            assert_eq!(validate_endpoint_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("127.0.0.1:9000", "must start with http"),
            ("ftp://example.com", "must start with http"),
            ("http://", "names no host"),
            ("http:///a", "names no host"),
            ("http://example.com/s3", "has a path"),
            ("http://example.com?x=1", "'?'"),
            ("http://example.com#x", "'#'"),
            ("http://%30", "'%'"),
            ("http:\\\\example.com", "'\\\\'"),
            ("http://exa\u{7f}mple.com", "DEL"),
            ("http://example.com\r\n", "carriage return"),
            ("http://exämple.com", "not ASCII"),
            ("http://example.com:99999", "not a URL"),
            ("http://a.b:c", "not a URL"),
            ("http://a_b.example.com", "'_'"),
        ] {
            let error = validate_endpoint_url(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        let error = validate_endpoint_url("http://user:hunter2@example.com").unwrap_err();
        assert!(error.contains("user or password"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
