//! One refresh: started under the control lock, run in its own task, and recorded when it
//! finishes; and the timer that marks a token stale (and, in background mode, refreshes it).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::clock::Now;
use super::entry::{Entry, PHASE_FRESH, PHASE_STALE, pack, random_up_to};
use super::event::RefreshReason as Reason;
use super::metrics;
use super::sync::{self, Runtime};
use super::{
    CachedToken, Control, Deadline, Fetched, InFlight, Outcome, RefreshEvent, Shared,
    TAKEOVER_GRACE, TokenCache, far_as_possible,
};
use crate::{Error, ErrorKind, MAX_RETRY_AFTER, TokenSource};

/// The current tokio runtime, unchecked: for a caller that has checked it with [`runtime`]
/// already (a thread-local read, where the check builds a timer).
pub(super) fn current() -> Result<Runtime, Error> {
    Runtime::try_current().map_err(|_| {
        Error::config("tower-bearer needs a tokio runtime to fetch tokens, and none is running")
    })
}

/// The current tokio runtime, checked to have what the cache needs: fetch timeouts, waits and
/// timers need its time driver. A configuration error rather than a panic later.
pub(super) fn runtime() -> Result<Runtime, Error> {
    let runtime = current()?;
    // tokio offers no way to ask; building a timer (not polling it) on such a runtime panics
    // at once, with nothing held.
    match std::panic::catch_unwind(|| drop(sync::sleep(Duration::ZERO))) {
        Ok(()) => Ok(runtime),
        Err(_) => Err(Error::config(
            "tower-bearer needs tokio's time driver: build the runtime with `enable_time()` \
             (or `enable_all()`)",
        )),
    }
}

impl<P: TokenSource> TokenCache<P> {
    /// Mark a refresh in flight, to run on `runtime` (checked by [`runtime`]). The caller spawns
    /// it once it has released the lock. A refresh still marked in flight is abandoned: this one
    /// takes over ([`Reason::TakeOver`]).
    pub(super) fn start_refresh(
        &self,
        control: &mut Control,
        now: Now,
        mut reason: Reason,
        runtime: Runtime,
    ) -> NewRefresh<P> {
        if let Some(abandoned) = control.inflight.take() {
            reason = Reason::TakeOver;
            tracing::warn!(
                refresh = abandoned.id,
                timeout = ?self.shared.config.fetch_timeout,
                "a token refresh has not finished within the fetch timeout (its runtime is no \
                 longer driven, or its source blocks): starting another"
            );
        }
        control.next_refresh += 1;
        let id = control.next_refresh;
        let (tx, rx) = watch::channel(None);
        let abandoned_at = Deadline::after(
            now,
            self.shared
                .config
                .fetch_timeout
                .saturating_add(TAKEOVER_GRACE),
        );
        control.inflight = Some(InFlight {
            id,
            abandoned_at,
            outcome: rx,
        });
        // Stale-path callers need not take the lock until the refresh should have finished.
        let quiet = self.shared.nanos(abandoned_at.tokio);
        self.shared.quiet_until.store(quiet, Ordering::Relaxed);
        // What this refresh replaces: the current token, or the one a 401 just dropped.
        let previous = self
            .shared
            .current
            .load_full()
            .or_else(|| control.dropped.clone());
        let guard = RefreshGuard {
            shared: Arc::clone(&self.shared),
            id,
            tx,
            previous,
        };
        NewRefresh {
            runtime,
            guard,
            reason,
        }
    }
}

/// A refresh marked in flight, to spawn once the control lock is released: a runtime that has
/// shut down drops the task inside `spawn`, and the guard's cleanup then takes the lock.
pub(super) struct NewRefresh<P: TokenSource> {
    runtime: Runtime,
    guard: RefreshGuard<P>,
    reason: Reason,
}

impl<P: TokenSource> NewRefresh<P> {
    pub(super) fn spawn(self) {
        let (runtime, task) = self.task();
        runtime.spawn(task);
    }

    /// Run the refresh on this thread as far as it goes without waiting, and spawn the rest,
    /// if any: for a caller that is about to wait for it anyway (no usable token). A source
    /// that answers at once (a static token, a token file read, a fleet's shared token already
    /// in memory) then costs no task, no scheduling and no wake-up: a tenth of filling a keyed
    /// cache's new slot.
    ///
    /// Nothing changes for the refresh: it is the same future, detached as soon as it waits
    /// (a waiter that gives up cancels nothing), under its own span, with its panics caught
    /// inside. It is first polled with a waker that does nothing; whatever it waits on sees the
    /// task's waker on the task's first poll, which the spawn makes at once. (Under loom the
    /// task is spawned: running it first is one of the schedules the model explores.)
    pub(super) fn run_or_spawn(self) {
        #[cfg(not(loom))]
        {
            let (runtime, task) = self.task();
            let mut task = Box::pin(task);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if task.as_mut().poll(&mut cx).is_pending() {
                runtime.spawn(task);
            }
        }
        #[cfg(loom)]
        self.spawn();
    }

    /// The refresh's future, under a root span that follows from the caller's: a detached
    /// refresh must not keep the request's span (and its trace) open until the token endpoint
    /// answers.
    ///
    /// The span's outcome is recorded when the refresh finishes: `outcome` (`ok` or `error`),
    /// `error.type` (the error's kind, as OpenTelemetry names the field), the new token's
    /// `generation`, `expires_in_s` and the `tier` it came from. Never the token.
    fn task(self) -> (Runtime, impl Future<Output = ()> + Send + 'static) {
        let span = tracing::info_span!(
            parent: None,
            "token_refresh",
            otel.kind = "internal",
            reason = self.reason.as_str(),
            refresh = self.guard.id,
            outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
            generation = tracing::field::Empty,
            expires_in_s = tracing::field::Empty,
            tier = tracing::field::Empty,
        );
        span.follows_from(tracing::Span::current());
        (self.runtime, self.guard.run(self.reason).instrument(span))
    }
}

/// Owns refresh `id`. If the task is dropped before it finishes (the runtime shut down), the
/// drop still clears the in-flight marker, if it is still this refresh's, so the cache is never
/// stuck.
struct RefreshGuard<P: TokenSource> {
    shared: Arc<Shared<P>>,
    id: u64,
    tx: watch::Sender<Option<Outcome>>,
    previous: Option<Arc<Entry>>,
}

impl<P: TokenSource> RefreshGuard<P> {
    async fn run(self, reason: Reason) {
        let shared = Arc::clone(&self.shared);
        // The fetch's own timeout starts now, not when the task was spawned: a runtime slow to
        // poll it must not make a healthy refresh look abandoned. (A task never polled keeps the
        // deadline set at spawn.)
        shared.running(self.id);
        let started = sync::now();
        tracing::debug!(reason = reason.as_str(), "token refresh started");
        let timeout = shared.config.fetch_timeout;
        let previous = self.previous.as_deref();
        // `fetch()` is called inside the caught future: a source can panic before it returns
        // its future as well as while it runs.
        let fetched =
            AssertUnwindSafe(async { sync::timeout(timeout, shared.fetch(previous)).await })
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
        let tier = result.as_ref().ok().map(|fetched| fetched.tier);
        let outcome = shared.complete(self.id, started, result);
        let took = sync::now().saturating_duration_since(started);
        let tier = tier.filter(|_| outcome.is_ok());
        record_outcome(&outcome, tier);
        metrics::refreshed(&shared.config, reason, &outcome, tier, took);
        metrics::expiry(&shared.config, shared.current.load().as_deref());
        // The hook runs before waiters are woken: a caller that got the token can count on
        // the hook having seen its refresh.
        if let Some(hook) = &shared.config.on_refresh {
            let event = RefreshEvent {
                outcome: &outcome,
                reason,
                took,
                tier,
            };
            // A panicking hook is the hook's failure, not the refresh's: the token stays
            // installed and the waiters get it.
            if std::panic::catch_unwind(AssertUnwindSafe(|| (hook.0)(&event))).is_err() {
                tracing::error!(
                    "the on_refresh hook panicked (its message went to the panic hook); the \
                     refresh's outcome stands"
                );
            }
        }
        let _ = self.tx.send(Some(outcome));
    }
}

/// Fill in the `token_refresh` span's outcome fields (see [`NewRefresh::spawn`]).
fn record_outcome(outcome: &Outcome, tier: Option<super::RefreshTier>) {
    let span = tracing::Span::current();
    match outcome {
        Ok(token) => {
            span.record("outcome", "ok");
            span.record("generation", token.generation());
            if let Some(expires_in) = token.expires_in() {
                span.record("expires_in_s", expires_in.as_secs());
            }
            if let Some(tier) = tier {
                span.record("tier", tier.as_str());
            }
        }
        Err(err) => {
            span.record("outcome", "error");
            span.record("error.type", err.kind().to_string());
        }
    }
}

impl<P: TokenSource> Drop for RefreshGuard<P> {
    fn drop(&mut self) {
        let mut control = self.shared.lock();
        if control.inflight.as_ref().is_some_and(|f| f.id == self.id) {
            control.inflight = None;
            self.shared.quiet_until.store(0, Ordering::Relaxed);
        }
    }
}

impl<P: TokenSource> Shared<P> {
    /// Get a token: through the fleet tier when there is one, else from the source.
    async fn fetch(&self, previous: Option<&Entry>) -> Result<Fetched, Error> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.config.fleet {
            let previous = previous.map(|entry| entry.token.secret());
            return fleet.fetch(&self.source, previous, &self.config).await;
        }
        let _ = previous;
        let sent_at = sync::now();
        let token = self.source.fetch().await?;
        Ok(Fetched {
            token,
            sent_at,
            tier: super::RefreshTier::Source,
        })
    }

    /// Refresh `id` has started running: count its abandon deadline from now.
    fn running(&self, id: u64) {
        let mut control = self.lock();
        if let Some(inflight) = control.inflight.as_mut().filter(|f| f.id == id) {
            let grace = self.config.fetch_timeout.saturating_add(TAKEOVER_GRACE);
            inflight.abandoned_at = Deadline::after(Now::read(), grace);
            let quiet = self.nanos(inflight.abandoned_at.tokio);
            self.quiet_until.store(quiet, Ordering::Relaxed);
        }
    }

    /// Record the result of refresh `id`: install the token, or remember the failure.
    ///
    /// A refresh that was abandoned (another took over) installs its token only if no newer
    /// refresh has installed one, and its failure changes nothing: the refresh that took over
    /// decides.
    ///
    /// `started` is when the refresh began; a token's lifetime counts from its own `sent_at`
    /// (earlier for a token another process fetched).
    fn complete(
        self: &Arc<Self>,
        id: u64,
        started: Instant,
        result: Result<Fetched, Error>,
    ) -> Outcome {
        let now = Now::read();
        let tier = result.as_ref().ok().map(|fetched| fetched.tier);
        let entry = result
            .and_then(|fetched| Entry::new(fetched.token, fetched.sent_at, now, &self.config));
        let mut control = self.lock();
        let current = control.inflight.as_ref().is_some_and(|f| f.id == id);
        if current {
            control.inflight = None;
        }
        match entry {
            _ if !current && id < control.installed_by => {
                tracing::info!(
                    refresh = id,
                    "an abandoned token refresh finished after a newer one; its outcome is dropped"
                );
                self.current
                    .load_full()
                    .filter(|e| e.is_usable(now))
                    .map(CachedToken)
                    .ok_or_else(|| {
                        Error::transient("an abandoned token refresh finished after a newer one")
                    })
            }
            Ok(mut entry) => {
                control.generation += 1;
                control.installed_by = id;
                // A token, even from a refresh that finished late, shows the credential works:
                // a failure remembered since (from the refresh that took over) stands down.
                control.failures = 0;
                control.retry_at = None;
                control.last_error = None;
                control.dropped = None;
                let quiet = match &control.inflight {
                    Some(inflight) => self.nanos(inflight.abandoned_at.tokio),
                    None => 0,
                };
                self.quiet_until.store(quiet, Ordering::Relaxed);
                entry.generation = control.generation;
                let entry = Arc::new(entry);
                self.current.store(Some(Arc::clone(&entry)));
                self.changes
                    .send_replace(Some(CachedToken(Arc::clone(&entry))));
                // A token that expires is published fresh only with a timer to end that. In
                // background mode the timer is armed now (it refreshes without traffic; for a
                // token already stale it fires at once, as a request on the stale path would).
                // Otherwise the token is published stale, as an inserted one is, and its first
                // use on the slow path arms the timer and marks it fresh (`usable`): a token
                // fetched for one request only (a keyed slot used once) costs no timer task.
                let fresh = !entry.is_stale(now)
                    && (entry.refresh_at.is_none() || self.config.background_refresh);
                let phase = if fresh { PHASE_FRESH } else { PHASE_STALE };
                self.state
                    .store(pack(entry.generation, phase), Ordering::Release);
                match entry.refresh_at {
                    Some(at) if self.config.background_refresh => {
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
                    expires_in = ?entry.expires_at.map(|at| at.saturating_duration_since(now.tokio)),
                    took = ?now.tokio.saturating_duration_since(started),
                    tier = tier.map_or("source", super::RefreshTier::as_str),
                    "token refreshed"
                );
                Ok(CachedToken(entry))
            }
            Err(err) if !current => {
                tracing::info!(
                    refresh = id,
                    error = %err,
                    "an abandoned token refresh failed; the one that took over decides"
                );
                Err(err)
            }
            Err(err) => {
                control.failures = control.failures.saturating_add(1);
                let delay = self.retry_delay(&err, control.failures);
                let retry_at = far_as_possible(now.tokio, delay);
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

    /// How long to wait after the `failures`th consecutive failure, `err`: jittered exponential
    /// backoff for transient errors, or the server's `Retry-After` when that is longer (up to
    /// [`MAX_RETRY_AFTER`] or the backoff's maximum, whichever is longer); the cooldown for
    /// rejections.
    fn retry_delay(&self, err: &Error, failures: u32) -> Duration {
        match err.kind() {
            ErrorKind::Transient | ErrorKind::Panicked => {
                let backoff = self.config.backoff.delay(failures);
                let jittered = backoff / 2 + random_up_to(backoff / 2);
                let cap = MAX_RETRY_AFTER.max(self.config.backoff.max);
                err.retry_after()
                    .map_or(jittered, |after| after.min(cap).max(jittered))
            }
            _ => self.config.rejected_cooldown,
        }
    }

    /// At `at`, flip token `generation` from fresh to stale and, in background mode, refresh if
    /// that token is still current and stale (or there is none: a retry after a failure).
    pub(super) fn schedule(self: &Arc<Self>, control: &mut Control, at: Instant, generation: u64) {
        if let Some(timer) = control.timer.take() {
            timer.abort();
        }
        let stale_on_drop = MarkStaleOnDrop {
            shared: Arc::downgrade(self),
            generation,
        };
        let Ok(runtime) = Runtime::try_current() else {
            return; // `stale_on_drop` hands the token to the clock-reading slow path now
        };
        let task = runtime.spawn(async move {
            sync::sleep_until(at).await;
            let shared = stale_on_drop.shared.clone();
            drop(stale_on_drop);
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if !shared.config.background_refresh {
                return;
            }
            if let Some(gate) = shared.config.background_gate
                && !gate(&shared.source)
            {
                tracing::debug!("no background refresh: the cache's owner says it is idle");
                return;
            }
            // Only for the token this timer was set for, once it is stale (or for no token: the
            // retry of a failed refresh). Asked under the lock: a refresh that installs a newer
            // token while this task runs must not be followed by a needless one.
            let now = Now::read();
            TokenCache { shared }.refresh_in_background(now, Reason::Timer, |current| {
                current.is_none_or(|e| e.generation == generation && e.is_stale(now))
            });
        });
        control.timer = Some(task.abort_handle());
    }
}

/// Flips token `generation` from fresh to stale when dropped: when its timer fires, and also
/// when the timer never will (its runtime shut down). Either way the fast path stops trusting
/// the token and the slow path, which reads the clocks, takes over: a lost timer fails safe.
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
