//! `ManagedIdentity`: Azure IMDS, App Service and the Google metadata server, each against a
//! stand-in on 127.0.0.1 that checks the headers and parameters the platform requires.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tower_bearer::source::workload::ManagedIdentity;
use tower_bearer::{ErrorKind, TokenCache, TokenSource};

use crate::support::{StandIn, json, oauth_error};

fn forbidden(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("stand-in refused: {why}")).into_response()
}

/// A Google answer: the metadata server marks every answer with `Metadata-Flavor: Google`.
fn google(body: serde_json::Value) -> Response {
    let mut response = json(StatusCode::OK, body);
    response
        .headers_mut()
        .insert("metadata-flavor", "Google".parse().unwrap());
    response
}

#[tokio::test]
async fn azure_imds_sends_metadata_true_and_reads_string_lifetimes() {
    let server = StandIn::start(|seen, _| {
        let query = seen.query();
        if seen.header("metadata") != Some("true") {
            return forbidden("no Metadata: true");
        }
        if seen.uri.path() != "/metadata/identity/oauth2/token"
            || query.get("api-version").map(String::as_str) != Some("2018-02-01")
            || query.get("resource").map(String::as_str) != Some("https://vault.azure.net")
            || query.get("client_id").map(String::as_str) != Some("user-assigned")
        {
            return forbidden("wrong path or parameters");
        }
        json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": "imds-token", "expires_in": "3599",
                "expires_on": "4102444800", "resource": "https://vault.azure.net",
                "token_type": "Bearer",
            }),
        )
    })
    .await;
    let env = HashMap::from([("AZURE_POD_IDENTITY_AUTHORITY_HOST", server.url("/"))]);
    let source = ManagedIdentity::azure_imds("https://vault.azure.net")
        .client_id("user-assigned")
        .from_env_with(|name| env.get(name).cloned())
        .build()
        .unwrap();
    let token = source.fetch().await.unwrap();
    assert_eq!(token.secret(), "imds-token");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert!(seen[0].body.is_empty());
    // No proxy header, no credential of ours.
    assert!(seen[0].header("authorization").is_none());
}

#[tokio::test]
async fn azure_imds_errors_are_classified() {
    let server = StandIn::start(|_, i| match i {
        0 => oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        1 => StatusCode::GONE.into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    })
    .await;
    let source = ManagedIdentity::azure_imds("https://vault.azure.net")
        .endpoint(server.url("/metadata/identity/oauth2/token"))
        .build()
        .unwrap();
    let refused = source.fetch().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Rejected);
    assert_eq!(refused.oauth_error(), Some("invalid_request"));
    let starting = source.fetch().await.unwrap_err();
    assert_eq!(starting.kind(), ErrorKind::Transient);
    assert!(source.fetch().await.unwrap_err().is_transient());
}

#[tokio::test]
async fn app_service_sends_the_identity_header_and_reads_expires_on() {
    let server = StandIn::start(|seen, _| {
        let query = seen.query();
        if seen.header("x-identity-header") != Some("platform-secret")
            || query.get("api-version").map(String::as_str) != Some("2019-08-01")
            || query.get("resource").map(String::as_str) != Some("https://management.azure.com/")
        {
            return forbidden("wrong header or parameters");
        }
        // 2019-08-01 gives `expires_on` (epoch seconds, as a string) and no `expires_in`.
        json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": "opaque-app-service-token", "expires_on": "4102444800",
                "resource": "https://management.azure.com/", "token_type": "Bearer",
                "client_id": "abc",
            }),
        )
    })
    .await;
    let env = HashMap::from([
        ("IDENTITY_ENDPOINT", server.url("/msi/token")),
        ("IDENTITY_HEADER", "platform-secret".to_owned()),
    ]);
    let source = ManagedIdentity::app_service("https://management.azure.com/")
        .from_env_with(|name| env.get(name).cloned())
        .build()
        .unwrap();
    // An opaque token with no readable lifetime would be refused: this one has `expires_on`.
    let cache = TokenCache::new(source.clone());
    assert_eq!(
        cache.token().await.unwrap().secret(),
        "opaque-app-service-token"
    );
    assert_eq!(server.seen()[0].uri.path(), "/msi/token");
    // The identity header is a secret.
    assert!(!format!("{source:?}").contains("platform-secret"));

    let missing = ManagedIdentity::app_service("r")
        .from_env_with(|_| None)
        .build()
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Config);
    assert!(
        missing.to_string().contains("IDENTITY_ENDPOINT"),
        "{missing}"
    );
}

#[tokio::test]
async fn google_metadata_sends_metadata_flavor_and_checks_the_answer_is_google() {
    let server = StandIn::start(|seen, _| {
        if seen.header("metadata-flavor") != Some("Google") {
            return forbidden("no Metadata-Flavor: Google");
        }
        if seen.uri.path()
            != "/computeMetadata/v1/instance/service-accounts/robot@p.iam.gserviceaccount.com/token"
            || seen.query().get("scopes").map(String::as_str)
                != Some("https://www.googleapis.com/auth/cloud-platform,openid")
        {
            return forbidden("wrong path or scopes");
        }
        google(serde_json::json!({
            "access_token": "ya29.token", "expires_in": 3599, "token_type": "Bearer",
        }))
    })
    .await;
    let env = HashMap::from([("GCE_METADATA_HOST", server.addr.to_string())]);
    let source = ManagedIdentity::google()
        .service_account("robot@p.iam.gserviceaccount.com")
        .scopes(["https://www.googleapis.com/auth/cloud-platform", "openid"])
        .from_env_with(|name| env.get(name).cloned())
        .build()
        .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "ya29.token");

    // Something that is not the metadata server (no Metadata-Flavor in the answer).
    let impostor = StandIn::start(|_, _| {
        json(
            StatusCode::OK,
            serde_json::json!({"access_token": "x", "expires_in": 60}),
        )
    })
    .await;
    let env = HashMap::from([("GCE_METADATA_HOST", impostor.addr.to_string())]);
    let err = ManagedIdentity::google()
        .from_env_with(|name| env.get(name).cloned())
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("Metadata-Flavor"), "{err}");
}

#[tokio::test]
async fn a_metadata_server_answering_html_is_a_typed_error() {
    let server = StandIn::start(|_, i| {
        if i == 0 {
            Html("<html><body>Sign in to the hotel wifi</body></html>").into_response()
        } else {
            // No content type, an HTML body, and an error status.
            (StatusCode::FORBIDDEN, "<!doctype html><p>blocked</p>").into_response()
        }
    })
    .await;
    let source = ManagedIdentity::azure_imds("https://vault.azure.net")
        .endpoint(server.url("/metadata/identity/oauth2/token"))
        .build()
        .unwrap();
    for _ in 0..2 {
        let err = source.fetch().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidResponse);
        assert!(err.to_string().contains("HTML"), "{err}");
    }
}

#[test]
fn metadata_endpoints_stay_on_metadata_hosts() {
    // Plain http to a public host is refused, for every platform.
    for builder in [
        ManagedIdentity::azure_imds("r").endpoint("http://imds.example.com/token"),
        ManagedIdentity::google().endpoint("http://10.0.0.1/token"),
        ManagedIdentity::app_service("r")
            .endpoint("http://identity.example.com/msi/token")
            .identity_header("h"),
    ] {
        assert_eq!(builder.build().unwrap_err().kind(), ErrorKind::Config);
    }
    // The platforms' own addresses are allowed (built, never called here).
    ManagedIdentity::azure_imds("r").build().unwrap();
    ManagedIdentity::google().build().unwrap();
    ManagedIdentity::app_service("r")
        .endpoint("http://169.254.129.3:8081/msi/token")
        .identity_header("h")
        .build()
        .unwrap();
}
