//! A non-2xx answer: any status, `Retry-After` and body. Transient exactly for 408, 429 and
//! 5xx, with a delay no longer than the cap.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tower_bearer::{__fuzz, ErrorKind, MAX_RETRY_AFTER};

fuzz_target!(|input: (u16, Option<&[u8]>, &[u8], u64)| {
    let (status, retry_after, body, now) = input;
    if let Some(Err(err)) = __fuzz::status(status, retry_after, body) {
        let transient = (500..600).contains(&status) || status == 429 || status == 408;
        assert_eq!(err.kind() == ErrorKind::Transient, transient, "{status}");
        assert!(err.retry_after().is_none_or(|d| d <= MAX_RETRY_AFTER));
    }
    if let Some(value) = retry_after {
        let now = UNIX_EPOCH + Duration::from_secs(now % 253_402_300_800);
        assert!(__fuzz::retry_after(value, now).is_none_or(|d| d <= MAX_RETRY_AFTER));
    }
});
