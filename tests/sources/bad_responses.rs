//! Bad answers and broken transports: each gives a clear, typed error, never a panic, never a
//! lost refresh token, never a secret in the error.

use std::time::Duration;

use axum::response::Response;
use serde_json::json;
use tower_bearer::http_client::ReqwestClient;
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, RefreshTokenGrant, kensho};
use tower_bearer::store::MemoryStore;
use tower_bearer::{Error, ErrorKind, TokenCache};

use crate::common::{
    Calls, Scripted, TokenServer, answer, assert_no_secret, client, json, jwt_expiring_in, send,
    serve,
};

const REFRESH: &str = "rt-secret-0001";
const CLIENT_SECRET: &str = "cs-secret-0002";
/// Servers that echo what they were sent put this in their bodies; it must never resurface.
const ECHO: &str = "echoed-body-0003";

/// Run one refresh against a server answering `respond`; the error and the stored refresh token.
async fn refresh_against(respond: fn() -> Response) -> (Error, String) {
    let server = TokenServer::start("/token", move |_, _| respond()).await;
    let store = MemoryStore::new(RefreshToken::new(REFRESH));
    let source = RefreshTokenGrant::builder(&server.url, store.clone())
        .client_auth(ClientAuth::client_secret_post(
            "cid",
            ClientSecret::new(CLIENT_SECRET),
        ))
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_no_secret(&err, &[REFRESH, CLIENT_SECRET, ECHO, "access-leak"]);
    (err, store.get().unwrap().secret().to_owned())
}

macro_rules! bad_answer {
    ($name:ident, $respond:expr, $kind:expr, $stored:expr) => {
        #[tokio::test]
        async fn $name() {
            let (err, stored) = refresh_against($respond).await;
            assert_eq!(err.kind(), $kind, "{err}");
            assert_eq!(stored, $stored, "the refresh token in the store");
            assert_eq!(err.host(), Some("127.0.0.1"), "{err}");
        }
    };
}

bad_answer!(
    malformed_json_is_an_invalid_response,
    || answer(
        200,
        "application/json",
        format!(r#"{{"access_token": "access-leak", {ECHO}"#)
    ),
    ErrorKind::InvalidResponse,
    REFRESH
);
bad_answer!(
    missing_access_token_is_an_invalid_response_and_keeps_the_rotated_refresh_token,
    || json(json!({"token": "access-leak", "refresh_token": "rt-rotated", "echo": ECHO})),
    ErrorKind::InvalidResponse,
    "rt-rotated"
);
bad_answer!(
    html_login_page_is_an_invalid_response,
    || answer(
        200,
        "text/html; charset=utf-8",
        format!("<html><body>Sign in {ECHO}</body></html>")
    ),
    ErrorKind::InvalidResponse,
    REFRESH
);
bad_answer!(
    wrong_content_type_is_an_invalid_response,
    || answer(200, "text/plain", r#"{"access_token":"access-leak"}"#),
    ErrorKind::InvalidResponse,
    REFRESH
);
bad_answer!(
    non_bearer_token_type_is_an_invalid_response,
    || json(
        json!({"access_token": "access-leak", "token_type": "DPoP", "refresh_token": "rt-rotated"})
    ),
    ErrorKind::InvalidResponse,
    "rt-rotated"
);
bad_answer!(
    access_token_that_is_not_a_header_value_is_an_invalid_response,
    || json(json!({"access_token": "access-leak\r\nX-Injected: 1", "expires_in": 60})),
    ErrorKind::InvalidResponse,
    REFRESH
);
bad_answer!(
    server_error_is_transient,
    || answer(
        503,
        "text/html",
        format!("<h1>Service Unavailable {ECHO}</h1>")
    ),
    ErrorKind::Transient,
    REFRESH
);
bad_answer!(
    oauth_error_with_description_echo_is_a_rejection_without_the_echo,
    || answer(
        400,
        "application/json",
        format!(r#"{{"error":"invalid_grant","error_description":"{REFRESH} {ECHO}"}}"#)
    ),
    ErrorKind::Rejected,
    REFRESH
);
bad_answer!(
    oversize_body_with_content_length_is_an_invalid_response,
    || answer(
        200,
        "application/json",
        format!(
            r#"{{"access_token":"access-leak","pad":"{}"}}"#,
            "x".repeat(100 * 1024)
        )
    ),
    ErrorKind::InvalidResponse,
    REFRESH
);

#[tokio::test]
async fn oversize_streamed_body_without_length_is_cut_off() {
    let server = TokenServer::start("/token", |_, _| {
        let chunks =
            (0..1000).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024])));
        Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(futures_util::stream::iter(
                chunks,
            )))
            .unwrap()
    })
    .await;
    let source =
        RefreshTokenGrant::builder(&server.url, MemoryStore::new(RefreshToken::new(REFRESH)))
            .build()
            .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after_seconds_or_date() {
    for retry_after in [
        "17",
        &httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120)),
    ] {
        let value = retry_after.to_owned();
        let server = TokenServer::start("/token", move |_, _| {
            let mut r = answer(429, "application/json", r#"{"error":"slow_down"}"#);
            r.headers_mut()
                .insert("retry-after", value.parse().unwrap());
            r
        })
        .await;
        let source =
            RefreshTokenGrant::builder(&server.url, MemoryStore::new(RefreshToken::new(REFRESH)))
                .build()
                .unwrap();
        let err = send(&client(TokenCache::new(source))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(err.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
        let after = err.retry_after().unwrap();
        assert!(
            after <= Duration::from_secs(120) && after >= Duration::from_secs(17),
            "{after:?}"
        );
    }
}

#[tokio::test]
async fn unparseable_or_expired_jwt_is_an_invalid_response() {
    for token in [
        "eyJhbGciOi.not-base64!.sig".to_owned(),
        jwt_expiring_in(Duration::ZERO, "expired"),
    ] {
        let server = TokenServer::start("/oauth2/refresh", move |_, _| {
            json(json!({"access_token": token}))
        })
        .await;
        let source = kensho::personal_token(&server.base, RefreshToken::new(REFRESH))
            .build()
            .unwrap();
        let err = send(&client(TokenCache::new(source))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");
    }
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let followed = Calls::default();
    let target = followed.clone();
    let elsewhere = serve(axum::Router::new().route(
        "/steal",
        axum::routing::any(move || {
            target.hit();
            async { json(json!({"access_token": "stolen"})) }
        }),
    ))
    .await;
    let location = format!("http://{elsewhere}/steal");
    let server = TokenServer::start("/token", move |_, _| {
        Response::builder()
            .status(307)
            .header("location", location.as_str())
            .body(axum::body::Body::empty())
            .unwrap()
    })
    .await;
    let source =
        RefreshTokenGrant::builder(&server.url, MemoryStore::new(RefreshToken::new(REFRESH)))
            .build()
            .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("redirect"), "{err}");
    assert_eq!(followed.get(), 0);
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_times_out_as_transient() {
    let server = serve(axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        }),
    ))
    .await;
    let http = ReqwestClient::new()
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let source = RefreshTokenGrant::builder(
        format!("http://{server}/token"),
        MemoryStore::new(RefreshToken::new(REFRESH)),
    )
    .build_with(http)
    .unwrap();
    let started = std::time::Instant::now();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/token?refresh_token={REFRESH}");
    let source = RefreshTokenGrant::builder(url, MemoryStore::new(RefreshToken::new(REFRESH)))
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert_no_secret(&err, &[REFRESH]);
}

/// With the clock paused, the cache honours the server's `Retry-After` exactly: the scripted
/// client stands in for the socket, so auto-advance cannot fire a timeout early.
#[tokio::test(start_paused = true)]
async fn retry_after_from_a_429_holds_back_the_next_token_request() {
    let http = Scripted::default()
        .then_status(429, &[("retry-after", "30")], "")
        .then_status(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token":"after-wait","expires_in":3600}"#,
        );
    let calls = http.calls.clone();
    // Client credentials, not a rotating source: a rotation runs on the source's own thread,
    // in real time, which a paused test clock would outrun.
    let source = tower_bearer::source::ClientCredentials::builder(
        "https://auth.example.com/token",
        ClientAuth::none("retry-client"),
    )
    .build_with(http)
    .unwrap();
    let cache = TokenCache::new(source);

    let err = cache.token().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(err.host(), Some("auth.example.com"));
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(cache.token().await.is_err(), "still inside Retry-After");
    assert_eq!(calls.get(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.token().await.unwrap().secret(), "after-wait");
    assert_eq!(calls.get(), 2);
}
