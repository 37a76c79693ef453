//! The fast path against the limit, interleaved: on a shared VM the speed of the machine drifts
//! by more than the differences measured here between one criterion benchmark and the next, so
//! this runs every row in turn, round after round (in reverse order every other round), and
//! compares each row with the limit *within* each round: the ratio printed is the median of the
//! per-round ratios, which cancels drift slower than a round.
//!
//! ```sh
//! cargo bench --bench interleaved            # 15 rounds; ROUNDS=30 for more
//! ```
//!
//! Each round sends 200,000 requests per thread through each row, driven as `fast_path` drives
//! them (a task per thread on a tokio runtime, `ready().await` then `call(..).await`), and
//! records the mean time per request. Printed: each row's median and best round, and the median
//! of its per-round ratios to the limit (tower-http's static `SetRequestHeader`) for the same URI,
//! with the spread of those ratios (25th–75th percentile).

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use support::{
    ArcPerRequest, HTTPS, NoOp, RELATIVE, quartiles, runtime, through_runtime, token_value,
};
use tower::Layer;
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, source::StaticToken};

const REQUESTS: u64 = 200_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every bench target for its names
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let value = token_value();
    let set_header = support::limit(&value);
    let arc_per_request = ArcPerRequest {
        inner: set_header.clone(),
        handle: Arc::new(AtomicU64::new(0)),
    };

    println!("{rounds} interleaved rounds, {REQUESTS} requests per thread per round");
    println!(
        "| row | threads | median ns/request | best | vs limit (median of per-round ratios) | middle half of ratios |"
    );
    println!("|---|---|---|---|---|---|");
    for threads in [1usize, 2] {
        let rt = runtime(threads);
        let cache = TokenCache::new(StaticToken::new(
            Token::new(value.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
        ));
        rt.block_on(cache.token()).unwrap();
        let bearer = BearerAuthLayer::from_cache(cache.clone()).layer(NoOp);
        let allow_listed = BearerAuthLayer::from_cache(cache)
            .allow_origin(Origin::from_static("https://api.example.com"))
            .layer(NoOp);

        type Row<'a> = (&'static str, &'static str, Box<dyn Fn() -> Duration + 'a>);
        let rt = &rt;
        let rows: Vec<Row<'_>> = vec![
            (
                "limit",
                RELATIVE,
                Box::new(|| {
                    through_runtime(rt, threads, REQUESTS, RELATIVE, &|| set_header.clone())
                }),
            ),
            (
                "bearer_auth",
                RELATIVE,
                Box::new(|| through_runtime(rt, threads, REQUESTS, RELATIVE, &|| bearer.clone())),
            ),
            (
                "limit",
                HTTPS,
                Box::new(|| through_runtime(rt, threads, REQUESTS, HTTPS, &|| set_header.clone())),
            ),
            (
                "bearer_auth",
                HTTPS,
                Box::new(|| through_runtime(rt, threads, REQUESTS, HTTPS, &|| bearer.clone())),
            ),
            (
                "bearer_auth + allow-list",
                HTTPS,
                Box::new(|| {
                    through_runtime(rt, threads, REQUESTS, HTTPS, &|| allow_listed.clone())
                }),
            ),
            (
                "design/arc_per_request",
                HTTPS,
                Box::new(|| {
                    through_runtime(rt, threads, REQUESTS, HTTPS, &|| arc_per_request.clone())
                }),
            ),
        ];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
        let per_request = |d: Duration| d.as_secs_f64() * 1e9 / REQUESTS as f64;
        for round in 0..rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..rows.len()).collect()
            } else {
                (0..rows.len()).rev().collect()
            };
            for i in order {
                times[i].push(per_request((rows[i].2)()));
            }
        }
        for (i, (name, uri, _)) in rows.iter().enumerate() {
            let limit = rows
                .iter()
                .position(|(n, u, _)| *n == "limit" && u == uri)
                .unwrap();
            let mut ratios: Vec<f64> = (0..rounds).map(|r| times[i][r] / times[limit][r]).collect();
            let (q1, median, q3) = quartiles(&mut ratios);
            let mut own = times[i].clone();
            let (_, own_median, _) = quartiles(&mut own);
            let best = own[0];
            let uri_kind = if *uri == HTTPS { "https" } else { "relative" };
            println!(
                "| {name} ({uri_kind}) | {threads} | {own_median:.1} | {best:.1} | {median:.3}× | {q1:.3}–{q3:.3} |"
            );
        }
    }
}
