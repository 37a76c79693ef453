//! Rotating refresh tokens without losing one: the piece the `refresh_token` grant and the
//! API-key exchange share.
//!
//! A refresh runs under one lock (so two refreshes never spend the same refresh token). A new
//! refresh token is first kept in memory, then saved to the store; only when the store has it
//! is the memory copy dropped. If the save fails, or the refresh is dropped half-way, the next
//! refresh starts from the memory copy, never from the stale stored value.

use tokio::sync::{Mutex, MutexGuard};

use crate::Error;
use crate::secret::RefreshToken;
use crate::store::RefreshTokenStore;

pub(crate) struct Rotation<S> {
    store: S,
    unsaved: Mutex<Option<RefreshToken>>,
}

pub(crate) struct RotationGuard<'a, S> {
    store: &'a S,
    unsaved: MutexGuard<'a, Option<RefreshToken>>,
}

impl<S: RefreshTokenStore> Rotation<S> {
    pub(crate) fn new(store: S) -> Self {
        Rotation {
            store,
            unsaved: Mutex::new(None),
        }
    }

    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    /// Wait for any other refresh through this source to finish, and start one.
    pub(crate) async fn lock(&self) -> RotationGuard<'_, S> {
        RotationGuard {
            store: &self.store,
            unsaved: self.unsaved.lock().await,
        }
    }
}

impl<S: RefreshTokenStore> RotationGuard<'_, S> {
    /// The refresh token to use: the newest one, saved or not.
    pub(crate) async fn current(&mut self) -> Result<Option<RefreshToken>, Error> {
        match &*self.unsaved {
            Some(token) => Ok(Some(token.clone())),
            None => self.store.load().await,
        }
    }

    /// `new` replaces `old`: kept in memory first, then saved.
    pub(crate) async fn rotate(
        &mut self,
        old: Option<&RefreshToken>,
        new: RefreshToken,
    ) -> Result<(), Error> {
        if old == Some(&new) {
            return Ok(());
        }
        *self.unsaved = Some(new.clone());
        match self.store.save(old, &new).await {
            Ok(()) => {
                *self.unsaved = None;
                tracing::debug!("rotated refresh token saved");
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not save the rotated refresh token; keeping it in memory");
                Err(err)
            }
        }
    }
}
