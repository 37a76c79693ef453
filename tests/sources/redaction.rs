//! No secret, assertion, token or raw body in any error, `Debug` or log line.

use serde_json::json;
use tower_bearer::secret::{ApiKey, ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, ClientCredentials, RefreshTokenGrant, api_video, kensho};
use tower_bearer::store::MemoryStore;
use tower_bearer::{TokenCache, TokenSource};

use crate::common::{LogCapture, TokenServer, answer, client, json, send};

const SECRETS: &[&str] = &[
    "rt-initial-11",
    "rt-rotated-22",
    "cs-secret-33",
    "apikey-44",
    "access-55",
    "body-echo-66",
];

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into {what}: {text}"
        );
    }
}

/// Debug of a source, and every error and log line it causes, hold no secret.
async fn exercise<P: TokenSource + std::fmt::Debug>(source: P) {
    assert_clean("Debug", &format!("{source:?}"));
    let cache = TokenCache::new(source);
    assert_clean("cache Debug", &format!("{cache:?}"));
    match send(&client(cache.clone())).await {
        Ok(_) => assert_clean(
            "token Debug",
            &format!("{:?}", cache.token().await.unwrap()),
        ),
        Err(err) => assert_clean(
            "error",
            &format!("{err} | {err:?} | {:?}", std::error::Error::source(&err)),
        ),
    }
}

#[tokio::test]
async fn no_secret_reaches_errors_debug_or_logs() {
    // Every test in this binary logs here from now on: all of it must be clean too.
    let log = LogCapture::global();

    // Successes: a rotation and an API-key exchange, whose tokens must not be logged.
    let ok = TokenServer::start_routes(&["/token", "/auth/api-key", "/auth/refresh"], |_, _| {
        json(json!({"access_token": "access-55", "expires_in": 3600, "refresh_token": "rt-rotated-22"}))
    })
    .await;
    let store = MemoryStore::new(RefreshToken::new("rt-initial-11"));
    exercise(
        RefreshTokenGrant::builder(&ok.url, store.clone())
            .client_auth(ClientAuth::client_secret_basic(
                "cid",
                ClientSecret::new("cs-secret-33"),
            ))
            .build()
            .unwrap(),
    )
    .await;
    assert_clean("MemoryStore Debug", &format!("{store:?}"));
    exercise(
        api_video::api_key_at(&ok.base, ApiKey::new("apikey-44"))
            .build()
            .unwrap(),
    )
    .await;

    // Failures whose bodies echo what was sent.
    let echo = r#"{"error":"invalid_client","error_description":"rt-initial-11 cs-secret-33 apikey-44 body-echo-66"}"#;
    let bad = TokenServer::start_routes(
        &["/token", "/oauth2/refresh", "/auth/api-key"],
        move |_, _| answer(401, "application/json", echo),
    )
    .await;
    exercise(
        ClientCredentials::builder(
            &bad.url,
            ClientAuth::client_secret_post("cid", ClientSecret::new("cs-secret-33")),
        )
        .build()
        .unwrap(),
    )
    .await;
    exercise(
        kensho::personal_token(&bad.base, RefreshToken::new("rt-initial-11"))
            .build()
            .unwrap(),
    )
    .await;
    exercise(
        api_video::api_key_at(&bad.base, ApiKey::new("apikey-44"))
            .build()
            .unwrap(),
    )
    .await;
    let html = TokenServer::start("/token", |_, _| {
        answer(200, "text/html", "<p>body-echo-66 access-55</p>")
    })
    .await;
    exercise(
        RefreshTokenGrant::builder(
            &html.url,
            MemoryStore::new(RefreshToken::new("rt-initial-11")),
        )
        .build()
        .unwrap(),
    )
    .await;

    #[cfg(feature = "jwt")]
    {
        let key = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/rsa_pkcs8.pem"
        ))
        .unwrap();
        let signing = tower_bearer::source::assertion::SigningKey::rs256_pem(&key).unwrap();
        exercise(
            kensho::keypair(&bad.url, "cid", signing.clone())
                .build()
                .unwrap(),
        )
        .await;
        assert_clean("SigningKey Debug", &format!("{signing:?}"));
        let assertion = bad
            .request(bad.calls() - 1)
            .get("client_assertion")
            .unwrap()
            .to_owned();
        assert!(!log.0.lock().unwrap().contains(&assertion));
    }

    let log = log.0.lock().unwrap().clone();
    assert!(
        log.contains("token refreshed") && log.contains("token refresh failed"),
        "nothing captured: {log}"
    );
    assert_clean("logs", &log);
}
