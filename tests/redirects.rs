//! Tokens stay home across redirects: real servers on 127.0.0.1, one port per origin, and the
//! documented setups (tower-http's `FollowRedirect` with `redirect::TokensStayHome` below or
//! above the bearer layer over a hyper-util client; reqwest with `redirect::reqwest_policy()`
//! under `BearerAuthMiddleware`). Every server records what each request carried.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::redirect::TokensStayHome;
use tower_bearer::{BearerAuthLayer, source::static_token};
use tower_http::follow_redirect::FollowRedirectLayer;
use tower_http::set_header::SetRequestHeaderLayer;

/// What one request brought to a server.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hit {
    path: String,
    authorization: Option<String>,
    dpop: Option<String>,
}

/// A server on its own port (its own origin) that answers by `rule(path)`: a redirect to the
/// location it returns, else 200.
struct Server {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    listener: Option<tokio::net::TcpListener>,
}

impl Server {
    async fn bind() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        Server {
            base,
            hits: Arc::default(),
            listener: Some(listener),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn serve(&mut self, rule: impl Fn(&str) -> Option<String> + Send + Sync + 'static) {
        let hits = self.hits.clone();
        let rule = Arc::new(rule);
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (hits, rule) = (hits.clone(), rule.clone());
            async move {
                let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
                hits.lock().unwrap().push(Hit {
                    path: uri.path().to_owned(),
                    authorization: header("authorization"),
                    dpop: header("dpop"),
                });
                match rule(uri.path()) {
                    Some(location) => Redirect::temporary(&location).into_response(),
                    None => StatusCode::OK.into_response(),
                }
            }
        });
        let listener = self.listener.take().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The credentials each request carried, in order.
    fn credentials(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.hits()
            .into_iter()
            .map(|h| (h.path, h.authorization, h.dpop))
            .collect()
    }
}

/// The chain of the report: `api/start → storage/a → storage/b` (another origin: another
/// port), with `back` appended to send the last hop home to `api/back`.
async fn api_and_storage(back: bool) -> (Server, Server) {
    let (mut api, mut storage) = (Server::bind().await, Server::bind().await);
    let to_storage = storage.url("/a");
    api.serve(move |path| (path == "/start").then(|| to_storage.clone()));
    let home = api.url("/back");
    storage.serve(move |path| match path {
        "/a" => Some("/b".into()),
        "/b" if back => Some(home.clone()),
        _ => None,
    });
    (api, storage)
}

fn hyper_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: String) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

const TOKEN: &str = "Bearer abc";
const PROOF: &str = "proof-for-api";

fn bearer() -> BearerAuthLayer<tower_bearer::source::StaticToken> {
    BearerAuthLayer::new(static_token("abc"))
}

/// Stands in for a DPoP front end: the `DPoP` proof header, set where the token is attached.
fn proof() -> SetRequestHeaderLayer<HeaderValue> {
    SetRequestHeaderLayer::overriding(
        http::HeaderName::from_static("dpop"),
        HeaderValue::from_static(PROOF),
    )
}

fn home(path: &str) -> (String, Option<String>, Option<String>) {
    (path.into(), Some(TOKEN.into()), Some(PROOF.into()))
}

fn bare(path: &str) -> (String, Option<String>, Option<String>) {
    (path.into(), None, None)
}

#[tokio::test]
async fn tower_below_the_layer_two_hops_on_another_origin_carry_neither_token_nor_proof() {
    let (api, storage) = api_and_storage(false).await;
    let client = ServiceBuilder::new()
        .layer(bearer())
        .layer(proof())
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .service(hyper_client());
    let response = client.oneshot(get(api.url("/start"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.credentials(), vec![home("/start")]);
    assert_eq!(storage.credentials(), vec![bare("/a"), bare("/b")]);
}

#[tokio::test]
async fn tower_below_the_layer_a_chain_back_home_stays_bare() {
    let (api, storage) = api_and_storage(true).await;
    let client = ServiceBuilder::new()
        .layer(bearer())
        .layer(proof())
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .service(hyper_client());
    client.oneshot(get(api.url("/start"))).await.unwrap();
    assert_eq!(storage.credentials(), vec![bare("/a"), bare("/b")]);
    assert_eq!(api.credentials(), vec![home("/start"), bare("/back")]);
}

#[tokio::test]
async fn tower_above_the_layer_two_hops_on_another_origin_carry_no_token() {
    // Each hop is a new request to the layer, which attaches nothing to a marked one; no
    // allow-list needed.
    let (api, storage) = api_and_storage(false).await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .layer(bearer())
        .service(hyper_client());
    let response = client.oneshot(get(api.url("/start"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = |s: &Server| -> Vec<_> { s.hits().into_iter().map(|h| h.authorization).collect() };
    assert_eq!(tokens(&api), vec![Some(TOKEN.into())]);
    assert_eq!(tokens(&storage), vec![None, None]);
}

#[tokio::test]
async fn tower_above_the_layer_a_chain_back_home_stays_bare() {
    let (api, storage) = api_and_storage(true).await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .layer(bearer())
        .service(hyper_client());
    client.oneshot(get(api.url("/start"))).await.unwrap();
    let tokens = |s: &Server| -> Vec<_> { s.hits().into_iter().map(|h| h.authorization).collect() };
    assert_eq!(tokens(&storage), vec![None, None]);
    assert_eq!(tokens(&api), vec![Some(TOKEN.into()), None]);
}

#[tokio::test]
async fn tower_above_a_keyed_layer_the_other_origin_gets_not_even_its_own_token() {
    // Both origins have a key: the hops to storage were chosen by api's redirect, and go bare
    // as they would with FollowRedirect below the layer.
    let (api, storage) = api_and_storage(true).await;
    let cache = tower_bearer::keyed::KeyedTokenCache::new(|key: &&str| Ok(static_token(*key)));
    let origins = [
        (tower_bearer::Origin::parse(&api.url("")).unwrap(), "api"),
        (
            tower_bearer::Origin::parse(&storage.url("")).unwrap(),
            "storage",
        ),
    ];
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .layer(BearerAuthLayer::per_origin(cache, origins))
        .service(hyper_client());
    client.oneshot(get(api.url("/start"))).await.unwrap();
    let tokens = |s: &Server| -> Vec<_> { s.hits().into_iter().map(|h| h.authorization).collect() };
    assert_eq!(tokens(&api), vec![Some("Bearer api".into()), None]);
    assert_eq!(tokens(&storage), vec![None, None]);
    // Sent on its own, storage gets its token.
    let direct = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .layer(BearerAuthLayer::per_origin(
            tower_bearer::keyed::KeyedTokenCache::new(|key: &&str| Ok(static_token(*key))),
            [(
                tower_bearer::Origin::parse(&storage.url("")).unwrap(),
                "storage",
            )],
        ))
        .service(hyper_client());
    direct.oneshot(get(storage.url("/b"))).await.unwrap();
    assert_eq!(tokens(&storage)[2], Some("Bearer storage".into()));
}

#[tokio::test]
async fn tower_above_the_layer_in_fail_mode_fails_the_hop_that_left() {
    let (api, storage) = api_and_storage(false).await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .layer(bearer().on_disallowed_origin(tower_bearer::OnDisallowedOrigin::Fail))
        .service(hyper_client());
    let error = client.oneshot(get(api.url("/start"))).await.unwrap_err();
    let error = error.downcast::<tower_bearer::Error>().unwrap();
    assert_eq!(error.kind(), tower_bearer::ErrorKind::Disallowed);
    assert_eq!(api.hits().len(), 1);
    assert!(storage.hits().is_empty());
}

#[tokio::test]
async fn tower_same_origin_redirects_keep_the_token_in_both_placements() {
    let mut api = Server::bind().await;
    api.serve(|path| match path {
        "/start" => Some("/next".into()),
        "/next" => Some("/end".into()),
        _ => None,
    });
    let below = ServiceBuilder::new()
        .layer(bearer())
        .layer(proof())
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .service(hyper_client());
    below.oneshot(get(api.url("/start"))).await.unwrap();
    assert_eq!(
        api.credentials(),
        vec![home("/start"), home("/next"), home("/end")]
    );
    let above = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .layer(bearer())
        .service(hyper_client());
    above.oneshot(get(api.url("/start"))).await.unwrap();
    let tokens: Vec<_> = api.hits()[3..]
        .iter()
        .map(|h| h.authorization.clone())
        .collect();
    assert_eq!(tokens, vec![Some(TOKEN.into()); 3]);
}

#[tokio::test]
async fn tokens_stay_home_follows_at_most_twenty_redirects() {
    let mut api = Server::bind().await;
    api.serve(|_| Some("/again".into()));
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
        .service(hyper_client());
    let response = client.oneshot(get(api.url("/start"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(api.hits().len(), 21);
}

#[cfg(feature = "reqwest-middleware")]
mod over_reqwest {
    use super::*;
    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
    use tower_bearer::BearerAuthMiddleware;
    use tower_bearer::redirect::reqwest_policy;

    fn client() -> ClientWithMiddleware {
        let reqwest = reqwest::Client::builder()
            .redirect(reqwest_policy())
            .build()
            .unwrap();
        ClientBuilder::new(reqwest)
            .with(BearerAuthMiddleware::new(static_token("abc")))
            .build()
    }

    #[tokio::test]
    async fn reqwest_stops_where_the_chain_leaves_the_origin_and_hands_back_the_redirect() {
        for back in [false, true] {
            let (api, storage) = api_and_storage(back).await;
            let response = client()
                .get(api.url("/start"))
                .header("dpop", PROOF)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
            assert_eq!(response.headers()["location"], storage.url("/a").as_str());
            assert_eq!(api.credentials(), vec![home("/start")]);
            assert!(storage.hits().is_empty(), "{:?}", storage.hits());
        }
    }

    #[tokio::test]
    async fn reqwest_follows_redirects_within_the_origin_with_the_token() {
        let mut api = Server::bind().await;
        api.serve(|path| match path {
            "/start" => Some("/next".into()),
            "/next" => Some("/end".into()),
            _ => None,
        });
        let response = client()
            .get(api.url("/start"))
            .header("dpop", PROOF)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            api.credentials(),
            vec![home("/start"), home("/next"), home("/end")]
        );
    }

    #[tokio::test]
    async fn reqwest_policy_fails_a_chain_longer_than_ten() {
        let mut api = Server::bind().await;
        api.serve(|_| Some("/again".into()));
        let error = client().get(api.url("/start")).send().await.unwrap_err();
        assert!(error.is_redirect(), "{error}");
        assert_eq!(api.hits().len(), 11);
    }
}
