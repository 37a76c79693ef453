//! A Disruptive Technologies service account kept authenticated, as in the vendor's "Refreshing
//! Access Token" example (seed 004): a simulated REST call every 5 seconds, a refresh when the
//! token is within a minute of expiry. Talks to Disruptive's identity server.
//!
//!     DT_SERVICE_ACCOUNT_KEY_ID=... DT_SERVICE_ACCOUNT_EMAIL=... DT_SERVICE_ACCOUNT_SECRET=... \
//!         cargo run --example disruptive --features jwt
//!
//! Environment:
//!
//! - `DT_SERVICE_ACCOUNT_KEY_ID`, `DT_SERVICE_ACCOUNT_EMAIL`, `DT_SERVICE_ACCOUNT_SECRET`: the
//!   service account's credentials (required);
//! - `DT_TOKEN_URL`: the token endpoint (default
//!   `https://identity.disruptive-technologies.com/oauth2/token`; a local server works too);
//! - `DT_ITERATIONS`: how many calls to simulate (default: run until interrupted);
//! - `DT_INTERVAL_SECS`: seconds between calls (default 5).
//!
//! It prints the vendor example's trace (the seconds left before the refresh window):
//!
//!     Refreshing...
//!     Token expires in 3538s.
//!     Token expires in 3533s.
//!     ...

use std::process::ExitCode;
use std::time::Duration;

use tower_bearer::secret::ClientSecret;
use tower_bearer::source::disruptive;
use tower_bearer::{Error, Token, TokenCache, TokenSource};

/// The vendor example's refresh buffer, which is also the cache's default refresh window.
const REFRESH_BUFFER: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> ExitCode {
    let names = [
        "DT_SERVICE_ACCOUNT_KEY_ID",
        "DT_SERVICE_ACCOUNT_EMAIL",
        "DT_SERVICE_ACCOUNT_SECRET",
    ];
    let values: Vec<_> = names
        .iter()
        .map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .collect();
    let missing: Vec<_> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "missing environment variables: {} (see the top of examples/disruptive.rs)",
            missing.join(", ")
        );
        return ExitCode::from(2);
    }
    let [Some(key_id), Some(email), Some(secret)] =
        <[Option<String>; 3]>::try_from(values).unwrap_or_default()
    else {
        return ExitCode::from(2);
    };
    let token_url = std::env::var("DT_TOKEN_URL").unwrap_or(disruptive::TOKEN_URL.into());
    let iterations: Option<u64> = std::env::var("DT_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok());
    let interval = std::env::var("DT_INTERVAL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);

    let source = match disruptive::service_account_at(
        &token_url,
        &key_id,
        &email,
        &ClientSecret::new(secret),
    )
    .build()
    {
        Ok(source) => source,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let cache = TokenCache::builder(Announced(source))
        .refresh_window(REFRESH_BUFFER)
        .build();

    let mut done = 0;
    while iterations.is_none_or(|n| done < n) {
        match cache.token().await {
            Ok(token) => {
                let left = token
                    .expires_in()
                    .unwrap_or_default()
                    .saturating_sub(REFRESH_BUFFER);
                println!("Token expires in {}s.", left.as_secs());
                function_that_calls_rest_api(token.header_value()).await;
            }
            Err(err) => {
                eprintln!("could not get a token: {err}");
                return ExitCode::FAILURE;
            }
        }
        done += 1;
        tokio::time::sleep(Duration::from_secs(interval)).await;
    }
    ExitCode::SUCCESS
}

/// This would usually do something useful with the `Authorization` header value.
async fn function_that_calls_rest_api(_authorization: &http::HeaderValue) {}

/// Prints "Refreshing..." each time a new token is fetched, as the vendor example does.
struct Announced<P>(P);

impl<P: TokenSource> TokenSource for Announced<P> {
    async fn fetch(&self) -> Result<Token, Error> {
        println!("Refreshing...");
        self.0.fetch().await
    }
}
