//! Discovery (RFC 8414, OpenID Connect Discovery 1.0) against an authorization server on
//! 127.0.0.1: where the document is looked for, what is checked in it, when it is fetched
//! again, and that the sources built from it call the endpoint it names.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, Discovery};
use tower_bearer::store::MemoryStore;
use tower_bearer::{ErrorKind, TokenCache, TokenSource};

use crate::common::{Recorded, TokenServer, answer, assert_no_secret, json, token_answer};

fn path(recorded: &Recorded) -> String {
    recorded.header("x-path").unwrap().to_owned()
}

fn basic() -> ClientAuth {
    ClientAuth::client_secret_basic("client", ClientSecret::new("s3cr3t-value"))
}

/// An authorization server whose metadata is `document(base)` at `at`; tokens at `/token`.
async fn auth_server(
    at: &'static str,
    document: impl Fn(&str) -> serde_json::Value + Clone + Send + Sync + 'static,
) -> TokenServer {
    let base = Arc::new(Mutex::new(String::new()));
    let seen_base = base.clone();
    let server = TokenServer::start_routes(
        &[
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server/{*rest}",
            "/{*rest}",
        ],
        move |recorded, n| {
            let p = path(recorded);
            let base = seen_base.lock().unwrap().clone();
            if p == at {
                json(document(&base))
            } else if p == "/token" {
                token_answer(n)
            } else {
                answer(404, "text/plain", "not found")
            }
        },
    )
    .await;
    *base.lock().unwrap() = server.base.clone();
    server
}

fn standard(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "grant_types_supported": ["client_credentials", "refresh_token"],
    })
}

fn paths(server: &TokenServer) -> Vec<String> {
    server.requests.lock().unwrap().iter().map(path).collect()
}

#[tokio::test]
async fn the_token_endpoint_comes_from_the_document_which_is_fetched_once() {
    let server = auth_server("/.well-known/oauth-authorization-server", standard).await;
    let discovery = Discovery::new(&server.base).unwrap();
    let cache = TokenCache::new(discovery.client_credentials(basic(), |b| b.scope("a b")));
    let first = cache.token().await.unwrap();
    cache.invalidate(&first);
    cache.token().await.unwrap();
    assert_eq!(
        paths(&server),
        [
            "/.well-known/oauth-authorization-server",
            "/token",
            "/token"
        ]
    );
    let token_request = server.request(1);
    assert_eq!(token_request.get("grant_type"), Some("client_credentials"));
    assert_eq!(token_request.get("scope"), Some("a b"));
    assert!(
        token_request
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn an_issuer_with_a_path_is_looked_up_by_rfc_8414_insertion_then_openid_appending() {
    // Only the OpenID Connect location exists.
    let server = auth_server("/tenant/a/.well-known/openid-configuration", |base| {
        standard(&format!("{base}/tenant/a"))
    })
    .await;
    let issuer = format!("{}/tenant/a", server.base);
    let discovery = Discovery::new(&issuer).unwrap();
    let metadata = discovery.metadata().await.unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(
        paths(&server),
        [
            "/.well-known/oauth-authorization-server/tenant/a",
            "/tenant/a/.well-known/openid-configuration"
        ]
    );

    // With the RFC 8414 location, the first look finds it.
    let server = auth_server("/.well-known/oauth-authorization-server/tenant/a", |base| {
        standard(&format!("{base}/tenant/a"))
    })
    .await;
    let issuer = format!("{}/tenant/a/", server.base); // a trailing slash is not inserted
    let discovery = Discovery::new(&issuer).unwrap();
    let err = discovery.metadata().await.unwrap_err();
    // ... but the document names the issuer without the slash: not identical, refused.
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("RFC 8414 §3.3"), "{err}");
    assert_eq!(
        paths(&server),
        ["/.well-known/oauth-authorization-server/tenant/a"]
    );
}

#[tokio::test]
async fn a_document_naming_another_issuer_is_refused_before_any_credential_is_sent() {
    let server = auth_server("/.well-known/oauth-authorization-server", |base| {
        serde_json::json!({
            "issuer": "https://evil.example.com",
            "token_endpoint": format!("{base}/token"),
        })
    })
    .await;
    let source = Discovery::new(&server.base)
        .unwrap()
        .client_credentials(basic(), |b| b);
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("evil.example.com"), "{err}");
    assert_no_secret(&err, &["s3cr3t-value"]);
    assert_eq!(paths(&server), ["/.well-known/oauth-authorization-server"]);
}

#[tokio::test]
async fn an_auth_method_the_server_does_not_list_is_refused() {
    let server = auth_server("/.well-known/oauth-authorization-server", standard).await;
    let discovery = Discovery::new(&server.base).unwrap();
    let post = ClientAuth::client_secret_post("client", ClientSecret::new("s3cr3t-value"));
    let err = discovery
        .client_credentials(post, |b| b)
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("client_secret_post"), "{err}");
    assert!(err.to_string().contains("\"private_key_jwt\""), "{err}");
    assert!(!paths(&server).contains(&"/token".to_owned()));

    // Without the list, only client_secret_basic is assumed (RFC 8414 §2).
    let server = auth_server(
        "/.well-known/oauth-authorization-server",
        |base| serde_json::json!({"issuer": base, "token_endpoint": format!("{base}/token")}),
    )
    .await;
    let discovery = Discovery::new(&server.base).unwrap();
    assert!(
        discovery
            .client_credentials(basic(), |b| b)
            .fetch()
            .await
            .is_ok()
    );
    let none = ClientAuth::none("public-client");
    let err = discovery
        .client_credentials(none, |b| b)
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn the_document_is_fetched_again_after_the_token_endpoint_stops_answering() {
    // The first document names /old-token, which answers 503; the second names /token.
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    let base = Arc::new(Mutex::new(String::new()));
    let seen_base = base.clone();
    let server = TokenServer::start_routes(
        &[
            "/.well-known/oauth-authorization-server",
            "/old-token",
            "/token",
        ],
        move |recorded, n| {
            let base = seen_base.lock().unwrap().clone();
            match path(recorded).as_str() {
                "/.well-known/oauth-authorization-server" => {
                    let k = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let endpoint = if k == 0 { "old-token" } else { "token" };
                    json(serde_json::json!({
                        "issuer": base,
                        "token_endpoint": format!("{base}/{endpoint}"),
                    }))
                }
                "/old-token" => answer(503, "text/plain", "gone for maintenance"),
                _ => token_answer(n),
            }
        },
    )
    .await;
    *base.lock().unwrap() = server.base.clone();
    let source = Discovery::new(&server.base)
        .unwrap()
        .client_credentials(basic(), |b| b);
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    let token = source.fetch().await.unwrap();
    assert!(token.secret().starts_with("access-"));
    assert_eq!(
        paths(&server),
        [
            "/.well-known/oauth-authorization-server",
            "/old-token",
            "/.well-known/oauth-authorization-server",
            "/token"
        ]
    );
}

#[tokio::test]
async fn the_document_is_fetched_again_on_schedule_and_a_failed_refetch_keeps_it() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let is_up = up.clone();
    let base = Arc::new(Mutex::new(String::new()));
    let seen_base = base.clone();
    let server = TokenServer::start("/.well-known/oauth-authorization-server", move |_, _| {
        if is_up.load(std::sync::atomic::Ordering::SeqCst) {
            json(standard(&seen_base.lock().unwrap()))
        } else {
            answer(500, "text/plain", "down")
        }
    })
    .await;
    *base.lock().unwrap() = server.base.clone();
    let discovery = Discovery::builder(server.base.clone())
        .refresh_every(Duration::from_millis(200))
        .build()
        .unwrap();
    let first = discovery.metadata().await.unwrap();
    let again = discovery.metadata().await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(server.calls(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let kept = discovery.metadata().await.unwrap();
    assert_eq!(server.calls(), 2, "fetched again on schedule");
    assert_eq!(
        kept.token_endpoint(),
        first.token_endpoint(),
        "the failed refetch kept the document"
    );
    // The next attempt waits (30 s), rather than hitting a failing server on every fetch.
    discovery.metadata().await.unwrap();
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn bad_documents_get_clear_typed_errors() {
    async fn error_for(
        respond: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> tower_bearer::Error {
        let base = Arc::new(Mutex::new(String::new()));
        let seen = base.clone();
        let server = TokenServer::start("/.well-known/oauth-authorization-server", move |_, _| {
            respond(&seen.lock().unwrap())
        })
        .await;
        *base.lock().unwrap() = server.base.clone();
        Discovery::new(&server.base)
            .unwrap()
            .metadata()
            .await
            .unwrap_err()
    }
    let html = error_for(|_| answer(200, "text/html", "<html>login</html>")).await;
    assert_eq!(html.kind(), ErrorKind::InvalidResponse);
    assert!(html.to_string().contains("not JSON"), "{html}");
    let garbage = error_for(|_| answer(200, "application/json", "{not json")).await;
    assert_eq!(garbage.kind(), ErrorKind::InvalidResponse);
    let redirect = error_for(|_| {
        axum::response::Response::builder()
            .status(302)
            .header("location", "https://elsewhere.example.com/")
            .body(axum::body::Body::empty())
            .unwrap()
    })
    .await;
    assert_eq!(redirect.kind(), ErrorKind::InvalidResponse);
    assert!(redirect.to_string().contains("redirect"), "{redirect}");
    let down = error_for(|_| answer(503, "text/plain", "down")).await;
    assert_eq!(down.kind(), ErrorKind::Transient);
    let huge = error_for(|base| {
        let mut doc = standard(base);
        doc["padding"] = serde_json::Value::String("x".repeat(100_000));
        json(doc)
    })
    .await;
    assert_eq!(huge.kind(), ErrorKind::InvalidResponse);
    assert!(huge.to_string().contains("larger than"), "{huge}");
    let plain_http = error_for(|base| {
        serde_json::json!({"issuer": base, "token_endpoint": "http://auth.example.com/token"})
            .pipe(json)
    })
    .await;
    assert_eq!(plain_http.kind(), ErrorKind::InvalidResponse);
    assert!(plain_http.to_string().contains("https"), "{plain_http}");

    // Nothing at either location.
    let server = TokenServer::start("/unrelated", |_, _| answer(200, "text/plain", "")).await;
    let err = Discovery::new(&server.base)
        .unwrap()
        .metadata()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("openid-configuration"), "{err}");
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[tokio::test]
async fn the_refresh_token_grant_gets_the_revocation_endpoint_too() {
    let base = Arc::new(Mutex::new(String::new()));
    let seen = base.clone();
    let server = TokenServer::start_routes(
        &["/.well-known/openid-configuration", "/token", "/revoke"],
        move |recorded, n| {
            let base = seen.lock().unwrap().clone();
            match path(recorded).as_str() {
                "/.well-known/openid-configuration" => json(serde_json::json!({
                    "issuer": base,
                    "token_endpoint": format!("{base}/token"),
                    "revocation_endpoint": format!("{base}/revoke"),
                })),
                "/token" => json(serde_json::json!({
                    "access_token": format!("access-{n}"),
                    "refresh_token": format!("refresh-{n}"),
                    "expires_in": 3600,
                })),
                _ => answer(200, "application/json", ""),
            }
        },
    )
    .await;
    *base.lock().unwrap() = server.base.clone();
    let store = MemoryStore::new(RefreshToken::new("refresh-0"));
    let discovered =
        Discovery::new(&server.base)
            .unwrap()
            .refresh_token(store.clone(), Some(basic()), |b| b);
    discovered.fetch().await.unwrap();
    let rotated = store.get().unwrap().secret().to_owned();
    discovered.get().await.unwrap().revoke().await.unwrap();
    let revoke = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .find(|r| path(r) == "/revoke")
        .cloned()
        .unwrap();
    assert_eq!(revoke.get("token"), Some(rotated.as_str()));
    assert_eq!(revoke.get("token_type_hint"), Some("refresh_token"));
    assert!(
        revoke
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn the_token_exchange_and_jwt_bearer_sources_use_the_discovered_endpoint() {
    let server = auth_server("/.well-known/oauth-authorization-server", |base| {
        serde_json::json!({
            "issuer": base,
            "token_endpoint": format!("{base}/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })
    })
    .await;
    let discovery = Discovery::new(&server.base).unwrap();
    let subject = TokenCache::new(tower_bearer::source::static_token("subject-jwt"));
    let exchange = discovery.token_exchange(Some(basic()), move |b| {
        b.subject(subject.clone(), tower_bearer::source::token_type::JWT)
            .audience("billing")
    });
    // `token_answer` has no issued_token_type: the exchange must refuse it, after sending the
    // request to the discovered endpoint.
    let err = exchange.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("issued_token_type"), "{err}");
    let sent = server.request(1);
    assert_eq!(path(&sent), "/token");
    assert_eq!(sent.get("subject_token"), Some("subject-jwt"));
    assert_eq!(sent.get("audience"), Some("billing"));

    #[cfg(feature = "jwt")]
    {
        use tower_bearer::source::assertion::{Assertion, SigningKey};
        let key =
            SigningKey::hs256(&ClientSecret::new("a-service-account-secret-of-32-bytes+")).unwrap();
        let jwt = discovery.jwt_bearer(Assertion::new(key, "robot@example.com"), None, |b| {
            b.scope("x")
        });
        assert!(jwt.fetch().await.unwrap().secret().starts_with("access-"));
        let sent = server.request(2);
        assert_eq!(path(&sent), "/token");
        assert_eq!(
            sent.get("grant_type"),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        // The assertion's audience is the discovered token endpoint.
        let assertion = sent.get("assertion").unwrap();
        let claims = assertion.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], format!("{}/token", server.base));
    }
}
