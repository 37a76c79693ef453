//! One fault at a time: cold (no token yet), then while a token is still usable, then healed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use tower::{Service, ServiceExt, service_fn};
use tower_bearer::http_client::{HttpClient, HttpFuture, HttpRequest, ReqwestClient};
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, RefreshTokenGrant};
use tower_bearer::store::MemoryStore;
use tower_bearer::{Backoff, BearerAuthLayer, Error, ErrorKind, TokenCache};

use crate::common::{Calls, assert_no_secret, client, send};
use crate::server::{Fault, FaultServer, refresh_token};

pub const CLIENT_SECRET: &str = "cs-fault-secret";
/// The token endpoint client gives up after this long (hang, slow-loris).
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// Token lifetime in the single-fault cases: refreshed from 3 s, usable until 5.5 s.
const LIFETIME: Duration = Duration::from_secs(6);
const STALE_FROM: Duration = Duration::from_millis(3100);
/// How long each fault lasts while the first token is stale but usable.
const FAULT_WINDOW: Duration = Duration::from_millis(1200);

pub type Source = RefreshTokenGrant<MemoryStore>;

/// reqwest, counting the token requests it is asked to send: a refused connection never
/// reaches the server's count.
#[derive(Clone)]
pub struct Counting(ReqwestClient, pub Calls);

impl HttpClient for Counting {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        self.1.hit();
        self.0.execute(request)
    }
}

/// The cache under test: backoff from 100 ms to 400 ms, rejections remembered 300 ms, no
/// jitter, a 500 ms safety margin; and its count of token requests.
pub fn cache(
    server: &FaultServer,
    store: &MemoryStore,
    lifetime: Duration,
) -> (TokenCache<Source>, Calls) {
    let calls = Calls::default();
    let http = Counting(
        ReqwestClient::new().unwrap().with_timeout(HTTP_TIMEOUT),
        calls.clone(),
    );
    let source = RefreshTokenGrant::builder(server.url(), store.clone())
        .client_auth(ClientAuth::client_secret_post(
            "cid",
            ClientSecret::new(CLIENT_SECRET),
        ))
        .build_with(http)
        .unwrap();
    let cache = TokenCache::builder(source)
        .refresh_window(lifetime / 2)
        .jitter(Duration::ZERO)
        .safety_margin(Duration::from_millis(500))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
        ))
        .rejected_cooldown(Duration::from_millis(300))
        .build();
    (cache, calls)
}

/// Everything secret the server or the client ever holds.
pub fn secrets() -> Vec<String> {
    let mut all: Vec<String> = (0..50).map(refresh_token).collect();
    all.push(refresh_token(999));
    all.push(CLIENT_SECRET.into());
    all.push("access-".into());
    all
}

pub fn assert_clean(err: &Error) {
    let secrets = secrets();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(err, &secrets);
    assert_eq!(err.host(), Some("127.0.0.1"), "{err}");
}

/// Send until `want` comes back (errors and older tokens are allowed meanwhile).
async fn until<S>(api: &S, want: &str, within: Duration) -> usize
where
    S: Service<Request<()>, Response = Response<String>, Error = tower::BoxError> + Clone,
{
    let deadline = Instant::now() + within;
    let mut tries = 0;
    loop {
        tries += 1;
        if send(api).await.is_ok_and(|auth| auth == want) {
            return tries;
        }
        assert!(Instant::now() < deadline, "no {want:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one fault case measured.
struct Measured {
    /// Token requests sent during the fault window.
    hits: usize,
    /// Requests served with the stale token during it.
    served: usize,
}

/// Drive one fault: the error a cold request gets (`kind`, saying `says`), then `bound` token
/// requests at most while a usable token is served through the fault; the rotated refresh
/// tokens are all kept.
async fn fault_case(fault: Fault, kind: ErrorKind, says: &str, bound: usize) -> Measured {
    let server = FaultServer::start(LIFETIME).await;
    let store = MemoryStore::new(RefreshToken::new(refresh_token(0)));
    let (cache, calls) = cache(&server, &store, LIFETIME);
    let api = client(cache.clone());

    // Cold: nothing to serve, so the request gets the refresh's error.
    server.set(fault);
    let err = send(&api).await.unwrap_err();
    assert_eq!(err.kind(), kind, "{fault:?}: {err}");
    assert!(err.to_string().contains(says), "{fault:?}: {err}");
    assert_clean(&err);
    assert_eq!(store.get().unwrap().secret(), refresh_token(0));

    // Healed: the first token (backoff may hold the next try back a little).
    server.set(Fault::None);
    until(&api, "Bearer access-1", Duration::from_secs(3)).await;
    let fetched = Instant::now();
    assert_eq!(store.get().unwrap().secret(), refresh_token(1));

    // The fault again, while access-1 is stale but usable: every request is served with it,
    // and the refreshes that fail are spaced by backoff.
    server.set(fault);
    tokio::time::sleep_until((fetched + STALE_FROM).into()).await;
    let hits_before = calls.get();
    let served = Arc::new(AtomicUsize::new(0));
    let until_time = Instant::now() + FAULT_WINDOW;
    // Eight concurrent callers (in this task: the echo stack's futures are not `Send`).
    futures::future::join_all((0..8).map(|_| async {
        while Instant::now() < until_time {
            assert_eq!(send(&api).await.unwrap(), "Bearer access-1", "{fault:?}");
            served.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }))
    .await;
    let hits = calls.get() - hits_before;
    let served = served.load(Ordering::SeqCst);
    assert!(
        (1..=bound).contains(&hits),
        "{fault:?}: {hits} token requests in {FAULT_WINDOW:?} (bound {bound}) for {served} requests"
    );

    // Healed again: the next token, from the one rotated refresh token the server accepts.
    server.set(Fault::None);
    until(&api, "Bearer access-2", Duration::from_secs(3)).await;
    assert_eq!(store.get().unwrap().secret(), refresh_token(2));
    assert_eq!(server.current_refresh_token(), refresh_token(2));
    assert_eq!(
        server.lost(),
        0,
        "{fault:?}: a spent refresh token was presented"
    );
    println!("{fault:?}: {hits} token requests while serving {served} requests stale");
    Measured { hits, served }
}

/// Backoff 100 ms doubling to 400 ms, jittered to at least half: at most 1 + 8 tries in
/// 1.2 s (50 + 100 + 200 × 5 ms), however many requests come.
const TRANSIENT_BOUND: usize = 9;
/// Rejections and invalid answers are remembered 300 ms: at most 5 tries in 1.2 s.
const COOLDOWN_BOUND: usize = 5;

macro_rules! fault {
    ($name:ident, $fault:expr, $kind:expr, $says:expr, $bound:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let m = fault_case($fault, $kind, $says, $bound).await;
            assert!(m.served > m.hits, "{m:?}", m = (m.served, m.hits));
        }
    };
}

fault!(
    server_errors_back_off_and_serve_the_usable_token,
    Fault::Unavailable,
    ErrorKind::Transient,
    "unavailable",
    TRANSIENT_BOUND
);
// `Retry-After: 1` is longer than the backoff: at most 2 tries in 1.2 s.
fault!(
    rate_limiting_waits_for_retry_after,
    Fault::RateLimited(1),
    ErrorKind::Transient,
    "rate limiting",
    2
);
// Each try takes the 500 ms client timeout, then backoff: at most 3 in 1.2 s.
fault!(
    a_hanging_endpoint_times_out,
    Fault::Hang,
    ErrorKind::Transient,
    "did not answer",
    3
);
fault!(
    connection_refused_backs_off,
    Fault::Refused,
    ErrorKind::Transient,
    "could not connect",
    TRANSIENT_BOUND
);
fault!(
    a_connection_reset_mid_body_is_transient,
    Fault::ResetMidBody,
    ErrorKind::Transient,
    "token endpoint",
    TRANSIENT_BOUND
);
// Headers and then one byte every 100 ms: cut off by the body's own deadline like a hang.
fault!(
    a_trickling_body_is_cut_off_by_the_timeout,
    Fault::SlowLoris,
    ErrorKind::Transient,
    "was not read within",
    3
);
fault!(
    malformed_json_is_an_invalid_response,
    Fault::MalformedJson,
    ErrorKind::InvalidResponse,
    "not a JSON object",
    COOLDOWN_BOUND
);
fault!(
    an_oversize_body_is_refused,
    Fault::Oversize,
    ErrorKind::InvalidResponse,
    "larger than",
    COOLDOWN_BOUND
);
fault!(
    an_html_page_is_refused,
    Fault::HtmlPage,
    ErrorKind::InvalidResponse,
    "HTML page",
    COOLDOWN_BOUND
);

/// A 429's `Retry-After` reaches the caller's error.
#[tokio::test]
async fn rate_limiting_error_carries_retry_after() {
    let server = FaultServer::start(LIFETIME).await;
    let store = MemoryStore::new(RefreshToken::new(refresh_token(0)));
    server.set(Fault::RateLimited(7));
    let err = cache(&server, &store, LIFETIME)
        .0
        .token()
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.oauth_error(), Some("slow_down"));
    assert_clean(&err);
}

/// An API in front of the fault server: 200 with the token for a valid one, else 401
/// `invalid_token` (RFC 6750 §3.1), counting the requests that carried an expired token.
pub fn api(
    server: &FaultServer,
    expired_sent: Arc<AtomicUsize>,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    let server = server.clone();
    service_fn(move |req: Request<String>| {
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let verdict = server.check(&token);
        if verdict == Err("expired") {
            expired_sent.fetch_add(1, Ordering::SeqCst);
        }
        std::future::ready(Ok(match verdict {
            Ok(()) => Response::new(token),
            Err(_) => Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
                .body(String::new())
                .unwrap(),
        }))
    })
}

/// The API rejects a token long before its `expires_in`: 50 concurrent requests that meet the
/// rejection cause one refresh, each is replayed once with the new token, and the rotation
/// is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rejected_before_its_time_costs_one_refresh() {
    let server = FaultServer::start(Duration::from_secs(3600)).await;
    let store = MemoryStore::new(RefreshToken::new(refresh_token(0)));
    let (cache, _) = cache(&server, &store, Duration::from_secs(3600));
    let expired_sent = Arc::new(AtomicUsize::new(0));
    let svc = tower::ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()).replay_on_401())
        .service(api(&server, expired_sent.clone()));
    let first = svc.clone().oneshot(Request::new(String::new())).await;
    assert_eq!(first.unwrap().into_body(), "access-1");

    server.revoke("access-1");
    let all = futures::future::join_all((0..50).map(|_| {
        let svc = svc.clone();
        tokio::spawn(async move { svc.oneshot(Request::new(String::new())).await.unwrap() })
    }))
    .await;
    for response in all {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.into_body(), "access-2");
    }
    assert_eq!(server.issued(), 2, "one refresh for the whole storm");
    assert_eq!(server.hits(), 2);
    assert_eq!(store.get().unwrap().secret(), refresh_token(2));
    assert_eq!(server.lost(), 0);
    assert_eq!(expired_sent.load(Ordering::SeqCst), 0);
}

/// The issuer's clock jumps, back and forward, between tokens that carry only JWT `iat` and
/// `exp`: a token dated two hours in the past is not taken as expired (one fetch serves all
/// requests), and one dated two hours ahead does not live longer than the issuer granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_clock_that_jumps_neither_expires_nor_stretches_tokens() {
    let hour = Duration::from_secs(3600);
    let server = FaultServer::start(hour).await;
    let store = MemoryStore::new(RefreshToken::new(refresh_token(0)));
    let (cache, _) = cache(&server, &store, hour);
    let api = client(cache.clone());

    for (offset, fetches) in [(-7200, 1), (7200, 2), (0, 3), (-86_400 * 30, 4)] {
        server.jwt_clock(Some(offset));
        if let Some(current) = cache.current() {
            assert!(cache.invalidate(&current));
        }
        for _ in 0..100 {
            let auth = send(&api).await.unwrap();
            let token = auth.strip_prefix("Bearer ").unwrap();
            assert_eq!(server.check(token), Ok(()), "clock {offset:+}");
        }
        assert_eq!(server.hits(), fetches, "clock {offset:+}");
        let left = cache.current().unwrap().expires_in().unwrap();
        assert!(
            left > hour - Duration::from_secs(120) && left <= hour,
            "clock {offset:+}: {left:?} left of a one-hour token"
        );
    }
    assert_eq!(store.get().unwrap().secret(), refresh_token(4));
    assert_eq!(server.lost(), 0);
}
