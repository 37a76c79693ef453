//! Finding a cache again from a plain number, so a response future can report a 401.
//!
//! Every response future must be able to tell the cache "the server rejected token generation
//! N". The simple design holds a strong handle to the cache in each future: an `Arc` increment
//! and decrement per request on a counter shared by every thread that uses the cache. Measured
//! again for issue 8 (`design/arc_per_request` in `benches/interleaved.rs` and `fast_path.rs`,
//! figures in BENCHMARKS.md), it costs little at one thread and a contended cache line at two,
//! where the whole fast path has a budget of 10 % over a static header. So a service registers
//! its cache once, futures carry the registration number (32 bits) beside the low 32 bits of the
//! token's generation, one word in all, and only the rare 401 takes the global lock to look the
//! cache up. The registry holds weak references only: it keeps no cache alive, and a cache
//! leaves it when dropped. A generation truncated to 32 bits could match a wrong token only
//! after 2^32 refreshes of one cache while one request is in flight.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::entry::Entry;
use super::{CachedToken, Shared, TokenCache};
use crate::{Error, TokenSource};

/// At most one token is dropped because of a 401 per this interval, per cache.
///
/// A server that rejects every token (a wrong audience, a revoked client) would otherwise turn
/// each 401 into a token-endpoint call: drop, refresh, 401 on the new token, drop, ... as fast
/// as the two round trips allow. A 401 inside the interval is returned without dropping the
/// token; the first 401 after it drops it as usual.
pub(crate) const MIN_INTERVAL_BETWEEN_401_DROPS: Duration = Duration::from_secs(1);

impl<P: TokenSource> TokenCache<P> {
    /// The 401 policy's compare-and-invalidate: drop the current token if `is_rejected` says it
    /// is the one the server rejected and no 401 dropped a token in the last
    /// [`MIN_INTERVAL_BETWEEN_401_DROPS`].
    pub(crate) fn invalidate_after_401(&self, is_rejected: impl FnOnce(&Entry) -> bool) -> bool {
        let shared = &self.shared;
        let now = shared.nanos(Instant::now());
        let last = shared.last_401_drop.load(Ordering::Relaxed);
        let min = MIN_INTERVAL_BETWEEN_401_DROPS.as_nanos() as u64;
        if last != u64::MAX && now.saturating_sub(last) < min {
            tracing::debug!(
                "401 not acted on: a token was already dropped after a 401 less than 1 s ago"
            );
            return false;
        }
        let dropped = self.invalidate_if(is_rejected);
        if dropped {
            shared.last_401_drop.store(now, Ordering::Relaxed);
        }
        dropped
    }
}

pub(crate) type TokenFuture = Pin<Box<dyn Future<Output = Result<CachedToken, Error>> + Send>>;

/// What a response future needs from a cache whose token source type it does not know.
pub(crate) trait ErasedCache: Send + Sync {
    /// Drop the current token if the low 32 bits of its generation are `generation`.
    fn invalidate_after_401(self: Arc<Self>, generation: u32) -> bool;
    fn token(self: Arc<Self>) -> TokenFuture;
}

impl<P: TokenSource> ErasedCache for Shared<P> {
    fn invalidate_after_401(self: Arc<Self>, generation: u32) -> bool {
        // Response futures keep the low 32 bits of the generation to stay small; a false match
        // would need 2^32 refreshes while one request is in flight.
        TokenCache { shared: self }
            .invalidate_after_401(|current| current.generation as u32 == generation)
    }

    fn token(self: Arc<Self>) -> TokenFuture {
        let cache = TokenCache { shared: self };
        Box::pin(async move { cache.token().await })
    }
}

static REGISTRY: Mutex<BTreeMap<NonZeroU32, Weak<dyn ErasedCache>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

pub(crate) fn register(cache: Weak<dyn ErasedCache>) -> NonZeroU32 {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    // Ids are 32 bits so a response future can carry one with 32 bits of a generation in one
    // word; after 2^32 registrations they wrap, skipping any still in use.
    let id = loop {
        if let Some(id) = NonZeroU32::new(NEXT_ID.fetch_add(1, Ordering::Relaxed))
            && !registry.contains_key(&id)
        {
            break id;
        }
    };
    registry.insert(id, cache);
    id
}

pub(crate) fn unregister(id: NonZeroU32) {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
}

/// The cache registered as `id`, if it is still alive.
pub(crate) fn lookup(id: NonZeroU32) -> Option<Arc<dyn ErasedCache>> {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .and_then(Weak::upgrade)
}
