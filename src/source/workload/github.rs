//! [`GitHubActions`]: the OIDC token of a GitHub Actions job.

use crate::source::builder::build_options;
use std::fmt;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method};

use super::{CredentialFuture, CredentialProvider};
use crate::http_client::HttpClient;
use crate::secret::{ClientSecret, IdentityToken};
use crate::source::endpoint::{Endpoint, check_status};
use crate::source::token_response::{TokenFields, TokenResponse};
use crate::{Error, Token, TokenSource};

const REFUSED: &str = "GitHub refused to issue an OIDC token (does the workflow have `permissions: id-token: write`?)";

/// The OIDC ID token of a GitHub Actions job, for an `audience`: a JWT signed by GitHub
/// that names the repository, workflow and ref, which a cloud or an authorization server
/// trusts in place of a stored secret.
///
/// In a job with `permissions: id-token: write`, the runner sets
/// `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; the token is
/// `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=...` with `Authorization: Bearer
/// $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered by `{"value": "<jwt>"}`. A new one is asked for
/// every time.
///
/// Use it as a [`CredentialProvider`]: the subject of a token exchange, the assertion of a
/// JWT-bearer grant, or a client assertion (Azure federated credentials with the audience
/// `api://AzureADTokenExchange`); or as a [`TokenSource`] when the API takes the ID token
/// itself (its lifetime is the JWT's `exp`).
///
/// ```no_run
/// use tower_bearer::source::{ClientAuth, ClientCredentials, workload::GitHubActions};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let oidc = GitHubActions::builder()
///     .audience("api://AzureADTokenExchange")
///     .from_env()
///     .build()?;
/// let source = ClientCredentials::builder(
///     "https://login.microsoftonline.com/my-tenant/oauth2/v2.0/token",
///     ClientAuth::client_assertion("my-app-id", oidc),
/// )
/// .scope("https://management.azure.com/.default")
/// .build()?;
/// # let _ = source; Ok(()) }
/// ```
#[derive(Clone)]
pub struct GitHubActions {
    endpoint: Endpoint,
    /// `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, sensitive.
    authorization: HeaderValue,
    audience: Option<String>,
}

impl GitHubActions {
    /// Start configuring; the request URL and token come from
    /// [`from_env`](GitHubActionsBuilder::from_env) or the builder.
    pub fn builder() -> GitHubActionsBuilder {
        GitHubActionsBuilder {
            request_url: None,
            request_token: None,
            audience: None,
            client: None,
        }
    }

    /// Ask GitHub for an ID token now.
    pub async fn id_token(&self) -> Result<IdentityToken, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        let query: Vec<(&str, &str)> = self
            .audience
            .iter()
            .map(|audience| ("audience", audience.as_str()))
            .collect();
        let response = self.endpoint.send(Method::GET, &query, headers).await?;
        let token = check_status(&response, REFUSED)
            .and_then(|()| {
                TokenResponse::parse(
                    &response,
                    &TokenFields::oauth2().access_token("value"),
                    REFUSED,
                )
            })
            .and_then(|parsed| parsed.into_token(true))
            .map_err(|e| self.endpoint.tag(e))?;
        Ok(IdentityToken::new(token.secret()))
    }
}

impl CredentialProvider for GitHubActions {
    fn credential(&self) -> CredentialFuture<'_> {
        Box::pin(self.id_token())
    }
}

impl TokenSource for GitHubActions {
    async fn fetch(&self) -> Result<Token, Error> {
        Token::new(self.id_token().await?.secret()).with_jwt_expiry()
    }
}

/// Configures [`GitHubActions`].
pub struct GitHubActionsBuilder {
    request_url: Option<String>,
    request_token: Option<ClientSecret>,
    audience: Option<String>,
    client: Option<Arc<dyn HttpClient>>,
}

impl GitHubActionsBuilder {
    /// The `aud` the ID token is for (default: GitHub's, the repository owner's URL).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The request URL (`ACTIONS_ID_TOKEN_REQUEST_URL`).
    pub fn request_url(mut self, url: impl Into<String>) -> Self {
        self.request_url = Some(url.into());
        self
    }

    /// The request token (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    pub fn request_token(mut self, token: impl Into<String>) -> Self {
        self.request_token = Some(ClientSecret::new(token));
        self
    }

    /// Fill what is not set yet from `ACTIONS_ID_TOKEN_REQUEST_URL` and
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN` in the process environment.
    pub fn from_env(self) -> Self {
        self.from_env_with(super::process_env)
    }

    /// [`from_env`](Self::from_env) with the variables read through `env`.
    pub fn from_env_with(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let env: &dyn Fn(&str) -> Option<String> = &env;
        self.request_url = self
            .request_url
            .or_else(|| super::var(env, "ACTIONS_ID_TOKEN_REQUEST_URL"));
        self.request_token = self
            .request_token
            .or_else(|| super::var(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN").map(ClientSecret::new));
        self
    }

    build_options! {
        /// Check the configuration and build the source. Does no I/O.
        build -> GitHubActions;
        client at client;
        calls "GitHub";
    }

    fn finish(self) -> Result<GitHubActions, Error> {
        let (Some(url), Some(token)) = (self.request_url, self.request_token) else {
            return Err(Error::config(
                "GitHub Actions OIDC needs ACTIONS_ID_TOKEN_REQUEST_URL and \
                 ACTIONS_ID_TOKEN_REQUEST_TOKEN (set in jobs with `permissions: id-token: write`)",
            ));
        };
        let value = zeroize::Zeroizing::new(format!("Bearer {}", token.secret()));
        let mut authorization = HeaderValue::from_str(&value).map_err(|_| {
            Error::config("ACTIONS_ID_TOKEN_REQUEST_TOKEN is not a valid header value")
        })?;
        authorization.set_sensitive(true);
        Ok(GitHubActions {
            endpoint: Endpoint::new(&url, self.client)?,
            authorization,
            audience: self.audience,
        })
    }
}

impl fmt::Debug for GitHubActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubActions")
            .field("endpoint", &self.endpoint)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GitHubActionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubActionsBuilder")
            .field("audience", &self.audience)
            .field("request_token", &self.request_token)
            .finish_non_exhaustive()
    }
}
