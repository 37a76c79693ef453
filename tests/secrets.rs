//! No token or secret in any `Debug`, `Display`, error or log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, source::from_fn};

#[path = "support/logs.rs"]
mod logs;

const SECRET: &str = "tok-SECRET-6f1d2c";

#[tokio::test(start_paused = true)]
async fn no_secret_in_logs_debug_or_errors_through_a_whole_lifecycle() {
    logs::logs();

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

    let logs = logs::logs_of_this_thread();
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

/// Every event of a token's life, with faults: each is there, with what it must say, and no
/// secret is in any of them.
#[tokio::test(start_paused = true)]
async fn every_lifecycle_event_is_logged_and_none_holds_a_secret() {
    logs::logs();

    // Fetch 0 succeeds; 1 fails (transient), 2 is refused, 3 panics; then they succeed.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source =
        from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    1 => Err(Error::transient("the token endpoint is unavailable")),
                    2 => Err(Error::rejected("the token endpoint refused the credential")
                        .with_oauth_error("invalid_grant")),
                    3 => panic!("a panic that mentions nothing"),
                    _ => Ok(Token::new(format!("{SECRET}-{n}"))
                        .with_expires_in(Duration::from_secs(120))),
                }
            }
        });
    let cache = TokenCache::builder(source)
        .jitter(Duration::ZERO)
        .backoff(tower_bearer::Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
        ))
        .rejected_cooldown(Duration::from_secs(1))
        .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
    let send = || client.clone().oneshot(Request::new(()));

    send().await.unwrap(); // no token: fetch 0
    // Into the refresh window: served stale while each refresh fails in turn, then succeeds.
    tokio::time::sleep(Duration::from_secs(61)).await;
    for _ in 0..4 {
        send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await; // past backoff and cooldown
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "every outcome happened");
    // A 401's invalidation, and its refresh.
    let seen = cache.token().await.unwrap();
    assert!(cache.invalidate(&seen));
    cache.token().await.unwrap();

    let logs = logs::logs_of_this_thread();
    for expected in [
        "token_refresh{", // the refresh span
        "token refresh started",
        "no_token",    // why the first one started
        "stale",       // why the background ones started
        "invalidated", // why the last one started
        "token refreshed",
        "expires_in=", // the lifetime, never the token
        "token refresh failed",
        "kind=transient",
        "kind=rejected",
        "kind=panicked",
        "retry_in=",          // the backoff
        "serving_stale=true", // the stale token went on being served
        "token invalidated",
    ] {
        assert!(
            logs.contains(expected),
            "no `{expected}` in the log:\n{logs}"
        );
    }
    assert!(!logs.contains(SECRET), "a secret in the log:\n{logs}");
    assert!(
        !logs.contains("a panic that mentions"),
        "the panic payload is not logged"
    );
}
