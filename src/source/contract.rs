//! [`TokenSource`], the one trait users implement (exported at the crate root).

use std::future::Future;
use std::sync::Arc;

use super::BoxTokenSource;
use crate::{Error, Token};

/// Something that can produce a fresh access token.
///
/// The cache calls [`fetch`](TokenSource::fetch) at most once at a time per cache, and never
/// cancels it because a request gave up: the refresh runs in a task of its own (started, up to
/// its first wait, by a caller that has no token to serve and would wait for it anyway; a
/// fetch that answers at once is done by then). Return errors classified by kind
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

    /// The client certificate this source authenticates with at the token endpoint (mutual
    /// TLS, RFC 8705), to which the server binds its tokens (`cnf.x5t#S256`). Default: none.
    ///
    /// The built-in grants declare the certificate of their
    /// [`ClientAuth::tls_client_auth`](crate::source::ClientAuth::tls_client_auth) or
    /// [`ClientAuth::self_signed_tls_client_auth`](crate::source::ClientAuth::self_signed_tls_client_auth);
    /// the crate's wrappers (`Arc`, `Box`, discovery, keyed slots) forward it. The fleet tier
    /// shares a token only between processes declaring the same certificate (unless it was
    /// given one with `fleet::RedisFleetBuilder::certificate_bound`),
    /// so a process never adopts a token bound to a certificate it does not hold. A source
    /// whose own HTTP client presents a certificate (not through
    /// [`ClientAuth`](crate::source::ClientAuth)) declares it by overriding this.
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        None
    }

    /// Whether `dpop` and `client_identity` (features `dpop`, `reqwest`) already answer for
    /// this source's tokens. Default: yes.
    ///
    /// A source that learns its binding only as it fetches (a
    /// [`Discovery::source`](crate::source::Discovery::source) of your own, before its first
    /// build) answers no until then, and the fleet tier neither adopts nor publishes a token
    /// for it meanwhile (that fetch is its own, as when Redis is unavailable): filed under a
    /// binding it may not have, a token could be adopted by, or taken from, a process bound
    /// otherwise. The crate's wrappers forward it.
    fn binding_known(&self) -> bool {
        true
    }

    /// This source as a [`BoxTokenSource`]: one type for sources of any grant.
    fn boxed(self) -> BoxTokenSource
    where
        Self: Sized,
    {
        BoxTokenSource::new(self)
    }
}

/// `Arc<T>` and `Box<T>` are the source they hold: every method is forwarded.
macro_rules! forward_to_pointee {
    ($($pointer:ident),*) => {$(
        impl<T: TokenSource + ?Sized> TokenSource for $pointer<T> {
            fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
                (**self).fetch()
            }

            #[cfg(feature = "dpop")]
            fn dpop(&self) -> Option<&crate::dpop::Dpop> {
                (**self).dpop()
            }

            #[cfg(feature = "reqwest")]
            fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
                (**self).client_identity()
            }

            fn binding_known(&self) -> bool {
                (**self).binding_known()
            }
        }
    )*};
}

forward_to_pointee!(Arc, Box);
