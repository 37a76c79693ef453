//! Kensho Extract with keypair authentication (seed 002): an RS256 client assertion exchanged at
//! Kensho's Okta token endpoint, then the seed's job flow, submit a document and poll until it
//! is no longer pending, all through one client behind `BearerAuthLayer`. Talks to Kensho.
//!
//!     KENSHO_TOKEN_URL=... KENSHO_CLIENT_ID=... KENSHO_PRIVATE_KEY=private.pem \
//!     KENSHO_EXTRACT_URL=... cargo run --example kensho_extract --features jwt -- document.pdf
//!
//! Environment (all required):
//!
//! - `KENSHO_TOKEN_URL`: the Okta token endpoint Kensho gave you;
//! - `KENSHO_CLIENT_ID`: the client id Kensho sent back for your public key;
//! - `KENSHO_PRIVATE_KEY`: the path of your RSA private key (`openssl genrsa -out private.pem 2048`);
//! - `KENSHO_EXTRACT_URL`: the Extract endpoint documents are posted to (a local server works);
//!
//! and the document to extract as the first argument. It prints the seed's trace and the job's
//! final status, never a token:
//!
//!     Sending a document to extract
//!     Waiting for job 3f2a...
//!     Job 3f2a... finished: success (18234 bytes of output)

use std::process::ExitCode;
use std::time::Duration;

use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::source::{assertion::SigningKey, kensho};

/// How often, and how many times, to ask whether the job is done.
const POLL_EVERY: Duration = Duration::from_secs(2);
const MAX_POLLS: usize = 300;

#[tokio::main]
async fn main() -> ExitCode {
    let names = [
        "KENSHO_TOKEN_URL",
        "KENSHO_CLIENT_ID",
        "KENSHO_PRIVATE_KEY",
        "KENSHO_EXTRACT_URL",
    ];
    let values: Vec<_> = names
        .iter()
        .map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .collect();
    let mut missing: Vec<_> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    let document = std::env::args().nth(1);
    if document.is_none() {
        missing.push("the document to extract (first argument)");
    }
    if !missing.is_empty() {
        eprintln!(
            "missing: {} (see the top of examples/kensho_extract.rs)",
            missing.join(", ")
        );
        return ExitCode::from(2);
    }
    let values: Vec<String> = values.into_iter().flatten().collect();
    match run(
        &values[0],
        &values[1],
        &values[2],
        &values[3],
        &document.unwrap_or_default(),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    token_url: &str,
    client_id: &str,
    key_path: &str,
    extract_url: &str,
    document: &str,
) -> Result<(), BoxError> {
    let pem = std::fs::read(key_path)
        .map_err(|e| format!("cannot read KENSHO_PRIVATE_KEY ({key_path}): {e}"))?;
    let source = kensho::keypair(token_url, client_id, SigningKey::rs256_pem(&pem)?).build()?;
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(reqwest_service(reqwest::Client::new()));

    println!("Sending a document to extract");
    let contents = std::fs::read(document).map_err(|e| format!("cannot read {document}: {e}"))?;
    let name = std::path::Path::new(document)
        .file_name()
        .map_or("document".into(), |n| n.to_string_lossy());
    let (content_type, body) = multipart_file("file", &name, &contents);
    let submit = http::Request::post(extract_url)
        .header("content-type", content_type)
        .body(body)?;
    let (status, body) = api.clone().oneshot(submit).await?.into_parts();
    let status = status.status;
    if !status.is_success() {
        return Err(format!("submitting the document failed: HTTP {status}").into());
    }
    let request_id = serde_json::from_slice::<serde_json::Value>(&body)?["request_id"]
        .as_str()
        .ok_or("the answer has no request_id")?
        .to_owned();

    println!("Waiting for job {request_id}");
    let poll_url = format!("{}/{request_id}", extract_url.trim_end_matches('/'));
    for _ in 0..MAX_POLLS {
        // Each poll goes through the layer: a token that expires during a long job is refreshed.
        let (status, body) = api
            .clone()
            .oneshot(http::Request::get(&poll_url).body(Vec::new())?)
            .await?
            .into_parts();
        let status = status.status;
        let job: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if status == http::StatusCode::OK && job["status"] == "pending" {
            tokio::time::sleep(POLL_EVERY).await;
            continue;
        }
        let outcome = job["status"].as_str().unwrap_or("no status");
        println!(
            "Job {request_id} finished: HTTP {status}, {outcome} ({} bytes of output)",
            body.len()
        );
        return Ok(());
    }
    Err(format!("job {request_id} still pending after {MAX_POLLS} polls").into())
}

/// A `multipart/form-data` body with one file field.
fn multipart_file(field: &str, file_name: &str, contents: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("tower-bearer-{:016x}", fastrand::u64(..));
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        file_name.replace('"', "")
    )
    .into_bytes();
    body.extend_from_slice(contents);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// reqwest as a `tower::Service`, answering with the status and the body bytes.
fn reqwest_service(
    client: reqwest::Client,
) -> impl Service<http::Request<Vec<u8>>, Response = http::Response<bytes::Bytes>, Error = BoxError>
+ Clone {
    service_fn(move |request: http::Request<Vec<u8>>| {
        let client = client.clone();
        async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let status = response.status();
            let body = response.bytes().await?;
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            Ok::<_, BoxError>(answer)
        }
    })
}
