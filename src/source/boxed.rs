//! [`BoxTokenSource`]: any source behind one type, to mix grants (per key, per environment)
//! without an enum or a long type name.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::TokenSource;
use crate::{Error, Token};

/// Any [`TokenSource`], behind one type: a token cache, a keyed cache's factory or a layer can
/// hold sources of different grants at once.
///
/// It is a source itself, and forwards everything the trait has (`fetch`, and the DPoP
/// binding with the `dpop` feature, the client certificate with `reqwest`). A fetch costs one allocation (its boxed future), once per
/// token refresh: the request path, which reads the cached token, is not affected. Clones share
/// the source.
///
/// ```
/// use tower_bearer::source::{BoxTokenSource, from_fn, static_token};
/// use tower_bearer::keyed::KeyedTokenCache;
/// use tower_bearer::{Error, Token, TokenSource};
///
/// // One keyed cache, a different source per key (a `ClientCredentials`, a
/// // `RefreshTokenGrant`, ... are boxed the same way).
/// let keyed = KeyedTokenCache::new(|key: &String| -> Result<BoxTokenSource, Error> {
///     Ok(match key.as_str() {
///         "vault" => from_fn(|| async { Ok(Token::new("from-the-vault")) }).boxed(),
///         _ => static_token("a-fixed-token").boxed(),
///     })
/// });
/// # let _ = keyed;
/// ```
#[derive(Clone)]
pub struct BoxTokenSource {
    inner: Arc<dyn DynSource>,
}

impl BoxTokenSource {
    /// Box `source`. A `BoxTokenSource` given here is returned as it is, not boxed twice.
    pub fn new(source: impl TokenSource) -> Self {
        let mut slot = Some(source);
        if let Some(boxed) =
            (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<BoxTokenSource>>()
            && let Some(boxed) = boxed.take()
        {
            return boxed;
        }
        let source = slot.expect("the source was not taken");
        BoxTokenSource {
            inner: Arc::new(source),
        }
    }
}

/// The object-safe form of [`TokenSource`]: its future boxed.
trait DynSource: Send + Sync + 'static {
    fn fetch_boxed(&self) -> Pin<Box<dyn Future<Output = Result<Token, Error>> + Send + '_>>;

    #[cfg(feature = "dpop")]
    fn dpop_dyn(&self) -> Option<&crate::dpop::Dpop>;

    #[cfg(feature = "reqwest")]
    fn client_identity_dyn(&self) -> Option<&crate::http_client::ClientIdentity>;

    fn binding_known_dyn(&self) -> bool;

    fn type_name(&self) -> &'static str;
}

impl<S: TokenSource> DynSource for S {
    fn fetch_boxed(&self) -> Pin<Box<dyn Future<Output = Result<Token, Error>> + Send + '_>> {
        Box::pin(self.fetch())
    }

    #[cfg(feature = "dpop")]
    fn dpop_dyn(&self) -> Option<&crate::dpop::Dpop> {
        self.dpop()
    }

    #[cfg(feature = "reqwest")]
    fn client_identity_dyn(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.client_identity()
    }

    fn binding_known_dyn(&self) -> bool {
        self.binding_known()
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<S>()
    }
}

impl TokenSource for BoxTokenSource {
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        self.inner.fetch_boxed()
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.inner.dpop_dyn()
    }

    #[cfg(feature = "reqwest")]
    fn client_identity(&self) -> Option<&crate::http_client::ClientIdentity> {
        self.inner.client_identity_dyn()
    }

    fn binding_known(&self) -> bool {
        self.inner.binding_known_dyn()
    }
}

impl fmt::Debug for BoxTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxTokenSource")
            .field("source", &self.inner.type_name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_boxed_source_fetches_and_is_not_boxed_twice() {
        let boxed = super::super::static_token("abc").boxed();
        assert_eq!(boxed.fetch().await.unwrap().secret(), "abc");
        let again = BoxTokenSource::new(boxed.clone());
        assert!(Arc::ptr_eq(&boxed.inner, &again.inner));
        let debug = format!("{boxed:?}");
        assert!(
            debug.contains("StaticToken") && !debug.contains("abc"),
            "{debug}"
        );
    }

    #[cfg(feature = "dpop")]
    #[test]
    fn a_boxed_source_forwards_its_dpop_binding() {
        struct Bound(crate::dpop::Dpop);
        impl TokenSource for Bound {
            async fn fetch(&self) -> Result<Token, Error> {
                Ok(Token::new("t"))
            }
            fn dpop(&self) -> Option<&crate::dpop::Dpop> {
                Some(&self.0)
            }
        }
        let dpop = crate::dpop::Dpop::generate().unwrap();
        let thumbprint = dpop.key().thumbprint().to_owned();
        let boxed = Bound(dpop).boxed();
        assert_eq!(boxed.dpop().unwrap().key().thumbprint(), thumbprint);
        assert!(super::super::static_token("x").boxed().dpop().is_none());
    }
}
