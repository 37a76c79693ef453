//! [`BearerAuthMiddleware`]: the same token cache as a
//! [`reqwest_middleware::Middleware`], so one cache can serve a tower stack and a reqwest client
//! at once.
//!
//! It follows the same rules as the tower layer: the token goes only where it may
//! ([`origin`](crate::origin)), and a 401 that [rejects the token](crate::challenge::rejects_token)
//! drops it from the cache (compare-and-invalidate, so a storm of 401s costs one refresh) and,
//! by default, replays the request once with a new token when
//! [`try_clone`](reqwest::Request::try_clone) can copy it (a streaming body cannot be copied and
//! is never replayed). The answer to the replay is returned as it came.
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
use std::sync::Arc;

use ::reqwest::header::{AUTHORIZATION, HeaderMap};
use ::reqwest::{Request, Response, StatusCode};
use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::challenge::{self, RejectionRule};
use crate::origin::{Destinations, Verdict};
use crate::service::Sent;
use crate::{CachedToken, Error, OnDisallowedOrigin, Origin, TokenCache, TokenSource};

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: Bearer <token>` from a shared
/// [`TokenCache`].
///
/// Configured like [`BearerAuthLayer`](crate::BearerAuthLayer); the one difference is that
/// replaying after a 401 is on by default, since copying a reqwest request is cheap next to
/// sending it.
pub struct BearerAuthMiddleware<P> {
    cache: TokenCache<P>,
    destinations: Destinations,
    replay_on_401: bool,
    rule: Option<RejectionRule>,
    body_rule: Option<BodyRule>,
}

/// The most of a response body [`BearerAuthMiddleware::rejects_token_when_body`] reads: a larger
/// (or unsized) body is not inspected and passes through untouched.
pub const MAX_INSPECTED_BODY: u64 = 64 * 1024;

type BodyFn = dyn Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync;

/// A rejection rule that reads the body of responses with one of `statuses`.
#[derive(Clone)]
pub(crate) struct BodyRule {
    statuses: Arc<[StatusCode]>,
    rule: Arc<BodyFn>,
}

impl BodyRule {
    pub(crate) fn new(
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        BodyRule {
            statuses: statuses.into_iter().collect(),
            rule: Arc::new(rule),
        }
    }

    /// Whether `response` rejects the token by this rule. A response it applies to (one of its
    /// statuses, a declared length within [`MAX_INSPECTED_BODY`]) is read into memory and
    /// rebuilt around the bytes read, so the caller still gets its body.
    async fn rejects(&self, response: &mut Response) -> reqwest_middleware::Result<bool> {
        let status = response.status();
        if !self.statuses.contains(&status)
            || response
                .content_length()
                .is_none_or(|len| len > MAX_INSPECTED_BODY)
        {
            return Ok(false);
        }
        let placeholder = Response::from(http::Response::new(::reqwest::Body::from("")));
        let taken = std::mem::replace(response, placeholder);
        let url = taken.url().clone();
        let (parts, body) = http::Response::<::reqwest::Body>::from(taken).into_parts();
        let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            body,
            MAX_INSPECTED_BODY as usize,
        ))
        .await
        .map_err(|e| {
            reqwest_middleware::Error::middleware(
                Error::transient(
                    "could not read the response body to check it for a rejected token",
                )
                .with_source(e),
            )
        })?
        .to_bytes();
        let rejects = (self.rule)(status, &parts.headers, &bytes);
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
}

impl<P: TokenSource> BearerAuthMiddleware<P> {
    /// A middleware with its own [`TokenCache`] (default settings) over `source`.
    pub fn new(source: P) -> Self {
        Self::from_cache(TokenCache::new(source))
    }

    /// A middleware using an existing cache, shared with other middlewares or tower layers.
    pub fn from_cache(cache: TokenCache<P>) -> Self {
        Self::with_parts(cache, Destinations::default(), true, None, None)
    }

    /// A middleware over `cache` with these rules (the per-destination middleware makes one
    /// per request).
    pub(crate) fn with_parts(
        cache: TokenCache<P>,
        destinations: Destinations,
        replay_on_401: bool,
        rule: Option<RejectionRule>,
        body_rule: Option<BodyRule>,
    ) -> Self {
        BearerAuthMiddleware {
            cache,
            destinations,
            replay_on_401,
            rule,
            body_rule,
        }
    }

    /// Also treat a response as rejecting the token when `rule` says so after reading its body:
    /// for servers that say "this token expired" only in the body (a 403 with
    /// `{"error": "token_expired"}`). Only responses with one of `statuses` and a declared
    /// length up to [`MAX_INSPECTED_BODY`] (64 KiB) are read; the caller gets the body all the
    /// same. The same compare-and-invalidate, throttle and single replay apply.
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
        self.body_rule = Some(BodyRule::new(statuses, rule));
        self
    }

    /// Also treat a response as rejecting the token when `rule` says so, beside the default
    /// RFC 6750 reading of a 401; see [`RejectionRule`]. The same compare-and-invalidate,
    /// throttle and single replay apply.
    pub fn rejects_token_when(
        mut self,
        rule: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rule = Some(RejectionRule::new(rule));
        self
    }

    /// After a 401 that rejects the token, send the request once more with a new token when
    /// it can be copied (default `true`). With `false`, the rejected token is dropped and the
    /// 401 returned.
    pub fn replay_on_401(mut self, replay: bool) -> Self {
        self.replay_on_401 = replay;
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

    /// The cache this middleware takes tokens from.
    pub fn cache(&self) -> &TokenCache<P> {
        &self.cache
    }

    /// The same cache and rules, sending DPoP-bound tokens with a proof per request instead
    /// of bearer tokens: see [`DpopMiddleware`](crate::dpop::DpopMiddleware).
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn dpop(self) -> crate::dpop::DpopMiddleware<P> {
        crate::dpop::DpopMiddleware::with_destinations(
            self.cache,
            self.destinations,
            self.replay_on_401,
        )
    }
}

#[async_trait::async_trait]
impl<P: TokenSource> Middleware for BearerAuthMiddleware<P> {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        match self.destinations.check_url(request.url()) {
            Verdict::Attach => {}
            Verdict::Skip => return next.run(request, extensions).await,
            Verdict::Refuse(error) => return Err(reqwest_middleware::Error::middleware(error)),
        }
        let token = self
            .cache
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        // The copy is taken before the token is attached; the replay gets the new one.
        let copy = if self.replay_on_401 {
            request.try_clone()
        } else {
            None
        };
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.header_value().clone());
        let mut response = next.clone().run(request, extensions).await?;
        let by_body = self.body_rejects(&mut response).await?;
        if !self.rejects(&mut response, &token, by_body) {
            return Ok(response);
        }
        let Some(mut copy) = copy else {
            return Ok(response);
        };
        let fresh = match self.cache.token().await {
            // Many token endpoints answer with the token they have cached, the one just
            // rejected: replaying with it would only be refused again.
            Ok(fresh) if fresh.header_value() != token.header_value() => fresh,
            Ok(_) => {
                tracing::debug!(
                    "the new token has the value that was just rejected; returning the 401 \
                     instead of replaying"
                );
                return Ok(response);
            }
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    "no new token to replay a request after a 401; returning the 401"
                );
                return Ok(response);
            }
        };
        // Let the first answer (and its connection) go before sending the replay.
        drop(response);
        copy.headers_mut()
            .insert(AUTHORIZATION, fresh.header_value().clone());
        tracing::debug!(
            generation = fresh.generation(),
            "replaying a request with a new token after a 401"
        );
        let mut replayed = next.run(copy, extensions).await?;
        // The answer to the replay is final, but a 401 to it still tells the cache.
        let by_body = self.body_rejects(&mut replayed).await?;
        self.rejects(&mut replayed, &fresh, by_body);
        Ok(replayed)
    }
}

impl<P: TokenSource> BearerAuthMiddleware<P> {
    /// Whether `response` rejects `token`, which the request carried; if so, drop it from the
    /// cache (compare-and-invalidate, throttled). A 401 marked by a middleware further in as
    /// being about another token (it replaced this one's header) is not about `token`.
    fn rejects(&self, response: &mut Response, token: &CachedToken, by_body: bool) -> bool {
        if !by_body
            && !challenge::rejects(self.rule.as_ref(), response.status(), response.headers())
        {
            return false;
        }
        let sent = Sent::new(self.cache.registry_id(), token.generation());
        if !sent.marker().claim(response.extensions_mut()) {
            tracing::debug!(
                "a 401 about a token set further in (another bearer middleware replaced this \
                 one's): keeping this middleware's token"
            );
            return false;
        }
        let dropped = self
            .cache
            .invalidate_after_401(|current| current.is(&token.0));
        tracing::debug!(
            generation = token.generation(),
            dropped,
            "the server rejected the bearer token (401)"
        );
        true
    }
}

impl<P> BearerAuthMiddleware<P> {
    /// Whether the body rule, if any, says `response` rejects the token.
    async fn body_rejects(&self, response: &mut Response) -> reqwest_middleware::Result<bool> {
        match &self.body_rule {
            Some(rule) => rule.rejects(response).await,
            None => Ok(false),
        }
    }
}

impl<P> Clone for BearerAuthMiddleware<P> {
    fn clone(&self) -> Self {
        BearerAuthMiddleware {
            cache: self.cache.clone(),
            destinations: self.destinations.clone(),
            replay_on_401: self.replay_on_401,
            rule: self.rule.clone(),
            body_rule: self.body_rule.clone(),
        }
    }
}

impl<P> fmt::Debug for BearerAuthMiddleware<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthMiddleware")
            .field("cache", &self.cache)
            .field("destinations", &self.destinations)
            .field("replay_on_401", &self.replay_on_401)
            .field("rule", &self.rule)
            .field("body_rule", &self.body_rule.as_ref().map(|r| &r.statuses))
            .finish()
    }
}
