//! [`ClientCredentials`] and what it needs (documented there).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::client_auth::ClientAuth;
use super::endpoint::{Endpoint, Form};
use super::token_response::TokenFields;
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
    endpoint: Endpoint,
    auth: ClientAuth,
    params: Vec<(Cow<'static, str>, String)>,
    fields: TokenFields,
}

impl ClientCredentials {
    /// Start configuring the grant against `token_url`, authenticating with `auth`.
    pub fn builder(token_url: impl Into<String>, auth: ClientAuth) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            token_url: token_url.into(),
            auth,
            params: Vec::new(),
            fields: TokenFields::oauth2(),
            client: None,
            #[cfg(feature = "dpop")]
            dpop: None,
        }
    }

    /// How the client authenticates.
    pub fn client_auth(&self) -> &ClientAuth {
        &self.auth
    }
}

/// Configures [`ClientCredentials`].
pub struct ClientCredentialsBuilder {
    token_url: String,
    auth: ClientAuth,
    params: Vec<(Cow<'static, str>, String)>,
    fields: TokenFields,
    client: Option<Arc<dyn HttpClient>>,
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::Dpop>,
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

    /// The field names of the answer (default [`TokenFields::oauth2`]).
    pub fn fields(mut self, fields: TokenFields) -> Self {
        self.fields = fields;
        self
    }

    /// Ask for DPoP-bound tokens (RFC 9449): every token request carries a proof signed
    /// with `dpop`'s key, the answer must have `token_type` `DPoP` (a `Bearer` one is refused),
    /// and the tokens are bound to the key ([`Token::with_dpop`](crate::Token::with_dpop)):
    /// the layer or middleware signs each request's proof with it.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn dpop(mut self, dpop: crate::dpop::Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// The DPoP key set so far: what a [`Discovered`](crate::source::Discovered) source declares
    /// before it is built.
    #[cfg(feature = "dpop")]
    pub(crate) fn dpop_key(&self) -> Option<&crate::dpop::Dpop> {
        self.dpop.as_ref()
    }

    /// Check the URL and build the source. Does no I/O.
    ///
    /// The endpoint is called through the HTTP client every source shares by default (a
    /// [`ReqwestClient`](crate::http_client::ReqwestClient)); [`build_with`](Self::build_with)
    /// takes yours.
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn build(self) -> Result<ClientCredentials, Error> {
        self.finish()
    }

    /// Build as `build()` does, calling the endpoint through `client`: your
    /// `reqwest::Client`, a `ClientWithMiddleware`, a tower client through
    /// [`from_service`](crate::http_client::from_service), or any [`HttpClient`].
    pub fn build_with(mut self, client: impl HttpClient) -> Result<ClientCredentials, Error> {
        self.client = Some(Arc::new(client));
        self.finish()
    }

    /// For the crate's sources that wrap this one and take their client as an option (the
    /// workload sources): `client`, or the default one.
    pub(crate) fn build_with_option(
        mut self,
        client: Option<Arc<dyn HttpClient>>,
    ) -> Result<ClientCredentials, Error> {
        self.client = client;
        self.finish()
    }

    fn finish(self) -> Result<ClientCredentials, Error> {
        Ok(ClientCredentials {
            endpoint: self.endpoint()?,
            auth: self.auth,
            params: self.params,
            fields: self.fields,
        })
    }
}

impl ClientCredentialsBuilder {
    fn endpoint(&self) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::new(
            &self.token_url,
            super::client_auth::http_client_for(self.client.clone(), Some(&self.auth))?,
        )?;
        #[cfg(feature = "dpop")]
        let endpoint = endpoint.with_dpop(self.dpop.clone());
        Ok(endpoint)
    }
}

impl TokenSource for ClientCredentials {
    async fn fetch(&self) -> Result<Token, Error> {
        let mut form = Form::new("client_credentials");
        for (name, value) in &self.params {
            form.push(name.clone(), value);
        }
        let response = self
            .endpoint
            .grant(form, Some(&self.auth), &self.fields, REFUSED)
            .await?;
        response.into_token(false).map_err(|e| self.endpoint.tag(e))
    }
    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.endpoint.dpop()
    }

    #[cfg(feature = "reqwest")]
    fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.auth.client_identity()
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("auth", &self.auth)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}
