//! A token per destination: one slot per key, one fetch per key, and never a token of one
//! destination on a request to another.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tower::layer::util::Identity;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::pipeline::Tokens;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials, static_token};
use tower_bearer::{
    BearerAuthLayer, Error, ErrorKind, InvalidateOnly, OnDisallowedOrigin, Origin, Replay,
    TokenCache,
};

use crate::common::{TokenServer, json};

const DESTINATIONS: [(&str, &str); 3] = [
    ("https://billing.example.com", "billing"),
    ("https://search.example.com", "search"),
    ("https://files.example.com", "files"),
];

/// A token endpoint that issues `tok-{audience}-{n}`, slowly enough for concurrent requests
/// to pile up on the first fetch of each audience.
async fn audience_server() -> TokenServer {
    TokenServer::start("/token", |recorded, n| {
        std::thread::sleep(Duration::from_millis(50));
        let audience = recorded.get("audience").unwrap_or("none").to_owned();
        json(serde_json::json!({
            "access_token": format!("tok-{audience}-{n}"),
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
    })
    .await
}

fn keyed_cache(server: &TokenServer) -> KeyedTokenCache<&'static str, ClientCredentials> {
    let url = server.url.clone();
    KeyedTokenCache::new(move |audience: &&'static str| {
        ClientCredentials::builder(
            url.clone(),
            ClientAuth::client_secret_post("client", ClientSecret::new("secret")),
        )
        .audience(*audience)
        .build()
    })
}

/// A keyed cache whose slot for `key` holds the token `for-{key}`.
fn tokens_for_each_key<K: tower_bearer::keyed::Key + std::fmt::Display>()
-> KeyedTokenCache<K, tower_bearer::source::StaticToken> {
    KeyedTokenCache::new(|key: &K| Ok(static_token(format!("for-{key}"))))
}

/// An API stand-in that checks, for every request, that the token is the one of the host's
/// audience, and counts the mistakes.
fn checking_api(
    mistakes: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    service_fn(move |req: Request<()>| {
        let mistakes = mistakes.clone();
        async move {
            let host = req.uri().host().unwrap_or_default().to_owned();
            let audience = host.split('.').next().unwrap_or_default().to_owned();
            let auth = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            if !auth.starts_with(&format!("Bearer tok-{audience}-")) {
                mistakes.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, Infallible>(Response::new(auth))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_destinations_times_a_thousand_requests_cost_three_fetches() {
    let server = audience_server().await;
    let cache = keyed_cache(&server);
    let mistakes = Arc::new(AtomicUsize::new(0));
    let origins = DESTINATIONS.map(|(origin, key)| (Origin::parse(origin).unwrap(), key));
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::per_origin(cache.clone(), origins))
        .service(checking_api(mistakes.clone()));

    let mut tasks = Vec::new();
    for i in 0..3000 {
        let (origin, _) = DESTINATIONS[i % 3];
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("{origin}/v1/items/{i}"))
                .body(())
                .unwrap();
            client.oneshot(req).await.unwrap().into_body()
        }));
    }
    let mut per_audience = std::collections::HashMap::<String, usize>::new();
    for task in tasks {
        let auth = task.await.unwrap();
        let audience = auth.split('-').nth(1).unwrap().to_owned();
        *per_audience.entry(audience).or_default() += 1;
    }

    assert_eq!(server.calls(), 3, "one fetch per destination");
    let mut audiences: Vec<_> = (0..3)
        .map(|i| server.request(i).get("audience").unwrap().to_owned())
        .collect();
    audiences.sort();
    assert_eq!(audiences, ["billing", "files", "search"]);
    assert_eq!(
        mistakes.load(Ordering::SeqCst),
        0,
        "a request carried another destination's token"
    );
    assert_eq!(per_audience.len(), 3);
    assert!(
        per_audience.values().all(|&n| n == 1000),
        "{per_audience:?}"
    );
    assert_eq!(cache.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_switching_between_destinations_never_mixes_tokens() {
    let server = audience_server().await;
    let mistakes = Arc::new(AtomicUsize::new(0));
    let origins = DESTINATIONS.map(|(origin, key)| (Origin::parse(origin).unwrap(), key));
    // One service, called in turn for each destination: its memo of the last destination must
    // never serve the next one.
    let mut client = BearerAuthLayer::per_origin(keyed_cache(&server), origins)
        .layer_service(checking_api(mistakes.clone()));
    // Runs of one destination (served from the memo) and switches (not), in a mixed order.
    for i in 0..300 {
        let (origin, _) = DESTINATIONS[(i / 2 + i / 7) % 3];
        let req = Request::get(format!("{origin}/x")).body(()).unwrap();
        client.ready().await.unwrap().call(req).await.unwrap();
    }
    assert_eq!(mistakes.load(Ordering::SeqCst), 0);
    assert_eq!(server.calls(), 3);
}

trait LayerService<S> {
    type Service;
    fn layer_service(self, inner: S) -> Self::Service;
}

impl<S, L: tower::Layer<S>> LayerService<S> for L {
    type Service = L::Service;
    fn layer_service(self, inner: S) -> L::Service {
        self.layer(inner)
    }
}

#[tokio::test]
async fn a_destination_without_a_key_gets_no_token_or_an_error() {
    let server = audience_server().await;
    let cache = keyed_cache(&server);
    let origins = [(
        Origin::from_static("https://billing.example.com"),
        "billing",
    )];
    let echo = service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.headers().get(AUTHORIZATION).cloned()))
    });
    let lenient = BearerAuthLayer::per_origin(cache.clone(), origins.clone()).layer_service(echo);
    let to = |uri: &str| Request::get(uri).body(()).unwrap();

    let billing = lenient
        .clone()
        .oneshot(to("https://billing.example.com/a"))
        .await
        .unwrap();
    assert!(billing.body().is_some());
    // Another host, another port, another scheme, a relative URI: no key, no token.
    for uri in [
        "https://cdn.example.com/a",
        "https://billing.example.com:8443/a",
        "http://billing.example.com/a",
        "/relative",
    ] {
        let response = lenient.clone().oneshot(to(uri)).await.unwrap();
        assert!(response.body().is_none(), "{uri} got a token");
    }
    // The caller's own Authorization on such a request is left as it is.
    let mut own = to("https://cdn.example.com/a");
    own.headers_mut()
        .insert(AUTHORIZATION, "Basic abc".parse().unwrap());
    let response = lenient.clone().oneshot(own).await.unwrap();
    assert_eq!(response.body().as_ref().unwrap(), "Basic abc");

    let strict = BearerAuthLayer::per_origin(cache, origins)
        .on_unknown_destination(OnDisallowedOrigin::Fail)
        .layer_service(echo);
    let err = strict
        .oneshot(to("https://cdn.example.com/a"))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
    assert_eq!(err.kind(), ErrorKind::Disallowed);
    assert!(err.to_string().contains("cdn.example.com"), "{err}");
    assert_eq!(server.calls(), 1, "only billing's token was fetched");
}

#[tokio::test]
async fn a_key_from_a_closure_over_the_request() {
    let server = audience_server().await;
    let cache = keyed_cache(&server);
    let layer = BearerAuthLayer::per_request(cache, |dest| {
        match dest.headers().get("x-api").map(|v| v.as_bytes()) {
            Some(b"billing") => Some("billing"),
            Some(b"search") => Some("search"),
            _ => None,
        }
    });
    let client = layer.layer_service(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.headers().get(AUTHORIZATION).cloned()))
    }));
    let to = |api: Option<&str>| {
        let mut req = Request::get("https://gateway.example.com/v1")
            .body(())
            .unwrap();
        if let Some(api) = api {
            req.headers_mut().insert("x-api", api.parse().unwrap());
        }
        req
    };
    let mut svc = client.clone();
    for (api, expected) in [
        (Some("billing"), Some("billing")),
        (Some("billing"), Some("billing")),
        (Some("search"), Some("search")),
        (None, None),
        (Some("billing"), Some("billing")),
    ] {
        let response = svc.ready().await.unwrap().call(to(api)).await.unwrap();
        match expected {
            Some(audience) => {
                let auth = response
                    .body()
                    .as_ref()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    auth.starts_with(&format!("Bearer tok-{audience}-")),
                    "{auth}"
                );
            }
            None => assert!(response.body().is_none()),
        }
    }
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn a_401_drops_only_the_token_of_its_key() {
    let server = audience_server().await;
    let cache = keyed_cache(&server);
    let origins = DESTINATIONS.map(|(origin, key)| (Origin::parse(origin).unwrap(), key));
    // billing rejects its first token (the second fetch: search is first); the others accept
    // everything.
    let api = service_fn(|req: Request<()>| async move {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        let status = if auth == "Bearer tok-billing-2" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let mut response = Response::new(auth);
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    let client = BearerAuthLayer::per_origin(cache.clone(), origins)
        .replay_on_401()
        .layer_service(api);
    let to = |uri: &str| Request::get(uri).body(()).unwrap();
    let search = client
        .clone()
        .oneshot(to("https://search.example.com/"))
        .await
        .unwrap();
    let billing = client
        .clone()
        .oneshot(to("https://billing.example.com/"))
        .await
        .unwrap();
    assert_eq!(
        billing.status(),
        StatusCode::OK,
        "replayed with a new billing token"
    );
    assert!(
        billing.body().starts_with("Bearer tok-billing-"),
        "{}",
        billing.body()
    );
    let search_again = client
        .clone()
        .oneshot(to("https://search.example.com/"))
        .await
        .unwrap();
    assert_eq!(search.body(), search_again.body(), "search kept its token");
    assert_eq!(server.calls(), 3, "search, billing, billing again");
}

#[tokio::test]
async fn an_evicted_slot_is_not_used_by_a_service_that_remembers_it() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = KeyedTokenCache::new(move |key: &&'static str| {
        let counter = counter.clone();
        let key = *key;
        Ok(tower_bearer::source::from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, Error>(
                    tower_bearer::Token::new(format!("{key}-{n}"))
                        .with_expires_in(Duration::from_secs(3600)),
                )
            }
        }))
    });
    let origins = [(Origin::from_static("https://a.example.com"), "a")];
    let mut svc = BearerAuthLayer::per_origin(cache.clone(), origins).layer_service(service_fn(
        |req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.headers()[AUTHORIZATION].clone()))
        },
    ));
    let to = || Request::get("https://a.example.com/").body(()).unwrap();
    let first = svc.ready().await.unwrap().call(to()).await.unwrap();
    assert_eq!(first.body(), "Bearer a-0");
    assert!(cache.remove(&"a"));
    let second = svc.ready().await.unwrap().call(to()).await.unwrap();
    assert_eq!(second.body(), "Bearer a-1", "a new slot, a new token");
    assert!(cache.contains(&"a"));
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reqwest_middleware_gives_each_api_its_own_token() {
    use tower_bearer::BearerAuthMiddleware;

    let server = audience_server().await;
    let cache = keyed_cache(&server);
    // Three APIs on loopback (three origins: their ports differ), and one with no key.
    let mut apis = Vec::new();
    for _ in 0..4 {
        let app = axum::Router::new().fallback(|headers: http::HeaderMap| async move {
            headers
                .get(AUTHORIZATION)
                .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned())
        });
        apis.push(crate::common::serve(app).await);
    }
    let names = ["billing", "search", "files"];
    let origins: Vec<_> = (0..3)
        .map(|i| {
            (
                Origin::parse(&format!("http://{}", apis[i])).unwrap(),
                names[i],
            )
        })
        .collect();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::per_origin(cache.clone(), origins))
        .build();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (client, api) = (client.clone(), apis[i % 4]);
        tasks.push(tokio::spawn(async move {
            let auth = client
                .get(format!("http://{api}/v1"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (i % 4, auth)
        }));
    }
    for task in tasks {
        let (api, auth) = task.await.unwrap();
        match names.get(api) {
            Some(name) => assert!(
                auth.starts_with(&format!("Bearer tok-{name}-")),
                "{api}: {auth}"
            ),
            None => assert_eq!(auth, "none"),
        }
    }
    assert_eq!(server.calls(), 3);

    let strict = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            BearerAuthMiddleware::per_origin(
                cache.clone(),
                [(
                    Origin::parse(&format!("http://{}", apis[0])).unwrap(),
                    "billing",
                )],
            )
            .on_unknown_destination(OnDisallowedOrigin::Fail),
        )
        .build();
    let err = strict
        .get(format!("http://{}/v1", apis[3]))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("{err}")
    };
    assert_eq!(
        err.downcast_ref::<Error>().unwrap().kind(),
        ErrorKind::Disallowed
    );

    // The same keys from a closure over the origin (`per_origin_with`): the same tokens, no
    // new fetch, and no token for the API without a key.
    let ports: Vec<u16> = apis.iter().map(|api| api.port()).collect();
    let by_closure = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::per_origin_with(
            cache,
            move |origin| {
                let i = ports.iter().position(|port| *port == origin.port())?;
                names.get(i).copied()
            },
        ))
        .build();
    for (i, api) in apis.iter().enumerate() {
        let auth = by_closure
            .get(format!("http://{api}/v1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        match names.get(i) {
            Some(name) => assert!(auth.starts_with(&format!("Bearer tok-{name}-")), "{auth}"),
            None => assert_eq!(auth, "none"),
        }
    }
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn a_rejection_rule_on_the_keyed_layer_drops_the_token_of_that_key() {
    let server = audience_server().await;
    let cache = keyed_cache(&server);
    let origins = DESTINATIONS.map(|(origin, key)| (Origin::parse(origin).unwrap(), key));
    // search answers 403 + X-Token-Expired to its first token.
    let api = service_fn(|req: Request<()>| async move {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        let mut response = Response::new(auth.clone());
        if auth == "Bearer tok-search-2" {
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
                .headers_mut()
                .insert("x-token-expired", "1".parse().unwrap());
        }
        Ok::<_, Infallible>(response)
    });
    let client = BearerAuthLayer::per_origin(cache.clone(), origins)
        .rejects_token_when(|status, headers| {
            status == StatusCode::FORBIDDEN && headers.contains_key("x-token-expired")
        })
        .layer_service(api);
    let to = |uri: &str| Request::get(uri).body(()).unwrap();
    let billing = client
        .clone()
        .oneshot(to("https://billing.example.com/"))
        .await
        .unwrap();
    let search = client
        .clone()
        .oneshot(to("https://search.example.com/"))
        .await
        .unwrap();
    assert_eq!(search.status(), StatusCode::FORBIDDEN);
    let search = client
        .clone()
        .oneshot(to("https://search.example.com/"))
        .await
        .unwrap();
    assert_eq!(search.status(), StatusCode::OK);
    assert_eq!(search.body(), "Bearer tok-search-3");
    let billing_again = client
        .clone()
        .oneshot(to("https://billing.example.com/"))
        .await
        .unwrap();
    assert_eq!(billing.body(), billing_again.body());
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn two_destinations_in_turn_are_both_remembered_and_eviction_still_counts() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let cache = KeyedTokenCache::new(move |key: &&'static str| {
        let counter = counter.clone();
        let key = *key;
        Ok(tower_bearer::source::from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, Error>(
                    tower_bearer::Token::new(format!("{key}-{n}"))
                        .with_expires_in(Duration::from_secs(3600)),
                )
            }
        }))
    });
    let origins = [
        (Origin::from_static("https://a.example.com"), "a"),
        (Origin::from_static("https://b.example.com"), "b"),
    ];
    let mut svc = BearerAuthLayer::per_origin(cache.clone(), origins).layer_service(service_fn(
        |req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.headers()[AUTHORIZATION].clone()))
        },
    ));
    let mut send = async |host: &str| {
        let req = Request::get(format!("https://{host}.example.com/"))
            .body(())
            .unwrap();
        let response = svc.ready().await.unwrap().call(req).await.unwrap();
        response.into_body().to_str().unwrap().to_owned()
    };
    for _ in 0..5 {
        assert!(send("a").await.starts_with("Bearer a-"));
        assert!(send("b").await.starts_with("Bearer b-"));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // `a` is the destination before the last; once removed, it is not served from memory.
    assert!(cache.remove(&"a"));
    assert_eq!(send("a").await, "Bearer a-2");
    assert!(send("b").await.starts_with("Bearer b-"));
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn more_destinations_than_a_service_remembers_never_mix_tokens() {
    // A hundred origins, more than a service's memo holds (64), in a mixed order through one
    // service: every request carries its own origin's token, whichever memo it replaced.
    let hosts: Vec<String> = (0..100)
        .map(|i| format!("https://api{i}.example.com"))
        .collect();
    let tokens = tokens_for_each_key::<usize>();
    let origins = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| (Origin::parse(host).unwrap(), i));
    let echo = service_fn(|req: Request<()>| async move {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        Ok::<_, Infallible>(Response::new(auth))
    });
    let mut client = BearerAuthLayer::per_origin(tokens, origins).layer_service(echo);
    for i in 0..3000usize {
        let key = (i / 3 + i * i / 11) % 100;
        let req = Request::get(format!("{}/x", hosts[key])).body(()).unwrap();
        let response = client.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(response.body(), &format!("Bearer for-{key}"), "request {i}");
    }
}

tokio::task_local! {
    static TENANT: String;
}

#[tokio::test]
async fn a_request_closure_runs_for_every_request_and_may_read_what_is_not_in_the_request() {
    // A closure that reads the host and a task-local tenant: two callers sending to one URL
    // each get their tenant's token, however many times they alternate. (A service that
    // remembered the key per origin would hand the first tenant's token to the second.)
    let tokens = tokens_for_each_key::<String>();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let echo = service_fn(|req: Request<()>| async move {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        Ok::<_, Infallible>(Response::new(auth))
    });
    let mut client = BearerAuthLayer::per_request(tokens, move |dest| {
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = dest.host()?;
        Some(TENANT.with(String::clone))
    })
    .layer_service(echo);
    for i in 0..20 {
        let tenant = ["alice", "bob"][i % 2].to_owned();
        let response = TENANT
            .scope(tenant.clone(), async {
                let req = Request::get("https://api.example.com/orders")
                    .body(())
                    .unwrap();
                client.ready().await.unwrap().call(req).await.unwrap()
            })
            .await;
        assert_eq!(
            response.body(),
            &format!("Bearer for-{tenant}"),
            "request {i}"
        );
    }
    assert_eq!(asked.load(Ordering::SeqCst), 20, "asked for every request");
}

#[tokio::test]
async fn an_origin_closure_is_asked_once_per_origin() {
    // `per_origin_with`: the key of an origin, from a closure over it (here a tenant in a
    // subdomain). A tower service asks once per origin it remembers, whatever the path; the
    // origin it is given is written as `Origin` writes it (lowercase, the port filled in).
    let tokens = tokens_for_each_key::<String>();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let echo = service_fn(|req: Request<()>| async move {
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, Infallible>(Response::new(auth))
    });
    let mut client = BearerAuthLayer::per_origin_with(tokens, move |origin| {
        counter.fetch_add(1, Ordering::SeqCst);
        assert_eq!(origin.port(), 443);
        let tenant = origin.host().strip_suffix(".api.example.com")?;
        Some(tenant.to_owned())
    })
    .layer_service(echo);
    let mut tenants = std::collections::HashSet::new();
    for i in 0..200usize {
        let tenant = format!("t{}", i % 40);
        tenants.insert(tenant.clone());
        // Written in another case once: the same origin, and its key.
        let host = if i == 7 {
            format!("{}.API.example.com", tenant.to_uppercase())
        } else {
            format!("{tenant}.api.example.com")
        };
        let req = Request::get(format!("https://{host}/p{i}"))
            .body(())
            .unwrap();
        let response = client.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(
            response.body().as_deref(),
            Some(format!("Bearer for-{tenant}").as_str()),
            "request {i}"
        );
    }
    let req = Request::get("https://cdn.example.com/logo.png")
        .body(())
        .unwrap();
    let response = client.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(
        response.body(),
        &None,
        "an origin without a key gets no token"
    );
    // Each origin once, as written (a service remembers an authority as written: the
    // upper-case spelling is one of its own to it), and the origin without a key once: 42
    // for 201 requests.
    assert_eq!(asked.load(Ordering::SeqCst), tenants.len() + 2);
}

/// An inner service that counts its clones.
#[derive(Debug)]
struct CountClones(Arc<AtomicUsize>);

impl Clone for CountClones {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        CountClones(self.0.clone())
    }
}

impl Service<Request<()>> for CountClones {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        std::future::ready(Ok(Response::new(auth)))
    }
}

#[tokio::test]
async fn any_number_of_destinations_in_turn_builds_no_service_per_request() {
    // Twelve origins in turn, more than a service remembers: a request to a destination it no
    // longer remembers moves a memo over (a slot lookup), it does not build a service over a
    // clone of the inner one.
    let hosts: Vec<String> = (0..12)
        .map(|i| format!("https://api{i}.example.com"))
        .collect();
    let tokens = tokens_for_each_key::<usize>();
    let origins = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| (Origin::parse(host).unwrap(), i));
    let clones = Arc::new(AtomicUsize::new(0));
    let mut client =
        BearerAuthLayer::per_origin(tokens, origins).layer_service(CountClones(clones.clone()));
    for i in 0..240usize {
        if i == 24 {
            // Every key's token fetched (a request waiting for its token sends through a clone,
            // tower's idiom), and every memo filled.
            clones.store(0, Ordering::SeqCst);
        }
        let key = i % 12;
        let req = Request::get(format!("{}/x", hosts[key])).body(()).unwrap();
        let response = client.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(response.body(), &format!("Bearer for-{key}"), "request {i}");
    }
    assert_eq!(
        clones.load(Ordering::SeqCst),
        0,
        "clones of the inner service"
    );
}

#[tokio::test]
async fn a_body_rule_on_the_keyed_layer_drops_the_token_of_that_key_and_replays() {
    let server = audience_server().await;
    let cache = keyed_cache(&server);
    let origins = DESTINATIONS.map(|(origin, key)| (Origin::parse(origin).unwrap(), key));
    // search says its first token expired, in the body of a 403.
    let api = service_fn(|req: Request<String>| async move {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        let expired = auth == "Bearer tok-search-1";
        let body = if expired {
            r#"{"error":"token_expired"}"#.to_owned()
        } else {
            auth
        };
        let mut response = Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        if expired {
            *response.status_mut() = StatusCode::FORBIDDEN;
        }
        Ok::<_, Infallible>(response)
    });
    let client = BearerAuthLayer::per_origin(cache.clone(), origins)
        .rejects_token_when_body([StatusCode::FORBIDDEN], |_, _, body| {
            body == br#"{"error":"token_expired"}"#
        })
        .replay_on_401()
        .layer_service(api);
    let request = Request::get("https://search.example.com/")
        .body(String::new())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"Bearer tok-search-2");
    assert_eq!(server.calls(), 2);
}

/// The options of a layer, written once for every kind of cache: this function compiles for
/// one `TokenCache` and for a keyed cache alike, because the layer is one type.
fn strict<P, C: Tokens<Source = P>>(
    layer: BearerAuthLayer<P, InvalidateOnly, Identity, C>,
) -> BearerAuthLayer<P, Replay, Identity, C> {
    layer
        .allow_origins([Origin::from_static("https://billing.example.com")])
        .on_disallowed_origin(OnDisallowedOrigin::Fail)
        .rejects_token_when(|status, _| status == StatusCode::FORBIDDEN)
        .replay_on_401()
}

#[tokio::test]
async fn one_cache_and_a_keyed_cache_share_one_layer_type_and_its_options() {
    let server = audience_server().await;
    let keyed = keyed_cache(&server);
    let one = TokenCache::new(static_token("tok-billing-single"));
    let echo = service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(req.headers().get(AUTHORIZATION).cloned()))
    });
    let single = strict(BearerAuthLayer::from_cache(one.clone())).layer(echo);
    let per_origin = strict(BearerAuthLayer::per_origin(
        keyed.clone(),
        [
            (
                Origin::from_static("https://billing.example.com"),
                "billing",
            ),
            (Origin::from_static("https://search.example.com"), "search"),
        ],
    ))
    .layer(echo);
    let to = |uri: &str| Request::get(uri).body(String::new()).unwrap();

    let answer = single
        .clone()
        .oneshot(to("https://billing.example.com/a"))
        .await
        .unwrap();
    assert_eq!(answer.body().as_ref().unwrap(), "Bearer tok-billing-single");
    let answer = per_origin
        .clone()
        .oneshot(to("https://billing.example.com/a"))
        .await
        .unwrap();
    let auth = answer.into_body().unwrap();
    assert!(
        auth.to_str().unwrap().starts_with("Bearer tok-billing-"),
        "{auth:?}"
    );

    // The allow-list and its `Fail` hold on both: search has a key, but is not allowed.
    for service in [
        single.clone().boxed_clone(),
        per_origin.clone().boxed_clone(),
    ] {
        let err = service
            .oneshot(to("https://search.example.com/q"))
            .await
            .unwrap_err();
        let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
        assert_eq!(err.kind(), ErrorKind::Disallowed);
    }
    // `cache()` is the cache each was built over.
    assert!(single.cache().current().is_some());
    assert!(per_origin.cache().contains(&"billing"));
    assert_eq!(server.calls(), 1, "only billing's token was fetched");
}

/// A request the destination rules refuse (or send bare) makes no slot: in a full keyed cache,
/// a new slot would evict the key of a destination the token may go to.
#[tokio::test]
async fn a_destination_the_token_may_not_go_to_makes_no_slot_and_evicts_none() {
    let server = audience_server().await;
    let url = server.url.clone();
    let keyed = KeyedTokenCache::builder(move |audience: &&'static str| {
        ClientCredentials::builder(
            url.clone(),
            ClientAuth::client_secret_post("client", ClientSecret::new("secret")),
        )
        .audience(*audience)
        .build()
    })
    .max_keys(1)
    .build();
    let echo = service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(req.headers().get(AUTHORIZATION).cloned()))
    });
    let to = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    let origins = DESTINATIONS.map(|(origin, key)| (Origin::from_static(origin), key));
    for action in [
        OnDisallowedOrigin::Fail,
        OnDisallowedOrigin::SendWithoutToken,
    ] {
        let service = BearerAuthLayer::per_origin(keyed.clone(), origins.clone())
            .allow_origins([Origin::from_static("https://billing.example.com")])
            .on_disallowed_origin(action)
            .layer(echo);
        let answer = service
            .clone()
            .oneshot(to("https://billing.example.com/a"))
            .await
            .unwrap();
        assert!(answer.body().is_some(), "billing gets its token");
        // search and files have keys, but the allow-list refuses them.
        for uri in [
            "https://search.example.com/q",
            "https://files.example.com/f",
        ] {
            let outcome = service.clone().oneshot(to(uri)).await;
            match action {
                OnDisallowedOrigin::Fail => {
                    let err = outcome.unwrap_err();
                    let err = err.downcast_ref::<Error>().expect("a tower_bearer::Error");
                    assert_eq!(err.kind(), ErrorKind::Disallowed);
                }
                _ => assert!(outcome.unwrap().body().is_none(), "sent bare"),
            }
            assert!(keyed.contains(&"billing"), "billing's slot was not evicted");
            assert!(!keyed.contains(&"search") && !keyed.contains(&"files"));
            assert_eq!(keyed.len(), 1);
        }
    }
    assert_eq!(server.calls(), 1, "only billing's token was fetched");
}
