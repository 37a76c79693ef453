//! DPoP-bound tokens (RFC 9449) end to end, against an embedded authorization server and API
//! on 127.0.0.1 that verify every proof (signature with the `jwk`, `htm`, `htu`, `iat`, `jti`
//! replay, `ath`, nonces) and bind tokens to the key.
//!
//!     cargo run --example dpop --features dpop,reqwest-middleware
//!
//! Prints the key's thumbprint, one answer through a hyper-util client (tower layer) and one
//! through reqwest, and how many calls each server saw: the API asks for a nonce once, and
//! the nonce is remembered from then on.

#[allow(dead_code)]
#[path = "../tests/dpop/server.rs"]
mod server;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::dpop::{Dpop, DpopKey};
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{BearerAuthLayer, BearerAuthMiddleware, TokenCache};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let server = server::start(server::Config {
        nonce_at_api: true,
        ..Default::default()
    })
    .await;

    // The key: generated here; `DpopKey::es256_pem(..)` loads one that survives restarts.
    let dpop = Dpop::new(DpopKey::generate()?);
    println!(
        "DPoP key {} with thumbprint {}",
        dpop.key().algorithm(),
        dpop.key().thumbprint()
    );

    // Token requests carry a proof; only a `DPoP` token type is accepted, and the tokens are
    // bound to the key: the layer and the middleware send them as DPoP.
    let source =
        ClientCredentials::builder(server.token_url(), ClientAuth::none("my-public-client"))
            .scope("orders:read")
            .dpop(dpop)
            .build()?;
    let cache = TokenCache::new(source);

    // tower: `Authorization: DPoP <token>` and a fresh proof (with `ath`) per request;
    // `replay_on_401` copies bodies, so a nonce challenge is answered at once.
    let mut hyper = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()).replay_on_401())
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let request = Request::get(server.url("/api/orders?page=1")).body(Full::default())?;
    let response = hyper.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("hyper-util: {status} {}", String::from_utf8_lossy(&body));

    // reqwest: the same cache, token and key.
    let reqwest = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(cache).replay_on_401())
        .build();
    let response = reqwest.get(server.url("/api/orders/7")).send().await?;
    println!(
        "reqwest:    {} {}",
        response.status(),
        response.text().await?
    );

    println!(
        "token endpoint calls: {}, API calls: {} (the first answered use_dpop_nonce, once)",
        server.token_calls(),
        server.api_calls()
    );
    assert!(server.refusals().is_empty());
    Ok(())
}
