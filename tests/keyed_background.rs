//! A keyed cache in background mode against a real token endpoint on 127.0.0.1: a slot that
//! was evicted, or that nobody uses, never fetches (issue 16).
#![cfg(feature = "reqwest")]

#[path = "sources/common.rs"]
mod common;

use std::time::Duration;

use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};

use common::{TokenServer, json};

/// `max_keys(1)`, background refresh, 2 s tokens (refreshed every second in background mode):
/// key `a` used once and still held, as a service's memo holds its slot, then evicted by key
/// `b`, used once too. Nothing is requested for 4 s: the endpoint sees the two first fetches
/// and nothing else (before the fix: each slot's timer fetched every second, evicted or not).
#[tokio::test]
async fn an_evicted_or_unused_slot_never_calls_the_token_endpoint() {
    let server = TokenServer::start("/token", |recorded, n| {
        let audience = recorded.get("audience").unwrap_or("none").to_owned();
        json(serde_json::json!({
            "access_token": format!("tok-{audience}-{n}"),
            "token_type": "Bearer",
            "expires_in": 2,
        }))
    })
    .await;
    let url = server.url.clone();
    let cache = KeyedTokenCache::builder(move |audience: &&'static str| {
        ClientCredentials::builder(
            url.clone(),
            ClientAuth::client_secret_post("client", ClientSecret::new("secret")),
        )
        .audience(*audience)
        .build()
    })
    .max_keys(1)
    .cache(|_, slot| slot.background_refresh(true).jitter(Duration::ZERO))
    .build();

    let memo = cache.cache(&"a").unwrap();
    memo.token().await.unwrap();
    cache.token(&"b").await.unwrap();
    assert!(memo.source().is_evicted());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        server.requests.lock().unwrap().len(),
        2,
        "no fetch without a request"
    );
}
