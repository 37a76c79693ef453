//! What every source test needs: a token server on 127.0.0.1, a stand-in API behind
//! `BearerAuthLayer`, and JWTs to hand out.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, header::AUTHORIZATION};
use tower::{Service, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, Error, TokenCache, TokenSource};

/// Serve `router` on an ephemeral 127.0.0.1 port until the test's runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Counts calls to a handler.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// An (unsigned) JWT whose `exp` is `lifetime` from now, with a distinguishing claim.
pub fn jwt_expiring_in(lifetime: Duration, tag: &str) -> String {
    let exp = (SystemTime::now() + lifetime)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp},"sub":"{tag}"}}"#))
    )
}

fn echo(req: Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>> {
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    std::future::ready(Ok(Response::new(auth)))
}

/// A client stack: `BearerAuthLayer` over an API that echoes the `Authorization` header.
pub fn client<P: TokenSource>(
    cache: TokenCache<P>,
) -> impl Service<Request<()>, Response = Response<String>, Error = tower::BoxError> + Clone {
    tower::ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(service_fn(echo as fn(_) -> _))
}

/// Send one request through `client`; the `Authorization` header the API saw, or the
/// `tower_bearer::Error` that stopped it.
pub async fn send<S>(client: &S) -> Result<String, Error>
where
    S: Service<Request<()>, Response = Response<String>, Error = tower::BoxError> + Clone,
{
    match client.clone().oneshot(Request::new(())).await {
        Ok(response) => Ok(response.into_body()),
        Err(err) => Err(err
            .downcast_ref::<Error>()
            .cloned()
            .unwrap_or_else(|| panic!("not a tower_bearer::Error: {err}"))),
    }
}

/// Install this test program's jsonwebtoken default backend, which `jsonwebtoken::decode`
/// needs: test builds have both of jsonwebtoken's backends (see Cargo.toml), and then it has
/// none until a program installs one. The crate itself never uses this default.
pub fn install_jwt_default() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// Assert that nothing in `err` (Display, Debug) contains any of `secrets`.
pub fn assert_no_secret(err: &Error, secrets: &[&str]) {
    let shown = format!("{err} | {err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} leaked into: {shown}");
    }
}

/// One request as the token server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: http::Method,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    /// The first form field named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every form field named `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A token endpoint on 127.0.0.1 that records every request and answers with `respond`.
pub struct TokenServer {
    pub url: String,
    pub base: String,
    pub requests: Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl TokenServer {
    pub async fn start<F>(path: &'static str, respond: F) -> TokenServer
    where
        F: Fn(&Recorded, usize) -> axum::response::Response + Clone + Send + Sync + 'static,
    {
        Self::start_routes(&[path], respond).await
    }

    /// One server answering at several paths (`respond` sees the path in `Recorded::query`'s
    /// sibling: match on `recorded.headers["x-path"]`).
    pub async fn start_routes<F>(paths: &[&'static str], respond: F) -> TokenServer
    where
        F: Fn(&Recorded, usize) -> axum::response::Response + Clone + Send + Sync + 'static,
    {
        let requests: Arc<std::sync::Mutex<Vec<Recorded>>> = Arc::default();
        let mut router = axum::Router::new();
        for path in paths {
            let (requests, respond) = (requests.clone(), respond.clone());
            router = router.route(
                path,
                axum::routing::any(
                    move |method: http::Method,
                          uri: http::Uri,
                          mut headers: http::HeaderMap,
                          body: bytes::Bytes| async move {
                        headers.insert("x-path", uri.path().parse().unwrap());
                        let form = form_urlencoded::parse(&body).into_owned().collect();
                        let recorded = Recorded {
                            method,
                            query: uri.query().map(str::to_owned),
                            headers,
                            body,
                            form,
                        };
                        let n = {
                            let mut all = requests.lock().unwrap();
                            all.push(recorded.clone());
                            all.len()
                        };
                        respond(&recorded, n)
                    },
                ),
            );
        }
        let addr = serve(router).await;
        TokenServer {
            url: format!("http://{addr}{}", paths[0]),
            base: format!("http://{addr}"),
            requests,
        }
    }

    pub fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn request(&self, i: usize) -> Recorded {
        self.requests.lock().unwrap()[i].clone()
    }
}

/// A 200 answer with a JSON body.
pub fn json(value: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(value).into_response()
}

/// An answer with any status, content type and body.
pub fn answer(
    status: u16,
    content_type: &str,
    body: impl Into<String>,
) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(axum::body::Body::from(body.into()))
        .unwrap()
}

/// A standard token answer: `access-{n}`, one hour.
pub fn token_answer(n: usize) -> axum::response::Response {
    json(serde_json::json!({
        "access_token": format!("access-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
}

/// An `HttpClient` that answers from a script, for faults no socket can stage deterministically.
#[derive(Clone, Default)]
pub struct Scripted {
    answers: Arc<
        std::sync::Mutex<
            std::collections::VecDeque<Result<tower_bearer::http_client::HttpResponse, Error>>,
        >,
    >,
    pub calls: Calls,
}

impl Scripted {
    pub fn then(self, answer: Result<tower_bearer::http_client::HttpResponse, Error>) -> Self {
        self.answers.lock().unwrap().push_back(answer);
        self
    }

    pub fn then_status(self, status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        let mut response = http::Response::new(bytes::Bytes::copy_from_slice(body.as_bytes()));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        self.then(Ok(response))
    }
}

impl tower_bearer::http_client::HttpClient for Scripted {
    fn execute(
        &self,
        _request: tower_bearer::http_client::HttpRequest,
    ) -> tower_bearer::http_client::HttpFuture<'_> {
        self.calls.hit();
        let next = self.answers.lock().unwrap().pop_front();
        Box::pin(async move { next.expect("the script ran out of answers") })
    }
}

/// Captures every tracing event and span field, to check that no secret is logged.
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<std::sync::Mutex<String>>);

impl LogCapture {
    /// The process-wide capture, installed as the global subscriber on first use.
    ///
    /// Global, not per-thread: with a thread-local subscriber, tests running in parallel race
    /// on tracing's per-callsite interest cache and events go missing.
    pub fn global() -> &'static LogCapture {
        static GLOBAL: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| {
            let capture = LogCapture::default();
            tracing::subscriber::set_global_default(capture.clone())
                .expect("no other global subscriber in this test binary");
            capture
        })
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Fields(&mut self.0.lock().unwrap()));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut log = self.0.lock().unwrap();
        log.push_str(event.metadata().level().as_str());
        log.push(' ');
        event.record(&mut Fields(&mut log));
        log.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
