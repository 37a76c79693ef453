//! [`RefreshEndpoint`] and what it needs (documented there).

use crate::source::builder::build_options;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};

use super::endpoint::{Body, Endpoint};
use super::token_response::TokenFields;
use crate::http_client::HttpClient;
use crate::secret::RefreshToken;
use crate::{Error, Token, TokenSource};

const REFUSED: &str =
    "the token endpoint refused the refresh token: is it correct, and still valid?";

/// A [`TokenSource`] that sends a refresh token in a `GET` query string.
///
/// [`RefreshEndpoint`]: a vendor endpoint that trades a long-lived refresh token, sent in the
/// query string of a `GET`, for an access token.
///
/// Several vendors offer "personal tokens" this way (`GET {base}/oauth2/refresh?refresh_token=R`
/// answering `{"access_token": "..."}`); they differ in the parameter and field names, which
/// are configuration here ([`query_param`](RefreshEndpointBuilder::query_param),
/// [`fields`](RefreshEndpointBuilder::fields)). The refresh token is not rotated. When the
/// answer has no `expires_in`, the lifetime comes from the access token's JWT `exp` (read
/// without verifying it), and a token without one is refused rather than cached forever.
/// See [`kensho`](crate::source::kensho) for presets.
///
/// ```
/// use bytes::Bytes;
/// use tower_bearer::{TokenSource, secret::RefreshToken, source::{RefreshEndpoint, TokenFields}};
/// use tower_bearer::http_client::{HttpClient, HttpFuture, HttpRequest};
///
/// /// Stands in for the vendor: checks the query, answers with a JWT (`exp` in 2100).
/// struct Vendor;
/// impl HttpClient for Vendor {
///     fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
///         assert_eq!(request.uri().query(), Some("refreshToken=R"));
///         let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln";
///         let body = format!(r#"{{"accessToken":"{jwt}"}}"#);
///         Box::pin(async move { Ok(http::Response::new(Bytes::from(body))) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_bearer::Error> {
/// // GET https://api.example.com/oauth2/refresh?refreshToken=R → {"accessToken": "<JWT>"}
/// let source = RefreshEndpoint::builder("https://api.example.com/oauth2/refresh", RefreshToken::new("R"))
///     .query_param("refreshToken")
///     .fields(TokenFields::camel_case())
///     .build_with(Vendor)?; // or `.build()`, to call it with reqwest
/// let token = source.fetch().await?;
/// assert!(token.jwt_expiry().is_some()); // its lifetime comes from the JWT
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RefreshEndpoint {
    endpoint: Endpoint,
    refresh_token: RefreshToken,
    query_param: Cow<'static, str>,
    fields: TokenFields,
    require_expiry: bool,
}

impl RefreshEndpoint {
    /// Start configuring a source for the endpoint at `url` (the full URL, without the query).
    pub fn builder(url: impl Into<String>, refresh_token: RefreshToken) -> RefreshEndpointBuilder {
        RefreshEndpointBuilder {
            url: url.into(),
            refresh_token,
            query_param: Cow::Borrowed("refresh_token"),
            fields: TokenFields::oauth2(),
            require_expiry: true,
            client: None,
        }
    }
}

/// Configures a [`RefreshEndpoint`].
pub struct RefreshEndpointBuilder {
    url: String,
    refresh_token: RefreshToken,
    query_param: Cow<'static, str>,
    fields: TokenFields,
    require_expiry: bool,
    client: Option<Arc<dyn HttpClient>>,
}

impl RefreshEndpointBuilder {
    /// The query parameter that carries the refresh token (default `refresh_token`).
    pub fn query_param(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.query_param = name.into();
        self
    }

    /// The field names of the answer (default [`TokenFields::oauth2`]).
    pub fn fields(mut self, fields: TokenFields) -> Self {
        self.fields = fields;
        self
    }

    /// Whether a token must say when it expires, by `expires_in` or its JWT `exp` (default
    /// `true`). With `false`, a token with neither is used until a 401 invalidates it.
    pub fn require_expiry(mut self, require: bool) -> Self {
        self.require_expiry = require;
        self
    }

    build_options! {
        /// Check the URL and build the source. Does no I/O.
        build -> RefreshEndpoint;
        client at client;
        calls "the endpoint";
    }

    fn finish(self) -> Result<RefreshEndpoint, Error> {
        Ok(RefreshEndpoint {
            endpoint: Endpoint::new(&self.url, self.client)?,
            refresh_token: self.refresh_token,
            query_param: self.query_param,
            fields: self.fields,
            require_expiry: self.require_expiry,
        })
    }
}

impl TokenSource for RefreshEndpoint {
    async fn fetch(&self) -> Result<Token, Error> {
        let query = [(self.query_param.as_ref(), self.refresh_token.secret())];
        let response = self
            .endpoint
            .exchange(
                Method::GET,
                &query,
                HeaderMap::new(),
                Body::Empty,
                &self.fields,
                REFUSED,
            )
            .await?;
        response
            .into_token(self.require_expiry)
            .map_err(|e| self.endpoint.tag(e))
    }
}

impl fmt::Debug for RefreshEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshEndpoint")
            .field("endpoint", &self.endpoint)
            .field("refresh_token", &self.refresh_token)
            .field("query_param", &self.query_param)
            .field("fields", &self.fields)
            .field("require_expiry", &self.require_expiry)
            .finish()
    }
}

impl fmt::Debug for RefreshEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshEndpointBuilder")
            .field("query_param", &self.query_param)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}
