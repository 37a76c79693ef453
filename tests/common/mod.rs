//! Helpers shared by the integration tests: a counting token source and a real HTTP server on
//! 127.0.0.1 that records what reached it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_bearer::{Error, Token, TokenCache, TokenSource, source::from_fn};

/// A cache whose n-th fetch returns `token-n` (valid for an hour), and the fetch counter.
pub fn counting_cache() -> (TokenCache<impl TokenSource>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Error>(
                Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600)),
            )
        }
    }));
    (cache, fetches)
}

/// What one request brought to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub authorization: Option<String>,
    pub body: Bytes,
}

type Rule = dyn Fn(usize, Option<&str>) -> Response + Send + Sync;
type ApiState = (Arc<Mutex<Vec<Seen>>>, Arc<Rule>);

#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    /// Start a server answering every request with `rule(call_index, authorization)`.
    pub async fn start(
        rule: impl Fn(usize, Option<&str>) -> Response + Send + Sync + 'static,
    ) -> Api {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = (seen.clone(), Arc::new(rule) as Arc<Rule>);
        let app = Router::new().fallback(handle).with_state(state);
        let addr = serve(app).await;
        Api { addr, seen }
    }

    /// A server that answers `status` + `challenge` to `Bearer token-0` and 200 with the
    /// authorization it saw to anything else.
    pub async fn rejecting_token_0(status: StatusCode, challenge: Option<&'static str>) -> Api {
        Api::start(move |_, auth| {
            if auth == Some("Bearer token-0") {
                reject(status, challenge)
            } else {
                auth.unwrap_or("none").to_owned().into_response()
            }
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen().into_iter().map(|s| s.authorization).collect()
    }
}

pub fn reject(status: StatusCode, challenge: Option<&'static str>) -> Response {
    let mut res = status.into_response();
    if let Some(c) = challenge {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    res
}

async fn handle(State((seen, rule)): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            authorization: authorization.clone(),
            body,
        });
        seen.len() - 1
    };
    rule(index, authorization.as_deref())
}

/// Serve `app` on 127.0.0.1 on a free port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
