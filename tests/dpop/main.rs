//! DPoP end to end: every built-in grant against a server that verifies proofs exactly, the
//! tower layer and the reqwest middleware against an API that does, nonces, the 401 policy;
//! keys held by a KMS (`remote_signer`).

#[path = "../support/kms.rs"]
mod kms;
mod remote_signer;
mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::dpop::{DPOP, Dpop, DpopKey};

use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::assertion::{Assertion, SigningKey};
use tower_bearer::source::{ClientAuth, ClientCredentials, JwtBearer, RefreshTokenGrant};
use tower_bearer::store::MemoryStore;
use tower_bearer::{
    BearerAuthLayer, BearerAuthMiddleware, Error, ErrorKind, TokenCache, TokenSource,
};

use server::{Config, Server};

fn client_credentials(server: &Server, dpop: &Dpop) -> ClientCredentials {
    ClientCredentials::builder(server.token_url(), ClientAuth::none("public-client"))
        .dpop(dpop.clone())
        .build()
        .unwrap()
}

type Hyper = Client<HttpConnector, Full<Bytes>>;

fn hyper() -> Hyper {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url` through `svc`; the status and body.
async fn get<S>(svc: &mut S, url: &str) -> Result<(StatusCode, String), tower::BoxError>
where
    S: Service<
            Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = tower::BoxError,
        >,
{
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let response = svc.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn every_grant_sends_a_verified_proof_and_gets_a_dpop_token() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();

    let cc = client_credentials(&server, &dpop);
    assert_eq!(cc.fetch().await.unwrap().secret(), "tok-1");

    let refresh = RefreshTokenGrant::builder(
        server.token_url(),
        MemoryStore::new(RefreshToken::new("rt-0")),
    )
    .client_auth(ClientAuth::none("public-client"))
    .dpop(dpop.clone())
    .build()
    .unwrap();
    assert_eq!(refresh.fetch().await.unwrap().secret(), "tok-2");
    assert!(refresh.dpop().is_some());

    let key =
        SigningKey::hs256(&ClientSecret::new("a-service-account-secret-of-32-bytes+")).unwrap();
    let jwt = JwtBearer::builder(server.token_url(), Assertion::new(key, "robot"))
        .dpop(dpop.clone())
        .build()
        .unwrap();
    assert_eq!(jwt.fetch().await.unwrap().secret(), "tok-3");

    assert_eq!(
        *server.grants.lock().unwrap(),
        [
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ]
    );
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn a_bearer_answer_to_a_dpop_request_is_refused() {
    let server = server::start(Config {
        token_type: Some("Bearer"),
        ..Config::default()
    })
    .await;
    let dpop = Dpop::generate().unwrap();
    let err = client_credentials(&server, &dpop)
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("downgrade"), "{err}");
}

#[tokio::test]
async fn the_token_endpoints_nonce_is_retried_once_then_remembered() {
    let server = server::start(Config {
        nonce_at_token: true,
        ..Config::default()
    })
    .await;
    let dpop = Dpop::generate().unwrap();
    let source = client_credentials(&server, &dpop);
    assert_eq!(source.fetch().await.unwrap().secret(), "tok-2");
    assert_eq!(
        server.token_calls(),
        2,
        "one use_dpop_nonce answer, one retry"
    );
    // The nonce is remembered: the next token request carries it at once.
    source.fetch().await.unwrap();
    assert_eq!(server.token_calls(), 3);
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn the_layer_sends_a_dpop_token_and_a_proof_the_api_verifies() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
        .service(hyper());
    for path in ["/api/a?x=1", "/api/b", "/api/a"] {
        let (status, body) = get(&mut client, &server.url(path)).await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "ok tok-1"),
            "{path}"
        );
    }
    // POST with a body, through a clone of the service.
    let request = Request::post(server.url("/api/items"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.token_calls(), 1);
    assert_eq!(server.api_calls(), 4);
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn the_bearer_layer_sends_dpop_bound_tokens_with_its_rules() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let layer = BearerAuthLayer::new(client_credentials(&server, &dpop))
        .allow_origin(tower_bearer::Origin::parse(&server.base).unwrap());
    let mut client = ServiceBuilder::new().layer(layer).service(hyper());
    let (status, _) = get(&mut client, &server.url("/api/x")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    // Another origin gets no token and no proof (the default for disallowed origins).
    let other = server.url("/api/x").replace("127.0.0.1", "localhost");
    let (status, _) = get(&mut client, &other).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.token_calls(), 1);
}

#[tokio::test]
async fn the_apis_nonce_challenge_is_retried_once_then_remembered() {
    let server = server::start(Config {
        nonce_at_api: true,
        ..Config::default()
    })
    .await;
    let dpop = Dpop::generate().unwrap();
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
        .service(hyper());
    let (status, _) = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.api_calls(), 2, "one use_dpop_nonce 401, one retry");
    let (status, _) = get(&mut client, &server.url("/api/b")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server.api_calls(),
        3,
        "the remembered nonce is used at once"
    );
    // The nonce challenge is not a rejection of the token.
    assert_eq!(server.token_calls(), 1);
}

#[tokio::test]
async fn invalid_token_goes_through_the_401_policy() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let cache = TokenCache::new(client_credentials(&server, &dpop));
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()).replay_on_401())
        .service(hyper());
    get(&mut client, &server.url("/api/a")).await.unwrap();
    server.revoked.lock().unwrap().insert("tok-1".into());
    // Dropped, refreshed, replayed once with the new token.
    let (status, body) = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok tok-2"));
    assert_eq!(server.token_calls(), 2);
    assert_eq!(server.api_calls(), 3);

    // Without replay, the 401 is returned and the token dropped; the next request has a new one.
    let mut once = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()))
        .service(hyper());
    server.revoked.lock().unwrap().insert("tok-2".into());
    tokio::time::sleep(Duration::from_millis(1100)).await; // one 401 drop per second per cache
    let (status, _) = get(&mut once, &server.url("/api/a")).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&mut once, &server.url("/api/a")).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok tok-3"));
}

#[tokio::test]
async fn a_replayed_proof_or_one_for_another_url_is_refused() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let cache = TokenCache::new(client_credentials(&server, &dpop));
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()).replay_on_401())
        .service(hyper());
    get(&mut client, &server.url("/api/a")).await.unwrap();
    let token = cache.current().unwrap();
    let authorization = format!("DPoP {}", token.secret());
    let raw = reqwest::Client::new();

    // The proof the API just accepted, sent again.
    let used = server.last_api_proof.lock().unwrap().clone().unwrap();
    let replay = raw
        .get(server.url("/api/a"))
        .header("authorization", &authorization)
        .header("dpop", &used)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.refusals().last().unwrap(), "jti replayed");

    // A fresh proof made for /api/a, sent to /api/b.
    let proof = dpop
        .proof(
            &Method::GET,
            &server.url("/api/a").parse().unwrap(),
            Some(token.secret()),
        )
        .unwrap();
    let elsewhere = raw
        .get(server.url("/api/b"))
        .header("authorization", &authorization)
        .header(DPOP, proof.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    assert!(
        server.refusals().last().unwrap().starts_with("htu"),
        "{:?}",
        server.refusals()
    );

    // The same proof with another method, and one without `ath` for this token.
    let post = raw
        .post(server.url("/api/a"))
        .header("authorization", &authorization)
        .header(
            DPOP,
            dpop.proof(
                &Method::GET,
                &server.url("/api/a").parse().unwrap(),
                Some(token.secret()),
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.refusals().last().unwrap(), "htm");
    let no_ath = raw
        .get(server.url("/api/a"))
        .header("authorization", &authorization)
        .header(
            DPOP,
            dpop.proof(
                &Method::GET,
                &server.url("/api/a").parse().unwrap(),
                Some("another-token"),
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(no_ath.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.refusals().last().unwrap(), "ath");

    // A valid proof with its claims changed after signing.
    let proof = dpop
        .proof(
            &Method::GET,
            &server.url("/api/a").parse().unwrap(),
            Some(token.secret()),
        )
        .unwrap();
    let parts: Vec<&str> = proof.to_str().unwrap().split('.').collect();
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.replace("/api/a", "/api/z")),
        parts[2]
    );
    let tampered = raw
        .get(server.url("/api/z"))
        .header("authorization", &authorization)
        .header(DPOP, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.refusals().last().unwrap(), "signature");

    // A proof an hour old, properly signed (by a key of the test's own).
    let stale = old_proof(&Method::GET, &server.url("/api/a"), 3600);
    let late = raw
        .get(server.url("/api/a"))
        .header("authorization", &authorization)
        .header(DPOP, stale)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.refusals().last().unwrap(), "iat");

    // A token bound to one key, proven with another.
    let thief = Dpop::generate().unwrap();
    let stolen = raw
        .get(server.url("/api/a"))
        .header("authorization", &authorization)
        .header(
            DPOP,
            thief
                .proof(
                    &Method::GET,
                    &server.url("/api/a").parse().unwrap(),
                    Some(token.secret()),
                )
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        stolen.headers()["www-authenticate"],
        r#"DPoP error="invalid_token""#
    );
}

/// A DPoP proof signed by a fresh P-256 key, issued `age_secs` ago.
fn old_proof(method: &Method, htu: &str, age_secs: u64) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = key.public_key().as_ref();
    let header = serde_json::json!({
        "typ": "dpop+jwt",
        "alg": "ES256",
        "jwk": {
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        },
    });
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - age_secs;
    let claims = serde_json::json!({
        "jti": "an-old-proof-0123456789",
        "htm": method.as_str(),
        "htu": htu,
        "iat": iat,
    });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(&SystemRandom::new(), message.as_bytes()).unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[tokio::test]
async fn rs256_and_ps256_keys_work_end_to_end() {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/rsa_pkcs8.pem"
    ))
    .unwrap();
    for key in [
        DpopKey::rs256_pem(&pem).unwrap(),
        DpopKey::ps256_pem(&pem).unwrap(),
    ] {
        let server = server::start(Config::default()).await;
        let dpop = Dpop::new(key.clone());
        let mut client = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
            .service(hyper());
        let (status, _) = get(&mut client, &server.url("/api/a")).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{}", key.algorithm());
        assert!(server.refusals().is_empty(), "{:?}", server.refusals());
    }
}

#[tokio::test]
async fn the_reqwest_middleware_sends_dpop_with_nonces() {
    let server = server::start(Config {
        nonce_at_api: true,
        nonce_at_token: true,
        ..Config::default()
    })
    .await;
    let dpop = Dpop::generate().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::new(client_credentials(&server, &dpop)).replay_on_401())
        .build();
    for path in ["/api/a", "/api/b?page=2"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "ok tok-2");
    }
    let response = client
        .post(server.url("/api/c"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.token_calls(), 2);
    assert_eq!(server.api_calls(), 4);
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn misconfigurations_are_clear_config_errors() {
    // A relative URI: the proof needs the absolute URL.
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
        .service(hyper());
    let err = get(&mut client, "/relative").await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>().unwrap().kind(),
        ErrorKind::Config
    );
}

/// A `tracing` writer that keeps everything written, to search it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_token_key_or_proof_in_debug_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = server::start(Config {
        nonce_at_api: true,
        nonce_at_token: true,
        ..Config::default()
    })
    .await;
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/ec_pkcs8.pem"
    ))
    .unwrap();
    let dpop = Dpop::new(DpopKey::es256_pem(&pem).unwrap());
    let layer = BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401();
    let mut client = ServiceBuilder::new().layer(layer.clone()).service(hyper());
    get(&mut client, &server.url("/api/a")).await.unwrap();
    let proof = server.last_api_proof.lock().unwrap().clone().unwrap();

    let pem_body: String = String::from_utf8(pem.clone())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let shown = format!(
        "{dpop:?} {:?} {layer:?} {client:?} {:?}",
        dpop.key(),
        layer.cache().current()
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("DPoP nonce"),
        "the logs were captured: {logs}"
    );
    for text in [&shown, &logs] {
        assert!(!text.contains("tok-"), "{text}");
        assert!(!text.contains(&proof[..40]), "{text}");
        assert!(!text.contains(&pem_body[..40]), "{text}");
        assert!(!text.contains("nonce-0"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_token_and_never_share_a_proof() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(client_credentials(&server, &dpop)).replay_on_401())
        .service(hyper());
    let requests = (0..64).map(|i| {
        let mut client = client.clone();
        let url = server.url(&format!("/api/item/{}", i % 4));
        tokio::spawn(async move { get(&mut client, &url).await.unwrap().0 })
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(server.token_calls(), 1);
    assert_eq!(server.api_calls(), 64);
    // Every proof had its own jti: a repeated one would have been refused.
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn the_bearer_middleware_sends_dpop_bound_tokens_with_its_rules() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let middleware = tower_bearer::BearerAuthMiddleware::new(client_credentials(&server, &dpop))
        .allow_origin(tower_bearer::Origin::parse(&server.base).unwrap());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let response = client.get(server.url("/api/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let other = server.url("/api/x").replace("127.0.0.1", "localhost");
    let response = client.get(other).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "no token for another origin"
    );
    assert_eq!(server.token_calls(), 1);
}

/// A source of the user's that wraps a DPoP source and implements `fetch` only.
struct Wrapper(ClientCredentials);

impl TokenSource for Wrapper {
    async fn fetch(&self) -> Result<tower_bearer::Token, Error> {
        self.0.fetch().await
    }
}

#[tokio::test]
async fn a_wrapper_source_that_only_fetches_still_sends_dpop() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let wrapper = Wrapper(client_credentials(&server, &dpop));
    assert!(wrapper.dpop().is_none(), "the wrapper declares nothing");
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(wrapper))
        .service(hyper());
    let (status, body) = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok tok-1"));

    let middleware = BearerAuthMiddleware::new(Wrapper(client_credentials(&server, &dpop)));
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let response = client.get(server.url("/api/b")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok tok-2");
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

#[tokio::test]
async fn a_nonce_retry_does_not_use_up_the_replay() {
    let server = server::start(Config {
        nonce_at_api: true,
        ..Config::default()
    })
    .await;
    let dpop = Dpop::generate().unwrap();
    let cache = TokenCache::new(client_credentials(&server, &dpop));
    cache.token().await.unwrap();
    // tok-1 is rejected; the first proof has no nonce yet.
    server.revoked.lock().unwrap().insert("tok-1".into());
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()).replay_on_401())
        .service(hyper());
    let (status, body) = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok tok-2"));
    assert_eq!(
        server.api_calls(),
        3,
        "the nonce retry, then the replay with a new token"
    );

    // The same through the middleware.
    let server = server::start(Config {
        nonce_at_api: true,
        ..Config::default()
    })
    .await;
    let cache = TokenCache::new(client_credentials(&server, &dpop));
    cache.token().await.unwrap();
    server.revoked.lock().unwrap().insert("tok-1".into());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(cache).replay_on_401())
        .build();
    let response = client.get(server.url("/api/a")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok tok-2");
    assert_eq!(server.api_calls(), 3);
}

/// The nonce claim of a proof, if any.
fn proof_nonce(proof: &http::HeaderValue) -> Option<String> {
    let claims = proof.to_str().unwrap().split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    claims["nonce"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_nonce_is_stored_for_the_origin_that_sent_it_after_a_redirect() {
    let server = server::start(Config::default()).await;
    // B asks for a nonce; R redirects to B.
    let serve = |app: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    };
    let b = serve(axum::Router::new().fallback(|| async {
        (
            StatusCode::UNAUTHORIZED,
            [
                ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ("dpop-nonce", "from-b"),
            ],
        )
    }))
    .await;
    let target = format!("{b}/api/x");
    let r = serve(axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { axum::response::Redirect::temporary(&target) }
    }))
    .await;
    let dpop = Dpop::generate().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::new(client_credentials(
            &server, &dpop,
        )))
        .build();
    let response = client.get(format!("{r}/api/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let proof = |url: String| {
        dpop.proof(&Method::GET, &url.parse().unwrap(), None)
            .unwrap()
    };
    assert_eq!(
        proof_nonce(&proof(format!("{b}/other"))).as_deref(),
        Some("from-b")
    );
    assert_eq!(
        proof_nonce(&proof(format!("{r}/other"))),
        None,
        "not the origin asked"
    );
}

#[tokio::test]
async fn a_rejection_rule_applies_to_dpop_tokens() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let cache = TokenCache::new(client_credentials(&server, &dpop));
    cache.token().await.unwrap();
    server.revoked.lock().unwrap().insert("tok-1".into());
    // This API says "token expired" with a bare 403.
    let as_403 = |mut response: http::Response<hyper::body::Incoming>| {
        if response.status() == StatusCode::UNAUTHORIZED {
            *response.status_mut() = StatusCode::FORBIDDEN;
            response.headers_mut().remove("www-authenticate");
        }
        response
    };
    let mut client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::from_cache(cache.clone())
                .rejects_token_when(|status, _| status == StatusCode::FORBIDDEN)
                .replay_on_401(),
        )
        .map_response(as_403)
        .service(hyper());
    let (status, body) = get(&mut client, &server.url("/api/a")).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok tok-2"));
    assert_eq!(server.api_calls(), 2);
}

#[tokio::test]
async fn a_body_rule_applies_to_dpop_tokens() {
    let server = server::start(Config::default()).await;
    let dpop = Dpop::generate().unwrap();
    let cache = TokenCache::new(client_credentials(&server, &dpop));
    cache.token().await.unwrap();
    server.revoked.lock().unwrap().insert("tok-1".into());
    // This API says "token expired" only in the body of a bare 403.
    let as_403 = |response: http::Response<hyper::body::Incoming>| {
        let (mut parts, body) = response.into_parts();
        let expired = parts.status == StatusCode::UNAUTHORIZED;
        if expired {
            parts.status = StatusCode::FORBIDDEN;
            parts.headers.remove("www-authenticate");
        }
        let body = if expired {
            Full::new(Bytes::from_static(br#"{"error":"token_expired"}"#))
                .map_err(tower::BoxError::from)
                .boxed()
        } else {
            body.map_err(tower::BoxError::from).boxed()
        };
        http::Response::from_parts(parts, body)
    };
    let mut client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::from_cache(cache.clone())
                .replay_on_401()
                .rejects_token_when_body([StatusCode::FORBIDDEN], |_, _, body: &[u8]| {
                    body == br#"{"error":"token_expired"}"#
                }),
        )
        .map_response(as_403)
        .service(hyper());
    let request = Request::get(server.url("/api/a"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok tok-2");
    assert_eq!(server.api_calls(), 2);
}
