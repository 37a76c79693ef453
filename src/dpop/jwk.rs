//! The public key of a DPoP key as a JWK (RFC 7517): the canonical form every proof's header
//! carries and the RFC 7638 thumbprint is computed from, and the check of a JWK given for a
//! key held elsewhere ([`DpopKey::from_signer`](super::DpopKey::from_signer)).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;

/// The members of a JWK that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public key given as a JWK, checked.
pub(super) struct PublicJwk {
    pub(super) algorithm: &'static str,
    /// The length of the key's signatures.
    pub(super) signature_len: usize,
    /// The required members, in RFC 7638 order; others (`kid`, `use`, ...) are left out.
    pub(super) canonical: String,
}

/// Check `public_jwk` (JSON) against the JWS `algorithm` it signs with.
pub(super) fn public_jwk(algorithm: &str, public_jwk: &str) -> Result<PublicJwk, Error> {
    let invalid = |why: &str| Error::config(format!("the DPoP signer's public JWK {why}"));
    let jwk: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(public_jwk).map_err(|_| invalid("is not a JSON object"))?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(invalid(
            "holds a private key: give the public key only (no `d`, `p`, `q`, ...)",
        ));
    }
    let member = |name: &str| -> Result<Vec<u8>, Error> {
        jwk.get(name)
            .and_then(serde_json::Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(&format!("has no valid `{name}` (base64url)")))
    };
    let text = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
    let (algorithm, signature_len, canonical) = match algorithm {
        "ES256" => {
            if text("kty") != Some("EC") || text("crv") != Some("P-256") {
                return Err(invalid("is not an EC key on P-256, as ES256 needs"));
            }
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(invalid("is not a P-256 point (x and y of 32 bytes)"));
            }
            ("ES256", 64, ec_jwk(&x, &y))
        }
        alg @ ("RS256" | "PS256") => {
            if text("kty") != Some("RSA") {
                return Err(invalid(&format!("is not an RSA key, as {alg} needs")));
            }
            let (n, e) = (member("n")?, member("e")?);
            if n.len() < 256 || n[0] == 0 || e[0] == 0 {
                return Err(invalid(
                    "is not an RSA key of 2048 bits or more (n and e without leading zeros)",
                ));
            }
            let alg = if alg == "RS256" { "RS256" } else { "PS256" };
            (alg, n.len(), rsa_jwk(&n, &e))
        }
        _ => {
            return Err(Error::config(
                "a DPoP signer signs with ES256, RS256 or PS256",
            ));
        }
    };
    Ok(PublicJwk {
        algorithm,
        signature_len,
        canonical,
    })
}

/// An EC P-256 public key as a JWK, members in RFC 7638 order.
pub(super) fn ec_jwk(x: &[u8], y: &[u8]) -> String {
    format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    )
}

/// An RSA public key as a JWK, members in RFC 7638 order.
pub(super) fn rsa_jwk(n: &[u8], e: &[u8]) -> String {
    format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(e),
        URL_SAFE_NO_PAD.encode(n)
    )
}
