//! A token per destination: what a request to a known key costs on a fresh token, against the
//! limit (tower-http's static `SetRequestHeader`) and the single-cache `BearerAuth`, at 1 and 2
//! threads, driven as `fast_path` drives services (absolute `https` URIs, a task per thread,
//! `ready().await` then `call(..).await`).
//!
//! - `keyed/per_origin`: `BearerAuthLayer::per_origin` over three origins, every request to one
//!   of them (`https://api.example.com`).
//! - `keyed/per_request`: `BearerAuthLayer::per_request` with a closure matching the host.
//! - `keyed/per_origin_with_*`: `per_origin_with`, a closure over the origin (asked once per
//!   origin a service remembers).
//! - `keyed/per_path_*`: `per_request` with a closure reading the path (it runs for every
//!   request), one origin, the key in the path.
//! - `keyed/per_origin_alternating`: requests alternating between two origins through one
//!   service.
//! - `keyed/*_three`: requests to three origins in turn through one service, by origin and by
//!   closure (the issue-16 measurement: more destinations than a two-entry memo holds);
//!   `keyed/*_eight`, `keyed/*_twelve`: eight and twelve origins in turn; `limit/eight`: the
//!   limit with its requests sent to eight origins in turn (what the rotation itself costs).
//! - `*/clone_per_request`: the service cloned for each request from a template that never
//!   sends (`client.clone().oneshot(..)`).
//! - `keyed/fill_10000`: 10,000 keys used once each (a slot created, its token fetched), printed
//!   first in milliseconds; `keyed/fill_10000_slots_only`: the slots alone (`cache(&key)`).
//!
//! ```sh
//! cargo bench --bench keyed                 # criterion
//! ROUNDS=15 cargo bench --bench keyed       # interleaved rounds: medians of per-round ratios
//! ```

mod support;

use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use http::{Request, Uri};
use support::{CloneEach, HTTPS, NoOp, quartiles, runtime, through_runtime, token_value};
use tower::{Layer, Service};
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, source::StaticToken};

const REQUESTS: u64 = 200_000;

fn fresh(value: &str) -> StaticToken {
    StaticToken::new(Token::new(value.to_owned()).with_expires_in(Duration::from_secs(24 * 3600)))
}

/// A service that sends its requests to `uris` in turn (the first is the request's own), to
/// measure a service serving several destinations. The URIs are parsed once: a request's costs
/// only a clone of a static `Uri` (no reference count), as the rows' own request does.
#[derive(Clone)]
struct Rotate<S>(S, &'static [Uri], usize);

impl<S: Service<Request<()>>> Service<Request<()>> for Rotate<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, mut request: Request<()>) -> Self::Future {
        self.2 = (self.2 + 1) % self.1.len();
        if self.2 != 0 {
            *request.uri_mut() = self.1[self.2].clone();
        }
        self.0.call(request)
    }
}

/// The keys of the origins requests go to in turn in the `*_eight` and `*_twelve` rows
/// (`https://{key}.example.com`), the first being `HTTPS`'s.
const ORIGIN_KEYS: [&str; 12] = [
    "api", "search", "files", "mail", "maps", "docs", "news", "shop", "chat", "meet", "drive",
    "photos",
];

/// The URIs of the first `n` of `ORIGIN_KEYS`.
fn uris(n: usize) -> &'static [Uri] {
    let uris: Vec<Uri> = ORIGIN_KEYS[..n]
        .iter()
        .map(|key| Uri::from_static(format!("https://{key}.example.com/v1/items").leak()))
        .collect();
    uris.leak()
}

/// `https://api.example.com/{key}/items` for the first `n` of `ORIGIN_KEYS`: one origin, the key
/// in the path.
fn path_uris(n: usize) -> &'static [Uri] {
    let uris: Vec<Uri> = ORIGIN_KEYS[..n]
        .iter()
        .map(|key| Uri::from_static(format!("https://api.example.com/{key}/items").leak()))
        .collect();
    uris.leak()
}

type Row<'a> = (&'static str, Box<dyn Fn(u64) -> Duration + 'a>);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let value = token_value();
    let set_header = support::limit(&value);
    let rounds: Option<usize> = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok());
    fill(&value);
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for threads in [1usize, 2] {
        let rt = runtime(threads);
        let single = TokenCache::new(fresh(&value));
        rt.block_on(single.token()).unwrap();
        let value2 = value.clone();
        let keyed = KeyedTokenCache::new(move |_: &&'static str| Ok(fresh(&value2)));
        for key in ORIGIN_KEYS {
            rt.block_on(keyed.token(&key)).unwrap();
        }
        let origins = ORIGIN_KEYS.map(|key| {
            let origin = format!("https://{key}.example.com");
            (origin.parse::<Origin>().unwrap(), key)
        });
        let bearer = BearerAuthLayer::from_cache(single).layer(NoOp);
        let per_origin = BearerAuthLayer::per_origin(keyed.clone(), origins.clone()).layer(NoOp);
        let per_request = BearerAuthLayer::per_request(keyed.clone(), |dest| {
            let key = dest.host()?.strip_suffix(".example.com")?;
            ORIGIN_KEYS.into_iter().find(|k| *k == key)
        })
        .layer(NoOp);
        // A closure over the origin: asked once per origin a service remembers.
        let per_origin_with = BearerAuthLayer::per_origin_with(keyed.clone(), |origin| {
            let key = origin.host().strip_suffix(".example.com")?;
            ORIGIN_KEYS.into_iter().find(|k| *k == key)
        })
        .layer(NoOp);
        let origin_with_three = Rotate(per_origin_with.clone(), uris(3), 0);
        let origin_with_twelve = Rotate(per_origin_with.clone(), uris(12), 0);
        // A closure that reads the path: it runs for every request.
        let per_path = BearerAuthLayer::per_request(keyed.clone(), |dest| {
            let key = dest.path().split('/').nth(1)?;
            ORIGIN_KEYS.into_iter().find(|k| *k == key)
        })
        .layer(NoOp);
        let path_three = Rotate(per_path.clone(), path_uris(3), 0);
        let path_twelve = Rotate(per_path.clone(), path_uris(12), 0);
        let alternating = Rotate(per_origin.clone(), uris(2), 0);
        let origin_three = Rotate(per_origin.clone(), uris(3), 0);
        let request_three = Rotate(per_request.clone(), uris(3), 0);
        let limit_eight = Rotate(set_header.clone(), uris(8), 0);
        let origin_eight = Rotate(per_origin.clone(), uris(8), 0);
        let request_eight = Rotate(per_request.clone(), uris(8), 0);
        let origin_twelve = Rotate(per_origin.clone(), uris(12), 0);
        let request_twelve = Rotate(per_request.clone(), uris(12), 0);
        let bearer_each = CloneEach(bearer.clone());
        let per_origin_each = CloneEach(per_origin.clone());

        let rt = &rt;
        let rows: Vec<Row<'_>> = vec![
            (
                "limit",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| set_header.clone())),
            ),
            (
                "limit/eight",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| limit_eight.clone())),
            ),
            (
                "bearer_auth",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| bearer.clone())),
            ),
            (
                "keyed/per_origin",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| per_origin.clone())),
            ),
            (
                "keyed/per_request",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| per_request.clone())),
            ),
            (
                "keyed/per_origin_alternating",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| alternating.clone())),
            ),
            (
                "keyed/per_origin_three",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| origin_three.clone())),
            ),
            (
                "keyed/per_request_three",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| request_three.clone())),
            ),
            (
                "keyed/per_origin_eight",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| origin_eight.clone())),
            ),
            (
                "keyed/per_request_eight",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| request_eight.clone())),
            ),
            (
                "keyed/per_origin_twelve",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| origin_twelve.clone())),
            ),
            (
                "keyed/per_request_twelve",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| request_twelve.clone())),
            ),
            (
                "keyed/per_origin_with_three",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| origin_with_three.clone())),
            ),
            (
                "keyed/per_origin_with_twelve",
                Box::new(|n| {
                    through_runtime(rt, threads, n, HTTPS, &|| origin_with_twelve.clone())
                }),
            ),
            (
                "keyed/per_path_three",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| path_three.clone())),
            ),
            (
                "keyed/per_path_twelve",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| path_twelve.clone())),
            ),
            (
                "bearer_auth/clone_per_request",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| bearer_each.clone())),
            ),
            (
                "keyed/per_origin_clone_per_request",
                Box::new(|n| through_runtime(rt, threads, n, HTTPS, &|| per_origin_each.clone())),
            ),
        ];
        match rounds {
            Some(rounds) => interleaved(&rows, rounds, threads),
            None => {
                let mut group = criterion.benchmark_group("keyed");
                for (name, row) in &rows {
                    group.bench_function(BenchmarkId::new(*name, format!("{threads}t")), |b| {
                        b.iter_custom(|iters| black_box(row(iters)))
                    });
                }
                group.finish();
            }
        }
    }
    criterion.final_summary();
}

/// Filling a keyed cache: 10,000 keys, each used once (a slot created, its token fetched), on
/// a current-thread runtime; and the same keys' slots only (`cache(&key)`: no fetch). The
/// median of 5 fills, each into a new cache.
fn fill(value: &str) {
    const KEYS: u32 = 10_000;
    // Fills of a fresh cache each: on a shared machine a median of 5 moved by ±30 %.
    const FILLS: usize = 11;
    let rt = runtime(1);
    for fetch in [true, false] {
        let mut times: Vec<f64> = (0..FILLS)
            .map(|_| {
                let value = value.to_owned();
                let keyed = KeyedTokenCache::builder(move |_: &u32| Ok(fresh(&value)))
                    .max_keys(KEYS as usize)
                    .build();
                let start = std::time::Instant::now();
                rt.block_on(async {
                    for key in 0..KEYS {
                        match fetch {
                            true => drop(keyed.token(&key).await.unwrap()),
                            false => drop(keyed.cache(&key).unwrap()),
                        }
                    }
                });
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let (_, median, _) = quartiles(&mut times);
        let row = if fetch {
            "fill_10000"
        } else {
            "fill_10000_slots_only"
        };
        let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| keyed/{row} | 1 | {median:.1} ms (median of {FILLS}; fastest {fastest:.1} ms) |"
        );
    }
}

/// Every row in turn, round after round (reversed every other round); prints each row's median
/// and the median (and middle half) of its per-round ratios to the limit.
fn interleaved(rows: &[Row<'_>], rounds: usize, threads: usize) {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let per_request = |d: Duration| d.as_secs_f64() * 1e9 / REQUESTS as f64;
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len()).rev().collect()
        };
        for i in order {
            times[i].push(per_request((rows[i].1)(REQUESTS)));
        }
    }
    for (i, (name, _)) in rows.iter().enumerate() {
        let mut ratios: Vec<f64> = (0..rounds).map(|r| times[i][r] / times[0][r]).collect();
        let (q1, median, q3) = quartiles(&mut ratios);
        let (_, own, _) = quartiles(&mut times[i].clone());
        println!("| {name} | {threads} | {own:.1} ns | {median:.3}× | {q1:.3}–{q3:.3} |");
    }
}
