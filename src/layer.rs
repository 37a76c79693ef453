//! [`BearerAuthLayer`]: wraps a service so every request carries `Authorization: Bearer …`.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let source = from_fn(|| async {
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(source))
//!     .service(service_fn(|req: Request<()>| async move {
//!         // Stands in for a hyper-util client: echo what it would have sent.
//!         let auth = req.headers()[AUTHORIZATION].clone();
//!         Ok::<_, Infallible>(Response::new(auth))
//!     }));
//!
//! let response = client.oneshot(Request::new(())).await?;
//! assert_eq!(response.body(), "Bearer abc");
//! # Ok(()) }
//! ```

use std::fmt;

use tower::Layer;

use crate::{BearerAuth, TokenCache, TokenSource};

/// A [`Layer`] that adds `Authorization: Bearer <token>` to every request, with tokens from a
/// shared [`TokenCache`].
///
/// Cloning the layer (or the services it makes) shares the cache: one token, one refresh.
pub struct BearerAuthLayer<P> {
    cache: TokenCache<P>,
}

impl<P: TokenSource> BearerAuthLayer<P> {
    /// A layer with its own [`TokenCache`] (default settings) over `source`.
    pub fn new(source: P) -> Self {
        Self::from_cache(TokenCache::new(source))
    }

    /// A layer using an existing cache, to share one token between several clients or to use
    /// a cache built with [`TokenCache::builder`].
    pub fn from_cache(cache: TokenCache<P>) -> Self {
        BearerAuthLayer { cache }
    }

    /// The cache this layer's services take tokens from.
    pub fn cache(&self) -> &TokenCache<P> {
        &self.cache
    }
}

impl<S, P: TokenSource> Layer<S> for BearerAuthLayer<P> {
    type Service = BearerAuth<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::new(inner, self.cache.clone())
    }
}

impl<P> Clone for BearerAuthLayer<P> {
    fn clone(&self) -> Self {
        BearerAuthLayer {
            cache: self.cache.clone(),
        }
    }
}

impl<P> fmt::Debug for BearerAuthLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("cache", &self.cache)
            .finish()
    }
}
