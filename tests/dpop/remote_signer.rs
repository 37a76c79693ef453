//! DPoP proofs signed by a key held elsewhere: `DpopKey::from_signer` with a signer behind a
//! KMS stand-in on 127.0.0.1 (an ES256 key the test holds, `support/kms.rs`). The
//! authorization server and API stand-ins (`server.rs`) verify every proof with the public key
//! of its `jwk` header (signature, `htm`, `htu`, `iat`, `ath`, `jti`, nonces) and that each
//! token is used with the key it was bound to (its `jkt`, the key's thumbprint).

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use tower::ServiceBuilder;
use tower_bearer::dpop::{Dpop, DpopKey};
use tower_bearer::{
    BearerAuthLayer, BearerAuthMiddleware, Error, ErrorKind, TokenCache, TokenSource,
};

use crate::kms::Kms;
use crate::server::{self, Config};
use crate::{client_credentials, get, hyper};

/// A KMS holding a fresh P-256 key, and proofs signed by it through `from_signer`, given the
/// public key as a JWK with members beyond the required ones (`kid`, `use`).
async fn remote() -> (Kms, Dpop) {
    let pair = Arc::new(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap());
    let point = pair.public_key().as_ref().to_vec();
    let kms = Kms::start(move |input| {
        pair.sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    })
    .await;
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..]),
    );
    let jwk = serde_json::json!({
        "use": "sig", "kty": "EC", "kid": "kms-dpop-1", "crv": "P-256", "y": y, "x": x,
    });
    let key =
        DpopKey::from_signer(kms.signer("ES256", Some("kms-dpop-1")), &jwk.to_string()).unwrap();
    // RFC 7638: the thumbprint is over the required members only, in lexicographic order.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    assert_eq!(
        key.thumbprint(),
        URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()))
    );
    assert_eq!(key.public_jwk(), canonical);
    (kms, Dpop::new(key))
}

/// A server whose token endpoint and API both want nonces.
async fn nonce_server() -> Arc<server::Server> {
    server::start(Config {
        nonce_at_api: true,
        nonce_at_token: true,
        ..Config::default()
    })
    .await
}

/// The claims of the `i`th signing input the KMS signed.
fn signed_claims(kms: &Kms, i: usize) -> serde_json::Value {
    let input = &kms.inputs()[i];
    let claims = input.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

#[tokio::test]
async fn the_layer_sends_proofs_the_kms_signs_and_the_api_verifies() {
    let server = server::start(Config::default()).await;
    let (kms, dpop) = remote().await;
    // Without replay (the response future awaits the signer), then with it (the pipeline).
    let mut plain = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)))
        .service(hyper());
    let mut replaying = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
        .service(hyper());
    for path in ["/api/a?x=1", "/api/b", "/api/a"] {
        let answer = get(&mut plain, &server.url(path)).await.unwrap();
        assert_eq!(answer, (StatusCode::OK, "ok tok-1".into()), "{path}");
        let answer = get(&mut replaying, &server.url(path)).await.unwrap();
        assert_eq!(answer, (StatusCode::OK, "ok tok-2".into()), "{path}");
    }
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
    assert_eq!((server.token_calls(), server.api_calls()), (2, 6));
    // Every proof was signed by the KMS: the token requests' own (no `ath`), then one per API
    // request.
    assert_eq!(kms.inputs().len(), 8);
    let token_proof = signed_claims(&kms, 0);
    assert_eq!(token_proof["htu"], server.token_url());
    assert!(token_proof.get("ath").is_none());
    assert_eq!(signed_claims(&kms, 7)["htu"], server.url("/api/a"));
}

#[tokio::test]
async fn a_nonce_challenge_is_answered_with_a_proof_the_kms_signs_again() {
    let (server, (kms, dpop)) = (nonce_server().await, remote().await);
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
        .service(hyper());
    let answer = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!(answer, (StatusCode::OK, "ok tok-2".into()));
    // A use_dpop_nonce answer at the token endpoint and one at the API, each answered by a
    // new proof with the new nonce, signed by the KMS. (The first API proof carries the token
    // endpoint's nonce, remembered for the origin they share; the API wants one of its own.)
    assert_eq!((server.token_calls(), server.api_calls()), (2, 2));
    assert_eq!(kms.inputs().len(), 4);
    let nonce = |i| signed_claims(&kms, i)["nonce"].as_str().map(str::to_owned);
    assert_eq!(nonce(0), None);
    assert_eq!(nonce(1).as_deref(), Some("nonce-0"));
    assert_eq!(nonce(2).as_deref(), Some("nonce-0"));
    assert_eq!(nonce(3).as_deref(), Some("nonce-1"));
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn the_middleware_sends_proofs_the_kms_signs_with_nonces() {
    let (server, (kms, dpop)) = (nonce_server().await, remote().await);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::new(client_credentials(
            &server, &dpop,
        )))
        .build();
    for path in ["/api/a", "/api/b?page=2"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.unwrap(), "ok tok-2");
    }
    assert_eq!((server.token_calls(), server.api_calls()), (2, 3));
    assert_eq!(kms.inputs().len(), 5);
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn a_failing_kms_is_a_typed_error_and_nothing_is_sent_without_a_proof() {
    let server = server::start(Config::default()).await;
    let (kms, dpop) = remote().await;
    let is_the_kms = |err: &Error| {
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("HTTP 500"), "{shown}");
    };

    // The token request's own proof.
    kms.fail(true);
    let source = client_credentials(&server, &dpop);
    is_the_kms(&source.fetch().await.unwrap_err());
    assert_eq!(server.token_calls(), 0);

    // Proofs for the API, on every front end, once a token is there.
    kms.fail(false);
    let cache = TokenCache::new(source);
    cache.token().await.unwrap();
    kms.fail(true);
    let layer = BearerAuthLayer::from_cache(cache.clone());
    let mut plain = ServiceBuilder::new().layer(layer.clone()).service(hyper());
    let err = get(&mut plain, &server.url("/api/a")).await.unwrap_err();
    is_the_kms(err.downcast_ref::<Error>().expect("a tower_bearer::Error"));
    let mut replaying = ServiceBuilder::new()
        .layer(layer.replay_on_401())
        .service(hyper());
    let err = get(&mut replaying, &server.url("/api/a"))
        .await
        .unwrap_err();
    is_the_kms(err.downcast_ref::<Error>().expect("a tower_bearer::Error"));
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(cache.clone()))
        .build();
    match client.get(server.url("/api/a")).send().await.unwrap_err() {
        reqwest_middleware::Error::Middleware(err) => {
            is_the_kms(err.downcast_ref::<Error>().expect("a tower_bearer::Error"));
        }
        other => panic!("not the middleware's error: {other}"),
    }
    assert_eq!(server.api_calls(), 0);

    // The KMS is back: so are the requests, with the same token.
    kms.fail(false);
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(hyper());
    let answer = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!(answer, (StatusCode::OK, "ok tok-1".into()));
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn a_malformed_public_jwk_is_refused_at_construction() {
    let kms = Kms::start(|_| Vec::new()).await;
    let (x, y) = (
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "x_FEzRu9m36HLN-tue659LNpXW6pCyStikYjKIWI5a0",
    );
    let d = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
    let ec = |crv: &str, x: &str| format!(r#"{{"kty":"EC","crv":"{crv}","x":"{x}","y":"{y}"}}"#);
    let valid = ec("P-256", x);
    assert!(DpopKey::from_signer(kms.signer("ES256", None), &valid).is_ok());
    for (algorithm, jwk, why) in [
        ("ES256", "not json".to_owned(), "JSON"),
        ("ES256", r#"["a JWK is an object"]"#.to_owned(), "JSON"),
        (
            "ES256",
            valid.replace(r#""kty""#, &format!(r#""d":"{d}","kty""#)),
            "private",
        ),
        ("ES256", ec("P-384", x), "P-256"),
        ("ES256", ec("P-256", &x[..20]), "32 bytes"),
        ("ES256", ec("P-256", "not base64url!"), "`x`"),
        (
            "ES256",
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#.to_owned(),
            "P-256",
        ),
        ("RS256", valid.clone(), "RSA"),
        (
            "PS256",
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#.to_owned(),
            "2048",
        ),
        ("HS256", valid.clone(), "ES256, RS256 or PS256"),
    ] {
        let err = DpopKey::from_signer(kms.signer(algorithm, None), &jwk).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{jwk}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(why), "{jwk}: {shown}");
        assert!(!shown.contains(d), "{shown}");
    }
    // Nothing is signed (or sent to the KMS) at construction.
    assert!(kms.inputs().is_empty());
}

#[tokio::test]
async fn a_key_behind_a_signer_shows_no_secret_and_asks_for_the_async_proof() {
    let (kms, dpop) = remote().await;
    let shown = format!("{dpop:?}");
    assert!(shown.contains("behind a signer"), "{shown}");
    assert!(shown.contains(dpop.key().thumbprint()), "{shown}");
    let uri: http::Uri = "https://api.example.com/x".parse().unwrap();
    // The synchronous proof cannot await the KMS: a configuration error that says what to use.
    let err = dpop.proof(&http::Method::GET, &uri, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("proof_async"), "{err}");
    let proof = dpop
        .proof_async(&http::Method::GET, &uri, Some("tok"))
        .await
        .unwrap();
    assert!(proof.is_sensitive());
    assert_eq!(kms.inputs().len(), 1);
    assert_eq!(signed_claims(&kms, 0)["htu"], "https://api.example.com/x");
}
