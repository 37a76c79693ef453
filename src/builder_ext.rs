use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::{BearerAuthLayer, TokenCache, TokenSource};

/// Adds `.bearer_auth(source)` to [`tower::ServiceBuilder`], as tower-http's
/// `ServiceBuilderExt` does for its middleware.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_bearer::{ServiceBuilderExt, source::static_token};
///
/// let builder = ServiceBuilder::new().bearer_auth(static_token("abc"));
/// # let _ = builder;
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Add a [`BearerAuthLayer`] over `source`.
    fn bearer_auth<P: TokenSource>(self, source: P)
    -> ServiceBuilder<Stack<BearerAuthLayer<P>, L>>;

    /// Add a [`BearerAuthLayer`] sharing an existing cache.
    fn bearer_auth_cache<P: TokenSource>(
        self,
        cache: TokenCache<P>,
    ) -> ServiceBuilder<Stack<BearerAuthLayer<P>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn bearer_auth<P: TokenSource>(
        self,
        source: P,
    ) -> ServiceBuilder<Stack<BearerAuthLayer<P>, L>> {
        self.layer(BearerAuthLayer::new(source))
    }

    fn bearer_auth_cache<P: TokenSource>(
        self,
        cache: TokenCache<P>,
    ) -> ServiceBuilder<Stack<BearerAuthLayer<P>, L>> {
        self.layer(BearerAuthLayer::from_cache(cache))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
