//! The connection to Redis that a fleet's credentials share: connected on first use, every
//! command bounded by a timeout, and an outage noticed once, skipped while it lasts and
//! probed again after a while.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Timeouts and pacing of the link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkSettings {
    pub(crate) command_timeout: Duration,
    pub(crate) outage_retry: Duration,
}

pub(crate) enum Target {
    Single(redis::Client),
    /// The cluster, and one node's client for pub/sub (a `PUBLISH` reaches every node).
    Cluster(Box<ClusterClient>, redis::Client),
}

pub(crate) struct Link {
    target: Target,
    conn: OnceCell<Conn>,
    pub(crate) settings: LinkSettings,
    down: AtomicBool,
    /// While down: when to try Redis again.
    retry_at: Mutex<Option<Instant>>,
}

/// Why an operation did not reach a usable answer from Redis. Never carries a URL.
#[derive(Clone, Debug)]
pub(crate) struct Unavailable(pub(crate) String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Link {
    pub(crate) fn new(target: Target, settings: LinkSettings) -> Link {
        Link {
            target,
            conn: OnceCell::new(),
            settings,
            down: AtomicBool::new(false),
            retry_at: Mutex::new(None),
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(..))
    }

    /// Run `op` on the connection, within the command timeout. While an outage is being
    /// skipped, fails at once. A connection found dropped (Redis restarted, a failover) is
    /// reconnected and `op` run once more.
    pub(crate) async fn run<T, F>(
        &self,
        what: &'static str,
        op: impl Fn(Conn) -> F,
    ) -> Result<T, Unavailable>
    where
        F: Future<Output = RedisResult<T>>,
    {
        if self.skipping() {
            return Err(Unavailable(
                "Redis was unreachable a moment ago; not asked again yet".into(),
            ));
        }
        self.run_now(what, op).await
    }

    /// [`run`](Self::run), asking Redis even while an outage is being skipped: for the
    /// refresh-token store, where Redis is the only place the token lives and failing fast
    /// would only fail a save (or a lock renewal) that Redis may well accept.
    pub(crate) async fn run_now<T, F>(
        &self,
        what: &'static str,
        op: impl Fn(Conn) -> F,
    ) -> Result<T, Unavailable>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let timeout = self.settings.command_timeout;
        let attempt = async {
            let conn = self.conn.get_or_try_init(|| self.connect()).await?;
            match op(conn.clone()).await {
                Err(err) if err.is_connection_dropped() || err.is_unrecoverable_error() => {
                    tracing::debug!(operation = what, "Redis connection lost; reconnecting");
                    op(conn.clone()).await
                }
                done => done,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(value)) => {
                self.up();
                Ok(value)
            }
            Ok(Err(err)) => Err(self.fail(what, describe(&err))),
            Err(_) => Err(self.fail(what, format!("no answer within {timeout:?}"))),
        }
    }

    /// A pub/sub connection, if one can be made in time (waiters poll without one).
    pub(crate) async fn pubsub(&self) -> Option<PubSub> {
        let client = match &self.target {
            Target::Single(client) | Target::Cluster(_, client) => client,
        };
        tokio::time::timeout(self.settings.command_timeout, client.get_async_pubsub())
            .await
            .ok()?
            .ok()
    }

    async fn connect(&self) -> RedisResult<Conn> {
        let timeout = self.settings.command_timeout;
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                Ok(Conn::Single(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            Target::Cluster(cluster, _) => Ok(Conn::Cluster(cluster.get_async_connection().await?)),
        }
    }

    fn skipping(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return false;
        }
        let retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// Record a failure: the first of an outage is logged, the rest are not.
    fn fail(&self, what: &'static str, why: String) -> Unavailable {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(crate::time::after(self.settings.outage_retry));
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                operation = what,
                error = %why,
                retry_in = ?self.settings.outage_retry,
                "the Redis fleet tier is unavailable: tokens are refreshed by each process on its \
                 own until it answers again (requests are not affected)"
            );
        } else {
            tracing::debug!(operation = what, error = %why, "Redis still unavailable");
        }
        Unavailable(format!("Redis {what}: {why}"))
    }

    fn up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("the Redis fleet tier answers again: refreshes are shared again");
        }
    }
}

/// A redis error in words that never include the URL or a credential: the crate's category and,
/// for server errors, the server's error code.
fn describe(err: &redis::RedisError) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connection_refusal() {
        "connection refused".into()
    } else if err.is_connection_dropped() {
        "connection dropped".into()
    } else {
        match err.code() {
            Some(code) => format!("{:?} ({code})", err.kind()),
            None => format!("{:?}", err.kind()),
        }
    }
}

/// A connection to one server (reconnecting by itself) or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
