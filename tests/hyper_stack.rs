//! A real stack: hyper-util's client behind `BearerAuthLayer`, real token and API servers on
//! 127.0.0.1, real concurrency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_through_hyper_share_one_token_fetch() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let token_server = Router::new()
        .route(
            "/token",
            post(|State(n): State<Arc<AtomicUsize>>| async move {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                r#"{"access_token":"good-token","token_type":"Bearer","expires_in":3600}"#
            }),
        )
        .with_state(fetches.clone());
    let api = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            match headers.get("authorization") {
                Some(v) if v == "Bearer good-token" => StatusCode::OK,
                _ => StatusCode::UNAUTHORIZED,
            }
        }),
    );
    let (token_addr, api_addr) = (serve(token_server).await, serve(api).await);

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let token_client = http.clone();
    let source = from_fn(move || {
        let client = token_client.clone();
        async move {
            let request = Request::post(format!("http://{token_addr}/token"))
                .body(Full::default())
                .unwrap();
            let response = client
                .request(request)
                .await
                .map_err(|e| Error::transient("token endpoint unreachable").with_source(e))?;
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            Ok::<_, Error>(
                Token::new(json["access_token"].as_str().unwrap())
                    .with_expires_in(Duration::from_secs(json["expires_in"].as_u64().unwrap())),
            )
        }
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(http);

    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = Request::get(format!("http://{api_addr}/"))
                    .body(Full::default())
                    .unwrap();
                client.oneshot(request).await.map(|r| r.status())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_refused_by_the_token_endpoint_is_a_transient_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let token_client = http.clone();
    let source = from_fn(move || {
        let client = token_client.clone();
        async move {
            let request = Request::post(format!("http://{addr}/token"))
                .body(Full::default())
                .unwrap();
            client
                .request(request)
                .await
                .map_err(|e| Error::transient("token endpoint unreachable").with_source(e))?;
            Ok::<_, Error>(Token::new("unreachable"))
        }
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(http);
    let request = Request::get("http://127.0.0.1:1/")
        .body(Full::default())
        .unwrap();
    let err = client.oneshot(request).await.unwrap_err();
    let err = err.downcast_ref::<Error>().unwrap();
    assert!(err.is_transient());
    assert_eq!(err.to_string(), "token endpoint unreachable");
}
