//! Preset for Disruptive Technologies service accounts: the JWT-bearer grant with an HS256
//! assertion. Needs the `jwt` feature.
//!
//! The assertion is exactly the vendor's: header `{"alg": "HS256", "kid": <key id>}`, claims
//! `iat` (now), `exp` (`iat` + 3600), `aud` (the token URL) and `iss` (the service account's
//! email), form-POSTed as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=...`.
//! The answer's `expires_in` gives the lifetime; the cache refreshes 60 s before it ends.
//!
//! ```
//! use tower_bearer::{BearerAuthLayer, secret::ClientSecret, source::disruptive};
//!
//! # fn main() -> Result<(), tower_bearer::Error> {
//! let source = disruptive::service_account(
//!     "<YOUR_DT_SERVICE_ACCOUNT_KEY_ID>",
//!     "<YOUR_DT_SERVICE_ACCOUNT_EMAIL>",
//!     &ClientSecret::new("<YOUR_DT_SERVICE_ACCOUNT_SECRET>"),
//! )
//! .build()?;
//! let layer = BearerAuthLayer::new(source);
//! # let _ = layer; Ok(()) }
//! ```

use std::time::Duration;

use super::assertion::{Assertion, SigningKey};
use super::jwt_bearer::JwtBearerBuilder;
use crate::secret::ClientSecret;

/// The Disruptive Technologies token endpoint.
pub const TOKEN_URL: &str = "https://identity.disruptive-technologies.com/oauth2/token";

/// A service account (key id, email, secret) against [`TOKEN_URL`].
///
/// The secret is the HS256 key, as the vendor issues it (32 characters); one shorter than
/// 32 bytes makes [`build`](JwtBearerBuilder::build) fail with a
/// [`Config`](crate::ErrorKind::Config) error.
pub fn service_account(key_id: &str, email: &str, secret: &ClientSecret) -> JwtBearerBuilder {
    service_account_at(TOKEN_URL, key_id, email, secret)
}

/// A service account against another token URL (a test server, a proxy).
pub fn service_account_at(
    token_url: &str,
    key_id: &str,
    email: &str,
    secret: &ClientSecret,
) -> JwtBearerBuilder {
    let assertion = SigningKey::hs256(secret).map(|key| {
        Assertion::new(key.with_key_id(key_id), email)
            .lifetime(Duration::from_secs(3600))
            .with_jti(false)
    });
    JwtBearerBuilder::with_assertion(token_url.into(), assertion)
}
