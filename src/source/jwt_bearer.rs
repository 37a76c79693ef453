//! [`JwtBearer`] and what it needs (documented there).

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "jwt")]
use std::time::SystemTime;

#[cfg(feature = "jwt")]
use super::assertion::Assertion;
use super::client_auth::ClientAuth;
use super::endpoint::Form;
use super::grant::{GrantConfig, GrantEndpoint, grant_builder_options, grant_source_keys};
use super::workload::CredentialProvider;
use crate::secret::IdentityToken;
use crate::{Error, ErrorKind, Token, TokenSource};

/// `grant_type` of the JWT-bearer grant (RFC 7523 §2.1).
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

const REFUSED: &str =
    "the token endpoint refused the JWT assertion (check the key id, secret and issuer)";

/// Where the assertion comes from.
#[derive(Clone)]
enum Grant {
    /// Minted and signed here, fresh for every request.
    #[cfg(feature = "jwt")]
    Signed(Assertion),
    /// Signed by someone else (the platform), read for every request.
    Provided(Arc<dyn CredentialProvider>),
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "jwt")]
            Grant::Signed(assertion) => assertion.fmt(f),
            Grant::Provided(_) => f.write_str("Provided"),
        }
    }
}

/// A [`TokenSource`] for the JWT-bearer grant.
///
/// [`JwtBearer`]: the JWT-bearer authorization grant (RFC 7523 §2.1).
///
/// A signed JWT *is* the grant: a fresh one is minted for every token request
/// (`JwtBearer::builder`, feature `jwt`), or one the platform signed is
/// read afresh for every token request ([`JwtBearer::builder_from`]: a Kubernetes projected
/// token, a GitHub Actions OIDC token; see [`workload`](super::workload)).
///
/// ```text
/// POST {token_url}
/// Content-Type: application/x-www-form-urlencoded
///
/// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>&scope=...
/// ```
///
/// ```
/// # #[cfg(feature = "jwt")] {
/// use std::time::Duration;
/// use tower_bearer::{BearerAuthLayer, secret::ClientSecret};
/// use tower_bearer::source::JwtBearer;
/// use tower_bearer::source::assertion::{Assertion, SigningKey};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let secret = ClientSecret::new("a-service-account-secret-of-32-bytes+");
/// let key = SigningKey::hs256(&secret)?.with_key_id("key-id");
/// let assertion = Assertion::new(key, "robot@example.com").lifetime(Duration::from_secs(3600));
/// let source = JwtBearer::builder("https://identity.example.com/oauth2/token", assertion).build()?;
/// let layer = BearerAuthLayer::new(source);
/// # let _ = layer; Ok(()) }
/// # }
/// ```
///
/// See `source::disruptive` (feature `jwt`) for a preset.
#[derive(Clone)]
pub struct JwtBearer {
    grant: GrantEndpoint<Option<ClientAuth>>,
    assertion: Grant,
    scope: Option<String>,
}

impl JwtBearer {
    /// Start configuring the grant against `token_url`, with assertions minted from `assertion`
    /// (whose audience defaults to `token_url`).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn builder(token_url: impl Into<String>, assertion: Assertion) -> JwtBearerBuilder {
        JwtBearerBuilder::with_assertion(token_url.into(), Ok(assertion))
    }

    /// Start configuring the grant against `token_url`, with the assertion read from
    /// `provider` for every token request: a JWT the platform signed (a Kubernetes projected
    /// service-account token, a GitHub Actions OIDC token; see [`workload`](super::workload)).
    /// When the endpoint refuses it, the provider is asked again and the request sent once
    /// more if the assertion has changed (the platform rotated it).
    ///
    /// ```
    /// use tower_bearer::source::{JwtBearer, workload::TokenFile};
    ///
    /// # fn main() -> Result<(), tower_bearer::Error> {
    /// let source = JwtBearer::builder_from(
    ///     "https://sts.example.com/oauth2/token",
    ///     TokenFile::new("/var/run/secrets/tokens/sts-token"),
    /// )
    /// .scope("orders:read")
    /// .build()?;
    /// # let _ = source; Ok(()) }
    /// ```
    pub fn builder_from(
        token_url: impl Into<String>,
        provider: impl CredentialProvider,
    ) -> JwtBearerBuilder {
        JwtBearerBuilder::with_grant(token_url.into(), Ok(Grant::Provided(Arc::new(provider))))
    }
}

impl JwtBearerBuilder {
    /// A builder whose [`build`](Self::build) reports `assertion`'s error, if any.
    #[cfg(feature = "jwt")]
    pub(crate) fn with_assertion(
        token_url: String,
        assertion: Result<Assertion, Error>,
    ) -> JwtBearerBuilder {
        Self::with_grant(token_url, assertion.map(Grant::Signed))
    }

    fn with_grant(token_url: String, assertion: Result<Grant, Error>) -> JwtBearerBuilder {
        JwtBearerBuilder {
            grant: GrantConfig::new(token_url, None),
            assertion,
            scope: None,
        }
    }
}

/// Configures a [`JwtBearer`].
pub struct JwtBearerBuilder {
    pub(super) grant: GrantConfig<Option<ClientAuth>>,
    /// An error here (from a preset given a key that cannot sign) is reported by `build`.
    assertion: Result<Grant, Error>,
    scope: Option<String>,
}

impl JwtBearerBuilder {
    /// The `scope` parameter.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Client authentication, for servers that want it alongside the grant (RFC 7523 §2.1
    /// makes it optional). Default: none.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.grant.auth = Some(auth);
        self
    }

    grant_builder_options! {
        /// Check the URL (and the key, for a preset given its secret) and build the source. Does
        /// no I/O.
        build -> JwtBearer;
    }

    fn finish(self) -> Result<JwtBearer, Error> {
        Ok(JwtBearer {
            assertion: self.assertion?,
            grant: self.grant.build()?,
            scope: self.scope,
        })
    }
}

impl JwtBearer {
    /// The assertion for one request: minted now, or read from the provider now.
    async fn assertion(&self) -> Result<IdentityToken, Error> {
        match &self.assertion {
            #[cfg(feature = "jwt")]
            Grant::Signed(assertion) => assertion
                .mint(self.grant.endpoint.url(), SystemTime::now())
                .map(|mut jwt| IdentityToken::new(std::mem::take(&mut *jwt))),
            Grant::Provided(provider) => provider.credential().await.map_err(|e| {
                Error::new(
                    e.kind(),
                    "could not get the assertion for the JWT-bearer grant",
                )
                .with_source(e)
            }),
        }
        .map_err(|e| self.grant.endpoint.tag(e))
    }

    async fn request(&self, assertion: &IdentityToken) -> Result<Token, Error> {
        let mut form = Form::new(JWT_BEARER_GRANT_TYPE);
        form.push("assertion", assertion.secret());
        if let Some(scope) = &self.scope {
            form.push("scope", scope);
        }
        self.grant.token(form, REFUSED).await
    }
}

impl TokenSource for JwtBearer {
    async fn fetch(&self) -> Result<Token, Error> {
        let assertion = self.assertion().await?;
        let result = self.request(&assertion).await;
        // A provided assertion may have been rotated by the platform since it was read.
        if matches!(self.assertion, Grant::Provided(_))
            && matches!(&result, Err(e) if e.kind() == ErrorKind::Rejected)
            && let Ok(fresh) = self.assertion().await
            && fresh != assertion
        {
            tracing::info!(
                "the JWT-bearer grant was refused and the platform has rotated the assertion since; trying once more with the new one"
            );
            return self.request(&fresh).await;
        }
        result
    }

    grant_source_keys!(grant);
}

impl fmt::Debug for JwtBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBearer")
            .field("endpoint", &self.grant.endpoint)
            .field("assertion", &self.assertion)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for JwtBearerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBearerBuilder")
            .field("assertion", &self.assertion)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}
