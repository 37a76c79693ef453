//! The token cache's state machine, on tokio's paused clock.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::{Instant, advance, sleep};
use tower_bearer::{Backoff, Error, ErrorKind, Token, TokenCache, TokenSource, source::from_fn};

/// A source that counts its calls and answers `token-N` with the given lifetime after `delay`.
fn counting(lifetime: Duration, delay: Duration) -> (Arc<AtomicUsize>, impl TokenSource) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            sleep(delay).await;
            Ok::<_, Error>(Token::new(format!("token-{n}")).with_expires_in(lifetime))
        }
    });
    (calls, source)
}

/// A source that waits once (a yield) before it answers, as a source doing I/O does: a caller
/// that starts its refresh runs it only up to that wait, and the rest runs in the refresh's
/// own task (a source that answers at once is run to the end by that caller). Counts the
/// fetches that got past the wait.
fn answering_after_a_wait(lifetime: Duration) -> (Arc<AtomicUsize>, impl TokenSource) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = from_fn(move || {
        let counter = counter.clone();
        async move {
            tokio::task::yield_now().await;
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(Token::new(format!("token-{n}")).with_expires_in(lifetime))
        }
    });
    (calls, source)
}

fn no_jitter<P: TokenSource>(source: P) -> TokenCache<P> {
    TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .safety_margin(Duration::from_secs(10))
        .build()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn fresh_token_is_reused_without_fetching() {
    let (calls, source) = counting(HOUR, Duration::ZERO);
    let cache = no_jitter(source);
    for _ in 0..10 {
        assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        advance(Duration::from_secs(60)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_share_one_fetch() {
    let (calls, source) = counting(HOUR, Duration::from_millis(50));
    let cache = no_jitter(source);
    let results = join_all((0..10_000).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.token().await })
    }))
    .await;
    for r in results {
        assert_eq!(r.unwrap().unwrap().secret(), "token-0");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stale_token_is_served_at_once_while_one_background_refresh_runs() {
    // 120 s lifetime: refresh window 60 s, so stale after 60 s, unusable after 110 s.
    let (calls, source) = counting(Duration::from_secs(120), Duration::from_secs(5));
    let cache = no_jitter(source);
    cache.token().await.unwrap(); // the first fetch takes 5 s of virtual time
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    advance(Duration::from_secs(61)).await;
    let started = Instant::now();
    for _ in 0..100 {
        let token = cache.token().await.unwrap();
        assert_eq!(token.secret(), "token-0", "the stale token is served");
    }
    assert_eq!(Instant::now(), started, "no caller waited for the refresh");
    tokio::task::yield_now().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "exactly one background refresh"
    );

    sleep(Duration::from_secs(6)).await; // the refresh finishes
    assert_eq!(cache.token().await.unwrap().secret(), "token-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_token_makes_callers_wait_for_one_refresh() {
    let (calls, source) = counting(Duration::from_secs(120), Duration::from_secs(3));
    let cache = no_jitter(source);
    cache.token().await.unwrap();
    // Past usable_until (expiry minus the 10 s margin) with no request in the stale window.
    advance(Duration::from_secs(115)).await;
    assert!(cache.current().is_none());
    let tokens = join_all((0..1000).map(|_| cache.token())).await;
    assert!(
        tokens
            .iter()
            .all(|t| t.as_ref().unwrap().secret() == "token-1")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_window_is_never_more_than_half_the_lifetime() {
    // A 60 s token with the default 60 s window: refresh after 30 s, not at once.
    let (calls, source) = counting(Duration::from_secs(60), Duration::ZERO);
    let cache = no_jitter(source);
    cache.token().await.unwrap();
    advance(Duration::from_secs(29)).await;
    cache.token().await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "still fresh at 29 s");
    advance(Duration::from_secs(2)).await;
    cache.token().await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "stale at 31 s");
}

#[tokio::test(start_paused = true)]
async fn jitter_moves_the_refresh_earlier_within_bounds() {
    // Window 60 s, jitter 20 s: the refresh starts between 80 s and 60 s before expiry.
    for _ in 0..20 {
        let (calls, source) = counting(HOUR, Duration::ZERO);
        let cache = TokenCache::builder(source)
            .jitter(Duration::from_secs(20))
            .build();
        cache.token().await.unwrap();
        advance(HOUR - Duration::from_secs(81)).await;
        cache.token().await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "not before expiry - window - jitter"
        );
        advance(Duration::from_secs(22)).await;
        cache.token().await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "by expiry - window at the latest"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn expiry_is_anchored_when_the_fetch_started() {
    // The endpoint takes 30 s to answer `expires_in: 100`: 70 s are left, not 100.
    let (_, source) = counting(Duration::from_secs(100), Duration::from_secs(30));
    let cache = no_jitter(source);
    let token = cache.token().await.unwrap();
    assert_eq!(token.expires_in(), Some(Duration::from_secs(70)));
}

#[tokio::test(start_paused = true)]
async fn refresh_survives_every_waiter_giving_up() {
    let (calls, source) = counting(HOUR, Duration::from_secs(10));
    let cache = no_jitter(source);
    // Every caller times out long before the 10 s fetch ends.
    for _ in 0..3 {
        let gave_up = tokio::time::timeout(Duration::from_secs(1), cache.token()).await;
        assert!(gave_up.is_err());
    }
    sleep(Duration::from_secs(10)).await;
    // The detached refresh finished anyway and its token is cached.
    assert_eq!(cache.current().unwrap().secret(), "token-0");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn panicking_source_is_an_error_not_a_poisoned_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = no_jitter(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                panic!("source bug");
            }
            Ok::<_, Error>(Token::new("ok").with_expires_in(HOUR))
        }
    }));
    let waiters = join_all((0..10).map(|_| cache.token())).await;
    for w in &waiters {
        assert_eq!(w.as_ref().unwrap_err().kind(), ErrorKind::Panicked);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one panic shared by all waiters"
    );
    advance(Duration::from_secs(2)).await; // past the first backoff (at most 1 s)
    assert_eq!(cache.token().await.unwrap().secret(), "ok");
}

/// A source whose answers the test switches between success and failure.
fn switchable(lifetime: Duration) -> (Arc<AtomicUsize>, Arc<AtomicUsize>, impl TokenSource) {
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicUsize::new(0));
    let (c, f) = (calls.clone(), failing.clone());
    let source = from_fn(move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let fail = f.load(Ordering::SeqCst);
        async move {
            match fail {
                0 => Ok(Token::new(format!("token-{n}")).with_expires_in(lifetime)),
                1 => Err(Error::transient("token endpoint unavailable")),
                _ => Err(Error::rejected("the token endpoint refused the credential")
                    .with_oauth_error("invalid_client")),
            }
        }
    });
    (calls, failing, source)
}

#[tokio::test(start_paused = true)]
async fn usable_token_keeps_being_served_while_refreshes_fail() {
    let (calls, failing, source) = switchable(Duration::from_secs(120));
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .backoff(Backoff::new(Duration::from_secs(2), Duration::from_secs(8)))
        .build();
    cache.token().await.unwrap();
    failing.store(1, Ordering::SeqCst);

    // From 61 s to 109 s (stale, still usable), a request every 100 ms.
    advance(Duration::from_secs(61)).await;
    for _ in 0..480 {
        assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        advance(Duration::from_millis(100)).await;
    }
    // 48 s of backoff at 1-2 s, 2-4 s, 4-8 s, then 4-8 s: between 7 and 13 attempts,
    // never one per request.
    let attempts = calls.load(Ordering::SeqCst) - 1;
    assert!((5..=14).contains(&attempts), "{attempts} refresh attempts");

    // Past usable_until (110 s) the failure reaches the caller, typed.
    advance(Duration::from_secs(2)).await;
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(err.to_string(), "token endpoint unavailable");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_instead_of_hammering() {
    let (calls, failing, source) = switchable(HOUR);
    failing.store(1, Ordering::SeqCst);
    let cache = TokenCache::builder(source)
        .backoff(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ))
        .build();
    // 1,000 requests over 10 s, none with a token to serve.
    for _ in 0..1000 {
        let err = cache.token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(err.to_string(), "token endpoint unavailable");
        advance(Duration::from_millis(10)).await;
    }
    // Backoff 0.5-1 s, 1-2 s, 2-4 s, 4-8 s: at most 5 attempts in 10 s.
    let attempts = calls.load(Ordering::SeqCst);
    assert!((3..=5).contains(&attempts), "{attempts} attempts");

    // Recovery: once the endpoint is back and the backoff has passed, the next request works.
    failing.store(0, Ordering::SeqCst);
    advance(Duration::from_secs(16)).await;
    assert!(cache.token().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn rejection_is_remembered_for_the_cooldown() {
    let (calls, failing, source) = switchable(HOUR);
    failing.store(2, Ordering::SeqCst);
    let cache = TokenCache::builder(source)
        .rejected_cooldown(Duration::from_secs(30))
        .build();
    for _ in 0..100 {
        let err = cache.token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert_eq!(err.oauth_error(), Some("invalid_client"));
        advance(Duration::from_millis(250)).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "25 s inside the cooldown: one call"
    );
    advance(Duration::from_secs(6)).await;
    let _ = cache.token().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "tried again after the cooldown"
    );
}

#[tokio::test(start_paused = true)]
async fn hanging_source_times_out_as_transient() {
    let cache = TokenCache::builder(from_fn(|| async {
        std::future::pending::<()>().await;
        Ok::<_, Error>(Token::new("never"))
    }))
    .fetch_timeout(Duration::from_secs(5))
    .build();
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        err.to_string().contains("did not answer within 5s"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn already_expired_token_is_an_invalid_response() {
    let cache = TokenCache::new(from_fn(|| async {
        Ok::<_, Error>(Token::new("old").with_expires_at(std::time::UNIX_EPOCH))
    }));
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
}

#[tokio::test(start_paused = true)]
async fn token_that_is_not_a_header_value_is_refused() {
    let cache = TokenCache::new(from_fn(|| async {
        Ok::<_, Error>(Token::new("evil\r\nX-Injected: 1"))
    }));
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(!err.to_string().contains("evil"));
}

#[tokio::test(start_paused = true)]
async fn storm_of_invalidations_for_one_token_causes_one_refresh() {
    let (calls, source) = counting(HOUR, Duration::from_millis(100));
    let cache = no_jitter(source);
    let seen = cache.token().await.unwrap();
    let dropped = (0..1000).filter(|_| cache.invalidate(&seen)).count();
    assert_eq!(dropped, 1);
    let tokens = join_all((0..1000).map(|_| cache.token())).await;
    assert!(
        tokens
            .iter()
            .all(|t| t.as_ref().unwrap().secret() == "token-1")
    );
    // A late 401 for the old token changes nothing.
    assert!(!cache.invalidate(&seen));
    assert_eq!(cache.token().await.unwrap().secret(), "token-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn token_without_expiry_is_valid_until_invalidated() {
    let (calls, source) = {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        (
            calls,
            from_fn(move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, Error>(Token::new(format!("forever-{n}"))) }
            }),
        )
    };
    let cache = TokenCache::new(source);
    let first = cache.token().await.unwrap();
    assert_eq!(first.expires_in(), None);
    advance(Duration::from_secs(365 * 24 * 3600)).await;
    assert_eq!(cache.token().await.unwrap().secret(), "forever-0");
    cache.invalidate(&first);
    assert_eq!(cache.token().await.unwrap().secret(), "forever-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_keeps_the_token_fresh_without_traffic() {
    let (calls, source) = counting(Duration::from_secs(600), Duration::from_secs(1));
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .background_refresh(true)
        .build();
    cache.token().await.unwrap();
    // Nobody asks for a token for an hour; the cache refreshes every ~9 minutes by itself.
    sleep(HOUR).await;
    let calls_after_hour = calls.load(Ordering::SeqCst);
    assert!((7..=8).contains(&calls_after_hour), "{calls_after_hour}");
    let token = cache.token().await.unwrap();
    assert!(token.expires_in().unwrap() > Duration::from_secs(60));

    // The timer holds no strong reference: dropping the last handle stops it.
    drop(token);
    drop(cache);
    sleep(HOUR).await;
    assert_eq!(calls.load(Ordering::SeqCst), calls_after_hour);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_retries_failures_with_backoff() {
    let (calls, failing, source) = switchable(Duration::from_secs(600));
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .background_refresh(true)
        .build();
    cache.token().await.unwrap();
    failing.store(1, Ordering::SeqCst);
    sleep(Duration::from_millis(540_200)).await; // window opens at 540 s: first attempt fails
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    failing.store(0, Ordering::SeqCst);
    sleep(Duration::from_secs(10)).await; // retried within the 1 s backoff
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.token().await.unwrap().secret(), "token-2");
}

#[test]
fn no_runtime_is_a_config_error() {
    let cache = TokenCache::new(tower_bearer::source::static_token("abc"));
    let err = futures::executor::block_on(cache.token()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_concurrency_causes_one_fetch() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = TokenCache::new(from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::task::yield_now().await;
            Ok::<_, Error>(Token::new("shared").with_expires_in(HOUR))
        }
    }));
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await.map(|t| t.generation()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn on_refresh_reports_each_refresh_with_its_reason() {
    use std::sync::Mutex;
    use tower_bearer::RefreshReason;

    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let (_, source) = counting(Duration::from_secs(120), Duration::from_secs(1));
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .on_refresh(move |event| {
            seen.lock().unwrap().push((
                event.reason(),
                event.took(),
                event.expires_in(),
                event.error().is_some(),
            ))
        })
        .build();
    let token = cache.token().await.unwrap(); // no token
    cache.invalidate(&token); // invalidated
    sleep(Duration::from_secs(2)).await;
    cache.token().await.unwrap();
    sleep(Duration::from_secs(61)).await;
    cache.token().await.unwrap(); // stale
    sleep(Duration::from_secs(200)).await;
    cache.token().await.unwrap(); // expired
    let events = events.lock().unwrap().clone();
    let reasons: Vec<_> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        reasons,
        [
            RefreshReason::NoToken,
            RefreshReason::Invalidated,
            RefreshReason::Stale,
            RefreshReason::Expired
        ]
    );
    for (_, took, expires_in, failed) in events {
        assert_eq!(took, Duration::from_secs(1));
        assert_eq!(expires_in, Some(Duration::from_secs(119)));
        assert!(!failed);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refresh_finishing_as_the_next_starts_never_lets_a_third_run_alongside() {
    // The interleaving: a refresh nobody waits for (started by `invalidate`) has installed
    // its token; before its task has ended, another thread gets a 401 for that brand-new
    // token and invalidates it, which starts the next refresh. A request then needs a token:
    // it must wait for that refresh, not start another. Two fetches at once would, with a
    // rotating refresh token, spend the same refresh token twice.
    //
    // The `on_refresh` hook runs in that gap, so it is where this test holds the refresh task
    // while a second thread invalidates, as a preempted task would be held.
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    let active = Arc::new(AtomicUsize::new(0));
    let most_active = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, m, c) = (active.clone(), most_active.clone(), calls.clone());
    let source = from_fn(move || {
        let (active, most_active) = (a.clone(), m.clone());
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            most_active.fetch_max(active.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            sleep(Duration::from_secs(10)).await;
            active.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Error>(Token::new(format!("token-{n}")).with_expires_in(HOUR))
        }
    });
    let hold = Arc::new(AtomicBool::new(false));
    let (in_gap, gap_reached) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let holding = hold.clone();
    let cache = TokenCache::builder(source)
        .on_refresh(move |_| {
            if holding.swap(false, Ordering::SeqCst) {
                in_gap.send(()).unwrap();
                released.lock().unwrap().recv().unwrap();
            }
        })
        .build();

    let first = cache.token().await.unwrap();
    hold.store(true, Ordering::SeqCst);
    assert!(cache.invalidate(&first)); // refresh 1, nobody waiting for it

    let other_thread = {
        let cache = cache.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            gap_reached.recv().unwrap();
            let _entered = runtime.enter();
            let new = cache.current().expect("refresh 1 installed its token");
            assert!(cache.invalidate(&new)); // refresh 2 starts
            release.send(()).unwrap();
        })
    };
    sleep(Duration::from_secs(11)).await; // refresh 1 has ended; refresh 2 is fetching
    other_thread.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    assert_eq!(cache.token().await.unwrap().secret(), "token-2");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the request waited for refresh 2"
    );
    assert_eq!(
        most_active.load(Ordering::SeqCst),
        1,
        "two fetches ran at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_source_panicking_before_it_returns_its_future_is_an_error_with_backoff() {
    // `fetch` is a plain fn returning a future: code before the `async` block (reading a
    // config, cloning a client) can panic too. That is the same source bug as a panic inside
    // the future: a `Panicked` error shared by the waiters and backed off, never a flood.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = no_jitter(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        assert!(n > 0, "source bug before the future");
        async { Ok::<_, Error>(Token::new("ok").with_expires_in(HOUR)) }
    }));
    let waiters = join_all((0..10).map(|_| cache.token())).await;
    for w in &waiters {
        assert_eq!(w.as_ref().unwrap_err().kind(), ErrorKind::Panicked);
    }
    for _ in 0..10 {
        assert_eq!(cache.token().await.unwrap_err().kind(), ErrorKind::Panicked);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "backed off after the panic"
    );
    advance(Duration::from_secs(2)).await; // past the first backoff (at most 1 s)
    assert_eq!(cache.token().await.unwrap().secret(), "ok");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_cooldown_of_duration_max_never_retries() {
    let (calls, failing, source) = switchable(HOUR);
    failing.store(2, Ordering::SeqCst);
    let cache = TokenCache::builder(source)
        .rejected_cooldown(Duration::MAX)
        .build();
    for _ in 0..10 {
        let err = cache.token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
        advance(HOUR).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A source that always answers "rate limited" with `Retry-After: after`, counting its calls.
fn rate_limited(after: Duration) -> (Arc<AtomicUsize>, impl TokenSource) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Err::<Token, _>(Error::transient("rate limited").with_retry_after(after)) }
    });
    (calls, source)
}

/// A cache with the default backoff (60 s at most), behind a server asking for `after`, asks
/// again after exactly `expected`, and not a second before.
async fn asks_again_after(after: Duration, expected: Duration) {
    let (calls, source) = rate_limited(after);
    let cache = TokenCache::new(source);
    assert!(cache.token().await.is_err());
    advance(expected - Duration::from_secs(1)).await;
    assert!(cache.token().await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not before {expected:?}");
    advance(Duration::from_secs(2)).await;
    assert!(cache.token().await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "asked again after {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    asks_again_after(Duration::from_secs(20), Duration::from_secs(20)).await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_longer_than_the_backoff_maximum_is_honoured() {
    // A 429 with Retry-After: 300 against the default backoff (max 60 s).
    asks_again_after(Duration::from_secs(300), Duration::from_secs(300)).await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_a_day_is_capped_at_max_retry_after() {
    asks_again_after(
        Duration::from_secs(24 * 3600),
        tower_bearer::MAX_RETRY_AFTER,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_with_an_unbounded_backoff_is_honoured() {
    let (calls, source) = rate_limited(Duration::MAX);
    let cache = TokenCache::builder(source)
        .backoff(Backoff::new(Duration::from_secs(1), Duration::MAX))
        .build();
    for _ in 0..10 {
        let err = cache.token().await.unwrap_err();
        assert_eq!(err.message(), "rate limited", "{err}");
        advance(HOUR).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_token_that_arrives_inside_the_safety_margin_is_never_handed_out() {
    // `expires_in: 40` answered after 36 s: 4 s left, inside the 10 s safety margin. Such a
    // token would expire in flight; the waiters must not get it, and the endpoint must not
    // be asked again by every request as if nothing had gone wrong.
    let (calls, source) = counting(Duration::from_secs(40), Duration::from_secs(36));
    let cache = no_jitter(source);
    let waiters = join_all((0..10).map(|_| cache.token())).await;
    for w in &waiters {
        let err = w.as_ref().unwrap_err();
        assert!(err.to_string().contains("safety margin"), "{err}");
    }
    assert!(cache.current().is_none());
    for _ in 0..10 {
        assert!(cache.token().await.is_err());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "backed off");
}

#[tokio::test(start_paused = true)]
async fn background_refresh_keeps_retrying_after_an_invalidation_during_backoff() {
    let (calls, failing, source) = switchable(Duration::from_secs(600));
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .background_refresh(true)
        .build();
    let token = cache.token().await.unwrap();
    failing.store(1, Ordering::SeqCst);
    sleep(Duration::from_millis(540_200)).await; // window opens at 540 s: first attempt fails
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A 401 during the backoff: the token is dropped, and no refresh starts before the retry.
    assert!(cache.invalidate(&token));
    failing.store(0, Ordering::SeqCst);
    // Nobody asks for a token; the retry still happens on its own.
    sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.current().unwrap().secret(), "token-2");
}

#[tokio::test(start_paused = true)]
async fn background_refresh_goes_on_after_a_token_that_arrives_stale() {
    // `expires_in: 100` answered after 55 s: the refresh window (the last 50 s) has already
    // opened, but the token is usable for 35 s more.
    let (calls, source) = counting(Duration::from_secs(100), Duration::from_secs(55));
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .background_refresh(true)
        .build();
    cache.token().await.unwrap();
    sleep(HOUR).await; // no traffic
    assert!(
        calls.load(Ordering::SeqCst) > 1,
        "refreshed without traffic"
    );
    let started = Instant::now();
    assert!(cache.token().await.is_ok());
    assert_eq!(Instant::now(), started, "a token was ready");
}

#[test]
fn a_refresh_asked_of_a_runtime_that_has_shut_down_fails_instead_of_hanging() {
    // A handle outlives its runtime (kept by a blocking thread, a library, a test helper):
    // a runtime that has shut down drops a task it is asked to spawn there and then, so the
    // refresh's cleanup runs inside `spawn`, while the cache is being updated.
    let (calls, source) = answering_after_a_wait(HOUR);
    let cache = no_jitter(source);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    let token = runtime.block_on(cache.token()).unwrap();
    drop(runtime);

    let (done, finished) = std::sync::mpsc::channel();
    let other = cache.clone();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let dropped = other.invalidate(&token);
        let next = futures::executor::block_on(other.token());
        done.send((dropped, next.map(|t| t.generation()))).unwrap();
    });
    let (dropped, next) = finished
        .recv_timeout(Duration::from_secs(2))
        .expect("invalidate or token() hung");
    assert!(dropped);
    assert!(next.is_err(), "no token without a runtime to fetch it");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.current().is_none());
}

/// A waiting caller runs the refresh of a source that answers at once (a static token, a file,
/// a token already in memory) to its end itself: the first poll has the token, with no task
/// spawned and no wake-up. A source that waits is detached at its first wait instead.
#[test]
fn a_source_that_answers_at_once_is_run_by_its_waiter_without_a_task() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let (calls, source) = counting(HOUR, Duration::ZERO);
    let at_once = TokenCache::new(tower_bearer::source::static_token("abc"));
    let mut first = std::pin::pin!(at_once.token());
    match first.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(token)) => assert_eq!(token.secret(), "abc"),
        other => panic!("not answered on the first poll: {other:?}"),
    }
    assert_eq!(
        runtime.metrics().num_alive_tasks(),
        0,
        "no task (nor timer: no expiry)"
    );

    // One that waits (a timer here): its refresh goes on without the caller.
    let waits = TokenCache::new(source);
    {
        let mut waiter = std::pin::pin!(waits.token());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
    } // the caller gives up
    let token = runtime.block_on(async {
        while waits.current().is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        waits.token().await.unwrap()
    });
    assert_eq!(token.secret(), "token-0");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refresh_stuck_on_a_runtime_nobody_drives_does_not_hang_callers_elsewhere() {
    let (_, source) = answering_after_a_wait(HOUR);
    let cache = TokenCache::builder(source)
        .fetch_timeout(Duration::from_secs(5))
        .build();
    // Runtime A starts the refresh (first poll of a request), then is never driven again.
    let a = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    {
        let _inside_a = a.enter();
        let mut first = std::pin::pin!(cache.token());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
    }
    // A caller on runtime B gets a typed error after the fetch timeout instead of waiting forever.
    let b = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let err = b.block_on(cache.token()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("no token within 5s"), "{err}");
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn a_token_from_another_cache_never_invalidates_this_one() {
    // Both caches are at generation 1: only the token itself tells them apart.
    let (_, source_a) = counting(HOUR, Duration::ZERO);
    let (_, source_b) = counting(HOUR, Duration::ZERO);
    let (a, b) = (no_jitter(source_a), no_jitter(source_b));
    let token_a = a.token().await.unwrap();
    let token_b = b.token().await.unwrap();
    assert_eq!(token_a.generation(), token_b.generation());
    assert!(!a.invalidate(&token_b));
    assert!(a.current().is_some(), "a's token stays");
    assert!(b.invalidate(&token_b));
}

#[tokio::test(start_paused = true)]
async fn a_zero_refresh_window_keeps_the_safety_margin() {
    let (calls, source) = counting(HOUR, Duration::ZERO);
    let cache = TokenCache::builder(source)
        .refresh_window(Duration::ZERO)
        .safety_margin(Duration::from_secs(10))
        .build();
    assert_eq!(cache.token().await.unwrap().secret(), "token-0");
    advance(HOUR - Duration::from_secs(11)).await;
    assert_eq!(
        cache.current().unwrap().secret(),
        "token-0",
        "no refresh window: no refresh yet"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    advance(Duration::from_secs(2)).await;
    assert!(
        cache.current().is_none(),
        "not used inside the safety margin"
    );
    assert_eq!(cache.token().await.unwrap().secret(), "token-1");
}

/// A waiter whose task runs only after the refresh's token entered its safety margin (here:
/// virtual time moves on between the refresh's end and the waiter's next poll) never gets
/// that token: it waits for another.
#[tokio::test(start_paused = true)]
async fn a_waiter_polled_late_never_gets_a_token_inside_its_safety_margin() {
    let (calls, source) = answering_after_a_wait(Duration::from_secs(100));
    let cache = no_jitter(source); // margin: min(10 s, 100 s / 4)
    let mut waiter = Box::pin(cache.token());
    assert!(
        futures::poll!(waiter.as_mut()).is_pending(),
        "started a refresh"
    );
    while cache.current().is_none() {
        tokio::task::yield_now().await; // the refresh task runs and wakes the waiter...
    }
    advance(Duration::from_secs(95)).await; // ...which is polled 95 s later: 5 s left
    let token = waiter.await.unwrap();
    assert_eq!(
        token.secret(),
        "token-1",
        "the late token was not handed out"
    );
    assert!(token.expires_in().unwrap() > Duration::from_secs(10));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The same on a real clock: a current-thread runtime whose one thread is blocked by CPU work
/// (another task, started just as the token arrives) between the refresh's end and the
/// waiter's turn.
#[test]
fn a_waiter_on_a_blocked_current_thread_runtime_gets_a_usable_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = TokenCache::builder(from_fn(move || {
        let counter = counter.clone();
        async move {
            // Waits once, as a source doing I/O does: the rest runs in the refresh's task.
            tokio::task::yield_now().await;
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                // Queued before the waiter is woken: 1.7 s of the token's 2 s go by before
                // the waiter runs, 300 ms are left then, inside the 500 ms margin.
                tokio::spawn(async {
                    let busy = std::time::Instant::now();
                    while busy.elapsed() < Duration::from_millis(1700) {
                        std::hint::black_box(busy.elapsed());
                    }
                });
            }
            Ok::<_, Error>(Token::new(format!("t{n}")).with_expires_in(Duration::from_secs(2)))
        }
    }))
    .jitter(Duration::ZERO)
    .safety_margin(Duration::from_millis(500))
    .build();
    let token = runtime.block_on(async {
        let cache = cache.clone();
        tokio::spawn(async move { cache.token().await })
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(token.secret(), "t1");
    assert!(token.expires_in().unwrap() > Duration::from_millis(500));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A source whose every token is unusable by the time the waiter runs (the `on_refresh` hook
/// blocks past the margin, on the real clock the fast path's guard reads): three refreshes,
/// then a clear error instead of waiting forever.
#[tokio::test]
async fn a_waiter_that_keeps_finding_unusable_tokens_gives_up_with_an_error() {
    let (calls, source) = counting(Duration::from_millis(400), Duration::ZERO);
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .safety_margin(Duration::from_millis(100))
        .on_refresh(|_| std::thread::sleep(Duration::from_millis(350)))
        .build();
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("safety margin"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_refresh_hook_leaves_the_token_installed() {
    let (calls, source) = counting(HOUR, Duration::ZERO);
    let cache = TokenCache::builder(source)
        .on_refresh(|_| panic!("a bug in the hook"))
        .build();
    let token = cache
        .token()
        .await
        .expect("the hook's panic is not the refresh's failure");
    assert_eq!(token.secret(), "token-0");
    assert_eq!(cache.current().unwrap().secret(), "token-0");
    assert_eq!(cache.token().await.unwrap().secret(), "token-0");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Every duration setting at `Duration::MAX` (and a token that lives that long, and a server
/// asking to retry after that long): no `Instant` arithmetic overflows.
#[tokio::test(start_paused = true)]
async fn duration_max_settings_never_panic() {
    fn huge<P: TokenSource>(source: P) -> TokenCache<P> {
        TokenCache::builder(source)
            .refresh_window(Duration::MAX)
            .jitter(Duration::MAX)
            .safety_margin(Duration::MAX)
            .backoff(Backoff::new(Duration::MAX, Duration::MAX))
            .rejected_cooldown(Duration::MAX)
            .fetch_timeout(Duration::MAX)
            .background_refresh(true)
            .build()
    }
    // The last one fits in an `Instant` but not in a `SystemTime` (the metrics' expiry gauge).
    let past_system_time = Duration::from_secs(i64::MAX as u64 - 1_000_000_000);
    for lifetime in [HOUR, Duration::MAX, past_system_time] {
        let (calls, source) = counting(lifetime, Duration::ZERO);
        let cache = huge(source);
        let token = cache.token().await.unwrap();
        assert!(cache.invalidate(&token));
        cache.token().await.unwrap();
        advance(HOUR).await;
        cache.token().await.unwrap();
        assert!(calls.load(Ordering::SeqCst) >= 2);
    }
    let (calls, source) = rate_limited(Duration::MAX);
    let cache = huge(source);
    assert_eq!(
        cache.token().await.unwrap_err().kind(),
        ErrorKind::Transient
    );
    advance(HOUR).await;
    assert!(cache.token().await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a Retry-After of Duration::MAX holds"
    );
}
