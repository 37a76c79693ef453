//! Presets for Kensho's APIs: thin constructors over the generic sources.
//!
//! | API | preset | what it configures |
//! |---|---|---|
//! | Scribe, NERD, Extract, ... (personal token) | [`personal_token`] | `GET {base}/oauth2/refresh?refresh_token=R` → `{"access_token"}` |
//! | Link | [`link`] | `GET {base}/oauth2/refresh?refreshToken=R` → `{"accessToken"}` |
//! | any API, keypair (Okta) | [`keypair`] (feature `jwt`) | `client_credentials` with an RS256 client assertion, scope [`EXTRACT_SCOPE`] by default |
//!
//! Access tokens are JWTs that expire every hour; the lifetime is read from their `exp`, and the
//! cache refreshes 60 s before it. Refresh tokens expire seven days after their last use: a
//! refused one gives a [`Rejected`](crate::ErrorKind::Rejected) error asking whether it is
//! correct.
//!
//! ```no_run
//! use tower_bearer::{BearerAuthLayer, secret::RefreshToken, source::kensho};
//!
//! # fn main() -> Result<(), tower_bearer::Error> {
//! let scribe = kensho::personal_token(
//!     "https://scribe.kensho.com",
//!     RefreshToken::new(std::env::var("KENSHO_REFRESH_TOKEN").unwrap_or_default()),
//! )
//! .build()?;
//! let layer = BearerAuthLayer::new(scribe);
//! # let _ = layer; Ok(()) }
//! ```

use super::refresh_endpoint::{RefreshEndpoint, RefreshEndpointBuilder};
use super::token_response::TokenFields;
use crate::secret::RefreshToken;

/// The scope of the Extract API, requested by [`keypair`] unless changed.
pub const EXTRACT_SCOPE: &str = "kensho:app:extract";

/// A personal refresh token for the API at `api_base` (such as `https://scribe.kensho.com`):
/// `GET {api_base}/oauth2/refresh?refresh_token=R` answering `{"access_token": "<JWT>"}`.
pub fn personal_token(api_base: &str, refresh_token: RefreshToken) -> RefreshEndpointBuilder {
    RefreshEndpoint::builder(refresh_url(api_base), refresh_token)
}

/// A personal refresh token for the Link API at `api_base` (such as
/// `https://link-streaming.kensho.com`): `GET {api_base}/oauth2/refresh?refreshToken=R`
/// answering `{"accessToken": "<JWT>"}`.
pub fn link(api_base: &str, refresh_token: RefreshToken) -> RefreshEndpointBuilder {
    RefreshEndpoint::builder(refresh_url(api_base), refresh_token)
        .query_param("refreshToken")
        .fields(TokenFields::camel_case())
}

fn refresh_url(api_base: &str) -> String {
    format!("{}/oauth2/refresh", api_base.trim_end_matches('/'))
}
