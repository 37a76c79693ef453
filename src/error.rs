use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// The boxed error type used by tower services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest wait a token endpoint's `Retry-After` is taken to ask for: 10 minutes.
///
/// The built-in sources cap the header at this, whichever form the server used
/// (delta-seconds or an HTTP-date, RFC 9110 §10.2.3), before it reaches
/// [`Error::retry_after`]. A server asking for longer (a maintenance window, a misconfigured
/// rate limiter) is asked again after this long: one request per 10 minutes costs it nothing,
/// and a client whose token has expired is not left without one for an hour or a day when the
/// server comes back sooner. An error built with [`Error::with_retry_after`] keeps the delay it
/// was given.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What kind of failure an [`Error`] is, and so what a caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Retrying later may help: a transport error, a timeout, a 5xx or a 429.
    Transient,
    /// The token endpoint refused the credential (`invalid_grant`, `invalid_client`, a 400/401
    /// answer, ...). Retrying with the same credential will not help.
    ///
    /// A 404 or 405 is not a refusal unless it carries an RFC 6749 §5.2 error: without one it
    /// means the token URL is wrong, a [`Config`](ErrorKind::Config) error.
    Rejected,
    /// The token endpoint answered something that is not a usable token: malformed JSON, a
    /// missing `access_token`, an oversized body, a token that is not a valid header value, a
    /// token type other than `Bearer`, an already expired token.
    InvalidResponse,
    /// The crate or a source is configured in a way that cannot work (a bad URL, a token URL
    /// that answers 404 or 405 without an OAuth error, a key that does not parse or is too
    /// short, no tokio runtime, a plain-http token endpoint on a public host).
    Config,
    /// The token source panicked. The cache is not poisoned; the next request may try again.
    Panicked,
    /// The middleware refused to send the token to this request's destination (an origin not
    /// in the allow-list, or plain http to a host that is not loopback) and is configured to
    /// fail such requests rather than send them without it.
    Disallowed,
    /// A [`RefreshTokenStore`](crate::store::RefreshTokenStore)'s compare-and-swap failed: the
    /// stored refresh token is no longer the one the caller read, because another process or
    /// source rotated it first. The built-in sources recognise it and continue with the
    /// stored token; a store returns it with [`Error::conflict`].
    Conflict,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Rejected => "rejected",
            ErrorKind::InvalidResponse => "invalid response",
            ErrorKind::Config => "configuration",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Disallowed => "disallowed destination",
            ErrorKind::Conflict => "store conflict",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a token source, the token cache or the middleware.
///
/// `Error` is cheap to clone (one refresh failure is handed to every request that waited for
/// it) and is `Send + Sync + 'static`, so it travels inside [`BoxError`]; get it back with
/// `err.downcast_ref::<tower_bearer::Error>()`.
///
/// Build one in your own [`TokenSource`](crate::TokenSource) with the constructor that matches
/// the failure ([`transient`](Error::transient), [`rejected`](Error::rejected),
/// [`invalid_response`](Error::invalid_response), [`config`](Error::config)) and add detail
/// with the `with_*` methods. Never put a secret in the message.
///
/// The one error type of the crate, with a [`kind`](Error::kind) a caller can match on.
///
/// Errors say what failed in words a user can act on, and never carry a token, secret,
/// assertion or raw response body: only a status code, an RFC 6749 §5.2 error code and the
/// host of the endpoint that answered.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{Error, ErrorKind};
///
/// let err = Error::rejected("the token endpoint refused the refresh token")
///     .with_oauth_error("invalid_grant");
/// assert_eq!(err.kind(), ErrorKind::Rejected);
/// assert!(!err.is_transient());
/// assert_eq!(
///     err.to_string(),
///     "the token endpoint refused the refresh token: invalid_grant"
/// );
///
/// let err = Error::transient("token endpoint is overloaded").with_retry_after(Duration::from_secs(5));
/// assert!(err.is_transient());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    status: Option<StatusCode>,
    oauth_error: Option<Cow<'static, str>>,
    host: Option<String>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of the given kind with a message for humans.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                status: None,
                oauth_error: None,
                host: None,
                retry_after: None,
                source: None,
            }),
        }
    }

    /// A failure that may go away if retried later (transport, timeout, 5xx, 429).
    pub fn transient(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// The credential was refused; retrying with it will not help.
    pub fn rejected(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }

    /// The token endpoint answered with something that is not a usable token.
    pub fn invalid_response(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidResponse, message)
    }

    /// A configuration that cannot work.
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// The token may not be sent where the request is going.
    pub fn disallowed(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Disallowed, message)
    }

    /// A store's compare-and-swap found another value than the expected one (see
    /// [`ErrorKind::Conflict`]).
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    fn map(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let old = &self.inner;
                let mut inner = Inner {
                    kind: old.kind,
                    message: old.message.clone(),
                    status: old.status,
                    oauth_error: old.oauth_error.clone(),
                    host: old.host.clone(),
                    retry_after: old.retry_after,
                    // A shared error keeps its chain through the original.
                    source: Some(Box::new(self.clone())),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Attach the underlying cause (kept in [`source()`](std::error::Error::source)).
    ///
    /// The cause's own `Display` must not contain a secret either.
    pub fn with_source(self, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        self.map(|i| i.source = Some(source))
    }

    /// Attach the HTTP status the token endpoint answered with.
    pub fn with_status(self, status: StatusCode) -> Self {
        self.map(|i| i.status = Some(status))
    }

    /// Attach the RFC 6749 §5.2 error code (`invalid_grant`, `invalid_client`, ...).
    pub fn with_oauth_error(self, code: impl Into<Cow<'static, str>>) -> Self {
        let code = code.into();
        self.map(|i| i.oauth_error = Some(code))
    }

    /// Attach the host of the endpoint that failed (never the full URL: query strings can hold
    /// secrets).
    pub fn with_host(self, host: impl Into<String>) -> Self {
        let host = host.into();
        self.map(|i| i.host = Some(host))
    }

    /// Attach how long the server asked us to wait (`Retry-After`). The built-in sources cap
    /// what a server says at [`MAX_RETRY_AFTER`]; a source of your own may do the same.
    pub fn with_retry_after(self, retry_after: Duration) -> Self {
        self.map(|i| i.retry_after = Some(retry_after))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        self.inner.kind == ErrorKind::Transient
    }

    /// The HTTP status of the token endpoint's answer, if there was one.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The RFC 6749 §5.2 error code, if the token endpoint sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        self.inner.oauth_error.as_deref()
    }

    /// The host of the endpoint that failed, if known.
    pub fn host(&self) -> Option<&str> {
        self.inner.host.as_deref()
    }

    /// How long the server asked us to wait before trying again. From a built-in source, at
    /// most [`MAX_RETRY_AFTER`], for both forms of the header.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The message, without the status, code or host.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.write_str(&i.message)?;
        if let Some(code) = &i.oauth_error {
            write!(f, ": {code}")?;
        }
        match (&i.status, &i.host) {
            (Some(status), Some(host)) => write!(f, " (HTTP {} from {host})", status.as_u16())?,
            (Some(status), None) => write!(f, " (HTTP {})", status.as_u16())?,
            (None, Some(host)) => write!(f, " ({host})")?,
            (None, None) => {}
        }
        if let Some(after) = i.retry_after {
            write!(f, "; retry after {}s", after.as_secs_f32())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind).field("message", &i.message);
        if let Some(status) = i.status {
            d.field("status", &status);
        }
        if let Some(code) = &i.oauth_error {
            d.field("oauth_error", code);
        }
        if let Some(host) = &i.host {
            d.field("host", host);
        }
        if let Some(after) = i.retry_after {
            d.field("retry_after", &after);
        }
        if let Some(source) = &i.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_code_status_and_host() {
        let err = Error::rejected("the token endpoint refused the refresh token")
            .with_oauth_error("invalid_grant")
            .with_status(StatusCode::BAD_REQUEST)
            .with_host("auth.example.com");
        assert_eq!(
            err.to_string(),
            "the token endpoint refused the refresh token: invalid_grant (HTTP 400 from auth.example.com)"
        );
    }

    #[test]
    fn with_on_shared_error_keeps_chain() {
        let a = Error::transient("down");
        let b = a.clone().with_status(StatusCode::BAD_GATEWAY);
        assert_eq!(a.status(), None);
        assert_eq!(b.status(), Some(StatusCode::BAD_GATEWAY));
        assert!(std::error::Error::source(&b).is_some());
    }

    #[test]
    fn boxes_and_downcasts() {
        let boxed: BoxError = Error::config("no runtime").into();
        let back = boxed.downcast_ref::<Error>().unwrap();
        assert_eq!(back.kind(), ErrorKind::Config);
    }
}
