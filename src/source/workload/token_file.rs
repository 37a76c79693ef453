//! [`TokenFile`]: a token the platform writes to a file and rotates.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{CredentialFuture, CredentialProvider};
use crate::secret::IdentityToken;
use crate::token::jwt_claims;
use crate::{Error, Token, TokenSource};

/// Where Kubernetes mounts a pod's default service-account token.
pub const KUBERNETES_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The largest token file read: projected tokens are around 1 KiB.
const MAX_BYTES: u64 = 64 * 1024;

/// A token in a file that the platform rotates: a Kubernetes projected service-account token,
/// `AZURE_FEDERATED_TOKEN_FILE`, any file a sidecar keeps fresh.
///
/// The file is read again for **every** token request and after every rejection, never
/// cached: the kubelet replaces it (an atomic rename of the `..data` symlink) well before the
/// old token expires, and the next exchange sends the new content. Surrounding whitespace is
/// trimmed.
///
/// By default the content must be a JWT (three base64url parts, a JSON payload), as every
/// platform token file holds; [`any_format`](Self::any_format) accepts an opaque token. A
/// missing or unreadable file is a [`Config`](crate::ErrorKind::Config) error, an empty file
/// or one that is not a JWT an [`InvalidResponse`](crate::ErrorKind::InvalidResponse) error;
/// each names the path, never the content.
///
/// Use it as a [`CredentialProvider`] (the subject of a token exchange, a JWT-bearer
/// assertion, a client assertion), or directly as a [`TokenSource`] when the API accepts the
/// platform token itself (the Kubernetes API, Vault's Kubernetes auth): then its lifetime is
/// the JWT's `exp`, and an opaque token is read again every 5 minutes
/// ([`reread_every`](Self::reread_every)).
///
/// ```
/// use tower_bearer::source::workload::TokenFile;
///
/// let projected = TokenFile::new("/var/run/secrets/tokens/vault-token");
/// let default_sa = TokenFile::kubernetes();
/// # let _ = (projected, default_sa);
/// ```
#[derive(Clone)]
pub struct TokenFile {
    path: Arc<Path>,
    require_jwt: bool,
    reread_every: Duration,
}

impl TokenFile {
    /// The token in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenFile {
            path: path.into().into(),
            require_jwt: true,
            reread_every: Duration::from_secs(300),
        }
    }

    /// The pod's default service-account token, at [`KUBERNETES_TOKEN_PATH`].
    pub fn kubernetes() -> Self {
        Self::new(KUBERNETES_TOKEN_PATH)
    }

    /// Accept any non-empty token, not only a JWT.
    pub fn any_format(mut self) -> Self {
        self.require_jwt = false;
        self
    }

    /// As a [`TokenSource`], how long a token without a JWT `exp` is used before the file is
    /// read again (default 5 minutes).
    pub fn reread_every(mut self, period: Duration) -> Self {
        self.reread_every = period;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the file now.
    pub async fn read(&self) -> Result<IdentityToken, Error> {
        let path = Arc::clone(&self.path);
        let require_jwt = self.require_jwt;
        // A blocking read on the runtime's blocking pool: a file on a slow volume does not
        // hold up a worker thread.
        match tokio::task::spawn_blocking(move || read_token(&path, require_jwt)).await {
            Ok(read) => read,
            Err(_) => Err(Error::transient("reading the token file was interrupted")),
        }
    }
}

/// Read, trim and check the token at `path`.
pub(crate) fn read_token(path: &Path, require_jwt: bool) -> Result<IdentityToken, Error> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        let what = match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist",
            std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)",
            _ => "cannot be opened",
        };
        Error::config(format!("the token file {shown} {what}")).with_source(e)
    })?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Error::transient(format!("could not read the token file {shown}")).with_source(e)
        })?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Error::invalid_response(format!(
            "the token file {shown} is larger than {MAX_BYTES} bytes: not a token"
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::invalid_response(format!("the token file {shown} is not UTF-8 text"))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::invalid_response(format!(
            "the token file {shown} is empty"
        )));
    }
    if require_jwt && jwt_claims(token).is_none() {
        return Err(Error::invalid_response(format!(
            "the token file {shown} does not hold a JWT"
        )));
    }
    Ok(IdentityToken::new(token))
}

impl CredentialProvider for TokenFile {
    fn credential(&self) -> CredentialFuture<'_> {
        Box::pin(self.read())
    }
}

impl TokenSource for TokenFile {
    async fn fetch(&self) -> Result<Token, Error> {
        let value = self.read().await?;
        identity_to_token(&value, self.reread_every)
    }
}

/// A platform credential used as the access token itself: its lifetime is the JWT's `exp`,
/// or `fallback` for an opaque token.
pub(crate) fn identity_to_token(value: &IdentityToken, fallback: Duration) -> Result<Token, Error> {
    let token = Token::new(value.secret());
    if token.jwt_expiry().is_some() {
        token.with_jwt_expiry()
    } else {
        Ok(token.with_expires_in(fallback))
    }
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("require_jwt", &self.require_jwt)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const JWT: &str = "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln";

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tb-token-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("token")
    }

    #[test]
    fn a_jwt_is_read_and_trimmed() {
        let path = temp("ok");
        std::fs::write(&path, format!("{JWT}\n")).unwrap();
        assert_eq!(read_token(&path, true).unwrap().secret(), JWT);
    }

    #[test]
    fn bad_files_are_typed_errors_naming_the_path_not_the_content() {
        let path = temp("bad");
        let _ = std::fs::remove_file(&path);
        let missing = read_token(&path, true).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Config);
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        assert!(missing.to_string().contains(&*path.to_string_lossy()));

        std::fs::write(&path, " \n").unwrap();
        let empty = read_token(&path, true).unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::InvalidResponse);
        assert!(empty.to_string().contains("empty"), "{empty}");

        std::fs::write(&path, "opaque-secret-value").unwrap();
        let opaque = read_token(&path, true).unwrap_err();
        assert_eq!(opaque.kind(), ErrorKind::InvalidResponse);
        assert!(opaque.to_string().contains("JWT"), "{opaque}");
        assert!(!format!("{opaque} {opaque:?}").contains("opaque-secret-value"));
        assert_eq!(
            read_token(&path, false).unwrap().secret(),
            "opaque-secret-value"
        );
    }
}
