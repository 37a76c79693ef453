//! The JWT `exp`/`iat` reader and the clock rules on top of it, for any string and any local
//! clock: never a panic, never a lifetime longer than the issuer granted.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tower_bearer::{__fuzz, Token, jwt_claims};

fuzz_target!(|input: (&str, u32, u64)| {
    let (text, sent_ago, wall) = input;
    let claims = jwt_claims(text);
    let token = Token::new(text);
    let wall_now = UNIX_EPOCH + Duration::from_secs(wall % 1_000_000_000_000);
    let left = __fuzz::time_left(&token, Duration::from_secs(sent_ago.into()), wall_now);
    if let Some(times) = claims
        && let (Some(exp), Some(iat), Some(left)) = (times.exp, times.iat, left)
        && let Ok(granted) = exp.duration_since(iat)
        && !granted.is_zero()
    {
        assert!(left <= granted, "{left:?} left of {granted:?} granted");
    }
});
