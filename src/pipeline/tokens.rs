//! Step 2 of the pipeline, where the tokens come from: [`Tokens`], one [`TokenCache`] or a
//! keyed cache with its key picker ([`PerKey`](crate::keyed::PerKey)). The front ends
//! ([`BearerAuthLayer`](crate::BearerAuthLayer), [`BearerAuth`](crate::BearerAuth),
//! `BearerAuthMiddleware`) are generic over it, so each is written once for both.

use std::fmt;

use http::Request;
use tower::Service;

use super::Judge;
use crate::origin::Destinations;
use crate::service::{Mode, ResponseFuture, Single};
use crate::{TokenCache, TokenSource};

/// Where a front end's tokens come from, for tokens of a source `P` (its `Source`): one
/// [`TokenCache<P>`] (the
/// default of every front end), or [`PerKey`](crate::keyed::PerKey), a
/// [`KeyedTokenCache`](crate::keyed::KeyedTokenCache) and how each request's key is picked.
///
/// Sealed: the crate implements it for these two. Its types come from the sealed supertrait:
/// `Source` (the source `P` of the tokens, of each key's slot for a keyed cache) and `Cache`
/// (what the front end's `cache()` returns). Code generic over both kinds names them so:
///
/// ```
/// use tower::layer::util::Identity;
/// use tower_bearer::{BearerAuthLayer, InvalidateOnly, Origin, pipeline::Tokens};
///
/// fn only_to_billing<P, C: Tokens<Source = P>>(
///     layer: BearerAuthLayer<P, InvalidateOnly, Identity, C>,
/// ) -> BearerAuthLayer<P, InvalidateOnly, Identity, C> {
///     layer.allow_origin(Origin::from_static("https://billing.example.com"))
/// }
/// # let _ = only_to_billing(BearerAuthLayer::new(tower_bearer::source::static_token("abc")));
/// ```
pub trait Tokens: Clone + fmt::Debug + Send + Sync + Sealed<Front: Clone + fmt::Debug> {
    /// The cache.
    #[doc(hidden)]
    fn cache(&self) -> &Self::Cache;

    /// What a new service keeps, with these rules.
    // The rules are the crate's own types: this method is not for users (sealed, hidden).
    #[allow(private_interfaces)]
    #[doc(hidden)]
    fn front(&self, destinations: &Destinations, judge: &Judge) -> Self::Front;

    /// The cache a service's `front` takes tokens from.
    #[doc(hidden)]
    fn front_cache(front: &Self::Front) -> &Self::Cache;

    /// A tower service's call: pick the cache for `request` and send it through `inner` in
    /// mode `M`.
    #[doc(hidden)]
    fn call<S, M, B>(
        front: &mut Self::Front,
        inner: &mut S,
        request: Request<B>,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        M: Mode<S, B>;

    /// The reqwest middleware's handler: pick the cache for `request` and send it on.
    #[cfg(feature = "reqwest-middleware")]
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn handle<'a>(
        &'a self,
        destinations: &'a Destinations,
        judge: &'a Judge,
        request: ::reqwest::Request,
        extensions: &'a mut http::Extensions,
        next: reqwest_middleware::Next<'a>,
    ) -> impl Future<Output = reqwest_middleware::Result<::reqwest::Response>> + Send + 'a;
}

/// Implemented by the crate's [`Tokens`] only; its types, named without any bound on the
/// source, so that a service holding a source whose type has lifetimes the compiler forgets
/// in a future (a boxed closure) is still `Send`.
pub trait Sealed {
    /// The source of the tokens (of each key's slot, for a keyed cache).
    type Source;

    /// The cache the front end's `cache()` returns.
    type Cache;

    /// What each service keeps of its tokens.
    type Front;
}

impl<P> Sealed for TokenCache<P> {
    type Source = P;
    type Cache = TokenCache<P>;
    type Front = Single<P>;
}

impl<P: TokenSource> Tokens for TokenCache<P> {
    fn cache(&self) -> &TokenCache<P> {
        self
    }

    // The rules are the crate's own types: this method is not for users (sealed, hidden).
    #[allow(private_interfaces)]
    fn front(&self, destinations: &Destinations, judge: &Judge) -> Single<P> {
        Single::new(self.clone(), destinations.clone(), judge.clone())
    }

    fn front_cache(front: &Single<P>) -> &TokenCache<P> {
        &front.cache
    }

    #[inline]
    fn call<S, M, B>(
        front: &mut Single<P>,
        inner: &mut S,
        request: Request<B>,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        M: Mode<S, B>,
    {
        M::call(front, inner, request)
    }

    #[cfg(feature = "reqwest-middleware")]
    #[allow(private_interfaces)]
    fn handle<'a>(
        &'a self,
        destinations: &'a Destinations,
        judge: &'a Judge,
        request: ::reqwest::Request,
        extensions: &'a mut http::Extensions,
        next: reqwest_middleware::Next<'a>,
    ) -> impl Future<Output = reqwest_middleware::Result<::reqwest::Response>> + Send + 'a {
        crate::reqwest::handle(self, destinations, judge, request, extensions, next)
    }
}
