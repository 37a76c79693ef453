use std::fmt;
use std::sync::{Arc, Mutex};

use super::{RefreshTokenStore, StoreLock};
use crate::Error;
use crate::secret::RefreshToken;

/// A [`RefreshTokenStore`] in memory. Clones share one value and one lock, so a clone kept
/// aside sees what the source saved, and two sources given clones never spend the same
/// refresh token.
///
/// Nothing survives a restart: use [`FileStore`](super::FileStore) or your own store for that.
#[derive(Clone, Default)]
pub struct MemoryStore {
    value: Arc<Mutex<Option<RefreshToken>>>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl MemoryStore {
    /// A store holding `initial`.
    pub fn new(initial: RefreshToken) -> Self {
        MemoryStore {
            value: Arc::new(Mutex::new(Some(initial))),
            lock: Arc::default(),
        }
    }

    /// An empty store (for sources that get their first refresh token some other way, such as
    /// an API key exchange).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The refresh token held now.
    pub fn get(&self) -> Option<RefreshToken> {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl RefreshTokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        Ok(self.get())
    }

    /// Compare-and-swap: stores `new` only if the value held is still `old`.
    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        if value.as_ref() != old {
            return Err(Error::conflict(
                "the refresh token in the memory store changed since it was read",
            ));
        }
        *value = Some(new.clone());
        Ok(())
    }

    /// Held by one rotation at a time among all clones.
    async fn lock(&self) -> Result<StoreLock, Error> {
        Ok(StoreLock::new(Arc::clone(&self.lock).lock_owned().await))
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("value", &self.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[tokio::test]
    async fn save_compares_and_swaps() {
        let store = MemoryStore::new(RefreshToken::new("r1"));
        let (r1, r2) = (RefreshToken::new("r1"), RefreshToken::new("r2"));
        store.save(Some(&r1), &r2).await.unwrap();
        let err = store
            .save(Some(&r1), &RefreshToken::new("r2-secret"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(!format!("{err} {err:?}").contains("r2"));
        let err = store
            .save(None, &RefreshToken::new("r3"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(store.get(), Some(r2));

        let empty = MemoryStore::empty();
        empty.save(None, &RefreshToken::new("r1")).await.unwrap();
        assert_eq!(empty.get().unwrap().secret(), "r1");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_lock() {
        let store = MemoryStore::empty();
        let held = store.lock().await.unwrap();
        let clone = store.clone();
        let waiting = tokio::spawn(async move { clone.lock().await.map(drop) });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        // load and save never wait for the lock.
        store.save(None, &RefreshToken::new("r1")).await.unwrap();
        drop(held);
        waiting.await.unwrap().unwrap();
    }
}
