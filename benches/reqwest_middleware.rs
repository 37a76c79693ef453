//! The reqwest-middleware path against a bare reqwest client, on a local server: sequential
//! `GET`s over one keep-alive connection to an axum server on 127.0.0.1 answering `ok`.
//!
//! - `bare_reqwest`: `reqwest::Client`, no token;
//! - `bare_reqwest_bearer_auth`: the same with a static `.bearer_auth(token)` per request (what
//!   users write without this crate);
//! - `middleware_none`: `reqwest_middleware::ClientWithMiddleware` without any middleware;
//! - `middleware_bearer`: `ClientWithMiddleware` with `BearerAuthMiddleware` and a fresh token.
//!
//!     cargo bench --bench reqwest_middleware --features reqwest-middleware
//!
//! Token: 800 bytes.

mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use support::{runtime, token_value};
use tower_bearer::source::StaticToken;
use tower_bearer::{BearerAuthMiddleware, Token, TokenCache};

fn bench(c: &mut Criterion) {
    let rt = runtime(1);
    let url = rt.block_on(async {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/")
    });
    let value = token_value();
    let bare = reqwest::Client::new();
    let plain_middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
    let cache = TokenCache::new(StaticToken::new(
        Token::new(value.clone()).with_expires_in(Duration::from_secs(24 * 3600)),
    ));
    rt.block_on(cache.token()).unwrap();
    let with_bearer = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(cache))
        .build();

    let mut group = c.benchmark_group("reqwest_local_get");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("bare_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r = bare.get(&url).send().await.unwrap();
            r.bytes().await.unwrap()
        })
    });
    group.bench_function("bare_reqwest_bearer_auth", |b| {
        b.to_async(&rt).iter(|| async {
            let r = bare.get(&url).bearer_auth(&value).send().await.unwrap();
            r.bytes().await.unwrap()
        })
    });
    group.bench_function("middleware_none", |b| {
        b.to_async(&rt).iter(|| async {
            let r = plain_middleware.get(&url).send().await.unwrap();
            r.bytes().await.unwrap()
        })
    });
    group.bench_function("middleware_bearer", |b| {
        b.to_async(&rt).iter(|| async {
            let r = with_bearer.get(&url).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
