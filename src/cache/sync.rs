//! The synchronisation primitives and the runtime the cache uses, in one place, so that the
//! model checker can stand in for them.
//!
//! In normal builds these are plain re-exports: `std`'s mutex and atomics, `arc-swap`'s
//! `ArcSwapOption`, tokio's runtime handle, task abort handle and timers. Nothing is wrapped,
//! so the fast path compiles to exactly what it did before.
//!
//! Under `RUSTFLAGS="--cfg loom"` they are [loom](https://docs.rs/loom)'s, so that loom can
//! explore every interleaving of the cache's own code (tests in `model_check`):
//! - the mutex and the atomics are loom's (an atomic store is modelled as a swap, to step
//!   around a loom bug: see `model::AtomicU64`);
//! - `ArcSwapOption` (arc-swap does not support loom) is a loom mutex around an
//!   `Option<Arc<T>>` with the same interface: one linearizable load or store, as arc-swap's are;
//! - the runtime queues spawned tasks for the model, which runs each at a moment of loom's
//!   choosing (a refresh task; a phase timer, once the clock has passed its deadline; a task
//!   aborted before it runs is dropped unpolled, as tokio drops it);
//! - the clock stands still unless a test moves it forward ([`model::advance`]); a fetch never
//!   times out (the abandon deadline, kept on the clock, is what the model passes instead).
//!
//! `Arc` and `Weak` stay `std`'s in both builds: loom's `Arc` has no `Weak`, and the cache's
//! correctness does not rest on reference counts but on the words modelled here.

#[cfg(not(loom))]
mod imp {
    pub(crate) use arc_swap::ArcSwapOption;
    pub(crate) use std::sync::atomic::AtomicU64;
    pub(crate) use std::sync::{Mutex, MutexGuard};
    pub(crate) use tokio::runtime::Handle as Runtime;
    pub(crate) use tokio::task::AbortHandle;
    pub(crate) use tokio::time::{sleep, sleep_until, timeout};

    /// Now, on tokio's clock.
    #[inline]
    pub(crate) fn now() -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use super::model::{AbortHandle, ArcSwapOption, Runtime, now, sleep, sleep_until};
    pub(crate) use super::model::{AtomicU64, timeout};
    pub(crate) use loom::sync::{Mutex, MutexGuard};
}

pub(crate) use imp::*;

/// The stand-ins used under `--cfg loom`, and what the model checks drive them with.
#[cfg(loom)]
// What drives the model (running tasks, moving the clock) is used by the model checks only.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod model {
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use loom::sync::Mutex;
    use loom::sync::atomic::AtomicBool;
    use tokio::time::Instant;

    /// loom's `AtomicU64`, except that a store is modelled as a swap (whose read is discarded:
    /// no ordering is added). loom 0.7 lets a plain store fall between the read and the write
    /// of a concurrent compare-and-swap (tokio-rs/loom#254), an outcome the memory model (and
    /// the hardware) rules out; the phase timer's compare-and-swap races with the stores of a
    /// refresh and an invalidation, so without this the model reports executions that cannot
    /// happen.
    pub(crate) struct AtomicU64(loom::sync::atomic::AtomicU64);

    impl AtomicU64 {
        pub(crate) fn new(value: u64) -> Self {
            AtomicU64(loom::sync::atomic::AtomicU64::new(value))
        }

        pub(crate) fn load(&self, order: Ordering) -> u64 {
            self.0.load(order)
        }

        pub(crate) fn store(&self, value: u64, order: Ordering) {
            self.0.swap(value, order);
        }

        pub(crate) fn compare_exchange(
            &self,
            current: u64,
            new: u64,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u64, u64> {
            self.0.compare_exchange(current, new, success, failure)
        }
    }

    /// `arc_swap::ArcSwapOption`, as far as the cache uses it.
    pub(crate) struct ArcSwapOption<T>(Mutex<Option<Arc<T>>>);

    /// What [`ArcSwapOption::load`] returns: the value as it was, held.
    pub(crate) struct Guard<T>(Option<Arc<T>>);

    impl<T> std::ops::Deref for Guard<T> {
        type Target = Option<Arc<T>>;
        fn deref(&self) -> &Option<Arc<T>> {
            &self.0
        }
    }

    impl<T> ArcSwapOption<T> {
        pub(crate) fn empty() -> Self {
            ArcSwapOption(Mutex::new(None))
        }

        pub(crate) fn load(&self) -> Guard<T> {
            Guard(self.load_full())
        }

        pub(crate) fn load_full(&self) -> Option<Arc<T>> {
            self.0.lock().unwrap().clone()
        }

        pub(crate) fn store(&self, value: Option<Arc<T>>) {
            let old = std::mem::replace(&mut *self.0.lock().unwrap(), value);
            drop(old); // outside the lock, as arc-swap drops it outside its own
        }
    }

    type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

    struct Job {
        aborted: Arc<AtomicBool>,
        task: Task,
    }

    loom::lazy_static! {
        static ref JOBS: Mutex<VecDeque<Job>> = Mutex::new(VecDeque::new());
    }

    /// The model's runtime: spawned tasks wait in a queue until a test thread runs them.
    #[derive(Clone, Debug)]
    pub(crate) struct Runtime;

    #[derive(Debug)]
    pub(crate) struct NoRuntime;

    impl Runtime {
        pub(crate) fn try_current() -> Result<Runtime, NoRuntime> {
            Ok(Runtime)
        }

        pub(crate) fn spawn<F>(&self, task: F) -> JoinHandle
        where
            F: Future<Output = ()> + Send + 'static,
        {
            let aborted = Arc::new(AtomicBool::new(false));
            JOBS.lock().unwrap().push_back(Job {
                aborted: Arc::clone(&aborted),
                task: Box::pin(task),
            });
            JoinHandle(aborted)
        }
    }

    pub(crate) struct JoinHandle(Arc<AtomicBool>);

    impl JoinHandle {
        pub(crate) fn abort_handle(&self) -> AbortHandle {
            AbortHandle(Arc::clone(&self.0))
        }
    }

    #[derive(Debug)]
    pub(crate) struct AbortHandle(Arc<AtomicBool>);

    impl AbortHandle {
        pub(crate) fn abort(&self) {
            self.0.store(true, Ordering::Release);
        }
    }

    /// Run the oldest spawned task that can finish now, or drop the oldest that was aborted (as
    /// tokio drops an aborted task's future). Returns whether one did. A refresh finishes at
    /// once (its fetch is ready); a timer, once the clock has passed its deadline: one that has
    /// not waits in the queue.
    pub(crate) fn run_one() -> bool {
        let queued = JOBS.lock().unwrap().len();
        for _ in 0..queued {
            let Some(mut job) = JOBS.lock().unwrap().pop_front() else {
                return false;
            };
            if job.aborted.load(Ordering::Acquire) {
                drop(job);
                return true;
            }
            let mut cx = Context::from_waker(Waker::noop());
            match job.task.as_mut().poll(&mut cx) {
                Poll::Ready(()) => return true,
                Poll::Pending => JOBS.lock().unwrap().push_back(job),
            }
        }
        false
    }

    /// Run spawned tasks until none that is queued can finish, including those they spawn.
    pub(crate) fn run_all() {
        while run_one() {}
    }

    /// Drop every task still queued, unrun (as a runtime shutting down does).
    pub(crate) fn drop_all() {
        let jobs = std::mem::take(&mut *JOBS.lock().unwrap());
        drop(jobs);
    }

    std::thread_local! {
        /// The model's clock: where it started, on tokio's clock and on the coarse one, and
        /// how far it has been moved since. It moves only when a test moves it: real time
        /// passing (a loaded machine stalling an execution) must not pass a deadline in one
        /// execution and not in the next. Time is not a synchronisation channel (every thread
        /// reads one physical clock), so this is not a loom object; and loom runs all the
        /// threads of a model on the thread of its test, so a thread-local is one clock per
        /// model, apart from those of tests running beside it. Reset by [`reset_clock`] at the
        /// start of each execution.
        static CLOCK: Cell<Option<(Instant, coarsetime::Instant, Duration)>> = const { Cell::new(None) };
    }

    fn clock() -> (Instant, coarsetime::Instant, Duration) {
        CLOCK.get().unwrap_or_else(|| {
            let start = (
                Instant::now(),
                coarsetime::Instant::now_without_cache_update(),
                Duration::ZERO,
            );
            CLOCK.set(Some(start));
            start
        })
    }

    /// Start the model's clock again, from the real time.
    pub(crate) fn reset_clock() {
        CLOCK.set(None);
        clock();
    }

    /// Move the model's clock forward.
    pub(crate) fn advance(by: Duration) {
        let (tokio, coarse, offset) = clock();
        CLOCK.set(Some((tokio, coarse, offset + by)));
    }

    /// Now, on the model's clock: tokio's.
    pub(crate) fn now() -> Instant {
        let (tokio, _, offset) = clock();
        tokio + offset
    }

    /// Now, on the model's clock: the coarse one.
    pub(crate) fn coarse_now() -> coarsetime::Instant {
        let (_, coarse, offset) = clock();
        coarse.saturating_add(offset.into())
    }

    /// A fetch never times out in the model.
    pub(crate) async fn timeout<F: Future>(_: Duration, future: F) -> Result<F::Output, Elapsed> {
        Ok(future.await)
    }

    #[derive(Debug)]
    pub(crate) struct Elapsed;

    /// A timer in the model fires when the model runs its task, once the clock has passed `at`.
    pub(crate) fn sleep_until(at: Instant) -> impl Future<Output = ()> {
        std::future::poll_fn(move |_| {
            if now() >= at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    pub(crate) async fn sleep(_: Duration) {}
}
