mod clock;
mod config;
mod entry;
mod event;
pub(crate) mod handle;
mod metrics;
#[cfg(all(test, loom))]
mod model_check;
mod observe;
mod refresh;
mod sync;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;

pub use config::{Backoff, TokenCacheBuilder};
pub use entry::CachedToken;
pub use event::{RefreshEvent, RefreshReason, RefreshTier};
pub use observe::{Health, HealthStatus};

use crate::{Error, Token, TokenSource};
pub(crate) use clock::{Coarse, coarse_now};
use clock::{Now, PASSED};
pub(crate) use config::Config;
#[cfg(feature = "redis")]
pub(crate) use entry::random_up_to;
use entry::{Entry, PHASE_FRESH, PHASE_NONE, PHASE_STALE, pack};
use event::RefreshReason as Reason;
use refresh::NewRefresh;
use sync::{AbortHandle, ArcSwapOption, AtomicU64, Mutex, MutexGuard};

/// The shared, single-flight token cache. Cheap to clone: clones share one token.
///
/// Build one with [`TokenCache::new`] or [`TokenCache::builder`], then hand it to any number of
/// layers ([`BearerAuthLayer::from_cache`](crate::BearerAuthLayer::from_cache)) or use it
/// directly with [`token`](TokenCache::token) and [`invalidate`](TokenCache::invalidate).
///
/// [`TokenCache`]: the shared, single-flight token refresher at the heart of the crate.
///
/// Each cached token goes through three phases on tokio's monotonic clock:
///
/// | phase | when | what [`TokenCache::token`] does |
/// |---|---|---|
/// | fresh | before the refresh window | returns the cached token: no lock, one coarse clock read |
/// | stale | inside the refresh window | returns the cached token **and** makes sure one background refresh runs |
/// | expired / none | past the safety margin | waits for the one in-flight refresh (starting it if needed) |
///
/// At most one refresh runs per cache, in a task of its own: a caller that stops waiting
/// (a timeout, a cancelled request) never cancels it, so nothing it produces is lost. (A
/// caller with no token to serve runs the refresh itself up to its first wait, and spawns the
/// rest: a source that answers at once costs no task.) Failures
/// are backed off (transient) or remembered for a while (rejections); a token that is still
/// usable keeps being served while refreshes fail.
///
/// The phases hold whatever drives (or does not drive) the runtime. A timer flips the fast
/// path's word when the refresh window opens, but it is not the only guard: every deadline is
/// also kept on the machine's coarse monotonic clock, which the fast path reads (a few
/// nanoseconds, no system call). A sync program that calls `block_on` once per request, a worker
/// blocked past the expiry, or a process frozen and thawed never sends a token past its usable
/// time nor treats one as fresh past its refresh window.
///
/// Refreshes run as tasks on the tokio runtime of the caller that started them. A refresh that
/// has not finished within the fetch timeout (its runtime stopped being driven, its source
/// blocks a thread) is abandoned: the next caller starts another, and the late outcome of the
/// abandoned one can never replace a newer token. A runtime that shuts down fails safe too.
/// (A source may still serialise its own fetches: the rotating sources wait for an abandoned
/// rotation to release their store rather than spend a refresh token twice.)
///
/// The state machine is model-checked with loom: `model_check` runs this code under every
/// interleaving of a few callers, a refresh, a phase timer and an invalidation, with the
/// primitives of `sync` swapped for loom's (`RUSTFLAGS="--cfg loom"`; see `.ci/run`).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use tower_bearer::{Error, Token, TokenCache, source::from_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
/// let fetches = Arc::new(AtomicUsize::new(0));
/// let counter = fetches.clone();
/// let cache = TokenCache::new(from_fn(move || {
///     let n = counter.fetch_add(1, Ordering::SeqCst);
///     async move { Ok::<_, Error>(Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600))) }
/// }));
///
/// // A hundred concurrent callers, one fetch.
/// let tokens = futures_util::future::join_all((0..100).map(|_| cache.token())).await;
/// assert!(tokens.iter().all(|t| t.as_ref().unwrap().secret() == "token-0"));
/// assert_eq!(fetches.load(Ordering::SeqCst), 1);
///
/// // The server said 401 to token-0: drop it (only if it is still current) and get a new one.
/// let seen = cache.token().await?;
/// assert!(cache.invalidate(&seen));
/// assert!(!cache.invalidate(&seen)); // a second 401 for the same token changes nothing
/// assert_eq!(cache.token().await?.secret(), "token-1");
/// # Ok(()) }
/// ```
pub struct TokenCache<P> {
    pub(crate) shared: Arc<Shared<P>>,
}

pub(crate) struct Shared<P> {
    /// `generation << 2 | phase`: the word the fast path compares. Alone on its cache line:
    /// every request of every thread reads it, and a neighbour written per request (the
    /// header's reference count, allocated next to the cache) would make each read a miss.
    state: Padded<AtomicU64>,
    current: ArcSwapOption<Entry>,
    /// Nanoseconds after `epoch` before which the stale path need not take the lock: a refresh
    /// is in flight (until its deadline) or backing off.
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
    /// The current token for [`TokenCache::subscribe`]: sent when one is installed, `None`
    /// when one is dropped.
    changes: watch::Sender<Option<CachedToken>>,
}

/// The slow-path bookkeeping, behind a mutex that is never held across an `.await`.
#[derive(Default)]
struct Control {
    inflight: Option<InFlight>,
    /// The id the next refresh gets: ids only grow.
    next_refresh: u64,
    /// The id of the refresh that produced the current token (or the last one, if it was
    /// dropped): an older refresh that finishes late never replaces it.
    installed_by: u64,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    timer: Option<AbortHandle>,
    /// The token last dropped by [`TokenCache::invalidate`], until a new one is installed: the
    /// refresh that replaces it must not take it back from a shared tier.
    dropped: Option<Arc<Entry>>,
}

/// What a refresh got: the token, when its fetch started, and from where.
pub(crate) struct Fetched {
    pub(crate) token: crate::Token,
    pub(crate) sent_at: Instant,
    pub(crate) tier: RefreshTier,
}

/// The refresh in flight: who it is, when it counts as abandoned, and where its outcome goes.
struct InFlight {
    id: u64,
    abandoned_at: Deadline,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// A deadline on both clocks: passed once either clock says so.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    tokio: Instant,
    coarse: Coarse,
}

impl Deadline {
    fn after(now: Now, delay: Duration) -> Deadline {
        let tokio = far_as_possible(now.tokio, delay);
        Deadline {
            tokio,
            coarse: now.coarse_deadline(tokio),
        }
    }

    fn passed(&self, now: Now) -> bool {
        now.tokio >= self.tokio || now.coarse >= self.coarse
    }
}

type Outcome = Result<CachedToken, Error>;

/// What [`TokenCache::join_or_start`] found.
enum Join<P: TokenSource> {
    /// A usable token.
    Ready(CachedToken),
    /// A refresh to wait for, and whether this caller started it (then it spawns it).
    Wait {
        outcome: watch::Receiver<Option<Outcome>>,
        abandoned_at: Deadline,
        started: Option<NewRefresh<P>>,
    },
}

/// A value alone on its cache line (128 bytes: two 64-byte lines, as adjacent-line prefetchers
/// fetch them in pairs).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How long past the fetch timeout a refresh still counts as in flight: its own timeout, set
/// at the same instant on its own runtime, should win when that runtime is driven.
const TAKEOVER_GRACE: Duration = Duration::from_secs(1);

/// How many refreshes in a row a waiter may find already unusable when it runs (see
/// [`TokenCache::token`]) before it gives up with an error rather than wait again.
const LATE_OUTCOMES: u32 = 3;

/// What a waiter does with the outcome of the refresh it waited for: hand it out, or (`None`)
/// look again because, polled late (a blocked thread, a starved runtime), it finds the token
/// already inside its safety margin. `late` counts those in a row, up to [`LATE_OUTCOMES`].
fn settle(outcome: Outcome, late: &mut u32) -> Option<Outcome> {
    match outcome {
        Ok(token) if !token.is_usable_now() => {
            *late += 1;
            (*late >= LATE_OUTCOMES).then(|| {
                Err(Error::transient(format!(
                    "{late} token refreshes in a row finished with a token that was inside its \
                     safety margin by the time this caller ran: the runtime is starved, or the \
                     source's tokens are too short-lived"
                )))
            })
        }
        outcome => Some(outcome),
    }
}

/// What a caller keeps to use a fresh token again without asking the cache: the state word it
/// was fresh under, and when it stops being fresh on the coarse clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Freshness {
    pub(crate) state: u64,
    pub(crate) until: Coarse,
}

impl Freshness {
    /// Never matches: the next request goes to the slow path.
    pub(crate) const NONE: Freshness = Freshness {
        state: u64::MAX,
        until: PASSED,
    };
}

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
            initial: None,
        }
    }

    pub(crate) fn with_config(source: P, config: Config) -> Self {
        TokenCache {
            shared: Arc::new(Shared {
                state: Padded(AtomicU64::new(PHASE_NONE)),
                current: ArcSwapOption::empty(),
                quiet_until: AtomicU64::new(0),
                epoch: sync::now(),
                control: Mutex::new(Control::default()),
                config,
                source,
                registry_id: OnceLock::new(),
                last_401_drop: AtomicU64::new(u64::MAX),
                changes: watch::Sender::new(None),
            }),
        }
    }

    /// A usable token: the cached one if it is fresh or stale (starting one background refresh
    /// when stale), else the result of the one in-flight refresh.
    ///
    /// Cancel-safe: dropping the future stops waiting but never cancels the refresh. A caller
    /// waits at most the fetch timeout (plus a second of grace) on its own runtime's clock; a
    /// refresh that has not finished by then is taken over by a new one.
    ///
    /// Never returns a token past its usable time: a caller that runs late (its thread blocked,
    /// its runtime starved) and finds the refresh's token already inside its safety margin waits
    /// for another, up to three times in a row.
    ///
    /// # Errors
    ///
    /// The refresh's error (see [`Error::kind`]); [`ErrorKind::Transient`](crate::ErrorKind)
    /// when no refresh finished in time, or three in a row finished with a token this caller
    /// found unusable; [`ErrorKind::Config`](crate::ErrorKind) outside a
    /// tokio runtime or on one built without its time driver.
    pub async fn token(&self) -> Result<CachedToken, Error> {
        if let Some((token, _)) = self.usable() {
            return Ok(token);
        }
        self.wait_for_refresh().await
    }

    #[cold]
    async fn wait_for_refresh(&self) -> Result<CachedToken, Error> {
        // Checked once per wait (`join_or_start` takes the runtime unchecked): the check builds
        // a timer, a clock read and the timer's setup.
        refresh::runtime()?;
        let limit = self.shared.config.fetch_timeout;
        let mut give_up = Deadline::after(Now::read(), limit.saturating_add(TAKEOVER_GRACE));
        let mut counted = false;
        let mut late = 0;
        loop {
            let (mut outcome, abandoned_at, started) = match self.join_or_start()? {
                Join::Ready(token) => return Ok(token),
                Join::Wait {
                    outcome,
                    abandoned_at,
                    started,
                } => (outcome, abandoned_at, started),
            };
            let own = started.is_some();
            if let Some(refresh) = started {
                refresh.run_or_spawn();
            }
            if !std::mem::replace(&mut counted, true) {
                metrics::waited(&self.shared.config);
            }
            let wait_until = abandoned_at.tokio.min(give_up.tokio);
            // A refresh this caller ran to its end has its outcome in already: no timer.
            let finished = outcome.borrow().clone();
            let waited = match finished {
                Some(finished) => Ok(Ok(finished)),
                None => tokio::time::timeout_at(wait_until, outcome.wait_for(Option::is_some))
                    .await
                    .map(|waited| waited.map(|ready| ready.clone().expect("waited for Some"))),
            };
            match waited {
                Ok(Ok(outcome)) => {
                    match settle(outcome, &mut late) {
                        Some(outcome) => return outcome,
                        // Look again, with a new deadline: the current token may be newer,
                        // else a new refresh starts.
                        None => {
                            give_up =
                                Deadline::after(Now::read(), limit.saturating_add(TAKEOVER_GRACE));
                            continue;
                        }
                    }
                }
                // Its task was dropped: the runtime it ran on is shutting down.
                Ok(Err(_)) if own => {
                    return Err(Error::transient(
                        "the token refresh task stopped before finishing (is the runtime \
                         shutting down?)",
                    ));
                }
                Ok(Err(_)) | Err(_) => {}
            }
            if give_up.passed(Now::read()) {
                return Err(Error::transient(format!(
                    "no token within {limit:?}: the refresh has not finished"
                )));
            }
            // The refresh we waited for was dropped or abandoned: look again, take over if need be.
        }
    }

    /// The single-flight step of [`wait_for_refresh`](Self::wait_for_refresh), under the lock:
    /// the current token if it is usable, else the refresh in flight to wait for, else a new
    /// one (taking over one past its abandon deadline), to spawn once the lock is released.
    fn join_or_start(&self) -> Result<Join<P>, Error> {
        let mut control = self.shared.lock();
        let now = Now::read();
        if let Some(entry) = self.shared.current.load_full().filter(|e| e.is_usable(now)) {
            return Ok(Join::Ready(CachedToken(entry)));
        }
        let started = match &control.inflight {
            Some(inflight) if !inflight.abandoned_at.passed(now) => None,
            _ => {
                if let Some(err) = control.blocked(now.tokio) {
                    return Err(err);
                }
                let reason = if self.shared.current.load().is_some() {
                    Reason::Expired
                } else {
                    Reason::NoToken
                };
                let runtime = refresh::current()?;
                Some(self.start_refresh(&mut control, now, reason, runtime))
            }
        };
        let inflight = control
            .inflight
            .as_ref()
            .expect("in flight or just started");
        Ok(Join::Wait {
            outcome: inflight.outcome.clone(),
            abandoned_at: inflight.abandoned_at,
            started,
        })
    }

    /// Drop `seen` if it is still the current token, typically after the server answered 401 to
    /// it, and start fetching a new one. Returns whether it was dropped.
    ///
    /// Comparing first means a storm of 401s for one token causes one refresh, and a 401 that
    /// arrives late, for a token already replaced, changes nothing. The token itself is
    /// compared, not its [`generation`](CachedToken::generation): a token from another cache
    /// never drops this cache's.
    pub fn invalidate(&self, seen: &CachedToken) -> bool {
        self.invalidate_if(|current| current.is(&seen.0))
    }

    /// Drop the current token if `is_rejected` says it is the one that was rejected.
    pub(crate) fn invalidate_if(&self, is_rejected: impl FnOnce(&Entry) -> bool) -> bool {
        let mut control = self.shared.lock();
        let current = self.shared.current.load();
        let Some(entry) = current.as_ref().filter(|e| is_rejected(e)) else {
            return false;
        };
        let generation = entry.generation;
        control.dropped = Some(Arc::clone(entry));
        self.shared.current.store(None);
        self.shared.state.store(PHASE_NONE, Ordering::Release);
        self.shared.changes.send_replace(None);
        // The timer stays: in background mode it may be the retry of a failed refresh, the
        // only thing that would fetch again without traffic. The next token replaces it.
        tracing::debug!(generation, "token invalidated");
        metrics::invalidated(&self.shared.config);
        let now = Now::read();
        if control.inflight.is_none() && control.blocked(now.tokio).is_none() {
            // The caller will want a new token right away; start on it.
            let refresh = refresh::runtime()
                .map(|runtime| self.start_refresh(&mut control, now, Reason::Invalidated, runtime));
            drop(control);
            if let Ok(refresh) = refresh {
                refresh.spawn();
            }
        }
        true
    }

    /// Put a token the program already has (saved by an earlier run, from a login, handed over
    /// by a sidecar) in the cache as the current one, so no request has to fetch before it is
    /// due. Its lifetime counts from now for [`Token::with_expires_in`](crate::Token::with_expires_in),
    /// or comes from [`with_expires_at`](crate::Token::with_expires_at) or the JWT `exp`; the
    /// refresh window and safety margin apply as to a fetched token, so a token that is about
    /// to expire starts a refresh on first use, or is not served at all.
    ///
    /// Fails, changing nothing, when the token cannot be sent (not an RFC 6750 `b64token`) or
    /// is already past its usable time (an [`InvalidResponse`](crate::ErrorKind::InvalidResponse)
    /// or [`Transient`](crate::ErrorKind::Transient) error): the first request then fetches as
    /// usual. A refresh already in flight still replaces it when it finishes. The phase timer
    /// (and, with [`background_refresh`](TokenCacheBuilder::background_refresh), the
    /// background refresh) starts with the token's first use.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::{Error, Token, TokenCache, source::from_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
    /// let cache = TokenCache::new(from_fn(|| async {
    ///     Err::<Token, _>(Error::transient("not called: the saved token is fresh"))
    /// }));
    /// cache.insert(Token::new("saved-token").with_expires_in(Duration::from_secs(3600)))?;
    /// assert_eq!(cache.token().await?.secret(), "saved-token");
    /// # Ok(()) }
    /// ```
    pub fn insert(&self, token: Token) -> Result<CachedToken, Error> {
        let now = Now::read();
        let mut entry = Entry::new(token, now.tokio, now, &self.shared.config)?;
        let mut control = self.shared.lock();
        control.generation += 1;
        entry.generation = control.generation;
        let entry = Arc::new(entry);
        self.shared.current.store(Some(Arc::clone(&entry)));
        // A token that expires is marked stale, not fresh: no phase timer runs yet (there may be
        // no runtime here). The first request takes the slow path, which reads the clocks,
        // serves the token and arms the timer on its runtime (or starts a refresh if the token
        // is stale). One that never expires needs no timer.
        let phase = if entry.refresh_at.is_some() {
            PHASE_STALE
        } else {
            PHASE_FRESH
        };
        self.shared
            .state
            .store(pack(entry.generation, phase), Ordering::Release);
        if let Some(timer) = control.timer.take() {
            timer.abort();
        }
        self.shared
            .changes
            .send_replace(Some(CachedToken(Arc::clone(&entry))));
        tracing::debug!(generation = entry.generation, "token inserted");
        Ok(CachedToken(entry))
    }

    /// The token source this cache fetches from.
    pub fn source(&self) -> &P {
        &self.shared.source
    }

    /// The current token if it is usable, without fetching or waiting.
    pub fn current(&self) -> Option<CachedToken> {
        let now = Now::read();
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

    /// The generation of the current token if `authorization` is its `Authorization` value:
    /// which token a request carried, read below the service that attached it (the gRPC
    /// layer's trailer watch). `None` for another token, or none.
    pub(crate) fn generation_of(&self, authorization: &HeaderValue) -> Option<u64> {
        let current = self.shared.current.load();
        let entry = current.as_ref()?;
        (entry.header() == authorization).then_some(entry.generation)
    }

    /// This cache behind a type-erased, strong handle.
    pub(crate) fn erased(&self) -> Arc<dyn handle::ErasedCache> {
        Arc::clone(&self.shared) as Arc<Shared<P>>
    }

    /// The header of the current token when `state` says it is fresh and the coarse clock
    /// agrees: one lock-free load and a clock read. This is the path of a service that has not
    /// seen the current token yet (typically a clone made per request from a template that
    /// never sends).
    #[inline]
    pub(crate) fn fresh_header(&self, state: u64) -> Option<(HeaderValue, Freshness)> {
        if state & 3 != PHASE_FRESH {
            return None;
        }
        let current = self.shared.current.load();
        match &*current {
            Some(entry)
                if pack(entry.generation, PHASE_FRESH) == state
                    && coarse_now() < entry.fresh_until_coarse =>
            {
                let freshness = Freshness {
                    state,
                    until: entry.fresh_until_coarse,
                };
                Some((entry.header().clone(), freshness))
            }
            _ => None,
        }
    }

    /// The current token if it is usable now, starting a background refresh if it is stale,
    /// with what to remember for the fast path ([`Freshness::NONE`] when it is not fresh, so
    /// the next request comes back here and reads the clocks).
    pub(crate) fn usable(&self) -> Option<(CachedToken, Freshness)> {
        let state = self.state();
        let entry = self.shared.current.load_full()?;
        // The clocks, not the published phase, decide here: a timer that fires late (or never)
        // must not delay the refresh of callers that reach the slow path.
        let now = Now::read();
        if !entry.is_usable(now) {
            return None;
        }
        if entry.is_stale(now) {
            metrics::served_stale(&self.shared.config, &entry);
            self.refresh_stale(now, &entry);
            return Some((CachedToken(entry), Freshness::NONE));
        }
        let fresh = pack(entry.generation, PHASE_FRESH);
        if state == pack(entry.generation, PHASE_STALE) {
            // Fresh by both clocks, yet marked stale: its timer was lost with the runtime that
            // ran it. Without a new one, every request would come back here for the rest of
            // the token's life.
            self.rearm(&entry);
        }
        let freshness = if state == fresh {
            Freshness {
                state,
                until: entry.fresh_until_coarse,
            }
        } else {
            Freshness::NONE
        };
        Some((CachedToken(entry), freshness))
    }

    /// Mark `entry` fresh again, with a new phase timer on this runtime, if it is still the
    /// current token and still marked stale. Outside a runtime nothing changes.
    #[cold]
    fn rearm(&self, entry: &Arc<Entry>) {
        let (Ok(_), Some(refresh_at)) = (sync::Runtime::try_current(), entry.refresh_at) else {
            return;
        };
        let mut control = self.shared.lock();
        let still_current = self
            .shared
            .current
            .load()
            .as_ref()
            .is_some_and(|e| e.is(entry));
        let stale = pack(entry.generation, PHASE_STALE);
        let fresh = pack(entry.generation, PHASE_FRESH);
        if still_current
            && self
                .shared
                .state
                .compare_exchange(stale, fresh, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // Under the lock: no refresh can complete in between. The timer flips it back at
            // `refresh_at`, or at once if that has passed meanwhile.
            self.shared
                .schedule(&mut control, refresh_at, entry.generation);
            tracing::debug!(generation = entry.generation, "phase timer re-armed");
        }
    }

    /// Start the background refresh of `entry`, found stale, unless it is no longer the
    /// current token: a refresh that completed between reading `entry` and taking the lock
    /// has already replaced it, and must not be followed by another.
    fn refresh_stale(&self, now: Now, entry: &Entry) {
        self.refresh_in_background(now, Reason::Stale, |current| {
            current.is_some_and(|current| current.is(entry))
        });
    }

    /// Start a refresh unless one is in flight, a failure is being backed off, or `wanted`,
    /// asked under the lock about the current token, says no.
    fn refresh_in_background(
        &self,
        now: Now,
        reason: Reason,
        wanted: impl FnOnce(Option<&Entry>) -> bool,
    ) {
        if self.shared.nanos(now.tokio) < self.shared.quiet_until.load(Ordering::Relaxed) {
            return;
        }
        let mut control = self.shared.lock();
        let idle = match &control.inflight {
            None => true,
            Some(inflight) => inflight.abandoned_at.passed(now),
        };
        if idle
            && control.blocked(now.tokio).is_none()
            && wanted(self.shared.current.load().as_deref())
        {
            let refresh = refresh::runtime()
                .map(|runtime| self.start_refresh(&mut control, now, reason, runtime));
            drop(control);
            match refresh {
                Ok(refresh) => refresh.spawn(),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot start a background token refresh")
                }
            }
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
    /// means "that token is still current, and no timer has marked it stale".
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

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_timer_lost_with_its_runtime_fails_safe() {
        let cache = TokenCache::new(StaticToken::new(
            Token::new("abc").with_expires_in(Duration::from_secs(3600)),
        ));
        let first = runtime();
        first.block_on(cache.token()).unwrap();
        assert_eq!(
            phase(&cache),
            PHASE_STALE,
            "no timer until the token is used again"
        );
        first.block_on(cache.token()).unwrap(); // the slow path arms it
        assert_eq!(phase(&cache), PHASE_FRESH);
        // The runtime that ran the refresh and owns the phase timer goes away (a test runtime,
        // a runtime per request batch...): the fast path must stop trusting the token.
        drop(first);
        assert_eq!(phase(&cache), PHASE_STALE);

        // Another runtime carries on: the slow path reads the clock and still serves the token.
        let second = runtime();
        let token = second.block_on(cache.token()).unwrap();
        assert_eq!(token.secret(), "abc");
        // ...and re-arms the timer there, so the fast path is back.
        assert_eq!(phase(&cache), PHASE_FRESH);
        drop(second);
        assert_eq!(phase(&cache), PHASE_STALE);
    }

    #[test]
    fn threads_use_their_own_copy_of_the_header() {
        let cache = TokenCache::new(StaticToken::new(
            Token::new("abc").with_expires_in(Duration::from_secs(3600)),
        ));
        let rt = runtime();
        rt.block_on(cache.token()).unwrap();
        let copies: Vec<(usize, Vec<u8>)> = (0..2)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let token = cache.current().unwrap();
                    let header = token.header_value();
                    (
                        header.as_bytes().as_ptr() as usize,
                        header.as_bytes().to_vec(),
                    )
                })
                .join()
                .unwrap()
            })
            .collect();
        assert_ne!(copies[0].0, copies[1].0, "two threads, two allocations");
        assert_eq!(copies[0].1, b"Bearer abc");
        assert_eq!(copies[1].1, b"Bearer abc");
    }

    /// Found by `benches/refresh_under_load.rs` (one run in ten fetched three tokens where two
    /// were due): a request that read the stale token just before the background refresh
    /// stored the next one then found no refresh in flight and started another. The refresh
    /// is started only for the token that was read, if it is still the current one.
    #[tokio::test(start_paused = true)]
    async fn a_stale_read_overtaken_by_the_refresh_starts_no_other() {
        use std::sync::atomic::AtomicUsize;
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let cache = TokenCache::builder(crate::source::from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, Error>(
                    Token::new(format!("t{n}")).with_expires_in(Duration::from_secs(100)),
                )
            }
        }))
        .jitter(Duration::ZERO)
        .build();
        cache.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        // A request reads the token: stale. Before it asks for a refresh, one runs to the end.
        let read = cache.shared.current.load_full().unwrap();
        let now = Now::read();
        assert!(read.is_stale(now) && read.is_usable(now));
        cache.refresh_in_background(now, Reason::Stale, |_| true);
        while cache.current().unwrap().secret() == "t0" {
            tokio::task::yield_now().await;
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // Now the request goes on with what it read.
        cache.refresh_stale(Now::read(), &read);
        tokio::task::yield_now().await;
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "no refresh of a replaced token"
        );
        // The current token's own stale read still starts its refresh.
        tokio::time::advance(Duration::from_secs(60)).await;
        let current = cache.shared.current.load_full().unwrap();
        cache.refresh_stale(Now::read(), &current);
        while cache.current().unwrap().secret() == "t1" {
            tokio::task::yield_now().await;
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_a_token_does_not_mark_the_new_one_stale() {
        let cache = TokenCache::new(StaticToken::new(
            Token::new("abc").with_expires_in(Duration::from_secs(3600)),
        ));
        let first = cache.token().await.unwrap();
        cache.invalidate(&first);
        let second = cache.token().await.unwrap();
        assert_eq!(
            cache.token().await.unwrap().generation(),
            second.generation()
        ); // arms its timer
        tokio::task::yield_now().await; // let the aborted timer be dropped
        assert_eq!(cache.state(), pack(second.generation(), PHASE_FRESH));
    }
}
