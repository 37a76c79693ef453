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
//! - **fast**: a fresh token costs one atomic load and a header insert.
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
//! - [`BearerAuthLayer`] / [`BearerAuth`] / [`ResponseFuture`]: the tower middleware.
//! - [`Error`]: one error type with a [`kind`](Error::kind) to match on.
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
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod cache;
pub mod error;
pub mod http_client;
pub mod layer;
pub mod secret;
pub mod service;
pub mod source;
pub mod store;
pub mod token;

mod builder_ext;

pub use builder_ext::ServiceBuilderExt;
pub use cache::{Backoff, CachedToken, RefreshEvent, RefreshReason, TokenCache, TokenCacheBuilder};
pub use error::{BoxError, Error, ErrorKind};
pub use layer::BearerAuthLayer;
pub use service::{BearerAuth, ResponseFuture};
pub use source::TokenSource;
pub use token::Token;
