//! [`AssertionSigner`]: an async signer, so that a key held by a KMS or an HSM (which never
//! leaves it) can sign `private_key_jwt` client assertions (feature `jwt`) and DPoP proofs
//! (feature `dpop`, [`DpopKey::from_signer`](crate::dpop::DpopKey::from_signer)).
//!
//! The crate builds the JWT and hands the signer the JWS signing input
//! (`base64url(header) "." base64url(claims)`); the signer returns the signature bytes in JWS
//! form (for ES256, the 64-byte `r || s`, not DER). For a client assertion, the header is
//! `alg`, `typ`, `kid` and the claims `iss` = `sub` = the client id, `aud` = the token URL,
//! `iat`, `exp` 5 minutes later, a fresh random `jti`; for a DPoP proof, RFC 9449's header and
//! claims. An in-process `SigningKey` (feature `jwt`) is one signer; a KMS client is another.
//!
//! ```
//! use tower_bearer::Error;
//! use tower_bearer::source::signer::{AssertionSigner, SignatureFuture};
//!
//! /// A key in a KMS: `sign` is a call to it.
//! struct Kms { key_name: String }
//!
//! impl AssertionSigner for Kms {
//!     fn algorithm(&self) -> &str { "ES256" }
//!     fn key_id(&self) -> Option<&str> { Some(&self.key_name) }
//!     fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a> {
//!         Box::pin(async move {
//!             // let signature = kms.sign(&self.key_name, signing_input).await?;
//!             # let _ = signing_input;
//!             Err(Error::transient("the KMS is not reachable from a doctest"))
//!         })
//!     }
//! }
//!
//! # #[cfg(feature = "jwt")] {
//! use tower_bearer::source::ClientAuth;
//!
//! let auth = ClientAuth::private_key_jwt_signed_by("my-client", Kms { key_name: "k1".into() });
//! assert_eq!(auth.method(), "private_key_jwt");
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(feature = "jwt")]
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "jwt")]
use base64::Engine as _;
#[cfg(feature = "jwt")]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
#[cfg(feature = "jwt")]
use zeroize::Zeroizing;

#[cfg(feature = "jwt")]
use super::assertion::{SigningKey, new_jti};
use crate::Error;
#[cfg(feature = "jwt")]
use crate::file_stamp::FileStamp;

/// The future returned by [`AssertionSigner::sign`]: the signature bytes.
pub type SignatureFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, Error>> + Send + 'a>>;

/// Signs JWS signing inputs with a key it holds, possibly remotely; see the
/// [module docs](self).
pub trait AssertionSigner: Send + Sync + 'static {
    /// The JWS `alg` the signatures are made with (`RS256`, `PS256`, `ES256`, ...).
    fn algorithm(&self) -> &str;

    /// The `kid` to put in the header, if any.
    fn key_id(&self) -> Option<&str> {
        None
    }

    /// Sign `signing_input`; return the signature as JWS wants it. Classify failures by kind
    /// ([`Error::transient`] for an unreachable KMS).
    fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a>;
}

#[cfg(feature = "jwt")]
impl AssertionSigner for SigningKey {
    fn algorithm(&self) -> &str {
        self.algorithm_name()
    }

    fn key_id(&self) -> Option<&str> {
        SigningKey::key_id(self)
    }

    fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a> {
        Box::pin(std::future::ready(self.sign_bytes(signing_input)))
    }
}

impl<T: AssertionSigner + ?Sized> AssertionSigner for Arc<T> {
    fn algorithm(&self) -> &str {
        (**self).algorithm()
    }

    fn key_id(&self) -> Option<&str> {
        (**self).key_id()
    }

    fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a> {
        (**self).sign(signing_input)
    }
}

#[cfg(feature = "jwt")]
/// How long each client assertion is valid.
const LIFETIME: Duration = Duration::from_secs(300);

#[cfg(feature = "jwt")]
/// A client assertion for `client_id` at `token_url`, signed by `signer`.
pub(crate) async fn client_assertion(
    signer: &dyn AssertionSigner,
    client_id: &str,
    token_url: &str,
) -> Result<Zeroizing<String>, Error> {
    let failed = || Error::config("could not build the JWT assertion");
    let mut header = serde_json::json!({ "alg": signer.algorithm(), "typ": "JWT" });
    if let Some(kid) = signer.key_id() {
        header["kid"] = kid.into();
    }
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::config("the system clock is before 1970"))?
        .as_secs();
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": token_url,
        "iat": iat, "exp": iat + LIFETIME.as_secs(), "jti": new_jti()?,
    });
    let header = serde_json::to_vec(&header).map_err(|_| failed())?;
    let claims = Zeroizing::new(serde_json::to_vec(&claims).map_err(|_| failed())?);
    let mut jwt = Zeroizing::new(String::with_capacity(4096));
    URL_SAFE_NO_PAD.encode_string(&header, &mut jwt);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&*claims, &mut jwt);
    let signature = signer.sign(jwt.as_bytes()).await.map_err(|e| {
        Error::new(e.kind(), "the signer could not sign the client assertion").with_source(e)
    })?;
    if signature.is_empty() {
        return Err(Error::config("the signer returned an empty signature"));
    }
    let needed = jwt.len() + 1 + base64::encoded_len(signature.len(), false).unwrap_or(0);
    if needed > jwt.capacity() {
        // Grow by moving to a new buffer, so the old one is wiped, not freed as it is.
        let mut grown = Zeroizing::new(String::with_capacity(needed));
        grown.push_str(&jwt);
        jwt = grown;
    }
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
    Ok(jwt)
}

#[cfg(feature = "jwt")]
/// The algorithm of a [`KeyFile`]'s key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rs256,
    Ps256,
    Es256,
}

#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
/// A private key in a PEM file that is rotated in place (a cert-manager or Vault agent
/// secret, a mounted Kubernetes secret): an [`AssertionSigner`] that checks the file before
/// each signature and parses it again when it has changed (its size, modification time or
/// inode), so a rotated key is used from the next token request on. The cache and the token
/// it holds are not touched: only the next assertion changes.
///
/// A file that has changed and no longer holds a valid key is a
/// [`Config`](crate::ErrorKind::Config) error for that request (the old key is not used in
/// its place: it may be the one being revoked); the next request looks again.
///
/// ```no_run
/// use tower_bearer::source::{ClientAuth, ClientCredentials, signer::KeyFile};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let key = KeyFile::es256("/etc/my-app/tls/client-key.pem").with_key_id("2026-12");
/// let source = ClientCredentials::builder(
///     "https://auth.example.com/oauth2/token",
///     ClientAuth::private_key_jwt_signed_by("my-client", key),
/// )
/// .build()?;
/// # let _ = source; Ok(()) }
/// ```
pub struct KeyFile {
    inner: Arc<KeyFileInner>,
}

#[cfg(feature = "jwt")]
struct KeyFileInner {
    path: std::path::PathBuf,
    kind: KeyKind,
    key_id: Option<String>,
    /// The key last parsed, and the file's stamp then.
    current: std::sync::Mutex<Option<(FileStamp, SigningKey)>>,
}

#[cfg(feature = "jwt")]
impl KeyFile {
    /// An RSA key (PKCS#1 or PKCS#8 PEM, 2048 bits or more), signing RS256.
    pub fn rs256(path: impl Into<std::path::PathBuf>) -> Self {
        Self::new(path.into(), KeyKind::Rs256)
    }

    /// An RSA key, signing PS256.
    pub fn ps256(path: impl Into<std::path::PathBuf>) -> Self {
        Self::new(path.into(), KeyKind::Ps256)
    }

    /// A P-256 key (PKCS#8 PEM), signing ES256.
    pub fn es256(path: impl Into<std::path::PathBuf>) -> Self {
        Self::new(path.into(), KeyKind::Es256)
    }

    fn new(path: std::path::PathBuf, kind: KeyKind) -> Self {
        KeyFile {
            inner: Arc::new(KeyFileInner {
                path,
                kind,
                key_id: None,
                current: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Put `kid` in the JWT header.
    pub fn with_key_id(self, key_id: impl Into<String>) -> Self {
        let inner = &*self.inner;
        Self {
            inner: Arc::new(KeyFileInner {
                path: inner.path.clone(),
                kind: inner.kind,
                key_id: Some(key_id.into()),
                current: std::sync::Mutex::new(None),
            }),
        }
    }
}

#[cfg(feature = "jwt")]
impl KeyFileInner {
    /// The key for this signature: the one parsed before, unless the file has changed.
    fn key(&self) -> Result<SigningKey, Error> {
        let shown = self.path.display();
        let stamp = FileStamp::read(&self.path).map_err(|e| {
            Error::config(format!("the key file {shown} cannot be read")).with_source(e)
        })?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, key)) = &*current
            && *seen == stamp
        {
            return Ok(key.clone());
        }
        let pem = Zeroizing::new(std::fs::read(&self.path).map_err(|e| {
            Error::config(format!("the key file {shown} cannot be read")).with_source(e)
        })?);
        let key = match self.kind {
            KeyKind::Rs256 => SigningKey::rs256_pem(&pem),
            KeyKind::Ps256 => SigningKey::ps256_pem(&pem),
            KeyKind::Es256 => SigningKey::es256_pem(&pem),
        }
        .map_err(|e| {
            Error::config(format!("the key file {shown} does not hold a usable key")).with_source(e)
        })?;
        let key = match &self.key_id {
            Some(kid) => key.with_key_id(kid.clone()),
            None => key,
        };
        if current.is_some() {
            tracing::info!(path = %shown, "the key file has changed; signing with the new key");
        }
        *current = Some((stamp, key.clone()));
        Ok(key)
    }
}

#[cfg(feature = "jwt")]
impl AssertionSigner for KeyFile {
    fn algorithm(&self) -> &str {
        match self.inner.kind {
            KeyKind::Rs256 => "RS256",
            KeyKind::Ps256 => "PS256",
            KeyKind::Es256 => "ES256",
        }
    }

    fn key_id(&self) -> Option<&str> {
        self.inner.key_id.as_deref()
    }

    fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a> {
        let inner = Arc::clone(&self.inner);
        let input = signing_input.to_vec();
        Box::pin(async move {
            // Reading and parsing a key file blocks: on the blocking pool.
            tokio::task::spawn_blocking(move || inner.key()?.sign_bytes(&input))
                .await
                .map_err(|_| Error::transient("signing with the key file was interrupted"))?
        })
    }
}

#[cfg(feature = "jwt")]
impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.inner.path)
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.inner.key_id)
            .finish_non_exhaustive()
    }
}
