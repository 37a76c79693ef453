//! DPoP (RFC 9449): access tokens bound to a key the client proves it holds, with a fresh
//! signed proof on every request (feature `dpop`).
//!
//! A bearer token works for whoever holds it. A DPoP-bound token works only with a proof,
//! signed by the client's private key, made for the one request it travels with: its method
//! (`htm`), its URL without query and fragment (`htu`), the time (`iat`), a unique id (`jti`)
//! and, towards a resource server, the hash of the token (`ath`). A stolen token is useless
//! without the key; a stolen proof is useless for any other request.
//!
//! - [`DpopKey`]: the key (ES256 by default, RS256/PS256 too; generated, from PEM, or held
//!   by a KMS or an HSM behind a signer: see below).
//! - [`Dpop`]: the key and the server nonces it has been given, shared by the token source
//!   and the layer. The built-in OAuth sources take it with `.dpop(..)` on their builders
//!   (`ClientCredentials`, `RefreshTokenGrant`, `JwtBearer`): every token request then
//!   carries a proof, a `token_type` of `DPoP` is required, and a `Bearer` one is refused (a
//!   server that ignored the request for a bound token).
//! - No stack of its own: DPoP is a property of the token. The built-in sources bind the
//!   tokens they fetch to their `Dpop` ([`Token::with_dpop`](crate::Token::with_dpop)), and
//!   [`BearerAuthLayer`](crate::BearerAuthLayer) and `BearerAuthMiddleware`, with one cache or
//!   keyed, send a bound token as `Authorization: DPoP <token>` with a `DPoP` proof (with
//!   `ath`) per request. Discovery, keyed slots and wrapper sources hand the binding on with
//!   the token.
//!
//! Server nonces (RFC 9449 §8, §9): a token endpoint's `use_dpop_nonce` error, or a resource
//! server's 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"`, comes with a
//! `DPoP-Nonce` header; the request is sent once more with a proof carrying that nonce (on a
//! tower stack, when the layer copies bodies: `replay_on_401`), which does not use up the replay
//! after a rejected token. The latest nonce of each origin is remembered, under the origin that
//! sent it (after a redirect, not the request's), and put in every later proof to it (a
//! `DPoP-Nonce` on any answer replaces it). A 401 with `WWW-Authenticate: DPoP error="invalid_token"` goes
//! through the same 401 policy as with Bearer ([`challenge::rejects_dpop_token`](crate::challenge::rejects_dpop_token)).
//!
//! What does not change per request is computed once: the proof header with the `jwk` per key,
//! the `Authorization` value and `ath` per token (by the cache). What is left per request is one JSON
//! object, one signature (ES256 is the cheapest) and a little base64: see `BENCHMARKS.md`.
//! The bearer layer does none of this and pays nothing for it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::dpop::{Dpop, DpopKey};
//! use tower_bearer::source::{ClientAuth, ClientCredentials};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let dpop = Dpop::new(DpopKey::generate()?);
//! let source = ClientCredentials::builder(
//!     "https://auth.example.com/oauth2/token",
//!     ClientAuth::none("my-public-client"),
//! )
//! .dpop(dpop.clone())
//! .build()?;
//! let layer = BearerAuthLayer::new(source).replay_on_401();
//! # let _ = layer;
//!
//! // The proofs themselves, for a source of your own:
//! let proof = dpop.proof(&http::Method::POST, &"https://auth.example.com/oauth2/token".parse()?, None)?;
//! assert_eq!(proof.to_str()?.split('.').count(), 3);
//! # Ok(()) }
//! ```
//!
//! # A key held by a KMS or an HSM
//!
//! [`DpopKey::from_signer`] takes an
//! [`AssertionSigner`](crate::source::signer::AssertionSigner) (the one signer trait: client
//! assertions are signed through it too) and the public key as a JWK, which every proof's
//! header carries and the thumbprint is computed from. Each proof is then one call to the
//! signer, awaited where the proof is made: the layer's response future (the request waits
//! for the signer, as it would for a token, before it is handed on), the middleware, the
//! nonce retry and the replay, and the token requests of the built-in sources. A signer's
//! failure fails that request with the [`ErrorKind`](crate::ErrorKind) the signer gave it
//! (`Transient` for an unreachable KMS), and nothing is sent without its proof. An in-process
//! key is unaffected: it signs on the request's path, as above.
//!
//! ```
//! use tower_bearer::dpop::{Dpop, DpopKey};
//! use tower_bearer::source::signer::{AssertionSigner, SignatureFuture};
//! use tower_bearer::source::{ClientAuth, ClientCredentials};
//! use tower_bearer::{BearerAuthLayer, Error, ErrorKind};
//!
//! /// A P-256 key in a KMS: each signature is a call to it.
//! struct Kms;
//!
//! impl AssertionSigner for Kms {
//!     fn algorithm(&self) -> &str { "ES256" }
//!     fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a> {
//!         Box::pin(async move {
//!             // kms.sign(key, signing_input).await: the signature as JWS has it (r || s)
//!             # let _ = signing_input;
//!             Err(Error::transient("the KMS is not reachable from a doctest"))
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! // The public key, as the KMS exports it.
//! let jwk = r#"{"kty":"EC","crv":"P-256",
//!     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!     "y":"x_FEzRu9m36HLN-tue659LNpXW6pCyStikYjKIWI5a0"}"#;
//! let dpop = Dpop::new(DpopKey::from_signer(Kms, jwk)?);
//! let source = ClientCredentials::builder(
//!     "https://auth.example.com/oauth2/token",
//!     ClientAuth::none("my-public-client"),
//! )
//! .dpop(dpop.clone())
//! .build()?;
//! let layer = BearerAuthLayer::new(source).replay_on_401();
//! # let _ = layer;
//!
//! // A proof of your own awaits the KMS too; its failure keeps the KMS's kind.
//! let uri = "https://api.example.com/v1/items".parse()?;
//! let err = dpop.proof_async(&http::Method::GET, &uri, None).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Transient);
//! # Ok(()) }
//! ```

mod jwk;
mod key;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

pub use key::DpopKey;

use crate::Error;

/// The `DPoP` request header, carrying the proof (RFC 9449 §4.1).
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header, carrying a server nonce (RFC 9449 §8.1).
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The OAuth error code asking for a proof with a server nonce (RFC 9449 §8, §9).
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// How many origins' nonces are remembered; past this, the oldest entries are forgotten.
const MAX_ORIGINS: usize = 256;

/// The longest nonce accepted (RFC 9449 sets no limit; a sane one keeps memory bounded).
const MAX_NONCE_LEN: usize = 1024;

/// A [`DpopKey`] and the nonces servers gave it, one per origin: what the token source and the
/// layer share to make proofs. Cheap to clone (an `Arc` inside); clones share the nonces.
///
/// `Debug` shows the key's algorithm and thumbprint and how many nonces are held, never a
/// nonce or the private key.
#[derive(Clone)]
pub struct Dpop {
    inner: Arc<Inner>,
}

struct Inner {
    key: DpopKey,
    nonces: Mutex<Nonces>,
}

#[derive(Default)]
struct Nonces {
    by_origin: HashMap<String, (Arc<str>, u64)>,
    counter: u64,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl Dpop {
    /// Proofs signed with `key`, no nonce known yet.
    pub fn new(key: DpopKey) -> Self {
        Dpop {
            inner: Arc::new(Inner {
                key,
                nonces: Mutex::default(),
            }),
        }
    }

    /// [`Dpop::new`] with a freshly generated ES256 key ([`DpopKey::generate`]).
    pub fn generate() -> Result<Self, Error> {
        Ok(Self::new(DpopKey::generate()?))
    }

    /// The key proofs are signed with.
    pub fn key(&self) -> &DpopKey {
        &self.inner.key
    }

    /// A new proof for a `method` request to `uri` (absolute: `https://` or `http://`), with
    /// `ath` when `access_token` is given, and the nonce last remembered for `uri`'s origin.
    ///
    /// The layer and the built-in sources call this for you; use it in a
    /// [`TokenSource`](crate::TokenSource) of your own, and give the answers' headers to
    /// [`remember_nonce`](Self::remember_nonce). Signs here, synchronously: a key behind a
    /// signer ([`DpopKey::from_signer`]) is a [`Config`](crate::ErrorKind::Config) error, and
    /// takes [`proof_async`](Self::proof_async).
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let (target, ath) = aim(uri, access_token)?;
        self.proof_for(method, &target, ath.as_deref())
    }

    /// [`proof`](Self::proof) with any key: a key behind a signer
    /// ([`DpopKey::from_signer`]) awaits it, and its error keeps the kind the signer gave it;
    /// an in-process key signs at once.
    pub async fn proof_async(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let (target, ath) = aim(uri, access_token)?;
        self.proof_for_async(method, &target, ath.as_deref()).await
    }

    /// Remember the `DPoP-Nonce` of an answer from `uri`'s origin, if it has a valid one
    /// (RFC 9449 §8.1: visible ASCII but `"` and `\`). Returns whether it did.
    pub fn remember_nonce(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        Target::from_uri(uri).is_ok_and(|target| self.remember(&target, headers))
    }

    /// A proof signed here (an in-process key).
    pub(crate) fn proof_for(
        &self,
        method: &Method,
        target: &Target,
        ath: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let claims = self.claims(method, target, ath)?;
        proof_value(self.inner.key.sign_jwt(&claims)?)
    }

    /// A proof signed by either key, awaiting a signer.
    pub(crate) async fn proof_for_async(
        &self,
        method: &Method,
        target: &Target,
        ath: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let claims = self.claims(method, target, ath)?;
        proof_value(self.inner.key.sign_jwt_async(&claims).await?)
    }

    /// The claims of a new proof, as JSON.
    fn claims(
        &self,
        method: &Method,
        target: &Target,
        ath: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        let nonce = self.nonce(target);
        let jti = key::random_jti()?;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::config("the system clock is before 1970"))?
            .as_secs();
        let claims = Claims {
            jti: &jti,
            htm: method.as_str(),
            htu: &target.htu,
            iat,
            ath,
            nonce: nonce.as_deref(),
        };
        serde_json::to_vec(&claims)
            .map_err(|_| Error::config("could not write the DPoP proof's claims"))
    }

    fn nonce(&self, target: &Target) -> Option<Arc<str>> {
        let nonces = self.inner.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces
            .by_origin
            .get(&target.origin)
            .map(|(n, _)| Arc::clone(n))
    }

    pub(crate) fn remember(&self, target: &Target, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(valid_nonce) else {
            return false;
        };
        let mut nonces = self.inner.nonces.lock().unwrap_or_else(|e| e.into_inner());
        if nonces
            .by_origin
            .get(&target.origin)
            .is_some_and(|(known, _)| **known == *nonce)
        {
            return true;
        }
        if nonces.by_origin.len() >= MAX_ORIGINS && !nonces.by_origin.contains_key(&target.origin) {
            // Forget the origin whose nonce is the oldest.
            if let Some(oldest) = nonces
                .by_origin
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(origin, _)| origin.clone())
            {
                nonces.by_origin.remove(&oldest);
            }
        }
        nonces.counter += 1;
        let at = nonces.counter;
        nonces
            .by_origin
            .insert(target.origin.clone(), (Arc::from(nonce), at));
        tracing::debug!(origin = %target.origin, "remembered a new DPoP nonce");
        true
    }
}

/// What a proof for `uri` names: its target, and the `ath` of `access_token` if any.
fn aim(uri: &Uri, access_token: Option<&str>) -> Result<(Target, Option<String>), Error> {
    let target = Target::from_uri(uri)?;
    Ok((target, access_token.map(|t| key::sha256_b64(t.as_bytes()))))
}

/// A signed proof as a `DPoP` header value, marked sensitive.
fn proof_value(jwt: String) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::try_from(jwt)
        .map_err(|_| Error::config("the DPoP proof is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn valid_nonce(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_NONCE_LEN
        && bytes
            .iter()
            .all(|&b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    valid.then(|| value.to_str().ok()).flatten()
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonces = self
            .inner
            .nonces
            .lock()
            .map_or(0, |nonces| nonces.by_origin.len());
        f.debug_struct("Dpop")
            .field("key", &self.inner.key)
            .field("nonces", &nonces)
            .finish()
    }
}

/// Where a proof is for: `htu` (scheme, host, port unless the default, path; no query, no
/// fragment, no userinfo: RFC 9449 §4.2) and the origin its nonces are kept under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) htu: String,
    pub(crate) origin: String,
}

impl Target {
    pub(crate) fn from_uri(uri: &Uri) -> Result<Target, Error> {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(Error::config(
                "a DPoP proof names the request's absolute URL: the request URI must be absolute \
                 (https://host/path)",
            ));
        };
        Target::new(scheme, host, uri.port_u16(), uri.path())
    }

    /// The target of a request with a path-only URI (`path`) to `origin` (an absolute URI).
    pub(crate) fn from_origin(origin: &Uri, path: &str) -> Result<Target, Error> {
        let (Some(scheme), Some(host)) = (origin.scheme_str(), origin.host()) else {
            return Err(Error::config(
                "a DPoP proof needs the origin of a path-only request",
            ));
        };
        Target::new(scheme, host, origin.port_u16(), path)
    }

    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn from_url(url: &::reqwest::Url) -> Result<Target, Error> {
        let host = url
            .host_str()
            .ok_or_else(|| Error::config("a DPoP proof needs a URL with a host"))?;
        Target::new(url.scheme(), host, url.port(), url.path())
    }

    fn new(scheme: &str, host: &str, port: Option<u16>, path: &str) -> Result<Target, Error> {
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => {
                return Err(Error::config(
                    "a DPoP proof is only for http and https URLs",
                ));
            }
        };
        let host = host.to_ascii_lowercase();
        let port = port.unwrap_or(default_port);
        let origin = format!("{scheme}://{host}:{port}");
        let path = if path.is_empty() { "/" } else { path };
        let htu = if port == default_port {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{origin}{path}")
        };
        Ok(Target { htu, origin })
    }
}

/// A token's `ath` (RFC 9449 §4.2): the base64url SHA-256 of the token.
pub(crate) fn ath(secret: &str) -> Arc<str> {
    Arc::from(key::sha256_b64(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_drops_query_fragment_userinfo_and_default_ports() {
        let htu = |s: &str| Target::from_uri(&s.parse().unwrap()).unwrap();
        let t = htu("https://user:pw@API.Example.com:443/v1/Items?x=1");
        assert_eq!(t.htu, "https://api.example.com/v1/Items");
        assert_eq!(t.origin, "https://api.example.com:443");
        let t = htu("http://127.0.0.1:8080");
        assert_eq!(t.htu, "http://127.0.0.1:8080/");
        assert_eq!(htu("http://[::1]:80/a").htu, "http://[::1]/a");
        assert_eq!(
            Target::from_uri(&"/relative".parse().unwrap())
                .unwrap_err()
                .kind(),
            crate::ErrorKind::Config
        );
        assert!(Target::from_uri(&"ftp://host/x".parse().unwrap()).is_err());
    }

    #[test]
    fn nonces_are_kept_per_origin_and_validated() {
        let dpop = Dpop::generate().unwrap();
        let a: Uri = "https://a.example/token".parse().unwrap();
        let b: Uri = "https://b.example/api".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert!(dpop.remember_nonce(&a, &headers));
        let target_a = Target::from_uri(&a).unwrap();
        let target_b = Target::from_uri(&b).unwrap();
        assert_eq!(dpop.nonce(&target_a).as_deref(), Some("n-1"));
        assert_eq!(dpop.nonce(&target_b), None);
        headers.insert(DPOP_NONCE, HeaderValue::from_static("bad\"nonce"));
        assert!(!dpop.remember_nonce(&a, &headers));
        assert_eq!(dpop.nonce(&target_a).as_deref(), Some("n-1"));
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-2"));
        assert!(dpop.remember_nonce(&"https://a.example/other?q".parse().unwrap(), &headers));
        assert_eq!(dpop.nonce(&target_a).as_deref(), Some("n-2"));
        assert!(!format!("{dpop:?}").contains("n-2"));
    }

    #[test]
    fn the_nonce_memory_is_bounded() {
        let dpop = Dpop::generate().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n"));
        for i in 0..(MAX_ORIGINS + 10) {
            let uri: Uri = format!("https://h{i}.example/").parse().unwrap();
            assert!(dpop.remember_nonce(&uri, &headers));
        }
        let held = dpop.inner.nonces.lock().unwrap().by_origin.len();
        assert_eq!(held, MAX_ORIGINS);
        // The newest are kept, the oldest forgotten.
        let newest = Target::from_uri(
            &format!("https://h{}.example/", MAX_ORIGINS + 9)
                .parse()
                .unwrap(),
        )
        .unwrap();
        assert!(dpop.nonce(&newest).is_some());
        assert!(
            dpop.nonce(&Target::from_uri(&"https://h0.example/".parse().unwrap()).unwrap())
                .is_none()
        );
    }

    #[test]
    fn a_proof_has_the_rfc_9449_header_and_claims() {
        use base64::Engine as _;
        let dpop = Dpop::generate().unwrap();
        let uri: Uri = "https://API.example.com/v1/x?secret=1#frag"
            .parse()
            .unwrap();
        let proof = dpop.proof(&Method::GET, &uri, Some("tok")).unwrap();
        assert!(proof.is_sensitive());
        let parts: Vec<&str> = proof.to_str().unwrap().split('.').collect();
        let json = |i: usize| -> serde_json::Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(parts[i])
                    .unwrap(),
            )
            .unwrap()
        };
        let header = json(0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert!(header["jwk"].get("d").is_none());
        let claims = json(1);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example.com/v1/x");
        assert_eq!(claims["ath"], key::sha256_b64(b"tok"));
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        assert!(claims.get("nonce").is_none());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 5);
    }
}
