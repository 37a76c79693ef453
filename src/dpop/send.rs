//! One DPoP request, for the tower layer and the reqwest middleware alike: attach the token
//! and a fresh proof, remember the answer's nonce, and send once more after a nonce challenge
//! or a rejected token.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, Method, StatusCode};

use super::{Bound, DPOP, Dpop, Target, USE_DPOP_NONCE};
use crate::service::Sent;
use crate::{CachedToken, Error, TokenCache, TokenSource, challenge};

/// How requests and responses of one HTTP stack are sent and read.
pub(crate) trait Transport {
    type Request;
    type Response;
    type Error;

    fn headers_mut(request: &mut Self::Request) -> &mut HeaderMap;
    fn try_clone(request: &Self::Request) -> Option<Self::Request>;
    fn status(response: &Self::Response) -> StatusCode;
    fn headers(response: &Self::Response) -> &HeaderMap;
    fn extensions_mut(response: &mut Self::Response) -> &mut Extensions;
    fn error(error: Error) -> Self::Error;
    fn send(
        &mut self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
}

/// The cache and what was computed for its current token, shared by a layer's services (or a
/// middleware's clones).
pub(crate) struct Binding<P> {
    pub(crate) cache: TokenCache<P>,
    last: ArcSwapOption<BoundToken>,
}

struct BoundToken {
    token: CachedToken,
    bound: Bound,
}

impl<P: TokenSource> Binding<P> {
    pub(crate) fn new(cache: TokenCache<P>) -> Self {
        Binding {
            cache,
            last: ArcSwapOption::empty(),
        }
    }

    /// The `Authorization` value and `ath` for `token`: computed once per token.
    fn bound(&self, token: &CachedToken) -> Result<Arc<BoundToken>, Error> {
        if let Some(last) = self.last.load_full()
            && Arc::ptr_eq(&last.token.0, &token.0)
        {
            return Ok(last);
        }
        let fresh = Arc::new(BoundToken {
            token: token.clone(),
            bound: Bound::new(token.secret())?,
        });
        self.last.store(Some(Arc::clone(&fresh)));
        Ok(fresh)
    }

    fn attach(
        &self,
        dpop: &Dpop,
        token: &CachedToken,
        method: &Method,
        target: &Target,
        headers: &mut HeaderMap,
    ) -> Result<(), Error> {
        let bound = self.bound(token)?;
        let proof = dpop.proof_for(method, target, Some(&bound.bound.ath))?;
        headers.insert(AUTHORIZATION, bound.bound.authorization.clone());
        headers.insert(DPOP, proof);
        Ok(())
    }

    /// Send `request` with the token and a proof; send it once more (when it can be copied)
    /// after a `use_dpop_nonce` challenge, with the new nonce, or after a 401 that rejects
    /// the token, with a new token if `replay_on_401`. Never a third time.
    pub(crate) async fn send<T: Transport>(
        &self,
        mut transport: T,
        method: Method,
        target: Target,
        mut request: T::Request,
        replay_on_401: bool,
    ) -> Result<T::Response, T::Error> {
        let dpop = super::of_source(self.cache.source()).map_err(T::error)?;
        let token = self.cache.token().await.map_err(T::error)?;
        let copy = T::try_clone(&request);
        self.attach(dpop, &token, &method, &target, T::headers_mut(&mut request))
            .map_err(T::error)?;
        let mut response = transport.send(request).await?;
        let new_nonce = dpop.remember(&target, T::headers(&response));

        let retry_with = if T::status(&response) == StatusCode::UNAUTHORIZED
            && new_nonce
            && asks_for_nonce(T::headers(&response))
        {
            tracing::debug!("the server asked for a DPoP nonce; sending the request once more");
            Some(token)
        } else if !self.report::<T>(&token, &mut response) || !replay_on_401 || copy.is_none() {
            return Ok(response);
        } else {
            match self.cache.token().await {
                Ok(fresh) if !Arc::ptr_eq(&fresh.0, &token.0) => Some(fresh),
                Ok(_) => {
                    tracing::debug!(
                        "the new token is the one just rejected; returning the 401 instead of \
                         replaying"
                    );
                    None
                }
                Err(error) => {
                    tracing::warn!(
                        error = %error,
                        "no new token to replay a request after a 401; returning the 401"
                    );
                    None
                }
            }
        };
        let (Some(token), Some(mut copy)) = (retry_with, copy) else {
            return Ok(response);
        };
        // Let the first answer (and its connection) go before sending the second request.
        drop(response);
        self.attach(dpop, &token, &method, &target, T::headers_mut(&mut copy))
            .map_err(T::error)?;
        let mut second = transport.send(copy).await?;
        dpop.remember(&target, T::headers(&second));
        // The second answer is final, but a 401 to it still tells the cache.
        self.report::<T>(&token, &mut second);
        Ok(second)
    }

    /// The 401 policy shared with Bearer: if `response` rejects `token`, which the request
    /// carried, drop it from the cache (compare-and-invalidate, throttled). A 401 marked by a
    /// layer further in as being about another token is not about this one.
    fn report<T: Transport>(&self, token: &CachedToken, response: &mut T::Response) -> bool {
        if !challenge::rejects_dpop_token(T::status(response), T::headers(response)) {
            return false;
        }
        let sent = Sent::new(self.cache.registry_id(), token.generation());
        if !sent.marker().claim(T::extensions_mut(response)) {
            return false;
        }
        let dropped = self
            .cache
            .invalidate_after_401(|current| current.is(&token.0));
        tracing::debug!(
            generation = token.generation(),
            dropped,
            "the server rejected the DPoP token (401)"
        );
        true
    }
}

/// Whether a 401 carries `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
fn asks_for_nonce(headers: &HeaderMap) -> bool {
    challenge::parse_headers(headers).iter().any(|c| {
        c.is_dpop()
            && c.param("error")
                .is_some_and(|e| e.eq_ignore_ascii_case(USE_DPOP_NONCE))
    })
}

impl<P> std::fmt::Debug for Binding<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
