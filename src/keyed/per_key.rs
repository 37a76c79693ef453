//! [`PerKey`]: a [`KeyedTokenCache`] and how each request's key is picked, as the
//! [`Tokens`] of a front end ([`BearerAuthLayer::per_origin`](crate::BearerAuthLayer::per_origin),
//! [`per_request`](crate::BearerAuthLayer::per_request), and the same on
//! `BearerAuthMiddleware`).
//!
//! Each tower service remembers the last `MEMOS` (8) destinations it served, each with what a
//! single-cache service keeps of the destination's slot, so a run of requests to one
//! destination costs what a single-cache service costs, plus one comparison of the authority
//! (per origin) or of the key (per request) and one load of the slot's eviction flag, and
//! taking turns among up to `MEMOS` (8) costs a comparison per destination more. A request
//! elsewhere looks its key up without a lock and moves the memo next in turn over to its slot:
//! a handle and the slot's current header, not a new service (the inner service is never
//! cloned for it).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use http::{Request, Uri};
use tower::Service;

use super::route::{Destination, Route, no_key};
use super::{Key, KeyedTokenCache, Slot};
use crate::origin::{Approved, Destinations, Verdict};
use crate::pipeline::{Judge, Tokens, TokensSealed};
use crate::service::{Mode, ResponseFuture, Single};
use crate::{OnDisallowedOrigin, Origin, TokenSource};

/// How many destinations a keyed service remembers (a power of two).
const MEMOS: usize = 8;

/// Tokens per destination: a [`KeyedTokenCache`] and how each request's key is picked (by
/// origin, or by a closure), for the front ends made by
/// [`BearerAuthLayer::per_origin`](crate::BearerAuthLayer::per_origin) and
/// [`BearerAuthLayer::per_request`](crate::BearerAuthLayer::per_request) (and the same on
/// `BearerAuthMiddleware`). A request whose destination has no key is sent without a token,
/// or fails, as
/// [`on_unknown_destination`](crate::BearerAuthLayer::on_unknown_destination) says.
pub struct PerKey<K, P> {
    cache: KeyedTokenCache<K, P>,
    route: Route<K>,
    pub(crate) on_unknown: OnDisallowedOrigin,
}

impl<K: Key, P> PerKey<K, P> {
    pub(crate) fn origins(
        cache: KeyedTokenCache<K, P>,
        origins: impl IntoIterator<Item = (Origin, K)>,
    ) -> Self {
        Self::with_route(cache, Route::origins(origins))
    }

    pub(crate) fn request(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Destination<'_>) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        Self::with_route(cache, Route::request(pick))
    }

    fn with_route(cache: KeyedTokenCache<K, P>, route: Route<K>) -> Self {
        PerKey {
            cache,
            route,
            on_unknown: OnDisallowedOrigin::SendWithoutToken,
        }
    }
}

impl<K, P> PerKey<K, P> {
    /// The keyed cache.
    pub fn cache(&self) -> &KeyedTokenCache<K, P> {
        &self.cache
    }
}

impl<K, P> TokensSealed for PerKey<K, P> {}

// Not `K: Key`: no `'static` here, so a future holding a service keyed by `&'static str` is
// `Send` (the compiler's proof of it forgets lifetimes).
impl<K: Hash + Eq + Clone + Send + Sync, P: TokenSource> Tokens<P> for PerKey<K, P> {
    type Cache = KeyedTokenCache<K, P>;
    type Front = Memos<K, P>;

    fn cache(&self) -> &KeyedTokenCache<K, P> {
        &self.cache
    }

    // The rules are the crate's own types: this method is not for users (sealed, hidden).
    #[allow(private_interfaces)]
    fn front(&self, destinations: &Destinations, judge: &Judge) -> Memos<K, P> {
        Memos {
            by_origin: self.route.by_origin(),
            settings: Arc::new(Settings {
                tokens: self.clone(),
                destinations: destinations.clone(),
                judge: judge.clone(),
            }),
            memos: Default::default(),
            last: 0,
            next: 0,
        }
    }

    fn front_cache(front: &Memos<K, P>) -> &KeyedTokenCache<K, P> {
        &front.settings.tokens.cache
    }

    #[inline]
    fn call<S, M, B>(
        front: &mut Memos<K, P>,
        inner: &mut S,
        request: Request<B>,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        M: Mode<S, B>,
    {
        // Fast path: the destination served last, whose slot is still in the cache.
        let mut picked = None;
        // `& (MEMOS - 1)`: an index the compiler can see is in bounds.
        if let Some(memo) = &mut front.memos[front.last & (MEMOS - 1)]
            && memo.matches(
                &request,
                front.by_origin,
                &front.settings.tokens.route,
                &mut picked,
            )
            && memo.slot().is_live()
        {
            return M::call(&mut memo.single, inner, request);
        }
        front.call_slow::<S, M, B>(inner, request, picked)
    }

    #[cfg(feature = "reqwest-middleware")]
    #[allow(private_interfaces)]
    async fn handle(
        &self,
        destinations: &Destinations,
        judge: &Judge,
        request: ::reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        let destination = Destination::from_reqwest(&request);
        let Some(key) = self.route.key(&destination) else {
            let error = no_key(&destination);
            return match self.on_unknown {
                OnDisallowedOrigin::Fail => Err(reqwest_middleware::Error::middleware(error)),
                _ => {
                    tracing::debug!(reason = %error, "request sent without a bearer token");
                    next.run(request, extensions).await
                }
            };
        };
        // The destination rules first, so that a refused request makes no slot.
        match destinations.check_url(request.url()) {
            Verdict::Attach => {}
            Verdict::Skip => return next.run(request, extensions).await,
            Verdict::Refuse(error) => return Err(reqwest_middleware::Error::middleware(error)),
        }
        let slot = self
            .cache
            .slot(&key)
            .map_err(reqwest_middleware::Error::middleware)?;
        // The one-cache path over this key's slot, with these rules: one policy for both.
        crate::reqwest::handle(&slot, destinations, judge, request, extensions, next).await
    }
}

/// What a keyed tower service keeps: the layer's settings, and the destinations it served last.
pub struct Memos<K, P> {
    /// Shared by the services a layer makes behind one `Arc` (so cloning a service, as
    /// `client.clone().oneshot(..)` does per request, touches one reference count).
    settings: Arc<Settings<K, P>>,
    /// The destination served last (`memos[last]`) and the ones before it, so a service taking
    /// turns among a few destinations finds them without a lookup in the keyed cache. Only the
    /// last is handed on to clones (a clone per request would pay for copying them all).
    memos: [Option<Memo<K, P>>; MEMOS],
    /// Below `MEMOS` (8).
    last: usize,
    /// The memo a new destination replaces next, in turn.
    next: usize,
    /// Whether the route is by origin, kept here so the fast path does not read the settings
    /// for it.
    by_origin: bool,
}

/// What a layer configures.
struct Settings<K, P> {
    tokens: PerKey<K, P>,
    destinations: Destinations,
    judge: Judge,
}

/// A destination a service served: its key, and what a single-cache service keeps of the key's
/// slot (the slot, the cache's source, says whether it was evicted).
struct Memo<K, P> {
    /// For a route by origin: the scheme and authority the key was found for.
    https: bool,
    authority: Approved,
    key: K,
    single: Single<Slot<P>>,
}

impl<K, P: TokenSource> Memo<K, P> {
    #[inline]
    fn slot(&self) -> &Slot<P> {
        self.single.cache.source()
    }

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

fn destination<B>(request: &Request<B>) -> Destination<'_> {
    Destination::from_uri(request.method(), request.uri(), request.headers())
}

impl<K: Hash + Eq + Clone + Send + Sync, P: TokenSource> Memos<K, P> {
    /// Another destination than the last (or the first request): find its key and slot.
    #[cold]
    #[inline(never)]
    fn call_slow<S, M, B>(
        &mut self,
        inner: &mut S,
        request: Request<B>,
        mut picked: Option<Option<K>>,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        M: Mode<S, B>,
    {
        let Memos {
            settings,
            memos,
            last,
            next,
            by_origin,
        } = self;
        let by_origin = *by_origin;
        let settings = &**settings;
        let route = &settings.tokens.route;
        // A destination served before the last: it becomes the last.
        for (i, memo) in memos.iter_mut().enumerate() {
            if i != *last
                && let Some(memo) = memo
                && memo.matches(&request, by_origin, route, &mut picked)
                && memo.slot().is_live()
            {
                *last = i;
                return M::call(&mut memo.single, inner, request);
            }
        }
        let key = picked.unwrap_or_else(|| route.key(&destination(&request)));
        let Some(key) = key else {
            let error = no_key(&destination(&request));
            return match settings.tokens.on_unknown {
                OnDisallowedOrigin::Fail => ResponseFuture::failed(error),
                _ => {
                    tracing::debug!(reason = %error, "request sent without a bearer token");
                    ResponseFuture::plain(inner.call(request))
                }
            };
        };
        // The destination rules first: a request the token may not go to makes no slot (in a
        // full cache, a new slot would evict another key's).
        match settings
            .destinations
            .check_request(&request, &mut Approved::NONE.clone())
        {
            Verdict::Attach => {}
            Verdict::Skip => return ResponseFuture::plain(inner.call(request)),
            Verdict::Refuse(error) => return ResponseFuture::failed(error),
        }
        let slot = match settings.tokens.cache.slot(&key) {
            Ok(slot) => slot,
            Err(error) => return ResponseFuture::failed(error),
        };
        // The same slot reached another way (another origin mapped to the same key): reuse its
        // memo. Else a new one takes an empty place, or replaces the memos in turn.
        let reuse = (0..MEMOS).find(|&i| {
            memos[i]
                .as_ref()
                .is_some_and(|memo| Arc::ptr_eq(&memo.single.cache.shared, &slot.shared))
        });
        let at = match reuse {
            Some(i) => i,
            None => match memos.iter().position(Option::is_none) {
                Some(empty) => {
                    memos[empty] = Some(Memo {
                        https: false,
                        authority: Approved::NONE,
                        key,
                        single: Single::new(
                            slot,
                            settings.destinations.clone(),
                            settings.judge.clone(),
                        ),
                    });
                    empty
                }
                None => {
                    // All taken: the next in turn goes to this destination, keeping what it
                    // holds (more destinations than memos cost a lookup, not a service).
                    *next = (*next + 1) & (MEMOS - 1);
                    if *next == *last {
                        *next = (*next + 1) & (MEMOS - 1);
                    }
                    let memo = memos[*next].as_mut().expect("all memos are taken");
                    memo.key = key;
                    memo.single.retarget(slot);
                    *next
                }
            },
        };
        *last = at;
        let memo = memos[at].as_mut().expect("just set");
        memo.remember(request.uri(), by_origin);
        M::call(&mut memo.single, inner, request)
    }
}

impl<K: Clone, P> Clone for PerKey<K, P> {
    fn clone(&self) -> Self {
        PerKey {
            cache: self.cache.clone(),
            route: self.route.clone(),
            on_unknown: self.on_unknown,
        }
    }
}

impl<K: Clone, P> Clone for Memo<K, P> {
    fn clone(&self) -> Self {
        Memo {
            https: self.https,
            authority: self.authority.clone(),
            key: self.key.clone(),
            single: self.single.clone(),
        }
    }
}

impl<K: Clone, P> Clone for Memos<K, P> {
    fn clone(&self) -> Self {
        Memos {
            settings: Arc::clone(&self.settings),
            memos: {
                let mut memos: [Option<Memo<K, P>>; MEMOS] = Default::default();
                memos[0] = self.memos[self.last & (MEMOS - 1)].clone();
                memos
            },
            last: 0,
            next: 0,
            by_origin: self.by_origin,
        }
    }
}

impl<K, P> fmt::Debug for PerKey<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerKey")
            .field("cache", &self.cache)
            .field("route", &self.route)
            .field("on_unknown", &self.on_unknown)
            .finish()
    }
}

impl<K, P> fmt::Debug for Memos<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memos")
            .field("tokens", &self.settings.tokens)
            .field("destinations", &self.settings.destinations)
            .field("judge", &self.settings.judge)
            .finish_non_exhaustive()
    }
}
