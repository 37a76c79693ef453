//! [`HttpClient`] for the user's reqwest clients (`reqwest::Client`, and
//! `reqwest_middleware::ClientWithMiddleware` with the `reqwest-middleware` feature), and the
//! default client the sources share when built with `build()`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use super::read::Limits;
use super::reqwest_client::transport_error;
use super::{HttpClient, HttpFuture, HttpRequest, HttpResponse, ReqwestClient, check_request_url};
use crate::Error;

/// The user's client: its proxy, DNS, TLS, timeouts and connection pool apply. The answer is
/// read by the same reader as [`ReqwestClient`]'s: refused past
/// [`DEFAULT_MAX_RESPONSE_BYTES`](super::DEFAULT_MAX_RESPONSE_BYTES), and given
/// [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT) for its head and again for its body (the client's
/// own timeouts apply too, when shorter). An answer from another URL than the one asked (the
/// client followed a redirect) is refused: build the client with
/// `reqwest::redirect::Policy::none()`, as a followed 307 sends the request body (a client
/// secret, an assertion) to the new location before the answer is refused.
impl HttpClient for reqwest::Client {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        Box::pin(send_with(request, move |request| async move {
            self.execute(request).await.map_err(transport_error)
        }))
    }
}

/// The user's client with its middleware (tracing, retries, ...): they see the token call
/// as any other. Read and checked as for `reqwest::Client`.
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
impl HttpClient for reqwest_middleware::ClientWithMiddleware {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        Box::pin(send_with(request, move |request| async move {
            self.execute(request).await.map_err(|e| match e {
                reqwest_middleware::Error::Reqwest(e) => transport_error(e),
                reqwest_middleware::Error::Middleware(e) => {
                    Error::transient("a middleware failed the request to the token endpoint")
                        .with_source(BoxedMiddlewareError(format!("{e:#}")))
                }
            })
        }))
    }
}

/// A middleware's error, as text (`anyhow::Error` is not a `std::error::Error`).
#[cfg(feature = "reqwest-middleware")]
#[derive(Debug)]
struct BoxedMiddlewareError(String);

#[cfg(feature = "reqwest-middleware")]
impl std::fmt::Display for BoxedMiddlewareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "reqwest-middleware")]
impl std::error::Error for BoxedMiddlewareError {}

/// Send `request` with `send` (a user's client) and read the answer, within the default
/// [`Limits`].
async fn send_with<F>(
    request: HttpRequest,
    send: impl FnOnce(reqwest::Request) -> F,
) -> Result<HttpResponse, Error>
where
    F: Future<Output = Result<reqwest::Response, Error>>,
{
    check_request_url(&request)?;
    let request = reqwest::Request::try_from(request).map_err(|e| {
        Error::config("the token request cannot be sent").with_source(e.without_url())
    })?;
    let asked = request.url().clone();
    let limits = Limits::default();
    let response = limits.head(send(request)).await?;
    read_from(&asked, response, &limits).await
}

/// Refuse an answer from another URL than `asked` (a redirect the client followed: the token
/// must come from the endpoint configured, never from where it pointed), then read it.
async fn read_from(
    asked: &reqwest::Url,
    response: reqwest::Response,
    limits: &Limits,
) -> Result<HttpResponse, Error> {
    if response.url() != asked {
        return Err(Error::invalid_response(
            "the HTTP client followed a redirect from the token endpoint: configure it not to \
             follow redirects (reqwest::redirect::Policy::none())",
        )
        .with_status(response.status()));
    }
    limits.read(http::Response::from(response)).await
}

/// How many runtimes keep a default client of their own (the oldest is dropped past this).
const RUNTIMES: usize = 8;

/// The client sources built with `build()` call their endpoint with: one [`ReqwestClient`]
/// for all of them (every source, every keyed slot), so that a keyed factory does not make a
/// connection pool and a TLS configuration per key.
///
/// One per tokio runtime, though: a reqwest connection is driven by a task of the runtime that
/// opened it. A call from another runtime handed that connection would stall while that
/// runtime is not driven (a current-thread runtime between two `block_on` calls of a sync
/// program) and fail when it shuts down. The last few runtimes keep theirs ([`RUNTIMES`]). This is the crate's one process-wide value: a connection pool
/// is only worth anything shared, and it holds no token or secret.
pub(crate) fn shared_default() -> Arc<dyn HttpClient> {
    static SHARED: OnceLock<Arc<SharedDefault>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| Arc::new(SharedDefault::default()));
    Arc::clone(shared) as Arc<dyn HttpClient>
}

#[derive(Default)]
struct SharedDefault {
    clients: Mutex<VecDeque<(Option<tokio::runtime::Id>, ReqwestClient)>>,
}

impl SharedDefault {
    fn client(&self) -> Result<ReqwestClient, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .map(|handle| handle.id());
        let find = |clients: &VecDeque<(Option<tokio::runtime::Id>, ReqwestClient)>| {
            clients
                .iter()
                .find(|(id, _)| *id == runtime)
                .map(|(_, client)| client.clone())
        };
        if let Some(client) = find(&self.lock()) {
            return Ok(client);
        }
        // Built outside the lock: it takes a few milliseconds.
        let built = ReqwestClient::new()?;
        let mut clients = self.lock();
        if let Some(client) = find(&clients) {
            return Ok(client);
        }
        if clients.len() == RUNTIMES {
            clients.pop_front();
        }
        clients.push_back((runtime, built.clone()));
        Ok(built)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, VecDeque<(Option<tokio::runtime::Id>, ReqwestClient)>> {
        // The list is valid whatever a panicking holder did: take it back.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HttpClient for SharedDefault {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        match self.client() {
            Ok(client) => Box::pin(async move { client.execute(request).await }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_shares_one_default_client_per_runtime() {
        let a = shared_default();
        let b = shared_default();
        assert!(Arc::ptr_eq(&a, &b));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let shared = SharedDefault::default();
        let (one, two) =
            rt.block_on(async { (shared.client().unwrap(), shared.client().unwrap()) });
        assert_eq!(shared.lock().len(), 1);
        drop((one, two));
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        other.block_on(async { shared.client().unwrap() });
        assert_eq!(shared.lock().len(), 2);
        for _ in 0..RUNTIMES + 2 {
            let fresh = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            fresh.block_on(async { shared.client().unwrap() });
        }
        assert_eq!(shared.lock().len(), RUNTIMES);
    }
}
