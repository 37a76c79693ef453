//! [`HttpClient`] for any tower HTTP client: [`from_service`] and [`TowerClient`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tower::Service;

use super::read::Limits;
use super::{HttpClient, HttpFuture, HttpRequest, check_request_url};
use crate::{BoxError, Error};

/// Call token endpoints through `service`, a tower HTTP client (a hyper-util `Client`, a stack
/// of tower layers around one): its connector, DNS, TLS and layers apply to token calls.
///
/// The request body is built from [`Bytes`] (`B: From<Bytes>`: `Full<Bytes>`, axum's and
/// reqwest's bodies ...); the answer is read as by every client of the crate (a size cap, a
/// deadline for the head and another for the body, [`with_timeout`](TowerClient::with_timeout)
/// and [`with_max_response_bytes`](TowerClient::with_max_response_bytes) change them).
///
/// The service must not follow redirects (tower-http's `FollowRedirect` outside it is fine,
/// inside it is not: a redirect would carry the credentials elsewhere), and must not send a
/// loopback endpoint's request through a proxy.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_bearer::http_client::from_service;
/// use tower_bearer::source::{ClientAuth, ClientCredentials};
///
/// let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let source = ClientCredentials::builder("http://127.0.0.1:8080/token", ClientAuth::none("id"))
///     .build_with(from_service(hyper))?;
/// # let _ = source;
/// # Ok::<(), tower_bearer::Error>(())
/// ```
pub fn from_service<S, B>(service: S) -> TowerClient<S, B> {
    TowerClient {
        service: Mutex::new(service),
        limits: Limits::default(),
        body: PhantomData,
    }
}

/// A tower HTTP client calling token endpoints; made by [`from_service`].
pub struct TowerClient<S, B> {
    /// Cloned out for each call (tower's way to call a shared service); the lock is held only
    /// for the clone, and makes the client `Sync` whatever the service.
    service: Mutex<S>,
    limits: Limits,
    body: PhantomData<fn(B)>,
}

impl<S, B> TowerClient<S, B> {
    /// Give up on a call that has not answered (status line and headers) this long after it
    /// started; and, once it has, on reading its body this long after the headers (default
    /// 10 s each).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// Refuse answers larger than this (default 64 KiB).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.limits.max_response_bytes = max;
        self
    }
}

impl<S, B, RB> HttpClient for TowerClient<S, B>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: From<Bytes> + Send + 'static,
    RB: Body + Send,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        let mut service = self
            .service
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            check_request_url(&request)?;
            let request = request.map(B::from);
            let response = self
                .limits
                .head(async {
                    futures_util::future::poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(|e| transport_error(e.into()))?;
                    service
                        .call(request)
                        .await
                        .map_err(|e| transport_error(e.into()))
                })
                .await?;
            self.limits.read(response).await
        })
    }
}

/// A tower client's error: transient (the crate cannot tell a connection failure from others).
fn transport_error(err: BoxError) -> Error {
    Error::transient("the request to the token endpoint failed").with_source(err)
}

impl<S, B> fmt::Debug for TowerClient<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerClient")
            .field("timeout", &self.limits.timeout)
            .field("max_response_bytes", &self.limits.max_response_bytes)
            .finish_non_exhaustive()
    }
}
