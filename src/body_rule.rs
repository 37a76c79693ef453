//! Body rules on a tower stack: for servers that say "your token is no good" in the body of a
//! response (a 403 whose JSON says the token expired).
//! [`BearerAuthLayer::rejects_token_when_body`](crate::BearerAuthLayer::rejects_token_when_body)
//! (the same option as the reqwest middleware's) makes the layer's services read the body of
//! responses with the statuses you list, through a [`BodyRule`] between them and the inner
//! service, ask your rule, and mark a rejection ([`RejectedToken`]) for the
//! [pipeline](mod@crate::pipeline)'s judge. The response is then treated as a 401 that rejects
//! the token: the token that was sent is dropped if it is still the current one (a storm of such
//! responses costs one refresh), at most once per second per cache, and the request is replayed
//! once with `replay_on_401`.
//!
//! The body is read up to [`DEFAULT_MAX_BODY`] (64 KiB) and for at most
//! [`DEFAULT_BODY_TIMEOUT`] (5 s); the response goes on with the same body ([`JudgedBody`]),
//! whatever the rule said. A body larger or slower than that is not judged and goes on, the part
//! already read first. Responses with other statuses pass through untouched, their bodies
//! unread.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let source = from_fn(|| async {
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! });
//! // An API that answers 403 {"error":"token_expired"} to an expired token.
//! let api = service_fn(|_: Request<Full<Bytes>>| async {
//!     let mut response = Response::new(Full::new(Bytes::from_static(br#"{"error":"token_expired"}"#)));
//!     *response.status_mut() = StatusCode::FORBIDDEN;
//!     Ok::<_, Infallible>(response)
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(source).rejects_token_when_body(
//!         [StatusCode::FORBIDDEN],
//!         |_status, _headers, body: &[u8]| body.windows(13).any(|w| w == b"token_expired"),
//!     ))
//!     .service(api);
//!
//! let response = client.oneshot(Request::new(Full::default())).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! // The caller still gets the body.
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(&body[..], br#"{"error":"token_expired"}"#);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::BoxError;
use crate::challenge::RejectedToken;
use crate::pipeline::BodyRule as JudgeBody;

pub use crate::pipeline::judge::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY};

/// What [`BearerAuthLayer::rejects_token_when_body`](crate::BearerAuthLayer::rejects_token_when_body)
/// puts below the bearer layer's services: it makes each inner service a [`BodyRule`].
#[derive(Clone)]
pub struct BodyRuleLayer(pub(crate) JudgeBody);

impl BodyRuleLayer {
    /// Judge the body of responses whose status is one of `statuses` with `rule`, given the
    /// status, the headers and the body.
    pub(crate) fn new(
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        BodyRuleLayer(JudgeBody::new(statuses, rule))
    }
}

impl fmt::Debug for BodyRuleLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BodyRuleLayer").field(&self.0).finish()
    }
}

impl<S> Layer<S> for BodyRuleLayer {
    type Service = BodyRule<S>;

    fn layer(&self, inner: S) -> BodyRule<S> {
        BodyRule {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`BodyRuleLayer`].
#[derive(Clone, Debug)]
pub struct BodyRule<S> {
    inner: S,
    layer: BodyRuleLayer,
}

impl<S> BodyRule<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for BodyRule<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<JudgedBody<RB>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let layer = self.layer.0.clone();
        Box::pin(async move {
            let response = future.await.map_err(Into::into)?;
            if !layer.applies(response.status()) {
                return Ok(response.map(JudgedBody::passed));
            }
            let (mut parts, mut body) = response.into_parts();
            let mut read = VecDeque::new();
            let mut len = 0;
            let mut trailers = None;
            // `Duration::MAX` means no limit (and must not overflow the instant).
            let deadline = tokio::time::Instant::now().checked_add(layer.timeout);
            let whole = loop {
                let frame = match deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                        Ok(frame) => frame,
                        Err(_) => {
                            tracing::debug!(
                                "a response body too slow to judge: passed on unjudged"
                            );
                            break false;
                        }
                    },
                    None => body.frame().await,
                };
                match frame {
                    None => break true,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            len += data.len();
                            read.push_back(data);
                            if len > layer.max_body {
                                break false;
                            }
                        }
                        Err(frame) => {
                            trailers = frame.into_trailers().ok();
                            break true;
                        }
                    },
                    Some(Err(err)) => return Err(err.into()),
                }
            };
            if whole {
                let bytes: Vec<u8> = read.iter().flat_map(|b| b.iter().copied()).collect();
                if (layer.rule)(parts.status, &parts.headers, &bytes) {
                    tracing::debug!(status = %parts.status, "the response body rejects the token");
                    parts.extensions.insert(RejectedToken);
                }
            }
            let rest = (!whole).then_some(body);
            Ok(Response::from_parts(
                parts,
                JudgedBody {
                    read,
                    trailers,
                    rest,
                },
            ))
        })
    }
}

pin_project! {
    /// The body of a response through [`BodyRule`]: what was read to judge it, then the rest
    /// (or the inner body itself, for a response that was not judged).
    pub struct JudgedBody<B> {
        read: VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
        #[pin]
        rest: Option<B>,
    }
}

impl<B> JudgedBody<B> {
    fn passed(body: B) -> Self {
        JudgedBody {
            read: VecDeque::new(),
            trailers: None,
            rest: Some(body),
        }
    }
}

impl<B> fmt::Debug for JudgedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JudgedBody")
            .field("read_chunks", &self.read.len())
            .field("unread", &self.rest.is_some())
            .finish()
    }
}

impl<B> Body for JudgedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(data) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match this.rest.as_pin_mut() {
            Some(rest) => rest.poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self.read.iter().map(|b| b.len() as u64).sum();
        match &self.rest {
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + read);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
            None => SizeHint::with_exact(read),
        }
    }
}
