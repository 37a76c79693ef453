//! [`RefreshTokenStore`]: where rotated refresh tokens are kept, so that a restart (or another
//! process) continues with the newest one.
//!
//! With rotation (RFC 6749 §6, §10.4), each refresh returns a new refresh token and the old one
//! stops working; with reuse detection (RFC 9700 §4.14.2) spending an old one revokes the whole
//! token family. A new token that is lost is a credential that is lost, and two processes that
//! spend the same one lose it for both. So the built-in rotating sources
//! ([`RefreshTokenGrant`](crate::source::RefreshTokenGrant),
//! [`ApiKeyExchange`](crate::source::ApiKeyExchange)) run each rotation as one transaction:
//!
//! 1. [`lock`](RefreshTokenStore::lock) the store (other processes and sources using it wait);
//! 2. [`load`](RefreshTokenStore::load) the current refresh token;
//! 3. spend it at the token endpoint;
//! 4. [`save`](RefreshTokenStore::save)`(old, new)`, a compare-and-swap, **before** the new
//!    access token is handed out;
//! 5. drop the lock.
//!
//! The transaction runs in a task of its own, so a caller that gives up (a timeout, a dropped
//! request) never cuts it between the token endpoint's answer and the save. A rotated token
//! whose save failed stays in the source's memory and is saved again after every later
//! successful refresh, even one that returns no new refresh token. A source that finds the
//! store changed under it (a conflict, or a refused token while the store now holds another)
//! continues with the stored token rather than failing.
//!
//! - [`MemoryStore`]: in process; clones share one value and one lock.
//! - [`FileStore`]: one file, written atomically (temp file, fsync, rename) with mode 0600, and
//!   locked across processes with an advisory lock on a sibling `<file>.lock`.
//! - `RedisStore` (feature `redis`): in Redis, for a fleet of replicas on many hosts; a Lua
//!   compare-and-swap and a leased rotation lock.
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
//! shared by several processes, a third: see the contract on [`RefreshTokenStore`].

mod file;
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

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
}

/// Proof that the caller holds a [`RefreshTokenStore`]'s lock; dropping it releases the lock.
///
/// A store builds one from whatever releases its lock on drop (a mutex guard, a locked file, a
/// database connection holding an advisory lock).
#[must_use = "the store is unlocked as soon as the StoreLock is dropped"]
pub struct StoreLock {
    guard: Option<Box<dyn Send + Sync>>,
}

impl StoreLock {
    /// A lock held until `guard` is dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        StoreLock {
            guard: Some(Box::new(guard)),
        }
    }

    /// No lock at all, for stores that need none.
    pub fn unlocked() -> Self {
        StoreLock { guard: None }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock")
            .field("locks", &self.guard.is_some())
            .finish()
    }
}
