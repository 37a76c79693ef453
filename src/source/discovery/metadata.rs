//! The authorization server metadata (RFC 8414 §2): what token sources use of it, and the
//! checks a document must pass.

use http::Uri;
use serde::Deserialize;

use crate::Error;
use crate::http_client::check_token_url;
use crate::origin::is_loopback_host;

/// The parts of an authorization server's metadata (RFC 8414 §2) that token sources use.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    issuer: String,
    token_endpoint: String,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    grant_types_supported: Option<Vec<String>>,
}

impl Metadata {
    /// `issuer`: equal to the configured issuer (checked).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `token_endpoint`: `https`, or `http` to loopback, and on this host only when the issuer
    /// is (checked).
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// `revocation_endpoint` (RFC 7009), if the server has one (checked as `token_endpoint`).
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }

    /// The client authentication methods the token endpoint accepts:
    /// `token_endpoint_auth_methods_supported`, or `["client_secret_basic"]` when the document
    /// omits it (RFC 8414 §2).
    pub fn token_endpoint_auth_methods(&self) -> Vec<&str> {
        match &self.token_endpoint_auth_methods_supported {
            Some(methods) => methods.iter().map(String::as_str).collect(),
            None => vec!["client_secret_basic"],
        }
    }

    /// Whether a source built from `self` is still right for `other`: the same token endpoint
    /// and the same accepted client authentication.
    pub(super) fn same_token_endpoint(&self, other: &Metadata) -> bool {
        self.token_endpoint == other.token_endpoint
            && self.token_endpoint_auth_methods_supported
                == other.token_endpoint_auth_methods_supported
    }

    /// `grant_types_supported`, if listed.
    pub fn grant_types_supported(&self) -> Option<&[String]> {
        self.grant_types_supported.as_deref()
    }

    /// Refuse `method` if the token endpoint does not list it.
    pub(super) fn check_auth_method(&self, method: &str) -> Result<(), Error> {
        let methods = self.token_endpoint_auth_methods();
        if methods.contains(&method) {
            return Ok(());
        }
        Err(Error::config(format!(
            "the authorization server does not accept the `{method}` client authentication \
             method at its token endpoint (it lists: {})",
            shown_list(&methods)
        )))
    }

    /// Warn when the server lists its grant types and `grant` is not among them: many servers
    /// list them incompletely, so this is not refused.
    pub(super) fn check_grant(&self, grant: &str) {
        if let Some(grants) = &self.grant_types_supported
            && !grants.iter().any(|g| g == grant)
        {
            tracing::warn!(
                grant,
                "the authorization server does not list this grant type in grant_types_supported"
            );
        }
    }
}

/// Read and check a metadata document for `issuer`.
pub(super) fn parse(body: &[u8], issuer: &str) -> Result<Metadata, Error> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        Error::invalid_response("the authorization server metadata is not valid JSON")
    })?;
    let object = value.as_object().ok_or_else(|| {
        Error::invalid_response("the authorization server metadata is not a JSON object")
    })?;
    for field in ["issuer", "token_endpoint"] {
        match object.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => {}
            Some(_) => {
                return Err(Error::invalid_response(format!(
                    "the authorization server metadata's `{field}` is not a URL string"
                )));
            }
            None => {
                return Err(Error::invalid_response(format!(
                    "the authorization server metadata has no `{field}`"
                )));
            }
        }
    }
    let metadata: Metadata = serde_json::from_value(value).map_err(|_| {
        Error::invalid_response(
            "the authorization server metadata has a field of the wrong type (a list that is \
             not a list of strings, an endpoint that is not a string)",
        )
    })?;
    // RFC 8414 §3.3: the issuer in the document must be identical to the one configured, or a
    // document from elsewhere could send our credentials to its token endpoint.
    if metadata.issuer != issuer {
        return Err(Error::invalid_response(format!(
            "the authorization server metadata names the issuer {}, not the configured {issuer} \
             (RFC 8414 §3.3 requires them identical, trailing slash included)",
            shown(&metadata.issuer)
        )));
    }
    let local_issuer = issuer
        .parse::<Uri>()
        .ok()
        .and_then(|uri| uri.host().map(on_this_host))
        .unwrap_or(false);
    check_endpoint(&metadata.token_endpoint, "token_endpoint", local_issuer)?;
    if let Some(url) = &metadata.revocation_endpoint {
        check_endpoint(url, "revocation_endpoint", local_issuer)?;
    }
    Ok(metadata)
}

/// An endpoint from the document: an absolute URL that credentials may go to. Only an issuer
/// on this host may name an endpoint on this host: from a remote issuer, a loopback endpoint
/// would post the client's secret (in clear, over `http`) to whatever local process holds the
/// port, and let a remote document aim requests into the loopback interface.
fn check_endpoint(url: &str, field: &str, local_issuer: bool) -> Result<(), Error> {
    let refused = |why: &str| {
        Error::invalid_response(format!(
            "the authorization server metadata's `{field}` is not a place to send credentials: {why}"
        ))
    };
    let uri: Uri = url.parse().map_err(|_| {
        Error::invalid_response(format!(
            "the authorization server metadata's `{field}` is not a valid URL"
        ))
    })?;
    check_token_url(&uri).map_err(|e| refused(e.message()))?;
    if !local_issuer && uri.host().is_some_and(on_this_host) {
        return Err(refused(
            "it points at this host (loopback) while the issuer is remote; only a loopback \
             issuer may name loopback endpoints",
        ));
    }
    Ok(())
}

/// Whether a request to `host` stays on this machine: loopback by the crate's rule, and also
/// the names and addresses that reach it without being loopback by that rule (`*.localhost`,
/// which many resolvers map to loopback, and the unspecified addresses `0.0.0.0` and `[::]`).
fn on_this_host(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    is_loopback_host(host)
        || name.ends_with(".localhost")
        || matches!(
            name.as_str(),
            "0.0.0.0" | "[::]" | "[::0]" | "[0:0:0:0:0:0:0:0]"
        )
}

/// A value from the server, shown in an error: printable and short.
fn shown(value: &str) -> String {
    let printable = value.chars().all(|c| !c.is_control());
    if printable && value.len() <= 200 {
        format!("{value:?}")
    } else {
        "(an unprintable or overlong value)".to_owned()
    }
}

fn shown_list(values: &[&str]) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    values
        .iter()
        .map(|v| shown(v))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn documents_are_checked() {
        let issuer = "https://auth.example.com";
        let ok = r#"{"issuer":"https://auth.example.com","token_endpoint":"https://auth.example.com/token"}"#;
        assert_eq!(
            parse(ok.as_bytes(), issuer).unwrap().token_endpoint(),
            "https://auth.example.com/token"
        );
        for (body, says) in [
            ("not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"token_endpoint":"https://a/t"}"#, "no `issuer`"),
            (
                r#"{"issuer":"https://auth.example.com"}"#,
                "no `token_endpoint`",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":7}"#,
                "not a URL string",
            ),
            (
                r#"{"issuer":"https://evil.example.com","token_endpoint":"https://evil.example.com/t"}"#,
                "\"https://evil.example.com\", not the configured",
            ),
            (
                r#"{"issuer":"https://auth.example.com/","token_endpoint":"https://auth.example.com/t"}"#,
                "trailing slash",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"http://auth.example.com/t"}"#,
                "must use https",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"/token"}"#,
                "`token_endpoint`",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"https://a/t","token_endpoint_auth_methods_supported":"client_secret_basic"}"#,
                "wrong type",
            ),
            (
                r#"{"issuer":"https://auth.example.com","token_endpoint":"https://a/t","revocation_endpoint":"http://a/r"}"#,
                "`revocation_endpoint`",
            ),
        ] {
            let err = parse(body.as_bytes(), issuer).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{body}");
            assert!(err.to_string().contains(says), "{body}: {err}");
        }
    }

    #[test]
    fn a_remote_issuer_never_names_a_loopback_endpoint() {
        let doc = |issuer: &str, field: &str, url: &str| {
            let mut doc = serde_json::json!({
                "issuer": issuer,
                "token_endpoint": format!("{issuer}/token"),
            });
            doc[field] = url.into();
            doc.to_string()
        };
        let remote = "https://auth.example.com";
        for field in ["token_endpoint", "revocation_endpoint"] {
            for url in [
                "http://127.0.0.1:8080/token",
                "http://localhost/token",
                "https://127.0.0.1/token",
                "https://[::1]:9/token",
                "https://api.localhost/token",
                "https://0.0.0.0/token",
                "http://[::ffff:127.0.0.1]/token",
            ] {
                let err = parse(doc(remote, field, url).as_bytes(), remote).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{field} {url}");
                assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
                assert!(err.to_string().contains("loopback"), "{err}");
            }
        }
        // A loopback issuer may name loopback endpoints (local test servers, sidecars).
        let local = "http://127.0.0.1:8080";
        let m = parse(
            doc(local, "revocation_endpoint", "http://localhost:9/revoke").as_bytes(),
            local,
        )
        .unwrap();
        assert_eq!(m.token_endpoint(), "http://127.0.0.1:8080/token");
        // A remote issuer may name other remote endpoints.
        parse(
            doc(remote, "token_endpoint", "https://login.example.net/token").as_bytes(),
            remote,
        )
        .unwrap();
    }

    #[test]
    fn auth_methods_default_to_client_secret_basic() {
        let m: Metadata =
            serde_json::from_str(r#"{"issuer":"https://a","token_endpoint":"https://a/t"}"#)
                .unwrap();
        assert!(m.check_auth_method("client_secret_basic").is_ok());
        let err = m.check_auth_method("client_secret_post").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("`client_secret_post`"), "{err}");
        assert!(err.to_string().contains("\"client_secret_basic\""), "{err}");
    }
}
