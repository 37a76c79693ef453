//! A reqwest-middleware stack with retry, tracing and bearer auth; a 401 `invalid_token` is
//! answered by one refresh and one replay.
//!
//! Run: `cargo run --example reqwest_middleware --features reqwest-middleware`
//!
//! Starts a token endpoint and an API on 127.0.0.1. The API first answers 503 (reqwest-retry
//! retries it), then rejects the first token with `401 invalid_token` (the middleware drops it,
//! fetches one new token and replays the request once), then answers 200. Prints:
//!
//! ```text
//! GET /reports -> 200 "quarterly report"
//! what the API saw:
//!   1. 503 Service Unavailable   (retried by reqwest-retry)
//!   2. 401 invalid_token         (first token rejected: dropped, one refresh, one replay)
//!   3. 200 OK                    (a new token)
//! token endpoint calls: 2
//! ```
//!
//! No token is ever printed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest_middleware::ClientBuilder;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_tracing::TracingMiddleware;
use tower_bearer::{BearerAuthMiddleware, Error, Origin, Token, TokenCache, source::from_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (token_url, token_calls) = start_token_endpoint().await?;
    let (api_url, api_log) = start_api().await?;

    let http = reqwest::Client::new();
    let cache = TokenCache::new(from_fn(move || {
        let (http, url) = (http.clone(), format!("{token_url}/token"));
        async move {
            let answer: serde_json::Value = http
                .post(url)
                .send()
                .await
                .map_err(|e| Error::transient("the token endpoint is unreachable").with_source(e))?
                .json()
                .await
                .map_err(|e| {
                    Error::invalid_response("the token endpoint sent bad JSON").with_source(e)
                })?;
            let token = answer["access_token"].as_str().unwrap_or_default();
            Ok(Token::new(token).with_expires_in(Duration::from_secs(3600)))
        }
    }));

    // Retry outside, bearer inside: each attempt goes out with the freshest token.
    let retry = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(10), Duration::from_millis(100))
        .build_with_max_retries(3);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::default())
        .with(RetryTransientMiddleware::new_with_policy(retry))
        .with(BearerAuthMiddleware::from_cache(cache).allow_origin(Origin::parse(&api_url)?))
        .build();

    let response = client.get(format!("{api_url}/reports")).send().await?;
    println!(
        "GET /reports -> {} {:?}",
        response.status().as_u16(),
        response.text().await?
    );
    println!("what the API saw:");
    for (i, line) in api_log.lock().unwrap().iter().enumerate() {
        println!("  {}. {line}", i + 1);
    }
    println!(
        "token endpoint calls: {}",
        token_calls.load(Ordering::SeqCst)
    );
    Ok(())
}

/// `POST /token` answers `{"access_token": "token-N"}`.
async fn start_token_endpoint() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/token",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Json(serde_json::json!({ "access_token": format!("token-{n}") })) }
        }),
    );
    Ok((serve(app).await?, calls))
}

/// `GET /reports`: 503 the first time, then `401 invalid_token` for the first token (as if it
/// had been revoked), then 200. Logs what it answered, never the token.
async fn start_api() -> std::io::Result<(String, Arc<Mutex<Vec<&'static str>>>)> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log_ = log.clone();
    let app = Router::new().route(
        "/reports",
        get(move |headers: HeaderMap| {
            let log = log_.clone();
            async move {
                let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                let mut log = log.lock().unwrap();
                let (line, response): (_, Response) = if log.is_empty() {
                    (
                        "503 Service Unavailable   (retried by reqwest-retry)",
                        StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    )
                } else if auth == Some("Bearer token-0") {
                    let challenge = r#"Bearer realm="reports", error="invalid_token""#;
                    (
                        "401 invalid_token         (first token rejected: dropped, one refresh, one replay)",
                        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)])
                            .into_response(),
                    )
                } else if auth.is_some_and(|a| a.starts_with("Bearer ")) {
                    ("200 OK                    (a new token)", "quarterly report".into_response())
                } else {
                    ("401 no token", StatusCode::UNAUTHORIZED.into_response())
                };
                log.push(line);
                response
            }
        }),
    );
    Ok((serve(app).await?, log))
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
