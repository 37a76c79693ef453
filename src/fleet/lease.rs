//! A lease on a key: `SET key owner NX PX ttl`, kept alive while its holder lives, released
//! only by its owner (compare-and-delete), and left to expire when the holder dies or freezes.
//! The fleet's fetch lease is one. ([`RedisStore`](crate::store::RedisStore)'s rotation lock is
//! a fenced lease of its own, renewed by the rotation protocol.)

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::task::AbortHandle;

use super::link::{Conn, Link, Unavailable};
use super::record::random_id;

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
         return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
    )
});

/// A held lease. Dropping it releases it (from a task, when a runtime is at hand; otherwise it
/// expires).
pub(crate) struct Lease {
    link: Arc<Link>,
    key: String,
    owner: String,
    renewal: Option<AbortHandle>,
    released: bool,
}

impl Lease {
    /// Take the lease on `key` for `ttl`, if nobody holds it. The owner value is new for each
    /// attempt, so a holder can never release or extend a lease that is no longer its own.
    pub(crate) async fn try_acquire(
        link: &Arc<Link>,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, Unavailable> {
        let owner = random_id();
        let ttl_ms = millis(ttl);
        let owner_value = owner.as_str();
        let taken: Option<String> = link
            .run("lease", |mut conn: Conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(owner_value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if taken.is_none() {
            return Ok(None);
        }
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (link, key, owner) = (Arc::clone(link), key.to_owned(), owner.clone());
            runtime
                .spawn(async move {
                    let (key, owner) = (key.as_str(), owner.as_str());
                    let mut tick = tokio::time::interval(ttl / 3);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let renewed: Result<i64, _> = link
                            .run("lease renewal", |mut conn: Conn| async move {
                                RENEW
                                    .key(key)
                                    .arg(owner)
                                    .arg(ttl_ms)
                                    .invoke_async(&mut conn)
                                    .await
                            })
                            .await;
                        if let Ok(0) = renewed {
                            tracing::debug!(key = %key, "lease lost before it was released");
                            return;
                        }
                    }
                })
                .abort_handle()
        });
        Ok(Some(Lease {
            link: Arc::clone(link),
            key: key.to_owned(),
            owner,
            renewal,
            released: false,
        }))
    }

    /// Release the lease now, if it is still ours.
    pub(crate) async fn release(mut self) {
        self.released = true;
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        release(&self.link, &self.key, &self.owner).await;
    }
}

async fn release(link: &Link, key: &str, owner: &str) {
    let _: Result<i64, _> = link
        .run("lease release", |mut conn: Conn| async move {
            RELEASE.key(key).arg(owner).invoke_async(&mut conn).await
        })
        .await;
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (link, key, owner) = (
                Arc::clone(&self.link),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.owner),
            );
            runtime.spawn(async move { release(&link, &key, &owner).await });
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
