//! Reading a token endpoint's JSON answer (RFC 6749 §5.1), with field names as configuration.
//!
//! Vendors differ in spelling (`access_token` or `accessToken`), never in meaning, so one parser
//! serves them all through [`TokenFields`]. The answer is read in two steps so that a rotated
//! refresh token can be saved even when the access token next to it turns out to be unusable.
//!
//! The access and refresh tokens are moved, without a copy, from the parsed JSON into types
//! that are zeroized on drop. A token written with JSON escapes (`\/`, as some servers write
//! `/`) is unescaped through serde_json's scratch buffer, which is not wiped.

use std::borrow::Cow;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::http_client::HttpResponse;
use crate::secret::RefreshToken;
use crate::{Error, Token};

/// The names of the fields in a token endpoint's JSON answer.
///
/// [`TokenFields::oauth2`] (the default) is RFC 6749's spelling; [`TokenFields::camel_case`] is
/// the `accessToken` / `refreshToken` / `expiresIn` / `tokenType` spelling some vendors use. Any
/// name can be changed on its own.
///
/// ```
/// use tower_bearer::source::TokenFields;
///
/// let fields = TokenFields::oauth2().access_token("jwt");
/// assert_eq!(fields.access_token_name(), "jwt");
/// assert_eq!(TokenFields::camel_case().access_token_name(), "accessToken");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFields {
    access_token: Cow<'static, str>,
    refresh_token: Cow<'static, str>,
    expires_in: Cow<'static, str>,
    token_type: Cow<'static, str>,
}

impl TokenFields {
    /// `access_token`, `refresh_token`, `expires_in`, `token_type` (RFC 6749 §5.1).
    pub const fn oauth2() -> Self {
        TokenFields {
            access_token: Cow::Borrowed("access_token"),
            refresh_token: Cow::Borrowed("refresh_token"),
            expires_in: Cow::Borrowed("expires_in"),
            token_type: Cow::Borrowed("token_type"),
        }
    }

    /// `accessToken`, `refreshToken`, `expiresIn`, `tokenType`.
    pub const fn camel_case() -> Self {
        TokenFields {
            access_token: Cow::Borrowed("accessToken"),
            refresh_token: Cow::Borrowed("refreshToken"),
            expires_in: Cow::Borrowed("expiresIn"),
            token_type: Cow::Borrowed("tokenType"),
        }
    }

    /// The name of the access token field.
    pub fn access_token(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.access_token = name.into();
        self
    }

    /// The name of the refresh token field.
    pub fn refresh_token(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.refresh_token = name.into();
        self
    }

    /// The name of the lifetime field (seconds, a number or a numeric string).
    pub fn expires_in(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.expires_in = name.into();
        self
    }

    /// The name of the token type field.
    pub fn token_type(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.token_type = name.into();
        self
    }

    /// The configured name of the access token field.
    pub fn access_token_name(&self) -> &str {
        &self.access_token
    }
}

impl Default for TokenFields {
    fn default() -> Self {
        Self::oauth2()
    }
}

/// A successful answer, read but not yet judged.
pub(crate) struct TokenResponse {
    access_token: Option<Zeroizing<String>>,
    token_type: Option<Value>,
    expires_in: Option<Value>,
    /// `expires_on` (epoch seconds, a number or a numeric string): what Azure managed
    /// identity endpoints and Entra v1 answers give, sometimes instead of `expires_in`.
    expires_on: Option<Value>,
    refresh_token: Option<RefreshToken>,
    access_token_name: Cow<'static, str>,
    /// A DPoP-bound token was asked for: `token_type` must say `DPoP`.
    dpop: bool,
    /// The key the token is then bound to ([`Token::with_dpop`]).
    #[cfg(feature = "dpop")]
    binding: Option<crate::dpop::Dpop>,
    /// RFC 8693 §2.2.1 `issued_token_type`, for the token exchange.
    issued_token_type: Option<String>,
}

impl TokenResponse {
    /// Read a 2xx answer: a JSON object (by content type and by content).
    ///
    /// A 2xx carrying an RFC 6749 §5.2 `error` and no access token (some servers do this) is a
    /// rejection with its code.
    pub(crate) fn parse(
        response: &HttpResponse,
        fields: &TokenFields,
        refused: &'static str,
    ) -> Result<TokenResponse, Error> {
        let status = response.status();
        check_content_type(response).map_err(|e| e.with_status(status))?;
        let mut object: Map<String, Value> =
            serde_json::from_slice(response.body()).map_err(|_| {
                Error::invalid_response("the token endpoint's answer is not a JSON object")
                    .with_status(status)
            })?;
        let access_token = match object.remove(fields.access_token.as_ref()) {
            Some(Value::String(s)) if !s.is_empty() => Some(Zeroizing::new(s)),
            _ => None,
        };
        if access_token.is_none()
            && let Some(code) = super::endpoint::oauth_error_code(response.body())
        {
            return Err(Error::rejected(refused)
                .with_status(status)
                .with_oauth_error(code));
        }
        let refresh_token = match object.remove(fields.refresh_token.as_ref()) {
            Some(Value::String(s)) if !s.is_empty() => Some(RefreshToken::from(s)),
            _ => None,
        };
        Ok(TokenResponse {
            access_token,
            token_type: object.remove(fields.token_type.as_ref()),
            expires_in: object.remove(fields.expires_in.as_ref()),
            expires_on: object.remove("expires_on"),
            refresh_token,
            access_token_name: fields.access_token.clone(),
            dpop: false,
            #[cfg(feature = "dpop")]
            binding: None,
            issued_token_type: match object.remove("issued_token_type") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            },
        })
    }

    /// `issued_token_type` (RFC 8693 §2.2.1), if the answer has it as a string.
    pub(crate) fn issued_token_type(&self) -> Option<&str> {
        self.issued_token_type.as_deref()
    }

    /// Require a `DPoP` token type (RFC 9449 §5) when `dpop`, refusing `Bearer` (a server
    /// that ignored the proof would hand out a token anyone holding it could use).
    #[cfg(test)]
    pub(crate) fn expect_dpop(mut self, dpop: bool) -> Self {
        self.dpop = dpop;
        self
    }

    /// [`expect_dpop`](Self::expect_dpop) when `dpop` is given, and bind the token to it.
    #[cfg(feature = "dpop")]
    pub(crate) fn bind_dpop(mut self, dpop: Option<crate::dpop::Dpop>) -> Self {
        self.dpop = dpop.is_some();
        self.binding = dpop;
        self
    }

    /// The refresh token in the answer, if any: take it first, to save it whatever comes next.
    pub(crate) fn take_refresh_token(&mut self) -> Option<RefreshToken> {
        self.refresh_token.take()
    }

    /// Judge the answer and make the [`Token`].
    ///
    /// The lifetime is `expires_in` when present, else `expires_on` (epoch seconds) when it is
    /// a number, else the JWT `exp` of the token. With
    /// `require_expiry`, a token with neither is an error instead of a token that never expires.
    pub(crate) fn into_token(mut self, require_expiry: bool) -> Result<Token, Error> {
        check_token_type(self.token_type.as_ref(), self.dpop)?;
        let expires_in = parse_expires_in(self.expires_in.as_ref())?;
        let Some(mut secret) = self.access_token.take() else {
            return Err(Error::invalid_response(format!(
                "the token endpoint's answer has no `{}`",
                self.access_token_name
            )));
        };
        // Moving the String out of the Zeroizing keeps its one heap copy, now owned by Token.
        let token = Token::new(std::mem::take(&mut *secret));
        // The cache checks this too; checking here lets the error name the endpoint.
        token.header_value()?;
        #[cfg(feature = "dpop")]
        let token = match self.binding.take() {
            Some(dpop) => token.with_dpop(dpop),
            None => token,
        };
        match (expires_in, parse_expires_on(self.expires_on.as_ref())) {
            (Some(expires_in), _) => Ok(token.with_expires_in(expires_in)),
            (None, Some(at)) => Ok(token.with_expires_at(at)),
            (None, None) if require_expiry => token.with_jwt_expiry(),
            (None, None) => Ok(token),
        }
    }
}

/// JSON, or no content type at all; HTML error pages and other types are refused.
fn check_content_type(response: &HttpResponse) -> Result<(), Error> {
    let Some(value) = response.headers().get(CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else if essence == "text/html" {
        Err(Error::invalid_response(
            "the token endpoint answered with an HTML page, not a JSON token: check the token URL",
        ))
    } else {
        Err(Error::invalid_response(
            "the token endpoint's answer is not JSON (wrong content type)",
        ))
    }
}

/// `Bearer` in any case, or absent (RFC 6749 §7.1: the type is case-insensitive); with `dpop`,
/// `DPoP` and nothing else.
fn check_token_type(token_type: Option<&Value>, dpop: bool) -> Result<(), Error> {
    let expected = if dpop { "dpop" } else { "bearer" };
    match token_type {
        None | Some(Value::Null) if dpop => Err(Error::invalid_response(
            "the token endpoint did not say the token is DPoP-bound (no `token_type`): refusing it",
        )),
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case(expected) => Ok(()),
        Some(Value::String(t)) if dpop && t.eq_ignore_ascii_case("bearer") => {
            Err(Error::invalid_response(
                "the token endpoint issued a Bearer token although a DPoP-bound one was asked \
                 for (downgrade): refusing it",
            ))
        }
        Some(Value::String(t)) => {
            let shown = if t.len() <= 32
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                t.as_str()
            } else {
                "another type"
            };
            Err(Error::invalid_response(format!(
                "the token endpoint issued a `{shown}` token; only {} tokens can be sent",
                if dpop { "DPoP" } else { "Bearer" }
            )))
        }
        Some(_) => Err(Error::invalid_response("the token type is not a string")),
    }
}

/// `expires_on` as epoch seconds (a JSON number or a numeric string); anything else (the
/// date strings of old App Service versions) is ignored.
fn parse_expires_on(value: Option<&Value>) -> Option<std::time::SystemTime> {
    let secs = match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs.min(1 << 40)))
}

/// Seconds as a JSON number or a numeric string (both occur in the wild).
fn parse_expires_in(value: Option<&Value>) -> Result<Option<Duration>, Error> {
    let secs = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    secs.filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(Some)
        .ok_or_else(|| Error::invalid_response("`expires_in` is not a number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use bytes::Bytes;

    fn answer(content_type: Option<&str>, body: &str) -> HttpResponse {
        let mut r = http::Response::new(Bytes::copy_from_slice(body.as_bytes()));
        if let Some(ct) = content_type {
            r.headers_mut().insert(CONTENT_TYPE, ct.parse().unwrap());
        }
        r
    }

    fn token(content_type: Option<&str>, body: &str, fields: &TokenFields) -> Result<Token, Error> {
        TokenResponse::parse(&answer(content_type, body), fields, "refused")?.into_token(false)
    }

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn reads_a_standard_answer() {
        let t = token(
            JSON,
            r#"{"access_token":"abc","token_type":"bearer","expires_in":3599}"#,
            &TokenFields::oauth2(),
        )
        .unwrap();
        assert_eq!(t.secret(), "abc");
        assert!(format!("{t:?}").contains("3599s"));
    }

    #[test]
    fn expires_in_may_be_a_numeric_string() {
        let t = token(
            JSON,
            r#"{"access_token":"abc","expires_in":"60"}"#,
            &TokenFields::oauth2(),
        )
        .unwrap();
        assert!(format!("{t:?}").contains("60s"));
    }

    #[test]
    fn camel_case_fields_are_configuration() {
        let mut r = TokenResponse::parse(
            &answer(
                JSON,
                r#"{"accessToken":"abc","refreshToken":"r2","expiresIn":10}"#,
            ),
            &TokenFields::camel_case(),
            "refused",
        )
        .unwrap();
        assert_eq!(r.take_refresh_token(), Some(RefreshToken::new("r2")));
        assert_eq!(r.into_token(false).unwrap().secret(), "abc");
    }

    #[test]
    fn bad_answers_are_invalid_responses() {
        let f = TokenFields::oauth2();
        for (ct, body) in [
            (JSON, "not json"),
            (JSON, "[1,2]"),
            (JSON, r#"{"token":"abc"}"#),
            (JSON, r#"{"access_token":""}"#),
            (JSON, r#"{"access_token":42}"#),
            (JSON, r#"{"access_token":"abc","token_type":"mac"}"#),
            (JSON, r#"{"access_token":"abc","token_type":7}"#),
            (JSON, r#"{"access_token":"abc","expires_in":-1}"#),
            (JSON, r#"{"access_token":"abc","expires_in":"soon"}"#),
            (JSON, r#"{"access_token":"abc","expires_in":1e300}"#),
            (Some("text/html"), "<html>login</html>"),
            (Some("text/plain"), r#"{"access_token":"abc"}"#),
        ] {
            let err = token(ct, body, &f).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{body}");
        }
    }

    #[test]
    fn dpop_requires_the_dpop_token_type_and_refuses_a_downgrade() {
        let parse = |body: &str, dpop: bool| {
            TokenResponse::parse(&answer(JSON, body), &TokenFields::oauth2(), "refused")
                .unwrap()
                .expect_dpop(dpop)
                .into_token(false)
        };
        assert!(parse(r#"{"access_token":"a","token_type":"DPoP"}"#, true).is_ok());
        assert!(parse(r#"{"access_token":"a","token_type":"dpop"}"#, true).is_ok());
        for body in [
            r#"{"access_token":"a","token_type":"Bearer"}"#,
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"a","token_type":"mac"}"#,
        ] {
            let err = parse(body, true).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{body}");
        }
        assert!(
            parse(r#"{"access_token":"a","token_type":"Bearer"}"#, true)
                .unwrap_err()
                .to_string()
                .contains("downgrade")
        );
        // Without DPoP, a DPoP token cannot be sent as a bearer token.
        assert!(parse(r#"{"access_token":"a","token_type":"DPoP"}"#, false).is_err());
    }

    #[test]
    fn a_2xx_oauth_error_is_a_rejection() {
        let err = token(JSON, r#"{"error":"invalid_grant"}"#, &TokenFields::oauth2()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert_eq!(err.oauth_error(), Some("invalid_grant"));
    }

    #[test]
    fn missing_content_type_is_tolerated() {
        assert!(token(None, r#"{"access_token":"abc"}"#, &TokenFields::oauth2()).is_ok());
    }

    #[test]
    fn require_expiry_refuses_an_opaque_token_without_expires_in() {
        let r = TokenResponse::parse(
            &answer(JSON, r#"{"access_token":"opaque"}"#),
            &TokenFields::oauth2(),
            "refused",
        )
        .unwrap();
        assert_eq!(
            r.into_token(true).unwrap_err().kind(),
            ErrorKind::InvalidResponse
        );
    }

    #[test]
    fn a_refresh_token_survives_a_bad_access_token() {
        let mut r = TokenResponse::parse(
            &answer(JSON, r#"{"refresh_token":"r2","token_type":"mac"}"#),
            &TokenFields::oauth2(),
            "refused",
        )
        .unwrap();
        assert_eq!(r.take_refresh_token(), Some(RefreshToken::new("r2")));
        assert!(r.into_token(false).is_err());
    }
}
