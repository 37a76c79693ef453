//! A recording stand-in: an axum server on 127.0.0.1 that keeps every request it saw
//! (method, path and query, headers, body) and answers with a closure.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    /// The form (or query) parameters, decoded.
    pub fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    pub fn query(&self) -> HashMap<String, String> {
        form_urlencoded::parse(self.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

type Answer = dyn Fn(&Seen, usize) -> Response + Send + Sync;

/// A stand-in server: `answer(request, index)` makes each answer (index from 0).
#[derive(Clone)]
pub struct StandIn {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    pub async fn start(answer: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = Arc::clone(&log);
                let answer = Arc::clone(&answer);
                async move {
                    let seen = Seen {
                        method,
                        uri,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let index = {
                        let mut log = log.lock().unwrap();
                        log.push(seen.clone());
                        log.len() - 1
                    };
                    answer(&seen, index)
                }
            },
        );
        let addr = crate::common::serve(app).await;
        StandIn { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// A token answer: `access_token`, Bearer, an hour.
pub fn token(access_token: &str) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "access_token": access_token, "token_type": "Bearer", "expires_in": 3600,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }),
    )
}

/// An RFC 6749 §5.2 error answer.
pub fn oauth_error(status: StatusCode, code: &str) -> Response {
    json(status, serde_json::json!({ "error": code }))
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-bearer-workload-{}-{name}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A token file the platform rotates just as the token endpoint refuses the old token: `path`
/// holds `old`; `server` answers `ok` to a request whose form field `field` is `new`, and
/// refuses any other with `refusal` (a status and an OAuth error code), after replacing the
/// file with `new`.
pub struct RotatedOnRefusal {
    pub path: PathBuf,
    pub old: String,
    pub new: String,
    pub server: StandIn,
}

impl RotatedOnRefusal {
    pub async fn start(
        name: &str,
        field: &'static str,
        ok: &'static str,
        refusal: (StatusCode, &'static str),
    ) -> Self {
        let path = temp_dir(name).join("token");
        let old = crate::common::jwt_expiring_in(Duration::from_secs(3600), "old");
        let new = crate::common::jwt_expiring_in(Duration::from_secs(3600), "new");
        std::fs::write(&path, &old).unwrap();
        let (rotate_path, rotated) = (path.clone(), new.clone());
        let server = StandIn::start(move |seen, _| {
            if seen.form()[field] == rotated {
                token(ok)
            } else {
                replace_file(&rotate_path, &rotated);
                oauth_error(refusal.0, refusal.1)
            }
        })
        .await;
        RotatedOnRefusal {
            path,
            old,
            new,
            server,
        }
    }
}

/// A token file laid out as the kubelet lays out a projected volume:
/// `dir/token -> ..data/token`, `..data -> ..<timestamp>/`, rotated by writing a new
/// timestamped directory and renaming a new `..data` symlink over the old one (atomic).
#[cfg(unix)]
pub struct ProjectedVolume {
    pub dir: PathBuf,
    generation: usize,
}

#[cfg(unix)]
impl ProjectedVolume {
    pub fn new(name: &str, content: &str) -> Self {
        let dir = temp_dir(name);
        let mut volume = ProjectedVolume { dir, generation: 0 };
        volume.rotate(content);
        std::os::unix::fs::symlink("..data/token", volume.dir.join("token")).unwrap();
        volume
    }

    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// What the kubelet's atomic writer does.
    pub fn rotate(&mut self, content: &str) {
        self.generation += 1;
        let versioned = format!("..2026_12_06_{:04}", self.generation);
        std::fs::create_dir(self.dir.join(&versioned)).unwrap();
        std::fs::write(self.dir.join(&versioned).join("token"), content).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&versioned, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// Replace `path` by a plain rename of a new file over it (what most sidecars do).
pub fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An error and its sources, as one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        shown.push_str(": ");
        shown.push_str(&source.to_string());
        next = source.source();
    }
    shown
}
