//! [`HttpClient`]: the small trait the built-in sources call token endpoints through, its
//! implementations for the clients you already have, and `ReqwestClient`, the default.
//!
//! A token endpoint is called with one request (method, URL, headers, body) and answers with one
//! response (status, headers, body): the trait is exactly that, in [`http`] types.
//!
//! | client | how |
//! |---|---|
//! | the default: one `ReqwestClient` shared by every source and keyed slot | `builder.build()` (feature `reqwest`) |
//! | your `reqwest::Client` (its proxy, DNS, TLS, pool) | `builder.build_with(client)` |
//! | your `reqwest_middleware::ClientWithMiddleware` (tracing, retries) | `builder.build_with(client)` |
//! | any tower HTTP client (hyper-util's `Client`, a stack around it) | `builder.build_with(from_service(client))` |
//! | your own (a mock, fault injection) | implement [`HttpClient`] |
//!
//! Every one of them is held to the same rules: the token URL must be `https`, except to a
//! loopback host ([`is_loopback_host`]: `127.0.0.0/8`, `::1`, `localhost`) or, for a managed
//! identity's requests only, a platform metadata host; a redirect is never
//! taken for a token (the sources refuse a 3xx, and an answer that a redirect-following client
//! fetched from another URL is refused too); the answer is read incrementally, refused past a
//! size cap ([`DEFAULT_MAX_RESPONSE_BYTES`]), with a deadline for its head and another for its
//! body ([`DEFAULT_TIMEOUT`]), so that an answer the server has begun to send is not cut.
//!
//! Your client's own settings apply, which the crate cannot check: configure it not to follow
//! redirects (`reqwest::redirect::Policy::none()`; a followed 307 re-sends the request body,
//! client secret included, before the answer is refused), and not to send a loopback endpoint's
//! requests through a proxy (`no_proxy`, or `NO_PROXY=127.0.0.1,localhost`): plain `http` is
//! allowed there only because the request never leaves the machine. `ReqwestClient` does
//! both itself.
//!
//! Without the `reqwest` feature there is no default client, so the builders have no `build()`:
//! forgetting the client is a compile error, not a run-time one. This compiles only with the
//! feature:
//!
#![cfg_attr(feature = "reqwest", doc = "```")]
#![cfg_attr(not(feature = "reqwest"), doc = "```compile_fail")]
//! use tower_bearer::source::{ClientAuth, ClientCredentials};
//!
//! let source = ClientCredentials::builder("https://auth.example.com/token", ClientAuth::none("id"))
//!     .build()?;
//! # let _ = source;
//! # Ok::<(), tower_bearer::Error>(())
//! ```
//!
//! A client of your own:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//! use tower_bearer::http_client::{HttpClient, HttpFuture, HttpRequest};
//!
//! /// A client that answers every token request itself, as a test double would.
//! struct Canned;
//!
//! impl HttpClient for Canned {
//!     fn execute(&self, _request: HttpRequest) -> HttpFuture<'_> {
//!         Box::pin(async {
//!             let body = Bytes::from_static(br#"{"access_token":"abc","expires_in":3600}"#);
//!             let mut response = Response::new(body);
//!             response.headers_mut().insert("content-type", "application/json".parse().unwrap());
//!             *response.status_mut() = StatusCode::OK;
//!             Ok(response)
//!         })
//!     }
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;

use crate::Error;
use crate::origin::is_loopback_host;

/// A request to a token endpoint.
pub type HttpRequest = http::Request<Bytes>;

/// A token endpoint's answer, with its whole body.
pub type HttpResponse = http::Response<Bytes>;

/// The future returned by [`HttpClient::execute`].
pub type HttpFuture<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, Error>> + Send + 'a>>;

/// The default cap on a token endpoint's answer: 64 KiB, far more than any token response.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The default time allowed for a token endpoint call to answer (status and headers), and then
/// again for its body to be read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request to a token endpoint and returns its answer.
///
/// Return errors classified by kind: [`Error::transient`] for connection failures and timeouts,
/// [`Error::invalid_response`] for an answer too large to accept, [`Error::config`] for a
/// request that cannot be sent. HTTP error statuses are *not* errors here: return the response,
/// and the source reads the status and the body (an RFC 6749 §5.2 error, a `Retry-After`).
///
/// Implementations must not follow redirects: a redirect would carry a credential to another
/// place. Nor may they send a request for a loopback host ([`is_loopback_host`]) through a
/// proxy: plain `http` is allowed there only because the request never leaves the machine, and
/// a proxy would receive the credential in clear (and reach *its* loopback, not ours). The
/// method returns a boxed future so that sources can hold any client as `Arc<dyn HttpClient>`.
///
/// The request's body, URI and `Authorization` header share buffers that are zeroized when
/// their last clone is dropped; copies an implementation makes (to a `String`, a write buffer)
/// are not, so keep them to what the wire needs. Return the response body as [`Bytes`] that
/// own a zeroizing buffer (`Bytes::from_owner(zeroize::Zeroizing::new(vec))`) to have the
/// tokens in it wiped too.
pub trait HttpClient: Send + Sync + 'static {
    /// Send `request` and return the response with its whole body.
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_>;
}

impl<T: HttpClient + ?Sized> HttpClient for Arc<T> {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        (**self).execute(request)
    }
}

impl<T: HttpClient + ?Sized> HttpClient for Box<T> {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        (**self).execute(request)
    }
}

/// Check that credentials may be sent to `uri`: `https`, or plain `http` to a loopback host.
///
/// ```
/// use tower_bearer::http_client::check_token_url;
///
/// assert!(check_token_url(&"https://auth.example.com/token".parse().unwrap()).is_ok());
/// assert!(check_token_url(&"http://127.0.0.1:8080/token".parse().unwrap()).is_ok());
/// assert!(check_token_url(&"http://[::1]/token".parse().unwrap()).is_ok());
/// assert!(check_token_url(&"http://auth.example.com/token".parse().unwrap()).is_err());
/// ```
pub fn check_token_url(uri: &Uri) -> Result<(), Error> {
    let Some(host) = uri.host() else {
        return Err(Error::config("the token URL has no host"));
    };
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(Error::config(
            "the token URL must use https (plain http is allowed only to a loopback host)",
        )
        .with_host(host)),
        _ => Err(Error::config("the token URL must be an absolute https URL").with_host(host)),
    }
}

/// The mark a [`ManagedIdentity`](crate::source::workload::ManagedIdentity) puts on its
/// requests (a request extension only this crate can make): the built-in client then allows
/// plain `http` to a metadata host ([`is_metadata_host`]) and sends the request without a
/// proxy. No other request gets the exception.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetadataRequest;

/// A host a platform metadata server is reached at over plain `http`: loopback, an IPv4
/// link-local address (`169.254.0.0/16`: Azure IMDS and the Google metadata server at
/// `169.254.169.254`, Linux App Service's identity endpoint), or the name
/// `metadata.google.internal`. Link-local addresses are not routed off the host's own link,
/// and the platform answers them from the hypervisor.
pub(crate) fn is_metadata_host(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    is_loopback_host(host)
        || name.eq_ignore_ascii_case("metadata.google.internal")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_link_local())
}

/// The URL check every client makes: [`check_metadata_url`] for a request a metadata source
/// marked ([`MetadataRequest`]), else [`check_token_url`].
pub(crate) fn check_request_url(request: &HttpRequest) -> Result<(), Error> {
    if request.extensions().get::<MetadataRequest>().is_some() {
        check_metadata_url(request.uri())
    } else {
        check_token_url(request.uri())
    }
}

/// [`check_token_url`] for a metadata server: plain `http` to a [`is_metadata_host`] too.
pub(crate) fn check_metadata_url(uri: &Uri) -> Result<(), Error> {
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) if is_metadata_host(host) => Ok(()),
        (Some("http"), Some(host)) => Err(Error::config(
            "the metadata endpoint must use https, or plain http to a loopback or link-local \
             address or metadata.google.internal",
        )
        .with_host(host)),
        _ => check_token_url(uri),
    }
}

mod read;
#[cfg(feature = "reqwest")]
mod reqwest_impls;
mod service;
mod span;

#[cfg(feature = "reqwest")]
pub(crate) use self::reqwest_impls::shared_default;
pub use self::service::{TowerClient, from_service};
pub(crate) use self::span::traced;

#[cfg(feature = "reqwest")]
pub use self::reqwest_client::ReqwestClient;
#[cfg(feature = "reqwest")]
pub(crate) use self::reqwest_client::tls_provider;
#[cfg(feature = "reqwest")]
pub use crate::mtls::ClientIdentity;

#[cfg(feature = "reqwest")]
mod reqwest_client {
    use std::fmt;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use super::read::Limits;
    use super::{
        DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, HttpClient, HttpFuture, HttpRequest,
        HttpResponse, MetadataRequest, check_metadata_url, check_token_url, is_loopback_host,
    };
    use crate::Error;
    use crate::mtls::{ClientIdentity, Pair};
    use rustls::crypto::CryptoProvider;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    /// The default [`HttpClient`]: reqwest with rustls, made for token endpoints.
    ///
    /// - TLS uses the crypto provider of this crate's features (`ring`, or `aws-lc-rs`, which
    ///   wins when both are on), named to rustls explicitly: whatever else the application's
    ///   graph enables, and whether or not a process default is installed. Built without either
    ///   feature, it uses the process default the application installed
    ///   (`CryptoProvider::install_default`), and building the client without one is a
    ///   [`Config`](crate::ErrorKind::Config) error. Server certificates are checked by the
    ///   platform's verifier (`rustls-platform-verifier`, as reqwest does), or against the
    ///   roots given to [`with_root_certificates`](Self::with_root_certificates);
    /// - redirects are never followed (a 3xx answer is returned as it is, and the sources
    ///   refuse it);
    /// - a loopback endpoint ([`is_loopback_host`](crate::origin::is_loopback_host)) is called
    ///   directly, never through a proxy from the environment (`HTTP_PROXY`, `ALL_PROXY`, ...),
    ///   and the name `localhost` always means `127.0.0.1` / `::1`, whatever the resolver says;
    ///   other hosts go through the environment's proxy settings, as reqwest reads them,
    ///   except a [`ManagedIdentity`](crate::source::workload::ManagedIdentity)'s requests to a
    ///   metadata server, which go direct (and may use plain http to a link-local address or
    ///   `metadata.google.internal`: see [`workload`](crate::source::workload));
    /// - the answer is read incrementally and refused past a size cap
    ///   ([`DEFAULT_MAX_RESPONSE_BYTES`] unless changed) with an
    ///   [`InvalidResponse`](crate::ErrorKind::InvalidResponse) error, into a buffer that is
    ///   zeroized on drop (the body of the returned [`HttpResponse`] is wiped with its last
    ///   clone; the chunks hyper read it in, from its own buffers, are not);
    /// - connecting and sending up to the answer's status line and headers are bounded by a
    ///   timeout ([`DEFAULT_TIMEOUT`] unless changed), a
    ///   [`Transient`](crate::ErrorKind::Transient) error, as are connection failures; reading
    ///   the body then gets a deadline of its own (the same length), so an answer the server
    ///   has begun to send (a rotation it has committed) is not cut by what was left of the
    ///   first one;
    /// - the URL must be `https`, except to a loopback host;
    /// - with [`with_client_identity`](Self::with_client_identity), a client certificate is
    ///   presented (mutual TLS, RFC 8705; see [`mtls`](crate::mtls)).
    ///
    /// The proxy settings are read from the environment when the client is built. Clones share
    /// their connection pools.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::http_client::ReqwestClient;
    ///
    /// let client = ReqwestClient::new()?
    ///     .with_timeout(Duration::from_secs(5))
    ///     .with_max_response_bytes(16 * 1024);
    /// # let _ = client;
    /// # Ok::<(), tower_bearer::Error>(())
    /// ```
    #[derive(Clone)]
    pub struct ReqwestClient {
        /// The clients for the identity presented now; clones share them (and their pools)
        /// until one of them is reconfigured.
        clients: Arc<Mutex<Arc<Clients>>>,
        timeout: Duration,
        max_response_bytes: usize,
        tls: Tls,
    }

    /// The two clients for one client certificate (or none).
    struct Clients {
        /// The pair they present: rebuilt when a rotating identity's certificate changes.
        pair: Option<Arc<Pair>>,
        /// For every host but loopback: the environment's proxy settings apply.
        client: reqwest::Client,
        /// For loopback hosts: no proxy at all. Built at the first loopback call (a client
        /// costs a few milliseconds to build, and most programs never call loopback).
        direct: OnceLock<reqwest::Client>,
    }

    /// What both clients present and trust.
    #[derive(Clone, Default)]
    struct Tls {
        identity: Option<ClientIdentity>,
        roots: Option<Vec<CertificateDer<'static>>>,
    }

    fn builder(tls: &Tls, pair: Option<&Pair>) -> Result<reqwest::ClientBuilder, Error> {
        Ok(reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(DEFAULT_TIMEOUT)
            .tls_backend_preconfigured(tls.client_config(pair)?))
    }

    impl Clients {
        fn new(tls: &Tls, pair: Option<Arc<Pair>>) -> Result<Self, Error> {
            Ok(Clients {
                client: build(builder(tls, pair.as_deref())?)?,
                direct: OnceLock::new(),
                pair,
            })
        }

        /// Whether these clients present `pair`'s certificate (the same certificate means the
        /// same key: a pair is checked to match when read).
        fn presents(&self, pair: Option<&Pair>) -> bool {
            match (&self.pair, pair) {
                (None, None) => true,
                (Some(ours), Some(now)) => ours.certs() == now.certs(),
                _ => false,
            }
        }
    }

    /// The crypto provider of the crate's TLS: the one its features chose (aws-lc-rs if both
    /// `ring` and `aws-lc-rs` are on), named explicitly, so that a process whose graph enables
    /// both never meets rustls' "could not determine the process-level CryptoProvider" panic.
    #[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
    pub(crate) fn tls_provider() -> Result<Arc<CryptoProvider>, Error> {
        Ok(Arc::new(crate::crypto::tls_provider()))
    }

    /// Without a provider feature: the one the application installed as the process default.
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    pub(crate) fn tls_provider() -> Result<Arc<CryptoProvider>, Error> {
        CryptoProvider::get_default().cloned().ok_or_else(|| {
            Error::config(
                "no rustls CryptoProvider: enable tower-bearer's `ring` or `aws-lc-rs` feature, \
                 or install a process default (`CryptoProvider::install_default`) before \
                 building the client",
            )
        })
    }

    impl Tls {
        /// The rustls configuration of both clients: the crate's provider, the platform's
        /// verifier or the given roots, the client certificate if any, HTTP/1.1.
        fn client_config(&self, pair: Option<&Pair>) -> Result<rustls::ClientConfig, Error> {
            let failed = |e: rustls::Error| {
                Error::config("could not configure TLS for the token endpoint").with_source(e)
            };
            let provider = tls_provider()?;
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(failed)?;
            let builder = match &self.roots {
                Some(roots) => {
                    let mut store = rustls::RootCertStore::empty();
                    for root in roots {
                        store.add(root.clone()).map_err(failed)?;
                    }
                    builder.with_root_certificates(store)
                }
                None => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(
                        rustls_platform_verifier::Verifier::new(provider).map_err(failed)?,
                    )),
            };
            let mut config = match pair {
                Some(pair) => builder
                    .with_client_auth_cert(pair.certs().to_vec(), pair.private_key())
                    .map_err(|e| {
                        Error::config("the client certificate and key cannot form a TLS identity")
                            .with_source(e)
                    })?,
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(config)
        }
    }

    fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, Error> {
        builder.build().map_err(|e| {
            Error::config("could not build the HTTP client for the token endpoint")
                .with_source(e.without_url())
        })
    }

    /// The client for loopback hosts: no proxy, and `localhost` pinned to loopback addresses.
    fn direct_client(tls: &Tls, pair: Option<&Pair>) -> Result<reqwest::Client, Error> {
        let localhost: [SocketAddr; 2] = [
            (Ipv4Addr::LOCALHOST, 0).into(),
            (Ipv6Addr::LOCALHOST, 0).into(),
        ];
        build(
            builder(tls, pair)?
                // `no_proxy` drops the proxies read from the environment too.
                .no_proxy()
                // reqwest lowercases the host and keeps a trailing dot; the URL's port is used.
                .resolve_to_addrs("localhost", &localhost)
                .resolve_to_addrs("localhost.", &localhost),
        )
    }

    impl ReqwestClient {
        /// A client with the defaults above.
        pub fn new() -> Result<Self, Error> {
            let tls = Tls::default();
            Ok(ReqwestClient {
                clients: Arc::new(Mutex::new(Arc::new(Clients::new(&tls, None)?))),
                timeout: DEFAULT_TIMEOUT,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
                tls,
            })
        }

        /// Present `identity` (certificate chain and key) to token endpoints that ask for a
        /// client certificate: mutual TLS, for
        /// [`ClientAuth::tls_client_auth`](crate::source::ClientAuth::tls_client_auth) and
        /// certificate-bound tokens (RFC 8705). A key that does not match the certificate is a
        /// [`Config`](crate::ErrorKind::Config) error here.
        ///
        /// An identity read from files ([`ClientIdentity::from_files`]) is looked at before
        /// each token request: when its certificate has changed, the client is built again
        /// for it (the old connections are dropped with the old client), and if the new one
        /// cannot be built the previous certificate stays in use, with a warning.
        pub fn with_client_identity(mut self, identity: ClientIdentity) -> Result<Self, Error> {
            self.tls.identity = Some(identity);
            self.rebuild()
        }

        /// Trust only these root certificates (PEM, one or more `CERTIFICATE` blocks) for the
        /// token endpoint's certificate, instead of the platform's: a private PKI, as mutual
        /// TLS deployments often use, or a test CA.
        pub fn with_root_certificates(mut self, pem: &[u8]) -> Result<Self, Error> {
            let roots = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|roots| !roots.is_empty())
                .ok_or_else(|| {
                    Error::config("the root certificates are not PEM CERTIFICATE blocks")
                })?;
            self.tls.roots = Some(roots);
            self.rebuild()
        }

        fn rebuild(mut self) -> Result<Self, Error> {
            let pair = self.tls.identity.as_ref().map(ClientIdentity::current);
            // A new shared state: the clones made before keep theirs.
            self.clients = Arc::new(Mutex::new(Arc::new(Clients::new(&self.tls, pair)?)));
            Ok(self)
        }

        /// The clients for the identity's certificate of now: built again when a rotating
        /// identity has changed (lazily, at the token request that sees it). Reading the
        /// files blocks, so it runs on the blocking pool.
        async fn clients(&self) -> Arc<Clients> {
            let current = Arc::clone(&self.clients.lock().unwrap_or_else(|p| p.into_inner()));
            let Some(identity) = self.tls.identity.as_ref().filter(|i| i.is_rotating()) else {
                return current;
            };
            let looked = identity.clone();
            let Ok(pair) = tokio::task::spawn_blocking(move || looked.current()).await else {
                return current;
            };
            if current.presents(Some(&pair)) {
                return current;
            }
            let tls = self.tls.clone();
            let built = tokio::task::spawn_blocking(move || Clients::new(&tls, Some(pair))).await;
            let mut shared = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            match built {
                Ok(Ok(clients)) => {
                    *shared = Arc::new(clients);
                    Arc::clone(&shared)
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        kind = ?error.kind(),
                        %error,
                        "could not build the TLS client for the rotated client certificate; \
                         still presenting the previous one"
                    );
                    Arc::clone(&shared)
                }
                Err(_) => Arc::clone(&shared),
            }
        }

        /// The direct client (no proxy) for loopback hosts and metadata servers, the
        /// environment's proxy settings for the rest.
        fn client_for(
            &self,
            clients: &Clients,
            uri: &http::Uri,
            metadata: bool,
        ) -> Result<reqwest::Client, Error> {
            if !metadata && !uri.host().is_some_and(is_loopback_host) {
                return Ok(clients.client.clone());
            }
            if let Some(direct) = clients.direct.get() {
                return Ok(direct.clone());
            }
            let direct = direct_client(&self.tls, clients.pair.as_deref())?;
            Ok(clients.direct.get_or_init(|| direct).clone())
        }

        /// Give up on a token endpoint call that has not answered (status line and headers)
        /// this long after it started; and, once it has, on reading its body this long after
        /// the headers (default 10 s each).
        pub fn with_timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }

        /// Refuse answers larger than this (default 64 KiB).
        pub fn with_max_response_bytes(mut self, max: usize) -> Self {
            self.max_response_bytes = max;
            self
        }

        fn limits(&self) -> Limits {
            Limits {
                timeout: self.timeout,
                max_response_bytes: self.max_response_bytes,
            }
        }

        async fn send(&self, request: HttpRequest) -> Result<HttpResponse, Error> {
            // Only a request marked by a managed-identity source may use plain http to a
            // metadata host, and it never goes through a proxy.
            let metadata = request.extensions().get::<MetadataRequest>().is_some();
            if metadata {
                check_metadata_url(request.uri())?;
            } else {
                check_token_url(request.uri())?;
            }
            let clients = self.clients().await;
            let client = self.client_for(&clients, request.uri(), metadata)?;
            let request = reqwest::Request::try_from(request).map_err(|e| {
                Error::config("the token request cannot be sent").with_source(e.without_url())
            })?;
            let limits = self.limits();
            let response = limits
                .head(async { client.execute(request).await.map_err(transport_error) })
                .await?;
            limits.read(http::Response::from(response)).await
        }
    }

    /// Classify a reqwest error. The URL is stripped: its query string can hold a credential.
    pub(super) fn transport_error(err: reqwest::Error) -> Error {
        if let Some(tls) = crate::mtls::tls_error(&err) {
            return tls.with_source(err.without_url());
        }
        let message = if err.is_timeout() {
            "the token endpoint did not answer in time"
        } else if err.is_connect() {
            "could not connect to the token endpoint"
        } else {
            "the request to the token endpoint failed"
        };
        Error::transient(message).with_source(err.without_url())
    }

    impl HttpClient for ReqwestClient {
        fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
            Box::pin(self.send(request))
        }
    }

    impl fmt::Debug for ReqwestClient {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReqwestClient")
                .field("timeout", &self.timeout)
                .field("max_response_bytes", &self.max_response_bytes)
                .field("client_identity", &self.tls.identity)
                .finish_non_exhaustive()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn metadata_requests_never_use_the_proxied_client() {
            let client = ReqwestClient::new().unwrap();
            let clients = Arc::clone(&client.clients.lock().unwrap());
            let imds: http::Uri = "http://169.254.169.254/metadata".parse().unwrap();
            client.client_for(&clients, &imds, true).unwrap();
            // The direct client was built for it; a public host does not build one.
            assert!(clients.direct.get().is_some());
            let fresh = ReqwestClient::new().unwrap();
            let fresh_clients = Arc::clone(&fresh.clients.lock().unwrap());
            let public: http::Uri = "https://sts.example.com/token".parse().unwrap();
            fresh.client_for(&fresh_clients, &public, false).unwrap();
            assert!(fresh_clients.direct.get().is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_to_a_public_host_is_a_config_error() {
        let err = check_token_url(&"http://auth.example.com/token?secret=x".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert_eq!(err.host(), Some("auth.example.com"));
        assert!(!err.to_string().contains("secret=x"));
    }

    #[test]
    fn metadata_hosts_are_exactly_loopback_link_local_and_the_google_name() {
        for host in [
            "169.254.169.254",
            "169.254.129.2",
            "metadata.google.internal",
            "METADATA.GOOGLE.INTERNAL.",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(is_metadata_host(host), "{host}");
        }
        for host in [
            "169.254.169.254.nip.io",
            "metadata.google.internal.evil.example",
            "metadata",
            "10.0.0.1",
            "169.255.0.1",
            "[fe80::1]",
        ] {
            assert!(!is_metadata_host(host), "{host}");
        }
        let ok = "http://169.254.169.254/metadata/identity/oauth2/token"
            .parse()
            .unwrap();
        assert!(check_metadata_url(&ok).is_ok());
        // The exception is for metadata requests only: a token URL there is still refused.
        assert!(check_token_url(&ok).is_err());
        let public = "http://sts.example.com/token".parse().unwrap();
        assert!(check_metadata_url(&public).is_err());
    }

    /// An unmarked request to a metadata address is refused by the built-in client, before
    /// any packet is sent.
    #[cfg(feature = "reqwest")]
    #[tokio::test]
    async fn the_built_in_client_refuses_unmarked_metadata_requests() {
        let client = ReqwestClient::new().unwrap();
        let request = http::Request::get("http://169.254.169.254/metadata/identity/oauth2/token")
            .body(bytes::Bytes::new())
            .unwrap();
        let err = client.execute(request).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn relative_and_odd_schemes_are_refused() {
        assert!(check_token_url(&"/token".parse().unwrap()).is_err());
        assert!(check_token_url(&"ftp://127.0.0.1/token".parse().unwrap()).is_err());
    }

    /// A server that commits, sends its headers late, then its body later still: the whole
    /// exchange takes longer than the timeout, but neither the wait for the headers nor the
    /// read of the body does, so the answer (a rotated refresh token) is not thrown away.
    #[cfg(feature = "reqwest")]
    #[tokio::test]
    async fn an_answer_begun_in_time_is_read_to_its_end() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            let body = br#"{"access_token":"a1","refresh_token":"r1"}"#;
            tokio::time::sleep(Duration::from_millis(250)).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
            socket.write_all(body).await.unwrap();
        });
        let client = ReqwestClient::new()
            .unwrap()
            .with_timeout(Duration::from_millis(400));
        let request = http::Request::post(format!("http://{addr}/token"))
            .body(bytes::Bytes::new())
            .unwrap();
        let response = client.execute(request).await.unwrap();
        assert!(response.body().starts_with(b"{\"access_token\""));
    }
}
