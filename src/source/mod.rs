//! Where tokens come from: the [`TokenSource`](crate::TokenSource) trait and the built-in sources.
//!
//! A source answers one question, "give me a new token", and nothing else: caching,
//! single-flight, refresh windows, backoff and 401 handling are the
//! [`TokenCache`](crate::TokenCache)'s job. That keeps every source small.
//!
//! | source | flow | presets |
//! |---|---|---|
//! | [`static_token`], [`from_fn`] | a fixed token; any async closure | |
//! | [`RefreshEndpoint`] | vendor refresh endpoint: `GET url?param=R` → `{"access_token"}`, lifetime from the JWT | [`kensho::personal_token`], [`kensho::link`] |
//! | [`ClientCredentials`] | RFC 6749 §4.4, with every [`ClientAuth`] method | `kensho::keypair` (feature `jwt`) |
//! | [`RefreshTokenGrant`] | RFC 6749 §6, rotation saved through a [`RefreshTokenStore`](crate::store::RefreshTokenStore) | |
//! | [`JwtBearer`] | RFC 7523 §2.1: an assertion signed here (feature `jwt`) or by the platform | `disruptive::service_account` |
//! | [`ApiKeyExchange`] | API key → access + rotating refresh token, JSON POSTs | [`api_video::api_key`] |
//! | [`TokenExchange`] | RFC 8693 token exchange, with RFC 8707 resource indicators | |
//! | [`workload`] | no stored secret: platform token files, Azure workload identity, metadata servers, GitHub Actions OIDC | `workload::from_env` (feature `reqwest`) |
//!
//! [`BoxTokenSource`] ([`TokenSource::boxed`](crate::TokenSource::boxed)) holds any of them behind one type, to mix grants
//! in one keyed cache or pick one per environment.
//!
//! [`Discovery`] builds the OAuth 2.0 sources from an issuer URL (RFC 8414, OpenID Connect
//! Discovery), and [`Revocation`] revokes tokens (RFC 7009).
//!
//! The built-in HTTP sources call their token endpoint through an
//! [`HttpClient`](crate::http_client::HttpClient) (reqwest by default), read its answer with
//! field names from [`TokenFields`], and classify failures: [`Transient`](crate::ErrorKind::Transient)
//! for 5xx, 429, timeouts and connection failures (with `Retry-After`),
//! [`Rejected`](crate::ErrorKind::Rejected) for 4xx and RFC 6749 §5.2 errors (with the code),
//! [`Config`](crate::ErrorKind::Config) for a 404 or 405 without an OAuth error (a mistyped URL),
//! [`InvalidResponse`](crate::ErrorKind::InvalidResponse) for anything that is not a usable
//! Bearer token. Their errors name the endpoint's host, never a URL, body or secret.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{Error, Token, TokenSource, source};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! // A closure returning a future.
//! let from_closure = source::from_fn(|| async {
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! });
//! assert_eq!(from_closure.fetch().await?.secret(), "abc");
//!
//! // A token that never changes (an API key sent as a bearer token, a test).
//! let fixed = source::static_token("xyz");
//! assert_eq!(fixed.fetch().await?.secret(), "xyz");
//! # Ok(()) }
//! ```
//!
//! Implementing the trait yourself is one `async fn`:
//!
//! ```
//! use tower_bearer::{Error, Token, TokenSource};
//!
//! struct MyVault { /* a client, a path, ... */ }
//!
//! impl TokenSource for MyVault {
//!     async fn fetch(&self) -> Result<Token, Error> {
//!         // Ask your vault; classify failures with Error::transient / Error::rejected.
//!         Ok(Token::new("from-vault"))
//!     }
//! }
//! ```

mod api_key;
pub mod api_video;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod assertion;
mod boxed;
mod builder;
mod client_auth;
mod client_credentials;
mod discovery;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod disruptive;
mod jwt_bearer;
pub mod kensho;
mod refresh_endpoint;
mod refresh_token;
mod revocation;
#[cfg(any(feature = "jwt", feature = "dpop"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "dpop"))))]
pub mod signer;
mod token_exchange;
pub mod workload;

pub(crate) mod contract;
pub(crate) mod endpoint;
mod from_fn;
mod grant;
mod rotation;
mod static_token;
pub(crate) mod token_response;

pub use api_key::{ApiKeyExchange, ApiKeyExchangeBuilder};
pub use boxed::BoxTokenSource;
pub use client_auth::{ClientAuth, JWT_BEARER_ASSERTION_TYPE};
pub use client_credentials::{ClientCredentials, ClientCredentialsBuilder};
pub use discovery::{DEFAULT_REFRESH_EVERY, Discovered, Discovery, DiscoveryBuilder, Metadata};
pub use from_fn::{FromFn, from_fn};
pub use jwt_bearer::{JWT_BEARER_GRANT_TYPE, JwtBearer, JwtBearerBuilder};
pub use refresh_endpoint::{RefreshEndpoint, RefreshEndpointBuilder};
pub use refresh_token::{RefreshTokenGrant, RefreshTokenGrantBuilder};
pub use revocation::{Revocation, RevocationBuilder, TokenTypeHint};
pub use static_token::{StaticToken, static_token};
pub use token_exchange::{
    TOKEN_EXCHANGE_GRANT_TYPE, TokenExchange, TokenExchangeBuilder, token_type,
};
pub use token_response::TokenFields;
