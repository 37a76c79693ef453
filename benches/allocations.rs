//! Allocations per request on the fast path, and bytes per cache and per service, counted by a
//! global allocator that counts every allocation of this process.
//!
//! Each row drives 100,000 requests through a current-thread runtime exactly as `fast_path`
//! does (build a request with an absolute `https` URI, `ready().await`, `call(..).await`) and
//! reports the allocations per request beyond a warm-up. The goal: `BearerAuth` with a fresh
//! token allocates nothing beyond what the same loop allocates with tower-http's static
//! `SetRequestHeader` (the request's `HeaderMap` on its first insert).
//!
//!     cargo bench --bench allocations
//!
//! The counts are printed (they are deterministic); criterion then times the counting
//! allocator's overhead on one row, so the harness is a criterion bench like the others.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Uri};
use support::{CloneEach, HTTPS, NoOp, runtime, through_runtime, token_value};
use tower::{Layer, Service, ServiceExt};

use tower_bearer::keyed::KeyedTokenCache;
use tower_bearer::source::from_fn;
use tower_bearer::{BearerAuthLayer, Origin, Token, TokenCache, source::StaticToken};

/// Counts allocations and live bytes, then defers to the system allocator.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: usize = 100_000;

/// Allocations per request of `svc`, driven `REQUESTS` times after 1,000 warm-up requests.
fn allocations_per_request<S>(rt: &tokio::runtime::Runtime, mut svc: S) -> f64
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let uri = Uri::from_static(HTTPS);
    rt.block_on(async {
        drive(&mut svc, &uri, 1_000).await;
        let before = ALLOCS.load(Ordering::SeqCst);
        drive(&mut svc, &uri, REQUESTS).await;
        (ALLOCS.load(Ordering::SeqCst) - before) as f64 / REQUESTS as f64
    })
}

/// `n` requests through `svc`, as `fast_path` sends them.
async fn drive<S>(svc: &mut S, uri: &Uri, n: usize)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let request = Request::builder().uri(uri.clone()).body(()).unwrap();
        let ready = svc.ready().await.unwrap();
        let _ = black_box(ready.call(black_box(request)).await);
    }
}

/// Net bytes still allocated after `make` runs, and the value it made.
fn bytes_of<T>(make: impl FnOnce() -> T) -> (usize, T) {
    let before = LIVE.load(Ordering::SeqCst);
    let value = make();
    (LIVE.load(Ordering::SeqCst).saturating_sub(before), value)
}

fn count(c: &mut Criterion) {
    let rt = runtime(1);
    let value = token_value();
    let token = || Token::new(value.clone()).with_expires_in(Duration::from_secs(24 * 3600));

    // Bytes: a cache before and after its first token, and one service over it.
    let (cache_bytes, cache) = bytes_of(|| TokenCache::new(StaticToken::new(token())));
    let (first_token_bytes, ()) = bytes_of(|| {
        rt.block_on(cache.token()).unwrap();
    });
    let (service_bytes, bearer) =
        bytes_of(|| BearerAuthLayer::from_cache(cache.clone()).layer(NoOp));
    let (clone_bytes, clone) = bytes_of(|| bearer.clone());
    drop(clone);
    let (allow_list_bytes, allow_listed) = bytes_of(|| {
        BearerAuthLayer::from_cache(cache.clone())
            .allow_origin(Origin::from_static("https://api.example.com"))
            .layer(NoOp)
    });
    println!(
        "bytes: TokenCache {cache_bytes} on the heap (+{first_token_bytes} with an 800-byte token)"
    );
    println!(
        "bytes: BearerAuth<NoOp> {} inline + {service_bytes} on the heap; a clone +{clone_bytes}; with an allow-list +{allow_list_bytes}",
        std::mem::size_of_val(&bearer)
    );

    keyed_slot_bytes(&rt);

    let limit = support::limit(&value);
    let rows: [(&str, f64); 5] = [
        ("no header (NoOp alone)", allocations_per_request(&rt, NoOp)),
        (
            "limit (SetRequestHeader)",
            allocations_per_request(&rt, limit.clone()),
        ),
        (
            "bearer_auth/https",
            allocations_per_request(&rt, bearer.clone()),
        ),
        (
            "bearer_auth/https_allow_list",
            allocations_per_request(&rt, allow_listed.clone()),
        ),
        (
            "bearer_auth/https_clone_per_request",
            allocations_per_request(&rt, CloneEach(bearer.clone())),
        ),
    ];
    for (name, per_request) in rows {
        println!("allocations per request: {name}: {per_request:.3}");
    }
    let (_, limit_allocs) = rows[1];
    for (name, per_request) in &rows[2..4] {
        assert!(
            *per_request <= limit_allocs,
            "{name} allocates {per_request} per request, the limit {limit_allocs}"
        );
    }

    let mut group = c.benchmark_group("allocations");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("bearer_auth/https (counting allocator)", |b| {
        b.iter_custom(|iters| through_runtime(&rt, 1, iters, HTTPS, &|| bearer.clone()))
    });
    group.finish();
}

/// Bytes per keyed slot holding a 1 KiB token, and a 4 KiB one (the difference over the
/// difference in size: what each byte of token costs): 1,000 slots filled after a first one
/// (the map's own growth is amortised in), each source sharing one copy of the token's text,
/// so what is counted is the slot, its cache and its token, used from one thread. Slots used
/// once, then slots used twice (the second use arms the token's phase timer: a task).
fn keyed_slot_bytes(rt: &tokio::runtime::Runtime) {
    // Once unmeasured: the runtime's own tables (tasks, timers) grow on the first pass.
    let unmeasured = std::io::sink();
    keyed_slot_bytes_used(rt, 2, unmeasured);
    for uses in [1, 2] {
        keyed_slot_bytes_used(rt, uses, std::io::stdout());
    }
}

fn keyed_slot_bytes_used(rt: &tokio::runtime::Runtime, uses: usize, mut out: impl std::io::Write) {
    const SLOTS: u32 = 1_000;
    let per_slot = |size: usize| {
        let text: std::sync::Arc<str> = "k".repeat(size).into();
        let keyed = KeyedTokenCache::builder(move |_: &u32| {
            let text = text.clone();
            Ok(from_fn(move || {
                let token = Token::new(text.to_string()).with_expires_in(Duration::from_secs(3600));
                async move { Ok::<_, tower_bearer::Error>(token) }
            }))
        })
        .max_keys(2 * SLOTS as usize)
        .build();
        rt.block_on(keyed.token(&SLOTS)).unwrap();
        let (bytes, ()) = bytes_of(|| {
            for key in 0..SLOTS {
                for _ in 0..uses {
                    rt.block_on(keyed.token(&key)).unwrap();
                }
            }
        });
        bytes as f64 / f64::from(SLOTS)
    };
    let (small, large) = (per_slot(1024), per_slot(4096));
    let per_token_byte = (large - small) / 3072.0;
    writeln!(
        out,
        "bytes: a keyed slot used {uses}×: {small:.0} with a 1024-byte token ({:.1}× the token), {large:.0} \
         with a 4096-byte one: {per_token_byte:.2} bytes per token byte + {:.0}",
        small / 1024.0,
        small - per_token_byte * 1024.0
    )
    .unwrap();
}

criterion_group!(benches, count);
criterion_main!(benches);
