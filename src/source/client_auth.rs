//! [`ClientAuth`] and what it needs (documented there).

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "jwt")]
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use zeroize::Zeroizing;

#[cfg(feature = "jwt")]
use super::assertion::{Assertion, SigningKey};
use super::endpoint::Form;
use super::workload::CredentialProvider;
use crate::Error;
#[cfg(feature = "reqwest")]
use crate::http_client::ClientIdentity;
use crate::secret::{ClientSecret, IdentityToken};

/// `client_assertion_type` for a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client id and the way it authenticates.
///
/// [`ClientAuth`]: how an OAuth 2.0 client proves who it is to the token endpoint.
///
/// | method | RFC | what is sent |
/// |---|---|---|
/// | [`client_secret_basic`](ClientAuth::client_secret_basic) | 6749 §2.3.1 | `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` |
/// | [`client_secret_post`](ClientAuth::client_secret_post) | 6749 §2.3.1 | `client_id` and `client_secret` in the form |
/// | `private_key_jwt` (feature `jwt`) | 7523 §2.2 | `client_assertion_type` and an RS256/PS256/ES256 `client_assertion` |
/// | `client_secret_jwt` (feature `jwt`) | 7523 §2.2 | the same, signed HS256 with the client secret |
/// | `private_key_jwt_signed_by` (feature `jwt`) | 7523 §2.2 | the same, signed by an async `AssertionSigner` (a KMS, an HSM) |
/// | `tls_client_auth` (feature `reqwest`) | 8705 §2.1 | `client_id`; a CA-issued client certificate in the TLS handshake |
/// | `self_signed_tls_client_auth` (feature `reqwest`) | 8705 §2.2 | `client_id`; a self-signed client certificate in the TLS handshake |
/// | [`client_assertion`](ClientAuth::client_assertion) | 7523 §2.2 | `client_id`, `client_assertion_type` and a `client_assertion` the platform provides (a federated token file) |
/// | [`none`](ClientAuth::none) | 6749 §2.1 | `client_id` only (a public client) |
///
/// The Basic header value, the form with `client_secret` and each assertion are built in
/// buffers zeroized on drop (see the [`http_client`](crate::http_client) docs for what the HTTP
/// client copies).
///
/// Client assertions are minted fresh for every request: `iss` = `sub` = the client id, `aud` =
/// the token URL (unless set with `assertion_audience`), `iat` now, `exp` 5 minutes later
/// (unless set with `assertion_lifetime`), a new random `jti`.
///
/// ```
/// use tower_bearer::{secret::ClientSecret, source::ClientAuth};
///
/// let auth = ClientAuth::client_secret_basic("my-client", ClientSecret::new("s3cr3t"));
/// assert_eq!(auth.client_id(), "my-client");
/// assert_eq!(auth.method(), "client_secret_basic");
/// ```
#[derive(Clone)]
pub struct ClientAuth {
    client_id: String,
    method: Method,
}

#[derive(Clone)]
enum Method {
    None,
    SecretBasic(ClientSecret),
    SecretPost(ClientSecret),
    #[cfg(feature = "jwt")]
    Jwt {
        assertion: Assertion,
        name: &'static str,
    },
    #[cfg(feature = "reqwest")]
    Tls {
        identity: ClientIdentity,
        self_signed: bool,
    },
    /// A client assertion the platform provides (a federated token file).
    Provided(Arc<dyn CredentialProvider>),
    /// A client assertion built here and signed by an async signer (a KMS, an HSM).
    #[cfg(feature = "jwt")]
    Signer(Arc<dyn super::signer::AssertionSigner>),
}

impl ClientAuth {
    /// A public client: sends its `client_id` and no credential.
    pub fn none(client_id: impl Into<String>) -> Self {
        Self::with(client_id, Method::None)
    }

    /// HTTP Basic authentication with the client id and secret (RFC 6749 §2.3.1), each
    /// form-urlencoded before base64, as the RFC requires.
    pub fn client_secret_basic(client_id: impl Into<String>, secret: ClientSecret) -> Self {
        Self::with(client_id, Method::SecretBasic(secret))
    }

    /// The client id and secret as form parameters (RFC 6749 §2.3.1).
    pub fn client_secret_post(client_id: impl Into<String>, secret: ClientSecret) -> Self {
        Self::with(client_id, Method::SecretPost(secret))
    }

    /// A JWT client assertion signed with the client's private key (RFC 7523 §2.2,
    /// `private_key_jwt`).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn private_key_jwt(client_id: impl Into<String>, key: SigningKey) -> Self {
        Self::jwt(client_id, key, "private_key_jwt")
    }

    /// A JWT client assertion signed HS256 with the client secret (RFC 7523 §2.2,
    /// `client_secret_jwt`).
    ///
    /// A secret shorter than 32 bytes, or empty, is a [`Config`](crate::ErrorKind::Config)
    /// error (RFC 7518 §3.2; see [`SigningKey::hs256`]).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn client_secret_jwt(
        client_id: impl Into<String>,
        secret: &ClientSecret,
    ) -> Result<Self, Error> {
        Ok(Self::jwt(
            client_id,
            SigningKey::hs256(secret)?,
            "client_secret_jwt",
        ))
    }

    #[cfg(feature = "jwt")]
    fn jwt(client_id: impl Into<String>, key: SigningKey, name: &'static str) -> Self {
        let client_id = client_id.into();
        let assertion = Assertion::new(key, client_id.clone()).subject(client_id.clone());
        ClientAuth {
            client_id,
            method: Method::Jwt { assertion, name },
        }
    }

    /// The `aud` of client assertions (default: the token URL). No effect on other methods.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn assertion_audience(self, audience: impl Into<String>) -> Self {
        self.map_assertion(|a| a.audience(audience))
    }

    /// How long each client assertion is valid (default 5 minutes). No effect on other methods.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn assertion_lifetime(self, lifetime: Duration) -> Self {
        self.map_assertion(|a| a.lifetime(lifetime))
    }

    #[cfg(feature = "jwt")]
    fn map_assertion(mut self, f: impl FnOnce(Assertion) -> Assertion) -> Self {
        if let Method::Jwt { assertion, name } = self.method {
            self.method = Method::Jwt {
                assertion: f(assertion),
                name,
            };
        }
        self
    }

    /// A client assertion provided by the platform (RFC 7523 §2.2 with a JWT someone else
    /// signed): a federated token file (Azure workload identity, a Kubernetes projected token),
    /// a GitHub Actions OIDC token, or a signer of your own behind
    /// [`credential_fn`](super::workload::credential_fn).
    ///
    /// `provider` is asked for the assertion for every token request, and again when the token
    /// endpoint refuses one, in case the platform has rotated it since: then the request is
    /// sent once more with the new assertion. [`method`](Self::method) says
    /// `private_key_jwt`, as the server's metadata names it.
    ///
    /// ```
    /// use tower_bearer::source::{ClientAuth, workload::TokenFile};
    ///
    /// let auth = ClientAuth::client_assertion(
    ///     "my-client",
    ///     TokenFile::new("/var/run/secrets/azure/tokens/azure-identity-token"),
    /// );
    /// assert_eq!(auth.method(), "private_key_jwt");
    /// ```
    pub fn client_assertion(
        client_id: impl Into<String>,
        provider: impl CredentialProvider,
    ) -> Self {
        Self::with(client_id, Method::Provided(Arc::new(provider)))
    }

    /// A JWT client assertion (RFC 7523 §2.2, `private_key_jwt`) signed by `signer`: a key
    /// held by a KMS or an HSM, asked to sign each assertion; see [`signer`](super::signer).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn private_key_jwt_signed_by(
        client_id: impl Into<String>,
        signer: impl super::signer::AssertionSigner,
    ) -> Self {
        Self::with(client_id, Method::Signer(Arc::new(signer)))
    }

    /// Whether the client assertion comes from a [`CredentialProvider`].
    pub(crate) fn has_provider(&self) -> bool {
        matches!(self.method, Method::Provided(_))
    }

    /// The provider's current credential, if the client assertion comes from one.
    pub(crate) async fn provided_credential(&self) -> Result<Option<IdentityToken>, Error> {
        match &self.method {
            Method::Provided(provider) => provider.credential().await.map(Some),
            _ => Ok(None),
        }
    }

    /// Mutual TLS with a certificate from a CA the server trusts (RFC 8705 §2.1,
    /// `tls_client_auth`): the built-in HTTP client presents `identity`, and only `client_id`
    /// goes in the form.
    ///
    /// With your own client ([`build_with`](crate::source::ClientCredentialsBuilder::build_with)),
    /// that client must present the certificate (e.g.
    /// [`ReqwestClient::with_client_identity`](crate::http_client::ReqwestClient::with_client_identity)).
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn tls_client_auth(client_id: impl Into<String>, identity: ClientIdentity) -> Self {
        Self::with(
            client_id,
            Method::Tls {
                identity,
                self_signed: false,
            },
        )
    }

    /// Mutual TLS with a self-signed certificate registered with the server (RFC 8705 §2.2,
    /// `self_signed_tls_client_auth`); otherwise as [`tls_client_auth`](Self::tls_client_auth).
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn self_signed_tls_client_auth(
        client_id: impl Into<String>,
        identity: ClientIdentity,
    ) -> Self {
        Self::with(
            client_id,
            Method::Tls {
                identity,
                self_signed: true,
            },
        )
    }

    /// The client certificate this method authenticates with, if it is a mutual TLS one.
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn client_identity(&self) -> Option<&ClientIdentity> {
        match &self.method {
            Method::Tls { identity, .. } => Some(identity),
            _ => None,
        }
    }

    fn with(client_id: impl Into<String>, method: Method) -> Self {
        ClientAuth {
            client_id: client_id.into(),
            method,
        }
    }

    /// The client id (not a secret).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The method's name as OAuth metadata spells it (`client_secret_basic`, ...).
    pub fn method(&self) -> &'static str {
        match &self.method {
            Method::None => "none",
            Method::SecretBasic(_) => "client_secret_basic",
            Method::SecretPost(_) => "client_secret_post",
            #[cfg(feature = "jwt")]
            Method::Jwt { name, .. } => name,
            Method::Provided(_) => "private_key_jwt",
            #[cfg(feature = "jwt")]
            Method::Signer(_) => "private_key_jwt",
            #[cfg(feature = "reqwest")]
            Method::Tls { self_signed, .. } => {
                if *self_signed {
                    "self_signed_tls_client_auth"
                } else {
                    "tls_client_auth"
                }
            }
        }
    }

    /// Add the client's credentials to a token request for `token_url`.
    ///
    /// A provided client assertion is `preset` if given, else read from the provider now; it
    /// is returned, so that the caller can tell after a rejection whether it has rotated.
    #[cfg_attr(not(feature = "jwt"), allow(unused_variables))]
    pub(crate) async fn apply(
        &self,
        token_url: &str,
        form: &mut Form,
        headers: &mut HeaderMap,
        preset: Option<IdentityToken>,
    ) -> Result<Option<IdentityToken>, Error> {
        match &self.method {
            Method::None => form.push("client_id", &self.client_id),
            // The certificate, presented in the TLS handshake, is the credential.
            #[cfg(feature = "reqwest")]
            Method::Tls { .. } => form.push("client_id", &self.client_id),
            Method::SecretBasic(secret) => {
                headers.insert(AUTHORIZATION, basic_auth(&self.client_id, secret)?);
            }
            Method::SecretPost(secret) => {
                form.push("client_id", &self.client_id);
                form.push("client_secret", secret.secret());
            }
            #[cfg(feature = "jwt")]
            Method::Jwt { assertion, .. } => {
                let jwt = assertion.mint(token_url, std::time::SystemTime::now())?;
                form.push("client_assertion_type", JWT_BEARER_ASSERTION_TYPE);
                form.push("client_assertion", &jwt);
            }
            #[cfg(feature = "jwt")]
            Method::Signer(signer) => {
                let jwt =
                    super::signer::client_assertion(&**signer, &self.client_id, token_url).await?;
                form.push("client_assertion_type", JWT_BEARER_ASSERTION_TYPE);
                form.push("client_assertion", &jwt);
            }
            Method::Provided(provider) => {
                let assertion = match preset {
                    Some(assertion) => assertion,
                    None => provider.credential().await.map_err(|e| {
                        Error::new(e.kind(), "could not get the client assertion").with_source(e)
                    })?,
                };
                // RFC 7523 §3: the server may want `client_id` too; it must match `sub`.
                form.push("client_id", &self.client_id);
                form.push("client_assertion_type", JWT_BEARER_ASSERTION_TYPE);
                form.push("client_assertion", assertion.secret());
                return Ok(Some(assertion));
            }
        }
        Ok(None)
    }
}

/// The HTTP client a source calls its token endpoint with: `client` if given, else (when `auth`
/// is mutual TLS) the built-in one presenting the certificate, else the default.
pub(crate) fn http_client_for(
    client: Option<std::sync::Arc<dyn crate::http_client::HttpClient>>,
    auth: Option<&ClientAuth>,
) -> Result<Option<std::sync::Arc<dyn crate::http_client::HttpClient>>, Error> {
    #[cfg(feature = "reqwest")]
    if client.is_none()
        && let Some(identity) = auth.and_then(ClientAuth::client_identity)
    {
        let client =
            crate::http_client::ReqwestClient::new()?.with_client_identity(identity.clone())?;
        return Ok(Some(std::sync::Arc::new(client)));
    }
    #[cfg(not(feature = "reqwest"))]
    let _ = auth;
    Ok(client)
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded (Appendix B) *before* base64.
///
/// Every buffer holding the secret is sized up front (no reallocation leaves a partial copy
/// behind) and zeroized on drop; the header value shares the last one, so it is wiped when the
/// last clone of the header is dropped.
fn basic_auth(client_id: &str, secret: &ClientSecret) -> Result<HeaderValue, Error> {
    let secret = secret.secret();
    // Form-urlencoding turns a byte into at most 3.
    let mut pair = Zeroizing::new(String::with_capacity(
        3 * (client_id.len() + secret.len()) + 1,
    ));
    pair.extend(form_urlencoded::byte_serialize(client_id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
    let encoded_len = base64::encoded_len(pair.len(), true)
        .ok_or_else(|| Error::config("the client credentials are too long"))?;
    let mut value = Zeroizing::new(String::with_capacity("Basic ".len() + encoded_len));
    value.push_str("Basic ");
    STANDARD.encode_string(pair.as_bytes(), &mut value);
    let value = Zeroizing::new(std::mem::take(&mut *value).into_bytes());
    let mut header = HeaderValue::from_maybe_shared(Bytes::from_owner(value))
        .map_err(|_| Error::config("the client credentials cannot form a Basic header"))?;
    header.set_sensitive(true);
    Ok(header)
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("method", &self.method())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "reqwest")]
    use crate::source::endpoint::Body;

    /// A client certificate and its key, made up for a test.
    #[cfg(feature = "reqwest")]
    fn self_signed_identity() -> ClientIdentity {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        ClientIdentity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        let header = basic_auth("my id", &ClientSecret::new("a:b&c=d%e+f é")).unwrap();
        let b64 = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(decoded, "my+id:a%3Ab%26c%3Dd%25e%2Bf+%C3%A9");
        assert!(header.is_sensitive());
    }

    #[cfg(feature = "reqwest")]
    #[test]
    fn mutual_tls_gets_a_client_presenting_its_identity_unless_one_is_given() {
        let identity = self_signed_identity();
        let tls = ClientAuth::tls_client_auth("c", identity);
        assert!(tls.client_identity().is_some());
        // No client given: one is built for the identity.
        assert!(http_client_for(None, Some(&tls)).unwrap().is_some());
        // Other methods keep the default (built later, by the endpoint).
        let post = ClientAuth::client_secret_post("c", ClientSecret::new("s"));
        assert!(http_client_for(None, Some(&post)).unwrap().is_none());
        assert!(http_client_for(None, None).unwrap().is_none());
        // A client given is used as it is.
        let given: std::sync::Arc<dyn crate::http_client::HttpClient> =
            std::sync::Arc::new(crate::http_client::ReqwestClient::new().unwrap());
        let chosen = http_client_for(Some(given.clone()), Some(&tls))
            .unwrap()
            .unwrap();
        assert!(std::sync::Arc::ptr_eq(&chosen, &given));
        // The form carries the client id and nothing secret.
        let mut form = Form::default();
        let mut headers = HeaderMap::new();
        let used = futures_util::FutureExt::now_or_never(tls.apply(
            "https://as.example/token",
            &mut form,
            &mut headers,
            None,
        ))
        .unwrap()
        .unwrap();
        assert!(used.is_none());
        assert!(headers.is_empty());
        let Body::Form(body) = form.into_body() else {
            unreachable!()
        };
        assert_eq!(body.as_str(), "client_id=c");
    }

    /// The grants authenticating with a certificate declare it (what the fleet tier binds its
    /// tokens to), and so do the crate's wrappers around them; other methods declare none.
    #[cfg(feature = "reqwest")]
    #[tokio::test]
    async fn mutual_tls_sources_declare_their_certificate_through_every_wrapper() {
        use crate::TokenSource;
        use crate::source::{ClientCredentials, Discovery, RefreshTokenGrant, TokenExchange};
        use crate::store::MemoryStore;

        let identity = self_signed_identity();
        let leaf = identity.leaf_der().to_vec();
        let tls = ClientAuth::tls_client_auth("c", identity);
        let declared = |source: &dyn Fn() -> Option<Vec<u8>>| source() == Some(leaf.clone());
        let url = "https://as.example/token";

        let credentials = ClientCredentials::builder(url, tls.clone())
            .build()
            .unwrap();
        assert!(declared(&|| credentials
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));
        let arc = std::sync::Arc::new(credentials.clone());
        assert!(declared(&|| arc
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));
        let boxed = Box::new(credentials.clone());
        assert!(declared(&|| boxed
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));
        let keyed = crate::keyed::KeyedTokenCache::new(move |_: &u8| Ok(credentials.clone()));
        let slot = keyed.cache(&0).unwrap();
        assert!(declared(&|| slot
            .source()
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));

        let exchange = TokenExchange::builder(url)
            .subject_source(crate::source::static_token("s"), "urn:x")
            .client_auth(tls.clone())
            .build()
            .unwrap();
        assert!(declared(&|| exchange
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));
        let store = MemoryStore::empty();
        let refresh = RefreshTokenGrant::builder(url, store.clone())
            .client_auth(tls.clone())
            .build()
            .unwrap();
        assert!(declared(&|| refresh
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));
        // Before discovery has run (nothing fetched, no source built yet).
        let discovery = Discovery::new("https://as.example").unwrap();
        let discovered = discovery.client_credentials(tls.clone(), |b| b);
        assert!(declared(&|| discovered
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));
        let discovered = discovery.refresh_token(store, Some(tls), |b| b);
        assert!(declared(&|| discovered
            .client_identity()
            .map(|i| i.leaf_der().to_vec())));

        let post = ClientAuth::client_secret_post("c", ClientSecret::new("s"));
        let plain = ClientCredentials::builder(url, post.clone())
            .build()
            .unwrap();
        assert!(plain.client_identity().is_none());
        assert!(
            discovery
                .client_credentials(post, |b| b)
                .client_identity()
                .is_none()
        );
    }

    /// Every grant authenticating with a certificate calls its endpoint through a client
    /// presenting it (the token exchange once used the shared client, which presents none).
    #[cfg(feature = "reqwest")]
    #[test]
    fn a_certificate_gets_a_client_presenting_it_unless_one_is_given() {
        use crate::source::grant::GrantConfig;

        let tls = ClientAuth::tls_client_auth("c", self_signed_identity());
        let url = "https://as.example/token".to_owned();
        let shared = crate::http_client::shared_default();

        let built = GrantConfig::new(url.clone(), Some(tls.clone()))
            .build()
            .unwrap();
        assert!(!Arc::ptr_eq(&built.endpoint.client(), &shared));
        assert!(built.client_identity().is_some());
        let built = GrantConfig::new(url.clone(), tls).build().unwrap();
        assert!(!Arc::ptr_eq(&built.endpoint.client(), &shared));

        let plain = GrantConfig::new(url.clone(), None).build().unwrap();
        assert!(Arc::ptr_eq(&plain.endpoint.client(), &shared));
        assert!(plain.client_identity().is_none());
        let mut given = GrantConfig::new(url, None::<ClientAuth>);
        let client: Arc<dyn crate::http_client::HttpClient> =
            Arc::new(crate::http_client::ReqwestClient::new().unwrap());
        given.client = Some(Arc::clone(&client));
        assert!(Arc::ptr_eq(
            &given.build().unwrap().endpoint.client(),
            &client
        ));
    }

    #[test]
    fn debug_shows_the_method_not_the_secret() {
        let auth = ClientAuth::client_secret_post("id", ClientSecret::new("hunter2"));
        let shown = format!("{auth:?}");
        assert!(shown.contains("client_secret_post"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
