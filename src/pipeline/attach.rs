//! Step 3 of the pipeline: put the token on the request, as the token's binding says.
//!
//! A bearer token is its prebuilt `Authorization` value (built once per token by the cache). A
//! DPoP-bound token is its prebuilt `Authorization: DPoP …` value, plus a proof signed for this
//! request's method and URL with the token's `ath` (computed once per token) and the nonce last
//! remembered for the origin.

use http::HeaderValue;
use http::header::AUTHORIZATION;

use super::Transport;
use crate::{CachedToken, Error, TokenCache, TokenSource};

/// What one token needs to be attached to requests.
pub(crate) struct Attach {
    authorization: HeaderValue,
    #[cfg(feature = "dpop")]
    dpop: Option<DpopParts>,
}

#[cfg(feature = "dpop")]
struct DpopParts {
    dpop: crate::dpop::Dpop,
    ath: std::sync::Arc<str>,
    /// The request's target, read once (the same for every resend).
    target: Option<(http::Method, crate::dpop::Target)>,
}

impl Attach {
    /// How to attach `token`, from `cache`: bound as the token says, or, for a token without a
    /// binding of its own (adopted from the fleet tier), as the cache's source declares.
    pub(crate) fn new<P: TokenSource>(
        cache: &TokenCache<P>,
        token: &CachedToken,
    ) -> Result<Attach, Error> {
        #[cfg(feature = "dpop")]
        {
            if let Some(binding) = token.0.token.dpop_binding() {
                return Ok(Attach {
                    authorization: token.header_value().clone(),
                    dpop: Some(DpopParts {
                        dpop: binding.dpop.clone(),
                        ath: binding.ath.clone(),
                        target: None,
                    }),
                });
            }
            if let Some(dpop) = cache.source().dpop() {
                let bound = crate::Token::new(token.secret()).with_dpop(dpop.clone());
                let binding = bound.dpop_binding().expect("just bound");
                return Ok(Attach {
                    authorization: bound.header_value()?,
                    dpop: Some(DpopParts {
                        dpop: binding.dpop.clone(),
                        ath: binding.ath.clone(),
                        target: None,
                    }),
                });
            }
        }
        let _ = cache;
        Ok(Attach {
            authorization: token.header_value().clone(),
            #[cfg(feature = "dpop")]
            dpop: None,
        })
    }

    /// Whether requests carry a DPoP proof.
    pub(crate) fn is_dpop(&self) -> bool {
        #[cfg(feature = "dpop")]
        return self.dpop.is_some();
        #[cfg(not(feature = "dpop"))]
        false
    }

    /// Put the token (and a fresh proof) on `request`.
    pub(crate) fn apply<T: Transport>(&mut self, request: &mut T::Request) -> Result<(), Error> {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &mut self.dpop {
            if parts.target.is_none() {
                parts.target = Some(T::target(request)?);
            }
            let (method, target) = parts.target.as_ref().expect("just set");
            let proof = parts.dpop.proof_for(method, target, Some(&parts.ath))?;
            T::headers_mut(request).insert(crate::dpop::DPOP, proof);
        }
        T::headers_mut(request).insert(AUTHORIZATION, self.authorization.clone());
        Ok(())
    }

    /// Remember the DPoP nonce of `response`, if any, for the origin that sent it. Returns
    /// whether it is a new one.
    pub(crate) fn remember_nonce<T: Transport>(&self, response: &T::Response) -> bool {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &self.dpop {
            let responder = T::responder(response);
            let target = responder
                .as_ref()
                .or(parts.target.as_ref().map(|(_, target)| target));
            return target.is_some_and(|target| parts.dpop.remember(target, T::headers(response)));
        }
        let _ = response;
        false
    }
}
