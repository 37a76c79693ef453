//! The cache's guarantees however the runtime is driven, on the real clock (a few seconds):
//! `block_on` once per request, a worker blocked past the expiry, a refresh abandoned on a
//! runtime that stops being driven. Paused time cannot show these: they are about tasks that
//! do not run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, Error, ErrorKind, Token, TokenCache, TokenSource, source};

const LIFETIME: Duration = Duration::from_secs(2);
/// The default safety margin is capped at a quarter of the lifetime.
const USABLE_FOR: Duration = Duration::from_millis(1500);

/// Issues `token-N`, each living `lifetime`, and remembers when each was asked for: a token
/// fetched at `t` may be used until `t + usable_for` at the latest.
#[derive(Clone)]
struct Issuer {
    issued: Arc<Mutex<HashMap<String, Instant>>>,
    fetches: Arc<AtomicUsize>,
    lifetime: Duration,
    usable_for: Duration,
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer::living(LIFETIME, USABLE_FOR)
    }
}

impl Issuer {
    fn living(lifetime: Duration, usable_for: Duration) -> Self {
        Issuer {
            issued: Default::default(),
            fetches: Default::default(),
            lifetime,
            usable_for,
        }
    }

    fn source(&self) -> impl TokenSource + use<> {
        let issuer = self.clone();
        source::from_fn(move || {
            let n = issuer.fetches.fetch_add(1, Ordering::SeqCst);
            let token = format!("token-{n}");
            let lifetime = issuer.lifetime;
            issuer
                .issued
                .lock()
                .unwrap()
                .insert(token.clone(), Instant::now());
            async move { Ok::<_, Error>(Token::new(token).with_expires_in(lifetime)) }
        })
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Panics if `header` carries a token past its usable time; returns the token.
    fn check(&self, header: &str) -> String {
        let token = header
            .strip_prefix("Bearer ")
            .expect("a bearer token")
            .to_owned();
        let issued = self.issued.lock().unwrap()[&token];
        let age = issued.elapsed();
        assert!(
            age < self.usable_for,
            "{token} sent {age:?} after it was fetched, past its usable time"
        );
        token
    }

    /// An API stand-in that checks every token it gets and echoes it.
    fn api(
        &self,
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
    + Clone
    + use<> {
        let issuer = self.clone();
        service_fn(move |req: Request<()>| {
            let header = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
            let token = issuer.check(&header);
            async move { Ok::<_, Infallible>(Response::new(token)) }
        })
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn block_on_per_request_never_sends_an_expired_token() {
    // A sync program calling an async client: `block_on` once per request, idle between. The
    // runtime polls each request before it runs due timers, so the phase timer never gets a turn.
    let issuer = Issuer::default();
    let cache = TokenCache::new(issuer.source());
    let rt = current_thread();
    let mut reused = BearerAuthLayer::from_cache(cache.clone()).layer(issuer.api());
    let template = reused.clone();

    let mut tokens = Vec::new();
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(LIFETIME + Duration::from_millis(500)); // idle past the expiry
        }
        // The reused service, a fresh clone of a template that never sends, the cache itself.
        let response = rt
            .block_on(reused.ready().await_then_call(Request::new(())))
            .unwrap();
        tokens.push(response.into_body());
        let response = rt
            .block_on(template.clone().oneshot(Request::new(())))
            .unwrap();
        assert_eq!(response.into_body(), tokens[round], "the clone agrees");
        let token = rt.block_on(cache.token()).unwrap();
        issuer.check(token.header_value().to_str().unwrap());
        let current = cache.current().expect("a usable token");
        issuer.check(current.header_value().to_str().unwrap());
    }
    assert_eq!(tokens, ["token-0", "token-1", "token-2"]);
    assert_eq!(issuer.fetches(), 3);
}

#[test]
fn block_on_per_request_refreshes_inside_the_window_instead_of_serving_it_as_fresh() {
    // 4 s tokens: fresh for 1–2 s (window of 2 s, up to 1 s of jitter), usable for 3 s.
    // A request at 2.2 s must be served the current token and start the refresh.
    let issuer = Issuer::living(Duration::from_secs(4), Duration::from_secs(3));
    let cache = TokenCache::new(issuer.source());
    let rt = current_thread();
    let mut svc = BearerAuthLayer::from_cache(cache.clone()).layer(issuer.api());
    let first = rt.block_on(svc.ready().await_then_call(Request::new(())));
    assert_eq!(first.unwrap().into_body(), "token-0");
    std::thread::sleep(Duration::from_millis(2200));
    let stale = rt.block_on(svc.ready().await_then_call(Request::new(())));
    assert_eq!(
        stale.unwrap().into_body(),
        "token-0",
        "still usable: served"
    );
    // The refresh it started runs on the runtime the next time it is driven.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    assert_eq!(
        issuer.fetches(),
        2,
        "the request in the window started a refresh"
    );
    let next = rt.block_on(svc.ready().await_then_call(Request::new(())));
    assert_eq!(next.unwrap().into_body(), "token-1");
}

#[test]
fn a_worker_blocked_past_the_expiry_does_not_send_the_old_token() {
    // The only worker is blocked (a CPU-bound task, a blocking call) past the expiry: when it
    // comes back, no timer has run, and the next request still gets a new token.
    let issuer = Issuer::default();
    let cache = TokenCache::new(issuer.source());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let svc = BearerAuthLayer::from_cache(cache).layer(issuer.api());
    let tokens = rt
        .block_on(rt.spawn(async move {
            let mut svc = svc;
            let first = svc.ready().await?.call(Request::new(())).await?;
            std::thread::sleep(LIFETIME + Duration::from_millis(200)); // starves the runtime
            let second = svc.ready().await?.call(Request::new(())).await?;
            Ok::<_, tower::BoxError>([first.into_body(), second.into_body()])
        }))
        .unwrap()
        .unwrap();
    assert_eq!(tokens, ["token-0", "token-1"]);
}

#[test]
fn a_refresh_abandoned_on_a_runtime_that_stopped_is_taken_over_and_cannot_overwrite_the_newer_token()
 {
    // The first fetch starts on runtime A, which is then never driven: its refresh is stuck.
    let stuck = StuckFirstFetch::new(Duration::from_secs(3600), |n| {
        Ok(Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600)))
    });
    let fetches = stuck.fetches.clone();
    let release = stuck.release.clone();
    let cache = TokenCache::builder(stuck.source())
        .fetch_timeout(Duration::from_millis(500))
        .build();
    let a = start_then_stop_driving(&cache);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // Runtime B: a caller waits at most the fetch timeout (and its grace); after that, the next
    // caller takes over with a refresh of its own.
    let b = current_thread();
    let started = Instant::now();
    let waited = b.block_on(cache.token());
    match waited {
        Err(err) => assert_eq!(err.kind(), ErrorKind::Transient, "{err}"),
        Ok(token) => assert_eq!(token.secret(), "token-1"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "bounded wait");
    let token = b.block_on(cache.token()).unwrap();
    assert_eq!(token.secret(), "token-1", "taken over");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A comes back and its abandoned refresh finishes: it must not replace the newer token.
    release.send(true).unwrap();
    a.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    assert_eq!(cache.current().unwrap().secret(), "token-1");
    assert_eq!(b.block_on(cache.token()).unwrap().secret(), "token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[test]
fn a_runtime_without_the_time_driver_is_a_config_error_not_a_panic() {
    let cache = TokenCache::new(source::static_token("abc"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt.block_on(cache.token()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("enable_time"), "{err}");
}

/// A source whose first fetch answers `late` (living `lifetime`) only once `release` is sent,
/// and whose `n`th fetch after that answers `then(n)`.
struct StuckFirstFetch {
    fetches: Arc<AtomicUsize>,
    release: Arc<tokio::sync::watch::Sender<bool>>,
    lifetime: Duration,
    then: fn(usize) -> Result<Token, Error>,
}

impl StuckFirstFetch {
    fn new(lifetime: Duration, then: fn(usize) -> Result<Token, Error>) -> Self {
        StuckFirstFetch {
            fetches: Default::default(),
            release: Arc::new(tokio::sync::watch::channel(false).0),
            lifetime,
            then,
        }
    }

    fn source(&self) -> impl TokenSource + use<> {
        let (fetches, release) = (self.fetches.clone(), self.release.clone());
        let (lifetime, then) = (self.lifetime, self.then);
        source::from_fn(move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            let mut released = release.subscribe();
            async move {
                if n > 0 {
                    return then(n);
                }
                let _ = released.wait_for(|r| *r).await;
                Ok(Token::new("late").with_expires_in(lifetime))
            }
        })
    }
}

/// Start `cache`'s first refresh on a runtime of its own, let it run until it waits, and
/// return that runtime, which nobody drives from then on (until the test says so).
fn start_then_stop_driving<P: TokenSource>(cache: &TokenCache<P>) -> tokio::runtime::Runtime {
    let runtime = current_thread();
    {
        let _inside = runtime.enter();
        let mut first = std::pin::pin!(cache.token());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
    }
    runtime.block_on(tokio::task::yield_now()); // the refresh starts, then waits
    runtime
}

/// `svc.ready().await?.call(req).await`, as a future to `block_on`.
trait ReadyThenCall<S> {
    async fn await_then_call(self, req: Request<()>) -> Result<S::Response, S::Error>
    where
        S: Service<Request<()>>;
}

impl<'a, S: Service<Request<()>>> ReadyThenCall<S> for tower::util::Ready<'a, S, Request<()>> {
    async fn await_then_call(self, req: Request<()>) -> Result<S::Response, S::Error> {
        self.await?.call(req).await
    }
}

/// Long enough to be usable (3 s with its safety margin) when it arrives late, after the
/// takeover's wait of 1.3 s.
const LATE_LIFETIME: Duration = Duration::from_secs(4);

#[test]
fn a_late_token_clears_the_failure_remembered_from_the_refresh_that_took_over() {
    // Fetch 0 is stuck on runtime A; the takeover (fetch 1) is rejected, which is remembered
    // for the cooldown. Then fetch 0 finishes late with a good token: the credential works, so
    // once that token runs out the next caller fetches again instead of getting fetch 1's error.
    let stuck = StuckFirstFetch::new(LATE_LIFETIME, |n| match n {
        1 => Err(Error::new(ErrorKind::Rejected, "invalid_grant")),
        n => Ok(Token::new(format!("token-{n}")).with_expires_in(LATE_LIFETIME)),
    });
    let fetches = stuck.fetches.clone();
    let release = stuck.release.clone();
    let cache = TokenCache::builder(stuck.source())
        .fetch_timeout(Duration::from_millis(300))
        // No refresh window: a token is refreshed only once it stops being usable, so the test
        // sees exactly the fetches it asks for.
        .refresh_window(Duration::ZERO)
        .build();
    let a = start_then_stop_driving(&cache);

    let b = current_thread();
    let _ = b.block_on(cache.token()); // waits out the stuck refresh
    let err = b.block_on(cache.token()).unwrap_err(); // takes over: rejected
    assert_eq!(err.kind(), ErrorKind::Rejected);

    release.send(true).unwrap();
    a.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    assert_eq!(b.block_on(cache.token()).unwrap().secret(), "late");

    std::thread::sleep(LATE_LIFETIME); // the late token runs out, well inside the 30 s cooldown
    let next = b
        .block_on(cache.token())
        .expect("fetched again, not the old rejection");
    assert_eq!(next.secret(), "token-2");
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}
