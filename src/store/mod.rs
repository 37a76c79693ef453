//! [`RefreshTokenStore`]: where rotated refresh tokens are kept, so that a restart (or another
//! process) continues with the newest one.
//!
//! With rotation (RFC 6749 §6, §10.4), each refresh returns a new refresh token and the old one
//! stops working; with reuse detection (RFC 9700 §4.14.2) spending an old one revokes the whole
//! token family. A new token that is lost is a credential that is lost, and two processes that
//! spend the same one lose it for both. So the built-in rotating sources
//! ([`RefreshTokenGrant`](crate::source::RefreshTokenGrant),
//! [`ApiKeyExchange`](crate::source::ApiKeyExchange)) run each rotation through one protocol,
//! the same for every store:
//!
//! 1. [`lock`](RefreshTokenStore::lock) the store (other processes and sources using it wait);
//! 2. [`renew`](RefreshTokenStore::renew) it: a lock found lost (a lease that expired, a fence
//!    taken over) fails the rotation **before** anything is spent;
//! 3. [`load`](RefreshTokenStore::load) the current refresh token;
//! 4. spend it at the token endpoint, renewing the lock every
//!    [`renew_every`](StoreLock::renew_every) while the answer is awaited;
//! 5. [`save`](RefreshTokenStore::save)`(old, new)`, a compare-and-swap, **before** the new
//!    access token is handed out. A failed save is retried under the lock (5 attempts, backoff
//!    from 50 ms to 800 ms; a lock found lost in between is taken again first);
//! 6. drop the lock.
//!
//! If the save still fails, the source keeps the new refresh token in memory **and keeps the
//! lock**: no other process can load the spent token and spend it again. The source's thread
//! renews the kept lock and tries the save again every second (every renewal period, if
//! shorter), and the next fetch saves the kept token (under the kept lock) before it spends
//! anything; until then, other users of the store wait for the lock, and fail when their own
//! lock timeout runs out.
//!
//! The protocol runs on a thread the source owns (a current-thread runtime started on first
//! use, ended when the source is dropped, after the rotation under way), and the caller awaits
//! its result: a caller that gives up (a timeout, a dropped request) or whose runtime is dropped
//! never cuts a rotation between the token endpoint's answer and the save.
//!
//! **What no protocol can save**: a process killed (or a host lost) after the token endpoint
//! committed a rotation and before the store has the new token. The new token exists only in
//! that process's memory; the next user of the store spends the old one, and a server with
//! reuse detection revokes the family. **A frozen lock holder** (a stopped process) stalls the
//! others for as long as its lock lasts: the rest of its `RedisStore` lease (`lock_ttl`,
//! 30 s by default), or, for a [`FileStore`], until the process dies (the others give up after
//! their `lock_timeout`, 30 s by default, with a transient error, and try again later).
//!
//! - [`MemoryStore`]: in process; clones share one value and one lock.
//! - [`FileStore`]: one file, written atomically (temp file, fsync, rename) with mode 0600, and
//!   locked across processes with an advisory lock on a sibling `<file>.lock`.
//! - `RedisStore` (feature `redis`): in Redis, for a fleet of replicas on many hosts; a Lua
//!   compare-and-swap and a fenced, leased rotation lock.
//!
//! ```
//! use tower_bearer::ErrorKind;
//! use tower_bearer::secret::RefreshToken;
//! use tower_bearer::store::{MemoryStore, RefreshTokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_bearer::Error> {
//! let store = MemoryStore::new(RefreshToken::new("r1"));
//! let lock = store.lock().await?;
//! let old = store.load().await?.unwrap();
//! store.save(Some(&old), &RefreshToken::new("r2")).await?;
//! drop(lock);
//! assert_eq!(store.get().unwrap().secret(), "r2");
//!
//! // r1 is no longer stored: a second save from r1 is refused.
//! let err = store.save(Some(&old), &RefreshToken::new("r2b")).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Conflict);
//! assert_eq!(store.get().unwrap().secret(), "r2");
//! # Ok(()) }
//! ```
//!
//! Implementing a store (a database row, a secrets manager) is two `async fn`s and, for a store
//! shared by several processes, a third (and a fourth for a lock that can expire): see the
//! contract on [`RefreshTokenStore`].

mod file;
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use file::FileStore;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

use crate::Error;
use crate::secret::RefreshToken;

/// Keeps the current refresh token of a source that rotates them.
///
/// # Contract
///
/// - **`load`** returns the stored value: what the last successful `save` stored, or the
///   store's initial value.
/// - **`save(old, new)` is a compare-and-swap.** It stores `new` only if the stored value (what
///   `load` would return now) is still `old` (`None`: nothing is stored), and otherwise stores
///   nothing and fails with an [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) error
///   ([`Error::conflict`]). The compare and the write are atomic with respect to every other
///   `save` on the same storage, from any process. `Ok` means `new` is durable by the store's
///   standard: the source hands out the access token that came with it only then. Any other
///   error means `new` may or may not be stored; the source keeps it in memory and tries again
///   after its next successful refresh.
/// - **`lock`** gives the caller the store to itself, across processes if the store is shared
///   by several, from when its future completes until the returned [`StoreLock`] is dropped:
///   another `lock` on the same storage waits until then. `load` and `save` never wait for
///   the lock (the holder calls them while holding it), so a `save` by someone who does not
///   hold the lock is still judged by its compare-and-swap alone. The default implementation
///   locks nothing, which is right for a store used by one source at a time; two sources or
///   processes sharing a store without a lock may both spend the same refresh token, which a
///   server with reuse detection punishes by revoking both.
/// - **`renew`** is for a lock that can be lost (a lease with a time to live): it tells whether
///   the caller still holds `lock` (`Ok(false)`: lost) and extends it. The protocol calls it
///   before spending the token and every [`StoreLock::renew_every`] while it waits for the
///   token endpoint. A store whose lock can be lost must also refuse a `save` made under a
///   lost lock (a fence), with a conflict. The default says "held".
/// - Writes are applied in the order they are made: a `save` whose future was dropped must
///   never land after a later `save` (the built-in sources never drop one: they run each
///   rotation in a task of their own).
///
/// ```
/// use tower_bearer::Error;
/// use tower_bearer::secret::RefreshToken;
/// use tower_bearer::store::{RefreshTokenStore, StoreLock};
///
/// /// One row in a database, say.
/// struct Row { /* a connection pool, a key */ }
///
/// impl RefreshTokenStore for Row {
///     async fn load(&self) -> Result<Option<RefreshToken>, Error> {
///         // SELECT token FROM refresh_tokens WHERE id = $1
///         Ok(Some(RefreshToken::new("r1")))
///     }
///
///     async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
///         // UPDATE refresh_tokens SET token = $new WHERE id = $1 AND token = $old
///         let rows_updated = 1;
///         if rows_updated == 0 {
///             return Err(Error::conflict("the stored refresh token changed"));
///         }
///         Ok(())
///     }
///
///     async fn lock(&self) -> Result<StoreLock, Error> {
///         // SELECT pg_advisory_lock($1), released when the guard is dropped.
///         let guard = ();
///         Ok(StoreLock::new(guard))
///     }
/// }
/// ```
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// The current refresh token, or `None` if there is none yet.
    fn load(&self) -> impl Future<Output = Result<Option<RefreshToken>, Error>> + Send;

    /// Replace `old` (the value the caller loaded, `None` if there was none) with `new`, only
    /// if `old` is still the stored value: a compare-and-swap that fails with
    /// [`Error::conflict`] otherwise. See the [contract](RefreshTokenStore#contract).
    fn save(
        &self,
        old: Option<&RefreshToken>,
        new: &RefreshToken,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Lock the store for one rotation (load, spend at the token endpoint, save), against every
    /// other user of the same storage, until the returned [`StoreLock`] is dropped. See the
    /// [contract](RefreshTokenStore#contract).
    ///
    /// The default locks nothing.
    fn lock(&self) -> impl Future<Output = Result<StoreLock, Error>> + Send {
        std::future::ready(Ok(StoreLock::unlocked()))
    }

    /// Whether `lock` (from this store's [`lock`](RefreshTokenStore::lock)) is still held
    /// (`Ok(false)`: lost, expired or taken over), extending it if it can expire. An error
    /// means the store could not tell. See the [contract](RefreshTokenStore#contract).
    ///
    /// The default says "held": right for locks that cannot be lost while their guard lives.
    fn renew(&self, lock: &StoreLock) -> impl Future<Output = Result<bool, Error>> + Send {
        let _ = lock;
        std::future::ready(Ok(true))
    }
}

impl<T: RefreshTokenStore + ?Sized> RefreshTokenStore for Arc<T> {
    fn load(&self) -> impl Future<Output = Result<Option<RefreshToken>, Error>> + Send {
        (**self).load()
    }

    fn save(
        &self,
        old: Option<&RefreshToken>,
        new: &RefreshToken,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).save(old, new)
    }

    fn lock(&self) -> impl Future<Output = Result<StoreLock, Error>> + Send {
        (**self).lock()
    }

    fn renew(&self, lock: &StoreLock) -> impl Future<Output = Result<bool, Error>> + Send {
        (**self).renew(lock)
    }
}

/// Proof that the caller holds a [`RefreshTokenStore`]'s lock; dropping it releases the lock.
///
/// A store builds one from whatever releases its lock on drop (a mutex guard, a locked file, a
/// database connection holding an advisory lock).
#[must_use = "the store is unlocked as soon as the StoreLock is dropped"]
pub struct StoreLock {
    guard: Option<Box<dyn Send + Sync>>,
    fence: Option<u64>,
    renew_every: Option<Duration>,
}

impl StoreLock {
    /// A lock held until `guard` is dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        StoreLock {
            guard: Some(Box::new(guard)),
            fence: None,
            renew_every: None,
        }
    }

    /// No lock at all, for stores that need none.
    pub fn unlocked() -> Self {
        StoreLock {
            guard: None,
            fence: None,
            renew_every: None,
        }
    }

    /// Tag the lock with its fencing token: a number the store increases at every acquisition,
    /// so a holder whose lock was lost and taken over can be told apart from the new holder.
    pub fn with_fence(mut self, fence: u64) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The fencing token given with [`with_fence`](Self::with_fence).
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// Ask the protocol to call [`RefreshTokenStore::renew`] this often while it holds the lock
    /// (for a lock that expires unless renewed: a third of its time to live is a good period).
    pub fn renew_every(mut self, period: Duration) -> Self {
        self.renew_every = Some(period);
        self
    }

    /// The renewal period given with [`renew_every`](Self::renew_every).
    pub fn renewal_period(&self) -> Option<Duration> {
        self.renew_every
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock")
            .field("locks", &self.guard.is_some())
            .field("fence", &self.fence)
            .field("renew_every", &self.renew_every)
            .finish()
    }
}
