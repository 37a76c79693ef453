//! Presets for Kensho's APIs: thin constructors over the generic sources.
//!
//! | API | preset | what it configures |
//! |---|---|---|
//! | Scribe, NERD, Extract, ... (personal token) | [`personal_token`] | `GET {base}/oauth2/refresh?refresh_token=R` → `{"access_token"}` |
//! | Link | [`link`] | `GET {base}/oauth2/refresh?refreshToken=R` → `{"accessToken"}` |
//! | any API, keypair (Okta) | `keypair` (feature `jwt`) | `client_credentials` with an RS256 client assertion, scope [`EXTRACT_SCOPE`] by default |
//!
//! Access tokens are JWTs that expire every hour; the lifetime is read from their `exp`, and the
//! cache refreshes 60 s before it. Refresh tokens expire seven days after their last use: a
//! refused one gives a [`Rejected`](crate::ErrorKind::Rejected) error asking whether it is
//! correct.
//!
//! ```
//! use tower_bearer::{BearerAuthLayer, secret::RefreshToken, source::kensho};
//!
//! # fn main() -> Result<(), tower_bearer::Error> {
//! // The refresh token from your account page (read it from the environment or a vault).
//! let refresh_token = RefreshToken::new("<KENSHO_REFRESH_TOKEN>");
//! let scribe = kensho::personal_token("https://scribe.kensho.com", refresh_token).build()?;
//! let link = kensho::link("https://link-streaming.kensho.com", RefreshToken::new("<LINK_TOKEN>"))
//!     .build()?;
//! // Building does no I/O: the first request through the layer fetches the first token.
//! let scribe_layer = BearerAuthLayer::new(scribe);
//! let link_layer = BearerAuthLayer::new(link);
//! # let _ = (scribe_layer, link_layer); Ok(()) }
//! ```

use super::refresh_endpoint::{RefreshEndpoint, RefreshEndpointBuilder};
use super::token_response::TokenFields;
#[cfg(feature = "jwt")]
use super::{ClientAuth, ClientCredentials, ClientCredentialsBuilder, assertion::SigningKey};
use crate::secret::RefreshToken;

/// The scope of the Extract API, requested by `keypair` unless changed.
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

/// Keypair authentication to Kensho's Okta token endpoint at `token_url`, with the client id
/// Kensho sent back for your public key and your RSA private key:
/// `client_credentials` with an RS256 client assertion (`iss` = `sub` = client id, `aud` =
/// the token URL, `exp` = `iat` + 30 min, a fresh `jti`) and scope [`EXTRACT_SCOPE`] (change it
/// with [`scope`](ClientCredentialsBuilder::scope)).
///
/// ```
/// use tower_bearer::source::{assertion::SigningKey, kensho};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// # let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa_pkcs8.pem")).unwrap();
/// let key = SigningKey::rs256_pem(&pem)?;
/// let source = kensho::keypair("https://kensho.okta.com/oauth2/default/v1/token", "0oa1b2c3", key)
///     .build()?;
/// # let _ = source; Ok(()) }
/// ```
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub fn keypair(token_url: &str, client_id: &str, key: SigningKey) -> ClientCredentialsBuilder {
    let auth = ClientAuth::private_key_jwt(client_id, key)
        .assertion_lifetime(std::time::Duration::from_secs(30 * 60));
    ClientCredentials::builder(token_url, auth).scope(EXTRACT_SCOPE)
}

fn refresh_url(api_base: &str) -> String {
    format!("{}/oauth2/refresh", api_base.trim_end_matches('/'))
}
