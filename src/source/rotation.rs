//! Rotating refresh tokens without losing one: the mechanism the `refresh_token` grant and the
//! API-key exchange share. A source says how to spend a refresh token (and what to do without
//! one) by implementing [`Exchange`]; [`Rotation`] does the rest.
//!
//! - **Transactions.** One rotation at a time per source (a mutex), and per store
//!   ([`RefreshTokenStore::lock`], across processes for a shared store): lock, load, spend,
//!   compare-and-swap save, unlock. Two users of one store never spend the same token.
//! - **Detached.** Each rotation runs in a task of its own that the fetch awaits. A fetch that
//!   is dropped (the cache's `fetch_timeout`, a cancelled caller) does not cut the rotation
//!   between the token endpoint's answer and the save; the access token it produced is kept
//!   for the next fetch while it is young.
//! - **Never lost.** A new refresh token is kept in memory before it is saved, and dropped from
//!   memory only once the store has it. If the save fails, the next rotation spends it and
//!   saves again after the exchange, whether or not the server rotates again (a server that
//!   answers with the same refresh token, or none, leaves the unsaved one valid).
//! - **Losing a race.** If the store holds another token than expected (a conflict on save, or
//!   a refused token while the store now holds a newer one), someone else rotated first: the
//!   source continues with the stored token instead of failing with `invalid_grant`.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::token_response::TokenResponse;
use crate::secret::RefreshToken;
use crate::store::{RefreshTokenStore, StoreLock};
use crate::{Error, ErrorKind, Token};

/// How many times one rotation reloads the store after a refusal before giving up.
const MAX_RELOADS: u32 = 3;

/// What a rotating source does at its token endpoint.
pub(crate) trait Exchange: Send + Sync + 'static {
    /// Whether a stored refresh token is spent at all (else every token comes from
    /// [`fallback`](Exchange::fallback)).
    fn refreshes(&self) -> bool {
        true
    }

    /// Spend `refresh_token`. A refusal is an [`ErrorKind::Rejected`] error.
    fn refresh(
        &self,
        refresh_token: &RefreshToken,
    ) -> impl Future<Output = Result<TokenResponse, Error>> + Send;

    /// Get a token without a refresh token: there is none, or it was `refused`. Fail with
    /// `refused` when the source has no other credential.
    fn fallback(
        &self,
        refused: Option<Error>,
    ) -> impl Future<Output = Result<TokenResponse, Error>> + Send;

    /// Judge an answer (from [`refresh`](Exchange::refresh) when `refreshed`, else from
    /// [`fallback`](Exchange::fallback)) and make the access token.
    fn access_token(&self, response: TokenResponse, refreshed: bool) -> Result<Token, Error>;
}

/// A rotating source's store, exchange and memory; see the [module docs](self).
pub(crate) struct Rotation<S, E> {
    shared: Arc<Shared<S, E>>,
}

struct Shared<S, E> {
    store: S,
    exchange: E,
    /// Held by the task running a rotation, for its whole length.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The newest refresh token, when the store does not have it yet.
    unsaved: Option<Unsaved>,
    /// An access token whose fetch was dropped before it was handed over.
    orphan: Option<Orphan>,
}

struct Unsaved {
    /// The stored value `token` replaces (the `old` of its save).
    base: Option<RefreshToken>,
    token: RefreshToken,
}

struct Orphan {
    token: Token,
    sent_at: Instant,
    expires_at: Option<Instant>,
}

impl Orphan {
    fn new(token: Token, sent_at: Instant) -> Self {
        let expires_at = token.expires_at(sent_at, Instant::now());
        Orphan {
            token,
            sent_at,
            expires_at,
        }
    }

    /// The token, with the lifetime it has left, if at least half of it is left.
    fn adopt(self) -> Option<Token> {
        let Some(expires_at) = self.expires_at else {
            return Some(self.token);
        };
        let lifetime = expires_at.saturating_duration_since(self.sent_at);
        let left = expires_at.saturating_duration_since(Instant::now());
        (!left.is_zero() && left >= lifetime / 2).then(|| self.token.with_expires_in(left))
    }
}

impl<S, E> Rotation<S, E> {
    pub(crate) fn new(store: S, exchange: E) -> Self {
        Rotation {
            shared: Arc::new(Shared {
                store,
                exchange,
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub(crate) fn store(&self) -> &S {
        &self.shared.store
    }

    pub(crate) fn exchange(&self) -> &E {
        &self.shared.exchange
    }
}

/// The current refresh token, held: no rotation (in this source, or through the store's lock,
/// anywhere) runs until this is dropped.
pub(crate) struct Held<'a> {
    state: tokio::sync::MutexGuard<'a, State>,
    _lock: StoreLock,
    token: Option<RefreshToken>,
}

impl Held<'_> {
    /// The newest refresh token: one not saved yet, else the stored one.
    pub(crate) fn token(&self) -> Option<&RefreshToken> {
        self.token.as_ref()
    }

    /// Forget what the source keeps in memory (an unsaved refresh token, an access token kept
    /// for a dropped fetch): after a revocation, none of it is valid.
    pub(crate) fn forget(mut self) {
        self.state.unsaved = None;
        self.state.orphan = None;
    }
}

impl<S: RefreshTokenStore, E> Rotation<S, E> {
    /// Wait for any rotation to finish, lock the store, and hold the current refresh token.
    pub(crate) async fn hold(&self) -> Result<Held<'_>, Error> {
        let state = self.shared.state.lock().await;
        let lock = self.shared.store.lock().await?;
        let stored = self.shared.store.load().await?;
        let token = match &state.unsaved {
            Some(unsaved) if unsaved.base == stored => Some(unsaved.token.clone()),
            _ => stored,
        };
        Ok(Held {
            state,
            _lock: lock,
            token,
        })
    }
}

impl<S: RefreshTokenStore, E: Exchange> Rotation<S, E> {
    /// A new access token, from a rotation that runs to its end even if this future is dropped.
    pub(crate) async fn fetch(&self) -> Result<Token, Error> {
        let shared = Arc::clone(&self.shared);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to run it apart from the caller: run it here.
            let mut state = shared.state.lock().await;
            return shared.rotate(&mut state).await;
        };
        let (tx, rx) = oneshot::channel();
        let task = async move {
            let mut state = shared.state.lock().await;
            if tx.is_closed() {
                // Its fetch was dropped before it started: nothing is under way, so leave the
                // rotation to the next fetch.
                return;
            }
            let result = match state.orphan.take().and_then(Orphan::adopt) {
                Some(token) => Ok((token, Instant::now())),
                None => {
                    let sent_at = Instant::now();
                    shared
                        .rotate(&mut state)
                        .await
                        .map(|token| (token, sent_at))
                }
            };
            if let Err(Ok((token, sent_at))) = tx.send(result) {
                tracing::debug!("the fetch was dropped; keeping its access token for the next one");
                state.orphan = Some(Orphan::new(token, sent_at));
            }
        };
        runtime.spawn(task.instrument(tracing::Span::current()));
        match rx.await {
            Ok(result) => result.map(|(token, _)| token),
            Err(_) => Err(Error::new(
                ErrorKind::Panicked,
                "the refresh token rotation panicked or its runtime shut down",
            )),
        }
    }
}

impl<S: RefreshTokenStore, E: Exchange> Shared<S, E> {
    /// One transaction: lock the store, load, spend, save, hand out the access token.
    async fn rotate(&self, state: &mut State) -> Result<Token, Error> {
        let _lock = self.store.lock().await?;
        let mut stored = self.store.load().await?;
        let mut spend = match state.unsaved.take() {
            // An earlier save that reported a failure landed after all.
            Some(unsaved) if stored.as_ref() == Some(&unsaved.token) => stored.clone(),
            // The store still has what the unsaved token replaced: the unsaved one is newest.
            Some(unsaved) if unsaved.base == stored => {
                let token = unsaved.token.clone();
                state.unsaved = Some(unsaved);
                Some(token)
            }
            Some(_) => {
                tracing::warn!(
                    "the store holds a refresh token written by someone else since this source's last save failed; continuing with the stored one"
                );
                stored.clone()
            }
            None => stored.clone(),
        };

        let mut reloads = 0;
        let (mut response, refreshed) = loop {
            let token = match &spend {
                Some(token) if self.exchange.refreshes() => token.clone(),
                _ => break (self.exchange.fallback(None).await?, false),
            };
            match self.exchange.refresh(&token).await {
                Ok(response) => break (response, true),
                Err(err) if err.kind() == ErrorKind::Rejected => {
                    // Spent by someone who did not wait for the lock? Then the store holds
                    // its successor.
                    let latest = self.store.load().await?;
                    let rotated_elsewhere =
                        latest.is_some() && latest != stored && latest.as_ref() != Some(&token);
                    if rotated_elsewhere && reloads < MAX_RELOADS {
                        tracing::info!(
                            "the refresh token was refused and the store holds a newer one: continuing with it"
                        );
                        reloads += 1;
                        state.unsaved = None;
                        stored.clone_from(&latest);
                        spend = latest;
                        continue;
                    }
                    break (self.exchange.fallback(Some(err)).await?, false);
                }
                Err(err) => return Err(err),
            }
        };

        let live = match response.take_refresh_token() {
            Some(new) => Some(new),
            // Not rotated: the token just spent stays valid (and may be the unsaved one).
            None if refreshed => spend,
            None => None,
        };
        match live {
            Some(live) if Some(&live) != stored.as_ref() => self.save(state, stored, live).await?,
            _ => state.unsaved = None,
        }
        self.exchange.access_token(response, refreshed)
    }

    /// Keep `live` in memory, then compare-and-swap it into the store in place of `stored`.
    async fn save(
        &self,
        state: &mut State,
        stored: Option<RefreshToken>,
        live: RefreshToken,
    ) -> Result<(), Error> {
        let old = stored.clone();
        state.unsaved = Some(Unsaved {
            base: stored,
            token: live.clone(),
        });
        match self.store.save(old.as_ref(), &live).await {
            Ok(()) => {
                state.unsaved = None;
                tracing::debug!("rotated refresh token saved");
                Ok(())
            }
            Err(err) if err.kind() == ErrorKind::Conflict => {
                // Someone who did not take the store's lock wrote it. The store is the
                // reference: continue from what it holds (this access token is valid either way).
                let latest = self.store.load().await?;
                state.unsaved = None;
                if latest.as_ref() != Some(&live) {
                    tracing::warn!(
                        error = %err,
                        "another writer changed the refresh token store during the refresh; continuing with the stored token"
                    );
                }
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not save the rotated refresh token; keeping it in memory to save after the next refresh");
                Err(err)
            }
        }
    }
}
