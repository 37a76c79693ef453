//! [`ApiKeyExchange`] and what it needs (documented there).

use crate::source::builder::build_options;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};
use zeroize::Zeroizing;

use super::endpoint::{Body, Endpoint};
use super::rotation::{Exchange, Rotation};
use super::token_response::{TokenFields, TokenResponse};
use crate::http_client::HttpClient;
use crate::secret::{ApiKey, RefreshToken};
use crate::store::{MemoryStore, RefreshTokenStore};
use crate::{Error, Token, TokenSource};

const KEY_REFUSED: &str = "the token endpoint refused the API key: is it correct?";
const REFRESH_REFUSED: &str = "the token endpoint refused the refresh token";

/// A [`TokenSource`] trading an API key for tokens.
///
/// [`ApiKeyExchange`]: an API key traded for an access token and a rotating refresh token, both
/// by JSON POST.
///
/// ```text
/// POST {exchange_url}   {"apiKey": "K"}         → {"access_token", "refresh_token", "expires_in"}
/// POST {refresh_url}    {"refreshToken": "R"}   → a new pair (R is now spent)
/// ```
///
/// The API key is sent once; after that each refresh spends the current refresh token and saves
/// the new one through the [`RefreshTokenStore`] before the access token is handed out, with
/// the same rotation as [`RefreshTokenGrant`](crate::source::RefreshTokenGrant) (store locked
/// from load to save, a failed save retried under the lock, nothing lost to a cancelled caller
/// or a dropped runtime). When the
/// refresh token is refused (expired, revoked) and the store holds no newer one, the source
/// falls back to the API key. See [`api_video`](crate::source::api_video) for a preset.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, secret::ApiKey, source::ApiKeyExchange};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let source = ApiKeyExchange::builder("https://api.example.com/auth/api-key", ApiKey::new("K"))
///     .refresh_url("https://api.example.com/auth/refresh")
///     .build()?;
/// let layer = BearerAuthLayer::new(source);
/// # let _ = layer; Ok(()) }
/// ```
pub struct ApiKeyExchange<S = MemoryStore> {
    rotation: Rotation<S, KeyExchange>,
}

/// The requests themselves, shared with the rotation task.
struct KeyExchange {
    exchange: Endpoint,
    refresh: Option<Endpoint>,
    api_key: ApiKey,
    api_key_field: Cow<'static, str>,
    refresh_token_field: Cow<'static, str>,
    fields: TokenFields,
}

impl ApiKeyExchange {
    /// Start configuring: the API key is POSTed to `exchange_url` as `{"apiKey": ...}`.
    /// Without a [`refresh_url`](ApiKeyExchangeBuilder::refresh_url), every token comes from
    /// the API key.
    pub fn builder(exchange_url: impl Into<String>, api_key: ApiKey) -> ApiKeyExchangeBuilder {
        ApiKeyExchangeBuilder {
            exchange_url: exchange_url.into(),
            refresh_url: None,
            api_key,
            api_key_field: Cow::Borrowed("apiKey"),
            refresh_token_field: Cow::Borrowed("refreshToken"),
            fields: TokenFields::oauth2(),
            store: MemoryStore::empty(),
            client: None,
        }
    }
}

impl<S: RefreshTokenStore> ApiKeyExchange<S> {
    /// The store holding the current refresh token.
    pub fn store(&self) -> &S {
        self.rotation.store()
    }
}

/// Configures an [`ApiKeyExchange`].
pub struct ApiKeyExchangeBuilder<S = MemoryStore> {
    exchange_url: String,
    refresh_url: Option<String>,
    api_key: ApiKey,
    api_key_field: Cow<'static, str>,
    refresh_token_field: Cow<'static, str>,
    fields: TokenFields,
    store: S,
    client: Option<Arc<dyn HttpClient>>,
}

impl<S: RefreshTokenStore> ApiKeyExchangeBuilder<S> {
    /// Where refresh tokens are POSTed as `{"refreshToken": ...}` (default: nowhere; every
    /// token comes from the API key).
    pub fn refresh_url(mut self, url: impl Into<String>) -> Self {
        self.refresh_url = Some(url.into());
        self
    }

    /// The JSON field carrying the API key (default `apiKey`).
    pub fn api_key_field(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.api_key_field = name.into();
        self
    }

    /// The JSON field carrying the refresh token in a refresh request (default
    /// `refreshToken`).
    pub fn refresh_token_field(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.refresh_token_field = name.into();
        self
    }

    /// The field names of the answers (default [`TokenFields::oauth2`]).
    pub fn fields(mut self, fields: TokenFields) -> Self {
        self.fields = fields;
        self
    }

    /// Where to keep the rotating refresh token (default: an empty [`MemoryStore`]). A
    /// refresh token found there is tried before the API key.
    pub fn store<T: RefreshTokenStore>(self, store: T) -> ApiKeyExchangeBuilder<T> {
        ApiKeyExchangeBuilder {
            exchange_url: self.exchange_url,
            refresh_url: self.refresh_url,
            api_key: self.api_key,
            api_key_field: self.api_key_field,
            refresh_token_field: self.refresh_token_field,
            fields: self.fields,
            store,
            client: self.client,
        }
    }

    build_options! {
        /// Check the URLs and build the source. Does no I/O.
        build -> ApiKeyExchange<S>;
        client at client;
        calls "the endpoint";
    }

    fn finish(self) -> Result<ApiKeyExchange<S>, Error> {
        let exchange = Endpoint::new(&self.exchange_url, self.client)?;
        let refresh = match &self.refresh_url {
            Some(url) => Some(Endpoint::new(url, Some(exchange.client()))?),
            None => None,
        };
        let requests = KeyExchange {
            exchange,
            refresh,
            api_key: self.api_key,
            api_key_field: self.api_key_field,
            refresh_token_field: self.refresh_token_field,
            fields: self.fields,
        };
        Ok(ApiKeyExchange {
            rotation: Rotation::new(self.store, requests),
        })
    }
}

impl<S: RefreshTokenStore> TokenSource for ApiKeyExchange<S> {
    async fn fetch(&self) -> Result<Token, Error> {
        self.rotation.fetch().await
    }
}

impl Exchange for KeyExchange {
    fn refreshes(&self) -> bool {
        self.refresh.is_some()
    }

    /// Spend the current refresh token at the refresh URL.
    async fn refresh(&self, old: &RefreshToken) -> Result<TokenResponse, Error> {
        let Some(refresh) = &self.refresh else {
            return Err(Error::config("no refresh URL is configured"));
        };
        let body = json_body(&self.refresh_token_field, old.secret())?;
        post_json(refresh, body, &self.fields, REFRESH_REFUSED).await
    }

    /// No refresh token, or it was refused: the API key.
    async fn fallback(&self, refused: Option<Error>) -> Result<TokenResponse, Error> {
        if let Some(err) = refused {
            tracing::warn!(error = %err, "refresh token refused; exchanging the API key again");
        }
        let body = json_body(&self.api_key_field, self.api_key.secret())?;
        post_json(&self.exchange, body, &self.fields, KEY_REFUSED).await
    }

    fn access_token(&self, response: TokenResponse, refreshed: bool) -> Result<Token, Error> {
        let endpoint = match &self.refresh {
            Some(refresh) if refreshed => refresh,
            _ => &self.exchange,
        };
        response.into_token(false).map_err(|e| endpoint.tag(e))
    }
}

/// `{"<name>": "<value>"}`, the one buffer holding the secret zeroized on drop.
fn json_body(name: &str, value: &str) -> Result<Body, Error> {
    // Sized for the worst case (`\uXXXX`, 6 bytes per byte): growing would leave copies behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(6 * (name.len() + value.len()) + 8));
    serde_json::to_writer(&mut *buf, &BTreeMap::from([(name, value)]))
        .map_err(|_| Error::config("could not encode the token request"))?;
    Ok(Body::Json(buf))
}

async fn post_json(
    endpoint: &Endpoint,
    body: Body,
    fields: &TokenFields,
    refused: &'static str,
) -> Result<TokenResponse, Error> {
    endpoint
        .exchange(Method::POST, &[], HeaderMap::new(), body, fields, refused)
        .await
}

impl<S> fmt::Debug for ApiKeyExchange<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requests = self.rotation.exchange();
        f.debug_struct("ApiKeyExchange")
            .field("exchange", &requests.exchange)
            .field("refresh", &requests.refresh)
            .field("api_key", &requests.api_key)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for ApiKeyExchangeBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyExchangeBuilder")
            .field("api_key", &self.api_key)
            .field("api_key_field", &self.api_key_field)
            .field("refresh_token_field", &self.refresh_token_field)
            .finish_non_exhaustive()
    }
}
