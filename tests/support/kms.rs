//! A KMS stand-in on 127.0.0.1 and the `AssertionSigner` that calls it: the key stays in the
//! "KMS" (the test's closure), each signature is one HTTP call (`POST /sign`, the signing
//! input as the body, `{"signature": base64}` back), and the KMS can be made to fail (HTTP
//! 500) to see what a signer's failure does.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tower_bearer::Error;
use tower_bearer::source::signer::{AssertionSigner, SignatureFuture};

type Sign = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// The KMS: signs what it is sent with `sign`, and keeps every signing input.
#[derive(Clone)]
pub struct Kms {
    url: String,
    inputs: Arc<Mutex<Vec<String>>>,
    failing: Arc<AtomicBool>,
}

impl Kms {
    pub async fn start(sign: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> Kms {
        let sign: Arc<Sign> = Arc::new(sign);
        let inputs: Arc<Mutex<Vec<String>>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let (log, down) = (Arc::clone(&inputs), Arc::clone(&failing));
        let app = axum::Router::new().route(
            "/sign",
            axum::routing::post(move |body: Bytes| {
                let (sign, log, down) = (Arc::clone(&sign), Arc::clone(&log), Arc::clone(&down));
                async move {
                    if down.load(Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    let signature = STANDARD.encode(sign(&body));
                    axum::Json(serde_json::json!({ "signature": signature })).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sign", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Kms {
            url,
            inputs,
            failing,
        }
    }

    /// A signer of `algorithm` (and `kid`) whose key is in this KMS.
    pub fn signer(&self, algorithm: &'static str, key_id: Option<&'static str>) -> KmsSigner {
        KmsSigner {
            url: self.url.clone(),
            algorithm,
            key_id,
            http: reqwest::Client::new(),
        }
    }

    /// From now on, answer every request with HTTP 500 (`true`), or sign again.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The signing inputs signed so far, in order.
    pub fn inputs(&self) -> Vec<String> {
        self.inputs.lock().unwrap().clone()
    }
}

/// The client side: each `sign` is a call to the KMS; a refusal is a transient error, as an
/// unreachable KMS is.
pub struct KmsSigner {
    url: String,
    algorithm: &'static str,
    key_id: Option<&'static str>,
    http: reqwest::Client,
}

impl AssertionSigner for KmsSigner {
    fn algorithm(&self) -> &str {
        self.algorithm
    }

    fn key_id(&self) -> Option<&str> {
        self.key_id
    }

    fn sign<'a>(&'a self, signing_input: &'a [u8]) -> SignatureFuture<'a> {
        Box::pin(async move {
            let response = self
                .http
                .post(&self.url)
                .body(signing_input.to_vec())
                .send()
                .await
                .map_err(|e| Error::transient("the KMS is unreachable").with_source(e))?;
            if !response.status().is_success() {
                return Err(Error::transient(format!(
                    "the KMS refused to sign (HTTP {})",
                    response.status().as_u16()
                )));
            }
            let answer: serde_json::Value = response
                .json()
                .await
                .map_err(|_| Error::invalid_response("the KMS answer is not JSON"))?;
            STANDARD
                .decode(answer["signature"].as_str().unwrap_or_default())
                .map_err(|_| Error::invalid_response("the KMS signature is not base64"))
        })
    }
}
