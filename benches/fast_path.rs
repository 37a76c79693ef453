//! The cost of "add one header", side by side, driven as users drive a service: a task on a
//! tokio runtime calling `svc.ready().await?.call(req).await` in a loop, at 1 thread (a
//! current-thread runtime) and 2 (a multi-thread runtime with 2 workers, one task on each).
//!
//! - `limit/*`: tower-http's static `SetRequestHeader` (clone a prebuilt `HeaderValue`, insert
//!   it): the physical limit.
//! - `bearer_auth/*`: `BearerAuth` with a fresh token: `relative` URIs, absolute `https` URIs as
//!   hyper-util's client needs them, and absolute `https` with an origin allow-list.
//!   `https_box_source` is `bearer_auth/https` with the source behind a `BoxTokenSource`: the
//!   boxed source is called once per refresh, so the row should match `bearer_auth/https`.
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

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Request;
use support::{
    ArcPerRequest, CloneEach, HTTPS, Naive, NoOp, RELATIVE, runtime, through_runtime, token_value,
};
use tower::{Layer, Service};
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, TokenSource, source::StaticToken};

fn add_bearer_header(c: &mut Criterion) {
    let value = token_value();
    let set_header = support::limit(&value);
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
        let boxed_cache = TokenCache::new(
            StaticToken::new(
                Token::new(value.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
            )
            .boxed(),
        );
        rt.block_on(boxed_cache.token()).unwrap();
        let boxed = BearerAuthLayer::from_cache(boxed_cache).layer(NoOp);
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
            "bearer_auth/https_box_source",
            threads,
            HTTPS,
            || boxed.clone(),
        );
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

criterion_group!(benches, add_bearer_header, guard_candidates);
criterion_main!(benches);
