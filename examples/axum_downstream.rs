//! An axum service whose handler calls a downstream API through a shared, authenticated
//! hyper-util client held in the router state.
//!
//! Run: `cargo run --example axum_downstream`
//!
//! Starts, on 127.0.0.1, a token endpoint, a downstream API that requires a bearer token, and
//! a front service (`GET /profile`) that calls the downstream API. Then it calls the front
//! service a few times, concurrently, and prints something like:
//!
//! ```text
//! front service on http://127.0.0.1:41236
//! GET /profile -> 200 {"plan":"pro","user":"alice"}   (x5)
//! downstream calls: 5, all with a bearer token; token endpoint calls: 1
//! ```
//!
//! No token is ever printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_bearer::{BearerAuth, BearerAuthLayer, Error, Origin, Token, TokenSource};

/// Where the front service gets its tokens: a small `TokenSource` with a name, so the client
/// type can be named in the state.
struct TokenEndpoint {
    http: reqwest::Client,
    url: String,
}

impl TokenSource for TokenEndpoint {
    async fn fetch(&self) -> Result<Token, Error> {
        let answer: serde_json::Value = self
            .http
            .post(&self.url)
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
}

/// The authenticated client: cheap to clone, every clone shares one token cache.
type ApiClient = BearerAuth<Client<HttpConnector, Full<Bytes>>, TokenEndpoint>;

#[derive(Clone)]
struct AppState {
    api: ApiClient,
    api_base: String,
}

/// `GET /profile`: ask the downstream API who we are, and pass the answer on.
async fn profile(State(state): State<AppState>) -> Result<String, (StatusCode, String)> {
    let request = http::Request::get(format!("{}/me", state.api_base))
        .body(Full::default())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // `tower_bearer` errors never contain a token, so they are safe to show or log.
    let response = state.api.oneshot(request).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("downstream call failed: {e}"),
        )
    })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else {
        Err((StatusCode::BAD_GATEWAY, body))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (token_url, token_calls) = start_token_endpoint().await?;
    let (api_base, api_calls) = start_downstream().await?;

    let source = TokenEndpoint {
        http: reqwest::Client::new(),
        url: format!("{token_url}/token"),
    };
    // The token goes to the downstream API's origin and nowhere else.
    let layer = BearerAuthLayer::new(source).allow_origin(Origin::parse(&api_base)?);
    let hyper = Client::builder(TokioExecutor::new()).build_http();
    let state = AppState {
        api: layer.layer(hyper),
        api_base,
    };
    let app = Router::new()
        .route("/profile", get(profile))
        .with_state(state);
    let front = serve(app).await?;
    println!("front service on {front}");

    let users = reqwest::Client::new();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (users, url) = (users.clone(), format!("{front}/profile"));
            tokio::spawn(async move {
                let response = users.get(url).send().await?;
                Ok::<_, reqwest::Error>((response.status(), response.text().await?))
            })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await??;
        println!("GET /profile -> {} {body}", status.as_u16());
    }
    println!(
        "downstream calls: {}, all with a bearer token; token endpoint calls: {}",
        api_calls.load(Ordering::SeqCst),
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

/// `GET /me`: the profile, for requests with a bearer token.
async fn start_downstream() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/me",
        get(move |headers: HeaderMap| {
            counter.fetch_add(1, Ordering::SeqCst);
            let authorized = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer token-"));
            async move {
                if authorized {
                    Json(serde_json::json!({ "user": "alice", "plan": "pro" })).into_response()
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Bearer")],
                    )
                        .into_response()
                }
            }
        }),
    );
    Ok((serve(app).await?, calls))
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
