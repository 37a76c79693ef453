//! [`TokenCache`]: the shared, single-flight token refresher at the heart of the crate.
//!
//! Each cached token goes through three phases on tokio's monotonic clock:
//!
//! | phase | when | what [`TokenCache::token`] does |
//! |---|---|---|
//! | fresh | before the refresh window | returns the cached token: no lock, no clock read |
//! | stale | inside the refresh window | returns the cached token **and** makes sure one background refresh runs |
//! | expired / none | past the safety margin | waits for the one in-flight refresh (starting it if needed) |
//!
//! At most one refresh runs per cache, in a spawned task: a caller that stops waiting
//! (a timeout, a cancelled request) never cancels it, so nothing it produces is lost. Failures
//! are backed off (transient) or remembered for a while (rejections); a token that is still
//! usable keeps being served while refreshes fail.
//!
//! Refreshes and the phase timer run as tasks on the tokio runtime that started them. A runtime
//! that shuts down fails safe (its lost timer marks the token stale; the next refresh starts on
//! the caller's runtime). A runtime that stays alive but is no longer driven cannot be noticed
//! cheaply: callers elsewhere give up after the fetch timeout, but the fast path may keep using
//! the last fresh token past its refresh window. Do not share a cache with a runtime you stop
//! driving.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower_bearer::{Error, Token, TokenCache, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! let fetches = Arc::new(AtomicUsize::new(0));
//! let counter = fetches.clone();
//! let cache = TokenCache::new(from_fn(move || {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move { Ok::<_, Error>(Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600))) }
//! }));
//!
//! // A hundred concurrent callers, one fetch.
//! let tokens = futures_util::future::join_all((0..100).map(|_| cache.token())).await;
//! assert!(tokens.iter().all(|t| t.as_ref().unwrap().secret() == "token-0"));
//! assert_eq!(fetches.load(Ordering::SeqCst), 1);
//!
//! // The server said 401 to token-0: drop it (only if it is still current) and get a new one.
//! let seen = cache.token().await?;
//! assert!(cache.invalidate(&seen));
//! assert!(!cache.invalidate(&seen)); // a second 401 for the same token changes nothing
//! assert_eq!(cache.token().await?.secret(), "token-1");
//! # Ok(()) }
//! ```

mod config;
mod entry;
mod event;
pub(crate) mod handle;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::FutureExt as _;
use http::HeaderValue;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use config::{Backoff, TokenCacheBuilder};
pub use entry::CachedToken;
pub use event::{RefreshEvent, RefreshReason};

use crate::{Error, ErrorKind, TokenSource};
use config::Config;
use entry::{Entry, PHASE_FRESH, PHASE_NONE, PHASE_STALE, pack, random_up_to};
use event::RefreshReason as Reason;

/// The shared, single-flight token cache. Cheap to clone: clones share one token.
///
/// Build one with [`TokenCache::new`] or [`TokenCache::builder`], then hand it to any number of
/// layers ([`BearerAuthLayer::from_cache`](crate::BearerAuthLayer::from_cache)) or use it
/// directly with [`token`](TokenCache::token) and [`invalidate`](TokenCache::invalidate).
pub struct TokenCache<P> {
    pub(crate) shared: Arc<Shared<P>>,
}

pub(crate) struct Shared<P> {
    /// `generation << 2 | phase`: the only thing the fast path reads.
    state: AtomicU64,
    current: ArcSwapOption<Entry>,
    /// Nanoseconds after `epoch` before which the stale path need not take the lock: a refresh
    /// is in flight (`u64::MAX`) or backing off.
    quiet_until: AtomicU64,
    epoch: Instant,
    control: Mutex<Control>,
    config: Config,
    source: P,
    /// Set once a service registers the cache (see `handle`), so response futures can find it.
    registry_id: OnceLock<std::num::NonZeroU32>,
    /// When a 401 last dropped a token, in nanoseconds after `epoch`; `u64::MAX` if never
    /// (see `handle::invalidate_after_401`).
    last_401_drop: AtomicU64,
}

/// The slow-path bookkeeping, behind a mutex that is never held across an `.await`.
#[derive(Default)]
struct Control {
    inflight: Option<watch::Receiver<Option<Outcome>>>,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    timer: Option<AbortHandle>,
}

type Outcome = Result<CachedToken, Error>;

impl<P: TokenSource> TokenCache<P> {
    /// A cache with the default settings: refresh 60 s before expiry (never more than half the
    /// lifetime), up to 10 s of jitter, a 10 s safety margin, backoff from 1 s to 60 s.
    pub fn new(source: P) -> Self {
        Self::with_config(source, Config::default())
    }

    /// A builder to tune the refresh window, jitter, safety margin, backoff and more.
    pub fn builder(source: P) -> TokenCacheBuilder<P> {
        TokenCacheBuilder {
            source,
            config: Config::default(),
        }
    }

    pub(crate) fn with_config(source: P, config: Config) -> Self {
        TokenCache {
            shared: Arc::new(Shared {
                state: AtomicU64::new(PHASE_NONE),
                current: ArcSwapOption::empty(),
                quiet_until: AtomicU64::new(0),
                epoch: Instant::now(),
                control: Mutex::new(Control::default()),
                config,
                source,
                registry_id: OnceLock::new(),
                last_401_drop: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// A usable token: the cached one if it is fresh or stale (starting one background refresh
    /// when stale), else the result of the one in-flight refresh.
    ///
    /// Cancel-safe: dropping the future stops waiting but never cancels the refresh.
    pub async fn token(&self) -> Result<CachedToken, Error> {
        if let Some((token, _)) = self.usable() {
            return Ok(token);
        }
        let (mut rx, refresh) = {
            let mut control = self.shared.lock();
            let now = Instant::now();
            if let Some(entry) = self.shared.current.load_full().filter(|e| e.is_usable(now)) {
                return Ok(CachedToken(entry));
            }
            match &control.inflight {
                Some(rx) => (rx.clone(), None),
                None => {
                    if let Some(err) = control.blocked(now) {
                        return Err(err);
                    }
                    let reason = if self.shared.current.load().is_some() {
                        Reason::Expired
                    } else {
                        Reason::NoToken
                    };
                    let refresh = self.start_refresh(&mut control, reason)?;
                    (refresh.guard.tx.subscribe(), Some(refresh))
                }
            }
        };
        if let Some(refresh) = refresh {
            refresh.spawn();
        }
        // Bounded on the caller's own clock too: the refresh runs on the runtime that started
        // it, and a runtime that is no longer driven must not hang callers on other runtimes.
        // (A second of grace lets the refresh's own timeout, set at the same instant, win.)
        let limit = self.shared.config.fetch_timeout;
        let grace = Duration::from_secs(1);
        match tokio::time::timeout(limit.saturating_add(grace), rx.wait_for(Option::is_some)).await
        {
            Ok(Ok(outcome)) => outcome.clone().expect("waited for Some"),
            Ok(Err(_)) => Err(Error::transient(
                "the token refresh task stopped before finishing (is the runtime shutting down?)",
            )),
            Err(_) => Err(Error::transient(format!(
                "no token within {limit:?}: the refresh has not finished"
            ))),
        }
    }

    /// Drop `seen` if it is still the current token, typically after the server answered 401 to
    /// it, and start fetching a new one. Returns whether it was dropped.
    ///
    /// Comparing first means a storm of 401s for one token causes one refresh, and a 401 that
    /// arrives late, for a token already replaced, changes nothing.
    pub fn invalidate(&self, seen: &CachedToken) -> bool {
        self.invalidate_generation(seen.generation())
    }

    pub(crate) fn invalidate_generation(&self, generation: u64) -> bool {
        let mut control = self.shared.lock();
        let is_current = self
            .shared
            .current
            .load()
            .as_ref()
            .is_some_and(|e| e.generation == generation);
        if !is_current {
            return false;
        }
        self.shared.current.store(None);
        self.shared.state.store(PHASE_NONE, Ordering::Release);
        // The timer stays: in background mode it may be the retry of a failed refresh, the
        // only thing that would fetch again without traffic. The next token replaces it.
        tracing::debug!(generation, "token invalidated");
        let now = Instant::now();
        if control.inflight.is_none() && control.blocked(now).is_none() {
            // The caller will want a new token right away; start on it.
            let refresh = self.start_refresh(&mut control, Reason::Invalidated);
            drop(control);
            if let Ok(refresh) = refresh {
                refresh.spawn();
            }
        }
        true
    }

    /// The token source this cache fetches from.
    pub fn source(&self) -> &P {
        &self.shared.source
    }

    /// The current token if it is usable, without fetching or waiting.
    pub fn current(&self) -> Option<CachedToken> {
        let now = Instant::now();
        self.shared
            .current
            .load_full()
            .filter(|e| e.is_usable(now))
            .map(CachedToken)
    }

    /// A number under which response futures can find this cache again (registered on first
    /// use; see `handle`).
    pub(crate) fn registry_id(&self) -> std::num::NonZeroU32 {
        *self.shared.registry_id.get_or_init(|| {
            let weak: Weak<dyn handle::ErasedCache> =
                Arc::downgrade(&self.shared) as Weak<Shared<P>>;
            handle::register(weak)
        })
    }

    /// This cache behind a type-erased, strong handle.
    pub(crate) fn erased(&self) -> Arc<dyn handle::ErasedCache> {
        Arc::clone(&self.shared) as Arc<Shared<P>>
    }

    /// The header of the current token when `state` says it is fresh: one lock-free load, no
    /// clock read. This is the path of a service that has not seen the current token yet
    /// (typically a clone made per request from a template that never sends).
    #[inline]
    pub(crate) fn fresh_header(&self, state: u64) -> Option<HeaderValue> {
        if state & 3 != PHASE_FRESH {
            return None;
        }
        let current = self.shared.current.load();
        match &*current {
            Some(entry) if pack(entry.generation, PHASE_FRESH) == state => {
                Some(entry.header.clone())
            }
            _ => None,
        }
    }

    /// The current token if it is usable now, starting a background refresh if it is stale.
    /// The `u64` is the state to remember for the fast path, or `u64::MAX` when the token
    /// is not fresh (so the next request comes back here and reads the clock).
    pub(crate) fn usable(&self) -> Option<(CachedToken, u64)> {
        let state = self.state();
        let entry = self.shared.current.load_full()?;
        // The clock, not the published phase, decides here: a timer that fires late must not
        // delay the refresh of callers that reach the slow path.
        let now = Instant::now();
        if !entry.is_usable(now) {
            return None;
        }
        if entry.is_stale(now) {
            self.refresh_in_background(now, Reason::Stale);
            return Some((CachedToken(entry), u64::MAX));
        }
        let fresh = pack(entry.generation, PHASE_FRESH);
        let remember = if state == fresh { fresh } else { u64::MAX };
        Some((CachedToken(entry), remember))
    }

    fn refresh_in_background(&self, now: Instant, reason: Reason) {
        if self.shared.nanos(now) < self.shared.quiet_until.load(Ordering::Relaxed) {
            return;
        }
        let mut control = self.shared.lock();
        if control.inflight.is_none() && control.blocked(now).is_none() {
            let refresh = self.start_refresh(&mut control, reason);
            drop(control);
            match refresh {
                Ok(refresh) => refresh.spawn(),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot start a background token refresh")
                }
            }
        }
    }

    /// Mark a refresh in flight. The caller spawns it once it has released the lock.
    fn start_refresh(&self, control: &mut Control, reason: Reason) -> Result<NewRefresh<P>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config("tower-bearer needs a tokio runtime to fetch tokens, and none is running")
        })?;
        let (tx, rx) = watch::channel(None);
        control.inflight = Some(rx);
        self.shared.quiet_until.store(u64::MAX, Ordering::Relaxed);
        let guard = RefreshGuard {
            shared: Arc::clone(&self.shared),
            tx,
            completed: false,
        };
        Ok(NewRefresh {
            runtime,
            guard,
            reason,
        })
    }
}

/// A refresh marked in flight, to spawn once the control lock is released: a runtime that has
/// shut down drops the task inside `spawn`, and the guard's cleanup then takes the lock.
struct NewRefresh<P: TokenSource> {
    runtime: tokio::runtime::Handle,
    guard: RefreshGuard<P>,
    reason: Reason,
}

impl<P: TokenSource> NewRefresh<P> {
    fn spawn(self) {
        // A root span that follows from the caller's: a detached refresh must not keep the
        // request's span (and its trace) open until the token endpoint answers.
        let span =
            tracing::info_span!(parent: None, "token_refresh", reason = self.reason.as_str());
        span.follows_from(tracing::Span::current());
        self.runtime
            .spawn(self.guard.run(self.reason).instrument(span));
    }
}

/// Owns one refresh. If the task is dropped before it finishes (the runtime shut down), the
/// drop still clears the in-flight marker so the cache is never stuck.
struct RefreshGuard<P: TokenSource> {
    shared: Arc<Shared<P>>,
    tx: watch::Sender<Option<Outcome>>,
    /// Set once `complete` has recorded the outcome (and cleared the in-flight marker): from
    /// then on the marker may belong to the next refresh, which the drop must leave alone.
    completed: bool,
}

impl<P: TokenSource> RefreshGuard<P> {
    async fn run(mut self, reason: Reason) {
        let shared = Arc::clone(&self.shared);
        let sent_at = Instant::now();
        tracing::debug!(reason = reason.as_str(), "token refresh started");
        let timeout = shared.config.fetch_timeout;
        // `fetch()` is called inside the caught future: a source can panic before it returns
        // its future as well as while it runs.
        let fetched =
            AssertUnwindSafe(async { tokio::time::timeout(timeout, shared.source.fetch()).await })
                .catch_unwind()
                .await;
        let result = match fetched {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(Error::transient(format!(
                "the token source did not answer within {timeout:?}"
            ))),
            // The payload is not shown: a panic message could hold anything.
            Err(_panic) => Err(Error::new(ErrorKind::Panicked, "the token source panicked")),
        };
        let outcome = shared.complete(sent_at, result);
        self.completed = true;
        let _ = self.tx.send(Some(outcome.clone()));
        if let Some(hook) = &shared.config.on_refresh {
            let event = RefreshEvent {
                outcome: &outcome,
                reason,
                took: Instant::now().saturating_duration_since(sent_at),
            };
            (hook.0)(&event);
        }
    }
}

impl<P: TokenSource> Drop for RefreshGuard<P> {
    fn drop(&mut self) {
        // Not `tx.borrow()`: a refresh nobody waits for has no receiver left once `complete`
        // dropped the marker's, so its outcome is never stored in the channel.
        if !self.completed {
            let mut control = self.shared.lock();
            control.inflight = None;
            self.shared.quiet_until.store(0, Ordering::Relaxed);
        }
    }
}

impl<P: TokenSource> Shared<P> {
    /// Record the result of a refresh: install the token, or remember the failure.
    fn complete(
        self: &Arc<Self>,
        sent_at: Instant,
        result: Result<crate::Token, Error>,
    ) -> Outcome {
        let now = Instant::now();
        let entry = result.and_then(|token| Entry::new(token, sent_at, now, &self.config));
        let mut control = self.lock();
        control.inflight = None;
        match entry {
            Ok(mut entry) => {
                control.generation += 1;
                control.failures = 0;
                control.retry_at = None;
                control.last_error = None;
                entry.generation = control.generation;
                let entry = Arc::new(entry);
                self.current.store(Some(Arc::clone(&entry)));
                let stale = entry.is_stale(now);
                let phase = if stale { PHASE_STALE } else { PHASE_FRESH };
                self.state
                    .store(pack(entry.generation, phase), Ordering::Release);
                self.quiet_until.store(0, Ordering::Relaxed);
                match entry.refresh_at {
                    // Already stale: in background mode the timer fires at once and refreshes,
                    // as a request on the stale path would.
                    Some(at) if !stale || self.config.background_refresh => {
                        self.schedule(&mut control, at, entry.generation)
                    }
                    _ => {
                        if let Some(timer) = control.timer.take() {
                            timer.abort();
                        }
                    }
                }
                tracing::info!(
                    generation = entry.generation,
                    expires_in = ?entry.expires_at.map(|at| at.saturating_duration_since(now)),
                    took = ?now.saturating_duration_since(sent_at),
                    "token refreshed"
                );
                Ok(CachedToken(entry))
            }
            Err(err) => {
                control.failures = control.failures.saturating_add(1);
                let delay = match err.kind() {
                    ErrorKind::Transient | ErrorKind::Panicked => {
                        let backoff = self.config.backoff.delay(control.failures);
                        let jittered = backoff / 2 + random_up_to(backoff / 2);
                        err.retry_after().map_or(jittered, |after| {
                            after.min(self.config.backoff.max).max(jittered)
                        })
                    }
                    _ => self.config.rejected_cooldown,
                };
                let retry_at = far_as_possible(now, delay);
                control.retry_at = Some(retry_at);
                control.last_error = Some(err.clone());
                self.quiet_until
                    .store(self.nanos(retry_at), Ordering::Relaxed);
                let serving_stale = self
                    .current
                    .load()
                    .as_ref()
                    .is_some_and(|e| e.is_usable(now));
                tracing::warn!(
                    error = %err,
                    kind = %err.kind(),
                    failures = control.failures,
                    retry_in = ?delay,
                    serving_stale,
                    "token refresh failed"
                );
                if self.config.background_refresh {
                    let generation = self.current.load().as_ref().map_or(0, |e| e.generation);
                    self.schedule(&mut control, retry_at, generation);
                }
                Err(err)
            }
        }
    }

    /// At `at`, flip token `generation` from fresh to stale and, in background mode, refresh.
    fn schedule(self: &Arc<Self>, control: &mut Control, at: Instant, generation: u64) {
        if let Some(timer) = control.timer.take() {
            timer.abort();
        }
        let stale_on_drop = MarkStaleOnDrop {
            shared: Arc::downgrade(self),
            generation,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // `stale_on_drop` hands the token to the clock-reading slow path now
        };
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            let shared = stale_on_drop.shared.clone();
            drop(stale_on_drop);
            if let Some(shared) = shared.upgrade()
                && shared.config.background_refresh
            {
                TokenCache { shared }.refresh_in_background(Instant::now(), Reason::Timer);
            }
        });
        control.timer = Some(task.abort_handle());
    }
}

/// Flips token `generation` from fresh to stale when dropped: when its timer fires, and also
/// when the timer never will (its runtime shut down). Either way the fast path stops trusting
/// the token and the slow path, which reads the clock, takes over: a lost timer fails safe.
/// A newer token or an invalidation has already changed the state, so then this does nothing.
struct MarkStaleOnDrop<P> {
    shared: Weak<Shared<P>>,
    generation: u64,
}

impl<P> Drop for MarkStaleOnDrop<P> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let _ = shared.state.compare_exchange(
                pack(self.generation, PHASE_FRESH),
                pack(self.generation, PHASE_STALE),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

impl<P> Shared<P> {
    fn lock(&self) -> MutexGuard<'_, Control> {
        // Nothing panics while holding the lock, but never let a poisoned lock wedge the cache.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

/// `now + delay`, or decades from now when that does not fit in an `Instant`: a cooldown or
/// a `Retry-After` of `Duration::MAX` means "not again", not a panic in the refresh task.
fn far_as_possible(now: Instant, delay: Duration) -> Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    now.checked_add(delay)
        .or_else(|| now.checked_add(DECADES))
        .unwrap_or(now)
}

impl Control {
    /// The remembered error, while it still stands between us and a new fetch.
    fn blocked(&self, now: Instant) -> Option<Error> {
        match self.retry_at {
            Some(at) if now < at => self.last_error.clone(),
            _ => None,
        }
    }
}

impl<P> Drop for Shared<P> {
    fn drop(&mut self) {
        if let Some(id) = self.registry_id.get() {
            handle::unregister(*id);
        }
        let control = self.control.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(timer) = control.timer.take() {
            timer.abort();
        }
    }
}

impl<P> TokenCache<P> {
    /// The packed `generation << 2 | phase`. Equal to a value the caller saw with phase fresh
    /// means "that token is still current and fresh": the whole fast path.
    #[inline]
    pub(crate) fn state(&self) -> u64 {
        self.shared.state.load(Ordering::Acquire)
    }
}

impl<P> Clone for TokenCache<P> {
    fn clone(&self) -> Self {
        TokenCache {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P> fmt::Debug for TokenCache<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.load(Ordering::Relaxed);
        let phase = match state & 3 {
            PHASE_FRESH => "fresh",
            PHASE_STALE => "stale",
            _ => "none",
        };
        f.debug_struct("TokenCache")
            .field("generation", &(state >> 2))
            .field("phase", &phase)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::Token;
    use crate::source::StaticToken;

    fn phase<P>(cache: &TokenCache<P>) -> u64 {
        cache.state() & 3
    }

    #[test]
    fn a_timer_lost_with_its_runtime_fails_safe() {
        let cache = TokenCache::new(StaticToken::new(
            Token::new("abc").with_expires_in(Duration::from_secs(3600)),
        ));
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        first.block_on(cache.token()).unwrap();
        assert_eq!(phase(&cache), PHASE_FRESH);
        // The runtime that ran the refresh and owns the phase timer goes away (a test runtime,
        // a runtime per request batch...): the fast path must stop trusting the token.
        drop(first);
        assert_eq!(phase(&cache), PHASE_STALE);

        // Another runtime carries on: the slow path reads the clock and still serves the token.
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let token = second.block_on(cache.token()).unwrap();
        assert_eq!(token.secret(), "abc");
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_a_token_does_not_mark_the_new_one_stale() {
        let cache = TokenCache::new(StaticToken::new(
            Token::new("abc").with_expires_in(Duration::from_secs(3600)),
        ));
        let first = cache.token().await.unwrap();
        cache.invalidate(&first);
        let second = cache.token().await.unwrap();
        tokio::task::yield_now().await; // let the aborted timer be dropped
        assert_eq!(cache.state(), pack(second.generation(), PHASE_FRESH));
    }
}
