//! Request latency across a refresh under steady load: 32 tasks on a 2-worker runtime send
//! requests back to back through one `BearerAuth` for 400 ms, while the token is refreshed by a
//! source that takes 200 ms. The latency of each request sent while the refresh runs is
//! recorded; criterion reports their mean, and the bench prints p50, p99 and the maximum over
//! all its samples.
//!
//! - `serve_stale`: the default design. The load starts just after the refresh window opened,
//!   so the 200 ms refresh runs in the background while every request is served with the
//!   current token: p99 must not contain those 200 ms (asserted: p99 < 50 ms).
//! - `wait_for_refresh`: no refresh window (`refresh_window(Duration::ZERO)`), so the refresh
//!   starts only when the token stops being usable, and the requests then wait for it: their
//!   latency contains the 200 ms.
//!
//!     cargo bench --bench refresh_under_load
//!
//! Each sample takes about 1.5–2.5 s of real time (a 2 s token, waited on until its window).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Uri};
use support::{HTTPS, NoOp, runtime, token_value};
use tower::{Layer, ServiceExt};
use tower_bearer::source::from_fn;
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache};

const TASKS: usize = 32;
const LOAD: Duration = Duration::from_millis(400);
const REFRESH_LATENCY: Duration = Duration::from_millis(200);
const LIFETIME: Duration = Duration::from_secs(2);

/// One run: a first token (fetched at once), then `LOAD` of requests from `start_after` on,
/// while the second fetch takes `REFRESH_LATENCY`. The latency of every request sent while
/// that refresh ran.
fn run(rt: &tokio::runtime::Runtime, serve_stale: bool) -> Vec<Duration> {
    let fetches = Arc::new(AtomicUsize::new(0));
    let refresh = Arc::new(Mutex::new(None));
    let (seen, value, span) = (fetches.clone(), token_value(), refresh.clone());
    let source = from_fn(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let (value, span) = (value.clone(), span.clone());
        async move {
            if n > 0 {
                let started = Instant::now();
                tokio::time::sleep(REFRESH_LATENCY).await;
                *span.lock().unwrap() = Some((started, Instant::now()));
            }
            Ok::<_, Error>(Token::new(value).with_expires_in(LIFETIME))
        }
    });
    let cache = TokenCache::builder(source)
        .refresh_window(if serve_stale {
            LIFETIME / 2
        } else {
            Duration::ZERO
        })
        .jitter(Duration::ZERO)
        .safety_margin(Duration::from_millis(100))
        .build();
    let svc = BearerAuthLayer::from_cache(cache.clone()).layer(NoOp);
    // Stale from 1 s (serve_stale), unusable from 1.9 s (wait_for_refresh): start a little
    // before, so that the refresh starts inside the load.
    let start_after = if serve_stale {
        Duration::from_millis(950)
    } else {
        Duration::from_millis(1850)
    };
    let uri = Uri::from_static(HTTPS);
    rt.block_on(async {
        let fetched = Instant::now();
        cache.token().await.unwrap();
        tokio::time::sleep_until((fetched + start_after).into()).await;
        let until = Instant::now() + LOAD;
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (svc, uri, latencies) = (svc.clone(), uri.clone(), latencies.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while Instant::now() < until {
                        let request = Request::builder().uri(uri.clone()).body(()).unwrap();
                        let sent = Instant::now();
                        svc.clone().oneshot(request).await.unwrap();
                        mine.push((sent, sent.elapsed()));
                        // Steady load, not a spin: let the other tasks and the refresh run.
                        tokio::task::yield_now().await;
                    }
                    latencies.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "one refresh inside the load"
        );
        let (from, to) = refresh.lock().unwrap().expect("the refresh ran");
        let latencies = latencies.lock().unwrap();
        latencies
            .iter()
            .filter(|(sent, _)| (from..to).contains(sent))
            .map(|(_, latency)| *latency)
            .collect()
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench(c: &mut Criterion) {
    let rt = runtime(2);
    let mut group = c.benchmark_group("refresh_under_load");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, serve_stale) in [("serve_stale", true), ("wait_for_refresh", false)] {
        let all = Mutex::new(Vec::new());
        group.bench_function(BenchmarkId::new(name, "refresh_200ms"), |b| {
            // Criterion's "iteration" is one request: the mean latency, scaled to `iters`.
            b.iter_custom(|iters| {
                let latencies = run(&rt, serve_stale);
                let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
                all.lock().unwrap().extend(latencies);
                mean * iters as u32
            })
        });
        let mut all = all.into_inner().unwrap();
        all.sort();
        let (p50, p99, max) = (
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            *all.last().unwrap(),
        );
        println!(
            "{name}: {} requests: p50 {p50:?}, p99 {p99:?}, max {max:?}",
            all.len()
        );
        if serve_stale {
            assert!(
                p99 < Duration::from_millis(50),
                "serve-stale p99 {p99:?} holds the refresh"
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
