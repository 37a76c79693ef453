//! A local authorization server and API that verify DPoP proofs exactly (RFC 9449 §4.3):
//! the signature with the `jwk` of the header, `typ`, `alg`, `htm`, `htu`, an `iat` window,
//! `jti` replay, `ath` and nonces; tokens are bound to the key's thumbprint.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// How far `iat` may be from the server's clock.
const IAT_WINDOW_SECS: u64 = 60;

#[derive(Default)]
pub struct Config {
    /// `token_type` of issued tokens (default `DPoP`).
    pub token_type: Option<&'static str>,
    /// The token endpoint wants a nonce in proofs.
    pub nonce_at_token: bool,
    /// The API wants a nonce in proofs.
    pub nonce_at_api: bool,
}

#[derive(Default)]
pub struct Server {
    pub base: String,
    pub config: Config,
    pub token_calls: AtomicUsize,
    pub api_calls: AtomicUsize,
    pub grants: Mutex<Vec<String>>,
    seen_jti: Mutex<HashSet<String>>,
    /// Issued token → thumbprint of the key it is bound to.
    tokens: Mutex<HashMap<String, String>>,
    pub revoked: Mutex<HashSet<String>>,
    /// Why proofs were refused, in order.
    pub refusals: Mutex<Vec<String>>,
    /// The last proof the API accepted, to try replaying it.
    pub last_api_proof: Mutex<Option<String>>,
    nonce_counter: AtomicUsize,
    token_nonce: Mutex<Option<String>>,
    api_nonce: Mutex<Option<String>>,
}

pub async fn start(config: Config) -> Arc<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = Arc::new(Server {
        base: format!("http://{addr}"),
        config,
        ..Server::default()
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&server));
    tokio::spawn(async move { axum::serve(listener, app).await });
    server
}

impl Server {
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }

    pub fn api_calls(&self) -> usize {
        self.api_calls.load(Ordering::SeqCst)
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }

    fn refuse(&self, reason: String) -> String {
        self.refusals.lock().unwrap().push(reason.clone());
        reason
    }

    fn new_nonce(&self, slot: &Mutex<Option<String>>) -> String {
        let n = format!(
            "nonce-{}",
            self.nonce_counter.fetch_add(1, Ordering::SeqCst)
        );
        *slot.lock().unwrap() = Some(n.clone());
        n
    }

    /// Verify the request's proof; the key's thumbprint when it holds.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        htu: &str,
        ath: Option<&str>,
    ) -> Result<(String, Option<String>), String> {
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(self.refuse("not exactly one DPoP header".into()));
        };
        let proof = proof
            .to_str()
            .map_err(|_| self.refuse("proof not ASCII".into()))?;
        let parts: Vec<&str> = proof.split('.').collect();
        if parts.len() != 3 {
            return Err(self.refuse("proof is not a compact JWS".into()));
        }
        let json = |s: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
        };
        let header = json(parts[0]).ok_or_else(|| self.refuse("bad header".into()))?;
        let claims = json(parts[1]).ok_or_else(|| self.refuse("bad claims".into()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(parts[2])
            .map_err(|_| self.refuse("bad signature encoding".into()))?;
        if header["typ"] != "dpop+jwt" {
            return Err(self.refuse("typ".into()));
        }
        let jwk = &header["jwk"];
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            if jwk.get(private).is_some() {
                return Err(self.refuse("private key in jwk".into()));
            }
        }
        let b64 = |v: &Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap_or_default()).ok();
        let message = format!("{}.{}", parts[0], parts[1]);
        let (verified, thumbprint_input) = match (header["alg"].as_str(), jwk["kty"].as_str()) {
            (Some("ES256"), Some("EC")) if jwk["crv"] == "P-256" => {
                let (Some(x), Some(y)) = (b64(&jwk["x"]), b64(&jwk["y"])) else {
                    return Err(self.refuse("jwk".into()));
                };
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let ok = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .verify(message.as_bytes(), &signature)
                    .is_ok();
                let input = format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    jwk["x"].as_str().unwrap(),
                    jwk["y"].as_str().unwrap()
                );
                (ok, input)
            }
            (Some(alg @ ("RS256" | "PS256")), Some("RSA")) => {
                let (Some(n), Some(e)) = (b64(&jwk["n"]), b64(&jwk["e"])) else {
                    return Err(self.refuse("jwk".into()));
                };
                let params = if alg == "RS256" {
                    &RSA_PKCS1_2048_8192_SHA256
                } else {
                    &RSA_PSS_2048_8192_SHA256
                };
                let ok = RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(params, message.as_bytes(), &signature)
                    .is_ok();
                let input = format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    jwk["e"].as_str().unwrap(),
                    jwk["n"].as_str().unwrap()
                );
                (ok, input)
            }
            _ => return Err(self.refuse("alg".into())),
        };
        if !verified {
            return Err(self.refuse("signature".into()));
        }
        if claims["htm"] != method.as_str() {
            return Err(self.refuse("htm".into()));
        }
        if claims["htu"] != htu {
            return Err(self.refuse(format!("htu {} (expected {htu})", claims["htu"])));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        match claims["iat"].as_u64() {
            Some(iat) if iat.abs_diff(now) <= IAT_WINDOW_SECS => {}
            _ => return Err(self.refuse("iat".into())),
        }
        match ath {
            Some(ath) if claims["ath"] != ath => return Err(self.refuse("ath".into())),
            None if claims.get("ath").is_some() => {
                return Err(self.refuse("ath at the token endpoint".into()));
            }
            _ => {}
        }
        let Some(jti) = claims["jti"].as_str().filter(|j| j.len() >= 16) else {
            return Err(self.refuse("jti missing".into()));
        };
        if !self.seen_jti.lock().unwrap().insert(jti.to_owned()) {
            return Err(self.refuse("jti replayed".into()));
        }
        let thumbprint = URL_SAFE_NO_PAD.encode(digest(&SHA256, thumbprint_input.as_bytes()));
        let nonce = claims["nonce"].as_str().map(str::to_owned);
        Ok((thumbprint, nonce))
    }
}

fn json(status: StatusCode, headers: &[(&'static str, String)], body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

async fn handle(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let htu = server.url(uri.path());
    if uri.path() == "/token" {
        server.token_calls.fetch_add(1, Ordering::SeqCst);
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        server
            .grants
            .lock()
            .unwrap()
            .push(form.get("grant_type").cloned().unwrap_or_default());
        let (jkt, nonce) = match server.verify(&headers, &method, &htu, None) {
            Ok(ok) => ok,
            Err(reason) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &[],
                    serde_json::json!({"error": "invalid_dpop_proof", "error_description": reason}),
                );
            }
        };
        if server.config.nonce_at_token {
            let current = server.token_nonce.lock().unwrap().clone();
            if current.is_none() || nonce != current {
                let fresh = server.new_nonce(&server.token_nonce);
                return json(
                    StatusCode::BAD_REQUEST,
                    &[("dpop-nonce", fresh)],
                    serde_json::json!({"error": "use_dpop_nonce"}),
                );
            }
        }
        let token = format!("tok-{}", server.token_calls());
        server.tokens.lock().unwrap().insert(token.clone(), jkt);
        return json(
            StatusCode::OK,
            &[],
            serde_json::json!({
                "access_token": token,
                "token_type": server.config.token_type.unwrap_or("DPoP"),
                "expires_in": 3600,
                "refresh_token": "rt-next",
            }),
        );
    }

    server.api_calls.fetch_add(1, Ordering::SeqCst);
    match server.admit(&headers, &method, &htu) {
        Ok(token) => (StatusCode::OK, format!("ok {token}")).into_response(),
        Err(refusal) => {
            let mut extra = vec![("www-authenticate", refusal.challenge)];
            extra.extend(refusal.nonce.map(|nonce| ("dpop-nonce", nonce)));
            json(StatusCode::UNAUTHORIZED, &extra, serde_json::json!({}))
        }
    }
}

/// Why the API refused a request: its `WWW-Authenticate` challenge, and a nonce to use.
pub struct Refusal {
    pub challenge: String,
    pub nonce: Option<String>,
}

impl Server {
    /// The API's check of a request to `htu`: a DPoP token this server issued, not revoked,
    /// with a proof by the key it is bound to (and the current nonce, when the API wants one).
    /// The token, or why not. Shared by the HTTP API and the gRPC test's server.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        method: &Method,
        htu: &str,
    ) -> Result<String, Refusal> {
        let refuse = |challenge: &str| Refusal {
            challenge: challenge.to_owned(),
            nonce: None,
        };
        let Some(token) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("DPoP "))
            .map(str::to_owned)
        else {
            return Err(refuse(r#"DPoP algs="ES256 RS256 PS256""#));
        };
        let ath = URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()));
        let Ok((jkt, nonce)) = self.verify(headers, method, htu, Some(&ath)) else {
            return Err(refuse(r#"DPoP error="invalid_dpop_proof""#));
        };
        if self.config.nonce_at_api {
            let current = self.api_nonce.lock().unwrap().clone();
            if current.is_none() || nonce != current {
                return Err(Refusal {
                    challenge: r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#.into(),
                    nonce: Some(self.new_nonce(&self.api_nonce)),
                });
            }
        }
        let bound = self.tokens.lock().unwrap().get(&token).cloned();
        if bound.as_deref() != Some(jkt.as_str()) || self.revoked.lock().unwrap().contains(&token) {
            return Err(refuse(r#"DPoP error="invalid_token""#));
        }
        *self.last_api_proof.lock().unwrap() = headers
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(token)
    }
}
