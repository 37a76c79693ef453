//! `GitHubActions`: the job's OIDC token, asked for with the runner's request token and an
//! audience, used as a token-exchange subject and as a source of its own.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower_bearer::source::workload::GitHubActions;
use tower_bearer::source::{TokenExchange, token_type};
use tower_bearer::{ErrorKind, TokenSource};

use crate::common::jwt_expiring_in;
use crate::support::{StandIn, json, token};

#[tokio::test]
async fn github_actions_oidc_is_the_subject_of_an_exchange() {
    let id_token = jwt_expiring_in(
        Duration::from_secs(300),
        "repo:acme/app:ref:refs/heads/main",
    );
    let issued = id_token.clone();
    let github = StandIn::start(move |seen, _| {
        let query = seen.query();
        if seen.header("authorization") != Some("Bearer runner-request-token")
            || query.get("api-version").map(String::as_str) != Some("2.0")
            || query.get("audience").map(String::as_str) != Some("https://sts.example.com")
        {
            return (StatusCode::FORBIDDEN, "wrong request").into_response();
        }
        json(
            StatusCode::OK,
            serde_json::json!({ "count": 1, "value": issued }),
        )
    })
    .await;
    let sts = StandIn::start(|_, _| token("exchanged")).await;
    let env = HashMap::from([
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            github.url("/_apis/distributedtask/hubs/build/plans/p/jobs/j/idtoken?api-version=2.0"),
        ),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "runner-request-token".to_owned(),
        ),
    ]);
    let oidc = GitHubActions::builder()
        .audience("https://sts.example.com")
        .from_env_with(|name| env.get(name).cloned())
        .build()
        .unwrap();
    assert!(!format!("{oidc:?}").contains("runner-request-token"));

    // As a source of its own: the ID token, with its JWT lifetime.
    let own = oidc.fetch().await.unwrap();
    assert_eq!(own.secret(), id_token);
    assert!(own.jwt_expiry().is_some());

    let exchange = TokenExchange::builder(sts.url("/token"))
        .subject_from(oidc, token_type::ID_TOKEN)
        .build()
        .unwrap();
    assert_eq!(exchange.fetch().await.unwrap().secret(), "exchanged");
    let form = sts.seen()[0].form();
    assert_eq!(form["subject_token"], id_token);
    assert_eq!(form["subject_token_type"], token_type::ID_TOKEN);
    // A new ID token was asked for each time.
    assert_eq!(github.seen().len(), 2);
}

#[tokio::test]
async fn github_actions_without_permission_is_a_clear_error() {
    let github = StandIn::start(|_, _| StatusCode::FORBIDDEN.into_response()).await;
    let oidc = GitHubActions::builder()
        .request_url(github.url("/idtoken?api-version=2.0"))
        .request_token("t")
        .build()
        .unwrap();
    let err = oidc.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("id-token: write"), "{err}");

    let missing = GitHubActions::builder()
        .from_env_with(|_| None)
        .build()
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Config);
    assert!(missing.to_string().contains("ACTIONS_ID_TOKEN_REQUEST_URL"));
}
