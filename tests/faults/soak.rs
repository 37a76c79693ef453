//! Every fault at once, under concurrent load: a chaos task switches the token endpoint between
//! behaving, each fault, revoking the current token early and jumping the issuer's clock, every
//! 100–400 ms, while 16 workers send requests through `BearerAuthLayer::replay_on_401` to an
//! API that checks each token against what the server issued.
//!
//! Runs 3 s by default; `TOWER_BEARER_SOAK_SECS=60 cargo test --test faults soak -- --nocapture`
//! runs longer and prints the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_bearer::secret::RefreshToken;
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthLayer, Error, ErrorKind};

use crate::cases::{api, assert_clean, cache};
use crate::server::{Fault, FaultServer, refresh_token};

#[derive(Default)]
struct Counts {
    served: AtomicUsize,
    rejected: AtomicUsize,
    failed: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_all_faults_under_concurrent_load() {
    let secs: u64 = std::env::var("TOWER_BEARER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // Short tokens, so that many rotations happen: refreshed after 1 s, usable 1.5 s.
    let lifetime = Duration::from_secs(2);
    let server = FaultServer::start(lifetime).await;
    let store = MemoryStore::new(RefreshToken::new(refresh_token(0)));
    let (cache, calls) = cache(&server, &store, lifetime);
    let expired_sent = Arc::new(AtomicUsize::new(0));
    let svc = tower::ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()).replay_on_401())
        .service(api(&server, expired_sent.clone()));

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let chaos = {
        let (server, cache, stop) = (server.clone(), cache.clone(), stop.clone());
        tokio::spawn(async move {
            let mut applied = 0usize;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
                applied += 1;
                match fastrand::u8(0..20) {
                    0..=8 => server.set(Fault::None),
                    9..=16 => server.set(Fault::ALL[fastrand::usize(..Fault::ALL.len())]),
                    17 => {
                        if let Some(current) = cache.current() {
                            server.revoke(current.secret());
                        }
                    }
                    18 => server.jwt_clock(Some(if fastrand::bool() { 7200 } else { -7200 })),
                    _ => server.jwt_clock(None),
                }
            }
            applied
        })
    };
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (svc, stop, counts) = (svc.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match svc.clone().oneshot(Request::new(String::new())).await {
                        Ok(r) if r.status() == StatusCode::OK => &counts.served,
                        Ok(r) => {
                            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
                            &counts.rejected
                        }
                        Err(err) => {
                            let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
                            assert_clean(err);
                            assert!(
                                matches!(
                                    err.kind(),
                                    ErrorKind::Transient | ErrorKind::InvalidResponse
                                ),
                                "{err}"
                            );
                            &counts.failed
                        }
                    }
                    .fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::SeqCst);
    let faults_applied = chaos.await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }

    // Healed: the next request is served.
    server.set(Fault::None);
    server.jwt_clock(None);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = svc.clone().oneshot(Request::new(String::new())).await;
        if r.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(Instant::now() < deadline, "not healed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let served = counts.served.load(Ordering::SeqCst);
    let rejected = counts.rejected.load(Ordering::SeqCst);
    let failed = counts.failed.load(Ordering::SeqCst);
    let (fetches, issued, lost) = (calls.get(), server.issued(), server.lost());
    println!(
        "soak {secs} s, {faults_applied} fault switches: {} requests ({served} served, \
         {rejected} 401 after replay, {failed} errors), {fetches} token requests, \
         {issued} tokens issued, {lost} refresh tokens lost, {} expired tokens sent",
        served + rejected + failed,
        expired_sent.load(Ordering::SeqCst)
    );
    assert!(served > 0);
    assert_eq!(lost, 0, "a rotated refresh token was lost");
    assert_eq!(
        store.get().unwrap().secret(),
        server.current_refresh_token()
    );
    assert_eq!(
        expired_sent.load(Ordering::SeqCst),
        0,
        "a token was sent past its time"
    );
    // Every token request either succeeded or was followed by backoff (>= 50 ms) or the
    // 300 ms cooldown: never one per request.
    let bound = issued + (secs as usize * 1000) / 50 + 10;
    assert!(fetches <= bound, "{fetches} token requests (bound {bound})");
    assert!(fetches * 10 < served + rejected + failed);
}
