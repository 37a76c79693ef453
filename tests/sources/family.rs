//! A token endpoint on 127.0.0.1 that rotates refresh tokens and detects reuse (RFC 9700
//! §4.14.2), as strict authorization servers do: only the live refresh token of the family is
//! accepted; presenting a spent one answers `invalid_grant` **and revokes the family**, so every
//! later request fails too. A client that ever spends a token twice, or loses a rotated one,
//! shows up as `invalid_grants > 0`.
//!
//! `POST /token` takes `grant_type=refresh_token&refresh_token=R`; `GET /api` answers 200 to a
//! bearer access token it issued that has not expired, 401 otherwise.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::json;

/// What the server puts in a successful answer's `refresh_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A new refresh token; the one presented is spent.
    Rotate,
    /// The same refresh token again (no rotation).
    Same,
    /// No `refresh_token` field (no rotation).
    Omit,
}

/// What the server just did, for a test's hook to react to before the answer leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `spent` was accepted; `live` is the family's refresh token now.
    Accepted { spent: String, live: String },
    /// `presented` was refused with `invalid_grant`.
    Refused { presented: String },
}

type Hook = Arc<dyn Fn(Event) -> BoxFuture<'static, ()> + Send + Sync>;

pub struct FamilyState {
    live: String,
    spent: HashSet<String>,
    revoked: bool,
    issued: u32,
    access: HashMap<String, Instant>,
    /// How the next successful answers treat the refresh token.
    pub answer: Answer,
    /// `expires_in` of the access tokens.
    pub expires_in: Duration,
    /// Whether presenting a spent refresh token revokes the family (default: yes).
    pub revoke_on_reuse: bool,
    /// Refresh tokens presented, in order.
    pub presented: Vec<String>,
    /// `invalid_grant` answers given.
    pub invalid_grants: u32,
    /// `/api` requests answered 200 / 401.
    pub api_ok: u32,
    pub api_rejected: u32,
}

impl FamilyState {
    /// The family's live refresh token.
    pub fn live(&self) -> &str {
        &self.live
    }

    /// Make `token` the family's live refresh token (as if issued to another client).
    pub fn set_live(&mut self, token: &str) {
        let old = std::mem::replace(&mut self.live, token.to_owned());
        self.spent.insert(old);
    }
}

#[derive(Clone)]
pub struct Family {
    pub base: String,
    pub url: String,
    state: Arc<Mutex<FamilyState>>,
    hook: Arc<Mutex<Option<Hook>>>,
}

impl Family {
    /// A family whose live refresh token is `r0`.
    pub async fn start() -> Family {
        let family = Family {
            base: String::new(),
            url: String::new(),
            state: Arc::new(Mutex::new(FamilyState {
                live: "r0".into(),
                spent: HashSet::new(),
                revoked: false,
                issued: 0,
                access: HashMap::new(),
                answer: Answer::Rotate,
                expires_in: Duration::from_secs(3600),
                revoke_on_reuse: true,
                presented: Vec::new(),
                invalid_grants: 0,
                api_ok: 0,
                api_rejected: 0,
            })),
            hook: Arc::default(),
        };
        let router = Router::new()
            .route("/token", axum::routing::post(token))
            .route("/api", axum::routing::get(api))
            .with_state(family.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Family {
            base: format!("http://{addr}"),
            url: format!("http://{addr}/token"),
            ..family
        }
    }

    /// Run `hook` after each decision, before the answer is sent (the answer waits for it).
    pub fn on_event<F, Fut>(&self, hook: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        *self.hook.lock().unwrap() = Some(Arc::new(move |event| Box::pin(hook(event))));
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FamilyState> {
        self.state.lock().unwrap()
    }

    pub fn live(&self) -> String {
        self.state().live().to_owned()
    }

    pub fn invalid_grants(&self) -> u32 {
        self.state().invalid_grants
    }

    pub fn revoked(&self) -> bool {
        self.state().revoked
    }

    pub fn presented(&self) -> Vec<String> {
        self.state().presented.clone()
    }
}

fn invalid_grant() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"error":"invalid_grant"}"#,
    )
        .into_response()
}

async fn token(State(family): State<Family>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let (event, response) = {
        let mut s = family.state.lock().unwrap();
        s.presented.push(presented.clone());
        if form.get("grant_type").map(String::as_str) != Some("refresh_token")
            || s.revoked
            || presented != s.live
        {
            if s.revoke_on_reuse && s.spent.contains(&presented) {
                // Reuse: the family is compromised.
                s.revoked = true;
            }
            s.invalid_grants += 1;
            (Event::Refused { presented }, invalid_grant())
        } else {
            s.issued += 1;
            let access = format!("access-{}", s.issued);
            let expires_at = Instant::now() + s.expires_in;
            s.access.insert(access.clone(), expires_at);
            let mut answer = json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": s.expires_in.as_secs_f64(),
            });
            match s.answer {
                Answer::Rotate => {
                    s.spent.insert(presented.clone());
                    s.live = format!("r{}", s.issued);
                    answer["refresh_token"] = s.live.clone().into();
                }
                Answer::Same => answer["refresh_token"] = s.live.clone().into(),
                Answer::Omit => {}
            }
            let event = Event::Accepted {
                spent: presented,
                live: s.live.clone(),
            };
            (event, axum::Json(answer).into_response())
        }
    };
    let hook = family.hook.lock().unwrap().clone();
    if let Some(hook) = hook {
        hook(event).await;
    }
    response
}

async fn api(State(family): State<Family>, headers: HeaderMap) -> StatusCode {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut s = family.state.lock().unwrap();
    let valid = !s.revoked
        && s.access
            .get(token)
            .is_some_and(|expires_at| Instant::now() < *expires_at);
    if valid {
        s.api_ok += 1;
        StatusCode::OK
    } else {
        s.api_rejected += 1;
        StatusCode::UNAUTHORIZED
    }
}
