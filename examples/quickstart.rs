//! The quickstart: a hyper-util client behind `BearerAuthLayer`, against an embedded token
//! server and an embedded API on 127.0.0.1. No network, no credentials.
//!
//!     cargo run --example quickstart
//!
//! It sends three bursts of 200 concurrent requests. Tokens live 4 seconds, so the cache
//! refreshes in the background between bursts while requests keep flowing. It prints what
//! happened (never a token):
//!
//!     token server  : http://127.0.0.1:41235/oauth2/token
//!     api server    : http://127.0.0.1:41236/hello
//!     burst 1: 200 requests, 200 accepted, token fetches so far: 1
//!     burst 2: 200 requests, 200 accepted, token fetches so far: 2
//!     burst 3: 200 requests, 200 accepted, token fetches so far: 3
//!     600 requests in 5.7s, 600 accepted by the API, 0 rejected
//!     3 token fetches: 1 at start-up (shared by the first 200 requests), 2 in the background
//!     while requests went on with the current token
//!
//! Set `RUST_LOG=tower_bearer=debug` to watch the cache's own trace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, source::from_fn};

/// How long the embedded token server's tokens live.
const TOKEN_LIFETIME: Duration = Duration::from_secs(4);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_bearer=info".into()),
        )
        .with_target(false)
        .init();

    let issued = Issued::default();
    let token_addr = serve(token_server(issued.clone())).await?;
    let api_addr = serve(api_server(issued.clone())).await?;
    println!("token server  : http://{token_addr}/oauth2/token");
    println!("api server    : http://{api_addr}/hello");

    // One hyper-util client, used for the token endpoint and (wrapped) for the API.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    // The token source: POST client credentials, read `access_token` and `expires_in`.
    // (The crate's built-in OAuth 2.0 sources do this for you; this shows the raw trait.)
    let token_url = format!("http://{token_addr}/oauth2/token");
    let token_client = http.clone();
    let source = from_fn(move || {
        let (client, url) = (token_client.clone(), token_url.clone());
        async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(
                    b"grant_type=client_credentials",
                )))
                .map_err(|e| Error::config("bad token request").with_source(e))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| Error::transient("cannot reach the token endpoint").with_source(e))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::transient("token response cut short").with_source(e))?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::transient("the token endpoint failed").with_status(status));
            }
            #[derive(serde::Deserialize)]
            struct TokenResponse {
                access_token: String,
                expires_in: u64,
            }
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
                Error::invalid_response("the token response is not the JSON we expect")
            })?;
            Ok(Token::new(parsed.access_token)
                .with_expires_in(Duration::from_secs(parsed.expires_in)))
        }
    });

    // The cache: refresh 2 s before expiry (it is never more than half the 4 s lifetime),
    // 0.5 s of jitter. Share it by cloning; here one layer is enough.
    let cache = TokenCache::builder(source)
        .refresh_window(Duration::from_secs(2))
        .jitter(Duration::from_millis(500))
        .safety_margin(Duration::from_millis(500))
        .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()))
        .service(http);

    let api_url = format!("http://{api_addr}/hello");
    let (mut sent, mut accepted) = (0, 0);
    let started = Instant::now();
    for burst in 1..=3 {
        let requests = (0..200).map(|_| {
            let request = Request::get(&api_url).body(Full::default()).unwrap();
            client.clone().oneshot(request)
        });
        let responses = futures::future::join_all(requests).await;
        let ok = responses
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
            .count();
        sent += responses.len();
        accepted += ok;
        println!(
            "burst {burst}: {} requests, {ok} accepted, token fetches so far: {}",
            responses.len(),
            issued.fetches.load(Ordering::SeqCst),
        );
        // Let the token age into its refresh window before the next burst.
        tokio::time::sleep(Duration::from_millis(1800)).await;
    }
    let fetches = issued.fetches.load(Ordering::SeqCst);
    println!(
        "{sent} requests in {:.1?}, {accepted} accepted by the API, {} rejected",
        started.elapsed(),
        issued.rejected.load(Ordering::SeqCst),
    );
    println!(
        "{fetches} token fetches: 1 at start-up (shared by the first 200 requests), {} in the \
         background while requests went on with the current token",
        fetches.saturating_sub(1),
    );
    if accepted != sent {
        return Err("some requests were not accepted".into());
    }
    Ok(())
}

/// What the embedded token server has issued, shared with the embedded API to check tokens.
#[derive(Clone, Default)]
struct Issued {
    tokens: Arc<Mutex<HashMap<String, Instant>>>,
    fetches: Arc<AtomicUsize>,
    rejected: Arc<AtomicUsize>,
}

fn token_server(issued: Issued) -> Router {
    async fn issue(State(issued): State<Issued>) -> Json<serde_json::Value> {
        let n = issued.fetches.fetch_add(1, Ordering::SeqCst);
        // A little latency, as a real token endpoint has.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let token = format!("tok{n}-{:016x}", fastrand::u64(..));
        issued
            .tokens
            .lock()
            .unwrap()
            .insert(token.clone(), Instant::now() + TOKEN_LIFETIME);
        Json(serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs(),
        }))
    }
    Router::new()
        .route("/oauth2/token", post(issue))
        .with_state(issued)
}

fn api_server(issued: Issued) -> Router {
    async fn hello(State(issued): State<Issued>, headers: HeaderMap) -> StatusCode {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let valid = token.is_some_and(|t| {
            issued
                .tokens
                .lock()
                .unwrap()
                .get(t)
                .is_some_and(|expiry| Instant::now() < *expiry)
        });
        if valid {
            StatusCode::OK
        } else {
            issued.rejected.fetch_add(1, Ordering::SeqCst);
            StatusCode::UNAUTHORIZED
        }
    }
    Router::new().route("/hello", get(hello)).with_state(issued)
}

async fn serve(router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}
