//! [`PerKey`]: a [`KeyedTokenCache`] and how each request's key is picked, as the
//! [`Tokens`] of a front end ([`BearerAuthLayer::per_origin`](crate::BearerAuthLayer::per_origin),
//! [`per_request`](crate::BearerAuthLayer::per_request), and the same on
//! `BearerAuthMiddleware`).
//!
//! Each tower service remembers the destinations it served (up to `MEMOS`, 64), each with what
//! a single-cache service keeps of the destination's slot, found by its origin (`per_origin`'s
//! map, or `per_origin_with`'s closure, asked once per origin) or by its key (`per_request`,
//! whose closure runs for every request). A run of requests to one destination costs
//! what a single-cache service costs, plus one comparison of the authority and one load of the
//! slot's eviction flag; taking turns among remembered destinations in a fixed order adds one
//! comparison (each memo remembers which one followed it), and in any other order one hash of
//! the authority (or key) and one probe of a small table. A destination it does not
//! remember looks its key up without a lock and gets a memo (past `MEMOS`, one taken over in
//! turn): a handle and the slot's current header, not a new service (the inner service is never
//! cloned for it). A request by origin that a memo cannot be found by (a scheme other than
//! `http`/`https`, or userinfo in the URI, which a memo never keeps) takes this lookup each time.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use hashbrown::HashTable;
use http::{Request, Uri};
use tower::Service;

use super::route::{Destination, Route, no_key};
use super::{Key, KeyedTokenCache, Slot};
use crate::origin::{Approved, Destinations, Verdict};
use crate::pipeline::{Judge, Tokens, TokensSealed};
use crate::service::{Mode, ResponseFuture, Single};
use crate::{OnDisallowedOrigin, Origin, TokenSource};

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

    pub(crate) fn origin(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Origin) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        Self::with_route(cache, Route::origin(pick))
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

impl<K, P> TokensSealed for PerKey<K, P> {
    type Source = P;
    type Cache = KeyedTokenCache<K, P>;
    type Front = Memos<K, P>;
}

// Not `K: Key`: no `'static` here, so a future holding a service keyed by `&'static str` is
// `Send` (the compiler's proof of it forgets lifetimes).
impl<K: Hash + Eq + Clone + Send + Sync, P: TokenSource> Tokens for PerKey<K, P> {
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
            memos: Vec::new(),
            index: HashTable::new(),
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
        // Fast path: the destination served last, or the one that followed it last time, else
        // one found by its hash, whose slot is still in the cache.
        let mut picked = None;
        let found = match front.predict(request.uri()) {
            Some(at) => Some(at),
            None => front.find(&request, &mut picked),
        };
        if let Some(at) = found
            && let Some(memo) = front.memos.get_mut(at)
            && memo.slot().is_live()
        {
            if at != front.last {
                front.follow(at);
            }
            return M::call(&mut front.memos[at].single, inner, request);
        }
        front.call_slow::<S, M, B>(inner, request, picked, found)
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

/// What a keyed tower service keeps: the layer's settings, and the destinations it served.
pub struct Memos<K, P> {
    /// Shared by the services a layer makes behind one `Arc` (so cloning a service, as
    /// `client.clone().oneshot(..)` does per request, touches one reference count).
    settings: Arc<Settings<K, P>>,
    /// The destinations this service served, at most `MEMOS`, each with what a single-cache
    /// service keeps of its slot. Only the last is handed on to clones (a clone per request
    /// would pay for copying them all).
    memos: Vec<Memo<K, P>>,
    /// The memos by the hash of what they are found by (an origin, or a key): a service taking
    /// turns among any number of destinations finds each with one hash and one probe.
    index: HashTable<usize>,
    /// The destination served last (`memos[last]`), compared first.
    last: usize,
    /// The memo a new destination replaces next, in turn, once there are `MEMOS`.
    next: usize,
    /// Whether the route is by origin (every memo is then found by its origin, else by its
    /// key), kept here so the fast path does not read the settings for it.
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
    /// The hash it is indexed under.
    hash: u64,
    /// For a route by origin: the scheme and authority it is found by (empty for a route by
    /// closure, whose memos are found by their key).
    https: bool,
    authority: Box<str>,
    key: K,
    single: Single<Slot<P>>,
    /// The memo served after this one last time (`NONE` at first): a service taking turns
    /// among destinations in a fixed order finds the next one with a comparison, no hash.
    then: usize,
}

/// No memo.
const NONE: usize = usize::MAX;

impl<K, P: TokenSource> Memo<K, P> {
    #[inline]
    fn slot(&self) -> &Slot<P> {
        self.single.cache.source()
    }

    /// Whether it is found by this origin.
    #[inline]
    fn is_origin(&self, https: bool, authority: &str) -> bool {
        self.https == https && same_bytes(self.authority.as_bytes(), authority.as_bytes())
    }
}

/// A request's scheme and authority as a memo is found by them: `http` or `https`, and the
/// authority as written.
#[inline]
fn origin_of(uri: &Uri) -> Option<(bool, &str)> {
    let https = match uri.scheme_str()? {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    Some((https, uri.authority()?.as_str()))
}

/// `a == b`, a word at a time and inline for the lengths of host names.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

fn destination<B>(request: &Request<B>) -> Destination<'_> {
    Destination::from_uri(request.method(), request.uri(), request.headers())
}

/// How many destinations a keyed service remembers; beyond them, a new destination takes the
/// place of a remembered one, in turn.
const MEMOS: usize = 64;

impl<K: Hash + Eq + Clone + Send + Sync, P: TokenSource> Memos<K, P> {
    /// The memo of a request to `uri` if it goes where the last one went, or where the one
    /// after the last went the time before; found by origin only.
    #[inline]
    fn predict(&self, uri: &Uri) -> Option<usize> {
        if !self.by_origin {
            return None;
        }
        let last = self.memos.get(self.last)?;
        let (https, authority) = origin_of(uri)?;
        if last.is_origin(https, authority) {
            return Some(self.last);
        }
        self.memos
            .get(last.then)
            .filter(|then| then.is_origin(https, authority))
            .map(|_| last.then)
    }

    /// `at` is served after the last: remember the order, and make it the last.
    #[inline]
    fn follow(&mut self, at: usize) {
        if let Some(last) = self.memos.get_mut(self.last) {
            last.then = at;
        }
        self.last = at;
    }

    /// The memo of `request`'s destination among those remembered: by its origin, else (by
    /// closure) by its key, picked once into `picked` (`Some(None)`: it has none).
    #[inline]
    fn find<B>(&self, request: &Request<B>, picked: &mut Option<Option<K>>) -> Option<usize> {
        let memos = &self.memos;
        if self.by_origin {
            let (https, authority) = origin_of(request.uri())?;
            return self
                .index
                .find(fx::origin(https, authority), |&i| {
                    memos[i].is_origin(https, authority)
                })
                .copied();
        }
        let route = &self.settings.tokens.route;
        let key = picked
            .get_or_insert_with(|| route.key(&destination(request)))
            .as_ref()?;
        let is_key = |memo: &Memo<K, P>| memo.key == *key;
        if let Some(last) = memos.get(self.last) {
            if is_key(last) {
                return Some(self.last);
            }
            if memos.get(last.then).is_some_and(is_key) {
                return Some(last.then);
            }
        }
        self.index
            .find(fx::key(key), |&i| is_key(&memos[i]))
            .copied()
    }

    /// A destination not remembered, or whose slot was evicted (`found`): find its key and
    /// slot, and remember it.
    #[cold]
    #[inline(never)]
    fn call_slow<S, M, B>(
        &mut self,
        inner: &mut S,
        request: Request<B>,
        picked: Option<Option<K>>,
        found: Option<usize>,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        M: Mode<S, B>,
    {
        let settings = Arc::clone(&self.settings);
        let key = picked.unwrap_or_else(|| settings.tokens.route.key(&destination(&request)));
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
        // Remembered by its origin for a route by origin (never one with userinfo: a memo keeps
        // no copy of a credential), else by its key.
        let (hash, https, authority) = if self.by_origin {
            match origin_of(request.uri()).filter(|(_, authority)| !authority.contains('@')) {
                Some((https, authority)) => {
                    (fx::origin(https, authority), https, Box::from(authority))
                }
                None => {
                    // Nothing to remember it by: a service for this request.
                    let mut single =
                        Single::new(slot, settings.destinations.clone(), settings.judge.clone());
                    return M::call(&mut single, inner, request);
                }
            }
        } else {
            (fx::key(&key), false, Box::default())
        };
        // The index holds every memo once there are two (a service with one, as a clone per
        // request has, needs none: the last is compared first).
        let was_indexed = !self.index.is_empty();
        let replace = match found {
            // Its slot was evicted: its place takes the key's new slot.
            Some(at) => Some(at),
            None if self.memos.len() < MEMOS => None,
            None => {
                // All taken: the next in turn goes to this destination, keeping what it holds
                // (its rules and judge) but the slot.
                self.next = (self.next + 1) % MEMOS;
                if self.next == self.last {
                    self.next = (self.next + 1) % MEMOS;
                }
                Some(self.next)
            }
        };
        let at = match replace {
            Some(at) => {
                if was_indexed {
                    self.forget(at);
                }
                let memo = &mut self.memos[at];
                memo.hash = hash;
                memo.key = key;
                memo.single.retarget(slot);
                (memo.https, memo.authority) = (https, authority);
                at
            }
            None => {
                self.memos.push(Memo {
                    hash,
                    https,
                    authority,
                    key,
                    single: Single::new(
                        slot,
                        settings.destinations.clone(),
                        settings.judge.clone(),
                    ),
                    then: NONE,
                });
                self.memos.len() - 1
            }
        };
        if self.memos.len() > 1 {
            let (memos, index) = (&self.memos, &mut self.index);
            if !was_indexed {
                for (i, memo) in memos.iter().enumerate().filter(|&(i, _)| i != at) {
                    index.insert_unique(memo.hash, i, |&j| memos[j].hash);
                }
            }
            index.insert_unique(hash, at, |&j| memos[j].hash);
        }
        self.follow(at);
        M::call(&mut self.memos[at].single, inner, request)
    }

    /// Take the memo at `at` out of the index (if it is there).
    fn forget(&mut self, at: usize) {
        let hash = self.memos[at].hash;
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == at) {
            entry.remove();
        }
    }
}

/// A fast hash for a service's memos (Fx-style: a multiply and a rotation per word). The
/// destinations a service remembers are at most `MEMOS`, so a hash that an adversary could
/// collide costs a longer probe in a small table, no more.
mod fx {
    use std::hash::{Hash, Hasher};

    const K: u64 = 0xf135_7aea_2e62_a9c5;

    #[derive(Default)]
    struct Fx(u64);

    impl Fx {
        #[inline]
        fn add(&mut self, word: u64) {
            self.0 = self.0.wrapping_add(word).wrapping_mul(K);
        }
    }

    impl Hasher for Fx {
        #[inline]
        fn write(&mut self, bytes: &[u8]) {
            self.add(bytes.len() as u64);
            self.add_bytes(bytes);
        }

        #[inline]
        fn write_u8(&mut self, i: u8) {
            self.add(u64::from(i));
        }

        #[inline]
        fn write_u64(&mut self, i: u64) {
            self.add(i);
        }

        #[inline]
        fn write_usize(&mut self, i: usize) {
            self.add(i as u64);
        }

        #[inline]
        fn finish(&self) -> u64 {
            // The multiply leaves the low bits weak; the table's index takes them.
            self.0.rotate_left(26)
        }
    }

    impl Fx {
        /// `bytes` a word at a time, the last word overlapping the one before (the caller
        /// hashes the length).
        #[inline]
        fn add_bytes(&mut self, bytes: &[u8]) {
            let n = bytes.len();
            if n < 8 {
                let mut word = 0;
                for (i, &b) in bytes.iter().enumerate() {
                    word |= u64::from(b) << (8 * i);
                }
                self.add(word);
            } else {
                let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
                let mut at = 0;
                while at + 8 < n {
                    self.add(word(at));
                    at += 8;
                }
                self.add(word(n - 8));
            }
        }
    }

    /// The hash of an origin as a memo keeps it.
    #[inline]
    pub(super) fn origin(https: bool, authority: &str) -> u64 {
        let mut hasher = Fx(u64::from(https) ^ authority.len() as u64);
        hasher.add_bytes(authority.as_bytes());
        hasher.finish()
    }

    /// The hash of a key.
    #[inline]
    pub(super) fn key<K: Hash>(key: &K) -> u64 {
        let mut hasher = Fx::default();
        key.hash(&mut hasher);
        hasher.finish()
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
            hash: self.hash,
            https: self.https,
            authority: self.authority.clone(),
            key: self.key.clone(),
            single: self.single.clone(),
            then: NONE,
        }
    }
}

impl<K: Clone, P> Clone for Memos<K, P> {
    fn clone(&self) -> Self {
        // The last destination only, unindexed (one memo needs no index).
        let memos: Vec<_> = self.memos.get(self.last).cloned().into_iter().collect();
        Memos {
            settings: Arc::clone(&self.settings),
            memos,
            index: HashTable::new(),
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
