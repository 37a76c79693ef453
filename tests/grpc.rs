//! The gRPC layer (`BearerAuthLayer::grpc`) between a real tonic client and a tonic server on
//! 127.0.0.1: the token on path-only calls, UNAUTHENTICATED in headers and in trailers treated
//! as a rejected token (one refresh for many), the channel's origin judged by the destination
//! rules, and streams never sent twice.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::join_all;
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tower::{ServiceBuilder, service_fn};
use tower_bearer::grpc::{GrpcAuth, GrpcAuthLayer};
use tower_bearer::{
    BearerAuthLayer, Error, OnDisallowedOrigin, Origin, Token, TokenCache, TokenSource,
};

#[allow(dead_code)]
#[path = "dpop/server.rs"]
mod dpop_server;

// ---- a codec of our own: UTF-8 strings as messages (no prost, no protoc), the example's ----

#[path = "../examples/support/utf8_codec.rs"]
mod utf8_codec;
use utf8_codec::Utf8;

// ---- the server: `echo.Echo/Say` (unary) and `echo.Echo/Count` (server streaming) ------------

const SAY: &str = "/echo.Echo/Say";
const COUNT: &str = "/echo.Echo/Count";

/// What the server saw and which tokens it refuses.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    streams: AtomicUsize,
    without_token: AtomicUsize,
    refused: Mutex<HashSet<String>>,
    /// Held by calls with a refused token until this many have arrived.
    gate: Mutex<Option<Arc<Barrier>>>,
    /// DPoP: the authorization server that issued the tokens, which checks each call's proof
    /// (against the absolute URL of the call, starting with this base).
    dpop: Mutex<Option<(Arc<dpop_server::Server>, String)>>,
}

impl Seen {
    fn refuse(&self, authorization: &str) {
        self.refused
            .lock()
            .unwrap()
            .insert(authorization.to_owned());
    }

    /// Whether the call may go on (it carries a token not refused), after any gate.
    async fn admit(&self, metadata: &tonic::metadata::MetadataMap) -> Result<String, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let Some(authorization) = metadata.get("authorization") else {
            self.without_token.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unauthenticated("no token"));
        };
        let authorization = authorization.to_str().unwrap().to_owned();
        let dpop = self.dpop.lock().unwrap().clone();
        if let Some((server, base)) = dpop {
            let headers = metadata.clone().into_headers();
            let htu = format!("{base}{SAY}");
            server
                .admit(&headers, &http::Method::POST, &htu)
                .map_err(|refusal| Status::unauthenticated(refusal.challenge))?;
        }
        if self.refused.lock().unwrap().contains(&authorization) {
            let gate = self.gate.lock().unwrap().clone();
            if let Some(gate) = gate {
                // Bounded: a test that went wrong fails on its assertions instead of hanging.
                let _ = tokio::time::timeout(Duration::from_secs(10), gate.wait()).await;
            }
            return Err(Status::unauthenticated("token expired"));
        }
        Ok(authorization)
    }
}

#[derive(Clone)]
struct Echo(Arc<Seen>);

impl NamedService for Echo {
    const NAME: &'static str = "echo.Echo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let seen = Arc::clone(&self.0);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Utf8);
            let response = match request.uri().path() {
                // Say: the answer is the `Authorization` value the call carried; a refused
                // token is UNAUTHENTICATED before any message (a trailers-only response).
                SAY => {
                    let say = service_fn(move |call: tonic::Request<String>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let authorization = seen.admit(call.metadata()).await?;
                            Ok::<_, Status>(tonic::Response::new(authorization))
                        }
                    });
                    grpc.unary(say, request).await
                }
                // Count: one message, then the rest, or UNAUTHENTICATED for a refused token (in
                // the trailers, after the first message).
                COUNT => {
                    let count = service_fn(move |call: tonic::Request<String>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            seen.streams.fetch_add(1, Ordering::SeqCst);
                            let verdict = seen.admit(call.metadata()).await;
                            let mut items = vec![Ok(String::from("one"))];
                            match verdict {
                                Ok(_) => items.push(Ok(String::from("two"))),
                                Err(status) => items.push(Err(status)),
                            }
                            Ok::<_, Status>(tonic::Response::new(futures::stream::iter(items)))
                        }
                    });
                    grpc.server_streaming(count, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

async fn start_server() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let echo = Echo(Arc::clone(&seen));
    tokio::spawn(
        Server::builder()
            .add_service(echo)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (addr, seen)
}

// ---- the client ------------------------------------------------------------------------------

/// A source handing out `token-1`, `token-2`, ..., counting its fetches.
struct Source(Arc<AtomicUsize>);

impl TokenSource for Source {
    async fn fetch(&self) -> Result<Token, Error> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Token::new(format!("token-{n}")).with_expires_in(Duration::from_secs(3600)))
    }
}

fn origin(addr: SocketAddr) -> Origin {
    Origin::parse(&format!("http://{addr}")).unwrap()
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

type Client = tonic::client::Grpc<GrpcAuth<Channel, Source>>;

async fn say(client: &Client) -> Result<String, Status> {
    let mut client = client.clone();
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let request = tonic::Request::new(String::from("hello"));
    let response = client
        .unary(request, PathAndQuery::from_static(SAY), Utf8)
        .await?;
    Ok(response.into_inner())
}

/// The messages of a `Count` call, and how it ended.
async fn count(mut client: Client) -> (Vec<String>, Result<(), Status>) {
    client.ready().await.unwrap();
    let request = tonic::Request::new(String::from("count"));
    let mut stream = match client
        .server_streaming(request, PathAndQuery::from_static(COUNT), Utf8)
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

/// A client through the gRPC layer, its cache and the cache's fetch count, and the server's
/// view.
struct Fixture {
    client: Client,
    service: GrpcAuth<Channel, Source>,
    cache: TokenCache<Source>,
    fetches: Arc<AtomicUsize>,
    seen: Arc<Seen>,
    addr: SocketAddr,
}

async fn setup(
    configure: impl FnOnce(BearerAuthLayer<Source>, Origin) -> GrpcAuthLayer<Source>,
) -> Fixture {
    let (addr, seen) = start_server().await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = Source(Arc::clone(&fetches));
    let cache = TokenCache::new(source);
    let layer = configure(BearerAuthLayer::from_cache(cache.clone()), origin(addr));
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(channel(addr).await);
    Fixture {
        client: tonic::client::Grpc::new(service.clone()),
        service,
        cache,
        fetches,
        seen,
        addr,
    }
}

async fn default_setup() -> Fixture {
    setup(|layer, origin| layer.grpc(origin)).await
}

impl Fixture {
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn path_only_calls_carry_the_token() {
    let f = default_setup().await;
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-1");
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-1");
    let (messages, end) = count(f.client.clone()).await;
    assert_eq!(messages, ["one", "two"]);
    end.unwrap();
    assert_eq!(f.fetches(), 1);
    assert_eq!(f.calls(), 3);
    // The service, its layer's cache and the bodies it made show no token.
    let debug = format!("{:?} {:?}", f.service, f.cache);
    assert!(!debug.contains("token-1"), "{debug}");
}

#[tokio::test]
async fn unauthenticated_in_headers_refetches_the_token_once() {
    let f = default_setup().await;
    f.seen.refuse("Bearer token-1");
    let status = say(&f.client).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    assert_eq!(f.fetches(), 2);
}

#[tokio::test]
async fn unauthenticated_in_trailers_refetches_the_token_once() {
    let f = default_setup().await;
    f.seen.refuse("Bearer token-1");
    let (messages, end) = count(f.client.clone()).await;
    // The stream had started: the status came in the trailers, after a message.
    assert_eq!(messages, ["one"]);
    assert_eq!(end.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    let (messages, end) = count(f.client.clone()).await;
    assert_eq!(messages, ["one", "two"]);
    end.unwrap();
    assert_eq!(f.fetches(), 2);
}

#[tokio::test]
async fn trailers_rejecting_an_old_token_keep_the_new_one() {
    let f = default_setup().await;
    // A stream carrying token 1 is held open by the server...
    let gate = Arc::new(Barrier::new(2));
    *f.seen.gate.lock().unwrap() = Some(Arc::clone(&gate));
    f.seen.refuse("Bearer token-1");
    let stream = tokio::spawn(count(f.client.clone()));
    while f.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...while the cache moves on to token 2 (no 401 throttle involved: `invalidate`)...
    let current = f.cache.token().await.unwrap();
    assert!(f.cache.invalidate(&current));
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    // ...then it ends with UNAUTHENTICATED in its trailers: about token 1, not token 2.
    tokio::time::timeout(Duration::from_secs(10), gate.wait())
        .await
        .unwrap();
    let (messages, end) = stream.await.unwrap();
    assert_eq!(messages, ["one"]);
    assert_eq!(end.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    assert_eq!(f.fetches(), 2);
}

#[tokio::test]
async fn concurrent_unauthenticated_calls_share_one_refetch() {
    const CALLS: usize = 16;
    let f = default_setup().await;
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-1");
    // Every call carries token 1 and is answered only once all have arrived.
    *f.seen.gate.lock().unwrap() = Some(Arc::new(Barrier::new(CALLS)));
    f.seen.refuse("Bearer token-1");
    for result in join_all((0..CALLS).map(|_| say(&f.client))).await {
        assert_eq!(result.unwrap_err().code(), Code::Unauthenticated);
    }
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    assert_eq!(f.fetches(), 2);
}

#[tokio::test]
async fn concurrent_unauthenticated_streams_share_one_refetch() {
    const STREAMS: usize = 8;
    let f = default_setup().await;
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-1");
    *f.seen.gate.lock().unwrap() = Some(Arc::new(Barrier::new(STREAMS)));
    f.seen.refuse("Bearer token-1");
    for (messages, end) in join_all((0..STREAMS).map(|_| count(f.client.clone()))).await {
        assert_eq!(messages, ["one"]);
        assert_eq!(end.unwrap_err().code(), Code::Unauthenticated);
    }
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-2");
    assert_eq!(f.fetches(), 2);
}

#[tokio::test]
async fn rejected_calls_are_never_sent_twice() {
    let f = default_setup().await;
    f.seen.refuse("Bearer token-1");
    // A stream rejected in its trailers: the server saw it once, the client got the status.
    let (messages, end) = count(f.client.clone()).await;
    assert_eq!(messages, ["one"]);
    assert_eq!(end.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(f.seen.streams.load(Ordering::SeqCst), 1);
    assert_eq!(f.calls(), 1);

    // A unary call rejected in headers is not sent again either.
    let f = default_setup().await;
    f.seen.refuse("Bearer token-1");
    assert_eq!(
        say(&f.client).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(f.calls(), 1);
    assert_eq!(f.fetches(), 1);
}

/// A client whose requests name an authority (tonic's `Grpc::with_origin`), over the channel.
fn with_origin(f: &Fixture, uri: &str) -> Client {
    tonic::client::Grpc::with_origin(f.service.clone(), uri.parse().unwrap())
}

#[tokio::test]
async fn a_call_naming_the_channels_origin_carries_the_token() {
    let f = default_setup().await;
    let named = with_origin(&f, &format!("http://{}", f.addr));
    assert_eq!(say(&named).await.unwrap(), "Bearer token-1");
}

#[tokio::test]
async fn a_call_naming_another_authority_is_sent_without_the_token_by_default() {
    let f = default_setup().await;
    // The channel connects to its own endpoint whatever the URI says; the token stays home.
    let other = with_origin(&f, "http://127.0.0.2:1");
    assert_eq!(say(&other).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(f.seen.without_token.load(Ordering::SeqCst), 1);
    assert_eq!(f.fetches(), 0);
}

#[tokio::test]
async fn a_call_naming_another_authority_fails_when_configured_to() {
    let f = setup(|layer, origin| {
        layer
            .on_disallowed_origin(OnDisallowedOrigin::Fail)
            .grpc(origin)
    })
    .await;
    let other = with_origin(&f, "https://elsewhere.example.com");
    let status = say(&other).await.unwrap_err();
    assert!(status.message().contains("another authority"), "{status:?}");
    assert_eq!(f.calls(), 0);
    // Path-only calls still go to the channel's origin with the token.
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-1");
}

#[tokio::test]
async fn the_allow_list_judges_the_channels_origin() {
    let f = setup(|layer, origin| {
        layer
            .allow_origin(Origin::from_static("https://api.example.com"))
            .on_disallowed_origin(OnDisallowedOrigin::Fail)
            .grpc(origin)
    })
    .await;
    let status = say(&f.client).await.unwrap_err();
    assert!(
        status.message().contains("not in the allowed origins"),
        "{status:?}"
    );
    assert_eq!(f.calls(), 0);

    // Sent without the token, by default.
    let f = setup(|layer, origin| {
        layer
            .allow_origin(Origin::from_static("https://api.example.com"))
            .grpc(origin)
    })
    .await;
    assert_eq!(
        say(&f.client).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(f.seen.without_token.load(Ordering::SeqCst), 1);
    assert_eq!(f.fetches(), 0);

    // And with the channel's origin in the list, the token goes.
    let f = setup(|layer, origin| layer.allow_origin(origin.clone()).grpc(origin)).await;
    assert_eq!(say(&f.client).await.unwrap(), "Bearer token-1");
}

#[tokio::test]
async fn plain_http_to_a_remote_origin_is_not_sent_the_token() {
    // The channel is on 127.0.0.1, but the user says its calls go to a remote host over plain
    // http: the rule judges the origin the user gave.
    let f = setup(|layer, _| {
        layer
            .on_disallowed_origin(OnDisallowedOrigin::Fail)
            .grpc(Origin::from_static("http://grpc.example.com:50051"))
    })
    .await;
    let status = say(&f.client).await.unwrap_err();
    assert!(status.message().contains("plain http"), "{status:?}");
    assert_eq!(f.calls(), 0);
    assert_eq!(f.fetches(), 0);
}

/// A source of one's own over a DPoP-configured grant, which forwards `fetch` only: its
/// tokens carry their binding, which is all the layer needs.
struct FetchOnly(tower_bearer::source::ClientCredentials);

impl TokenSource for FetchOnly {
    async fn fetch(&self) -> Result<Token, Error> {
        self.0.fetch().await
    }
}

/// A DPoP-bound token on a gRPC channel: every call carries a fresh proof for `POST` and the
/// call's absolute URL (the channel's origin, then the call's path), with the token's `ath`,
/// signed by the key the token is bound to; the server checks each one. The same from a
/// source that declares its key and from one that only forwards `fetch`.
#[tokio::test]
async fn dpop_bound_calls_carry_a_proof_for_the_channels_origin_and_the_calls_path() {
    for wrapped in [false, true] {
        let auth = dpop_server::start(dpop_server::Config::default()).await;
        let (addr, seen) = start_server().await;
        *seen.dpop.lock().unwrap() = Some((Arc::clone(&auth), format!("http://{addr}")));
        let source = tower_bearer::source::ClientCredentials::builder(
            auth.token_url(),
            tower_bearer::source::ClientAuth::none("app"),
        )
        .dpop(tower_bearer::dpop::Dpop::generate().unwrap())
        .build()
        .unwrap();
        let source = match wrapped {
            false => source.boxed(),
            true => FetchOnly(source).boxed(),
        };
        let layer = BearerAuthLayer::new(source).grpc(origin(addr));
        let client = tonic::client::Grpc::new(
            ServiceBuilder::new()
                .layer(layer)
                .service(channel(addr).await),
        );
        for _ in 0..3 {
            let mut client = client.clone();
            client.ready().await.unwrap();
            let answer = client
                .unary(
                    tonic::Request::new(String::from("hello")),
                    PathAndQuery::from_static(SAY),
                    Utf8,
                )
                .await
                .unwrap()
                .into_inner();
            assert_eq!(answer, "DPoP tok-1", "wrapped: {wrapped}");
        }
        assert_eq!(auth.token_calls(), 1, "one token for the three calls");
        assert!(auth.refusals().is_empty(), "{:?}", auth.refusals());
        assert_eq!(seen.calls.load(Ordering::SeqCst), 3);
    }
}
