//! The fleet tier's costs, against a real `redis-server` this bench starts on loopback:
//!
//! 1. **The per-request fast path with the fleet tier enabled**, interleaved against the limit
//!    (tower-http's static `SetRequestHeader`) and against `BearerAuth` without the tier, as
//!    `interleaved` measures them: the tier is consulted only when a refresh is due, so the
//!    ratio must not move.
//! 2. **What a refresh costs** (criterion): a refresh from the source alone (the cache's own
//!    work: spawn, install, wake), through the fleet with this process holding the lease (read,
//!    lease, read again, publish, release: five round trips and a script), and through the
//!    fleet taking a token another replica published (one read).
//!
//! ```sh
//! cargo bench --bench fleet --features redis      # ROUNDS=20 for more interleaved rounds
//! ```
//!
//! Needs `redis-server` on the PATH.

mod support;

#[path = "../tests/fleet/support.rs"]
mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use support::{HTTPS, NoOp, interleave, quartiles, runtime, through_runtime, token_value};
use tower::Layer;
use tower_bearer::fleet::RedisFleet;
use tower_bearer::source::{StaticToken, from_fn};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, TokenSource};

const REQUESTS: u64 = 200_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let redis = redis_support::RedisServer::start();
    fast_path(&redis.url());
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    refresh_costs(&mut criterion, &redis.url());
    criterion.final_summary();
}

fn fleet(url: &str, identity: &str) -> RedisFleet {
    RedisFleet::new(url, identity).unwrap()
}

fn fast_path(url: &str) {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let value = token_value();
    let set_header = support::limit(&value);
    println!("{rounds} interleaved rounds, {REQUESTS} requests per thread per round, https URIs");
    println!(
        "| row | threads | median ns/request | vs limit (median of per-round ratios) | middle half |"
    );
    println!("|---|---|---|---|---|");
    for threads in [1usize, 2] {
        let rt = runtime(threads);
        let token = || {
            StaticToken::new(Token::new(value.clone()).with_expires_in(Duration::from_secs(86_400)))
        };
        let plain = TokenCache::new(token());
        let fleeted = TokenCache::builder(token())
            .fleet(fleet(url, &format!("fast-path-{threads}")))
            .build();
        rt.block_on(plain.token()).unwrap();
        rt.block_on(fleeted.token()).unwrap();
        let bearer = BearerAuthLayer::from_cache(plain).layer(NoOp);
        let with_fleet = BearerAuthLayer::from_cache(fleeted).layer(NoOp);

        type Row<'a> = (&'static str, Box<dyn Fn() -> Duration + 'a>);
        let rt = &rt;
        let rows: Vec<Row<'_>> = vec![
            (
                "limit",
                Box::new(|| through_runtime(rt, threads, REQUESTS, HTTPS, &|| set_header.clone())),
            ),
            (
                "bearer_auth",
                Box::new(|| through_runtime(rt, threads, REQUESTS, HTTPS, &|| bearer.clone())),
            ),
            (
                "bearer_auth + fleet tier",
                Box::new(|| through_runtime(rt, threads, REQUESTS, HTTPS, &|| with_fleet.clone())),
            ),
        ];
        let timers: Vec<&dyn Fn() -> Duration> = rows.iter().map(|row| &*row.1).collect();
        let times = interleave(&timers, rounds, REQUESTS);
        for (i, (name, _)) in rows.iter().enumerate() {
            let mut ratios: Vec<f64> = (0..rounds).map(|r| times[i][r] / times[0][r]).collect();
            let (q1, median, q3) = quartiles(&mut ratios);
            let (_, own, _) = quartiles(&mut times[i].clone());
            println!("| {name} | {threads} | {own:.1} | {median:.3}× | {q1:.3}–{q3:.3} |");
        }
    }
}

/// A source that answers at once with a new token each time: the refresh's own cost.
fn counting() -> impl TokenSource {
    let n = Arc::new(AtomicU64::new(0));
    from_fn(move || {
        let n = n.fetch_add(1, Ordering::Relaxed);
        async move {
            Ok::<_, Error>(
                Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600)),
            )
        }
    })
}

/// Drop the current token as a 401 would, and wait for the refresh that replaces it.
async fn refresh<P: TokenSource>(cache: &TokenCache<P>) {
    let seen = cache.token().await.unwrap();
    cache.invalidate(&seen);
    cache.token().await.unwrap();
}

fn refresh_costs(c: &mut Criterion, url: &str) {
    let rt = runtime(1);
    let mut group = c.benchmark_group("refresh");

    let alone = TokenCache::new(counting());
    group.bench_function("source_only", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    refresh(&alone).await;
                }
                start.elapsed()
            })
        })
    });

    let leased = TokenCache::builder(counting())
        .fleet(fleet(url, "bench-leased"))
        .build();
    group.bench_function("fleet_leased_fetch", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    refresh(&leased).await;
                }
                start.elapsed()
            })
        })
    });

    // Replica `a` fetches and publishes (not timed); replica `b` takes the token (timed).
    let a = TokenCache::builder(counting())
        .fleet(fleet(url, "bench-shared"))
        .build();
    let b_cache = TokenCache::builder(counting())
        .fleet(fleet(url, "bench-shared"))
        .build();
    group.bench_function("fleet_shared_take", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    refresh(&a).await;
                    let seen = b_cache.token().await.unwrap();
                    let start = Instant::now();
                    b_cache.invalidate(&seen);
                    let taken = b_cache.token().await.unwrap();
                    timed += start.elapsed();
                    debug_assert_eq!(taken.secret(), a.current().unwrap().secret());
                }
                timed
            })
        })
    });
    group.finish();
}
