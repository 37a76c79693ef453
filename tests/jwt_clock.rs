//! A host clock running ahead of the issuer's does not make every JWT look expired: with `iat`,
//! the token lives `exp − iat` from the fetch start; without it, `exp` is judged on the local
//! clock as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_bearer::{Error, ErrorKind, Token, TokenCache, source::from_fn};

/// An unsigned JWT with claims at these offsets (seconds) from the local wall clock.
fn jwt(exp: i64, iat: Option<i64>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = match iat {
        Some(iat) => format!(r#"{{"exp":{},"iat":{}}}"#, now + exp, now + iat),
        None => format!(r#"{{"exp":{}}}"#, now + exp),
    };
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// A cache over a source that always hands out `token`, and how many times it was asked.
fn cache_of(token: String) -> (TokenCache<impl tower_bearer::TokenSource>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let cache = TokenCache::new(from_fn(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let token = token.clone();
        async move { Ok::<_, Error>(Token::new(token)) }
    }));
    (cache, fetches)
}

#[tokio::test(start_paused = true)]
async fn a_clock_ahead_still_gets_the_lifetime_the_issuer_granted() {
    // Issued an hour ago and expired 5 minutes ago, by our clock: the host runs ahead.
    let (cache, fetches) = cache_of(jwt(-300, Some(-3_900)));
    let token = cache.token().await.unwrap();
    assert_eq!(token.expires_in(), Some(Duration::from_secs(3_600)));

    // Until its refresh window, the cache keeps serving it: no fetch per request.
    for _ in 0..30 {
        tokio::time::advance(Duration::from_secs(100)).await;
        cache.token().await.unwrap();
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn without_iat_exp_is_judged_on_the_local_clock() {
    let err = cache_of(jwt(-300, None)).0.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");

    let token = cache_of(jwt(1_800, None)).0.token().await.unwrap();
    let left = token.expires_in().unwrap();
    assert!(left <= Duration::from_secs(1_800) && left > Duration::from_secs(1_790));
}
