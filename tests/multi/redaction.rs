//! No token or secret in the `Debug` of anything added for calling several APIs, in their
//! errors, or in what they log.

use std::time::Duration;

use tower::Layer;
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{
    ClientAuth, Discovery, RefreshTokenGrant, Revocation, TokenExchange, static_token, token_type,
};
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache};

use crate::common::{LogCapture, TokenServer, json};

const SECRETS: [&str; 4] = [
    "client-secret-x",
    "subject-token-x",
    "access-token-x",
    "refresh-token-x",
];

fn assert_clean(shown: &str) {
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{secret} leaked into: {shown}");
    }
}

#[tokio::test]
async fn debug_errors_and_logs_show_no_secret() {
    let log = LogCapture::global();
    let server = TokenServer::start_routes(
        &[
            "/.well-known/oauth-authorization-server",
            "/token",
            "/revoke",
        ],
        |recorded, _| match recorded.header("x-path") {
            Some("/token") => json(serde_json::json!({
                "access_token": "access-token-x",
                "refresh_token": "refresh-token-x",
                "issued_token_type": token_type::ACCESS_TOKEN,
                "expires_in": 3600,
            })),
            Some("/revoke") => crate::common::answer(503, "text/plain", "refresh-token-x"),
            _ => crate::common::answer(500, "text/plain", "client-secret-x"),
        },
    )
    .await;
    let auth = ClientAuth::client_secret_post("client", ClientSecret::new("client-secret-x"));

    let keyed = KeyedTokenCache::new(|_: &&str| Ok(static_token("access-token-x")));
    keyed.token(&"a").await.unwrap();
    let layer = BearerAuthLayer::per_origin(
        keyed.clone(),
        [(Origin::from_static("https://a.example.com"), "a")],
    )
    .rejects_token_when(|_, _| false);
    let service = layer.layer(tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));

    let subject = TokenCache::builder(static_token("subject-token-x"))
        .initial_token(Token::new("subject-token-x").with_expires_in(Duration::from_secs(60)))
        .build();
    let exchange = TokenExchange::builder(
        server
            .url
            .clone()
            .replace("/.well-known/oauth-authorization-server", "/token"),
    )
    .subject(subject, token_type::JWT)
    .client_auth(auth.clone())
    .build()
    .unwrap();
    assert_eq!(
        tower_bearer::TokenSource::fetch(&exchange)
            .await
            .unwrap()
            .secret(),
        "access-token-x"
    );
    let discovery = Discovery::new(&server.base).unwrap();
    let discovered = discovery.client_credentials(auth.clone(), |b| b);
    let discovery_error = discovered.get().await.unwrap_err();

    let grant = RefreshTokenGrant::builder(
        format!("{}/token", server.base),
        MemoryStore::new(RefreshToken::new("refresh-token-x")),
    )
    .client_auth(auth.clone())
    .revocation_url(format!("{}/revoke", server.base))
    .build()
    .unwrap();
    let revoke_error = grant.revoke().await.unwrap_err();
    let revocation = Revocation::builder(format!("{}/revoke", server.base))
        .client_auth(auth)
        .build()
        .unwrap();
    let direct_error = revocation.revoke("access-token-x", None).await.unwrap_err();

    let shown = format!(
        "{keyed:?} {layer:?} {service:?} {exchange:?} {discovery:?} {discovered:?} {grant:?} \
         {revocation:?} {discovery_error} {discovery_error:?} {revoke_error} {revoke_error:?} \
         {direct_error} {direct_error:?} {:?}",
        keyed.cache(&"a").unwrap().token().await.unwrap(),
    );
    assert_clean(&shown);
    assert_clean(&log.0.lock().unwrap());
}
