//! `BearerAuthLayer` / `BearerAuth`: what a request passing through the middleware gets.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use tokio::time::sleep;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{
    BearerAuth, BearerAuthLayer, Error, ErrorKind, ServiceBuilderExt, Token, TokenCache,
    TokenSource, source::from_fn, source::static_token,
};

/// An inner service that answers with the `Authorization` header it received.
fn echo<B>()
-> impl Service<Request<B>, Response = Response<Option<HeaderValue>>, Error = Infallible> + Clone {
    service_fn(|req: Request<B>| async move {
        Ok(Response::new(req.headers().get(AUTHORIZATION).cloned()))
    })
}

fn numbered(lifetime: Duration) -> (Arc<AtomicUsize>, impl TokenSource) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Error>(Token::new(format!("token-{n}")).with_expires_in(lifetime)) }
    });
    (calls, source)
}

async fn sent<S, B>(svc: &mut S, body: B) -> String
where
    S: Service<Request<B>, Response = Response<Option<HeaderValue>>, Error = BoxError>,
{
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(body))
        .await
        .unwrap();
    response.into_body().unwrap().to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_request_carries_the_bearer_header() {
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(static_token("abc")))
        .service(echo());
    for _ in 0..3 {
        assert_eq!(sent(&mut client, ()).await, "Bearer abc");
    }
}

#[tokio::test]
async fn header_is_marked_sensitive() {
    let mut client = BearerAuth::new(echo(), TokenCache::new(static_token("abc")));
    for _ in 0..2 {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert!(response.body().as_ref().unwrap().is_sensitive());
    }
}

#[tokio::test]
async fn works_with_any_body_type() {
    let cache = TokenCache::new(static_token("abc"));
    let layer = BearerAuthLayer::from_cache(cache);
    let mut unit = layer.layer_service(echo::<()>());
    let mut string = layer.layer_service(echo::<String>());
    let mut full = layer.layer_service(echo::<Full<Bytes>>());
    assert_eq!(sent(&mut unit, ()).await, "Bearer abc");
    assert_eq!(sent(&mut string, "hi".to_owned()).await, "Bearer abc");
    assert_eq!(
        sent(&mut full, Full::new(Bytes::from_static(b"hi"))).await,
        "Bearer abc"
    );
}

trait LayerService<S> {
    type Service;
    fn layer_service(&self, inner: S) -> Self::Service;
}

impl<S, P: TokenSource> LayerService<S> for BearerAuthLayer<P> {
    type Service = BearerAuth<S, P>;
    fn layer_service(&self, inner: S) -> Self::Service {
        tower::Layer::layer(self, inner)
    }
}

#[tokio::test]
async fn an_existing_authorization_header_is_replaced() {
    let mut client = ServiceBuilder::new()
        .bearer_auth(static_token("ours"))
        .service(echo());
    let mut request = Request::new(());
    request.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.body().as_ref().unwrap(), "Bearer ours");
}

#[tokio::test(start_paused = true)]
async fn a_service_picks_up_the_refreshed_token() {
    let (calls, source) = numbered(Duration::from_secs(120));
    let cache = TokenCache::builder(source).jitter(Duration::ZERO).build();
    let mut client = BearerAuth::new(echo(), cache.clone());
    assert_eq!(sent(&mut client, ()).await, "Bearer token-0");
    assert_eq!(sent(&mut client, ()).await, "Bearer token-0"); // fast path

    // Refreshed behind the service's back (stale window): the next requests see the new token.
    sleep(Duration::from_secs(65)).await;
    assert_eq!(sent(&mut client, ()).await, "Bearer token-0"); // stale: served at once
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(sent(&mut client, ()).await, "Bearer token-1");
    assert_eq!(sent(&mut client, ()).await, "Bearer token-1");

    // Invalidated elsewhere (a 401 seen by another client): the fast path notices.
    let seen = cache.token().await.unwrap();
    assert!(cache.invalidate(&seen));
    assert_eq!(sent(&mut client, ()).await, "Bearer token-2");
}

#[tokio::test(start_paused = true)]
async fn the_fast_path_stops_at_the_refresh_window() {
    let (calls, source) = numbered(Duration::from_secs(120));
    let cache = TokenCache::builder(source).jitter(Duration::ZERO).build();
    let mut client = BearerAuth::new(echo(), cache);
    sent(&mut client, ()).await;
    sent(&mut client, ()).await;
    // The phase timer flips the token to stale at 60 s; the next request starts the refresh.
    sleep(Duration::from_secs(61)).await;
    sent(&mut client, ()).await;
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn token_errors_come_back_as_tower_bearer_errors() {
    let source = from_fn(|| async {
        Err::<Token, _>(
            Error::rejected("the token endpoint refused the client")
                .with_oauth_error("invalid_client"),
        )
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(echo());
    let err = client.oneshot(Request::new(())).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.oauth_error(), Some("invalid_client"));
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let failing = service_fn(|_: Request<()>| async {
        Err::<Response<()>, _>(std::io::Error::other("inner down"))
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(static_token("abc")))
        .service(failing);
    let err = client.oneshot(Request::new(())).await.unwrap_err();
    assert!(err.downcast_ref::<std::io::Error>().is_some());
}

#[tokio::test]
async fn clones_share_one_cache() {
    let (calls, source) = numbered(Duration::from_secs(3600));
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(echo());
    let requests = (0..100).map(|_| client.clone().oneshot(Request::new(())));
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.unwrap().body().as_ref().unwrap(), "Bearer token-0");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_request_does_not_cancel_the_refresh() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            sleep(Duration::from_secs(10)).await;
            Ok::<_, Error>(Token::new("slow").with_expires_in(Duration::from_secs(3600)))
        }
    });
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .layer(BearerAuthLayer::new(source))
        .service(echo());
    let err = client.clone().oneshot(Request::new(())).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    sleep(Duration::from_secs(10)).await;
    let response = client.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.body().as_ref().unwrap(), "Bearer slow");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let cache = TokenCache::new(static_token("s3cr3t-token-value"));
    let layer = BearerAuthLayer::from_cache(cache.clone());
    let mut client = tower::Layer::layer(&layer, echo::<()>());
    sent(&mut client, ()).await;
    let token = cache.token().await.unwrap();
    for text in [
        format!("{cache:?}"),
        format!("{layer:?}"),
        format!("{token:?}"),
        format!("{:?}", cache.source()),
        format!("{:?}", token.header_value()),
    ] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
