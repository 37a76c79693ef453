//! `workload::from_env_with`: the first identity the (injected) environment names, each one
//! working against its stand-in; the error lists what it looked for.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use tower_bearer::source::workload::{WorkloadIdentity, from_env_with};
use tower_bearer::{ErrorKind, TokenSource};

use crate::common::jwt_expiring_in;
use crate::support::{StandIn, json, temp_dir, token};

fn env(pairs: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<&'static str, String> = pairs.iter().cloned().collect();
    move |name: &str| map.get(name).cloned()
}

#[test]
fn an_empty_environment_lists_every_variable_looked_for() {
    let err = from_env_with("api://orders", |_| None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    for name in [
        "AZURE_FEDERATED_TOKEN_FILE",
        "TOWER_BEARER_TOKEN_FILE",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "TOWER_BEARER_METADATA_SERVER",
        "GCE_METADATA_HOST",
    ] {
        assert!(err.to_string().contains(name), "{name} missing from: {err}");
    }
    // Half of a pair, or Azure ids without the file, is not an identity; nothing is probed.
    let half = env(&[
        ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x/".into()),
        ("AZURE_CLIENT_ID", "id".into()),
        ("AZURE_TENANT_ID", "t".into()),
        ("IDENTITY_HEADER", "h".into()),
    ]);
    assert_eq!(
        from_env_with("r", half).unwrap_err().kind(),
        ErrorKind::Config
    );
    let unknown = env(&[("TOWER_BEARER_METADATA_SERVER", "aws".into())]);
    assert!(from_env_with("r", unknown).is_err());
}

#[tokio::test]
async fn azure_comes_first_and_github_before_the_metadata_servers() {
    let everything = env(&[
        ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token".into()),
        ("AZURE_CLIENT_ID", "id".into()),
        ("AZURE_TENANT_ID", "tenant".into()),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/".into()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t".into()),
        ("GCE_METADATA_HOST", "127.0.0.1:9".into()),
    ]);
    let identity = from_env_with("api://orders", everything).unwrap();
    assert!(
        matches!(identity, WorkloadIdentity::Azure(_)),
        "{identity:?}"
    );

    let ci = env(&[
        ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/".into()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t".into()),
        ("GCE_METADATA_HOST", "127.0.0.1:9".into()),
    ]);
    let identity = from_env_with("api://orders", ci).unwrap();
    assert!(matches!(identity, WorkloadIdentity::GitHubActions(_)));
    assert_eq!(identity.describe(), "GitHub Actions OIDC");

    // App Service comes before a metadata server named by GCE_METADATA_HOST.
    let app_service = env(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token".into()),
        ("IDENTITY_HEADER", "h".into()),
        ("GCE_METADATA_HOST", "127.0.0.1:9".into()),
    ]);
    let identity = from_env_with("api://orders", app_service).unwrap();
    assert!(matches!(identity, WorkloadIdentity::ManagedIdentity(_)));
    assert!(
        format!("{identity:?}").contains("App Service"),
        "{identity:?}"
    );
}

#[tokio::test]
async fn a_kubernetes_token_file_is_exchanged_when_an_exchange_url_is_set() {
    let dir = temp_dir("chain-k8s");
    let path = dir.join("token");
    let sa = jwt_expiring_in(Duration::from_secs(3600), "system:serviceaccount:ns:app");
    std::fs::write(&path, &sa).unwrap();
    let sts = StandIn::start(|_, _| token("orders-token")).await;

    let plain = env(&[("TOWER_BEARER_TOKEN_FILE", path.display().to_string())]);
    let identity = from_env_with("orders", plain).unwrap();
    assert_eq!(identity.fetch().await.unwrap().secret(), sa);

    let exchanged = env(&[
        ("TOWER_BEARER_TOKEN_FILE", path.display().to_string()),
        ("TOWER_BEARER_TOKEN_EXCHANGE_URL", sts.url("/token")),
    ]);
    let identity = from_env_with("orders", exchanged).unwrap();
    assert!(matches!(identity, WorkloadIdentity::Exchange(_)));
    assert_eq!(identity.fetch().await.unwrap().secret(), "orders-token");
    let form = sts.seen()[0].form();
    assert_eq!(form["subject_token"], sa);
    assert_eq!(form["audience"], "orders");
}

#[tokio::test]
async fn metadata_servers_are_used_only_when_named() {
    let google = StandIn::start(|seen, _| {
        assert_eq!(seen.header("metadata-flavor"), Some("Google"));
        let mut response = json(
            StatusCode::OK,
            serde_json::json!({"access_token": "ya29.x", "expires_in": 100}),
        );
        response
            .headers_mut()
            .insert("metadata-flavor", "Google".parse().unwrap());
        response
    })
    .await;
    let named = env(&[("GCE_METADATA_HOST", google.addr.to_string())]);
    let identity = from_env_with("https://www.googleapis.com/auth/cloud-platform", named).unwrap();
    assert_eq!(identity.fetch().await.unwrap().secret(), "ya29.x");
    assert_eq!(
        google.seen()[0].query()["scopes"],
        "https://www.googleapis.com/auth/cloud-platform"
    );

    let imds = StandIn::start(|seen, _| {
        assert_eq!(seen.header("metadata"), Some("true"));
        json(
            StatusCode::OK,
            serde_json::json!({"access_token": "imds", "expires_in": "100"}),
        )
    })
    .await;
    let told = env(&[
        ("TOWER_BEARER_METADATA_SERVER", "azure".into()),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.url("")),
    ]);
    let identity = from_env_with("https://vault.azure.net", told).unwrap();
    assert_eq!(identity.fetch().await.unwrap().secret(), "imds");
    assert_eq!(
        imds.seen()[0].query()["resource"],
        "https://vault.azure.net"
    );
}
