//! [`ManagedIdentity`]: tokens from the platform's metadata server (Azure IMDS, Azure App
//! Service, the Google metadata server).

use crate::source::builder::build_options;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::http_client::{HttpClient, HttpResponse};
use crate::secret::ClientSecret;
use crate::source::endpoint::{Endpoint, check_status};
use crate::source::token_response::{TokenFields, TokenResponse};
use crate::{Error, Token, TokenSource};

/// Azure IMDS's token endpoint (plain http to the link-local address, by design).
pub const AZURE_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// The Google metadata server's host.
pub const GOOGLE_METADATA_HOST: &str = "metadata.google.internal";

const REFUSED: &str = "the metadata server refused to issue a token (is a managed identity assigned, and the resource or scope right?)";

/// Which metadata server, and so which protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Platform {
    AzureImds,
    AppService,
    Google,
}

impl Platform {
    fn name(self) -> &'static str {
        match self {
            Platform::AzureImds => "Azure IMDS",
            Platform::AppService => "the App Service identity endpoint",
            Platform::Google => "the Google metadata server",
        }
    }
}

/// Tokens from the metadata server of the platform the program runs on, with no credential
/// of its own: the platform knows which machine or app is asking.
///
/// | constructor | platform | request |
/// |---|---|---|
/// | [`azure_imds`](Self::azure_imds) | Azure VMs, VM scale sets, AKS node identity | `GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R`, `Metadata: true` |
/// | [`app_service`](Self::app_service) | Azure App Service, Functions, Container Apps | `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=R`, `X-IDENTITY-HEADER: $IDENTITY_HEADER` |
/// | [`google`](Self::google) | GCE, GKE, Cloud Run | `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`, `Metadata-Flavor: Google` |
///
/// The answers give `expires_in` (Azure IMDS as a string), `expires_on` (App Service, epoch
/// seconds as a string), or both; either sets the lifetime. An answer that is an HTML page (a
/// proxy, a captive portal, a program that is not where it thinks it is) is an
/// [`InvalidResponse`](crate::ErrorKind::InvalidResponse) error, and so is a Google answer
/// without `Metadata-Flavor: Google`.
///
/// These endpoints are plain `http` by the platforms' design; the exception to the crate's
/// https rule is as narrow as the loopback one (see [the module docs](super#plain-http-to-metadata-servers)).
/// Nothing probes the real addresses: a `ManagedIdentity` calls its endpoint only when the
/// cache asks it for a token, and every endpoint can be overridden (`.endpoint(..)`,
/// `GCE_METADATA_HOST`, `IDENTITY_ENDPOINT`, `AZURE_POD_IDENTITY_AUTHORITY_HOST`), as the tests
/// do to point it at 127.0.0.1.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, source::workload::ManagedIdentity};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let source = ManagedIdentity::azure_imds("https://vault.azure.net")
///     .client_id("user-assigned-client-id")
///     .build()?;
/// let layer = BearerAuthLayer::new(source);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ManagedIdentity {
    endpoint: Endpoint,
    platform: Platform,
    query: Vec<(&'static str, String)>,
    /// `Metadata: true`, `X-IDENTITY-HEADER` (sensitive) or `Metadata-Flavor: Google`.
    headers: HeaderMap,
}

impl ManagedIdentity {
    /// Azure IMDS, for `resource` (`https://management.azure.com/`, ...). With a
    /// user-assigned identity, say which with [`client_id`](ManagedIdentityBuilder::client_id).
    pub fn azure_imds(resource: impl Into<String>) -> ManagedIdentityBuilder {
        ManagedIdentityBuilder::new(Platform::AzureImds, Some(resource.into()))
    }

    /// The App Service (and Functions, Container Apps) identity endpoint, for `resource`: its
    /// URL and secret header come from `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`
    /// ([`from_env`](ManagedIdentityBuilder::from_env)) or from
    /// [`endpoint`](ManagedIdentityBuilder::endpoint) and
    /// [`identity_header`](ManagedIdentityBuilder::identity_header).
    pub fn app_service(resource: impl Into<String>) -> ManagedIdentityBuilder {
        ManagedIdentityBuilder::new(Platform::AppService, Some(resource.into()))
    }

    /// The Google metadata server: the access token of the instance's default service
    /// account, unless [`service_account`](ManagedIdentityBuilder::service_account) says
    /// another.
    pub fn google() -> ManagedIdentityBuilder {
        ManagedIdentityBuilder::new(Platform::Google, None)
    }

    async fn request(&self) -> Result<Token, Error> {
        let query: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let response = self
            .endpoint
            .send(Method::GET, &query, self.headers.clone())
            .await?;
        self.judge(&response)
            .map_err(|e| self.endpoint.tag(e.with_status(response.status())))
    }

    fn judge(&self, response: &HttpResponse) -> Result<Token, Error> {
        if is_html(response) {
            return Err(Error::invalid_response(format!(
                "{} answered with an HTML page, not a token: something else is answering at \
                 its address (a proxy, a captive portal), or the program is not running on \
                 that platform",
                self.platform.name()
            )));
        }
        if self.platform == Platform::Google
            && response
                .headers()
                .get("metadata-flavor")
                .is_none_or(|v| v != "Google")
        {
            return Err(Error::invalid_response(
                "the answer did not come from a Google metadata server (no `Metadata-Flavor: \
                 Google` header)",
            ));
        }
        // IMDS answers 410 while it starts up, and asks to be retried.
        if self.platform == Platform::AzureImds && response.status() == StatusCode::GONE {
            return Err(Error::transient("Azure IMDS is not ready yet"));
        }
        check_status(response, REFUSED)?;
        TokenResponse::parse(response, &TokenFields::oauth2(), REFUSED)?.into_token(true)
    }
}

/// An HTML page: by content type, or by its first byte.
fn is_html(response: &HttpResponse) -> bool {
    let html_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    html_type || response.body().trim_ascii_start().starts_with(b"<")
}

impl TokenSource for ManagedIdentity {
    async fn fetch(&self) -> Result<Token, Error> {
        self.request().await
    }
}

/// Configures a [`ManagedIdentity`].
pub struct ManagedIdentityBuilder {
    platform: Platform,
    resource: Option<String>,
    client_id: Option<String>,
    scopes: Vec<String>,
    service_account: String,
    endpoint: Option<String>,
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` (IMDS) or `GCE_METADATA_HOST` (Google).
    host_override: Option<String>,
    identity_header: Option<ClientSecret>,
    client: Option<Arc<dyn HttpClient>>,
}

impl ManagedIdentityBuilder {
    fn new(platform: Platform, resource: Option<String>) -> Self {
        ManagedIdentityBuilder {
            platform,
            resource,
            client_id: None,
            scopes: Vec::new(),
            service_account: "default".to_owned(),
            endpoint: None,
            host_override: None,
            identity_header: None,
            client: None,
        }
    }

    /// Azure: the client id of a user-assigned identity (`client_id`). Default: the
    /// system-assigned one.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Google: the OAuth scopes to ask for (`scopes`, comma-separated). Default: the
    /// instance's.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Google: the service account (its email, or `default`).
    pub fn service_account(mut self, account: impl Into<String>) -> Self {
        self.service_account = account.into();
        self
    }

    /// The token endpoint's full URL, instead of the platform's (a stand-in in tests, an
    /// emulator): `https`, or plain `http` to loopback, a link-local address or
    /// `metadata.google.internal`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// App Service: the secret `X-IDENTITY-HEADER` value (`IDENTITY_HEADER`).
    pub fn identity_header(mut self, value: impl Into<String>) -> Self {
        self.identity_header = Some(ClientSecret::new(value));
        self
    }

    /// Fill what is not set yet from the process environment: `IDENTITY_ENDPOINT` and
    /// `IDENTITY_HEADER` (App Service), `GCE_METADATA_HOST` (Google: `host[:port]`),
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` (IMDS: a base URL).
    pub fn from_env(self) -> Self {
        self.from_env_with(super::process_env)
    }

    /// [`from_env`](Self::from_env) with the variables read through `env`.
    pub fn from_env_with(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let env: &dyn Fn(&str) -> Option<String> = &env;
        match self.platform {
            Platform::AppService => {
                self.endpoint = self
                    .endpoint
                    .or_else(|| super::var(env, "IDENTITY_ENDPOINT"));
                self.identity_header = self
                    .identity_header
                    .or_else(|| super::var(env, "IDENTITY_HEADER").map(ClientSecret::new));
            }
            Platform::Google => {
                self.host_override = self
                    .host_override
                    .or_else(|| super::var(env, "GCE_METADATA_HOST"));
            }
            Platform::AzureImds => {
                self.host_override = self
                    .host_override
                    .or_else(|| super::var(env, "AZURE_POD_IDENTITY_AUTHORITY_HOST"));
            }
        }
        self
    }

    build_options! {
        /// Check the configuration and build the source. Does no I/O.
        build -> ManagedIdentity;
        client at client;
        calls "the metadata endpoint";
    }

    fn finish(self) -> Result<ManagedIdentity, Error> {
        let mut headers = HeaderMap::new();
        let mut query: Vec<(&'static str, String)> = Vec::new();
        let url = match self.platform {
            Platform::AzureImds => {
                headers.insert("metadata", HeaderValue::from_static("true"));
                query.push(("api-version", "2018-02-01".to_owned()));
                match (self.endpoint, self.host_override) {
                    (Some(url), _) => url,
                    (None, Some(base)) => format!(
                        "{}/metadata/identity/oauth2/token",
                        base.trim_end_matches('/')
                    ),
                    (None, None) => AZURE_IMDS_ENDPOINT.to_owned(),
                }
            }
            Platform::AppService => {
                let (Some(url), Some(secret)) = (self.endpoint, self.identity_header) else {
                    return Err(Error::config(
                        "the App Service identity endpoint needs IDENTITY_ENDPOINT and \
                         IDENTITY_HEADER (or `endpoint(..)` and `identity_header(..)`)",
                    ));
                };
                let mut value = HeaderValue::from_str(secret.secret())
                    .map_err(|_| Error::config("IDENTITY_HEADER is not a valid header value"))?;
                value.set_sensitive(true);
                headers.insert(HeaderName::from_static("x-identity-header"), value);
                query.push(("api-version", "2019-08-01".to_owned()));
                url
            }
            Platform::Google => {
                headers.insert("metadata-flavor", HeaderValue::from_static("Google"));
                let account = &self.service_account;
                if account.is_empty()
                    || !account.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_')
                    })
                {
                    return Err(Error::config(
                        "the Google service account is not an email address or `default`",
                    ));
                }
                if !self.scopes.is_empty() {
                    query.push(("scopes", self.scopes.join(",")));
                }
                match self.endpoint {
                    Some(url) => url,
                    None => {
                        let host = self
                            .host_override
                            .as_deref()
                            .unwrap_or(GOOGLE_METADATA_HOST);
                        if host.contains(['/', '?', '#', '@']) {
                            return Err(Error::config(
                                "GCE_METADATA_HOST must be a host and optional port",
                            ));
                        }
                        format!(
                            "http://{host}/computeMetadata/v1/instance/service-accounts/{account}/token"
                        )
                    }
                }
            }
        };
        if let Some(resource) = self.resource {
            query.push(("resource", resource));
        }
        if let Some(client_id) = self.client_id {
            query.push(("client_id", client_id));
        }
        Ok(ManagedIdentity {
            endpoint: Endpoint::metadata(&url, self.client)?,
            platform: self.platform,
            query,
            headers,
        })
    }
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the headers: App Service's is a secret.
        f.debug_struct("ManagedIdentity")
            .field("platform", &self.platform.name())
            .field("endpoint", &self.endpoint)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ManagedIdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityBuilder")
            .field("platform", &self.platform.name())
            .field("resource", &self.resource)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("service_account", &self.service_account)
            .field("identity_header", &self.identity_header)
            .finish_non_exhaustive()
    }
}
