//! Seeds 000 and 001: Kensho personal tokens, `GET {base}/oauth2/refresh?refresh_token=R` and
//! the Link API's `?refreshToken=R` → `{"accessToken"}`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_bearer::secret::RefreshToken;
use tower_bearer::source::kensho;
use tower_bearer::{ErrorKind, TokenCache};

use crate::common::{Calls, assert_no_secret, client, jwt_expiring_in, send, serve};

const GOOD: &str = "rt-good-7f3a";

/// The refresh endpoint as the seed shows it: the refresh token in `param`, the token in `field`.
fn refresh_server(calls: Calls, param: &'static str, field: &'static str) -> Router {
    Router::new().route(
        "/oauth2/refresh",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let n = calls.hit();
            async move {
                if q.get(param).map(String::as_str) != Some(GOOD) {
                    return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
                }
                let token = jwt_expiring_in(Duration::from_secs(3600), &format!("token-{n}"));
                Json(json!({ field: token })).into_response()
            }
        }),
    )
}

#[tokio::test]
async fn personal_token_is_exchanged_once_for_many_concurrent_requests() {
    let calls = Calls::default();
    let addr = serve(refresh_server(
        calls.clone(),
        "refresh_token",
        "access_token",
    ))
    .await;
    let source = kensho::personal_token(&format!("http://{addr}"), RefreshToken::new(GOOD))
        .build()
        .unwrap();
    let api = client(TokenCache::new(source));

    let sent = futures_util::future::join_all((0..50).map(|_| send(&api))).await;
    let first = sent[0].as_ref().unwrap().clone();
    assert!(first.starts_with("Bearer ey"), "{first}");
    assert!(sent.iter().all(|s| s.as_ref().unwrap() == &first));
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn personal_token_lifetime_comes_from_the_jwt_exp() {
    let calls = Calls::default();
    let addr = serve(refresh_server(
        calls.clone(),
        "refresh_token",
        "access_token",
    ))
    .await;
    let source = kensho::personal_token(&format!("http://{addr}/"), RefreshToken::new(GOOD))
        .build()
        .unwrap();
    let cache = TokenCache::new(source);
    let token = cache.token().await.unwrap();
    let left = token.expires_in().unwrap();
    assert!(
        left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

#[tokio::test]
async fn link_sends_refresh_token_param_and_reads_access_token_in_camel_case() {
    let calls = Calls::default();
    let addr = serve(refresh_server(calls.clone(), "refreshToken", "accessToken")).await;
    let source = kensho::link(&format!("http://{addr}"), RefreshToken::new(GOOD))
        .build()
        .unwrap();
    let api = client(TokenCache::new(source));
    assert!(send(&api).await.unwrap().starts_with("Bearer ey"));
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn wrong_refresh_token_is_rejected_asking_whether_it_is_correct() {
    let calls = Calls::default();
    let addr = serve(refresh_server(calls.clone(), "refreshToken", "accessToken")).await;
    let wrong = "rt-wrong-91c2";
    let source = kensho::link(&format!("http://{addr}"), RefreshToken::new(wrong))
        .build()
        .unwrap();
    let api = client(TokenCache::new(source));

    let err = send(&api).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert!(err.to_string().contains("is it correct"), "{err}");
    assert_eq!(err.host(), Some("127.0.0.1"));
    assert_no_secret(&err, &[wrong]);

    // The rejection is remembered: a second request does not call the endpoint again.
    assert_eq!(send(&api).await.unwrap_err().kind(), ErrorKind::Rejected);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn personal_token_that_is_not_a_jwt_is_refused_not_cached_forever() {
    let addr = serve(Router::new().route(
        "/oauth2/refresh",
        get(|| async { Json(json!({ "access_token": "opaque-no-exp" })) }),
    ))
    .await;
    let source = kensho::personal_token(&format!("http://{addr}"), RefreshToken::new(GOOD))
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("exp"), "{err}");
}

#[test]
fn plain_http_to_a_public_host_is_refused_at_build_time() {
    let err = kensho::personal_token("http://scribe.kensho.com", RefreshToken::new(GOOD))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}
