//! Token calls through the user's own HTTP client (`reqwest::Client`, `ClientWithMiddleware`,
//! a hyper-util client as a tower service), and through the one default client every source
//! shares, against token servers on 127.0.0.1.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Redirect};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{ErrorKind, TokenSource};

fn token_json(token: &str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
}

/// A token server answering every POST to `/token`, remembering the `x-middleware` header.
async fn token_server() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().route(
        "/token",
        post({
            let seen = seen.clone();
            move |headers: http::HeaderMap| async move {
                let mark = headers
                    .get("x-middleware")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock().unwrap().push(mark);
                token_json("from-the-server")
            }
        }),
    );
    let addr = common::serve(app).await;
    (format!("http://{addr}/token"), seen)
}

fn builder(url: &str) -> tower_bearer::source::ClientCredentialsBuilder {
    ClientCredentials::builder(url, ClientAuth::none("my-client"))
}

#[tokio::test]
async fn a_users_reqwest_client_fetches_a_token() {
    let (url, seen) = token_server().await;
    let source = builder(&url).build_with(reqwest::Client::new()).unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "from-the-server");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_hyper_util_client_as_a_tower_service_fetches_a_token() {
    let (url, seen) = token_server().await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let source = builder(&url)
        .build_with(tower_bearer::http_client::from_service(hyper))
        .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "from-the-server");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_tower_client_is_held_to_the_size_cap() {
    let app = Router::new().route("/token", post(|| async { token_json(&"x".repeat(4096)) }));
    let addr = common::serve(app).await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = tower_bearer::http_client::from_service(hyper).with_max_response_bytes(1024);
    let source = builder(&format!("http://{addr}/token"))
        .build_with(client)
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
}

/// reqwest's default policy follows redirects; the answer then comes from another URL than the
/// token endpoint configured, and is refused, token and all.
#[tokio::test]
async fn a_users_client_that_follows_redirects_is_still_refused_a_redirect() {
    let app = Router::new()
        .route(
            "/token",
            post(|| async { Redirect::temporary("/elsewhere").into_response() }),
        )
        .route(
            "/elsewhere",
            post(|| async { token_json("from-elsewhere") }),
        );
    let addr = common::serve(app).await;
    let source = builder(&format!("http://{addr}/token"))
        .build_with(reqwest::Client::new())
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(!format!("{err:?}").contains("from-elsewhere"));
}

/// A middleware marking every request it sees.
struct Mark(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Mark {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.fetch_add(1, Ordering::SeqCst);
        req.headers_mut()
            .insert("x-middleware", http::HeaderValue::from_static("seen"));
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn a_reqwest_middleware_clients_middleware_sees_the_token_call() {
    let (url, seen) = token_server().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Mark(calls.clone()))
        .build();
    let source = builder(&url).build_with(client).unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "from-the-server");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(*seen.lock().unwrap(), vec![Some("seen".to_owned())]);
}

/// Sources built with `build()` share one client: a keyed cache whose factory builds a source
/// per key reaches the token server over one kept-alive connection, not one pool per key.
#[tokio::test]
async fn a_keyed_cache_with_many_keys_shares_one_default_client() {
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let app = Router::new().route(
        "/token",
        post({
            let peers = peers.clone();
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peers.lock().unwrap().insert(peer);
                token_json("shared")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let url = format!("http://{addr}/token");
    let keyed =
        KeyedTokenCache::new(move |scope: &String| builder(&url).scope(scope.clone()).build());
    const KEYS: usize = 6;
    for key in 0..KEYS {
        keyed.token(&format!("scope-{key}")).await.unwrap();
        // Let the connection go back to the pool before the next key asks for one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(keyed.len(), KEYS);
    assert_eq!(
        peers.lock().unwrap().len(),
        1,
        "one connection for {KEYS} keys"
    );
}

/// A connection's task runs on the runtime that opened it. A current-thread runtime that is
/// alive but not being driven (a sync program between two `block_on` calls) would stall any
/// call from another runtime handed its pooled connection: each runtime gets its own default
/// client.
#[test]
fn a_runtime_is_never_handed_the_connections_of_another_one() {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, seen) = server.block_on(token_server());
    let source = builder(&url).build().unwrap();
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let idle = current_thread();
    idle.block_on(source.fetch()).unwrap();
    // `idle` stays alive, undriven, with a kept-alive connection in its tasks.
    let other = current_thread();
    let token = other
        .block_on(async { tokio::time::timeout(Duration::from_secs(3), source.fetch()).await });
    assert_eq!(
        token
            .expect("not stalled on the idle runtime's connection")
            .unwrap()
            .secret(),
        "from-the-server"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    drop(idle);
}

/// A sync program driving each call with `block_on` on a fresh runtime: the shared default
/// client must not hand a new runtime the pooled connections of a dropped one (their tasks
/// died with it).
#[test]
fn fresh_runtimes_one_after_another_each_get_a_working_default_client() {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, seen) = server.block_on(token_server());
    let source = builder(&url).build().unwrap();
    for round in 0..4 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let token = rt.block_on(source.fetch());
        assert_eq!(token.unwrap().secret(), "from-the-server", "round {round}");
        drop(rt);
    }
    assert_eq!(seen.lock().unwrap().len(), 4);
}
