//! The cache's metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): whatever recorder the program installs (Prometheus, StatsD, OpenTelemetry...)
//! receives them. Without the feature every function here is empty and compiles to nothing.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `tower_bearer_refreshes_total` | counter | `cache`, `reason`, `outcome`, `tier` | refreshes finished: `outcome` is `ok` or the error kind (`transient`, `rejected`, `invalid_response`, `config`, `panicked`, `conflict`); `tier` where the token came from (`source`, `shared`, `leased`, `fallback`; `none` on failure) |
//! | `tower_bearer_refresh_duration_seconds` | histogram | `cache`, `outcome` | how long each refresh took |
//! | `tower_bearer_invalidations_total` | counter | `cache` | tokens dropped because a server rejected them (401s) or `invalidate` was called |
//! | `tower_bearer_waits_total` | counter | `cache` | callers that had to wait for a refresh (no usable token) |
//! | `tower_bearer_served_stale_total` | counter | `cache` | tokens handed out inside their refresh window, while a refresh runs |
//! | `tower_bearer_token_expires_in_seconds` | gauge | `cache` | seconds the current token had left when last looked at (each refresh, invalidation, and stale request; `+Inf` for a token that does not expire, 0 for none) |
//! | `tower_bearer_token_expiry_timestamp_seconds` | gauge | `cache` | when the current token expires, in Unix seconds: alert on `expiry - time() < 120` |
//!
//! `cache` is the name given with
//! [`TokenCacheBuilder::metrics_label`](super::TokenCacheBuilder::metrics_label) (default
//! `default`). The per-request fast path records nothing.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::time::Duration;

#[cfg(feature = "metrics")]
use tokio::time::Instant;

use super::Outcome;
use super::config::Config;
use super::entry::Entry;
use super::event::{RefreshReason, RefreshTier};

pub(crate) fn refreshed(
    config: &Config,
    reason: RefreshReason,
    outcome: &Outcome,
    tier: Option<RefreshTier>,
    took: Duration,
) {
    #[cfg(feature = "metrics")]
    {
        let result = match outcome {
            Ok(_) => "ok",
            Err(err) => kind(err.kind()),
        };
        let tier = tier.map_or("none", RefreshTier::as_str);
        let cache = config.metrics_label.clone();
        metrics::counter!(
            "tower_bearer_refreshes_total",
            "cache" => cache.clone(),
            "reason" => reason.as_str(),
            "outcome" => result,
            "tier" => tier,
        )
        .increment(1);
        metrics::histogram!(
            "tower_bearer_refresh_duration_seconds",
            "cache" => cache,
            "outcome" => result,
        )
        .record(took.as_secs_f64());
    }
}

pub(crate) fn invalidated(config: &Config) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("tower_bearer_invalidations_total", "cache" => config.metrics_label.clone())
            .increment(1);
        expiry(config, None);
    }
}

pub(crate) fn waited(config: &Config) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_bearer_waits_total", "cache" => config.metrics_label.clone())
        .increment(1);
}

pub(crate) fn served_stale(config: &Config, entry: &Entry) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("tower_bearer_served_stale_total", "cache" => config.metrics_label.clone())
            .increment(1);
        expiry(config, Some(entry));
    }
}

/// The expiry gauges for the current token, `None` if there is none.
pub(crate) fn expiry(config: &Config, entry: Option<&Entry>) {
    #[cfg(feature = "metrics")]
    {
        let cache = config.metrics_label.clone();
        let left = match entry {
            None => Some(Duration::ZERO),
            Some(entry) => entry
                .expires_at
                .map(|at| at.saturating_duration_since(Instant::now())),
        };
        metrics::gauge!("tower_bearer_token_expires_in_seconds", "cache" => cache.clone())
            .set(left.map_or(f64::INFINITY, |left| left.as_secs_f64()));
        // A lifetime past what `SystemTime` holds has no timestamp: the gauge is left as it is.
        if let Some(at) = left
            .filter(|_| entry.is_some())
            .and_then(|left| std::time::SystemTime::now().checked_add(left))
        {
            let unix = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!("tower_bearer_token_expiry_timestamp_seconds", "cache" => cache)
                .set(unix);
        }
    }
}

#[cfg(feature = "metrics")]
fn kind(kind: crate::ErrorKind) -> &'static str {
    use crate::ErrorKind;
    match kind {
        ErrorKind::Transient => "transient",
        ErrorKind::Rejected => "rejected",
        ErrorKind::InvalidResponse => "invalid_response",
        ErrorKind::Config => "config",
        ErrorKind::Panicked => "panicked",
        ErrorKind::Disallowed => "disallowed",
        ErrorKind::Conflict => "conflict",
    }
}
