//! No copy of a credential is left in freed memory by the built-in sources: the request
//! bodies, query strings and Basic header that carry secrets, and the access token read from
//! the answer, are wiped once the HTTP client and the caller are done with them.
//!
//! The global allocator of this test binary looks for the secrets in every block it frees. The
//! HTTP client is a stand-in that checks each secret was sent and answers from static memory:
//! what a real client copies on the way to the wire (hyper's buffers, TLS records) is not this
//! crate's to wipe, and a server in the same process would leave its own copies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tower_bearer::TokenSource;
use tower_bearer::http_client::{HttpClient, HttpFuture, HttpRequest};
use tower_bearer::secret::{ApiKey, ClientSecret, RefreshToken};
use tower_bearer::source::{
    ApiKeyExchange, ClientAuth, ClientCredentials, RefreshEndpoint, RefreshTokenGrant,
};
use tower_bearer::store::MemoryStore;

const BASIC: &str = "zs-basic-secret-1f0a";
const POST: &str = "zs-post-secret-2b1c";
const QUERY: &str = "zs-query-refresh-3c2d";
const API_KEY: &str = "zs-api-key-4d3e";
const REFRESH: &str = "zs-refresh-grant-5e4f";
#[cfg(feature = "jwt")]
const HMAC: &str = "zs-hmac-key-6f5a-0123456789abcdef";
const ACCESS: &str = "zs-access-token-7a6b";

const SECRETS: &[&str] = &[BASIC, POST, QUERY, API_KEY, REFRESH, ACCESS];

static SCANNING: AtomicBool = AtomicBool::new(false);
/// For each secret of `SECRETS`, whether a freed block held it. (A `Mutex` over a fixed array:
/// no allocation while the allocator holds it.)
static FOUND: Mutex<[bool; 7]> = Mutex::new([false; 7]);

/// The system allocator, zeroing each block it hands out (so every byte of a freed block has
/// been written), noting freed blocks that still hold a secret.
struct Scanning;

fn holds(block: &[u8], secret: &[u8]) -> bool {
    block.windows(secret.len()).any(|w| w == secret)
}

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::Relaxed) {
            // SAFETY: the block is live until `System.dealloc` below, and zeroed at allocation.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let extra: &[&str] = {
                #[cfg(feature = "jwt")]
                {
                    &[HMAC]
                }
                #[cfg(not(feature = "jwt"))]
                {
                    &[]
                }
            };
            for (i, secret) in SECRETS.iter().chain(extra).enumerate() {
                if holds(block, secret.as_bytes())
                    && let Ok(mut found) = FOUND.try_lock()
                {
                    found[i] = true;
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// Checks that the request carries `expect` (without copying it) and answers with `ACCESS`
/// from static memory.
struct StandIn {
    expect: &'static str,
}

impl HttpClient for StandIn {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        let in_query = request
            .uri()
            .query()
            .is_some_and(|q| holds(q.as_bytes(), self.expect.as_bytes()));
        let in_body = holds(request.body(), self.expect.as_bytes());
        // Basic: base64 of "id:secret"; the test only checks the header is there.
        let basic = request.headers().contains_key(http::header::AUTHORIZATION);
        assert!(in_query || in_body || basic, "{} not sent", self.expect);
        drop(request);
        Box::pin(async {
            let body = Bytes::from_static(
                br#"{"access_token":"zs-access-token-7a6b","token_type":"Bearer","expires_in":60}"#,
            );
            Ok(http::Response::new(body))
        })
    }
}

async fn fetch(source: impl TokenSource) {
    let token = source.fetch().await.unwrap();
    assert_eq!(token.secret(), ACCESS);
}

#[test]
fn sources_leave_no_copy_of_a_secret_in_freed_memory() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    const URL: &str = "https://auth.example.com/token";
    SCANNING.store(true, Ordering::Relaxed);
    rt.block_on(async {
        let auth = ClientAuth::client_secret_basic("cid", ClientSecret::new(BASIC));
        fetch(
            ClientCredentials::builder(URL, auth)
                .build_with(StandIn { expect: "Basic" })
                .unwrap(),
        )
        .await;
        let auth = ClientAuth::client_secret_post("cid", ClientSecret::new(POST));
        fetch(
            ClientCredentials::builder(URL, auth)
                .build_with(StandIn { expect: POST })
                .unwrap(),
        )
        .await;
        fetch(
            RefreshEndpoint::builder(URL, RefreshToken::new(QUERY))
                .build_with(StandIn { expect: QUERY })
                .unwrap(),
        )
        .await;
        fetch(
            ApiKeyExchange::builder(URL, ApiKey::new(API_KEY))
                .build_with(StandIn { expect: API_KEY })
                .unwrap(),
        )
        .await;
        fetch(
            RefreshTokenGrant::builder(URL, MemoryStore::new(RefreshToken::new(REFRESH)))
                .build_with(StandIn { expect: REFRESH })
                .unwrap(),
        )
        .await;
        #[cfg(feature = "jwt")]
        {
            use tower_bearer::source::JwtBearer;
            use tower_bearer::source::assertion::{Assertion, SigningKey};
            let key = SigningKey::hs256(&ClientSecret::new(HMAC)).unwrap();
            let auth = ClientAuth::client_secret_jwt("cid", &ClientSecret::new(HMAC)).unwrap();
            fetch(
                ClientCredentials::builder(URL, auth)
                    .build_with(StandIn {
                        expect: "client_assertion",
                    })
                    .unwrap(),
            )
            .await;
            fetch(
                JwtBearer::builder(URL, Assertion::new(key, "robot@example.com"))
                    .build_with(StandIn {
                        expect: "assertion",
                    })
                    .unwrap(),
            )
            .await;
        }
    });
    drop(rt);
    SCANNING.store(false, Ordering::Relaxed);
    let found = *FOUND.lock().unwrap();
    let leaked: Vec<&str> = SECRETS
        .iter()
        .copied()
        .chain(std::iter::once("the HS256 key"))
        .zip(found)
        .filter(|(_, leaked)| *leaked)
        .map(|(name, _)| name)
        .collect();
    assert!(leaked.is_empty(), "left in freed memory: {leaked:?}");
}
