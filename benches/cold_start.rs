//! Cold start: 10,000 concurrent first requests through one `BearerAuth` whose cache has no
//! token yet. Measured: the time from spawning them until all are served, on a multi-thread
//! runtime with 2 workers; and the number of token fetches they caused (asserted to be 1).
//!
//! - `from_fn/0ms` and `from_fn/20ms`: a source that answers at once, or after 20 ms (a token
//!   endpoint's usual latency);
//! - `http/client_credentials`: the `client_credentials` source against a real token endpoint
//!   on 127.0.0.1 (axum), over reqwest.
//!
//!     cargo bench --bench cold_start
//!
//! Each sample is one whole cold start: a new cache, 10,000 spawned requests.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Uri};
use support::{HTTPS, NoOp, runtime, token_value};
use tower::{Layer, ServiceExt};
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials, from_fn};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, TokenSource};

const REQUESTS: usize = 10_000;

/// One cold start over `cache`: the time until all `REQUESTS` are served.
fn cold_start<P: TokenSource>(rt: &tokio::runtime::Runtime, cache: TokenCache<P>) -> Duration {
    let svc = BearerAuthLayer::from_cache(cache).layer(NoOp);
    let uri = Uri::from_static(HTTPS);
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let (svc, uri) = (svc.clone(), uri.clone());
                tokio::spawn(async move {
                    let request = Request::builder().uri(uri).body(()).unwrap();
                    svc.oneshot(request).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        started.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime(2);
    let mut group = c.benchmark_group("cold_start_10k");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    for latency_ms in [0u64, 20] {
        let fetches = Arc::new(AtomicUsize::new(0));
        let starts = Arc::new(AtomicUsize::new(0));
        group.bench_function(
            BenchmarkId::new("from_fn", format!("{latency_ms}ms")),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let counter = Arc::new(AtomicUsize::new(0));
                        let (seen, value) = (counter.clone(), token_value());
                        let cache = TokenCache::new(from_fn(move || {
                            seen.fetch_add(1, Ordering::SeqCst);
                            let value = value.clone();
                            async move {
                                tokio::time::sleep(Duration::from_millis(latency_ms)).await;
                                Ok::<_, Error>(
                                    Token::new(value).with_expires_in(Duration::from_secs(3600)),
                                )
                            }
                        }));
                        total += cold_start(&rt, cache);
                        assert_eq!(
                            counter.load(Ordering::SeqCst),
                            1,
                            "one fetch per cold start"
                        );
                        fetches.fetch_add(1, Ordering::SeqCst);
                        starts.fetch_add(1, Ordering::SeqCst);
                    }
                    total
                })
            },
        );
        println!(
            "from_fn/{latency_ms}ms: {} cold starts of {REQUESTS} requests, {} token fetches",
            starts.load(Ordering::SeqCst),
            fetches.load(Ordering::SeqCst)
        );
    }

    // A real token endpoint on 127.0.0.1.
    let hits = Arc::new(AtomicUsize::new(0));
    let url = {
        let hits = hits.clone();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/token",
                axum::routing::post(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async {
                        axum::Json(serde_json::json!({
                            "access_token": token_value(),
                            "token_type": "Bearer",
                            "expires_in": 3600,
                        }))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}/token")
        })
    };
    let starts = AtomicUsize::new(0);
    group.bench_function(BenchmarkId::new("http", "client_credentials"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let auth = ClientAuth::client_secret_post("bench", ClientSecret::new("s3cret"));
                let source = ClientCredentials::builder(&url, auth).build().unwrap();
                let before = hits.load(Ordering::SeqCst);
                total += cold_start(&rt, TokenCache::new(source));
                assert_eq!(hits.load(Ordering::SeqCst) - before, 1, "one token request");
                starts.fetch_add(1, Ordering::SeqCst);
            }
            total
        })
    });
    println!(
        "http/client_credentials: {} cold starts of {REQUESTS} requests, {} token requests",
        starts.load(Ordering::SeqCst),
        hits.load(Ordering::SeqCst)
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
