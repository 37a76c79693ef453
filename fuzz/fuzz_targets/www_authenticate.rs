//! `WWW-Authenticate` as one value and as several header lines, and the 401 decision on it.
#![no_main]

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_bearer::challenge;

fuzz_target!(|lines: Vec<&[u8]>| {
    let mut headers = HeaderMap::new();
    for line in &lines {
        if let Ok(text) = std::str::from_utf8(line) {
            for c in challenge::parse(text) {
                let _ = (c.scheme(), c.token68(), c.param("error"), format!("{c:?}"));
            }
        }
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    let _ = challenge::parse_headers(&headers);
    let rejects = challenge::rejects_token(StatusCode::UNAUTHORIZED, &headers);
    assert!(!challenge::rejects_token(StatusCode::FORBIDDEN, &headers));
    let _ = rejects;
});
