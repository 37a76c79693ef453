//! What the cache tells an `on_refresh` hook: enough for metrics, never the token.

use std::fmt;
use std::time::Duration;

use super::{CachedToken, Outcome};
use crate::Error;

/// Why a refresh started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshReason {
    /// There was no token yet.
    NoToken,
    /// The token was past its usable time; callers were waiting.
    Expired,
    /// The token entered its refresh window; callers went on with it.
    Stale,
    /// The token was invalidated (typically after a 401).
    Invalidated,
    /// The background-refresh timer fired.
    Timer,
    /// The refresh in flight had not finished within the fetch timeout (its runtime stopped
    /// being driven, or its source blocked): this one replaces it.
    TakeOver,
}

impl RefreshReason {
    /// A short lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshReason::NoToken => "no_token",
            RefreshReason::Expired => "expired",
            RefreshReason::Stale => "stale",
            RefreshReason::Invalidated => "invalidated",
            RefreshReason::Timer => "timer",
            RefreshReason::TakeOver => "take_over",
        }
    }
}

/// Where a refresh got its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshTier {
    /// From this process's token source (no fleet tier is configured).
    Source,
    /// Taken from the fleet: another process fetched it and published it in Redis.
    Shared,
    /// From this process's token source, under the fleet's lease, and published for the others.
    Leased,
    /// From this process's token source, without the fleet: Redis was unavailable, the
    /// lease holder did not publish in time, or the source's binding was not known yet
    /// ([`TokenSource::binding_known`](crate::TokenSource::binding_known)).
    Fallback,
}

impl RefreshTier {
    /// A short lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshTier::Source => "source",
            RefreshTier::Shared => "shared",
            RefreshTier::Leased => "leased",
            RefreshTier::Fallback => "fallback",
        }
    }
}

/// One finished refresh, as seen by the hook set with
/// [`TokenCacheBuilder::on_refresh`](super::TokenCacheBuilder::on_refresh).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tower_bearer::{TokenCache, source::static_token};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let failures = Arc::new(AtomicUsize::new(0));
/// let counter = failures.clone();
/// let cache = TokenCache::builder(static_token("abc"))
///     .on_refresh(move |event| {
///         // Feed your metrics here: event.reason(), event.took(), event.error().
///         if event.error().is_some() {
///             counter.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .build();
/// cache.token().await.unwrap();
/// assert_eq!(failures.load(Ordering::Relaxed), 0);
/// # }
/// ```
pub struct RefreshEvent<'a> {
    pub(super) outcome: &'a Outcome,
    pub(super) reason: RefreshReason,
    pub(super) took: Duration,
    pub(super) tier: Option<RefreshTier>,
}

impl RefreshEvent<'_> {
    /// Why the refresh started.
    pub fn reason(&self) -> RefreshReason {
        self.reason
    }

    /// How long the fetch took.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// Where the token came from, if the refresh succeeded (see the `fleet` module, feature `redis`).
    pub fn tier(&self) -> Option<RefreshTier> {
        self.tier
    }

    /// The error, if the refresh failed.
    pub fn error(&self) -> Option<&Error> {
        self.outcome.as_ref().err()
    }

    /// The new token's remaining lifetime, if the refresh succeeded and the token expires.
    pub fn expires_in(&self) -> Option<Duration> {
        self.outcome.as_ref().ok().and_then(CachedToken::expires_in)
    }
}

impl fmt::Debug for RefreshEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshEvent")
            .field("reason", &self.reason)
            .field("took", &self.took)
            .field("tier", &self.tier)
            .field("error", &self.error())
            .field("expires_in", &self.expires_in())
            .finish()
    }
}
