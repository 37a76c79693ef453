//! The crash-point matrix of the rotation protocol: every step where a rotation can be cut,
//! against every store, with a token server (on 127.0.0.1) that rotates refresh tokens, records
//! every one spent, and answers a second spend with `invalid_grant` **and revokes the family**.
//!
//! Each cell asserts that no refresh token was spent twice and that the client recovers, or,
//! where nothing can make it safe (a process killed after the server committed and before the
//! save), that the loss is exactly the documented one. TRUST.md "Rotation under failure" has the
//! table. Two replicas (`a`, `b`) are two sources on one storage: clones of one `MemoryStore`,
//! two `FileStore`s on one file (and child processes), two `RedisStore`s on one Redis, each
//! with its own connection.

#[path = "sources/family.rs"]
mod family;
#[path = "fleet/support.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use family::{Event, Family};
use support::RedisServer;
use tower_bearer::fleet::RedisFleet;
use tower_bearer::secret::RefreshToken;
use tower_bearer::source::RefreshTokenGrant;
use tower_bearer::store::{FileStore, MemoryStore, RedisStore, RefreshTokenStore, StoreLock};
use tower_bearer::{Error, ErrorKind, Token, TokenSource};

const CHILD_ENV: &str = "TOWER_BEARER_MATRIX_CHILD";

/// Where the replicas keep the refresh token.
enum Storage {
    Memory(MemoryStore),
    File(PathBuf),
    Redis(RedisServer),
}

impl Storage {
    fn memory() -> Storage {
        Storage::Memory(MemoryStore::new(RefreshToken::new("r0")))
    }

    fn file() -> Storage {
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-matrix-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Storage::File(dir.join("refresh-token"))
    }

    /// A Redis with persistence (append-only file), so a restart keeps the token.
    fn redis() -> Storage {
        Storage::Redis(RedisServer::with_args(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]))
    }

    /// A replica's own view of the storage.
    fn store(&self) -> AnyStore {
        match self {
            Storage::Memory(store) => AnyStore::Memory(store.clone()),
            Storage::File(path) => AnyStore::File(
                FileStore::new(path)
                    .with_initial(RefreshToken::new("r0"))
                    .lock_timeout(Duration::from_millis(400)),
            ),
            Storage::Redis(redis) => AnyStore::Redis(redis_store(&redis.url())),
        }
    }

    fn stored(&self) -> Option<String> {
        match self {
            Storage::Memory(store) => store.get().map(|t| t.secret().to_owned()),
            Storage::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned()),
            Storage::Redis(redis) => {
                let key = redis.cli(&["--scan", "--pattern", "matrix:*:refresh"]);
                let value = redis.cli(&["GET", key.trim()]);
                // `v1.p.<fingerprint>.<base64 of the token>`.
                use base64::Engine as _;
                let payload = value.trim().rsplit('.').next()?;
                let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .ok()?;
                String::from_utf8(plain).ok()
            }
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::File(path) = self {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }
}

fn redis_store(url: &str) -> RedisStore {
    let fleet = RedisFleet::builder(url, "matrix refresh_token")
        .prefix("matrix")
        .command_timeout(Duration::from_millis(500))
        .outage_retry(Duration::from_millis(200))
        .build()
        .unwrap();
    RedisStore::new(&fleet)
        .with_initial(RefreshToken::new("r0"))
        .lock_ttl(Duration::from_millis(600))
        .lock_timeout(Duration::from_millis(400))
}

/// Any of the three stores, with faults to inject: saves that fail, a pause before each save,
/// a pause after the lock is taken (a holder that freezes).
// Built a handful of times per test: the size of the Redis variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum AnyStore {
    Memory(MemoryStore),
    File(FileStore),
    Redis(RedisStore),
}

#[derive(Clone)]
struct Faulty {
    inner: AnyStore,
    failing_saves: Arc<AtomicU32>,
    save_pause: Arc<std::sync::Mutex<Duration>>,
    freeze_after_lock: Arc<std::sync::Mutex<Duration>>,
}

impl Faulty {
    fn new(inner: AnyStore) -> Faulty {
        Faulty {
            inner,
            failing_saves: Arc::default(),
            save_pause: Arc::default(),
            freeze_after_lock: Arc::default(),
        }
    }
}

macro_rules! each {
    ($store:expr, $s:ident => $e:expr) => {
        match $store {
            AnyStore::Memory($s) => $e,
            AnyStore::File($s) => $e,
            AnyStore::Redis($s) => $e,
        }
    };
}

impl RefreshTokenStore for Faulty {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        each!(&self.inner, s => s.load().await)
    }

    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        let pause = *self.save_pause.lock().unwrap();
        tokio::time::sleep(pause).await;
        if self
            .failing_saves
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::transient("injected: the disk is full"));
        }
        each!(&self.inner, s => s.save(old, new).await)
    }

    async fn lock(&self) -> Result<StoreLock, Error> {
        let lock = each!(&self.inner, s => s.lock().await)?;
        let freeze = std::mem::take(&mut *self.freeze_after_lock.lock().unwrap());
        std::thread::sleep(freeze); // frozen: not even the runtime runs
        Ok(lock)
    }

    async fn renew(&self, lock: &StoreLock) -> Result<bool, Error> {
        each!(&self.inner, s => s.renew(lock).await)
    }
}

struct Replica {
    store: Faulty,
    source: RefreshTokenGrant<Faulty>,
}

fn replica(family: &Family, storage: &Storage) -> Replica {
    let store = Faulty::new(storage.store());
    let source = RefreshTokenGrant::builder(&family.url, store.clone())
        .build()
        .unwrap();
    Replica { store, source }
}

/// The invariant of every cell: no refresh token was presented twice, nothing was refused.
fn assert_no_second_spend(family: &Family) {
    let presented = family.presented();
    let mut unique = presented.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), presented.len(), "spent twice: {presented:?}");
    assert_eq!(family.invalid_grants(), 0, "{presented:?}");
    assert!(!family.revoked());
}

/// Delay the server's first answer after it committed the rotation (the answer waits).
fn delay_first_answer(family: &Family, delay: Duration) {
    let armed = Arc::new(AtomicBool::new(true));
    family.on_event(move |event| {
        let first = matches!(event, Event::Accepted { .. }) && armed.swap(false, Ordering::SeqCst);
        async move {
            if first {
                tokio::time::sleep(delay).await;
            }
        }
    });
}

/// Fetch until it succeeds (for up to 5 s): a replica whose lock timeout runs out while another
/// holds the lock gets a transient error and has spent nothing.
async fn patiently(name: &str, source: &RefreshTokenGrant<Faulty>) -> String {
    let fetched = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match source.fetch().await {
                Ok(token) => return token.secret().to_owned(),
                Err(err) => assert_eq!(err.kind(), ErrorKind::Transient, "{name}: {err}"),
            }
        }
    });
    fetched.await.unwrap()
}

fn secret(token: Result<Token, Error>) -> String {
    token.unwrap().secret().to_owned()
}

fn storages() -> [(&'static str, Storage); 3] {
    [
        ("memory", Storage::memory()),
        ("file", Storage::file()),
        ("redis", Storage::redis()),
    ]
}

/// Cut before the request: the fetch is dropped as soon as it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_before_the_request() {
    for (name, storage) in storages() {
        let family = Family::start().await;
        let (a, b) = (replica(&family, &storage), replica(&family, &storage));
        let mut fetch = Box::pin(a.source.fetch());
        assert!(futures::poll!(fetch.as_mut()).is_pending());
        drop(fetch);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Whatever it did (nothing, or a whole rotation kept for the next fetch), the two
        // replicas go on from the stored token.
        secret(b.source.fetch().await);
        secret(a.source.fetch().await);
        assert_no_second_spend(&family);
        assert_eq!(
            storage.stored().as_deref(),
            Some(family.live().as_str()),
            "{name}"
        );
    }
}

/// Cut after the server committed, before its answer arrives: the caller times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_the_commit_before_the_answer() {
    for (name, storage) in storages() {
        let family = Family::start().await;
        let (a, b) = (replica(&family, &storage), replica(&family, &storage));
        delay_first_answer(&family, Duration::from_millis(500));
        let cut = tokio::time::timeout(Duration::from_millis(100), a.source.fetch()).await;
        assert!(cut.is_err(), "{name}: the caller gave up");
        // b waits for a's lock, then spends the token a saved.
        assert_eq!(patiently(name, &b.source).await, "access-2", "{name}");
        assert_eq!(family.presented(), ["r0", "r1"], "{name}");
        // a's access token was kept for its next fetch, young: no spend.
        assert_eq!(secret(a.source.fetch().await), "access-1", "{name}");
        assert_no_second_spend(&family);
        assert_eq!(storage.stored().as_deref(), Some("r2"), "{name}");
    }
}

/// Cut after the answer, before the save: the save is slow and the caller times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_the_answer_before_the_save() {
    for (name, storage) in storages() {
        let family = Family::start().await;
        let (a, b) = (replica(&family, &storage), replica(&family, &storage));
        // Longer than the Redis lease's TTL: the protocol renews it while the save runs.
        *a.store.save_pause.lock().unwrap() = Duration::from_millis(900);
        let cut = tokio::time::timeout(Duration::from_millis(100), a.source.fetch()).await;
        assert!(cut.is_err(), "{name}");
        assert_eq!(patiently(name, &b.source).await, "access-2", "{name}");
        assert_eq!(family.presented(), ["r0", "r1"], "{name}");
        assert_no_second_spend(&family);
    }
}

/// Every attempt of a save fails: the replica keeps the token and the lock (renewing a Redis
/// lease past its TTL); the other replica cannot spend the old token meanwhile; once the store
/// accepts again, the kept token is saved without waiting for a fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save() {
    for (name, storage) in storages() {
        let family = Family::start().await;
        let (a, b) = (replica(&family, &storage), replica(&family, &storage));
        a.store.failing_saves.store(u32::MAX, Ordering::SeqCst);
        let err = a.source.fetch().await.unwrap_err();
        assert!(err.to_string().contains("disk is full"), "{name}: {err}");
        // For longer than a Redis lease lives unrenewed, b waits for the lock a kept (its own
        // lock timeout fails it; a memory store's lock has none: b's caller gives up), and
        // spends nothing.
        let b_try = tokio::time::timeout(Duration::from_millis(1500), async {
            loop {
                if let Ok(token) = b.source.fetch().await {
                    return token;
                }
            }
        });
        assert!(b_try.await.is_err(), "{name}");
        assert_eq!(family.presented(), ["r0"], "{name}");
        // The store accepts again: the kept r1 is saved (and the lock let go) without a fetch.
        a.store.failing_saves.store(0, Ordering::SeqCst);
        let saved = tokio::time::timeout(Duration::from_secs(3), async {
            while storage.stored().as_deref() != Some("r1") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        saved
            .await
            .unwrap_or_else(|_| panic!("{name}: the kept token was never saved"));
        assert_eq!(patiently(name, &b.source).await, "access-2", "{name}");
        // a's next fetch hands out the access token that came with r1: it is still young.
        assert_eq!(secret(a.source.fetch().await), "access-1", "{name}");
        assert_no_second_spend(&family);
    }
}

/// A holder frozen after taking the lock, past the Redis lease: the other replica takes the
/// lock and rotates; the frozen one wakes, finds its lock lost and spends nothing. (The memory
/// and file stores' locks cannot be lost: a frozen holder stalls the others, who give up after
/// their lock timeout; `a_frozen_lock_holder_stalls_others_only_until_their_lock_timeout`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_redis() {
    let storage = Storage::redis();
    let family = Family::start().await;
    let (a, b) = (replica(&family, &storage), replica(&family, &storage));
    *a.store.freeze_after_lock.lock().unwrap() = Duration::from_millis(1500);
    let frozen = tokio::spawn(async move {
        let result = a.source.fetch().await;
        (a, result)
    });
    tokio::time::sleep(Duration::from_millis(900)).await; // a's lease (600 ms) has expired
    assert_eq!(secret(b.source.fetch().await), "access-1");
    let (a, result) = frozen.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("lock was lost"), "{err}");
    assert_eq!(family.presented(), ["r0"]);
    // a's next fetch starts from b's token.
    assert_eq!(secret(a.source.fetch().await), "access-2");
    assert_no_second_spend(&family);
}

/// The caller's runtime is dropped while the server answers (a sync program building a runtime
/// per request): the rotation runs on the source's own thread and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_runtime_dropped() {
    for (name, storage) in storages() {
        let family = Family::start().await;
        let a = Arc::new(replica(&family, &storage));
        delay_first_answer(&family, Duration::from_millis(500));
        let per_request = |a: Arc<Replica>, budget: Duration| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let result = runtime
                    .block_on(async { tokio::time::timeout(budget, a.source.fetch()).await });
                drop(runtime);
                result.ok().map(|r| r.map(|t| t.secret().to_owned()))
            })
        };
        let first = per_request(a.clone(), Duration::from_millis(100));
        assert!(first.join().unwrap().is_none(), "{name}: cut");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            storage.stored().as_deref(),
            Some("r1"),
            "{name}: saved anyway"
        );
        let second = per_request(a.clone(), Duration::from_secs(5));
        let token = second.join().unwrap().unwrap().unwrap();
        assert_eq!(token, "access-1", "{name}: kept for the next runtime");
        let b = replica(&family, &storage);
        assert_eq!(secret(b.source.fetch().await), "access-2", "{name}");
        assert_no_second_spend(&family);
    }
}

/// Redis stopped while a rotation saves, and restarted (with its data) within the save's
/// retries: the save lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_during_the_save() {
    let mut storage = Storage::redis();
    let family = Family::start().await;
    let a = replica(&family, &storage);
    secret(a.source.fetch().await); // r0 → r1, saved
    let Storage::Redis(redis) = &mut storage else {
        unreachable!()
    };
    // The next answer is held by the server while Redis goes down and comes back.
    let port = redis.port;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        family.on_event(move |_| {
            stop.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300))
        });
    }
    let fetch = tokio::spawn(async move {
        let result = a.source.fetch().await;
        (a, result)
    });
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    assert_eq!(redis.port, port);
    let (a, result) = fetch.await.unwrap();
    match result {
        Ok(token) => assert_eq!(token.secret(), "access-2"),
        // Redis came back after the retries: the token and the lock are kept in memory.
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
            assert_eq!(secret(a.source.fetch().await), "access-2");
        }
    }
    assert_eq!(storage.stored().as_deref(), Some("r2"));
    let b = replica(&family, &storage);
    assert_eq!(secret(b.source.fetch().await), "access-3");
    assert_no_second_spend(&family);
}

/// Redis restarted empty (no persistence) after an explicit `seed`: the key is gone, and no
/// replica falls back to a spent token: nothing is spent, the error says to seed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_spends_nothing() {
    let mut redis = RedisServer::start();
    let family = Family::start().await;
    let url = redis.url();
    let store = || {
        let fleet = RedisFleet::builder(&url, "matrix refresh_token")
            .prefix("matrix")
            .command_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        RedisStore::new(&fleet)
    };
    store().seed(&RefreshToken::new("r0")).await.unwrap();
    let a = RefreshTokenGrant::builder(&family.url, store())
        .build()
        .unwrap();
    secret(a.fetch().await);
    redis.restart();
    let b = RefreshTokenGrant::builder(&family.url, store())
        .build()
        .unwrap();
    let err = b.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(family.presented(), ["r0"]);
    assert_no_second_spend(&family);
}

/// An OS process killed while it holds the lock, before it spent anything: the OS releases a
/// file lock at once, a Redis lease expires; the next process rotates from the stored token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_holding_the_lock() {
    for (name, storage) in [("file", Storage::file()), ("redis", Storage::redis())] {
        let family = Family::start().await;
        let mut child = spawn_child(&storage, &family, "lock");
        wait_for_line(&mut child, "LOCKED").await;
        child.kill().await.unwrap();
        let b = replica(&family, &storage);
        // A Redis lease outlives its dead holder by up to `lock_ttl`.
        assert_eq!(patiently(name, &b.source).await, "access-1", "{name}");
        assert_no_second_spend(&family);
    }
}

/// An OS process killed after the server committed its rotation and before the answer reached
/// it: the new refresh token existed only in the server's answer. This cannot be made safe by
/// any client: the next process spends the stored (now spent) token, the server detects the
/// reuse and revokes the family. The cell asserts exactly that outcome (and that it is a
/// rejection the program sees, never a silent success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_between_the_commit_and_the_save_is_the_documented_loss() {
    for (name, storage) in [("file", Storage::file()), ("redis", Storage::redis())] {
        let family = Family::start().await;
        let committed = Arc::new(tokio::sync::Notify::new());
        {
            let committed = committed.clone();
            family.on_event(move |_| {
                committed.notify_one();
                // Hold the answer until the client process is dead.
                tokio::time::sleep(Duration::from_millis(500))
            });
        }
        let mut child = spawn_child(&storage, &family, "fetch");
        committed.notified().await;
        child.kill().await.unwrap();
        family.on_event(|_| std::future::ready(()));
        tokio::time::sleep(Duration::from_millis(700)).await; // a Redis lease expires
        let b = replica(&family, &storage);
        let err = b.source.fetch().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected, "{name}: {err}");
        assert_eq!(family.presented(), ["r0", "r0"], "{name}");
        assert!(family.revoked(), "{name}: the documented loss");
    }
}

fn spawn_child(storage: &Storage, family: &Family, what: &str) -> tokio::process::Child {
    let target = match storage {
        Storage::File(path) => format!("file\n{}", path.display()),
        Storage::Redis(redis) => format!("redis\n{}", redis.url()),
        Storage::Memory(_) => unreachable!("a memory store does not outlive its process"),
    };
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{what}\n{}\n{target}", family.url))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_for_line(child: &mut tokio::process::Child, line: &str) {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(next) = lines.next_line().await.unwrap() {
        if next.contains(line) {
            return;
        }
    }
    panic!("the child never printed {line}");
}

/// A child process: `lock` takes the store's lock and waits to be killed; `fetch` fetches once.
#[test]
#[ignore = "a child process of the matrix's killed-process cells, which run it"]
fn child_process() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return;
    };
    let fields: Vec<&str> = config.split('\n').collect();
    let (what, token_url, kind, target) = (fields[0], fields[1], fields[2], fields[3]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let storage_store = match kind {
            "file" => AnyStore::File(FileStore::new(target).with_initial(RefreshToken::new("r0"))),
            _ => AnyStore::Redis(redis_store(target)),
        };
        let store = Faulty::new(storage_store);
        if what == "lock" {
            let _lock = store.lock().await.unwrap();
            println!("LOCKED");
            tokio::time::sleep(Duration::from_secs(60)).await;
        } else {
            let source = RefreshTokenGrant::builder(token_url, store)
                .build()
                .unwrap();
            let _ = source.fetch().await;
        }
    });
}
