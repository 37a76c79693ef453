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
use tower_bearer::{BearerAuth, BearerAuthLayer, Error, TokenCache, TokenSource};

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

/// Assert that nothing in `err` (Display, Debug) contains any of `secrets`.
pub fn assert_no_secret(err: &Error, secrets: &[&str]) {
    let shown = format!("{err} | {err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} leaked into: {shown}");
    }
}
