//! Replaying a request once after a 401, in the tower layer: the [`Replay`] mode of
//! [`BearerAuth`] ([`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401)), its
//! [`ReplayFuture`], and [`ReplayBody`], the request bodies that can be sent a second time.
//!
//! When the first response is a 401 that [rejects the token](crate::challenge::rejects_token),
//! the future drops that token from the cache (only if it is still the current one, so a storm
//! of 401s causes one refresh), waits for a new token, and sends the copy of the request with
//! it. The answer to the replay is returned whatever it is (a 401 to it is reported to the
//! cache as any other): there is never a third attempt. If no new token can be had, or the
//! token endpoint hands back the very value that was rejected (many do, for a token they have
//! cached), the first 401 is returned: a replay with the same value would only be refused again.
//!
//! A replay needs a copy of the request made *before* it is sent, because the inner service
//! consumes the original. Bodies held in memory (`String`, `Bytes`, `Full`, `Empty`, ...) can be
//! copied; a streaming body cannot, and a request with one is never replayed (its 401 still
//! drops the rejected token). Implement the trait for your own body type if it can be copied.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
//! use tower_bearer::ReplayBody;
//!
//! assert_eq!(String::from("hi").try_clone_body().as_deref(), Some("hi"));
//! assert!(Full::new(Bytes::from_static(b"{}")).try_clone_body().is_some());
//! assert!(Empty::<Bytes>::new().try_clone_body().is_some());
//!
//! // A boxed body is replayable only while it is known to be empty.
//! let empty: BoxBody<Bytes, std::convert::Infallible> = Empty::new().boxed();
//! assert!(empty.try_clone_body().is_some());
//! let full: BoxBody<Bytes, std::convert::Infallible> = Full::new(Bytes::from_static(b"x")).boxed();
//! assert!(full.try_clone_body().is_none());
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full};
use pin_project_lite::pin_project;
use tower::Service;

use crate::cache::handle::{ErasedCache, TokenFuture};
use crate::challenge::RejectionRule;
use crate::origin::Verdict;
use crate::service::{Replay, Sent};
use crate::{BearerAuth, BoxError, CachedToken, Error, TokenSource};

/// A request body that may be copied so the request can be sent again.
pub trait ReplayBody: Sized {
    /// A copy of the body to send again, or `None` if this body cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {$(
        impl ReplayBody for $ty {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!((), String, Vec<u8>, Bytes, &'static str, &'static [u8]);

impl<D: Clone> ReplayBody for Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(Empty::new())
    }
}

impl<D: Buf + 'static, E> ReplayBody for BoxBody<D, E> {
    /// Replayable only when the body is already known to be empty.
    fn try_clone_body(&self) -> Option<Self> {
        self.is_end_stream().then(BoxBody::default)
    }
}

impl<D: Buf + 'static, E> ReplayBody for UnsyncBoxBody<D, E> {
    /// Replayable only when the body is already known to be empty.
    fn try_clone_body(&self) -> Option<Self> {
        self.is_end_stream().then(UnsyncBoxBody::default)
    }
}

#[cfg(feature = "reqwest")]
impl ReplayBody for ::reqwest::Body {
    /// Replayable when the body is held in memory (not a stream).
    fn try_clone_body(&self) -> Option<Self> {
        self.as_bytes()
            .map(|bytes| ::reqwest::Body::from(Bytes::copy_from_slice(bytes)))
    }
}

/// A copy of `request` (method, URI, version, headers, extensions and body), if its body can
/// be copied.
pub(crate) fn try_clone_request<B: ReplayBody>(request: &Request<B>) -> Option<Request<B>> {
    let body = request.body().try_clone_body()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

impl<S, P, B, RB> Service<Request<B>> for BearerAuth<S, P, Replay>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    P: TokenSource,
    B: ReplayBody,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ReplayFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self
            .destinations
            .check_request(&request, &mut self.approved)
        {
            Verdict::Attach => {}
            Verdict::Skip => {
                let future = self.inner.call(request);
                return ReplayFuture::first(future, None, None, None);
            }
            Verdict::Refuse(error) => {
                return ReplayFuture {
                    state: ReplayState::Failed { error: Some(error) },
                };
            }
        }
        let state = self.cache.state();
        match self.token_now(&mut request, state) {
            Some(sent) => {
                let retry = self.retry(&request);
                let rule = self.rule.clone();
                ReplayFuture::first(self.inner.call(request), Some(sent), retry, rule)
            }
            None => {
                let retry = self.retry(&request);
                let (token, inner) = self.wait_for_token();
                ReplayFuture {
                    state: ReplayState::Waiting {
                        token,
                        inner: Some(inner),
                        request: Some(request),
                        retry,
                        cache_id: self.cache_id,
                        rule: self.rule.clone(),
                    },
                }
            }
        }
    }
}

impl<S: Clone, P: TokenSource> BearerAuth<S, P, Replay> {
    /// What a replay of `request` will need, if its body can be copied.
    fn retry<B: ReplayBody>(&self, request: &Request<B>) -> Option<Retry<S, B>> {
        try_clone_request(request).map(|request| Retry {
            inner: self.inner.clone(),
            request,
            cache: self.cache.erased(),
            rule: self.rule.clone(),
        })
    }
}

/// What a replay needs: a copy of the request as the first attempt sent it (its
/// `Authorization` is the value a 401 rejects, so a replay is never sent with it), a service to
/// send it through, and the cache (held strongly: the service and every other handle may be
/// gone by the time the 401 arrives, as with `oneshot`).
struct Retry<S, B> {
    inner: S,
    request: Request<B>,
    cache: Arc<dyn ErasedCache>,
    rule: Option<RejectionRule>,
}

impl<S, B> Retry<S, B> {
    /// Whether `token` is other than the one the first attempt carried.
    fn is_new(&self, token: &CachedToken) -> bool {
        self.request.headers().get(AUTHORIZATION) != Some(token.header_value())
    }
}

pin_project! {
    /// The response future of [`BearerAuth`] in [`Replay`] mode.
    pub struct ReplayFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: ReplayState<S, B>,
    }
}

pin_project! {
    #[project = ReplayProj]
    enum ReplayState<S, B>
    where
        S: Service<Request<B>>,
    {
        // No usable token yet.
        Waiting {
            token: TokenFuture,
            inner: Option<S>,
            request: Option<Request<B>>,
            retry: Option<Retry<S, B>>,
            cache_id: NonZeroU32,
            rule: Option<RejectionRule>,
        },
        // The first attempt.
        First {
            #[pin]
            future: S::Future,
            sent: Option<Sent>,
            retry: Option<Retry<S, B>>,
            rule: Option<RejectionRule>,
        },
        // The token was rejected: waiting for a new one.
        Refreshing {
            token: TokenFuture,
            retry: Option<Retry<S, B>>,
            rejected: Option<S::Response>,
        },
        // Waiting for the service that sends the replay to be ready.
        Readying {
            token: Option<CachedToken>,
            retry: Option<Retry<S, B>>,
            rejected: Option<S::Response>,
        },
        // The replay: its answer is final (a 401 to it is still reported to the cache).
        Second {
            #[pin]
            future: S::Future,
            sent: Sent,
            rule: Option<RejectionRule>,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

impl<S, B> ReplayFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn first(
        future: S::Future,
        sent: Option<Sent>,
        retry: Option<Retry<S, B>>,
        rule: Option<RejectionRule>,
    ) -> Self {
        ReplayFuture {
            state: ReplayState::First {
                future,
                sent,
                retry,
                rule,
            },
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "ReplayFuture polled after completion";

impl<S, B, RB> Future for ReplayFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ReplayProj::Waiting {
                    token,
                    inner,
                    request,
                    retry,
                    cache_id,
                    rule,
                } => {
                    let token = ready!(token.as_mut().poll(cx))?;
                    let (Some(mut inner), Some(mut request)) = (inner.take(), request.take())
                    else {
                        unreachable!("{POLLED_AFTER_COMPLETION}")
                    };
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, token.header_value().clone());
                    let sent = Some(Sent::new(*cache_id, token.generation()));
                    let mut retry = retry.take();
                    if let Some(retry) = &mut retry {
                        retry
                            .request
                            .headers_mut()
                            .insert(AUTHORIZATION, token.header_value().clone());
                    }
                    let future = inner.call(request);
                    let rule = rule.take();
                    this.state.set(ReplayState::First {
                        future,
                        sent,
                        retry,
                        rule,
                    });
                }
                ReplayProj::First {
                    future,
                    sent,
                    retry,
                    rule,
                } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if response.status() != StatusCode::UNAUTHORIZED
                        && rule.is_none()
                        && response.extensions().is_empty()
                    {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(sent) = *sent else {
                        return Poll::Ready(Ok(response));
                    };
                    if !sent.report(&mut response, rule.as_ref()) {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(retry) = retry.take() else {
                        // The body cannot be replayed: the token was dropped, and the 401 goes
                        // back to the caller.
                        return Poll::Ready(Ok(response));
                    };
                    this.state.set(ReplayState::Refreshing {
                        token: Arc::clone(&retry.cache).token(),
                        retry: Some(retry),
                        rejected: Some(response),
                    });
                }
                ReplayProj::Refreshing {
                    token,
                    retry,
                    rejected,
                } => {
                    let result = ready!(token.as_mut().poll(cx));
                    let (retry, rejected) = (retry.take(), rejected.take());
                    let rejected = rejected.expect(POLLED_AFTER_COMPLETION);
                    let retry = retry.expect(POLLED_AFTER_COMPLETION);
                    match result {
                        Ok(token) if retry.is_new(&token) => {
                            this.state.set(ReplayState::Readying {
                                token: Some(token),
                                retry: Some(retry),
                                rejected: Some(rejected),
                            });
                        }
                        Ok(_) => {
                            tracing::debug!(
                                "the new token has the value that was just rejected; returning \
                                 the 401 instead of replaying"
                            );
                            return Poll::Ready(Ok(rejected));
                        }
                        Err(error) => {
                            tracing::warn!(
                                error = %error,
                                "no new token to replay a request after a 401; returning the 401"
                            );
                            return Poll::Ready(Ok(rejected));
                        }
                    }
                }
                ReplayProj::Readying {
                    token,
                    retry,
                    rejected,
                } => {
                    let ready = {
                        let retry = retry.as_mut().expect(POLLED_AFTER_COMPLETION);
                        ready!(retry.inner.poll_ready(cx))
                    };
                    let rejected = rejected.take().expect(POLLED_AFTER_COMPLETION);
                    if ready.is_ok() && !token.as_ref().is_some_and(CachedToken::is_usable_now) {
                        // The inner service took so long to be ready that the new token is no
                        // longer usable: get another before sending the replay.
                        let retry = retry.take().expect(POLLED_AFTER_COMPLETION);
                        this.state.set(ReplayState::Refreshing {
                            token: Arc::clone(&retry.cache).token(),
                            retry: Some(retry),
                            rejected: Some(rejected),
                        });
                        continue;
                    }
                    if let Err(error) = ready {
                        let error: BoxError = error.into();
                        tracing::warn!(error = %error, "cannot replay a request after a 401; returning the 401");
                        return Poll::Ready(Ok(rejected));
                    }
                    // Let the first answer (and its connection) go before sending the replay.
                    drop(rejected);
                    let Retry {
                        mut inner,
                        mut request,
                        cache,
                        rule,
                    } = retry.take().expect(POLLED_AFTER_COMPLETION);
                    let token = token.take().expect(POLLED_AFTER_COMPLETION);
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, token.header_value().clone());
                    tracing::debug!(
                        generation = token.generation(),
                        "replaying a request with a new token after a 401"
                    );
                    let sent = Sent::new(cache.registry_id(), token.generation());
                    let future = inner.call(request);
                    this.state.set(ReplayState::Second { future, sent, rule });
                }
                ReplayProj::Second { future, sent, rule } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if response.status() == StatusCode::UNAUTHORIZED
                        || rule.is_some()
                        || !response.extensions().is_empty()
                    {
                        sent.report(&mut response, rule.as_ref());
                    }
                    return Poll::Ready(Ok(response));
                }
                ReplayProj::Failed { error } => {
                    let error = error.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Err(error.into()));
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ReplayFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ReplayState::Waiting { .. } => "waiting for token",
            ReplayState::First { .. } => "called",
            ReplayState::Refreshing { .. } => "waiting for a new token after a 401",
            ReplayState::Readying { .. } => "waiting to replay",
            ReplayState::Second { .. } => "replayed",
            ReplayState::Failed { .. } => "failed",
        };
        f.debug_struct("ReplayFuture")
            .field("state", &state)
            .finish()
    }
}
