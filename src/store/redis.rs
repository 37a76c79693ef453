use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::{RefreshTokenStore, StoreLock};
use crate::Error;
use crate::fleet::{
    Conn, Link, RedisFleet, decode_refresh, encode_refresh, fingerprint, fingerprints,
};
use crate::secret::RefreshToken;

/// Take the rotation lock if it is free: `KEYS[1]` (the lock) gets the next value of the
/// counter `KEYS[2]` (the fence), for `ARGV[1]` ms. Returns the fence, or 0 if the lock is held.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end \
         local fence = redis.call('INCR', KEYS[2]) \
         redis.call('SET', KEYS[1], fence, 'PX', ARGV[1]) \
         return fence",
    )
});

/// Extend the lock `KEYS[1]` to `ARGV[2]` ms if it still holds the fence `ARGV[1]`.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
         return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
    )
});

/// Delete the lock `KEYS[1]` if it still holds the fence `ARGV[1]`.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

/// The stored token `KEYS[1]`. Missing: if the "seeded" marker `KEYS[2]` exists, the key was
/// lost (nil); else seed it with `ARGV[1]` (SET, marker set) and return that, or `''` (nothing
/// to seed).
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1]) \
         if v then return v end \
         if redis.call('EXISTS', KEYS[2]) == 1 then return false end \
         if ARGV[1] ~= '' then \
           redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], '1') return ARGV[1] end \
         return ''",
    )
});

/// Fenced compare-and-swap. `-1`: the lock `KEYS[3]` no longer holds the fence `ARGV[4]` (when
/// one is given); `2`: already holds the token fingerprinted `ARGV[2]`; `0`: the stored
/// token's fingerprint is not one of `ARGV[1]`'s (space-separated, one per encryption key the
/// fleet reads; `''`: none); `-2`: the key was lost after it was seeded
/// (marker `KEYS[2]`); `1`: `ARGV[3]` written.
static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then return -1 end \
         local cur = redis.call('GET', KEYS[1]) \
         local fp = '' \
         if cur then fp = string.match(cur, '^v1%.[pe]%.([^.]+)%.') or '?' end \
         if fp == ARGV[2] then return 2 end \
         if not string.find(' ' .. ARGV[1] .. ' ', ' ' .. fp .. ' ', 1, true) then return 0 end \
         if not cur and redis.call('EXISTS', KEYS[2]) == 1 then return -2 end \
         redis.call('SET', KEYS[1], ARGV[3]) \
         redis.call('SET', KEYS[2], '1') \
         return 1",
    )
});

/// A [`RefreshTokenStore`] in Redis, shared by every process of a fleet: rotating refresh
/// tokens with a real compare-and-swap, so two replicas never both spend the same one.
///
/// - **Fenced rotation lock.** [`lock`](RefreshTokenStore::lock) takes a lease on the
///   credential's `…:refresh-lock` key whose value is a **fence**: a counter increased at every
///   acquisition. The rotation protocol [renews](RefreshTokenStore::renew) it before it spends
///   the token and every third of [`lock_ttl`](Self::lock_ttl) while the token endpoint
///   answers; a renewal that finds another fence reports the lock lost, and nothing is spent.
/// - **Fenced compare-and-swap.** [`save(old, new)`](RefreshTokenStore::save) is one Lua
///   script: it writes `new` only if the stored token is still `old` (compared by a keyed
///   fingerprint, so it works on encrypted values) **and**, while a clone of this store holds
///   the lock, the lock still holds that clone's fence. A holder whose lease expired can never
///   write over its successor's token.
/// - **Seeding, never a silent fallback.** [`with_initial`](Self::with_initial) seeds the key
///   only if it never existed (a `…:refresh-seeded` marker is set with the first token). A key
///   that disappears later (evicted, flushed) is a [`Config`](crate::ErrorKind::Config) error
///   that says so, never the long-spent initial token: get a new refresh token and store it
///   with [`seed`](Self::seed). (A Redis restarted **without persistence** loses the marker
///   too, and would be seeded again from `with_initial`: give such a Redis persistence, or
///   seed it with [`seed`](Self::seed) and no `with_initial`.)
/// - **Replicas (opt-in).** [`wait_for_replicas`](Self::wait_for_replicas) makes each save wait
///   (`WAIT`) until that many replicas have the new token, so a failover cannot roll it back.
/// - Every command asks Redis even while the fleet's link skips an outage (the token lives
///   only here), within the fleet's command timeout.
///
/// A frozen holder stalls the other replicas at most `lock_ttl` (30 s by default); they give up
/// waiting after [`lock_timeout`](Self::lock_timeout).
///
/// ```
/// use tower_bearer::fleet::RedisFleet;
/// use tower_bearer::secret::RefreshToken;
/// use tower_bearer::store::RedisStore;
///
/// let fleet = RedisFleet::new("redis://127.0.0.1:6379/", "crm refresh_token")?;
/// // The first replica seeds Redis with `r0`; every later rotation starts from Redis.
/// let store = RedisStore::new(&fleet).with_initial(RefreshToken::new("r0"));
/// # let _ = store;
/// # Ok::<_, tower_bearer::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    fleet: RedisFleet,
    initial: Option<RefreshToken>,
    lock_ttl: Duration,
    lock_timeout: Duration,
    replicas: Option<(u32, Duration)>,
    fence_key: String,
    seeded_key: String,
    /// One `lock()` holder at a time among clones in this process (the lease excludes the rest
    /// of the fleet), so clones wait here instead of polling Redis.
    rotation: Arc<tokio::sync::Mutex<()>>,
    /// The fence of the lock a clone holds now: saves are fenced with it.
    held: Arc<Mutex<Option<u64>>>,
}

/// What `lock()` returns, inside its `StoreLock`: released (compare-and-delete) on drop.
struct Fenced {
    link: Arc<Link>,
    key: String,
    fence: u64,
    held: Arc<Mutex<Option<u64>>>,
    _rotation: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Fenced {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if *held == Some(self.fence) {
            *held = None;
        }
        drop(held);
        // Without a runtime at hand, the lease expires after its time to live.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (link, key, fence) = (
                Arc::clone(&self.link),
                std::mem::take(&mut self.key),
                self.fence,
            );
            runtime.spawn(async move {
                let key = key.as_str();
                let _: Result<i64, _> = link
                    .run_now("refresh-lock release", |mut conn: Conn| async move {
                        RELEASE.key(key).arg(fence).invoke_async(&mut conn).await
                    })
                    .await;
            });
        }
    }
}

impl RedisStore {
    /// The refresh-token store of `fleet`'s credential, on its Redis.
    pub fn new(fleet: &RedisFleet) -> Self {
        let keys = &fleet.keys;
        RedisStore {
            fleet: fleet.clone(),
            initial: None,
            lock_ttl: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(30),
            replicas: None,
            fence_key: format!("{}-fence", keys.refresh_lock),
            seeded_key: format!("{}-seeded", keys.refresh),
            rotation: Arc::default(),
            held: Arc::default(),
        }
    }

    /// Seed Redis with `token` if it has never held a refresh token for this credential (see
    /// the [type docs](RedisStore)).
    pub fn with_initial(mut self, token: RefreshToken) -> Self {
        self.initial = Some(token);
        self
    }

    /// How long the rotation lock lasts without renewal (default 30 s): the rotation renews
    /// it every third of this while it runs; a crashed or frozen holder loses it after this
    /// long, which is how long it can stall the others.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// How long [`lock`](RefreshTokenStore::lock) waits for the rotation lock before failing
    /// with a transient error (default 30 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Make each save wait until `replicas` replicas acknowledge it (`WAIT replicas timeout`),
    /// so a failover to a replica cannot bring back a spent token. A save that fewer replicas
    /// acknowledged within `timeout` is a transient error (the protocol retries it, still
    /// holding the lock). Costs one replication round trip per rotation; a single server (not
    /// a cluster) only. Off by default.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = Some((replicas, timeout));
        self
    }

    /// Store `token` as the credential's refresh token, unconditionally: for a first setup
    /// without [`with_initial`](Self::with_initial), or after the key was lost (a new refresh
    /// token obtained from the authorization server). Do not call it while the fleet rotates.
    pub async fn seed(&self, token: &RefreshToken) -> Result<(), Error> {
        let (key, seeded) = (self.key(), self.seeded_key.as_str());
        let value = encode_refresh(self.fleet.cipher.as_ref(), key, token.secret());
        let value = value.as_str();
        self.fleet
            .link
            .run_now("refresh-token seed", |mut conn: Conn| async move {
                redis::pipe()
                    .atomic()
                    .set(key, value)
                    .ignore()
                    .set(seeded, "1")
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .map_err(|why| unreachable("seed the refresh token", why))
    }

    fn key(&self) -> &str {
        &self.fleet.keys.refresh
    }

    fn fingerprint(&self, token: Option<&RefreshToken>) -> String {
        token.map_or_else(String::new, |token| {
            fingerprint(self.fleet.cipher.as_ref(), self.key(), token.secret())
        })
    }

    fn held_fence(&self) -> Option<u64> {
        *self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unreachable(what: &str, why: impl fmt::Display) -> Error {
    Error::transient(format!(
        "the Redis refresh-token store could not {what}: {why}"
    ))
}

fn missing() -> Error {
    Error::config(
        "the refresh token is missing from Redis although one was stored before (evicted, \
         flushed, or Redis restarted without persistence); nothing was spent. Obtain a new \
         refresh token and store it with RedisStore::seed",
    )
}

impl RefreshTokenStore for RedisStore {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        let (key, seeded) = (self.key(), self.seeded_key.as_str());
        let initial = match &self.initial {
            Some(token) => encode_refresh(self.fleet.cipher.as_ref(), key, token.secret()),
            None => zeroize::Zeroizing::new(String::new()),
        };
        let initial = initial.as_str();
        let value: Option<String> = self
            .fleet
            .link
            .run_now("refresh-token load", |mut conn: Conn| async move {
                LOAD.key(key)
                    .key(seeded)
                    .arg(initial)
                    .invoke_async(&mut conn)
                    .await
            })
            .await
            .map_err(|why| unreachable("load the refresh token", why))?;
        let Some(value) = value.map(zeroize::Zeroizing::new) else {
            return Err(missing());
        };
        if value.is_empty() {
            return Ok(None);
        }
        match decode_refresh(self.fleet.cipher.as_ref(), key, &value) {
            Ok(token) => Ok(Some(RefreshToken::new(token.as_str()))),
            Err(why) => Err(Error::config(format!(
                "the refresh token stored in Redis is unreadable: {}",
                why.as_str()
            ))),
        }
    }

    /// Fenced compare-and-swap in one script; see the [type docs](RedisStore).
    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        let (key, seeded, lock) = (
            self.key(),
            self.seeded_key.as_str(),
            self.fleet.keys.refresh_lock.as_str(),
        );
        // Every fingerprint `old` may be stored under: it may be under a previous key.
        let expected = old.map_or_else(String::new, |old| {
            fingerprints(self.fleet.cipher.as_ref(), key, old.secret())
        });
        let wanted = self.fingerprint(Some(new));
        let value = encode_refresh(self.fleet.cipher.as_ref(), key, new.secret());
        let fence = self
            .held_fence()
            .map_or_else(String::new, |f| f.to_string());
        let (expected, wanted, value, fence) = (&*expected, &*wanted, &*value, &*fence);
        let replicas = self.replicas;
        let (swapped, acked): (i64, Option<i64>) = self
            .fleet
            .link
            .run_now("refresh-token save", |mut conn: Conn| async move {
                let swapped: i64 = SWAP
                    .key(key)
                    .key(seeded)
                    .key(lock)
                    .arg(expected)
                    .arg(wanted)
                    .arg(value)
                    .arg(fence)
                    .invoke_async(&mut conn)
                    .await?;
                let acked = match replicas {
                    Some((n, timeout)) if swapped > 0 => Some(
                        redis::cmd("WAIT")
                            .arg(n)
                            .arg(crate::fleet::millis(timeout))
                            .query_async(&mut conn)
                            .await?,
                    ),
                    _ => None,
                };
                Ok((swapped, acked))
            })
            .await
            .map_err(|why| unreachable("save the rotated refresh token", why))?;
        match swapped {
            1 | 2 => match (replicas, acked) {
                (Some((n, timeout)), Some(acked)) if acked < i64::from(n) => {
                    Err(Error::transient(format!(
                        "the rotated refresh token is saved on the Redis primary but only {acked} of {n} replicas acknowledged it within {timeout:?}"
                    )))
                }
                _ => Ok(()),
            },
            -1 => Err(Error::conflict(
                "the Redis rotation lock was lost (expired and taken over) before the save: nothing was written",
            )),
            -2 => Err(missing()),
            _ => Err(Error::conflict(
                "the refresh token in Redis changed since it was read: another replica rotated it first",
            )),
        }
    }

    /// Waits for the credential's rotation lock in Redis (polling, without blocking a thread).
    async fn lock(&self) -> Result<StoreLock, Error> {
        let rotation = Arc::clone(&self.rotation).lock_owned().await;
        let give_up = crate::time::after(self.lock_timeout);
        let (key, fence_key) = (self.fleet.keys.refresh_lock.as_str(), &*self.fence_key);
        let ttl_ms = crate::fleet::millis(self.lock_ttl);
        let mut wait = Duration::from_millis(5);
        loop {
            let fence: u64 = self
                .fleet
                .link
                .run_now("refresh-lock acquire", |mut conn: Conn| async move {
                    ACQUIRE
                        .key(key)
                        .key(fence_key)
                        .arg(ttl_ms)
                        .invoke_async(&mut conn)
                        .await
                })
                .await
                .map_err(|why| unreachable("lock the refresh token", why))?;
            if fence > 0 {
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(fence);
                let guard = Fenced {
                    link: Arc::clone(&self.fleet.link),
                    key: key.to_owned(),
                    fence,
                    held: Arc::clone(&self.held),
                    _rotation: rotation,
                };
                return Ok(StoreLock::new(guard)
                    .with_fence(fence)
                    .renew_every(self.lock_ttl / 3));
            }
            if Instant::now() >= give_up {
                return Err(Error::transient(format!(
                    "the refresh token in Redis stayed locked by another replica for {:?} (lock_timeout)",
                    self.lock_timeout
                )));
            }
            tokio::time::sleep(wait / 2 + crate::cache::random_up_to(wait / 2)).await;
            wait = (wait * 2).min(Duration::from_millis(100));
        }
    }

    /// Whether the lease still holds `lock`'s fence; extends it to `lock_ttl` if so.
    async fn renew(&self, lock: &StoreLock) -> Result<bool, Error> {
        let Some(fence) = lock.fence() else {
            return Ok(true);
        };
        let key = self.fleet.keys.refresh_lock.as_str();
        let ttl_ms = crate::fleet::millis(self.lock_ttl);
        let renewed: i64 = self
            .fleet
            .link
            .run_now("refresh-lock renewal", |mut conn: Conn| async move {
                RENEW
                    .key(key)
                    .arg(fence)
                    .arg(ttl_ms)
                    .invoke_async(&mut conn)
                    .await
            })
            .await
            .map_err(|why| unreachable("renew the refresh token lock", why))?;
        Ok(renewed == 1)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key", &self.key())
            .field("encrypted", &self.fleet.cipher.is_some())
            .field("initial", &self.initial.as_ref().map(|_| "[redacted]"))
            .field("lock_ttl", &self.lock_ttl)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}
