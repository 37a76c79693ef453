use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::{RefreshTokenStore, StoreLock};
use crate::Error;
use crate::fleet::{
    Conn, Lease, RedisFleet, decode_refresh, encode_refresh, fingerprint, fingerprints,
};
use crate::secret::RefreshToken;

/// Compare-and-swap: `SET KEYS[1] ARGV[3]` only if the stored token's fingerprint is one of
/// `ARGV[1]`'s (space-separated, one per encryption key the fleet reads; `''`: no token). A
/// missing key holds the initial token, fingerprint `ARGV[2]`.
static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local cur = redis.call('GET', KEYS[1]) \
         local fp = ARGV[2] \
         if cur then fp = string.match(cur, '^v1%.[pe]%.([^.]+)%.') or '?' end \
         if not string.find(' ' .. ARGV[1] .. ' ', ' ' .. fp .. ' ', 1, true) then return 0 end \
         redis.call('SET', KEYS[1], ARGV[3]) \
         return 1",
    )
});

/// A [`RefreshTokenStore`] in Redis, shared by every process of a fleet: rotating refresh
/// tokens with a real compare-and-swap, so two replicas never both spend the same one.
///
/// - **Compare-and-swap.** [`save(old, new)`](RefreshTokenStore::save) is one Lua script: it
///   writes `new` only if the stored token is still `old` (compared by a keyed fingerprint, so
///   it works on encrypted values). A replica that loses the race gets a
///   [`Conflict`](crate::ErrorKind::Conflict), and the built-in sources continue with the
///   winner's token.
/// - **Locked rotations.** [`lock`](RefreshTokenStore::lock) takes a lease on the credential's
///   `…:refresh-lock` key (`SET NX PX`, an owner value per attempt, renewed while held,
///   released by compare-and-delete), so replicas rotate one at a time, each from the token
///   the previous one saved. A holder that crashes loses the lock after
///   [`lock_ttl`](Self::lock_ttl).
/// - **Same keys, same encryption** as the [`RedisFleet`] it is made from: one hash slot per
///   credential in a Redis Cluster, tokens at rest encrypted when the fleet has a key.
///
/// Redis is where the refresh token lives: while Redis is unreachable, rotations fail with a
/// transient error (and are retried with backoff) rather than spend a token another replica
/// may have rotated. Access tokens already fetched keep being served until they expire.
///
/// ```
/// use tower_bearer::fleet::RedisFleet;
/// use tower_bearer::secret::RefreshToken;
/// use tower_bearer::store::RedisStore;
///
/// let fleet = RedisFleet::new("redis://127.0.0.1:6379/", "crm refresh_token")?;
/// // The first replica to rotate starts from `r0`; every later rotation starts from Redis.
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
    /// One `lock()` holder at a time among clones in this process (the lease excludes the rest
    /// of the fleet), so clones wait here instead of polling Redis.
    rotation: Arc<tokio::sync::Mutex<()>>,
}

impl RedisStore {
    /// The refresh-token store of `fleet`'s credential, on its Redis.
    pub fn new(fleet: &RedisFleet) -> Self {
        RedisStore {
            fleet: fleet.clone(),
            initial: None,
            lock_ttl: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(30),
            rotation: Arc::default(),
        }
    }

    /// The token to use while Redis holds none for this credential.
    pub fn with_initial(mut self, token: RefreshToken) -> Self {
        self.initial = Some(token);
        self
    }

    /// How long the rotation lock lasts without renewal (default 10 s): the holder renews it
    /// while it lives; a crashed holder loses it after this long.
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

    fn key(&self) -> &str {
        &self.fleet.keys.refresh
    }

    fn fingerprint(&self, token: Option<&RefreshToken>) -> String {
        token.map_or_else(String::new, |token| {
            fingerprint(self.fleet.cipher.as_ref(), self.key(), token.secret())
        })
    }
}

fn unreachable(what: &str, why: impl fmt::Display) -> Error {
    Error::transient(format!(
        "the Redis refresh-token store could not {what}: {why}"
    ))
}

impl RefreshTokenStore for RedisStore {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        let key = self.key();
        let value: Option<String> = self
            .fleet
            .link
            .run("refresh-token load", |mut conn: Conn| async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await
            .map_err(|why| unreachable("load the refresh token", why))?;
        let Some(value) = value.map(zeroize::Zeroizing::new) else {
            return Ok(self.initial.clone());
        };
        match decode_refresh(self.fleet.cipher.as_ref(), key, &value) {
            Ok(token) => Ok(Some(RefreshToken::new(token.as_str()))),
            Err(why) => Err(Error::config(format!(
                "the refresh token stored in Redis is unreadable: {}",
                why.as_str()
            ))),
        }
    }

    /// Compare-and-swap in one script; see the [type docs](RedisStore).
    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        let key = self.key();
        // Every fingerprint `old` may be stored under: it may be under a previous key.
        let expected = old.map_or_else(String::new, |old| {
            fingerprints(self.fleet.cipher.as_ref(), key, old.secret())
        });
        let initial = self.fingerprint(self.initial.as_ref());
        let value = encode_refresh(self.fleet.cipher.as_ref(), key, new.secret());
        let (expected, initial, value): (&str, &str, &str) = (&expected, &initial, &value);
        let swapped: i64 = self
            .fleet
            .link
            .run("refresh-token save", |mut conn: Conn| async move {
                SWAP.key(key)
                    .arg(expected)
                    .arg(initial)
                    .arg(value)
                    .invoke_async(&mut conn)
                    .await
            })
            .await
            .map_err(|why| unreachable("save the rotated refresh token", why))?;
        if swapped == 1 {
            Ok(())
        } else {
            Err(Error::conflict(
                "the refresh token in Redis changed since it was read: another replica rotated it first",
            ))
        }
    }

    /// Waits for the credential's rotation lease in Redis (polling, without blocking a thread).
    async fn lock(&self) -> Result<StoreLock, Error> {
        let rotation = Arc::clone(&self.rotation).lock_owned().await;
        let give_up = Instant::now() + self.lock_timeout;
        let mut wait = Duration::from_millis(5);
        loop {
            let lease = Lease::try_acquire(
                &self.fleet.link,
                &self.fleet.keys.refresh_lock,
                self.lock_ttl,
            )
            .await
            .map_err(|why| unreachable("lock the refresh token", why))?;
            if let Some(lease) = lease {
                return Ok(StoreLock::new((lease, rotation)));
            }
            if Instant::now() >= give_up {
                return Err(Error::transient(format!(
                    "the refresh token in Redis stayed locked by another replica for {:?}",
                    self.lock_timeout
                )));
            }
            tokio::time::sleep(wait / 2 + crate::cache::random_up_to(wait / 2)).await;
            wait = (wait * 2).min(Duration::from_millis(100));
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key", &self.key())
            .field("encrypted", &self.fleet.cipher.is_some())
            .field("initial", &self.initial.as_ref().map(|_| "[redacted]"))
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}
