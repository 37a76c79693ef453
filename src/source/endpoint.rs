//! The plumbing every built-in source shares: where the token endpoint is, how a request is
//! sent to it, and how its HTTP status is read (RFC 6749 §5.2 errors, `Retry-After`).
//!
//! Errors made here carry the endpoint's host, the HTTP status and the OAuth error code, and
//! never the URL (its query string can hold a credential), a request or a response body.
//!
//! Secrets in a request (form values, a JSON body, a query string, a Basic header) are built
//! in buffers that never reallocate and are zeroized on drop, and reach the [`HttpClient`] as
//! [`Bytes`] that are zeroized when its last clone is dropped. What the HTTP client then copies
//! on the way to the wire (reqwest's `Url`, hyper's write buffer, TLS records, kernel socket
//! buffers) is not wiped by this crate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use zeroize::Zeroizing;

use super::client_auth::ClientAuth;
use super::token_response::{TokenFields, TokenResponse};
use crate::Error;
use crate::error::MAX_RETRY_AFTER;
use crate::http_client::{
    HttpClient, HttpResponse, MetadataRequest, check_metadata_url, check_token_url, traced,
};
use crate::secret::IdentityToken;

/// The HTTP client a source uses when none was given: one shared by every source.
///
/// Without the `reqwest` feature, the builders have no `build()` (only `build_with(client)`),
/// so no source is ever built without a client: this error is not reachable from the API.
pub(crate) fn default_client() -> Result<Arc<dyn HttpClient>, Error> {
    #[cfg(feature = "reqwest")]
    {
        Ok(crate::http_client::shared_default())
    }
    #[cfg(not(feature = "reqwest"))]
    {
        Err(Error::config("no HTTP client for the token endpoint"))
    }
}

/// A token endpoint: a checked URL and the client that calls it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// The URL as configured: the audience of assertions, which must match it exactly.
    url: Arc<str>,
    uri: Uri,
    host: Arc<str>,
    client: Arc<dyn HttpClient>,
    /// A platform metadata server (plain http to a link-local host allowed, never a proxy):
    /// every request carries the [`MetadataRequest`] mark.
    metadata: bool,
    /// DPoP-bound tokens asked for: every request carries a proof (RFC 9449 §5).
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::Dpop>,
}

/// What a source sends: a body and its content type.
pub(crate) enum Body {
    /// No body (a GET).
    Empty,
    /// `application/x-www-form-urlencoded`.
    Form(Zeroizing<String>),
    /// `application/json`.
    Json(Zeroizing<Vec<u8>>),
}

/// An `application/x-www-form-urlencoded` body under construction. Values are zeroized on drop.
#[derive(Default, Clone)]
pub(crate) struct Form(Vec<(std::borrow::Cow<'static, str>, Zeroizing<String>)>);

impl Form {
    pub(crate) fn new(grant_type: &str) -> Self {
        let mut form = Form::default();
        form.push("grant_type", grant_type);
        form
    }

    pub(crate) fn push(&mut self, name: impl Into<std::borrow::Cow<'static, str>>, value: &str) {
        self.0.push((name.into(), Zeroizing::new(value.to_owned())));
    }

    pub(crate) fn into_body(self) -> Body {
        Body::Form(urlencoded(
            self.0
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_str())),
        ))
    }
}

/// `pairs`, form-urlencoded, in a buffer zeroized on drop. It is sized for the worst case
/// (3 bytes per input byte) so that it never grows: a reallocation would leave a partial copy
/// of the secrets behind, in memory freed without being wiped.
pub(crate) fn urlencoded<'a, I>(pairs: I) -> Zeroizing<String>
where
    I: Iterator<Item = (&'a str, &'a str)> + Clone,
{
    let worst: usize = pairs
        .clone()
        .map(|(name, value)| 3 * (name.len() + value.len()) + 2)
        .sum();
    let mut out = Zeroizing::new(String::with_capacity(worst));
    form_urlencoded::Serializer::new(&mut *out)
        .extend_pairs(pairs)
        .finish();
    out
}

/// Bytes that are zeroized when the last clone of them is dropped (the HTTP client may keep
/// clones until the request is written).
fn zeroizing_bytes(bytes: Vec<u8>) -> Bytes {
    Bytes::from_owner(Zeroizing::new(bytes))
}

impl Endpoint {
    /// Parse and check `url` (https, or http to loopback). `client` defaults to reqwest.
    pub(crate) fn new(url: &str, client: Option<Arc<dyn HttpClient>>) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::config("the token URL is not a valid absolute URL"))?;
        check_token_url(&uri)?;
        Self::checked(url, uri, client, false)
    }

    /// A platform metadata server at `url`: `https`, or plain `http` to a metadata host
    /// (loopback, link-local `169.254.0.0/16`, `metadata.google.internal`). Its requests are
    /// marked ([`MetadataRequest`]) so that the built-in client allows them and sends them
    /// without a proxy.
    pub(crate) fn metadata(url: &str, client: Option<Arc<dyn HttpClient>>) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::config("the metadata endpoint URL is not a valid absolute URL"))?;
        check_metadata_url(&uri)?;
        Self::checked(url, uri, client, true)
    }

    fn checked(
        url: &str,
        uri: Uri,
        client: Option<Arc<dyn HttpClient>>,
        metadata: bool,
    ) -> Result<Self, Error> {
        let host = uri.host().unwrap_or_default().into();
        let client = match client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(Endpoint {
            url: url.into(),
            uri,
            host,
            client,
            metadata,
            #[cfg(feature = "dpop")]
            dpop: None,
        })
    }

    /// Send one request and return the answer as it is (status not checked).
    pub(crate) async fn send(
        &self,
        method: Method,
        query: &[(&str, &str)],
        headers: HeaderMap,
    ) -> Result<HttpResponse, Error> {
        let request = self.request(method, query, headers, Body::Empty)?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.tag(e))?;
        tracing::debug!(host = %self.host, status = response.status().as_u16(), "endpoint answered");
        Ok(response)
    }

    /// Ask for DPoP-bound tokens, with proofs from `dpop`.
    #[cfg(feature = "dpop")]
    pub(crate) fn with_dpop(mut self, dpop: Option<crate::dpop::Dpop>) -> Self {
        self.dpop = dpop;
        self
    }

    /// The DPoP key and nonces, if DPoP-bound tokens are asked for.
    #[cfg(feature = "dpop")]
    pub(crate) fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.dpop.as_ref()
    }

    /// The HTTP client, to share with a sibling endpoint.
    pub(crate) fn client(&self) -> Arc<dyn HttpClient> {
        Arc::clone(&self.client)
    }

    /// The token URL, as configured (the audience of assertions).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// POST a grant request (a form, with the client's credentials if any) and read the answer.
    ///
    /// With DPoP, a `use_dpop_nonce` error is answered by sending the request once more (with
    /// a new client assertion, if any), now that the nonce it came with is remembered.
    ///
    /// With a client assertion from a [`CredentialProvider`](super::workload::CredentialProvider)
    /// (a platform token file), a rejection is answered by asking the provider again: if the
    /// platform has rotated the credential since it was read, the request is sent once more
    /// with the new one.
    pub(crate) async fn grant(
        &self,
        form: Form,
        auth: Option<&ClientAuth>,
        fields: &TokenFields,
        refused: &'static str,
    ) -> Result<TokenResponse, Error> {
        let again = auth
            .is_some_and(ClientAuth::has_provider)
            .then(|| form.clone());
        let (result, used) = self
            .grant_with_nonce(form, auth, None, fields, refused)
            .await;
        let (Some(again), Some(auth), Some(used)) = (again, auth, used) else {
            return result;
        };
        if !matches!(&result, Err(e) if e.kind() == crate::ErrorKind::Rejected) {
            return result;
        }
        match auth.provided_credential().await {
            Ok(Some(fresh)) if fresh != used => {
                tracing::info!(host = %self.host, "the client assertion was refused and the platform has rotated it since; sending the request once more with the new one");
                self.grant_with_nonce(again, Some(auth), Some(fresh), fields, refused)
                    .await
                    .0
            }
            _ => result,
        }
    }

    /// [`grant_once`](Self::grant_once), and once more after a `use_dpop_nonce` error. Returns
    /// the provided client assertion sent, if any.
    async fn grant_with_nonce(
        &self,
        form: Form,
        auth: Option<&ClientAuth>,
        preset: Option<IdentityToken>,
        fields: &TokenFields,
        refused: &'static str,
    ) -> (Result<TokenResponse, Error>, Option<IdentityToken>) {
        #[cfg(feature = "dpop")]
        if self.dpop.is_some() {
            let again = form.clone();
            let first = self
                .grant_once(form, auth, preset.clone(), fields, refused)
                .await;
            return match first {
                (Err(e), _) if e.oauth_error() == Some(crate::dpop::USE_DPOP_NONCE) => {
                    tracing::debug!(host = %self.host, "the token endpoint asked for a DPoP nonce; sending the request once more");
                    self.grant_once(again, auth, preset, fields, refused).await
                }
                other => other,
            };
        }
        self.grant_once(form, auth, preset, fields, refused).await
    }

    async fn grant_once(
        &self,
        mut form: Form,
        auth: Option<&ClientAuth>,
        preset: Option<IdentityToken>,
        fields: &TokenFields,
        refused: &'static str,
    ) -> (Result<TokenResponse, Error>, Option<IdentityToken>) {
        let (headers, used) = match self.authenticate(&mut form, auth, preset).await {
            Ok(applied) => applied,
            Err(e) => return (Err(e), None),
        };
        let result = self
            .exchange(
                Method::POST,
                &[],
                headers,
                form.into_body(),
                fields,
                refused,
            )
            .await;
        (result, used)
    }

    /// The headers carrying the client's credentials, if any (some go in `form` instead), and
    /// the provided client assertion sent, if any (`preset`, or read now).
    async fn authenticate(
        &self,
        form: &mut Form,
        auth: Option<&ClientAuth>,
        preset: Option<IdentityToken>,
    ) -> Result<(HeaderMap, Option<IdentityToken>), Error> {
        let mut headers = HeaderMap::new();
        let mut used = None;
        if let Some(auth) = auth {
            used = auth
                .apply(&self.url, form, &mut headers, preset)
                .await
                .map_err(|e| self.tag(e))?;
        }
        Ok((headers, used))
    }

    /// POST a form (with the client's credentials, if any) and check the status; the body of a
    /// success is not read (a revocation answers 200 with nothing to say).
    pub(crate) async fn post(
        &self,
        mut form: Form,
        auth: Option<&ClientAuth>,
        refused: &'static str,
    ) -> Result<HttpResponse, Error> {
        let (headers, _) = self.authenticate(&mut form, auth, None).await?;
        let request = self.request(Method::POST, &[], headers, form.into_body())?;
        let response = traced(&*self.client, request)
            .await
            .map_err(|e| self.tag(e))?;
        tracing::debug!(host = %self.host, status = response.status().as_u16(), "endpoint answered");
        check_status(&response, refused).map_err(|e| self.tag(e))?;
        Ok(response)
    }

    /// Send one request and read the answer as a token response.
    ///
    /// `query` is appended to the URL (form-urlencoded); `refused` is the message for a
    /// rejection (a 4xx or an RFC 6749 §5.2 error), saying in the source's words what was
    /// refused.
    pub(crate) async fn exchange(
        &self,
        method: Method,
        query: &[(&str, &str)],
        headers: HeaderMap,
        body: Body,
        fields: &TokenFields,
        refused: &'static str,
    ) -> Result<TokenResponse, Error> {
        #[cfg(feature = "dpop")]
        let mut headers = headers;
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.dpop {
            let proof = dpop
                .proof_async(&method, &self.uri, None)
                .await
                .map_err(|e| self.tag(e))?;
            headers.insert(crate::dpop::DPOP, proof);
        }
        let request = self.request(method, query, headers, body)?;
        let response = traced(&*self.client, request)
            .await
            .map_err(|e| self.tag(e))?;
        tracing::debug!(host = %self.host, status = response.status().as_u16(), "token endpoint answered");
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.dpop {
            dpop.remember_nonce(&self.uri, response.headers());
        }
        check_status(&response, refused).map_err(|e| self.tag(e))?;
        let parsed = TokenResponse::parse(&response, fields, refused).map_err(|e| self.tag(e))?;
        #[cfg(feature = "dpop")]
        let parsed = parsed.bind_dpop(self.dpop.clone());
        Ok(parsed)
    }

    fn request(
        &self,
        method: Method,
        query: &[(&str, &str)],
        headers: HeaderMap,
        body: Body,
    ) -> Result<Request<Bytes>, Error> {
        let uri = if query.is_empty() {
            self.uri.clone()
        } else {
            // The URL as configured (no formatting, which could leave copies of a query).
            let base: &str = &self.url;
            let encoded = urlencoded(query.iter().copied());
            let mut url = Vec::with_capacity(base.len() + 1 + encoded.len());
            url.extend_from_slice(base.as_bytes());
            url.push(if self.uri.query().is_some() {
                b'&'
            } else {
                b'?'
            });
            url.extend_from_slice(encoded.as_bytes());
            // The `Uri` shares these bytes (no copy), so they are wiped with its last clone.
            Uri::from_maybe_shared(zeroizing_bytes(url))
                .map_err(|_| Error::config("the token URL cannot carry the query parameters"))?
        };
        let (content_type, body) = match body {
            Body::Empty => (None, Bytes::new()),
            Body::Form(mut form) => (
                Some("application/x-www-form-urlencoded"),
                // Moves the buffer: the one copy of the form stays the one that is wiped.
                zeroizing_bytes(std::mem::take(&mut *form).into_bytes()),
            ),
            Body::Json(mut json) => (
                Some("application/json"),
                zeroizing_bytes(std::mem::take(&mut *json)),
            ),
        };
        let mut request = Request::new(body);
        if self.metadata {
            request.extensions_mut().insert(MetadataRequest);
        }
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(content_type) = content_type {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        Ok(request)
    }

    /// Add the host to an error that does not name one yet.
    pub(crate) fn tag(&self, err: Error) -> Error {
        if err.host().is_some() {
            err
        } else {
            err.with_host(self.host.to_string())
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The host only: a token URL's query string could hold a credential.
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .finish()
    }
}

/// Classify a non-2xx answer: 3xx, 408, 429 and 5xx, 404 and 405, other 4xx.
///
/// A 404 or 405 without an RFC 6749 §5.2 error body says there is no token endpoint at this
/// URL (a typo, a wrong base path or version), not that the credential was refused: it is a
/// [`Config`](crate::ErrorKind::Config) error, which no source answers by trying another
/// credential. With an OAuth error body, the endpoint is there and refused the request.
pub(crate) fn check_status(response: &HttpResponse, refused: &'static str) -> Result<(), Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let code = oauth_error_code(response.body());
    let err = if code.is_none() && status == StatusCode::NOT_FOUND {
        Error::config("there is no token endpoint at the token URL (not found): check the URL")
    } else if code.is_none() && status == StatusCode::METHOD_NOT_ALLOWED {
        Error::config(
            "the token URL does not accept this request method, so it is not the token \
             endpoint: check the URL",
        )
    } else if status.is_redirection() {
        Error::invalid_response(
            "the token endpoint answered with a redirect, which is not followed: check the token URL",
        )
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        let message = if status == StatusCode::TOO_MANY_REQUESTS {
            "the token endpoint is rate limiting requests"
        } else {
            "the token endpoint is unavailable"
        };
        let mut err = Error::transient(message);
        if let Some(after) = retry_after(response.headers(), SystemTime::now()) {
            err = err.with_retry_after(after);
        }
        err
    } else if status.is_client_error() {
        Error::rejected(refused)
    } else {
        Error::invalid_response("the token endpoint answered with an unexpected status")
    };
    let err = err.with_status(status);
    Err(match code {
        Some(code) => err.with_oauth_error(code),
        None => err,
    })
}

/// The RFC 6749 §5.2 `error` code of a JSON error body, if it is a well-formed one.
///
/// Only the code is kept (never `error_description`, which may echo the request), and only if
/// it uses the characters §5.2 allows and is of a sensible length.
pub(crate) fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let code = parsed.error;
    let valid = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    valid.then_some(code)
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3),
/// either capped at [`MAX_RETRY_AFTER`]; a date in the past is no delay.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Numbers too big for a u64 are capped, not overflowed.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        let mut r = http::Response::new(Bytes::copy_from_slice(body.as_bytes()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:50:07 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "300".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(300)));
        // Both forms are capped.
        h.insert(RETRY_AFTER, "99999999999999999999999".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            "Mon, 07 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn oauth_errors_on_400_and_401_are_rejections_with_their_code() {
        for status in [400, 401] {
            let r = response(
                status,
                &[],
                r#"{"error":"invalid_grant","error_description":"echo rt-123"}"#,
            );
            let err = check_status(&r, "refused").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Rejected);
            assert_eq!(err.oauth_error(), Some("invalid_grant"));
            assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
            assert!(!format!("{err} {err:?}").contains("rt-123"));
        }
    }

    #[test]
    fn not_found_and_method_not_allowed_are_config_errors() {
        for (status, body) in [
            (404, "<html>Not Found</html>"),
            (404, ""),
            (405, r#"{"message":"Method Not Allowed"}"#),
        ] {
            let r = response(status, &[("content-type", "text/html")], body);
            let err = check_status(&r, "refused").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{status}");
            assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
            assert!(err.to_string().contains("token URL"), "{err}");
        }
        // The endpoint is there and speaks OAuth: a refusal.
        let r = response(404, &[], r#"{"error":"invalid_grant"}"#);
        let err = check_status(&r, "refused").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Rejected);
        assert_eq!(err.oauth_error(), Some("invalid_grant"));
        // Other 4xx without a code are still refusals.
        let r = response(403, &[], "forbidden");
        assert_eq!(
            check_status(&r, "refused").unwrap_err().kind(),
            crate::ErrorKind::Rejected
        );
    }

    #[test]
    fn overload_is_transient_with_retry_after() {
        let r = response(429, &[("retry-after", "7")], "slow down");
        let err = check_status(&r, "refused").unwrap_err();
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        let r = response(503, &[], "<html>down</html>");
        assert!(check_status(&r, "refused").unwrap_err().is_transient());
        // Error::retry_after() is capped for both forms of the header.
        for far in ["86400", "Fri, 31 Dec 9999 23:59:59 GMT"] {
            let r = response(429, &[("retry-after", far)], "");
            let err = check_status(&r, "refused").unwrap_err();
            assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER), "{far}");
        }
    }

    #[test]
    fn redirects_are_invalid_responses() {
        let r = response(302, &[("location", "https://elsewhere.example/")], "");
        let err = check_status(&r, "refused").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidResponse);
    }

    #[test]
    fn malformed_error_codes_are_dropped() {
        assert_eq!(oauth_error_code(br#"{"error":"bad\"code"}"#), None);
        assert_eq!(oauth_error_code(br#"{"error":""}"#), None);
        assert_eq!(oauth_error_code(&[b'x'; 100]), None);
        let long = format!(r#"{{"error":"{}"}}"#, "a".repeat(65));
        assert_eq!(oauth_error_code(long.as_bytes()), None);
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_client"}"#).as_deref(),
            Some("invalid_client")
        );
    }
}
