//! Step 5 of the pipeline: the one rejection decision, and what follows from it.
//!
//! A response rejects the token that was sent when, for the token's scheme (`Bearer` or
//! `DPoP`), it is a 401 that [rejects the token](crate::challenge::rejects_token); or the
//! user's [`RejectionRule`] says so; or the body rule says so after reading the body; or a
//! layer below marked it ([`RejectedToken`]). Then the token is dropped from its cache if it is
//! still the current one, and the response is marked with the token it is about
//! ([`SentToken`]), so that a bearer layer further out, whose header this one replaced, keeps
//! its own token.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, HeaderMap, Response, StatusCode};

use super::Transport;
use super::attach::Attach;
use crate::cache::handle;
use crate::challenge::{self, RejectedToken, RejectionRule};
use crate::{CachedToken, TokenCache, TokenSource};

/// The judging options of a front end, the same on every stack.
#[derive(Clone, Debug, Default)]
pub(crate) struct Judge {
    pub(crate) rule: Option<RejectionRule>,
    /// Behind an `Arc`: the tower service holds a `Judge`, and its size is paid by every
    /// service and clone on the fast path.
    pub(crate) body: Option<Arc<BodyRule>>,
    /// Send a rejected request once more with a new token (`replay_on_401`).
    pub(crate) replay: bool,
}

/// The most of a response body a body rule reads by default: 64 KiB. A larger (or unsized)
/// body is not judged and passes through untouched.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// How long a body rule waits for a body by default: 5 s. A slower body is not judged; the
/// response goes on with what was read and the rest of the body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(5);

type BodyFn = dyn Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync;

/// A rejection rule that reads the body of responses with one of `statuses`.
#[derive(Clone)]
pub(crate) struct BodyRule {
    pub(crate) statuses: Arc<[StatusCode]>,
    pub(crate) rule: Arc<BodyFn>,
    pub(crate) max_body: usize,
    pub(crate) timeout: Duration,
}

impl BodyRule {
    pub(crate) fn new(
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        BodyRule {
            statuses: statuses.into_iter().collect(),
            rule: Arc::new(rule),
            max_body: DEFAULT_MAX_BODY,
            timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Whether this rule reads the body of a response with `status`.
    pub(crate) fn applies(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }
}

impl std::fmt::Debug for BodyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyRule")
            .field("statuses", &self.statuses)
            .field("max_body", &self.max_body)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The decision on what can be read without the body: the scheme's challenge, the user's
/// rule, a mark from a layer below.
#[inline]
pub(crate) fn rejects_by_headers(
    dpop: bool,
    rule: Option<&RejectionRule>,
    status: StatusCode,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> bool {
    let by_scheme = if dpop {
        challenge::rejects_dpop_token(status, headers)
    } else {
        challenge::rejects_token(status, headers)
    };
    by_scheme
        || rule.is_some_and(|rule| rule.matches(status, headers))
        || extensions.get::<RejectedToken>().is_some()
}

/// Judge `response` to a request that carried `token` (attached as `attach`); if it rejects
/// the token, drop the token from `cache` (compare-and-invalidate, throttled). Returns whether
/// the response rejects **this** token.
pub(crate) async fn rejects<P: TokenSource, T: Transport>(
    cache: &TokenCache<P>,
    judge: &Judge,
    attach: &Attach,
    token: &CachedToken,
    response: &mut T::Response,
) -> Result<bool, T::Error> {
    let status = T::status(response);
    let mut rejected = rejects_by_headers(
        attach.is_dpop(),
        judge.rule.as_ref(),
        status,
        T::headers(response),
        T::extensions(response),
    );
    if !rejected && let Some(body) = judge.body.as_ref().filter(|b| b.applies(status)) {
        rejected = T::body_rejects(response, body).await?;
    }
    if !rejected {
        return Ok(false);
    }
    let sent = Sent::new(cache.registry_id(), token.generation());
    if !sent.marker().claim(T::extensions_mut(response)) {
        tracing::debug!(
            "a rejection of a token set further in (another bearer layer replaced this one's): \
             keeping this layer's token"
        );
        return Ok(false);
    }
    let dropped = cache.invalidate_after_401(|current| current.is(&token.0));
    tracing::debug!(
        generation = token.generation(),
        dropped,
        "the server rejected the token"
    );
    Ok(true)
}

/// Whether gRPC headers or trailers say `grpc-status: 16` (UNAUTHENTICATED: "the request does
/// not have valid authentication credentials"), gRPC's 401. It comes with HTTP 200, in the
/// response headers (a trailers-only response) or in the trailers.
#[inline]
pub(crate) fn grpc_unauthenticated(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() == b"16")
}

/// Whether a 401 carries `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
pub(crate) fn asks_for_nonce(headers: &HeaderMap) -> bool {
    #[cfg(feature = "dpop")]
    return challenge::parse_headers(headers).iter().any(|c| {
        c.is_dpop()
            && c.param("error")
                .is_some_and(|e| e.eq_ignore_ascii_case(crate::dpop::USE_DPOP_NONCE))
    });
    #[cfg(not(feature = "dpop"))]
    {
        let _ = headers;
        false
    }
}

/// Which token a request carried: enough to drop exactly that token after a 401. One word
/// (the cache's registry id, and the low 32 bits of the token's generation), so the response
/// future of the fast path stays small: its size is paid on every request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sent(NonZeroU64);

impl Sent {
    #[inline]
    pub(crate) fn new(cache_id: NonZeroU32, generation: u64) -> Self {
        let packed = (u64::from(cache_id.get()) << 32) | (generation & 0xFFFF_FFFF);
        Sent(NonZeroU64::new(packed).expect("the cache id is not zero"))
    }

    /// The mark a rejecting response gets for this token (see [`SentToken`]).
    pub(crate) fn marker(self) -> SentToken {
        SentToken(self.0)
    }

    fn cache_id(self) -> NonZeroU32 {
        NonZeroU32::new((self.0.get() >> 32) as u32).expect("the cache id is not zero")
    }

    fn generation(self) -> u32 {
        self.0.get() as u32
    }

    /// The judge of the tower service's own future (no body to read, no replay): remember a
    /// DPoP nonce, and if `response` rejects the token that was sent, drop it from the cache.
    /// A cache that no longer exists (every handle dropped while the request was in flight, as
    /// with `oneshot`) has nothing to drop.
    #[cold]
    #[inline(never)]
    pub(crate) fn report<RB>(self, response: &mut Response<RB>, judging: Option<&Judging>) {
        let (rule, attach) = judging.map_or((None, None), |j| (j.0.0.as_ref(), j.0.1.as_ref()));
        if let Some(attach) = attach {
            // No copy of the request, so no second attempt: the nonce serves the next one.
            attach.remember_nonce(None, response.headers());
        }
        if !rejects_by_headers(
            attach.is_some_and(Attach::is_dpop),
            rule,
            response.status(),
            response.headers(),
            response.extensions(),
        ) {
            return;
        }
        if !self.marker().claim(response.extensions_mut()) {
            tracing::debug!(
                "a rejection of a token set further in (another bearer layer replaced this \
                 one's): keeping this layer's token"
            );
            return;
        }
        self.rejected();
    }

    /// The server rejected this token (seen after the response itself, as gRPC's trailers
    /// are): drop it from its cache if it is still the current one (compare-and-invalidate,
    /// throttled). A cache that no longer exists has nothing to drop.
    #[cold]
    #[inline(never)]
    pub(crate) fn rejected(self) {
        if let Some(cache) = handle::lookup(self.cache_id()) {
            let dropped = cache.invalidate_after_401(self.generation());
            tracing::debug!(
                generation = self.generation(),
                dropped,
                "the server rejected the token"
            );
        }
    }
}

/// What the tower service's own future needs to judge a response, in one word (its size is
/// paid by every request on the fast path): the user's rule, and for a DPoP-bound token how it
/// was attached (to remember nonces and read the `DPoP` challenges).
#[derive(Clone)]
pub(crate) struct Judging(Arc<(Option<RejectionRule>, Option<Attach>)>);

impl Judging {
    /// `None` when there is nothing to judge beyond the default.
    pub(crate) fn new(rule: Option<RejectionRule>, attach: Option<Attach>) -> Option<Judging> {
        (rule.is_some() || attach.is_some()).then(|| Judging(Arc::new((rule, attach))))
    }

    /// The user's rule.
    pub(crate) fn rule(&self) -> Option<&RejectionRule> {
        self.0.0.as_ref()
    }
}

/// Marks a rejecting response with the token the request carried when it left the innermost
/// bearer layer (or middleware) of this crate: the one the server actually saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SentToken(NonZeroU64);

impl SentToken {
    /// Mark `extensions` with this token unless a layer further in marked them with its own.
    /// Returns whether the response is about this token.
    pub(crate) fn claim(self, extensions: &mut Extensions) -> bool {
        match extensions.get::<SentToken>() {
            Some(inner) => *inner == self,
            None => {
                extensions.insert(self);
                true
            }
        }
    }
}
