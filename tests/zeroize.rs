//! No copy of a token is left behind in freed memory: the `Token` is zeroized on drop, and
//! so must be the `Authorization` header built from it.
//!
//! The global allocator of this test binary looks for the token in every block it frees.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower::{Service, ServiceExt, service_fn};
use tower_bearer::{BearerAuth, Error, Token, TokenCache, source::from_fn};

const SECRET: &[u8] = b"zeroize-me-7c1b9e4f0a2d";

static SCANNING: AtomicBool = AtomicBool::new(false);
static FREED_WITH_SECRET: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, zeroing each block it hands out (so every byte of a freed block has
/// been written) and counting freed blocks that still hold `SECRET`.
struct Scanning;

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::Relaxed) {
            // SAFETY: the block is live until `System.dealloc` below, and zeroed at allocation.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(SECRET.len()).any(|w| w == SECRET) {
                FREED_WITH_SECRET.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

#[tokio::test(start_paused = true)]
async fn no_copy_of_the_token_is_left_in_freed_memory() {
    SCANNING.store(true, Ordering::Relaxed);
    {
        let cache = TokenCache::new(from_fn(|| async {
            let secret = String::from_utf8(SECRET.to_vec()).unwrap();
            Ok::<_, Error>(Token::new(secret).with_expires_in(Duration::from_secs(3600)))
        }));
        let inner = service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.headers().contains_key(AUTHORIZATION)))
        });
        let mut client = BearerAuth::new(inner, cache.clone());
        for _ in 0..3 {
            let response = client.ready().await.unwrap().call(Request::new(())).await;
            assert!(*response.unwrap().body());
        }
        let token = cache.token().await.unwrap();
        // Other threads send it too: each gets its own copy of the header, zeroized as well.
        std::thread::scope(|threads| {
            for _ in 0..3 {
                threads.spawn(|| assert!(token.header_value().as_bytes().ends_with(SECRET)));
            }
        });
        assert!(cache.invalidate(&token)); // a second token replaces the first
        let response = client.ready().await.unwrap().call(Request::new(())).await;
        assert!(*response.unwrap().body());
    }
    // Let the runtime drop what the finished tasks left (timers, channels).
    tokio::task::yield_now().await;
    SCANNING.store(false, Ordering::Relaxed);
    assert_eq!(FREED_WITH_SECRET.load(Ordering::Relaxed), 0);
}
