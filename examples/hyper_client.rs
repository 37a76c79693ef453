//! A hyper-util client with `BearerAuthLayer`, in a `tower::ServiceBuilder` stack.
//!
//! Run: `cargo run --example hyper_client`
//!
//! Starts a token endpoint and an API on 127.0.0.1, then sends 50 concurrent requests through
//! one authenticated client. The API treats the first token as revoked (`401 invalid_token`), to
//! show the layer dropping it, fetching one new token for all the requests that were rejected,
//! and replaying each of them once. Prints something like:
//!
//! ```text
//! token endpoint on http://127.0.0.1:41234, API on http://127.0.0.1:41235
//! 50 requests: 50 answered 200
//! the API saw 100 requests: 50 rejected with 401 invalid_token, each replayed once
//! token endpoint calls: 2 (the first token, and one refresh for all the 401s)
//! ```
//!
//! (How many requests carried the first token depends on timing; the token endpoint calls do
//! not.)
//!
//! No token is ever printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let (token_url, token_calls) = start_token_endpoint().await?;
    let (api_url, api_calls, api_rejections) = start_api().await?;
    println!("token endpoint on {token_url}, API on {api_url}");

    // Where tokens come from: any async closure (built-in OAuth 2.0 sources do the same).
    let http = reqwest::Client::new();
    let source = from_fn(move || {
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
            let expires_in = answer["expires_in"].as_u64().unwrap_or(3600);
            Ok(Token::new(token).with_expires_in(Duration::from_secs(expires_in)))
        }
    });

    // The stack: the layer over a hyper-util client. `replay_on_401` resends a request whose
    // token was rejected, once; bodies like `Full<Bytes>` can be copied for that.
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).replay_on_401())
        .service(hyper);

    let requests: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            let request = http::Request::get(format!("{api_url}/items/{i}"))
                .body(Full::default())
                .expect("a valid request");
            tokio::spawn(async move { client.oneshot(request).await.map(|r| r.status()) })
        })
        .collect();
    let mut ok = 0;
    for request in requests {
        if request.await?? == StatusCode::OK {
            ok += 1;
        }
    }
    println!("50 requests: {ok} answered 200");
    println!(
        "the API saw {} requests: {} rejected with 401 invalid_token, each replayed once",
        api_calls.load(Ordering::SeqCst),
        api_rejections.load(Ordering::SeqCst),
    );
    println!(
        "token endpoint calls: {} (the first token, and one refresh for all the 401s)",
        token_calls.load(Ordering::SeqCst)
    );
    Ok(())
}

/// `POST /token` answers `{"access_token": "token-N", "expires_in": 3600}`.
async fn start_token_endpoint() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/token",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Json(
                    serde_json::json!({ "access_token": format!("token-{n}"), "expires_in": 3600 }),
                )
            }
        }),
    );
    Ok((serve(app).await?, calls))
}

/// `GET /items/{id}`: 200 for a bearer token, except `token-0`, which is answered
/// `401 invalid_token` as if it had been revoked.
async fn start_api() -> std::io::Result<(String, Arc<AtomicUsize>, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let rejections = Arc::new(AtomicUsize::new(0));
    let (calls_, rejections_) = (calls.clone(), rejections.clone());
    let app = Router::new().route(
        "/items/{id}",
        get(move |headers: HeaderMap| {
            calls_.fetch_add(1, Ordering::SeqCst);
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let valid = auth.is_some_and(|a| a.starts_with("Bearer ") && a != "Bearer token-0");
            if !valid {
                rejections_.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if valid {
                    return "ok".into_response();
                }
                let challenge = r#"Bearer realm="api", error="invalid_token""#;
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                )
                    .into_response()
            }
        }),
    );
    Ok((serve(app).await?, calls, rejections))
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
