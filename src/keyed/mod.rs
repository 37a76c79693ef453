//! A token per destination: [`KeyedTokenCache`], one single-flight [`TokenCache`] per key, and
//! [`PerKey`], how the one layer and middleware pick the key for each request.
//!
//! A key is whatever makes tokens differ: an audience, a resource, a scope set, a tenant. Each
//! key gets its own slot, a whole [`TokenCache`] (serve-stale, backoff, compare-and-invalidate,
//! everything it guarantees), created on first use from a source factory, so concurrent
//! requests for one key cause one fetch and a request for one key never gets another key's
//! token. Slots are bounded in number ([`max_keys`](KeyedTokenCacheBuilder::max_keys), 1,000 by
//! default, the least recently used evicted past it) and dropped when idle
//! ([`idle_timeout`](KeyedTokenCacheBuilder::idle_timeout), 15 minutes by default).
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{Error, Token, keyed::KeyedTokenCache, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! // One source per audience; a real program builds a `ClientCredentials` with `.audience(..)`.
//! let cache = KeyedTokenCache::new(|audience: &&'static str| {
//!     let audience = *audience;
//!     Ok(from_fn(move || async move {
//!         Ok::<_, Error>(Token::new(format!("token-for-{audience}")).with_expires_in(Duration::from_secs(3600)))
//!     }))
//! });
//! assert_eq!(cache.token(&"billing").await?.secret(), "token-for-billing");
//! assert_eq!(cache.token(&"search").await?.secret(), "token-for-search");
//! assert_eq!(cache.len(), 2);
//! # Ok(()) }
//! ```
//!
//! In a client stack, [`BearerAuthLayer::per_origin`](crate::BearerAuthLayer::per_origin) maps
//! each request's origin to a key (`https://billing.example.com` → `"billing"`),
//! [`BearerAuthLayer::per_origin_with`](crate::BearerAuthLayer::per_origin_with) asks a closure
//! once per origin (a tenant in a subdomain), and
//! [`BearerAuthLayer::per_request`](crate::BearerAuthLayer::per_request) asks a closure for
//! every request (a tenant in the path or a header); a
//! request whose destination has no key is sent without a token, or fails, as
//! [`on_unknown_destination`](crate::BearerAuthLayer::on_unknown_destination) says, and never
//! carries another destination's token.

mod per_key;
mod route;
mod slot;

use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::HashTable;

pub use per_key::PerKey;
pub use route::Destination;
pub use slot::Slot;

use crate::cache::{Coarse, coarse_now};
use crate::{CachedToken, Error, TokenCache, TokenCacheBuilder, TokenSource};

/// What a key must be: hashed and compared to find its slot, cloned into it.
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> Key for T {}

/// The default [`max_keys`](KeyedTokenCacheBuilder::max_keys).
pub const DEFAULT_MAX_KEYS: usize = 1_000;

/// The default [`idle_timeout`](KeyedTokenCacheBuilder::idle_timeout).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// One [`TokenCache`] per key, each created on first use from a source factory; see the
/// [module docs](self).
///
/// Cheap to clone: clones share the slots.
pub struct KeyedTokenCache<K, P> {
    shared: Arc<Shared<K, P>>,
}

type Factory<K, P> = dyn Fn(&K) -> Result<P, Error> + Send + Sync;
type Configure<K, P> =
    dyn Fn(&K, TokenCacheBuilder<Slot<P>>) -> TokenCacheBuilder<Slot<P>> + Send + Sync;

struct Shared<K, P> {
    /// The slots, in shards picked by the key's hash. Read without a lock by every request
    /// that is not served from a service's memo; a shard is replaced (copy on write) under
    /// `writer` when one of its slots comes or goes, so a new key copies one shard of a few
    /// slots, never the whole map.
    shards: Box<[ArcSwap<Table<K, P>>]>,
    hasher: RandomState,
    /// How many slots the shards hold; written under `writer`.
    len: AtomicUsize,
    writer: Mutex<Writer>,
    /// Coarse-clock ticks from which the next idle sweep is due.
    next_sweep: AtomicU64,
    factory: Box<Factory<K, P>>,
    configure: Option<Box<Configure<K, P>>>,
    max_keys: usize,
    idle_timeout: Duration,
}

/// One shard: each slot with its key's hash (so a shard grows without hashing its keys again).
type Table<K, P> = HashTable<(u64, K, SlotCache<P>)>;

/// Held to change the slots.
struct Writer;

/// A slot's cache.
pub(crate) type SlotCache<P> = TokenCache<Slot<P>>;

/// How many shards for `max_keys` slots: about 8 slots each when full, a power of two, at most
/// 1,024 (a shard costs a pointer while empty).
fn shard_count(max_keys: usize) -> usize {
    (max_keys / 8).clamp(1, 1024).next_power_of_two()
}

impl<K: Key, P: TokenSource> KeyedTokenCache<K, P> {
    /// A keyed cache with the default bounds, whose slots are [`TokenCache`]s with the default
    /// settings over the sources `factory` makes, one per key, on the key's first use.
    ///
    /// A factory error is returned to that request (and the next one for the key tries the
    /// factory again): it is configuration, cheap to repeat.
    pub fn new(factory: impl Fn(&K) -> Result<P, Error> + Send + Sync + 'static) -> Self {
        Self::builder(factory).build()
    }

    /// A builder to set the bounds and each slot's cache settings.
    pub fn builder(
        factory: impl Fn(&K) -> Result<P, Error> + Send + Sync + 'static,
    ) -> KeyedTokenCacheBuilder<K, P> {
        KeyedTokenCacheBuilder {
            factory: Box::new(factory),
            configure: None,
            max_keys: DEFAULT_MAX_KEYS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The operations need no `'static` on the key type (only its constructors do): a future that
/// holds a service over `&'static str` keys stays `Send` where the compiler cannot see the
/// lifetime.
impl<K: Hash + Eq + Clone, P: TokenSource> KeyedTokenCache<K, P> {
    /// A usable token for `key`, from its slot (created if need be): see [`TokenCache::token`].
    pub async fn token(&self, key: &K) -> Result<CachedToken, Error> {
        self.cache(key)?.token().await
    }

    /// The cache of `key`, created if need be: to use on its own, to
    /// [`insert`](TokenCache::insert) a token the program already has, or to share with a
    /// single-destination layer.
    ///
    /// For a key that has a slot: one hash, a lock-free read of its shard and a reference
    /// count; nothing is built.
    pub fn cache(&self, key: &K) -> Result<TokenCache<Slot<P>>, Error> {
        self.slot(key)
    }

    /// Drop `seen` from `key`'s slot if it is still that slot's current token; see
    /// [`TokenCache::invalidate`]. `false` when there is no slot for `key`.
    pub fn invalidate(&self, key: &K, seen: &CachedToken) -> bool {
        let hash = self.shared.hash(key);
        self.shared
            .shard(hash)
            .load()
            .find(hash, |(_, k, _)| k == key)
            .is_some_and(|(_, _, slot)| slot.invalidate(seen))
    }

    /// Drop `key`'s slot and its token; the next use creates a new one. Returns whether there
    /// was one.
    pub fn remove(&self, key: &K) -> bool {
        let writer = self.shared.lock();
        let hash = self.shared.hash(key);
        self.shared.remove(&writer, hash, key)
    }

    /// Whether `key` has a slot now.
    pub fn contains(&self, key: &K) -> bool {
        let hash = self.shared.hash(key);
        self.shared
            .shard(hash)
            .load()
            .find(hash, |(_, k, _)| k == key)
            .is_some()
    }

    /// How many keys have a slot now.
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::Relaxed)
    }

    /// Whether no key has a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of `key`: looked up without a lock, created under the writer lock (so a key's
    /// first concurrent uses share one slot, and so one fetch).
    pub(crate) fn slot(&self, key: &K) -> Result<SlotCache<P>, Error> {
        match self.with_slot(key, SlotCache::clone) {
            Some(cache) => Ok(cache),
            None => self.create(key),
        }
    }

    /// `f` applied to `key`'s slot cache, if the key has a live slot: one hash and a lock-free
    /// read of its shard, no reference count, nothing built (`None` for a key without one:
    /// [`slot`](Self::slot) creates it). Notes the use for eviction and sweeps the idle slots
    /// when a sweep is due.
    #[inline]
    pub(crate) fn with_slot<R>(&self, key: &K, f: impl FnOnce(&SlotCache<P>) -> R) -> Option<R> {
        let hash = self.shared.hash(key);
        let (found, now) = {
            let shard = self.shared.shard(hash).load();
            let (_, _, cache) = shard.find(hash, |(_, k, _)| k == key)?;
            if !cache.source().is_live() {
                return None;
            }
            let now = coarse_now();
            cache.source().note_use(now);
            (f(cache), now)
        };
        // The shard's guard released: a sweep replaces shards.
        self.sweep_if_due(now);
        Some(found)
    }

    /// Sweep the idle slots if an idle timeout has passed since the last sweep: one load and a
    /// comparison until then.
    fn sweep_if_due(&self, now: Coarse) {
        let shared = &*self.shared;
        if now.as_ticks() < shared.next_sweep.load(Ordering::Relaxed) {
            return;
        }
        let writer = shared.lock();
        shared.sweep(&writer, now);
    }

    #[cold]
    fn create(&self, key: &K) -> Result<SlotCache<P>, Error> {
        let shared = &*self.shared;
        let writer = shared.lock();
        let hash = shared.hash(key);
        if let Some((_, _, cache)) = shared.shard(hash).load().find(hash, |(_, k, _)| k == key) {
            return Ok(cache.clone());
        }
        let now = coarse_now();
        let slot = Slot::new((shared.factory)(key)?, now);
        let builder = TokenCache::builder(slot);
        let mut builder = match &shared.configure {
            Some(configure) => configure(key, builder),
            None => builder,
        };
        // In background mode too, an evicted or idle slot never fetches.
        builder.config.background_gate = Some(Slot::<P>::background_gate);
        let cache = builder.build();
        shared.sweep(&writer, now);
        while shared.len.load(Ordering::Relaxed) >= shared.max_keys.max(1) {
            if !shared.evict_least_recent(&writer) {
                break;
            }
        }
        let shard = shared.shard(hash);
        let mut table = Table::clone(&shard.load());
        table.insert_unique(hash, (hash, key.clone(), cache.clone()), |(h, _, _)| *h);
        shard.store(Arc::new(table));
        let keys = shared.len.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(keys, "token slot created");
        Ok(cache)
    }
}

impl<K: Hash + Eq + Clone, P: TokenSource> Shared<K, P> {
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of a key with hash `hash`: picked by bits the tables use for neither the
    /// bucket (the low bits) nor the tag (the top seven).
    #[inline]
    fn shard(&self, hash: u64) -> &ArcSwap<Table<K, P>> {
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    /// Remove the slot of `key` (hash `hash`), evicting it; whether there was one.
    fn remove(&self, _writer: &Writer, hash: u64, key: &K) -> bool {
        let shard = self.shard(hash);
        let mut table = Table::clone(&shard.load());
        let Ok(entry) = table.find_entry(hash, |(_, k, _)| k == key) else {
            return false;
        };
        let ((_, _, cache), _) = entry.remove();
        cache.source().evict();
        shard.store(Arc::new(table));
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Once per idle timeout: drop the slots not used since the previous sweep, and start
    /// counting use afresh for the others. A slot is dropped after between one and two idle
    /// timeouts without use. Only the shards that lose a slot are copied.
    fn sweep(&self, writer: &Writer, now: Coarse) {
        if now.as_ticks() < self.next_sweep.load(Ordering::Relaxed) {
            return;
        }
        self.next_sweep
            .store(sweep_after(now, self.idle_timeout), Ordering::Relaxed);
        let mut dropped = 0;
        for shard in &*self.shards {
            // A slot not used for a whole interval goes.
            let idle: Vec<(u64, K)> = shard
                .load()
                .iter()
                .filter(|(_, _, cache)| !cache.source().used_since_last_sweep())
                .map(|(hash, key, _)| (*hash, key.clone()))
                .collect();
            for (hash, key) in idle {
                dropped += usize::from(self.remove(writer, hash, &key));
            }
        }
        if dropped > 0 {
            tracing::debug!(dropped, "idle token slots dropped");
        }
    }

    /// Remove the slot used least recently; whether there was one.
    fn evict_least_recent(&self, writer: &Writer) -> bool {
        let oldest = self
            .shards
            .iter()
            .filter_map(|shard| {
                shard
                    .load()
                    .iter()
                    .min_by_key(|(_, _, cache)| cache.source().last_used())
                    .map(|(hash, key, cache)| (cache.source().last_used(), *hash, key.clone()))
            })
            .min_by_key(|(last_used, _, _)| *last_used);
        let Some((_, hash, key)) = oldest else {
            return false;
        };
        tracing::debug!("least recently used token slot evicted (max_keys reached)");
        self.remove(writer, hash, &key)
    }
}

/// The coarse-clock ticks one idle timeout after `now`.
fn sweep_after(now: Coarse, idle_timeout: Duration) -> u64 {
    now.saturating_add(idle_timeout.into()).as_ticks()
}

/// Builds a [`KeyedTokenCache`]; see [`KeyedTokenCache::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::keyed::KeyedTokenCache;
/// use tower_bearer::source::static_token;
///
/// let cache = KeyedTokenCache::builder(|tenant: &String| Ok(static_token(format!("token-{tenant}"))))
///     .max_keys(100)
///     .idle_timeout(Duration::from_secs(600))
///     .cache(|_tenant, slot| slot.refresh_window(Duration::from_secs(120)))
///     .build();
/// # let _ = cache;
/// ```
pub struct KeyedTokenCacheBuilder<K, P> {
    factory: Box<Factory<K, P>>,
    configure: Option<Box<Configure<K, P>>>,
    max_keys: usize,
    idle_timeout: Duration,
}

impl<K: Key, P: TokenSource> KeyedTokenCacheBuilder<K, P> {
    /// At most this many keys have a slot at once (default [`DEFAULT_MAX_KEYS`], 1,000; at least
    /// 1). Creating one more evicts the slot used least recently (to within an idle sweep), and
    /// its token with it.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max.max(1);
        self
    }

    /// Drop a slot after between one and two of these without use (default
    /// [`DEFAULT_IDLE_TIMEOUT`], 15 minutes). Idle slots are swept by the lookups that pass
    /// through the map (a slot's creation, a service's first request to a destination), at most
    /// once per timeout; an idle slot costs memory, never a fetch. With
    /// [`background_refresh`](TokenCacheBuilder::background_refresh), a slot's timer refreshes
    /// its token ahead of time only if the slot was used since the previous background refresh
    /// (the request that created it aside), and never once it has been evicted.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Set up each slot's [`TokenCache`] (refresh window, backoff, background refresh, ...) with
    /// `configure`, called with the slot's key on a fresh [`TokenCacheBuilder`] each time a
    /// slot is created.
    ///
    /// Settings that name a credential must name the key's own: with the fleet tier (feature
    /// `redis`), give each key its own identity,
    /// `.cache(move |audience, slot| slot.fleet(fleet.credential(format!("orders {audience}"))))`,
    /// or the keys would share one token through Redis.
    pub fn cache(
        mut self,
        configure: impl Fn(&K, TokenCacheBuilder<Slot<P>>) -> TokenCacheBuilder<Slot<P>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Build the keyed cache. Does no I/O and creates no slot.
    pub fn build(self) -> KeyedTokenCache<K, P> {
        let empty = Arc::new(Table::new());
        let shards = (0..shard_count(self.max_keys))
            .map(|_| ArcSwap::new(Arc::clone(&empty)))
            .collect();
        KeyedTokenCache {
            shared: Arc::new(Shared {
                shards,
                hasher: RandomState::new(),
                len: AtomicUsize::new(0),
                writer: Mutex::new(Writer),
                next_sweep: AtomicU64::new(sweep_after(coarse_now(), self.idle_timeout)),
                factory: self.factory,
                configure: self.configure,
                max_keys: self.max_keys,
                idle_timeout: self.idle_timeout,
            }),
        }
    }
}

impl<K, P> Clone for KeyedTokenCache<K, P> {
    fn clone(&self) -> Self {
        KeyedTokenCache {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, P> fmt::Debug for KeyedTokenCache<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTokenCache")
            .field("keys", &self.shared.len.load(Ordering::Relaxed))
            .field("max_keys", &self.shared.max_keys)
            .field("idle_timeout", &self.shared.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<K, P> fmt::Debug for KeyedTokenCacheBuilder<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTokenCacheBuilder")
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Token;
    use crate::source::{StaticToken, static_token};

    fn keyed(max: usize, idle: Duration) -> KeyedTokenCache<u32, StaticToken> {
        KeyedTokenCache::builder(|k: &u32| Ok(static_token(format!("t{k}"))))
            .max_keys(max)
            .idle_timeout(idle)
            .build()
    }

    #[tokio::test]
    async fn past_max_keys_the_least_recently_used_slot_goes() {
        let cache = keyed(2, Duration::from_secs(3600));
        cache.token(&1).await.unwrap();
        std::thread::sleep(Duration::from_millis(30)); // coarse clock ticks apart
        cache.token(&2).await.unwrap();
        std::thread::sleep(Duration::from_millis(30));
        cache.token(&1).await.unwrap(); // 1 is now the most recent
        std::thread::sleep(Duration::from_millis(30));
        cache.token(&3).await.unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&1) && cache.contains(&3) && !cache.contains(&2));
    }

    #[tokio::test]
    async fn idle_slots_are_dropped_at_a_sweep() {
        let cache = keyed(10, Duration::from_millis(100));
        let first = cache.slot(&1).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        cache.token(&2).await.unwrap(); // sweep: 1 was used since the last one, kept, flag cleared
        assert!(cache.contains(&1));
        std::thread::sleep(Duration::from_millis(150));
        cache.token(&3).await.unwrap(); // sweep: 1 unused for an interval, dropped
        assert!(!cache.contains(&1) && cache.contains(&2) && cache.contains(&3));
        assert!(
            first.source().is_evicted(),
            "services holding the slot see it evicted"
        );
        // The next use makes a new slot.
        assert_eq!(cache.token(&1).await.unwrap().secret(), "t1");
        assert!(cache.contains(&1));
    }

    #[tokio::test]
    async fn lookups_sweep_too() {
        let cache = keyed(10, Duration::from_millis(100));
        cache.token(&1).await.unwrap();
        cache.token(&2).await.unwrap();
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(150));
            cache.token(&1).await.unwrap(); // a lookup, no new slot: sweeps when due
        }
        assert!(cache.contains(&1));
        assert!(
            !cache.contains(&2),
            "idle for two intervals, dropped by a lookup's sweep"
        );
    }

    /// Background mode, `max_keys(1)`: key 1 used once and held (as a service's memo holds it)
    /// after key 2 evicted it, key 2 used once. Neither fetches again, however long; a slot in
    /// use is still kept fresh by its timer.
    #[tokio::test(start_paused = true)]
    async fn an_evicted_or_idle_slot_never_fetches_in_background_mode() {
        use std::sync::atomic::AtomicUsize;
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let cache = KeyedTokenCache::builder(move |k: &u32| {
            let (k, counter) = (*k, counter.clone());
            Ok(crate::source::from_fn(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok::<_, Error>(
                        Token::new(format!("t{k}")).with_expires_in(Duration::from_secs(3)),
                    )
                }
            }))
        })
        .max_keys(1)
        .cache(|_, slot| slot.background_refresh(true).jitter(Duration::ZERO))
        .build();
        let memo = cache.slot(&1).unwrap();
        memo.token().await.unwrap();
        cache.token(&2).await.unwrap();
        assert!(memo.source().is_evicted());
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "no fetch without a request"
        );

        // Key 2 in use, served from a memo (`is_live` on each request, `current` never
        // fetches): its timer keeps it fresh.
        let used = cache.slot(&2).unwrap();
        used.token().await.unwrap();
        for _ in 0..9 {
            assert!(used.source().is_live());
            assert!(used.current().is_some(), "kept usable by the timer");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(
            fetches.load(Ordering::SeqCst) >= 5,
            "refreshed in the background"
        );
    }

    /// Many keys across the shards: each found again, `len` exact, `max_keys` held as slots
    /// are created past it, `remove` and eviction keep the count.
    #[tokio::test]
    async fn many_keys_across_the_shards() {
        let cache = keyed(1_000, Duration::from_secs(3600));
        for key in 0..1_000 {
            cache.cache(&key).unwrap();
        }
        assert_eq!(cache.len(), 1_000);
        assert!((0..1_000).all(|key| cache.contains(&key)));
        for key in 1_000..1_500 {
            cache.cache(&key).unwrap();
            assert!(cache.contains(&key));
        }
        assert_eq!(cache.len(), 1_000, "one evicted per slot past max_keys");
        let present = (0..1_500).filter(|key| cache.contains(key)).count();
        assert_eq!(present, 1_000);
        assert!(cache.remove(&1_499));
        assert_eq!(cache.len(), 999);
        assert_eq!(cache.token(&7).await.unwrap().secret(), "t7");
    }

    #[tokio::test]
    async fn a_factory_error_reaches_the_caller_and_is_not_kept() {
        let cache = KeyedTokenCache::new(|k: &u32| {
            if *k == 0 {
                Err(Error::config("no audience 0"))
            } else {
                Ok(StaticToken::new(Token::new("ok")))
            }
        });
        assert_eq!(
            cache.token(&0).await.unwrap_err().kind(),
            crate::ErrorKind::Config
        );
        assert!(cache.is_empty());
        assert!(cache.token(&1).await.is_ok());
    }

    #[tokio::test]
    async fn remove_and_invalidate_act_on_one_key() {
        let cache = keyed(10, Duration::from_secs(3600));
        let one = cache.token(&1).await.unwrap();
        cache.token(&2).await.unwrap();
        assert!(
            !cache.invalidate(&2, &one),
            "a token of key 1 is not key 2's"
        );
        assert!(cache.invalidate(&1, &one));
        assert!(cache.remove(&2));
        assert!(!cache.remove(&2));
        assert!(!cache.contains(&2));
    }
}
