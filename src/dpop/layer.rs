//! [`DpopAuthLayer`] and [`DpopAuth`]: the tower middleware for DPoP-bound tokens.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Extensions, HeaderMap, Request, Response, StatusCode};
use tower::{Layer, Service};

use super::Target;
use super::send::{Binding, Transport};
use crate::origin::{Approved, Destinations, Verdict};
use crate::replay::try_clone_request;
use crate::{BoxError, Error, OnDisallowedOrigin, Origin, ReplayBody, TokenCache, TokenSource};

/// The response future of [`DpopAuth`]: boxed, since each request signs a proof anyway (tens
/// of microseconds), next to which a box costs nothing.
pub type DpopFuture<R> = BoxFuture<'static, Result<R, BoxError>>;

/// A [`Layer`] that adds `Authorization: DPoP <token>` and a fresh `DPoP` proof (RFC 9449 §7)
/// to every request, with tokens from a shared [`TokenCache`] whose source holds a
/// [`Dpop`](super::Dpop) (see the [module docs](super)).
///
/// Configured like [`BearerAuthLayer`](crate::BearerAuthLayer) (and made from one with
/// [`BearerAuthLayer::dpop`](crate::BearerAuthLayer::dpop)): an origin allow-list, plain http
/// only to loopback unless allowed. Request URIs must be absolute (the proof names them).
///
/// Requests whose body can be copied ([`ReplayBody`]) are sent once more after a nonce
/// challenge (`use_dpop_nonce`) with the nonce, or after a 401 that rejects the token with a
/// new one (turn that off with [`replay_on_401`](Self::replay_on_401)); others are sent once.
/// The services require `B: ReplayBody`: a streaming body (hyper's `Incoming`, say) goes
/// through as a `BoxBody` (`body.boxed()`), which is copied only when empty.
pub struct DpopAuthLayer<P> {
    binding: Arc<Binding<P>>,
    destinations: Destinations,
    replay_on_401: bool,
}

impl<P: TokenSource> DpopAuthLayer<P> {
    /// A layer with its own [`TokenCache`] (default settings) over `source`.
    pub fn new(source: P) -> Self {
        Self::from_cache(TokenCache::new(source))
    }

    /// A layer using an existing cache (shared with a `DpopMiddleware`,
    /// say).
    pub fn from_cache(cache: TokenCache<P>) -> Self {
        Self::with_destinations(cache, Destinations::default())
    }

    pub(crate) fn with_destinations(cache: TokenCache<P>, destinations: Destinations) -> Self {
        DpopAuthLayer {
            binding: Arc::new(Binding::new(cache)),
            destinations,
            replay_on_401: true,
        }
    }

    /// After a 401 that rejects the token, send the request once more with a new token, when
    /// its body can be copied (default `true`: the copy is taken anyway, for nonces).
    pub fn replay_on_401(mut self, replay: bool) -> Self {
        self.replay_on_401 = replay;
        self
    }

    /// Send the token only to this origin (and any others allowed); see
    /// [`BearerAuthLayer::allow_origin`](crate::BearerAuthLayer::allow_origin).
    pub fn allow_origin(mut self, origin: Origin) -> Self {
        self.destinations.allow_origin(origin);
        self
    }

    /// Send the token over plain `http://` to any host, not only loopback ones (default
    /// `false`; for tests).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.destinations.allow_insecure_http(allow);
        self
    }

    /// Send a request that may not receive the token without it (the default) or fail it.
    pub fn on_disallowed_origin(mut self, action: OnDisallowedOrigin) -> Self {
        self.destinations.on_disallowed = action;
        self
    }

    /// The cache this layer's services take tokens from.
    pub fn cache(&self) -> &TokenCache<P> {
        &self.binding.cache
    }
}

impl<S, P: TokenSource> Layer<S> for DpopAuthLayer<P> {
    type Service = DpopAuth<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        DpopAuth {
            inner,
            binding: Arc::clone(&self.binding),
            destinations: self.destinations.clone(),
            approved: Approved::NONE,
            replay_on_401: self.replay_on_401,
        }
    }
}

impl<P> Clone for DpopAuthLayer<P> {
    fn clone(&self) -> Self {
        DpopAuthLayer {
            binding: Arc::clone(&self.binding),
            destinations: self.destinations.clone(),
            replay_on_401: self.replay_on_401,
        }
    }
}

impl<P> fmt::Debug for DpopAuthLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopAuthLayer")
            .field("cache", &self.binding.cache)
            .field("destinations", &self.destinations)
            .field("replay_on_401", &self.replay_on_401)
            .finish()
    }
}

/// The service made by [`DpopAuthLayer`]. Errors are [`BoxError`]: the inner service's, or a
/// [`tower_bearer::Error`](crate::Error) (no token, a refused destination, a relative URI).
pub struct DpopAuth<S, P> {
    inner: S,
    binding: Arc<Binding<P>>,
    destinations: Destinations,
    approved: Approved,
    replay_on_401: bool,
}

impl<S, P> DpopAuth<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, B, RB> Service<Request<B>> for DpopAuth<S, P>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    P: TokenSource,
    B: ReplayBody + Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = DpopFuture<Response<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service that was made ready is the one called; `self` keeps a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match self
            .destinations
            .check_request(&request, &mut self.approved)
        {
            Verdict::Attach => {}
            Verdict::Skip => {
                return Box::pin(async move { inner.call(request).await.map_err(Into::into) });
            }
            Verdict::Refuse(error) => return Box::pin(async move { Err(error.into()) }),
        }
        let binding = Arc::clone(&self.binding);
        let replay_on_401 = self.replay_on_401;
        Box::pin(async move {
            let target = Target::from_uri(request.uri())?;
            let method = request.method().clone();
            let spare = inner.clone();
            let transport = Tower {
                first: Some(inner),
                spare,
                marker: PhantomData,
            };
            binding
                .send(transport, method, target, request, replay_on_401)
                .await
        })
    }
}

/// Sends through the inner service: the first request through the service that was made
/// ready, a second one through a clone, once it is ready.
struct Tower<S, B, RB> {
    first: Option<S>,
    spare: S,
    marker: PhantomData<fn(B) -> RB>,
}

impl<S, B, RB> Transport for Tower<S, B, RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: ReplayBody + Send,
{
    type Request = Request<B>;
    type Response = Response<RB>;
    type Error = BoxError;

    fn headers_mut(request: &mut Request<B>) -> &mut HeaderMap {
        request.headers_mut()
    }

    fn try_clone(request: &Request<B>) -> Option<Request<B>> {
        try_clone_request(request)
    }

    fn status(response: &Response<RB>) -> StatusCode {
        response.status()
    }

    fn headers(response: &Response<RB>) -> &HeaderMap {
        response.headers()
    }

    fn extensions_mut(response: &mut Response<RB>) -> &mut Extensions {
        response.extensions_mut()
    }

    fn error(error: Error) -> BoxError {
        error.into()
    }

    async fn send(&mut self, request: Request<B>) -> Result<Response<RB>, BoxError> {
        match self.first.take() {
            Some(mut ready) => ready.call(request).await.map_err(Into::into),
            None => {
                std::future::poll_fn(|cx| self.spare.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                self.spare.call(request).await.map_err(Into::into)
            }
        }
    }
}

impl<S: Clone, P> Clone for DpopAuth<S, P> {
    fn clone(&self) -> Self {
        DpopAuth {
            inner: self.inner.clone(),
            binding: Arc::clone(&self.binding),
            destinations: self.destinations.clone(),
            approved: self.approved.clone(),
            replay_on_401: self.replay_on_401,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for DpopAuth<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopAuth")
            .field("inner", &self.inner)
            .field("cache", &self.binding.cache)
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}
