//! Real OS processes sharing one Redis: this test binary run again with
//! `TOWER_BEARER_FLEET_CHILD` set, running only the ignored `processes::fleet_child` test, which
//! prints one `CHILD ...` line of counts. The token servers live in the parent and count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::secret::{ClientSecret, RefreshToken};
use tower_bearer::source::{ClientAuth, ClientCredentials, RefreshTokenGrant};
use tower_bearer::store::{RedisStore, RefreshTokenStore};
use tower_bearer::{
    Backoff, BearerAuthLayer, RefreshTier, TokenCache, TokenCacheBuilder, TokenSource,
};

use crate::family::Family;
use crate::support::{Issuer, RedisServer, api_client};
use crate::{Tiers, cache, fleet};

const CHILD_ENV: &str = "TOWER_BEARER_FLEET_CHILD";
const CHILDREN: usize = 4;

/// The multi-process tests one at a time: each runs four children on a two-core machine.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one child reports.
#[derive(Debug, Default)]
struct Counts {
    served: u32,
    failed: u32,
    refreshes: u32,
    refresh_errors: u32,
    shared: u32,
    leased: u32,
    fallback: u32,
}

impl Counts {
    const FIELDS: [&'static str; 7] = [
        "served",
        "failed",
        "refreshes",
        "refresh_errors",
        "shared",
        "leased",
        "fallback",
    ];

    fn values(&self) -> [u32; 7] {
        [
            self.served,
            self.failed,
            self.refreshes,
            self.refresh_errors,
            self.shared,
            self.leased,
            self.fallback,
        ]
    }

    fn line(&self) -> String {
        let fields: Vec<String> = Self::FIELDS
            .iter()
            .zip(self.values())
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        format!("CHILD {}", fields.join(" "))
    }

    fn parse(line: &str) -> Option<Counts> {
        let mut values = [0u32; 7];
        for field in line.strip_prefix("CHILD ")?.split(' ') {
            let (name, value) = field.split_once('=')?;
            let at = Self::FIELDS.iter().position(|f| *f == name)?;
            values[at] = value.parse().ok()?;
        }
        let [
            served,
            failed,
            refreshes,
            refresh_errors,
            shared,
            leased,
            fallback,
        ] = values;
        Some(Counts {
            served,
            failed,
            refreshes,
            refresh_errors,
            shared,
            leased,
            fallback,
        })
    }
}

/// What a child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Client credentials through the fleet, a request every 20 ms.
    Replica,
    /// One token request through the fleet, which the parent makes hang, then gets killed.
    Hold,
    /// Rotating refresh tokens in a `RedisStore`, without the fleet tier: every process
    /// rotates, contending for the store.
    Rotate,
    /// The same, with the fleet tier.
    RotateFleet,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Replica => "replica",
            Mode::Hold => "hold",
            Mode::Rotate => "rotate",
            Mode::RotateFleet => "rotate-fleet",
        }
    }

    fn parse(name: &str) -> Mode {
        [Mode::Replica, Mode::Hold, Mode::Rotate, Mode::RotateFleet]
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap()
    }
}

fn spawn(mode: Mode, redis: &str, base: &str, run: Duration) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::fleet_child",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            format!("{}\n{redis}\n{base}\n{}", mode.name(), run.as_millis()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn run_children(mode: Mode, redis: &str, base: &str, run: Duration) -> Vec<Counts> {
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| spawn(mode, redis, base, run))
        .collect();
    let mut reports = Vec::new();
    for child in children {
        let output = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let counts = stdout.lines().find_map(Counts::parse).unwrap_or_else(|| {
            panic!(
                "a child printed no counts ({}):\n{stdout}\n{stderr}",
                output.status
            )
        });
        assert!(output.status.success(), "{counts:?}");
        if counts.failed > 0 || counts.refresh_errors > 0 {
            eprintln!("a child's errors:\n{stderr}");
        }
        reports.push(counts);
    }
    eprintln!("{reports:#?}");
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_over_several_lifetimes_make_one_token_request_per_lifetime() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start();
    let lifetime = Duration::from_secs(3);
    let issuer = Issuer::start(lifetime).await;
    let run = Duration::from_secs(8);
    let reports = run_children(Mode::Replica, &redis.url(), &issuer.base, run).await;

    for counts in &reports {
        assert_eq!(counts.failed, 0, "{reports:?}");
        assert_eq!(counts.refresh_errors, 0, "{reports:?}");
        assert_eq!(counts.fallback, 0, "{reports:?}");
        assert!(counts.served > 0, "{reports:?}");
    }
    let state = issuer.state();
    assert_eq!(
        (state.api_expired, state.api_unknown),
        (0, 0),
        "never an expired token"
    );
    let served: u32 = reports.iter().map(|c| c.served).sum();
    assert_eq!(state.api_ok, served);
    // A token is taken from the fleet while it is fresh through the refresh window (1 s) plus
    // the most jitter (0.3 s): each lifetime, one process fetches after 1.7 s at the earliest
    // (less what a loaded machine can delay one fetch and not the next).
    let issued = &state.issued_at;
    for pair in issued.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1200),
            "two fetches {gap:?} apart: {issued:?}"
        );
    }
    // 8 s of 3 s tokens refreshed after 1.7-2 s: 1 + 8/1.7 at most. Four processes alone
    // would fetch four times as often.
    assert!(
        (3..=6).contains(&issued.len()),
        "{} token requests: {reports:?}",
        issued.len()
    );
    let leased: u32 = reports.iter().map(|c| c.leased).sum();
    let shared: u32 = reports.iter().map(|c| c.shared).sum();
    assert_eq!(leased as usize, issued.len(), "{reports:?}");
    assert!(
        shared >= 3 * leased - 1,
        "the other three took each token: {reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_killed_mid_fetch_is_taken_over_after_its_lease_expires() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start();
    let issuer = Issuer::start(Duration::from_secs(3600)).await;
    issuer.state().hang_next = 1;
    let mut holder = spawn(Mode::Hold, &redis.url(), &issuer.base, Duration::ZERO);

    // It holds the lease and its token request hangs at the server: kill it there.
    let lease = format!("{}:lease", fleet(&redis.url()).build().unwrap().key_base());
    let started = std::time::Instant::now();
    while issuer.issued() < 1 || redis.cli(&["EXISTS", &lease]).trim() != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the child never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.kill().await.unwrap();
    let killed_at = std::time::Instant::now();
    assert_eq!(
        redis.cli(&["EXISTS", &lease]).trim(),
        "1",
        "a dead holder's lease stays..."
    );

    // Two replicas need a token now: they wait for the lease to expire, then one fetches.
    let tiers = Tiers::default();
    let caches: Vec<_> = (0..2)
        .map(|_| cache(&issuer, fleet(&redis.url()).build().unwrap(), &tiers))
        .collect();
    let service = |cache: &TokenCache<ClientCredentials>| {
        ServiceBuilder::new()
            .layer(BearerAuthLayer::from_cache(cache.clone()))
            .service(api_client())
    };
    let base = &issuer.base;
    let requests = caches.iter().flat_map(|cache| {
        let service = service(cache);
        (0..50).map(move |_| {
            let request = http::Request::get(format!("{base}/api")).body(()).unwrap();
            service.clone().oneshot(request)
        })
    });
    let responses = futures::future::join_all(requests).await;
    assert!(
        responses
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.status().is_success())),
        "no request fails"
    );
    // ...until it expires (1 s after its last renewal).
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed_at.elapsed()
    );
    assert_eq!(issuer.issued(), 2, "the killed fetch and one more");
    let mut tiers = tiers.all();
    tiers.sort_by_key(|t| t.as_str());
    assert_eq!(tiers, [RefreshTier::Leased, RefreshTier::Shared]);
}

async fn rotation_under_contention(mode: Mode) {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start();
    let family = Family::start().await;
    family.state().expires_in = Duration::from_secs(2);
    let run = Duration::from_secs(6);
    let reports = run_children(mode, &redis.url(), &family.base, run).await;

    assert!(!family.revoked());
    let (rotations, live) = {
        let state = family.state();
        assert_eq!(
            state.invalid_grants, 0,
            "no spent refresh token ever reached the server: {reports:?}"
        );
        assert_eq!(state.api_rejected, 0, "{reports:?}");
        for counts in &reports {
            assert_eq!(counts.failed, 0, "{reports:?}");
            assert_eq!(counts.refresh_errors, 0, "{reports:?}");
            assert!(counts.served > 0, "{reports:?}");
        }
        let mut presented = state.presented.clone();
        presented.sort();
        presented.dedup();
        assert_eq!(
            presented.len(),
            state.presented.len(),
            "a token spent twice"
        );
        (state.presented.len(), state.live().to_owned())
    };
    // Redis holds the family's live refresh token.
    let stored = RedisStore::new(&fleet(&redis.url()).build().unwrap())
        .load()
        .await
        .unwrap();
    assert_eq!(stored, Some(RefreshToken::new(live)));
    if mode == Mode::RotateFleet {
        // One rotation per lifetime for the fleet, not one per process: 2 s tokens are taken
        // from the fleet while fresh through the window (1 s) and the most jitter (0.3 s), so
        // the fleet rotates every 0.7 s at most often: 1 + 6/0.7 in 6 s.
        assert!(rotations <= 10, "{rotations} rotations: {reports:?}");
    } else {
        assert!(
            rotations >= 2 * CHILDREN,
            "every process rotated: {reports:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_contention_across_processes_never_reaches_reuse_detection() {
    rotation_under_contention(Mode::Rotate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_through_the_fleet_tier_costs_one_rotation_per_lifetime() {
    rotation_under_contention(Mode::RotateFleet).await;
}

/// One child; see the module docs.
#[test]
#[ignore = "a child process of the multi-process fleet tests, which run it"]
fn fleet_child() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        eprintln!("only runs as a child of the multi-process fleet tests");
        return;
    };
    let mut lines = config.lines();
    let mode = Mode::parse(lines.next().unwrap());
    let redis = lines.next().unwrap().to_owned();
    let base = lines.next().unwrap().to_owned();
    let run = Duration::from_millis(lines.next().unwrap().parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counts = runtime.block_on(child(mode, redis, base, run));
    println!("{}", counts.line());
}

async fn child(mode: Mode, redis: String, base: String, run: Duration) -> Counts {
    let issuer = Issuer::remote(&base);
    let fleet = fleet(&redis).build().unwrap();
    let tallies: Arc<[AtomicU32; 5]> = Arc::default();
    let mut counts = match mode {
        Mode::Replica | Mode::Hold => {
            let source = ClientCredentials::builder(
                &issuer.url,
                ClientAuth::client_secret_post("test-client", ClientSecret::new("test-secret")),
            )
            .build()
            .unwrap();
            let cache = tune(TokenCache::builder(source), &tallies)
                .fleet(fleet)
                .build();
            if mode == Mode::Hold {
                let _ = cache.token().await; // the parent kills us while this hangs
                return Counts::default();
            }
            requests(cache, &base, run).await
        }
        Mode::Rotate | Mode::RotateFleet => {
            let store = RedisStore::new(&fleet).with_initial(RefreshToken::new("r0"));
            let source = RefreshTokenGrant::builder(format!("{base}/token"), store)
                .build()
                .unwrap();
            let mut builder = tune(TokenCache::builder(source), &tallies);
            if mode == Mode::RotateFleet {
                builder = builder.fleet(fleet);
            }
            requests(builder.build(), &base, run).await
        }
    };
    let [source, errors, shared, leased, fallback] =
        std::array::from_fn(|i| tallies[i].load(Ordering::SeqCst));
    counts.refreshes = source + shared + leased + fallback;
    counts.refresh_errors = errors;
    counts.shared = shared;
    counts.leased = leased;
    counts.fallback = fallback;
    counts
}

/// The children's cache settings: 1 s window, 0.3 s jitter, and a tally of refreshes by
/// outcome (source, error, shared, leased, fallback).
fn tune<P: TokenSource>(
    builder: TokenCacheBuilder<P>,
    tallies: &Arc<[AtomicU32; 5]>,
) -> TokenCacheBuilder<P> {
    let tallies = tallies.clone();
    builder
        .refresh_window(Duration::from_secs(1))
        .jitter(Duration::from_millis(300))
        .safety_margin(Duration::from_millis(500))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
        ))
        .fetch_timeout(Duration::from_secs(10))
        .on_refresh(move |event| {
            let at = match (event.error(), event.tier()) {
                (Some(err), _) => {
                    eprintln!("refresh failed: {err}");
                    1
                }
                (None, Some(RefreshTier::Shared)) => 2,
                (None, Some(RefreshTier::Leased)) => 3,
                (None, Some(RefreshTier::Fallback)) => 4,
                (None, _) => 0,
            };
            tallies[at].fetch_add(1, Ordering::SeqCst);
        })
}

/// A request to the API every 20 ms for `run`.
async fn requests<P: TokenSource>(cache: TokenCache<P>, base: &str, run: Duration) -> Counts {
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(api_client());
    let mut counts = Counts::default();
    let deadline = tokio::time::Instant::now() + run;
    while tokio::time::Instant::now() < deadline {
        let request = http::Request::get(format!("{base}/api")).body(()).unwrap();
        match api.clone().oneshot(request).await {
            Ok(response) if response.status().is_success() => counts.served += 1,
            Ok(response) => {
                eprintln!("the API answered {}", response.status());
                counts.failed += 1;
            }
            Err(err) => {
                eprintln!("request failed: {err}");
                counts.failed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counts
}
