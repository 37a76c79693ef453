//! [`BearerAuth`], the service made by [`BearerAuthLayer`](crate::BearerAuthLayer), and its
//! [`ResponseFuture`].
//!
//! The common case, a fresh token that this service has already seen, costs one atomic load
//! and a header insert: each service keeps the prebuilt header value of the token it last used
//! together with the cache's `generation|phase` word, and reuses it while the word is unchanged.
//! Anything else (a new token, the refresh window, no token) takes the slow path, which may
//! read the clock, start a background refresh or wait for one.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{Service, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuth, TokenCache, source::static_token};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let inner = service_fn(|req: Request<String>| async move {
//!     Ok::<_, Infallible>(Response::new(req.headers().contains_key("authorization")))
//! });
//! let mut svc = BearerAuth::new(inner, TokenCache::new(static_token("t0k3n")));
//! let response = svc.ready().await?.call(Request::new(String::from("hi"))).await?;
//! assert!(*response.body());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::Service;

use crate::{BoxError, CachedToken, Error, TokenCache, TokenSource};

/// Adds `Authorization: Bearer <token>` to every request before passing it to `S`.
///
/// An existing `Authorization` header is replaced. Errors are [`BoxError`]: either the inner
/// service's error or a [`tower_bearer::Error`](crate::Error) that stopped a token from being
/// obtained (`err.downcast_ref::<tower_bearer::Error>()`).
pub struct BearerAuth<S, P> {
    inner: S,
    cache: TokenCache<P>,
    /// The cache state word when `header` was taken; `u64::MAX` when there is none.
    seen: u64,
    header: HeaderValue,
}

impl<S, P: TokenSource> BearerAuth<S, P> {
    /// Wrap `inner`, taking tokens from `cache`.
    pub fn new(inner: S, cache: TokenCache<P>) -> Self {
        BearerAuth {
            inner,
            cache,
            seen: u64::MAX,
            header: HeaderValue::from_static(""),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The cache this service takes tokens from.
    pub fn cache(&self) -> &TokenCache<P> {
        &self.cache
    }
}

impl<S, P, B> Service<Request<B>> for BearerAuth<S, P>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    P: TokenSource,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Fast path: the token this service used last is still current and fresh.
        let state = self.cache.state();
        if state == self.seen {
            request
                .headers_mut()
                .insert(AUTHORIZATION, self.header.clone());
            return ResponseFuture::called(self.inner.call(request));
        }
        self.call_slow(request, state)
    }
}

impl<S, P> BearerAuth<S, P>
where
    P: TokenSource,
{
    /// Everything but the fast path, kept out of line so the fast path stays small.
    #[cold]
    #[inline(never)]
    fn call_slow<B>(&mut self, mut request: Request<B>, state: u64) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>> + Clone,
    {
        // A fresh token this service has not seen yet (a new token, or a clone of a service
        // that never sent): one more lock-free load, no clock read.
        if let Some(header) = self.cache.fresh_header(state) {
            self.seen = state;
            self.header = header;
            request
                .headers_mut()
                .insert(AUTHORIZATION, self.header.clone());
            return ResponseFuture::called(self.inner.call(request));
        }
        if let Some((token, state)) = self.cache.usable() {
            self.seen = state;
            self.header = token.header_value().clone();
            request
                .headers_mut()
                .insert(AUTHORIZATION, self.header.clone());
            return ResponseFuture::called(self.inner.call(request));
        }
        // No usable token: wait for the refresh, then call the service that was made ready
        // (tower's clone-and-swap idiom keeps `self` with a fresh clone).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        ResponseFuture {
            state: State::Waiting {
                token: Box::pin(async move { cache.token().await }),
                // Boxed so the future stays as small as the inner one on the fast path.
                parts: Some(Box::new((inner, request))),
            },
        }
    }
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<CachedToken, Error>> + Send>>;

pin_project! {
    /// The response future of [`BearerAuth`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        Waiting {
            token: TokenFuture,
            parts: Option<Box<(S, Request<B>)>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    fn called(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Waiting { token, parts } => {
                    let token = ready!(token.as_mut().poll(cx))?;
                    let (mut inner, mut request) = *parts
                        .take()
                        .expect("ResponseFuture polled after completion");
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, token.header_value().clone());
                    let future = inner.call(request);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting for token",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Clone, P> Clone for BearerAuth<S, P> {
    fn clone(&self) -> Self {
        // Hand the remembered header on only while it is current: a template service that
        // never sends would otherwise make every clone copy a header it cannot use.
        let (seen, header) = if self.cache.state() == self.seen {
            (self.seen, self.header.clone())
        } else {
            (u64::MAX, HeaderValue::from_static(""))
        };
        BearerAuth {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            seen,
            header,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for BearerAuth<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
