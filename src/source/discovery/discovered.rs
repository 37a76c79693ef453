//! [`Discovered`]: a token source built from discovered metadata, rebuilt when the token
//! endpoint moves.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Set once a source has been built: from then on the binding below is known.
    built_once: AtomicBool,
    /// The binding (DPoP key and certificate) was declared from the configuration, before
    /// the first build: true for the grants [`Discovery`] builds, false for
    /// [`Discovery::source`]'s until its source is built. What
    /// [`TokenSource::binding_known`] answers.
    declared: bool,
    /// The DPoP key of the source's tokens, `None` inside for none: set from the
    /// configuration before the first build for the grants [`Discovery`] builds (so a fleet
    /// process files and adopts its first token under the right binding), else once built.
    /// What [`TokenSource::dpop`] declares; a build whose key differs from it is refused.
    #[cfg(feature = "dpop")]
    dpop: std::sync::OnceLock<Option<crate::dpop::Dpop>>,
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
            built_once: AtomicBool::new(false),
            declared: false,
            #[cfg(feature = "dpop")]
            dpop: std::sync::OnceLock::new(),
            #[cfg(feature = "reqwest")]
            identity: std::sync::OnceLock::new(),
        }
    }

    /// Declare the binding of the source's tokens before the source is built: the client
    /// certificate of `auth` (if it is a mutual TLS one) and the DPoP key `configure` sets
    /// (read by [`DeclaresDpop::declared_dpop`], from a builder `configure` was given).
    pub(super) fn declaring(
        mut self,
        auth: Option<&super::super::ClientAuth>,
        dpop: &impl DeclaresDpop,
    ) -> Self {
        #[cfg(feature = "reqwest")]
        if let Some(identity) = auth.and_then(super::super::ClientAuth::client_identity) {
            let _ = self.identity.set(identity.clone());
        }
        #[cfg(feature = "dpop")]
        let _ = self.dpop.set(dpop.declared_dpop().cloned());
        let _ = (auth, dpop);
        self.declared = true;
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
        {
            let key = |d: Option<&crate::dpop::Dpop>| d.map(|d| d.key().thumbprint().to_owned());
            let declared = self.dpop.get_or_init(|| source.dpop().cloned());
            if key(declared.as_ref()) != key(source.dpop()) {
                return Err(Error::config(
                    "the discovered source was built with another DPoP key than the one it \
                     was configured with: give the builder the same key on every call (make \
                     it once, outside the closure)",
                ));
            }
        }
        #[cfg(feature = "reqwest")]
        if let Some(identity) = source.client_identity() {
            let _ = self.identity.set(identity.clone());
        }
        *built = Some((metadata, Arc::clone(&source)));
        self.built_once.store(true, Ordering::Release);
        Ok(source)
    }

    /// The discovery this source reads.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }
}

/// A builder of the grants [`Discovery`] builds, asked for the DPoP key it was given before
/// the source is built.
pub(super) trait DeclaresDpop {
    /// The DPoP key set on the builder, if any.
    #[cfg(feature = "dpop")]
    fn declared_dpop(&self) -> Option<&crate::dpop::Dpop>;
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
        self.dpop.get().and_then(Option::as_ref)
    }

    fn binding_known(&self) -> bool {
        self.declared || self.built_once.load(Ordering::Acquire)
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
