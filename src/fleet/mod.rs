//! The fleet tier: one token request per token lifetime for a whole fleet of processes that
//! share one credential, through Redis (or Valkey, or a Redis Cluster).
//!
//! Without it, N replicas cost N token requests per lifetime (rate limits, IdP bills), and with
//! rotating refresh tokens they spend each other's tokens. With it, each process keeps its own
//! lock-free cache and fast path, and Redis is asked only when the local token needs a refresh,
//! never on the per-request path:
//!
//! 1. the process reads the shared token: one that is still fresh (by the cache's refresh
//!    window) is taken, with the expiry it was published with, anchored at the moment its
//!    fetch started;
//! 2. otherwise it takes the fetch lease (`SET lease owner NX PX ttl`, an owner value unique to
//!    the attempt, kept alive while the holder lives), fetches from its own source, publishes
//!    the token with its expiry, and releases the lease (compare-and-delete: only its owner can);
//! 3. the others wait for the publication (pub/sub, with a poll as a fallback), bounded by
//!    [`wait_timeout`](RedisFleetBuilder::wait_timeout); a lease whose holder crashed or froze
//!    expires after [`lease_ttl`](RedisFleetBuilder::lease_ttl) and the next process takes it.
//!
//! Redis unreachable, slow or answering garbage never fails a request: the outage is logged
//! once, each process refreshes on its own (per-process single flight, as without the tier),
//! and the fleet shares again once Redis answers. Which tier served each refresh is in the
//! `token refreshed` event and in [`RefreshEvent::tier`](crate::RefreshEvent::tier):
//! [`Shared`](crate::RefreshTier::Shared), [`Leased`](crate::RefreshTier::Leased) or
//! [`Fallback`](crate::RefreshTier::Fallback).
//!
//! Rotating refresh tokens shared by the fleet go in a [`RedisStore`](crate::store::RedisStore),
//! a compare-and-swap store on the same Redis.
//!
//! # Keys
//!
//! A credential's keys are `<prefix>:{<hash>}:…`, where `<hash>` is a SHA-256 of the identity
//! you give (name what makes tokens differ: token URL, client id, scope, audience; never put the
//! secret in it, though it is never stored, only hashed). They share one hash tag, so in a
//! Redis Cluster every key of a credential lives in one slot. Two caches with the same
//! identity share tokens: give different credentials different identities.
//!
//! A token is shared only between processes that would fetch the same kind of token: the
//! record carries the token's type and binding, the JWK thumbprint (`jkt`, RFC 7638) of the
//! source's [DPoP key](crate::dpop) and the client certificate's `x5t#S256` (RFC 8705): the
//! one the source authenticates with ([`TokenSource::client_identity`]), or the one the fleet
//! is [`certificate_bound`](RedisFleetBuilder::certificate_bound) to. Each binding has its own token, lease and channel keys (a plain
//! Bearer token keeps `…:token`; a bound one is `…:token:<hash of the binding>`), so processes
//! bound otherwise never wait for, adopt or overwrite each other's tokens, and a record whose
//! binding differs from this process's is never adopted, wherever it is found. A source whose
//! binding is not known before it fetches ([`TokenSource::binding_known`]: a
//! [`Discovery::source`](crate::source::Discovery::source) of your own, before its first
//! build; the grants `Discovery` builds know theirs from their configuration) fetches its
//! first token without the fleet, neither adopting nor publishing one.
//!
//! Tokens at rest can be encrypted with a key you supply
//! ([`encryption_key`](RedisFleetBuilder::encryption_key), AES-256-GCM; the encryption and
//! fingerprint keys are derived from it apart, with HKDF), and the key rotated without a
//! flag day: every value names the key id it was sealed under, and
//! [`previous_encryption_key`](RedisFleetBuilder::previous_encryption_key)s are still read.
//! Redis AUTH and TLS
//! work as the `redis` crate supports them in the URL (`redis://user:password@host:6379/0`,
//! `rediss://…` over rustls); the URL never appears in logs, errors or `Debug`. The redis
//! crate's TLS uses rustls' process-wide default provider: when your build has both ring and
//! aws-lc-rs, rustls cannot pick one and `rediss://` panics until your program installs one
//! (`rustls::crypto::ring::default_provider().install_default()`, at start).
//!
//! # Clocks
//!
//! Processes share expiry times on the wall clock. A host whose clock is behind the
//! publisher's by `d` uses the token up to `d` longer: keep hosts on NTP and the safety margin
//! (10 s by default) well above their skew.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::fleet::RedisFleet;
//! use tower_bearer::{Error, Token, TokenCache, source::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! // Connects on first use: building needs no Redis.
//! let fleet = RedisFleet::builder("redis://127.0.0.1:6379/", "orders-api client_credentials")
//!     .lease_ttl(Duration::from_secs(5))
//!     .build()?;
//!
//! let cache = TokenCache::builder(from_fn(|| async {
//!     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! }))
//! .fleet(fleet)
//! .build();
//! # let _ = cache;
//! # Ok(()) }
//! ```

mod lease;
mod link;
mod record;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use tokio::time::Instant;

pub use record::EncryptionKey;

pub(crate) use lease::Lease;
pub(crate) use link::{Conn, Link};
pub(crate) use record::{Keys, decode_refresh, encode_refresh, fingerprint, fingerprints};

use crate::cache::{Config, Fetched, RefreshTier};
use crate::{Error, Token, TokenSource};
pub(crate) use lease::millis;
use link::{LinkSettings, Target, Unavailable};
use record::{Binding, Keyring, SharedToken, Slot, TokenType, Unreadable, wall_ms};

/// A credential's place in the fleet tier: the Redis it shares, its keys, and how long to
/// lease and wait. Give it to [`TokenCacheBuilder::fleet`](crate::TokenCacheBuilder::fleet);
/// see the [module docs](self).
///
/// Cheap to clone; clones (and [`credential`](Self::credential)s) share one connection.
#[derive(Clone)]
pub struct RedisFleet {
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Arc<Keys>,
    prefix: Arc<str>,
    pub(crate) cipher: Option<Keyring>,
    /// Whether an unreadable shared token was already reported at `warn` (later ones go to
    /// `debug`: during a key rotation every refresh would find one).
    unreadable_reported: Arc<std::sync::atomic::AtomicBool>,
    /// The client certificate tokens are bound to, if named: its `x5t#S256` is taken at each
    /// use, so that a rotating identity ([`ClientIdentity::from_files`]) binds the tokens to
    /// the certificate it presents now.
    ///
    /// [`ClientIdentity::from_files`]: crate::http_client::ClientIdentity::from_files
    certificate: Option<Certificate>,
    settings: Settings,
}

/// A client certificate named to the fleet.
#[cfg(feature = "reqwest")]
type Certificate = crate::http_client::ClientIdentity;
#[cfg(not(feature = "reqwest"))]
type Certificate = std::convert::Infallible;

#[derive(Clone, Copy, Debug)]
struct Settings {
    lease_ttl: Duration,
    wait_timeout: Duration,
    poll_interval: Duration,
}

impl RedisFleet {
    /// A fleet on the Redis at `url` (`redis://`, `rediss://`, `unix://`), with the default
    /// settings, for the credential named by `identity`.
    pub fn new(url: &str, identity: impl AsRef<str>) -> Result<Self, Error> {
        Self::builder(url, identity).build()
    }

    /// A builder for the Redis at `url`.
    pub fn builder(url: &str, identity: impl AsRef<str>) -> RedisFleetBuilder {
        let target = redis::Client::open(url).map(Target::Single).map_err(|_| {
            Error::config(
                "the Redis URL does not parse (expected redis://, rediss:// or unix://; the \
                 URL is not shown, as it may hold a password)",
            )
        });
        RedisFleetBuilder::new(target, identity.as_ref())
    }

    /// A builder for a Redis Cluster reached through `nodes` (any of its nodes' URLs).
    pub fn cluster_builder<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
        identity: impl AsRef<str>,
    ) -> RedisFleetBuilder {
        let nodes: Vec<&str> = nodes.into_iter().collect();
        let target = (|| {
            let first = nodes.first().ok_or(())?;
            let pubsub = redis::Client::open(*first).map_err(|_| ())?;
            let cluster = redis::cluster::ClusterClient::new(nodes.clone()).map_err(|_| ())?;
            Ok::<_, ()>(Target::Cluster(Box::new(cluster), pubsub))
        })()
        .map_err(|()| {
            Error::config(
                "the Redis Cluster node URLs do not parse (or none was given); the URLs are not \
                 shown, as they may hold a password",
            )
        });
        RedisFleetBuilder::new(target, identity.as_ref())
    }

    /// A builder over a `redis::Client` you configured yourself (TLS certificates, say).
    pub fn builder_from_client(
        client: redis::Client,
        identity: impl AsRef<str>,
    ) -> RedisFleetBuilder {
        RedisFleetBuilder::new(Ok(Target::Single(client)), identity.as_ref())
    }

    /// Another credential on the same Redis, sharing this one's connection and settings.
    pub fn credential(&self, identity: impl AsRef<str>) -> RedisFleet {
        RedisFleet {
            keys: Arc::new(Keys::new(&self.prefix, identity.as_ref())),
            ..self.clone()
        }
    }

    /// What every key of this credential starts with, `<prefix>:{<hash>}`: for operators
    /// looking for its keys (`SCAN MATCH`), and in logs. Names no secret.
    pub fn key_base(&self) -> &str {
        &self.keys.base
    }

    /// A refresh through the fleet: the shared token if it is fresh, else a fetch under the
    /// lease (published for the others), else the publication of whoever holds the lease;
    /// `source` on its own when Redis is unavailable or the wait times out. `previous` is the
    /// token being replaced: the shared token is never taken when it is that one (after a
    /// 401, Redis still holds the token the server rejected).
    pub(crate) async fn fetch<P: TokenSource>(
        &self,
        source: &P,
        previous: Option<&str>,
        config: &Config,
    ) -> Result<Fetched, Error> {
        if !source.binding_known() {
            // Its tokens may be DPoP- or certificate-bound: neither adopt nor publish under a
            // guess. The next fetch knows.
            tracing::debug!(
                keys = %self.keys.base,
                "the source's token binding is not known before its first fetch; fetching \
                 without the fleet"
            );
            return local(source, RefreshTier::Fallback).await;
        }
        let wait = self.settings.wait_timeout.min(config.fetch_timeout / 2);
        let deadline = crate::time::after(wait);
        let slot = &self.keys.slot(self.expected_binding(source).await);
        let mut seen = match self.read(slot).await {
            Ok(seen) => seen,
            Err(_) => return local(source, RefreshTier::Fallback).await,
        };
        loop {
            if let Some(shared) = seen.filter(|s| takes(s, previous, config)) {
                return Ok(self.adopt(shared));
            }
            match Lease::try_acquire(&self.link, &slot.lease, self.settings.lease_ttl).await {
                Ok(Some(lease)) => {
                    return self
                        .fetch_leased(source, slot, lease, previous, config)
                        .await;
                }
                Ok(None) => {}
                Err(_) => return local(source, RefreshTier::Fallback).await,
            }
            match self.wait(slot, deadline, previous, config).await {
                Waited::Token(shared) => return Ok(self.adopt(shared)),
                // Its holder finished without publishing (it failed) or its lease expired (it
                // crashed): look again, take the lease.
                Waited::LeaseFree(latest) => seen = latest,
                Waited::TimedOut => {
                    tracing::warn!(
                        keys = %self.keys.base,
                        waited = ?wait,
                        "no token was published by the fleet's lease holder in time; fetching \
                         from this process"
                    );
                    return local(source, RefreshTier::Fallback).await;
                }
                Waited::Unavailable => return local(source, RefreshTier::Fallback).await,
            }
        }
    }

    async fn fetch_leased<P: TokenSource>(
        &self,
        source: &P,
        slot: &Slot,
        lease: Lease,
        previous: Option<&str>,
        config: &Config,
    ) -> Result<Fetched, Error> {
        // Someone may have published and released between our read and our lease.
        if let Ok(Some(shared)) = self.read(slot).await
            && takes(&shared, previous, config)
        {
            lease.release().await;
            return Ok(self.adopt(shared));
        }
        let sent_at = Instant::now();
        let sent_wall = SystemTime::now();
        let result = source.fetch().await;
        if let Ok(token) = &result {
            // Filed under the binding it was fetched with: a certificate rotated during the
            // fetch (its files replaced) may not be the one the request presented, and a token
            // filed under the new one would be adopted by processes it does not fit. This
            // process keeps it; the next fetch files its token under the new binding.
            if self.expected_binding(source).await == slot.binding {
                self.publish(slot, token, sent_at, sent_wall).await;
            } else {
                tracing::debug!(
                    keys = %self.keys.base,
                    "the token's binding changed during the fetch (a rotated certificate);                      not shared"
                );
            }
        }
        // After the publication: a waiter never sees the lease gone without the token.
        lease.release().await;
        tracing::debug!(keys = %self.keys.base, ok = result.is_ok(), "fetched under the fleet lease");
        result.map(|token| Fetched {
            token,
            sent_at,
            tier: RefreshTier::Leased,
        })
    }

    /// What `source`'s tokens are bound to: the one place the fleet asks, so that tokens
    /// bound otherwise (another token type, DPoP key or certificate) are never adopted.
    async fn expected_binding<P: TokenSource>(&self, source: &P) -> Binding {
        // The certificate named to the fleet, else the one the source authenticates with.
        #[cfg(feature = "reqwest")]
        let x5t_s256 = match self
            .certificate
            .as_ref()
            .or_else(|| source.client_identity())
        {
            // Rotated files are looked at (and read when they changed) off the async threads.
            Some(identity) if identity.is_rotating() => {
                let moved = identity.clone();
                let x5t = tokio::task::spawn_blocking(move || self::x5t_s256(&moved)).await;
                // A runtime shutting down runs no blocking task: read here rather than file the
                // token under no certificate.
                Some(x5t.unwrap_or_else(|_| self::x5t_s256(identity)))
            }
            Some(identity) => Some(self::x5t_s256(identity)),
            None => None,
        };
        #[cfg(not(feature = "reqwest"))]
        let x5t_s256 = None;
        #[cfg(feature = "dpop")]
        if let Some(dpop) = source.dpop() {
            return Binding {
                token_type: TokenType::Dpop,
                jkt: Some(dpop.key().thumbprint().to_owned()),
                x5t_s256,
            };
        }
        let _ = source;
        Binding {
            token_type: TokenType::Bearer,
            jkt: None,
            x5t_s256,
        }
    }

    /// The shared token of `slot`, if there is a readable one bound as `slot` says.
    async fn read(&self, slot: &Slot) -> Result<Option<SharedToken>, Unavailable> {
        let key = &slot.token;
        let value: Option<String> = self
            .link
            .run("read", |mut conn: Conn| async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(self.decode(slot, value))
    }

    /// The shared token and whether the lease is held, in one round trip.
    async fn poll(&self, slot: &Slot) -> Result<(Option<SharedToken>, bool), Unavailable> {
        let (token, lease) = (&slot.token, &slot.lease);
        let (value, leased): (Option<String>, bool) = self
            .link
            .run("poll", |mut conn: Conn| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(token)
                    .cmd("EXISTS")
                    .arg(lease)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok((self.decode(slot, value), leased))
    }

    fn decode(&self, slot: &Slot, value: Option<String>) -> Option<SharedToken> {
        let value = zeroize::Zeroizing::new(value?);
        match SharedToken::decode(self.cipher.as_ref(), slot, &value) {
            Ok(shared) => Some(shared),
            Err(why) => {
                let first = !self.unreadable_reported.swap(true, Ordering::Relaxed);
                if first || !matches!(why, Unreadable::UnknownKey | Unreadable::Binding) {
                    tracing::warn!(
                        keys = %self.keys.base,
                        why = why.as_str(),
                        "the fleet's shared token is unreadable; treating it as absent"
                    );
                } else {
                    tracing::debug!(
                        keys = %self.keys.base,
                        why = why.as_str(),
                        "the fleet's shared token is unreadable; treating it as absent"
                    );
                }
                None
            }
        }
    }

    /// Publish `token`, fetched from `sent_at` (`sent_wall` on the wall clock), for the fleet.
    async fn publish(&self, slot: &Slot, token: &Token, sent_at: Instant, sent_wall: SystemTime) {
        let now = Instant::now();
        let now_wall = SystemTime::now();
        let expires_in = token
            .expires_at(sent_at, now)
            .map(|at| at.saturating_duration_since(now));
        if expires_in.is_some_and(|left| left.is_zero()) {
            return;
        }
        let now_ms = wall_ms(now_wall);
        let shared = SharedToken {
            id: record::random_id(),
            secret: zeroize::Zeroizing::new(token.secret().to_owned()),
            sent_at_ms: wall_ms(sent_wall).min(now_ms),
            expires_at_ms: expires_in.map(|left| now_ms.saturating_add(millis(left))),
            binding: slot.binding.clone(),
        };
        let value = shared.encode(self.cipher.as_ref(), &slot.token);
        let (key, channel, id) = (&slot.token, &slot.channel, shared.id.as_str());
        let value: &str = &value;
        let published: Result<(), _> = self
            .link
            .run("publish", |mut conn: Conn| async move {
                let mut set = redis::cmd("SET");
                set.arg(key).arg(value);
                if let Some(left) = expires_in {
                    set.arg("PX").arg(millis(left));
                }
                set.query_async::<()>(&mut conn).await?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(id)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        if published.is_ok() {
            tracing::debug!(keys = %self.keys.base, "token published to the fleet");
        }
    }

    /// Wait for the lease holder's publication, or for the lease to go.
    async fn wait(
        &self,
        slot: &Slot,
        deadline: Instant,
        previous: Option<&str>,
        config: &Config,
    ) -> Waited {
        let mut pubsub = self.subscribe(slot).await;
        loop {
            // After subscribing: a publication from now on wakes us, one before is read here.
            let (seen, leased) = match self.poll(slot).await {
                Ok(state) => state,
                Err(_) => return Waited::Unavailable,
            };
            match seen {
                Some(shared) if takes(&shared, previous, config) => return Waited::Token(shared),
                seen if !leased => return Waited::LeaseFree(seen),
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Waited::TimedOut;
            }
            let tick = crate::time::add(now, self.settings.poll_interval).min(deadline);
            let dropped = match pubsub.as_mut() {
                Some(conn) => matches!(
                    tokio::time::timeout_at(tick, conn.on_message().next()).await,
                    Ok(None)
                ),
                None => {
                    tokio::time::sleep_until(tick).await;
                    false
                }
            };
            if dropped {
                pubsub = None; // its connection dropped: poll
            }
        }
    }

    async fn subscribe(&self, slot: &Slot) -> Option<redis::aio::PubSub> {
        let mut conn = self.link.pubsub().await?;
        let timeout = self.link.settings.command_timeout;
        match tokio::time::timeout(timeout, conn.subscribe(&slot.channel)).await {
            Ok(Ok(())) => Some(conn),
            _ => None,
        }
    }

    /// A shared token, as this process's own: the same lifetime, anchored at the moment the
    /// fetch that got it started (on this process's clock, through the wall clock).
    fn adopt(&self, mut shared: SharedToken) -> Fetched {
        let now = Instant::now();
        let age =
            Duration::from_millis(wall_ms(SystemTime::now()).saturating_sub(shared.sent_at_ms));
        let sent_at = now.checked_sub(age).unwrap_or(now);
        let mut token = Token::new(std::mem::take(&mut *shared.secret));
        if let Some(lifetime) = shared.lifetime() {
            token = token.with_expires_in(lifetime);
        }
        tracing::debug!(keys = %self.keys.base, age = ?age, "token taken from the fleet");
        Fetched {
            token,
            sent_at,
            tier: RefreshTier::Shared,
        }
    }
}

enum Waited {
    Token(SharedToken),
    LeaseFree(Option<SharedToken>),
    TimedOut,
    Unavailable,
}

/// Whether a process replacing `previous` takes `shared`: not the token being replaced, and
/// fresh through the whole refresh window (with the most jitter the cache could add), so that
/// the cache does not find it stale and refresh again at once.
fn takes(shared: &SharedToken, previous: Option<&str>, config: &Config) -> bool {
    if previous == Some(shared.secret.as_str()) {
        return false;
    }
    let (Some(lifetime), Some(expires_at_ms)) = (shared.lifetime(), shared.expires_at_ms) else {
        return true;
    };
    let window = config.refresh_window.min(lifetime / 2);
    let ahead =
        (window + config.jitter.min(window / 2)).max(config.safety_margin.min(lifetime / 4));
    wall_ms(SystemTime::now()).saturating_add(millis(ahead)) < expires_at_ms
}

/// A fetch from this process's own source, outside the fleet.
async fn local<P: TokenSource>(source: &P, tier: RefreshTier) -> Result<Fetched, Error> {
    let sent_at = Instant::now();
    let token = source.fetch().await?;
    Ok(Fetched {
        token,
        sent_at,
        tier,
    })
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleet")
            .field("keys", &self.keys.base)
            .field("cluster", &self.link.is_cluster())
            .field("encrypted", &self.cipher.is_some())
            .field("certificate_bound", &self.certificate.is_some())
            .field("lease_ttl", &self.settings.lease_ttl)
            .field("wait_timeout", &self.settings.wait_timeout)
            .field("poll_interval", &self.settings.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisFleet`]; see [`RedisFleet::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::fleet::{EncryptionKey, RedisFleet};
///
/// let fleet = RedisFleet::builder("rediss://:password@redis.internal:6380/0", "billing-api")
///     .prefix("my-service")
///     .lease_ttl(Duration::from_secs(10))
///     .wait_timeout(Duration::from_secs(20))
///     .poll_interval(Duration::from_millis(100))
///     .command_timeout(Duration::from_millis(500))
///     .outage_retry(Duration::from_secs(10))
///     .encryption_key(EncryptionKey::generate())
///     .build()?;
/// assert!(!format!("{fleet:?}").contains("password"));
/// # Ok::<_, tower_bearer::Error>(())
/// ```
pub struct RedisFleetBuilder {
    target: Result<Target, Error>,
    identity: String,
    prefix: String,
    cipher: Option<EncryptionKey>,
    previous_keys: Vec<EncryptionKey>,
    certificate: Option<Certificate>,
    settings: Settings,
    link: LinkSettings,
}

impl RedisFleetBuilder {
    fn new(target: Result<Target, Error>, identity: &str) -> Self {
        RedisFleetBuilder {
            target,
            identity: identity.to_owned(),
            prefix: "tower-bearer".to_owned(),
            cipher: None,
            previous_keys: Vec::new(),
            certificate: None,
            settings: Settings {
                lease_ttl: Duration::from_secs(5),
                wait_timeout: Duration::from_secs(15),
                poll_interval: Duration::from_millis(250),
            },
            link: LinkSettings {
                command_timeout: Duration::from_secs(1),
                outage_retry: Duration::from_secs(5),
            },
        }
    }

    /// The first part of every key (default `tower-bearer`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long the fetch lease lasts without renewal (default 5 s). Its holder renews it every
    /// third of that while it fetches; a holder that crashes or freezes loses it after this
    /// long, and another process fetches.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// How long a process waits for the lease holder's token before fetching on its own
    /// (default 15 s; never more than half the cache's fetch timeout).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.settings.wait_timeout = timeout;
        self
    }

    /// How often a waiting process looks at Redis when no notification arrives (default
    /// 250 ms). Notifications (pub/sub) usually wake it sooner.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The most one Redis command (or connecting) may take before Redis counts as unavailable
    /// (default 1 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.link.command_timeout = timeout;
        self
    }

    /// After Redis failed, how long refreshes skip it before asking again (default 5 s).
    pub fn outage_retry(mut self, retry: Duration) -> Self {
        self.link.outage_retry = retry;
        self
    }

    /// Encrypt tokens at rest (AES-256-GCM). Every process of the fleet needs the same key.
    /// Values are written under this key; see
    /// [`previous_encryption_key`](Self::previous_encryption_key) to rotate it.
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.cipher = Some(key);
        self
    }

    /// A key values may still be encrypted under, read but no longer written (call once per
    /// key). To rotate: give every process the new key as
    /// [`encryption_key`](Self::encryption_key) and the old one here; once the values written
    /// under the old key are gone (the shared token's next refresh, the refresh token's next
    /// rotation), drop it. A value under a key the fleet does not hold is never an error
    /// storm: the shared token is fetched anew (reported once at `warn`, then at `debug`).
    pub fn previous_encryption_key(mut self, key: EncryptionKey) -> Self {
        self.previous_keys.push(key);
        self
    }

    /// The tokens are bound to this client certificate (RFC 8705 §3: the token endpoint is
    /// called with it and puts its thumbprint in the token's `cnf.x5t#S256`). Processes
    /// share a token only when they name the same certificate (and the same DPoP key, if
    /// their source has one), so a process never adopts a token that would be refused with
    /// its own certificate; a process presenting another certificate fetches its own.
    ///
    /// A source that authenticates with the certificate through
    /// [`ClientAuth::tls_client_auth`](crate::source::ClientAuth::tls_client_auth) (or the
    /// self-signed variant) declares it itself ([`TokenSource::client_identity`]), and the
    /// fleet binds its tokens to it without this. Name it here when an HTTP client of your own
    /// presents the certificate; this one wins over the source's.
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    ///
    /// A rotating identity ([`ClientIdentity::from_files`](crate::http_client::ClientIdentity::from_files))
    /// binds the tokens to the certificate it holds at each refresh: after the files are
    /// replaced, a token bound to the old certificate is no longer adopted.
    pub fn certificate_bound(mut self, identity: &crate::http_client::ClientIdentity) -> Self {
        self.certificate = Some(identity.clone());
        self
    }

    /// Build the fleet. Does no I/O: Redis is connected to on first use.
    pub fn build(self) -> Result<RedisFleet, Error> {
        let target = self.target?;
        let cipher = match (self.cipher, self.previous_keys.is_empty()) {
            (Some(current), _) => Some(Keyring::new(current, self.previous_keys)),
            (None, true) => None,
            (None, false) => {
                return Err(Error::config(
                    "the fleet has previous encryption keys but no current one: give it the \
                     key to write with as encryption_key",
                ));
            }
        };
        Ok(RedisFleet {
            link: Arc::new(Link::new(target, self.link)),
            keys: Arc::new(Keys::new(&self.prefix, &self.identity)),
            prefix: self.prefix.into(),
            cipher,
            unreadable_reported: Arc::default(),
            certificate: self.certificate,
            settings: self.settings,
        })
    }
}

/// The certificate's SHA-256 thumbprint as a token's `cnf.x5t#S256` holds it (RFC 8705 §3.1).
#[cfg(feature = "reqwest")]
fn x5t_s256(identity: &crate::http_client::ClientIdentity) -> String {
    use base64::Engine as _;
    let hash = crate::crypto::sha256(&[&identity.leaf_der()]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
}

impl fmt::Debug for RedisFleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleetBuilder")
            .field("prefix", &self.prefix)
            .field("encrypted", &self.cipher.is_some())
            .finish_non_exhaustive()
    }
}
