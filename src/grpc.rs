//! gRPC: the bearer layer on a tonic channel ([`BearerAuthLayer::grpc`]).
//!
//! A tonic client is a tower service, but two things set it apart from an HTTP client:
//!
//! - **Path-only URIs.** The generated clients send `/package.Service/Method`; the channel puts
//!   its own scheme and authority on the request further down. So the layer cannot read where a
//!   request goes, and the user names it: the `origin` given to
//!   [`grpc`](BearerAuthLayer::grpc), the one the channel connects to, is the one the
//!   allow-list ([`allow_origin`](BearerAuthLayer::allow_origin)) and the plain-http rule
//!   judge, exactly as for an absolute URI to it (the layer cannot see the channel's endpoint:
//!   name it right). A request whose URI does name an authority (a client built with an origin
//!   of its own) must name that origin; one to another is a disallowed destination: sent
//!   without the token or failed, as
//!   [`on_disallowed_origin`](BearerAuthLayer::on_disallowed_origin) says.
//! - **UNAUTHENTICATED, not 401.** gRPC answers HTTP 200 and reports a rejected token as
//!   `grpc-status: 16`, in the response headers (a trailers-only response) or in the trailers
//!   after the body. Either one is a rejected token, with the same compare-and-invalidate as a
//!   401 ([`challenge`](crate::challenge)): only the token the call carried is dropped, so many
//!   calls failing at once cause one refresh, and the next call carries a new token. The
//!   response bodies are a [`GrpcBody`], which looks at trailers as they pass and costs nothing
//!   else. Per call, the layer costs what [`BearerAuthLayer`]'s services cost, plus one
//!   lock-free read of the cache to note which token the call carried and the channel's origin
//!   put in the call's extensions (for a DPoP proof, should the token be bound).
//!
//! DPoP-bound tokens work as on an HTTP stack: each call carries a fresh proof naming `POST`
//! and the call's absolute URL, the channel's origin followed by the call's path
//! (`https://grpc.example.com/package.Service/Method`), with the token's `ath`; a `DPoP-Nonce`
//! in a response is remembered for the next call (a `use_dpop_nonce` challenge is not answered
//! by sending the call again: calls are never sent twice).
//!
//! Calls are never sent twice: a stream cannot be replayed, and a unary call that failed with
//! UNAUTHENTICATED is the caller's to retry. So the layer's replay mode is not offered here:
//!
//! ```compile_fail
//! use tower_bearer::{BearerAuthLayer, Origin, source::static_token};
//!
//! let layer = BearerAuthLayer::new(static_token("abc"))
//!     .replay_on_401()
//!     .grpc(Origin::from_static("https://grpc.example.com")); // no `grpc` in replay mode
//! ```
//!
//! With a tonic [`Channel`](https://docs.rs/tonic/latest/tonic/transport/struct.Channel.html)
//! as the inner service (`examples/grpc.rs` runs a client and a server):
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, OnDisallowedOrigin, Origin, source::static_token};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let layer = BearerAuthLayer::new(static_token("abc"))
//!     .allow_origin(Origin::from_static("https://grpc.example.com"))
//!     .on_disallowed_origin(OnDisallowedOrigin::Fail)
//!     .grpc(Origin::from_static("https://grpc.example.com"));
//! let channel = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
//!     // Stands in for tonic's `Channel`: answer with the header it would send.
//!     Ok::<_, Infallible>(Response::new(req.headers()[AUTHORIZATION].clone()))
//! }));
//!
//! let call = |uri: &str| Request::post(uri).body(()).unwrap();
//! let response = channel.clone().oneshot(call("/echo.Echo/Say")).await?;
//! assert_eq!(response.body().get_ref(), "Bearer abc");
//! // Another authority than the channel's origin: a disallowed destination.
//! assert!(channel.oneshot(call("https://elsewhere.example.com/echo.Echo/Say")).await.is_err());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::challenge::RejectedToken;
use crate::origin::{Approved, Place, Verdict};
use crate::pipeline::judge::{Sent, grpc_unauthenticated};
use crate::service::CallOrigin;
use crate::{BearerAuth, BearerAuthLayer, BoxError, Error, Origin, TokenCache, TokenSource};

impl<P: TokenSource> BearerAuthLayer<P> {
    /// This layer for a gRPC client (a tonic channel) whose requests go to `origin`: see
    /// [`grpc`](crate::grpc).
    ///
    /// Set the layer's rules first (allow-list, plain http, disallowed origins, a
    /// [rejection rule](BearerAuthLayer::rejects_token_when)): they judge `origin` for the
    /// path-only URIs tonic sends. Only the default mode has it: gRPC calls are never replayed.
    pub fn grpc(self, origin: Origin) -> GrpcAuthLayer<P> {
        GrpcAuthLayer {
            bearer: self,
            origin: Arc::new(GrpcOrigin::new(origin)),
        }
    }
}

/// The origin of a gRPC channel, and the same as a URI for the destination rules.
struct GrpcOrigin {
    origin: Origin,
    uri: Arc<Uri>,
}

impl GrpcOrigin {
    fn new(origin: Origin) -> Self {
        let uri = origin
            .to_string()
            .parse()
            .expect("an origin's text is an absolute URI");
        GrpcOrigin {
            origin,
            uri: Arc::new(uri),
        }
    }
}

/// A [`Layer`] that adds the bearer token to the calls of a gRPC client and treats
/// UNAUTHENTICATED as a rejected token: [`BearerAuthLayer::grpc`], see [`grpc`](crate::grpc).
pub struct GrpcAuthLayer<P> {
    bearer: BearerAuthLayer<P>,
    origin: Arc<GrpcOrigin>,
}

impl<P: TokenSource> GrpcAuthLayer<P> {
    /// The origin the channel's calls go to.
    pub fn origin(&self) -> &Origin {
        &self.origin.origin
    }

    /// The cache this layer's services take tokens from.
    pub fn cache(&self) -> &TokenCache<P> {
        self.bearer.cache()
    }
}

impl<S, P: TokenSource> Layer<S> for GrpcAuthLayer<P> {
    type Service = GrpcAuth<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        let cache = self.bearer.cache().clone();
        let watch = Watch {
            inner,
            cache_id: cache.registry_id(),
            cache,
        };
        let auth = self.bearer.layer(watch);
        // The origin's verdict is the same for every path-only call: read it once.
        let attaches = matches!(
            auth.front
                .destinations
                .check_uri(&self.origin.uri, &mut Approved::NONE.clone()),
            Verdict::Attach
        );
        GrpcAuth {
            auth,
            origin: Arc::clone(&self.origin),
            attaches,
        }
    }
}

impl<P> Clone for GrpcAuthLayer<P> {
    fn clone(&self) -> Self {
        GrpcAuthLayer {
            bearer: self.bearer.clone(),
            origin: Arc::clone(&self.origin),
        }
    }
}

impl<P> fmt::Debug for GrpcAuthLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuthLayer")
            .field("bearer", &self.bearer)
            .field("origin", &self.origin.origin)
            .finish()
    }
}

/// The service made by [`GrpcAuthLayer`]: a [`BearerAuth`] for calls to the channel's origin,
/// whose responses carry a [`GrpcBody`].
pub struct GrpcAuth<S, P: TokenSource> {
    auth: BearerAuth<Watch<S, P>, P>,
    origin: Arc<GrpcOrigin>,
    /// Whether the destination rules let the token go to the origin.
    attaches: bool,
}

impl<S, P: TokenSource> GrpcAuth<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.auth.inner.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.auth.inner.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.auth.inner.inner
    }

    /// The origin the channel's calls go to.
    pub fn origin(&self) -> &Origin {
        &self.origin.origin
    }
}

impl<S, P, B, RB> Service<Request<B>> for GrpcAuth<S, P>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    P: TokenSource,
{
    type Response = Response<GrpcBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.auth.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let uri = request.uri();
        if self.attaches && uri.scheme().is_none() && uri.authority().is_none() {
            // A path-only URI, to an origin that may have the token: the bearer layer attaches
            // it (a relative URI always gets it there), with a proof naming the channel's
            // origin and the call's path when the token is DPoP-bound (bound by whichever
            // source: the call carries the origin whatever the token turns out to be).
            request
                .extensions_mut()
                .insert(CallOrigin(Arc::clone(&self.origin.uri)));
            return ResponseFuture::auth(self.auth.call(request));
        }
        self.call_other(request)
    }
}

impl<S, P: TokenSource> GrpcAuth<S, P> {
    /// A URI with an authority, or an origin that may not have the token.
    #[cold]
    #[inline(never)]
    fn call_other<B, RB>(&mut self, request: Request<B>) -> ResponseFuture<S, P, B>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone,
        S::Error: Into<BoxError>,
    {
        let verdict = match Place::of_uri(request.uri()) {
            Place::Relative => self
                .auth
                .front
                .destinations
                .check_uri(&self.origin.uri, &mut Approved::NONE.clone()),
            // The channel's origin written out: the bearer layer judges it by the same rules.
            Place::Site(site) if self.origin.origin.matches(&site) => {
                return ResponseFuture::auth(self.auth.call(request));
            }
            Place::Site(_) | Place::Unclear(_) => self.auth.front.destinations.refuse(|| {
                format!(
                    "refusing to send the bearer token to a gRPC call whose URI names another \
                     authority than the channel's origin, {}",
                    self.origin.origin
                )
            }),
        };
        match verdict {
            Verdict::Attach => ResponseFuture::auth(self.auth.call(request)),
            Verdict::Skip => ResponseFuture::plain(self.auth.inner.inner.call(request)),
            Verdict::Refuse(error) => ResponseFuture::failed(error),
        }
    }
}

impl<S: Clone, P: TokenSource> Clone for GrpcAuth<S, P> {
    fn clone(&self) -> Self {
        GrpcAuth {
            auth: self.auth.clone(),
            origin: Arc::clone(&self.origin),
            attaches: self.attaches,
        }
    }
}

impl<S: fmt::Debug, P: TokenSource> fmt::Debug for GrpcAuth<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuth")
            .field("auth", &self.auth)
            .field("origin", &self.origin.origin)
            .field("attaches", &self.attaches)
            .finish()
    }
}

/// The service below the bearer layer in a [`GrpcAuth`] (built by [`GrpcAuthLayer`] only),
/// where the call carries the token it was given: notes which token that is, marks a
/// trailers-only UNAUTHENTICATED response for the bearer layer's judge, and hands the token to
/// the response's [`GrpcBody`], which watches the trailers.
pub struct Watch<S, P> {
    inner: S,
    cache: TokenCache<P>,
    cache_id: NonZeroU32,
}

impl<S, P, B, RB> Service<Request<B>> for Watch<S, P>
where
    S: Service<Request<B>, Response = Response<RB>>,
    P: TokenSource,
{
    type Response = Response<GrpcBody<RB>>;
    type Error = S::Error;
    type Future = WatchFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        let sent = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|header| self.cache.generation_of(header))
            .map(|generation| Sent::new(self.cache_id, generation));
        WatchFuture {
            future: self.inner.call(request),
            sent,
        }
    }
}

impl<S: Clone, P> Clone for Watch<S, P> {
    fn clone(&self) -> Self {
        Watch {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            cache_id: self.cache_id,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Watch<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of [`Watch`]: the inner service's, giving its response a
    /// [`GrpcBody`].
    pub struct WatchFuture<F> {
        #[pin]
        future: F,
        sent: Option<Sent>,
    }
}

impl<F, RB, E> Future for WatchFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<GrpcBody<RB>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        let mut sent = *this.sent;
        if sent.is_some()
            && response.status() == StatusCode::OK
            && grpc_unauthenticated(response.headers())
        {
            // A trailers-only response: the bearer layer above judges it, as it would a 401
            // (and no trailers follow).
            response.extensions_mut().insert(RejectedToken);
            sent = None;
        }
        Poll::Ready(Ok(response.map(|inner| GrpcBody { inner, sent })))
    }
}

pin_project! {
    /// The body of a gRPC response through [`GrpcAuth`]: the inner body, unchanged, and when
    /// its trailers say `grpc-status: 16` (UNAUTHENTICATED), the token the call carried is
    /// dropped from the cache if it is still the current one.
    ///
    /// Data frames pass through with one branch each; nothing is allocated or buffered.
    pub struct GrpcBody<B> {
        #[pin]
        inner: B,
        // The token the call carried, while its trailers are still to come.
        sent: Option<Sent>,
    }
}

impl<B> GrpcBody<B> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, consuming this one.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for GrpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(trailers) = frame.trailers_ref()
            && let Some(sent) = this.sent.take()
            && grpc_unauthenticated(trailers)
        {
            sent.rejected();
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for GrpcBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBody")
            .field("watching", &self.sent.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of [`GrpcAuth`].
    pub struct ResponseFuture<S, P, B>
    where
        S: Service<Request<B>>,
        Watch<S, P>: Service<Request<B>>,
    {
        #[pin]
        state: State<S, P, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, P, B>
    where
        S: Service<Request<B>>,
        Watch<S, P>: Service<Request<B>>,
    {
        // Through the bearer layer.
        Auth {
            #[pin]
            future: crate::ResponseFuture<Watch<S, P>, B>,
        },
        // Without the token.
        Plain {
            #[pin]
            future: WatchFuture<S::Future>,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

impl<S, P, B> ResponseFuture<S, P, B>
where
    S: Service<Request<B>>,
    Watch<S, P>: Service<Request<B>>,
{
    fn auth(future: crate::ResponseFuture<Watch<S, P>, B>) -> Self {
        ResponseFuture {
            state: State::Auth { future },
        }
    }

    fn plain(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Plain {
                future: WatchFuture { future, sent: None },
            },
        }
    }

    fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<S, P, B, RB> Future for ResponseFuture<S, P, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    P: TokenSource,
{
    type Output = Result<Response<GrpcBody<RB>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Auth { future } => future.poll(cx),
            StateProj::Plain { future } => future.poll(cx).map_err(Into::into),
            StateProj::Failed { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(error.into()))
            }
        }
    }
}

impl<S, P, B> fmt::Debug for ResponseFuture<S, P, B>
where
    S: Service<Request<B>>,
    Watch<S, P>: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Auth { .. } => "with the token",
            State::Plain { .. } => "without the token",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
