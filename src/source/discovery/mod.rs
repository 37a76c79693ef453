//! [`Discovery`] and what it needs (documented there).

mod discovered;
mod metadata;

use crate::source::builder::build_options;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use tokio::time::Instant;

pub use discovered::Discovered;
pub use metadata::Metadata;

use super::client_auth::ClientAuth;
use super::client_credentials::{ClientCredentials, ClientCredentialsBuilder};
use super::endpoint::default_client;
use super::refresh_token::{RefreshTokenGrant, RefreshTokenGrantBuilder};
use crate::http_client::{HttpClient, check_token_url};
use crate::store::RefreshTokenStore;
use crate::{Error, TokenSource};

/// The default [`refresh_every`](DiscoveryBuilder::refresh_every): an hour.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// How long a document is kept, after a refetch failed, before the next attempt.
const RETRY_AFTER_FAILED_REFETCH: Duration = Duration::from_secs(30);

/// The well-known suffixes tried, in order.
const OAUTH: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

/// An issuer's metadata, fetched on first use and kept.
///
/// [`Discovery`]: find the token endpoint from the issuer (RFC 8414, OpenID Connect Discovery
/// 1.0), and build the token sources from it.
///
/// The authorization server metadata is fetched from
/// `/.well-known/oauth-authorization-server` (RFC 8414 §3.1: for an issuer with a path, the
/// well-known segment goes *between* the host and the path), then, if that is not found, from
/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery §4). The document must
/// name the configured issuer exactly (RFC 8414 §3.3) and give a `token_endpoint` that is
/// `https` (or loopback, from a loopback issuer only); a source whose client authentication method the server does not list
/// in `token_endpoint_auth_methods_supported` (default `client_secret_basic`, RFC 8414 §2) is
/// refused. The document is fetched on first use, kept, and fetched again on a schedule
/// ([`refresh_every`](DiscoveryBuilder::refresh_every), an hour by default) and after the token
/// endpoint stops answering (a transport failure, a 5xx, a 404); a failed refetch keeps the
/// document it had. The fetches go through the same [`HttpClient`] as token requests, with the
/// same hardening: `https` except to loopback, no redirects, a size cap and a timeout.
///
/// The grants built here take a `configure` closure for the rest of their builder. It is
/// called on every build, and once when the source is made (on a builder that is never
/// built), so that the source declares its DPoP key (`TokenSource::dpop`) before discovery
/// runs: the fleet tier files and adopts even the first token under the right binding. Give
/// it the same key every time (made once, outside the closure); a build with another key is
/// refused.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, secret::ClientSecret, source::{ClientAuth, Discovery}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_bearer::Error> {
/// # // An authorization server on 127.0.0.1 publishing its metadata and issuing tokens.
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// # let base = format!("http://{}", listener.local_addr().unwrap());
/// # let issuer = base.clone();
/// # let app = axum::Router::new()
/// #     .route("/.well-known/oauth-authorization-server", axum::routing::get(move || {
/// #         let issuer = issuer.clone();
/// #         async move { axum::Json(serde_json::json!({
/// #             "issuer": issuer,
/// #             "token_endpoint": format!("{issuer}/oauth2/token"),
/// #             "token_endpoint_auth_methods_supported": ["client_secret_basic"],
/// #         })) }
/// #     }))
/// #     .route("/oauth2/token", axum::routing::post(|| async {
/// #         axum::Json(serde_json::json!({"access_token": "abc", "token_type": "Bearer", "expires_in": 3600}))
/// #     }));
/// # tokio::spawn(async move { axum::serve(listener, app).await });
/// let discovery = Discovery::new(&base)?; // the issuer, e.g. "https://auth.example.com"
/// let source = discovery.client_credentials(
///     ClientAuth::client_secret_basic("my-client", ClientSecret::new("s3cr3t")),
///     |builder| builder.scope("orders:read"),
/// );
/// let layer = BearerAuthLayer::new(source);
/// assert_eq!(layer.cache().token().await?.secret(), "abc");
/// assert!(discovery.metadata().await?.token_endpoint().ends_with("/oauth2/token"));
/// # Ok(()) }
/// ```
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

impl Discovery {
    /// Discovery for `issuer` with the default HTTP client and schedule. Checks the URL (an
    /// absolute `https` URL, or `http` to loopback, without query or fragment); does no I/O.
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
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
                    next_check: crate::time::after(shared.refresh_every),
                });
                Ok(metadata)
            }
            Err(error) => match &mut *state {
                Some(kept) => {
                    tracing::warn!(%error, "could not fetch the authorization server metadata again; keeping the document fetched before");
                    kept.next_check = crate::time::after(RETRY_AFTER_FAILED_REFETCH);
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
    /// The sources below are built with this; use it for a source of your own. Such a
    /// source's DPoP key and certificate are known only once it is built, so until its first
    /// fetch it says [`binding_known`](TokenSource::binding_known) no, and the fleet tier
    /// makes that fetch without sharing.
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
        Discovered::new(self.clone(), auth_method, grant, Box::new(build))
    }

    /// The client credentials grant ([`ClientCredentials`]) at the discovered token endpoint;
    /// `configure` sets the rest (scope, audience, resources, fields).
    pub fn client_credentials(
        &self,
        auth: ClientAuth,
        configure: impl Fn(ClientCredentialsBuilder) -> ClientCredentialsBuilder + Send + Sync + 'static,
    ) -> Discovered<ClientCredentials> {
        let method = auth.method();
        let declared = auth.clone();
        let probe = configure(ClientCredentials::builder(self.issuer(), auth.clone()));
        self.source(
            Some(method),
            "client_credentials",
            move |metadata, client| {
                let builder = ClientCredentials::builder(metadata.token_endpoint(), auth.clone());
                configure(builder).build_with(client)
            },
        )
        .declaring(Some(&declared), &probe)
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
        let declared = auth.clone();
        let probe = configure(RefreshTokenGrant::builder(self.issuer(), store.clone()));
        self.source(method, "refresh_token", move |metadata, client| {
            let mut builder = RefreshTokenGrant::builder(metadata.token_endpoint(), store.clone());
            if let Some(auth) = &auth {
                builder = builder.client_auth(auth.clone());
            }
            if let Some(url) = metadata.revocation_endpoint() {
                builder = builder.revocation_url(url);
            }
            configure(builder).build_with(client)
        })
        .declaring(declared.as_ref(), &probe)
    }

    /// The JWT-bearer grant ([`JwtBearer`](super::JwtBearer)) at the discovered token endpoint;
    /// the assertion's audience defaults to it. `configure` sets the rest.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_bearer(
        &self,
        assertion: super::assertion::Assertion,
        auth: Option<ClientAuth>,
        configure: impl Fn(super::JwtBearerBuilder) -> super::JwtBearerBuilder + Send + Sync + 'static,
    ) -> Discovered<super::JwtBearer> {
        let method = auth.as_ref().map(ClientAuth::method);
        let declared = auth.clone();
        let probe = configure(super::JwtBearer::builder(self.issuer(), assertion.clone()));
        self.source(
            method,
            super::jwt_bearer::JWT_BEARER_GRANT_TYPE,
            move |metadata, client| {
                let mut builder =
                    super::JwtBearer::builder(metadata.token_endpoint(), assertion.clone());
                if let Some(auth) = &auth {
                    builder = builder.client_auth(auth.clone());
                }
                configure(builder).build_with(client)
            },
        )
        .declaring(declared.as_ref(), &probe)
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
        let declared = auth.clone();
        let probe = configure(super::TokenExchange::builder(self.issuer()));
        self.source(
            method,
            super::token_exchange::TOKEN_EXCHANGE_GRANT_TYPE,
            move |metadata, client| {
                let mut builder = super::TokenExchange::builder(metadata.token_endpoint());
                if let Some(auth) = &auth {
                    builder = builder.client_auth(auth.clone());
                }
                configure(builder).build_with(client)
            },
        )
        .declaring(declared.as_ref(), &probe)
    }
}

macro_rules! declares_dpop {
    ($($builder:ty $(, $generic:ident: $bound:path)?;)*) => {$(
        impl$(<$generic: $bound>)? discovered::DeclaresDpop for $builder {
            #[cfg(feature = "dpop")]
            fn declared_dpop(&self) -> Option<&crate::dpop::Dpop> {
                self.grant.dpop()
            }
        }
    )*};
}

declares_dpop! {
    ClientCredentialsBuilder;
    RefreshTokenGrantBuilder<St>, St: RefreshTokenStore;
    super::TokenExchangeBuilder;
}
#[cfg(feature = "jwt")]
declares_dpop! {
    super::JwtBearerBuilder;
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
        let response = crate::http_client::traced(&*self.client, request).await?;
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
        let metadata = metadata::parse(response.body(), &self.issuer).map_err(err)?;
        Ok(Some(metadata))
    }
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
    /// Fetch the document again after this long (default [`DEFAULT_REFRESH_EVERY`], an hour).
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    build_options! {
        /// Check the issuer URL and build. Does no I/O.
        build -> Discovery;
        client at client;
        calls "the endpoint";
    }

    fn finish(self) -> Result<Discovery, Error> {
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
    #[cfg(feature = "reqwest")]
    fn issuer_urls_that_cannot_be_issuers_are_refused() {
        use crate::ErrorKind;

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
}
