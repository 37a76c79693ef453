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
//! // HS256 keys must be at least 32 bytes long (RFC 7518 §3.2).
//! let secret = ClientSecret::new("0f1e2d3c4b5a69788796a5b4c3d2e1f0");
//! let key = SigningKey::hs256(&secret)?.with_key_id("key-1");
//! let assertion = Assertion::new(key, "robot@example.com")
//!     .lifetime(Duration::from_secs(3600))
//!     .with_jti(false);
//! # let _ = assertion;
//! # Ok::<(), tower_bearer::Error>(())
//! ```
//!
//! # Crypto provider
//!
//! The crate writes the JWS itself (RFC 7515 compact form) and signs it with the crypto
//! provider it is built with (the `ring` or `aws-lc-rs` feature), the one its TLS and DPoP use:
//! no JWT library and no process-wide default is involved, so your program's own JWT library
//! and its settings are left alone.
//!
//! # Secrets in memory
//!
//! Each signed assertion is zeroized on drop, as is the DER decoded from your PEM once the
//! provider has parsed it. The key itself lives in the crypto provider: aws-lc-rs wipes it when
//! it is freed, ring makes no such promise. Not wiped: the PEM text or [`ClientSecret`] you
//! pass in (yours; `ClientSecret` wipes itself) and the PEM parser's copy of the base64 text.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::SectionKind;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::Error;
use crate::crypto::{self, JwsKey};
use crate::secret::ClientSecret;

/// The shortest HS256 key accepted: 32 bytes, the size of the hash output (RFC 7518 §3.2).
pub const MIN_HS256_KEY_BYTES: usize = 32;

/// The shortest RSA key accepted for RS256 and PS256: 2048 bits (RFC 7518 §3.3).
pub const MIN_RSA_KEY_BITS: usize = 2048;

/// A key that signs assertions, with its algorithm and optional key id (`kid` header).
///
/// `Debug` shows the algorithm and key id, never the key. The key material is zeroized on drop.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: &'static str,
    key: std::sync::Arc<JwsKey>,
    key_id: Option<String>,
}

impl SigningKey {
    /// An RSA private key in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`, as
    /// `openssl genrsa` writes), signing with RS256. Keys under [`MIN_RSA_KEY_BITS`] are a
    /// [`Config`](crate::ErrorKind::Config) error, whichever provider signs.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::rsa(pem, false, "RS256")
    }

    /// An RSA private key in PEM (2048 bits or more), signing with PS256 (RSASSA-PSS).
    pub fn ps256_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::rsa(pem, true, "PS256")
    }

    /// A P-256 private key in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), signing
    /// with ES256.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, Error> {
        let invalid = || Error::config("the EC private key is not a P-256 key in PEM");
        let key = match crypto::private_key_der(pem).ok_or_else(invalid)? {
            (SectionKind::PrivateKey, der) => JwsKey::es256_pkcs8(&der),
            (SectionKind::EcPrivateKey, der) => {
                JwsKey::es256_pkcs8(&crypto::p256_sec1_to_pkcs8(&der))
            }
            _ => None,
        }
        .ok_or_else(invalid)?;
        Self::checked("ES256", key)
    }

    /// A shared secret, signing with HS256 (`client_secret_jwt`, HS256 service accounts).
    ///
    /// The secret's bytes (its UTF-8 encoding, as other JWT libraries use a string key) are
    /// the HMAC key, which RFC 7518 §3.2 requires to be at least as long as the hash:
    /// [`MIN_HS256_KEY_BYTES`]. A shorter or empty secret is a
    /// [`Config`](crate::ErrorKind::Config) error: an HMAC key that short can be guessed
    /// offline from any one assertion.
    pub fn hs256(secret: &ClientSecret) -> Result<Self, Error> {
        let len = secret.secret().len();
        if len == 0 {
            return Err(Error::config("the HS256 secret is empty"));
        }
        if len < MIN_HS256_KEY_BYTES {
            return Err(Error::config(format!(
                "the HS256 secret is {len} bytes long; RFC 7518 §3.2 requires at least \
                 {MIN_HS256_KEY_BYTES}"
            )));
        }
        Self::checked("HS256", JwsKey::hs256(secret.secret().as_bytes()))
    }

    /// Put `kid` in the JWT header, naming the key to the server.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    fn rsa(pem: &[u8], pss: bool, algorithm: &'static str) -> Result<Self, Error> {
        let invalid = || {
            Error::config(
                "the RSA private key is not an RSA key of 2048 bits or more in PEM (PKCS#1 or \
                 PKCS#8)",
            )
        };
        let key = match crypto::private_key_der(pem).ok_or_else(invalid)? {
            (SectionKind::PrivateKey, der) => JwsKey::rsa(&der, false, pss),
            (SectionKind::RsaPrivateKey, der) => JwsKey::rsa(&der, true, pss),
            _ => None,
        }
        .ok_or_else(invalid)?;
        let bits = key.signature_len() * 8;
        if bits < MIN_RSA_KEY_BITS {
            return Err(Error::config(format!(
                "the RSA private key is {bits} bits long: keys under {MIN_RSA_KEY_BITS} bits \
                 are refused (NIST SP 800-131A, RFC 7518 §3.3)"
            )));
        }
        Self::checked(algorithm, key)
    }

    /// Sign once now, so that a key that parses but cannot sign fails at configuration time.
    fn checked(algorithm: &'static str, key: JwsKey) -> Result<Self, Error> {
        let key = SigningKey {
            algorithm,
            key: std::sync::Arc::new(key),
            key_id: None,
        };
        key.sign(&serde_json::json!({}))
            .map_err(|_| Error::config("the private key cannot sign with this algorithm"))?;
        Ok(key)
    }

    /// `base64url(header) "." base64url(claims) "." base64url(signature)`, signed by the
    /// crypto provider, in buffers that are zeroized on drop.
    fn sign<T: Serialize>(&self, claims: &T) -> Result<Zeroizing<String>, Error> {
        let failed = || Error::config("could not sign the JWT assertion");
        #[derive(Serialize)]
        struct Header<'a> {
            typ: &'static str,
            alg: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
        }
        let header = Header {
            typ: "JWT",
            alg: self.algorithm,
            kid: self.key_id.as_deref(),
        };
        let header = serde_json::to_vec(&header).map_err(|_| failed())?;
        let claims = Zeroizing::new(serde_json::to_vec(claims).map_err(|_| failed())?);

        let encoded_len = |n: usize| base64::encoded_len(n, false).unwrap_or(usize::MAX);
        let mut message = Zeroizing::new(String::with_capacity(
            encoded_len(header.len()) + 1 + encoded_len(claims.len()),
        ));
        URL_SAFE_NO_PAD.encode_string(&header, &mut message);
        message.push('.');
        URL_SAFE_NO_PAD.encode_string(&*claims, &mut message);

        let signature = self.sign_bytes(message.as_bytes())?;

        let mut jwt = Zeroizing::new(String::with_capacity(
            message.len() + 1 + encoded_len(signature.len()),
        ));
        jwt.push_str(&message);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(jwt)
    }
}

impl SigningKey {
    /// The JWS `alg` name.
    pub(crate) fn algorithm_name(&self) -> &'static str {
        self.algorithm
    }

    /// The `kid`, if set.
    pub(crate) fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Sign `message` (a JWS signing input) with the crypto provider.
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.key
            .sign(message)
            .ok_or_else(|| Error::config("could not sign the JWT assertion"))
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
/// (default 5 minutes), and a fresh `jti` unless [turned off](Self::with_jti): 128 bits from
/// the operating system's CSPRNG, so that no one can predict it. The audience is
/// the token URL unless [set](Self::audience).
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
            jti: if self.jti { Some(new_jti()?) } else { None },
        };
        self.key.sign(&claims)
    }
}

/// 128 random bits from the operating system's CSPRNG, as 32 hex digits.
pub(crate) fn new_jti() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    crypto::fill_random(&mut bytes)?;
    Ok(format!("{:032x}", u128::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes: the shortest HS256 key accepted.
    const KEY: &str = "k-0123456789abcdef0123456789abcd";

    fn hs256() -> SigningKey {
        SigningKey::hs256(&ClientSecret::new(KEY)).unwrap()
    }

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let raw = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn minted_claims_follow_the_configuration() {
        let key = hs256().with_key_id("kid-1");
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
        let a = Assertion::new(hs256(), "me");
        let now = SystemTime::now();
        let jtis: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let jti = part(&a.mint("u", now).unwrap(), 1)["jti"].clone();
                let jti = jti.as_str().unwrap().to_owned();
                assert!(jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()));
                jti
            })
            .collect();
        assert_eq!(jtis.len(), 1000);
        let without = Assertion::new(hs256(), "me").with_jti(false);
        assert!(
            part(&without.mint("u", now).unwrap(), 1)
                .get("jti")
                .is_none()
        );
    }

    #[test]
    fn hs256_keys_shorter_than_32_bytes_are_refused() {
        for short in ["", "s", &KEY[..31]] {
            let err = SigningKey::hs256(&ClientSecret::new(short)).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{short:?}");
            assert!(err.to_string().contains("HS256"), "{err}");
            if short.len() > 1 {
                assert!(!format!("{err} {err:?}").contains(short), "{err}");
            }
        }
        assert_eq!(
            SigningKey::hs256(&ClientSecret::new(""))
                .unwrap_err()
                .to_string(),
            "the HS256 secret is empty"
        );
        // Bytes, not characters: 11 three-byte characters are 33 bytes.
        assert!(SigningKey::hs256(&ClientSecret::new("€".repeat(11))).is_ok());
        assert!(SigningKey::hs256(&ClientSecret::new(KEY)).is_ok());
    }

    #[test]
    fn signatures_verify_with_the_provider() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
        let read = |name: &str| std::fs::read(format!("{keys}{name}")).unwrap();
        for (key, hmac_key) in [
            (hs256(), KEY.as_bytes()),
            (
                SigningKey::es256_pem(&read("ec_pkcs8.pem")).unwrap(),
                &[][..],
            ),
            (
                SigningKey::rs256_pem(&read("rsa_pkcs1.pem")).unwrap(),
                &[][..],
            ),
            (
                SigningKey::ps256_pem(&read("rsa_pkcs8.pem")).unwrap(),
                &[][..],
            ),
        ] {
            let alg = key.algorithm;
            let public = key.key.public_key();
            let jwt = Assertion::new(key, "me")
                .mint("https://auth.example.com/token", SystemTime::now())
                .unwrap();
            assert_eq!(part(&jwt, 0)["alg"], alg);
            let (message, signature) = jwt.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let verify = |m: &[u8]| crypto::verify(alg, &public, hmac_key, m, &signature);
            assert!(verify(message.as_bytes()), "{alg}");
            let mut tampered = message.as_bytes().to_vec();
            tampered[0] ^= 1;
            assert!(!verify(&tampered), "{alg}");
        }
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
    fn rsa_keys_under_2048_bits_are_refused() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
        let weak = std::fs::read(format!("{keys}rsa_1024_pkcs8.pem")).unwrap();
        for err in [
            SigningKey::rs256_pem(&weak).unwrap_err(),
            SigningKey::ps256_pem(&weak).unwrap_err(),
        ] {
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            assert!(err.to_string().contains("2048 bits"), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key =
            SigningKey::hs256(&ClientSecret::new("hmac-secret-value-0123456789abcdef")).unwrap();
        assert!(!format!("{key:?}").contains("hmac-secret-value"));
    }
}
