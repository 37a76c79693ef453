//! [`Slot`]: a key's token source, with the state its eviction needs.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::cache::{Coarse, coarse_now};
use crate::{Error, Token, TokenSource};

/// A key's token source, with what eviction needs to know about the key's use: the source of
/// each slot's [`TokenCache`](crate::TokenCache) (so a service holding the cache reaches these with no second
/// pointer). Fetching delegates to the source the factory made.
pub struct Slot<P> {
    source: P,
    /// [`USED`] once used since the last sweep, [`ACTIVE`] once used since the last background
    /// refresh, [`EVICTED`] once removed (for good).
    flags: AtomicU8,
    /// Coarse-clock ticks of the last use seen (a lookup through the map, or the first use from
    /// a memo after a sweep): the order of least-recent use.
    last_used: AtomicU64,
}

pub(super) const USED: u8 = 1;
const EVICTED: u8 = 2;
const ACTIVE: u8 = 4;

impl<P> Slot<P> {
    /// A new slot, used once (by the request creating it) as far as the idle sweep is
    /// concerned, but not yet worth a background refresh: a key used by one request only costs
    /// one fetch.
    pub(super) fn new(source: P, now: Coarse) -> Self {
        Slot {
            source,
            flags: AtomicU8::new(USED),
            last_used: AtomicU64::new(now.as_ticks()),
        }
    }

    /// The source the factory made for this key.
    pub fn source(&self) -> &P {
        &self.source
    }

    /// Whether this slot has been evicted (or removed) from its keyed cache.
    pub fn is_evicted(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EVICTED != 0
    }

    /// Whether a service may keep using this slot (it has not been evicted), noting the use for
    /// the idle sweep and the background refresh. One load of a line that is written about once
    /// per sweep or token lifetime.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        match self.flags.load(Ordering::Relaxed) {
            flags if flags == USED | ACTIVE => true,
            flags if flags & EVICTED != 0 => false,
            _ => self.touch(),
        }
    }

    /// Note a use the flags do not show yet; whether the slot is still live.
    #[cold]
    fn touch(&self) -> bool {
        self.last_used
            .store(coarse_now().as_ticks(), Ordering::Relaxed);
        // Never resurrect an evicted slot.
        self.flags
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |flags| {
                (flags & EVICTED == 0).then_some(flags | USED | ACTIVE)
            })
            .is_ok()
    }

    /// Whether the slot's timer may refresh its token ahead of time (background mode): only if
    /// the slot is still in its keyed cache and was used since the last time this was asked.
    /// An evicted slot, or one nobody used for a token's lifetime, costs no fetch; its next
    /// use (if any) refreshes on demand.
    fn wants_background_refresh(&self) -> bool {
        let flags = self.flags.fetch_and(!ACTIVE, Ordering::Relaxed);
        flags & EVICTED == 0 && flags & ACTIVE != 0
    }

    /// Note a use through the map, written at most once per coarse-clock tick: lookups from
    /// many threads do not take turns owning the line.
    #[inline]
    pub(super) fn note_use(&self, now: Coarse) {
        let now = now.as_ticks();
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// The coarse-clock ticks of the last use seen.
    pub(super) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Start a new sweep interval: whether the slot was used in the one ending.
    pub(super) fn used_since_last_sweep(&self) -> bool {
        self.flags.fetch_and(!USED, Ordering::Relaxed) & USED != 0
    }

    pub(super) fn evict(&self) {
        self.flags.store(EVICTED, Ordering::Relaxed);
    }
}

impl<P: 'static> Slot<P> {
    /// The background gate of a slot's cache (see `TokenCacheBuilder::background_gate`).
    pub(super) fn background_gate(source: &dyn Any) -> bool {
        source
            .downcast_ref::<Slot<P>>()
            .is_some_and(Slot::wants_background_refresh)
    }
}

impl<P: TokenSource> TokenSource for Slot<P> {
    fn fetch(&self) -> impl std::future::Future<Output = Result<Token, Error>> + Send {
        self.source.fetch()
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.source.dpop()
    }

    #[cfg(feature = "reqwest")]
    fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.source.client_identity()
    }

    fn binding_known(&self) -> bool {
        self.source.binding_known()
    }
}

impl<P> fmt::Debug for Slot<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("evicted", &self.is_evicted())
            .finish_non_exhaustive()
    }
}
