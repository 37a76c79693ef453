//! Rotating refresh tokens without losing one: the mechanism the `refresh_token` grant and the
//! API-key exchange share. A source says how to spend a refresh token (and what to do without
//! one) by implementing [`Exchange`]; [`Rotation`] does the rest.
//!
//! - **One protocol for every store.** One rotation at a time per source (a mutex), and per
//!   store ([`RefreshTokenStore::lock`], across processes for a shared store): lock, confirm
//!   the lock ([`RefreshTokenStore::renew`]), load, spend (renewing the lock while the answer
//!   is awaited), compare-and-swap save (retried under the lock), unlock. Two users of one
//!   store never spend the same token, and a lost lock is noticed before anything is spent.
//! - **Detached.** Each rotation runs on a thread of the source's own (a current-thread
//!   runtime, started at the first fetch, ended when the source is dropped) and the fetch awaits
//!   its result. A fetch that is dropped (the cache's `fetch_timeout`, a cancelled caller, the
//!   caller's runtime shut down) does not cut the rotation between the token endpoint's answer
//!   and the save; the access token it produced is kept for the next fetch while it is young.
//! - **Never lost.** A new refresh token is kept in memory before it is saved, and dropped from
//!   memory only once the store has it. If the save still fails after its retries, the source
//!   keeps the token **and the store's lock**, so nobody can spend the old token meanwhile; a
//!   task renews the kept lock and tries the save again every second, and the next rotation
//!   saves the kept token first, spending nothing until it is saved.
//! - **Losing a race.** If the store holds another token than expected (a conflict on save, or
//!   a refused token while the store now holds a newer one), someone else rotated first: the
//!   source continues with the stored token instead of failing with `invalid_grant`.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::token_response::TokenResponse;
use crate::secret::RefreshToken;
use crate::store::{RefreshTokenStore, StoreLock};
use crate::{Error, ErrorKind, Token};

/// How many times one rotation reloads the store after a refusal before giving up.
const MAX_RELOADS: u32 = 3;

/// How many times the protocol tries one save before keeping the token (and the lock).
const SAVE_ATTEMPTS: u32 = 5;

/// The pause before the second save attempt; doubled before each later one.
const SAVE_BACKOFF: Duration = Duration::from_millis(50);

/// How often a kept token's save is tried again (and its lock renewed) between fetches, at
/// most.
const KEEP_RETRY: Duration = Duration::from_secs(1);

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
    /// The thread rotations run on, started at the first fetch.
    worker: OnceLock<Result<Worker, String>>,
}

/// A thread running a current-thread runtime, until its `stop` sender is dropped (with the
/// source) and the rotation under way, if any, is done.
struct Worker {
    handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
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
    /// A task keeps the lock kept with `unsaved` alive and tries its save again.
    keeping: bool,
}

struct Unsaved {
    /// The stored value `token` replaces (the `old` of its save).
    base: Option<RefreshToken>,
    token: RefreshToken,
    /// The store's lock, kept after the save failed: nobody else may spend `base` meanwhile.
    lock: Option<StoreLock>,
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
            worker: OnceLock::new(),
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
    _lock: Option<StoreLock>,
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

impl Drop for Held<'_> {
    /// A lock kept for an unsaved token stays kept.
    fn drop(&mut self) {
        if let Some(unsaved) = &mut self.state.unsaved
            && unsaved.lock.is_none()
        {
            unsaved.lock = self._lock.take();
        }
    }
}

/// How often a kept lock is renewed and its token's save tried again.
fn keep_period(lock: &StoreLock) -> Duration {
    lock.renewal_period()
        .map_or(KEEP_RETRY, |period| period.min(KEEP_RETRY))
}

/// The error of a rotation that found its lock lost before spending.
fn lock_lost() -> Error {
    Error::transient(
        "the refresh token store's lock was lost (expired or taken over) before the token was spent; nothing was spent",
    )
}

impl<S: RefreshTokenStore, E> Rotation<S, E> {
    /// Wait for any rotation to finish, lock the store, and hold the current refresh token.
    pub(crate) async fn hold(&self) -> Result<Held<'_>, Error> {
        let mut state = self.shared.state.lock().await;
        let lock = match state.unsaved.as_mut().and_then(|u| u.lock.take()) {
            Some(lock) => lock,
            None => self.shared.store.lock().await?,
        };
        let stored = self.shared.store.load().await?;
        let token = match &state.unsaved {
            Some(unsaved) if unsaved.base == stored => Some(unsaved.token.clone()),
            _ => stored,
        };
        Ok(Held {
            state,
            _lock: Some(lock),
            token,
        })
    }
}

impl<S: RefreshTokenStore, E: Exchange> Rotation<S, E> {
    /// A new access token, from a rotation that runs to its end on the source's own thread,
    /// even if this future is dropped or its runtime shuts down.
    pub(crate) async fn fetch(&self) -> Result<Token, Error> {
        let worker = self
            .worker
            .get_or_init(|| Worker::start(Arc::clone(&self.shared)));
        let handle = match worker {
            Ok(worker) => worker.handle.clone(),
            Err(why) => return Err(Error::config(why.clone())),
        };
        let shared = Arc::clone(&self.shared);
        let (tx, rx) = oneshot::channel();
        let task = async move {
            let mut state = shared.state.lock().await;
            if tx.is_closed() {
                // Its fetch was dropped before it started: nothing is under way, so leave the
                // rotation to the next fetch.
                return;
            }
            let result = shared.rotate(&mut state).await;
            if let Err(Ok((token, sent_at))) = tx.send(result) {
                tracing::debug!("the fetch was dropped; keeping its access token for the next one");
                state.orphan = Some(Orphan::new(token, sent_at));
            }
            shared.keep_if_unsaved(&mut state);
        };
        handle.spawn(task.instrument(tracing::Span::current()));
        match rx.await {
            Ok(result) => result.map(|(token, _)| token),
            Err(_) => Err(Error::new(
                ErrorKind::Panicked,
                "the refresh token rotation panicked",
            )),
        }
    }
}

impl Worker {
    fn start<S: Send + Sync + 'static, E: Send + Sync + 'static>(
        shared: Arc<Shared<S, E>>,
    ) -> Result<Worker, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the refresh token rotation's runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("tower-bearer-rotation".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                    // The source is gone: let the rotations already queued (or under way)
                    // finish, then end. Each holds the state for its whole length.
                    drop(shared.state.lock().await);
                });
            })
            .map_err(|e| format!("could not start the refresh token rotation's thread: {e}"))?;
        Ok(Worker {
            handle,
            _stop: stop,
        })
    }
}

/// What a rotation hands back: the access token and when its request was sent.
type Rotated = (Token, Instant);

impl<S: RefreshTokenStore, E: Exchange> Shared<S, E> {
    /// An access token: one kept from a dropped fetch while it is young, else a rotation.
    async fn rotate(&self, state: &mut State) -> Result<Rotated, Error> {
        let mut lock = match state.unsaved.as_mut().and_then(|u| u.lock.take()) {
            Some(lock) => lock,
            None => self.store.lock().await?,
        };
        // A lost lock is noticed before anything is spent (or saved).
        if !self.store.renew(&lock).await? {
            return Err(lock_lost());
        }
        let mut stored = self.store.load().await?;
        if let Some(unsaved) = state.unsaved.take() {
            if unsaved.base == stored || stored.as_ref() == Some(&unsaved.token) {
                // A token spent earlier whose save failed: save it before spending anything.
                let sent = self.save(state, &mut lock, unsaved.base, unsaved.token.clone());
                if let Err(err) = sent.await {
                    self.keep_lock(state, lock);
                    return Err(err);
                }
                stored = Some(unsaved.token);
            } else {
                tracing::warn!(
                    "the store holds a refresh token written by someone else since this source's last save failed; continuing with the stored one"
                );
            }
        }
        if let Some(token) = state.orphan.take().and_then(Orphan::adopt) {
            return Ok((token, Instant::now()));
        }
        let sent_at = Instant::now();
        let (mut response, refreshed, spent) = self.spend(&lock, &mut stored).await?;
        let live = match response.take_refresh_token() {
            Some(new) => Some(new),
            // Not rotated: the token just spent stays valid.
            None => spent,
        };
        let token = self.exchange.access_token(response, refreshed);
        if let Some(live) = live.filter(|live| Some(live) != stored.as_ref())
            && let Err(err) = self.save(state, &mut lock, stored, live).await
        {
            // Keep the access token for the fetch that saves the refresh token.
            if let Ok(token) = token {
                state.orphan = Some(Orphan::new(token, sent_at));
            }
            self.keep_lock(state, lock);
            return Err(err);
        }
        token.map(|token| (token, sent_at))
    }

    /// Spend the stored token (or use the fallback), renewing the lock while the answer is
    /// awaited. Returns the answer, whether it came from a refresh, and the token spent.
    async fn spend(
        &self,
        lock: &StoreLock,
        stored: &mut Option<RefreshToken>,
    ) -> Result<(TokenResponse, bool, Option<RefreshToken>), Error> {
        let mut reloads = 0;
        loop {
            let token = match &*stored {
                Some(token) if self.exchange.refreshes() => token.clone(),
                _ => return Ok((self.exchange.fallback(None).await?, false, None)),
            };
            match self.renewing(lock, self.exchange.refresh(&token)).await {
                Ok(response) => return Ok((response, true, Some(token))),
                Err(err) if err.kind() == ErrorKind::Rejected => {
                    // Spent by someone who did not wait for the lock? Then the store holds
                    // its successor.
                    let latest = self.store.load().await?;
                    let rotated_elsewhere =
                        latest.is_some() && latest != *stored && latest.as_ref() != Some(&token);
                    if rotated_elsewhere && reloads < MAX_RELOADS {
                        tracing::info!(
                            "the refresh token was refused and the store holds a newer one: continuing with it"
                        );
                        reloads += 1;
                        *stored = latest;
                        if !self.store.renew(lock).await? {
                            return Err(lock_lost());
                        }
                        continue;
                    }
                    return Ok((self.exchange.fallback(Some(err)).await?, false, None));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Run `work` (an exchange, a save), renewing `lock` every [`StoreLock::renewal_period`]
    /// until it is done. A renewal that fails is logged: the save's fence is what refuses a
    /// write under a lost lock.
    async fn renewing<T>(&self, lock: &StoreLock, work: impl Future<Output = T>) -> T {
        let Some(period) = lock.renewal_period() else {
            return work.await;
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval_at(crate::time::after(period), period);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => match self.store.renew(lock).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("the refresh token store's lock was lost while the token endpoint was answering"),
                    Err(err) => tracing::debug!(error = %err, "could not renew the refresh token store's lock"),
                },
            }
        }
    }

    /// One compare-and-swap of `live` over `base`, renewing `lock` meanwhile. `Ok(true)`: the
    /// store has `live` (perhaps from an earlier attempt that reported a failure);
    /// `Ok(false)`: someone who did not take the lock wrote another token, which is the
    /// reference now; an error: not saved (a conflict with the store still at `base` means the
    /// fence refused a lost lock).
    async fn save_once(
        &self,
        lock: &StoreLock,
        base: &Option<RefreshToken>,
        live: &RefreshToken,
    ) -> Result<bool, Error> {
        let err = match self
            .renewing(lock, self.store.save(base.as_ref(), live))
            .await
        {
            Ok(()) => return Ok(true),
            Err(err) if err.kind() == ErrorKind::Conflict => err,
            Err(err) => return Err(err),
        };
        let latest = self.store.load().await?;
        if latest.as_ref() == Some(live) {
            Ok(true)
        } else if latest == *base {
            Err(err)
        } else {
            Ok(false)
        }
    }

    /// Make sure `lock` is held: if it was lost, let go of what is left of it (the store's
    /// in-process part) and take it again.
    async fn relock_if_lost(&self, lock: &mut StoreLock) -> Result<(), Error> {
        if !self.store.renew(lock).await? {
            *lock = StoreLock::unlocked();
            *lock = self.store.lock().await?;
        }
        Ok(())
    }

    /// If a token and its lock are kept after a failed save, start (once) a task that renews
    /// the lock and tries the save again, until it lands or the source is dropped: a replica
    /// that stops fetching must neither stall the others forever nor let a lease expire.
    fn keep_if_unsaved(self: &Arc<Self>, state: &mut State) {
        let kept = state.unsaved.as_ref().and_then(|u| u.lock.as_ref());
        if let Some(lock) = kept
            && !state.keeping
        {
            state.keeping = true;
            let period = keep_period(lock);
            tokio::spawn(
                Arc::clone(self)
                    .keep(period)
                    .instrument(tracing::Span::current()),
            );
        }
    }

    async fn keep(self: Arc<Self>, mut period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            let mut state = self.state.lock().await;
            let state = &mut *state;
            let kept = state.unsaved.as_mut().and_then(|u| {
                let lock = u.lock.take()?;
                Some((u.base.clone(), u.token.clone(), lock))
            });
            let Some((base, token, mut lock)) = kept else {
                // Saved (or given up) by a fetch meanwhile.
                state.keeping = false;
                return;
            };
            period = keep_period(&lock);
            let saved = match self.relock_if_lost(&mut lock).await {
                Ok(()) => self.save_once(&lock, &base, &token).await,
                Err(err) => Err(err),
            };
            match saved {
                Ok(_) => {
                    tracing::info!("the kept refresh token is saved; the store is unlocked");
                    state.unsaved = None;
                    state.keeping = false;
                    return;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "the kept refresh token is still not saved");
                    if let Some(unsaved) = &mut state.unsaved {
                        unsaved.lock = Some(lock);
                    }
                }
            }
        }
    }

    /// Keep `lock` with the unsaved token, so nobody spends its base meanwhile.
    fn keep_lock(&self, state: &mut State, lock: StoreLock) {
        if let Some(unsaved) = &mut state.unsaved {
            tracing::warn!(
                "could not save the rotated refresh token; keeping it in memory, and the store locked, until the next refresh saves it"
            );
            unsaved.lock = Some(lock);
        }
    }

    /// Keep `live` in memory, then compare-and-swap it into the store in place of `base`,
    /// retrying under the lock (taken again first if it was lost). On failure `live` stays in
    /// `state.unsaved`.
    async fn save(
        &self,
        state: &mut State,
        lock: &mut StoreLock,
        base: Option<RefreshToken>,
        live: RefreshToken,
    ) -> Result<(), Error> {
        state.unsaved = Some(Unsaved {
            base: base.clone(),
            token: live.clone(),
            lock: None,
        });
        let mut backoff = SAVE_BACKOFF;
        let mut last = None;
        for attempt in 0..SAVE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                if let Err(err) = self.relock_if_lost(lock).await {
                    last = Some(err);
                    continue;
                }
            }
            match self.save_once(lock, &base, &live).await {
                Ok(saved) => {
                    if !saved {
                        tracing::warn!(
                            "another writer changed the refresh token store during the refresh; continuing with the stored token"
                        );
                    }
                    state.unsaved = None;
                    tracing::debug!("rotated refresh token saved");
                    return Ok(());
                }
                Err(err) => {
                    tracing::debug!(error = %err, attempt, "could not save the rotated refresh token");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::transient("could not save the rotated refresh token")))
    }
}

/// The protocol's lock logic on virtual time: a store whose lock expires unless renewed, and a
/// token endpoint that takes its time.
#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    use super::*;
    use crate::source::token_response::TokenFields;

    #[derive(Default)]
    struct Lease {
        value: StdMutex<Option<RefreshToken>>,
        /// The fence of the current holder; 0: nobody.
        holder: AtomicU64,
        next_fence: AtomicU64,
        locks: AtomicU32,
        renewals: AtomicU32,
        released: AtomicU32,
        saves: AtomicU32,
        failing_saves: AtomicU32,
        /// One holder at a time in this process, as the real stores have.
        local: Arc<Mutex<()>>,
    }

    struct Release(
        Arc<Lease>,
        u64,
        #[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>,
    );

    impl Drop for Release {
        fn drop(&mut self) {
            self.0.released.fetch_add(1, Ordering::SeqCst);
            let _ = self
                .0
                .holder
                .compare_exchange(self.1, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    #[derive(Clone, Default)]
    struct Store(Arc<Lease>);

    impl Store {
        fn get(&self) -> Option<String> {
            let value = self.0.value.lock().unwrap();
            value.as_ref().map(|t| t.secret().to_owned())
        }

        /// The lease expires (a frozen holder, a Redis outage) and someone else takes it.
        fn take_over(&self) {
            let fence = self.0.next_fence.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.holder.store(fence, Ordering::SeqCst);
        }

        fn free(&self) {
            self.0.holder.store(0, Ordering::SeqCst);
        }
    }

    impl RefreshTokenStore for Store {
        async fn load(&self) -> Result<Option<RefreshToken>, Error> {
            Ok(self.0.value.lock().unwrap().clone())
        }

        async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
            self.0.saves.fetch_add(1, Ordering::SeqCst);
            if self.0.failing_saves.load(Ordering::SeqCst) > 0 {
                self.0.failing_saves.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::transient("the store is down"));
            }
            // The fence: while someone else (`u64::MAX`) holds the lock, writes are refused.
            if self.0.holder.load(Ordering::SeqCst) == u64::MAX {
                return Err(Error::conflict("fenced"));
            }
            let mut value = self.0.value.lock().unwrap();
            if value.as_ref() != old {
                return Err(Error::conflict("changed"));
            }
            *value = Some(new.clone());
            Ok(())
        }

        async fn lock(&self) -> Result<StoreLock, Error> {
            let local = Arc::clone(&self.0.local).lock_owned().await;
            loop {
                let fence = self.0.next_fence.fetch_add(1, Ordering::SeqCst) + 1;
                if self
                    .0
                    .holder
                    .compare_exchange(0, fence, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.0.locks.fetch_add(1, Ordering::SeqCst);
                    return Ok(StoreLock::new(Release(Arc::clone(&self.0), fence, local))
                        .with_fence(fence)
                        .renew_every(Duration::from_secs(10)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        async fn renew(&self, lock: &StoreLock) -> Result<bool, Error> {
            self.0.renewals.fetch_add(1, Ordering::SeqCst);
            Ok(lock.fence() == Some(self.0.holder.load(Ordering::SeqCst)))
        }
    }

    /// A token endpoint that answers after `delay`, rotating `rN` into `r(N+1)`; `during` runs
    /// while it "thinks".
    struct Endpoint {
        delay: Duration,
        spent: StdMutex<Vec<String>>,
        during: StdMutex<Option<Box<dyn FnOnce() + Send>>>,
        rejected: AtomicBool,
    }

    impl Endpoint {
        fn new(delay: Duration) -> Self {
            Endpoint {
                delay,
                spent: StdMutex::default(),
                during: StdMutex::default(),
                rejected: AtomicBool::new(false),
            }
        }
    }

    impl Exchange for Endpoint {
        async fn refresh(&self, token: &RefreshToken) -> Result<TokenResponse, Error> {
            let n = {
                let mut spent = self.spent.lock().unwrap();
                if spent.iter().any(|s| s == token.secret()) {
                    self.rejected.store(true, Ordering::SeqCst);
                    return Err(Error::rejected("spent twice"));
                }
                spent.push(token.secret().to_owned());
                spent.len()
            };
            if let Some(during) = self.during.lock().unwrap().take() {
                during();
            }
            tokio::time::sleep(self.delay).await;
            let body = format!(
                r#"{{"access_token":"a{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"r{n}"}}"#
            );
            let response = http::Response::builder()
                .header("content-type", "application/json")
                .body(bytes::Bytes::from(body))
                .unwrap();
            TokenResponse::parse(&response, &TokenFields::oauth2(), "refused")
        }

        async fn fallback(&self, refused: Option<Error>) -> Result<TokenResponse, Error> {
            Err(refused.unwrap_or_else(|| Error::config("no refresh token")))
        }

        fn access_token(&self, response: TokenResponse, _: bool) -> Result<Token, Error> {
            response.into_token(false)
        }
    }

    fn setup(delay: Duration) -> (Store, Arc<Shared<Store, Endpoint>>) {
        let store = Store::default();
        *store.0.value.lock().unwrap() = Some(RefreshToken::new("r0"));
        let rotation = Rotation::new(store.clone(), Endpoint::new(delay));
        (store, rotation.shared)
    }

    fn spent(shared: &Shared<Store, Endpoint>) -> Vec<String> {
        shared.exchange.spent.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn the_lock_is_renewed_while_the_token_endpoint_answers() {
        let (store, shared) = setup(Duration::from_secs(35));
        let mut state = shared.state.lock().await;
        let (token, _) = shared.rotate(&mut state).await.unwrap();
        assert_eq!(token.secret(), "a1");
        // Once before spending, then at 10, 20 and 30 s of the 35 s answer.
        assert_eq!(store.0.renewals.load(Ordering::SeqCst), 4);
        assert_eq!(store.get().as_deref(), Some("r1"));
        assert_eq!(
            store.0.released.load(Ordering::SeqCst),
            1,
            "unlocked after the save"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_found_lost_before_the_exchange_spends_nothing() {
        let (store, shared) = setup(Duration::from_secs(1));
        let lock = store.lock().await.unwrap();
        store.take_over();
        let mut state = shared.state.lock().await;
        // The protocol's own lock, then lost before it spends: give it the stale one.
        state.unsaved = Some(Unsaved {
            base: Some(RefreshToken::new("r0")),
            token: RefreshToken::new("r0"),
            lock: Some(lock),
        });
        let err = shared.rotate(&mut state).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(err.to_string().contains("lock was lost"), "{err}");
        assert!(spent(&shared).is_empty(), "nothing spent");
        assert_eq!(store.0.saves.load(Ordering::SeqCst), 0, "nothing saved");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_lost_during_the_exchange_is_taken_again_before_the_save() {
        let (store, shared) = setup(Duration::from_secs(5));
        // While the endpoint answers, the lease is lost to a fenced-off holder...
        let fenced = store.clone();
        *shared.exchange.during.lock().unwrap() = Some(Box::new(move || {
            fenced.0.holder.store(u64::MAX, Ordering::SeqCst);
        }));
        let mut state = shared.state.lock().await;
        let rotating = shared.rotate(&mut state);
        tokio::pin!(rotating);
        // ...who lets it go after 6 s (its own rotation found nothing to do).
        let freed = async {
            tokio::time::sleep(Duration::from_secs(6)).await;
            store.free();
        };
        let (result, ()) = tokio::join!(rotating, freed);
        assert_eq!(result.unwrap().0.secret(), "a1");
        // The first save was fenced off; the protocol took the lock again and saved.
        assert_eq!(store.0.locks.load(Ordering::SeqCst), 2);
        assert_eq!(store.get().as_deref(), Some("r1"));
        assert_eq!(spent(&shared), ["r0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_save_that_keeps_failing_keeps_the_lock_and_the_token_until_the_next_fetch() {
        let (store, shared) = setup(Duration::from_secs(1));
        store.0.failing_saves.store(SAVE_ATTEMPTS, Ordering::SeqCst);
        let mut state = shared.state.lock().await;
        let started = Instant::now();
        let err = shared.rotate(&mut state).await.unwrap_err();
        assert!(err.to_string().contains("the store is down"), "{err}");
        // 1 s at the endpoint, then 50 + 100 + 200 + 400 ms of backoff between five attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(1750));
        assert_eq!(store.0.saves.load(Ordering::SeqCst), SAVE_ATTEMPTS);
        // The store still holds r0, and nobody else can take the lock to spend it.
        assert_eq!(store.get().as_deref(), Some("r0"));
        assert_eq!(store.0.released.load(Ordering::SeqCst), 0);
        let other = store.clone();
        let waiting = tokio::spawn(async move { other.lock().await.map(drop) });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "the lock is kept");

        // The store is back: the next rotation saves r1 before spending anything, and hands out
        // the access token that came with it.
        let (token, _) = shared.rotate(&mut state).await.unwrap();
        assert_eq!(token.secret(), "a1");
        assert_eq!(store.get().as_deref(), Some("r1"));
        assert_eq!(spent(&shared), ["r0"]);
        waiting.await.unwrap().unwrap();
        assert!(!shared.exchange.rejected.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_token_is_saved_in_the_background_and_the_lock_released() {
        let (store, shared) = setup(Duration::from_secs(1));
        store
            .0
            .failing_saves
            .store(SAVE_ATTEMPTS + 2, Ordering::SeqCst);
        let mut state = shared.state.lock().await;
        shared.rotate(&mut state).await.unwrap_err();
        shared.keep_if_unsaved(&mut state);
        drop(state);
        assert_eq!(store.0.released.load(Ordering::SeqCst), 0, "kept");
        // No fetch: the kept lock is renewed and the save tried every second; two more fail.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(store.get().as_deref(), Some("r1"));
        assert_eq!(
            store.0.released.load(Ordering::SeqCst),
            1,
            "unlocked once saved"
        );
        assert!(!shared.state.lock().await.keeping);
        // The next fetch hands out the access token that came with it, spending nothing.
        let mut state = shared.state.lock().await;
        assert_eq!(shared.rotate(&mut state).await.unwrap().0.secret(), "a1");
        assert_eq!(spent(&shared), ["r0"]);
    }
}
