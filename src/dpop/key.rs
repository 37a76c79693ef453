//! [`DpopKey`]: the key a DPoP client proves it holds, and the signing of proofs.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::SectionKind;

use super::jwk::{self, ec_jwk, rsa_jwk};
use crate::Error;
use crate::crypto::{self, JwsKey, PublicKey};
use crate::source::signer::AssertionSigner;

/// The private key a DPoP client proves it holds (RFC 9449), with what every proof repeats
/// computed once: the protected header (`typ`, `alg`, the public `jwk`), base64url-encoded.
///
/// ES256 (P-256) is the default and the cheapest to sign with; RS256 and PS256 take an RSA key
/// of 2048 bits or more. A key is generated at start ([`generate`](Self::generate)), so that
/// its tokens die with the process, or loaded from PEM to survive restarts (a refresh token
/// bound to the key is useless without it).
///
/// A key held elsewhere (a KMS, an HSM) signs through an
/// [`AssertionSigner`] ([`from_signer`](Self::from_signer)): its proofs are signed
/// asynchronously, awaiting the signer, while an in-process key signs on the request's own
/// path.
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
    signer: Signer,
    /// The length of a signature, to size a proof's buffer once.
    signature_len: usize,
    algorithm: &'static str,
    /// The public key as a JWK, members in RFC 7638 order (the thumbprint's input).
    jwk: String,
    thumbprint: String,
    /// `base64url({"typ":"dpop+jwt","alg":..,"jwk":..})`, then a `.`: the start of every proof.
    header_dot: String,
}

/// Who signs the proofs.
enum Signer {
    /// A key in the crypto provider: signed synchronously, on the request's path.
    Local(JwsKey),
    /// A key held elsewhere: signed asynchronously.
    Remote(Box<dyn AssertionSigner>),
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
        let jwk = ec_jwk(&point[1..33], &point[33..]);
        let signature_len = key.signature_len();
        Self::finish(Signer::Local(key), signature_len, "ES256", jwk)
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
        let signature_len = key.signature_len();
        let jwk = rsa_jwk(&n, &e);
        Self::finish(Signer::Local(key), signature_len, algorithm, jwk)
    }

    /// A key held elsewhere (a KMS, an HSM), signing through `signer`, whose public key is
    /// `public_jwk` (a JWK, JSON): the key stays where it is, and each proof is one call to
    /// the signer, awaited where the proof is made (the layer's response future, the
    /// middleware, the token request).
    ///
    /// `signer.algorithm()` is `ES256` (the JWK an `EC` key on `P-256`), `RS256` or `PS256`
    /// (an `RSA` key of 2048 bits or more), and the signer returns signatures in JWS form (for
    /// ES256, the 64-byte `r || s`, not DER). The JWK is checked against the algorithm and
    /// must hold no private member (`d`, ...); its required members are what every proof's
    /// `jwk` header carries and what the [thumbprint](Self::thumbprint) is computed from (RFC
    /// 7638), so its other members (`kid`, `use`, ...) are left out. A JWK that does not fit
    /// is a [`Config`](crate::ErrorKind::Config) error here, never at the first request.
    ///
    /// A signer's error fails the proof with the signer's [`ErrorKind`](crate::ErrorKind)
    /// ([`Error::transient`] for an unreachable KMS is retried as any transient failure);
    /// nothing is signed at construction, which does no I/O.
    ///
    /// ```
    /// use tower_bearer::Error;
    /// use tower_bearer::dpop::DpopKey;
    /// use tower_bearer::source::signer::{AssertionSigner, SignatureFuture};
    ///
    /// struct Hsm;
    ///
    /// impl AssertionSigner for Hsm {
    ///     fn algorithm(&self) -> &str { "ES256" }
    ///     fn sign<'a>(&'a self, input: &'a [u8]) -> SignatureFuture<'a> {
    ///         # let _ = input;
    ///         Box::pin(async { Err(Error::transient("no HSM in a doctest")) })
    ///     }
    /// }
    ///
    /// let jwk = r#"{"kty":"EC","crv":"P-256","kid":"hsm-1",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    ///     "y":"x_FEzRu9m36HLN-tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    /// let key = DpopKey::from_signer(Hsm, jwk)?;
    /// assert_eq!(key.algorithm(), "ES256");
    /// assert!(key.public_jwk().starts_with(r#"{"crv":"P-256","kty":"EC","x":"#));
    ///
    /// // A private key is refused: the point is that it stays in the HSM.
    /// let private = jwk.replace(r#""kid""#, r#""d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI","kid""#);
    /// assert!(DpopKey::from_signer(Hsm, &private).is_err());
    /// # Ok::<(), tower_bearer::Error>(())
    /// ```
    pub fn from_signer(signer: impl AssertionSigner, public_jwk: &str) -> Result<Self, Error> {
        let jwk = jwk::public_jwk(signer.algorithm(), public_jwk)?;
        Self::finish(
            Signer::Remote(Box::new(signer)),
            jwk.signature_len,
            jwk.algorithm,
            jwk.canonical,
        )
    }

    fn finish(
        signer: Signer,
        signature_len: usize,
        algorithm: &'static str,
        jwk: String,
    ) -> Result<Self, Error> {
        let thumbprint = sha256_b64(jwk.as_bytes());
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"{algorithm}","jwk":{jwk}}}"#);
        let mut header_dot = URL_SAFE_NO_PAD.encode(header);
        header_dot.push('.');
        let key = DpopKey {
            inner: Arc::new(Inner {
                signer,
                signature_len,
                algorithm,
                jwk,
                thumbprint,
                header_dot,
            }),
        };
        if !key.is_remote() {
            // Sign once now, so that a key that loads but cannot sign fails at configuration
            // time.
            key.sign_jwt(b"{}")?;
        }
        Ok(key)
    }

    /// Whether proofs are signed elsewhere, asynchronously ([`from_signer`](Self::from_signer)).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.inner.signer, Signer::Remote(_))
    }

    /// A compact JWS of `claims` (JSON) under this key's precomputed header, signed here: an
    /// in-process key's proofs, made on the request's path. A key behind a signer is a
    /// [`Config`](crate::ErrorKind::Config) error ([`sign_jwt_async`](Self::sign_jwt_async)
    /// signs with either).
    pub(crate) fn sign_jwt(&self, claims: &[u8]) -> Result<String, Error> {
        let Signer::Local(key) = &self.inner.signer else {
            return Err(Error::config(
                "a DPoP key behind a signer signs asynchronously: use `Dpop::proof_async`",
            ));
        };
        let mut jwt = self.signing_input(claims);
        let signature = key
            .sign(jwt.as_bytes())
            .ok_or_else(|| Error::config("could not sign the DPoP proof"))?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(jwt)
    }

    /// [`sign_jwt`](Self::sign_jwt) with either key: a key behind a signer awaits it, and its
    /// error keeps the signer's kind.
    pub(crate) async fn sign_jwt_async(&self, claims: &[u8]) -> Result<String, Error> {
        let Signer::Remote(signer) = &self.inner.signer else {
            return self.sign_jwt(claims);
        };
        let mut jwt = self.signing_input(claims);
        let signature = signer.sign(jwt.as_bytes()).await.map_err(|e| {
            Error::new(e.kind(), "the signer could not sign the DPoP proof").with_source(e)
        })?;
        if signature.len() != self.inner.signature_len {
            return Err(Error::config(format!(
                "the DPoP signer returned a {}-byte signature where {} takes {} bytes (in JWS \
                 form: for ES256, r || s, not DER)",
                signature.len(),
                self.inner.algorithm,
                self.inner.signature_len
            )));
        }
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(jwt)
    }

    /// The precomputed header, `.`, the base64url `claims`: what is signed, in a buffer with
    /// room for the signature.
    fn signing_input(&self, claims: &[u8]) -> String {
        let inner = &*self.inner;
        let encoded = |n: usize| base64::encoded_len(n, false).unwrap_or(0);
        let mut jwt = String::with_capacity(
            inner.header_dot.len() + encoded(claims.len()) + 1 + encoded(inner.signature_len),
        );
        jwt.push_str(&inner.header_dot);
        URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
        jwt
    }
}

/// A DPoP key is a signer too: the in-process key signs here (at once), a key behind a signer
/// asks it. So one trait stands for every key that signs proofs or client assertions.
impl AssertionSigner for DpopKey {
    fn algorithm(&self) -> &str {
        self.inner.algorithm
    }

    fn sign<'a>(&'a self, signing_input: &'a [u8]) -> crate::source::signer::SignatureFuture<'a> {
        match &self.inner.signer {
            Signer::Local(key) => Box::pin(std::future::ready(
                key.sign(signing_input)
                    .ok_or_else(|| Error::config("could not sign with the DPoP key")),
            )),
            Signer::Remote(signer) => signer.sign(signing_input),
        }
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.inner.algorithm)
            .field("thumbprint", &self.inner.thumbprint)
            .field(
                "private_key",
                &if self.is_remote() {
                    "[behind a signer]"
                } else {
                    "[redacted]"
                },
            )
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

    /// A signer that always answers `fixed`.
    struct TestSigner {
        fixed: fn() -> Result<Vec<u8>, Error>,
    }

    impl AssertionSigner for TestSigner {
        fn algorithm(&self) -> &str {
            "ES256"
        }

        fn sign<'a>(&'a self, _: &'a [u8]) -> crate::source::signer::SignatureFuture<'a> {
            Box::pin(std::future::ready((self.fixed)()))
        }
    }

    #[test]
    fn a_key_behind_a_signer_has_the_thumbprint_of_its_public_key() {
        let rsa = std::fs::read(format!("{}rsa_pkcs8.pem", keys())).unwrap();
        for local in [
            DpopKey::generate().unwrap(),
            DpopKey::rs256_pem(&rsa).unwrap(),
            DpopKey::ps256_pem(&rsa).unwrap(),
        ] {
            // The in-process key is a signer itself.
            let remote = DpopKey::from_signer(local.clone(), local.public_jwk()).unwrap();
            assert!(remote.is_remote() && !local.is_remote());
            assert_eq!(remote.algorithm(), local.algorithm());
            assert_eq!(remote.thumbprint(), local.thumbprint());
            assert_eq!(remote.public_jwk(), local.public_jwk());
            // Signed asynchronously only, with the same header as the key in process.
            assert_eq!(
                remote.sign_jwt(b"{}").unwrap_err().kind(),
                crate::ErrorKind::Config
            );
            let jwt = futures::executor::block_on(remote.sign_jwt_async(b"{}")).unwrap();
            let local_jwt = local.sign_jwt(b"{}").unwrap();
            assert_eq!(
                jwt.rsplit_once('.').unwrap().0,
                local_jwt.rsplit_once('.').unwrap().0
            );
            assert!(format!("{remote:?}").contains("behind a signer"));
        }
    }

    #[test]
    fn a_signers_failure_keeps_its_kind_and_a_der_signature_is_refused() {
        let jwk = DpopKey::generate().unwrap().public_jwk().to_owned();
        let sign = |fixed: fn() -> Result<Vec<u8>, Error>| {
            let signer = TestSigner { fixed };
            let key = DpopKey::from_signer(signer, &jwk).unwrap();
            futures::executor::block_on(key.sign_jwt_async(b"{}")).unwrap_err()
        };
        let err = sign(|| Err(Error::transient("the HSM is busy")));
        assert_eq!(err.kind(), crate::ErrorKind::Transient);
        assert!(err.to_string().contains("DPoP proof"), "{err}");
        let err = sign(|| Err(Error::rejected("the key is disabled")));
        assert_eq!(err.kind(), crate::ErrorKind::Rejected);
        // A DER ECDSA signature (what some KMS APIs return) is not JWS's r || s.
        let err = sign(|| Ok(vec![0x30; 71]));
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.to_string().contains("not DER"), "{err}");
    }

    #[test]
    fn jtis_are_unique() {
        let jtis: std::collections::HashSet<String> =
            (0..1000).map(|_| random_jti().unwrap()).collect();
        assert_eq!(jtis.len(), 1000);
    }
}
