//! Token exchange (RFC 8693) with resource indicators (RFC 8707), against a token endpoint on
//! 127.0.0.1 that validates the shape of each request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, TokenExchange, from_fn, token_type};
use tower_bearer::{Error, ErrorKind, Token, TokenCache, TokenSource};

use crate::common::{Recorded, TokenServer, answer, assert_no_secret, json};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// A subject (or actor) source handing out `{prefix}-{n}`, and how many it handed out.
fn counting(prefix: &'static str) -> (TokenCache<impl TokenSource>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Error>(
                Token::new(format!("{prefix}-{n}")).with_expires_in(Duration::from_secs(3600)),
            )
        }
    }));
    (cache, fetches)
}

/// The answer of a server that validates RFC 8693 §2.1: the grant type, a subject token with
/// its type, an actor token only with its type; 400 `invalid_request` otherwise.
fn validating(recorded: &Recorded, n: usize) -> axum::response::Response {
    let invalid = || {
        answer(
            400,
            "application/json",
            r#"{"error":"invalid_request","error_description":"bad shape"}"#,
        )
    };
    if recorded.get("grant_type") != Some(EXCHANGE)
        || recorded.get("subject_token").is_none()
        || recorded.get("subject_token_type").is_none()
        || recorded.get("actor_token").is_some() != recorded.get("actor_token_type").is_some()
    {
        return invalid();
    }
    json(serde_json::json!({
        "access_token": format!("exchanged-{n}"),
        "issued_token_type": token_type::ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 600,
    }))
}

#[tokio::test]
async fn the_request_carries_every_parameter_and_the_subject_is_cached_on_its_own() {
    let server = TokenServer::start("/token", validating).await;
    let (subject, subject_fetches) = counting("subject");
    let (actor, _) = counting("actor");
    let exchange = TokenExchange::builder(server.url.clone())
        .subject(subject.clone(), token_type::JWT)
        .actor(actor, token_type::ACCESS_TOKEN)
        .requested_token_type(token_type::ACCESS_TOKEN)
        .audience("billing")
        .audience("search")
        .resource("https://billing.example.com/")
        .resource("https://search.example.com/api")
        .scope("ignored")
        .scope("read write")
        .client_auth(ClientAuth::client_secret_basic(
            "client",
            ClientSecret::new("s3cr3t"),
        ))
        .build()
        .unwrap();
    let cache = TokenCache::new(exchange);
    let first = cache.token().await.unwrap();
    assert_eq!(first.secret(), "exchanged-1");
    cache.invalidate(&first);
    assert_eq!(cache.token().await.unwrap().secret(), "exchanged-2");
    assert_eq!(
        subject_fetches.load(Ordering::SeqCst),
        1,
        "the subject token is cached apart"
    );

    let r = server.request(0);
    assert_eq!(r.get("grant_type"), Some(EXCHANGE));
    assert_eq!(r.get("subject_token"), Some("subject-0"));
    assert_eq!(r.get("subject_token_type"), Some(token_type::JWT));
    assert_eq!(r.get("actor_token"), Some("actor-0"));
    assert_eq!(r.get("actor_token_type"), Some(token_type::ACCESS_TOKEN));
    assert_eq!(
        r.get("requested_token_type"),
        Some(token_type::ACCESS_TOKEN)
    );
    assert_eq!(r.all("audience"), ["billing", "search"]);
    assert_eq!(
        r.all("resource"),
        [
            "https://billing.example.com/",
            "https://search.example.com/api"
        ]
    );
    assert_eq!(r.all("scope"), ["read write"]);
    assert!(r.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(server.request(1).get("subject_token"), Some("subject-0"));
}

#[tokio::test]
async fn the_issued_token_type_is_checked() {
    async fn refused_with(body: serde_json::Value, requested: Option<&str>) -> Error {
        let server = TokenServer::start("/token", move |_, _| json(body.clone())).await;
        let (subject, _) = counting("subject");
        let mut builder =
            TokenExchange::builder(server.url.clone()).subject(subject, token_type::JWT);
        if let Some(requested) = requested {
            builder = builder.requested_token_type(requested);
        }
        builder.build().unwrap().fetch().await.unwrap_err()
    }
    let missing = refused_with(
        serde_json::json!({"access_token": "x", "token_type": "Bearer"}),
        None,
    )
    .await;
    assert_eq!(missing.kind(), ErrorKind::InvalidResponse);
    assert!(
        missing.to_string().contains("issued_token_type"),
        "{missing}"
    );

    let other = refused_with(
        serde_json::json!({"access_token": "x", "token_type": "Bearer", "issued_token_type": token_type::ID_TOKEN}),
        Some(token_type::ACCESS_TOKEN),
    )
    .await;
    assert_eq!(other.kind(), ErrorKind::InvalidResponse);
    assert!(other.to_string().contains("id_token"), "{other}");

    let not_bearer = refused_with(
        serde_json::json!({"access_token": "x", "token_type": "N_A", "issued_token_type": token_type::JWT}),
        None,
    )
    .await;
    assert_eq!(not_bearer.kind(), ErrorKind::InvalidResponse);
    assert!(not_bearer.to_string().contains("N_A"), "{not_bearer}");
}

#[tokio::test]
async fn a_refused_subject_token_is_replaced_once_and_never_shown() {
    // subject-0 is revoked at the server; subject-1 is fine.
    let server = TokenServer::start("/token", |recorded, n| {
        if recorded.get("subject_token") == Some("subject-0") {
            answer(400, "application/json", r#"{"error":"invalid_grant"}"#)
        } else {
            validating(recorded, n)
        }
    })
    .await;
    let (subject, fetches) = counting("subject");
    let exchange = TokenExchange::builder(server.url.clone())
        .subject(subject, token_type::JWT)
        .build()
        .unwrap();
    assert_eq!(exchange.fetch().await.unwrap().secret(), "exchanged-2");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(server.calls(), 2);

    // A subject the server always refuses: one retry, then the error (without the tokens).
    let server = TokenServer::start("/token", |_, _| {
        answer(400, "application/json", r#"{"error":"invalid_grant"}"#)
    })
    .await;
    let (subject, _) = counting("subject");
    let exchange = TokenExchange::builder(server.url.clone())
        .subject(subject, token_type::JWT)
        .build()
        .unwrap();
    let err = exchange.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.oauth_error(), Some("invalid_grant"));
    assert_no_secret(&err, &["subject-0", "subject-1"]);
    assert!(!format!("{exchange:?}").contains("subject-"));
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn a_subject_that_cannot_be_had_is_reported_as_such() {
    let exchange = TokenExchange::builder("http://127.0.0.1:9/token")
        .subject_source(
            from_fn(|| async { Err::<Token, _>(Error::rejected("the workload identity is gone")) }),
            token_type::JWT,
        )
        .build()
        .unwrap();
    let err = exchange.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("subject token"), "{err}");
}

#[test]
fn configuration_errors() {
    let err = TokenExchange::builder("https://auth.example.com/token")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let (subject, _) = counting("subject");
    for bad in [
        "api.example.com",
        "https://api.example.com/#frag",
        "/relative",
    ] {
        let err = TokenExchange::builder("https://auth.example.com/token")
            .subject(subject.clone(), token_type::JWT)
            .resource(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
    }
}
