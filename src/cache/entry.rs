//! One cached token: its prebuilt header and the instants that bound its phases.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::clock::{self, Coarse, Now};
use super::config::Config;
use crate::{Error, Token};

/// The phases of the state machine, packed with the generation into one `AtomicU64`.
pub(crate) const PHASE_NONE: u64 = 0;
pub(crate) const PHASE_STALE: u64 = 1;
pub(crate) const PHASE_FRESH: u64 = 2;

/// `generation << 2 | phase`: what the fast path compares with one load.
#[inline]
pub(crate) const fn pack(generation: u64, phase: u64) -> u64 {
    (generation << 2) | phase
}

/// How many copies of the `Authorization` value a token keeps (see [`Entry::header`]).
const HEADER_COPIES: usize = 8;

pub(crate) struct Entry {
    pub(crate) generation: u64,
    /// The prebuilt `Authorization` value, in up to [`HEADER_COPIES`] separate allocations.
    ///
    /// Every request clones the value it carries, an atomic increment (and later decrement) of
    /// the value's reference count. With one value, every thread sending requests increments
    /// one shared counter, and the cache line holding it bounces between cores on each request:
    /// the dominant cost of "add one header" at two threads and more (tower-http's static
    /// `SetRequestHeader` pays it too). Each thread uses its own copy instead
    /// ([`thread_slot`]), so threads contend only when more than [`HEADER_COPIES`] of them send.
    ///
    /// Only the copy of the thread that built the entry is made up front (on a current-thread
    /// runtime, the only one ever used); another thread's is made on its first use, so a token
    /// costs one copy per thread that sends it, not [`HEADER_COPIES`].
    headers: [OnceLock<HeaderValue>; HEADER_COPIES],
    /// The slot of the copy made up front.
    home: usize,
    pub(crate) token: Token,
    pub(crate) expires_at: Option<Instant>,
    /// From here on the token is stale: still served, but a refresh should run.
    pub(crate) refresh_at: Option<Instant>,
    /// From here on the token is not served at all.
    pub(crate) usable_until: Option<Instant>,
    /// `refresh_at` and `usable_until` on the coarse clock (see `clock`): the guard that holds
    /// whether or not a timer ran.
    pub(crate) fresh_until_coarse: Coarse,
    pub(crate) usable_until_coarse: Coarse,
}

impl Entry {
    /// Validate `token` and compute its phases. `sent_at` is when the fetch started, `now`
    /// when its answer arrived.
    ///
    /// For a token that lives `L` from `sent_at`:
    /// - the safety margin is `min(safety_margin, L/4)`: the token stops being used that long
    ///   before it expires, whatever the refresh window;
    /// - the refresh window is `min(refresh_window, L/2)`, started up to
    ///   `min(jitter, window/2)` earlier at random, and never later than the end of usability:
    ///   a window no wider than the margin means "refresh when the token stops being usable",
    ///   with callers waiting for it rather than being served the old one.
    pub(crate) fn new(
        token: Token,
        sent_at: Instant,
        now: Now,
        config: &Config,
    ) -> Result<Entry, Error> {
        let home = thread_slot();
        let mut first = Some(token.header_value()?);
        let headers = std::array::from_fn(|slot| match slot == home {
            true => OnceLock::from(first.take().expect("one home slot")),
            false => OnceLock::new(),
        });
        let expires_at = token.expires_at(sent_at, now.tokio);
        let (refresh_at, usable_until) = match expires_at {
            None => (None, None),
            Some(expires_at) => {
                if expires_at <= now.tokio {
                    return Err(Error::invalid_response(
                        "the token source returned a token that has already expired",
                    ));
                }
                let lifetime = expires_at.saturating_duration_since(sent_at.min(now.tokio));
                let margin = config.safety_margin.min(lifetime / 4);
                let window = config.refresh_window.min(lifetime / 2);
                let jitter = random_up_to(config.jitter.min(window / 2));
                let usable_until = expires_at.checked_sub(margin).unwrap_or(now.tokio);
                if usable_until <= now.tokio {
                    // Handing it out would send a token that expires in flight. A slow answer
                    // is worth retrying (with backoff).
                    return Err(Error::transient(format!(
                        "the token source answered after {:?} with a token that expires within \
                         the {margin:?} safety margin",
                        now.tokio.saturating_duration_since(sent_at),
                    )));
                }
                let refresh_at = expires_at
                    .checked_sub(window + jitter)
                    .unwrap_or(now.tokio)
                    .min(usable_until);
                (Some(refresh_at), Some(usable_until))
            }
        };
        let coarse = |at: Option<Instant>| at.map_or(clock::NEVER, |at| now.coarse_deadline(at));
        Ok(Entry {
            generation: 0,
            headers,
            home,
            token,
            expires_at,
            refresh_at,
            usable_until,
            fresh_until_coarse: coarse(refresh_at),
            usable_until_coarse: coarse(usable_until),
        })
    }

    /// This thread's copy of the `Authorization` value.
    #[inline]
    pub(crate) fn header(&self) -> &HeaderValue {
        let slot = thread_slot();
        match self.headers[slot].get() {
            Some(header) => header,
            None => self.copy_header(slot),
        }
    }

    /// Make the copy of slot `slot`, on its first thread's first use: built as the first one
    /// was, so it is zeroized when its last clone is dropped.
    #[cold]
    fn copy_header(&self, slot: usize) -> &HeaderValue {
        self.headers[slot].get_or_init(|| {
            // The token was validated when the first copy was built: this cannot fail; if it
            // did, the thread would share the first copy.
            self.token.header_value().unwrap_or_else(|_| {
                self.headers[self.home]
                    .get()
                    .expect("the home copy is made up front")
                    .clone()
            })
        })
    }

    /// Still usable by both clocks.
    pub(crate) fn is_usable(&self, now: Now) -> bool {
        now.coarse < self.usable_until_coarse && self.usable_until.is_none_or(|at| now.tokio < at)
    }

    /// Inside its refresh window by either clock.
    pub(crate) fn is_stale(&self, now: Now) -> bool {
        now.coarse >= self.fresh_until_coarse || self.refresh_at.is_some_and(|at| now.tokio >= at)
    }

    /// Whether `other` is this very token (not merely one with the same generation number,
    /// which another cache may also have handed out).
    pub(crate) fn is(&self, other: &Entry) -> bool {
        std::ptr::eq(self, other)
    }
}

/// This thread's slot among a token's header copies: threads take slots in turn, on first use.
#[inline]
fn thread_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The only process-wide state: a counter handing out slots, like the one behind
    // `std::thread::ThreadId`. It holds nothing of any cache.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % HEADER_COPIES;
    }
    // During thread-local teardown (a request sent from another thread-local's destructor),
    // any copy will do.
    SLOT.try_with(|slot| *slot).unwrap_or(0)
}

/// A uniformly random duration in `[0, max]`.
pub(crate) fn random_up_to(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// A token the cache handed out: the prebuilt `Authorization` value and an identity to pass
/// back to [`TokenCache::invalidate`](crate::TokenCache::invalidate).
///
/// Cheap to clone. `Debug` never shows the secret.
#[derive(Clone)]
pub struct CachedToken(pub(crate) Arc<Entry>);

impl CachedToken {
    /// The `Authorization` header value (`Bearer …`), marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        self.0.header()
    }

    /// Whether the token is still usable now, by both clocks.
    pub(crate) fn is_usable_now(&self) -> bool {
        self.0.is_usable(Now::read())
    }

    /// The access token itself.
    pub fn secret(&self) -> &str {
        self.0.token.secret()
    }

    /// How long until the token expires, on the tokio clock; `None` if it does not expire.
    pub fn expires_in(&self) -> Option<Duration> {
        self.0
            .expires_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// A number that counts this cache's refreshes: it grows with each new token. Two caches
    /// number their tokens independently, so it identifies a token only within its cache;
    /// [`TokenCache::invalidate`](crate::TokenCache::invalidate) compares the tokens themselves.
    pub fn generation(&self) -> u64 {
        self.0.generation
    }
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("generation", &self.0.generation)
            .field("secret", &"[redacted]")
            .field("expires_in", &self.expires_in())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies(entry: &Entry) -> usize {
        entry.headers.iter().filter(|h| h.get().is_some()).count()
    }

    /// A 1 KiB token used from one thread costs one header, not one per possible thread; each
    /// other thread that sends it adds its own copy on first use.
    #[tokio::test]
    async fn header_copies_are_made_per_thread_on_first_use() {
        let entry = Entry::new(
            Token::new("k".repeat(1024)),
            Instant::now(),
            Now::read(),
            &Config::default(),
        )
        .unwrap();
        assert_eq!(copies(&entry), 1);
        assert_eq!(entry.header().as_bytes().len(), "Bearer ".len() + 1024);
        assert_eq!(
            copies(&entry),
            1,
            "the building thread uses the copy made up front"
        );
        let entry = Arc::new(entry);
        let other = Arc::clone(&entry);
        let (ptr, sensitive) = std::thread::spawn(move || {
            let header = other.header();
            (header.as_bytes().as_ptr() as usize, header.is_sensitive())
        })
        .join()
        .unwrap();
        assert!(sensitive);
        // Another slot (threads take slots in turn; two may share one when 8 are in use).
        if ptr != entry.header().as_bytes().as_ptr() as usize {
            assert_eq!(copies(&entry), 2);
        }
    }
}
