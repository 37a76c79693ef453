//! The two clocks a token's deadlines are kept on.
//!
//! - **tokio's clock** ([`tokio::time::Instant`]) is the one the state machine is defined on:
//!   expiry, the refresh window, backoff and timers. Tests pause and advance it.
//! - **the coarse clock** (the machine's coarse monotonic clock: `CLOCK_MONOTONIC_COARSE` on
//!   Linux, read through the vDSO in a few nanoseconds with a resolution of one scheduler tick)
//!   is the guard on the fast path. It needs no task to have run: a runtime driven by
//!   `block_on` once per request, a worker blocked past the expiry, or a process that was frozen
//!   and thawed all read the right time on their next request.
//!
//! Each deadline is kept on both: the coarse one is derived from the tokio one when the token is
//! installed (the same span of time from "now" on each clock) and made [`TICK_SLACK`] earlier, so
//! that a clock that only advances once per tick can never let a token through late. A token is
//! fresh (or usable) only while **both** clocks say so. In production both clocks follow the
//! same monotonic time; on tokio's paused test clock, virtual time moves the tokio deadlines
//! (and the phase timer flips the fast path's word), while real time keeps the guard honest.

use std::time::Duration;

use tokio::time::Instant;

/// A reading of the coarse clock.
pub(crate) type Coarse = coarsetime::Instant;

/// How much earlier than its tokio counterpart a coarse deadline is placed. Larger than the
/// resolution of every coarse clock `coarsetime` reads (4 ms at `HZ=250`, 10 ms at `HZ=100`,
/// 15.6 ms for Windows' tick count), so that two readings, each up to one tick behind the true
/// time, still never pass a deadline late.
pub(crate) const TICK_SLACK: Duration = Duration::from_millis(50);

/// The coarse clock, now: one vDSO call, no system call, no shared write.
///
/// A true monotonic clock on Linux and Android (`CLOCK_MONOTONIC_COARSE`), macOS
/// (`CLOCK_MONOTONIC_RAW_APPROX`), FreeBSD and DragonFly (`CLOCK_MONOTONIC_FAST`) and Windows
/// (`GetTickCount64`). Elsewhere `coarsetime` reads the wall clock, which steps with NTP or a
/// manual change and would let a token through late: there the guard reads the (slower)
/// monotonic `std::time::Instant` instead.
#[inline]
pub(crate) fn coarse_now() -> Coarse {
    #[cfg_attr(loom, allow(dead_code))] // the model's clock stands in for every platform's
    const MONOTONIC: bool = cfg!(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd",
        target_os = "dragonfly",
        windows
    ));
    #[cfg(loom)]
    return super::sync::model::coarse_now();
    #[cfg(not(loom))]
    if MONOTONIC {
        // Not `Instant::now()`: that also stores the reading in a process-wide cache, a write
        // to a line every thread would share.
        coarsetime::Instant::now_without_cache_update()
    } else {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed();
        Coarse::from_ticks(0).saturating_add(elapsed.into())
    }
}

/// A coarse deadline that is never reached.
pub(crate) const NEVER: Coarse = Coarse::from_ticks(u64::MAX);

/// A coarse deadline that has always passed.
pub(crate) const PASSED: Coarse = Coarse::from_ticks(0);

/// Both clocks read together, for the slow path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) tokio: Instant,
    pub(crate) coarse: Coarse,
}

impl Now {
    pub(crate) fn read() -> Now {
        // The coarse clock first: a thread stalled between the two reads then makes the coarse
        // reading older than the tokio one, so deadlines derived from the pair come out early
        // (safe), never late.
        let coarse = coarse_now();
        Now {
            tokio: super::sync::now(),
            coarse,
        }
    }

    /// The coarse deadline matching tokio deadline `at`: as far from this coarse reading as `at`
    /// is from this tokio reading, less [`TICK_SLACK`]. A deadline already behind is `PASSED`.
    pub(crate) fn coarse_deadline(&self, at: Instant) -> Coarse {
        let ahead = at.saturating_duration_since(self.tokio);
        match ahead.checked_sub(TICK_SLACK) {
            Some(ahead) if !ahead.is_zero() => self.coarse.saturating_add(ahead.into()),
            _ => PASSED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_deadlines_are_earlier_by_the_slack_and_saturate() {
        let now = Now::read();
        let at = now.tokio + Duration::from_secs(10);
        let deadline = now.coarse_deadline(at);
        let span = deadline.duration_since(now.coarse);
        let expected = Duration::from_secs(10) - TICK_SLACK;
        let error = Duration::from(span).abs_diff(expected);
        assert!(error < Duration::from_millis(1), "{span:?}");

        assert_eq!(now.coarse_deadline(now.tokio), PASSED);
        assert_eq!(now.coarse_deadline(now.tokio + TICK_SLACK), PASSED);
        let far = now.tokio + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(now.coarse_deadline(far) > now.coarse);
        assert!(NEVER > now.coarse_deadline(far));
    }

    #[test]
    fn the_coarse_clock_follows_real_time() {
        let (t0, c0) = (std::time::Instant::now(), coarse_now());
        std::thread::sleep(Duration::from_millis(60));
        let (real, coarse) = (
            t0.elapsed(),
            Duration::from(coarse_now().duration_since(c0)),
        );
        assert!(
            coarse + TICK_SLACK >= real,
            "coarse {coarse:?}, real {real:?}"
        );
        assert!(
            coarse <= real + TICK_SLACK,
            "coarse {coarse:?}, real {real:?}"
        );
    }
}
