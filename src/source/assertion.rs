//! Signed JWT assertions (RFC 7523), minted fresh for every token request: the client
//! assertions of `private_key_jwt` and `client_secret_jwt` (§2.2), and the authorization grant
//! of the JWT-bearer flow (§2.1). Needs the `jwt` feature.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::source::assertion::{Assertion, SigningKey};
//! use tower_bearer::secret::ClientSecret;
//!
//! // HS256 with a key id in the header, as a service account's JWT-bearer grant needs.
//! let key = SigningKey::hs256(&ClientSecret::new("shared-secret")).with_key_id("key-1");
//! let assertion = Assertion::new(key, "robot@example.com")
//!     .lifetime(Duration::from_secs(3600))
//!     .with_jti(false);
//! # let _ = assertion;
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::Error;
use crate::secret::ClientSecret;

/// A key that signs assertions, with its algorithm and optional key id (`kid` header).
///
/// `Debug` shows the algorithm and key id, never the key. The key material is zeroized on drop.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    key: EncodingKey,
    key_id: Option<String>,
}

impl SigningKey {
    /// An RSA private key in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`, as
    /// `openssl genrsa` writes), signing with RS256.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::rsa(pem, Algorithm::RS256)
    }

    /// An RSA private key in PEM, signing with PS256 (RSASSA-PSS).
    pub fn ps256_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::rsa(pem, Algorithm::PS256)
    }

    /// A P-256 private key in PKCS#8 PEM, signing with ES256.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, Error> {
        let key = EncodingKey::from_ec_pem(pem)
            .map_err(|_| Error::config("the EC private key is not a P-256 key in PKCS#8 PEM"))?;
        Self::checked(Algorithm::ES256, key)
    }

    /// A shared secret, signing with HS256 (`client_secret_jwt`, HS256 service accounts).
    pub fn hs256(secret: &ClientSecret) -> Self {
        SigningKey {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.secret().as_bytes()),
            key_id: None,
        }
    }

    /// Put `kid` in the JWT header, naming the key to the server.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    fn rsa(pem: &[u8], algorithm: Algorithm) -> Result<Self, Error> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|_| {
            Error::config("the RSA private key is not valid PEM (PKCS#1 or PKCS#8)")
        })?;
        Self::checked(algorithm, key)
    }

    /// Sign once now, so that a key that parses but cannot sign fails at configuration time.
    fn checked(algorithm: Algorithm, key: EncodingKey) -> Result<Self, Error> {
        let key = SigningKey {
            algorithm,
            key,
            key_id: None,
        };
        key.sign(&serde_json::json!({}))
            .map_err(|_| Error::config("the private key cannot sign with this algorithm"))?;
        Ok(key)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<Zeroizing<String>, Error> {
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, claims, &self.key)
            .map(Zeroizing::new)
            .map_err(|_| Error::config("could not sign the JWT assertion"))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The claims of an assertion, and the key that signs it; see the [module docs](self).
///
/// Each token request gets a new assertion: `iat` now, `exp` after [`lifetime`](Self::lifetime)
/// (default 5 minutes), and a fresh random `jti` unless [turned off](Self::with_jti). The
/// audience is the token URL unless [set](Self::audience).
#[derive(Clone, Debug)]
pub struct Assertion {
    key: SigningKey,
    issuer: String,
    subject: Option<String>,
    audience: Option<String>,
    lifetime: Duration,
    jti: bool,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl Assertion {
    /// An assertion issued by `issuer` (`iss`), signed with `key`.
    pub fn new(key: SigningKey, issuer: impl Into<String>) -> Self {
        Assertion {
            key,
            issuer: issuer.into(),
            subject: None,
            audience: None,
            lifetime: Duration::from_secs(300),
            jti: true,
        }
    }

    /// The `sub` claim (default: none).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The `aud` claim (default: the token URL, as RFC 7523 §3 suggests).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// How long each assertion is valid: `exp` = `iat` + `lifetime` (default 5 minutes).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Whether to add a fresh random `jti` to each assertion (default `true`; servers use it
    /// to refuse a replayed assertion).
    pub fn with_jti(mut self, jti: bool) -> Self {
        self.jti = jti;
        self
    }

    /// Sign a new assertion for a request to `token_url`, issued at `now`.
    pub(crate) fn mint(
        &self,
        token_url: &str,
        now: SystemTime,
    ) -> Result<Zeroizing<String>, Error> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::config("the system clock is before 1970"))?
            .as_secs();
        let claims = Claims {
            iss: &self.issuer,
            sub: self.subject.as_deref(),
            aud: self.audience.as_deref().unwrap_or(token_url),
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs()),
            jti: self.jti.then(|| format!("{:032x}", fastrand::u128(..))),
        };
        self.key.sign(&claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let raw = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn minted_claims_follow_the_configuration() {
        let key = SigningKey::hs256(&ClientSecret::new("k")).with_key_id("kid-1");
        let a = Assertion::new(key, "me")
            .subject("me")
            .lifetime(Duration::from_secs(1800));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let jwt = a.mint("https://auth.example.com/token", now).unwrap();
        let header = part(&jwt, 0);
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], "kid-1");
        let claims = part(&jwt, 1);
        assert_eq!(claims["iss"], "me");
        assert_eq!(claims["sub"], "me");
        assert_eq!(claims["aud"], "https://auth.example.com/token");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_001_800u64);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn each_assertion_has_a_fresh_jti() {
        let a = Assertion::new(SigningKey::hs256(&ClientSecret::new("k")), "me");
        let now = SystemTime::now();
        let one = part(&a.mint("u", now).unwrap(), 1)["jti"].clone();
        let two = part(&a.mint("u", now).unwrap(), 1)["jti"].clone();
        assert_ne!(one, two);
    }

    #[test]
    fn rsa_keys_load_in_both_pem_forms_and_ec_keys_in_pkcs8() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
        let read = |name: &str| std::fs::read(format!("{keys}{name}")).unwrap();
        SigningKey::rs256_pem(&read("rsa_pkcs1.pem")).unwrap();
        SigningKey::rs256_pem(&read("rsa_pkcs8.pem")).unwrap();
        SigningKey::ps256_pem(&read("rsa_pkcs8.pem")).unwrap();
        SigningKey::es256_pem(&read("ec_pkcs8.pem")).unwrap();
        let err = SigningKey::rs256_pem(
            b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(SigningKey::rs256_pem(&read("ec_pkcs8.pem")).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SigningKey::hs256(&ClientSecret::new("hmac-secret-value"));
        assert!(!format!("{key:?}").contains("hmac-secret-value"));
    }
}
