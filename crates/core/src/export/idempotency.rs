//! The idempotency key, which makes an export safe to send again.

use super::InvalidRequest;
use filedrop_proto::v1::ErrorCode;

/// The longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// Checks `idempotency_key`: empty (none), or up to 128 printable ASCII characters.
pub(super) fn validate_idempotency_key(key: &str) -> Result<Option<String>, InvalidRequest> {
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidRequest::new(
            "idempotency_key",
            ErrorCode::Unspecified,
            format!(
                "give up to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without \
                 spaces (a UUID, say), or leave it empty"
            ),
        ));
    }
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};

    #[test]
    fn an_idempotency_key_is_short_printable_ascii() {
        let mut keyed = request();
        keyed.idempotency_key = "order-2026-01-02/7".into();
        let spec = ExportSpec::validate(keyed.clone()).unwrap();
        assert_eq!(spec.idempotency_key.as_deref(), Some("order-2026-01-02/7"));
        assert_eq!(
            ExportSpec::validate(request()).unwrap().idempotency_key,
            None
        );
        for bad in ["with space", "é", &"k".repeat(129)] {
            keyed.idempotency_key = bad.to_owned();
            assert_eq!(field_of(keyed.clone()), "idempotency_key", "{bad:?}");
        }
    }
}
