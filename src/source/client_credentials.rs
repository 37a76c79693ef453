//! [`ClientCredentials`] and what it needs (documented there).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::client_auth::ClientAuth;
use super::endpoint::Form;
use super::grant::{GrantConfig, GrantEndpoint, grant_builder_options, grant_source_keys};
use crate::http_client::HttpClient;
use crate::{Error, Token, TokenSource};

const REFUSED: &str = "the token endpoint refused the client credentials request";

/// A [`TokenSource`] for the client credentials grant.
///
/// [`ClientCredentials`]: the OAuth 2.0 client credentials grant (RFC 6749 §4.4), with every
/// client authentication method of [`ClientAuth`].
///
/// ```text
/// POST {token_url}
/// Content-Type: application/x-www-form-urlencoded
///
/// grant_type=client_credentials&scope=...&audience=...&resource=...   (+ client authentication)
/// ```
///
/// ```
/// use tower_bearer::{BearerAuthLayer, secret::ClientSecret, source::{ClientAuth, ClientCredentials}};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let source = ClientCredentials::builder(
///     "https://auth.example.com/oauth2/token",
///     ClientAuth::client_secret_basic("my-client", ClientSecret::new("s3cr3t")),
/// )
/// .scope("orders:read orders:write")
/// .audience("https://api.example.com")
/// .build()?;
/// let layer = BearerAuthLayer::new(source);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    grant: GrantEndpoint<ClientAuth>,
    params: Vec<(Cow<'static, str>, String)>,
}

impl ClientCredentials {
    /// Start configuring the grant against `token_url`, authenticating with `auth`.
    pub fn builder(token_url: impl Into<String>, auth: ClientAuth) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            grant: GrantConfig::new(token_url.into(), auth),
            params: Vec::new(),
        }
    }

    /// How the client authenticates.
    pub fn client_auth(&self) -> &ClientAuth {
        &self.grant.auth
    }
}

/// Configures [`ClientCredentials`].
pub struct ClientCredentialsBuilder {
    pub(super) grant: GrantConfig<ClientAuth>,
    params: Vec<(Cow<'static, str>, String)>,
}

impl ClientCredentialsBuilder {
    /// The `scope` parameter: space-separated scopes (RFC 6749 §3.3). Replaces an earlier one.
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.replace("scope", scope)
    }

    /// The `audience` parameter some servers (Auth0, Okta custom servers) use to pick the API.
    /// Replaces an earlier one.
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.replace("audience", audience)
    }

    /// A `resource` parameter (RFC 8707); call once per resource.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Any other form parameter. Not for secrets: use [`ClientAuth`] for those.
    pub fn param(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    fn replace(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.params.retain(|(n, _)| n != name);
        self.param(name, value)
    }

    /// For the crate's sources that wrap this one and take their client as an option (the
    /// workload sources): `client`, or the default one.
    pub(crate) fn build_with_option(
        mut self,
        client: Option<Arc<dyn HttpClient>>,
    ) -> Result<ClientCredentials, Error> {
        self.grant.client = client;
        self.finish()
    }

    grant_builder_options! {
        /// Check the URL and build the source. Does no I/O.
        build -> ClientCredentials;
    }

    fn finish(self) -> Result<ClientCredentials, Error> {
        Ok(ClientCredentials {
            grant: self.grant.build()?,
            params: self.params,
        })
    }
}

impl TokenSource for ClientCredentials {
    async fn fetch(&self) -> Result<Token, Error> {
        let mut form = Form::new("client_credentials");
        for (name, value) in &self.params {
            form.push(name.clone(), value);
        }
        self.grant.token(form, REFUSED).await
    }

    grant_source_keys!(grant);
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.grant.endpoint)
            .field("auth", &self.grant.auth)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("auth", &self.grant.auth)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}
