//! Step 3 of the pipeline: put the token on the request, as the token's binding says.
//!
//! A bearer token is its prebuilt `Authorization` value (built once per token by the cache). A
//! DPoP-bound token is its prebuilt `Authorization: DPoP …` value, plus a proof signed for this
//! request's method and URL with the token's `ath` (computed once per token) and the nonce last
//! remembered for the origin. An in-process key signs the proof here, synchronously; a key
//! behind a signer ([`DpopKey::from_signer`](crate::dpop::DpopKey::from_signer)) is awaited
//! ([`Attach::apply_async`], and the tower service's [`sign_ahead`] while it waits).

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
    /// `headers`, signing here: an in-process key (a key behind a signer is an error, see
    /// [`apply_async`](Self::apply_async)).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &self.dpop {
            let (method, target) = parts.target()?;
            let proof = parts.dpop.proof_for(method, target, Some(&parts.ath))?;
            self.insert(headers, Some(proof));
            return Ok(());
        }
        self.insert(headers, None);
        Ok(())
    }

    /// [`apply`](Self::apply) with either key, awaiting a signer.
    pub(crate) async fn apply_async(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        let proof = self.proof_async().await?;
        self.insert(headers, proof);
        Ok(())
    }

    /// A fresh proof for the target [`aim`](Self::aim) read, awaiting a signer; `None` for a
    /// bearer token.
    async fn proof_async(&self) -> Result<Option<Proof>, Error> {
        #[cfg(feature = "dpop")]
        if let Some(parts) = &self.dpop {
            let (method, target) = parts.target()?;
            let proof = parts.dpop.proof_for_async(method, target, Some(&parts.ath));
            return proof.await.map(Some);
        }
        Ok(None)
    }

    /// Put the token and `proof` (made for it) in `headers`.
    fn insert(&self, headers: &mut HeaderMap, proof: Option<Proof>) {
        #[cfg(feature = "dpop")]
        if let Some(proof) = proof {
            headers.insert(crate::dpop::DPOP, proof);
        }
        #[cfg(not(feature = "dpop"))]
        let _ = proof;
        headers.insert(AUTHORIZATION, self.authorization.clone());
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

#[cfg(feature = "dpop")]
impl DpopParts {
    fn target(&self) -> Result<&Target, Error> {
        self.target
            .as_ref()
            .ok_or_else(|| Error::config("a DPoP proof needs the request's target"))
    }
}

/// A `DPoP` proof header value.
type Proof = HeaderValue;

/// A token and its proof for one request, signed before the request is sent (by a signer,
/// while the request waited for its token).
pub(crate) struct Signed {
    attach: Attach,
    proof: Option<Proof>,
}

impl Signed {
    /// Put the token and its proof in `headers`; how the token was attached, for the judge.
    pub(crate) fn apply(self, headers: &mut HeaderMap) -> Attach {
        self.attach.insert(headers, self.proof);
        self.attach
    }
}

/// Whether `token` (from a cache whose source declares `declared`) is attached with proofs a
/// signer makes, which are awaited ([`Attach::apply_async`]) rather than signed here.
pub(crate) fn signs_remotely(declared: Option<&Declared>, token: &CachedToken) -> bool {
    #[cfg(feature = "dpop")]
    return token
        .0
        .token
        .dpop_binding()
        .map(|binding| &binding.dpop)
        .or(declared)
        .is_some_and(|dpop| dpop.key().is_remote());
    #[cfg(not(feature = "dpop"))]
    {
        let _ = (declared, token);
        false
    }
}

/// For a token whose proofs a signer makes, the proof for a request to `target`, awaiting the
/// signer; `None` for any other token, which is attached on the request's path.
pub(crate) async fn sign_ahead(
    declared: Option<&Declared>,
    token: &CachedToken,
    target: impl FnOnce() -> Result<Target, Error>,
) -> Result<Option<Signed>, Error> {
    if !signs_remotely(declared, token) {
        return Ok(None);
    }
    let mut attach = Attach::new(declared, token)?;
    attach.aim(target)?;
    let proof = attach.proof_async().await?;
    Ok(Some(Signed { attach, proof }))
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
