//! The cost of "add one header", side by side, at 1 and 2 threads:
//!
//! - `limit/set_request_header`: tower-http's static `SetRequestHeader` (clone a prebuilt
//!   `HeaderValue`, insert it): the physical limit.
//! - `bearer_auth/reused_service`: `BearerAuth` with a fresh token, the service reused for every
//!   request (one atomic load + the header insert).
//! - `bearer_auth/clone_per_request`: the same, with the service cloned for each request from a
//!   template that never sends (as axum state or `client.clone().oneshot(..)` do). Compared with
//!   `limit/set_request_header_clone_per_request`.
//! - `naive/mutex_across_refresh`: a `tokio::sync::Mutex` held across the check-and-refresh,
//!   the header formatted per request, a boxed future (Go's `ReuseTokenSource` design).
//!
//!     cargo bench --bench fast_path
//!
//! Each thread drives its own clone of the service; the figure is the time per request seen by
//! one thread while the others run. Token: 800 bytes. Inner service: a no-op.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tower_bearer::{BearerAuthLayer, Token, TokenCache, source::StaticToken};
use tower_http::set_header::SetRequestHeaderLayer;

/// The inner service: takes the request and drops it.
#[derive(Clone, Copy)]
struct NoOp;

impl<B> Service<Request<B>> for NoOp {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        black_box(&request);
        ready(Ok(Response::new(())))
    }
}

/// Go's `ReuseTokenSource`: one mutex, held while checking (and, when needed, refreshing) the
/// token; the header is formatted for every request.
#[derive(Clone)]
struct Naive<S> {
    inner: S,
    token: Arc<tokio::sync::Mutex<Option<CachedSecret>>>,
}

/// The secret and when it expires.
type CachedSecret = (Arc<str>, Instant);

impl<S> Service<Request<()>> for Naive<S>
where
    S: Service<Request<()>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<()>) -> Self::Future {
        let token = self.token.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let secret = {
                let mut guard = token.lock().await;
                match &*guard {
                    Some((secret, expiry))
                        if Instant::now() + Duration::from_secs(60) < *expiry =>
                    {
                        secret.clone()
                    }
                    _ => {
                        let fresh: Arc<str> = token_value().into();
                        *guard = Some((fresh.clone(), Instant::now() + Duration::from_secs(3600)));
                        fresh
                    }
                }
            };
            let value = HeaderValue::from_str(&format!("Bearer {secret}")).unwrap();
            request.headers_mut().insert(AUTHORIZATION, value);
            inner.call(request).await
        })
    }
}

fn token_value() -> String {
    // 800 bytes of base64url, as a typical JWT access token.
    (0..800)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i * 7 % 64] as char
        })
        .collect()
}

/// Drive a future to completion on this thread (busy-polling, no runtime overhead).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::hint::spin_loop();
    }
}

/// Time `iters` requests on each of `threads` threads, each with its own service from `make`,
/// and return the wall time (criterion divides it by `iters`).
fn run<S, M>(threads: usize, iters: u64, make: M) -> Duration
where
    M: Fn() -> S + Sync,
    S: FnMut() + Send,
{
    if threads == 1 {
        // On the bench thread itself: a thread spawned per sample starts with cold caches.
        let mut one = make();
        let start = Instant::now();
        for _ in 0..iters {
            one();
        }
        return start.elapsed();
    }
    let barrier = Barrier::new(threads + 1);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut one = make();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        one();
                    }
                    start.elapsed()
                })
            })
            .collect();
        barrier.wait();
        let times: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        times.iter().sum::<Duration>() / threads as u32
    })
}

/// One request through `service` (reused).
fn request_through<S>(mut service: S) -> impl FnMut() + Send
where
    S: Service<Request<()>> + Send,
    S::Future: Send,
{
    move || {
        let request = Request::new(());
        let _ = block_on(service.call(black_box(request)));
    }
}

/// One request through a fresh clone of `template`.
fn request_through_clone<S>(template: S) -> impl FnMut() + Send
where
    S: Service<Request<()>> + Clone + Send,
    S::Future: Send,
{
    move || {
        let mut service = template.clone();
        let request = Request::new(());
        let _ = block_on(service.call(black_box(request)));
    }
}

fn fast_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let value = token_value();
    let mut header = HeaderValue::from_str(&format!("Bearer {value}")).unwrap();
    header.set_sensitive(true);
    let set_header = SetRequestHeaderLayer::overriding(AUTHORIZATION, header).layer(NoOp);

    let set_header_boxed = tower::ServiceBuilder::new()
        .map_err(tower::BoxError::from)
        .service(set_header.clone());

    let cache = TokenCache::new(StaticToken::new(
        Token::new(value.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
    ));
    runtime.block_on(cache.token()).unwrap(); // fresh token in the cache
    let bearer = BearerAuthLayer::from_cache(cache).layer(NoOp);

    let naive = Naive {
        inner: NoOp,
        token: Arc::new(tokio::sync::Mutex::new(None)),
    };

    let mut group = c.benchmark_group("add_bearer_header");
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("limit/set_request_header", threads), |b| {
            b.iter_custom(|iters| run(threads, iters, || request_through(set_header.clone())))
        });
        group.bench_function(
            BenchmarkId::new("limit/set_request_header_box_error", threads),
            |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, || request_through(set_header_boxed.clone()))
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("bearer_auth/reused_service", threads),
            |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, || {
                        let mut service = bearer.clone();
                        // The service sees the token once; every request after that is the fast path.
                        let _ = block_on(service.call(Request::new(())));
                        request_through(service)
                    })
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("limit/set_request_header_clone_per_request", threads),
            |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, || request_through_clone(set_header.clone()))
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("bearer_auth/clone_per_request", threads),
            |b| {
                b.iter_custom(|iters| run(threads, iters, || request_through_clone(bearer.clone())))
            },
        );
        group.bench_function(
            BenchmarkId::new("naive/mutex_across_refresh", threads),
            |b| b.iter_custom(|iters| run(threads, iters, || request_through(naive.clone()))),
        );
    }
    group.finish();
}

criterion_group!(benches, fast_path);
criterion_main!(benches);
