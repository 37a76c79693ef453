//! No workload source shows a credential in `Debug`: not the platform's token, the App Service
//! identity header, the runner's request token, nor a helper's arguments or environment.

use tower_bearer::source::ClientAuth;
use tower_bearer::source::workload::{
    GitHubActions, ManagedIdentity, TokenFile, static_credential,
};

#[test]
fn workload_sources_never_show_their_secrets() {
    let shown = [
        format!("{:?}", static_credential("static-secret")),
        format!(
            "{:?}",
            ClientAuth::client_assertion("id", static_credential("static-secret"))
        ),
        format!(
            "{:?}",
            ManagedIdentity::app_service("r")
                .endpoint("http://127.0.0.1:1/msi/token")
                .identity_header("header-secret")
        ),
        format!(
            "{:?}",
            ManagedIdentity::app_service("r")
                .endpoint("http://127.0.0.1:1/msi/token")
                .identity_header("header-secret")
                .build()
                .unwrap()
        ),
        format!(
            "{:?}",
            GitHubActions::builder()
                .request_url("https://127.0.0.1:1/x")
                .request_token("runner-secret")
        ),
        format!(
            "{:?}",
            GitHubActions::builder()
                .request_url("https://127.0.0.1:1/x")
                .request_token("runner-secret")
                .build()
                .unwrap()
        ),
        format!("{:?}", TokenFile::new("/var/run/secrets/token")),
    ];
    for text in &shown {
        for secret in ["static-secret", "header-secret", "runner-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    #[cfg(feature = "executable")]
    {
        let helper = tower_bearer::source::workload::Executable::builder("/bin/helper")
            .arg("--password=arg-secret")
            .env("HELPER_TOKEN", "env-secret")
            .timeout(std::time::Duration::from_secs(1))
            .build()
            .unwrap();
        let text = format!("{helper:?}");
        assert!(
            !text.contains("arg-secret") && !text.contains("env-secret"),
            "{text}"
        );
        assert!(text.contains("helper"), "{text}");
    }
}
