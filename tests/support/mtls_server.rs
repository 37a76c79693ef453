//! A test PKI made at run time (rcgen) and a local TLS token server and API (rustls) that
//! require a client certificate: from the test CA, or one registered self-signed certificate.
//! Tokens are bound to the certificate that got them (RFC 8705 §3), and the API accepts a
//! token only over a connection presenting that same certificate.
//!
//! Shared by `tests/mtls.rs` and `examples/mtls.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

/// PEM texts of a CA, a server certificate for 127.0.0.1 and localhost, and client identities.
pub struct Pki {
    pub ca: String,
    pub server_chain: String,
    pub server_key: String,
    /// Issued by the CA, subject `CN=my-client`.
    pub client_chain: String,
    pub client_key: String,
    /// Issued by another CA the server does not trust.
    pub stranger_chain: String,
    pub stranger_key: String,
    /// Self-signed, for `self_signed_tls_client_auth`.
    pub self_signed: String,
    pub self_signed_key: String,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: Option<&Issuer<'_, KeyPair>>,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.pem(), key.serialize_pem())
}

pub fn pki() -> Pki {
    let (ca, issuer) = new_ca("tower-bearer test CA");
    let (_, other) = new_ca("a CA nobody trusts");
    let server = leaf(
        "localhost",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        Some(&issuer),
    );
    let client = leaf(
        "my-client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        Some(&issuer),
    );
    let stranger = leaf(
        "stranger",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        Some(&other),
    );
    let self_signed = leaf(
        "my-self-signed-client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        None,
    );
    Pki {
        ca,
        server_chain: server.0,
        server_key: server.1,
        client_chain: client.0,
        client_key: client.1,
        stranger_chain: stranger.0,
        stranger_key: stranger.1,
        self_signed: self_signed.0,
        self_signed_key: self_signed.1,
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Accepts certificates from the CA, and one registered self-signed certificate.
#[derive(Debug)]
struct Verifier {
    ca: Arc<dyn ClientCertVerifier>,
    self_signed: CertificateDer<'static>,
}

impl ClientCertVerifier for Verifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, tokio_rustls::rustls::Error> {
        if end_entity.as_ref() == self.self_signed.as_ref() {
            return Ok(ClientCertVerified::assertion());
        }
        self.ca.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}

/// What the server saw of one token request.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub form: HashMap<String, String>,
    pub authorization: Option<String>,
    /// The client certificate's subject CN the request came with.
    pub client_cert: Vec<u8>,
}

pub struct MtlsServer {
    pub base: String,
    pub token_requests: Mutex<Vec<TokenRequest>>,
    pub handshake_failures: AtomicUsize,
    pub api_calls: AtomicUsize,
    /// Token → the certificate (DER) it is bound to.
    bound: Mutex<HashMap<String, Vec<u8>>>,
}

impl MtlsServer {
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }
}

pub async fn start(pki: &Pki) -> Arc<MtlsServer> {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = RootCertStore::empty();
    roots.add(der(&pki.ca)).unwrap();
    let verifier = Verifier {
        ca: WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap(),
        self_signed: der(&pki.self_signed),
    };
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let chain = vec![der(&pki.server_chain)];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Arc::new(MtlsServer {
        base: format!("https://{}", listener.local_addr().unwrap()),
        token_requests: Mutex::default(),
        handshake_failures: AtomicUsize::new(0),
        api_calls: AtomicUsize::new(0),
        bound: Mutex::default(),
    });
    let state = Arc::clone(&server);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => serve(tls, &state).await,
                    Err(_) => {
                        state.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    server
}

/// One HTTP/1.1 exchange, by hand: enough for a token request and an API call.
async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    server: &MtlsServer,
) {
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = tls.read(&mut chunk).await else {
            server.handshake_failures.fetch_add(1, Ordering::SeqCst);
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = &buf[head_end..head_end + length];
    let (status, answer) = if request_line.starts_with("POST /token ") {
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let mut requests = server.token_requests.lock().unwrap();
        requests.push(TokenRequest {
            form,
            authorization: headers.get("authorization").cloned(),
            client_cert: peer.clone(),
        });
        let token = format!("mtls-token-{}", requests.len());
        server.bound.lock().unwrap().insert(token.clone(), peer);
        (
            "200 OK",
            format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#),
        )
    } else {
        server.api_calls.fetch_add(1, Ordering::SeqCst);
        let token = headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let bound = server.bound.lock().unwrap().get(token).cloned();
        if bound.is_some_and(|cert| cert == peer) {
            ("200 OK", r#"{"bound":"ok"}"#.to_owned())
        } else {
            (
                "401 Unauthorized",
                r#"{"error":"invalid_token"}"#.to_owned(),
            )
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.shutdown().await;
}
