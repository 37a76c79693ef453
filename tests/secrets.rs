//! No token or secret in any `Debug`, `Display`, error or log line.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, source::from_fn};

const SECRET: &str = "tok-SECRET-6f1d2c";

/// Everything the subscriber writes, for the test to search.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn no_secret_in_logs_debug_or_errors_through_a_whole_lifecycle() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Succeeds, then fails transiently, then is rejected, then panics, then succeeds.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source =
        from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    1 => Err(Error::transient("token endpoint unavailable")),
                    2 => Err(
                        Error::rejected("the token endpoint refused the refresh token")
                            .with_oauth_error("invalid_grant"),
                    ),
                    3 => panic!("a panic that mentions nothing"),
                    _ => Ok(Token::new(format!("{SECRET}-{n}"))
                        .with_expires_in(Duration::from_secs(120))),
                }
            }
        });
    let cache = TokenCache::builder(source)
        .rejected_cooldown(Duration::from_secs(1))
        .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()))
        .service(service_fn(|req: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(format!("{:?}", req.headers())))
        }));

    let mut texts = Vec::new();
    for _ in 0..6 {
        match client.clone().oneshot(Request::new(())).await {
            Ok(headers_debug) => texts.push(headers_debug.into_body()),
            Err(err) => {
                texts.push(err.to_string());
                texts.push(format!("{err:?}"));
            }
        }
        if let Ok(token) = cache.token().await {
            texts.push(format!("{token:?}"));
            texts.push(format!("{:?}", token.header_value()));
            cache.invalidate(&token);
        }
        texts.push(format!("{cache:?}"));
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
    assert!(
        calls.load(Ordering::SeqCst) >= 5,
        "went through every outcome"
    );

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("token refreshed"),
        "the log is captured: {logs}"
    );
    assert!(logs.contains("token refresh failed"));
    texts.push(logs);
    for text in texts {
        assert!(!text.contains(SECRET), "secret leaked in: {text}");
    }
}
