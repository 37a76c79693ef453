//! Workload identity: tokens without a stored secret, from what the platform the program runs
//! on hands it.
//!
//! A Kubernetes pod, an Azure or Google VM, an App Service, a GitHub Actions job: each gives
//! the workload a short-lived identity of its own (a projected service-account token, a
//! federated token file, a metadata server, an OIDC endpoint), and the program trades it for
//! an access token. Nothing long-lived is pasted into a configuration.
//!
//! | source | platform | what it gives |
//! |---|---|---|
//! | [`TokenFile`] | Kubernetes projected token, any rotated token file | a [`CredentialProvider`]; a [`TokenSource`](crate::TokenSource) |
//! | [`AzureWorkloadIdentity`] | AKS workload identity (`AZURE_FEDERATED_TOKEN_FILE`, ...) | client credentials with the file as `client_assertion` |
//! | [`ManagedIdentity`] | Azure IMDS, App Service, Google metadata server | a [`TokenSource`](crate::TokenSource) |
//! | [`GitHubActions`] | GitHub Actions OIDC | a [`CredentialProvider`]; a [`TokenSource`](crate::TokenSource) |
//! | `Executable` (feature `executable`) | a credential helper program | a [`CredentialProvider`]; a [`TokenSource`](crate::TokenSource) |
//! | `from_env` (feature `reqwest`) | whichever of the above the environment names | a `WorkloadIdentity` |
//!
//! For keys that are not in the process: `source::signer` (feature `jwt`) signs client
//! assertions with an async `AssertionSigner` (a KMS, an HSM) or a `KeyFile` parsed again
//! when the platform rotates it.
//!
//! A [`CredentialProvider`] is what the grants take as the workload's own credential: the
//! subject token of a token exchange
//! ([`TokenExchangeBuilder::subject_from`](crate::source::TokenExchangeBuilder::subject_from)),
//! the assertion of a JWT-bearer grant
//! ([`JwtBearer::builder_from`](crate::source::JwtBearer::builder_from)), or a client
//! assertion ([`ClientAuth::client_assertion`](crate::source::ClientAuth::client_assertion)).
//! It is asked again for **every** token request, and again after a rejection, and its
//! answer is never cached across refreshes: the kubelet rotates the projected token (by an
//! atomic rename of the `..data` symlink) long before it expires, and a client that read it
//! once at start fails an hour later.
//!
//! ```
//! use tower_bearer::{Error, TokenCache, source::{TokenExchange, token_type}};
//! use tower_bearer::source::workload::TokenFile;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! # let dir = std::env::temp_dir().join(format!("tb-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("token");
//! # std::fs::write(&path, "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln").unwrap();
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let url = format!("http://{}/token", listener.local_addr().unwrap());
//! # let app = axum::Router::new().route("/token", axum::routing::post(|body: String| async move {
//! #     assert!(body.contains("subject_token=eyJ"));
//! #     axum::Json(serde_json::json!({
//! #         "access_token": "api-token", "token_type": "Bearer", "expires_in": 600,
//! #         "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
//! #     }))
//! # }));
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! // The pod's projected service-account token, read again for every exchange.
//! let identity = TokenFile::new(&path);
//! let exchange = TokenExchange::builder(url)
//!     .subject_from(identity, token_type::JWT)
//!     .audience("orders-api")
//!     .build()?;
//! let tokens = TokenCache::new(exchange);
//! assert_eq!(tokens.token().await?.secret(), "api-token");
//! # Ok(()) }
//! ```
//!
//! # Plain http to metadata servers
//!
//! The crate sends credentials over plain `http` only to loopback. Metadata servers are the
//! one other exception, because the platforms serve them over `http` only: Azure IMDS and
//! the Google metadata server at the link-local address `169.254.169.254` (or the name
//! `metadata.google.internal`), the App Service identity endpoint at the loopback or
//! link-local address the platform names in `IDENTITY_ENDPOINT`. A link-local address is not
//! routed off the host's own network link, and the platform intercepts it in the hypervisor,
//! so the request never crosses a network an attacker could sit on. The exception is as
//! narrow as the loopback rule: it holds only for a request a [`ManagedIdentity`] sends (the
//! built-in HTTP client recognises it by a crate-private mark on the request), only to
//! `169.254.0.0/16`, `metadata.google.internal` or loopback, and such a request never goes
//! through a proxy from the environment. A token URL anywhere else still has to be `https`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Error;
use crate::secret::IdentityToken;

mod azure;
#[cfg(feature = "reqwest")]
mod chain;
#[cfg(feature = "executable")]
mod executable;
mod github;
mod managed;
mod token_file;

pub use azure::{AzureWorkloadIdentity, AzureWorkloadIdentityBuilder, DEFAULT_AUTHORITY_HOST};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use chain::{
    METADATA_SERVER_VAR, TOKEN_EXCHANGE_URL_VAR, TOKEN_FILE_VAR, WorkloadIdentity, from_env,
    from_env_with,
};
#[cfg(feature = "executable")]
#[cfg_attr(docsrs, doc(cfg(feature = "executable")))]
pub use executable::{Executable, ExecutableBuilder};
pub use github::{GitHubActions, GitHubActionsBuilder};
pub use managed::{
    AZURE_IMDS_ENDPOINT, GOOGLE_METADATA_HOST, ManagedIdentity, ManagedIdentityBuilder,
};
pub use token_file::{KUBERNETES_TOKEN_PATH, TokenFile};

/// The future returned by [`CredentialProvider::credential`].
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IdentityToken, Error>> + Send + 'a>>;

/// The workload's own credential, asked for afresh for every token request: a subject token,
/// an assertion or a client assertion. See the [module docs](self).
///
/// Implemented by [`TokenFile`], [`GitHubActions`], `Executable`, a fixed string
/// ([`static_credential`]) and a closure ([`credential_fn`]). The method returns a boxed future
/// so that the grants can hold any provider as `Arc<dyn CredentialProvider>`: it runs once per
/// token request, not per API request.
///
/// Do not cache the credential across calls in an implementation: the grants call it again
/// after a rejection precisely to pick up a rotated one.
pub trait CredentialProvider: Send + Sync + 'static {
    /// The current credential. Classify failures by kind, as a
    /// [`TokenSource`](crate::TokenSource) does.
    fn credential(&self) -> CredentialFuture<'_>;
}

impl<T: CredentialProvider + ?Sized> CredentialProvider for Arc<T> {
    fn credential(&self) -> CredentialFuture<'_> {
        (**self).credential()
    }
}

impl<T: CredentialProvider + ?Sized> CredentialProvider for Box<T> {
    fn credential(&self) -> CredentialFuture<'_> {
        (**self).credential()
    }
}

/// A credential that never changes (a test, a token handed over by a parent process).
///
/// ```
/// use tower_bearer::source::workload::{CredentialProvider, static_credential};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fixed = static_credential("eyJ...");
/// assert_eq!(fixed.credential().await.unwrap().secret(), "eyJ...");
/// # }
/// ```
pub fn static_credential(value: impl Into<String>) -> StaticCredential {
    StaticCredential(IdentityToken::new(value))
}

/// A fixed credential; see [`static_credential`].
#[derive(Clone)]
pub struct StaticCredential(IdentityToken);

impl CredentialProvider for StaticCredential {
    fn credential(&self) -> CredentialFuture<'_> {
        let value = self.0.clone();
        Box::pin(async move { Ok(value) })
    }
}

impl fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticCredential([redacted])")
    }
}

/// A credential from an async closure (a vault, a sidecar, a signer of your own).
///
/// ```
/// use tower_bearer::{Error, secret::IdentityToken};
/// use tower_bearer::source::workload::{CredentialProvider, credential_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let from_vault = credential_fn(|| async { Ok::<_, Error>(IdentityToken::new("signed-jwt")) });
/// assert_eq!(from_vault.credential().await.unwrap().secret(), "signed-jwt");
/// # }
/// ```
pub fn credential_fn<F, Fut>(f: F) -> CredentialFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<IdentityToken, Error>> + Send + 'static,
{
    CredentialFn(f)
}

/// A credential from a closure; see [`credential_fn`].
#[derive(Clone)]
pub struct CredentialFn<F>(F);

impl<F, Fut> CredentialProvider for CredentialFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<IdentityToken, Error>> + Send + 'static,
{
    fn credential(&self) -> CredentialFuture<'_> {
        Box::pin((self.0)())
    }
}

impl<F> fmt::Debug for CredentialFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CredentialFn")
            .field(&std::any::type_name::<F>())
            .finish()
    }
}

/// Read `name` through `env`, treating an empty value as absent.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|value| !value.trim().is_empty())
}

/// The process environment, as the `from_env` constructors read it.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
