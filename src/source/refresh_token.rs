//! [`RefreshTokenGrant`] and what it needs (documented there).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::client_auth::ClientAuth;
use super::endpoint::{Endpoint, Form};
use super::revocation::{Revocation, TokenTypeHint};
use super::rotation::{Exchange, Rotation};
use super::token_response::{TokenFields, TokenResponse};
use crate::http_client::HttpClient;
use crate::secret::RefreshToken;
use crate::store::RefreshTokenStore;
use crate::{Error, Token, TokenSource};

const REFUSED: &str =
    "the token endpoint refused the refresh token (expired, revoked or already used?)";

/// A [`TokenSource`] for the `refresh_token` grant.
///
/// [`RefreshTokenGrant`]: the OAuth 2.0 `refresh_token` grant (RFC 6749 §6), with rotation.
///
/// ```text
/// POST {token_url}
/// Content-Type: application/x-www-form-urlencoded
///
/// grant_type=refresh_token&refresh_token=R&scope=...   (+ client authentication, if any)
/// ```
///
/// When the answer carries a new `refresh_token`, it replaces the old one: it is saved through
/// the [`RefreshTokenStore`] **before** the new access token is handed out, and kept in memory
/// until the store has it (a failed save is retried under the store's lock; if it still fails,
/// the token and the lock are kept, and the next fetch saves it before spending anything). Each
/// refresh locks the store from load to save, so sources and processes sharing a store (a
/// [`FileStore`](crate::store::FileStore) on one host, a `RedisStore` in a fleet) spend each
/// refresh token once; and it runs on a thread the source owns, so a caller, a `fetch_timeout`
/// or a runtime that goes away while it is under way loses nothing. See the
/// [store docs](crate::store) for the whole protocol and what it cannot save.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, secret::{ClientSecret, RefreshToken}};
/// use tower_bearer::source::{ClientAuth, RefreshTokenGrant};
/// use tower_bearer::store::MemoryStore;
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let store = MemoryStore::new(RefreshToken::new("initial-refresh-token"));
/// let source = RefreshTokenGrant::builder("https://auth.example.com/oauth2/token", store.clone())
///     .client_auth(ClientAuth::client_secret_basic("my-client", ClientSecret::new("s3cr3t")))
///     .build()?;
/// let layer = BearerAuthLayer::new(source);
/// // `store` sees each rotated refresh token.
/// # let _ = layer; Ok(()) }
/// ```
pub struct RefreshTokenGrant<S> {
    rotation: Rotation<S, Grant>,
}

/// The request itself, shared with the rotation task.
struct Grant {
    endpoint: Endpoint,
    auth: Option<ClientAuth>,
    scope: Option<String>,
    fields: TokenFields,
    revocation: Option<Revocation>,
    /// Set by [`RefreshTokenGrant::revoke`]: no refresh token is spent any more.
    revoked: AtomicBool,
}

impl<S: RefreshTokenStore> RefreshTokenGrant<S> {
    /// Start configuring the grant against `token_url`, with the refresh token kept in `store`.
    pub fn builder(token_url: impl Into<String>, store: S) -> RefreshTokenGrantBuilder<S> {
        RefreshTokenGrantBuilder {
            token_url: token_url.into(),
            store,
            auth: None,
            scope: None,
            fields: TokenFields::oauth2(),
            client: None,
            #[cfg(feature = "dpop")]
            dpop: None,
            revocation_url: None,
        }
    }

    /// The store holding the current refresh token.
    pub fn store(&self) -> &S {
        self.rotation.store()
    }

    /// Revoke the current refresh token at the revocation endpoint (RFC 7009; set with
    /// [`revocation_url`](RefreshTokenGrantBuilder::revocation_url), or found by
    /// [`Discovery`](super::Discovery)), for a program that logs out or rotates its
    /// credentials.
    ///
    /// Waits for a refresh under way to finish (and holds the store's lock), revokes the
    /// newest refresh token (one not saved yet, else the stored one), and forgets what the
    /// source kept in memory. From then on this source fetches nothing: every fetch fails with
    /// a [`Rejected`](crate::ErrorKind::Rejected) error (the access token already in a cache
    /// stays there until it expires or is invalidated). The store still holds the revoked
    /// value: clear it (delete the file, the row) if the program will not use it again.
    /// Without a refresh token, there is nothing to revoke and this only stops the source.
    pub async fn revoke(&self) -> Result<(), Error> {
        let grant = self.rotation.exchange();
        let Some(revocation) = &grant.revocation else {
            return Err(Error::config(
                "no revocation endpoint: set one with `revocation_url` (or use Discovery)",
            ));
        };
        let held = self.rotation.hold().await?;
        if let Some(token) = held.token() {
            revocation
                .revoke(token.secret(), Some(TokenTypeHint::RefreshToken))
                .await?;
        }
        grant.revoked.store(true, Ordering::Release);
        held.forget();
        Ok(())
    }
}

/// Configures a [`RefreshTokenGrant`].
pub struct RefreshTokenGrantBuilder<S> {
    token_url: String,
    store: S,
    auth: Option<ClientAuth>,
    scope: Option<String>,
    fields: TokenFields,
    client: Option<Arc<dyn HttpClient>>,
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::Dpop>,
    revocation_url: Option<String>,
}

impl<S: RefreshTokenStore> RefreshTokenGrantBuilder<S> {
    /// The revocation endpoint (RFC 7009) for [`RefreshTokenGrant::revoke`]. Revocation
    /// authenticates as the grant does ([`client_auth`](Self::client_auth)).
    pub fn revocation_url(mut self, url: impl Into<String>) -> Self {
        self.revocation_url = Some(url.into());
        self
    }

    /// How the client authenticates (RFC 6749 §6 requires it of confidential clients). Default:
    /// none.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Ask for a narrower `scope` than the refresh token was issued with.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
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
    pub fn build(self) -> Result<RefreshTokenGrant<S>, Error> {
        self.finish()
    }

    /// Build as `build()` does, calling the endpoint through `client`: your
    /// `reqwest::Client`, a `ClientWithMiddleware`, a tower client through
    /// [`from_service`](crate::http_client::from_service), or any [`HttpClient`].
    pub fn build_with(mut self, client: impl HttpClient) -> Result<RefreshTokenGrant<S>, Error> {
        self.client = Some(Arc::new(client));
        self.finish()
    }

    fn finish(self) -> Result<RefreshTokenGrant<S>, Error> {
        let endpoint = Endpoint::new(
            &self.token_url,
            super::client_auth::http_client_for(self.client, self.auth.as_ref())?,
        )?;
        #[cfg(feature = "dpop")]
        let endpoint = endpoint.with_dpop(self.dpop);
        let revocation = match self.revocation_url {
            Some(url) => {
                let mut builder = Revocation::builder(url);
                if let Some(auth) = &self.auth {
                    builder = builder.client_auth(auth.clone());
                }
                Some(builder.build_with(endpoint.client())?)
            }
            None => None,
        };
        let grant = Grant {
            endpoint,
            auth: self.auth,
            scope: self.scope,
            fields: self.fields,
            revocation,
            revoked: AtomicBool::new(false),
        };
        Ok(RefreshTokenGrant {
            rotation: Rotation::new(self.store, grant),
        })
    }
}

impl<S: RefreshTokenStore> TokenSource for RefreshTokenGrant<S> {
    async fn fetch(&self) -> Result<Token, Error> {
        self.rotation.fetch().await
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.rotation.exchange().endpoint.dpop()
    }

    #[cfg(feature = "reqwest")]
    fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.rotation.exchange().auth.as_ref()?.client_identity()
    }
}

impl Exchange for Grant {
    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenResponse, Error> {
        if self.revoked.load(Ordering::Acquire) {
            return Err(Error::rejected(
                "the refresh token was revoked (RefreshTokenGrant::revoke): this source fetches no more tokens",
            ));
        }
        let mut form = Form::new("refresh_token");
        form.push("refresh_token", refresh_token.secret());
        if let Some(scope) = &self.scope {
            form.push("scope", scope);
        }
        self.endpoint
            .grant(form, self.auth.as_ref(), &self.fields, REFUSED)
            .await
    }

    async fn fallback(&self, refused: Option<Error>) -> Result<TokenResponse, Error> {
        Err(refused
            .unwrap_or_else(|| Error::config("there is no refresh token: the store is empty")))
    }

    fn access_token(&self, response: TokenResponse, _refreshed: bool) -> Result<Token, Error> {
        response.into_token(false).map_err(|e| self.endpoint.tag(e))
    }
}

impl<S> fmt::Debug for RefreshTokenGrant<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grant = self.rotation.exchange();
        f.debug_struct("RefreshTokenGrant")
            .field("endpoint", &grant.endpoint)
            .field("auth", &grant.auth)
            .field("scope", &grant.scope)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for RefreshTokenGrantBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrantBuilder")
            .field("auth", &self.auth)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}
