//! The crypto provider, chosen by this crate's features: `ring` or `aws-lc-rs` (aws-lc-rs when
//! both are on). Everything else in the crate (TLS for the token endpoint, JWT client
//! assertions, DPoP proofs, the fleet's encryption) goes through this module and never names a
//! provider.
//!
//! The two providers share one API (aws-lc-rs follows ring's), so one body of code is written
//! once, as a macro, and compiled against each enabled provider: [`ring_provider`] and
//! [`aws_lc_provider`]. The one the features select is re-exported here. A build with both
//! (the tests' `--all-features` build) compiles both, so the tests sign with one and verify
//! with the other.
//!
//! Not every feature uses every primitive (TLS needs none of them, only DPoP generates keys):
//! the unused ones of a feature set are dead code there, hence the `allow(dead_code)`.

/// The body of a provider module, over the provider crate `$lib`.
macro_rules! provider {
    ($lib:ident, $name:literal, ecdsa_from_pkcs8: $from_pkcs8:expr) => {
        use $lib::rand::SecureRandom as _;
        use $lib::signature::KeyPair as _;
        use $lib::{aead, digest, hkdf, hmac, rand, signature};

        /// The provider's name, for error messages and docs.
        pub(crate) const NAME: &str = $name;

        /// The rustls provider of this crypto provider, with its default cipher suites.
        #[cfg(feature = "reqwest")]
        pub(crate) fn tls_provider() -> rustls::crypto::CryptoProvider {
            rustls::crypto::$lib::default_provider()
        }

        /// SHA-256 of the concatenation of `parts`.
        pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
            let mut ctx = digest::Context::new(&digest::SHA256);
            for part in parts {
                ctx.update(part);
            }
            let mut out = [0; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        }

        /// Fills `out` from the operating system's CSPRNG.
        pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), crate::Error> {
            rand::SystemRandom::new().fill(out).map_err(|_| {
                crate::Error::config("the operating system's random number generator failed")
            })
        }

        /// An HMAC-SHA256 key.
        pub(crate) struct HmacSha256(hmac::Key);

        impl HmacSha256 {
            pub(crate) fn new(key: &[u8]) -> Self {
                HmacSha256(hmac::Key::new(hmac::HMAC_SHA256, key))
            }

            /// The MAC of the concatenation of `parts`.
            pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
                let mut ctx = hmac::Context::with_key(&self.0);
                for part in parts {
                    ctx.update(part);
                }
                let mut out = [0; 32];
                out.copy_from_slice(ctx.sign().as_ref());
                out
            }
        }

        /// HKDF-SHA256 (RFC 5869): extracts from `ikm` under `salt`, expands under `info`
        /// into `out` (at most 255 × 32 bytes).
        pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
            struct Len(usize);
            impl hkdf::KeyType for Len {
                fn len(&self) -> usize {
                    self.0
                }
            }
            hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
                .extract(ikm)
                .expand(&[info], Len(out.len()))
                .and_then(|okm| okm.fill(out))
                .expect("HKDF-SHA256 expands to 8160 bytes; the crate asks for 32 at most");
        }

        /// An AES-256-GCM key.
        pub(crate) struct Aes256Gcm(aead::LessSafeKey);

        impl Aes256Gcm {
            pub(crate) fn new(key: &[u8; 32]) -> Self {
                let key = aead::UnboundKey::new(&aead::AES_256_GCM, key)
                    .expect("AES-256-GCM takes a 32-byte key");
                Aes256Gcm(aead::LessSafeKey::new(key))
            }

            /// Encrypts `in_out` in place and appends the tag ([`TAG_LEN`] bytes).
            pub(crate) fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut Vec<u8>) {
                self.0
                    .seal_in_place_append_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(aad),
                        in_out,
                    )
                    .expect("AES-GCM sealing cannot fail for inputs this small");
            }

            /// The plain text of `ciphertext ‖ tag`, decrypted in place, if it opens.
            pub(crate) fn open<'a>(
                &self,
                nonce: &[u8],
                aad: &[u8],
                in_out: &'a mut [u8],
            ) -> Option<&'a mut [u8]> {
                let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
                self.0
                    .open_in_place(nonce, aead::Aad::from(aad), in_out)
                    .ok()
            }
        }

        /// A JWS signing key: ES256 (P-256), RS256 and PS256 (RSA), HS256 (HMAC).
        pub(crate) struct JwsKey {
            kind: Kind,
            rng: rand::SystemRandom,
        }

        enum Kind {
            Es256(signature::EcdsaKeyPair),
            Rsa(signature::RsaKeyPair, &'static dyn signature::RsaEncoding),
            Hs256(Box<hmac::Key>),
        }

        impl JwsKey {
            /// A new P-256 key from the operating system's CSPRNG.
            pub(crate) fn generate_es256() -> Option<Self> {
                let rng = rand::SystemRandom::new();
                let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &rng,
                )
                .ok()?;
                Self::es256_pkcs8(pkcs8.as_ref())
            }

            /// A P-256 key in PKCS#8 DER.
            pub(crate) fn es256_pkcs8(der: &[u8]) -> Option<Self> {
                let rng = rand::SystemRandom::new();
                let from_pkcs8: fn(&[u8], &rand::SystemRandom) -> Option<_> = $from_pkcs8;
                let pair = from_pkcs8(der, &rng)?;
                Some(JwsKey {
                    kind: Kind::Es256(pair),
                    rng,
                })
            }

            /// An RSA key in PKCS#8 DER (`pkcs1` false) or PKCS#1 DER, signing with PS256
            /// (`pss`) or RS256. The caller checks the modulus' length.
            pub(crate) fn rsa(der: &[u8], pkcs1: bool, pss: bool) -> Option<Self> {
                let pair = match pkcs1 {
                    true => signature::RsaKeyPair::from_der(der),
                    false => signature::RsaKeyPair::from_pkcs8(der),
                }
                .ok()?;
                let encoding: &'static dyn signature::RsaEncoding = match pss {
                    true => &signature::RSA_PSS_SHA256,
                    false => &signature::RSA_PKCS1_SHA256,
                };
                Some(JwsKey {
                    kind: Kind::Rsa(pair, encoding),
                    rng: rand::SystemRandom::new(),
                })
            }

            /// An HMAC-SHA256 key (the caller checks its length).
            pub(crate) fn hs256(key: &[u8]) -> Self {
                JwsKey {
                    kind: Kind::Hs256(Box::new(hmac::Key::new(hmac::HMAC_SHA256, key))),
                    rng: rand::SystemRandom::new(),
                }
            }

            /// The public key, as a JWK's members need it.
            pub(crate) fn public_key(&self) -> super::PublicKey {
                match &self.kind {
                    Kind::Es256(pair) => super::PublicKey::P256 {
                        point: pair.public_key().as_ref().to_vec(),
                    },
                    Kind::Rsa(pair, _) => {
                        let public =
                            signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                        super::PublicKey::Rsa {
                            n: super::unsigned(public.n),
                            e: super::unsigned(public.e),
                        }
                    }
                    Kind::Hs256(_) => super::PublicKey::None,
                }
            }

            /// The length of a signature, in bytes: an RSA key's modulus length.
            pub(crate) fn signature_len(&self) -> usize {
                match &self.kind {
                    Kind::Es256(_) => 64,
                    Kind::Rsa(pair, _) => pair.public_key().modulus_len(),
                    Kind::Hs256(_) => 32,
                }
            }

            /// The signature of `message`.
            pub(crate) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
                match &self.kind {
                    Kind::Es256(pair) => pair
                        .sign(&self.rng, message)
                        .ok()
                        .map(|signature| signature.as_ref().to_vec()),
                    Kind::Rsa(pair, encoding) => {
                        let mut signature = vec![0; pair.public_key().modulus_len()];
                        pair.sign(*encoding, &self.rng, message, &mut signature)
                            .ok()?;
                        Some(signature)
                    }
                    Kind::Hs256(key) => Some(hmac::sign(key, message).as_ref().to_vec()),
                }
            }
        }

        /// Whether `signature` is `public`'s over `message`, under `alg` (`ES256`, `RS256`,
        /// `PS256`; `HS256` with `hmac_key`). For the tests: the crate never verifies.
        #[cfg(test)]
        pub(crate) fn verify(
            alg: &str,
            public: &super::PublicKey,
            hmac_key: &[u8],
            message: &[u8],
            signature: &[u8],
        ) -> bool {
            use super::PublicKey;
            match (alg, public) {
                ("ES256", PublicKey::P256 { point }) => {
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, signature)
                        .is_ok()
                }
                ("RS256" | "PS256", PublicKey::Rsa { n, e }) => {
                    let params = match alg {
                        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
                    };
                    signature::RsaPublicKeyComponents { n, e }
                        .verify(params, message, signature)
                        .is_ok()
                }
                ("HS256", PublicKey::None) => hmac::verify(
                    &hmac::Key::new(hmac::HMAC_SHA256, hmac_key),
                    message,
                    signature,
                )
                .is_ok(),
                _ => false,
            }
        }

        /// The nonce length of AES-256-GCM.
        pub(crate) const NONCE_LEN: usize = 12;
        /// The tag length of AES-256-GCM.
        pub(crate) const TAG_LEN: usize = 16;

        const _: () = assert!(aead::NONCE_LEN == NONCE_LEN);
    };
}

/// A public key's members, as a JWK (RFC 7517) names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// An uncompressed P-256 point: `0x04 ‖ x ‖ y`.
    P256 { point: Vec<u8> },
    /// An RSA modulus and exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// A symmetric key: nothing public.
    None,
}

/// `bytes` without its leading zeros (a DER integer's sign byte), as JWKs write integers.
fn unsigned(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros.min(bytes.len().saturating_sub(1)));
    bytes
}

/// ring, with its API.
#[cfg(feature = "ring")]
#[allow(dead_code)]
pub(crate) mod ring_provider {
    provider!(ring, "ring", ecdsa_from_pkcs8: |der, rng| {
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, rng)
            .ok()
    });
}

/// aws-lc-rs, with ring's API.
#[cfg(feature = "aws-lc-rs")]
#[allow(dead_code)]
pub(crate) mod aws_lc_provider {
    provider!(aws_lc_rs, "aws-lc-rs", ecdsa_from_pkcs8: |der, _rng| {
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .ok()
    });
}

#[cfg(feature = "aws-lc-rs")]
#[allow(unused_imports)]
pub(crate) use aws_lc_provider::*;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
#[allow(unused_imports)]
pub(crate) use ring_provider::*;

/// The first private key section of `pem` (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or
/// SEC1 `EC PRIVATE KEY`) and its form, decoded straight into a buffer wiped on drop (as every
/// other section's DER is, as it is skipped).
#[cfg(any(feature = "jwt", feature = "dpop"))]
pub(crate) fn private_key_der(
    pem: &[u8],
) -> Option<(
    rustls_pki_types::pem::SectionKind,
    zeroize::Zeroizing<Vec<u8>>,
)> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .map_while(Result::ok)
        .map(|(kind, der)| (kind, zeroize::Zeroizing::new(der)))
        .find(|(kind, _)| {
            matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
            )
        })
}

/// A SEC1 `ECPrivateKey` (RFC 5915) of a P-256 key, wrapped in the PKCS#8 envelope (RFC 5208)
/// both providers parse: `SEQUENCE { 0, { id-ecPublicKey, prime256v1 }, OCTET STRING sec1 }`.
/// The result holds the private key: it is wiped on drop.
#[cfg(any(feature = "jwt", feature = "dpop"))]
pub(crate) fn p256_sec1_to_pkcs8(sec1: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, // INTEGER 0
        0x30, 0x13, // SEQUENCE (19 bytes)
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
    ];
    fn der_len(len: usize, out: &mut Vec<u8>) {
        match len {
            0..0x80 => out.push(len as u8),
            0x80..0x100 => out.extend_from_slice(&[0x81, len as u8]),
            _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        }
    }
    let mut octets = zeroize::Zeroizing::new(Vec::with_capacity(sec1.len() + 4));
    octets.push(0x04);
    der_len(sec1.len(), &mut octets);
    octets.extend_from_slice(sec1);
    let body_len = VERSION_AND_ALGORITHM.len() + octets.len();
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(body_len + 4));
    out.push(0x30);
    der_len(body_len, &mut out);
    out.extend_from_slice(VERSION_AND_ALGORITHM);
    out.extend_from_slice(&octets);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_dropped_but_zero_stays() {
        assert_eq!(unsigned(vec![0, 0, 1, 0]), vec![1, 0]);
        assert_eq!(unsigned(vec![0]), vec![0]);
        assert_eq!(unsigned(vec![7]), vec![7]);
    }

    #[test]
    fn sha256_and_hkdf_follow_their_test_vectors() {
        // FIPS 180-2, "abc", in two parts.
        assert_eq!(
            sha256(&[b"a", b"bc"]).to_vec(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        // RFC 5869 A.1.
        let mut okm = [0u8; 42];
        hkdf_sha256(
            &hex("000102030405060708090a0b0c"),
            &[0x0b; 22],
            &hex("f0f1f2f3f4f5f6f7f8f9"),
            &mut okm,
        );
        assert_eq!(
            okm.to_vec(),
            hex(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            )
        );
        // RFC 4231 test case 2.
        assert_eq!(
            HmacSha256::new(b"Jefe")
                .sign(&[b"what do ya want ", b"for nothing?"])
                .to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// With both providers in the build, each verifies what the other signs, and each opens
    /// what the other seals: the choice of provider changes no byte on the wire or in Redis.
    #[cfg(all(feature = "ring", feature = "aws-lc-rs", feature = "dpop"))]
    mod both {
        use super::super::{aws_lc_provider as aws, ring_provider as ring};
        use super::*;

        fn pem_der(name: &str) -> zeroize::Zeroizing<Vec<u8>> {
            use rustls_pki_types::pem::{PemObject, SectionKind};
            let pem =
                std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let (kind, der) = <(SectionKind, Vec<u8>)>::pem_slice_iter(&pem)
                .next()
                .unwrap()
                .unwrap();
            assert!(matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey
            ));
            zeroize::Zeroizing::new(der)
        }

        #[test]
        fn the_selected_provider_is_aws_lc_rs() {
            assert_eq!(NAME, "aws-lc-rs");
            assert_eq!(ring::NAME, "ring");
        }

        #[test]
        fn signatures_of_one_provider_verify_with_the_other() {
            let message = b"eyJhbGciOiJFUzI1NiJ9.e30";
            type Sign = Box<dyn Fn(&[u8]) -> Option<Vec<u8>>>;
            let keys = |which: &str| -> Vec<(&str, Sign, PublicKey)> {
                let pkcs8 = pem_der("ec_pkcs8.pem");
                let rsa8 = pem_der("rsa_pkcs8.pem");
                let rsa1 = pem_der("rsa_pkcs1.pem");
                // The same keys, loaded by either provider's module.
                macro_rules! keys_of {
                    ($provider:ident) => {{
                        let es = $provider::JwsKey::es256_pkcs8(&pkcs8).unwrap();
                        let rs = $provider::JwsKey::rsa(&rsa1, true, false).unwrap();
                        let ps = $provider::JwsKey::rsa(&rsa8, false, true).unwrap();
                        let hs = $provider::JwsKey::hs256(&[9; 32]);
                        let (pe, pr, pp) = (es.public_key(), rs.public_key(), ps.public_key());
                        vec![
                            ("ES256", Box::new(move |m: &[u8]| es.sign(m)), pe),
                            ("RS256", Box::new(move |m: &[u8]| rs.sign(m)), pr),
                            ("PS256", Box::new(move |m: &[u8]| ps.sign(m)), pp),
                            (
                                "HS256",
                                Box::new(move |m: &[u8]| hs.sign(m)),
                                PublicKey::None,
                            ),
                        ]
                    }};
                }
                match which {
                    "ring" => keys_of!(ring),
                    _ => keys_of!(aws),
                }
            };
            type Verify = fn(&str, &PublicKey, &[u8], &[u8], &[u8]) -> bool;
            for (signer, verifier, verify) in [
                ("ring", "aws-lc-rs", aws::verify as Verify),
                ("aws-lc-rs", "ring", ring::verify as Verify),
            ] {
                for (alg, sign, public) in keys(signer) {
                    let signature = sign(message).unwrap();
                    assert!(
                        verify(alg, &public, &[9; 32], message, &signature),
                        "{alg} signed by {signer} does not verify with {verifier}"
                    );
                    assert!(
                        !verify(alg, &public, &[9; 32], b"tampered", &signature),
                        "{alg}: {verifier} accepts a signature of another message"
                    );
                }
            }
            // Both read the same public keys from the same private keys.
            let (a, b) = (keys("ring"), keys("aws-lc-rs"));
            for ((alg, _, one), (_, _, other)) in a.iter().zip(&b) {
                assert_eq!(one, other, "{alg}");
            }
        }

        #[test]
        fn what_one_provider_seals_the_other_opens() {
            let key = [3u8; 32];
            let nonce = [5u8; NONCE_LEN];
            let mut sealed = b"a refresh token".to_vec();
            ring::Aes256Gcm::new(&key).seal(nonce, b"aad", &mut sealed);
            assert_eq!(sealed.len(), 15 + TAG_LEN);
            let mut copy = sealed.clone();
            let plain = aws::Aes256Gcm::new(&key)
                .open(&nonce, b"aad", &mut copy)
                .unwrap();
            assert_eq!(plain, b"a refresh token");
            assert!(
                aws::Aes256Gcm::new(&key)
                    .open(&nonce, b"other aad", &mut sealed.clone())
                    .is_none()
            );
            let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
            ring::hkdf_sha256(b"salt", &key, b"info", &mut x);
            aws::hkdf_sha256(b"salt", &key, b"info", &mut y);
            assert_eq!(x, y);
            assert_eq!(
                ring::HmacSha256::new(&key).sign(&[b"m"]),
                aws::HmacSha256::new(&key).sign(&[b"m"])
            );
        }

        #[test]
        fn a_sec1_p256_key_loads_in_both_providers_once_wrapped() {
            // A SEC1 key is the PKCS#8 key's inner `ECPrivateKey`: unwrap, rewrap, compare.
            let pkcs8 = pem_der("ec_pkcs8.pem");
            // The outer SEQUENCE's header, the version (3 bytes), the algorithm (21 bytes),
            // then the OCTET STRING holding the SEC1 key.
            let header = match pkcs8[1] {
                0x81 => 3,
                0x82 => 4,
                _ => 2,
            };
            let prefix = header + 3 + 21;
            assert_eq!(pkcs8[prefix], 0x04);
            let (len, skip) = match pkcs8[prefix + 1] {
                0x81 => (pkcs8[prefix + 2] as usize, 3),
                n => (n as usize, 2),
            };
            let sec1 = &pkcs8[prefix + skip..prefix + skip + len];
            let wrapped = p256_sec1_to_pkcs8(sec1);
            let a = ring::JwsKey::es256_pkcs8(&wrapped).unwrap().public_key();
            let b = aws::JwsKey::es256_pkcs8(&wrapped).unwrap().public_key();
            assert_eq!(a, b);
            assert_eq!(a, ring::JwsKey::es256_pkcs8(&pkcs8).unwrap().public_key());
        }
    }
}
