//! Entry points for the fuzz targets in `fuzz/` and the crate's property tests: every parser of
//! what a token endpoint, an API server or a user hands the crate, behind plain signatures.
//!
//! Not part of the API: compiled only under `cfg(fuzzing)` (which `cargo fuzz` sets) and in the
//! crate's own unit tests. The public parsers ([`challenge::parse`](crate::challenge::parse),
//! [`jwt_claims`](crate::token::jwt_claims), [`Origin::parse`]) are fuzzed directly.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode, Uri};
use tokio::time::Instant;

use crate::origin::{Approved, Destinations, Verdict};
use crate::secret::RefreshToken;
use crate::source::TokenFields;
use crate::source::endpoint;
use crate::source::token_response::TokenResponse;
use crate::{Error, OnDisallowedOrigin, Origin, Token};

/// What a 2xx token endpoint answer gave: the refresh token (taken first, as the sources do, so
/// it is saved whatever comes next) and the judged access token.
#[derive(Debug)]
pub struct TokenAnswer {
    /// The refresh token in the answer, if any.
    pub refresh_token: Option<RefreshToken>,
    /// The access token with its lifetime, or why it cannot be used.
    pub token: Result<Token, Error>,
}

/// Read a 2xx answer with this `Content-Type` (absent if `None` or not a header value) and body,
/// as every built-in source does.
pub fn token_response(
    content_type: Option<&str>,
    body: &[u8],
    fields: &TokenFields,
    require_expiry: bool,
) -> Result<TokenAnswer, Error> {
    let mut response = http::Response::new(Bytes::copy_from_slice(body));
    if let Some(value) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    let mut answer = TokenResponse::parse(&response, fields, "refused")?;
    Ok(TokenAnswer {
        refresh_token: answer.take_refresh_token(),
        token: answer.into_token(require_expiry),
    })
}

/// Classify an answer by its status (any `u16`; out-of-range ones are `None`), `Retry-After`
/// and body, as the sources do before reading a token.
pub fn status(status: u16, retry_after: Option<&[u8]>, body: &[u8]) -> Option<Result<(), Error>> {
    let status = StatusCode::from_u16(status).ok()?;
    let mut response = http::Response::new(Bytes::copy_from_slice(body));
    *response.status_mut() = status;
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    Some(endpoint::check_status(&response, "refused"))
}

/// `Retry-After` (raw header bytes; `None` if they are not a header value) read at `now`.
pub fn retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let mut headers = http::HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_bytes(value).ok()?);
    endpoint::retry_after(&headers, now)
}

/// The RFC 6749 §5.2 `error` code of an error body, as kept in errors.
pub fn oauth_error_code(body: &[u8]) -> Option<String> {
    endpoint::oauth_error_code(body)
}

/// A request form as the sources encode it.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    endpoint::urlencoded(pairs.iter().copied()).to_string()
}

/// The `Authorization` value the cache would build for `secret`, or why it refuses to.
pub fn header_value(secret: &str) -> Result<HeaderValue, Error> {
    Token::new(secret).header_value()
}

/// How long `token` is usable, judged when its answer arrives with the local wall clock at
/// `wall_now`, its request having been sent `sent_ago` earlier. `None`: until invalidated.
pub fn time_left(token: &Token, sent_ago: Duration, wall_now: SystemTime) -> Option<Duration> {
    let now = Instant::now();
    let sent_at = now.checked_sub(sent_ago).unwrap_or(now);
    let deadline = token.expires_at_wall(sent_at, now, wall_now)?;
    Some(deadline.saturating_duration_since(now))
}

/// Whether the tower layer attaches the token to a request for `uri`, with this allow-list
/// (empty: none) and `allow_insecure_http`; twice, as one service does for two requests, the
/// second answered by what the first approved.
pub fn tower_attaches(allow: &[Origin], allow_insecure_http: bool, uri: &Uri) -> [bool; 2] {
    let destinations = destinations(allow, allow_insecure_http);
    let mut approved = Approved::NONE;
    [(); 2].map(|()| matches!(destinations.check_uri(uri, &mut approved), Verdict::Attach))
}

/// Whether the reqwest middleware attaches the token to a request for `url`.
#[cfg(feature = "reqwest-middleware")]
pub fn reqwest_attaches(allow: &[Origin], allow_insecure_http: bool, url: &::reqwest::Url) -> bool {
    matches!(
        destinations(allow, allow_insecure_http).check_url(url),
        Verdict::Attach
    )
}

fn destinations(allow: &[Origin], allow_insecure_http: bool) -> Destinations {
    let mut destinations = Destinations::default();
    destinations.on_disallowed = OnDisallowedOrigin::Fail;
    for origin in allow {
        destinations.allow_origin(origin.clone());
    }
    destinations.allow_insecure_http(allow_insecure_http);
    destinations
}
