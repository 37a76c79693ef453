//! [`RefreshTokenStore`]: where rotated refresh tokens are kept, so that a restart (or another
//! process) continues with the newest one.
//!
//! With rotation (RFC 6749 §6, §10.4), each refresh returns a new refresh token and the old one
//! stops working: a new token that is lost is a credential that is lost. Sources that rotate
//! save the new value through the store **before** the new access token is handed out, and
//! keep it in memory until the store has it, so neither a failed save nor a cancelled request
//! loses it.
//!
//! - [`MemoryStore`]: in process; clones share one value.
//! - [`FileStore`]: one file, written atomically (temp file, fsync, rename) with mode 0600.
//!
//! ```
//! use tower_bearer::secret::RefreshToken;
//! use tower_bearer::store::{MemoryStore, RefreshTokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_bearer::Error> {
//! let store = MemoryStore::new(RefreshToken::new("r1"));
//! let old = store.load().await?.unwrap();
//! store.save(Some(&old), &RefreshToken::new("r2")).await?;
//! assert_eq!(store.get().unwrap().secret(), "r2");
//! # Ok(()) }
//! ```
//!
//! Implementing a store (a database row, a secrets manager) is two `async fn`s. A store shared by
//! several processes can use `old` to compare-and-swap, and return an error when the stored value
//! is no longer `old`.

mod file;
mod memory;

use std::future::Future;
use std::sync::Arc;

pub use file::FileStore;
pub use memory::MemoryStore;

use crate::Error;
use crate::secret::RefreshToken;

/// Keeps the current refresh token of a source that rotates them.
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// The current refresh token, or `None` if there is none yet.
    fn load(&self) -> impl Future<Output = Result<Option<RefreshToken>, Error>> + Send;

    /// Replace `old` (the token that was just used, `None` if there was none) with `new`.
    ///
    /// Return only once `new` is durable by the store's standard: the source hands out the
    /// access token that came with it only after this returns `Ok`.
    fn save(
        &self,
        old: Option<&RefreshToken>,
        new: &RefreshToken,
    ) -> impl Future<Output = Result<(), Error>> + Send;
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
}
