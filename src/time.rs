//! Deadlines from settings that may be as large as `Duration::MAX`: an instant plus such a
//! duration overflows, and `Instant + Duration` panics when it does. Every deadline the crate
//! computes from a user's setting goes through here.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: "never" for a deadline, far enough that no process waits that long, near
/// enough that adding it to any clock reading never overflows.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + wait`, or about 30 years after `at` when that overflows.
pub(crate) fn add(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait).unwrap_or_else(|| at + FAR)
}

/// `Instant::now() + wait`, saturating as [`add`] does.
pub(crate) fn after(wait: Duration) -> Instant {
    add(Instant::now(), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_settings_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert!(add(now, Duration::MAX) > add(now, Duration::from_secs(86_400 * 365)));
        assert_eq!(
            add(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(after(Duration::MAX) > now);
    }
}
