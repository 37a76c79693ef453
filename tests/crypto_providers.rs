//! Both crypto providers in one graph (ring and aws-lc-rs, as this `--all-features` build has
//! them, and as an application on ring gets when another dependency enables aws-lc-rs): rustls
//! then cannot pick a process-level provider by itself, and a bare `ClientConfig::builder()`
//! panics. The crate's own clients name their provider, so they work without a process default
//! and install none; the README's `install_default` line is what the application's other rustls
//! users need.
//!
//! rustls' process default is global state: this binary holds one test.

#[path = "support/mtls_server.rs"]
mod mtls_server;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, ServerConfig, crypto::CryptoProvider};
use tower_bearer::TokenSource;
use tower_bearer::http_client::ReqwestClient;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};

/// A token endpoint over TLS on 127.0.0.1, its server config on ring (named, not the default):
/// answers one request, and hands back the request it read.
async fn token_server(pki: &mtls_server::Pki) -> (String, tokio::task::JoinHandle<String>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(pki.server_chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/token",
        listener.local_addr().unwrap().port()
    );
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the head, then as many body bytes as it declares.
        loop {
            let n = tls.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|l| l.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
            assert!(n > 0, "the client closed before sending its request");
        }
        let body = r#"{"access_token":"tls-token","token_type":"Bearer","expires_in":60}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(answer.as_bytes()).await.unwrap();
        tls.shutdown().await.unwrap();
        String::from_utf8(request).unwrap()
    });
    (url, served)
}

/// Whether a bare `rustls::ClientConfig::builder()` (what many libraries call) panics.
fn bare_builder_panics() -> bool {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::panic::catch_unwind(|| {
        let _ = rustls::ClientConfig::builder();
    })
    .is_err();
    std::panic::set_hook(quiet);
    panicked
}

#[tokio::test]
async fn the_crates_clients_work_with_both_providers_and_no_process_default() {
    // The pitfall is real in this build: both providers, no default, a bare builder panics.
    assert!(CryptoProvider::get_default().is_none());
    assert!(
        bare_builder_panics(),
        "this build should have both providers"
    );

    // The crate's token client (TLS, with the crate's provider) and a signed client assertion
    // (JWT, the same provider) against a TLS server on ring.
    let pki = mtls_server::pki();
    let (url, served) = token_server(&pki).await;
    let client = ReqwestClient::new()
        .unwrap()
        .with_root_certificates(pki.ca.as_bytes())
        .unwrap();
    let secret = ClientSecret::new("a-client-secret-of-32-bytes-or-more");
    let source =
        ClientCredentials::builder(url, ClientAuth::client_secret_jwt("cid", &secret).unwrap())
            .build_with(client)
            .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "tls-token");
    let request = served.await.unwrap();
    assert!(request.starts_with("POST /token HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("client_assertion="), "{request}");

    // The crate installed no process default on the way.
    assert!(CryptoProvider::get_default().is_none());

    // The README's line: the application picks the process default for everyone else.
    rustls::crypto::ring::default_provider()
        .install_default()
        .unwrap();
    assert!(!bare_builder_panics());
}
