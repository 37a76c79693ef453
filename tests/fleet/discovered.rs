//! A `Discovered` source (its token endpoint found from the issuer) with DPoP, in the fleet:
//! its DPoP key is known from its configuration before discovery runs, so even its first
//! token is filed, and adopted, under the DPoP binding; never under plain Bearer. A
//! `Discovery::source` of your own, whose binding is known only once built, makes its first
//! fetch without the fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::json;
use tower_bearer::dpop::Dpop;
use tower_bearer::fleet::RedisFleet;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials, Discovery};
use tower_bearer::{ErrorKind, RefreshTier, TokenCache, TokenSource};

use crate::support::RedisServer;
use crate::{Tiers, fleet};

/// An authorization server on 127.0.0.1 publishing its metadata: its token endpoint answers
/// `dpop-<n>` (`token_type` `DPoP`) to a request with a DPoP proof, `bearer-<n>` without.
struct Server {
    base: String,
    issued: Arc<AtomicU32>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issued = Arc::new(AtomicU32::new(0));
        let issuer = base.clone();
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || {
                    let issuer = issuer.clone();
                    async move {
                        axum::Json(json!({
                            "issuer": issuer,
                            "token_endpoint": format!("{issuer}/token"),
                            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                        }))
                    }
                }),
            )
            .route("/token", post(token))
            .with_state(Arc::clone(&issued));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { base, issued }
    }

    fn issued(&self) -> u32 {
        self.issued.load(Ordering::SeqCst)
    }
}

async fn token(
    State(issued): State<Arc<AtomicU32>>,
    headers: HeaderMap,
) -> axum::Json<serde_json::Value> {
    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
    let (prefix, token_type) = match headers.contains_key("dpop") {
        true => ("dpop", "DPoP"),
        false => ("bearer", "Bearer"),
    };
    axum::Json(json!({
        "access_token": format!("{prefix}-{n}"),
        "token_type": token_type,
        "expires_in": 3600,
    }))
}

fn auth() -> ClientAuth {
    ClientAuth::client_secret_basic("client", ClientSecret::new("s3cr3t"))
}

fn cached<S: TokenSource>(source: S, fleet: RedisFleet, tiers: &Tiers) -> TokenCache<S> {
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

/// A `Discovered` client credentials source at `server`, DPoP-bound to `dpop` if given.
fn discovered(server: &Server, dpop: Option<&Dpop>) -> impl TokenSource {
    let dpop = dpop.cloned();
    Discovery::new(&server.base)
        .unwrap()
        .client_credentials(auth(), move |builder| match &dpop {
            Some(dpop) => builder.dpop(dpop.clone()),
            None => builder,
        })
}

async fn first_token<S: TokenSource>(source: S, fleet: RedisFleet, tiers: &Tiers) -> String {
    let cache = cached(source, fleet, tiers);
    cache.token().await.unwrap().secret().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_dpop_cache_and_a_bearer_cache_never_adopt_each_others_first_token() {
    let redis = RedisServer::start();
    let base = fleet(&redis.url()).build().unwrap();
    let server = Server::start().await;
    let key = Dpop::generate().unwrap();
    let tiers = Tiers::default();
    // Both orders, each on its own credential: whoever publishes first, the other fetches its
    // own on its very first fetch.
    for (identity, dpop_first) in [("bearer first", false), ("dpop first", true)] {
        let fleet = || base.credential(identity);
        let (bearer, dpop) = if dpop_first {
            let dpop = first_token(discovered(&server, Some(&key)), fleet(), &tiers).await;
            let bearer = first_token(discovered(&server, None), fleet(), &tiers).await;
            (bearer, dpop)
        } else {
            let bearer = first_token(discovered(&server, None), fleet(), &tiers).await;
            let dpop = first_token(discovered(&server, Some(&key)), fleet(), &tiers).await;
            (bearer, dpop)
        };
        assert!(bearer.starts_with("bearer-"), "{identity}: {bearer}");
        assert!(dpop.starts_with("dpop-"), "{identity}: {dpop}");
    }
    assert_eq!(server.issued(), 4, "one token per binding per credential");
    assert_eq!(tiers.all(), [RefreshTier::Leased; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_dpop_cache_files_its_first_token_under_the_dpop_binding() {
    let redis = RedisServer::start();
    let fleet = || fleet(&redis.url()).build().unwrap();
    let server = Server::start().await;
    let key = Dpop::generate().unwrap();
    let tiers = Tiers::default();

    let published = first_token(discovered(&server, Some(&key)), fleet(), &tiers).await;
    assert!(published.starts_with("dpop-"), "{published}");
    // Not under the plain Bearer record's key: under the DPoP binding's own.
    let base = fleet().key_base().to_owned();
    assert_eq!(redis.cli(&["EXISTS", &format!("{base}:token")]).trim(), "0");
    let bound = redis.cli(&["--scan", "--pattern", &format!("{base}:token:*")]);
    assert_eq!(bound.lines().count(), 1, "{bound}");

    // Another process with the same key adopts it: a source built without discovery (whose
    // key is known from the start) and another discovered one.
    let direct = ClientCredentials::builder(format!("{}/token", server.base), auth())
        .dpop(key.clone())
        .build()
        .unwrap();
    assert_eq!(first_token(direct, fleet(), &tiers).await, published);
    assert_eq!(
        first_token(discovered(&server, Some(&key)), fleet(), &tiers).await,
        published
    );
    assert_eq!(server.issued(), 1);
    assert_eq!(
        tiers.all(),
        [
            RefreshTier::Leased,
            RefreshTier::Shared,
            RefreshTier::Shared
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_source_of_your_own_makes_its_first_fetch_without_the_fleet() {
    let redis = RedisServer::start();
    let fleet = || fleet(&redis.url()).build().unwrap();
    let server = Server::start().await;
    let key = Dpop::generate().unwrap();
    let tiers = Tiers::default();
    let bearer = first_token(discovered(&server, None), fleet(), &tiers).await;

    // Its DPoP key is known only once built: the first fetch neither adopts the Bearer token
    // nor publishes its own under any binding.
    let own = Discovery::new(&server.base).unwrap().source(
        Some("client_secret_basic"),
        "client_credentials",
        {
            let key = key.clone();
            move |metadata, client| {
                ClientCredentials::builder(metadata.token_endpoint(), auth())
                    .dpop(key.clone())
                    .build_with(client)
            }
        },
    );
    assert!(!own.binding_known());
    let cache = cached(own, fleet(), &tiers);
    let seen = cache.token().await.unwrap();
    let first = seen.secret().to_owned();
    assert!(first.starts_with("dpop-") && first != bearer, "{first}");
    assert!(cache.source().binding_known());
    let base = fleet().key_base().to_owned();
    let bound = redis.cli(&["--scan", "--pattern", &format!("{base}:token:*")]);
    assert_eq!(bound.lines().count(), 0, "nothing published: {bound}");
    assert_eq!(tiers.all(), [RefreshTier::Leased, RefreshTier::Fallback]);

    // From then on it shares under the DPoP binding.
    assert!(cache.invalidate(&seen));
    let second = cache.token().await.unwrap().secret().to_owned();
    assert!(second.starts_with("dpop-") && second != first, "{second}");
    assert_eq!(tiers.all()[2], RefreshTier::Leased);
    let bound = redis.cli(&["--scan", "--pattern", &format!("{base}:token:*")]);
    assert_eq!(bound.lines().count(), 1, "{bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_source_given_another_dpop_key_at_each_build_is_refused() {
    let server = Server::start().await;
    let source = Discovery::new(&server.base)
        .unwrap()
        .client_credentials(auth(), |builder| builder.dpop(Dpop::generate().unwrap()));
    let error = source.fetch().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert_eq!(server.issued(), 0);
}
