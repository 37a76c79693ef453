//! [`AzureWorkloadIdentity`]: Microsoft Entra workload identity federation (AKS workload
//! identity, any platform that writes a federated token file).

use crate::source::builder::build_options;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::TokenFile;
use crate::http_client::HttpClient;
use crate::source::{ClientAuth, ClientCredentials};
use crate::{Error, Token, TokenSource};

/// The Microsoft Entra authority when `AZURE_AUTHORITY_HOST` is not set.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// The variables AKS workload identity sets in the pod, in the order they are read.
pub(crate) const VARIABLES: [&str; 4] = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
];

/// Microsoft Entra workload identity: the client credentials grant at
/// `{authority}/{tenant}/oauth2/v2.0/token`, the client authenticated by the federated token
/// the platform writes to a file (`client_assertion`, RFC 7523 §2.2), read again for every
/// token request, and `scope` = `<resource>/.default`.
///
/// With AKS workload identity, the webhook sets `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
/// `AZURE_FEDERATED_TOKEN_FILE` and `AZURE_AUTHORITY_HOST` in the pod:
/// [`from_env`](AzureWorkloadIdentityBuilder::from_env) reads them (anything set on the
/// builder wins).
///
/// ```no_run
/// use tower_bearer::{BearerAuthLayer, source::workload::AzureWorkloadIdentity};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let source = AzureWorkloadIdentity::builder("https://storage.azure.com")
///     .from_env()
///     .build()?;
/// let layer = BearerAuthLayer::new(source);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AzureWorkloadIdentity {
    inner: ClientCredentials,
}

impl AzureWorkloadIdentity {
    /// Start configuring a source of tokens for `resource` (`https://management.azure.com`,
    /// `api://my-api`, ...): the scope asked for is `<resource>/.default`.
    pub fn builder(resource: impl Into<String>) -> AzureWorkloadIdentityBuilder {
        AzureWorkloadIdentityBuilder {
            scope: resource_scope(&resource.into()),
            client_id: None,
            tenant_id: None,
            token_file: None,
            authority_host: None,
            client: None,
        }
    }

    /// The client credentials grant it runs.
    pub fn client_credentials(&self) -> &ClientCredentials {
        &self.inner
    }
}

impl TokenSource for AzureWorkloadIdentity {
    async fn fetch(&self) -> Result<Token, Error> {
        self.inner.fetch().await
    }
}

/// `<resource>/.default`, as the Azure SDKs turn a resource into a scope.
fn resource_scope(resource: &str) -> String {
    if resource.ends_with("/.default") {
        resource.to_owned()
    } else if resource.ends_with('/') {
        format!("{resource}.default")
    } else {
        format!("{resource}/.default")
    }
}

/// Configures an [`AzureWorkloadIdentity`].
pub struct AzureWorkloadIdentityBuilder {
    scope: String,
    client_id: Option<String>,
    tenant_id: Option<String>,
    token_file: Option<PathBuf>,
    authority_host: Option<String>,
    client: Option<Arc<dyn HttpClient>>,
}

impl AzureWorkloadIdentityBuilder {
    /// The application (client) id (`AZURE_CLIENT_ID`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The directory (tenant) id (`AZURE_TENANT_ID`).
    pub fn tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// The federated token file (`AZURE_FEDERATED_TOKEN_FILE`).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// The authority (`AZURE_AUTHORITY_HOST`; default [`DEFAULT_AUTHORITY_HOST`]): a
    /// sovereign cloud's, or a stand-in's in tests.
    pub fn authority_host(mut self, url: impl Into<String>) -> Self {
        self.authority_host = Some(url.into());
        self
    }

    /// The scope, instead of `<resource>/.default`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Fill what is not set yet from the process environment (`AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`).
    pub fn from_env(self) -> Self {
        self.from_env_with(super::process_env)
    }

    /// [`from_env`](Self::from_env) with the variables read through `env` (a map in a test,
    /// a configuration system). Empty values count as absent.
    pub fn from_env_with(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let env: &dyn Fn(&str) -> Option<String> = &env;
        let [client_id, tenant_id, token_file, authority] = VARIABLES;
        self.client_id = self.client_id.or_else(|| super::var(env, client_id));
        self.tenant_id = self.tenant_id.or_else(|| super::var(env, tenant_id));
        self.token_file = self
            .token_file
            .or_else(|| super::var(env, token_file).map(PathBuf::from));
        self.authority_host = self.authority_host.or_else(|| super::var(env, authority));
        self
    }

    build_options! {
        /// Check the configuration (a [`Config`](crate::ErrorKind::Config) error names each
        /// setting and variable missing) and build the source. Does no I/O: the token file is
        /// read for each token request.
        build -> AzureWorkloadIdentity;
        client at client;
        calls "the endpoint";
    }

    fn finish(self) -> Result<AzureWorkloadIdentity, Error> {
        let missing: Vec<&str> = [
            (self.client_id.is_none(), "client id (AZURE_CLIENT_ID)"),
            (self.tenant_id.is_none(), "tenant id (AZURE_TENANT_ID)"),
            (
                self.token_file.is_none(),
                "federated token file (AZURE_FEDERATED_TOKEN_FILE)",
            ),
        ]
        .into_iter()
        .filter_map(|(absent, what)| absent.then_some(what))
        .collect();
        if !missing.is_empty() {
            return Err(Error::config(format!(
                "Azure workload identity needs a {}",
                missing.join(", a ")
            )));
        }
        let (Some(client_id), Some(tenant_id), Some(token_file)) =
            (self.client_id, self.tenant_id, self.token_file)
        else {
            unreachable!("checked above")
        };
        if tenant_id.is_empty()
            || !tenant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(Error::config(
                "the Azure tenant id is not a tenant id or domain name (AZURE_TENANT_ID)",
            ));
        }
        let authority = self
            .authority_host
            .as_deref()
            .unwrap_or(DEFAULT_AUTHORITY_HOST)
            .trim_end_matches('/');
        let token_url = format!("{authority}/{tenant_id}/oauth2/v2.0/token");
        let auth = ClientAuth::client_assertion(client_id, TokenFile::new(token_file));
        let builder = ClientCredentials::builder(token_url, auth).scope(self.scope);
        Ok(AzureWorkloadIdentity {
            inner: builder.build_with_option(self.client)?,
        })
    }
}

impl fmt::Debug for AzureWorkloadIdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureWorkloadIdentityBuilder")
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("token_file", &self.token_file)
            .field("authority_host", &self.authority_host)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_default_scopes() {
        assert_eq!(
            resource_scope("https://management.azure.com"),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            resource_scope("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
        assert_eq!(resource_scope("api://x/.default"), "api://x/.default");
    }

    #[test]
    #[cfg(feature = "reqwest")]
    fn missing_settings_are_named() {
        let err = AzureWorkloadIdentity::builder("api://x")
            .from_env_with(|_| None)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        for name in [
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
        ] {
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = AzureWorkloadIdentity::builder("api://x")
            .client_id("c")
            .tenant_id("../evil")
            .token_file("/t")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");
    }
}
