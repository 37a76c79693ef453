//! [`from_env`]: the first workload identity the environment names.

use std::fmt;

use super::{AzureWorkloadIdentity, GitHubActions, ManagedIdentity, TokenFile};
use crate::source::{TokenExchange, token_type};
use crate::{Error, Token, TokenSource};

/// A token file of any platform (a Kubernetes projected service-account token): its path.
pub const TOKEN_FILE_VAR: &str = "TOWER_BEARER_TOKEN_FILE";

/// An RFC 8693 token endpoint to exchange the token file's or GitHub's token at.
pub const TOKEN_EXCHANGE_URL_VAR: &str = "TOWER_BEARER_TOKEN_EXCHANGE_URL";

/// `azure` or `google`: use that platform's metadata server (never probed otherwise).
pub const METADATA_SERVER_VAR: &str = "TOWER_BEARER_METADATA_SERVER";

/// What [`from_env`] looks for, in order, as its error lists it.
const LOOKED_FOR: &str = "AZURE_FEDERATED_TOKEN_FILE (with AZURE_CLIENT_ID and \
     AZURE_TENANT_ID), TOWER_BEARER_TOKEN_FILE, ACTIONS_ID_TOKEN_REQUEST_URL and \
     ACTIONS_ID_TOKEN_REQUEST_TOKEN, IDENTITY_ENDPOINT and IDENTITY_HEADER, \
     TOWER_BEARER_METADATA_SERVER (azure or google), GCE_METADATA_HOST";

/// The workload identity [`from_env`] found: a [`TokenSource`] of whichever kind.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WorkloadIdentity {
    /// Azure workload identity (`AZURE_FEDERATED_TOKEN_FILE`, ...).
    Azure(AzureWorkloadIdentity),
    /// A platform token file used as the token (`TOWER_BEARER_TOKEN_FILE`).
    TokenFile(TokenFile),
    /// GitHub Actions' OIDC token used as the token (`ACTIONS_ID_TOKEN_REQUEST_URL`, ...).
    GitHubActions(GitHubActions),
    /// The token file's or GitHub's token exchanged at `TOWER_BEARER_TOKEN_EXCHANGE_URL`.
    Exchange(TokenExchange),
    /// A metadata server (App Service, Azure IMDS, Google).
    ManagedIdentity(ManagedIdentity),
}

impl WorkloadIdentity {
    /// Which identity this is, in words (for a startup log line).
    pub fn describe(&self) -> &'static str {
        match self {
            WorkloadIdentity::Azure(_) => "Azure workload identity",
            WorkloadIdentity::TokenFile(_) => "platform token file",
            WorkloadIdentity::GitHubActions(_) => "GitHub Actions OIDC",
            WorkloadIdentity::Exchange(_) => "platform token exchanged (RFC 8693)",
            WorkloadIdentity::ManagedIdentity(_) => "metadata server",
        }
    }
}

impl TokenSource for WorkloadIdentity {
    async fn fetch(&self) -> Result<Token, Error> {
        match self {
            WorkloadIdentity::Azure(source) => source.fetch().await,
            WorkloadIdentity::TokenFile(source) => source.fetch().await,
            WorkloadIdentity::GitHubActions(source) => source.fetch().await,
            WorkloadIdentity::Exchange(source) => source.fetch().await,
            WorkloadIdentity::ManagedIdentity(source) => source.fetch().await,
        }
    }
}

/// The first workload identity the process environment names, for `resource` (the API the
/// tokens are for: a URI, or an audience); see [`from_env_with`].
///
/// ```no_run
/// use tower_bearer::{BearerAuthLayer, source::workload};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let identity = workload::from_env("https://management.azure.com")?;
/// println!("using {}", identity.describe());
/// let layer = BearerAuthLayer::new(identity);
/// # let _ = layer; Ok(()) }
/// ```
pub fn from_env(resource: &str) -> Result<WorkloadIdentity, Error> {
    from_env_with(resource, super::process_env)
}

/// The first workload identity `env` names, in this order:
///
/// 1. `AZURE_FEDERATED_TOKEN_FILE`: [`AzureWorkloadIdentity`] (also needs `AZURE_CLIENT_ID`
///    and `AZURE_TENANT_ID`; `AZURE_AUTHORITY_HOST` is optional), scope
///    `<resource>/.default`;
/// 2. `TOWER_BEARER_TOKEN_FILE`: the [`TokenFile`] at that path (a Kubernetes projected
///    service-account token, with the audience of the API), used as the token;
/// 3. `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`: the job's
///    [`GitHubActions`] OIDC token with `audience` = `resource`, used as the token;
/// 4. `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`: the App Service [`ManagedIdentity`];
/// 5. only when told, never by probing the network: `TOWER_BEARER_METADATA_SERVER=azure`
///    (Azure IMDS, `AZURE_POD_IDENTITY_AUTHORITY_HOST` overriding its address),
///    `TOWER_BEARER_METADATA_SERVER=google` or `GCE_METADATA_HOST` (the Google metadata
///    server; `resource` is its scope when it is a `https://www.googleapis.com/auth/` one).
///
/// With `TOWER_BEARER_TOKEN_EXCHANGE_URL` set, the token of 2 or 3 is not used as it is but
/// exchanged there (RFC 8693, `audience` = `resource`) for an access token.
///
/// When none is present, the [`Config`](crate::ErrorKind::Config) error lists every variable
/// it looked for. Empty values count as absent. Reading `env` is all it does: no file is
/// read and no request sent until the first token is asked for.
///
/// ```
/// use std::collections::HashMap;
/// use tower_bearer::source::workload::{WorkloadIdentity, from_env_with};
///
/// let env = HashMap::from([("TOWER_BEARER_TOKEN_FILE", "/var/run/secrets/tokens/api")]);
/// let identity = from_env_with("orders", |name| env.get(name).map(|v| v.to_string()))?;
/// assert!(matches!(identity, WorkloadIdentity::TokenFile(_)));
///
/// let err = from_env_with("orders", |_| None).unwrap_err();
/// assert!(err.to_string().contains("ACTIONS_ID_TOKEN_REQUEST_URL"));
/// # Ok::<(), tower_bearer::Error>(())
/// ```
pub fn from_env_with(
    resource: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<WorkloadIdentity, Error> {
    let env: &dyn Fn(&str) -> Option<String> = &env;
    let has = |name: &str| super::var(env, name).is_some();
    let exchange_url = super::var(env, TOKEN_EXCHANGE_URL_VAR);
    let exchange = |url: String, subject: ExchangeSubject| -> Result<WorkloadIdentity, Error> {
        let builder = TokenExchange::builder(url);
        let builder = match subject {
            ExchangeSubject::File(file) => builder.subject_from(file, token_type::JWT),
            ExchangeSubject::GitHub(oidc) => builder.subject_from(oidc, token_type::ID_TOKEN),
        };
        Ok(WorkloadIdentity::Exchange(
            builder
                .audience(resource)
                .requested_token_type(token_type::ACCESS_TOKEN)
                // The default client (a configuration error without the `reqwest` feature).
                .build_with_option(None)?,
        ))
    };

    if has("AZURE_FEDERATED_TOKEN_FILE") {
        return AzureWorkloadIdentity::builder(resource)
            .from_env_with(env)
            .build()
            .map(WorkloadIdentity::Azure);
    }
    if let Some(path) = super::var(env, TOKEN_FILE_VAR) {
        let file = TokenFile::new(path);
        return match exchange_url {
            Some(url) => exchange(url, ExchangeSubject::File(file)),
            None => Ok(WorkloadIdentity::TokenFile(file)),
        };
    }
    if has("ACTIONS_ID_TOKEN_REQUEST_URL") && has("ACTIONS_ID_TOKEN_REQUEST_TOKEN") {
        let oidc = GitHubActions::builder()
            .audience(resource)
            .from_env_with(env)
            .build()?;
        return match exchange_url {
            Some(url) => exchange(url, ExchangeSubject::GitHub(oidc)),
            None => Ok(WorkloadIdentity::GitHubActions(oidc)),
        };
    }
    if has("IDENTITY_ENDPOINT") && has("IDENTITY_HEADER") {
        return ManagedIdentity::app_service(resource)
            .from_env_with(env)
            .build()
            .map(WorkloadIdentity::ManagedIdentity);
    }
    let told = super::var(env, METADATA_SERVER_VAR).map(|v| v.trim().to_ascii_lowercase());
    match told.as_deref() {
        Some("azure") => {
            return ManagedIdentity::azure_imds(resource)
                .from_env_with(env)
                .build()
                .map(WorkloadIdentity::ManagedIdentity);
        }
        Some("google") => return google(resource, env),
        Some(_) => {
            return Err(Error::config(
                "TOWER_BEARER_METADATA_SERVER must be `azure` or `google`",
            ));
        }
        None if has("GCE_METADATA_HOST") => return google(resource, env),
        None => {}
    }
    Err(Error::config(format!(
        "no workload identity in the environment: looked for {LOOKED_FOR}"
    )))
}

enum ExchangeSubject {
    File(TokenFile),
    GitHub(GitHubActions),
}

fn google(resource: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<WorkloadIdentity, Error> {
    let mut builder = ManagedIdentity::google().from_env_with(env);
    if resource.starts_with("https://www.googleapis.com/auth/") {
        builder = builder.scopes([resource]);
    }
    builder.build().map(WorkloadIdentity::ManagedIdentity)
}

impl fmt::Display for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}
