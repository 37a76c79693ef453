//! [`BearerAuthLayer`]: wraps a service so every request carries `Authorization: Bearer …`.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let source = from_fn(|| async {
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(source))
//!     .service(service_fn(|req: Request<()>| async move {
//!         // Stands in for a hyper-util client: echo what it would have sent.
//!         let auth = req.headers()[AUTHORIZATION].clone();
//!         Ok::<_, Infallible>(Response::new(auth))
//!     }));
//!
//! let response = client.oneshot(Request::new(())).await?;
//! assert_eq!(response.body(), "Bearer abc");
//! # Ok(()) }
//! ```
//!
//! The layer is also where the policy is set: where tokens may go ([`origin`](crate::Origin))
//! and what a 401 does ([`challenge`](crate::challenge)):
//!
//! ```
//! use tower_bearer::{BearerAuthLayer, OnDisallowedOrigin, Origin, TokenCache, source::static_token};
//!
//! let cache = TokenCache::new(static_token("abc"));
//! let layer = BearerAuthLayer::from_cache(cache)
//!     .allow_origin(Origin::from_static("https://api.example.com"))
//!     .on_disallowed_origin(OnDisallowedOrigin::Fail)
//!     .replay_on_401();
//! # let _ = layer;
//! ```

use std::fmt;
use std::marker::PhantomData;

use http::{HeaderMap, StatusCode};
use tower::Layer;
use tower::layer::util::Identity;

use crate::body_rule::BodyRuleLayer;
use crate::challenge::RejectionRule;
use crate::keyed::{Destination, Key, KeyedTokenCache, PerKey};
use crate::origin::Destinations;
use crate::pipeline::{Judge, Tokens};
use crate::service::{InvalidateOnly, Replay};
use crate::{BearerAuth, OnDisallowedOrigin, Origin, TokenCache, TokenSource};

/// A [`Layer`] that adds `Authorization: Bearer <token>` to every request, with tokens from a
/// shared [`TokenCache`], or from the slot of each request's key in a
/// [`KeyedTokenCache`] ([`per_origin`](Self::per_origin), [`per_request`](Self::per_request)).
///
/// Cloning the layer (or the services it makes) shares the cache: one token, one refresh.
///
/// Configured with consuming setters, as tower-http's layers are, the same for one cache and
/// for a keyed one:
///
/// - where tokens may go: [`allow_origin`](Self::allow_origin),
///   [`allow_insecure_http`](Self::allow_insecure_http),
///   [`on_disallowed_origin`](Self::on_disallowed_origin) (see [`origin`](crate::Origin)), and
///   for a keyed cache [`on_unknown_destination`](Self::on_unknown_destination);
/// - what a 401 does: by default ([`InvalidateOnly`]) a 401 that
///   [rejects the token](crate::challenge::rejects_token) drops that token from the cache (at
///   most one token per second per cache) and is returned to the caller;
///   [`replay_on_401`](Self::replay_on_401) also sends the request once more with a new token.
///
/// The services it makes read the status of each response, so the inner service must answer
/// `http::Response<_>`, as hyper-util's client and tower-http's middleware do.
///
/// Put nothing that rewrites `Authorization` inside this layer (tower-http's
/// `SetRequestHeader::overriding`, say): the server's 401 would then be about a token this layer
/// never sent, and it cannot tell. A second bearer layer of this crate further in is recognised
/// (it marks the 401 as being about its own token), and this layer then keeps its token.
pub struct BearerAuthLayer<P, M = InvalidateOnly, L = Identity, C = TokenCache<P>> {
    tokens: C,
    destinations: Destinations,
    judge: Judge,
    /// What the layer puts between its services and the inner service: nothing, or the body
    /// rule's reader ([`rejects_token_when_body`](Self::rejects_token_when_body)).
    below: L,
    mode: PhantomData<fn() -> (M, P)>,
}

impl<P: TokenSource> BearerAuthLayer<P> {
    /// A layer with its own [`TokenCache`] (default settings) over `source`.
    pub fn new(source: P) -> Self {
        Self::from_cache(TokenCache::new(source))
    }

    /// A layer using an existing cache, to share one token between several clients (a tower
    /// stack and a reqwest middleware at once, say) or to use a cache built with
    /// [`TokenCache::builder`].
    pub fn from_cache(cache: TokenCache<P>) -> Self {
        BearerAuthLayer::with_tokens(cache)
    }

    /// A layer that gives each request the token of its origin's key: a request to an origin in
    /// `origins` gets the token of the key it maps to, from that key's slot of `cache`; any
    /// other request gets no token (or fails, see
    /// [`on_unknown_destination`](Self::on_unknown_destination)), never another destination's.
    /// Every origin rule of [`allow_origin`](Self::allow_origin) applies to the map's origins.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response, header::AUTHORIZATION};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_bearer::{BearerAuthLayer, Origin, keyed::KeyedTokenCache, source::static_token};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// let tokens = KeyedTokenCache::new(|audience: &&str| Ok(static_token(format!("for-{audience}"))));
    /// let client = ServiceBuilder::new()
    ///     .layer(BearerAuthLayer::per_origin(tokens, [
    ///         (Origin::from_static("https://billing.example.com"), "billing"),
    ///         (Origin::from_static("https://search.example.com"), "search"),
    ///     ]))
    ///     .service(service_fn(|req: Request<()>| async move {
    ///         let auth = req.headers().get(AUTHORIZATION).cloned();
    ///         Ok::<_, Infallible>(Response::new(auth))
    ///     }));
    ///
    /// let to = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let billing = client.clone().oneshot(to("https://billing.example.com/invoices")).await?;
    /// assert_eq!(billing.body().as_ref().unwrap(), "Bearer for-billing");
    /// let search = client.clone().oneshot(to("https://search.example.com/q")).await?;
    /// assert_eq!(search.body().as_ref().unwrap(), "Bearer for-search");
    /// let cdn = client.clone().oneshot(to("https://cdn.example.com/logo.png")).await?;
    /// assert!(cdn.body().is_none());
    /// # Ok(()) }
    /// ```
    pub fn per_origin<K: Key>(
        cache: KeyedTokenCache<K, P>,
        origins: impl IntoIterator<Item = (Origin, K)>,
    ) -> BearerAuthLayer<P, InvalidateOnly, Identity, PerKey<K, P>> {
        BearerAuthLayer::with_tokens(PerKey::origins(cache, origins))
    }

    /// A layer that gives each request the token of the key `pick` returns for it (a tenant
    /// from the path, an audience from a header), from that key's slot of `cache`; `None`
    /// means no token (or a failure, see
    /// [`on_unknown_destination`](Self::on_unknown_destination)).
    ///
    /// `pick` runs for every request (it may read anything: the path, the headers, a
    /// task-local tenant): keep it to a few comparisons. When the key depends on the origin
    /// alone, [`per_origin_with`](Self::per_origin_with) asks once per origin. The token still goes only
    /// over https (or to loopback), as with one cache. Every new key costs a token
    /// fetch (and, past [`max_keys`](crate::keyed::KeyedTokenCacheBuilder::max_keys), evicts
    /// another key's token): when the key comes from input you do not control (a tenant in a
    /// path), return `None` for values that are not known tenants.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, keyed::KeyedTokenCache, source::static_token};
    ///
    /// let tokens = KeyedTokenCache::new(|tenant: &String| Ok(static_token(format!("for-{tenant}"))));
    /// // https://api.example.com/tenants/{tenant}/...
    /// let layer = BearerAuthLayer::per_request(tokens, |dest| {
    ///     let tenant = dest.path().strip_prefix("/tenants/")?.split('/').next()?;
    ///     Some(tenant.to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn per_request<K: Key>(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Destination<'_>) -> Option<K> + Send + Sync + 'static,
    ) -> BearerAuthLayer<P, InvalidateOnly, Identity, PerKey<K, P>> {
        BearerAuthLayer::with_tokens(PerKey::request(cache, pick))
    }

    /// A layer that gives each request the token of the key `pick` returns for its origin
    /// (`None`: no token, or a failure, see
    /// [`on_unknown_destination`](Self::on_unknown_destination)): for origins too many or too
    /// dynamic for [`per_origin`](Self::per_origin)'s map, a tenant in a subdomain, say.
    ///
    /// `pick` must be a function of the origin it is given (scheme, host and port, written as
    /// [`Origin`] writes them): a tower service asks it once per origin it remembers and uses
    /// its answer for every later request to that origin, so a request costs what it costs
    /// with `per_origin`. For keys that depend on anything else, use
    /// [`per_request`](Self::per_request). Every origin rule of
    /// [`allow_origin`](Self::allow_origin) applies.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, keyed::KeyedTokenCache, source::static_token};
    ///
    /// let tokens = KeyedTokenCache::new(|tenant: &String| Ok(static_token(format!("for-{tenant}"))));
    /// // https://{tenant}.api.example.com
    /// let layer = BearerAuthLayer::per_origin_with(tokens, |origin| {
    ///     let tenant = origin.host().strip_suffix(".api.example.com")?;
    ///     (origin.scheme() == "https").then(|| tenant.to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn per_origin_with<K: Key>(
        cache: KeyedTokenCache<K, P>,
        pick: impl Fn(&Origin) -> Option<K> + Send + Sync + 'static,
    ) -> BearerAuthLayer<P, InvalidateOnly, Identity, PerKey<K, P>> {
        BearerAuthLayer::with_tokens(PerKey::origin(cache, pick))
    }
}

impl<P, C> BearerAuthLayer<P, InvalidateOnly, Identity, C> {
    fn with_tokens(tokens: C) -> Self {
        BearerAuthLayer {
            tokens,
            destinations: Destinations::default(),
            judge: Judge::default(),
            below: Identity::new(),
            mode: PhantomData,
        }
    }
}

impl<P, L, C> BearerAuthLayer<P, InvalidateOnly, L, C> {
    /// After a response that rejects the token, send the request once more with a new token
    /// (of the same key, for a keyed cache), when its body can be copied
    /// ([`ReplayBody`](crate::ReplayBody), up to [`MAX_REPLAY_BODY`](crate::MAX_REPLAY_BODY));
    /// and a DPoP request once more after a `use_dpop_nonce` challenge, which does not count as
    /// the replay.
    ///
    /// The default is to drop the rejected token and return the response (a DPoP nonce is
    /// remembered for the next request). Replaying needs a copy of every request made before
    /// it is sent (the inner service consumes the original), which takes every request off the
    /// fast path: hence the opt-in. Never a second replay. The services this layer makes then
    /// require `B: ReplayBody`; a request whose body cannot be copied is sent once, and a
    /// rejection only drops the token. The same option as `BearerAuthMiddleware::replay_on_401`.
    pub fn replay_on_401(self) -> BearerAuthLayer<P, Replay, L, C> {
        BearerAuthLayer {
            tokens: self.tokens,
            destinations: self.destinations,
            judge: Judge {
                replay: true,
                ..self.judge
            },
            below: self.below,
            mode: PhantomData,
        }
    }
}

impl<P, M, C> BearerAuthLayer<P, M, Identity, C> {
    /// Also treat a response as rejecting the token when `rule` says so after reading its body:
    /// for servers that say "this token expired" only in the body (a 403 with
    /// `{"error": "token_expired"}`); see
    /// `BearerAuthMiddleware::rejects_token_when_body`, the same option. Only responses with one
    /// of `statuses` are read, up to [`DEFAULT_MAX_BODY`](crate::body_rule::DEFAULT_MAX_BODY)
    /// (64 KiB) and for at most [`DEFAULT_BODY_TIMEOUT`](crate::body_rule::DEFAULT_BODY_TIMEOUT)
    /// (5 s); a larger or slower body is not judged. The caller gets the whole body all the
    /// same, as a [`JudgedBody`](crate::body_rule::JudgedBody) (the services this layer makes
    /// then wrap the inner service in a [`BodyRule`](crate::body_rule::BodyRule), which reads
    /// the body and marks the response for this layer's judge). The token dropped is the one
    /// the request carried (its key's, for a keyed cache).
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_bearer::{BearerAuthLayer, source::static_token};
    ///
    /// let layer = BearerAuthLayer::new(static_token("abc")).rejects_token_when_body(
    ///     [StatusCode::FORBIDDEN],
    ///     |_status, _headers, body| {
    ///         serde_json::from_slice::<serde_json::Value>(body)
    ///             .is_ok_and(|json| json["error"] == "token_expired")
    ///     },
    /// );
    /// # let _ = layer;
    /// ```
    pub fn rejects_token_when_body(
        self,
        statuses: impl IntoIterator<Item = StatusCode>,
        rule: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> BearerAuthLayer<P, M, BodyRuleLayer, C> {
        BearerAuthLayer {
            tokens: self.tokens,
            destinations: self.destinations,
            judge: self.judge,
            below: BodyRuleLayer::new(statuses, rule),
            mode: PhantomData,
        }
    }
}

impl<P, M, L, C: Tokens<Source = P>> BearerAuthLayer<P, M, L, C> {
    /// Send the token only to this origin (and any others allowed). Without any call, every
    /// origin may receive it (subject to [`allow_insecure_http`](Self::allow_insecure_http)).
    /// Relative URIs always get the token. With a keyed cache, this applies beside the key
    /// picker's own rule.
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
    /// `false`). For tests against servers on other hosts; never in production, where anyone on
    /// the path could read the token.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.destinations.allow_insecure_http(allow);
        self
    }

    /// What to do with a request that may not receive the token: send it without
    /// ([`OnDisallowedOrigin::SendWithoutToken`], the default) or fail it
    /// ([`OnDisallowedOrigin::Fail`]).
    pub fn on_disallowed_origin(mut self, action: OnDisallowedOrigin) -> Self {
        self.destinations.on_disallowed = action;
        self
    }

    /// Also treat a response as rejecting the token when `rule` says so (a 403 with a vendor
    /// header, say), beside the default RFC 6750 reading of a 401; see
    /// [`RejectionRule`]. The same compare-and-invalidate, the
    /// same one-drop-per-second throttle and (with [`replay_on_401`](BearerAuthLayer::replay_on_401))
    /// the same single replay apply. Costs a reference-count increment per request.
    pub fn rejects_token_when(
        mut self,
        rule: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.judge.rule = Some(RejectionRule::new(rule));
        self
    }

    /// The cache this layer's services take tokens from: the [`TokenCache`], or the
    /// [`KeyedTokenCache`].
    pub fn cache(&self) -> &C::Cache {
        self.tokens.cache()
    }
}

impl<K, P, M, L> BearerAuthLayer<P, M, L, PerKey<K, P>> {
    /// What to do with a request whose destination has no key: send it without a token
    /// ([`OnDisallowedOrigin::SendWithoutToken`], the default) or fail it
    /// ([`OnDisallowedOrigin::Fail`], an error of kind [`Disallowed`](crate::ErrorKind::Disallowed)).
    pub fn on_unknown_destination(mut self, action: OnDisallowedOrigin) -> Self {
        self.tokens.on_unknown = action;
        self
    }
}

impl<S, P, M, L: Layer<S>, C: Tokens<Source = P>> Layer<S> for BearerAuthLayer<P, M, L, C> {
    type Service = BearerAuth<L::Service, P, M, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::from_front(
            self.below.layer(inner),
            self.tokens.front(&self.destinations, &self.judge),
        )
    }
}

impl<P, M, L: Clone, C: Clone> Clone for BearerAuthLayer<P, M, L, C> {
    fn clone(&self) -> Self {
        BearerAuthLayer {
            tokens: self.tokens.clone(),
            destinations: self.destinations.clone(),
            judge: self.judge.clone(),
            below: self.below.clone(),
            mode: PhantomData,
        }
    }
}

impl<P, M, L: fmt::Debug, C: fmt::Debug> fmt::Debug for BearerAuthLayer<P, M, L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("tokens", &self.tokens)
            .field("destinations", &self.destinations)
            .field("judge", &self.judge)
            .field("below", &self.below)
            .field("mode", &std::any::type_name::<M>())
            .finish()
    }
}
