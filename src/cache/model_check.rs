//! Model checks of the cache's state machine with [loom](https://docs.rs/loom): every
//! interleaving (up to `LOOM_MAX_PREEMPTIONS` preemptions, 3 unless set) of a few callers, a
//! refresh, a phase timer, an invalidation and a clock that passes the abandon deadline.
//!
//! The code under test is the cache's own: `join_or_start` (the single-flight step of
//! [`TokenCache::token`]) and `settle` (what its waiters do with the outcome they wake to),
//! `usable` and `fresh_header` (the slow and the lock-free paths), [`TokenCache::invalidate`],
//! the refresh task (`RefreshGuard::run`: `running`, the fetch, `complete`, the hook, the
//! wake-up), the phase timer (`schedule`, `MarkStaleOnDrop`; in background mode, its refresh
//! and the retry of a failed one) and the real [`BearerAuth`](crate::BearerAuth) fast path. Only the primitives beneath them are
//! loom's (see `sync`): spawned tasks wait in the model's queue until a thread runs them
//! (`model::run_one`, `run_all`), and `model::advance` moves the clock.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --no-default-features --lib model_check
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use loom::sync::atomic::AtomicBool;
use loom::thread;
use tower::Service as _;

use super::sync::model;
use super::*;
use crate::{BearerAuth, Token};

/// A source that counts its fetches and names each token after its number: `t0`, `t1`, ...;
/// while `failing`, it fails (transient) instead.
struct Counter {
    fetches: StdAtomicUsize,
    lifetime: Duration,
    failing: StdAtomicBool,
}

impl TokenSource for Counter {
    async fn fetch(&self) -> Result<Token, Error> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::transient("the model's token endpoint is down"));
        }
        Ok(Token::new(format!("t{n}")).with_expires_in(self.lifetime))
    }
}

/// Which secret each generation was installed with, as the refresh hook saw it.
type Installed = Arc<StdMutex<HashMap<u64, String>>>;

/// The fetch timeout of every model cache: the clock passes the abandon deadline when it moves
/// `ABANDON` forward.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const ABANDON: Duration = Duration::from_secs(5 + 1 + 1);

fn cache_with(lifetime: Duration) -> (TokenCache<Counter>, Installed) {
    configured(lifetime, |builder| builder)
}

/// [`cache_with`], with more settings.
fn configured(
    lifetime: Duration,
    configure: impl FnOnce(TokenCacheBuilder<Counter>) -> TokenCacheBuilder<Counter>,
) -> (TokenCache<Counter>, Installed) {
    let installed = Installed::default();
    let record = Arc::clone(&installed);
    let builder = TokenCache::builder(Counter {
        fetches: StdAtomicUsize::new(0),
        lifetime,
        failing: StdAtomicBool::new(false),
    })
    .jitter(Duration::ZERO)
    .fetch_timeout(FETCH_TIMEOUT)
    .on_refresh(move |event| {
        if let Ok(token) = event.outcome {
            let mut installed = record.lock().unwrap();
            let secret = installed
                .entry(token.generation())
                .or_insert_with(|| token.secret().to_owned());
            assert_eq!(secret, token.secret(), "one generation, one token");
        }
    });
    (configure(builder).build(), installed)
}

/// A token that stays fresh for the whole model run.
fn cache() -> (TokenCache<Counter>, Installed) {
    cache_with(Duration::from_secs(3600))
}

fn fetches(cache: &TokenCache<Counter>) -> usize {
    cache.source().fetches.load(Ordering::SeqCst)
}

/// `body` on a thread of its own, with a clone of the cache.
fn spawn_with<T: 'static>(
    cache: &TokenCache<Counter>,
    body: impl FnOnce(TokenCache<Counter>) -> T + 'static,
) -> thread::JoinHandle<T> {
    let cache = cache.clone();
    thread::spawn(move || body(cache))
}

/// A caller of `token()` on a thread of its own, which then runs every task; joined, it gives
/// what it got.
fn token_caller(cache: &TokenCache<Counter>) -> thread::JoinHandle<Got> {
    spawn_with(cache, |cache| {
        let got = call_token(&cache);
        model::run_all();
        got
    })
}

/// Two callers on threads of their own, each running `caller` on the cache; joined.
fn two_callers(
    cache: &TokenCache<Counter>,
    caller: impl Fn(TokenCache<Counter>) + Clone + 'static,
) {
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let caller = caller.clone();
            spawn_with(cache, caller)
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
}

/// Install a first token the way a caller does, running its refresh but not its phase timer,
/// which stays queued and fires whenever the model runs it.
fn install_first(cache: &TokenCache<Counter>) -> CachedToken {
    let Ok(Join::Wait {
        outcome,
        started: Some(refresh),
        ..
    }) = cache.join_or_start()
    else {
        panic!("an empty cache starts a refresh");
    };
    refresh.spawn();
    assert!(model::run_one(), "the refresh task");
    let token = outcome.borrow().clone().expect("refreshed");
    token.expect("a token")
}

/// What a caller of `token()` ends with once every task has run: the token it got at once, or
/// the outcome of the refresh it waited for.
enum Got {
    Ready(CachedToken),
    Waiting(watch::Receiver<Option<Outcome>>),
}

impl Got {
    fn token(&self) -> CachedToken {
        match self {
            Got::Ready(token) => token.clone(),
            Got::Waiting(outcome) => outcome
                .borrow()
                .clone()
                .expect("the refresh it waited for finished")
                .expect("a token"),
        }
    }
}

/// `token()` without its `.await`: the single-flight step, then spawning what it started.
fn call_token(cache: &TokenCache<Counter>) -> Got {
    match cache.join_or_start().expect("no failure in the model") {
        Join::Ready(token) => Got::Ready(token),
        Join::Wait {
            outcome, started, ..
        } => {
            if let Some(refresh) = started {
                refresh.spawn();
            }
            Got::Waiting(outcome)
        }
    }
}

/// The secrets of the headers an inner service received.
type Seen = Arc<StdMutex<Vec<String>>>;

/// An inner service that records the `Authorization` it receives and answers `status`.
#[derive(Clone)]
struct Recorder {
    seen: Seen,
    status: StatusCode,
}

impl tower::Service<Request<()>> for Recorder {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
            let secret = value.to_str().unwrap().trim_start_matches("Bearer ");
            self.seen.lock().unwrap().push(secret.to_owned());
        }
        let mut response = Response::new(());
        *response.status_mut() = self.status;
        std::future::ready(Ok(response))
    }
}

/// A real `BearerAuth` over a [`Recorder`], and what it records.
fn service(
    cache: &TokenCache<Counter>,
    status: StatusCode,
) -> (BearerAuth<Recorder, Counter>, Seen) {
    let seen = Seen::default();
    let inner = Recorder {
        seen: Arc::clone(&seen),
        status,
    };
    (BearerAuth::new(inner, cache.clone()), seen)
}

/// One request through the service: the secret it carried, or `None` if it is waiting for a
/// token (its future, never polled here, would wait for the refresh). A request that was sent
/// has its response future run to the end, 401 handling included.
fn send(service: &mut BearerAuth<Recorder, Counter>, seen: &Seen) -> Option<String> {
    let before = seen.lock().unwrap().len();
    let mut response = std::pin::pin!(service.call(Request::new(())));
    let sent = seen.lock().unwrap().len() > before;
    if sent {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(response.as_mut().poll(&mut cx).is_ready());
    }
    let seen = seen.lock().unwrap();
    (seen.len() > before).then(|| seen[before].clone())
}

/// The state word names the current token, or no token when there is none.
fn assert_state_names_current<P>(cache: &TokenCache<P>) {
    let state = cache.state();
    match &*cache.shared.current.load() {
        Some(entry) => {
            assert_eq!(
                state >> 2,
                entry.generation,
                "the word names the current token"
            );
            assert_ne!(state & 3, PHASE_NONE);
        }
        None => assert_eq!(state, PHASE_NONE),
    }
}

/// Run `f` under every interleaving loom explores, and say how many there were.
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    let executions = Arc::new(StdAtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model::reset_clock();
        f();
        model::drop_all();
    });
    eprintln!(
        "{} executions (at most {:?} preemptions each)",
        executions.load(Ordering::Relaxed),
        builder.preemption_bound
    );
}

/// Single flight: three callers find no token; one refresh runs and all three get its token,
/// even when one of them stops waiting (a cancelled request) before it finishes.
#[test]
fn three_callers_without_a_token_cause_one_fetch() {
    check(|| {
        let (cache, _) = cache();
        let callers: Vec<_> = (0..3)
            .map(|i| {
                spawn_with(&cache, move |cache| {
                    let got = call_token(&cache);
                    if i == 2 {
                        drop(got); // this caller gives up
                        model::run_all();
                        return None;
                    }
                    model::run_all();
                    Some(got)
                })
            })
            .collect();
        let got: Vec<_> = callers
            .into_iter()
            .filter_map(|caller| caller.join().unwrap())
            .collect();
        model::run_all();
        assert_eq!(fetches(&cache), 1, "one refresh for all callers");
        for got in &got {
            assert_eq!(got.token().secret(), "t0");
        }
        assert_state_names_current(&cache);
    });
}

/// A storm of 401s for one token while a caller reads it: one drop, one refresh, and the word
/// names the new token.
#[test]
fn concurrent_invalidations_of_one_token_drop_it_once_and_refresh_once() {
    check(|| {
        let (cache, installed) = cache();
        let first = install_first(&cache);
        let dropped = Arc::new(StdAtomicUsize::new(0));
        let invalidators: Vec<_> = (0..2)
            .map(|_| {
                let (cache, first, dropped) = (cache.clone(), first.clone(), dropped.clone());
                thread::spawn(move || {
                    if cache.invalidate(&first) {
                        dropped.fetch_add(1, Ordering::SeqCst);
                    }
                    model::run_all();
                })
            })
            .collect();
        let reader = spawn_with(&cache, move |cache| {
            let state = cache.state();
            if let Some((header, freshness)) = cache.fresh_header(state) {
                return Some((state, freshness, header));
            }
            None
        });
        for invalidator in invalidators {
            invalidator.join().unwrap();
        }
        let read = reader.join().unwrap();
        model::run_all();
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "dropped once");
        assert_eq!(fetches(&cache), 2, "one refresh after the drop");
        let current = cache.current().expect("the new token");
        assert_eq!(current.secret(), "t1");
        assert_state_names_current(&cache);
        // The lock-free path hands out the header of the token its word names, and nothing else.
        if let Some((state, freshness, header)) = read {
            assert_eq!(freshness.state, state);
            let secret = installed.lock().unwrap()[&(state >> 2)].clone();
            assert_eq!(header.to_str().unwrap(), format!("Bearer {secret}"));
        }
    });
}

/// After an invalidation has returned, no request carries the dropped token: the fast path
/// stops trusting the word it remembered, and the slow path finds the new token or waits.
#[test]
fn no_request_carries_a_token_after_its_invalidation() {
    check(|| {
        let (cache, _) = cache();
        let first = install_first(&cache);
        let invalidated = Arc::new(AtomicBool::new(false));
        let (mut service, seen) = service(&cache, StatusCode::OK);
        // Warm: the service remembers the token and the word it is fresh under.
        assert_eq!(send(&mut service, &seen).as_deref(), Some("t0"));
        let caller = {
            let invalidated = invalidated.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let after = invalidated.load(Ordering::Acquire);
                    let sent = send(&mut service, &seen);
                    if after {
                        assert_ne!(sent.as_deref(), Some("t0"), "sent a dropped token");
                    }
                }
            })
        };
        let invalidator = {
            let (cache, invalidated) = (cache.clone(), invalidated.clone());
            thread::spawn(move || {
                assert!(cache.invalidate(&first));
                invalidated.store(true, Ordering::Release);
                model::run_all();
            })
        };
        caller.join().unwrap();
        invalidator.join().unwrap();
        model::run_all();
        assert_state_names_current(&cache);
    });
}

/// Takeover: a refresh passes its abandon deadline, a caller starts another, and whichever
/// finishes first, the token of the newer one is the one that stays. Its waiters get it.
#[test]
fn an_abandoned_refresh_never_replaces_a_newer_token() {
    static TAKEOVERS: StdAtomicUsize = StdAtomicUsize::new(0);
    check(|| {
        let (cache, _) = cache();
        let first = token_caller(&cache);
        let clock = thread::spawn(|| model::advance(ABANDON));
        let second = token_caller(&cache);
        let (first, second) = (first.join().unwrap(), second.join().unwrap());
        clock.join().unwrap();
        model::run_all();
        let control = cache.shared.lock();
        let newest = control.next_refresh;
        assert!(control.inflight.is_none());
        assert_eq!(
            control.installed_by, newest,
            "the newest refresh's token is current"
        );
        drop(control);
        if newest == 2 {
            TAKEOVERS.fetch_add(1, Ordering::Relaxed);
        }
        // Every caller got the current token, or (it waited for the abandoned refresh, which
        // finished first) an older one that the newer refresh then replaced.
        let current = cache.current().expect("a token");
        for got in [&first, &second] {
            let token = got.token();
            assert!(token.0.is(&current.0) || token.generation() < current.generation());
        }
        assert_state_names_current(&cache);
    });
    assert!(
        TAKEOVERS.load(Ordering::Relaxed) > 0,
        "some interleaving took over"
    );
}

/// The first token's phase timer fires (the clock passes its refresh time) or is aborted and
/// dropped at any moment around an invalidation, a caller on the stale token and the refresh
/// that replaces it: it never marks the newer token stale.
#[test]
fn a_timer_never_marks_a_newer_token_stale() {
    check(|| {
        let (cache, _) = cache();
        let first = install_first(&cache);
        let timer = thread::spawn(|| {
            // Into the first token's refresh window (refresh 60 s before its expiry).
            model::advance(Duration::from_secs(3600 - 50));
            model::run_all();
        });
        let invalidator = spawn_with(&cache, move |cache| {
            cache.invalidate(&first);
            model::run_all();
        });
        let caller = spawn_with(&cache, move |cache| {
            let (mut service, seen) = service(&cache, StatusCode::OK);
            send(&mut service, &seen);
            send(&mut service, &seen);
            model::run_all();
        });
        timer.join().unwrap();
        invalidator.join().unwrap();
        caller.join().unwrap();
        model::run_all();
        // A newer token that is fresh by the clocks (its own timer has not fired) is marked
        // fresh once used (its first use arms the timer). (A fetch that spans the clock's jump
        // brings a token already stale.)
        let current = cache.current().expect("a newer token");
        assert_ne!(current.secret(), "t0");
        let _ = cache.usable();
        if !current.0.is_stale(Now::read()) {
            assert_eq!(cache.state(), pack(current.generation(), PHASE_FRESH));
        }
        assert_state_names_current(&cache);
    });
}

/// Serve-stale handover: the token enters its refresh window; callers keep getting it without
/// waiting, and exactly one background refresh replaces it.
#[test]
fn callers_on_a_stale_token_are_served_and_start_one_refresh() {
    check(|| {
        // 100 s tokens: refresh window 50 s (half the lifetime), usable for 90 s.
        let (cache, _) = cache_with(Duration::from_secs(100));
        install_first(&cache);
        model::advance(Duration::from_secs(60));
        two_callers(&cache, |cache| {
            let (token, _) = cache.usable().expect("served without waiting");
            assert!(token.secret() == "t0" || token.secret() == "t1");
            model::run_all();
        });
        model::run_all();
        assert_eq!(fetches(&cache), 2, "one background refresh");
        assert_eq!(cache.current().unwrap().secret(), "t1");
        assert_state_names_current(&cache);
    });
}

/// A refresh task dropped before it ran (its runtime shut down) clears its in-flight marker,
/// so a caller that finds it gone starts another instead of waiting forever.
#[test]
fn a_refresh_dropped_unrun_never_wedges_the_cache() {
    static WEDGE_CHECKS: StdAtomicBool = StdAtomicBool::new(false);
    check(|| {
        let (cache, _) = cache();
        let first = spawn_with(&cache, move |cache| drop(call_token(&cache)));
        let shutdown = thread::spawn(model::drop_all);
        let second = token_caller(&cache);
        first.join().unwrap();
        shutdown.join().unwrap();
        let second = second.join().unwrap();
        model::run_all();
        assert!(
            cache.shared.lock().inflight.is_none(),
            "no marker left behind"
        );
        // The second caller got a token, or saw its refresh's task dropped (the real caller
        // then looks again); either way the next caller is not stuck.
        if let Got::Waiting(outcome) = &second
            && outcome.borrow().is_none()
        {
            WEDGE_CHECKS.store(true, Ordering::Relaxed);
        }
        match call_token(&cache) {
            Got::Ready(_) => {}
            Got::Waiting(outcome) => {
                model::run_all();
                assert!(outcome.borrow().is_some(), "the next caller gets a token");
            }
        }
    });
    assert!(
        WEDGE_CHECKS.load(Ordering::Relaxed),
        "some interleaving dropped the refresh a caller waited for"
    );
}

/// A 401 drops the token the request carried, if it is still current, and never another: the
/// generation a request remembers is the one of the header it carried, whether the fast path,
/// the lock-free path or the slow path chose it, while an invalidation and its refresh replace
/// the token.
#[test]
fn a_401_drops_only_the_token_the_request_carried() {
    static CARRIED: [StdAtomicUsize; 2] = [StdAtomicUsize::new(0), StdAtomicUsize::new(0)];
    check(|| {
        let (cache, _) = cache();
        let first = install_first(&cache);
        // Warm, with an inner service that answers 200; then it answers 401.
        let (mut rejected, warm) = service(&cache, StatusCode::OK);
        assert_eq!(send(&mut rejected, &warm).as_deref(), Some("t0"));
        let (rejecting, seen) = service(&cache, StatusCode::UNAUTHORIZED);
        rejected.inner = rejecting.into_inner();
        let caller = thread::spawn(move || {
            let carried = send(&mut rejected, &seen);
            model::run_all();
            carried
        });
        let invalidator = spawn_with(&cache, move |cache| {
            cache.invalidate(&first);
            model::run_all();
        });
        let carried = caller.join().unwrap();
        invalidator.join().unwrap();
        model::run_all();
        let current = cache.current().expect("a token");
        match carried.as_deref() {
            // Its 401 arrived before or after the invalidation: either way t0 went, once, and
            // the refresh's t1 stays.
            Some("t0") => {
                CARRIED[0].fetch_add(1, Ordering::Relaxed);
                assert_eq!(current.secret(), "t1");
                assert_eq!(fetches(&cache), 2);
            }
            // It carried the new token: its 401 dropped that one, and a refresh replaced it.
            Some("t1") => {
                CARRIED[1].fetch_add(1, Ordering::Relaxed);
                assert_eq!(current.secret(), "t2");
                assert_eq!(fetches(&cache), 3);
            }
            // It waited for the refresh (its future is not run here).
            None => assert_eq!(current.secret(), "t1"),
            Some(other) => panic!("carried {other}"),
        }
        assert_state_names_current(&cache);
    });
    let carried = CARRIED.each_ref().map(|n| n.load(Ordering::Relaxed));
    assert!(
        carried.iter().all(|&n| n > 0),
        "both tokens were carried: {carried:?}"
    );
}

/// Serve-stale through failures: the one background refresh fails; the callers keep getting
/// the stale token, and none starts another fetch before the backoff has passed.
#[test]
fn a_failed_refresh_is_backed_off_while_the_stale_token_is_served() {
    check(|| {
        let (cache, _) = cache_with(Duration::from_secs(100));
        let first = install_first(&cache);
        cache.source().failing.store(true, Ordering::SeqCst);
        model::advance(Duration::from_secs(60));
        two_callers(&cache, |cache| {
            for _ in 0..2 {
                let (token, _) = cache.usable().expect("served without waiting");
                assert_eq!(token.secret(), "t0");
                model::run_all();
            }
        });
        model::run_all();
        assert_eq!(fetches(&cache), 2, "one failed refresh, then the backoff");
        let control = cache.shared.lock();
        assert_eq!(control.failures, 1);
        assert!(control.inflight.is_none());
        assert!(control.blocked(Now::read().tokio).is_some(), "backing off");
        drop(control);
        assert!(cache.current().unwrap().0.is(&first.0));
        assert_state_names_current(&cache);
    });
}

/// `token()`'s waiting path as its loop runs it: the single-flight step, then (once the tasks
/// have run) the outcome it woke to, settled the way `wait_for_refresh` settles it.
fn wait_for_token(cache: &TokenCache<Counter>) -> CachedToken {
    let mut late = 0;
    loop {
        let outcome = match call_token(cache) {
            Got::Ready(token) => return token,
            Got::Waiting(outcome) => outcome,
        };
        model::run_all();
        // Another thread may be running the refresh this caller waits for.
        let Some(outcome) = outcome.borrow().clone() else {
            thread::yield_now();
            continue;
        };
        if let Some(outcome) = settle(outcome, &mut late) {
            return outcome.expect("no failure in the model");
        }
    }
}

/// A waiter woken by the refresh it waited for reads the outcome at any moment around a clock
/// that passes that token's usable time (a thread blocked, a runtime starved): what it returns
/// is usable when it returns it, and the late token costs at most one more fetch.
#[test]
fn a_waiter_woken_late_never_returns_an_unusable_token() {
    check(|| {
        // 100 s tokens: usable for 90 s.
        let (cache, _) = cache_with(Duration::from_secs(100));
        let waiter = spawn_with(&cache, move |cache| {
            let token = wait_for_token(&cache);
            assert!(
                token.is_usable_now(),
                "{} handed out unusable",
                token.secret()
            );
        });
        let clock = thread::spawn(|| {
            model::advance(Duration::from_secs(95));
            model::run_all();
        });
        waiter.join().unwrap();
        clock.join().unwrap();
        model::run_all();
        assert!(fetches(&cache) <= 2, "{} fetches", fetches(&cache));
        assert_state_names_current(&cache);
    });
}

/// Background mode: the phase timer fires into the refresh window (and refreshes) while a
/// caller on the same stale token is served and may start the refresh itself, and a waiter
/// needs a token after an invalidation: single flight throughout, and every token that was
/// replaced by the timer's refresh is the one the timer was set for.
#[test]
fn a_background_timer_and_the_stale_path_share_one_refresh() {
    check(|| {
        // 100 s tokens: refresh window 50 s.
        let (cache, _) = configured(Duration::from_secs(100), |b| b.background_refresh(true));
        install_first(&cache);
        let timer = thread::spawn(|| {
            model::advance(Duration::from_secs(60));
            model::run_all();
        });
        let caller = spawn_with(&cache, move |cache| {
            let (token, _) = cache.usable().expect("served without waiting");
            assert!(token.secret() == "t0" || token.secret() == "t1");
            model::run_all();
        });
        timer.join().unwrap();
        caller.join().unwrap();
        model::run_all();
        assert_eq!(
            fetches(&cache),
            2,
            "one refresh, by the timer or the stale path"
        );
        assert_eq!(cache.current().unwrap().secret(), "t1");
        assert_state_names_current(&cache);
    });
}

/// Background mode with the token endpoint down: the timer's refresh fails and schedules its
/// retry, a caller on the stale token keeps being served meanwhile; once the endpoint is back
/// and the backoff has passed, the retry installs a token, once.
#[test]
fn a_failed_background_refresh_is_retried_by_its_timer_once() {
    check(|| {
        let (cache, _) = configured(Duration::from_secs(100), |b| b.background_refresh(true));
        install_first(&cache);
        cache.source().failing.store(true, Ordering::SeqCst);
        model::advance(Duration::from_secs(60));
        model::run_all(); // the timer's refresh fails; its retry is queued
        assert_eq!(fetches(&cache), 2);
        let caller = spawn_with(&cache, move |cache| {
            let (token, _) = cache.usable().expect("the stale token is still served");
            assert!(token.secret() == "t0" || token.secret() == "t2");
            model::run_all();
        });
        let retry = spawn_with(&cache, move |cache| {
            cache.source().failing.store(false, Ordering::SeqCst);
            model::advance(Duration::from_secs(5)); // past the first backoff (1 s at most)
            model::run_all();
        });
        caller.join().unwrap();
        retry.join().unwrap();
        model::run_all();
        assert_eq!(fetches(&cache), 3, "one retry");
        assert_eq!(cache.current().unwrap().secret(), "t2");
        assert_state_names_current(&cache);
    });
}
