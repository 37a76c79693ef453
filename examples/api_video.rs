//! api.video: an API key exchanged for an access token and a rotating refresh token (seed 003),
//! then an authenticated API call through `BearerAuthLayer`. Talks to api.video.
//!
//!     API_VIDEO_KEY=... cargo run --example api_video
//!
//! Environment:
//!
//! - `API_VIDEO_KEY`: your API key (required);
//! - `API_VIDEO_BASE_URL`: the API (default `https://sandbox.api.video`; use
//!   `https://ws.api.video` for production, or a local server).
//!
//! It lists one video with the token from the API key, forces a refresh (as a 401 would) so the
//! next token comes from the refresh token, and lists again. It prints statuses, never a secret:
//!
//!     GET /videos?pageSize=1 → 200 OK (token from the API key)
//!     refresh token rotated: true
//!     GET /videos?pageSize=1 → 200 OK (token from the refresh token)

use std::process::ExitCode;

use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::secret::ApiKey;
use tower_bearer::source::api_video;
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthLayer, TokenCache};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(key) = std::env::var("API_VIDEO_KEY")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "set API_VIDEO_KEY to your api.video API key (see the top of examples/api_video.rs)"
        );
        return ExitCode::from(2);
    };
    let base = std::env::var("API_VIDEO_BASE_URL").unwrap_or(api_video::SANDBOX_URL.into());
    match run(&base, ApiKey::new(key)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(base: &str, key: ApiKey) -> Result<(), BoxError> {
    let store = MemoryStore::empty();
    let source = api_video::api_key_at(base, key)
        .store(store.clone())
        .build()?;
    let cache = TokenCache::new(source);
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()))
        .service(reqwest_service(reqwest::Client::new()));
    let list = || {
        http::Request::get(format!("{}/videos?pageSize=1", base.trim_end_matches('/')))
            .body(String::new())
            .expect("a valid request")
    };

    let response = api.clone().oneshot(list()).await?;
    println!(
        "GET /videos?pageSize=1 → {} (token from the API key)",
        response.status()
    );
    let first_refresh_token = store.get();

    // What a 401 would do: drop the token, so the next one comes from the refresh token.
    cache.invalidate(&cache.token().await?);
    let response = api.clone().oneshot(list()).await?;
    println!(
        "refresh token rotated: {}",
        store.get() != first_refresh_token
    );
    println!(
        "GET /videos?pageSize=1 → {} (token from the refresh token)",
        response.status()
    );
    Ok(())
}

/// reqwest as a `tower::Service<http::Request<String>>`, to put under the layer.
fn reqwest_service(
    client: reqwest::Client,
) -> impl Service<http::Request<String>, Response = http::Response<String>, Error = BoxError> + Clone
{
    service_fn(move |request: http::Request<String>| {
        let client = client.clone();
        async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let status = response.status();
            let mut out = http::Response::new(response.text().await?);
            *out.status_mut() = status;
            Ok::<_, BoxError>(out)
        }
    })
}
