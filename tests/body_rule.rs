//! `BearerAuthLayer::rejects_token_when_body`: a 403 whose body says the token expired is treated
//! as a 401 that rejects it (one refresh for a storm, a replay), the caller still gets every
//! body, and other responses pass untouched.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::join_all;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, source::from_fn};

const EXPIRED: &[u8] = br#"{"error":{"code":"token_expired","message":"the token has expired"}}"#;

fn says_expired(_: StatusCode, _: &http::HeaderMap, body: &[u8]) -> bool {
    body.windows(13).any(|w| w == b"token_expired")
}

/// Tokens `t0`, `t1`, ...; counts fetches.
fn counting_cache() -> (TokenCache<impl tower_bearer::TokenSource>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Error>(Token::new(format!("t{n}")).with_expires_in(Duration::from_secs(3600)))
        }
    }));
    (cache, fetches)
}

#[tokio::test]
async fn a_storm_of_403s_whose_body_says_expired_costs_one_refresh_and_each_is_replayed() {
    let (cache, fetches) = counting_cache();
    // The API has revoked t0 early and says so in a 403's body.
    let api = service_fn(|req: Request<Full<Bytes>>| async move {
        let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
        let (status, body) = match auth.as_str() {
            "Bearer t0" => (StatusCode::FORBIDDEN, Bytes::from_static(EXPIRED)),
            _ => (StatusCode::OK, Bytes::from(format!("hello with {auth}"))),
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::from_cache(cache.clone())
                .replay_on_401()
                .rejects_token_when_body([StatusCode::FORBIDDEN], says_expired),
        )
        .service(api);
    cache.token().await.unwrap(); // t0 is current

    let responses = join_all((0..200).map(|_| {
        let client = client.clone();
        async move {
            let response = client.oneshot(Request::new(Full::default())).await.unwrap();
            let status = response.status();
            (
                status,
                response.into_body().collect().await.unwrap().to_bytes(),
            )
        }
    }))
    .await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "t0, then one refresh for the storm"
    );
    for (status, body) in responses {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"hello with Bearer t1");
    }
}

#[tokio::test]
async fn other_bodies_pass_untouched_and_a_403_for_another_reason_keeps_the_token() {
    let (cache, fetches) = counting_cache();
    let api = service_fn(|req: Request<Full<Bytes>>| async move {
        let path = req.uri().path().to_owned();
        let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = match path.as_str() {
            // A forbidden resource: the token is fine.
            "/forbidden" => vec![Ok(http_body::Frame::data(Bytes::from_static(
                b"{\"error\":\"forbidden\"}",
            )))],
            // Larger than the limit: not judged, though it says token_expired.
            "/huge" => (0..100)
                .map(|_| Ok(http_body::Frame::data(Bytes::from(EXPIRED.repeat(10)))))
                .collect(),
            _ => vec![
                Ok(http_body::Frame::data(Bytes::from_static(b"part one "))),
                Ok(http_body::Frame::data(Bytes::from_static(b"part two"))),
            ],
        };
        let mut response = Response::new(StreamBody::new(futures::stream::iter(chunks)));
        if path != "/ok" {
            *response.status_mut() = StatusCode::FORBIDDEN;
        }
        Ok::<_, Infallible>(response)
    });
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::from_cache(cache.clone())
                .rejects_token_when_body([StatusCode::FORBIDDEN], says_expired),
        )
        .service(api);
    let get = |path: &str| {
        let client = client.clone();
        let request = Request::get(path).body(Full::<Bytes>::default()).unwrap();
        async move {
            let response = client.oneshot(request).await.unwrap();
            let status = response.status();
            (
                status,
                response.into_body().collect().await.unwrap().to_bytes(),
            )
        }
    };
    let (status, body) = get("/ok").await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"part one part two"[..])
    );
    let (status, body) = get("/forbidden").await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::FORBIDDEN, &b"{\"error\":\"forbidden\"}"[..])
    );
    let (status, body) = get("/huge").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body.len(),
        100 * 10 * EXPIRED.len(),
        "the whole body, the read part first"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "no token was dropped");
    assert_eq!(cache.current().unwrap().secret(), "t0");
}

#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_read_limit_is_passed_on_unjudged() {
    let (cache, fetches) = counting_cache();
    // A 403 whose body sends one chunk, then nothing for a minute.
    let api = service_fn(|_: Request<Full<Bytes>>| async move {
        let chunks = futures::stream::iter([Ok::<_, Infallible>(http_body::Frame::data(
            Bytes::from_static(b"{\"error\":"),
        ))])
        .chain(futures::stream::once(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(http_body::Frame::data(Bytes::from_static(
                b"\"token_expired\"}",
            )))
        }))
        .boxed();
        let mut response = Response::new(StreamBody::new(chunks));
        *response.status_mut() = StatusCode::FORBIDDEN;
        Ok::<_, Infallible>(response)
    });
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::from_cache(cache.clone())
                .rejects_token_when_body([StatusCode::FORBIDDEN], says_expired),
        )
        .service(api);
    let started = tokio::time::Instant::now();
    let response = client.oneshot(Request::new(Full::default())).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the read gave up at its limit (5 s)"
    );
    // Unjudged: the token stays. The caller still gets the whole body.
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"token_expired"}"#);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(cache.token().await.unwrap().secret(), "t0");
}
