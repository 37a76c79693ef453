//! [`Discovery`]: find the token endpoint from the issuer (RFC 8414, OpenID Connect Discovery
//! 1.0), and build the token sources from it.
//!
//! The authorization server metadata is fetched from
//! `/.well-known/oauth-authorization-server` (RFC 8414 §3.1: for an issuer with a path, the
//! well-known segment goes *between* the host and the path), then, if that is not found, from
//! `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery §4). The document must
//! name the configured issuer exactly (RFC 8414 §3.3) and give a `token_endpoint` that is
//! `https` (or loopback); a source whose client authentication method the server does not list
//! in `token_endpoint_auth_methods_supported` (default `client_secret_basic`, RFC 8414 §2) is
//! refused. The document is fetched on first use, kept, and fetched again on a schedule
//! ([`refresh_every`](DiscoveryBuilder::refresh_every), an hour by default) and after the token
//! endpoint stops answering (a transport failure, a 5xx, a 404); a failed refetch keeps the
//! document it had. The fetches go through the same [`HttpClient`] as token requests, with the
//! same hardening: `https` except to loopback, no redirects, a size cap and a timeout.
//!
//! ```
//! use tower_bearer::{BearerAuthLayer, secret::ClientSecret, source::{ClientAuth, Discovery}};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_bearer::Error> {
//! # // An authorization server on 127.0.0.1 publishing its metadata and issuing tokens.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let base = format!("http://{}", listener.local_addr().unwrap());
//! # let issuer = base.clone();
//! # let app = axum::Router::new()
//! #     .route("/.well-known/oauth-authorization-server", axum::routing::get(move || {
//! #         let issuer = issuer.clone();
//! #         async move { axum::Json(serde_json::json!({
//! #             "issuer": issuer,
//! #             "token_endpoint": format!("{issuer}/oauth2/token"),
//! #             "token_endpoint_auth_methods_supported": ["client_secret_basic"],
//! #         })) }
//! #     }))
//! #     .route("/oauth2/token", axum::routing::post(|| async {
//! #         axum::Json(serde_json::json!({"access_token": "abc", "token_type": "Bearer", "expires_in": 3600}))
//! #     }));
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! let discovery = Discovery::new(&base)?; // the issuer, e.g. "https://auth.example.com"
//! let source = discovery.client_credentials(
//!     ClientAuth::client_secret_basic("my-client", ClientSecret::new("s3cr3t")),
//!     |builder| builder.scope("orders:read"),
//! );
//! let layer = BearerAuthLayer::new(source);
//! assert_eq!(layer.cache().token().await?.secret(), "abc");
//! assert!(discovery.metadata().await?.token_endpoint().ends_with("/oauth2/token"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use serde::Deserialize;
use tokio::time::Instant;

use super::client_auth::ClientAuth;
use super::client_credentials::{ClientCredentials, ClientCredentialsBuilder};
use super::endpoint::default_client;
use super::refresh_token::{RefreshTokenGrant, RefreshTokenGrantBuilder};
use crate::http_client::{HttpClient, check_token_url};
use crate::store::RefreshTokenStore;
use crate::{Error, ErrorKind, Token, TokenSource};

/// The default [`refresh_every`](DiscoveryBuilder::refresh_every): an hour.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// How long a document is kept, after a refetch failed, before the next attempt.
const RETRY_AFTER_FAILED_REFETCH: Duration = Duration::from_secs(30);

/// The well-known suffixes tried, in order.
const OAUTH: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

/// An issuer's metadata, fetched on first use and kept; see the [module docs](self).
///
/// Cheap to clone: clones share the document.
#[derive(Clone)]
pub struct Discovery {
    shared: Arc<Shared>,
}

struct Shared {
    issuer: String,
    /// The URLs tried, in order.
    urls: Vec<Uri>,
    host: String,
    client: Arc<dyn HttpClient>,
    refresh_every: Duration,
    /// Held while fetching, so concurrent sources fetch the document once.
    state: tokio::sync::Mutex<Option<Kept>>,
    /// Set when a token endpoint stopped answering: fetch the document again on next use.
    stale: AtomicBool,
}

struct Kept {
    metadata: Arc<Metadata>,
    next_check: Instant,
}

/// The parts of an authorization server's metadata (RFC 8414 §2) that token sources use.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    issuer: String,
    token_endpoint: String,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    grant_types_supported: Option<Vec<String>>,
}

impl Metadata {
    /// `issuer`: equal to the configured issuer (checked).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `token_endpoint`: `https`, or `http` to loopback (checked).
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// `revocation_endpoint` (RFC 7009), if the server has one (`https` or loopback, checked).
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }

    /// The client authentication methods the token endpoint accepts:
    /// `token_endpoint_auth_methods_supported`, or `["client_secret_basic"]` when the document
    /// omits it (RFC 8414 §2).
    pub fn token_endpoint_auth_methods(&self) -> Vec<&str> {
        match &self.token_endpoint_auth_methods_supported {
            Some(methods) => methods.iter().map(String::as_str).collect(),
            None => vec!["client_secret_basic"],
        }
    }

    /// `grant_types_supported`, if listed.
    pub fn grant_types_supported(&self) -> Option<&[String]> {
        self.grant_types_supported.as_deref()
    }

    /// Refuse `method` if the token endpoint does not list it.
    fn check_auth_method(&self, method: &str) -> Result<(), Error> {
        let methods = self.token_endpoint_auth_methods();
        if methods.contains(&method) {
            return Ok(());
        }
        Err(Error::config(format!(
            "the authorization server does not accept the `{method}` client authentication \
             method at its token endpoint (it lists: {})",
            shown_list(&methods)
        )))
    }

    /// Warn when the server lists its grant types and `grant` is not among them: many servers
    /// list them incompletely, so this is not refused.
    fn check_grant(&self, grant: &str) {
        if let Some(grants) = &self.grant_types_supported
            && !grants.iter().any(|g| g == grant)
        {
            tracing::warn!(
                grant,
                "the authorization server does not list this grant type in grant_types_supported"
            );
        }
    }
}

impl Discovery {
    /// Discovery for `issuer` with the default HTTP client and schedule. Checks the URL (an
    /// absolute `https` URL, or `http` to loopback, without query or fragment); does no I/O.
    pub fn new(issuer: &str) -> Result<Discovery, Error> {
        Discovery::builder(issuer).build()
    }

    /// A builder to set the HTTP client and the schedule.
    pub fn builder(issuer: impl Into<String>) -> DiscoveryBuilder {
        DiscoveryBuilder {
            issuer: issuer.into(),
            client: None,
            refresh_every: DEFAULT_REFRESH_EVERY,
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The metadata: the kept document, or a new one when none is kept yet, the schedule says
    /// so, or a token endpoint stopped answering. Concurrent callers share one fetch.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, Error> {
        let shared = &*self.shared;
        let mut state = shared.state.lock().await;
        let stale = shared.stale.swap(false, Ordering::AcqRel);
        if let Some(kept) = &*state
            && !stale
            && Instant::now() < kept.next_check
        {
            return Ok(Arc::clone(&kept.metadata));
        }
        match shared.fetch().await {
            Ok(metadata) => {
                let metadata = match &*state {
                    // Unchanged: keep the same `Arc`, so sources need not look again.
                    Some(kept) if *kept.metadata == metadata => Arc::clone(&kept.metadata),
                    _ => Arc::new(metadata),
                };
                *state = Some(Kept {
                    metadata: Arc::clone(&metadata),
                    next_check: Instant::now() + shared.refresh_every,
                });
                Ok(metadata)
            }
            Err(error) => match &mut *state {
                Some(kept) => {
                    tracing::warn!(%error, "could not fetch the authorization server metadata again; keeping the document fetched before");
                    kept.next_check = Instant::now() + RETRY_AFTER_FAILED_REFETCH;
                    Ok(Arc::clone(&kept.metadata))
                }
                None => Err(error),
            },
        }
    }

    /// Fetch the document again on next use (as after a token endpoint stops answering).
    pub fn mark_stale(&self) {
        self.shared.stale.store(true, Ordering::Release);
    }

    /// The HTTP client, for the sources built from this discovery.
    pub(crate) fn client(&self) -> Arc<dyn HttpClient> {
        Arc::clone(&self.shared.client)
    }

    /// A source built by `build` from the discovered metadata, on first use and again whenever
    /// the `token_endpoint` changes; `auth_method` (the client authentication method the
    /// source uses, if any) is refused unless the server lists it, and `grant` is the grant
    /// type, checked against `grant_types_supported` (a warning only).
    ///
    /// The sources below are built with this; use it for a source of your own.
    pub fn source<S, F>(
        &self,
        auth_method: Option<&'static str>,
        grant: &'static str,
        build: F,
    ) -> Discovered<S>
    where
        S: TokenSource,
        F: Fn(&Metadata, Arc<dyn HttpClient>) -> Result<S, Error> + Send + Sync + 'static,
    {
        Discovered {
            discovery: self.clone(),
            auth_method,
            grant,
            build: Box::new(build),
            built: Mutex::new(None),
        }
    }

    /// The client credentials grant ([`ClientCredentials`]) at the discovered token endpoint;
    /// `configure` sets the rest (scope, audience, resources, fields).
    pub fn client_credentials(
        &self,
        auth: ClientAuth,
        configure: impl Fn(ClientCredentialsBuilder) -> ClientCredentialsBuilder + Send + Sync + 'static,
    ) -> Discovered<ClientCredentials> {
        let method = auth.method();
        self.source(
            Some(method),
            "client_credentials",
            move |metadata, client| {
                let builder = ClientCredentials::builder(metadata.token_endpoint(), auth.clone())
                    .http_client(client);
                configure(builder).build()
            },
        )
    }

    /// The refresh-token grant ([`RefreshTokenGrant`]) at the discovered token endpoint, with
    /// the discovered `revocation_endpoint` (if any) for
    /// [`RefreshTokenGrant::revoke`]; `configure` sets the rest (client authentication, scope).
    /// `auth_method` is the method of the client authentication `configure` sets, if any.
    pub fn refresh_token<St>(
        &self,
        store: St,
        auth: Option<ClientAuth>,
        configure: impl Fn(RefreshTokenGrantBuilder<St>) -> RefreshTokenGrantBuilder<St>
        + Send
        + Sync
        + 'static,
    ) -> Discovered<RefreshTokenGrant<St>>
    where
        St: RefreshTokenStore + Clone,
    {
        let method = auth.as_ref().map(ClientAuth::method);
        self.source(method, "refresh_token", move |metadata, client| {
            let mut builder = RefreshTokenGrant::builder(metadata.token_endpoint(), store.clone())
                .http_client(client);
            if let Some(auth) = &auth {
                builder = builder.client_auth(auth.clone());
            }
            if let Some(url) = metadata.revocation_endpoint() {
                builder = builder.revocation_url(url);
            }
            configure(builder).build()
        })
    }

    /// The JWT-bearer grant ([`JwtBearer`](super::JwtBearer)) at the discovered token endpoint;
    /// the assertion's audience defaults to it. `configure` sets the rest.
    #[cfg(feature = "__jwt")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))))]
    pub fn jwt_bearer(
        &self,
        assertion: super::assertion::Assertion,
        auth: Option<ClientAuth>,
        configure: impl Fn(super::JwtBearerBuilder) -> super::JwtBearerBuilder + Send + Sync + 'static,
    ) -> Discovered<super::JwtBearer> {
        let method = auth.as_ref().map(ClientAuth::method);
        self.source(
            method,
            super::jwt_bearer::JWT_BEARER_GRANT_TYPE,
            move |metadata, client| {
                let mut builder =
                    super::JwtBearer::builder(metadata.token_endpoint(), assertion.clone())
                        .http_client(client);
                if let Some(auth) = &auth {
                    builder = builder.client_auth(auth.clone());
                }
                configure(builder).build()
            },
        )
    }

    /// The token exchange ([`TokenExchange`](super::TokenExchange), RFC 8693) at the discovered
    /// token endpoint; `configure` sets the subject token and the rest.
    pub fn token_exchange(
        &self,
        auth: Option<ClientAuth>,
        configure: impl Fn(super::TokenExchangeBuilder) -> super::TokenExchangeBuilder
        + Send
        + Sync
        + 'static,
    ) -> Discovered<super::TokenExchange> {
        let method = auth.as_ref().map(ClientAuth::method);
        self.source(
            method,
            super::token_exchange::TOKEN_EXCHANGE_GRANT_TYPE,
            move |metadata, client| {
                let mut builder =
                    super::TokenExchange::builder(metadata.token_endpoint()).http_client(client);
                if let Some(auth) = &auth {
                    builder = builder.client_auth(auth.clone());
                }
                configure(builder).build()
            },
        )
    }
}

impl Shared {
    /// Try each well-known URL in turn, while there is nothing there; the first document
    /// found is checked and returned (a bad one is an error: the next location is not a way
    /// around a document that names another issuer).
    async fn fetch(&self) -> Result<Metadata, Error> {
        for url in &self.urls {
            if let Some(metadata) = self
                .fetch_one(url)
                .await
                .map_err(|e| e.with_host(self.host.clone()))?
            {
                return Ok(metadata);
            }
        }
        Err(Error::config(format!(
            "no authorization server metadata for issuer {}: neither {OAUTH} nor {OIDC} was \
             found (check the issuer URL)",
            self.issuer
        ))
        .with_host(self.host.clone()))
    }

    /// One well-known URL: the document, `None` when there is none there (404, 405, 410), or
    /// an error.
    async fn fetch_one(&self, url: &Uri) -> Result<Option<Metadata>, Error> {
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = url.clone();
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        let response = self.client.execute(request).await?;
        let status = response.status();
        tracing::debug!(host = %self.host, path = url.path(), status = status.as_u16(), "authorization server metadata answered");
        if matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::GONE
        ) {
            return Ok(None);
        }
        let err = |e: Error| e.with_status(status);
        if status.is_redirection() {
            return Err(err(Error::invalid_response(
                "the authorization server metadata URL answered with a redirect, which is not \
                 followed: check the issuer URL",
            )));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(err(Error::transient(
                "the authorization server metadata is unavailable",
            )));
        }
        if !status.is_success() {
            return Err(err(Error::invalid_response(
                "the authorization server metadata URL answered with an unexpected status",
            )));
        }
        let json = response.headers().get(CONTENT_TYPE).is_none_or(|v| {
            let essence = v
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !json {
            return Err(err(Error::invalid_response(
                "the authorization server metadata is not JSON (wrong content type)",
            )));
        }
        let metadata = parse(response.body(), &self.issuer).map_err(err)?;
        Ok(Some(metadata))
    }
}

/// Read and check a metadata document for `issuer`.
fn parse(body: &[u8], issuer: &str) -> Result<Metadata, Error> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        Error::invalid_response("the authorization server metadata is not valid JSON")
    })?;
    let object = value.as_object().ok_or_else(|| {
        Error::invalid_response("the authorization server metadata is not a JSON object")
    })?;
    for field in ["issuer", "token_endpoint"] {
        match object.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => {}
            Some(_) => {
                return Err(Error::invalid_response(format!(
                    "the authorization server metadata's `{field}` is not a URL string"
                )));
            }
            None => {
                return Err(Error::invalid_response(format!(
                    "the authorization server metadata has no `{field}`"
                )));
            }
        }
    }
    let metadata: Metadata = serde_json::from_value(value).map_err(|_| {
        Error::invalid_response(
            "the authorization server metadata has a field of the wrong type (a list that is \
             not a list of strings, an endpoint that is not a string)",
        )
    })?;
    // RFC 8414 §3.3: the issuer in the document must be identical to the one configured, or a
    // document from elsewhere could send our credentials to its token endpoint.
    if metadata.issuer != issuer {
        return Err(Error::invalid_response(format!(
            "the authorization server metadata names the issuer {}, not the configured {issuer} \
             (RFC 8414 §3.3 requires them identical, trailing slash included)",
            shown(&metadata.issuer)
        )));
    }
    check_endpoint(&metadata.token_endpoint, "token_endpoint")?;
    if let Some(url) = &metadata.revocation_endpoint {
        check_endpoint(url, "revocation_endpoint")?;
    }
    Ok(metadata)
}

/// An endpoint from the document: an absolute URL that credentials may go to.
fn check_endpoint(url: &str, field: &str) -> Result<(), Error> {
    let uri: Uri = url.parse().map_err(|_| {
        Error::invalid_response(format!(
            "the authorization server metadata's `{field}` is not a valid URL"
        ))
    })?;
    check_token_url(&uri).map_err(|e| {
        Error::invalid_response(format!(
            "the authorization server metadata's `{field}` is not a place to send credentials: {}",
            e.message()
        ))
    })
}

/// A value from the server, shown in an error: printable and short.
fn shown(value: &str) -> String {
    let printable = value.chars().all(|c| !c.is_control());
    if printable && value.len() <= 200 {
        format!("{value:?}")
    } else {
        "(an unprintable or overlong value)".to_owned()
    }
}

fn shown_list(values: &[&str]) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    values
        .iter()
        .map(|v| shown(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The well-known URLs for `issuer`: RFC 8414 §3.1 (inserted before the path), then OpenID
/// Connect Discovery §4 (appended to the path).
fn well_known_urls(issuer: &Uri) -> Result<Vec<Uri>, Error> {
    let scheme = issuer.scheme_str().unwrap_or("https");
    let authority = issuer.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = issuer.path().trim_end_matches('/');
    [
        format!("{scheme}://{authority}{OAUTH}{path}"),
        format!("{scheme}://{authority}{path}{OIDC}"),
    ]
    .into_iter()
    .map(|url| {
        url.parse()
            .map_err(|_| Error::config("the issuer URL cannot form a well-known URL"))
    })
    .collect()
}

/// Builds a [`Discovery`]; see [`Discovery::builder`].
pub struct DiscoveryBuilder {
    issuer: String,
    client: Option<Arc<dyn HttpClient>>,
    refresh_every: Duration,
}

impl DiscoveryBuilder {
    /// The HTTP client for the metadata and for the sources built from it (default:
    /// [`ReqwestClient`](crate::http_client::ReqwestClient)).
    pub fn http_client(mut self, client: impl HttpClient) -> Self {
        self.client = Some(Arc::new(client));
        self
    }

    /// Fetch the document again after this long (default [`DEFAULT_REFRESH_EVERY`], an hour).
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Check the issuer URL and build. Does no I/O.
    pub fn build(self) -> Result<Discovery, Error> {
        let invalid = |why: &str| Error::config(format!("the issuer URL is not usable: {why}"));
        let uri: Uri = self
            .issuer
            .parse()
            .map_err(|_| invalid("not a valid URL"))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(invalid("not an absolute URL"));
        }
        if uri.query().is_some() || self.issuer.contains('#') {
            return Err(invalid("an issuer has no query or fragment (RFC 8414 §2)"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid("an issuer has no user info"));
        }
        check_token_url(&uri)?;
        let host = uri.host().unwrap_or_default().to_owned();
        let client = match self.client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(Discovery {
            shared: Arc::new(Shared {
                urls: well_known_urls(&uri)?,
                issuer: self.issuer,
                host,
                client,
                refresh_every: self.refresh_every,
                state: tokio::sync::Mutex::new(None),
                stale: AtomicBool::new(false),
            }),
        })
    }
}

type Build<S> = dyn Fn(&Metadata, Arc<dyn HttpClient>) -> Result<S, Error> + Send + Sync;

/// A [`TokenSource`] built from discovered metadata: made by [`Discovery::client_credentials`]
/// and its siblings.
///
/// Each fetch asks the [`Discovery`] for the metadata (kept, so this is a lock and a clock
/// read), builds the source the first time and again when the `token_endpoint` changes, and
/// fetches from it. A transport failure, a 5xx or a 404 from the token endpoint marks the
/// metadata stale, so the next fetch (after the cache's backoff) reads it again.
pub struct Discovered<S> {
    discovery: Discovery,
    auth_method: Option<&'static str>,
    grant: &'static str,
    build: Box<Build<S>>,
    built: Mutex<Option<(Arc<Metadata>, Arc<S>)>>,
}

impl<S: TokenSource> Discovered<S> {
    /// The source for the current metadata, built if need be: to call methods of its own
    /// (such as [`RefreshTokenGrant::revoke`]).
    pub async fn get(&self) -> Result<Arc<S>, Error> {
        let metadata = self.discovery.metadata().await?;
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *built {
            Some((seen, source)) if Arc::ptr_eq(seen, &metadata) => return Ok(Arc::clone(source)),
            // A new document with the same token endpoint: keep the source (and whatever it
            // holds, such as a rotated refresh token not saved yet).
            Some((seen, source))
                if seen.token_endpoint == metadata.token_endpoint
                    && seen.token_endpoint_auth_methods_supported
                        == metadata.token_endpoint_auth_methods_supported =>
            {
                *seen = metadata;
                return Ok(Arc::clone(source));
            }
            _ => {}
        }
        if let Some(method) = self.auth_method {
            metadata.check_auth_method(method)?;
        }
        metadata.check_grant(self.grant);
        let source = Arc::new((self.build)(&metadata, self.discovery.client())?);
        *built = Some((metadata, Arc::clone(&source)));
        Ok(source)
    }

    /// The discovery this source reads.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }
}

/// A token endpoint that no longer answers as one: the metadata may have moved it.
fn stopped_answering(error: &Error) -> bool {
    error.kind() == ErrorKind::Transient && error.status() != Some(StatusCode::TOO_MANY_REQUESTS)
        || error.kind() == ErrorKind::Config && error.status() == Some(StatusCode::NOT_FOUND)
}

impl<S: TokenSource> TokenSource for Discovered<S> {
    async fn fetch(&self) -> Result<Token, Error> {
        let source = self.get().await?;
        let result = source.fetch().await;
        if let Err(error) = &result
            && stopped_answering(error)
        {
            tracing::info!(%error, "the token endpoint stopped answering; the authorization server metadata will be fetched again");
            self.discovery.mark_stale();
        }
        result
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &self.shared.issuer)
            .field("refresh_every", &self.shared.refresh_every)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryBuilder")
            .field("issuer", &self.issuer)
            .field("refresh_every", &self.refresh_every)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for Discovered<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovered")
            .field("issuer", &self.discovery.shared.issuer)
            .field("auth_method", &self.auth_method)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> Vec<String> {
        well_known_urls(&issuer.parse().unwrap())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn well_known_urls_insert_before_the_path_then_append() {
        assert_eq!(
            urls("https://auth.example.com"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            urls("https://auth.example.com/tenant/v2/"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant/v2",
                "https://auth.example.com/tenant/v2/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn issuer_urls_that_cannot_be_issuers_are_refused() {
        for bad in [
            "auth.example.com",
            "http://auth.example.com",
            "https://auth.example.com/?x=1",
            "https://auth.example.com/#f",
            "https://user@auth.example.com",
            "not a url",
        ] {
            let err = Discovery::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
        assert!(Discovery::new("http://127.0.0.1:8080/realms/x").is_ok());
    }

    #[test]
    fn documents_are_checked() {
        let issuer = "https://auth.example.com";
        let ok = r#"{"issuer":"https://auth.example.com","token_endpoint":"https://auth.example.com/token"}"#;
        assert_eq!(
            parse(ok.as_bytes(), issuer).unwrap().token_endpoint(),
            "https://auth.example.com/token"
        );
        for (body, says) in [
            ("not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"token_endpoint":"https://a/t"}"#, "no `issuer`"),
            (
                r#"{"issuer":"https://auth.example.com"}"#,
                "no `token_endpoint`",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":7}"#,
                "not a URL string",
            ),
            (
                r#"{"issuer":"https://evil.example.com","token_endpoint":"https://evil.example.com/t"}"#,
                "\"https://evil.example.com\", not the configured",
            ),
            (
                r#"{"issuer":"https://auth.example.com/","token_endpoint":"https://auth.example.com/t"}"#,
                "trailing slash",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"http://auth.example.com/t"}"#,
                "must use https",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"/token"}"#,
                "`token_endpoint`",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"https://a/t","token_endpoint_auth_methods_supported":"client_secret_basic"}"#,
                "wrong type",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"https://a/t","revocation_endpoint":"http://a/r"}"#,
                "`revocation_endpoint`",
            ),
        ] {
            let err = parse(body.as_bytes(), issuer).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{body}");
            assert!(err.to_string().contains(says), "{body}: {err}");
        }
    }

    #[test]
    fn auth_methods_default_to_client_secret_basic() {
        let m: Metadata =
            serde_json::from_str(r#"{"issuer":"https://a","token_endpoint":"https://a/t"}"#)
                .unwrap();
        assert!(m.check_auth_method("client_secret_basic").is_ok());
        let err = m.check_auth_method("client_secret_post").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("`client_secret_post`"), "{err}");
        assert!(err.to_string().contains("\"client_secret_basic\""), "{err}");
    }
}
