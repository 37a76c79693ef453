//! gRPC with tonic: `BearerAuthLayer::grpc` on a tonic `Channel`, with tokens from the
//! built-in client credentials source. The token server and the gRPC server are embedded in
//! this program, on 127.0.0.1: no network, no credentials, no protoc (the messages are UTF-8
//! strings through a codec of a few lines, `examples/support/utf8_codec.rs`; generated clients
//! work the same way).
//!
//!     cargo run --example grpc
//!
//! Three calls share one token; the server then revokes it and answers the next call with
//! UNAUTHENTICATED (gRPC's 401: `grpc-status: 16` with HTTP 200), which drops the token, so the
//! call after it carries a new one. It prints (never a token):
//!
//! ```text
//! 3 calls: "hello, grpc (token 1)" x3; token endpoint calls: 1
//! the server revokes token 1
//! next call: Unauthenticated (token revoked); token endpoint calls: 1
//! next call: "hello, grpc (token 2)"; token endpoint calls: 2
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tonic::transport::{Endpoint, Server, server::TcpIncoming};
use tonic::{Status, body::Body, server::NamedService};
use tower::{BoxError, ServiceBuilder, service_fn};
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{BearerAuthLayer, Origin};

#[path = "support/utf8_codec.rs"]
mod utf8_codec;
use utf8_codec::Utf8;

const HELLO: &str = "/greet.Greeter/Hello";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tokens = Tokens::default();
    let token_url = format!("http://{}/token", serve_tokens(tokens.clone()).await?);
    let grpc_addr = serve_grpc(tokens.clone()).await?;

    // The layer, told where the channel's calls go: tonic's requests carry only a path, and
    // this origin is what the destination rules (allow-list, https but for loopback) judge.
    let source = ClientCredentials::builder(
        &token_url,
        ClientAuth::client_secret_post("grpc-demo", ClientSecret::new("demo-secret")),
    )
    .build()?;
    let origin = Origin::parse(&format!("http://{grpc_addr}"))?;
    let layer = BearerAuthLayer::new(source).grpc(origin);
    let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await?;
    let client = tonic::client::Grpc::new(ServiceBuilder::new().layer(layer).service(channel));

    let hello = || {
        let mut client = client.clone();
        async move {
            client.ready().await.map_err(Status::from_error)?;
            let request = tonic::Request::new(String::from("grpc"));
            let path = PathAndQuery::from_static(HELLO);
            Ok::<_, Status>(client.unary(request, path, Utf8).await?.into_inner())
        }
    };

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(hello().await?);
    }
    println!(
        "3 calls: {:?} x3; token endpoint calls: {}",
        answers[0],
        tokens.calls()
    );

    println!("the server revokes token 1");
    tokens.revoke(1);
    let status = hello().await.expect_err("a revoked token");
    println!(
        "next call: {:?} ({}); token endpoint calls: {}",
        status.code(),
        status.message(),
        tokens.calls()
    );
    println!(
        "next call: {:?}; token endpoint calls: {}",
        hello().await?,
        tokens.calls()
    );
    Ok(())
}

/// The tokens the token server issued (token → its number, while not revoked), and its calls.
#[derive(Clone, Default)]
struct Tokens {
    issued: Arc<Mutex<HashMap<String, usize>>>,
    calls: Arc<AtomicUsize>,
}

impl Tokens {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn revoke(&self, number: usize) {
        self.issued.lock().unwrap().retain(|_, n| *n != number);
    }

    fn number(&self, authorization: Option<&str>) -> Option<usize> {
        let token = authorization?.strip_prefix("Bearer ")?;
        self.issued.lock().unwrap().get(token).copied()
    }
}

/// The token endpoint: a client credentials grant, one new token per call.
async fn serve_tokens(tokens: Tokens) -> std::io::Result<SocketAddr> {
    let issue = async |State(tokens): State<Tokens>, form: String| {
        let number = tokens.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !form.contains("client_secret=demo-secret") {
            let refused = Json(serde_json::json!({ "error": "invalid_client" }));
            return (StatusCode::UNAUTHORIZED, refused).into_response();
        }
        let token = format!("demo-{:032x}", fastrand::u128(..));
        tokens.issued.lock().unwrap().insert(token.clone(), number);
        let answer = serde_json::json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 3600,
        });
        Json(answer).into_response()
    };
    let router = Router::new()
        .route("/token", post(issue))
        .with_state(tokens);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// The gRPC server: `greet.Greeter/Hello` answers calls that carry a token it issued.
async fn serve_grpc(tokens: Tokens) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let greeter = Server::builder()
        .add_service(Greeter(tokens))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(greeter);
    Ok(addr)
}

/// A hand-written gRPC service (what tonic-build generates, for one method).
#[derive(Clone)]
struct Greeter(Tokens);

impl NamedService for Greeter {
    const NAME: &'static str = "greet.Greeter";
}

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let tokens = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != HELLO {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let hello = service_fn(move |call: tonic::Request<String>| {
                let authorization = call.metadata().get("authorization");
                let number = tokens.number(authorization.and_then(|v| v.to_str().ok()));
                async move {
                    let number = number.ok_or_else(|| Status::unauthenticated("token revoked"))?;
                    let answer = format!("hello, {} (token {number})", call.into_inner());
                    Ok::<_, Status>(tonic::Response::new(answer))
                }
            });
            Ok(tonic::server::Grpc::new(Utf8).unary(hello, request).await)
        })
    }
}
