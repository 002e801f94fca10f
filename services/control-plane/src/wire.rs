//! Pieces the API services share: timestamps in their wire form, and pages of listings.
//!
//! A listing fetches one record more than the page holds, to know whether another page
//! follows; the next page's token is the sort key of the page's last record.

use tonic::Status;

/// Records in a page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The most records in a page.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Unix milliseconds as a protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The page size a request asks for (`0`: the default), or a refusal naming `page_size`.
pub fn page_size(asked: i32) -> Result<u32, Status> {
    match u32::try_from(asked) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
        _ => Err(Status::invalid_argument(format!(
            "page_size: give 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"
        ))),
    }
}

/// The position a page token names, if the request gives one.
pub fn page_start(token: &str) -> Option<&str> {
    (!token.is_empty()).then_some(token)
}

/// `records`, fetched with one more than `size`, cut to the page; and the next page's token
/// (the `key` of the page's last record), empty on the last page.
pub fn page<T>(mut records: Vec<T>, size: u32, key: impl Fn(&T) -> &str) -> (Vec<T>, String) {
    let more = records.len() > size as usize;
    records.truncate(size as usize);
    let next = match (more, records.last()) {
        (true, Some(last)) => key(last).to_owned(),
        _ => String::new(),
    };
    (records, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_cut_and_sized() {
        assert_eq!(
            page(vec!["a", "b", "c"], 2, |s| s),
            (vec!["a", "b"], "b".into())
        );
        assert_eq!(
            page(vec!["a", "b"], 2, |s| s),
            (vec!["a", "b"], String::new())
        );
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert!(page_size(-1).is_err() && page_size(501).is_err());
        assert_eq!(timestamp(1_500).seconds, 1);
        assert_eq!(timestamp(1_500).nanos, 500_000_000);
    }
}
