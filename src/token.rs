//! [`Token`]: an access token and how long it lives.
//!
//! The secret is redacted in `Debug` and zeroized on drop. Its lifetime is, in order of
//! preference: what the source said ([`with_expires_in`](Token::with_expires_in) or
//! [`with_expires_at`](Token::with_expires_at)), else the `exp` claim when the token is a JWT
//! (read without verifying the signature: the token is not ours to verify), else none, meaning
//! "valid until invalidated".
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::Token;
//!
//! let token = Token::new("opaque-token").with_expires_in(Duration::from_secs(3600));
//! assert_eq!(token.secret(), "opaque-token");
//! assert_eq!(format!("{token:?}"), "Token { secret: \"[redacted]\", lifetime: ExpiresIn(3600s) }");
//!
//! // A JWT without signature verification: `exp` gives the lifetime.
//! let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"; // {"exp":4102444800}
//! let token = Token::new(jwt);
//! assert!(token.jwt_expiry().is_some());
//! // Garbage never panics; it is simply not a JWT.
//! assert!(Token::new("not.a.jwt").jwt_expiry().is_none());
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::HeaderValue;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::Error;

/// An access token returned by a [`TokenSource`](crate::TokenSource).
#[derive(Clone)]
pub struct Token {
    secret: Zeroizing<String>,
    lifetime: Lifetime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifetime {
    /// Nothing said: look at the JWT `exp`, else valid until invalidated.
    Unspecified,
    /// Relative to the moment the token request was sent.
    ExpiresIn(Duration),
    /// An absolute wall-clock time.
    ExpiresAt(SystemTime),
}

impl Token {
    /// A token with the given value. Its lifetime comes from the JWT `exp` claim if it has
    /// one, else it is valid until invalidated; set it with
    /// [`with_expires_in`](Self::with_expires_in) when the token endpoint says.
    pub fn new(value: impl Into<String>) -> Self {
        Token {
            secret: Zeroizing::new(value.into()),
            lifetime: Lifetime::Unspecified,
        }
    }

    /// The token expires this long after its request was **sent** (OAuth 2.0 `expires_in`).
    ///
    /// The cache anchors the lifetime at the moment it called
    /// [`fetch`](crate::TokenSource::fetch), not when the answer arrived, so a slow token
    /// endpoint never makes a token look younger than it is.
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.lifetime = Lifetime::ExpiresIn(expires_in);
        self
    }

    /// The token expires at this wall-clock time.
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.lifetime = Lifetime::ExpiresAt(expires_at);
        self
    }

    /// Require the token to be a JWT with an `exp` claim and take its lifetime from it.
    ///
    /// Use this in sources whose endpoint gives no `expires_in` (the lifetime then *must* come
    /// from the token): a token that is not a JWT, or has no readable `exp`, is an
    /// [`InvalidResponse`](crate::ErrorKind::InvalidResponse) error instead of a token that
    /// silently never expires.
    pub fn with_jwt_expiry(self) -> Result<Self, Error> {
        match self.jwt_expiry() {
            Some(exp) => Ok(self.with_expires_at(exp)),
            None => Err(Error::invalid_response(
                "the access token is not a JWT with a readable `exp` claim, so its lifetime is unknown",
            )),
        }
    }

    /// The secret value. Every use of it can be found by searching for `.secret()`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The `exp` claim of the token, if it is a JWT that has one.
    ///
    /// The signature is not verified. Never panics, whatever the input.
    pub fn jwt_expiry(&self) -> Option<SystemTime> {
        jwt_claims(&self.secret).and_then(|c| c.exp)
    }

    /// When the token expires, on the tokio clock, for a token whose request was sent at
    /// `sent_at` and whose answer arrived at `now`. `None`: valid until invalidated. A
    /// wall-clock expiry already in the past is `now`: expired.
    pub(crate) fn expires_at(&self, sent_at: Instant, now: Instant) -> Option<Instant> {
        let from_wall_clock = |at: SystemTime| match at.duration_since(SystemTime::now()) {
            Ok(left) => now.checked_add(left),
            Err(_) => Some(now),
        };
        match self.lifetime {
            Lifetime::ExpiresIn(d) => sent_at.checked_add(d),
            Lifetime::ExpiresAt(at) => from_wall_clock(at),
            Lifetime::Unspecified => self.jwt_expiry().and_then(from_wall_clock),
        }
    }

    /// Build the `Authorization` header value, checking the token is an RFC 6750 `b64token`.
    pub(crate) fn header_value(&self) -> Result<HeaderValue, Error> {
        let secret: &str = &self.secret;
        if !is_b64token(secret) {
            return Err(Error::invalid_response(if secret.is_empty() {
                "the access token is empty"
            } else {
                "the access token contains characters that are not allowed in a bearer token (RFC 6750 b64token)"
            }));
        }
        let mut value = Zeroizing::new(Vec::with_capacity(7 + secret.len()));
        value.extend_from_slice(b"Bearer ");
        value.extend_from_slice(secret.as_bytes());
        // The header is a copy of the secret: it is zeroized too, once the last clone of it
        // (in the cache, in services, in requests) is dropped.
        let mut header = HeaderValue::from_maybe_shared(Bytes::from_owner(value))
            .map_err(|_| Error::invalid_response("the access token is not a valid header value"))?;
        header.set_sensitive(true);
        Ok(header)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"[redacted]")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The time claims of a JWT, read without verifying it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JwtTimes {
    /// `exp`: when the token expires.
    pub exp: Option<SystemTime>,
    /// `iat`: when the token was issued.
    pub iat: Option<SystemTime>,
}

/// Read `exp` and `iat` from a JWT **without verifying its signature**.
///
/// Returns `None` for anything that is not a three-part JWT with a JSON object payload. Claims
/// that are not numbers, are negative, or are out of range are treated as absent. Never panics.
///
/// ```
/// // {"exp":4102444800,"iat":1700000000}
/// let jwt = "e30.eyJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMH0.c2ln";
/// let times = tower_bearer::token::jwt_claims(jwt).unwrap();
/// assert!(times.exp.is_some() && times.iat.is_some());
/// assert!(tower_bearer::token::jwt_claims("%%%.###.!!!").is_none());
/// ```
pub fn jwt_claims(token: &str) -> Option<JwtTimes> {
    // Accept padded and unpadded base64url, as real issuers produce both.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 64 * 1024 {
        return None;
    }
    let bytes = Zeroizing::new(LENIENT.decode(payload).ok()?);
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    let time = |name: &str| {
        let secs = claims.get(name)?.as_f64()?;
        if !(0.0..=1e12).contains(&secs) {
            return None;
        }
        UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
    };
    Some(JwtTimes {
        exp: time("exp"),
        iat: time("iat"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp_and_iat_from_jwt() {
        let t = jwt_claims(&jwt(r#"{"exp":2000000000,"iat":1999996400}"#)).unwrap();
        assert_eq!(t.exp, Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        assert_eq!(t.iat, Some(UNIX_EPOCH + Duration::from_secs(1_999_996_400)));
    }

    #[test]
    fn fractional_exp_is_accepted() {
        let t = jwt_claims(&jwt(r#"{"exp":2000000000.5}"#)).unwrap();
        assert!(t.exp.is_some());
    }

    #[test]
    fn garbage_jwts_never_panic() {
        for bad in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "x.!!!.y",
            &jwt("not json"),
            &jwt("[1,2,3]"),
            &jwt(r#"{"exp":"soon"}"#),
            &jwt(r#"{"exp":-5}"#),
            &jwt(r#"{"exp":1e300}"#),
            &jwt(r#"{"exp":null}"#),
        ] {
            let claims = jwt_claims(bad);
            assert!(claims.is_none_or(|c| c.exp.is_none()), "{bad}");
        }
    }

    #[test]
    fn with_jwt_expiry_requires_exp() {
        assert!(
            Token::new(jwt(r#"{"exp":2000000000}"#))
                .with_jwt_expiry()
                .is_ok()
        );
        let err = Token::new(jwt(r#"{"sub":"me"}"#))
            .with_jwt_expiry()
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidResponse);
        assert!(Token::new("opaque").with_jwt_expiry().is_err());
    }

    #[test]
    fn header_value_is_sensitive_bearer() {
        let h = Token::new("abc.DEF-_~+/==").header_value().unwrap();
        assert_eq!(h, "Bearer abc.DEF-_~+/==");
        assert!(h.is_sensitive());
    }

    #[test]
    fn header_value_rejects_non_b64token() {
        for bad in [
            "",
            "==",
            "secret space",
            "secret\r\nX-Injected: 1",
            "secret\"quote",
            "secrét",
            "secret=middle",
        ] {
            let err = Token::new(bad).header_value().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidResponse, "{bad:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn debug_redacts_secret() {
        let t = Token::new("super-secret-value").with_expires_in(Duration::from_secs(5));
        let s = format!("{t:?}");
        assert!(!s.contains("super-secret-value"), "{s}");
        assert!(s.contains("[redacted]"));
    }
}
