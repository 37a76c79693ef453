//! [`AssertionSigner`]: an async signer for client assertions, so that a key held by a KMS or
//! an HSM (which never leaves it) can sign `private_key_jwt` assertions.
//!
//! The crate builds the JWT (header `alg`, `typ`, `kid`; claims `iss` = `sub` = the client id,
//! `aud` = the token URL, `iat`, `exp` 5 minutes later, a fresh random `jti`) and hands the
//! signer the JWS signing input (`base64url(header) "." base64url(claims)`); the signer returns
//! the signature bytes in JWS form (for ES256, the 64-byte `r || s`, not DER). An in-process
//! [`SigningKey`] is one signer; a KMS client is another.
//!
//! ```
//! use tower_bearer::Error;
//! use tower_bearer::source::ClientAuth;
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
//! let auth = ClientAuth::private_key_jwt_signed_by("my-client", Kms { key_name: "k1".into() });
//! assert_eq!(auth.method(), "private_key_jwt");
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use super::assertion::{SigningKey, new_jti};
use crate::Error;

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

/// How long each client assertion is valid.
const LIFETIME: Duration = Duration::from_secs(300);

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
