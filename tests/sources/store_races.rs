//! Several sources on one refresh token store, against a server that rotates and detects reuse:
//! the store's lock makes them spend each refresh token once, and a source that loses a race
//! with a writer that took no lock continues with the winner's token instead of failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_bearer::secret::RefreshToken;
use tower_bearer::source::RefreshTokenGrant;
use tower_bearer::store::{FileStore, MemoryStore, RefreshTokenStore};
use tower_bearer::{Error, TokenSource};

use crate::family::{Event, Family};

/// Two sources, each fetching `rounds` times at once; every fetch must succeed.
async fn spend_concurrently<S: RefreshTokenStore + Clone>(
    family: &Family,
    a: S,
    b: S,
    rounds: usize,
) {
    let tasks = [a, b].map(|store| {
        let source = RefreshTokenGrant::builder(&family.url, store)
            .build()
            .unwrap();
        tokio::spawn(async move {
            for _ in 0..rounds {
                source.fetch().await.unwrap();
            }
        })
    });
    for task in tasks {
        task.await.unwrap();
    }
}

fn assert_each_token_spent_once(family: &Family, fetches: usize) {
    let expected: Vec<String> = (0..fetches).map(|k| format!("r{k}")).collect();
    assert_eq!(family.invalid_grants(), 0);
    assert_eq!(family.presented(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_sharing_a_memory_store_never_spend_the_same_refresh_token() {
    let family = Family::start().await;
    // A little latency at the token endpoint, so the two sources' refreshes overlap.
    family.on_event(|_| tokio::time::sleep(Duration::from_millis(2)));
    let store = MemoryStore::new(RefreshToken::new("r0"));
    spend_concurrently(&family, store.clone(), store.clone(), 10).await;
    assert_each_token_spent_once(&family, 20);
    assert_eq!(store.get().unwrap().secret(), "r20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_file_stores_on_one_path_never_spend_the_same_refresh_token() {
    let family = Family::start().await;
    family.on_event(|_| tokio::time::sleep(Duration::from_millis(2)));
    let dir = std::env::temp_dir().join(format!(
        "tower-bearer-two-stores-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("refresh-token");
    std::fs::write(&path, "r0\n").unwrap();
    // The store refuses a token file others may read.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Two separately built stores, as two processes would have: only the file lock is shared.
    spend_concurrently(&family, FileStore::new(&path), FileStore::new(&path), 10).await;
    assert_each_token_spent_once(&family, 20);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "r20\n");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A store that takes no lock (the trait's default), so two sources can race; the first
/// `hold` loads wait for each other, so that both read the same token.
#[derive(Clone)]
struct Unlocked {
    inner: MemoryStore,
    loads: Arc<AtomicUsize>,
    barrier: Arc<tokio::sync::Barrier>,
    hold: usize,
}

impl Unlocked {
    fn new(initial: &str, hold: usize) -> Self {
        Unlocked {
            inner: MemoryStore::new(RefreshToken::new(initial)),
            loads: Arc::default(),
            barrier: Arc::new(tokio::sync::Barrier::new(hold.max(1))),
            hold,
        }
    }
}

impl RefreshTokenStore for Unlocked {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        if self.loads.fetch_add(1, Ordering::SeqCst) < self.hold {
            self.barrier.wait().await;
        }
        self.inner.load().await
    }

    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        self.inner.save(old, new).await
    }
}

/// Wait until `store` holds something else than `token`.
async fn until_replaced(store: &MemoryStore, token: &str) {
    for _ in 0..500 {
        if store.get().is_some_and(|t| t.secret() != token) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store never moved on from {token}");
}

#[tokio::test]
async fn a_source_that_loses_a_race_continues_with_the_winners_token() {
    let family = Family::start().await;
    // This server refuses a spent token without revoking the family (reuse detection would
    // punish the race itself, which only a store lock prevents).
    family.state().revoke_on_reuse = false;
    let store = Unlocked::new("r0", 2);
    // The loser's refusal leaves once the winner has saved its new token.
    let inner = store.inner.clone();
    family.on_event(move |event| {
        let inner = inner.clone();
        async move {
            if let Event::Refused { presented } = event {
                until_replaced(&inner, &presented).await;
            }
        }
    });
    let sources = [(); 2].map(|_| {
        RefreshTokenGrant::builder(&family.url, store.clone())
            .build()
            .unwrap()
    });
    // Both load r0, both spend it: one wins (r1), the other is refused, finds r1 in the store
    // and spends it (r2).
    let (a, b) = tokio::join!(sources[0].fetch(), sources[1].fetch());
    a.unwrap();
    b.unwrap();
    let mut presented = family.presented();
    presented.sort();
    assert_eq!(presented, ["r0", "r0", "r1"]);
    assert_eq!(family.invalid_grants(), 1);
    assert_eq!(store.inner.get().unwrap().secret(), "r2");
}

#[tokio::test]
async fn a_conflicting_save_keeps_the_other_writers_token_and_continues_with_it() {
    let family = Family::start().await;
    let store = Unlocked::new("r0", 0);
    // While the server answers r0 → r1, another writer (which took no lock) stores r-other,
    // a token the server also honours.
    let (inner, server) = (store.inner.clone(), family.clone());
    family.on_event(move |event| {
        if event
            == (Event::Accepted {
                spent: "r0".into(),
                live: "r1".into(),
            })
        {
            let old = RefreshToken::new("r0");
            let other = RefreshToken::new("r-other");
            futures::executor::block_on(inner.save(Some(&old), &other)).unwrap();
            server.state().set_live("r-other");
        }
        std::future::ready(())
    });
    let source = RefreshTokenGrant::builder(&family.url, store.clone())
        .build()
        .unwrap();
    // The save of r1 finds r-other: no overwrite, no error; the access token is valid.
    assert_eq!(source.fetch().await.unwrap().secret(), "access-1");
    assert_eq!(store.inner.get().unwrap().secret(), "r-other");
    // The next refresh spends the stored token.
    assert_eq!(source.fetch().await.unwrap().secret(), "access-2");
    assert_eq!(family.presented(), ["r0", "r-other"]);
    assert_eq!(family.invalid_grants(), 0);
}
