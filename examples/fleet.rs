//! Many replicas, one token request per token lifetime: the fleet tier through Redis.
//!
//!     cargo run --example fleet --features redis
//!
//! Starts its own `redis-server` on a free loopback port (in a temp directory, stopped at the
//! end) when one is on the PATH, or uses `REDIS_URL` if set; otherwise it says how to get one.
//! Six replicas (each its own token source, connection to Redis and cache, as six processes
//! would have) share one client-credentials credential against a token server embedded here.
//! Tokens live 3 seconds. It prints, the same on every run (never a token):
//!
//! ```text
//! t=0.0s: 6 replicas x 100 concurrent requests: 600 accepted; token endpoint calls: 1
//!   1 replica fetched under the fleet's lease and published the token; 5 took it from Redis
//! t=2.0s: 6 replicas x 100 concurrent requests: 600 accepted; token endpoint calls: 2
//!   1 replica fetched under the fleet's lease and published the token; 5 took it from Redis
//! 1200 requests, 1200 accepted, 2 token endpoint calls: one per token lifetime for the fleet,
//! where six replicas on their own would have made 12.
//! ```
//!
//! Set `RUST_LOG=tower_bearer=debug` to watch which tier served each refresh.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use futures::future::join_all;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::fleet::RedisFleet;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{BearerAuthLayer, RefreshTier, TokenCache};

const REPLICAS: usize = 6;
const TOKEN_LIFETIME: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let redis = match Redis::start() {
        Ok(redis) => redis,
        Err(why) => {
            eprintln!(
                "{why}\nThis example needs a Redis: install redis-server (Debian/Ubuntu: \
                 `apt-get install redis-server`; macOS: `brew install redis`) or set REDIS_URL."
            );
            std::process::exit(2);
        }
    };
    let token_url = token_server().await;

    // What every replica of the service would build at start-up. The identity names the
    // credential (token URL, client, scope): replicas with the same identity share tokens.
    let tiers = Arc::new(Mutex::new(Vec::new()));
    let replicas: Vec<_> = (0..REPLICAS)
        .map(|_| {
            let fleet = RedisFleet::builder(&redis.url, format!("fleet-demo {token_url}"))
                .build()
                .expect("a valid Redis URL");
            let source = ClientCredentials::builder(
                &token_url,
                ClientAuth::client_secret_basic("fleet-demo", ClientSecret::new("demo-secret")),
            )
            .build()
            .expect("a valid token URL");
            let tiers = tiers.clone();
            let cache = TokenCache::builder(source)
                .refresh_window(Duration::from_millis(1500))
                .jitter(Duration::ZERO)
                .safety_margin(Duration::from_millis(300))
                .on_refresh(move |event| tiers.lock().unwrap().extend(event.tier()))
                .fleet(fleet)
                .build();
            // The API this replica calls: here, a stand-in that accepts any bearer token.
            ServiceBuilder::new()
                .layer(BearerAuthLayer::from_cache(cache))
                .service(service_fn(|req: http::Request<()>| async move {
                    let mut response = http::Response::new(());
                    if !req.headers().contains_key(http::header::AUTHORIZATION) {
                        *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, BoxError>(response)
                }))
        })
        .collect();

    let started = tokio::time::Instant::now();
    let mut total = 0;
    for at in [Duration::ZERO, Duration::from_secs(2)] {
        tokio::time::sleep_until(started + at).await;
        tiers.lock().unwrap().clear();
        let requests = replicas.iter().flat_map(|replica| {
            (0..100).map(move |_| replica.clone().oneshot(http::Request::new(())))
        });
        let accepted = join_all(requests)
            .await
            .into_iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
            .count();
        // The stale replicas refresh in the background: wait for the last of them.
        while tiers.lock().unwrap().len() < REPLICAS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        total += accepted;
        let tiers = tiers.lock().unwrap().clone();
        let count = |tier| tiers.iter().filter(|t| **t == tier).count();
        println!(
            "t={:.1}s: {REPLICAS} replicas x 100 concurrent requests: {accepted} accepted; token endpoint calls: {}",
            at.as_secs_f64(),
            CALLS.load(Ordering::SeqCst)
        );
        println!(
            "  {} replica fetched under the fleet's lease and published the token; {} took it from Redis",
            count(RefreshTier::Leased),
            count(RefreshTier::Shared)
        );
    }
    let calls = CALLS.load(Ordering::SeqCst);
    println!(
        "{total} requests, {total} accepted, {calls} token endpoint calls: one per token lifetime for the fleet,\n\
         where six replicas on their own would have made {}.",
        REPLICAS * calls
    );
    Ok(())
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// A client-credentials token endpoint on 127.0.0.1 that counts its calls.
async fn token_server() -> String {
    async fn token() -> (StatusCode, axum::Json<serde_json::Value>) {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        // A token endpoint takes a while: long enough for every replica to want the token.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body = serde_json::json!({
            "access_token": format!("demo-token-{n}"),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs(),
        });
        (StatusCode::OK, axum::Json(body))
    }
    let app = Router::new().route("/token", post(token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

/// The Redis the example uses: `REDIS_URL`, or a `redis-server` it starts and stops.
struct Redis {
    url: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl Redis {
    fn start() -> Result<Redis, String> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Ok(Redis {
                url,
                child: None,
                dir: None,
            });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir =
            std::env::temp_dir().join(format!("tower-bearer-fleet-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start redis-server: {e}"))?;
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(child),
            dir: Some(dir),
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("redis-server did not start listening within 5 s".into())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
