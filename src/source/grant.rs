//! What the OAuth 2.0 grants share ([`ClientCredentials`](super::ClientCredentials),
//! [`RefreshTokenGrant`](super::RefreshTokenGrant), [`JwtBearer`](super::JwtBearer),
//! [`TokenExchange`](super::TokenExchange)), written once: the token endpoint, how the client
//! authenticates there, the field names of the answer, the HTTP client and the DPoP key; the
//! builder options for them ([`grant_builder_options!`]) and the keys a grant declares
//! ([`grant_source_keys!`]).
//!
//! Each grant keeps what is its own: its parameters, its form, its retry rules.

use std::sync::Arc;

use super::client_auth::{ClientAuth, http_client_for};
use super::endpoint::{Endpoint, Form};
use super::token_response::{TokenFields, TokenResponse};
use crate::http_client::HttpClient;
use crate::{Error, Token};

/// How a grant authenticates: always ([`ClientAuth`], the client credentials grant) or when
/// the server wants it (`Option<ClientAuth>`, the others).
pub(crate) trait Authentication: Clone {
    fn client_auth(&self) -> Option<&ClientAuth>;
}

impl Authentication for ClientAuth {
    fn client_auth(&self) -> Option<&ClientAuth> {
        Some(self)
    }
}

impl Authentication for Option<ClientAuth> {
    fn client_auth(&self) -> Option<&ClientAuth> {
        self.as_ref()
    }
}

/// A grant's builder state that every grant has; checked and turned into a [`GrantEndpoint`]
/// by [`build`](Self::build).
pub(crate) struct GrantConfig<A> {
    token_url: String,
    pub(super) auth: A,
    pub(super) fields: TokenFields,
    pub(super) client: Option<Arc<dyn HttpClient>>,
    #[cfg(feature = "dpop")]
    pub(super) dpop: Option<crate::dpop::Dpop>,
}

impl<A: Authentication> GrantConfig<A> {
    /// The defaults: the OAuth 2.0 field names, the shared HTTP client, no DPoP.
    pub(super) fn new(token_url: String, auth: A) -> Self {
        GrantConfig {
            token_url,
            auth,
            fields: TokenFields::oauth2(),
            client: None,
            #[cfg(feature = "dpop")]
            dpop: None,
        }
    }

    /// The DPoP key set so far: what a [`Discovered`](crate::source::Discovered) source
    /// declares before it is built.
    #[cfg(feature = "dpop")]
    pub(super) fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.dpop.as_ref()
    }

    /// Check the URL. The endpoint is called through the client given, else (for mutual TLS)
    /// a built-in one presenting the certificate, else the shared default. Does no I/O.
    pub(super) fn build(self) -> Result<GrantEndpoint<A>, Error> {
        let client = http_client_for(self.client, self.auth.client_auth())?;
        let endpoint = Endpoint::new(&self.token_url, client)?;
        #[cfg(feature = "dpop")]
        let endpoint = endpoint.with_dpop(self.dpop);
        Ok(GrantEndpoint {
            endpoint,
            auth: self.auth,
            fields: self.fields,
        })
    }
}

/// A built grant's token endpoint, with the client's authentication and the answer's field
/// names: sends a grant's form and reads the answer.
#[derive(Clone)]
pub(crate) struct GrantEndpoint<A> {
    pub(super) endpoint: Endpoint,
    pub(super) auth: A,
    fields: TokenFields,
}

impl<A: Authentication> GrantEndpoint<A> {
    /// POST `form` (with the client's authentication) and read the answer; `refused` says in
    /// the grant's words what a rejection refused.
    pub(super) async fn response(
        &self,
        form: Form,
        refused: &'static str,
    ) -> Result<TokenResponse, Error> {
        self.endpoint
            .grant(form, self.auth.client_auth(), &self.fields, refused)
            .await
    }

    /// [`response`](Self::response), read as an access token.
    pub(super) async fn token(&self, form: Form, refused: &'static str) -> Result<Token, Error> {
        let response = self.response(form, refused).await?;
        self.access_token(response)
    }

    /// The access token of an answer (a Bearer one, or a DPoP one when DPoP was asked for).
    pub(super) fn access_token(&self, response: TokenResponse) -> Result<Token, Error> {
        response.into_token(false).map_err(|e| self.endpoint.tag(e))
    }

    /// The DPoP key the tokens are bound to, if any.
    #[cfg(feature = "dpop")]
    pub(super) fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.endpoint.dpop()
    }

    /// The certificate the client authenticates with, if any.
    #[cfg(feature = "reqwest")]
    pub(super) fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.auth.client_auth()?.client_identity()
    }
}

/// In a grant builder's `impl` block: the options every grant has (`fields`, `dpop`, and
/// `build`/`build_with` from [`build_options!`](super::builder::build_options)), for a builder
/// with a `grant: GrantConfig<_>` field and a `fn finish(self) -> Result<Built, Error>`. The
/// doc comment given says what `build` checks.
macro_rules! grant_builder_options {
    ($(#[$build_doc:meta])* build -> $built:ty;) => {
        /// The field names of the answer (default
        /// [`TokenFields::oauth2`](crate::source::TokenFields::oauth2)).
        pub fn fields(mut self, fields: $crate::source::TokenFields) -> Self {
            self.grant.fields = fields;
            self
        }

        /// Ask for DPoP-bound tokens (RFC 9449): every token request carries a proof signed
        /// with `dpop`'s key, the answer must have `token_type` `DPoP` (a `Bearer` one is
        /// refused), and the tokens are bound to the key
        /// ([`Token::with_dpop`](crate::Token::with_dpop)): the layer or middleware signs
        /// each request's proof with it.
        #[cfg(feature = "dpop")]
        #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
        pub fn dpop(mut self, dpop: $crate::dpop::Dpop) -> Self {
            self.grant.dpop = Some(dpop);
            self
        }

        $crate::source::builder::build_options! {
            $(#[$build_doc])*
            build -> $built;
            client at grant.client;
            calls "the endpoint";
        }
    };
}

/// In a grant's `TokenSource` impl: `dpop` and `client_identity`, read from the
/// [`GrantEndpoint`] at `self.<path>`.
macro_rules! grant_source_keys {
    ($($path:tt)+) => {
        #[cfg(feature = "dpop")]
        fn dpop(&self) -> Option<&$crate::dpop::Dpop> {
            self.$($path)+.dpop()
        }

        #[cfg(feature = "reqwest")]
        fn client_identity(&self) -> Option<&$crate::http_client::ClientIdentity> {
            self.$($path)+.client_identity()
        }
    };
}

pub(super) use {grant_builder_options, grant_source_keys};
