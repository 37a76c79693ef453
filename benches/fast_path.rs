//! The cost of "add one header", side by side, driven as users drive a service: a task on a
//! tokio runtime calling `svc.ready().await?.call(req).await` in a loop, at 1 thread (a
//! current-thread runtime) and 2 (a multi-thread runtime with 2 workers, one task on each).
//!
//! - `limit/*`: tower-http's static `SetRequestHeader` (clone a prebuilt `HeaderValue`, insert
//!   it): the physical limit.
//! - `bearer_auth/*`: `BearerAuth` with a fresh token: `relative` URIs, absolute `https` URIs as
//!   hyper-util's client needs them, and absolute `https` with an origin allow-list.
//!   `clone_per_request` clones the service for each request from a template that never sends
//!   (axum state, `client.clone().oneshot(..)`).
//! - `naive/mutex_across_refresh`: a `tokio::sync::Mutex` held across the check-and-refresh,
//!   the header formatted per request, a boxed future (Go's `ReuseTokenSource` design).
//! - `design/arc_per_request`: the limit plus what a response future holding a strong handle
//!   to the cache would add (an `Arc` clone per request, dropped with the future): the cost of
//!   the simple alternative to the cache registry.
//! - `guard/*`: the per-request clock reads that could guard a token's deadline.
//!
//!     cargo bench --bench fast_path
//!
//! Token: 800 bytes. Inner service: a no-op answering `http::Response<()>`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, Uri};
use tower::{Layer, Service, ServiceExt};
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, source::StaticToken};
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

/// The limit, plus a strong handle cloned into each response future and dropped with it.
#[derive(Clone)]
struct ArcPerRequest<S> {
    inner: S,
    handle: Arc<AtomicU64>,
}

impl<S: Service<Request<()>>> Service<Request<()>> for ArcPerRequest<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithHandle<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        WithHandle {
            future: self.inner.call(request),
            _handle: Arc::clone(&self.handle),
        }
    }
}

pin_project_lite::pin_project! {
    struct WithHandle<F> {
        #[pin]
        future: F,
        _handle: Arc<AtomicU64>,
    }
}

impl<F: Future> Future for WithHandle<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
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

const RELATIVE: &str = "/v1/items";
const HTTPS: &str = "https://api.example.com/v1/items";

/// A runtime with `threads` workers: a current-thread runtime for 1.
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    }
}

/// `iters` requests through each of `threads` services from `make`, each driven by its own task
/// (`ready().await` then `call(..).await`), all tasks at once; the mean time per task.
fn through_runtime<S, M>(
    rt: &tokio::runtime::Runtime,
    threads: usize,
    iters: u64,
    uri: &'static str,
    make: &M,
) -> Duration
where
    M: Fn() -> S + ?Sized,
    S: Service<Request<()>> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let uri = Uri::from_static(uri);
    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..threads)
        .map(|_| {
            let mut svc = make();
            let uri = uri.clone();
            let started = started.clone();
            // Spawned from outside the runtime: each goes to the shared queue, and the spin
            // below keeps a worker until the other task has been picked up by the other.
            rt.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                while started.load(Ordering::SeqCst) < threads {
                    std::hint::spin_loop();
                }
                let start = Instant::now();
                for _ in 0..iters {
                    let request = Request::builder().uri(uri.clone()).body(()).unwrap();
                    let svc = svc.ready().await.unwrap();
                    let _ = black_box(svc.call(black_box(request)).await);
                }
                start.elapsed()
            })
        })
        .collect();
    let times: Vec<Duration> = rt.block_on(async {
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times
    });
    times.iter().sum::<Duration>() / threads as u32
}

fn add_bearer_header(c: &mut Criterion) {
    let value = token_value();
    let mut header = HeaderValue::from_str(&format!("Bearer {value}")).unwrap();
    header.set_sensitive(true);
    let set_header = SetRequestHeaderLayer::overriding(AUTHORIZATION, header).layer(NoOp);
    let arc_per_request = ArcPerRequest {
        inner: set_header.clone(),
        handle: Arc::new(AtomicU64::new(0)),
    };
    let naive = Naive {
        inner: NoOp,
        token: Arc::new(tokio::sync::Mutex::new(None)),
    };

    let mut group = c.benchmark_group("add_bearer_header");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for threads in [1usize, 2] {
        let rt = runtime(threads);
        let cache = TokenCache::new(StaticToken::new(
            Token::new(value.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
        ));
        rt.block_on(cache.token()).unwrap(); // a fresh token in the cache
        let bearer = BearerAuthLayer::from_cache(cache.clone()).layer(NoOp);
        let allow_listed = BearerAuthLayer::from_cache(cache.clone())
            .allow_origin(Origin::from_static("https://api.example.com"))
            .layer(NoOp);

        let rt = &rt;
        let g = &mut group;
        row(g, rt, "limit/relative", threads, RELATIVE, || {
            set_header.clone()
        });
        row(g, rt, "bearer_auth/relative", threads, RELATIVE, || {
            bearer.clone()
        });
        row(g, rt, "limit/https", threads, HTTPS, || set_header.clone());
        row(g, rt, "bearer_auth/https", threads, HTTPS, || {
            bearer.clone()
        });
        row(
            g,
            rt,
            "bearer_auth/https_allow_list",
            threads,
            HTTPS,
            || allow_listed.clone(),
        );
        row(
            g,
            rt,
            "limit/https_clone_per_request",
            threads,
            HTTPS,
            || CloneEach(set_header.clone()),
        );
        row(
            g,
            rt,
            "bearer_auth/https_clone_per_request",
            threads,
            HTTPS,
            || CloneEach(bearer.clone()),
        );
        row(g, rt, "design/arc_per_request", threads, HTTPS, || {
            arc_per_request.clone()
        });
        row(g, rt, "naive/mutex_across_refresh", threads, HTTPS, || {
            naive.clone()
        });
    }
    group.finish();
}

/// The per-request clock reads that could guard a token's deadline, against an atomic load.
fn guard_candidates(c: &mut Criterion) {
    let mut group = c.benchmark_group("guard");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let word = AtomicU64::new(7);
    group.bench_function("atomic_load (the phase word alone)", |b| {
        b.iter(|| black_box(word.load(Ordering::Acquire)))
    });
    group.bench_function("coarse_clock (CLOCK_MONOTONIC_COARSE)", |b| {
        b.iter(|| black_box(coarsetime::Instant::now_without_cache_update()))
    });
    #[cfg(target_arch = "x86_64")]
    group.bench_function("tsc (rdtsc)", |b| {
        // SAFETY: `rdtsc` has no preconditions on x86_64.
        b.iter(|| black_box(unsafe { std::arch::x86_64::_rdtsc() }))
    });
    group.bench_function("std::time::Instant::now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    let rt = runtime(1);
    let _inside = rt.enter();
    group.bench_function("tokio::time::Instant::now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    group.finish();
}

/// One row of the table: `make` builds the service each task drives.
fn row<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    threads: usize,
    uri: &'static str,
    make: impl Fn() -> S,
) where
    S: Service<Request<()>> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    group.bench_function(BenchmarkId::new(name, threads), |b| {
        b.iter_custom(|iters| through_runtime(rt, threads, iters, uri, &make))
    });
}

/// A service cloned from a template for each request, as `client.clone().oneshot(req)` does.
#[derive(Clone)]
struct CloneEach<S>(S);

impl<S: Service<Request<()>> + Clone> Service<Request<()>> for CloneEach<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, request: Request<()>) -> Self::Future {
        let mut svc = self.0.clone();
        // A template clone is ready at once for every service here.
        let _ = svc.poll_ready(&mut Context::from_waker(std::task::Waker::noop()));
        svc.call(request)
    }
}

criterion_group!(benches, add_bearer_header, guard_candidates);
criterion_main!(benches);
