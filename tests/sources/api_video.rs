//! Seed 003: api.video, an API key exchanged for tokens by JSON POST, with a rotating refresh
//! token and a fallback to the API key when the refresh token is refused.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tower_bearer::secret::{ApiKey, RefreshToken};
use tower_bearer::source::api_video;
use tower_bearer::store::MemoryStore;
use tower_bearer::{ErrorKind, TokenCache};

use crate::common::{Recorded, TokenServer, answer, assert_no_secret, client, json, send};

const KEY: &str = "apivideo-key-5b1e";

#[derive(Default)]
struct State {
    issued: u32,
    /// The one refresh token the server still accepts.
    live_refresh: Option<String>,
    /// Refuse every refresh token (as after a revocation).
    refuse_refresh: bool,
}

fn pair(state: &mut State) -> axum::response::Response {
    state.issued += 1;
    let refresh = format!("def502-rt-{}", state.issued);
    state.live_refresh = Some(refresh.clone());
    json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "access_token": format!("eyJ0eXAiOiJKV1.access-{}.Cq4hM2chE", state.issued),
        "refresh_token": refresh,
    }))
}

/// `/auth/api-key` and `/auth/refresh`, as the seed shows them.
fn api_video(req: &Recorded, state: &Mutex<State>) -> axum::response::Response {
    let mut state = state.lock().unwrap();
    if req.header("content-type") != Some("application/json")
        || req.header("accept") != Some("application/json")
    {
        return answer(
            415,
            "application/json",
            r#"{"title":"unsupported media type"}"#,
        );
    }
    let body = req.json();
    match req.header("x-path").unwrap() {
        "/auth/api-key" if body == json!({"apiKey": KEY}) => pair(&mut state),
        "/auth/refresh"
            if !state.refuse_refresh
                && body.as_object().is_some_and(|o| o.len() == 1)
                && body["refreshToken"].as_str() == state.live_refresh.as_deref() =>
        {
            pair(&mut state)
        }
        _ => answer(
            400,
            "application/problem+json",
            r#"{"type":"https://docs.api.video/reference/authentication-failed","title":"Authentication failed","status":400}"#,
        ),
    }
}

async fn server() -> (TokenServer, Arc<Mutex<State>>) {
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    let server = TokenServer::start_routes(&["/auth/api-key", "/auth/refresh"], move |req, _| {
        api_video(req, &shared)
    })
    .await;
    (server, state)
}

fn paths(server: &TokenServer) -> Vec<String> {
    (0..server.calls())
        .map(|i| server.request(i).header("x-path").unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn api_key_once_then_the_rotating_refresh_token() {
    let (server, _) = server().await;
    let store = MemoryStore::empty();
    let source = api_video::api_key_at(&server.base, ApiKey::new(KEY))
        .store(store.clone())
        .build()
        .unwrap();
    let cache = TokenCache::new(source);
    let api = client(cache.clone());

    assert!(send(&api).await.unwrap().contains("access-1"));
    assert_eq!(store.get().unwrap().secret(), "def502-rt-1");
    assert!(cache.invalidate(&cache.token().await.unwrap()));
    assert!(send(&api).await.unwrap().contains("access-2"));
    assert_eq!(store.get().unwrap().secret(), "def502-rt-2");
    assert!(cache.invalidate(&cache.token().await.unwrap()));
    assert!(send(&api).await.unwrap().contains("access-3"));

    assert_eq!(
        paths(&server),
        ["/auth/api-key", "/auth/refresh", "/auth/refresh"]
    );
    assert_eq!(
        server.request(1).json(),
        json!({"refreshToken": "def502-rt-1"})
    );
    assert_eq!(
        server.request(2).json(),
        json!({"refreshToken": "def502-rt-2"})
    );
}

#[tokio::test]
async fn a_refused_refresh_token_falls_back_to_the_api_key() {
    let (server, state) = server().await;
    let store = MemoryStore::empty();
    let source = api_video::api_key_at(&server.base, ApiKey::new(KEY))
        .store(store.clone())
        .build()
        .unwrap();
    let cache = TokenCache::new(source);
    cache.token().await.unwrap();
    state.lock().unwrap().refuse_refresh = true;

    assert!(cache.invalidate(&cache.token().await.unwrap()));
    assert!(cache.token().await.unwrap().secret().contains("access-2"));
    assert_eq!(
        paths(&server),
        ["/auth/api-key", "/auth/refresh", "/auth/api-key"]
    );
    assert_eq!(store.get().unwrap().secret(), "def502-rt-2");
}

#[tokio::test]
async fn a_stored_refresh_token_is_tried_before_the_api_key() {
    let (server, state) = server().await;
    state.lock().unwrap().live_refresh = Some("def502-rt-0".into());
    let store = MemoryStore::new(RefreshToken::new("def502-rt-0"));
    let source = api_video::api_key_at(&server.base, ApiKey::new(KEY))
        .store(store.clone())
        .build()
        .unwrap();
    send(&client(TokenCache::new(source))).await.unwrap();
    assert_eq!(paths(&server), ["/auth/refresh"]);
}

#[tokio::test]
async fn a_wrong_api_key_is_a_rejection_that_names_no_key() {
    let (server, _) = server().await;
    let source = api_video::api_key_at(&server.base, ApiKey::new("wrong-key-77"))
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("API key"), "{err}");
    assert_no_secret(&err, &["wrong-key-77"]);
}
