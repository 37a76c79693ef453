//! `BoxTokenSource`: sources of different grants in one keyed cache, against a token server on
//! 127.0.0.1.

mod common;

use std::collections::HashMap;

use axum::routing::post;
use axum::{Form, Json, Router};
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::secret::RefreshToken;
use tower_bearer::source::{
    BoxTokenSource, ClientAuth, ClientCredentials, RefreshTokenGrant, from_fn,
};
use tower_bearer::store::MemoryStore;
use tower_bearer::{Error, Token, TokenSource};

#[tokio::test]
async fn one_keyed_cache_mixes_client_credentials_refresh_token_and_a_closure() {
    let app = Router::new().route(
        "/token",
        post(|Form(form): Form<HashMap<String, String>>| async move {
            let token = match form.get("grant_type").map(String::as_str) {
                Some("client_credentials") => "cc-token",
                Some("refresh_token")
                    if form.get("refresh_token").map(String::as_str) == Some("r1") =>
                {
                    "rt-token"
                }
                _ => "unexpected",
            };
            Json(serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "r2",
            }))
        }),
    );
    let url = format!("http://{}/token", common::serve(app).await);
    let keyed = KeyedTokenCache::new(
        move |grant: &&'static str| -> Result<BoxTokenSource, Error> {
            Ok(match *grant {
                "client_credentials" => ClientCredentials::builder(&url, ClientAuth::none("mixed"))
                    .build()?
                    .boxed(),
                "refresh_token" => {
                    RefreshTokenGrant::builder(&url, MemoryStore::new(RefreshToken::new("r1")))
                        .build()?
                        .boxed()
                }
                _ => from_fn(|| async { Ok(Token::new("fn-token")) }).boxed(),
            })
        },
    );
    for (key, expected) in [
        ("client_credentials", "cc-token"),
        ("refresh_token", "rt-token"),
        ("closure", "fn-token"),
    ] {
        let token = keyed.token(&key).await.unwrap();
        assert_eq!(token.secret(), expected, "{key}");
    }
    assert_eq!(keyed.len(), 3);
}

/// A source whose type holds a boxed closure (`Box<dyn Fn() -> Pin<Box<dyn Future + Send>>>`):
/// a service over it, one cache or keyed, is `Send` across `.await`s in a spawned task. (The
/// compiler forgets the lifetimes of such types inside a future; the front ends name what a
/// service keeps without bounds on the source, so `Send` still holds.)
#[tokio::test]
async fn services_over_a_boxed_closure_source_run_in_spawned_tasks() {
    use std::future::Future;
    use std::pin::Pin;

    use tower::{Layer, Service, ServiceExt};
    use tower_bearer::BearerAuthLayer;

    type Fetch = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;
    type Closure = Box<dyn Fn() -> Fetch + Send + Sync>;
    let closure = || -> Closure { Box::new(|| Box::pin(async { Ok(Token::new("boxed")) })) };
    let echo = tower::service_fn(|request: http::Request<()>| async move {
        let authorization = request.headers()[http::header::AUTHORIZATION].clone();
        Ok::<_, std::convert::Infallible>(http::Response::new(authorization))
    });
    let request = || {
        http::Request::get("https://api.example.com/")
            .body(())
            .unwrap()
    };

    let mut one = BearerAuthLayer::new(from_fn(closure())).layer(echo);
    let response = tokio::spawn(async move {
        let svc = one.ready().await.unwrap();
        tokio::task::yield_now().await;
        svc.call(request()).await.unwrap()
    })
    .await
    .unwrap();
    assert_eq!(response.body(), "Bearer boxed");

    let tokens = KeyedTokenCache::new(move |_: &String| Ok(from_fn(closure())));
    let mut keyed =
        BearerAuthLayer::per_request(tokens, |dest| dest.host().map(str::to_owned)).layer(echo);
    let response = tokio::spawn(async move {
        let svc = keyed.ready().await.unwrap();
        tokio::task::yield_now().await;
        svc.call(request()).await.unwrap()
    })
    .await
    .unwrap();
    assert_eq!(response.body(), "Bearer boxed");
}
