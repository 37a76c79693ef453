//! Instructions per request, counted by callgrind: repeatable on a busy or noisy machine, where
//! wall-clock figures are not. Runs `N` requests through one service on a current-thread
//! runtime, driven as users drive it (`ready().await`, then `call(..).await`, in a task).
//!
//! ```sh
//! cargo bench --bench instructions --no-run
//! BIN=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -1)
//! for row in limit bearer bearer_allow_list; do
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
use support::NoOp;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, source::StaticToken};

async fn drive<S>(mut svc: S, n: u64)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let uri = Uri::from_static("https://api.example.com/v1/items");
    for _ in 0..n {
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
            "bearer_allow_list" => {
                let layer = BearerAuthLayer::from_cache(cache)
                    .allow_origin(Origin::from_static("https://api.example.com"));
                drive(layer.layer(NoOp), n).await
            }
            other => panic!("unknown row {other}"),
        }
    }))
    .unwrap();
}
