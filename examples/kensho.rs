//! Kensho personal tokens, for both spellings of the refresh endpoint (seeds 000 and 001).
//! Talks to Kensho: needs a refresh token from your Kensho account page.
//!
//!     KENSHO_REFRESH_TOKEN=... cargo run --example kensho
//!     KENSHO_LINK_REFRESH_TOKEN=... cargo run --example kensho
//!
//! Environment (at least one refresh token):
//!
//! - `KENSHO_REFRESH_TOKEN`: a personal refresh token for the API at `KENSHO_API_BASE`
//!   (default `https://scribe.kensho.com`): `GET /oauth2/refresh?refresh_token=R` → `{"access_token"}`
//! - `KENSHO_LINK_REFRESH_TOKEN`: a refresh token for Link at `KENSHO_LINK_BASE` (default
//!   `https://link-streaming.kensho.com`): `GET /oauth2/refresh?refreshToken=R` → `{"accessToken"}`
//!
//! The `*_BASE` variables can point at a local server (`http://127.0.0.1:PORT`). It prints, for
//! each API, how long the access token lives (read from its JWT `exp`) and that a second request
//! reused it; never a token:
//!
//!     scribe: access token valid for 3541s; 2 requests, 1 token fetch
//!     link: the token endpoint refused the refresh token: is it correct, and still valid? (HTTP 401 from link-streaming.kensho.com)

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tower_bearer::secret::RefreshToken;
use tower_bearer::source::{RefreshEndpointBuilder, kensho};
use tower_bearer::{Error, Token, TokenCache, TokenSource};

#[tokio::main]
async fn main() -> ExitCode {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let apis: Vec<(&str, RefreshEndpointBuilder)> = [
        var("KENSHO_REFRESH_TOKEN").map(|rt| {
            let base = var("KENSHO_API_BASE").unwrap_or("https://scribe.kensho.com".into());
            (
                "scribe",
                kensho::personal_token(&base, RefreshToken::new(rt)),
            )
        }),
        var("KENSHO_LINK_REFRESH_TOKEN").map(|rt| {
            let base =
                var("KENSHO_LINK_BASE").unwrap_or("https://link-streaming.kensho.com".into());
            ("link", kensho::link(&base, RefreshToken::new(rt)))
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if apis.is_empty() {
        eprintln!(
            "set KENSHO_REFRESH_TOKEN and/or KENSHO_LINK_REFRESH_TOKEN (see the top of examples/kensho.rs)"
        );
        return ExitCode::from(2);
    }

    let mut failed = false;
    for (name, builder) in apis {
        if let Err(err) = run(name, builder).await {
            println!("{name}: {err}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(name: &str, builder: RefreshEndpointBuilder) -> Result<(), Error> {
    let fetches = Arc::new(AtomicUsize::new(0));
    let cache = TokenCache::new(Counted(builder.build()?, fetches.clone()));
    // Two requests' worth of tokens: the second is served from the cache.
    let token = cache.token().await?;
    cache.token().await?;
    let left = token
        .expires_in()
        .map_or("no expiry".into(), |d| format!("{}s", d.as_secs()));
    println!(
        "{name}: access token valid for {left}; 2 requests, {} token fetch",
        fetches.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Counts the fetches of the source it wraps.
struct Counted<P>(P, Arc<AtomicUsize>);

impl<P: TokenSource> TokenSource for Counted<P> {
    async fn fetch(&self) -> Result<Token, Error> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.fetch().await
    }
}
