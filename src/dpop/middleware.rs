//! [`DpopMiddleware`]: DPoP-bound tokens for reqwest, through `reqwest-middleware`.

use std::fmt;
use std::sync::Arc;

use ::reqwest::{Request, Response};
use http::{Extensions, HeaderMap, StatusCode};
use reqwest_middleware::{Middleware, Next};

use super::Target;
use super::send::{Binding, Transport};
use crate::origin::{Destinations, Verdict};
use crate::{Error, OnDisallowedOrigin, Origin, TokenCache, TokenSource};

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: DPoP <token>` and a fresh
/// `DPoP` proof to every request, with tokens from a shared [`TokenCache`] whose source holds
/// a [`Dpop`](super::Dpop).
///
/// Configured like [`DpopAuthLayer`](super::DpopAuthLayer); made from a configured
/// [`BearerAuthMiddleware`](crate::BearerAuthMiddleware) with
/// [`BearerAuthMiddleware::dpop`](crate::BearerAuthMiddleware::dpop). Requests that
/// [`try_clone`](reqwest::Request::try_clone) can copy are sent once more after a nonce
/// challenge or a rejected token (never a third time); streaming bodies are sent once.
pub struct DpopMiddleware<P> {
    binding: Arc<Binding<P>>,
    destinations: Destinations,
    replay_on_401: bool,
}

impl<P: TokenSource> DpopMiddleware<P> {
    /// A middleware with its own [`TokenCache`] (default settings) over `source`.
    pub fn new(source: P) -> Self {
        Self::from_cache(TokenCache::new(source))
    }

    /// A middleware using an existing cache, shared with other middlewares or tower layers.
    pub fn from_cache(cache: TokenCache<P>) -> Self {
        Self::with_destinations(cache, Destinations::default(), true)
    }

    pub(crate) fn with_destinations(
        cache: TokenCache<P>,
        destinations: Destinations,
        replay_on_401: bool,
    ) -> Self {
        DpopMiddleware {
            binding: Arc::new(Binding::new(cache)),
            destinations,
            replay_on_401,
        }
    }

    /// After a 401 that rejects the token, send the request once more with a new token when
    /// it can be copied (default `true`).
    pub fn replay_on_401(mut self, replay: bool) -> Self {
        self.replay_on_401 = replay;
        self
    }

    /// Send the token only to this origin (and any others allowed).
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

    /// The cache this middleware takes tokens from.
    pub fn cache(&self) -> &TokenCache<P> {
        &self.binding.cache
    }
}

#[async_trait::async_trait]
impl<P: TokenSource> Middleware for DpopMiddleware<P> {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        match self.destinations.check_url(request.url()) {
            Verdict::Attach => {}
            Verdict::Skip => return next.run(request, extensions).await,
            Verdict::Refuse(error) => return Err(reqwest_middleware::Error::middleware(error)),
        }
        let target =
            Target::from_url(request.url()).map_err(reqwest_middleware::Error::middleware)?;
        let method = request.method().clone();
        let transport = Reqwest { next, extensions };
        self.binding
            .send(transport, method, target, request, self.replay_on_401)
            .await
    }
}

struct Reqwest<'a> {
    next: Next<'a>,
    extensions: &'a mut Extensions,
}

impl Transport for Reqwest<'_> {
    type Request = Request;
    type Response = Response;
    type Error = reqwest_middleware::Error;

    fn headers_mut(request: &mut Request) -> &mut HeaderMap {
        request.headers_mut()
    }

    fn try_clone(request: &Request) -> Option<Request> {
        request.try_clone()
    }

    fn status(response: &Response) -> StatusCode {
        response.status()
    }

    fn headers(response: &Response) -> &HeaderMap {
        response.headers()
    }

    fn extensions_mut(response: &mut Response) -> &mut Extensions {
        response.extensions_mut()
    }

    fn error(error: Error) -> reqwest_middleware::Error {
        reqwest_middleware::Error::middleware(error)
    }

    async fn send(&mut self, request: Request) -> reqwest_middleware::Result<Response> {
        self.next.clone().run(request, self.extensions).await
    }
}

impl<P> Clone for DpopMiddleware<P> {
    fn clone(&self) -> Self {
        DpopMiddleware {
            binding: Arc::clone(&self.binding),
            destinations: self.destinations.clone(),
            replay_on_401: self.replay_on_401,
        }
    }
}

impl<P> fmt::Debug for DpopMiddleware<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopMiddleware")
            .field("cache", &self.binding.cache)
            .field("destinations", &self.destinations)
            .field("replay_on_401", &self.replay_on_401)
            .finish()
    }
}
