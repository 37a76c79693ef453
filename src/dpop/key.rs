//! [`DpopKey`]: the key a DPoP client proves it holds, and the signing of proofs.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::SectionKind;

use crate::Error;
use crate::crypto::{self, JwsKey, PublicKey};

/// The private key a DPoP client proves it holds (RFC 9449), with what every proof repeats
/// computed once: the protected header (`typ`, `alg`, the public `jwk`), base64url-encoded.
///
/// ES256 (P-256) is the default and the cheapest to sign with; RS256 and PS256 take an RSA key
/// of 2048 bits or more. A key is generated at start ([`generate`](Self::generate)), so that
/// its tokens die with the process, or loaded from PEM to survive restarts (a refresh token
/// bound to the key is useless without it).
///
/// Cheap to clone (an `Arc` inside). `Debug` shows the algorithm and the JWK thumbprint, never
/// the private key. The key lives in the crypto provider: aws-lc-rs wipes it when it is freed,
/// ring makes no such promise. The DER read from your PEM is decoded into a buffer wiped as
/// soon as the provider has parsed it. Not wiped:
/// the PEM text you pass in (yours) and the PEM parser's buffer of its base64 text (inside
/// `rustls-pki-types`).
///
/// ```
/// use tower_bearer::dpop::DpopKey;
///
/// let key = DpopKey::generate()?;
/// assert_eq!(key.algorithm(), "ES256");
/// assert_eq!(key.thumbprint().len(), 43); // base64url of a SHA-256
/// assert!(key.public_jwk().contains(r#""kty":"EC""#));
/// assert!(!format!("{key:?}").contains("\"d\""));
/// # Ok::<(), tower_bearer::Error>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    signer: JwsKey,
    algorithm: &'static str,
    /// The public key as a JWK, members in RFC 7638 order (the thumbprint's input).
    jwk: String,
    thumbprint: String,
    /// `base64url({"typ":"dpop+jwt","alg":..,"jwk":..})`, then a `.`: the start of every proof.
    header_dot: String,
}

impl DpopKey {
    /// A new P-256 key (ES256) from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let key = JwsKey::generate_es256()
            .ok_or_else(|| Error::config("could not generate a P-256 key for DPoP"))?;
        Self::ecdsa(key)
    }

    /// A P-256 private key in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), signing
    /// with ES256.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, Error> {
        let invalid = || Error::config("the DPoP key is not a P-256 private key in PEM");
        let (kind, der) = crypto::private_key_der(pem).ok_or_else(invalid)?;
        let key = match kind {
            SectionKind::PrivateKey => JwsKey::es256_pkcs8(&der),
            SectionKind::EcPrivateKey => JwsKey::es256_pkcs8(&crypto::p256_sec1_to_pkcs8(&der)),
            _ => return Err(invalid()),
        }
        .ok_or_else(invalid)?;
        Self::ecdsa(key)
    }

    /// An RSA private key (2048 bits or more) in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
    /// `PRIVATE KEY`), signing with RS256 (RSASSA-PKCS1-v1_5).
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::rsa(pem, false, "RS256")
    }

    /// An RSA private key in PEM, signing with PS256 (RSASSA-PSS).
    pub fn ps256_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::rsa(pem, true, "PS256")
    }

    /// The JWS algorithm proofs are signed with: `ES256`, `RS256` or `PS256`.
    pub fn algorithm(&self) -> &'static str {
        self.inner.algorithm
    }

    /// The JWK SHA-256 thumbprint of the public key (RFC 7638), base64url: the `jkt` a server
    /// binds tokens to, and the `dpop_jkt` parameter of an authorization request.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public key as a JWK (JSON), as it appears in the `jwk` header of every proof.
    pub fn public_jwk(&self) -> &str {
        &self.inner.jwk
    }

    fn ecdsa(key: JwsKey) -> Result<Self, Error> {
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = match key.public_key() {
            PublicKey::P256 { point } if point.len() == 65 && point[0] == 4 => point,
            _ => {
                return Err(Error::config(
                    "the DPoP key's public point is not a P-256 point",
                ));
            }
        };
        let jwk = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..])
        );
        Self::finish(key, "ES256", jwk)
    }

    fn rsa(pem: &[u8], pss: bool, algorithm: &'static str) -> Result<Self, Error> {
        let invalid = || {
            Error::config(
                "the DPoP key is not an RSA private key of 2048 bits or more in PEM (PKCS#1 or PKCS#8)",
            )
        };
        let (kind, der) = crypto::private_key_der(pem).ok_or_else(invalid)?;
        let key = match kind {
            SectionKind::PrivateKey => JwsKey::rsa(&der, false, pss),
            SectionKind::RsaPrivateKey => JwsKey::rsa(&der, true, pss),
            _ => return Err(invalid()),
        }
        .ok_or_else(invalid)?;
        if key.signature_len() < 256 {
            return Err(invalid());
        }
        let PublicKey::Rsa { n, e } = key.public_key() else {
            return Err(invalid());
        };
        let jwk = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(e),
            URL_SAFE_NO_PAD.encode(n)
        );
        Self::finish(key, algorithm, jwk)
    }

    fn finish(signer: JwsKey, algorithm: &'static str, jwk: String) -> Result<Self, Error> {
        let thumbprint = sha256_b64(jwk.as_bytes());
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"{algorithm}","jwk":{jwk}}}"#);
        let mut header_dot = URL_SAFE_NO_PAD.encode(header);
        header_dot.push('.');
        let key = DpopKey {
            inner: Arc::new(Inner {
                signer,
                algorithm,
                jwk,
                thumbprint,
                header_dot,
            }),
        };
        // Sign once now, so that a key that loads but cannot sign fails at configuration time.
        key.sign_jwt(b"{}")?;
        Ok(key)
    }

    /// A compact JWS of `claims` (JSON) under this key's precomputed header.
    pub(crate) fn sign_jwt(&self, claims: &[u8]) -> Result<String, Error> {
        let inner = &*self.inner;
        let failed = || Error::config("could not sign the DPoP proof");
        let encoded = |n: usize| base64::encoded_len(n, false).unwrap_or(0);
        let mut jwt = String::with_capacity(
            inner.header_dot.len()
                + encoded(claims.len())
                + 1
                + encoded(inner.signer.signature_len()),
        );
        jwt.push_str(&inner.header_dot);
        URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
        let signature = inner.signer.sign(jwt.as_bytes()).ok_or_else(failed)?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(jwt)
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.inner.algorithm)
            .field("thumbprint", &self.inner.thumbprint)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// `base64url(SHA-256(value))`: the `ath` of an access token.
pub(crate) fn sha256_b64(value: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(crypto::sha256(&[value]))
}

/// 128 bits from the operating system's CSPRNG, base64url (22 characters): a proof's `jti`.
pub(crate) fn random_jti() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    crypto::fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/").to_owned()
    }

    #[test]
    fn keys_load_from_pem_in_every_form() {
        let read = |name: &str| std::fs::read(format!("{}{name}", keys())).unwrap();
        assert_eq!(
            DpopKey::es256_pem(&read("ec_pkcs8.pem"))
                .unwrap()
                .algorithm(),
            "ES256"
        );
        assert_eq!(
            DpopKey::rs256_pem(&read("rsa_pkcs1.pem"))
                .unwrap()
                .algorithm(),
            "RS256"
        );
        assert_eq!(
            DpopKey::rs256_pem(&read("rsa_pkcs8.pem"))
                .unwrap()
                .algorithm(),
            "RS256"
        );
        assert_eq!(
            DpopKey::ps256_pem(&read("rsa_pkcs8.pem"))
                .unwrap()
                .algorithm(),
            "PS256"
        );
        for (err, what) in [
            (
                DpopKey::es256_pem(&read("rsa_pkcs8.pem")).unwrap_err(),
                "P-256",
            ),
            (
                DpopKey::rs256_pem(&read("ec_pkcs8.pem")).unwrap_err(),
                "RSA",
            ),
            (DpopKey::es256_pem(b"not pem").unwrap_err(), "P-256"),
        ] {
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            assert!(err.to_string().contains(what), "{err}");
        }
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        let weak = std::fs::read(format!("{}rsa_1024_pkcs8.pem", keys())).unwrap();
        for err in [
            DpopKey::rs256_pem(&weak).unwrap_err(),
            DpopKey::ps256_pem(&weak).unwrap_err(),
        ] {
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            assert!(err.to_string().contains("2048 bits"), "{err}");
        }
    }

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        // RFC 7638 §3.1's example: the hash and encoding of the canonical JWK.
        let example = "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\"}";
        assert_eq!(
            sha256_b64(example.as_bytes()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // Our JWKs are canonical: required members only, in lexicographic order.
        let rsa = std::fs::read(format!("{}rsa_pkcs8.pem", keys())).unwrap();
        let rsa = DpopKey::rs256_pem(&rsa).unwrap();
        assert!(
            rsa.public_jwk()
                .starts_with(r#"{"e":"AQAB","kty":"RSA","n":""#)
        );
        assert_eq!(rsa.thumbprint(), sha256_b64(rsa.public_jwk().as_bytes()));
        let ec = DpopKey::generate().unwrap();
        assert!(
            ec.public_jwk()
                .starts_with(r#"{"crv":"P-256","kty":"EC","x":""#)
        );
        assert_eq!(ec.thumbprint(), sha256_b64(ec.public_jwk().as_bytes()));
    }

    #[test]
    fn jtis_are_unique() {
        let jtis: std::collections::HashSet<String> =
            (0..1000).map(|_| random_jti().unwrap()).collect();
        assert_eq!(jtis.len(), 1000);
    }
}
