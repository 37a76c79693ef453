//! Step 3 of the pipeline: put the token on the request, as the token's binding says.
//!
//! A bearer token is its prebuilt `Authorization` value (built once per token by the cache). A
//! DPoP-bound token is its prebuilt `Authorization: DPoP …` value, plus a proof signed for this
//! request's method and URL with the token's `ath` (computed once per token) and the nonce last
//! remembered for the origin.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::{CachedToken, Error};

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
    /// How to attach `token`, from a cache whose source declares `declared`
    /// ([`TokenSource::dpop`](crate::TokenSource::dpop)): bound as the token says, or, for a
    /// token without a binding of its own (adopted from the fleet tier), as the source declares.
    pub(crate) fn new(declared: Option<&Declared>, token: &CachedToken) -> Result<Attach, Error> {
        #[cfg(feature = "dpop")]
        {
            let parts = |binding: &crate::token::DpopBinding| DpopParts {
                dpop: binding.dpop.clone(),
                ath: binding.ath.clone(),
                target: None,
            };
            if let Some(binding) = token.0.token.dpop_binding() {
                return Ok(Attach {
                    authorization: token.header_value().clone(),
                    dpop: Some(parts(binding)),
                });
            }
            if let Some(dpop) = declared {
                let bound = crate::Token::new(token.secret()).with_dpop(dpop.clone());
                let binding = bound.dpop_binding().expect("just bound");
                return Ok(Attach {
                    authorization: bound.header_value()?,
                    dpop: Some(parts(binding)),
                });
            }
        }
        let _ = declared;
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

    /// Read the request's method and absolute URI (`target`), for the proofs of a DPoP-bound
    /// token; nothing for a bearer token, or when already read.
    pub(crate) fn aim(
        &mut self,
        target: impl FnOnce() -> Result<Target, Error>,
    ) -> Result<(), Error> {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &mut self.dpop
            && parts.target.is_none()
        {
            parts.target = Some(target()?);
        }
        let _ = target;
        Ok(())
    }

    /// Put the token (and a fresh proof, for the target [`aim`](Self::aim) read) in
    /// `headers`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &self.dpop {
            let Some((method, target)) = &parts.target else {
                return Err(Error::config("a DPoP proof needs the request's target"));
            };
            let proof = parts.dpop.proof_for(method, target, Some(&parts.ath))?;
            headers.insert(crate::dpop::DPOP, proof);
        }
        headers.insert(AUTHORIZATION, self.authorization.clone());
        Ok(())
    }

    /// Remember the DPoP nonce in `headers`, if any, for the origin that sent it (`responder`,
    /// else the request's). Returns whether it is a new one.
    pub(crate) fn remember_nonce(&self, responder: Option<Responder>, headers: &HeaderMap) -> bool {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &self.dpop {
            let target = responder
                .as_ref()
                .or(parts.target.as_ref().map(|(_, target)| target));
            return target.is_some_and(|target| parts.dpop.remember(target, headers));
        }
        let _ = (responder, headers);
        false
    }
}

/// What a source declares its tokens are bound to.
#[cfg(feature = "dpop")]
pub(crate) type Declared = crate::dpop::Dpop;
#[cfg(not(feature = "dpop"))]
pub(crate) type Declared = std::convert::Infallible;

/// A request's method and proof target.
#[cfg(feature = "dpop")]
pub(crate) type Target = (http::Method, crate::dpop::Target);
#[cfg(not(feature = "dpop"))]
pub(crate) type Target = ();

/// The origin that sent a response, when the stack knows it.
#[cfg(feature = "dpop")]
pub(crate) type Responder = crate::dpop::Target;
#[cfg(not(feature = "dpop"))]
pub(crate) type Responder = ();

/// What `source` declares ([`TokenSource::dpop`](crate::TokenSource::dpop)).
pub(crate) fn declared<P: crate::TokenSource>(source: &P) -> Option<&Declared> {
    #[cfg(feature = "dpop")]
    return source.dpop();
    #[cfg(not(feature = "dpop"))]
    {
        let _ = source;
        None
    }
}
