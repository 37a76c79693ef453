//! Tower middleware that adds `Authorization: Bearer <token>` to outgoing HTTP requests, from a
//! shared, single-flight token refresher.
//!
//! Service-to-service clients must keep a short-lived access token fresh. Hand-written loops
//! ("if it expires within a minute, refresh") break under concurrency (a thousand requests, a
//! thousand refreshes), cancellation (a rotated refresh token lost with a cancelled request),
//! outages (every request hammering a dead token endpoint) and 401 storms. `tower-bearer` does
//! it once:
//!
//! - **single flight**: any number of concurrent requests cause at most one token fetch;
//! - **serve stale**: inside the refresh window, requests go on at once with the current token
//!   while one refresh runs in the background;
//! - **detached refresh**: the refresh runs in its own task, so a cancelled request never
//!   cancels it;
//! - **backoff**: failures are retried with jittered exponential backoff, and rejections are
//!   remembered, so an outage does not become a token-endpoint flood;
//! - **fast**: a fresh token costs one atomic load, one coarse clock read and a header insert;
//! - **safe with 401s**: a 401 that rejects the token drops exactly that token (a storm of 401s
//!   costs one refresh) and can replay the request once with a new one, never looping;
//! - **careful where tokens go**: an optional origin allow-list, no plain http except to
//!   loopback, sensitive header values, redirect policies that keep tokens on their origin.
//!
//! # Client stack
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! // Where tokens come from: any async closure, or a built-in source.
//! let source = from_fn(|| async {
//!     // ... call your token endpoint ...
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! });
//!
//! # let hyper_util_client = service_fn(|req: Request<String>| async move {
//! #     Ok::<_, Infallible>(Response::new(req.headers()["authorization"].clone()))
//! # });
//! // Any `Service<http::Request<B>>`: a hyper-util client, a tower stack, ...
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(source))
//!     .service(hyper_util_client);
//!
//! let response = client.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.body(), "Bearer abc");
//! # Ok(()) }
//! ```
//!
//! # The pieces
//!
//! - [`TokenSource`]: where tokens come from (see [`source`]).
//! - [`Token`]: the secret (redacted, zeroized) and its lifetime.
//! - [`TokenCache`]: the single-flight cache, shared by clones; usable on its own.
//! - [`BearerAuthLayer`] / [`BearerAuth`] / [`ResponseFuture`]: the tower middleware;
//!   [`ReplayBody`] for the request bodies it can replay after a 401.
//! - `BearerAuthMiddleware` (feature `reqwest-middleware`): the same cache and policy as a
//!   `reqwest_middleware::Middleware`.
//! - [`KeyedTokenCache`] ([`keyed`]): a token per destination (audience, resource, tenant), and
//!   [`BearerAuthLayer::per_origin`] / [`BearerAuthLayer::per_request`] to pick it per request.
//! - [`source::Discovery`]: the token endpoint from the issuer (RFC 8414, OpenID Connect);
//!   [`source::TokenExchange`] (RFC 8693); [`source::Revocation`] (RFC 7009).
//! - [`challenge`]: the one 401 decision, over a lenient `WWW-Authenticate` parser, and
//!   [`RejectionRule`](challenge::RejectionRule)s of your own.
//! - [`origin`]: where tokens may go ([`Origin`], [`OnDisallowedOrigin`]).
//! - [`Error`]: one error type with a [`kind`](Error::kind) to match on.
//! - `dpop` (feature `dpop`): DPoP-bound tokens (RFC 9449), sent by the same layer and
//!   middleware with a proof per request (the binding travels with the token); client
//!   certificates (RFC 8705) are `ClientAuth::tls_client_auth` and
//!   `http_client::ClientIdentity` (feature `reqwest`). See "Proof of possession" in the
//!   README.
//!
//! # When the server says 401
//!
//! A 401 whose `WWW-Authenticate` has no `Bearer` error, or says `error="invalid_token"`, means
//! the token that was sent is no good: it is dropped from the cache if it is still the current
//! one (the token itself is compared), so a thousand concurrent 401s cause one refresh; and at most
//! one token per second is dropped this way, so a server that rejects every token (a wrong
//! audience, say) cannot turn each request into a token-endpoint call. By default the 401 is
//! returned and the next request gets the new token; [`BearerAuthLayer::replay_on_401`] (and
//! the middleware's option of the same name) replays it once, for bodies that can be copied.
//! `insufficient_scope`, a 403 and anything else pass through untouched, unless a
//! [`RejectionRule`](challenge::RejectionRule) or a body rule says otherwise. The decision and
//! the replay are written once, in the [`pipeline`], for every stack, Bearer and DPoP alike.
//!
//! # Redirects
//!
//! Nothing in this crate follows redirects, and the clients that do carry credentials too far:
//! tower-http's `FollowRedirect` and reqwest rebuild every hop from the first request's headers
//! and compare only the last two hops (`api → storage/a → storage/b` puts `Authorization` back
//! on `/b`), and reqwest never removes a `DPoP` proof. Use the crate's policies ([`redirect`]):
//!
//! - tower: `FollowRedirectLayer::with_policy(redirect::TokensStayHome::new())` (feature
//!   `tower-http`), below the bearer layer or above it. Once a chain leaves the origin of its
//!   first request, no later hop carries `Authorization`, `DPoP` or cookies, even one that
//!   comes back to that origin.
//! - reqwest: `reqwest::Client::builder().redirect(redirect::reqwest_policy())` under the
//!   middleware. It follows redirects within the origin and returns the 3xx of one that
//!   leaves it: follow that `Location` with a client without the token.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::await_holding_lock,
    clippy::todo,
    clippy::dbg_macro,
    clippy::unimplemented
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body_rule;
pub mod cache;
pub mod challenge;
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
pub mod dpop;
pub mod error;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
pub mod http_client;
pub mod keyed;
mod layer;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod mtls;
pub mod origin;
pub mod pipeline;
pub mod redirect;
mod replay;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
pub mod secret;
mod service;
pub mod source;
pub mod store;
pub mod token;

mod builder_ext;
mod time;
// The parsers behind plain signatures, for `fuzz/` (cargo fuzz sets `cfg(fuzzing)`) and the
// property tests.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
#[cfg(test)]
mod proptests;

pub use builder_ext::ServiceBuilderExt;
pub use cache::{
    Backoff, CachedToken, RefreshEvent, RefreshReason, RefreshTier, TokenCache, TokenCacheBuilder,
};
pub use error::{BoxError, Error, ErrorKind, MAX_RETRY_AFTER};
pub use keyed::KeyedTokenCache;
pub use layer::BearerAuthLayer;
pub use origin::{OnDisallowedOrigin, Origin};
pub use replay::{MAX_REPLAY_BODY, ReplayBody};
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use reqwest::BearerAuthMiddleware;
pub use service::{BearerAuth, InvalidateOnly, Replay, ResponseFuture};
pub use source::TokenSource;
pub use token::Token;
