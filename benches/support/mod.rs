//! What the benchmarks share: the no-op inner service, the token, the alternative designs and
//! the driver that runs requests through a tokio runtime as users do.
#![allow(dead_code)] // each bench uses its own subset

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, Uri};
use tower::{Layer, Service, ServiceExt};
use tower_http::set_header::SetRequestHeader;

/// The inner service: takes the request and drops it.
#[derive(Clone, Copy)]
pub struct NoOp;

impl<B> Service<Request<B>> for NoOp {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        black_box(&request);
        ready(Ok(Response::new(())))
    }
}

/// Go's `ReuseTokenSource`: one mutex, held while checking (and, when needed, refreshing) the
/// token; the header is formatted for every request.
#[derive(Clone)]
pub struct Naive<S> {
    pub inner: S,
    pub token: Arc<tokio::sync::Mutex<Option<CachedSecret>>>,
}

/// The secret and when it expires.
pub type CachedSecret = (Arc<str>, Instant);

impl<S> Service<Request<()>> for Naive<S>
where
    S: Service<Request<()>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<()>) -> Self::Future {
        let token = self.token.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let secret = {
                let mut guard = token.lock().await;
                match &*guard {
                    Some((secret, expiry))
                        if Instant::now() + Duration::from_secs(60) < *expiry =>
                    {
                        secret.clone()
                    }
                    _ => {
                        let fresh: Arc<str> = token_value().into();
                        *guard = Some((fresh.clone(), Instant::now() + Duration::from_secs(3600)));
                        fresh
                    }
                }
            };
            let value = HeaderValue::from_str(&format!("Bearer {secret}")).unwrap();
            request.headers_mut().insert(AUTHORIZATION, value);
            inner.call(request).await
        })
    }
}

/// The limit, plus a strong handle cloned into each response future and dropped with it.
#[derive(Clone)]
pub struct ArcPerRequest<S> {
    pub inner: S,
    pub handle: Arc<AtomicU64>,
}

impl<S: Service<Request<()>>> Service<Request<()>> for ArcPerRequest<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithHandle<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        WithHandle {
            future: self.inner.call(request),
            _handle: Arc::clone(&self.handle),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct WithHandle<F> {
        #[pin]
        future: F,
        _handle: Arc<AtomicU64>,
    }
}

impl<F: Future> Future for WithHandle<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

pub fn token_value() -> String {
    // 800 bytes of base64url, as a typical JWT access token.
    (0..800)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i * 7 % 64] as char
        })
        .collect()
}

pub const RELATIVE: &str = "/v1/items";
pub const HTTPS: &str = "https://api.example.com/v1/items";

/// A runtime with `threads` workers: a current-thread runtime for 1.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    }
}

/// `iters` requests through each of `threads` services from `make`, each driven by its own task
/// (`ready().await` then `call(..).await`), all tasks at once; the mean time per task.
pub fn through_runtime<S, M>(
    rt: &tokio::runtime::Runtime,
    threads: usize,
    iters: u64,
    uri: &'static str,
    make: &M,
) -> Duration
where
    M: Fn() -> S + ?Sized,
    S: Service<Request<()>> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let uri = Uri::from_static(uri);
    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..threads)
        .map(|_| {
            let mut svc = make();
            let uri = uri.clone();
            let started = started.clone();
            // Spawned from outside the runtime: each goes to the shared queue, and the spin
            // below keeps a worker until the other task has been picked up by the other.
            rt.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                while started.load(Ordering::SeqCst) < threads {
                    std::hint::spin_loop();
                }
                let start = Instant::now();
                for _ in 0..iters {
                    let request = Request::builder().uri(uri.clone()).body(()).unwrap();
                    let svc = svc.ready().await.unwrap();
                    let _ = black_box(svc.call(black_box(request)).await);
                }
                start.elapsed()
            })
        })
        .collect();
    let times: Vec<Duration> = rt.block_on(async {
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times
    });
    times.iter().sum::<Duration>() / threads as u32
}

/// A service cloned from a template for each request, as `client.clone().oneshot(req)` does.
#[derive(Clone)]
pub struct CloneEach<S>(pub S);

impl<S: Service<Request<()>> + Clone> Service<Request<()>> for CloneEach<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, request: Request<()>) -> Self::Future {
        let mut svc = self.0.clone();
        // A template clone is ready at once for every service here.
        let _ = svc.poll_ready(&mut Context::from_waker(std::task::Waker::noop()));
        svc.call(request)
    }
}

/// The limit: tower-http's static `SetRequestHeader` with the prebuilt, sensitive header of
/// `token`, over the no-op service.
pub fn limit(token: &str) -> SetRequestHeader<NoOp, HeaderValue> {
    let mut header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    header.set_sensitive(true);
    tower_http::set_header::SetRequestHeaderLayer::overriding(AUTHORIZATION, header).layer(NoOp)
}

/// Sorts `values` and returns their 25th, 50th and 75th percentiles.
pub fn quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}
