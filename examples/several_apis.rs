//! Calling several APIs, each with its own token: discovery, a token per audience, and token
//! exchange, against an authorization server and two APIs embedded on 127.0.0.1.
//!
//! Run: `cargo run --example several_apis`
//!
//! 1. The token endpoint is found from the issuer (RFC 8414 discovery).
//! 2. A `KeyedTokenCache` holds one token per audience; `BearerAuthLayer::per_origin` picks the
//!    audience from each request's origin, over a hyper-util client: 20 concurrent requests to
//!    each API cost one token request per API, and each API sees only its own token.
//! 3. A request to a third host, which has no audience, goes out without a token.
//! 4. The billing token is exchanged (RFC 8693) for a narrower one for a reporting API.
//!
//! Prints something like:
//!
//! ```text
//! issuer http://127.0.0.1:41234: token endpoint http://127.0.0.1:41234/oauth2/token
//! billing: 20 requests, each with the billing token
//! search: 20 requests, each with the search token
//! elsewhere: sent without a token
//! token requests: 2 (one per audience)
//! exchanged the billing token for a `reports` token (issued_token_type access_token)
//! ```
//!
//! No token is ever printed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, Discovery, token_type};
use tower_bearer::{BearerAuthLayer, Origin, TokenCache};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let issuer = start_authorization_server().await?;
    let (billing, search, elsewhere) = (start_api().await?, start_api().await?, start_api().await?);

    // 1. Discovery: the token endpoint and the accepted client authentication come from the
    //    issuer's metadata, fetched once and kept.
    let discovery = Discovery::new(&issuer)?;
    let metadata = discovery.metadata().await?;
    println!(
        "issuer {issuer}: token endpoint {}",
        metadata.token_endpoint()
    );

    // 2. One token per audience: the source for an audience is built on its first use.
    let auth = ClientAuth::client_secret_basic("demo-client", ClientSecret::new("demo-secret"));
    let by_audience = {
        let discovery = discovery.clone();
        KeyedTokenCache::new(move |audience: &&'static str| {
            let audience = *audience;
            Ok(discovery.client_credentials(auth.clone(), move |b| b.audience(audience)))
        })
    };
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::per_origin(
            by_audience.clone(),
            [
                (Origin::parse(&billing.url)?, "billing"),
                (Origin::parse(&search.url)?, "search"),
            ],
        ))
        .service(hyper);

    for (name, api) in [("billing", &billing), ("search", &search)] {
        let requests: Vec<_> = (0..20)
            .map(|i| {
                let request = http::Request::get(format!("{}/items/{i}", api.url))
                    .body(Full::default())
                    .expect("a valid request");
                tokio::spawn(client.clone().oneshot(request))
            })
            .collect();
        for request in requests {
            request.await??;
        }
        let audiences = api.audiences();
        assert!(
            audiences.iter().all(|a| a == name),
            "{name} saw {audiences:?}"
        );
        println!(
            "{name}: {} requests, each with the {name} token",
            audiences.len()
        );
    }

    // 3. A host without an audience: no token (`on_unknown_destination(Fail)` would refuse it).
    let request = http::Request::get(format!("{}/logo.png", elsewhere.url)).body(Full::default())?;
    client.clone().oneshot(request).await?;
    assert_eq!(elsewhere.audiences(), ["(none)"]);
    println!("elsewhere: sent without a token");
    println!(
        "token requests: {} (one per audience)",
        token_requests(&issuer).await?
    );

    // 4. Token exchange: the billing token (cached on its own) traded for a reports token.
    let exchange = discovery.token_exchange(None, {
        let billing_cache = by_audience.cache(&"billing")?;
        move |b| {
            b.subject(billing_cache.clone(), token_type::ACCESS_TOKEN)
                .requested_token_type(token_type::ACCESS_TOKEN)
                .audience("reports")
                .resource("https://reports.example.com/")
        }
    });
    let reports = TokenCache::new(exchange);
    let token = reports.token().await?;
    assert!(!token.secret().is_empty());
    println!("exchanged the billing token for a `reports` token (issued_token_type access_token)");
    Ok(())
}

/// The audience an API saw on each request (read from the demo token, `token-for-{audience}-n`).
#[derive(Clone)]
struct Api {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Api {
    fn audiences(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn start_api() -> Result<Api, std::io::Error> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let audience = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer token-for-"))
                .and_then(|rest| rest.split('-').next())
                .unwrap_or("(none)")
                .to_owned();
            record.lock().unwrap().push(audience);
            "ok"
        }
    });
    let url = serve(app).await?;
    Ok(Api { url, seen })
}

/// An authorization server: metadata, client credentials per audience, token exchange, and a
/// count of token requests at `/stats`.
async fn start_authorization_server() -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let metadata = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "grant_types_supported": [
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ],
    });
    let issued = Arc::new(Mutex::new(0usize));
    let count = issued.clone();
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || std::future::ready(axum::Json(metadata.clone()))),
        )
        .route(
            "/oauth2/token",
            post(move |body: String| {
                let issued = issued.clone();
                async move {
                    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    let n = {
                        let mut issued = issued.lock().unwrap();
                        *issued += 1;
                        *issued
                    };
                    let audience = form.get("audience").cloned().unwrap_or_default();
                    let mut answer = serde_json::json!({
                        "access_token": format!("token-for-{audience}-{n}"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    });
                    if form.get("grant_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:grant-type:token-exchange")
                    {
                        answer["issued_token_type"] = token_type::ACCESS_TOKEN.into();
                    }
                    axum::Json(answer)
                }
            }),
        )
        .route(
            "/stats",
            get(move || {
                let count = count.clone();
                async move { count.lock().unwrap().to_string() }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(issuer)
}

async fn token_requests(issuer: &str) -> Result<String, tower::BoxError> {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = hyper
        .request(http::Request::get(format!("{issuer}/stats")).body(Full::default())?)
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn serve(app: Router) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
