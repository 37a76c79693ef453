//! Seed 004: a Disruptive Technologies service account, the JWT-bearer grant with an HS256
//! assertion carrying a `kid` header.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::disruptive;
use tower_bearer::{ErrorKind, TokenCache};

use crate::common::{Recorded, TokenServer, answer, assert_no_secret, client, json, send};

const KEY_ID: &str = "c0ffee-key-id";
const EMAIL: &str = "robot@project.serviceaccount.d21s.com";
/// Shaped as the vendor issues secrets: 32 hex characters (32 bytes, the HS256 minimum).
const SECRET: &str = "5c0d3e9a7b214f6e8a1d2c3b4a596877";

/// The vendor's token endpoint: checks the assertion as the seed builds it.
fn identity(req: &Recorded, n: usize, url: &str) -> axum::response::Response {
    crate::common::install_jwt_default();
    let Some(assertion) = req.get("assertion") else {
        return answer(400, "application/json", r#"{"error":"invalid_request"}"#);
    };
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[url]);
    validation.set_issuer(&[EMAIL]);
    let verified = jsonwebtoken::decode::<Value>(
        assertion,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    );
    if header.kid.as_deref() != Some(KEY_ID) || verified.is_err() {
        return answer(400, "application/json", r#"{"error":"invalid_grant"}"#);
    }
    json(
        json!({"access_token": format!("dt-access-{n}"), "token_type": "bearer", "expires_in": 3600}),
    )
}

async fn server() -> TokenServer {
    let url = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let shared = url.clone();
    let server = TokenServer::start("/oauth2/token", move |req, n| {
        identity(req, n, shared.get().unwrap())
    })
    .await;
    url.set(server.url.clone()).unwrap();
    server
}

#[tokio::test]
async fn service_account_assertion_is_the_one_the_seed_builds() {
    let server = server().await;
    let source =
        disruptive::service_account_at(&server.url, KEY_ID, EMAIL, &ClientSecret::new(SECRET))
            .build()
            .unwrap();
    let cache = TokenCache::new(source);
    let api = client(cache.clone());
    let sent = futures_util::future::join_all((0..20).map(|_| send(&api))).await;
    assert!(
        sent.iter()
            .all(|s| s.as_ref().unwrap() == "Bearer dt-access-1")
    );
    assert_eq!(server.calls(), 1);

    let req = server.request(0);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        req.get("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let mut names: Vec<_> = req.form.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["assertion", "grant_type"]);

    let assertion = req.get("assertion").unwrap();
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    let claims: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
        .unwrap()
        .claims;
    let mut claim_names: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
    claim_names.sort_unstable();
    assert_eq!(claim_names, ["aud", "exp", "iat", "iss"]);
    assert_eq!(claims["aud"], server.url.as_str());
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );

    // expires_in gives the lifetime.
    let left = cache.token().await.unwrap().expires_in().unwrap();
    assert!(left.as_secs() > 3590 && left.as_secs() <= 3600, "{left:?}");
}

#[tokio::test]
async fn a_wrong_secret_is_a_rejection_without_the_secret_or_assertion() {
    let server = server().await;
    let source = disruptive::service_account_at(
        &server.url,
        KEY_ID,
        EMAIL,
        &ClientSecret::new("wrong-secret-1-0123456789abcdef01"),
    )
    .build()
    .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.oauth_error(), Some("invalid_grant"));
    let assertion = server.request(0).get("assertion").unwrap().to_owned();
    assert_no_secret(&err, &["wrong-secret-1", &assertion, "eyJ"]);
}

#[tokio::test]
async fn a_secret_shorter_than_32_bytes_fails_at_build() {
    let server = server().await;
    for secret in ["", "dt-secret-8d7f", &SECRET[..31]] {
        let err =
            disruptive::service_account_at(&server.url, KEY_ID, EMAIL, &ClientSecret::new(secret))
                .build()
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{secret:?}");
        if !secret.is_empty() {
            assert_no_secret(&err, &[secret]);
        }
    }
    assert_eq!(server.calls(), 0);
}
