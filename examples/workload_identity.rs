//! Workload identity without a stored secret: a Kubernetes-style projected service-account
//! token, rotated by the "kubelet" while the program runs, exchanged (RFC 8693) for an API's
//! access token. Everything runs here: the token file is written to a temporary directory,
//! the security token service is embedded on 127.0.0.1. No credential, no network.
//!
//! Run: `cargo run --example workload_identity`
//!
//! 1. The projected volume holds `token -> ..data/token`, as the kubelet lays it out.
//! 2. `TokenExchange::subject_from(TokenFile)` reads the file for every exchange; the cache
//!    holds the API token it gets back, and the layer sends it.
//! 3. The kubelet rotates the token (a new `..data` symlink renamed over the old one).
//! 4. The next exchange (here forced by an invalidation, as a 401 would) sends the new one.
//!
//! Prints something like:
//!
//! ```text
//! projected token written to /tmp/workload-identity-1234/token
//! API request 1: sent the token exchanged for service-account token #1
//! kubelet rotated the token (..data -> ..2026_12_06_0002)
//! API request 2: sent the token exchanged for service-account token #2
//! the STS saw subject tokens #1, #2
//! ```
//!
//! No token is ever printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, header::AUTHORIZATION};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::source::workload::TokenFile;
use tower_bearer::source::{TokenExchange, token_type};
use tower_bearer::{BearerAuthLayer, TokenCache};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    // 1. The projected volume, with the first service-account token.
    let volume = std::env::temp_dir().join(format!("workload-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&volume);
    std::fs::create_dir_all(&volume)?;
    kubelet_write(&volume, 1)?;
    std::os::unix::fs::symlink("..data/token", volume.join("token"))?;
    println!(
        "projected token written to {}",
        volume.join("token").display()
    );

    // 2. The exchange: the file is the subject, read again for every exchange.
    let (sts_url, subjects) = start_sts().await?;
    let exchange = TokenExchange::builder(sts_url)
        .subject_from(TokenFile::new(volume.join("token")), token_type::JWT)
        .requested_token_type(token_type::ACCESS_TOKEN)
        .audience("orders-api")
        .build()?;
    let cache = TokenCache::new(exchange);
    // The "API": says which access token it was sent (the STS names them after the subject).
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone()))
        .service(service_fn(|request: Request<()>| async move {
            let sent = request.headers()[AUTHORIZATION].to_str()?.to_owned();
            let subject = sent.rsplit('-').next().unwrap_or("?").to_owned();
            Ok::<_, tower::BoxError>(Response::new(subject))
        }));

    let seen = api.clone().oneshot(Request::new(())).await?;
    println!(
        "API request 1: sent the token exchanged for service-account token #{}",
        seen.body()
    );

    // 3. The kubelet rotates the token.
    let versioned = kubelet_write(&volume, 2)?;
    println!("kubelet rotated the token (..data -> {versioned})");

    // 4. The API token is dropped (as the layer does on a 401): the next request exchanges
    //    again, and the file is read again.
    if let Some(current) = cache.current() {
        cache.invalidate(&current);
    }
    let seen = api.oneshot(Request::new(())).await?;
    println!(
        "API request 2: sent the token exchanged for service-account token #{}",
        seen.body()
    );
    let subjects = subjects.lock().unwrap().clone();
    let listed: Vec<String> = subjects.iter().map(|n| format!("#{n}")).collect();
    println!("the STS saw subject tokens {}", listed.join(", "));
    std::fs::remove_dir_all(&volume)?;
    Ok(())
}

/// What the kubelet's atomic writer does: a new timestamped directory, then a new `..data`
/// symlink renamed over the old one. Returns the new directory's name.
fn kubelet_write(volume: &Path, generation: u32) -> std::io::Result<String> {
    let versioned = format!("..2026_12_06_{generation:04}");
    std::fs::create_dir(volume.join(&versioned))?;
    std::fs::write(
        volume.join(&versioned).join("token"),
        service_account_jwt(generation),
    )?;
    let tmp: PathBuf = volume.join("..data_tmp");
    std::os::unix::fs::symlink(&versioned, &tmp)?;
    std::fs::rename(&tmp, volume.join("..data"))?;
    Ok(versioned)
}

/// A stand-in for the kubelet's token: an unsigned JWT naming its generation.
fn service_account_jwt(generation: u32) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"system:serviceaccount:shop:orders","gen":{generation},"exp":{exp}}}"#
        ))
    )
}

/// The security token service: exchanges a subject token for an access token named after
/// the subject's generation, and remembers which generations it saw.
async fn start_sts() -> std::io::Result<(String, Arc<Mutex<Vec<u64>>>)> {
    let subjects: Arc<Mutex<Vec<u64>>> = Arc::default();
    let log = Arc::clone(&subjects);
    let app = axum::Router::new().route(
        "/token",
        post(move |body: String| {
            let log = Arc::clone(&log);
            async move {
                let form: std::collections::HashMap<String, String> =
                    form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                let payload = form["subject_token"].split('.').nth(1).unwrap_or_default();
                let claims: serde_json::Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap_or_default())
                        .unwrap_or_default();
                let generation = claims["gen"].as_u64().unwrap_or(0);
                log.lock().unwrap().push(generation);
                axum::Json(serde_json::json!({
                    "access_token": format!("orders-api-token-{generation}"),
                    "token_type": "Bearer",
                    "expires_in": 600,
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/token", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, subjects))
}
