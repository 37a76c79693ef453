//! The fleet tier against real Redis servers (and a real 3-master Redis Cluster) that the tests
//! start on loopback, with counting token servers: one token request per lifetime for a whole
//! fleet, a crashed lease holder taken over, rotations that never reach reuse detection, and
//! Redis outages that never fail a request.
//!
//! Needs `redis-server` and `redis-cli` on the PATH (`.ci/run` installs them); without them the
//! tests fail and say how to install them.

#[cfg(feature = "dpop")]
mod binding;
#[cfg(feature = "dpop")]
mod discovered;
#[path = "../sources/family.rs"]
mod family;
#[path = "../support/logs.rs"]
mod logs;
#[path = "../support/mtls_server.rs"]
mod mtls_server;
mod processes;
mod store;
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::fleet::{EncryptionKey, RedisFleet, RedisFleetBuilder};
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{BearerAuthLayer, ErrorKind, RefreshTier, TokenCache};

use logs::{all_logs, logs, logs_of_this_thread};
use support::{Issuer, RedisCluster, RedisServer, api_client};

pub(crate) const IDENTITY: &str = "client_credentials test-client http://127.0.0.1/token";

/// A fleet with test pacing: short leases, fast polls, outages probed again quickly; commands
/// given 2 s, room for a loaded machine (the default is 1 s).
pub(crate) fn fleet(url: &str) -> RedisFleetBuilder {
    RedisFleet::builder(url, IDENTITY)
        .lease_ttl(Duration::from_millis(1000))
        .poll_interval(Duration::from_millis(20))
        .command_timeout(Duration::from_secs(2))
        .outage_retry(Duration::from_millis(300))
}

/// Counts refreshes by tier.
#[derive(Clone, Default)]
pub(crate) struct Tiers(Arc<Mutex<Vec<RefreshTier>>>);

impl Tiers {
    pub(crate) fn all(&self) -> Vec<RefreshTier> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn count(&self, tier: RefreshTier) -> usize {
        self.all().iter().filter(|t| **t == tier).count()
    }
}

pub(crate) fn cache(
    issuer: &Issuer,
    fleet: RedisFleet,
    tiers: &Tiers,
) -> TokenCache<ClientCredentials> {
    let source = ClientCredentials::builder(
        &issuer.url,
        ClientAuth::client_secret_post("test-client", ClientSecret::new("test-secret")),
    )
    .build()
    .unwrap();
    let tiers = tiers.clone();
    TokenCache::builder(source)
        .fetch_timeout(Duration::from_secs(20))
        .on_refresh(move |event| {
            if let Some(tier) = event.tier() {
                tiers.0.lock().unwrap().push(tier);
            }
        })
        .fleet(fleet)
        .build()
}

/// `per_cache` concurrent requests through each cache's layer to the issuer's API; returns
/// how many were accepted.
async fn burst(
    issuer: &Issuer,
    caches: &[TokenCache<ClientCredentials>],
    per_cache: usize,
) -> usize {
    let requests = caches.iter().flat_map(|cache| {
        let service = ServiceBuilder::new()
            .layer(BearerAuthLayer::from_cache(cache.clone()))
            .service(api_client());
        (0..per_cache).map(move |_| {
            let request = http::Request::get(format!("{}/api", issuer.base))
                .body(())
                .unwrap();
            service.clone().oneshot(request)
        })
    });
    join_all(requests)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
        .count()
}

async fn eight_replicas_share_one_fetch(urls: Fleets) {
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    // Long enough that all eight replicas want a token while the first fetch runs.
    issuer.state().latency = Duration::from_millis(200);
    let tiers = Tiers::default();
    // Eight replicas: each its own source, its own connection to Redis, its own cache.
    let caches: Vec<_> = (0..8)
        .map(|_| cache(&issuer, urls.build(), &tiers))
        .collect();
    let accepted = burst(&issuer, &caches, 200).await;
    assert_eq!(accepted, 1600);
    assert_eq!(issuer.issued(), 1, "one token request for the whole fleet");
    assert_eq!(tiers.count(RefreshTier::Leased), 1, "{:?}", tiers.all());
    assert_eq!(tiers.count(RefreshTier::Shared), 7, "{:?}", tiers.all());
    let state = issuer.state();
    assert_eq!(
        (state.api_ok, state.api_expired, state.api_unknown),
        (1600, 0, 0)
    );
}

/// How to reach the Redis under test.
enum Fleets {
    Single(String),
    Cluster(Vec<String>),
}

impl Fleets {
    fn build(&self) -> RedisFleet {
        match self {
            Fleets::Single(url) => fleet(url).build().unwrap(),
            Fleets::Cluster(urls) => {
                RedisFleet::cluster_builder(urls.iter().map(String::as_str), IDENTITY)
                    .lease_ttl(Duration::from_millis(1000))
                    .poll_interval(Duration::from_millis(20))
                    .build()
                    .unwrap()
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_caches_with_200_concurrent_requests_each_make_one_token_request() {
    let redis = RedisServer::start();
    eight_replicas_share_one_fetch(Fleets::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_redis_cluster_gives_the_same_single_fetch() {
    let cluster = RedisCluster::start(3);
    eight_replicas_share_one_fetch(Fleets::Cluster(cluster.urls())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_token_keeps_the_expiry_it_was_published_with() {
    let redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(60)).await;
    let tiers = Tiers::default();
    let first = cache(&issuer, fleet(&redis.url()).build().unwrap(), &tiers);
    let mine = first.token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let second = cache(&issuer, fleet(&redis.url()).build().unwrap(), &tiers);
    let theirs = second.token().await.unwrap();
    assert_eq!(theirs.secret(), mine.secret());
    assert_eq!(issuer.issued(), 1);
    assert_eq!(tiers.all(), [RefreshTier::Leased, RefreshTier::Shared]);
    // Anchored at the first fetch's start, not at the moment the second process read it.
    let left = theirs.expires_in().unwrap();
    let first_left = mine.expires_in().unwrap();
    assert!(left <= Duration::from_millis(58_900), "{left:?}");
    assert!(
        left.abs_diff(first_left) < Duration::from_millis(300),
        "{left:?} vs {first_left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_its_refresh_window_is_not_taken_but_replaced_once() {
    let redis = RedisServer::start();
    // 3 s tokens with a 2 s window (capped at half: 1.5 s): fresh for the first 1.5 s.
    let issuer = Issuer::start(Duration::from_secs(3)).await;
    let tiers = Tiers::default();
    let build = || {
        let source = ClientCredentials::builder(
            &issuer.url,
            ClientAuth::client_secret_post("test-client", ClientSecret::new("test-secret")),
        )
        .build()
        .unwrap();
        let tiers = tiers.clone();
        TokenCache::builder(source)
            .refresh_window(Duration::from_secs(2))
            .jitter(Duration::ZERO)
            .safety_margin(Duration::from_millis(200))
            .on_refresh(move |e| tiers.0.lock().unwrap().extend(e.tier()))
            .fleet(fleet(&redis.url()).build().unwrap())
            .build()
    };
    let first = build();
    let old = first.token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    // The shared token is stale now: a new replica fetches a new one under the lease...
    let second = build();
    let new = second.token().await.unwrap();
    assert_ne!(new.secret(), old.secret());
    assert_eq!(issuer.issued(), 2);
    // ...and the first replica, refreshing in its window, takes that one.
    let served = first.token().await.unwrap();
    assert_eq!(
        served.secret(),
        old.secret(),
        "still usable: served while refreshing"
    );
    for _ in 0..100 {
        if first.current().is_some_and(|t| t.secret() == new.secret()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(first.current().unwrap().secret(), new.secret());
    assert_eq!(issuer.issued(), 2);
    assert_eq!(
        tiers.all(),
        [
            RefreshTier::Leased,
            RefreshTier::Leased,
            RefreshTier::Shared
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_401_the_rejected_shared_token_is_not_taken_back() {
    let redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let a = cache(&issuer, fleet(&redis.url()).build().unwrap(), &tiers);
    let b = cache(&issuer, fleet(&redis.url()).build().unwrap(), &tiers);
    let rejected = a.token().await.unwrap();
    assert_eq!(b.token().await.unwrap().secret(), rejected.secret());

    // The API said 401 to it: Redis still holds it, and it must not come back.
    assert!(a.invalidate(&rejected));
    let replaced = a.token().await.unwrap();
    assert_ne!(replaced.secret(), rejected.secret());
    assert_eq!(issuer.issued(), 2);

    // The other replica's 401 for the same token: it takes the replacement from Redis.
    let seen_by_b = b.current().unwrap();
    assert!(b.invalidate(&seen_by_b));
    assert_eq!(b.token().await.unwrap().secret(), replaced.secret());
    assert_eq!(issuer.issued(), 2);
    assert_eq!(
        tiers.all(),
        [
            RefreshTier::Leased,
            RefreshTier::Shared,
            RefreshTier::Leased,
            RefreshTier::Shared
        ]
    );
}

fn outage_warnings() -> usize {
    logs_of_this_thread()
        .matches("fleet tier is unavailable")
        .count()
}

#[tokio::test]
async fn redis_stopped_mid_test_requests_still_succeed_and_the_fleet_converges_after() {
    logs();
    let mut redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    // Four replicas on one fleet handle (one connection): its outage is logged once.
    let shared = fleet(&redis.url()).build().unwrap();
    let caches: Vec<_> = (0..4)
        .map(|_| cache(&issuer, shared.clone(), &tiers))
        .collect();
    assert_eq!(burst(&issuer, &caches, 50).await, 200);
    assert_eq!(issuer.issued(), 1);

    redis.stop();
    // Every replica's token is rejected during the outage: each refreshes on its own.
    for cache in &caches {
        let seen = cache.current().unwrap();
        assert!(cache.invalidate(&seen));
    }
    assert_eq!(
        burst(&issuer, &caches, 50).await,
        200,
        "no request fails because of Redis"
    );
    assert_eq!(issuer.issued(), 5);
    assert_eq!(tiers.count(RefreshTier::Fallback), 4, "{:?}", tiers.all());
    assert_eq!(outage_warnings(), 1, "an outage is logged once");

    redis.restart();
    tokio::time::sleep(Duration::from_millis(400)).await; // past `outage_retry`
    for cache in &caches {
        let seen = cache.current().unwrap();
        assert!(cache.invalidate(&seen));
    }
    assert_eq!(burst(&issuer, &caches, 50).await, 200);
    assert_eq!(
        issuer.issued(),
        6,
        "converged: one fetch for the fleet again"
    );
    let secrets: Vec<String> = caches
        .iter()
        .map(|c| c.current().unwrap().secret().to_owned())
        .collect();
    assert!(
        secrets.iter().all(|s| *s == secrets[0]),
        "every replica holds the same token"
    );
    assert_eq!(outage_warnings(), 1);
}

/// A listener that accepts connections and answers each with `reply` (or nothing).
async fn impostor(reply: Option<&'static [u8]>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            if let Some(reply) = reply {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(reply).await;
            }
            held.push(stream);
        }
    });
    format!("redis://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_silent_or_answering_garbage_never_fails_a_request() {
    let refused = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("redis://127.0.0.1:{port}/")
    };
    let cases = [
        ("connection refused", refused),
        (
            "garbage",
            impostor(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n<html>")).await,
        ),
        (
            "wrong protocol reply",
            impostor(Some(b"-ERR unknown command\r\n")).await,
        ),
        ("silent", impostor(None).await),
    ];
    for (what, url) in cases {
        let issuer = Issuer::start(Duration::from_secs(3600)).await;
        let tiers = Tiers::default();
        let cache = cache(&issuer, fleet(&url).build().unwrap(), &tiers);
        let started = std::time::Instant::now();
        let token = cache
            .token()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(token.secret().starts_with("access-1-"), "{what}");
        assert_eq!(tiers.all(), [RefreshTier::Fallback], "{what}");
        // Bounded by the command timeout (500 ms here), not the fetch timeout.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_the_shared_key_is_treated_as_absent() {
    let redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let fleet = fleet(&redis.url()).build().unwrap();
    let key = fleet.key_base().to_owned();
    for garbage in [
        "not a record",
        "v1.p.id.!!!",
        "v1.e.id.AAAA",
        "v1.p.id.bnVsbA",
    ] {
        redis.cli(&["SET", &format!("{key}:token"), garbage]);
        let cache = cache(&issuer, fleet.clone(), &tiers);
        cache.token().await.unwrap();
    }
    assert_eq!(tiers.count(RefreshTier::Leased), 4, "{:?}", tiers.all());
    // A key of the wrong type answers an error: Redis counts as unavailable, the request
    // still gets a token.
    redis.cli(&["DEL", &format!("{key}:token")]);
    redis.cli(&["HSET", &format!("{key}:token"), "a", "b"]);
    cache(&issuer, fleet.clone(), &tiers).token().await.unwrap();
    assert_eq!(tiers.all().last(), Some(&RefreshTier::Fallback));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_namespaced_by_prefix_and_a_hash_and_tokens_at_rest_can_be_encrypted() {
    let redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let key = EncryptionKey::generate();
    let sealed = || {
        fleet(&redis.url())
            .prefix("acme")
            .encryption_key(key.clone())
            .build()
            .unwrap()
    };
    let token = cache(&issuer, sealed(), &tiers).token().await.unwrap();

    let keys = redis.cli(&["--scan"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(
        keys.len(),
        1,
        "only the token; the lease was released: {keys:?}"
    );
    let name = keys[0];
    assert!(
        name.starts_with("acme:{") && name.ends_with("}:token"),
        "{name}"
    );
    assert!(
        !name.contains("test-client"),
        "the identity is hashed: {name}"
    );
    let value = redis.cli(&["GET", name]);
    assert!(value.starts_with("v1.e."), "{value}");
    assert!(
        !value.contains(token.secret()),
        "the token is encrypted at rest"
    );

    // Same key: shared. Another key, or none: unreadable, so fetched (and published) anew.
    assert_eq!(
        cache(&issuer, sealed(), &tiers)
            .token()
            .await
            .unwrap()
            .secret(),
        token.secret()
    );
    let other = fleet(&redis.url())
        .prefix("acme")
        .encryption_key(EncryptionKey::generate());
    cache(&issuer, other.build().unwrap(), &tiers)
        .token()
        .await
        .unwrap();
    let clear = fleet(&redis.url()).prefix("acme").build().unwrap();
    cache(&issuer, clear, &tiers).token().await.unwrap();
    assert_eq!(issuer.issued(), 3);
    assert_eq!(
        tiers.all(),
        [
            RefreshTier::Leased,
            RefreshTier::Shared,
            RefreshTier::Leased,
            RefreshTier::Leased
        ]
    );
    // Another prefix, or another identity, is another credential.
    let elsewhere = fleet(&redis.url()).prefix("other").build().unwrap();
    cache(&issuer, elsewhere.credential("another client"), &tiers)
        .token()
        .await
        .unwrap();
    assert_eq!(issuer.issued(), 4);
}

#[tokio::test]
async fn a_shared_token_under_the_previous_key_is_adopted_after_a_key_rotation() {
    logs();
    let redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
    let rotated = || {
        fleet(&redis.url())
            .encryption_key(new.clone())
            .previous_encryption_key(old.clone())
            .build()
            .unwrap()
    };
    let before = fleet(&redis.url()).encryption_key(old.clone());
    let token = cache(&issuer, before.build().unwrap(), &tiers)
        .token()
        .await
        .unwrap();
    // Rotated: the new key writes, the old one still reads.
    let adopted = cache(&issuer, rotated(), &tiers).token().await.unwrap();
    assert_eq!(adopted.secret(), token.secret());
    assert_eq!(issuer.issued(), 1);

    // A process without the key a record names ignores it (fetches, publishes under its own
    // key), and says so once at `warn`, not at every refresh.
    let record = format!("{}:token", rotated().key_base());
    let stranger = fleet(&redis.url())
        .encryption_key(EncryptionKey::generate())
        .build()
        .unwrap();
    for _ in 0..3 {
        redis.cli(&["DEL", &record]);
        cache(&issuer, rotated(), &tiers).token().await.unwrap();
        cache(&issuer, stranger.clone(), &tiers)
            .token()
            .await
            .unwrap();
    }
    assert_eq!(issuer.issued(), 7, "{:?}", tiers.all());
    let logs = logs_of_this_thread();
    let unknown: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("does not hold"))
        .collect();
    // Each of the three refreshes reads it (twice: before and under the lease).
    assert!(unknown.len() >= 3, "{logs}");
    assert_eq!(
        unknown.iter().filter(|l| l.contains("WARN")).count(),
        1,
        "{unknown:#?}"
    );

    // Tampered with (one character of the ciphertext changed): refused, fetched anew.
    redis.cli(&["DEL", &record]);
    cache(&issuer, rotated(), &tiers).token().await.unwrap();
    let mut value: Vec<char> = redis.cli(&["GET", &record]).trim_end().chars().collect();
    let at = value.len() - 10;
    value[at] = if value[at] == 'A' { 'B' } else { 'A' };
    redis.cli(&["SET", &record, &value.into_iter().collect::<String>()]);
    cache(&issuer, rotated(), &tiers).token().await.unwrap();
    assert_eq!(issuer.issued(), 9);
    assert!(logs_of_this_thread().contains("tampered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_in_the_url_works_and_a_wrong_password_only_costs_the_sharing() {
    let redis = RedisServer::with_password("s3cret-pw");
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/", redis.port);
    let first = cache(&issuer, fleet(&url).build().unwrap(), &tiers);
    let second = cache(&issuer, fleet(&url).build().unwrap(), &tiers);
    assert_eq!(
        first.token().await.unwrap().secret(),
        second.token().await.unwrap().secret()
    );
    assert_eq!(tiers.all(), [RefreshTier::Leased, RefreshTier::Shared]);

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/", redis.port);
    let third = cache(&issuer, fleet(&wrong).build().unwrap(), &tiers);
    third.token().await.unwrap();
    assert_eq!(tiers.all().last(), Some(&RefreshTier::Fallback));
    assert_eq!(issuer.issued(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca_shares_tokens() {
    // The redis crate builds its rustls config with rustls' process-wide default provider,
    // which rustls cannot pick by itself when both ring and aws-lc-rs are in the graph (as in
    // this `--all-features` build): the application installs one, as the README says.
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pki = mtls_server::pki();
    let dir = std::env::temp_dir().join(format!("tower-bearer-redis-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &pki.server_chain).unwrap();
    std::fs::write(&key, &pki.server_key).unwrap();
    let redis = RedisServer::with_tls(&cert, &key);
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let url = format!("rediss://127.0.0.1:{}/", redis.port);
    let tls = || {
        let client = redis::Client::build_with_tls(
            url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pki.ca.clone().into_bytes()),
            },
        )
        .unwrap();
        RedisFleet::builder_from_client(client, IDENTITY)
            .command_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let (a, b) = (cache(&issuer, tls(), &tiers), cache(&issuer, tls(), &tiers));
    assert_eq!(
        a.token().await.unwrap().secret(),
        b.token().await.unwrap().secret()
    );
    assert_eq!(tiers.all(), [RefreshTier::Leased, RefreshTier::Shared]);
    // Without the CA, the server's certificate is not trusted: no sharing, but a token.
    let untrusted = fleet(&url).build().unwrap();
    cache(&issuer, untrusted, &tiers).token().await.unwrap();
    assert_eq!(tiers.all().last(), Some(&RefreshTier::Fallback));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn nothing_secret_in_debug_or_errors() {
    let fleet = RedisFleet::builder("redis://user:hunter2-password@127.0.0.1:1/", "id")
        .encryption_key(EncryptionKey::generate())
        .build()
        .unwrap();
    let shown = format!("{fleet:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("user"),
        "{shown}"
    );
    let store = tower_bearer::store::RedisStore::new(&fleet)
        .with_initial(tower_bearer::secret::RefreshToken::new("refresh-secret"));
    let shown = format!("{store:?}");
    assert!(
        !shown.contains("refresh-secret") && !shown.contains("hunter2"),
        "{shown}"
    );

    let err = RedisFleet::new("redis://user:hunter2@[::1", "id").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = RedisFleet::cluster_builder(["nope://hunter2@x"], "id")
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = RedisFleet::cluster_builder([], "id").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn no_token_password_or_secret_in_any_log_line_of_a_fleet_lifecycle() {
    logs();

    let mut redis = RedisServer::with_password("s3cret-pw");
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    let tiers = Tiers::default();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/", redis.port);
    let key = EncryptionKey::generate();
    let build = || fleet(&url).encryption_key(key.clone()).build().unwrap();
    let (a, b) = (
        cache(&issuer, build(), &tiers),
        cache(&issuer, build(), &tiers),
    );
    let mut secrets = vec![a.token().await.unwrap().secret().to_owned()];
    b.token().await.unwrap();
    // A 401, an unreadable record, an outage and a recovery.
    let seen = a.current().unwrap();
    a.invalidate(&seen);
    secrets.push(a.token().await.unwrap().secret().to_owned());
    redis.cli(&[
        "-a",
        "s3cret-pw",
        "SET",
        &format!("{}:token", build().key_base()),
        "junk",
    ]);
    let seen = b.current().unwrap();
    b.invalidate(&seen);
    secrets.push(b.token().await.unwrap().secret().to_owned());
    redis.stop();
    let seen = a.current().unwrap();
    a.invalidate(&seen);
    secrets.push(a.token().await.unwrap().secret().to_owned());
    assert_eq!(tiers.all().last(), Some(&RefreshTier::Fallback));

    let mine = logs_of_this_thread();
    assert!(mine.contains("fleet tier is unavailable"), "{mine}");
    assert!(mine.contains("unreadable"), "{mine}");
    assert!(mine.contains("token refreshed"), "{mine}");
    // Every line of every test of this binary so far.
    let logs = all_logs();
    for secret in secrets
        .iter()
        .map(String::as_str)
        .chain(["s3cret-pw", "test-secret"])
    {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_cache_with_a_fleet_identity_per_key_shares_per_key_only() {
    use tower_bearer::keyed::KeyedTokenCache;
    use tower_bearer::source::from_fn;
    use tower_bearer::{Error, Token};

    let redis = RedisServer::start();
    let fetches = Arc::new(AtomicU32::new(0));
    let replica = || {
        let fetches = fetches.clone();
        let fleet = fleet(&redis.url()).build().unwrap();
        KeyedTokenCache::builder(move |audience: &&'static str| {
            let (fetches, audience) = (fetches.clone(), *audience);
            Ok(from_fn(move || {
                let n = fetches.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok::<_, Error>(
                        Token::new(format!("{audience}-{n}"))
                            .with_expires_in(Duration::from_secs(3600)),
                    )
                }
            }))
        })
        .cache(move |audience, slot| slot.fleet(fleet.credential(format!("orders {audience}"))))
        .build()
    };
    let (one, two) = (replica(), replica());
    let billing = one.token(&"billing").await.unwrap();
    let search = one.token(&"search").await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // The other replica takes each key's token from Redis, and only that key's.
    assert_eq!(
        two.token(&"billing").await.unwrap().secret(),
        billing.secret()
    );
    assert_eq!(
        two.token(&"search").await.unwrap().secret(),
        search.secret()
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert!(billing.secret().starts_with("billing-") && search.secret().starts_with("search-"));
}
