// The crate's front page is the README, so that the two never drift apart; its examples are
// compiled and run as doctests (below) in builds with the features they use.
#![cfg_attr(not(doctest), doc = include_str!("../README.md"))]
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
mod cache;
pub mod challenge;
#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
mod crypto;
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
pub mod dpop;
mod error;
#[cfg(any(feature = "jwt", feature = "reqwest"))]
mod file_stamp;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
pub mod grpc;
pub mod http_client;
pub mod keyed;
mod layer;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod mtls;
mod origin;
pub mod pipeline;
pub mod redirect;
mod replay;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
pub mod secret;
mod service;
pub mod source;
pub mod store;
mod token;

mod builder_ext;
mod time;

#[cfg(all(
    any(feature = "jwt", feature = "dpop", feature = "redis"),
    not(any(feature = "ring", feature = "aws-lc-rs"))
))]
compile_error!(
    "tower-bearer: the `jwt`, `dpop` and `redis` features sign or encrypt, and need a crypto \
     provider: enable the `ring` feature or the `aws-lc-rs` feature as well (the default \
     features include `ring`)"
);
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
    Backoff, CachedToken, Health, HealthStatus, RefreshEvent, RefreshReason, RefreshTier,
    TokenCache, TokenCacheBuilder,
};
pub use error::{BoxError, Error, ErrorKind, MAX_RETRY_AFTER};
pub use layer::BearerAuthLayer;
pub use origin::{OnDisallowedOrigin, Origin, is_loopback_host};
pub use replay::{MAX_REPLAY_BODY, ReplayBody};
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use reqwest::BearerAuthMiddleware;
pub use service::{BearerAuth, InvalidateOnly, Replay, ResponseFuture};
pub use source::BoxTokenSource;
pub use source::contract::TokenSource;
pub use token::{JwtTimes, Token, jwt_claims};

/// The README's examples, compiled and run by `cargo test --all-features`.
#[cfg(all(
    doctest,
    feature = "reqwest-middleware",
    feature = "dpop",
    feature = "redis",
    feature = "tower-http"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
