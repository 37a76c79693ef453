//! Every combination of the one pipeline, end to end: {tower, reqwest} × {one cache, `per_origin`,
//! `per_origin_with`, `per_request`} × {Bearer, DPoP} × {a built-in grant, `Discovery`,
//! `TokenExchange`}, against a local server on two loopback ports that verifies what it receives:
//! the token of the right audience for each API, the scheme, and for DPoP the proof (signature with
//! its `jwk`, `htm`, `htu`, `iat`, `jti`, `ath`) and the token's binding to the key. So no
//! combination compiles and then fails.

#[allow(dead_code)]
#[path = "../dpop/server.rs"]
mod dpop_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, ServiceExt};
use tower_bearer::dpop::Dpop;
use tower_bearer::keyed::{Destination, KeyedTokenCache};
use tower_bearer::source::{
    ClientAuth, ClientCredentials, Discovery, TokenExchange, static_token, token_type,
};
use tower_bearer::{BearerAuthLayer, BearerAuthMiddleware, Origin, TokenCache, TokenSource};

/// The APIs: each wants tokens of its own audience, on its own port.
const APIS: [&str; 2] = ["billing", "search"];

/// The authorization server and the two APIs.
struct Server {
    /// `http://127.0.0.1:{port}` of the token endpoint and `billing`, then of `search`.
    bases: [String; 2],
    /// Verifies proofs (its `base` is unused: `htu` is computed per request).
    proofs: dpop_server::Server,
    /// Issued token → the thumbprint of the key it is bound to, if any.
    bound: Mutex<HashMap<String, Option<String>>>,
    token_calls: AtomicUsize,
    /// What went wrong, in order: a test fails on any.
    errors: Mutex<Vec<String>>,
}

impl Server {
    async fn start() -> Arc<Server> {
        let listeners = [
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ];
        let addr = |l: &tokio::net::TcpListener| -> SocketAddr { l.local_addr().unwrap() };
        let server = Arc::new(Server {
            bases: [
                format!("http://{}", addr(&listeners[0])),
                format!("http://{}", addr(&listeners[1])),
            ],
            proofs: dpop_server::Server::default(),
            bound: Mutex::default(),
            token_calls: AtomicUsize::new(0),
            errors: Mutex::default(),
        });
        for listener in listeners {
            let app = axum::Router::new()
                .fallback(handle)
                .with_state(Arc::clone(&server));
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        server
    }

    fn issuer(&self) -> &str {
        &self.bases[0]
    }

    fn token_url(&self) -> String {
        format!("{}/token", self.bases[0])
    }

    fn api_url(&self, api: &str) -> String {
        let base = if api == APIS[0] {
            &self.bases[0]
        } else {
            &self.bases[1]
        };
        format!("{base}/{api}/items?page=2")
    }

    fn error(&self, error: String) -> Response {
        self.errors.lock().unwrap().push(error.clone());
        (StatusCode::UNAUTHORIZED, error).into_response()
    }
}

async fn handle(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers["host"].to_str().unwrap().to_owned();
    let htu = format!("http://{host}{}", uri.path());
    match uri.path() {
        "/.well-known/oauth-authorization-server" => axum::Json(serde_json::json!({
            "issuer": server.issuer(),
            "token_endpoint": server.token_url(),
            "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "token_endpoint_auth_methods_supported": ["none"],
        }))
        .into_response(),
        "/token" => {
            let n = server.token_calls.fetch_add(1, Ordering::SeqCst);
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let Some(audience) = form.get("audience").filter(|a| APIS.contains(&a.as_str()))
            else {
                return server.error(format!("a token request without a known audience: {form:?}"));
            };
            let jkt = if headers.contains_key("dpop") {
                match server.proofs.verify(&headers, &method, &htu, None) {
                    Ok((jkt, _)) => Some(jkt),
                    Err(reason) => return server.error(format!("token endpoint proof: {reason}")),
                }
            } else {
                None
            };
            let token = format!("{audience}.{n}");
            let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
            server.bound.lock().unwrap().insert(token.clone(), jkt);
            axum::Json(serde_json::json!({
                "access_token": token,
                "token_type": token_type,
                "expires_in": 3600,
                "issued_token_type": token_type::ACCESS_TOKEN,
            }))
            .into_response()
        }
        path => {
            let Some(api) = APIS.iter().find(|api| path.starts_with(&format!("/{api}/"))) else {
                return server.error(format!("no API at {path}"));
            };
            if host != server.api_url(api)[7..].split('/').next().unwrap() {
                return server.error(format!("{api} asked on the wrong port"));
            }
            let authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let Some((scheme, token)) = authorization.split_once(' ') else {
                return server.error(format!("{api}: no token"));
            };
            if !token.starts_with(&format!("{api}.")) {
                return server.error(format!("{api} got a token of another audience"));
            }
            let bound = server.bound.lock().unwrap().get(token).cloned();
            let Some(bound) = bound else {
                return server.error(format!("{api}: a token nobody issued"));
            };
            match (scheme, bound) {
                ("Bearer", None) if !headers.contains_key("dpop") => {}
                ("DPoP", Some(expected)) => {
                    let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
                        &aws_lc_rs::digest::SHA256,
                        token.as_bytes(),
                    ));
                    match server.proofs.verify(&headers, &method, &htu, Some(&ath)) {
                        Ok((jkt, _)) if jkt == expected => {}
                        Ok(_) => return server.error(format!("{api}: a proof by another key")),
                        Err(reason) => return server.error(format!("{api} proof: {reason}")),
                    }
                }
                (scheme, bound) => {
                    return server.error(format!(
                        "{api}: scheme {scheme} for a token bound to {bound:?}"
                    ));
                }
            }
            (StatusCode::OK, format!("{api} {token}")).into_response()
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Stack {
    Tower,
    Reqwest,
}

#[derive(Clone, Copy, Debug)]
enum Caches {
    One,
    PerOrigin,
    /// `per_origin_with`: the key from a closure over the origin.
    PerOriginWith,
    PerRequest,
}

#[derive(Clone, Copy, Debug)]
enum Grant {
    ClientCredentials,
    Discovery,
    TokenExchange,
}

/// A source of `audience` tokens by `grant`, DPoP-bound to `dpop` if given.
fn source(
    server: &Server,
    grant: Grant,
    audience: &str,
    dpop: Option<&Dpop>,
) -> Box<dyn Fn() -> Source + Send + Sync> {
    let audience = audience.to_owned();
    let dpop = dpop.cloned();
    let token_url = server.token_url();
    let issuer = server.issuer().to_owned();
    Box::new(move || match grant {
        Grant::ClientCredentials => {
            let mut builder = ClientCredentials::builder(&token_url, ClientAuth::none("matrix"))
                .audience(audience.clone());
            if let Some(dpop) = &dpop {
                builder = builder.dpop(dpop.clone());
            }
            Source::ClientCredentials(builder.build().unwrap())
        }
        Grant::Discovery => {
            let discovery = Discovery::new(&issuer).unwrap();
            let (audience, dpop) = (audience.clone(), dpop.clone());
            Source::Discovered(discovery.client_credentials(
                ClientAuth::none("matrix"),
                move |builder| {
                    let builder = builder.audience(audience.clone());
                    match &dpop {
                        Some(dpop) => builder.dpop(dpop.clone()),
                        None => builder,
                    }
                },
            ))
        }
        Grant::TokenExchange => {
            let mut builder = TokenExchange::builder(&token_url)
                .subject_source(static_token("subject"), token_type::ACCESS_TOKEN)
                .requested_token_type(token_type::ACCESS_TOKEN)
                .audience(audience.clone());
            if let Some(dpop) = &dpop {
                builder = builder.dpop(dpop.clone());
            }
            Source::TokenExchange(builder.build().unwrap())
        }
    })
}

/// The three grants behind one type, as a user mixing grants in one keyed cache would write.
enum Source {
    ClientCredentials(ClientCredentials),
    Discovered(tower_bearer::source::Discovered<ClientCredentials>),
    TokenExchange(TokenExchange),
}

impl TokenSource for Source {
    async fn fetch(&self) -> Result<tower_bearer::Token, tower_bearer::Error> {
        match self {
            Source::ClientCredentials(s) => s.fetch().await,
            Source::Discovered(s) => s.fetch().await,
            Source::TokenExchange(s) => s.fetch().await,
        }
    }

    // What the fleet tier needs: a process that adopts a token from Redis has only this to
    // know the key it is bound to (tokens fetched here carry their binding themselves).
    fn dpop(&self) -> Option<&Dpop> {
        match self {
            Source::ClientCredentials(s) => s.dpop(),
            Source::Discovered(s) => s.dpop(),
            Source::TokenExchange(s) => s.dpop(),
        }
    }
}

fn pick(destination: &Destination<'_>) -> Option<&'static str> {
    let first = destination.path().split('/').nth(1)?;
    APIS.into_iter().find(|api| *api == first)
}

/// The key of `origin` in `origins`, as a closure over the origin finds it.
fn key_of(origins: &[(Origin, &'static str)], origin: &Origin) -> Option<&'static str> {
    origins
        .iter()
        .find(|(o, _)| o == origin)
        .map(|(_, api)| *api)
}

/// What a stack attaches tokens from: one cache, or a keyed cache by origin or by closure.
enum Auth {
    One(TokenCache<Source>),
    Keyed(Caches, KeyedTokenCache<&'static str, Source>),
}

/// One cell: two rounds of requests to every API the cell serves, each answered by its API
/// with its own audience's token; one token request per audience.
async fn cell(stack: Stack, caches: Caches, dpop: bool, grant: Grant) {
    let server = Server::start().await;
    let key = dpop.then(|| Dpop::generate().unwrap());
    let label = format!("{stack:?} × {caches:?} × dpop={dpop} × {grant:?}");
    let auth = match caches {
        Caches::One => Auth::One(TokenCache::new(source(
            &server,
            grant,
            APIS[0],
            key.as_ref(),
        )())),
        caches => Auth::Keyed(caches, keyed(&server, grant, key.as_ref(), |b| b)),
    };
    let apis = send(&server, &label, stack, auth).await;
    assert_eq!(
        server.token_calls.load(Ordering::SeqCst),
        apis,
        "{label}: one token request per audience"
    );
    let errors = server.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{label}: {errors:?}");
}

type KeyedBuilder = tower_bearer::keyed::KeyedTokenCacheBuilder<&'static str, Source>;

/// A keyed cache of a source per API, by `grant`, set up further by `configure`.
fn keyed(
    server: &Server,
    grant: Grant,
    key: Option<&Dpop>,
    configure: impl FnOnce(KeyedBuilder) -> KeyedBuilder,
) -> KeyedTokenCache<&'static str, Source> {
    let makers: HashMap<&'static str, _> = APIS
        .into_iter()
        .map(|api| (api, source(server, grant, api, key)))
        .collect();
    configure(KeyedTokenCache::builder(move |api: &&'static str| {
        Ok(makers[api]())
    }))
    .build()
}

/// Two rounds of requests through `stack` to every API `auth` serves (the first alone for one
/// cache), each checked; how many APIs that was.
async fn send(server: &Server, label: &str, stack: Stack, auth: Auth) -> usize {
    let apis: &[&str] = match auth {
        Auth::One(_) => &APIS[..1],
        Auth::Keyed(..) => &APIS,
    };
    let origins = || {
        APIS.into_iter()
            .zip(&server.bases)
            .map(|(api, base)| (Origin::parse(base).unwrap(), api))
            .collect::<Vec<_>>()
    };
    match stack {
        Stack::Tower => {
            let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let service: Tower = match auth {
                Auth::One(cache) => Tower::new(BearerAuthLayer::from_cache(cache).layer(hyper)),
                Auth::Keyed(Caches::PerRequest, keyed) => {
                    Tower::new(BearerAuthLayer::per_request(keyed, pick).layer(hyper))
                }
                Auth::Keyed(Caches::PerOriginWith, keyed) => {
                    let origins = origins();
                    Tower::new(
                        BearerAuthLayer::per_origin_with(keyed, move |o| key_of(&origins, o))
                            .layer(hyper),
                    )
                }
                Auth::Keyed(_, keyed) => {
                    Tower::new(BearerAuthLayer::per_origin(keyed, origins()).layer(hyper))
                }
            };
            for _round in 0..2 {
                for api in apis {
                    let request = http::Request::get(server.api_url(api))
                        .body(Full::default())
                        .unwrap();
                    let response = service
                        .clone()
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    let status = response.status();
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    check(server, label, api, status, &body);
                }
            }
        }
        Stack::Reqwest => {
            let builder = reqwest_middleware::ClientBuilder::new(reqwest::Client::new());
            let client = match auth {
                Auth::One(cache) => builder.with(BearerAuthMiddleware::from_cache(cache)),
                Auth::Keyed(Caches::PerRequest, keyed) => {
                    builder.with(BearerAuthMiddleware::per_request(keyed, pick))
                }
                Auth::Keyed(Caches::PerOriginWith, keyed) => {
                    let origins = origins();
                    builder.with(BearerAuthMiddleware::per_origin_with(keyed, move |o| {
                        key_of(&origins, o)
                    }))
                }
                Auth::Keyed(_, keyed) => {
                    builder.with(BearerAuthMiddleware::per_origin(keyed, origins()))
                }
            }
            .build();
            for _round in 0..2 {
                for api in apis {
                    let response = client
                        .get(server.api_url(api))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    let status = response.status();
                    let body = response.bytes().await.unwrap();
                    check(server, label, api, status, &body);
                }
            }
        }
    }
    apis.len()
}

/// Any of the tower stacks, by one type.
type Tower =
    BoxCloneService<http::Request<Full<Bytes>>, http::Response<hyper::body::Incoming>, BoxError>;

fn check(server: &Server, label: &str, api: &str, status: StatusCode, body: &[u8]) {
    let body = String::from_utf8_lossy(body);
    let errors = server.errors.lock().unwrap().clone();
    assert_eq!(status, StatusCode::OK, "{label}, {api}: {body} {errors:?}");
    assert!(
        body.starts_with(&format!("{api} {api}.")),
        "{label}: {body}"
    );
}

/// Every cell of a stack × caches row: {Bearer, DPoP} × the three grants.
async fn row(stack: Stack, caches: Caches) {
    for dpop in [false, true] {
        for grant in [
            Grant::ClientCredentials,
            Grant::Discovery,
            Grant::TokenExchange,
        ] {
            cell(stack, caches, dpop, grant).await;
        }
    }
}

#[tokio::test]
async fn tower_one_cache() {
    row(Stack::Tower, Caches::One).await;
}

#[tokio::test]
async fn tower_per_origin() {
    row(Stack::Tower, Caches::PerOrigin).await;
}

#[tokio::test]
async fn tower_per_origin_with() {
    row(Stack::Tower, Caches::PerOriginWith).await;
}

#[tokio::test]
async fn reqwest_per_origin_with() {
    row(Stack::Reqwest, Caches::PerOriginWith).await;
}

#[tokio::test]
async fn tower_per_request() {
    row(Stack::Tower, Caches::PerRequest).await;
}

#[tokio::test]
async fn reqwest_one_cache() {
    row(Stack::Reqwest, Caches::One).await;
}

#[tokio::test]
async fn reqwest_per_origin() {
    row(Stack::Reqwest, Caches::PerOrigin).await;
}

#[tokio::test]
async fn reqwest_per_request() {
    row(Stack::Reqwest, Caches::PerRequest).await;
}

/// The fleet tier column: two "processes" (caches) share one identity in Redis and one DPoP
/// key (as processes loading the same PEM do). The first fetches; the second adopts the token
/// from Redis, with no binding of its own in memory, and must still send it as its source
/// declares (`TokenSource::dpop`), through each stack.
#[cfg(feature = "redis")]
#[path = "../fleet/support.rs"]
mod fleet_support;

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_fleet_tier_on_both_stacks_bearer_and_dpop() {
    use tower_bearer::fleet::RedisFleet;

    let redis = fleet_support::RedisServer::start();
    for stack in [Stack::Tower, Stack::Reqwest] {
        for dpop in [false, true] {
            let server = Server::start().await;
            let key = dpop.then(|| Dpop::generate().unwrap());
            let identity = format!("matrix {stack:?} {dpop}");
            let label = format!("{stack:?} × fleet × dpop={dpop}");
            let process = || {
                let fleet = RedisFleet::builder(&redis.url(), &identity)
                    .build()
                    .unwrap();
                let source = source(&server, Grant::ClientCredentials, APIS[0], key.as_ref())();
                TokenCache::builder(source).fleet(fleet).build()
            };
            for cache in [process(), process()] {
                send(&server, &label, stack, Auth::One(cache)).await;
            }
            assert_eq!(
                server.token_calls.load(Ordering::SeqCst),
                1,
                "{label}: the second process adopts the first one's token"
            );
            let errors = server.errors.lock().unwrap().clone();
            assert!(errors.is_empty(), "{label}: {errors:?}");
        }
    }
}

/// The fleet column for keyed caches: two "processes" each with a keyed cache (by origin or
/// by closure) whose slots share tokens through one Redis, each audience under its own fleet
/// credential (as `KeyedTokenCacheBuilder::cache` documents). The first process fetches one
/// token per audience; the second adopts both from Redis and must send each to its own API,
/// with DPoP proofs by the key its slot's source declares, through each stack.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_fleet_tier_under_keyed_caches_on_both_stacks_bearer_and_dpop() {
    use tower_bearer::fleet::RedisFleet;

    let redis = fleet_support::RedisServer::start();
    for stack in [Stack::Tower, Stack::Reqwest] {
        for caches in [Caches::PerOrigin, Caches::PerOriginWith, Caches::PerRequest] {
            for dpop in [false, true] {
                let server = Server::start().await;
                let key = dpop.then(|| Dpop::generate().unwrap());
                let identity = format!("matrix keyed {stack:?} {caches:?} {dpop}");
                let label = format!("{stack:?} × {caches:?} × fleet × dpop={dpop}");
                let process = || {
                    let fleet = RedisFleet::builder(&redis.url(), &identity)
                        .build()
                        .unwrap();
                    let identity = identity.clone();
                    keyed(&server, Grant::ClientCredentials, key.as_ref(), |builder| {
                        builder.cache(move |api, slot| {
                            slot.fleet(fleet.credential(format!("{identity} {api}")))
                        })
                    })
                };
                let (first, second) = (process(), process());
                send(&server, &label, stack, Auth::Keyed(caches, first)).await;
                assert_eq!(server.token_calls.load(Ordering::SeqCst), APIS.len());
                send(&server, &label, stack, Auth::Keyed(caches, second.clone())).await;
                assert_eq!(
                    server.token_calls.load(Ordering::SeqCst),
                    APIS.len(),
                    "{label}: the second process adopts the first one's tokens"
                );
                assert_eq!(second.len(), APIS.len(), "{label}: a slot per audience");
                let errors = server.errors.lock().unwrap().clone();
                assert!(errors.is_empty(), "{label}: {errors:?}");
            }
        }
    }
}
