//! [`BearerAuthMiddleware`]: the same token cache as a
//! [`reqwest_middleware::Middleware`], so one cache can serve a tower stack and a reqwest client
//! at once.
//!
//! It follows the same rules as the tower layer: the token goes only where it may
//! ([`origin`](crate::Origin)), and a 401 that [rejects the token](crate::challenge::rejects_token)
//! drops it from the cache (compare-and-invalidate, so a storm of 401s costs one refresh) and,
//! with [`replay_on_401`](BearerAuthMiddleware::replay_on_401), replays the request once with a
//! new token when [`try_clone`](reqwest::Request::try_clone) can copy it (a streaming body
//! cannot be copied and is never replayed). The answer to the replay is returned as it came.
//! Both are the [pipeline](mod@crate::pipeline)'s, shared with the tower layer, as is DPoP: a
//! DPoP-bound token is sent with a proof per request, by this same middleware.
//!
//! It composes with `reqwest-retry` and `reqwest-tracing` in either order. Put it *inside*
//! retry (added after it) to give each retry attempt the freshest token; outside works too.
//!
//! ```
//! use std::time::Duration;
//! use reqwest_middleware::ClientBuilder;
//! use tower_bearer::{BearerAuthMiddleware, Error, Origin, Token, TokenCache, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // An API on 127.0.0.1 that echoes whether it got a bearer token.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let api = format!("http://{}", listener.local_addr()?);
//! # let app = axum::Router::new().fallback(|h: http::HeaderMap| async move {
//! #     h.get("authorization").map_or("none", |v| if v.as_bytes().starts_with(b"Bearer ") { "bearer" } else { "other" })
//! # });
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! let cache = TokenCache::new(from_fn(|| async {
//!     // ... call your token endpoint ...
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! }));
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(BearerAuthMiddleware::from_cache(cache.clone()).allow_origin(Origin::parse(&api)?))
//!     .build();
//! let answer = client.get(format!("{api}/v1/me")).send().await?.text().await?;
//! assert_eq!(answer, "bearer");
//! # Ok(()) }
//! ```
//!
//! Errors from the middleware (no token could be had, a refused destination) are
//! `reqwest_middleware::Error::Middleware` wrapping a [`tower_bearer::Error`](crate::Error):
//! `anyhow_error.downcast_ref::<tower_bearer::Error>()` gets it back.

use std::fmt;
use std::marker::PhantomData;

use ::reqwest::header::HeaderMap;
use ::reqwest::{Request, Response, StatusCode};
use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::challenge::RejectionRule;
use crate::keyed::{Destination, Key, KeyedTokenCache, PerKey};
use crate::origin::{Destinations, Verdict};
use crate::pipeline::{self, BodyRule, Judge, Tokens, Transport};
use crate::{Error, OnDisallowedOrigin, Origin, TokenCache, TokenSource};

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: Bearer <token>` (or `DPoP
/// <token>` and a proof, for a DPoP-bound token) from a shared [`TokenCache`], or from the slot
/// of each request's key in a [`KeyedTokenCache`] ([`per_origin`](Self::per_origin),
/// [`per_request`](Self::per_request)).
///
/// Configured as [`BearerAuthLayer`](crate::BearerAuthLayer) is, with the same options.
pub struct BearerAuthMiddleware<P, C = TokenCache<P>> {
    tokens: C,
    destinations: Destinations,
    judge: Judge,
    source: PhantomData<fn() -> P>,
}

impl<P: TokenSource> BearerAuthMiddleware<P> {
    /// A middleware with its own [`TokenCache`] (default settings) over `source`.
    pub fn new(source: P) -> Self {
        Self::from_cache(TokenCache::new(source))
    }

    /// A middleware using an existing cache, shared with other middlewares or tower layers.
    pub fn from_cache(cache: TokenCache<P>) -> Self {
        BearerAuthMiddleware::with_tokens(cache)
    }

    /// A middleware that gives each request the token of its origin's key, from that key's
    /// slot of `cache`; see [`BearerAuthLayer::per_origin`](crate::BearerAuthLayer::per_origin).
    ///
    /// ```
    /// use reqwest_middleware::ClientBuilder;
    /// use tower_bearer::{BearerAuthMiddleware, Origin, keyed::KeyedTokenCache, source::static_token};
    ///
    /// let tokens = KeyedTokenCache::new(|audience: &&str| Ok(static_token(format!("for-{audience}"))));
    /// let client = ClientBuilder::new(reqwest::Client::new())
    ///     .with(BearerAuthMiddleware::per_origin(tokens, [
    ///         (Origin::from_static("https://billing.example.com"), "billing"),
    ///         (Origin::from_static("https://search.example.com"), "search"),
    ///     ]))
    ///     .build();
    /// # let _ = client;
    /// ```
    pub fn per_origin<K: Key>(
        cache: KeyedTokenCache<K, P>,
        origins: impl IntoIterator<Item = (Origin, K)>,
    ) -> BearerAuthMiddleware<P, PerKey<K, P>> {
        BearerAuthMiddleware::with_tokens(PerKey::origins(cache, origins))
    }

    /// A middleware that gives each request the token of the key `pick` returns for it; see
    /// [`BearerAuthLayer::per_request`](crate::BearerAuthLayer::per_request).
    pub fn per_request<K: Key>(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Destination<'_>) -> Option<K> + Send + Sync + 'static,
    ) -> BearerAuthMiddleware<P, PerKey<K, P>> {
        BearerAuthMiddleware::with_tokens(PerKey::request(cache, pick))
    }

    /// A middleware that gives each request the token of the key `pick` returns for its
    /// origin; see [`BearerAuthLayer::per_origin_with`](crate::BearerAuthLayer::per_origin_with).
    pub fn per_origin_with<K: Key>(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Origin) -> Option<K> + Send + Sync + 'static,
    ) -> BearerAuthMiddleware<P, PerKey<K, P>> {
        BearerAuthMiddleware::with_tokens(PerKey::origin(cache, pick))
    }
}

impl<P, C> BearerAuthMiddleware<P, C> {
    fn with_tokens(tokens: C) -> Self {
        BearerAuthMiddleware {
            tokens,
            destinations: Destinations::default(),
            judge: Judge::default(),
            source: PhantomData,
        }
    }
}

impl<P, C: Tokens<Source = P>> BearerAuthMiddleware<P, C> {
    /// Also treat a response as rejecting the token when `rule` says so after reading its body:
    /// for servers that say "this token expired" only in the body (a 403 with
    /// `{"error": "token_expired"}`). Only responses with one of `statuses` are read, up to
    /// [`DEFAULT_MAX_BODY`](crate::body_rule::DEFAULT_MAX_BODY) (64 KiB) and for at most
    /// [`DEFAULT_BODY_TIMEOUT`](crate::body_rule::DEFAULT_BODY_TIMEOUT) (5 s); a larger or
    /// slower body is not judged. The caller gets the body all the same. The same
    /// compare-and-invalidate, throttle and single replay apply.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_bearer::{BearerAuthMiddleware, source::static_token};
    ///
    /// let middleware = BearerAuthMiddleware::new(static_token("abc")).rejects_token_when_body(
    ///     [StatusCode::FORBIDDEN],
    ///     |_status, _headers, body| {
    ///         serde_json::from_slice::<serde_json::Value>(body)
    ///             .is_ok_and(|json| json["error"] == "token_expired")
    ///     },
    /// );
    /// # let _ = middleware;
    /// ```
    pub fn rejects_token_when_body(
        mut self,
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.judge.body = Some(std::sync::Arc::new(BodyRule::new(statuses, rule)));
        self
    }

    /// Also treat a response as rejecting the token when `rule` says so, beside the default
    /// RFC 6750 reading of a 401; see [`RejectionRule`]. The same compare-and-invalidate,
    /// throttle and single replay apply.
    pub fn rejects_token_when(
        mut self,
        rule: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.judge.rule = Some(RejectionRule::new(rule));
        self
    }

    /// After a response that rejects the token, send the request once more with a new token
    /// when [`try_clone`](reqwest::Request::try_clone) can copy it; see
    /// [`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401). Off by
    /// default: the rejected token is dropped and the response returned. (A DPoP request is
    /// sent once more after a `use_dpop_nonce` challenge either way.)
    pub fn replay_on_401(mut self) -> Self {
        self.judge.replay = true;
        self
    }

    /// Send the token only to this origin (and any others allowed). See
    /// [`BearerAuthLayer::allow_origin`](crate::BearerAuthLayer::allow_origin).
    pub fn allow_origin(mut self, origin: Origin) -> Self {
        self.destinations.allow_origin(origin);
        self
    }

    /// [`allow_origin`](Self::allow_origin) for each of `origins`.
    pub fn allow_origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        for origin in origins {
            self.destinations.allow_origin(origin);
        }
        self
    }

    /// Send the token over plain `http://` to any host, not only loopback ones (default
    /// `false`; for tests).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.destinations.allow_insecure_http(allow);
        self
    }

    /// Send a request that may not receive the token without it (the default) or fail it.
    pub fn on_disallowed_origin(mut self, action: OnDisallowedOrigin) -> Self {
        self.destinations.on_disallowed = action;
        self
    }

    /// The cache this middleware takes tokens from: the [`TokenCache`], or the
    /// [`KeyedTokenCache`].
    pub fn cache(&self) -> &C::Cache {
        self.tokens.cache()
    }
}

impl<K, P> BearerAuthMiddleware<P, PerKey<K, P>> {
    /// Send a request whose destination has no key without a token (the default) or fail it;
    /// see [`BearerAuthLayer::on_unknown_destination`](crate::BearerAuthLayer::on_unknown_destination).
    pub fn on_unknown_destination(mut self, action: OnDisallowedOrigin) -> Self {
        self.tokens.on_unknown = action;
        self
    }
}

#[async_trait::async_trait]
impl<P: TokenSource, C: Tokens<Source = P> + 'static> Middleware for BearerAuthMiddleware<P, C> {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.tokens
            .handle(&self.destinations, &self.judge, request, extensions, next)
            .await
    }
}

/// Send `request` on with a token from `cache`, under these rules: the whole path of a request
/// through the middleware, once its cache is known.
pub(crate) async fn handle<P: TokenSource>(
    cache: &TokenCache<P>,
    destinations: &Destinations,
    judge: &Judge,
    request: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    match destinations.check_url(request.url()) {
        Verdict::Attach => {}
        Verdict::Skip => return next.run(request, extensions).await,
        Verdict::Refuse(error) => return Err(reqwest_middleware::Error::middleware(error)),
    }
    let transport = Reqwest { next, extensions };
    pipeline::send(cache, judge, transport, request).await
}

/// The pipeline's transport over reqwest-middleware's `Next`.
struct Reqwest<'a> {
    next: Next<'a>,
    extensions: &'a mut Extensions,
}

impl Transport for Reqwest<'_> {
    type Request = Request;
    type Response = Response;
    type Error = reqwest_middleware::Error;

    fn headers_mut(request: &mut Request) -> &mut HeaderMap {
        request.headers_mut()
    }

    fn target(request: &Request) -> Result<pipeline::attach::Target, Error> {
        #[cfg(feature = "dpop")]
        return Ok((
            request.method().clone(),
            crate::dpop::Target::from_url(request.url())?,
        ));
        #[cfg(not(feature = "dpop"))]
        {
            let _ = request;
            Ok(())
        }
    }

    fn try_clone(&self, request: &Request) -> Option<Request> {
        request.try_clone()
    }

    fn status(response: &Response) -> StatusCode {
        response.status()
    }

    fn headers(response: &Response) -> &HeaderMap {
        response.headers()
    }

    fn extensions(response: &Response) -> &Extensions {
        response.extensions()
    }

    fn extensions_mut(response: &mut Response) -> &mut Extensions {
        response.extensions_mut()
    }

    fn responder(response: &Response) -> Option<pipeline::attach::Responder> {
        // The URL that answered, after any redirects reqwest followed.
        #[cfg(feature = "dpop")]
        return crate::dpop::Target::from_url(response.url()).ok();
        #[cfg(not(feature = "dpop"))]
        {
            let _ = response;
            None
        }
    }

    fn error(error: Error) -> reqwest_middleware::Error {
        reqwest_middleware::Error::middleware(error)
    }

    async fn send(&mut self, request: Request) -> reqwest_middleware::Result<Response> {
        self.next.clone().run(request, self.extensions).await
    }

    async fn body_rejects(
        response: &mut Response,
        rule: &BodyRule,
    ) -> reqwest_middleware::Result<bool> {
        body_rejects(response, rule)
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }
}

/// Whether `rule` says the body of `response` rejects the token. A body of a declared length
/// within the rule's limit is read into memory (within its time limit) and put back, so the
/// caller still gets it.
async fn body_rejects(response: &mut Response, rule: &BodyRule) -> Result<bool, Error> {
    let status = response.status();
    if response
        .content_length()
        .is_none_or(|len| len > rule.max_body as u64)
    {
        return Ok(false);
    }
    let placeholder = Response::from(http::Response::new(::reqwest::Body::from("")));
    let taken = std::mem::replace(response, placeholder);
    let url = taken.url().clone();
    let (parts, body) = http::Response::<::reqwest::Body>::from(taken).into_parts();
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, rule.max_body));
    let bytes = match tokio::time::timeout(rule.timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            return Err(Error::transient(
                "could not read the response body to check it for a rejected token",
            )
            .with_source(e));
        }
        Err(_) => {
            return Err(Error::transient(format!(
                "the response body took longer than {:?} to check it for a rejected token",
                rule.timeout
            )));
        }
    };
    let rejects = (rule.rule)(status, &parts.headers, &bytes);
    let mut rebuilt = ::reqwest::ResponseBuilderExt::url(
        http::Response::builder()
            .status(parts.status)
            .version(parts.version),
        url,
    )
    .body(::reqwest::Body::from(bytes))
    .expect("the parts of a response make a response");
    *rebuilt.headers_mut() = parts.headers;
    // The url extension set above stays; the others come back.
    rebuilt.extensions_mut().extend(parts.extensions);
    *response = Response::from(rebuilt);
    Ok(rejects)
}

impl<P, C: Clone> Clone for BearerAuthMiddleware<P, C> {
    fn clone(&self) -> Self {
        BearerAuthMiddleware {
            tokens: self.tokens.clone(),
            destinations: self.destinations.clone(),
            judge: self.judge.clone(),
            source: PhantomData,
        }
    }
}

impl<P, C: fmt::Debug> fmt::Debug for BearerAuthMiddleware<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthMiddleware")
            .field("tokens", &self.tokens)
            .field("destinations", &self.destinations)
            .field("judge", &self.judge)
            .finish()
    }
}
