//! [`RefreshTokenGrant`] and what it needs (documented there).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::client_auth::ClientAuth;
use super::endpoint::Form;
use super::grant::{GrantConfig, GrantEndpoint, grant_builder_options, grant_source_keys};
use super::revocation::{Revocation, TokenTypeHint};
use super::rotation::{Exchange, Rotation};
use super::token_response::TokenResponse;
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
    grant: GrantEndpoint<Option<ClientAuth>>,
    scope: Option<String>,
    revocation: Option<Revocation>,
    /// Set by [`RefreshTokenGrant::revoke`]: no refresh token is spent any more.
    revoked: AtomicBool,
}

impl<S: RefreshTokenStore> RefreshTokenGrant<S> {
    /// Start configuring the grant against `token_url`, with the refresh token kept in `store`.
    pub fn builder(token_url: impl Into<String>, store: S) -> RefreshTokenGrantBuilder<S> {
        RefreshTokenGrantBuilder {
            grant: GrantConfig::new(token_url.into(), None),
            store,
            scope: None,
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
    pub(super) grant: GrantConfig<Option<ClientAuth>>,
    store: S,
    scope: Option<String>,
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
        self.grant.auth = Some(auth);
        self
    }

    /// Ask for a narrower `scope` than the refresh token was issued with.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    grant_builder_options! {
        /// Check the URL and build the source. Does no I/O.
        build -> RefreshTokenGrant<S>;
    }

    fn finish(self) -> Result<RefreshTokenGrant<S>, Error> {
        let grant = self.grant.build()?;
        let revocation = match self.revocation_url {
            Some(url) => {
                let mut builder = Revocation::builder(url);
                if let Some(auth) = &grant.auth {
                    builder = builder.client_auth(auth.clone());
                }
                Some(builder.build_with(grant.endpoint.client())?)
            }
            None => None,
        };
        let grant = Grant {
            grant,
            scope: self.scope,
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

    grant_source_keys!(rotation.exchange().grant);
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
        self.grant.response(form, REFUSED).await
    }

    async fn fallback(&self, refused: Option<Error>) -> Result<TokenResponse, Error> {
        Err(refused
            .unwrap_or_else(|| Error::config("there is no refresh token: the store is empty")))
    }

    fn access_token(&self, response: TokenResponse, _refreshed: bool) -> Result<Token, Error> {
        self.grant.access_token(response)
    }
}

impl<S> fmt::Debug for RefreshTokenGrant<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grant = self.rotation.exchange();
        f.debug_struct("RefreshTokenGrant")
            .field("endpoint", &grant.grant.endpoint)
            .field("auth", &grant.grant.auth)
            .field("scope", &grant.scope)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for RefreshTokenGrantBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrantBuilder")
            .field("auth", &self.grant.auth)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}
