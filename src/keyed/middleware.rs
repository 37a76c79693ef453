//! The reqwest side: [`KeyedBearerAuthMiddleware`], made by
//! [`BearerAuthMiddleware::per_origin`] or [`BearerAuthMiddleware::per_request`].

use std::fmt;

use ::reqwest::{Request, Response, StatusCode};
use http::{Extensions, HeaderMap};
use reqwest_middleware::{Middleware, Next};

use super::route::{Destination, Route, no_key};
use super::{Key, KeyedTokenCache};
use crate::challenge::RejectionRule;
use crate::origin::Destinations;
use crate::pipeline::{BodyRule, Judge};
use crate::{BearerAuthMiddleware, OnDisallowedOrigin, Origin, TokenSource};

impl<P: TokenSource> BearerAuthMiddleware<P> {
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
    ) -> KeyedBearerAuthMiddleware<K, P> {
        KeyedBearerAuthMiddleware::new(cache, Route::origins(origins))
    }

    /// A middleware that gives each request the token of the key `pick` returns for it; see
    /// [`BearerAuthLayer::per_request`](crate::BearerAuthLayer::per_request).
    pub fn per_request<K: Key>(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Destination<'_>) -> Option<K> + Send + Sync + 'static,
    ) -> KeyedBearerAuthMiddleware<K, P> {
        KeyedBearerAuthMiddleware::new(cache, Route::request(pick))
    }
}

/// A [`reqwest_middleware::Middleware`] that adds the bearer token of each request's key, from
/// a [`KeyedTokenCache`]; configured like [`BearerAuthMiddleware`]. A request whose destination has no key is sent without a token, or fails, as
/// [`on_unknown_destination`](Self::on_unknown_destination) says.
pub struct KeyedBearerAuthMiddleware<K, P> {
    cache: KeyedTokenCache<K, P>,
    route: Route<K>,
    destinations: Destinations,
    on_unknown: OnDisallowedOrigin,
    judge: Judge,
}

impl<K: Key, P: TokenSource> KeyedBearerAuthMiddleware<K, P> {
    fn new(cache: KeyedTokenCache<K, P>, route: Route<K>) -> Self {
        KeyedBearerAuthMiddleware {
            cache,
            route,
            destinations: Destinations::default(),
            on_unknown: OnDisallowedOrigin::SendWithoutToken,
            judge: Judge::default(),
        }
    }

    /// Send a request whose destination has no key without a token (the default) or fail it.
    pub fn on_unknown_destination(mut self, action: OnDisallowedOrigin) -> Self {
        self.on_unknown = action;
        self
    }

    /// Replay once after a response that rejects the token (default: off); see
    /// [`BearerAuthMiddleware::replay_on_401`].
    pub fn replay_on_401(mut self) -> Self {
        self.judge.replay = true;
        self
    }

    /// Send tokens only to this origin (and any others allowed), beside the route's own rule.
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

    /// Send tokens over plain `http://` to any host (default `false`; for tests).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.destinations.allow_insecure_http(allow);
        self
    }

    /// What to do with a request that has a key but may not receive its token (plain `http` to
    /// a host that is not loopback).
    pub fn on_disallowed_origin(mut self, action: OnDisallowedOrigin) -> Self {
        self.destinations.on_disallowed = action;
        self
    }

    /// Also treat a response as rejecting the token when `rule` says so; see
    /// [`RejectionRule`].
    pub fn rejects_token_when(
        mut self,
        rule: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.judge.rule = Some(RejectionRule::new(rule));
        self
    }

    /// Also treat a response as rejecting the token when `rule` says so after reading its
    /// body; see [`BearerAuthMiddleware::rejects_token_when_body`].
    pub fn rejects_token_when_body(
        mut self,
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.judge.body = Some(std::sync::Arc::new(BodyRule::new(statuses, rule)));
        self
    }

    /// The keyed cache this middleware takes tokens from.
    pub fn cache(&self) -> &KeyedTokenCache<K, P> {
        &self.cache
    }
}

#[async_trait::async_trait]
impl<K: Key, P: TokenSource> Middleware for KeyedBearerAuthMiddleware<K, P> {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let destination = Destination::from_reqwest(&request);
        let Some(key) = self.route.key(&destination) else {
            let error = no_key(&destination);
            return match self.on_unknown {
                OnDisallowedOrigin::Fail => Err(reqwest_middleware::Error::middleware(error)),
                _ => {
                    tracing::debug!(reason = %error, "request sent without a bearer token");
                    next.run(request, extensions).await
                }
            };
        };
        let slot = self
            .cache
            .slot(&key)
            .map_err(reqwest_middleware::Error::middleware)?;
        // The single-destination middleware over this key's cache, with these rules: one
        // policy for both.
        BearerAuthMiddleware::with_parts(slot, self.destinations.clone(), self.judge.clone())
            .handle(request, extensions, next)
            .await
    }
}

impl<K, P> Clone for KeyedBearerAuthMiddleware<K, P> {
    fn clone(&self) -> Self {
        KeyedBearerAuthMiddleware {
            cache: self.cache.clone(),
            route: self.route.clone(),
            destinations: self.destinations.clone(),
            on_unknown: self.on_unknown,
            judge: self.judge.clone(),
        }
    }
}

impl<K, P> fmt::Debug for KeyedBearerAuthMiddleware<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBearerAuthMiddleware")
            .field("cache", &self.cache)
            .field("route", &self.route)
            .field("destinations", &self.destinations)
            .field("on_unknown", &self.on_unknown)
            .field("judge", &self.judge)
            .finish()
    }
}
