//! `RedisStore`: a real compare-and-swap and a leased rotation lock, in clear and encrypted.

use std::time::Duration;

use tower_bearer::ErrorKind;
use tower_bearer::fleet::EncryptionKey;
use tower_bearer::secret::RefreshToken;
use tower_bearer::store::{RedisStore, RefreshTokenStore};

use crate::fleet;
use crate::support::RedisServer;

fn token(value: &str) -> RefreshToken {
    RefreshToken::new(value)
}

#[tokio::test]
async fn save_is_a_compare_and_swap_from_the_initial_token_on() {
    let redis = RedisServer::start();
    for key in [None, Some(EncryptionKey::generate())] {
        let encrypted = key.is_some();
        let mut builder = fleet(&redis.url()).prefix(format!("cas-{encrypted}"));
        if let Some(key) = key {
            builder = builder.encryption_key(key);
        }
        let fleet = builder.build().unwrap();
        let a = RedisStore::new(&fleet).with_initial(token("r0"));
        let b = RedisStore::new(&fleet).with_initial(token("r0"));
        assert_eq!(a.load().await.unwrap(), Some(token("r0")));

        // Both read r0; the first swap wins, the second is a conflict and stores nothing.
        a.save(Some(&token("r0")), &token("r1")).await.unwrap();
        let err = b
            .save(Some(&token("r0")), &token("r1-b"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(b.load().await.unwrap(), Some(token("r1")));
        // `None` means "nothing stored": refused now that something is.
        let err = b.save(None, &token("r1-c")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        b.save(Some(&token("r1")), &token("r2")).await.unwrap();
        assert_eq!(a.load().await.unwrap(), Some(token("r2")));

        b.save(Some(&token("r2")), &token("refresh-token-three"))
            .await
            .unwrap();

        let stored = redis.cli(&["GET", &format!("{}:refresh", fleet.key_base())]);
        if encrypted {
            assert!(stored.starts_with("v1.e."), "{stored}");
            assert!(!stored.contains("refresh-token-three"), "{stored}");
        } else {
            assert!(stored.starts_with("v1.p."), "{stored}");
        }
    }
}

#[tokio::test]
async fn an_empty_store_without_initial_token_accepts_the_first_save_once() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis.url()).build().unwrap();
    let store = RedisStore::new(&fleet);
    assert_eq!(store.load().await.unwrap(), None);
    store.save(None, &token("first")).await.unwrap();
    assert_eq!(
        store.save(None, &token("second")).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(store.load().await.unwrap(), Some(token("first")));
}

#[tokio::test]
async fn the_rotation_lock_excludes_other_replicas_until_dropped() {
    let redis = RedisServer::start();
    let fleet_a = fleet(&redis.url()).build().unwrap();
    let fleet_b = fleet(&redis.url()).build().unwrap();
    let a = RedisStore::new(&fleet_a);
    let b = RedisStore::new(&fleet_b).lock_timeout(Duration::from_millis(300));

    let held = a.lock().await.unwrap();
    let err = b.lock().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        err.to_string().contains("locked by another replica"),
        "{err}"
    );

    // Released on drop: the waiting replica gets it.
    let b = b.lock_timeout(Duration::from_secs(5));
    let waiting = tokio::spawn(async move { b.lock().await.map(drop) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_held_lock_is_renewed_past_its_ttl() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis.url()).build().unwrap();
    let a = RedisStore::new(&fleet).lock_ttl(Duration::from_millis(300));
    let b = RedisStore::new(&fleet).lock_timeout(Duration::from_millis(200));
    let held = a.lock().await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await; // three TTLs
    assert_eq!(b.lock().await.unwrap_err().kind(), ErrorKind::Transient);
    drop(held);
}

#[tokio::test]
async fn a_stored_token_under_another_encryption_key_is_a_config_error_not_a_secret() {
    let redis = RedisServer::start();
    let writer = fleet(&redis.url())
        .encryption_key(EncryptionKey::generate())
        .build()
        .unwrap();
    RedisStore::new(&writer)
        .save(None, &token("secret-r1"))
        .await
        .unwrap();
    let reader = fleet(&redis.url())
        .encryption_key(EncryptionKey::generate())
        .build()
        .unwrap();
    let err = RedisStore::new(&reader).load().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.to_string().contains("secret-r1"), "{err}");
    let clear = fleet(&redis.url()).build().unwrap();
    assert_eq!(
        RedisStore::new(&clear).load().await.unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn an_unreachable_store_is_a_transient_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fleet = fleet(&format!("redis://:pw-secret@127.0.0.1:{port}/"))
        .build()
        .unwrap();
    let store = RedisStore::new(&fleet);
    for err in [
        store.load().await.unwrap_err(),
        store.save(None, &token("x")).await.unwrap_err(),
        store.lock().await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(!err.to_string().contains("pw-secret"), "{err}");
    }
}

#[tokio::test]
async fn a_refresh_token_saved_under_the_previous_key_is_rotated_after_a_key_rotation() {
    let redis = RedisServer::start();
    let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
    let before = fleet(&redis.url())
        .encryption_key(old.clone())
        .build()
        .unwrap();
    let store = RedisStore::new(&before).with_initial(token("r0"));
    store.save(Some(&token("r0")), &token("r1")).await.unwrap();

    let after = fleet(&redis.url())
        .encryption_key(new)
        .previous_encryption_key(old)
        .build()
        .unwrap();
    let rotated = RedisStore::new(&after);
    assert_eq!(rotated.load().await.unwrap(), Some(token("r1")));
    // The compare-and-swap recognises r1 although its fingerprint is under the old key: a
    // rotation of the encryption key never turns the next save into a lost refresh token.
    rotated
        .save(Some(&token("r1")), &token("r2"))
        .await
        .unwrap();
    // And still refuses a token that is not the stored one.
    let err = rotated
        .save(Some(&token("r1")), &token("r3"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(rotated.load().await.unwrap(), Some(token("r2")));
    // Written under the new key: a process that only has the old one cannot read it.
    assert_eq!(
        store.load().await.unwrap_err().kind(),
        ErrorKind::Config,
        "an unknown key id is a clear error for the refresh token"
    );
}
