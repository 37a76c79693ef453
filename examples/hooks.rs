//! The hooks: start from a token saved by an earlier run, let an API that says "expired" its own
//! way (a 403 with a JSON body) trigger the refresh, and revoke the refresh token at log-out.
//! Against a token endpoint and an API embedded on 127.0.0.1.
//!
//! Run: `cargo run --example hooks --features reqwest-middleware`
//!
//! Prints:
//!
//! ```text
//! request 1: 200 with the saved token (token requests so far: 0)
//! request 2: the API said 403 {"error":"token_expired"}; refreshed and replayed: 200
//! token requests: 1
//! logged out: refresh token revoked; the source now refuses to fetch (rejected)
//! ```
//!
//! No token is ever printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use reqwest_middleware::ClientBuilder;
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, RefreshTokenGrant};
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthMiddleware, Token, TokenCache, TokenSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (auth_server, token_requests) = start_authorization_server().await?;
    let api = start_api().await?;

    // The refresh token and the access token an earlier run saved (read them from your own
    // storage; here they are literals).
    let store = MemoryStore::new(RefreshToken::new("refresh-0"));
    let source = RefreshTokenGrant::builder(format!("{auth_server}/token"), store)
        .client_auth(ClientAuth::client_secret_basic(
            "demo",
            ClientSecret::new("demo-secret"),
        ))
        .revocation_url(format!("{auth_server}/revoke"))
        .build()?;
    let cache = TokenCache::builder(source)
        .initial_token(Token::new("saved-access").with_expires_in(Duration::from_secs(1800)))
        .build();

    // This API says an expired token with 403 and a JSON body, not RFC 6750's 401.
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            BearerAuthMiddleware::from_cache(cache.clone()).rejects_token_when_body(
                [StatusCode::FORBIDDEN],
                |_, _, body| {
                    serde_json::from_slice::<serde_json::Value>(body)
                        .is_ok_and(|json| json["error"] == "token_expired")
                },
            ),
        )
        .build();

    let first = client.get(format!("{api}/v1/me")).send().await?;
    println!(
        "request 1: {} with the saved token (token requests so far: {})",
        first.status().as_u16(),
        token_requests.load(Ordering::SeqCst)
    );
    let second = client.get(format!("{api}/v1/me")).send().await?;
    println!(
        "request 2: the API said 403 {{\"error\":\"token_expired\"}}; refreshed and replayed: {}",
        second.status().as_u16()
    );
    println!("token requests: {}", token_requests.load(Ordering::SeqCst));

    // Log out: revoke the refresh token (RFC 7009). The source fetches nothing after this.
    cache.source().revoke().await?;
    let refused = cache.source().fetch().await.expect_err("revoked");
    println!(
        "logged out: refresh token revoked; the source now refuses to fetch ({})",
        refused.kind()
    );
    Ok(())
}

/// An API that accepts the saved token once, then calls it expired; any other token is fine.
async fn start_api() -> Result<String, std::io::Error> {
    let saved_uses = Arc::new(AtomicUsize::new(0));
    let app = Router::new().fallback(move |headers: HeaderMap| {
        let saved_uses = saved_uses.clone();
        async move {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth {
                Some("Bearer saved-access") if saved_uses.fetch_add(1, Ordering::SeqCst) > 0 => (
                    StatusCode::FORBIDDEN,
                    Json(serde_json::json!({"error": "token_expired"})),
                )
                    .into_response(),
                Some(_) => "hello".into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            }
        }
    });
    serve(app).await
}

/// A token endpoint (refresh-token grant with rotation) and a revocation endpoint.
async fn start_authorization_server() -> Result<(String, Arc<AtomicUsize>), std::io::Error> {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let app = Router::new()
        .route(
            "/token",
            post(move || {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    Json(serde_json::json!({
                        "access_token": format!("access-{n}"),
                        "refresh_token": format!("refresh-{n}"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    }))
                }
            }),
        )
        .route("/revoke", post(|| async { StatusCode::OK }));
    Ok((serve(app).await?, calls))
}

async fn serve(app: Router) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
