//! [`Discovered`]: a token source built from discovered metadata, rebuilt when the token
//! endpoint moves.

use std::fmt;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::{Discovery, Metadata};
use crate::http_client::HttpClient;
use crate::{Error, ErrorKind, Token, TokenSource};

pub(super) type Build<S> = dyn Fn(&Metadata, Arc<dyn HttpClient>) -> Result<S, Error> + Send + Sync;

/// A [`TokenSource`] built from discovered metadata: made by [`Discovery::client_credentials`]
/// and its siblings.
///
/// Each fetch asks the [`Discovery`] for the metadata (kept, so this is a lock and a clock
/// read), builds the source the first time and again when the `token_endpoint` changes, and
/// fetches from it. A transport failure, a 5xx or a 404 from the token endpoint marks the
/// metadata stale, so the next fetch (after the cache's backoff) reads it again.
pub struct Discovered<S> {
    discovery: Discovery,
    auth_method: Option<&'static str>,
    grant: &'static str,
    build: Box<Build<S>>,
    built: Mutex<Option<(Arc<Metadata>, Arc<S>)>>,
    /// The DPoP key of the built source, once built: what [`TokenSource::dpop`] declares
    /// (the tokens themselves carry their binding from the first fetch on).
    #[cfg(feature = "dpop")]
    dpop: std::sync::OnceLock<crate::dpop::Dpop>,
    /// The client certificate of the source's client authentication: known before the first
    /// build for the grants [`Discovery`] builds (so a fleet process can adopt a token before
    /// its own source exists), else once built. What [`TokenSource::client_identity`] declares.
    #[cfg(feature = "reqwest")]
    identity: std::sync::OnceLock<crate::http_client::ClientIdentity>,
}

impl<S> Discovered<S> {
    pub(super) fn new(
        discovery: Discovery,
        auth_method: Option<&'static str>,
        grant: &'static str,
        build: Box<Build<S>>,
    ) -> Self {
        Discovered {
            discovery,
            auth_method,
            grant,
            build,
            built: Mutex::new(None),
            #[cfg(feature = "dpop")]
            dpop: std::sync::OnceLock::new(),
            #[cfg(feature = "reqwest")]
            identity: std::sync::OnceLock::new(),
        }
    }

    /// Declare the client certificate of `auth` (if it is a mutual TLS one) before the source
    /// is built.
    pub(super) fn authenticating_with(self, auth: Option<&super::super::ClientAuth>) -> Self {
        #[cfg(feature = "reqwest")]
        if let Some(identity) = auth.and_then(super::super::ClientAuth::client_identity) {
            let _ = self.identity.set(identity.clone());
        }
        let _ = auth;
        self
    }
}

impl<S: TokenSource> Discovered<S> {
    /// The source for the current metadata, built if need be: to call methods of its own
    /// (such as [`RefreshTokenGrant::revoke`](crate::source::RefreshTokenGrant::revoke)).
    pub async fn get(&self) -> Result<Arc<S>, Error> {
        let metadata = self.discovery.metadata().await?;
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *built {
            Some((seen, source)) if Arc::ptr_eq(seen, &metadata) => return Ok(Arc::clone(source)),
            // A new document with the same token endpoint: keep the source (and whatever it
            // holds, such as a rotated refresh token not saved yet).
            Some((seen, source)) if seen.same_token_endpoint(&metadata) => {
                *seen = metadata;
                return Ok(Arc::clone(source));
            }
            _ => {}
        }
        if let Some(method) = self.auth_method {
            metadata.check_auth_method(method)?;
        }
        metadata.check_grant(self.grant);
        let source = Arc::new((self.build)(&metadata, self.discovery.client())?);
        #[cfg(feature = "dpop")]
        if let Some(dpop) = source.dpop() {
            let _ = self.dpop.set(dpop.clone());
        }
        #[cfg(feature = "reqwest")]
        if let Some(identity) = source.client_identity() {
            let _ = self.identity.set(identity.clone());
        }
        *built = Some((metadata, Arc::clone(&source)));
        Ok(source)
    }

    /// The discovery this source reads.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }
}

/// A token endpoint that no longer answers as one: the metadata may have moved it.
fn stopped_answering(error: &Error) -> bool {
    error.kind() == ErrorKind::Transient && error.status() != Some(StatusCode::TOO_MANY_REQUESTS)
        || error.kind() == ErrorKind::Config && error.status() == Some(StatusCode::NOT_FOUND)
}

impl<S: TokenSource> TokenSource for Discovered<S> {
    async fn fetch(&self) -> Result<Token, Error> {
        let source = self.get().await?;
        let result = source.fetch().await;
        if let Err(error) = &result
            && stopped_answering(error)
        {
            tracing::info!(%error, "the token endpoint stopped answering; the authorization server metadata will be fetched again");
            self.discovery.mark_stale();
        }
        result
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.dpop.get()
    }

    #[cfg(feature = "reqwest")]
    fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.identity.get()
    }
}

impl<S> fmt::Debug for Discovered<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovered")
            .field("issuer", &self.discovery.shared.issuer)
            .field("auth_method", &self.auth_method)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}
