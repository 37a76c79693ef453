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
//! The request's destination is checked too ([`origin`](crate::Origin)): for a relative URI,
//! `https` without an allow-list, or `https` to the authority this service last approved, this is
//! a comparison or two. Then the response future
//! looks at the status: a 401 that [rejects the token](crate::challenge::rejects_token) drops
//! that token from the cache (compare-and-invalidate), so the next request gets a
//! new one. A DPoP-bound token gets its proof here too, on the same named future (a key behind
//! a signer is awaited in it before the request is handed on, as a token being fetched is).
//! Replaying the request itself is the [`Replay`] mode
//! ([`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401)), which needs a
//! copy of every request and so is opt-in: its requests go through the
//! [pipeline](mod@crate::pipeline)'s `send`, a boxed future.
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
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::Service;

use crate::cache::{Freshness, coarse_now};
use crate::origin::{Approved, Destinations, Verdict};
use crate::pipeline::attach::{self, Attach, Declared, Signed};
use crate::pipeline::judge::{Judging, Sent};
use crate::pipeline::{self, BodyRule, Judge, Tokens, TokensSealed, Transport};
use crate::replay::{ReplayBody, try_clone_request};
use crate::{BoxError, CachedToken, Error, TokenCache, TokenSource};

/// The default mode of [`BearerAuth`]: request bodies are never copied, so a 401 that rejects
/// the token drops it from the cache and is returned to the caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct InvalidateOnly;

/// The mode of [`BearerAuth`] set by
/// [`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401): request bodies
/// that are a [`ReplayBody`] are copied, so a rejected request is sent once more with a new
/// token (and a DPoP request once more with a server's nonce).
#[derive(Clone, Copy, Debug, Default)]
pub struct Replay;

/// Adds `Authorization: Bearer <token>` (or `DPoP <token>` and a proof, for a DPoP-bound
/// token) to every request before passing it to `S`.
///
/// An existing `Authorization` header is replaced, except on requests whose destination may not
/// receive the token ([`origin`](crate::Origin)), which are left as they are. Errors are
/// [`BoxError`]: either the inner service's error or a [`tower_bearer::Error`](crate::Error)
/// that stopped a token from being obtained or refused the destination
/// (`err.downcast_ref::<tower_bearer::Error>()`).
///
/// `M` is [`InvalidateOnly`] (the default) or [`Replay`] (whose services need `Send` inner
/// services, futures and bodies, and `B: ReplayBody`). `C` is where the tokens come from
/// ([`Tokens`]): one [`TokenCache`] (the default), or a
/// [`KeyedTokenCache`](crate::keyed::KeyedTokenCache) and its key picker
/// ([`PerKey`](crate::keyed::PerKey), made by
/// [`BearerAuthLayer::per_origin`](crate::BearerAuthLayer::per_origin) and
/// [`per_request`](crate::BearerAuthLayer::per_request)).
pub struct BearerAuth<S, P, M = InvalidateOnly, C: TokensSealed = TokenCache<P>> {
    pub(crate) inner: S,
    /// What this service keeps of its tokens: one [`Single`], or a keyed service's memos.
    pub(crate) front: C::Front,
    mode: PhantomData<fn() -> (M, P)>,
}

impl<S, P: TokenSource> BearerAuth<S, P> {
    /// Wrap `inner`, taking tokens from `cache`, with the default rules: no allow-list, plain
    /// http only to loopback, invalidate-only on 401. [`BearerAuthLayer`](crate::BearerAuthLayer)
    /// sets the others.
    pub fn new(inner: S, cache: TokenCache<P>) -> Self {
        Self::from_front(
            inner,
            Single::new(cache, Destinations::default(), Judge::default()),
        )
    }
}

impl<S, P, M, C: Tokens<Source = P>> BearerAuth<S, P, M, C> {
    pub(crate) fn from_front(inner: S, front: C::Front) -> Self {
        BearerAuth {
            inner,
            front,
            mode: PhantomData,
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

    /// The cache this service takes tokens from: the [`TokenCache`], or the
    /// [`KeyedTokenCache`](crate::keyed::KeyedTokenCache).
    pub fn cache(&self) -> &C::Cache {
        C::front_cache(&self.front)
    }
}

impl<S, P, M, C, B, RB> Service<Request<B>> for BearerAuth<S, P, M, C>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    C: Tokens,
    M: Mode<S, B>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        C::call::<S, M, B>(&mut self.front, &mut self.inner, request)
    }
}

/// How a [`BearerAuth`] in mode `Self` sends a request with a token of one cache: the part of
/// a service's call that [`InvalidateOnly`] and [`Replay`] do differently, for one cache or for
/// the slot a keyed service picked. Sealed.
pub trait Mode<S: Service<Request<B>>, B>: Sized + mode::Sealed {
    /// Send `request` through `inner` with a token of `single`'s cache.
    #[doc(hidden)]
    fn call<Q: TokenSource>(
        single: &mut Single<Q>,
        inner: &mut S,
        request: Request<B>,
    ) -> ResponseFuture<S, B>;
}

mod mode {
    pub trait Sealed {}
    impl Sealed for super::InvalidateOnly {}
    impl Sealed for super::Replay {}
}

/// What a service keeps of one cache: the cache, its rules, and what the fast path remembers
/// of the token it used last. A [`BearerAuth`] over one cache holds one; a keyed one holds one
/// per destination it remembers.
pub struct Single<P> {
    pub(crate) cache: TokenCache<P>,
    /// The cache state word `header` was fresh under, and when it stops being fresh on the
    /// coarse clock; [`Freshness::NONE`] when there is none. Only ever set for a bearer token.
    fresh: Freshness,
    header: HeaderValue,
    /// The last `https` authority the allow-list let through (see `origin`).
    approved: Approved,
    /// Where response futures find the cache again to report a 401 (see `cache::handle`).
    cache_id: NonZeroU32,
    pub(crate) destinations: Destinations,
    judge: Judge,
    /// What the futures of bearer requests judge with (the user's rule), prebuilt.
    judging: Option<Judging>,
}

impl<P: TokenSource> Single<P> {
    pub(crate) fn new(cache: TokenCache<P>, destinations: Destinations, judge: Judge) -> Self {
        Single {
            cache_id: cache.registry_id(),
            cache,
            fresh: Freshness::NONE,
            header: HeaderValue::from_static(""),
            approved: Approved::NONE,
            destinations,
            judging: Judging::new(judge.rule.clone(), None),
            judge,
        }
    }

    /// Take tokens from `cache` from now on, forgetting what the fast path kept of the last
    /// cache's token (the rules stay): a keyed service moving one of its memos to another
    /// destination, at the cost of a handle rather than of a new service.
    pub(crate) fn retarget(&mut self, cache: TokenCache<P>) {
        self.cache_id = cache.registry_id();
        self.cache = cache;
        self.fresh = Freshness::NONE;
        self.header = HeaderValue::from_static("");
        self.approved = Approved::NONE;
    }
}

impl<S, B, RB> Mode<S, B> for InvalidateOnly
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
{
    #[inline]
    fn call<Q: TokenSource>(
        single: &mut Single<Q>,
        inner: &mut S,
        mut request: Request<B>,
    ) -> ResponseFuture<S, B> {
        // Fast path: the bearer token this service used last is still current, no timer marked
        // it stale, the coarse clock says it is still fresh (whether or not a timer ran), and
        // the request goes to a relative URI or over https to a destination already approved.
        let state = single.cache.state();
        if single.is_fresh(state) && single.destinations.quick_attach(&request, &single.approved) {
            request
                .headers_mut()
                .insert(AUTHORIZATION, single.header.clone());
            let sent = Sent::new(single.cache_id, state >> 2);
            let judging = single.judging.clone();
            return ResponseFuture::called(inner.call(request), Some(sent), judging);
        }
        single.call_slow(inner, request, state)
    }
}

impl<P: TokenSource> Single<P> {
    /// Everything but the fast path, kept out of line so the fast path stays small: the
    /// destination's full rules, then the token at hand (bearer, or DPoP-bound with a proof), or
    /// waiting for one.
    #[cold]
    #[inline(never)]
    fn call_slow<S, B, RB>(
        &mut self,
        inner: &mut S,
        mut request: Request<B>,
        state: u64,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone,
    {
        match self
            .destinations
            .check_request(&request, &mut self.approved)
        {
            Verdict::Attach => {}
            Verdict::Skip => return ResponseFuture::called(inner.call(request), None, None),
            Verdict::Refuse(error) => return ResponseFuture::failed(error),
        }
        if let Some(sent) = self.bearer_now(&mut request, state) {
            let judging = self.judging.clone();
            return ResponseFuture::called(inner.call(request), Some(sent), judging);
        }
        let declared = attach::declared(self.cache.source()).cloned();
        if let Some((token, _)) = self.cache.usable()
            && !attach::signs_remotely(declared.as_ref(), &token)
        {
            // A DPoP-bound token (starting a background refresh if it is stale), its proof
            // signed here.
            return ResponseFuture::attach(
                inner,
                request,
                &token,
                self.cache_id,
                declared.as_ref(),
                self.judging.as_ref(),
                None,
            );
        }
        // No token yet, or one whose proofs a signer makes: wait for it (and the signer)
        // before the request is handed on. tower's clone-and-swap idiom: the service that was
        // made ready is the one called once the token is there, and the caller keeps a fresh
        // clone.
        let clone = inner.clone();
        let inner = std::mem::replace(inner, clone);
        let cache = self.cache.clone();
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let origin = request.extensions().get::<CallOrigin>().cloned();
        let ahead = declared.clone();
        ResponseFuture {
            state: State::Waiting {
                token: Box::pin(async move {
                    let token = cache.token().await?;
                    let target = || target_of(&method, &uri, origin.as_ref());
                    let signed = attach::sign_ahead(ahead.as_ref(), &token, target).await?;
                    Ok((token, signed))
                }),
                // Boxed so the future stays as small as the inner one on the fast path.
                parts: Some(Box::new(Parts {
                    inner,
                    request,
                    declared,
                    judging: self.judging.clone(),
                })),
                cache_id: self.cache_id,
            },
        }
    }
}

impl<S, B, RB> Mode<S, B> for Replay
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: ReplayBody + Send + 'static,
    RB: Send + 'static,
{
    fn call<Q: TokenSource>(
        single: &mut Single<Q>,
        inner: &mut S,
        request: Request<B>,
    ) -> ResponseFuture<S, B> {
        match single
            .destinations
            .check_request(&request, &mut single.approved)
        {
            Verdict::Attach => {}
            Verdict::Skip => return ResponseFuture::called(inner.call(request), None, None),
            Verdict::Refuse(error) => return ResponseFuture::failed(error),
        }
        // The service that was made ready is the one called; the caller keeps a clone.
        let clone = inner.clone();
        let inner = std::mem::replace(inner, clone);
        let cache = single.cache.clone();
        let judge = single.judge.clone();
        let transport = Tower {
            inner,
            called: false,
            body: PhantomData,
        };
        ResponseFuture {
            state: State::Pipeline {
                future: Box::pin(async move {
                    pipeline::send(&cache, &judge, transport, request).await
                }),
            },
        }
    }
}

impl<P: TokenSource> Single<P> {
    /// Whether the header this service keeps is still current and fresh: the cache's word is
    /// the one it was fresh under, and the coarse clock has not reached the refresh window.
    #[inline]
    pub(crate) fn is_fresh(&self, state: u64) -> bool {
        state == self.fresh.state && coarse_now() < self.fresh.until
    }

    /// When the cache holds a usable bearer token, attach it (and remember it for the fast
    /// path). `None` when there is no usable token, or it is DPoP-bound. `state` is the cache
    /// state word the caller loaded.
    fn bearer_now<B>(&mut self, request: &mut Request<B>, state: u64) -> Option<Sent> {
        let sent = if self.is_fresh(state) {
            // Fresh and already seen, but the destination needed the full rules.
            Sent::new(self.cache_id, state >> 2)
        } else if let Some((header, fresh)) = self.cache.fresh_header(state) {
            // A fresh token this service has not seen yet (a new token, or a clone of a
            // service that never sent): one more lock-free load.
            if !self.is_bearer(&header) {
                return None;
            }
            self.fresh = fresh;
            self.header = header;
            Sent::new(self.cache_id, state >> 2)
        } else {
            // Stale (served while one refresh runs) or not marked fresh yet.
            let (token, fresh) = self.cache.usable()?;
            if !self.is_bearer(token.header_value()) {
                return None;
            }
            self.fresh = fresh;
            self.header = token.header_value().clone();
            Sent::new(self.cache_id, token.generation())
        };
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
        Some(sent)
    }

    /// Whether a token with this prebuilt `Authorization` value is a bearer one: not bound
    /// itself (its value says `DPoP`), and not from a source that declares DPoP (a token
    /// adopted from the fleet tier carries no binding of its own).
    fn is_bearer(&self, header: &HeaderValue) -> bool {
        header.as_bytes().starts_with(b"Bearer ") && attach::declared(self.cache.source()).is_none()
    }
}

/// What a request waiting for its token keeps, boxed.
struct Parts<S, B> {
    inner: S,
    request: Request<B>,
    declared: Option<Declared>,
    judging: Option<Judging>,
}

/// The pipeline's transport over a tower service: the first request through the service that
/// was made ready, any other through the same service once it is ready again.
struct Tower<S, B> {
    inner: S,
    called: bool,
    body: PhantomData<fn(B)>,
}

impl<S, B, RB> Transport for Tower<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: ReplayBody + Send,
    RB: Send,
{
    type Request = Request<B>;
    type Response = Response<RB>;
    type Error = BoxError;

    fn headers_mut(request: &mut Request<B>) -> &mut HeaderMap {
        request.headers_mut()
    }

    fn target(request: &Request<B>) -> Result<attach::Target, Error> {
        target(request)
    }

    fn try_clone(&self, request: &Request<B>) -> Option<Request<B>> {
        try_clone_request(request)
    }

    fn status(response: &Response<RB>) -> StatusCode {
        response.status()
    }

    fn headers(response: &Response<RB>) -> &HeaderMap {
        response.headers()
    }

    fn extensions(response: &Response<RB>) -> &Extensions {
        response.extensions()
    }

    fn extensions_mut(response: &mut Response<RB>) -> &mut Extensions {
        response.extensions_mut()
    }

    fn responder(_: &Response<RB>) -> Option<attach::Responder> {
        None
    }

    fn error(error: Error) -> BoxError {
        error.into()
    }

    async fn send(&mut self, request: Request<B>) -> Result<Response<RB>, BoxError> {
        if std::mem::replace(&mut self.called, true) {
            poll_fn(|cx| self.inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
        }
        self.inner.call(request).await.map_err(Into::into)
    }

    async fn body_rejects(_: &mut Response<RB>, _: &BodyRule) -> Result<bool, BoxError> {
        // On a tower stack a body rule reads the body below this service (`body_rule::BodyRule`,
        // put there by the layer) and marks the response (`RejectedToken`), which the judge reads.
        Ok(false)
    }
}

/// The origin a path-only request goes to, when the stack knows it: the gRPC layer
/// ([`BearerAuthLayer::grpc`](crate::BearerAuthLayer::grpc)) puts it on its calls, so that a
/// DPoP proof names the call's absolute URL. (Not a field of the service: every field there is
/// paid for on the fast path of every bearer request.)
#[derive(Clone)]
#[cfg_attr(not(feature = "dpop"), allow(dead_code))]
pub(crate) struct CallOrigin(pub(crate) std::sync::Arc<http::Uri>);

/// A tower request's method and absolute URI, for a DPoP proof.
fn target<B>(request: &Request<B>) -> Result<attach::Target, Error> {
    target_of(request.method(), request.uri(), request.extensions().get())
}

fn target_of(
    method: &http::Method,
    uri: &http::Uri,
    origin: Option<&CallOrigin>,
) -> Result<attach::Target, Error> {
    #[cfg(feature = "dpop")]
    return Ok((
        method.clone(),
        match origin {
            Some(CallOrigin(origin)) if uri.scheme().is_none() && uri.authority().is_none() => {
                crate::dpop::Target::from_origin(origin, uri.path())?
            }
            _ => crate::dpop::Target::from_uri(uri)?,
        },
    ));
    #[cfg(not(feature = "dpop"))]
    {
        let _ = (method, uri, origin);
        Ok(())
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

/// What a request waiting for its token waits for: the token, and, for a key behind a signer,
/// the token attached with a proof the signer made.
type Ready = Pin<Box<dyn Future<Output = Result<(CachedToken, Option<Signed>), Error>> + Send>>;

/// The pipeline's future, in [`Replay`] mode.
type Pipelined<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

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
            judging: Option<Judging>,
        },
        Waiting {
            token: Ready,
            parts: Option<Box<Parts<S, B>>>,
            cache_id: NonZeroU32,
        },
        Pipeline {
            future: Pipelined<S::Response>,
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
    /// A request sent without a token.
    pub(crate) fn plain(future: S::Future) -> Self {
        Self::called(future, None, None)
    }

    #[inline]
    fn called(future: S::Future, sent: Option<Sent>, judging: Option<Judging>) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                sent,
                judging,
            },
        }
    }

    /// Attach `token` to `request` as its binding says (or as `signed` already did) and send
    /// it through `inner`.
    #[cold]
    fn attach(
        inner: &mut S,
        mut request: Request<B>,
        token: &CachedToken,
        cache_id: NonZeroU32,
        declared: Option<&Declared>,
        judging: Option<&Judging>,
        signed: Option<Signed>,
    ) -> Self {
        let attach = match signed {
            Some(signed) => signed.apply(request.headers_mut()),
            None => {
                let mut attach = match Attach::new(declared, token) {
                    Ok(attach) => attach,
                    Err(error) => return Self::failed(error),
                };
                if let Err(error) = attach
                    .aim(|| target(&request))
                    .and_then(|()| attach.apply(request.headers_mut()))
                {
                    return Self::failed(error);
                }
                attach
            }
        };
        let sent = Sent::new(cache_id, token.generation());
        let future = inner.call(request);
        let judging = if attach.is_dpop() {
            Judging::new(judging.and_then(Judging::rule).cloned(), Some(attach))
        } else {
            judging.cloned()
        };
        Self::called(future, Some(sent), judging)
    }

    #[cold]
    pub(crate) fn failed(error: Error) -> Self {
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
            if let StateProj::Called {
                future,
                sent,
                judging,
            } = state.as_mut().project()
            {
                let mut poll = future.poll(cx);
                if let Poll::Ready(Ok(response)) = &mut poll
                    && (response.status() == StatusCode::UNAUTHORIZED
                        || judging.is_some()
                        || !response.extensions().is_empty())
                    && let Some(sent) = *sent
                {
                    sent.report(response, judging.as_ref());
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
            } => {
                let (token, signed) = match ready!(token.as_mut().poll(cx)) {
                    Ok(ready) => ready,
                    Err(error) => return Poll::Ready(Some(Err(error.into()))),
                };
                let Parts {
                    mut inner,
                    request,
                    declared,
                    judging,
                } = *parts
                    .take()
                    .expect("ResponseFuture polled after completion");
                let next = ResponseFuture::attach(
                    &mut inner,
                    request,
                    &token,
                    *cache_id,
                    declared.as_ref(),
                    judging.as_ref(),
                    signed,
                );
                // Pin projection does not reach into a new value: move the state over.
                self.set(next.into_state());
                Poll::Ready(None)
            }
            StateProj::Pipeline { future } => future.as_mut().poll(cx).map(Some),
            StateProj::Failed { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn into_state(self) -> State<S, B> {
        self.state
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
            State::Pipeline { .. } => "pipeline",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<P> Clone for Single<P> {
    fn clone(&self) -> Self {
        // The remembered header is not handed on: clones often go to other threads (a client in
        // axum state, cloned per request), and each thread should use its own copy of the
        // token's header rather than share one reference count (see `cache::entry`). A clone's
        // first request finds the current token with one lock-free load.
        Single {
            cache: self.cache.clone(),
            fresh: Freshness::NONE,
            header: HeaderValue::from_static(""),
            approved: self.approved.clone(),
            cache_id: self.cache_id,
            destinations: self.destinations.clone(),
            judge: self.judge.clone(),
            judging: self.judging.clone(),
        }
    }
}

impl<P> fmt::Debug for Single<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Single")
            .field("cache", &self.cache)
            .field("destinations", &self.destinations)
            .field("judge", &self.judge)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, P, M, C: Tokens> Clone for BearerAuth<S, P, M, C> {
    fn clone(&self) -> Self {
        BearerAuth {
            inner: self.inner.clone(),
            front: self.front.clone(),
            mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P, M, C: Tokens> fmt::Debug for BearerAuth<S, P, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("front", &self.front)
            .field("mode", &std::any::type_name::<M>())
            .finish()
    }
}
