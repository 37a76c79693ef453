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
///
/// [`Token`]: an access token and how long it lives.
///
/// The secret is redacted in `Debug` and zeroized on drop. Its lifetime is, in order of
/// preference: what the source said ([`with_expires_in`](Token::with_expires_in) or
/// [`with_expires_at`](Token::with_expires_at)), else the `exp` claim when the token is a JWT
/// (read without verifying the signature: the token is not ours to verify), else none, meaning
/// "valid until invalidated".
///
/// # A JWT's lifetime and the local clock
///
/// `exp` is a wall-clock time on the issuer's clock. Judged against a local clock that runs
/// ahead, every token would look expired (or nearly); behind, tokens would look longer-lived
/// than they are. When the JWT also has `iat`, the issuer's own word on the lifetime,
/// `exp − iat`, bounds it:
///
/// - the token expires at `exp` on the local clock, but never later than `exp − iat` after the
///   fetch started (a clock running behind does not stretch the token);
/// - if the local clock says the token had already expired when it arrived, which no issuer
///   does, the local clock is taken to run ahead, and the token lives `exp − iat` from the
///   fetch start.
///
/// A clock ahead by less than the lifetime still shortens it by that much: it cannot be told
/// apart from a token issued earlier (a token file, a cache in front of the issuer), whose
/// remaining life *is* shorter, and refreshing early is the safe side. Without `iat`, `exp` is
/// judged on the local clock alone.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::Token;
///
/// let token = Token::new("opaque-token").with_expires_in(Duration::from_secs(3600));
/// assert_eq!(token.secret(), "opaque-token");
/// assert_eq!(format!("{token:?}"), "Token { secret: \"[redacted]\", lifetime: ExpiresIn(3600s) }");
///
/// // A JWT without signature verification: `exp` gives the lifetime.
/// let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"; // {"exp":4102444800}
/// let token = Token::new(jwt);
/// assert!(token.jwt_expiry().is_some());
/// // Garbage never panics; it is simply not a JWT.
/// assert!(Token::new("not.a.jwt").jwt_expiry().is_none());
/// ```
#[derive(Clone)]
pub struct Token {
    secret: Zeroizing<String>,
    lifetime: Lifetime,
    /// What the token is bound to: nothing (a bearer token) or a DPoP key (see `pipeline`).
    #[cfg(feature = "dpop")]
    dpop: Option<DpopBinding>,
}

/// A DPoP-bound token's key and `ath` (the base64url SHA-256 of the token, RFC 9449 §4.2),
/// computed once per token.
#[cfg(feature = "dpop")]
#[derive(Clone)]
pub(crate) struct DpopBinding {
    pub(crate) dpop: crate::dpop::Dpop,
    pub(crate) ath: std::sync::Arc<str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifetime {
    /// Nothing said: look at the JWT `exp`, else valid until invalidated.
    Unspecified,
    /// Relative to the moment the token request was sent.
    ExpiresIn(Duration),
    /// An absolute wall-clock time.
    ExpiresAt(SystemTime),
    /// The claims of the JWT itself (`exp` present), read by `with_jwt_expiry`.
    Jwt(JwtTimes),
}

impl Token {
    /// A token with the given value. Its lifetime comes from the JWT `exp` claim if it has
    /// one, else it is valid until invalidated; set it with
    /// [`with_expires_in`](Self::with_expires_in) when the token endpoint says.
    pub fn new(value: impl Into<String>) -> Self {
        Token {
            secret: Zeroizing::new(value.into()),
            lifetime: Lifetime::Unspecified,
            #[cfg(feature = "dpop")]
            dpop: None,
        }
    }

    /// Bind the token to `dpop`'s key (RFC 9449): every request then carries
    /// `Authorization: DPoP <token>` and a fresh proof signed with that key, whichever stack
    /// sends it. The built-in sources configured with `.dpop(..)` bind the tokens they fetch;
    /// a source of your own that asks for DPoP-bound tokens calls this. A wrapper source that
    /// hands on the inner source's tokens keeps the binding.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn with_dpop(mut self, dpop: crate::dpop::Dpop) -> Self {
        let ath = crate::dpop::ath(&self.secret);
        self.dpop = Some(DpopBinding { dpop, ath });
        self
    }

    /// The DPoP key the token is bound to, if it is DPoP-bound ([`with_dpop`](Self::with_dpop)).
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn dpop(&self) -> Option<&crate::dpop::Dpop> {
        self.dpop.as_ref().map(|binding| &binding.dpop)
    }

    #[cfg(feature = "dpop")]
    pub(crate) fn dpop_binding(&self) -> Option<&DpopBinding> {
        self.dpop.as_ref()
    }

    /// The `Authorization` scheme the token is sent with: `Bearer`, or `DPoP` when bound.
    fn scheme(&self) -> &'static [u8] {
        #[cfg(feature = "dpop")]
        if self.dpop.is_some() {
            return b"DPoP ";
        }
        b"Bearer "
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
    ///
    /// The lifetime follows the [clock rules](Token#a-jwts-lifetime-and-the-local-clock) of
    /// the type's docs: `exp`, bounded by `exp − iat` when the token has `iat`.
    pub fn with_jwt_expiry(mut self) -> Result<Self, Error> {
        match jwt_claims(&self.secret).filter(|t| t.exp.is_some()) {
            Some(times) => {
                self.lifetime = Lifetime::Jwt(times);
                Ok(self)
            }
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
    /// wall-clock expiry already in the past is `now`: expired (but see the JWT clock rules
    /// in the module docs).
    pub(crate) fn expires_at(&self, sent_at: Instant, now: Instant) -> Option<Instant> {
        self.expires_at_wall(sent_at, now, SystemTime::now())
    }

    /// [`expires_at`](Self::expires_at) with the local wall clock reading `wall_now`.
    pub(crate) fn expires_at_wall(
        &self,
        sent_at: Instant,
        now: Instant,
        wall_now: SystemTime,
    ) -> Option<Instant> {
        match self.lifetime {
            Lifetime::ExpiresIn(d) => sent_at.checked_add(d),
            Lifetime::ExpiresAt(at) => from_wall_clock(at, now, wall_now),
            Lifetime::Jwt(times) => jwt_deadline(times, sent_at, now, wall_now),
            Lifetime::Unspecified => {
                jwt_claims(&self.secret).and_then(|t| jwt_deadline(t, sent_at, now, wall_now))
            }
        }
    }

    /// Build the `Authorization` header value (`Bearer <token>`, or `DPoP <token>` when the
    /// token is DPoP-bound), checking the token is an RFC 6750 `b64token`.
    pub(crate) fn header_value(&self) -> Result<HeaderValue, Error> {
        let secret: &str = &self.secret;
        if !is_b64token(secret) {
            return Err(Error::invalid_response(if secret.is_empty() {
                "the access token is empty"
            } else {
                "the access token contains characters that are not allowed in a bearer token (RFC 6750 b64token)"
            }));
        }
        let scheme = self.scheme();
        let mut value = Zeroizing::new(Vec::with_capacity(scheme.len() + secret.len()));
        value.extend_from_slice(scheme);
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
        let mut f = f.debug_struct("Token");
        f.field("secret", &"[redacted]")
            .field("lifetime", &self.lifetime);
        #[cfg(feature = "dpop")]
        if let Some(binding) = &self.dpop {
            f.field("dpop", &binding.dpop);
        }
        f.finish()
    }
}

/// A wall-clock time as a deadline on the tokio clock, read at `now` / `wall_now`; a time in
/// the past is `now`.
fn from_wall_clock(at: SystemTime, now: Instant, wall_now: SystemTime) -> Option<Instant> {
    match at.duration_since(wall_now) {
        Ok(left) => now.checked_add(left),
        Err(_) => Some(now),
    }
}

/// A JWT's deadline by the clock rules of the module docs.
fn jwt_deadline(
    times: JwtTimes,
    sent_at: Instant,
    now: Instant,
    wall_now: SystemTime,
) -> Option<Instant> {
    let exp = times.exp?;
    // What the issuer granted, if `iat` says (and is before `exp`).
    let granted = times
        .iat
        .and_then(|iat| exp.duration_since(iat).ok())
        .filter(|granted| !granted.is_zero());
    let Some(granted) = granted else {
        return from_wall_clock(exp, now, wall_now);
    };
    let by_issuer = sent_at.checked_add(granted);
    match exp.duration_since(wall_now) {
        // The local clock says it has time left: no later than the issuer granted.
        Ok(left) => match (now.checked_add(left), by_issuer) {
            (Some(local), Some(by_issuer)) => Some(local.min(by_issuer)),
            (local, by_issuer) => local.or(by_issuer),
        },
        // Expired on arrival by the local clock: the local clock is ahead.
        Err(_) => by_issuer,
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// Every byte is looked at, without an early exit, so the loop compiles to vector code: a
/// kilobyte token is checked in a few hundred instructions, not several thousand (it is checked
/// once per token fetched, and again per thread that sends it).
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=').as_bytes();
    !body.is_empty()
        && body.iter().fold(true, |all, &b| {
            all & (b.is_ascii_uppercase()
                | b.is_ascii_lowercase()
                | b.is_ascii_digit()
                | (b == b'-')
                | (b == b'.')
                | (b == b'_')
                | (b == b'~')
                | (b == b'+')
                | (b == b'/'))
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
/// let times = tower_bearer::jwt_claims(jwt).unwrap();
/// assert!(times.exp.is_some() && times.iat.is_some());
/// assert!(tower_bearer::jwt_claims("%%%.###.!!!").is_none());
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

    /// A JWT with `exp` and `iat` (if any) at these offsets, in seconds, from `wall_now`.
    fn timed_jwt(wall_now: SystemTime, exp: i64, iat: Option<i64>) -> Token {
        let at = |offset: i64| {
            let base = wall_now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
            base + offset
        };
        let payload = match iat {
            Some(iat) => format!(r#"{{"exp":{},"iat":{}}}"#, at(exp), at(iat)),
            None => format!(r#"{{"exp":{}}}"#, at(exp)),
        };
        Token::new(jwt(&payload))
    }

    /// The lifetime of `token` from the fetch start, with the answer 1 s after it.
    fn lifetime(token: &Token, wall_now: SystemTime) -> Option<Duration> {
        let sent_at = Instant::now();
        let now = sent_at + Duration::from_secs(1);
        token
            .expires_at_wall(sent_at, now, wall_now)
            .map(|at| at.duration_since(sent_at))
    }

    #[test]
    fn jwt_lifetime_follows_the_clock_rules() {
        let wall_now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let secs = Duration::from_secs;
        // (exp, iat, expected lifetime from the fetch start)
        let cases = [
            // Local clock an hour ahead: `exp` already past, the issuer granted an hour.
            (-100, Some(-3_700), secs(3_600)),
            // Clock ahead by more than a day: the same.
            (-90_000, Some(-93_600), secs(3_600)),
            // Without `iat`, `exp` on the local clock: expired on arrival (the deadline is
            // the arrival).
            (-100, None, secs(1)),
            // Local clock behind by an hour: no longer than the issuer granted.
            (7_200, Some(3_600), secs(3_600)),
            // A token issued 50 minutes ago (a token file, a cache in front of the issuer),
            // clocks agreeing: 10 minutes left, from the arrival.
            (600, Some(-3_000), secs(601)),
            // Fresh, clocks agreeing.
            (3_600, Some(0), secs(3_600)),
            (3_600, None, secs(3_601)),
            // `iat` after `exp` or equal to it says nothing: `exp` on the local clock.
            (600, Some(700), secs(601)),
            (600, Some(600), secs(601)),
        ];
        for (exp, iat, expected) in cases {
            let token = timed_jwt(wall_now, exp, iat);
            assert_eq!(lifetime(&token, wall_now), Some(expected), "{exp} {iat:?}");
            // `with_jwt_expiry` reads the claims by the same rules.
            let required = token.with_jwt_expiry().unwrap();
            assert_eq!(
                lifetime(&required, wall_now),
                Some(expected),
                "{exp} {iat:?}"
            );
        }
        // Explicit lifetimes are not touched by the JWT rules.
        let token = timed_jwt(wall_now, -100, Some(-3_700));
        let explicit = token.clone().with_expires_in(secs(60));
        assert_eq!(lifetime(&explicit, wall_now), Some(secs(60)));
        let explicit = token.with_expires_at(wall_now - secs(100));
        assert_eq!(lifetime(&explicit, wall_now), Some(secs(1)));
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
