//! The tower side: [`KeyedBearerAuthLayer`], made by
//! [`BearerAuthLayer::per_origin`] or [`BearerAuthLayer::per_request`], its service
//! [`KeyedBearerAuth`] and [`KeyedResponseFuture`].
//!
//! Each service remembers the last `MEMOS` (8) destinations it served, each with a [`BearerAuth`]
//! over that destination's slot, so a run of requests to one destination costs what a
//! single-cache layer costs, plus one comparison of the authority (per origin) or of the key (per
//! request) and one load of the slot's eviction flag, and taking turns among up to `MEMOS` (8)
//! costs a comparison per destination more. A request elsewhere looks its key up without a lock
//! and moves the memo next in turn over to its slot: a handle and the slot's current header, not
//! a new service (the inner service is never cloned for it).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower::layer::util::Identity;
use tower::{Layer, Service};

use super::route::{Destination, Route, no_key};
use super::{Key, KeyedTokenCache, Slot};
use crate::body_rule::BodyRuleLayer;
use crate::challenge::RejectionRule;
use crate::origin::{Approved, Destinations};
use crate::pipeline::Judge;
use crate::service::{InvalidateOnly, Replay};
use crate::{
    BearerAuth, BearerAuthLayer, BoxError, Error, OnDisallowedOrigin, Origin, TokenSource,
};

/// How many destinations a keyed service remembers (a power of two).
const MEMOS: usize = 8;

impl<P: TokenSource> BearerAuthLayer<P> {
    /// A layer that gives each request the token of its origin's key: a request to an origin in
    /// `origins` gets the token of the key it maps to, from that key's slot of `cache`; any
    /// other request gets no token (or fails, see
    /// [`on_unknown_destination`](KeyedBearerAuthLayer::on_unknown_destination)), never
    /// another destination's.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response, header::AUTHORIZATION};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_bearer::{BearerAuthLayer, Origin, keyed::KeyedTokenCache, source::static_token};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// let tokens = KeyedTokenCache::new(|audience: &&str| Ok(static_token(format!("for-{audience}"))));
    /// let client = ServiceBuilder::new()
    ///     .layer(BearerAuthLayer::per_origin(tokens, [
    ///         (Origin::from_static("https://billing.example.com"), "billing"),
    ///         (Origin::from_static("https://search.example.com"), "search"),
    ///     ]))
    ///     .service(service_fn(|req: Request<()>| async move {
    ///         let auth = req.headers().get(AUTHORIZATION).cloned();
    ///         Ok::<_, Infallible>(Response::new(auth))
    ///     }));
    ///
    /// let to = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let billing = client.clone().oneshot(to("https://billing.example.com/invoices")).await?;
    /// assert_eq!(billing.body().as_ref().unwrap(), "Bearer for-billing");
    /// let search = client.clone().oneshot(to("https://search.example.com/q")).await?;
    /// assert_eq!(search.body().as_ref().unwrap(), "Bearer for-search");
    /// let cdn = client.clone().oneshot(to("https://cdn.example.com/logo.png")).await?;
    /// assert!(cdn.body().is_none());
    /// # Ok(()) }
    /// ```
    pub fn per_origin<K: Key>(
        cache: KeyedTokenCache<K, P>,
        origins: impl IntoIterator<Item = (Origin, K)>,
    ) -> KeyedBearerAuthLayer<K, P> {
        KeyedBearerAuthLayer::new(cache, Route::origins(origins))
    }

    /// A layer that gives each request the token of the key `pick` returns for it (a tenant
    /// from the path, an audience from a header), from that key's slot of `cache`; `None`
    /// means no token (or a failure, see
    /// [`on_unknown_destination`](KeyedBearerAuthLayer::on_unknown_destination)).
    ///
    /// `pick` runs for every request: keep it to a few comparisons. The token still goes only
    /// over https (or to loopback), as with [`BearerAuthLayer`]. Every new key costs a token
    /// fetch (and, past [`max_keys`](crate::keyed::KeyedTokenCacheBuilder::max_keys), evicts
    /// another key's token): when the key comes from input you do not control (a tenant in a
    /// path), return `None` for values that are not known tenants.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, keyed::KeyedTokenCache, source::static_token};
    ///
    /// let tokens = KeyedTokenCache::new(|tenant: &String| Ok(static_token(format!("for-{tenant}"))));
    /// // https://api.example.com/tenants/{tenant}/...
    /// let layer = BearerAuthLayer::per_request(tokens, |dest| {
    ///     let tenant = dest.path().strip_prefix("/tenants/")?.split('/').next()?;
    ///     Some(tenant.to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn per_request<K: Key>(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Destination<'_>) -> Option<K> + Send + Sync + 'static,
    ) -> KeyedBearerAuthLayer<K, P> {
        KeyedBearerAuthLayer::new(cache, Route::request(pick))
    }
}

/// A [`Layer`] that adds to each request the bearer token of its destination's key, from a
/// [`KeyedTokenCache`]. Made by [`BearerAuthLayer::per_origin`] or
/// [`BearerAuthLayer::per_request`]; configured like [`BearerAuthLayer`].
pub struct KeyedBearerAuthLayer<K, P, M = InvalidateOnly, L = Identity> {
    settings: Settings<K, P>,
    /// Between the services and the inner service: nothing, or a body rule's reader.
    below: L,
    mode: PhantomData<fn() -> M>,
}

/// What a layer configures, shared by the services it makes behind one `Arc` (so cloning a
/// service, as `client.clone().oneshot(..)` does per request, touches one reference count).
struct Settings<K, P> {
    cache: KeyedTokenCache<K, P>,
    route: Route<K>,
    destinations: Destinations,
    on_unknown: OnDisallowedOrigin,
    judge: Judge,
}

impl<K: Key, P: TokenSource> KeyedBearerAuthLayer<K, P> {
    fn new(cache: KeyedTokenCache<K, P>, route: Route<K>) -> Self {
        KeyedBearerAuthLayer {
            settings: Settings {
                cache,
                route,
                destinations: Destinations::default(),
                on_unknown: OnDisallowedOrigin::SendWithoutToken,
                judge: Judge::default(),
            },
            below: Identity::new(),
            mode: PhantomData,
        }
    }
}

impl<K: Key, P: TokenSource, L> KeyedBearerAuthLayer<K, P, InvalidateOnly, L> {
    /// After a 401 that rejects the token, send the request once more with a new token of the
    /// same key; see [`BearerAuthLayer::replay_on_401`].
    pub fn replay_on_401(mut self) -> KeyedBearerAuthLayer<K, P, Replay, L> {
        self.settings.judge.replay = true;
        KeyedBearerAuthLayer {
            settings: self.settings,
            below: self.below,
            mode: PhantomData,
        }
    }
}

impl<K: Key, P: TokenSource, M> KeyedBearerAuthLayer<K, P, M, Identity> {
    /// Also treat a response as rejecting the token when `rule` says so after reading its
    /// body; see [`BearerAuthLayer::rejects_token_when_body`]. The token dropped is the one of
    /// the request's key.
    pub fn rejects_token_when_body(
        self,
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> KeyedBearerAuthLayer<K, P, M, BodyRuleLayer> {
        KeyedBearerAuthLayer {
            settings: self.settings,
            below: BodyRuleLayer::new(statuses, rule),
            mode: PhantomData,
        }
    }
}

impl<K: Key, P: TokenSource, M, L> KeyedBearerAuthLayer<K, P, M, L> {
    /// What to do with a request whose destination has no key: send it without a token
    /// ([`OnDisallowedOrigin::SendWithoutToken`], the default) or fail it
    /// ([`OnDisallowedOrigin::Fail`], an error of kind [`Disallowed`](crate::ErrorKind::Disallowed)).
    pub fn on_unknown_destination(mut self, action: OnDisallowedOrigin) -> Self {
        self.settings.on_unknown = action;
        self
    }

    /// Send tokens over plain `http://` to any host, not only loopback ones (default `false`;
    /// for tests). See [`BearerAuthLayer::allow_insecure_http`].
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.settings.destinations.allow_insecure_http(allow);
        self
    }

    /// What to do with a request that has a key but may not receive its token (plain `http` to
    /// a host that is not loopback): see [`BearerAuthLayer::on_disallowed_origin`].
    pub fn on_disallowed_origin(mut self, action: OnDisallowedOrigin) -> Self {
        self.settings.destinations.on_disallowed = action;
        self
    }

    /// Also treat a response as rejecting the token when `rule` says so; see
    /// [`BearerAuthLayer::rejects_token_when`]. The token dropped is the one of the request's key.
    pub fn rejects_token_when(
        mut self,
        rule: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.judge.rule = Some(RejectionRule::new(rule));
        self
    }

    /// Send tokens only to this origin (and any others allowed), beside the route's own rule;
    /// see [`BearerAuthLayer::allow_origin`].
    pub fn allow_origin(mut self, origin: Origin) -> Self {
        self.settings.destinations.allow_origin(origin);
        self
    }

    /// [`allow_origin`](Self::allow_origin) for each of `origins`.
    pub fn allow_origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        for origin in origins {
            self.settings.destinations.allow_origin(origin);
        }
        self
    }

    /// The keyed cache this layer's services take tokens from.
    pub fn cache(&self) -> &KeyedTokenCache<K, P> {
        &self.settings.cache
    }
}

impl<S, K: Clone, P, M, L: Layer<S>> Layer<S> for KeyedBearerAuthLayer<K, P, M, L> {
    type Service = KeyedBearerAuth<L::Service, K, P, M>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBearerAuth {
            inner: self.below.layer(inner),
            settings: Arc::new(self.settings.clone()),
            memos: Default::default(),
            last: 0,
            next: 0,
            by_origin: self.settings.route.by_origin(),
        }
    }
}

/// The service made by [`KeyedBearerAuthLayer`]: adds the token of each request's key.
///
/// Errors are [`BoxError`], as [`BearerAuth`]'s are; a request failed because its destination
/// has no key carries a [`tower_bearer::Error`](crate::Error) of kind
/// [`Disallowed`](crate::ErrorKind::Disallowed).
pub struct KeyedBearerAuth<S, K, P, M = InvalidateOnly> {
    inner: S,
    settings: Arc<Settings<K, P>>,
    /// The destination served last (`memos[last]`) and the ones before it, so a service taking
    /// turns among a few destinations finds them without a lookup in the keyed cache. Only the
    /// last is handed on to clones (a clone per request would pay for copying them all).
    memos: [Option<Memo<S, K, P, M>>; MEMOS],
    /// Below `MEMOS` (8).
    last: usize,
    /// The memo a new destination replaces next, in turn.
    next: usize,
    /// Whether the route is by origin, kept here so the fast path does not read the settings
    /// for it.
    by_origin: bool,
}

/// The destination a service served last: its key, and a [`BearerAuth`] over the key's slot
/// that keeps the token's header for the fast path (the slot, the cache's source, says
/// whether it was evicted).
struct Memo<S, K, P, M> {
    /// For a route by origin: the scheme and authority the key was found for.
    https: bool,
    authority: Approved,
    key: K,
    service: BearerAuth<S, Slot<P>, M>,
}

impl<S, K, P: TokenSource, M> Memo<S, K, P, M> {
    #[inline]
    fn slot(&self) -> &Slot<P> {
        self.service.cache.source()
    }
}

impl<S, K, P, M> Memo<S, K, P, M> {
    /// Whether `request` goes to this memo's destination: the same scheme and authority for a
    /// route by origin, else the same key (picked once per request, kept in `picked`).
    #[inline]
    fn matches<B>(
        &self,
        request: &Request<B>,
        by_origin: bool,
        route: &Route<K>,
        picked: &mut Option<Option<K>>,
    ) -> bool
    where
        K: Eq + Clone,
    {
        if by_origin {
            return self.same_origin(request.uri());
        }
        let key = picked.get_or_insert_with(|| route.key(&destination(request)));
        key.as_ref() == Some(&self.key)
    }

    /// Remember `uri`'s scheme and authority as this memo's, for a route by origin.
    fn remember(&mut self, uri: &Uri, by_origin: bool) {
        match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("https" | "http")), Some(authority)) if by_origin => {
                self.https = scheme == "https";
                self.authority.remember(authority.as_str());
            }
            _ => self.authority = Approved::NONE,
        }
    }

    /// Whether `uri` goes where this memo's key was found for (route by origin).
    #[inline]
    fn same_origin(&self, uri: &Uri) -> bool {
        let scheme = if self.https { "https" } else { "http" };
        uri.scheme_str() == Some(scheme)
            && uri
                .authority()
                .is_some_and(|a| self.authority.is(a.as_str()))
    }
}

impl<S, K, P, M> KeyedBearerAuth<S, K, P, M> {
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

    /// The keyed cache this service takes tokens from.
    pub fn cache(&self) -> &KeyedTokenCache<K, P> {
        &self.settings.cache
    }
}

impl<S, K, P, M, B> Service<Request<B>> for KeyedBearerAuth<S, K, P, M>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    BearerAuth<S, Slot<P>, M>: Service<Request<B>, Response = S::Response, Error = BoxError>,
    K: Hash + Eq + Clone,
    P: TokenSource,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedFuture<S, P, M, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Fast path: the destination served last, whose slot is still in the cache.
        let mut picked = None;
        // `& (MEMOS - 1)`: an index the compiler can see is in bounds.
        if let Some(memo) = &mut self.memos[self.last & (MEMOS - 1)]
            && memo.matches(&request, self.by_origin, &self.settings.route, &mut picked)
            && memo.slot().is_live()
        {
            // The service made ready is the one called: ours goes to the memo's
            // `BearerAuth`, and its inner service (to be made ready next) comes back.
            std::mem::swap(&mut memo.service.inner, &mut self.inner);
            return KeyedResponseFuture::authed(memo.service.call(request));
        }
        self.call_slow(request, picked)
    }
}

/// The future of [`KeyedBearerAuth`] over `S`.
type KeyedFuture<S, P, M, B> = KeyedResponseFuture<
    <BearerAuth<S, Slot<P>, M> as Service<Request<B>>>::Future,
    <S as Service<Request<B>>>::Future,
>;

fn destination<B>(request: &Request<B>) -> Destination<'_> {
    Destination::from_uri(request.method(), request.uri(), request.headers())
}

impl<S, K, P, M> KeyedBearerAuth<S, K, P, M>
where
    S: Clone,
    K: Hash + Eq + Clone,
    P: TokenSource,
{
    /// Another destination than the last (or the first request): find its key and slot.
    #[cold]
    #[inline(never)]
    fn call_slow<B>(
        &mut self,
        request: Request<B>,
        mut picked: Option<Option<K>>,
    ) -> KeyedFuture<S, P, M, B>
    where
        S: Service<Request<B>>,
        BearerAuth<S, Slot<P>, M>: Service<Request<B>, Response = S::Response, Error = BoxError>,
    {
        let KeyedBearerAuth {
            inner,
            settings,
            memos,
            last,
            next,
            by_origin,
        } = self;
        let by_origin = *by_origin;
        let settings = &**settings;
        let route = &settings.route;
        // A destination served before the last: it becomes the last.
        for (i, memo) in memos.iter_mut().enumerate() {
            if i != *last
                && let Some(memo) = memo
                && memo.matches(&request, by_origin, route, &mut picked)
                && memo.slot().is_live()
            {
                *last = i;
                std::mem::swap(&mut memo.service.inner, inner);
                return KeyedResponseFuture::authed(memo.service.call(request));
            }
        }
        let key = picked.unwrap_or_else(|| route.key(&destination(&request)));
        let Some(key) = key else {
            let error = no_key(&destination(&request));
            return match settings.on_unknown {
                OnDisallowedOrigin::Fail => KeyedResponseFuture::failed(error),
                _ => {
                    tracing::debug!(reason = %error, "request sent without a bearer token");
                    KeyedResponseFuture::plain(inner.call(request))
                }
            };
        };
        let slot = match settings.cache.slot(&key) {
            Ok(slot) => slot,
            Err(error) => return KeyedResponseFuture::failed(error),
        };
        // The same slot reached another way (another origin mapped to the same key): reuse its
        // memo. Else a new one takes an empty place, or replaces the memos in turn.
        let reuse = (0..MEMOS).find(|&i| {
            memos[i]
                .as_ref()
                .is_some_and(|memo| Arc::ptr_eq(&memo.service.cache.shared, &slot.shared))
        });
        let at = match reuse {
            Some(i) => i,
            None => {
                match memos.iter().position(Option::is_none) {
                    Some(empty) => {
                        let service = BearerAuth::with_parts(
                            inner.clone(),
                            slot,
                            settings.destinations.clone(),
                            settings.judge.clone(),
                        );
                        memos[empty] = Some(Memo {
                            https: false,
                            authority: Approved::NONE,
                            key,
                            service,
                        });
                        empty
                    }
                    None => {
                        // All taken: the next in turn goes to this destination, keeping its
                        // service (more destinations than memos cost a lookup, not a service).
                        *next = (*next + 1) & (MEMOS - 1);
                        if *next == *last {
                            *next = (*next + 1) & (MEMOS - 1);
                        }
                        let memo = memos[*next].as_mut().expect("all memos are taken");
                        memo.key = key;
                        memo.service.retarget(slot);
                        *next
                    }
                }
            }
        };
        *last = at;
        let memo = memos[at].as_mut().expect("just set");
        memo.remember(request.uri(), by_origin);
        std::mem::swap(&mut memo.service.inner, inner);
        KeyedResponseFuture::authed(memo.service.call(request))
    }
}

pin_project! {
    /// The response future of [`KeyedBearerAuth`]: [`BearerAuth`]'s future for a request with
    /// a key, the inner service's for one sent without a token.
    pub struct KeyedResponseFuture<A, F> {
        #[pin]
        state: KeyedState<A, F>,
    }
}

pin_project! {
    #[project = KeyedProj]
    enum KeyedState<A, F> {
        Authed { #[pin] future: A },
        Plain { #[pin] future: F },
        // Boxed: an `Error` is larger than the common future, and the size is paid by every
        // request.
        Failed { error: Option<Box<Error>> },
    }
}

impl<A, F> KeyedResponseFuture<A, F> {
    #[inline]
    fn authed(future: A) -> Self {
        KeyedResponseFuture {
            state: KeyedState::Authed { future },
        }
    }

    fn plain(future: F) -> Self {
        KeyedResponseFuture {
            state: KeyedState::Plain { future },
        }
    }

    #[cold]
    fn failed(error: Error) -> Self {
        KeyedResponseFuture {
            state: KeyedState::Failed {
                error: Some(Box::new(error)),
            },
        }
    }
}

impl<A, F, R, E> Future for KeyedResponseFuture<A, F>
where
    A: Future<Output = Result<R, BoxError>>,
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            KeyedProj::Authed { future } => future.poll(cx),
            KeyedProj::Plain { future } => future.poll(cx).map_err(Into::into),
            KeyedProj::Failed { error } => {
                let error = error
                    .take()
                    .expect("KeyedResponseFuture polled after completion");
                Poll::Ready(Err(error as BoxError))
            }
        }
    }
}

impl<A, F> fmt::Debug for KeyedResponseFuture<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            KeyedState::Authed { .. } => "with token",
            KeyedState::Plain { .. } => "without token",
            KeyedState::Failed { .. } => "failed",
        };
        f.debug_struct("KeyedResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Clone, K: Clone, P, M> Clone for Memo<S, K, P, M> {
    fn clone(&self) -> Self {
        Memo {
            https: self.https,
            authority: self.authority.clone(),
            key: self.key.clone(),
            service: self.service.clone(),
        }
    }
}

impl<S: Clone, K: Clone, P, M> Clone for KeyedBearerAuth<S, K, P, M> {
    fn clone(&self) -> Self {
        KeyedBearerAuth {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
            memos: {
                let mut memos: [Option<Memo<S, K, P, M>>; MEMOS] = Default::default();
                memos[0] = self.memos[self.last & (MEMOS - 1)].clone();
                memos
            },
            last: 0,
            next: 0,
            by_origin: self.by_origin,
        }
    }
}

impl<K, P> Clone for Settings<K, P> {
    fn clone(&self) -> Self {
        Settings {
            cache: self.cache.clone(),
            route: self.route.clone(),
            destinations: self.destinations.clone(),
            on_unknown: self.on_unknown,
            judge: self.judge.clone(),
        }
    }
}

impl<K, P, M, L: Clone> Clone for KeyedBearerAuthLayer<K, P, M, L> {
    fn clone(&self) -> Self {
        KeyedBearerAuthLayer {
            settings: self.settings.clone(),
            below: self.below.clone(),
            mode: PhantomData,
        }
    }
}

impl<K, P> fmt::Debug for Settings<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("cache", &self.cache)
            .field("route", &self.route)
            .field("destinations", &self.destinations)
            .field("on_unknown", &self.on_unknown)
            .field("judge", &self.judge)
            .finish()
    }
}

impl<K, P, M, L: fmt::Debug> fmt::Debug for KeyedBearerAuthLayer<K, P, M, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBearerAuthLayer")
            .field("settings", &self.settings)
            .field("below", &self.below)
            .field("mode", &std::any::type_name::<M>())
            .finish()
    }
}

impl<S: fmt::Debug, K, P, M> fmt::Debug for KeyedBearerAuth<S, K, P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBearerAuth")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
