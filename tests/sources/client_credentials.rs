//! The client credentials grant with each client authentication method, and seed 002 (Kensho
//! keypair authentication to Okta).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{ErrorKind, TokenCache};

use crate::common::{TokenServer, answer, assert_no_secret, client, send, token_answer};

/// A secret with every character RFC 6749 §2.3.1 encoding is about.
const AWKWARD_SECRET: &str = "p:a&s=s%w+o rd/é€😀";

#[tokio::test]
async fn client_secret_basic_form_encodes_id_and_secret_before_base64() {
    let server = TokenServer::start("/oauth2/token", |_, n| token_answer(n)).await;
    let id = "client:id é";
    let source = ClientCredentials::builder(
        &server.url,
        ClientAuth::client_secret_basic(id, ClientSecret::new(AWKWARD_SECRET)),
    )
    .build()
    .unwrap();
    let api = client(TokenCache::new(source));
    assert_eq!(send(&api).await.unwrap(), "Bearer access-1");

    let req = server.request(0);
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.get("grant_type"), Some("client_credentials"));
    assert_eq!(req.get("client_secret"), None);
    let basic = req
        .header("authorization")
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let decoded = String::from_utf8(STANDARD.decode(basic).unwrap()).unwrap();
    // The server splits at the first ':' and form-urldecodes each half.
    let (raw_id, raw_secret) = decoded.split_once(':').unwrap();
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    };
    assert_eq!(unescape(raw_id), id);
    assert_eq!(unescape(raw_secret), AWKWARD_SECRET);
    assert!(!raw_secret.contains(':') && !raw_secret.contains('&'));
}

#[tokio::test]
async fn client_secret_post_sends_id_and_secret_in_the_form() {
    let server = TokenServer::start("/token", |_, n| token_answer(n)).await;
    let source = ClientCredentials::builder(
        &server.url,
        ClientAuth::client_secret_post("my-client", ClientSecret::new(AWKWARD_SECRET)),
    )
    .build()
    .unwrap();
    assert_eq!(
        send(&client(TokenCache::new(source))).await.unwrap(),
        "Bearer access-1"
    );
    let req = server.request(0);
    assert_eq!(req.get("client_id"), Some("my-client"));
    assert_eq!(req.get("client_secret"), Some(AWKWARD_SECRET));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(req.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn scope_audience_and_every_resource_are_sent() {
    let server = TokenServer::start("/token", |_, n| token_answer(n)).await;
    let source = ClientCredentials::builder(&server.url, ClientAuth::none("public-client"))
        .scope("first")
        .scope("read write")
        .audience("https://api.example.com")
        .resource("https://a.example.com")
        .resource("https://b.example.com")
        .build()
        .unwrap();
    send(&client(TokenCache::new(source))).await.unwrap();
    let req = server.request(0);
    assert_eq!(req.all("scope"), ["read write"]);
    assert_eq!(req.get("audience"), Some("https://api.example.com"));
    assert_eq!(
        req.all("resource"),
        ["https://a.example.com", "https://b.example.com"]
    );
    assert_eq!(req.get("client_id"), Some("public-client"));
}

#[tokio::test]
async fn invalid_client_on_401_is_a_rejection_with_its_code_and_no_secret() {
    let server = TokenServer::start("/token", |_, _| {
        answer(
            401,
            "application/json",
            r#"{"error":"invalid_client","error_description":"bad secret p:a&s=s%w+o rd/é€😀"}"#,
        )
    })
    .await;
    let source = ClientCredentials::builder(
        &server.url,
        ClientAuth::client_secret_basic("id", ClientSecret::new(AWKWARD_SECRET)),
    )
    .build()
    .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_no_secret(&err, &[AWKWARD_SECRET, "bad secret"]);
}

#[cfg(feature = "jwt")]
mod assertions {
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::Value;
    use tower_bearer::source::assertion::SigningKey;
    use tower_bearer::source::kensho;

    use super::*;
    use crate::common::Recorded;

    const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    fn key(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Verify the request's client assertion as the server would, and return its claims.
    fn verify(req: &Recorded, alg: Algorithm, key: &DecodingKey, aud: &str) -> Value {
        crate::common::install_jwt_default();
        assert_eq!(req.get("client_assertion_type"), Some(ASSERTION_TYPE));
        let mut validation = Validation::new(alg);
        validation.set_audience(&[aud]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        jsonwebtoken::decode::<Value>(req.get("client_assertion").unwrap(), key, &validation)
            .unwrap()
            .claims
    }

    #[tokio::test]
    async fn private_key_jwt_assertions_verify_with_the_public_key_for_rs256_ps256_es256() {
        let rsa_public = DecodingKey::from_rsa_pem(&key("rsa_public.pem")).unwrap();
        let ec_public = DecodingKey::from_ec_pem(&key("ec_public.pem")).unwrap();
        let cases = [
            (
                SigningKey::rs256_pem(&key("rsa_pkcs1.pem")).unwrap(),
                Algorithm::RS256,
                &rsa_public,
            ),
            (
                SigningKey::ps256_pem(&key("rsa_pkcs8.pem")).unwrap(),
                Algorithm::PS256,
                &rsa_public,
            ),
            (
                SigningKey::es256_pem(&key("ec_pkcs8.pem")).unwrap(),
                Algorithm::ES256,
                &ec_public,
            ),
        ];
        for (signing, alg, public) in cases {
            let server = TokenServer::start("/token", |_, n| token_answer(n)).await;
            let auth = ClientAuth::private_key_jwt("client-123", signing);
            assert_eq!(auth.method(), "private_key_jwt");
            let source = ClientCredentials::builder(&server.url, auth)
                .build()
                .unwrap();
            send(&client(TokenCache::new(source))).await.unwrap();

            let req = server.request(0);
            let claims = verify(&req, alg, public, &server.url);
            assert_eq!(claims["iss"], "client-123");
            assert_eq!(claims["sub"], "client-123");
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                300
            );
            assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
            assert_eq!(req.get("client_id"), None);
        }
    }

    #[tokio::test]
    async fn client_secret_jwt_is_hs256_with_the_client_secret() {
        let server = TokenServer::start("/token", |_, n| token_answer(n)).await;
        // HS256 keys are at least 32 bytes (RFC 7518 §3.2).
        let awkward = AWKWARD_SECRET.repeat(2);
        let secret = ClientSecret::new(awkward.as_str());
        let auth = ClientAuth::client_secret_jwt("cid", &secret).unwrap();
        let source = ClientCredentials::builder(&server.url, auth)
            .build()
            .unwrap();
        send(&client(TokenCache::new(source))).await.unwrap();
        let hmac = DecodingKey::from_secret(awkward.as_bytes());
        let claims = verify(&server.request(0), Algorithm::HS256, &hmac, &server.url);
        assert_eq!(claims["iss"], "cid");
    }

    #[tokio::test]
    async fn every_token_request_gets_a_fresh_assertion() {
        let server = TokenServer::start("/token", |_, n| token_answer(n)).await;
        let signing = SigningKey::rs256_pem(&key("rsa_pkcs8.pem")).unwrap();
        let source =
            ClientCredentials::builder(&server.url, ClientAuth::private_key_jwt("cid", signing))
                .build()
                .unwrap();
        let cache = TokenCache::new(source);
        let first = cache.token().await.unwrap();
        assert!(cache.invalidate(&first));
        cache.token().await.unwrap();

        let rsa_public = DecodingKey::from_rsa_pem(&key("rsa_public.pem")).unwrap();
        let jti = |i| {
            verify(
                &server.request(i),
                Algorithm::RS256,
                &rsa_public,
                &server.url,
            )["jti"]
                .clone()
        };
        assert_eq!(server.calls(), 2);
        assert_ne!(jti(0), jti(1));
        assert_ne!(
            server.request(0).get("client_assertion"),
            server.request(1).get("client_assertion")
        );
    }

    /// Seed 002, exactly: form POST with `scope=kensho:app:extract`,
    /// `grant_type=client_credentials`, the jwt-bearer `client_assertion_type` and an RS256
    /// `client_assertion` with `iss` = `sub` = client id, `aud`, `iat` and `exp` = `iat` + 30 min.
    #[tokio::test]
    async fn kensho_keypair_posts_the_okta_form_the_seed_shows() {
        let server = TokenServer::start("/oauth2/default/v1/token", |_, n| token_answer(n)).await;
        let signing = SigningKey::rs256_pem(&key("rsa_pkcs8.pem")).unwrap();
        let source = kensho::keypair(&server.url, "0oa-client-id", signing)
            .build()
            .unwrap();
        let api = client(TokenCache::new(source));
        let sent = futures_util::future::join_all((0..20).map(|_| send(&api))).await;
        assert!(
            sent.iter()
                .all(|s| s.as_ref().unwrap() == "Bearer access-1")
        );
        assert_eq!(server.calls(), 1);

        let req = server.request(0);
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(req.header("accept"), Some("application/json"));
        let mut names: Vec<_> = req.form.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "client_assertion",
                "client_assertion_type",
                "grant_type",
                "scope"
            ]
        );
        assert_eq!(req.get("scope"), Some("kensho:app:extract"));
        assert_eq!(req.get("grant_type"), Some("client_credentials"));
        let rsa_public = DecodingKey::from_rsa_pem(&key("rsa_public.pem")).unwrap();
        let claims = verify(&req, Algorithm::RS256, &rsa_public, &server.url);
        assert_eq!(claims["iss"], "0oa-client-id");
        assert_eq!(claims["sub"], "0oa-client-id");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(Duration::from_secs(exp - iat), Duration::from_secs(30 * 60));
    }
}
