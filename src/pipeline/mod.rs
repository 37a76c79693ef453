//! The one request path, written once for every front end.
//!
//! Every request that may carry a token goes through the same five steps, whether it came in
//! through the tower layer ([`BearerAuthLayer`](crate::BearerAuthLayer)) or the reqwest
//! middleware (`BearerAuthMiddleware`):
//!
//! 1. **destination**: may this request carry a token at all? The origin rules
//!    ([`origin`](crate::Origin): allow-list, plain http only to loopback) and, with a keyed
//!    cache, which key the destination maps to ([`keyed`](crate::keyed)). The front end does
//!    this step, because it is where the request's URI is cheapest to read.
//! 2. **cache**: the [`TokenCache`] to take the token from: the one cache, or the slot of a
//!    [`KeyedTokenCache`](crate::keyed::KeyedTokenCache) for the key picked in step 1. Which
//!    of the two is the front end's [`Tokens`] parameter (`TokenCache<P>` by default,
//!    [`PerKey`](crate::keyed::PerKey) from `per_origin` and `per_request`): the layer, its
//!    service and the middleware are each one type, their setters written once.
//! 3. **attach** (`attach`): `Authorization: Bearer <token>`, or, for a token bound to a DPoP
//!    key, `Authorization: DPoP <token>` and a fresh proof. Which one is a property of the
//!    token (`Token::with_dpop`, set by the built-in sources
//!    configured with `.dpop(..)`), with `TokenSource::dpop` as the declaration for tokens
//!    that did not come from the source itself (the fleet tier). So nothing between the source
//!    and the request (discovery, keyed slots, a wrapper source of the user's, the fleet) can
//!    lose the binding, and there is no separate DPoP stack.
//! 4. **send** through the next service (`Transport`: the inner tower service, or
//!    reqwest-middleware's `Next`).
//! 5. **judge** (`judge`): one rejection decision over the status, `WWW-Authenticate` of the
//!    token's scheme ([`challenge`](crate::challenge)), the user's
//!    [`RejectionRule`](crate::challenge::RejectionRule), the body rule, and a mark set by a
//!    layer below ([`RejectedToken`](crate::challenge::RejectedToken)). A rejected token is
//!    dropped from its cache if it is still the current one (compare-and-invalidate, at most
//!    one drop per second per cache). A DPoP `use_dpop_nonce` challenge is not a rejection: the
//!    nonce is remembered for the origin that sent it and the request is sent once more with
//!    it, which does **not** use up the replay below.
//! 6. **replay**: with `replay_on_401`, a rejected request whose body can be copied is sent
//!    once more with a new token (never with the value just rejected), and never a third
//!    time for a rejection.
//!
//! The front ends are adapters: they implement `Transport` for their request and response
//! types and call `send`. The tower service keeps one path of its own, the fast path of a
//! fresh bearer token (one atomic load, a coarse clock read, a cached header, a named future,
//! no box: see `service`), whose judging is `judge::Sent::report`, the same decision.
//! Everything else (waiting for a token, DPoP, replay) is `send`.

pub(crate) mod attach;
pub(crate) mod judge;
pub(crate) mod tokens;

use std::future::Future;

use http::{Extensions, HeaderMap, StatusCode};

use crate::{CachedToken, Error, TokenCache, TokenSource};
use attach::Attach;
pub(crate) use judge::{BodyRule, Judge};
pub(crate) use tokens::Sealed as TokensSealed;
pub use tokens::Tokens;

/// How one HTTP stack's requests are copied and sent and its responses read.
pub(crate) trait Transport {
    type Request;
    type Response;
    type Error;

    fn headers_mut(request: &mut Self::Request) -> &mut HeaderMap;
    /// The request's method and absolute URI, for a DPoP proof.
    fn target(request: &Self::Request) -> Result<attach::Target, Error>;
    /// A copy of `request` to send again, when its body can be copied (and the front end was
    /// configured to copy bodies).
    fn try_clone(&self, request: &Self::Request) -> Option<Self::Request>;
    fn status(response: &Self::Response) -> StatusCode;
    fn headers(response: &Self::Response) -> &HeaderMap;
    fn extensions(response: &Self::Response) -> &Extensions;
    fn extensions_mut(response: &mut Self::Response) -> &mut Extensions;
    /// The origin that sent `response`, when the stack knows it (after redirects it is not
    /// the request's): where a DPoP nonce in it is remembered.
    fn responder(response: &Self::Response) -> Option<attach::Responder>;
    fn error(error: Error) -> Self::Error;
    fn send(
        &mut self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
    /// Whether `rule` says the body of `response` rejects the token. The body is read (up to
    /// the rule's size and time limits) and put back, so the caller still gets it.
    fn body_rejects(
        response: &mut Self::Response,
        rule: &BodyRule,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// Send `request` with a token from `cache`: attach, send, judge, and send at most once more
/// for a DPoP nonce and at most once more for a rejected token (with `judge.replay`).
pub(crate) async fn send<P: TokenSource, T: Transport>(
    cache: &TokenCache<P>,
    judge: &Judge,
    mut transport: T,
    mut request: T::Request,
) -> Result<T::Response, T::Error> {
    let declared = attach::declared(cache.source());
    let mut token = cache.token().await.map_err(T::error)?;
    let mut attach = Attach::new(declared, &token).map_err(T::error)?;
    let mut nonce_retry = attach.is_dpop();
    let mut replay = judge.replay;
    let mut template = if nonce_retry || replay {
        transport.try_clone(&request)
    } else {
        None
    };
    attach.aim(|| T::target(&request)).map_err(T::error)?;
    attach
        .apply_async(T::headers_mut(&mut request))
        .await
        .map_err(T::error)?;
    let mut response = transport.send(request).await?;
    loop {
        let new_nonce = attach.remember_nonce(T::responder(&response), T::headers(&response));
        let same_token = if nonce_retry
            && new_nonce
            && T::status(&response) == StatusCode::UNAUTHORIZED
            && judge::asks_for_nonce(T::headers(&response))
        {
            tracing::debug!("the server asked for a DPoP nonce; sending the request once more");
            nonce_retry = false;
            true
        } else if judge::rejects::<P, T>(cache, judge, &attach, &token, &mut response).await? {
            if !replay || template.is_none() {
                return Ok(response);
            }
            replay = false;
            false
        } else {
            return Ok(response);
        };
        if !same_token {
            match new_token(cache, &token).await {
                Some(fresh) => token = fresh,
                None => return Ok(response),
            }
            attach = Attach::new(declared, &token).map_err(T::error)?;
        }
        // The last possible resend takes the template itself; otherwise a copy of it.
        let copy = if nonce_retry || replay {
            template.as_ref().and_then(|t| transport.try_clone(t))
        } else {
            template.take()
        };
        let Some(mut copy) = copy else {
            return Ok(response);
        };
        // Let the first answer (and its connection) go before sending the next request.
        drop(response);
        attach.aim(|| T::target(&copy)).map_err(T::error)?;
        attach
            .apply_async(T::headers_mut(&mut copy))
            .await
            .map_err(T::error)?;
        tracing::debug!(
            generation = token.generation(),
            "sending the request once more"
        );
        response = transport.send(copy).await?;
    }
}

/// A token other than `rejected` to replay with, or `None` (with the reason logged) when there
/// is none: many token endpoints answer with the token they have cached, the one just
/// rejected, and a replay with it would only be refused again.
async fn new_token<P: TokenSource>(
    cache: &TokenCache<P>,
    rejected: &CachedToken,
) -> Option<CachedToken> {
    match cache.token().await {
        Ok(fresh) if fresh.header_value() != rejected.header_value() && fresh.is_usable_now() => {
            Some(fresh)
        }
        Ok(_) => {
            tracing::debug!(
                "the new token has the value that was just rejected; returning the 401 instead \
                 of replaying"
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
}
