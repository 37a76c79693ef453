//! [`BearerAuth`], the service made by [`BearerAuthLayer`](crate::BearerAuthLayer), and its
//! [`ResponseFuture`].
//!
//! The common case, a fresh token that this service has already seen, costs one atomic load,
//! one read of the coarse monotonic clock (a few nanoseconds), a header insert and a few
//! comparisons: each service keeps the prebuilt header value of the token it last used (its
//! thread's own copy), the cache's `generation|phase` word, and the coarse-clock instant the
//! token stops being fresh, and reuses the header while the word is unchanged and the clock is
//! short of that instant. The clock is what makes this hold when no timer has run (a
//! `block_on` per request, a starved worker, a thawed process).
//! Anything else (a new token, the refresh window, no token) takes the slow path, which reads
//! both clocks, may start a background refresh or wait for one.
//!
//! The request's destination is checked too ([`origin`](crate::origin)): for a relative URI,
//! `https` without an allow-list, or `https` to the authority this service last approved, this is
//! a comparison or two. Then the response future
//! looks at the status: a 401 that [rejects the token](crate::challenge::rejects_token) drops
//! that token from the cache (compare-and-invalidate), so the next request gets a
//! new one. Replaying the request itself is the [`Replay`] mode
//! ([`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401)), which needs a
//! copy of every request and so is opt-in.
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
use std::marker::PhantomData;
use std::num::{NonZeroU32, NonZeroU64};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::Service;

use crate::cache::handle::{self, TokenFuture};
use crate::cache::{Freshness, coarse_now};
use crate::challenge::{self, RejectionRule};
use crate::origin::{Approved, Destinations, Verdict};
use crate::{BoxError, Error, TokenCache, TokenSource};

/// The default mode of [`BearerAuth`]: a 401 that rejects the token drops it from the cache,
/// and the 401 is returned to the caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct InvalidateOnly;

/// The mode of [`BearerAuth`] set by
/// [`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401): a 401 that rejects
/// the token drops it and, when the body is a [`ReplayBody`](crate::ReplayBody) that can be
/// copied, the request is sent once more with a new token.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replay;

/// Adds `Authorization: Bearer <token>` to every request before passing it to `S`.
///
/// An existing `Authorization` header is replaced, except on requests whose destination may not
/// receive the token ([`origin`](crate::origin)), which are left as they are. Errors are
/// [`BoxError`]: either the inner service's error or a [`tower_bearer::Error`](crate::Error)
/// that stopped a token from being obtained or refused the destination
/// (`err.downcast_ref::<tower_bearer::Error>()`).
///
/// `M` is [`InvalidateOnly`] (the default) or [`Replay`].
pub struct BearerAuth<S, P, M = InvalidateOnly> {
    pub(crate) inner: S,
    pub(crate) cache: TokenCache<P>,
    /// The cache state word `header` was fresh under, and when it stops being fresh on the
    /// coarse clock; [`Freshness::NONE`] when there is none.
    pub(crate) fresh: Freshness,
    pub(crate) header: HeaderValue,
    /// The last `https` authority the allow-list let through (see `origin`).
    pub(crate) approved: Approved,
    /// Where response futures find the cache again to report a 401 (see `cache::handle`).
    pub(crate) cache_id: NonZeroU32,
    pub(crate) destinations: Destinations,
    /// A rule of the user's saying which responses reject the token, beside the default.
    pub(crate) rule: Option<RejectionRule>,
    pub(crate) mode: PhantomData<fn() -> M>,
}

impl<S, P: TokenSource> BearerAuth<S, P> {
    /// Wrap `inner`, taking tokens from `cache`, with the default rules: no allow-list, plain
    /// http only to loopback, invalidate-only on 401. [`BearerAuthLayer`](crate::BearerAuthLayer)
    /// sets the others.
    pub fn new(inner: S, cache: TokenCache<P>) -> Self {
        Self::with_destinations(inner, cache, Destinations::default())
    }
}

impl<S, P: TokenSource, M> BearerAuth<S, P, M> {
    pub(crate) fn with_destinations(
        inner: S,
        cache: TokenCache<P>,
        destinations: Destinations,
    ) -> Self {
        BearerAuth {
            inner,
            cache_id: cache.registry_id(),
            cache,
            fresh: Freshness::NONE,
            header: HeaderValue::from_static(""),
            approved: Approved::NONE,
            destinations,
            rule: None,
            mode: PhantomData,
        }
    }

    /// Use `rule` beside the default to decide which responses reject the token.
    pub(crate) fn with_rule(mut self, rule: Option<RejectionRule>) -> Self {
        self.rule = rule;
        self
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

impl<S, P, B, RB> Service<Request<B>> for BearerAuth<S, P, InvalidateOnly>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
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
        // Fast path: the token this service used last is still current, no timer marked it
        // stale, the coarse clock says it is still fresh (whether or not a timer ran), and the
        // request goes to a relative URI or over https to a destination already approved.
        let state = self.cache.state();
        if self.is_fresh(state) && self.destinations.quick_attach(&request, &self.approved) {
            request
                .headers_mut()
                .insert(AUTHORIZATION, self.header.clone());
            let sent = Sent::new(self.cache_id, state >> 2);
            return ResponseFuture::called(self.inner.call(request), Some(sent), self.rule.clone());
        }
        self.call_slow(request, state)
    }
}

impl<S, P: TokenSource> BearerAuth<S, P, InvalidateOnly> {
    /// Everything but the fast path, kept out of line so the fast path stays small.
    #[cold]
    #[inline(never)]
    fn call_slow<B, RB>(&mut self, mut request: Request<B>, state: u64) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone,
    {
        match self
            .destinations
            .check_request(&request, &mut self.approved)
        {
            Verdict::Attach => {}
            Verdict::Skip => return ResponseFuture::called(self.inner.call(request), None, None),
            Verdict::Refuse(error) => return ResponseFuture::failed(error),
        }
        match self.token_now(&mut request, state) {
            Some(sent) => {
                ResponseFuture::called(self.inner.call(request), Some(sent), self.rule.clone())
            }
            None => {
                let (token, inner) = self.wait_for_token();
                ResponseFuture {
                    state: State::Waiting {
                        token,
                        // Boxed so the future stays as small as the inner one on the fast path.
                        parts: Some(Box::new((inner, request))),
                        cache_id: self.cache_id,
                        rule: self.rule.clone(),
                    },
                }
            }
        }
    }
}

impl<S, P: TokenSource, M> BearerAuth<S, P, M> {
    /// Whether the header this service keeps is still current and fresh: the cache's word is
    /// the one it was fresh under, and the coarse clock has not reached the refresh window.
    #[inline]
    pub(crate) fn is_fresh(&self, state: u64) -> bool {
        state == self.fresh.state && coarse_now() < self.fresh.until
    }

    /// The slow path when a usable token is cached: remember it for the fast path and attach
    /// it. `None` when there is no usable token and the caller must wait for one. `state` is
    /// the cache state word the caller loaded.
    #[inline]
    pub(crate) fn token_now<B>(&mut self, request: &mut Request<B>, state: u64) -> Option<Sent> {
        let sent = if self.is_fresh(state) {
            // Fresh and already seen, but the destination needed the full rules.
            Sent::new(self.cache_id, state >> 2)
        } else if let Some((header, fresh)) = self.cache.fresh_header(state) {
            // A fresh token this service has not seen yet (a new token, or a clone of a
            // service that never sent): one more lock-free load.
            self.fresh = fresh;
            self.header = header;
            Sent::new(self.cache_id, state >> 2)
        } else {
            let (token, fresh) = self.cache.usable()?;
            self.fresh = fresh;
            self.header = token.header_value().clone();
            Sent::new(self.cache_id, token.generation())
        };
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
        Some(sent)
    }

    /// No usable token: a future for the refresh, and the service to call once it is done
    /// (tower's clone-and-swap idiom: the service that was made ready is the one called, and
    /// `self` keeps a fresh clone).
    #[cold]
    pub(crate) fn wait_for_token(&mut self) -> (TokenFuture, S)
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        (Box::pin(async move { cache.token().await }), inner)
    }
}

/// Which token a request carried: enough to drop exactly that token after a 401. One word
/// (the cache's registry id, and the low 32 bits of the token's generation), so the response
/// future stays small: its size is paid on every request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sent(NonZeroU64);

impl Sent {
    #[inline]
    pub(crate) fn new(cache_id: NonZeroU32, generation: u64) -> Self {
        let packed = (u64::from(cache_id.get()) << 32) | (generation & 0xFFFF_FFFF);
        Sent(NonZeroU64::new(packed).expect("the cache id is not zero"))
    }

    /// The mark a 401 response gets for this token (see [`SentToken`]).
    pub(crate) fn marker(self) -> SentToken {
        SentToken(self.0)
    }

    fn cache_id(self) -> NonZeroU32 {
        NonZeroU32::new((self.0.get() >> 32) as u32).expect("the cache id is not zero")
    }

    pub(crate) fn generation(self) -> u32 {
        self.0.get() as u32
    }

    /// If `response` rejects the token that was sent, drop it from the cache (compare and
    /// invalidate, throttled). Returns whether the response rejects **this** token, whether or
    /// not this call was the one that dropped it.
    ///
    /// The response is marked with the token it is about ([`SentToken`]), so that a bearer
    /// layer further out, whose own header was replaced by this one, knows the 401 is not
    /// about its token. A response already marked by a layer further in, for another token,
    /// is not about this one either. A cache that no longer exists (every handle dropped while
    /// the request was in flight, as with `oneshot`) has nothing to drop.
    #[cold]
    pub(crate) fn report<RB>(
        self,
        response: &mut Response<RB>,
        rule: Option<&RejectionRule>,
    ) -> bool {
        if !challenge::rejects(rule, response.status(), response.headers())
            && response
                .extensions()
                .get::<challenge::RejectedToken>()
                .is_none()
        {
            return false;
        }
        if !self.marker().claim(response.extensions_mut()) {
            tracing::debug!(
                "a 401 about a token set further in (another bearer layer replaced this one's): \
                 keeping this layer's token"
            );
            return false;
        }
        if let Some(cache) = handle::lookup(self.cache_id()) {
            let dropped = cache.invalidate_after_401(self.generation());
            tracing::debug!(
                generation = self.generation(),
                dropped,
                "the server rejected the bearer token (401)"
            );
        }
        true
    }
}

/// Marks a 401 response with the token the request carried when it left the innermost bearer
/// layer (or middleware) of this crate: the one the server actually saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SentToken(NonZeroU64);

impl SentToken {
    /// Mark `extensions` with this token unless a layer further in marked them with its own.
    /// Returns whether the response is about this token.
    pub(crate) fn claim(self, extensions: &mut http::Extensions) -> bool {
        match extensions.get::<SentToken>() {
            Some(inner) => *inner == self,
            None => {
                extensions.insert(self);
                true
            }
        }
    }
}

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
            // The token the request carried, if any.
            sent: Option<Sent>,
            rule: Option<RejectionRule>,
        },
        Waiting {
            token: TokenFuture,
            parts: Option<Box<(S, Request<B>)>>,
            cache_id: NonZeroU32,
            rule: Option<RejectionRule>,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    fn called(future: S::Future, sent: Option<Sent>, rule: Option<RejectionRule>) -> Self {
        ResponseFuture {
            state: State::Called { future, sent, rule },
        }
    }

    #[cold]
    fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            // The common state first, with nothing else in this function's frame: a larger
            // frame made the fast path measurably slower (the response was copied through it).
            if let StateProj::Called { future, sent, rule } = state.as_mut().project() {
                let mut poll = future.poll(cx);
                if let Poll::Ready(Ok(response)) = &mut poll
                    && (response.status() == StatusCode::UNAUTHORIZED
                        || rule.is_some()
                        || !response.extensions().is_empty())
                    && let Some(sent) = *sent
                {
                    sent.report(response, rule.as_ref());
                }
                return poll.map_err(Into::into);
            }
            if let Some(done) = ready!(State::advance(state.as_mut(), cx)) {
                return Poll::Ready(done);
            }
        }
    }
}

impl<S, B, RB> State<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    /// Everything but `Called`: `Ready(None)` once the request has been handed to the inner
    /// service (the state is now `Called`), `Ready(Some(..))` when the future is done.
    #[cold]
    #[inline(never)]
    fn advance(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<S::Response, BoxError>>> {
        match self.as_mut().project() {
            StateProj::Called { .. } => Poll::Ready(None),
            StateProj::Waiting {
                token,
                parts,
                cache_id,
                rule,
            } => {
                let token = match ready!(token.as_mut().poll(cx)) {
                    Ok(token) => token,
                    Err(error) => return Poll::Ready(Some(Err(error.into()))),
                };
                let (mut inner, mut request) = *parts
                    .take()
                    .expect("ResponseFuture polled after completion");
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, token.header_value().clone());
                let sent = Some(Sent::new(*cache_id, token.generation()));
                let future = inner.call(request);
                let rule = rule.take();
                self.set(State::Called { future, sent, rule });
                Poll::Ready(None)
            }
            StateProj::Failed { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Some(Err(error.into())))
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
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Clone, P, M> Clone for BearerAuth<S, P, M> {
    fn clone(&self) -> Self {
        // The remembered header is not handed on: clones often go to other threads (a client in
        // axum state, cloned per request), and each thread should use its own copy of the
        // token's header rather than share one reference count (see `cache::entry`). A clone's
        // first request finds the current token with one lock-free load.
        BearerAuth {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            fresh: Freshness::NONE,
            header: HeaderValue::from_static(""),
            approved: self.approved.clone(),
            cache_id: self.cache_id,
            destinations: self.destinations.clone(),
            rule: self.rule.clone(),
            mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P, M> fmt::Debug for BearerAuth<S, P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .field("destinations", &self.destinations)
            .field("mode", &std::any::type_name::<M>())
            .finish_non_exhaustive()
    }
}
