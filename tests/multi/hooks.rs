//! The hooks users ask for: a rule of their own saying a response rejects the token (on the
//! layer and the middleware alike, coalesced and throttled as 401s are), a token the program
//! already has, and revocation on demand.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, RefreshTokenGrant, Revocation, TokenTypeHint, from_fn};
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthLayer, Error, ErrorKind, Token, TokenCache, TokenSource};

use crate::common::{TokenServer, answer, json};

/// A cache whose n-th fetch is `token-n`, and the fetch count.
fn counting() -> (TokenCache<impl TokenSource>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Error>(
                Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600)),
            )
        }
    }));
    (cache, fetches)
}

/// A vendor API that says an expired token with `403` and `X-Error: token_expired`, and
/// treats `token-0` as expired.
fn vendor_api(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        async move {
            let mut response = Response::new(auth.clone());
            if auth == "Bearer token-0" {
                *response.status_mut() = StatusCode::FORBIDDEN;
                response
                    .headers_mut()
                    .insert("x-error", "token_expired".parse().unwrap());
            }
            Ok::<_, Infallible>(response)
        }
    })
}

fn expired(status: StatusCode, headers: &http::HeaderMap) -> bool {
    status == StatusCode::FORBIDDEN && headers.get("x-error").is_some_and(|v| v == "token_expired")
}

#[tokio::test]
async fn a_rule_of_ones_own_drops_the_token_and_replays_on_the_layer() {
    let (cache, fetches) = counting();
    let calls = Arc::new(AtomicUsize::new(0));
    let client = BearerAuthLayer::from_cache(cache.clone())
        .rejects_token_when(expired)
        .replay_on_401()
        .layer(vendor_api(calls.clone()));
    let response = client.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Without the rule, the 403 is only a 403.
    let (cache, fetches) = counting();
    let client = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(vendor_api(calls));
    let response = client.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_storm_of_rejections_by_the_rule_costs_one_refresh() {
    let (cache, fetches) = counting();
    let calls = Arc::new(AtomicUsize::new(0));
    // Invalidate-only mode: each 403 goes back to its caller; the token is dropped once.
    let client = BearerAuthLayer::from_cache(cache.clone())
        .rejects_token_when(expired)
        .layer(vendor_api(calls));
    cache.token().await.unwrap(); // token-0, the one the API calls expired
    // Two hundred requests sent with token-0 before any answer is read.
    let mut in_flight = Vec::new();
    for _ in 0..200 {
        let mut svc = client.clone();
        in_flight.push(svc.ready().await.unwrap().call(Request::new(())));
    }
    let responses = futures::future::join_all(in_flight).await;
    let rejected = responses
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::FORBIDDEN)
        .count();
    assert_eq!(rejected, 200);
    assert_eq!(cache.token().await.unwrap().secret(), "token-1");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "200 rejections, one refresh"
    );
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test]
async fn a_rule_of_ones_own_on_the_reqwest_middleware() {
    use tower_bearer::BearerAuthMiddleware;
    let api = crate::common::serve(axum::Router::new().fallback(
        |headers: http::HeaderMap| async move {
            let auth = headers[AUTHORIZATION].to_str().unwrap().to_owned();
            if auth == "Bearer token-0" {
                (StatusCode::FORBIDDEN, [("x-error", "token_expired")], auth).into_response()
            } else {
                auth.into_response()
            }
        },
    ))
    .await;
    use axum::response::IntoResponse;
    let (cache, fetches) = counting();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            BearerAuthMiddleware::from_cache(cache)
                .rejects_token_when(expired)
                .replay_on_401(),
        )
        .build();
    let response = client.get(format!("http://{api}/v1")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_initial_token_is_used_without_fetching() {
    let server = TokenServer::start("/token", |_, n| crate::common::token_answer(n)).await;
    let source = || {
        tower_bearer::source::ClientCredentials::builder(
            server.url.clone(),
            ClientAuth::client_secret_post("client", ClientSecret::new("s3cr3t")),
        )
        .build()
        .unwrap()
    };
    let cache = TokenCache::builder(source())
        .initial_token(Token::new("from-last-run").with_expires_in(Duration::from_secs(1800)))
        .build();
    let echo = service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.headers()[AUTHORIZATION].clone()))
    });
    let client = BearerAuthLayer::from_cache(cache.clone()).layer(echo);
    for _ in 0..3 {
        let response = client.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.body(), "Bearer from-last-run");
    }
    assert_eq!(server.calls(), 0, "the first request did not fetch");
    let seen = cache.token().await.unwrap();
    assert!(seen.expires_in().unwrap() > Duration::from_secs(1700));

    // A saved token that has expired (or cannot be sent) is left out: the first use fetches.
    for bad in [
        Token::new("stale").with_expires_at(std::time::SystemTime::now() - Duration::from_secs(5)),
        Token::new("not a b64token"),
    ] {
        let cache = TokenCache::builder(source()).initial_token(bad).build();
        assert!(cache.current().is_none());
        assert!(cache.token().await.unwrap().secret().starts_with("access-"));
    }
    let err = TokenCache::new(source())
        .insert(Token::new("bad token"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(!err.to_string().contains("bad token"));
}

#[tokio::test(start_paused = true)]
async fn an_initial_token_near_its_end_is_refreshed_in_the_background() {
    let (cache, fetches) = counting();
    // 30 s left: inside the default 60 s window (capped at half of 30 s: 15 s), so stale.
    cache
        .insert(Token::new("inherited").with_expires_in(Duration::from_secs(30)))
        .unwrap();
    tokio::time::advance(Duration::from_secs(16)).await;
    assert_eq!(
        cache.token().await.unwrap().secret(),
        "inherited",
        "served while stale"
    );
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(cache.token().await.unwrap().secret(), "token-0");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn revoking_the_refresh_token_stops_the_source() {
    let server = TokenServer::start_routes(&["/token", "/revoke"], |recorded, n| {
        if recorded.header("x-path") == Some("/revoke") {
            return answer(200, "application/json", "");
        }
        json(serde_json::json!({
            "access_token": format!("access-{n}"),
            "refresh_token": format!("refresh-{n}"),
            "expires_in": 3600,
        }))
    })
    .await;
    let store = MemoryStore::new(RefreshToken::new("refresh-0"));
    let grant = RefreshTokenGrant::builder(server.url.clone(), store.clone())
        .client_auth(ClientAuth::client_secret_post(
            "client",
            ClientSecret::new("s3cr3t"),
        ))
        .revocation_url(format!("{}/revoke", server.base))
        .build()
        .unwrap();
    assert_eq!(grant.fetch().await.unwrap().secret(), "access-1");
    assert_eq!(store.get().unwrap().secret(), "refresh-1");
    grant.revoke().await.unwrap();
    let revoke = server.request(1);
    assert_eq!(revoke.header("x-path"), Some("/revoke"));
    assert_eq!(revoke.get("token"), Some("refresh-1"));
    assert_eq!(revoke.get("token_type_hint"), Some("refresh_token"));
    assert_eq!(revoke.get("client_id"), Some("client"));
    assert_eq!(revoke.get("client_secret"), Some("s3cr3t"));

    let err = grant.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("revoked"), "{err}");
    assert_eq!(server.calls(), 2, "nothing spent after revocation");

    // Without a revocation URL: a configuration error, nothing sent.
    let plain =
        RefreshTokenGrant::builder(server.url.clone(), MemoryStore::new(RefreshToken::new("r")))
            .build()
            .unwrap();
    assert_eq!(plain.revoke().await.unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test]
async fn revocation_failures_are_classified() {
    let server =
        TokenServer::start_routes(&["/busy", "/unsupported"], |recorded, _| {
            match recorded.header("x-path") {
                Some("/busy") => answer(503, "text/plain", "busy"),
                _ => answer(
                    400,
                    "application/json",
                    r#"{"error":"unsupported_token_type"}"#,
                ),
            }
        })
        .await;
    let busy = Revocation::builder(format!("{}/busy", server.base))
        .build()
        .unwrap();
    let err = busy.revoke("secret-token", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    crate::common::assert_no_secret(&err, &["secret-token"]);
    let unsupported = Revocation::builder(format!("{}/unsupported", server.base))
        .build()
        .unwrap();
    let err = unsupported
        .revoke("secret-token", Some(TokenTypeHint::AccessToken))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.oauth_error(), Some("unsupported_token_type"));
    assert_eq!(
        server.request(1).get("token_type_hint"),
        Some("access_token")
    );
    assert!(
        Revocation::builder("http://auth.example.com/revoke")
            .build()
            .is_err()
    );
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test]
async fn a_rule_over_the_body_on_the_reqwest_middleware() {
    use axum::response::IntoResponse;
    use tower_bearer::BearerAuthMiddleware;
    // Says "expired" only in a JSON body, and only for token-0.
    let api = crate::common::serve(axum::Router::new().fallback(
        |headers: http::HeaderMap| async move {
            let auth = headers[AUTHORIZATION].to_str().unwrap().to_owned();
            match auth.as_str() {
                "Bearer token-0" => (
                    StatusCode::FORBIDDEN,
                    [("x-request", "1")],
                    axum::Json(serde_json::json!({"error": "token_expired"})),
                )
                    .into_response(),
                _ => (
                    StatusCode::FORBIDDEN,
                    axum::Json(serde_json::json!({"error": "not_yours", "auth": auth})),
                )
                    .into_response(),
            }
        },
    ))
    .await;
    let expired_body = |_: StatusCode, _: &http::HeaderMap, body: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v["error"] == "token_expired")
    };
    let (cache, fetches) = counting();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            BearerAuthMiddleware::from_cache(cache)
                .rejects_token_when_body([StatusCode::FORBIDDEN], expired_body)
                .replay_on_401(),
        )
        .build();
    let url = format!("http://{api}/v1");
    let response = client.get(&url).send().await.unwrap();
    // Replayed with token-1: a 403 of another kind, whose body still reaches the caller whole.
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.url().as_str(), url);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_yours");
    assert_eq!(body["auth"], "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Without replay, the rejected answer comes back with its headers and body intact.
    let (cache, _) = counting();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            BearerAuthMiddleware::from_cache(cache.clone())
                .rejects_token_when_body([StatusCode::FORBIDDEN], expired_body),
        )
        .build();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.headers()["x-request"], "1");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "token_expired"
    );
    assert_eq!(
        cache.token().await.unwrap().secret(),
        "token-1",
        "token-0 was dropped"
    );
}
