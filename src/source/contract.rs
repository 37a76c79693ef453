//! [`TokenSource`], the one trait users implement (exported at the crate root).

use std::future::Future;
use std::sync::Arc;

use super::BoxTokenSource;
use crate::{Error, Token};

/// Something that can produce a fresh access token.
///
/// The cache calls [`fetch`](TokenSource::fetch) from a spawned task, at most once at a time per
/// cache, and never cancels it because a request gave up. Return errors classified by kind
/// ([`Error::transient`], [`Error::rejected`], ...): the cache backs off on transient errors and
/// remembers rejections for a while, so a dead credential does not turn every request into a
/// token-endpoint call.
///
/// Implement it with `async fn fetch(&self) -> Result<Token, Error>`.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetch a new token.
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send;

    /// The DPoP key and nonces this source's tokens are bound to, if it asks for DPoP-bound
    /// tokens (RFC 9449). Default: none.
    ///
    /// The tokens carry their binding themselves ([`Token::with_dpop`], set by the built-in
    /// sources configured with `.dpop(..)`), and the layer and middleware attach each token
    /// as its binding says, so a wrapper source that only implements `fetch` still sends DPoP.
    /// This declaration is for tokens that did not come from this process's `fetch`: the
    /// fleet tier (which key the process holds), and the layer and middleware for a token
    /// adopted from it. The crate's wrappers (`Arc`, `Box`, discovery, keyed slots) forward it;
    /// a wrapper of your own used with the fleet tier must forward it too.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        None
    }

    /// This source as a [`BoxTokenSource`]: one type for sources of any grant.
    fn boxed(self) -> BoxTokenSource
    where
        Self: Sized,
    {
        BoxTokenSource::new(self)
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        (**self).fetch()
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        (**self).dpop()
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Box<T> {
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        (**self).fetch()
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        (**self).dpop()
    }
}
