//! Four real OS processes share one `FileStore` and one refresh-token family, against a token
//! server (in the parent, on 127.0.0.1) that rotates refresh tokens and detects reuse: a spent
//! refresh token answers `invalid_grant` and revokes the family. Access tokens live 2 s and each
//! child runs for 6 s, so every child refreshes several times, each time spending the token
//! another process saved a moment before.
//!
//! The children are this test binary run again with `TOWER_BEARER_ROTATION_CHILD` set, running
//! only the ignored `child_process` test; each prints one `CHILD ...` line of counts.

#[path = "sources/family.rs"]
mod family;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use family::Family;
use http::header::AUTHORIZATION;
use tower::{ServiceExt, service_fn};
use tower_bearer::store::FileStore;
use tower_bearer::{BearerAuthLayer, TokenCache, source::RefreshTokenGrant};

const CHILD_ENV: &str = "TOWER_BEARER_ROTATION_CHILD";
const CHILDREN: usize = 4;
const RUN: Duration = Duration::from_secs(6);
const LIFETIME: Duration = Duration::from_secs(2);

/// What one child reports.
#[derive(Debug, Default)]
struct Counts {
    served: u32,
    failed: u32,
    refreshes: u32,
    refresh_errors: u32,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "CHILD served={} failed={} refreshes={} refresh_errors={}",
            self.served, self.failed, self.refreshes, self.refresh_errors
        )
    }

    fn parse(line: &str) -> Option<Counts> {
        let mut counts = Counts::default();
        for field in line.strip_prefix("CHILD ")?.split(' ') {
            let (name, value) = field.split_once('=')?;
            let value = value.parse().ok()?;
            match name {
                "served" => counts.served = value,
                "failed" => counts.failed = value,
                "refreshes" => counts.refreshes = value,
                "refresh_errors" => counts.refresh_errors = value,
                _ => return None,
            }
        }
        Some(counts)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_sharing_a_file_store_never_spend_a_refresh_token_twice() {
    let family = Family::start().await;
    family.state().expires_in = LIFETIME;
    let dir = std::env::temp_dir().join(format!(
        "tower-bearer-processes-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("refresh-token");
    std::fs::write(&path, "r0\n").unwrap();
    // The store refuses a token file others may read.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args(["--exact", "child_process", "--ignored", "--nocapture"])
                .env(CHILD_ENV, format!("{}\n{}", family.base, path.display()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reports = Vec::new();
    for child in children {
        let output = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let counts = stdout.lines().find_map(Counts::parse).unwrap_or_else(|| {
            panic!(
                "a child printed no counts ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        assert!(output.status.success(), "{counts:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if counts.failed > 0 || counts.refresh_errors > 0 {
            eprintln!("a child's errors:\n{stderr}");
        }
        reports.push(counts);
    }
    eprintln!("{reports:#?}");

    let state = family.state();
    assert_eq!(state.invalid_grants, 0, "{reports:?}");
    assert_eq!(state.api_rejected, 0, "{reports:?}");
    for counts in &reports {
        assert_eq!(counts.failed, 0, "{reports:?}");
        assert_eq!(counts.refresh_errors, 0, "{reports:?}");
        assert!(counts.served > 0, "{reports:?}");
        // Several token lifetimes: the first token and at least two more.
        assert!(counts.refreshes >= 3, "{reports:?}");
    }
    let served: u32 = reports.iter().map(|c| c.served).sum();
    assert_eq!(state.api_ok, served);
    // Every refresh spent the live token; the file holds the one the server issued last.
    let refreshes: u32 = reports.iter().map(|c| c.refreshes).sum();
    assert_eq!(state.presented.len(), refreshes as usize);
    let mut presented = state.presented.clone();
    presented.dedup();
    assert_eq!(
        presented.len(),
        state.presented.len(),
        "a token spent twice"
    );
    let live = state.live().to_owned();
    drop(state);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{live}\n"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// One child: a `BearerAuthLayer` stack over a `RefreshTokenGrant` on the shared file, sending
/// a request to the parent's API every 20 ms for `RUN`.
#[test]
#[ignore = "a child process of four_processes_sharing_a_file_store_never_spend_a_refresh_token_twice, which runs it"]
fn child_process() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        eprintln!("only runs as a child of the multi-process test");
        return;
    };
    let (base, path) = config.split_once('\n').unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counts = runtime.block_on(child(base.to_owned(), path.into()));
    println!("{}", counts.line());
}

async fn child(base: String, path: std::path::PathBuf) -> Counts {
    let refreshes = Arc::new(AtomicU32::new(0));
    let refresh_errors = Arc::new(AtomicU32::new(0));
    let source = RefreshTokenGrant::builder(format!("{base}/token"), FileStore::new(path))
        .build()
        .unwrap();
    let cache = TokenCache::builder(source)
        // Half the lifetime, with room for a loaded machine (four processes on two cores, or
        // a CI box): a refresh that waits for the file lock must still arrive usable.
        .refresh_window(Duration::from_secs(1))
        .jitter(Duration::from_millis(200))
        .safety_margin(Duration::from_millis(400))
        .backoff(tower_bearer::Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
        ))
        .on_refresh({
            let (refreshes, refresh_errors) = (refreshes.clone(), refresh_errors.clone());
            move |event| {
                match event.error() {
                    None => refreshes.fetch_add(1, Ordering::SeqCst),
                    Some(err) => {
                        eprintln!("refresh failed: {err}");
                        refresh_errors.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        })
        .build();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = tower::ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache))
        .service(service_fn(move |req: http::Request<()>| {
            let http = http.clone();
            async move {
                let mut call = http.get(req.uri().to_string());
                if let Some(auth) = req.headers().get(AUTHORIZATION) {
                    call = call.header(AUTHORIZATION, auth.clone());
                }
                let response = call.send().await?;
                let mut answer = http::Response::new(());
                *answer.status_mut() = response.status();
                Ok::<_, tower::BoxError>(answer)
            }
        }));

    let mut counts = Counts::default();
    let deadline = tokio::time::Instant::now() + RUN;
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
    counts.refreshes = refreshes.load(Ordering::SeqCst);
    counts.refresh_errors = refresh_errors.load(Ordering::SeqCst);
    counts
}
