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
async fn a_lock_lost_to_its_ttl_is_seen_by_renew_and_fences_the_save() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis.url()).build().unwrap();
    let a = RedisStore::new(&fleet)
        .with_initial(token("r0"))
        .lock_ttl(Duration::from_millis(300));
    let b = RedisStore::new(&fleet).with_initial(token("r0"));
    let held = a.lock().await.unwrap();
    assert!(a.renew(&held).await.unwrap(), "held and renewed");
    assert_eq!(a.load().await.unwrap(), Some(token("r0")));
    // A frozen holder: nothing renews its lease, which expires; another replica takes it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let taken = b.lock().await.unwrap();
    assert!(taken.fence() > held.fence(), "fences only grow");
    assert!(
        !a.renew(&held).await.unwrap(),
        "the old holder sees its lock lost"
    );
    // The old holder's save is refused by the fence, although its compare would succeed.
    let err = a
        .save(Some(&token("r0")), &token("r1-stale"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("lock was lost"), "{err}");
    assert_eq!(b.load().await.unwrap(), Some(token("r0")));
    b.save(Some(&token("r0")), &token("r1")).await.unwrap();
    // A retried save of a token already stored succeeds (idempotent).
    b.save(Some(&token("r0")), &token("r1")).await.unwrap();
    drop((held, taken));
}

#[tokio::test]
async fn a_lost_key_is_a_config_error_naming_seed_never_the_initial_token() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis.url()).prefix("lost").build().unwrap();
    let store = RedisStore::new(&fleet).with_initial(token("r0"));
    // First use seeds r0; the fleet rotates to r1.
    assert_eq!(store.load().await.unwrap(), Some(token("r0")));
    store.save(Some(&token("r0")), &token("r1")).await.unwrap();
    // The key is evicted (or flushed alone): r0 was spent long ago and must not come back.
    let keys = redis.cli(&["--scan", "--pattern", "lost:*:refresh"]);
    redis.cli(&["DEL", keys.trim()]);
    let err = store.load().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("RedisStore::seed"), "{err}");
    let err = store.save(None, &token("r9")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    // An operator seeds a new refresh token; rotation goes on from it.
    store.seed(&token("fresh")).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(token("fresh")));
}

#[tokio::test]
async fn saves_wait_for_a_replica_when_asked_and_the_cost_is_measured() {
    let primary = RedisServer::start();
    let replica = RedisServer::with_args(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let started = std::time::Instant::now();
    while !primary
        .cli(&["INFO", "replication"])
        .contains("connected_slaves:1")
        || !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fleet = fleet(&primary.url()).prefix("wait").build().unwrap();
    let plain = RedisStore::new(&fleet);
    let waiting = RedisStore::new(&fleet).wait_for_replicas(1, Duration::from_secs(2));
    let rounds = 200;
    let measure = async |store: &RedisStore, from: usize| {
        let started = std::time::Instant::now();
        for k in from..from + rounds {
            let old = (k > 0).then(|| token(&format!("r{k}")));
            store
                .save(old.as_ref(), &token(&format!("r{}", k + 1)))
                .await
                .unwrap();
        }
        started.elapsed() / rounds as u32
    };
    let without = measure(&plain, 0).await;
    let with = measure(&waiting, rounds).await;
    eprintln!("RedisStore save, one local replica: {without:?} without WAIT, {with:?} with WAIT 1");
    // The replica has the last token as soon as the save returns.
    let keys = primary.cli(&["--scan", "--pattern", "wait:*:refresh"]);
    assert!(!replica.cli(&["GET", keys.trim()]).trim().is_empty());
    // Asking for more replicas than exist: the save lands on the primary but is reported.
    let greedy = RedisStore::new(&fleet).wait_for_replicas(2, Duration::from_millis(100));
    let last = token(&format!("r{}", 2 * rounds));
    let err = greedy
        .save(Some(&last), &token("r-next"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("1 of 2 replicas"), "{err}");
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
    // The first load seeds the initial token; the protocol always loads before it saves.
    assert_eq!(store.load().await.unwrap(), Some(token("r0")));
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
