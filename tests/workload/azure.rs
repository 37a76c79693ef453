//! `AzureWorkloadIdentity`: client credentials with the federated token file as
//! `client_assertion` and `<resource>/.default`, configured from an injected environment.

use std::collections::HashMap;
use std::time::Duration;

use tower_bearer::source::workload::AzureWorkloadIdentity;
use tower_bearer::{ErrorKind, TokenSource};

use crate::common::jwt_expiring_in;
use crate::support::{StandIn, replace_file, temp_dir, token};

#[tokio::test]
async fn azure_workload_identity_sends_the_federated_token_as_client_assertion() {
    let dir = temp_dir("azure");
    let path = dir.join("azure-identity-token");
    let first = jwt_expiring_in(Duration::from_secs(3600), "first");
    let second = jwt_expiring_in(Duration::from_secs(3600), "second");
    std::fs::write(&path, &first).unwrap();
    let server = StandIn::start(|_, i| token(&format!("entra-{i}"))).await;
    let env: HashMap<&str, String> = HashMap::from([
        (
            "AZURE_CLIENT_ID",
            "11111111-2222-3333-4444-555555555555".to_owned(),
        ),
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com".to_owned()),
        ("AZURE_FEDERATED_TOKEN_FILE", path.display().to_string()),
        ("AZURE_AUTHORITY_HOST", server.url("/")),
    ]);
    let source = AzureWorkloadIdentity::builder("https://management.azure.com")
        .from_env_with(|name| env.get(name).cloned())
        .build()
        .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "entra-0");
    replace_file(&path, &second);
    assert_eq!(source.fetch().await.unwrap().secret(), "entra-1");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for (request, assertion) in seen.iter().zip([&first, &second]) {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.uri.path(),
            "/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let form = request.form();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(&form["client_assertion"], assertion);
        assert_eq!(form["scope"], "https://management.azure.com/.default");
        assert!(!form.contains_key("client_secret"));
    }
}

#[tokio::test]
async fn azure_workload_identity_names_the_variables_it_is_missing() {
    let env: HashMap<&str, &str> = HashMap::from([("AZURE_CLIENT_ID", "id")]);
    let err = AzureWorkloadIdentity::builder("api://orders")
        .from_env_with(|name| env.get(name).map(|v| v.to_string()))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("AZURE_TENANT_ID"), "{err}");
    assert!(
        err.to_string().contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{err}"
    );
    assert!(!err.to_string().contains("AZURE_CLIENT_ID"), "{err}");
}
