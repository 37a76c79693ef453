//! The `refresh_token` grant with rotation (RFC 6749 §6): the new refresh token replaces the old
//! one, is saved before the access token is used, and is never lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::json;
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, RefreshTokenGrant};
use tower_bearer::store::{FileStore, MemoryStore, RefreshTokenStore};
use tower_bearer::{Backoff, Error, ErrorKind, TokenCache, TokenSource};

use crate::common::{Recorded, TokenServer, answer, assert_no_secret, client, json, send, serve};
use crate::family::{Answer, Family};

/// A rotating token endpoint: accepts only the newest refresh token `r{k}` and answers with
/// `access-{k+1}` and `r{k+1}`; anything else is `invalid_grant`.
fn rotating(
    req: &Recorded,
    _n: usize,
    current: &std::sync::Mutex<u32>,
) -> axum::response::Response {
    let mut k = current.lock().unwrap();
    if req.get("grant_type") != Some("refresh_token")
        || req.get("refresh_token") != Some(&format!("r{k}"))
    {
        return answer(400, "application/json", r#"{"error":"invalid_grant"}"#);
    }
    *k += 1;
    json(json!({
        "access_token": format!("access-{k}"),
        "token_type": "bearer",
        "expires_in": "3600",
        "refresh_token": format!("r{k}"),
    }))
}

async fn rotating_server() -> TokenServer {
    let current = Arc::new(std::sync::Mutex::new(0));
    TokenServer::start("/token", move |req, n| rotating(req, n, &current)).await
}

#[tokio::test]
async fn rotated_refresh_token_replaces_the_old_one_in_the_store() {
    let server = rotating_server().await;
    let store = MemoryStore::new(RefreshToken::new("r0"));
    let source = RefreshTokenGrant::builder(&server.url, store.clone())
        .build()
        .unwrap();
    let cache = TokenCache::new(source);
    let api = client(cache.clone());

    assert_eq!(send(&api).await.unwrap(), "Bearer access-1");
    assert_eq!(store.get().unwrap().secret(), "r1");
    // The server says 401 to access-1: the next token comes from the rotated refresh token.
    assert!(cache.invalidate(&cache.token().await.unwrap()));
    assert_eq!(send(&api).await.unwrap(), "Bearer access-2");
    assert_eq!(store.get().unwrap().secret(), "r2");
    assert_eq!(server.request(0).get("refresh_token"), Some("r0"));
    assert_eq!(server.request(1).get("refresh_token"), Some("r1"));
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn rotated_refresh_token_survives_cancelled_caller() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = crate::common::Calls::default();
    let router = Router::new().route(
        "/token",
        post({
            let (gate, calls) = (gate.clone(), calls.clone());
            move || async move {
                calls.hit();
                // Hold the answer until the caller has given up.
                gate.acquire().await.unwrap().forget();
                json(json!({"access_token": "access-1", "expires_in": 3600, "refresh_token": "r1"}))
            }
        }),
    );
    let addr = serve(router).await;
    let store = MemoryStore::new(RefreshToken::new("r0"));
    let source = RefreshTokenGrant::builder(format!("http://{addr}/token"), store.clone())
        .build()
        .unwrap();
    let api = client(TokenCache::new(source));

    // The caller gives up while the refresh is under way (once the token endpoint has the
    // request, however long a loaded machine takes to get it there); its future is dropped.
    let reached = async {
        while calls.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        _ = send(&api) => panic!("the request should still have been waiting"),
        _ = tokio::time::timeout(Duration::from_secs(30), reached) => {}
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(store.get().unwrap().secret(), "r0");

    // The token endpoint answers after the caller left: the rotation still lands.
    gate.add_permits(1);
    for _ in 0..500 {
        if store.get().unwrap().secret() == "r1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.get().unwrap().secret(), "r1");
    // And the access token that came with it is served without another call.
    assert_eq!(send(&api).await.unwrap(), "Bearer access-1");
    assert_eq!(calls.get(), 1);
}

/// A store whose first save fails.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: MemoryStore,
    failed_once: Arc<AtomicBool>,
}

impl RefreshTokenStore for FlakyStore {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        self.inner.load().await
    }

    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        if !self.failed_once.swap(true, Ordering::SeqCst) {
            return Err(Error::transient("disk full"));
        }
        self.inner.save(old, new).await
    }
}

#[tokio::test]
async fn a_failed_save_is_retried_under_the_lock_before_the_access_token_is_handed_out() {
    let server = rotating_server().await;
    let store = FlakyStore {
        inner: MemoryStore::new(RefreshToken::new("r0")),
        ..FlakyStore::default()
    };
    let source = RefreshTokenGrant::builder(&server.url, store.clone())
        .build()
        .unwrap();
    let cache = TokenCache::new(source);

    // Saving r1 failed once; the protocol tried again, still holding the store's lock.
    assert_eq!(cache.token().await.unwrap().secret(), "access-1");
    assert_eq!(store.inner.get().unwrap().secret(), "r1");
    assert!(store.failed_once.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_refused_refresh_token_is_a_rejection_with_invalid_grant() {
    let server = rotating_server().await;
    let store = MemoryStore::new(RefreshToken::new("r-already-used"));
    let source = RefreshTokenGrant::builder(&server.url, store.clone())
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.oauth_error(), Some("invalid_grant"));
    assert!(
        err.to_string().contains("refused the refresh token"),
        "{err}"
    );
    assert_no_secret(&err, &["r-already-used"]);
    assert_eq!(store.get().unwrap().secret(), "r-already-used");
}

#[tokio::test]
async fn a_bad_access_token_next_to_a_rotated_refresh_token_does_not_lose_the_refresh_token() {
    let server = TokenServer::start("/token", |_, _| {
        json(json!({"access_token": "mac-token", "token_type": "mac", "refresh_token": "r1"}))
    })
    .await;
    let store = MemoryStore::new(RefreshToken::new("r0"));
    let source = RefreshTokenGrant::builder(&server.url, store.clone())
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert_eq!(store.get().unwrap().secret(), "r1");
}

#[tokio::test]
async fn the_grant_authenticates_the_client_and_narrows_the_scope() {
    let server = rotating_server().await;
    let source = RefreshTokenGrant::builder(&server.url, MemoryStore::new(RefreshToken::new("r0")))
        .client_auth(ClientAuth::client_secret_post(
            "cid",
            ClientSecret::new("cs"),
        ))
        .scope("read")
        .build()
        .unwrap();
    send(&client(TokenCache::new(source))).await.unwrap();
    let req = server.request(0);
    assert_eq!(req.get("client_id"), Some("cid"));
    assert_eq!(req.get("client_secret"), Some("cs"));
    assert_eq!(req.get("scope"), Some("read"));
}

#[tokio::test]
async fn file_store_carries_the_rotated_token_across_a_restart() {
    let server = rotating_server().await;
    let dir = std::env::temp_dir().join(format!("tower-bearer-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("refresh-token");
    let _ = std::fs::remove_file(&path);

    let first = FileStore::new(&path).with_initial(RefreshToken::new("r0"));
    let source = RefreshTokenGrant::builder(&server.url, first)
        .build()
        .unwrap();
    assert_eq!(
        send(&client(TokenCache::new(source))).await.unwrap(),
        "Bearer access-1"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "r1\n");

    // A new process: no initial token, only the file.
    let source = RefreshTokenGrant::builder(&server.url, FileStore::new(&path))
        .build()
        .unwrap();
    assert_eq!(
        send(&client(TokenCache::new(source))).await.unwrap(),
        "Bearer access-2"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "r2\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_empty_store_is_a_config_error() {
    let server = rotating_server().await;
    let source = RefreshTokenGrant::builder(&server.url, MemoryStore::empty())
        .build()
        .unwrap();
    let err = send(&client(TokenCache::new(source))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(server.calls(), 0);
}

/// A fresh path in a fresh temporary directory.
fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-bearer-{name}-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("refresh-token")
}

/// A store whose saves fail while `failing` is set.
#[derive(Clone)]
struct SwitchStore<S> {
    inner: S,
    failing: Arc<AtomicBool>,
}

impl<S: RefreshTokenStore> RefreshTokenStore for SwitchStore<S> {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        self.inner.load().await
    }

    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::transient("the store is down"));
        }
        self.inner.save(old, new).await
    }

    async fn lock(&self) -> Result<tower_bearer::store::StoreLock, Error> {
        self.inner.lock().await
    }
}

#[tokio::test]
async fn an_unsaved_refresh_token_is_saved_before_anything_else_is_spent() {
    for answer in [Answer::Same, Answer::Omit] {
        let family = Family::start().await;
        let path = temp_path("stops-rotating");
        let store = SwitchStore {
            inner: FileStore::new(&path).with_initial(RefreshToken::new("r0")),
            failing: Arc::new(AtomicBool::new(true)),
        };
        let source = RefreshTokenGrant::builder(&family.url, store.clone())
            .build()
            .unwrap();

        // The server rotates r0 → r1, and every attempt to save r1 fails: access-1 is
        // withheld, r1 and the store's lock are kept.
        let err = source.fetch().await.unwrap_err();
        assert!(err.to_string().contains("the store is down"), "{err}");
        assert!(!path.exists());
        // Another source on the same file waits for the lock: it cannot spend r0 meanwhile.
        let other = RefreshTokenGrant::builder(
            &family.url,
            FileStore::new(&path)
                .with_initial(RefreshToken::new("r0"))
                .lock_timeout(Duration::from_millis(300)),
        )
        .build()
        .unwrap();
        let err = other.fetch().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");

        // The store works again (and the server stops rotating). The next fetch saves r1
        // before spending anything, then hands out the access token it withheld.
        family.state().answer = answer;
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(source.fetch().await.unwrap().secret(), "access-1");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "r1\n");

        // A restart (a new source, a new store on the same file) continues with r1.
        drop(source);
        let restarted = RefreshTokenGrant::builder(&family.url, FileStore::new(&path))
            .build()
            .unwrap();
        assert_eq!(restarted.fetch().await.unwrap().secret(), "access-2");
        assert_eq!(family.presented(), ["r0", "r1"], "{answer:?}");
        assert_eq!(family.invalid_grants(), 0, "{answer:?}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

#[tokio::test]
async fn a_rotation_cut_off_by_the_fetch_timeout_is_saved_and_its_access_token_served_next() {
    let family = Family::start().await;
    // The server rotates at once, says so, and answers only when the test says: after the
    // cache has given up, however slowly the machine runs.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (rotated, mut rotations) = tokio::sync::mpsc::unbounded_channel();
    family.on_event({
        let gate = gate.clone();
        move |_| {
            let (gate, rotated) = (gate.clone(), rotated.clone());
            async move {
                let _ = rotated.send(());
                gate.acquire().await.unwrap().forget()
            }
        }
    });
    let path = temp_path("cut-off");
    let source = RefreshTokenGrant::builder(
        &family.url,
        FileStore::new(&path).with_initial(RefreshToken::new("r0")),
    )
    .build()
    .unwrap();
    let cache = TokenCache::builder(source)
        .fetch_timeout(Duration::from_secs(1))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .build();

    // The cache gives up on the fetch (and drops its future) while the answer is held. The
    // source's thread has started the rotation well within the second (it drops only a
    // rotation it had not started), so the request reaches the server and r0 is spent,
    // before or (on a busy machine) after the cut-off: waited for here, not assumed.
    let err = cache.token().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    tokio::time::timeout(Duration::from_secs(30), rotations.recv())
        .await
        .expect("the refresh reaches the server")
        .unwrap();
    assert_eq!(family.live(), "r1");

    // The answer arrives after nobody waits for it: r1 still reaches the file.
    gate.add_permits(1);
    for _ in 0..3000 {
        if std::fs::read_to_string(&path).is_ok_and(|t| t == "r1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "r1\n");

    // The next fetch (after the cache's backoff) serves the access token that came with r1,
    // without calling the token endpoint again.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(cache.token().await.unwrap().secret(), "access-1");
    assert_eq!(family.presented(), ["r0"]);

    // The one after spends r1; a restart continues from r2.
    gate.add_permits(100);
    assert!(cache.invalidate(&cache.token().await.unwrap()));
    assert_eq!(cache.token().await.unwrap().secret(), "access-2");
    let restarted = RefreshTokenGrant::builder(&family.url, FileStore::new(&path))
        .build()
        .unwrap();
    assert_eq!(restarted.fetch().await.unwrap().secret(), "access-3");
    assert_eq!(family.presented(), ["r0", "r1", "r2"]);
    assert_eq!(family.invalid_grants(), 0);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
