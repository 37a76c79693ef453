//! Real Redis servers (and a Redis Cluster) started by the tests on free loopback ports, each in
//! a temp directory and stopped on drop; and a counting token issuer with an API that checks
//! every token it is sent.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

const INSTALL: &str = "the fleet tests need a real Redis: install `redis-server` and `redis-cli` \
     (Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`). They are \
     never skipped: .ci/run installs them.";

fn need(program: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{program}` was not found on the PATH: {INSTALL}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-bearer-{name}-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `redis-server` on 127.0.0.1, no persistence, in its own temp directory.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    tls: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new())
    }

    /// A server that speaks only TLS on its port, with `cert`/`key` (PEM files).
    pub fn with_tls(cert: &std::path::Path, key: &std::path::Path) -> RedisServer {
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let mut server = RedisServer {
            port: free_port(),
            dir: temp_dir("redis-tls"),
            extra: vec![
                "--tls-cert-file".into(),
                path(cert),
                "--tls-key-file".into(),
                path(key),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            child: None,
            tls: true,
        };
        // The same port, for TLS only.
        server.extra.extend([
            "--tls-port".into(),
            server.port.to_string(),
            "--port".into(),
            "0".into(),
        ]);
        server.run();
        server
    }

    /// A server that requires `password` (Redis AUTH).
    pub fn with_password(password: &str) -> RedisServer {
        Self::start_with(vec!["--requirepass".into(), password.into()])
    }

    /// A server started with these extra arguments (`--appendonly yes`, `--replicaof ...`).
    pub fn with_args(extra: &[&str]) -> RedisServer {
        Self::start_with(extra.iter().map(|s| s.to_string()).collect())
    }

    fn start_with(extra: Vec<String>) -> RedisServer {
        need("redis-server");
        let mut server = RedisServer {
            port: free_port(),
            dir: temp_dir("redis"),
            extra,
            child: None,
            tls: false,
        };
        server.run();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start redis-server ({e}): {INSTALL}"));
        self.child = Some(child);
        let started = Instant::now();
        let ready = |port| match self.tls {
            true => TcpStream::connect(("127.0.0.1", port)).is_ok(),
            false => ping(port),
        };
        while !ready(self.port) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server (as an outage would), keeping its port for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Run one command with `redis-cli` and return its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn cli(port: u16, args: &[&str]) -> String {
    need("redis-cli");
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run redis-cli ({e}): {INSTALL}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0u8; 7];
    // `+PONG`, or `-NOAUTH` from a server that requires a password: either way it answers.
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && (&answer == b"+PONG\r\n" || answer.starts_with(b"-NOAUTH"))
}

/// A Redis Cluster of `n` masters, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        need("redis-cli");
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                RedisServer::start_with(
                    ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
                        .map(String::from)
                        .into(),
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let started = Instant::now();
        for node in &nodes {
            while !node.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the cluster never became ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A token endpoint for `grant_type=client_credentials` that counts what it issues, and an API
/// that answers 200 only to a token it issued that has not expired.
#[derive(Clone)]
pub struct Issuer {
    pub base: String,
    pub url: String,
    state: Arc<Mutex<IssuerState>>,
    pub issued: Arc<AtomicU32>,
}

pub struct IssuerState {
    pub expires_in: Duration,
    /// How long each token request takes.
    pub latency: Duration,
    /// Token requests that never answer, counted from the next one.
    pub hang_next: u32,
    access: HashMap<String, Instant>,
    /// When each token was issued, in order.
    pub issued_at: Vec<Instant>,
    pub api_ok: u32,
    pub api_expired: u32,
    pub api_unknown: u32,
}

impl Issuer {
    pub async fn start(expires_in: Duration) -> Issuer {
        let issuer = Issuer::new(String::new(), expires_in);
        let router = Router::new()
            .route("/token", axum::routing::post(issue))
            .route("/api", axum::routing::get(api))
            .with_state(issuer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Issuer::new(format!("http://{addr}"), Duration::ZERO).sharing_state_of(issuer)
    }

    /// An issuer in another process, reached at `base` (its counts are the parent's).
    pub fn remote(base: &str) -> Issuer {
        Issuer::new(base.to_owned(), Duration::ZERO)
    }

    fn new(base: String, expires_in: Duration) -> Issuer {
        Issuer {
            url: format!("{base}/token"),
            base,
            state: Arc::new(Mutex::new(IssuerState {
                expires_in,
                latency: Duration::ZERO,
                hang_next: 0,
                access: HashMap::new(),
                issued_at: Vec::new(),
                api_ok: 0,
                api_expired: 0,
                api_unknown: 0,
            })),
            issued: Arc::default(),
        }
    }

    /// This address, with the state and counts of `served`.
    fn sharing_state_of(self, served: Issuer) -> Issuer {
        Issuer {
            state: served.state,
            issued: served.issued,
            ..self
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, IssuerState> {
        self.state.lock().unwrap()
    }

    pub fn issued(&self) -> u32 {
        self.issued.load(Ordering::SeqCst)
    }
}

async fn issue(State(issuer): State<Issuer>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let n = issuer.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let (latency, hang, expires_in) = {
        let mut s = issuer.state.lock().unwrap();
        let hang = s.hang_next > 0;
        s.hang_next = s.hang_next.saturating_sub(1);
        (s.latency, hang, s.expires_in)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    tokio::time::sleep(latency).await;
    let token = format!("access-{n}-{:x}", fastrand::u64(..));
    {
        let mut s = issuer.state.lock().unwrap();
        s.access.insert(token.clone(), Instant::now() + expires_in);
        s.issued_at.push(Instant::now());
    }
    axum::Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in.as_secs_f64(),
    }))
    .into_response()
}

async fn api(State(issuer): State<Issuer>, headers: HeaderMap) -> StatusCode {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut s = issuer.state.lock().unwrap();
    match s.access.get(token).copied() {
        Some(expires_at) if Instant::now() < expires_at => {
            s.api_ok += 1;
            StatusCode::OK
        }
        Some(_) => {
            s.api_expired += 1;
            StatusCode::UNAUTHORIZED
        }
        None => {
            s.api_unknown += 1;
            StatusCode::UNAUTHORIZED
        }
    }
}

/// A `tower::Service` that sends requests to the issuer's API with reqwest.
pub fn api_client() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = tower::BoxError,
    Future = impl Send,
> + Clone
+ Send {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    tower::service_fn(move |req: http::Request<()>| {
        let http = http.clone();
        async move {
            let mut call = http.get(req.uri().to_string());
            if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
                call = call.header(header::AUTHORIZATION, auth.clone());
            }
            let response = call.send().await?;
            let mut answer = http::Response::new(());
            *answer.status_mut() = response.status();
            Ok::<_, tower::BoxError>(answer)
        }
    })
}
