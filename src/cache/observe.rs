//! Watching a cache from outside: [`TokenCache::subscribe`] (each new token as it is installed)
//! and [`TokenCache::health`] (fresh, stale or failing, for a readiness probe or a dashboard).

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::Now;
use super::{CachedToken, TokenCache};
use crate::{Error, ErrorKind};

/// Where a cache stands; see [`Health::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthStatus {
    /// A token before its refresh window: requests are served without waiting.
    Fresh,
    /// A usable token inside its refresh window: still served, a refresh is due or running.
    Stale,
    /// The last refresh failed ([`Health::last_error`] says how). A token may still be served
    /// for a while ([`Health::expires_in`]); if none is, requests fail until a refresh works.
    Failing,
    /// No usable token and no failure yet: nothing fetched so far, the last token expired, or
    /// a 401 dropped it. The next request fetches.
    Empty,
}

impl HealthStatus {
    /// `"fresh"`, `"stale"`, `"failing"`, `"empty"`: for a label or a log field.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Fresh => "fresh",
            HealthStatus::Stale => "stale",
            HealthStatus::Failing => "failing",
            HealthStatus::Empty => "empty",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of a cache's state, from [`TokenCache::health`]. Holds no token.
#[derive(Clone, Debug)]
pub struct Health {
    status: HealthStatus,
    expires_in: Option<Duration>,
    usable: bool,
    last_error: Option<Error>,
    consecutive_failures: u32,
    retry_in: Option<Duration>,
    refreshing: bool,
}

impl Health {
    /// Fresh, stale, failing or empty.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Whether a request would be served a token now without waiting for a refresh.
    pub fn has_usable_token(&self) -> bool {
        self.usable
    }

    /// How long until the current token expires (zero once it has); `None` without a token, or
    /// for one that does not expire.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// The error of the last refresh, if it failed (cleared by the next token). Its
    /// [`kind`](Error::kind) says whether retrying can help.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// The kind of [`last_error`](Self::last_error).
    pub fn last_error_kind(&self) -> Option<ErrorKind> {
        self.last_error.as_ref().map(Error::kind)
    }

    /// How many refreshes in a row have failed (0 after a success).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// How long until the cache fetches again after a failure (its backoff, or the cooldown
    /// of a rejection); `None` when it is not holding back.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// Whether a refresh is running now.
    pub fn is_refreshing(&self) -> bool {
        self.refreshing
    }
}

impl<P> TokenCache<P> {
    /// A receiver of the cache's current token: each token the cache installs (fetched or
    /// [`insert`](Self::insert)ed) is sent to it, and `None` when a 401 drops one
    /// ([`invalidate`](Self::invalidate)). It starts with the current token, if any.
    ///
    /// A token is sent when it is installed; one that simply expires stays in the receiver
    /// (check [`CachedToken::expires_in`]). `Debug` of the receiver and of its tokens never
    /// shows a secret. The receiver does not keep the cache alive: `changed()` returns an
    /// error once the cache is dropped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::{Error, Token, TokenCache, source::from_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
    /// let cache = TokenCache::new(from_fn(|| async {
    ///     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
    /// }));
    /// let mut tokens = cache.subscribe();
    /// assert!(tokens.borrow().is_none());
    /// cache.token().await?;
    /// tokens.changed().await.unwrap();
    /// assert_eq!(tokens.borrow().as_ref().unwrap().secret(), "abc");
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<Option<CachedToken>> {
        self.shared.changes.subscribe()
    }

    /// Where the cache stands: fresh, stale, failing or empty, with the time to expiry, the
    /// last refresh error and the failures in a row. Takes the cache's lock briefly; for a
    /// probe or a dashboard, not for every request.
    ///
    /// ```
    /// use tower_bearer::{Error, ErrorKind, HealthStatus, Token, TokenCache, source::from_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = TokenCache::new(from_fn(|| async {
    ///     Err::<Token, _>(Error::rejected("invalid_client"))
    /// }));
    /// assert_eq!(cache.health().status(), HealthStatus::Empty);
    /// assert!(cache.token().await.is_err());
    /// let health = cache.health();
    /// assert_eq!(health.status(), HealthStatus::Failing);
    /// assert_eq!(health.last_error_kind(), Some(ErrorKind::Rejected));
    /// assert_eq!(health.consecutive_failures(), 1);
    /// # }
    /// ```
    pub fn health(&self) -> Health {
        let control = self.shared.lock();
        let now = Now::read();
        let current = self.shared.current.load_full();
        let usable = current.as_ref().is_some_and(|e| e.is_usable(now));
        let status = if control.failures > 0 && control.last_error.is_some() {
            HealthStatus::Failing
        } else {
            match &current {
                Some(entry) if usable && !entry.is_stale(now) => HealthStatus::Fresh,
                Some(_) if usable => HealthStatus::Stale,
                _ => HealthStatus::Empty,
            }
        };
        let until = |at: Instant| at.saturating_duration_since(now.tokio);
        Health {
            status,
            expires_in: current.as_ref().and_then(|e| e.expires_at).map(until),
            usable,
            last_error: (control.failures > 0)
                .then(|| control.last_error.clone())
                .flatten(),
            consecutive_failures: control.failures,
            retry_in: control.retry_at.filter(|at| *at > now.tokio).map(until),
            refreshing: control.inflight.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::source::from_fn;
    use crate::{Token, TokenCache};

    const SECRET: &str = "s3cr3t-access-token";

    #[tokio::test(start_paused = true)]
    async fn subscribers_see_each_new_token_and_the_drop_never_its_secret_in_debug() {
        let n = Arc::new(AtomicUsize::new(0));
        let counter = n.clone();
        let cache = TokenCache::new(from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, Error>(
                    Token::new(format!("{SECRET}-{n}")).with_expires_in(Duration::from_secs(3600)),
                )
            }
        }));
        let mut rx = cache.subscribe();
        assert!(rx.borrow_and_update().is_none());
        let first = cache.token().await.unwrap();
        rx.changed().await.unwrap();
        assert_eq!(
            rx.borrow_and_update().as_ref().unwrap().secret(),
            format!("{SECRET}-0")
        );
        let debug = format!("{rx:?} {:?}", *rx.borrow());
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(cache.invalidate(&first));
        rx.changed().await.unwrap();
        // The invalidation sends `None`, then the refresh it started sends the next token.
        let next = loop {
            if let Some(token) = rx.borrow_and_update().clone() {
                break token;
            }
            rx.changed().await.unwrap();
        };
        assert_eq!(next.secret(), format!("{SECRET}-1"));
        // A late subscriber starts with the current token.
        assert_eq!(
            cache.subscribe().borrow().as_ref().unwrap().secret(),
            format!("{SECRET}-1")
        );
        cache
            .insert(Token::new("inserted").with_expires_in(Duration::from_secs(60)))
            .unwrap();
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().secret(), "inserted");
        drop(cache);
        assert!(rx.changed().await.is_err(), "the cache is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn health_goes_empty_fresh_stale_then_failing() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failing = fail.clone();
        let cache = TokenCache::builder(from_fn(move || {
            let fail = failing.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(Error::transient("the token endpoint is down"))
                } else {
                    Ok(Token::new(SECRET).with_expires_in(Duration::from_secs(600)))
                }
            }
        }))
        .refresh_window(Duration::from_secs(60))
        .jitter(Duration::ZERO)
        .build();
        assert_eq!(cache.health().status(), HealthStatus::Empty);
        assert!(!cache.health().has_usable_token());
        cache.token().await.unwrap();
        let health = cache.health();
        assert_eq!(health.status(), HealthStatus::Fresh);
        assert_eq!(health.expires_in(), Some(Duration::from_secs(600)));
        assert!(health.has_usable_token() && health.last_error().is_none());
        tokio::time::advance(Duration::from_secs(545)).await;
        assert_eq!(cache.health().status(), HealthStatus::Stale);
        fail.store(true, Ordering::SeqCst);
        // A request in the window starts the refresh, which fails; the token is still served.
        cache.token().await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let health = cache.health();
        assert_eq!(health.status(), HealthStatus::Failing, "{health:?}");
        assert_eq!(health.last_error_kind(), Some(ErrorKind::Transient));
        assert_eq!(health.consecutive_failures(), 1);
        assert!(health.has_usable_token() && health.retry_in().is_some());
        assert_eq!(health.status().to_string(), "failing");
        let debug = format!("{health:?}");
        assert!(!debug.contains(SECRET), "{debug}");
    }
}
