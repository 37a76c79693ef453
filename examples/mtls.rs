//! Mutual TLS (RFC 8705) end to end, against an embedded token server and API on 127.0.0.1
//! that require a client certificate (a test PKI generated at start with rcgen).
//!
//!     cargo run --example mtls --features reqwest-middleware
//!
//! 1. `tls_client_auth`: the token request presents the client certificate; no secret is sent.
//! 2. The token is bound to that certificate, so API calls present it too: with reqwest
//!    (`ClientBuilder::identity`) and with hyper-util over a rustls connector (hyper-rustls,
//!    `with_client_auth_cert`), each with the bearer layer or middleware attaching the token.
//!
//! Prints the token request's client id and the two API answers.

#[path = "../tests/support/mtls_server.rs"]
mod mtls_server;

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::http_client::{ClientIdentity, ReqwestClient};
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{BearerAuthLayer, BearerAuthMiddleware, TokenCache};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let pki = mtls_server::pki();
    let server = mtls_server::start(&pki).await;

    // The client's certificate chain and key, from PEM.
    let identity =
        ClientIdentity::from_pem(pki.client_chain.as_bytes(), pki.client_key.as_bytes())?;

    // 1. Client authentication by certificate. The built-in client presents the identity; here
    //    it also trusts the test CA for the server's certificate (a private PKI).
    let token_client = ReqwestClient::new()?
        .with_root_certificates(pki.ca.as_bytes())?
        .with_client_identity(identity.clone())?;
    let source = ClientCredentials::builder(
        server.token_url(),
        ClientAuth::tls_client_auth("my-client", identity.clone()),
    )
    .build_with(token_client)?;
    let cache = TokenCache::new(source);
    cache.token().await?;
    let sent = server.token_requests.lock().unwrap()[0].clone();
    println!(
        "token request: client_id={} client_secret sent: {}",
        sent.form["client_id"],
        sent.form.contains_key("client_secret")
    );

    // 2a. reqwest, presenting the same identity, with the bearer middleware.
    let ca = reqwest::Certificate::from_pem(pki.ca.as_bytes())?;
    let reqwest = reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity.reqwest_identity()?)
        .build()?;
    let reqwest = reqwest_middleware::ClientBuilder::new(reqwest)
        .with(BearerAuthMiddleware::from_cache(cache.clone()))
        .build();
    let answer = reqwest
        .get(format!("{}/api/accounts", server.base))
        .send()
        .await?;
    println!("reqwest:    {} {}", answer.status(), answer.text().await?);

    // 2b. hyper-util over rustls (hyper-rustls), presenting the same identity.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes())?)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(Arc::new(roots))
        .with_client_auth_cert(identity.cert_chain(), identity.private_key())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let mut hyper = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https));
    let request = Request::get(format!("{}/api/accounts", server.base)).body(Full::default())?;
    let response = hyper.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("hyper-util: {status} {}", String::from_utf8_lossy(&body));
    Ok(())
}
