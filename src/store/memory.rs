use std::fmt;
use std::sync::{Arc, Mutex};

use super::RefreshTokenStore;
use crate::Error;
use crate::secret::RefreshToken;

/// A [`RefreshTokenStore`] in memory. Clones share one value, so a clone kept aside sees what
/// the source saved.
///
/// Nothing survives a restart: use [`FileStore`](super::FileStore) or your own store for that.
#[derive(Clone, Default)]
pub struct MemoryStore {
    value: Arc<Mutex<Option<RefreshToken>>>,
}

impl MemoryStore {
    /// A store holding `initial`.
    pub fn new(initial: RefreshToken) -> Self {
        MemoryStore {
            value: Arc::new(Mutex::new(Some(initial))),
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

    /// Last writer wins: within one process the sources serialize their refreshes.
    async fn save(&self, _old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(new.clone());
        Ok(())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("value", &self.get())
            .finish()
    }
}
