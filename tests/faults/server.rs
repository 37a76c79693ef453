//! A rotating `refresh_token` endpoint on 127.0.0.1 that misbehaves on command.
//!
//! A raw TCP server, not axum: a framework cannot stop listening, reset a connection halfway
//! through a body or trickle one out byte by byte. Every answer closes its connection, so each
//! token request is one connection and one count.
//!
//! When it behaves, it accepts only the newest refresh token `rt-{k}-secret` and answers with
//! `access-{k+1}` and `rt-{k+1}-secret`, recording when that access token stops being valid. A
//! faulty answer rotates nothing: the client never saw a new token, so a server with a reuse
//! grace period (as real ones have) still accepts the old one. A request presenting a refresh
//! token that was already spent is a *lost rotation*: the client failed to keep the newer one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the token endpoint does with the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Rotate and answer a token.
    None,
    /// `503` with an HTML page that echoes the request's refresh token.
    Unavailable,
    /// `429` with `Retry-After: {0}` (seconds).
    RateLimited(u64),
    /// Read the request and never answer.
    Hang,
    /// Stop listening: connections are refused.
    Refused,
    /// Headers and half the body, then a TCP reset.
    ResetMidBody,
    /// Headers, then the body one byte every 100 ms.
    SlowLoris,
    /// `200` with `application/json` that is not JSON.
    MalformedJson,
    /// `200` with a 100 KiB JSON body.
    Oversize,
    /// `200` with a `text/html` login page.
    HtmlPage,
}

impl Fault {
    /// Every fault, for the soak test.
    pub const ALL: [Fault; 9] = [
        Fault::Unavailable,
        Fault::RateLimited(1),
        Fault::Hang,
        Fault::Refused,
        Fault::ResetMidBody,
        Fault::SlowLoris,
        Fault::MalformedJson,
        Fault::Oversize,
        Fault::HtmlPage,
    ];
}

/// What the server has seen and issued.
#[derive(Default)]
struct Ledger {
    /// `k` of the one refresh token it accepts, `rt-{k}-secret`.
    current: u32,
    /// Each access token issued and when it stops being valid.
    issued: HashMap<String, Instant>,
    /// Access tokens revoked before their time.
    revoked: Vec<String>,
}

struct Shared {
    fault: watch::Sender<Fault>,
    ledger: Mutex<Ledger>,
    /// Lifetime of the access tokens issued.
    expires_in: Mutex<Duration>,
    /// `Some(offset)`: issue JWTs without `expires_in`, `iat` and `exp` read on a clock
    /// `offset` seconds off (the issuer's clock jumped).
    jwt_clock: Mutex<Option<i64>>,
    /// Token requests that reached the server (one per connection).
    hits: AtomicUsize,
    /// Requests presenting a refresh token that had been spent.
    lost: AtomicUsize,
}

/// The server and the handle that commands it.
#[derive(Clone)]
pub struct FaultServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

pub fn refresh_token(k: u32) -> String {
    format!("rt-{k}-secret")
}

impl FaultServer {
    /// Start on an ephemeral port, behaving, issuing tokens that live `expires_in`.
    pub async fn start(expires_in: Duration) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            fault: watch::Sender::new(Fault::None),
            ledger: Mutex::default(),
            expires_in: Mutex::new(expires_in),
            jwt_clock: Mutex::new(None),
            hits: AtomicUsize::new(0),
            lost: AtomicUsize::new(0),
        });
        tokio::spawn(listen(listener, addr, shared.clone()));
        FaultServer { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// Issue JWTs dated by a clock `offset` seconds off, without `expires_in`.
    pub fn jwt_clock(&self, offset: Option<i64>) {
        *self.shared.jwt_clock.lock().unwrap() = offset;
    }

    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Refresh tokens presented after they were spent: rotations the client lost.
    pub fn lost(&self) -> usize {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// The refresh token the server accepts now.
    pub fn current_refresh_token(&self) -> String {
        refresh_token(self.shared.ledger.lock().unwrap().current)
    }

    /// How many access tokens it has issued.
    pub fn issued(&self) -> usize {
        self.shared.ledger.lock().unwrap().issued.len()
    }

    /// Revoke an access token before its time, as an API that rejects it sooner than
    /// `expires_in` said.
    pub fn revoke(&self, access_token: &str) {
        self.shared
            .ledger
            .lock()
            .unwrap()
            .revoked
            .push(access_token.to_owned());
    }

    /// What an API would say to `Authorization: Bearer {token}` now: valid, or why not.
    pub fn check(&self, access_token: &str) -> Result<(), &'static str> {
        let ledger = self.shared.ledger.lock().unwrap();
        let Some(until) = ledger.issued.get(access_token) else {
            return Err("never issued");
        };
        if ledger.revoked.iter().any(|r| r == access_token) {
            return Err("revoked");
        }
        if Instant::now() >= *until {
            return Err("expired");
        }
        Ok(())
    }
}

async fn listen(mut listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut faults = shared.fault.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(handle(stream, shared.clone()));
                }
            }
            _ = faults.changed() => {
                if *faults.borrow_and_update() == Fault::Refused {
                    drop(listener);
                    let _ = faults.wait_for(|f| *f != Fault::Refused).await;
                    // The same port again (SO_REUSEADDR is set by tokio on Unix).
                    listener = loop {
                        match TcpListener::bind(addr).await {
                            Ok(listener) => break listener,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    };
                }
            }
        }
    }
}

/// Read one request: its form body's `refresh_token`, if any.
async fn read_request(stream: &mut TcpStream) -> Option<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[header_end..header_end + length];
    Some(
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.into_owned()),
    )
}

async fn write(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

fn json_type() -> (&'static str, String) {
    ("content-type", "application/json".to_string())
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(presented) = read_request(&mut stream).await else {
        return;
    };
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let presented = presented.unwrap_or_default();
    let fault = *shared.fault.borrow();
    match fault {
        Fault::None | Fault::Refused => answer_token(&mut stream, &shared, &presented).await,
        Fault::Unavailable => {
            let page = format!("<html>Service unavailable for {presented}</html>");
            let headers = [("content-type", "text/html".to_string())];
            write(
                &mut stream,
                "503 Service Unavailable",
                &headers,
                page.as_bytes(),
            )
            .await;
        }
        Fault::RateLimited(secs) => {
            let headers = [json_type(), ("retry-after", secs.to_string())];
            let body = format!(r#"{{"error":"slow_down","error_description":"{presented}"}}"#);
            write(
                &mut stream,
                "429 Too Many Requests",
                &headers,
                body.as_bytes(),
            )
            .await;
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Fault::ResetMidBody => {
            let body = format!(
                r#"{{"access_token":"access-cut","refresh_token":"{}","expires_in":60}}"#,
                refresh_token(999)
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body.as_bytes()[..body.len() / 2]).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Fault::SlowLoris => {
            let body = br#"{"access_token":"access-slow","expires_in":60}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            for byte in body {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Fault::MalformedJson => {
            let body = format!(r#"{{"access_token":"access-broken","refresh_token":"{presented}""#);
            write(&mut stream, "200 OK", &[json_type()], body.as_bytes()).await;
        }
        Fault::Oversize => {
            let padding = "x".repeat(100 * 1024);
            let body = format!(r#"{{"access_token":"access-huge","padding":"{padding}"}}"#);
            write(&mut stream, "200 OK", &[json_type()], body.as_bytes()).await;
        }
        Fault::HtmlPage => {
            let page = format!("<html><form>Sign in ({presented})</form></html>");
            let headers = [("content-type", "text/html; charset=utf-8".to_string())];
            write(&mut stream, "200 OK", &headers, page.as_bytes()).await;
        }
    }
}

async fn answer_token(stream: &mut TcpStream, shared: &Shared, presented: &str) {
    let body = {
        let mut ledger = shared.ledger.lock().unwrap();
        let current = ledger.current;
        if presented != refresh_token(current) {
            let spent = (0..current).any(|k| presented == refresh_token(k));
            if spent {
                shared.lost.fetch_add(1, Ordering::SeqCst);
            }
            None
        } else {
            ledger.current += 1;
            let k = ledger.current;
            let expires_in = *shared.expires_in.lock().unwrap();
            let jwt_clock = *shared.jwt_clock.lock().unwrap();
            let access = match jwt_clock {
                None => format!("access-{k}"),
                Some(offset) => jwt(k, expires_in, offset),
            };
            ledger
                .issued
                .insert(access.clone(), Instant::now() + expires_in);
            let mut body = serde_json::json!({
                "access_token": access,
                "token_type": "Bearer",
                "refresh_token": refresh_token(k),
            });
            if jwt_clock.is_none() {
                body["expires_in"] = serde_json::json!(expires_in.as_secs_f64());
            }
            Some(body.to_string())
        }
    };
    match body {
        Some(body) => write(stream, "200 OK", &[json_type()], body.as_bytes()).await,
        None => {
            let body = br#"{"error":"invalid_grant"}"#;
            write(stream, "400 Bad Request", &[json_type()], body).await;
        }
    }
}

/// An unsigned JWT `access-{k}` issued now by a clock `offset` seconds off, living `lifetime`.
fn jwt(k: u32, lifetime: Duration, offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset;
    let claims = serde_json::json!({
        "sub": format!("access-{k}"),
        "iat": now,
        "exp": now + lifetime.as_secs() as i64,
    });
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
