//! The 401 policy and the destination rules of the tower layer, against in-process services.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::{
    BearerAuthLayer, Error, ErrorKind, OnDisallowedOrigin, Origin, Token, TokenCache,
    source::from_fn,
};

/// A cache whose n-th fetch returns `token-n`, counting fetches.
fn counting_cache() -> (TokenCache<impl tower_bearer::TokenSource>, Arc<AtomicUsize>) {
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

fn bearer(req: &Request<impl Sized>) -> Option<String> {
    req.headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn status(code: StatusCode, challenge: Option<&'static str>) -> Response<String> {
    let mut res = Response::new(String::new());
    *res.status_mut() = code;
    if let Some(c) = challenge {
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    res
}

/// A server stand-in: answers `reject` to `Bearer token-0`, 200 to anything else, and records
/// every Authorization it saw.
#[derive(Clone)]
struct Api {
    seen: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    reject: (StatusCode, Option<&'static str>),
    reject_every_token: bool,
}

impl Api {
    fn rejecting_token_0(code: StatusCode, challenge: Option<&'static str>) -> Self {
        Api {
            seen: Default::default(),
            reject: (code, challenge),
            reject_every_token: false,
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }

    fn service<B>(
        &self,
    ) -> impl Service<Request<B>, Response = Response<String>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + use<B>
    where
        B: Send + 'static,
    {
        let api = self.clone();
        service_fn(move |req: Request<B>| {
            let auth = bearer(&req);
            api.seen.lock().unwrap().push(auth.clone());
            let reject = api.reject_every_token || auth.as_deref() == Some("Bearer token-0");
            let res = if reject {
                status(api.reject.0, api.reject.1)
            } else {
                Response::new(auth.unwrap_or_default())
            };
            std::future::ready(Ok(res))
        })
    }
}

async fn send<S, B>(svc: &mut S, req: Request<B>) -> Result<Response<String>, tower::BoxError>
where
    S: Service<Request<B>, Response = Response<String>, Error = tower::BoxError>,
{
    svc.ready().await?.call(req).await
}

// ---- invalidate-only (the default) -------------------------------------------------------

#[tokio::test]
async fn unauthorized_without_challenge_drops_the_token_and_returns_the_401() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None);
    let mut svc = BearerAuthLayer::from_cache(cache).layer(api.service());

    let res = send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1, "invalidate-only never replays");

    let res = send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(res.body(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalid_token_challenge_drops_the_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer realm="api", error="invalid_token", error_description="expired""#),
    );
    let mut svc = BearerAuthLayer::from_cache(cache).layer(api.service());
    assert_eq!(
        send(&mut svc, Request::new(())).await.unwrap().status(),
        401
    );
    assert_eq!(
        send(&mut svc, Request::new(())).await.unwrap().body(),
        "Bearer token-1"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn insufficient_scope_passes_through_and_keeps_the_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="insufficient_scope", scope="admin""#),
    );
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let res = send(&mut svc, Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1);
    assert_eq!(
        send(&mut svc, Request::new(String::new()))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(api.seen(), vec![Some("Bearer token-0".into()); 2]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn forbidden_passes_through_and_keeps_the_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::FORBIDDEN,
        Some(r#"Bearer error="invalid_token""#),
    );
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let res = send(&mut svc, Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.calls(), 1);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert!(!cache_was_invalidated(&mut svc).await);
}

async fn cache_was_invalidated<S>(svc: &mut S) -> bool
where
    S: Service<Request<String>, Response = Response<String>, Error = tower::BoxError>,
{
    // The api rejects token-0 only; anything else means the cache moved on.
    send(svc, Request::new(String::new()))
        .await
        .unwrap()
        .status()
        == StatusCode::OK
}

#[tokio::test]
async fn unauthorized_for_a_request_sent_without_the_token_changes_nothing() {
    let (cache, fetches) = counting_cache();
    cache.token().await.unwrap();
    let api = Api {
        reject_every_token: true,
        ..Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None)
    };
    let mut svc = BearerAuthLayer::from_cache(cache.clone())
        .allow_origin(Origin::from_static("https://api.example.com"))
        .layer(api.service());
    let res = send(
        &mut svc,
        Request::get("https://elsewhere.example/").body(()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(api.seen(), vec![None]);
    assert_eq!(cache.current().unwrap().secret(), "token-0");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

// ---- replay -------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_token_is_answered_by_one_refresh_and_one_replay() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="invalid_token""#),
    );
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let req = Request::post("/items")
        .header("x-request-id", "42")
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .unwrap();
    let res = send(&mut svc, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "Bearer token-1");
    assert_eq!(
        api.seen(),
        vec![Some("Bearer token-0".into()), Some("Bearer token-1".into())]
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn replay_sends_the_same_method_uri_headers_and_body() {
    let (cache, _) = counting_cache();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        let record = record.clone();
        async move {
            let auth = bearer(&req).unwrap();
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            record.lock().unwrap().push((
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.get("x-request-id").cloned(),
                body,
            ));
            Ok::<_, Infallible>(if auth == "Bearer token-0" {
                status(StatusCode::UNAUTHORIZED, None)
            } else {
                Response::new(auth)
            })
        }
    });
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(inner);
    let req = Request::put("/items/7?x=1")
        .header("x-request-id", "42")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    assert_eq!(send(&mut svc, req).await.unwrap().status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1].3, Bytes::from_static(b"payload"));
}

#[tokio::test]
async fn non_replayable_body_is_sent_once_but_the_token_is_dropped() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="invalid_token""#),
    );
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let streaming = || {
        let chunks = futures_util::stream::iter([Ok::<_, Infallible>(http_body::Frame::data(
            Bytes::from_static(b"chunk"),
        ))]);
        BoxBody::new(StreamBody::new(chunks))
    };
    let res = send(&mut svc, Request::new(streaming())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1);
    let res = send(&mut svc, Request::new(streaming())).await.unwrap();
    assert_eq!(res.body(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn second_401_is_returned_as_it_came_and_never_loops() {
    let (cache, fetches) = counting_cache();
    let api = Api {
        reject_every_token: true,
        ..Api::rejecting_token_0(
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer error="invalid_token", error_description="second""#),
        )
    };
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let res = send(&mut svc, Request::new(String::from("body")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token", error_description="second""#
    );
    assert_eq!(
        api.seen(),
        vec![Some("Bearer token-0".into()), Some("Bearer token-1".into())]
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failed_refresh_after_401_returns_the_original_401() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Ok(Token::new("token-0"))
            } else {
                Err(Error::rejected("the token endpoint refused the client")
                    .with_oauth_error("invalid_client"))
            }
        }
    }));
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some("Bearer error=invalid_token"));
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let res = send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 1);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

// ---- the storm ----------------------------------------------------------------------------

/// 1,000 requests all carrying token-0 (a barrier holds the answers until every one has been
/// sent), all answered 401: one refresh, and every replay carries token-1.
async fn storm(replay: bool) -> (usize, usize, Vec<StatusCode>) {
    const N: usize = 1000;
    let (cache, fetches) = counting_cache();
    cache.token().await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let calls = Arc::new(AtomicUsize::new(0));
    let (b, c) = (barrier.clone(), calls.clone());
    let inner = service_fn(move |req: Request<()>| {
        let (barrier, calls) = (b.clone(), c.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let auth = bearer(&req).unwrap();
            if auth == "Bearer token-0" {
                barrier.wait().await;
                Ok::<_, Infallible>(status(
                    StatusCode::UNAUTHORIZED,
                    Some("Bearer error=\"invalid_token\""),
                ))
            } else {
                Ok(Response::new(auth))
            }
        }
    });
    let layer = BearerAuthLayer::from_cache(cache);
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let req = Request::new(());
            if replay {
                let svc = layer.clone().replay_on_401().layer(inner.clone());
                tokio::spawn(async move { svc.oneshot(req).await.unwrap().status() })
            } else {
                let svc = layer.layer(inner.clone());
                tokio::spawn(async move { svc.oneshot(req).await.unwrap().status() })
            }
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    (
        fetches.load(Ordering::SeqCst),
        calls.load(Ordering::SeqCst),
        statuses,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_1000_concurrent_401s_causes_exactly_one_refresh() {
    let (fetches, calls, statuses) = storm(false).await;
    assert_eq!(fetches, 2, "the first token and exactly one refresh");
    assert_eq!(calls, 1000);
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_1000_concurrent_401s_replays_each_once_after_one_refresh() {
    let (fetches, calls, statuses) = storm(true).await;
    assert_eq!(fetches, 2, "the first token and exactly one refresh");
    assert_eq!(calls, 2000, "each request sent twice, never more");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
}

// ---- destinations -------------------------------------------------------------------------

#[tokio::test]
async fn token_goes_only_to_allowed_origins() {
    let (cache, _) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::OK, None);
    let mut svc = BearerAuthLayer::from_cache(cache)
        .allow_origin(Origin::from_static("https://api.example.com"))
        .allow_origin(Origin::from_static("http://127.0.0.1:8080"))
        .layer(api.service());
    for uri in [
        "https://api.example.com/a",
        "https://api.example.com:443/b",
        "http://127.0.0.1:8080/c",
        "/relative",
        "https://api.example.com:8443/d",
        "https://evil.example/e",
        "http://127.0.0.1:8081/f",
    ] {
        let req = Request::get(uri).body(()).unwrap();
        send(&mut svc, req).await.unwrap();
    }
    let got: Vec<bool> = api.seen().iter().map(Option::is_some).collect();
    assert_eq!(got, [true, true, true, true, false, false, false]);
}

#[tokio::test]
async fn plain_http_to_a_remote_host_goes_without_the_token_unless_opted_out() {
    let (cache, _) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::OK, None);
    let mut strict = BearerAuthLayer::from_cache(cache.clone()).layer(api.service());
    let mut lax = BearerAuthLayer::from_cache(cache)
        .allow_insecure_http(true)
        .layer(api.service());
    let req = || Request::get("http://api.example.com/").body(()).unwrap();
    send(&mut strict, req()).await.unwrap();
    send(
        &mut strict,
        Request::get("http://localhost:1/").body(()).unwrap(),
    )
    .await
    .unwrap();
    send(&mut lax, req()).await.unwrap();
    let got: Vec<bool> = api.seen().iter().map(Option::is_some).collect();
    assert_eq!(got, [false, true, true]);
}

#[tokio::test]
async fn fail_mode_refuses_before_sending_or_fetching() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::OK, None);
    let mut svc = BearerAuthLayer::from_cache(cache)
        .allow_origin(Origin::from_static("https://api.example.com"))
        .on_disallowed_origin(OnDisallowedOrigin::Fail)
        .layer(api.service());
    let err = send(
        &mut svc,
        Request::get("https://evil.example/path?api_key=1")
            .body(())
            .unwrap(),
    )
    .await
    .unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
    assert_eq!(err.kind(), ErrorKind::Disallowed);
    assert!(!err.to_string().contains("api_key"), "{err}");
    assert_eq!(api.calls(), 0);
    assert_eq!(fetches.load(Ordering::SeqCst), 0);

    // Replay mode refuses the same way.
    let (cache, _) = counting_cache();
    let mut svc = BearerAuthLayer::from_cache(cache)
        .on_disallowed_origin(OnDisallowedOrigin::Fail)
        .replay_on_401()
        .layer(api.service());
    let err = send(
        &mut svc,
        Request::get("http://10.1.2.3/")
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>().unwrap().kind(),
        ErrorKind::Disallowed
    );
    assert_eq!(api.calls(), 0);
}

#[tokio::test]
async fn a_caller_set_authorization_is_left_alone_on_disallowed_origins() {
    let (cache, _) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::OK, None);
    let mut svc = BearerAuthLayer::from_cache(cache)
        .allow_origin(Origin::from_static("https://api.example.com"))
        .layer(api.service());
    let req = Request::get("https://other.example/")
        .header(AUTHORIZATION, "Basic dXNlcjpwdw==")
        .body(())
        .unwrap();
    send(&mut svc, req).await.unwrap();
    assert_eq!(api.seen(), vec![Some("Basic dXNlcjpwdw==".into())]);
}

// ---- no token in Debug ----------------------------------------------------------------------

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let cache = TokenCache::new(from_fn(|| async {
        Ok::<_, Error>(Token::new("very-secret-token-value"))
    }));
    cache.token().await.unwrap();
    let api = Api::rejecting_token_0(StatusCode::OK, None);
    let layer = BearerAuthLayer::from_cache(cache.clone())
        .allow_origin(Origin::from_static("https://api.example.com"))
        .replay_on_401();
    let mut svc = layer.layer(api.service::<String>());
    let future = svc.call(Request::new(String::new()));
    let plain_layer = BearerAuthLayer::from_cache(cache.clone());
    let mut plain = plain_layer.layer(api.service::<String>());
    let plain_future = plain.call(Request::new(String::new()));
    for debug in [
        format!("{layer:?}"),
        format!("{plain_layer:?}"),
        format!("{future:?}"),
        format!("{plain_future:?}"),
        format!("{:?}", cache.current()),
    ] {
        assert!(!debug.contains("very-secret"), "{debug}");
    }
    future.await.unwrap();
    plain_future.await.unwrap();
}

#[tokio::test]
async fn replay_works_when_oneshot_dropped_every_other_handle_to_the_cache() {
    // `oneshot` drops the service once the request is sent; the layer was dropped before. The
    // future alone must keep what the replay needs.
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None);
    let svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.body(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn server_rejecting_every_token_costs_at_most_one_refresh_per_second() {
    let (cache, fetches) = counting_cache();
    let api = Api {
        reject_every_token: true,
        ..Api::rejecting_token_0(StatusCode::UNAUTHORIZED, Some("Bearer error=invalid_token"))
    };
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    for _ in 0..50 {
        let res = send(&mut svc, Request::new(String::new())).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // token-0 dropped once, token-1 kept in spite of its 401s: no refresh loop.
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(api.calls(), 51, "one replay, for the first request");

    tokio::time::advance(Duration::from_secs(1)).await;
    send(&mut svc, Request::new(String::new())).await.unwrap();
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        3,
        "a second later, a 401 drops a token again"
    );
}

#[tokio::test]
async fn the_authorization_header_is_sensitive_on_the_first_attempt_and_the_replay() {
    let (cache, _) = counting_cache();
    let sensitive = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = sensitive.clone();
    let inner = service_fn(move |req: Request<String>| {
        let value = req.headers()[AUTHORIZATION].clone();
        record.lock().unwrap().push(value.is_sensitive());
        let res = if value == "Bearer token-0" {
            status(StatusCode::UNAUTHORIZED, None)
        } else {
            Response::new(String::new())
        };
        std::future::ready(Ok::<_, Infallible>(res))
    });
    let svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(inner);
    assert!(!format!("{svc:?}").contains("token-"));
    svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(*sensitive.lock().unwrap(), [true, true]);
}

// ---- which token a 401 is about ------------------------------------------------------------

/// A cache whose token endpoint answers the same cached value every time (cloud metadata
/// servers, many IdPs for client credentials), counting fetches.
fn same_value_cache() -> (TokenCache<impl tower_bearer::TokenSource>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Error>(Token::new("token-0").with_expires_in(Duration::from_secs(3600))) }
    }));
    (cache, fetches)
}

#[tokio::test]
async fn no_replay_when_the_token_endpoint_hands_back_the_rejected_value() {
    let (cache, fetches) = same_value_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="invalid_token""#),
    );
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let res = send(&mut svc, Request::new(String::from("body")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.calls(),
        1,
        "a replay with the rejected value would be refused again"
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "the token was dropped and fetched again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_401_to_the_replay_is_reported_to_the_cache() {
    // The first 401 is for a token already replaced (no drop, so no throttle); the replay
    // carries the current token and gets a 401 too: that one must drop it.
    let (cache, fetches) = counting_cache();
    let first = cache.token().await.unwrap(); // token-0
    let api_cache = cache.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let api = service_fn(move |_req: Request<String>| {
        let cache = api_cache.clone();
        let first = first.clone();
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                // Someone else's 401 replaced token-0 while this request was in flight.
                assert!(cache.invalidate(&first));
                assert_eq!(cache.token().await.unwrap().secret(), "token-1");
            }
            Ok::<_, Infallible>(status(StatusCode::UNAUTHORIZED, None))
        }
    });
    let mut svc = BearerAuthLayer::from_cache(cache.clone())
        .replay_on_401()
        .layer(api);
    let res = send(&mut svc, Request::new(String::from("body")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "replayed once with token-1"
    );
    assert_eq!(
        cache.token().await.unwrap().secret(),
        "token-2",
        "token-1 was dropped"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_401_for_an_inner_layers_token_leaves_the_outer_layers_token_alone() {
    // Two bearer layers in one stack (a mistake, or a per-route override): the inner one's
    // header is what the server sees, so its 401 is about the inner token only.
    let (outer, outer_fetches) = counting_cache();
    let inner_fetches = Arc::new(AtomicUsize::new(0));
    let counter = inner_fetches.clone();
    let inner = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Error>(
                Token::new(format!("inner-{n}")).with_expires_in(Duration::from_secs(3600)),
            )
        }
    }));
    let api = Api {
        reject_every_token: true,
        ..Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None)
    };
    let mut svc = tower::ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(outer.clone()))
        .layer(BearerAuthLayer::from_cache(inner.clone()))
        .service(api.service());
    let res = send(&mut svc, Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.seen(), vec![Some("Bearer inner-0".into())]);
    assert_eq!(
        inner.token().await.unwrap().secret(),
        "inner-1",
        "inner token dropped"
    );
    assert_eq!(inner_fetches.load(Ordering::SeqCst), 2);
    assert_eq!(
        outer.current().unwrap().secret(),
        "token-0",
        "outer token kept"
    );
    assert_eq!(outer_fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_larger_than_the_replay_cap_is_not_copied_and_sent_once() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None);
    let mut svc = BearerAuthLayer::from_cache(cache)
        .replay_on_401()
        .layer(api.service());
    let large = "x".repeat(tower_bearer::MAX_REPLAY_BODY as usize + 1);
    let res = send(&mut svc, Request::new(large)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "not replayed");
    assert_eq!(api.calls(), 1);
    // The token was dropped all the same; a body within the cap is replayed.
    let res = send(&mut svc, Request::new(String::from("small")))
        .await
        .unwrap();
    assert_eq!(res.body(), "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
