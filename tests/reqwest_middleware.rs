//! `BearerAuthMiddleware` against a real server on 127.0.0.1: the 401 matrix, the storm, the
//! destination rules, sharing one cache with a tower stack, and stacks with reqwest-retry and
//! reqwest-tracing.
#![cfg(feature = "reqwest-middleware")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use common::{Api, counting_cache, reject};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_tracing::TracingMiddleware;
use tower_bearer::{
    BearerAuthMiddleware, Error, ErrorKind, OnDisallowedOrigin, Origin, TokenSource,
};

fn client<P: TokenSource>(middleware: BearerAuthMiddleware<P>) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

const INVALID_TOKEN: &str = r#"Bearer realm="api", error="invalid_token""#;

#[tokio::test]
async fn invalid_token_is_answered_by_one_refresh_and_one_replay() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)).await;
    let client = client(BearerAuthMiddleware::from_cache(cache).replay_on_401());
    let res = client
        .post(api.url("/items"))
        .body("{\"n\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "Bearer token-1");
    let seen = api.seen();
    assert_eq!(
        api.authorizations(),
        vec![Some("Bearer token-0".into()), Some("Bearer token-1".into())]
    );
    assert_eq!(
        seen[0].body, seen[1].body,
        "the replay carries the same body"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unauthorized_without_challenge_is_replayed() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None).await;
    let client = client(BearerAuthMiddleware::from_cache(cache).replay_on_401());
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(api.calls(), 2);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn insufficient_scope_passes_through_and_keeps_the_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="insufficient_scope", scope="admin""#),
    )
    .await;
    let client = client(BearerAuthMiddleware::from_cache(cache.clone()));
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1);
    assert_eq!(cache.current().unwrap().secret(), "token-0");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn forbidden_passes_through_and_keeps_the_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::FORBIDDEN, Some(INVALID_TOKEN)).await;
    let client = client(BearerAuthMiddleware::from_cache(cache.clone()));
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.calls(), 1);
    assert_eq!(cache.current().unwrap().secret(), "token-0");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn streaming_body_is_sent_once_but_the_token_is_dropped() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)).await;
    let client = client(BearerAuthMiddleware::from_cache(cache.clone()));
    let stream =
        futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"chunk"))]);
    let res = client
        .post(api.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1);
    assert_eq!(cache.token().await.unwrap().secret(), "token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn replay_off_means_invalidate_only() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)).await;
    let client = client(BearerAuthMiddleware::from_cache(cache));
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1);
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn second_401_is_returned_as_it_came_and_never_loops() {
    let (cache, fetches) = counting_cache();
    let api = Api::start(|_, _| {
        reject(
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer error="invalid_token", error_description="still no""#),
        )
    })
    .await;
    let client = client(BearerAuthMiddleware::from_cache(cache).replay_on_401());
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer error="invalid_token", error_description="still no""#
    );
    assert_eq!(api.calls(), 2);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_1000_concurrent_401s_causes_exactly_one_refresh() {
    const N: usize = 1000;
    let (cache, fetches) = counting_cache();
    cache.token().await.unwrap();
    // The server holds every answer to token-0 until all N requests carrying it have arrived.
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let calls = Arc::new(AtomicUsize::new(0));
    let (b, c) = (barrier.clone(), calls.clone());
    let app = Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let (barrier, calls) = (b.clone(), c.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let auth = headers["authorization"].to_str().unwrap().to_owned();
            if auth == "Bearer token-0" {
                barrier.wait().await;
                reject(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN))
            } else {
                auth.into_response()
            }
        }
    });
    let addr = common::serve(app).await;
    let client = client(BearerAuthMiddleware::from_cache(cache).replay_on_401());
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let client = client.clone();
            let url = format!("http://{addr}/");
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "the first token and one refresh"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2 * N,
        "each request replayed exactly once"
    );
}

// ---- destinations -------------------------------------------------------------------------

#[tokio::test]
async fn token_goes_only_to_allowed_origins() {
    let (cache, _) = counting_cache();
    let allowed = Api::rejecting_token_0(StatusCode::OK, None).await;
    let other = Api::rejecting_token_0(StatusCode::OK, None).await;
    let client = client(
        BearerAuthMiddleware::from_cache(cache)
            .allow_origin(Origin::parse(&allowed.url("")).unwrap()),
    );
    client.get(allowed.url("/a")).send().await.unwrap();
    client.get(other.url("/b")).send().await.unwrap();
    assert_eq!(
        allowed.authorizations(),
        vec![Some("Bearer token-0".into())]
    );
    assert_eq!(other.authorizations(), vec![None]);
}

#[tokio::test]
async fn fail_mode_refuses_with_a_disallowed_error_and_sends_nothing() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::OK, None).await;
    let client = client(
        BearerAuthMiddleware::from_cache(cache)
            .allow_origin(Origin::from_static("https://api.example.com"))
            .on_disallowed_origin(OnDisallowedOrigin::Fail),
    );
    let err = client
        .get(api.url("/?key=secret"))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("expected a middleware error, got {err:?}")
    };
    let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
    assert_eq!(err.kind(), ErrorKind::Disallowed);
    assert!(!err.to_string().contains("secret"), "{err}");
    assert_eq!(api.calls(), 0);
    assert_eq!(fetches.load(Ordering::SeqCst), 0);
}

/// An innermost middleware that records the `Authorization` it would send and answers 200
/// itself: nothing leaves the process, so requests to any host can be checked.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<Option<String>>>>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Capture {
    async fn handle(
        &self,
        req: reqwest::Request,
        _: &mut http::Extensions,
        _: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let auth = req.headers().get("authorization").map(|v| {
            assert!(
                v.is_sensitive(),
                "the Authorization value is marked sensitive"
            );
            v.to_str().unwrap().to_owned()
        });
        self.0.lock().unwrap().push(auth);
        Ok(http::Response::new("captured").into())
    }
}

#[tokio::test]
async fn plain_http_to_a_remote_host_goes_without_the_token_unless_opted_out() {
    let (cache, _) = counting_cache();
    let capture = Capture::default();
    let with = |m: BearerAuthMiddleware<_>| {
        ClientBuilder::new(reqwest::Client::new())
            .with(m)
            .with(capture.clone())
            .build()
    };
    let strict = with(BearerAuthMiddleware::from_cache(cache.clone()));
    let lax = with(BearerAuthMiddleware::from_cache(cache.clone()).allow_insecure_http(true));
    strict.get("http://api.example.com/").send().await.unwrap();
    strict.get("https://api.example.com/").send().await.unwrap();
    strict.get("http://localhost:1/").send().await.unwrap();
    lax.get("http://api.example.com/").send().await.unwrap();
    let got: Vec<bool> = capture
        .0
        .lock()
        .unwrap()
        .iter()
        .map(Option::is_some)
        .collect();
    assert_eq!(got, [false, true, true, true]);

    let failing = ClientBuilder::new(reqwest::Client::new())
        .with(
            BearerAuthMiddleware::from_cache(cache).on_disallowed_origin(OnDisallowedOrigin::Fail),
        )
        .with(capture.clone())
        .build();
    let err = failing
        .get("http://api.example.com/")
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
    assert_eq!(capture.0.lock().unwrap().len(), 4, "nothing sent");
}

// ---- one cache, two stacks ----------------------------------------------------------------

#[tokio::test]
async fn one_cache_serves_a_tower_stack_and_a_reqwest_client() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::ServiceExt;

    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)).await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let tower_client = tower::ServiceBuilder::new()
        .layer(tower_bearer::BearerAuthLayer::from_cache(cache.clone()))
        .service(hyper);
    let reqwest_client = client(BearerAuthMiddleware::from_cache(cache.clone()).replay_on_401());

    // reqwest: 401, one refresh, replay with token-1.
    let res = reqwest_client.get(api.url("/r")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "Bearer token-1");
    // tower: already has token-1 from the shared cache.
    let req = http::Request::get(api.url("/t"))
        .body(Empty::new())
        .unwrap();
    let res = tower_client.oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

// ---- composing with reqwest-retry and reqwest-tracing ------------------------------------

/// First call 503, then 401 `invalid_token` to token-0, then 200 to token-1.
async fn flaky_api() -> Api {
    Api::start(|index, auth| match (index, auth) {
        (0, _) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        (_, Some("Bearer token-0")) => reject(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)),
        (_, auth) => auth.unwrap_or("none").to_owned().into_response(),
    })
    .await
}

fn retry() -> RetryTransientMiddleware<ExponentialBackoff> {
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(1))
        .build_with_max_retries(2);
    RetryTransientMiddleware::new_with_policy(policy)
}

#[tokio::test]
async fn composes_with_retry_and_tracing_when_bearer_is_innermost() {
    let (cache, fetches) = counting_cache();
    let api = flaky_api().await;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::default())
        .with(retry())
        .with(BearerAuthMiddleware::from_cache(cache).replay_on_401())
        .build();
    let res = client.post(api.url("/")).body("x").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "Bearer token-1");
    assert_eq!(
        api.authorizations(),
        vec![
            Some("Bearer token-0".into()),
            Some("Bearer token-0".into()),
            Some("Bearer token-1".into())
        ]
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn composes_with_retry_and_tracing_when_bearer_is_outermost() {
    let (cache, fetches) = counting_cache();
    let api = flaky_api().await;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(cache).replay_on_401())
        .with(retry())
        .with(TracingMiddleware::default())
        .build();
    let res = client.post(api.url("/")).body("x").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "Bearer token-1");
    assert_eq!(api.calls(), 3);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let (cache, _) = counting_cache();
    let token = cache.token().await.unwrap();
    let middleware = BearerAuthMiddleware::from_cache(cache)
        .allow_origin(Origin::from_static("https://api.example.com"));
    let debug = format!("{middleware:?} {token:?}");
    assert!(!debug.contains("token-0"), "{debug}");
}

#[tokio::test]
async fn cross_origin_redirect_followed_by_reqwest_does_not_carry_the_token() {
    let (cache, _) = counting_cache();
    let b = Api::start(|_, auth| auth.unwrap_or("none").to_owned().into_response()).await;
    let target = b.url("/landing");
    let a =
        Api::start(move |_, _| axum::response::Redirect::temporary(&target).into_response()).await;
    let client = client(BearerAuthMiddleware::from_cache(cache));
    let res = client.get(a.url("/start")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "none");
    assert_eq!(a.authorizations(), vec![Some("Bearer token-0".into())]);
    assert_eq!(b.authorizations(), vec![None]);
}

/// An innermost middleware that answers every request `401 invalid_token` itself.
#[derive(Clone, Default)]
struct RejectAll(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for RejectAll {
    async fn handle(
        &self,
        _: reqwest::Request,
        _: &mut http::Extensions,
        _: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let response = http::Response::builder()
            .status(401)
            .header("www-authenticate", INVALID_TOKEN)
            .body("")
            .unwrap();
        Ok(response.into())
    }
}

#[tokio::test(start_paused = true)]
async fn server_rejecting_every_token_costs_at_most_one_refresh_per_second() {
    let (cache, fetches) = counting_cache();
    let reject = RejectAll::default();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(cache).replay_on_401())
        .with(reject.clone())
        .build();
    for _ in 0..50 {
        let res = client.get("https://api.example.com/").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(reject.0.load(Ordering::SeqCst), 51);
    tokio::time::advance(Duration::from_secs(1)).await;
    client.get("https://api.example.com/").send().await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn no_replay_when_the_token_endpoint_hands_back_the_rejected_value() {
    // Many token endpoints answer with the token they have cached: a replay would carry the
    // very value that was just rejected.
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = tower_bearer::TokenCache::new(tower_bearer::source::from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, Error>(
                tower_bearer::Token::new("token-0").with_expires_in(Duration::from_secs(3600)),
            )
        }
    }));
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)).await;
    let client = client(BearerAuthMiddleware::from_cache(cache).replay_on_401());
    let res = client.get(api.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1, "not replayed with the same value");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
