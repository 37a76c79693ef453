//! Integration tests for the built-in token sources: each vendor endpoint is emulated exactly as
//! its seed document shows, by an axum server on 127.0.0.1, and each source is driven through
//! `BearerAuthLayer`, counting what reached the token endpoint.

mod api_video;
mod bad_responses;
mod client_credentials;
mod common;
#[cfg(feature = "jwt")]
mod disruptive;
mod family;
mod kensho;
mod redaction;
mod refresh_token;
mod store_races;
mod wrong_url;
