//! The tower layer over a real hyper-util client, against axum servers on 127.0.0.1: replay
//! over the wire, and what happens to the token when a server redirects to another origin with
//! tower-http's `FollowRedirect` above or below the layer.

mod common;

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use bytes::Bytes;
use common::{Api, counting_cache};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Origin};
use tower_http::follow_redirect::FollowRedirectLayer;

fn hyper_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: String) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

async fn text<B: http_body::Body>(res: http::Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn replay_over_hyper_util_sends_the_same_body_with_a_new_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="invalid_token""#),
    )
    .await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache).replay_on_401())
        .service(hyper_client());
    let req = http::Request::post(api.url("/items"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"name\":\"widget\"}")))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "Bearer token-1");
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, Bytes::from_static(b"{\"name\":\"widget\"}"));
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalidate_only_over_hyper_util_returns_the_401_and_the_next_request_has_a_new_token() {
    let (cache, fetches) = counting_cache();
    let api = Api::rejecting_token_0(StatusCode::UNAUTHORIZED, None).await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(hyper_client());
    let res = client.clone().oneshot(get(api.url("/"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client.oneshot(get(api.url("/"))).await.unwrap();
    assert_eq!(text(res).await, "Bearer token-1");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// Server A redirects everything to server B (another origin: same host, other port).
async fn redirecting_pair() -> (Api, Api) {
    let b = Api::start(|_, auth| auth.unwrap_or("none").to_owned().into_response()).await;
    let target = b.url("/landing");
    let a = Api::start(move |_, _| Redirect::temporary(&target).into_response()).await;
    (a, b)
}

#[tokio::test]
async fn cross_origin_redirect_below_the_layer_does_not_carry_the_token() {
    // The recommended order: BearerAuth outside, FollowRedirect inside. The token is attached
    // once; tower-http's default policy (FilterCredentials) removes `Authorization` when the
    // redirect leaves the origin.
    let (cache, _) = counting_cache();
    let (a, b) = redirecting_pair().await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .layer(FollowRedirectLayer::new())
        .service(hyper_client());
    let res = client.oneshot(get(a.url("/start"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(a.authorizations(), vec![Some("Bearer token-0".into())]);
    assert_eq!(b.authorizations(), vec![None]);
}

#[tokio::test]
async fn cross_origin_redirect_above_the_layer_with_an_allow_list_does_not_carry_the_token() {
    // FollowRedirect outside re-sends each hop through the layer, so the layer decides per
    // hop: with an allow-list, the other origin gets no token.
    let (cache, _) = counting_cache();
    let (a, b) = redirecting_pair().await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(BearerAuthLayer::from_cache(cache).allow_origin(Origin::parse(&a.url("")).unwrap()))
        .service(hyper_client());
    let res = client.oneshot(get(a.url("/start"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(a.authorizations(), vec![Some("Bearer token-0".into())]);
    assert_eq!(b.authorizations(), vec![None]);
}

#[tokio::test]
async fn redirect_above_the_layer_without_an_allow_list_sends_the_token_to_the_new_origin() {
    // Why the docs prescribe `redirect::TokensStayHome` (tests/redirects.rs): with tower-http's
    // default policy outside and no allow-list, every hop is a new request to the layer, which
    // cannot tell it from a first request and attaches the token wherever the redirect points.
    let (cache, _) = counting_cache();
    let (a, b) = redirecting_pair().await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(BearerAuthLayer::from_cache(cache))
        .service(hyper_client());
    client.oneshot(get(a.url("/start"))).await.unwrap();
    assert_eq!(b.authorizations(), vec![Some("Bearer token-0".into())]);
}

#[tokio::test]
async fn same_origin_redirect_below_the_layer_keeps_the_token() {
    let (cache, _) = counting_cache();
    let api = Api::start(|index, auth| match index {
        0 => Redirect::temporary("/landing").into_response(),
        _ => auth.unwrap_or("none").to_owned().into_response(),
    })
    .await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .layer(FollowRedirectLayer::new())
        .service(hyper_client());
    let res = client.oneshot(get(api.url("/start"))).await.unwrap();
    assert_eq!(text(res).await, "Bearer token-0");
    assert_eq!(api.calls(), 2);
}
