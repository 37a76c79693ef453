//! The quickstart: the built-in OAuth 2.0 client credentials source behind `BearerAuthLayer`,
//! on a hyper-util client. The token server and the API are embedded in this program, on
//! 127.0.0.1: no network, no credentials.
//!
//!     cargo run --example quickstart
//!
//! The token server checks the client's id and secret and issues 4-second tokens. Three bursts
//! of 100 concurrent requests, 2.5 s apart, show how the cache gets tokens: with none yet, all
//! the requests wait for one fetch; once the token is in its refresh window, they go on with it
//! at once while one fetch runs in the background. It prints (never a token):
//!
//! ```text
//! t=0.0s: 100 concurrent requests, 100 accepted, sent with token 1; token endpoint calls: 1
//! t=2.5s: 100 concurrent requests, 100 accepted, sent with token 1; token endpoint calls: 2
//! t=5.0s: 100 concurrent requests, 100 accepted, sent with token 2; token endpoint calls: 3
//! 300 requests, 300 accepted by the API, 3 token endpoint calls:
//!   at 0.0s there was no token yet, so all 100 requests waited for the same call;
//!   at 2.5s and 5.0s the token was in its refresh window, so the requests went on with it
//!   at once while one call fetched the next token in the background.
//! a wrong client secret: ErrorKind::Rejected, the token endpoint refused the client credentials request: invalid_client (HTTP 401 from 127.0.0.1)
//! step 2, a hand-written source (from_fn): 1 request, accepted, sent with token 4
//! ```
//!
//! Set `RUST_LOG=tower_bearer=debug` to watch the cache's own trace on stderr.

use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use futures::future::join_all;
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, sleep, sleep_until};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials, from_fn};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache};

/// The embedded token server's one client. Yours come from your identity provider, and the
/// secret from your configuration or a secret store, never from source code.
const CLIENT_ID: &str = "quickstart";
const CLIENT_SECRET: &str = "quickstart-secret";

/// How long the embedded token server's tokens live.
const TOKEN_LIFETIME: Duration = Duration::from_secs(4);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The cache's trace goes to stderr, in colour only on a terminal (and never with NO_COLOR).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();

    let servers = Servers::start().await?;

    // Step 1: the client credentials grant (RFC 6749 §4.4), the client's id and secret sent
    // with HTTP Basic authentication.
    let source = ClientCredentials::builder(
        &servers.token_url,
        ClientAuth::client_secret_basic(CLIENT_ID, ClientSecret::new(CLIENT_SECRET)),
    )
    .scope("hello")
    .build()?;

    // The defaults suit hour-long tokens. For these 4-second ones: refresh in the last 2 s
    // (up to 1 s earlier, at random, so a fleet does not refresh in lockstep), and stop sending
    // a token 0.5 s before it expires. So 2.5 s after a fetch, the token is always in its
    // refresh window and still usable: the counts below do not depend on the jitter.
    let cache = TokenCache::builder(source)
        .refresh_window(Duration::from_secs(2))
        .safety_margin(Duration::from_millis(500))
        .build();

    // Any `Service<http::Request<B>>` can go under the layer; here, hyper-util's client.
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(http.clone());

    let start = Instant::now();
    let (mut accepted, mut sent_with) = (0, Vec::new());
    for at in [0.0, 2.5, 5.0] {
        sleep_until(start + Duration::from_secs_f64(at)).await;
        let requests = (0..100).map(|_| client.clone().oneshot(api_request(&servers.api_url)));
        let (mut ok, mut tokens) = (0, BTreeSet::new());
        for response in join_all(requests).await {
            if let Some(number) = response?.headers().get("token-number") {
                ok += 1;
                tokens.insert(number.to_str()?.to_owned());
            }
        }
        // Give a refresh started in the background time to reach the token server.
        sleep(Duration::from_millis(500)).await;
        let tokens = Vec::from_iter(tokens).join(", ");
        println!(
            "t={at:.1}s: 100 concurrent requests, {ok} accepted, sent with token {tokens}; \
             token endpoint calls: {}",
            servers.calls(),
        );
        accepted += ok;
        sent_with.push(tokens);
    }
    let calls = servers.calls();
    if accepted != 300 || calls != 3 || sent_with != ["1", "1", "2"] {
        return Err("the bursts did not run on time (a busy machine?): see above".into());
    }
    println!(
        "300 requests, {accepted} accepted by the API, {calls} token endpoint calls:\n  \
         at 0.0s there was no token yet, so all 100 requests waited for the same call;\n  \
         at 2.5s and 5.0s the token was in its refresh window, so the requests went on with it\n  \
         at once while one call fetched the next token in the background."
    );

    // A wrong secret: requests fail with a `tower_bearer::Error` whose kind says what to do,
    // and the cache remembers the rejection for a while instead of asking again every time.
    let wrong = ClientCredentials::builder(
        &servers.token_url,
        ClientAuth::client_secret_basic(CLIENT_ID, ClientSecret::new("not-the-secret")),
    )
    .build()?;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(wrong))
        .service(http.clone());
    let Err(err) = client.oneshot(api_request(&servers.api_url)).await else {
        return Err("the wrong secret was accepted".into());
    };
    let err = err
        .downcast_ref::<Error>()
        .ok_or("not a tower_bearer::Error")?;
    println!("a wrong client secret: ErrorKind::{:?}, {err}", err.kind());

    // Step 2, for a token endpoint that is not OAuth 2.0: any async closure that returns a
    // `Token` is a source (so is your own type implementing `TokenSource`). This one calls the
    // same token endpoint by hand.
    let reqwest = reqwest::Client::builder().no_proxy().build()?; // the server is on 127.0.0.1
    let token_url = servers.token_url.clone();
    let by_hand = from_fn(move || {
        let request = reqwest
            .post(&token_url)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send();
        async move {
            let unreachable =
                |e| Error::transient("no answer from the token endpoint").with_source(e);
            let response = request.await.map_err(unreachable)?;
            let status = response.status();
            if !status.is_success() {
                // The kind tells the cache what to do: back off and retry, or stop for a while.
                let error = match status.as_u16() {
                    429 | 500.. => Error::transient("the token endpoint failed"),
                    _ => Error::rejected("the token endpoint refused the credentials"),
                };
                return Err(error.with_status(status));
            }
            #[derive(serde::Deserialize)]
            struct Answer {
                access_token: String,
                expires_in: u64,
            }
            let body = response.bytes().await.map_err(unreachable)?;
            let answer: Answer = serde_json::from_slice(&body)
                .map_err(|_| Error::invalid_response("not the token answer expected"))?;
            Ok(Token::new(answer.access_token)
                .with_expires_in(Duration::from_secs(answer.expires_in)))
        }
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(by_hand))
        .service(http);
    let response = client.oneshot(api_request(&servers.api_url)).await?;
    let number = response
        .headers()
        .get("token-number")
        .ok_or("step 2: the API refused the token")?;
    println!(
        "step 2, a hand-written source (from_fn): 1 request, accepted, sent with token {}",
        number.to_str()?,
    );
    Ok(())
}

/// A GET request to the API.
fn api_request(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).expect("a valid URL")
}

/// The embedded token server and API, on 127.0.0.1.
struct Servers {
    token_url: String,
    api_url: String,
    issued: Issued,
}

/// What the token server issued (each token's number and expiry), shared with the API, and
/// how many calls it answered.
#[derive(Clone, Default)]
struct Issued {
    tokens: Arc<Mutex<HashMap<String, (usize, Instant)>>>,
    calls: Arc<AtomicUsize>,
}

impl Servers {
    async fn start() -> std::io::Result<Servers> {
        let issued = Issued::default();
        let token_server = Router::new()
            .route("/oauth2/token", post(issue_token))
            .with_state(issued.clone());
        let api = Router::new()
            .route("/hello", get(hello))
            .with_state(issued.clone());
        Ok(Servers {
            token_url: format!("http://{}/oauth2/token", serve(token_server).await?),
            api_url: format!("http://{}/hello", serve(api).await?),
            issued,
        })
    }

    /// Calls to the token endpoint so far, refused ones included.
    fn calls(&self) -> usize {
        self.issued.calls.load(Ordering::SeqCst)
    }
}

/// The token endpoint: checks the client's HTTP Basic credentials, issues a token.
async fn issue_token(State(issued): State<Issued>, headers: HeaderMap) -> Response {
    issued.calls.fetch_add(1, Ordering::SeqCst);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorization != Some(&format!("Basic {basic}")) {
        let answer = Json(serde_json::json!({ "error": "invalid_client" }));
        return (StatusCode::UNAUTHORIZED, answer).into_response();
    }
    sleep(Duration::from_millis(100)).await; // a real token endpoint takes a while
    let token = format!("demo-{:032x}", fastrand::u128(..));
    {
        let mut tokens = issued.tokens.lock().unwrap();
        let number = tokens.len() + 1;
        tokens.insert(token.clone(), (number, Instant::now() + TOKEN_LIFETIME));
    }
    Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME.as_secs(),
    }))
    .into_response()
}

/// The API: accepts a token the token server issued and that has not expired, and says which
/// one it was in a `token-number` header.
async fn hello(State(issued): State<Issued>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let number = token.and_then(|token| {
        let tokens = issued.tokens.lock().unwrap();
        let &(number, expiry) = tokens.get(token)?;
        (Instant::now() < expiry).then_some(number)
    });
    match number {
        Some(number) => ([("token-number", number.to_string())], "hello").into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// Serve `router` on an ephemeral 127.0.0.1 port, in the background.
async fn serve(router: Router) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}
