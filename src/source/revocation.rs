//! [`Revocation`] and what it needs (documented there).

use crate::source::builder::build_options;
use std::fmt;
use std::sync::Arc;

use super::client_auth::ClientAuth;
use super::endpoint::{Endpoint, Form};
use crate::Error;
use crate::http_client::HttpClient;

const REFUSED: &str = "the revocation endpoint refused the request";

/// What kind of token is being revoked (RFC 7009 §2.1 `token_type_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    fn as_str(self) -> &'static str {
        match self {
            TokenTypeHint::AccessToken => "access_token",
            TokenTypeHint::RefreshToken => "refresh_token",
        }
    }
}

/// A revocation endpoint and the client authentication it wants.
///
/// [`Revocation`]: OAuth 2.0 token revocation (RFC 7009), for programs that log out or rotate
/// credentials.
///
/// ```text
/// POST {revocation_url}
/// Content-Type: application/x-www-form-urlencoded
///
/// token=...&token_type_hint=refresh_token   (+ client authentication, if any)
/// ```
///
/// A 200 means the token is revoked, or was already invalid (RFC 7009 §2.2: the server answers
/// 200 either way); a 503 or a connection failure is [`Transient`](crate::ErrorKind::Transient)
/// (retry later), and an OAuth error (`unsupported_token_type`, `invalid_client`) a
/// [`Rejected`](crate::ErrorKind::Rejected) one with its code.
/// [`RefreshTokenGrant::revoke`](super::RefreshTokenGrant::revoke) revokes the grant's current
/// refresh token this way.
///
/// ```no_run
/// use tower_bearer::{secret::ClientSecret, source::{ClientAuth, Revocation, TokenTypeHint}};
///
/// # async fn logout(access_token: &str) -> Result<(), tower_bearer::Error> {
/// let revocation = Revocation::builder("https://auth.example.com/oauth2/revoke")
///     .client_auth(ClientAuth::client_secret_basic("my-client", ClientSecret::new("s3cr3t")))
///     .build()?;
/// revocation.revoke(access_token, Some(TokenTypeHint::AccessToken)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Revocation {
    endpoint: Endpoint,
    auth: Option<ClientAuth>,
}

impl Revocation {
    /// Start configuring revocation at `url` (`https`, or `http` to loopback).
    pub fn builder(url: impl Into<String>) -> RevocationBuilder {
        RevocationBuilder {
            url: url.into(),
            auth: None,
            client: None,
        }
    }

    /// Revoke `token`, with a `token_type_hint` if given.
    pub async fn revoke(&self, token: &str, hint: Option<TokenTypeHint>) -> Result<(), Error> {
        let mut form = Form::default();
        form.push("token", token);
        if let Some(hint) = hint {
            form.push("token_type_hint", hint.as_str());
        }
        self.endpoint
            .post(form, self.auth.as_ref(), REFUSED)
            .await?;
        tracing::info!("token revoked");
        Ok(())
    }
}

/// Configures a [`Revocation`].
pub struct RevocationBuilder {
    url: String,
    auth: Option<ClientAuth>,
    client: Option<Arc<dyn HttpClient>>,
}

impl RevocationBuilder {
    /// How the client authenticates (RFC 7009 §2.1 requires it of confidential clients).
    /// Default: none.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    build_options! {
        /// Check the URL and build. Does no I/O.
        build -> Revocation;
        client at client;
        calls "the endpoint";
    }

    fn finish(self) -> Result<Revocation, Error> {
        Ok(Revocation {
            endpoint: Endpoint::new(&self.url, self.client)?,
            auth: self.auth,
        })
    }
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocation")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .finish()
    }
}

impl fmt::Debug for RevocationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationBuilder")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}
