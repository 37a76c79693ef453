use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::TokenSource;

use super::{RefreshEvent, TokenCache};

/// The tuning knobs of a [`TokenCache`], set through [`TokenCache::builder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) refresh_window: Duration,
    pub(crate) jitter: Duration,
    pub(crate) safety_margin: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) rejected_cooldown: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) background_refresh: bool,
    pub(crate) on_refresh: Option<RefreshHook>,
    /// Asked, with the cache's source, before each background refresh: `false` skips it (a
    /// keyed slot that was evicted or has been idle). `None`: always refresh.
    pub(crate) background_gate: Option<fn(&dyn std::any::Any) -> bool>,
    #[cfg(feature = "redis")]
    pub(crate) fleet: Option<crate::fleet::RedisFleet>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics_label: Arc<str>,
}

/// The `on_refresh` callback.
#[derive(Clone)]
pub(crate) struct RefreshHook(pub(crate) Arc<dyn Fn(&RefreshEvent<'_>) + Send + Sync>);

impl fmt::Debug for RefreshHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshHook")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refresh_window: Duration::from_secs(60),
            jitter: Duration::from_secs(10),
            safety_margin: Duration::from_secs(10),
            backoff: Backoff::default(),
            rejected_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(60),
            background_refresh: false,
            on_refresh: None,
            background_gate: None,
            #[cfg(feature = "redis")]
            fleet: None,
            #[cfg(feature = "metrics")]
            metrics_label: Arc::from("default"),
        }
    }
}

/// Exponential backoff with jitter, used after a failed refresh.
///
/// After the `n`th consecutive transient failure the cache waits
/// `min(max, initial * 2^(n-1))`, jittered to between half and all of it, or the server's
/// `Retry-After` when that is longer: a `429` with `Retry-After: 300` waits 300 s, even though
/// the default `max` is 60 s. A `Retry-After` is honoured up to
/// [`MAX_RETRY_AFTER`](crate::MAX_RETRY_AFTER) (10 minutes), or up to `max` when that is longer
/// (a server asking for a day is asked again after 10 minutes).
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// # let _ = backoff;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// Backoff starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The delay after the `failures`th consecutive failure (`failures >= 1`), before jitter.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

impl Default for Backoff {
    /// 1 s, doubling up to 60 s.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// Builds a [`TokenCache`] with non-default settings; see [`TokenCache::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{Backoff, TokenCache, source::static_token};
///
/// let cache = TokenCache::builder(static_token("abc"))
///     .refresh_window(Duration::from_secs(120))
///     .jitter(Duration::from_secs(30))
///     .safety_margin(Duration::from_secs(5))
///     .backoff(Backoff::new(Duration::from_millis(250), Duration::from_secs(30)))
///     .rejected_cooldown(Duration::from_secs(60))
///     .fetch_timeout(Duration::from_secs(20))
///     .background_refresh(true)
///     .build();
/// # let _ = cache;
/// ```
pub struct TokenCacheBuilder<P> {
    pub(crate) source: P,
    pub(crate) config: Config,
    pub(crate) initial: Option<crate::Token>,
}

impl<P: TokenSource> TokenCacheBuilder<P> {
    /// Refresh this long before the token expires (default 60 s).
    ///
    /// Never more than half the token's lifetime: a 60 s token is refreshed after 30 s, not
    /// immediately. Within the window, requests keep using the current token while one refresh
    /// runs in the background, until the [safety margin](Self::safety_margin).
    ///
    /// A window no wider than the safety margin (`Duration::ZERO`, say) means no serving while
    /// refreshing: the token is refreshed when it stops being usable, the safety margin before
    /// it expires, and requests then wait for the new one. The safety margin and the jitter
    /// stand whatever the window.
    pub fn refresh_window(mut self, window: Duration) -> Self {
        self.config.refresh_window = window;
        self
    }

    /// Start the refresh up to this much earlier than the refresh window, at random (default
    /// 10 s), so a fleet of processes does not refresh in lockstep. Capped at half the window
    /// (so a zero window has no jitter: the refresh starts when the token stops being usable).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Stop using a token this long before it expires (default 10 s): a token that expires in
    /// flight is useless. Capped at a quarter of the token's lifetime (a 20 s token is used for
    /// 15 s), whatever the refresh window.
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.config.safety_margin = margin;
        self
    }

    /// How long to wait before retrying after a transient failure (default 1 s doubling to
    /// 60 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// How long a rejection (`invalid_grant`, `invalid_client`, a configuration error) is
    /// remembered (default 30 s). Requests that need a new token in that time get the same
    /// error at once instead of calling the token endpoint again.
    pub fn rejected_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.rejected_cooldown = cooldown;
        self
    }

    /// Give up on a [`fetch`](TokenSource::fetch) that has not finished after this long
    /// (default 60 s); the failure is transient and retried with backoff.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
        self
    }

    /// Keep the token fresh even without traffic (default off).
    ///
    /// Once the first token has been fetched, a timer starts each refresh when its refresh
    /// window opens, and retries failures with backoff, so requests always find a fresh token.
    /// The timer holds no strong reference: it stops when the last handle to the cache is
    /// dropped.
    pub fn background_refresh(mut self, enabled: bool) -> Self {
        self.config.background_refresh = enabled;
        self
    }

    /// Call `hook` after every refresh, successful or not, from the refresh task: the place to
    /// count refreshes and failures and record their latency in your metrics. Keep it quick;
    /// it never sees the token. A panic in the hook is logged as such (an `error` event) and
    /// changes nothing else: the refresh's token is installed and handed to its waiters.
    pub fn on_refresh(mut self, hook: impl Fn(&RefreshEvent<'_>) + Send + Sync + 'static) -> Self {
        self.config.on_refresh = Some(RefreshHook(Arc::new(hook)));
        self
    }

    /// Share refreshes with every process that uses the same credential, through Redis: one
    /// token request per lifetime for the whole fleet (see [`fleet`](crate::fleet)).
    ///
    /// Redis is consulted only when this process's token needs a refresh; the per-request path
    /// is unchanged. When Redis is unavailable, refreshes fall back to this process alone.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fleet(mut self, fleet: crate::fleet::RedisFleet) -> Self {
        self.config.fleet = Some(fleet);
        self
    }

    /// The `cache` label of this cache's metrics (default `default`): give each cache of a
    /// program its own. The metrics, through the `metrics` facade to whatever recorder the
    /// program installs:
    ///
    /// | metric | kind | labels |
    /// |---|---|---|
    /// | `tower_bearer_refreshes_total` | counter | `cache`, `reason`, `outcome` (`ok` or the error kind), `tier` |
    /// | `tower_bearer_refresh_duration_seconds` | histogram | `cache`, `outcome` |
    /// | `tower_bearer_invalidations_total` | counter | `cache` |
    /// | `tower_bearer_waits_total` | counter | `cache` |
    /// | `tower_bearer_served_stale_total` | counter | `cache` |
    /// | `tower_bearer_token_expires_in_seconds` | gauge | `cache` |
    /// | `tower_bearer_token_expiry_timestamp_seconds` | gauge | `cache` |
    ///
    /// The expiry gauges are set at each refresh, invalidation and stale request (a
    /// token that does not expire reads `+Inf`, no token 0); alert on the timestamp
    /// (`tower_bearer_token_expiry_timestamp_seconds - time() < 120`), which needs no update to
    /// stay right. The per-request fast path records nothing.
    ///
    /// ```
    /// use tower_bearer::{TokenCache, source::static_token};
    ///
    /// let billing = TokenCache::builder(static_token("abc")).metrics_label("billing").build();
    /// # let _ = billing;
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_label(mut self, label: impl Into<String>) -> Self {
        self.config.metrics_label = Arc::from(label.into());
        self
    }

    /// Start with `token`, one the program already has, so the first request does not fetch;
    /// see [`TokenCache::insert`]. A token that cannot be used (expired, say) is left out with
    /// a warning, and the first request fetches.
    pub fn initial_token(mut self, token: crate::Token) -> Self {
        self.initial = Some(token);
        self
    }

    /// Build the cache. Does no I/O: the first token is fetched on first use.
    pub fn build(self) -> TokenCache<P> {
        let cache = TokenCache::with_config(self.source, self.config);
        if let Some(token) = self.initial
            && let Err(error) = cache.insert(token)
        {
            tracing::warn!(%error, "the initial token cannot be used; the first request fetches one");
        }
        cache
    }
}

impl<P> fmt::Debug for TokenCacheBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<_> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }
}
