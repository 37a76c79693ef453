//! Instructions per request, counted by callgrind: repeatable on a busy or noisy machine, where
//! wall-clock figures are not. Runs `N` requests through one service on a current-thread
//! runtime, driven as users drive it (`ready().await`, then `call(..).await`, in a task).
//!
//! ```sh
//! cargo bench --bench instructions --no-run
//! BIN=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -1)
//! for row in limit bearer bearer_allow_list per_origin_1 per_origin_3 per_origin_12 \
//!     per_origin_64 per_origin_with_3 per_origin_with_12 per_request_1 per_request_3 \
//!     per_request_12 per_cheap_3 per_cheap_12 per_path_1 per_path_3 per_path_12; do
//!   for n in 100000 200000; do
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null $BIN $row $n 2>&1 | grep refs
//!   done
//! done
//! ```
//!
//! The difference between the two counts of a row, divided by 100,000, is the per-request cost
//! with setup taken out. Without arguments (as `cargo bench` runs it) it does nothing.

mod support;

use std::hint::black_box;
use std::time::Duration;

use http::{Request, Uri};
use support::{CloneEach, NoOp};
use tower::{Layer, Service, ServiceExt};
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, source::StaticToken};

async fn drive<S>(svc: S, n: u64)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    drive_among(svc, n, &["api"]).await
}

/// `n` requests through one service, to `https://{host}.example.com` for each of `hosts` in
/// turn.
async fn drive_among<S>(svc: S, n: u64, hosts: &[&str])
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let uris = hosts
        .iter()
        .map(|host| format!("https://{host}.example.com/v1/items"))
        .collect();
    drive_to(svc, n, uris).await
}

/// `n` requests through one service, to each of `uris` in turn.
async fn drive_to<S>(mut svc: S, n: u64, uris: Vec<String>)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let uris: Vec<Uri> = uris.iter().map(|uri| uri.parse().unwrap()).collect();
    for i in 0..n {
        let uri = &uris[i as usize % uris.len()];
        let request = Request::builder().uri(uri.clone()).body(()).unwrap();
        let svc = svc.ready().await.unwrap();
        let _ = black_box(svc.call(black_box(request)).await);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(row), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = "A".repeat(800);
    let cache = TokenCache::new(StaticToken::new(
        Token::new(token.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
    ));
    rt.block_on(cache.token()).unwrap();
    let limit = support::limit(&token);
    rt.block_on(rt.spawn(async move {
        match row.as_str() {
            "limit" => drive(limit, n).await,
            "bearer" => drive(BearerAuthLayer::from_cache(cache).layer(NoOp), n).await,
            // The service cloned for each request from a template that never sends, as
            // `client.clone().oneshot(..)` does.
            "bearer_clone" => {
                drive(CloneEach(BearerAuthLayer::from_cache(cache).layer(NoOp)), n).await
            }
            "bearer_allow_list" => {
                let layer = BearerAuthLayer::from_cache(cache)
                    .allow_origin(Origin::from_static("https://api.example.com"));
                drive(layer.layer(NoOp), n).await
            }
            // Keyed caches, one service taking turns among destinations (`per_origin_3`: three
            // origins; `per_origin_with_3`: a closure over the origin, asked once per origin;
            // `per_request_3`: a closure over the host and `per_path_3` one over the path,
            // which run for every request).
            keyed if keyed.starts_with("per_") => {
                let (route, count) = keyed.rsplit_once('_').unwrap_or((keyed, "1"));
                let count: usize = count.parse().unwrap_or(1);
                let hosts: Vec<&'static str> = (0..count)
                    .map(|i| &*Box::leak(format!("h{i}").into_boxed_str()))
                    .collect();
                let tokens = KeyedTokenCache::new(move |_: &&'static str| {
                    Ok(StaticToken::new(
                        Token::new(token.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
                    ))
                });
                for host in &hosts {
                    tokens.token(host).await.unwrap();
                }
                let known = hosts.clone();
                let find = move |name: &str| known.iter().find(|h| **h == name).copied();
                match route {
                    "per_origin" | "per_origin_clone" => {
                        let origins = hosts.iter().map(|host| {
                            let origin = format!("https://{host}.example.com");
                            (origin.parse::<Origin>().unwrap(), *host)
                        });
                        let service = BearerAuthLayer::per_origin(tokens, origins).layer(NoOp);
                        if route == "per_origin" {
                            drive_among(service, n, &hosts).await
                        } else {
                            drive_among(CloneEach(service), n, &hosts).await
                        }
                    }
                    "per_origin_with" => {
                        let layer = BearerAuthLayer::per_origin_with(tokens, move |origin| {
                            find(origin.host().strip_suffix(".example.com")?)
                        });
                        drive_among(layer.layer(NoOp), n, &hosts).await
                    }
                    "per_request" => {
                        let layer = BearerAuthLayer::per_request(tokens, move |dest| {
                            find(dest.host()?.strip_suffix(".example.com")?)
                        });
                        drive_among(layer.layer(NoOp), n, &hosts).await
                    }
                    "per_path" => {
                        let layer = BearerAuthLayer::per_request(tokens, move |dest| {
                            find(dest.path().split('/').nth(1)?)
                        });
                        let uris = hosts
                            .iter()
                            .map(|host| format!("https://api.example.com/{host}/items"))
                            .collect();
                        drive_to(layer.layer(NoOp), n, uris).await
                    }
                    // A closure that costs next to nothing (the path's length picks the key):
                    // what the service itself costs by closure, the closure aside.
                    "per_cheap" => {
                        let keys = hosts.clone();
                        let layer = BearerAuthLayer::per_request(tokens, move |dest| {
                            keys.get(dest.path().len().checked_sub(2)?).copied()
                        });
                        let uris = (0..hosts.len())
                            .map(|i| format!("https://api.example.com/{}", "x".repeat(i + 1)))
                            .collect();
                        drive_to(layer.layer(NoOp), n, uris).await
                    }
                    other => panic!("unknown keyed row {other}"),
                }
            }
            other => panic!("unknown row {other}"),
        }
    }))
    .unwrap();
}
