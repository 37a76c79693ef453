//! One reading of a destination for every origin rule: the allow-list
//! (`allow_origin`) and the key by origin (`per_origin`) give the token to exactly the same
//! requests, on the tower layer and on the reqwest middleware, for the authorities where
//! parsers disagree (a port that is not a number, user info, trailing dots, case, IPv6
//! literals, default ports, `http` against `https`).

use std::convert::Infallible;

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::source::static_token;
use tower_bearer::{BearerAuthLayer, OnDisallowedOrigin, Origin};

const ALLOWED: [&str; 3] = [
    "https://billing.example.com",
    "http://127.0.0.1:8080",
    "https://[::1]:8443",
];

/// A destination and whether it is one of [`ALLOWED`].
const TABLE: &[(&str, bool)] = &[
    ("https://billing.example.com/x", true),
    // Default ports, explicit or implicit.
    ("https://billing.example.com:443/x", true),
    ("https://billing.example.com:/x", true),
    ("https://billing.example.com:8443/x", false),
    ("https://billing.example.com:80/x", false),
    ("http://127.0.0.1:8080/x", true),
    ("http://127.0.0.1/x", false),
    ("http://127.0.0.1:80/x", false),
    // A port that is not a number: `http::Uri` reads the host `billing.example.com` and no
    // port, which would match by the default port.
    ("https://billing.example.com:443.other.example/x", false),
    ("https://billing.example.com:other.example/x", false),
    ("http://127.0.0.1:8080.other.example/x", false),
    // User info is not part of the origin; the host is what follows the last `@`.
    ("https://user@billing.example.com/x", true),
    ("https://user:pw@billing.example.com/x", true),
    ("https://billing.example.com@other.example/x", false),
    ("https://billing.example.com:443@other.example/x", false),
    // Case and one trailing dot (the same name, fully qualified).
    ("https://BILLING.Example.COM/x", true),
    ("HTTPS://billing.example.com/x", true),
    ("https://billing.example.com./x", true),
    ("https://billing.example.com../x", false),
    ("https://billing.example.com.other.example/x", false),
    ("https://other.example/billing.example.com", false),
    // `http` against `https`.
    ("http://billing.example.com/x", false),
    ("http://billing.example.com:443/x", false),
    ("wss://billing.example.com/x", false),
    // IPv6 literals, however written.
    ("https://[::1]:8443/x", true),
    ("https://[0:0:0:0:0:0:0:1]:8443/x", true),
    ("https://[::1]/x", false),
    ("https://[::2]:8443/x", false),
    ("https://[::ffff:127.0.0.1]:8443/x", false),
];

fn allowed() -> impl Iterator<Item = Origin> {
    ALLOWED.iter().map(|o| Origin::parse(o).unwrap())
}

fn keyed_cache() -> KeyedTokenCache<usize, tower_bearer::source::StaticToken> {
    KeyedTokenCache::new(|key: &usize| Ok(static_token(format!("key-{key}"))))
}

fn echo() -> impl tower::Service<
    Request<()>,
    Response = Response<Option<String>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send {
    service_fn(|req: Request<()>| async move {
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, Infallible>(Response::new(auth))
    })
}

/// Whether a tower service built by `layer` attaches a token to a request for `uri`; a
/// refusal (`Fail` mode) counts as no token.
async fn tower_attaches<L>(layer: &L, uri: &str) -> bool
where
    L: Layer<tower::util::BoxCloneSyncService<Request<()>, Response<Option<String>>, Infallible>>,
    L::Service: tower::Service<Request<()>, Response = Response<Option<String>>>,
{
    let service = layer.layer(tower::util::BoxCloneSyncService::new(echo()));
    let request = Request::get(uri).body(()).unwrap();
    match service.oneshot(request).await {
        Ok(response) => response.into_body().is_some(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_allow_list_and_per_origin_agree_on_every_tricky_authority_over_tower() {
    let allow_list = BearerAuthLayer::new(static_token("plain"))
        .allow_origins(allowed())
        .on_disallowed_origin(OnDisallowedOrigin::Fail);
    let per_origin = BearerAuthLayer::per_origin(keyed_cache(), allowed().zip(0..))
        .on_unknown_destination(OnDisallowedOrigin::Fail);
    let mut checked = 0;
    for &(uri, expected) in TABLE {
        if uri.parse::<http::Uri>().is_err() {
            // Not a request anyone can send through tower.
            continue;
        }
        checked += 1;
        assert_eq!(
            tower_attaches(&allow_list, uri).await,
            expected,
            "allow-list, {uri}"
        );
        assert_eq!(
            tower_attaches(&per_origin, uri).await,
            expected,
            "per_origin, {uri}"
        );
    }
    assert!(checked > TABLE.len() - 3, "http::Uri took only {checked}");
}

#[tokio::test]
async fn per_origin_gives_no_key_to_a_port_that_is_not_a_number() {
    // The case of the report: the billing token went to `other.example` by a keyed layer.
    let per_origin = BearerAuthLayer::per_origin(
        keyed_cache(),
        [(Origin::from_static("https://billing.example.com"), 0)],
    );
    let uri = "https://billing.example.com:443.other.example/x";
    assert!(!tower_attaches(&per_origin, uri).await);
    assert!(tower_attaches(&per_origin, "https://billing.example.com/x").await);
}

#[tokio::test]
async fn per_request_sees_no_host_where_the_origin_rules_see_none() {
    // A closure over `Destination::host()` is not fooled by the port confusion either.
    let per_request = BearerAuthLayer::per_request(keyed_cache(), |dest| {
        (dest.host() == Some("billing.example.com")).then_some(0)
    });
    assert!(
        !tower_attaches(
            &per_request,
            "https://billing.example.com:443.other.example/x"
        )
        .await
    );
    assert!(tower_attaches(&per_request, "https://billing.example.com/x").await);
}

#[cfg(feature = "reqwest-middleware")]
mod over_reqwest {
    use super::*;
    use tower_bearer::BearerAuthMiddleware;

    /// The innermost middleware: answers every request itself with the `Authorization` it
    /// carries (nothing goes over the network).
    struct Echo;

    #[async_trait::async_trait]
    impl reqwest_middleware::Middleware for Echo {
        async fn handle(
            &self,
            req: reqwest::Request,
            _: &mut http::Extensions,
            _: reqwest_middleware::Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            let auth = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            Ok(Response::new(auth).into())
        }
    }

    async fn attaches(middleware: impl reqwest_middleware::Middleware, url: &str) -> bool {
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(middleware)
            .with(Echo)
            .build();
        match client.get(url).send().await {
            Ok(response) => !response.text().await.unwrap().is_empty(),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn the_allow_list_and_per_origin_agree_on_every_tricky_authority_over_reqwest() {
        for &(url, expected) in TABLE {
            if reqwest::Url::parse(url).is_err() {
                // reqwest refuses it before any middleware sees it.
                continue;
            }
            let allow_list = BearerAuthMiddleware::new(static_token("plain"))
                .allow_origins(allowed())
                .on_disallowed_origin(OnDisallowedOrigin::Fail);
            let per_origin = BearerAuthMiddleware::per_origin(keyed_cache(), allowed().zip(0..))
                .on_unknown_destination(OnDisallowedOrigin::Fail);
            assert_eq!(
                attaches(allow_list, url).await,
                expected,
                "allow-list, {url}"
            );
            assert_eq!(
                attaches(per_origin, url).await,
                expected,
                "per_origin, {url}"
            );
        }
    }
}
