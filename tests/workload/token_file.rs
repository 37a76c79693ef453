//! `TokenFile`: re-read for every exchange and after a rejection, as the subject of a token
//! exchange, the assertion of a JWT-bearer grant, a client assertion and a source of its own;
//! bad files are typed errors.

use std::time::Duration;

use axum::http::StatusCode;
use tower_bearer::source::workload::TokenFile;
use tower_bearer::source::{ClientAuth, ClientCredentials, JwtBearer, TokenExchange, token_type};
use tower_bearer::{ErrorKind, TokenCache, TokenSource};

use crate::common::jwt_expiring_in;
use crate::support::{
    ProjectedVolume, RotatedOnRefusal, StandIn, chain, oauth_error, replace_file, temp_dir, token,
};

#[tokio::test]
async fn a_rotated_projected_token_is_the_subject_of_the_next_exchange() {
    let first = jwt_expiring_in(Duration::from_secs(3600), "first");
    let second = jwt_expiring_in(Duration::from_secs(3600), "second");
    let mut volume = ProjectedVolume::new("exchange", &first);
    let server = StandIn::start(|_, i| token(&format!("api-{i}"))).await;
    let exchange = TokenExchange::builder(server.url("/token"))
        .subject_from(TokenFile::new(volume.token_path()), token_type::JWT)
        .audience("orders")
        .build()
        .unwrap();

    assert_eq!(exchange.fetch().await.unwrap().secret(), "api-0");
    volume.rotate(&second);
    assert_eq!(exchange.fetch().await.unwrap().secret(), "api-1");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let (a, b) = (seen[0].form(), seen[1].form());
    assert_eq!(
        a["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(a["subject_token"], first);
    assert_eq!(a["subject_token_type"], token_type::JWT);
    assert_eq!(a["audience"], "orders");
    assert_eq!(b["subject_token"], second);
}

#[tokio::test]
async fn a_refused_exchange_rereads_the_file_and_tries_once_more() {
    // The platform rotates the file just as the server refuses the old token.
    let RotatedOnRefusal {
        path,
        old,
        new,
        server,
    } = RotatedOnRefusal::start(
        "refused",
        "subject_token",
        "api-token",
        (StatusCode::BAD_REQUEST, "invalid_grant"),
    )
    .await;
    let exchange = TokenExchange::builder(server.url("/token"))
        .subject_from(TokenFile::new(&path), token_type::JWT)
        .build()
        .unwrap();
    assert_eq!(exchange.fetch().await.unwrap().secret(), "api-token");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].form()["subject_token"], old);
    assert_eq!(seen[1].form()["subject_token"], new);

    // Refused with nothing new to read: one request, the refusal, no loop.
    let before = server.seen().len();
    std::fs::write(&path, &old).unwrap();
    let refusing =
        StandIn::start(|_, _| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant")).await;
    let exchange = TokenExchange::builder(refusing.url("/token"))
        .subject_from(TokenFile::new(&path), token_type::JWT)
        .build()
        .unwrap();
    let err = exchange.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(refusing.seen().len(), 1);
    assert_eq!(server.seen().len(), before);
}

#[tokio::test]
async fn a_client_assertion_from_a_file_follows_a_plain_rename() {
    let dir = temp_dir("client-assertion");
    let path = dir.join("azure-identity-token");
    let first = jwt_expiring_in(Duration::from_secs(3600), "first");
    let second = jwt_expiring_in(Duration::from_secs(3600), "second");
    std::fs::write(&path, &first).unwrap();
    let server = StandIn::start(|_, i| token(&format!("cc-{i}"))).await;
    let source = ClientCredentials::builder(
        server.url("/token"),
        ClientAuth::client_assertion("app-id", TokenFile::new(&path)),
    )
    .scope("api://orders/.default")
    .build()
    .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "cc-0");
    replace_file(&path, &second);
    assert_eq!(source.fetch().await.unwrap().secret(), "cc-1");
    let seen = server.seen();
    for (request, expected) in seen.iter().zip([&first, &second]) {
        let form = request.form();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "app-id");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(&form["client_assertion"], expected);
        assert!(request.header("authorization").is_none());
    }
}

#[tokio::test]
async fn a_refused_client_assertion_is_read_again_once() {
    let RotatedOnRefusal { path, server, .. } = RotatedOnRefusal::start(
        "client-assertion-refused",
        "client_assertion",
        "cc-token",
        (StatusCode::UNAUTHORIZED, "invalid_client"),
    )
    .await;
    let source = ClientCredentials::builder(
        server.url("/token"),
        ClientAuth::client_assertion("app-id", TokenFile::new(&path)),
    )
    .build()
    .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "cc-token");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_jwt_bearer_assertion_is_read_for_every_request() {
    let dir = temp_dir("jwt-bearer");
    let path = dir.join("token");
    let first = jwt_expiring_in(Duration::from_secs(3600), "first");
    let second = jwt_expiring_in(Duration::from_secs(3600), "second");
    std::fs::write(&path, &first).unwrap();
    let server = StandIn::start(|_, i| token(&format!("jb-{i}"))).await;
    let source = JwtBearer::builder_from(server.url("/token"), TokenFile::new(&path))
        .scope("read")
        .build()
        .unwrap();
    source.fetch().await.unwrap();
    replace_file(&path, &second);
    source.fetch().await.unwrap();
    let seen = server.seen();
    assert_eq!(
        seen[0].form()["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(seen[0].form()["assertion"], first);
    assert_eq!(seen[0].form()["scope"], "read");
    assert_eq!(seen[1].form()["assertion"], second);
}

#[tokio::test]
async fn bad_token_files_are_typed_errors_and_nothing_is_sent() {
    let dir = temp_dir("bad");
    let path = dir.join("token");
    let server = StandIn::start(|_, _| token("never")).await;
    let source = ClientCredentials::builder(
        server.url("/token"),
        ClientAuth::client_assertion("app-id", TokenFile::new(&path)),
    )
    .build()
    .unwrap();

    let missing = source.fetch().await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Config);
    assert!(
        chain(&missing).contains("does not exist"),
        "{}",
        chain(&missing)
    );

    std::fs::write(&path, "").unwrap();
    let empty = source.fetch().await.unwrap_err();
    assert_eq!(empty.kind(), ErrorKind::InvalidResponse);

    std::fs::write(&path, "not-a-jwt-secret").unwrap();
    let opaque = source.fetch().await.unwrap_err();
    assert_eq!(opaque.kind(), ErrorKind::InvalidResponse);
    let shown = format!("{} {opaque:?}", chain(&opaque));
    assert!(!shown.contains("not-a-jwt-secret"), "{shown}");

    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn a_token_file_is_a_source_of_its_own_with_the_jwt_lifetime() {
    let dir = temp_dir("source");
    let path = dir.join("token");
    let first = jwt_expiring_in(Duration::from_secs(3600), "first");
    std::fs::write(&path, &first).unwrap();
    let file = TokenFile::new(&path);
    let token = file.fetch().await.unwrap();
    assert_eq!(token.secret(), first);
    assert!(token.jwt_expiry().is_some());
    // In a cache, behind the layer.
    let cache = TokenCache::new(file);
    let client = crate::common::client(cache.clone());
    assert_eq!(
        crate::common::send(&client).await.unwrap(),
        format!("Bearer {first}")
    );
    // An opaque token is accepted only when asked for.
    std::fs::write(&path, "opaque").unwrap();
    assert!(TokenFile::new(&path).fetch().await.is_err());
    let opaque = TokenFile::new(&path).any_format().fetch().await.unwrap();
    assert_eq!(opaque.secret(), "opaque");
}

#[tokio::test]
async fn a_refused_jwt_bearer_assertion_is_read_again_once() {
    let RotatedOnRefusal {
        path,
        old,
        new,
        server,
    } = RotatedOnRefusal::start(
        "jwt-bearer-refused",
        "assertion",
        "jb-token",
        (StatusCode::BAD_REQUEST, "invalid_grant"),
    )
    .await;
    let source = JwtBearer::builder_from(server.url("/token"), TokenFile::new(&path))
        .build()
        .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "jb-token");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].form()["assertion"], old);
    assert_eq!(seen[1].form()["assertion"], new);
}
