//! Preset for api.video: an API key exchanged for an access token and a rotating refresh token.
//!
//! `POST {base}/auth/api-key` with `{"apiKey"}` answers `{token_type, expires_in, access_token,
//! refresh_token}`; `POST {base}/auth/refresh` with `{"refreshToken"}` answers a new pair. The
//! source refreshes with the refresh token, saves each new one, and goes back to the API key
//! when the refresh token is refused.
//!
//! ```
//! use tower_bearer::{BearerAuthLayer, secret::ApiKey, source::api_video};
//!
//! # fn main() -> Result<(), tower_bearer::Error> {
//! let source = api_video::api_key(ApiKey::new("<API_VIDEO_KEY>")).build()?;
//! let layer = BearerAuthLayer::new(source);
//! # let _ = layer; Ok(()) }
//! ```

use super::api_key::{ApiKeyExchange, ApiKeyExchangeBuilder};
use crate::secret::ApiKey;

/// The production API.
pub const BASE_URL: &str = "https://ws.api.video";

/// The sandbox API.
pub const SANDBOX_URL: &str = "https://sandbox.api.video";

/// An API key for the production API ([`BASE_URL`]).
pub fn api_key(api_key: ApiKey) -> ApiKeyExchangeBuilder {
    api_key_at(BASE_URL, api_key)
}

/// An API key for the API at `base_url` ([`SANDBOX_URL`], a test server).
pub fn api_key_at(base_url: &str, api_key: ApiKey) -> ApiKeyExchangeBuilder {
    let base = base_url.trim_end_matches('/');
    ApiKeyExchange::builder(format!("{base}/auth/api-key"), api_key)
        .refresh_url(format!("{base}/auth/refresh"))
}
