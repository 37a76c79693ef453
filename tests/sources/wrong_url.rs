//! A mistyped token URL (a 404, or a 405 from a path that exists for another method) is a
//! configuration error naming the status and the host, never "the credential was refused", in
//! every source family; and `ApiKeyExchange` does not answer it by spending the API key.

use tower_bearer::secret::{ApiKey, ClientSecret, RefreshToken};
use tower_bearer::source::{
    ApiKeyExchange, ClientAuth, ClientCredentials, RefreshEndpoint, RefreshTokenGrant,
};
use tower_bearer::store::MemoryStore;
use tower_bearer::{Error, ErrorKind, TokenSource};

use crate::common::{TokenServer, answer, assert_no_secret, token_answer};

const SECRET: &str = "wrong-url-secret-71c9";

/// A server whose token endpoint is at `/oauth2/token`; sources are pointed at `/oauth2/tokn`.
async fn server() -> (TokenServer, String) {
    let server = TokenServer::start("/oauth2/token", |_, n| token_answer(n)).await;
    let typo = format!("{}/oauth2/tokn", server.base);
    (server, typo)
}

fn assert_wrong_url(err: &Error, status: u16) {
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{err}");
    assert_eq!(err.host(), Some("127.0.0.1"), "{err}");
    let shown = err.to_string();
    assert!(shown.contains("token URL"), "{shown}");
    assert!(
        shown.contains(&format!("HTTP {status} from 127.0.0.1")),
        "{shown}"
    );
    assert!(!shown.contains("refused"), "{shown}");
    assert_no_secret(err, &[SECRET]);
}

#[tokio::test]
async fn refresh_endpoint_404_is_a_config_error() {
    let (server, typo) = server().await;
    let source = RefreshEndpoint::builder(&typo, RefreshToken::new(SECRET))
        .build()
        .unwrap();
    assert_wrong_url(&source.fetch().await.unwrap_err(), 404);
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn refresh_endpoint_405_is_a_config_error() {
    // The path exists, for POST only (a login page, another API's route).
    let server = TokenServer::start("/login", |_, _| {
        answer(405, "text/plain", "Method Not Allowed")
    })
    .await;
    let source = RefreshEndpoint::builder(&server.url, RefreshToken::new(SECRET))
        .build()
        .unwrap();
    assert_wrong_url(&source.fetch().await.unwrap_err(), 405);
}

#[tokio::test]
async fn client_credentials_404_is_a_config_error() {
    let (_server, typo) = server().await;
    for auth in [
        ClientAuth::client_secret_basic("cid", ClientSecret::new(SECRET)),
        ClientAuth::client_secret_post("cid", ClientSecret::new(SECRET)),
    ] {
        let source = ClientCredentials::builder(&typo, auth).build().unwrap();
        assert_wrong_url(&source.fetch().await.unwrap_err(), 404);
    }
}

#[tokio::test]
async fn refresh_token_grant_404_is_a_config_error_and_keeps_the_refresh_token() {
    let (_server, typo) = server().await;
    let store = MemoryStore::new(RefreshToken::new(SECRET));
    let source = RefreshTokenGrant::builder(&typo, store.clone())
        .build()
        .unwrap();
    assert_wrong_url(&source.fetch().await.unwrap_err(), 404);
    assert_eq!(store.get(), Some(RefreshToken::new(SECRET)));
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn jwt_bearer_404_is_a_config_error() {
    use tower_bearer::source::JwtBearer;
    use tower_bearer::source::assertion::{Assertion, SigningKey};

    let (_server, typo) = server().await;
    let key = SigningKey::hs256(&ClientSecret::new(format!("{SECRET}-{SECRET}"))).unwrap();
    let source = JwtBearer::builder(&typo, Assertion::new(key, "robot@example.com"))
        .build()
        .unwrap();
    assert_wrong_url(&source.fetch().await.unwrap_err(), 404);
}

#[tokio::test]
async fn api_key_exchange_does_not_fall_back_to_the_api_key_on_a_wrong_refresh_url() {
    let server = TokenServer::start("/auth/api-key", |_, n| token_answer(n)).await;
    let source = ApiKeyExchange::builder(&server.url, ApiKey::new(SECRET))
        .refresh_url(format!("{}/auth/refersh", server.base))
        .store(MemoryStore::new(RefreshToken::new("rt-1")))
        .build()
        .unwrap();
    assert_wrong_url(&source.fetch().await.unwrap_err(), 404);
    // The API key was not sent: the refresh token was never refused, the URL is wrong.
    assert_eq!(server.calls(), 0);
    assert_eq!(source.store().get(), Some(RefreshToken::new("rt-1")));
}

#[tokio::test]
async fn api_key_exchange_404_on_the_exchange_url_is_a_config_error() {
    let (_server, typo) = server().await;
    let source = ApiKeyExchange::builder(&typo, ApiKey::new(SECRET))
        .build()
        .unwrap();
    assert_wrong_url(&source.fetch().await.unwrap_err(), 404);
}
