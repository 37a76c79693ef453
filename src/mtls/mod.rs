//! Mutual TLS (RFC 8705): a [`ClientIdentity`] (certificate chain and private key) that
//! [`ReqwestClient`](crate::http_client::ReqwestClient) presents to the token endpoint, and
//! that your API client presents too when the tokens are certificate-bound.
//!
//! - Client authentication by certificate (RFC 8705 §2):
//!   [`ClientAuth::tls_client_auth`](crate::source::ClientAuth::tls_client_auth) (a certificate
//!   from a CA the server trusts, matched by subject) and
//!   [`ClientAuth::self_signed_tls_client_auth`](crate::source::ClientAuth::self_signed_tls_client_auth)
//!   (a self-signed certificate registered with the server). Only `client_id` goes in the
//!   form: the TLS handshake is the credential, and no secret is sent.
//! - Certificate-bound access tokens (RFC 8705 §3): the server binds the token to the
//!   certificate (`cnf.x5t#S256`), so API calls must present the same identity. With
//!   reqwest: `reqwest::Client::builder().identity(identity.reqwest_identity()?)`; with
//!   hyper-util over rustls: `ClientConfig::builder().with_root_certificates(..)
//!   .with_client_auth_cert(identity.cert_chain(), identity.private_key())` in a
//!   `hyper_rustls::HttpsConnector` (see `examples/mtls.rs`). The bearer layer then adds the
//!   token as usual.
//!
//! - Rotated files (cert-manager, a Vault agent, a mounted secret):
//!   [`ClientIdentity::from_files`] reads the certificate and key again when they change,
//!   as a pair that must match; the built-in client presents the new certificate from the
//!   next token request on, without touching the cache or its token, and the fleet binds
//!   shared tokens to the certificate in the files now.
//!
//! A server that refuses the certificate (none presented, an unknown issuer, an expired one)
//! makes the token request fail with a [`Rejected`](crate::ErrorKind::Rejected) error that says
//! so; a token endpoint whose own certificate is not trusted is a
//! [`Config`](crate::ErrorKind::Config) error.
//!
//! ```
//! use tower_bearer::http_client::ClientIdentity;
//! use tower_bearer::source::{ClientAuth, ClientCredentials};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(Vec::<String>::new())?.self_signed(&key)?;
//! # let (chain_pem, key_pem) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
//! // The certificate chain and key, e.g. from `std::fs::read("client-chain.pem")`.
//! let identity = ClientIdentity::from_pem(&chain_pem, &key_pem)?;
//!
//! // The token endpoint: the built-in client presents the certificate, no secret is sent.
//! let source = ClientCredentials::builder(
//!     "https://mtls.auth.example.com/oauth2/token",
//!     ClientAuth::tls_client_auth("my-client", identity.clone()),
//! )
//! .build()?;
//!
//! // The API, for certificate-bound tokens: the same identity.
//! let api = reqwest::Client::builder()
//!     .identity(identity.reqwest_identity()?)
//!     .build()?;
//! # let _ = (source, api); Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::Error;

mod files;

use self::files::IdentityFiles;

/// A TLS client identity: a certificate chain (leaf first) and its private key, from PEM, or
/// from two files re-read when they are rotated ([`from_files`](Self::from_files)).
///
/// Cheap to clone (an `Arc` inside; clones share the files' state). `Debug` shows how many
/// certificates there are (and the files' paths), never the key.
///
/// # Secrets in memory
///
/// The identity holds the key's DER and the PEM it was read from in buffers wiped on drop,
/// and the PEM parser decodes the DER straight into one of them. Not wiped, because they are
/// not this crate's: the PEM text you pass in (yours), the PEM parser's buffer of the key's
/// base64 text (inside `rustls-pki-types`, freed as parsing ends), each
/// [`private_key`](Self::private_key) copy (a `rustls_pki_types::PrivateKeyDer`, which does
/// not wipe itself: rustls keeps it for as long as its `ClientConfig` lives), and the copies
/// `reqwest` and rustls make from [`reqwest_identity`](Self::reqwest_identity) (the built-in
/// client's too).
///
/// ```
/// use tower_bearer::http_client::ClientIdentity;
///
/// let err = ClientIdentity::from_pem(b"no certificate here", b"nor a key").unwrap_err();
/// assert_eq!(err.kind(), tower_bearer::ErrorKind::Config);
/// ```
#[derive(Clone)]
pub struct ClientIdentity {
    inner: Arc<Held>,
}

/// A fixed pair, or files and the pair last read from them.
enum Held {
    Fixed(Arc<Pair>),
    Files(IdentityFiles),
}

/// A certificate chain and its key, read together.
pub(crate) struct Pair {
    certs: Vec<CertificateDer<'static>>,
    /// The key's DER, wiped on drop, and its form (PKCS#8, PKCS#1 or SEC1).
    key: Zeroizing<Vec<u8>>,
    key_kind: SectionKind,
    /// The key, then the chain, in PEM: what `reqwest::Identity::from_pem` reads.
    pem: Zeroizing<Vec<u8>>,
}

impl ClientIdentity {
    /// The certificate chain (`CERTIFICATE` blocks, leaf first) and the private key (PKCS#8,
    /// PKCS#1 or SEC1), both PEM. A missing certificate or key is a
    /// [`Config`](crate::ErrorKind::Config) error.
    pub fn from_pem(cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<Self, Error> {
        Ok(ClientIdentity {
            inner: Arc::new(Held::Fixed(Arc::new(Pair::from_pem(
                cert_chain_pem,
                private_key_pem,
            )?))),
        })
    }

    /// An identity read from two PEM files that are rotated in place (cert-manager, a Vault
    /// agent, a mounted Kubernetes secret): the certificate chain and its private key.
    ///
    /// Both files are read now (unreadable or invalid files, or a key that does not match the
    /// certificate, are a [`Config`](crate::ErrorKind::Config) error). Afterwards, every use
    /// (each token request of the built-in client, each fleet binding check) looks at the
    /// files' size, modification time and inode, and when either has changed reads and
    /// checks both again, as a pair: the key must parse and match the certificate's public
    /// key. A pair that does not (a half-written file, the certificate renewed but not yet
    /// its key) is not used: the previous pair stays in use, a warning is logged (the paths
    /// and what is wrong, never the key) and the files are read again when they next change.
    /// The token cache and its token are untouched by a rotation: the new certificate is
    /// presented from the next token request on.
    ///
    /// ```no_run
    /// use tower_bearer::http_client::ClientIdentity;
    /// use tower_bearer::source::{ClientAuth, ClientCredentials};
    ///
    /// # fn main() -> Result<(), tower_bearer::Error> {
    /// let identity = ClientIdentity::from_files("/etc/tls/client.crt", "/etc/tls/client.key")?;
    /// let source = ClientCredentials::builder(
    ///     "https://mtls.auth.example.com/oauth2/token",
    ///     ClientAuth::tls_client_auth("my-client", identity),
    /// )
    /// .build()?;
    /// # let _ = source; Ok(()) }
    /// ```
    pub fn from_files(
        cert_chain_path: impl Into<PathBuf>,
        private_key_path: impl Into<PathBuf>,
    ) -> Result<Self, Error> {
        let files = IdentityFiles::open(cert_chain_path.into(), private_key_path.into())?;
        Ok(ClientIdentity {
            inner: Arc::new(Held::Files(files)),
        })
    }

    /// Whether this identity is read from files that may change.
    pub(crate) fn is_rotating(&self) -> bool {
        matches!(&*self.inner, Held::Files(_))
    }

    /// The pair in use now: for files, read again first if they have changed. Blocks on the
    /// file system for a file-backed identity (two `stat`s, and reading the files when they
    /// have changed).
    pub(crate) fn current(&self) -> Arc<Pair> {
        match &*self.inner {
            Held::Fixed(pair) => Arc::clone(pair),
            Held::Files(files) => files.current(),
        }
    }

    /// The certificate chain, leaf first, for `rustls::ClientConfig::with_client_auth_cert`.
    /// For a rotating identity, use [`cert_chain_and_key`](Self::cert_chain_and_key) instead,
    /// so that the chain and the key come from the same read.
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().certs.clone()
    }

    /// A copy of the private key, for `rustls::ClientConfig::with_client_auth_cert`. The
    /// copy is rustls' type, which is not wiped when dropped (see the type docs).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.current().private_key()
    }

    /// The certificate chain and the private key of one read: a consistent pair even while
    /// the files of [`from_files`](Self::from_files) are being rotated.
    pub fn cert_chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let pair = self.current();
        (pair.certs.clone(), pair.private_key())
    }

    /// The current leaf certificate's DER: what `x5t#S256` (RFC 8705 §3.1) hashes.
    #[cfg(feature = "redis")]
    pub(crate) fn leaf_der(&self) -> CertificateDer<'static> {
        self.current().certs[0].clone()
    }

    /// The identity for `reqwest::ClientBuilder::identity`, to present it on API calls. For a
    /// rotating identity this is the pair of now: build the API client again when it changes.
    pub fn reqwest_identity(&self) -> Result<reqwest::Identity, Error> {
        self.current().reqwest_identity()
    }
}

impl Pair {
    fn from_pem(cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::config("the client certificate chain is not valid PEM"))?;
        if certs.is_empty() {
            return Err(Error::config(
                "the client certificate chain has no CERTIFICATE in PEM",
            ));
        }
        let (key_kind, key) = private_key_der(private_key_pem).ok_or_else(|| {
            Error::config("the client certificate's private key is not a PEM private key")
        })?;
        let mut pem = Zeroizing::new(Vec::with_capacity(
            private_key_pem.len() + cert_chain_pem.len() + 1,
        ));
        pem.extend_from_slice(private_key_pem);
        pem.push(b'\n');
        pem.extend_from_slice(cert_chain_pem);
        Ok(Pair {
            certs,
            key,
            key_kind,
            pem,
        })
    }

    pub(crate) fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        let der = self.key.to_vec();
        match self.key_kind {
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => PrivateKeyDer::Pkcs8(der.into()),
        }
    }

    fn reqwest_identity(&self) -> Result<reqwest::Identity, Error> {
        reqwest::Identity::from_pem(&self.pem).map_err(|e| {
            Error::config("the client certificate and key cannot form a TLS identity")
                .with_source(e)
        })
    }

    /// That the key loads and matches the leaf certificate's public key, with the crate's
    /// crypto provider (skipped when there is none: building the TLS client checks again).
    fn check_key_matches(&self) -> Result<(), Error> {
        let Ok(provider) = crate::http_client::tls_provider() else {
            return Ok(());
        };
        rustls::sign::CertifiedKey::from_der(self.certs.clone(), self.private_key(), &provider)
            .map(drop)
            .map_err(|e| {
                Error::config("the client private key does not match the certificate")
                    .with_source(e)
            })
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientIdentity");
        match &*self.inner {
            Held::Fixed(pair) => {
                d.field("certificates", &pair.certs.len());
            }
            Held::Files(files) => files.describe(&mut d),
        };
        d.field("private_key", &"[redacted]").finish()
    }
}

/// The first private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE
/// KEY`) in `pem`, decoded straight into a buffer wiped on drop; every other section's DER is
/// wiped too as it is skipped.
pub(crate) fn private_key_der(pem: &[u8]) -> Option<(SectionKind, Zeroizing<Vec<u8>>)> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .map_while(Result::ok)
        .map(|(kind, der)| (kind, Zeroizing::new(der)))
        .find(|(kind, _)| {
            matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
            )
        })
}

/// A clear error for a TLS failure somewhere in `err`'s chain: the server refused our
/// certificate, or we refused its.
pub(crate) fn tls_error(err: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(error) = e.downcast_ref::<rustls::Error>() {
            return classify(error);
        }
        // `io::Error::source` skips the error it wraps (it returns that error's source):
        // look inside it instead.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn classify(error: &rustls::Error) -> Option<Error> {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied,
        ) => Some(Error::rejected(
            "the token endpoint refused the TLS client certificate (none was presented, or the \
             server does not trust it): check the client identity and its issuer",
        )),
        rustls::Error::InvalidCertificate(_) => Some(Error::config(
            "the token endpoint's TLS certificate is not trusted: check its issuer and the \
             trusted roots",
        )),
        _ => None,
    }
}
