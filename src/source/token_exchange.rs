//! [`TokenExchange`] and what it needs (documented there).

use std::fmt;
use std::sync::Arc;

use super::client_auth::ClientAuth;
use super::endpoint::Form;
use super::grant::{GrantConfig, GrantEndpoint, grant_builder_options, grant_source_keys};
use super::token_response::TokenResponse;
use super::workload::CredentialProvider;
use crate::cache::handle::ErasedCache;
use crate::secret::IdentityToken;
use crate::{CachedToken, Error, ErrorKind, Token, TokenCache, TokenSource};

/// `grant_type` of the token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Token type identifiers (RFC 8693 §3).
pub mod token_type {
    /// An OAuth 2.0 access token.
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// An OAuth 2.0 refresh token.
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// An OpenID Connect ID token.
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    /// A JWT (RFC 7519).
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    /// A base64url-encoded SAML 1.1 assertion.
    pub const SAML1: &str = "urn:ietf:params:oauth:token-type:saml1";
    /// A base64url-encoded SAML 2.0 assertion.
    pub const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
}

const REFUSED: &str = "the token endpoint refused the token exchange";

/// The subject or the actor of an exchange: a token of a type, from a cache of its own or
/// read afresh from a [`CredentialProvider`] for every exchange.
#[derive(Clone)]
struct Party {
    from: PartySource,
    token_type: String,
}

#[derive(Clone)]
enum PartySource {
    Cache(Arc<dyn ErasedCache>),
    Provider(Arc<dyn CredentialProvider>),
}

/// A party's token, as sent in one exchange.
enum PartyToken {
    Cached(CachedToken),
    Provided(IdentityToken),
}

impl PartyToken {
    fn secret(&self) -> &str {
        match self {
            PartyToken::Cached(token) => token.secret(),
            PartyToken::Provided(token) => token.secret(),
        }
    }
}

impl Party {
    fn new<P: TokenSource>(cache: TokenCache<P>, token_type: impl Into<String>) -> Self {
        Party {
            from: PartySource::Cache(cache.erased()),
            token_type: token_type.into(),
        }
    }

    fn provided(provider: impl CredentialProvider, token_type: impl Into<String>) -> Self {
        Party {
            from: PartySource::Provider(Arc::new(provider)),
            token_type: token_type.into(),
        }
    }

    async fn token(&self, role: &'static str) -> Result<PartyToken, Error> {
        let token = match &self.from {
            PartySource::Cache(cache) => Arc::clone(cache).token().await.map(PartyToken::Cached),
            PartySource::Provider(provider) => {
                provider.credential().await.map(PartyToken::Provided)
            }
        };
        token.map_err(|e| {
            Error::new(
                e.kind(),
                format!("could not get the {role} token for the token exchange"),
            )
            .with_source(e)
        })
    }

    /// After the exchange was refused: a new token, if there is one that differs from `seen`.
    /// A cached token is dropped from its cache first (if still current, at most once a
    /// second); a provided one is read again (the platform may have rotated it).
    async fn renewed(&self, seen: &PartyToken, role: &'static str) -> Option<PartyToken> {
        if let (PartySource::Cache(cache), PartyToken::Cached(token)) = (&self.from, seen)
            && !Arc::clone(cache).invalidate_after_401(token.generation() as u32)
        {
            return None;
        }
        let fresh = self.token(role).await.ok()?;
        (fresh.secret() != seen.secret()).then_some(fresh)
    }
}

/// A [`TokenSource`] that exchanges a subject token for another (RFC 8693).
///
/// [`TokenExchange`]: OAuth 2.0 token exchange (RFC 8693), with resource indicators (RFC 8707).
///
/// A token the program has (a workload-identity token, a user's access token) is traded for
/// one the target API accepts:
///
/// ```text
/// POST {token_url}
/// Content-Type: application/x-www-form-urlencoded
///
/// grant_type=urn:ietf:params:oauth:grant-type:token-exchange
/// &subject_token=...&subject_token_type=urn:ietf:params:oauth:token-type:jwt
/// &actor_token=...&actor_token_type=...                       (optional)
/// &requested_token_type=urn:ietf:params:oauth:token-type:access_token
/// &audience=...&resource=https://api.example.com/&resource=...&scope=...
/// ```
///
/// The subject (and actor) token comes from a [`TokenCache`] of its own
/// ([`subject`](TokenExchangeBuilder::subject)), so it is cached and refreshed independently
/// of the token it is exchanged for, or from a platform credential read afresh for every
/// exchange ([`subject_from`](TokenExchangeBuilder::subject_from), a
/// [`workload`](super::workload) identity). From a cache, each exchange takes the subject
/// cache's current token (fetching one only when it has none usable). When the server refuses
/// the exchange with `invalid_grant` or `invalid_request` (the subject token may be revoked,
/// expired early or rotated), a cached subject token is dropped from its cache (a provided one
/// is read again) and the exchange is tried once more with a new one, if the new one differs.
///
/// The answer must say what it issued (`issued_token_type`, RFC 8693 §2.2.1), and that must be
/// the [`requested_token_type`](TokenExchangeBuilder::requested_token_type) when one was asked
/// for; the issued token must be a Bearer token (`token_type`), since that is what is sent.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{Error, Token, TokenCache, source::{TokenExchange, from_fn, token_type}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// # let url = format!("http://{}/token", listener.local_addr().unwrap());
/// # let app = axum::Router::new().route("/token", axum::routing::post(|body: String| async move {
/// #     assert!(body.contains("subject_token=workload-jwt"));
/// #     axum::Json(serde_json::json!({
/// #         "access_token": "api-token", "token_type": "Bearer", "expires_in": 600,
/// #         "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
/// #     }))
/// # }));
/// # tokio::spawn(async move { axum::serve(listener, app).await });
/// // The workload's own identity token, cached and refreshed on its own.
/// let identity = TokenCache::new(from_fn(|| async {
///     Ok::<_, Error>(Token::new("workload-jwt").with_expires_in(Duration::from_secs(3600)))
/// }));
/// let exchange = TokenExchange::builder(url)
///     .subject(identity, token_type::JWT)
///     .requested_token_type(token_type::ACCESS_TOKEN)
///     .resource("https://api.example.com/")
///     .scope("orders:read")
///     .build()?;
/// let api_tokens = TokenCache::new(exchange);
/// assert_eq!(api_tokens.token().await?.secret(), "api-token");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenExchange {
    grant: GrantEndpoint<Option<ClientAuth>>,
    subject: Party,
    actor: Option<Party>,
    requested_token_type: Option<String>,
    params: Vec<(&'static str, String)>,
}

impl TokenExchange {
    /// Start configuring an exchange at `token_url`; a [`subject`](TokenExchangeBuilder::subject)
    /// is required.
    pub fn builder(token_url: impl Into<String>) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            grant: GrantConfig::new(token_url.into(), None),
            subject: None,
            actor: None,
            requested_token_type: None,
            params: Vec::new(),
        }
    }

    async fn exchange(
        &self,
        subject: &PartyToken,
        actor: Option<&PartyToken>,
    ) -> Result<Token, Error> {
        let mut form = Form::new(TOKEN_EXCHANGE_GRANT_TYPE);
        form.push("subject_token", subject.secret());
        form.push("subject_token_type", &self.subject.token_type);
        if let (Some(actor), Some(party)) = (actor, &self.actor) {
            form.push("actor_token", actor.secret());
            form.push("actor_token_type", &party.token_type);
        }
        if let Some(requested) = &self.requested_token_type {
            form.push("requested_token_type", requested);
        }
        for (name, value) in &self.params {
            form.push(*name, value);
        }
        let response = self.grant.response(form, REFUSED).await?;
        self.check_issued(&response)
            .map_err(|e| self.grant.endpoint.tag(e))?;
        self.grant.access_token(response)
    }

    /// RFC 8693 §2.2.1: `issued_token_type` is required, and is what was asked for.
    fn check_issued(&self, response: &TokenResponse) -> Result<(), Error> {
        let Some(issued) = response.issued_token_type() else {
            return Err(Error::invalid_response(
                "the token exchange answer has no `issued_token_type` (RFC 8693 §2.2.1)",
            ));
        };
        match &self.requested_token_type {
            Some(requested) if requested != issued => {
                let issued = if issued.len() <= 100
                    && issued.is_ascii()
                    && !issued.contains(char::is_control)
                {
                    issued
                } else {
                    "another type"
                };
                Err(Error::invalid_response(format!(
                    "the token exchange issued a `{issued}`, not the requested `{requested}`"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl TokenSource for TokenExchange {
    grant_source_keys!(grant);

    async fn fetch(&self) -> Result<Token, Error> {
        let subject = self.subject.token("subject").await?;
        let actor = match &self.actor {
            Some(actor) => Some(actor.token("actor").await?),
            None => None,
        };
        let result = self.exchange(&subject, actor.as_ref()).await;
        let refused_subject = matches!(
            &result,
            Err(e) if e.kind() == ErrorKind::Rejected
                && matches!(e.oauth_error(), Some("invalid_grant" | "invalid_request"))
        );
        if !refused_subject {
            return result;
        }
        // The subject token may be what was refused (revoked, expired early, rotated by the
        // platform): try once more with a new one, if there is one that differs.
        let Some(fresh) = self.subject.renewed(&subject, "subject").await else {
            return result;
        };
        tracing::info!("the token exchange was refused; trying once more with a new subject token");
        self.exchange(&fresh, actor.as_ref()).await
    }
}

/// Configures a [`TokenExchange`].
pub struct TokenExchangeBuilder {
    pub(super) grant: GrantConfig<Option<ClientAuth>>,
    subject: Option<Party>,
    actor: Option<Party>,
    requested_token_type: Option<String>,
    params: Vec<(&'static str, String)>,
}

impl TokenExchangeBuilder {
    /// The subject token (required): the current token of `cache`, of type `token_type` (see
    /// [`token_type`]). Share the cache with other users of that token, or give it its own
    /// settings.
    pub fn subject<P: TokenSource>(
        mut self,
        cache: TokenCache<P>,
        token_type: impl Into<String>,
    ) -> Self {
        self.subject = Some(Party::new(cache, token_type));
        self
    }

    /// The subject token from `source`, cached in a [`TokenCache`] of its own (default
    /// settings).
    pub fn subject_source<P: TokenSource>(self, source: P, token_type: impl Into<String>) -> Self {
        self.subject(TokenCache::new(source), token_type)
    }

    /// The subject token read from `provider` for **every** exchange, never cached: a
    /// platform token file (a Kubernetes projected service-account token), a GitHub Actions
    /// OIDC token; see [`workload`](super::workload). When the exchange is refused with
    /// `invalid_grant` or `invalid_request`, the provider is asked again and the exchange
    /// is tried once more if the token has changed (the platform rotated it).
    pub fn subject_from(
        mut self,
        provider: impl CredentialProvider,
        token_type: impl Into<String>,
    ) -> Self {
        self.subject = Some(Party::provided(provider, token_type));
        self
    }

    /// The actor token (RFC 8693 §2.1, for delegation): the current token of `cache`.
    pub fn actor<P: TokenSource>(
        mut self,
        cache: TokenCache<P>,
        token_type: impl Into<String>,
    ) -> Self {
        self.actor = Some(Party::new(cache, token_type));
        self
    }

    /// The actor token from `source`, cached in a [`TokenCache`] of its own.
    pub fn actor_source<P: TokenSource>(self, source: P, token_type: impl Into<String>) -> Self {
        self.actor(TokenCache::new(source), token_type)
    }

    /// The actor token read from `provider` for every exchange, as
    /// [`subject_from`](Self::subject_from) reads the subject.
    pub fn actor_from(
        mut self,
        provider: impl CredentialProvider,
        token_type: impl Into<String>,
    ) -> Self {
        self.actor = Some(Party::provided(provider, token_type));
        self
    }

    /// `requested_token_type`: the type of token wanted (see [`token_type`]); the answer's
    /// `issued_token_type` must then be this.
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// An `audience` (the logical name of the target service); call once per audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.params.push(("audience", audience.into()));
        self
    }

    /// A `resource` (RFC 8707 / RFC 8693 §2.1: an absolute URI of the target service); call
    /// once per resource.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.params.push(("resource", resource.into()));
        self
    }

    /// The `scope`: space-separated scopes. Replaces an earlier one.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.retain(|(name, _)| *name != "scope");
        self.params.push(("scope", scope.into()));
        self
    }

    /// How the client authenticates, if the server wants it. Default: none.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.grant.auth = Some(auth);
        self
    }

    grant_builder_options! {
        /// Check the configuration and build the source. Does no I/O.
        build -> TokenExchange;
    }

    fn finish(self) -> Result<TokenExchange, Error> {
        let subject = self.subject.ok_or_else(|| {
            Error::config("a token exchange needs a subject token: call `subject(..)`")
        })?;
        for (name, value) in &self.params {
            if *name == "resource" && !is_absolute_uri_without_fragment(value) {
                return Err(Error::config(format!(
                    "the resource indicator {value:?} is not an absolute URI without a fragment \
                     (RFC 8707 §2)"
                )));
            }
        }
        Ok(TokenExchange {
            grant: self.grant.build()?,
            subject,
            actor: self.actor,
            requested_token_type: self.requested_token_type,
            params: self.params,
        })
    }
}

/// RFC 8707 §2: "an absolute URI ... MUST NOT include a fragment component".
fn is_absolute_uri_without_fragment(value: &str) -> bool {
    !value.contains('#')
        && value
            .parse::<http::Uri>()
            .is_ok_and(|uri| uri.scheme().is_some())
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &self.grant.endpoint)
            .field("auth", &self.grant.auth)
            .field("subject_token_type", &self.subject.token_type)
            .field(
                "actor_token_type",
                &self.actor.as_ref().map(|a| &a.token_type),
            )
            .field("requested_token_type", &self.requested_token_type)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TokenExchangeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchangeBuilder")
            .field("auth", &self.grant.auth)
            .field("requested_token_type", &self.requested_token_type)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}
