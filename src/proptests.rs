//! Property tests for every parser of what a server or a user sends: the token response (JSON,
//! and form bodies that are not JSON), the JWT `exp`/`iat` reader and the clock rules built on
//! it, `WWW-Authenticate`, `Retry-After`, the status classification, origin parsing and
//! matching (against `url::Url` as the reference reading), and the answer shapes of the
//! vendor presets (Kensho's `access_token` and `accessToken`, api.video's pair).
//!
//! Each property holds for any input proptest can make: no panic, round trips where there is
//! one, and agreement with an independent reading where there is one. The same functions are
//! fuzzed in `fuzz/` (see TRUST.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::__fuzz;
use crate::challenge;
use crate::error::MAX_RETRY_AFTER;
use crate::origin::is_loopback_host;
use crate::source::TokenFields;
use crate::token::jwt_claims;
use crate::{ErrorKind, Origin, Token};

// ---- generators --------------------------------------------------------------------------

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The field names the sources read, and some others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("access_token".to_string()),
        Just("accessToken".to_string()),
        Just("refresh_token".to_string()),
        Just("refreshToken".to_string()),
        Just("expires_in".to_string()),
        Just("expiresIn".to_string()),
        Just("token_type".to_string()),
        Just("error".to_string()),
        "[a-z_]{1,10}",
    ]
}

/// An RFC 6750 `b64token`: what a usable access token is.
fn b64token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/-]{1,64}={0,2}"
}

/// The reference reading of `b64token`, written from the RFC's grammar and nothing else.
fn is_b64token_reference(s: &str) -> bool {
    let bytes = s.as_bytes();
    let body_len = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && bytes[..body_len].iter().all(|&b| {
            b.is_ascii_uppercase()
                || b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b"-._~+/".contains(&b)
        })
}

/// A token endpoint's field spellings: RFC 6749, camelCase (Kensho Link), and the presets.
fn fields() -> impl Strategy<Value = TokenFields> {
    prop_oneof![
        Just(TokenFields::oauth2()),
        Just(TokenFields::camel_case()),
        "[a-zA-Z_]{1,12}".prop_map(|name| TokenFields::oauth2().access_token(name)),
    ]
}

/// The three spellings of a lifetime seen in the wild: a number, a float, a numeric string.
fn expires_in() -> impl Strategy<Value = (u32, Value)> {
    (0u32..=10_000_000, 0..3).prop_map(|(secs, form)| {
        let value = match form {
            0 => json!(secs),
            1 => json!(f64::from(secs)),
            _ => json!(secs.to_string()),
        };
        (secs, value)
    })
}

/// `bearer` in any case.
fn bearer_type() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), 6).prop_map(|upper| {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn wall(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// An unsigned JWT with this payload, in padded or unpadded base64url.
fn jwt(payload: &Value, padded: bool) -> String {
    let engine = if padded { &URL_SAFE } else { &URL_SAFE_NO_PAD };
    format!(
        "{}.{}.c2ln",
        engine.encode(br#"{"alg":"RS256"}"#),
        engine.encode(payload.to_string())
    )
}

// ---- the token response ------------------------------------------------------------------

proptest! {
    /// Bytes of any kind under any content type: an answer or a typed error, never a panic;
    /// and a token that comes out is always one that can be sent.
    #[test]
    fn token_response_never_panics_on_bytes(
        content_type in prop_oneof![
            Just(None),
            Just(Some("application/json".to_string())),
            Just(Some("application/x-www-form-urlencoded".to_string())),
            ".{0,40}".prop_map(Some),
        ],
        body in prop::collection::vec(any::<u8>(), 0..256),
        fields in fields(),
        require_expiry in any::<bool>(),
    ) {
        if let Ok(answer) = __fuzz::token_response(content_type.as_deref(), &body, &fields, require_expiry)
            && let Ok(token) = answer.token
        {
            prop_assert!(is_b64token_reference(token.secret()));
        }
    }

    /// Any JSON object: the access token that comes out is exactly the configured field's
    /// string, and a rejection is only ever for an object without one.
    #[test]
    fn token_response_reads_any_json_object(
        object in prop::collection::vec((field_name(), json_value()), 0..8),
        fields in fields(),
        require_expiry in any::<bool>(),
    ) {
        let object: Map<String, Value> = object.into_iter().collect();
        let body = serde_json::to_vec(&object).unwrap();
        let field = object.get(fields.access_token_name());
        match __fuzz::token_response(Some("application/json"), &body, &fields, require_expiry) {
            Ok(answer) => {
                if let Ok(token) = answer.token {
                    prop_assert_eq!(Some(token.secret()), field.and_then(Value::as_str));
                }
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Rejected);
                prop_assert!(!matches!(field, Some(Value::String(s)) if !s.is_empty()));
            }
        }
    }

    /// A well-formed answer in any vendor's spelling round-trips: access token, refresh token
    /// (any string, with any JSON escapes) and lifetime come back as sent, also when `/` is
    /// written `\/` and with extra fields around them. Covers the shapes of the presets:
    /// Kensho's `{"access_token"}` and `{"accessToken"}`, api.video's
    /// `{token_type, expires_in, access_token, refresh_token}`.
    #[test]
    fn token_response_round_trips(
        access in b64token(),
        refresh in proptest::option::of(".{1,40}"),
        lifetime in proptest::option::of(expires_in()),
        token_type in proptest::option::of(bearer_type()),
        camel in any::<bool>(),
        extra in prop::collection::vec(("x_[a-z]{1,6}", json_value()), 0..3),
        escape_slashes in any::<bool>(),
    ) {
        let fields = if camel { TokenFields::camel_case() } else { TokenFields::oauth2() };
        let name = |oauth2: &str, camel_case: &str| if camel { camel_case } else { oauth2 }.to_string();
        let mut object: Map<String, Value> = extra.into_iter().collect();
        object.insert(name("access_token", "accessToken"), json!(access));
        if let Some(refresh) = &refresh {
            object.insert(name("refresh_token", "refreshToken"), json!(refresh));
        }
        if let Some((_, value)) = &lifetime {
            object.insert(name("expires_in", "expiresIn"), value.clone());
        }
        if let Some(token_type) = &token_type {
            object.insert(name("token_type", "tokenType"), json!(token_type));
        }
        let mut body = serde_json::to_string(&object).unwrap();
        if escape_slashes {
            body = body.replace('/', "\\/");
        }
        let answer = __fuzz::token_response(Some("application/json; charset=utf-8"), body.as_bytes(), &fields, false).unwrap();
        prop_assert_eq!(answer.refresh_token.as_ref().map(|r| r.secret()), refresh.as_deref());
        let token = answer.token.unwrap();
        prop_assert_eq!(token.secret(), access.as_str());
        let left = __fuzz::time_left(&token, Duration::ZERO, SystemTime::now());
        prop_assert_eq!(left, lifetime.map(|(secs, _)| Duration::from_secs(u64::from(secs))));
    }

    /// Kensho's answers carry no `expires_in`: the lifetime is the JWT's `exp` (the sources
    /// require one), whichever spelling the answer uses.
    #[test]
    fn kensho_answers_take_the_lifetime_from_the_jwt(
        left in 1u64..=86_400,
        camel in any::<bool>(),
        sub in "[a-z0-9]{1,12}",
    ) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        // Unpadded, as RFC 7515 writes JWTs: a padded one is not a `b64token` (`=` inside).
        let access = jwt(&json!({"exp": now + left, "sub": sub}), false);
        let (fields, body) = if camel {
            (TokenFields::camel_case(), json!({"accessToken": access}))
        } else {
            (TokenFields::oauth2(), json!({"access_token": access}))
        };
        let answer = __fuzz::token_response(Some("application/json"), body.to_string().as_bytes(), &fields, true).unwrap();
        let token = answer.token.unwrap();
        prop_assert_eq!(__fuzz::time_left(&token, Duration::ZERO, wall(now)), Some(Duration::from_secs(left)));
        // Not a JWT: refused, rather than a token that never expires.
        let body = if camel { json!({"accessToken": "opaque"}) } else { json!({"access_token": "opaque"}) };
        let answer = __fuzz::token_response(Some("application/json"), body.to_string().as_bytes(), &fields, true).unwrap();
        prop_assert_eq!(answer.token.unwrap_err().kind(), ErrorKind::InvalidResponse);
    }

    /// An access token that is not a `b64token` is an `InvalidResponse`, never a header the
    /// cache would send; the check agrees with the RFC's grammar for any string.
    #[test]
    fn header_value_agrees_with_the_b64token_grammar(secret in prop_oneof![b64token(), ".{0,40}", "[ -~]{0,40}"]) {
        match __fuzz::header_value(&secret) {
            Ok(value) => {
                prop_assert!(is_b64token_reference(&secret));
                let expected = format!("Bearer {secret}");
                prop_assert_eq!(value.as_bytes(), expected.as_bytes());
                prop_assert!(value.is_sensitive());
            }
            Err(err) => {
                prop_assert!(!is_b64token_reference(&secret));
                prop_assert_eq!(err.kind(), ErrorKind::InvalidResponse);
                prop_assert!(!err.to_string().contains(&secret) || secret.len() < 3);
            }
        }
        let body = json!({"access_token": secret}).to_string();
        let token = __fuzz::token_response(None, body.as_bytes(), &TokenFields::oauth2(), false)
            .map(|a| a.token.is_ok());
        prop_assert_eq!(token.unwrap_or(false), is_b64token_reference(&secret));
    }

    /// A form-urlencoded answer (what some servers send without `Accept: application/json`)
    /// is refused as not JSON, with or without its content type, never misread.
    #[test]
    fn form_answers_are_not_json_tokens(access in "[A-Za-z0-9._~+/-]{16,64}", refresh in ".{1,20}", with_type in any::<bool>()) {
        let body = __fuzz::form_encode(&[("access_token", &access), ("token_type", "bearer"), ("refresh_token", &refresh)]);
        let content_type = with_type.then_some("application/x-www-form-urlencoded");
        let err = __fuzz::token_response(content_type, body.as_bytes(), &TokenFields::oauth2(), false).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::InvalidResponse);
        let shown = format!("{err} {err:?}");
        prop_assert!(!shown.contains(&access));
    }

    /// Request forms round-trip through the reference decoder, whatever the values hold.
    #[test]
    fn request_forms_round_trip(pairs in prop::collection::vec((".{0,12}", ".{0,24}"), 0..6)) {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let encoded = __fuzz::form_encode(&borrowed);
        let decoded: Vec<(String, String)> = form_urlencoded::parse(encoded.as_bytes()).into_owned().collect();
        prop_assert_eq!(decoded, pairs);
    }

    /// The RFC 6749 §5.2 error code kept in errors is the body's `error` exactly when it is
    /// well-formed, and nothing else of the body.
    #[test]
    fn oauth_error_codes_are_read_exactly(
        code in prop_oneof!["[a-z_]{1,30}", "[ -~]{0,70}", ".{0,10}"],
        description in ".{0,20}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = __fuzz::oauth_error_code(&body);
        let json = json!({"error": code, "error_description": description}).to_string();
        let well_formed = !code.is_empty()
            && code.len() <= 64
            && code.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        prop_assert_eq!(__fuzz::oauth_error_code(json.as_bytes()), well_formed.then_some(code));
    }

    /// Any status, `Retry-After` and body: a typed verdict, transient exactly for 408, 429 and
    /// 5xx, and never a byte of the body in the error (it can echo a credential).
    #[test]
    fn statuses_classify_without_echoing_the_body(
        status in 100u16..1000,
        retry_after in proptest::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        code in proptest::option::of("[a-z_]{1,20}"),
    ) {
        let marker = "echo-of-SECRET-rt-2f9c";
        let body = match &code {
            Some(code) => json!({"error": code, "error_description": marker}).to_string(),
            None => format!("<html>{marker}</html>"),
        };
        let Some(verdict) = __fuzz::status(status, retry_after.as_deref(), body.as_bytes()) else {
            return Ok(());
        };
        let status = StatusCode::from_u16(status).unwrap();
        match verdict {
            Ok(()) => prop_assert!(status.is_success()),
            Err(err) => {
                prop_assert!(!status.is_success());
                let transient = status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT;
                prop_assert_eq!(err.kind() == ErrorKind::Transient, transient);
                prop_assert_eq!(err.status(), Some(status));
                prop_assert!(err.retry_after().is_none_or(|d| d <= MAX_RETRY_AFTER));
                let shown = format!("{err} {err:?}");
                prop_assert!(!shown.contains(marker));
            }
        }
    }
}

// ---- the one-pass reading of an authority ----------------------------------------------------

proptest! {
    /// For any authority `http::Uri` accepts, the one-pass reading of a plain host and port,
    /// where it gives one, is what the general rules read: the same host and port.
    #[test]
    fn the_one_pass_authority_reading_agrees_with_the_general_rules(
        authority in prop_oneof![
            "[a-zA-Z0-9._~:-]{0,24}",
            "[a-zA-Z0-9._~:@\\[\\]%!$&'()*+,;=-]{0,24}",
        ],
    ) {
        let Ok(uri) = format!("https://{authority}/").parse::<Uri>() else { return Ok(()) };
        let Some(parsed) = uri.authority() else { return Ok(()) };
        if let Some((host, port)) = crate::origin::plain_host_port(parsed.as_str()) {
            let general = crate::origin::Place::of_authority("https", parsed).site();
            prop_assert!(general.is_some(), "{authority:?}: the general rules refuse it");
            let general = general.unwrap();
            prop_assert_eq!((general.host, general.explicit_port), (host, port));
        }
    }

    /// Plain host names and ports always take the one pass.
    #[test]
    fn plain_hosts_take_the_one_pass(host in "[a-z0-9][a-z0-9.-]{0,30}", port in proptest::option::of(any::<u16>())) {
        let authority = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
        prop_assert_eq!(crate::origin::plain_host_port(&authority), Some((host.as_str(), port)));
    }
}

/// The edges of the one-pass reading, each against the general rules: the largest port and one
/// past it, leading zeros, empty ports and hosts, a trailing dot, a percent sign.
#[test]
fn the_one_pass_authority_reading_at_its_edges() {
    for (authority, one_pass) in [
        ("a:65535", Some(("a", Some(65535)))),
        ("a:65536", None),
        ("a:00080", Some(("a", Some(80)))),
        ("a:000080", None),
        ("a:", None),
        ("a.:1", Some(("a.", Some(1)))),
        ("%41:1", None),
        ("A.Example.COM", Some(("A.Example.COM", None))),
        ("10.0.0.1:8443", Some(("10.0.0.1", Some(8443)))),
    ] {
        assert_eq!(
            crate::origin::plain_host_port(authority),
            one_pass,
            "{authority}"
        );
        let Ok(uri) = format!("https://{authority}/").parse::<Uri>() else {
            // Not a URI at all (`http` refuses it first): nothing for either reading.
            assert!(one_pass.is_none(), "{authority}");
            continue;
        };
        let general = crate::origin::Place::of_authority("https", uri.authority().unwrap()).site();
        if let Some((host, port)) = one_pass {
            let general = general.expect("the general rules read it too");
            assert_eq!(
                (general.host, general.explicit_port),
                (host, port),
                "{authority}"
            );
        }
    }
}

// ---- Retry-After -------------------------------------------------------------------------

proptest! {
    /// Any header bytes: a delay no longer than the cap, or none; never a panic.
    #[test]
    fn retry_after_never_panics(value in prop::collection::vec(any::<u8>(), 0..64), now in 0u64..=253_402_300_799) {
        let delay = __fuzz::retry_after(&value, wall(now));
        prop_assert!(delay.is_none_or(|d| d <= MAX_RETRY_AFTER));
    }

    /// Delta-seconds, any number of digits (with surrounding spaces): that many seconds,
    /// capped, with an overflow read as "very long" and not wrapped.
    #[test]
    fn retry_after_seconds(digits in "[0-9]{1,30}", pad in " {0,2}") {
        let value = format!("{pad}{digits}{pad}");
        let expected = digits.parse::<u64>().map_or(MAX_RETRY_AFTER, |s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        prop_assert_eq!(__fuzz::retry_after(value.as_bytes(), wall(0)), Some(expected));
    }

    /// An HTTP-date, written by the reference formatter: the time until it, capped, or none
    /// when it has passed.
    #[test]
    fn retry_after_dates(now in 0u64..=253_402_000_000, offset in -100_000i64..=100_000) {
        let at = now.saturating_add_signed(offset);
        let value = httpdate::fmt_http_date(wall(at));
        let expected = Duration::from_secs(at.saturating_sub(now)).min(MAX_RETRY_AFTER);
        prop_assert_eq!(__fuzz::retry_after(value.as_bytes(), wall(now)), Some(expected));
    }
}

// ---- JWT exp / iat -----------------------------------------------------------------------

/// A claim value: in range as an integer or a float, or something that is not a time.
fn claim() -> impl Strategy<Value = (Option<f64>, Value)> {
    prop_oneof![
        (0u64..=1_000_000_000_000).prop_map(|s| (Some(s as f64), json!(s))),
        (0.0f64..1e12).prop_map(|s| (Some(s), json!(s))),
        (-1e15f64..-1e-3).prop_map(|s| (None, json!(s))),
        (1.000_001e12f64..1e300).prop_map(|s| (None, json!(s))),
        ".{0,8}".prop_map(|s| (None, json!(s))),
        Just((None, Value::Null)),
        Just((None, json!([1]))),
    ]
}

proptest! {
    /// Any string, and any three dot-separated base64url-ish parts: never a panic.
    #[test]
    fn jwt_reader_never_panics(
        s in ".{0,80}",
        parts in prop::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5),
    ) {
        let _ = jwt_claims(&s);
        let _ = Token::new(s.clone()).jwt_expiry();
        let joined = parts.join(".");
        let _ = jwt_claims(&joined);
        let _ = __fuzz::time_left(&Token::new(joined), Duration::from_secs(1), SystemTime::now());
    }

    /// `exp` and `iat` as integers or floats, padded or not, among other claims: read as the
    /// reference reading (seconds since the epoch in [0, 1e12]) says; anything else absent.
    #[test]
    fn jwt_claims_agree_with_the_reference(
        exp in proptest::option::of(claim()),
        iat in proptest::option::of(claim()),
        extra in prop::collection::vec(("[a-z]{1,5}", json_value()), 0..3),
        padded in any::<bool>(),
    ) {
        let mut payload: Map<String, Value> = extra.into_iter().filter(|(k, _)| k != "exp" && k != "iat").collect();
        if let Some((_, v)) = &exp { payload.insert("exp".into(), v.clone()); }
        if let Some((_, v)) = &iat { payload.insert("iat".into(), v.clone()); }
        let times = jwt_claims(&jwt(&Value::Object(payload), padded)).unwrap();
        // serde_json reads a float to within an ulp or so of the text (an ulp of 1e11 s is
        // 15 µs): agreement to 1 ms.
        let close = |got: Option<SystemTime>, c: &Option<(Option<f64>, Value)>| {
            let want = c.as_ref().and_then(|(s, _)| *s).map(|s| UNIX_EPOCH + Duration::from_secs_f64(s));
            match (got, want) {
                (Some(g), Some(w)) => g.duration_since(w).or_else(|_| w.duration_since(g)).unwrap() <= Duration::from_millis(1),
                (g, w) => g == w,
            }
        };
        prop_assert!(close(times.exp, &exp), "exp {:?} from {:?}", times.exp, exp);
        prop_assert!(close(times.iat, &iat), "iat {:?} from {:?}", times.iat, iat);
    }

    /// The clock rules of `token`'s docs, for any issuer and local clock: the time left is
    /// `exp` on the local clock, never more than `exp − iat` after the request was sent, and
    /// `exp − iat` from the send when the local clock says it expired on arrival.
    #[test]
    fn jwt_lifetime_follows_the_clock_rules(
        iat in proptest::option::of(1_600_000_000u64..1_700_000_000),
        lifetime in 0u64..=100_000,
        skew in -200_000i64..=200_000,
        sent_ago in 0u64..=30,
    ) {
        let issued = iat.unwrap_or(1_650_000_000);
        let exp = issued + lifetime;
        let mut payload = json!({"exp": exp});
        if let Some(iat) = iat { payload["iat"] = json!(iat); }
        // The local clock reads the issuer's `issued + sent_ago` shifted by `skew`.
        let local_now = (issued + sent_ago).saturating_add_signed(skew);
        let left = __fuzz::time_left(&Token::new(jwt(&payload, false)), Duration::from_secs(sent_ago), wall(local_now)).unwrap();
        let by_local = exp.checked_sub(local_now).filter(|&l| l > 0);
        let granted = iat.map(|iat| exp - iat).filter(|&g| g > 0);
        let expected = match (by_local, granted) {
            (Some(local), Some(granted)) => local.min(granted.saturating_sub(sent_ago)),
            (None, Some(granted)) => granted.saturating_sub(sent_ago),
            (local, None) => local.unwrap_or(0),
        };
        prop_assert_eq!(left, Duration::from_secs(expected));
    }
}

// ---- WWW-Authenticate --------------------------------------------------------------------

/// One generated challenge: a scheme and either a token68 or parameters with their values.
#[derive(Clone, Debug)]
struct Generated {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String, bool)>,
}

fn generated_challenge() -> impl Strategy<Value = Generated> {
    let scheme = prop_oneof![
        Just("Bearer".to_string()),
        Just("bearer".to_string()),
        Just("Basic".to_string()),
        Just("DPoP".to_string()),
        "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,10}",
    ];
    let param = (
        prop_oneof![
            Just("error".to_string()),
            Just("realm".to_string()),
            Just("error_description".to_string()),
            "[a-z][a-z0-9_-]{0,8}",
        ],
        prop_oneof![
            Just("invalid_token".to_string()),
            Just("insufficient_scope".to_string()),
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
            "[ -~]{0,16}",
        ],
        any::<bool>(),
    );
    let token68 = "[A-Za-z0-9._~+/-]{1,20}={0,2}";
    (
        scheme,
        prop_oneof![
            3 => prop::collection::vec(param, 0..4).prop_map(|p| (None, p)),
            1 => token68.prop_map(|t| (Some(t), Vec::new())),
        ],
    )
        .prop_map(|(scheme, (token68, params))| Generated {
            scheme,
            token68,
            params,
        })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

/// Render as a server might: quoted when needed or when `quote` says, with escapes, odd
/// spacing and empty list elements.
fn render(challenges: &[Generated], space: &str, empties: bool) -> String {
    let mut out = Vec::new();
    for c in challenges {
        let mut text = c.scheme.clone();
        if let Some(t) = &c.token68 {
            text.push(' ');
            text.push_str(t);
        }
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(name, value, quote)| {
                if *quote || !is_token(value) {
                    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("{name}{space}={space}\"{escaped}\"")
                } else {
                    format!("{name}={value}")
                }
            })
            .collect();
        if !params.is_empty() {
            text.push(' ');
            text.push_str(&params.join(&format!("{space},{space}")));
        }
        out.push(text);
    }
    let sep = if empties { " , , " } else { ", " };
    out.join(sep)
}

proptest! {
    /// Any string, one header line or several: challenges or nothing, never a panic; the 401
    /// decision is made for any of them.
    #[test]
    fn www_authenticate_never_panics(lines in prop::collection::vec(prop_oneof![".{0,60}", "[ -~]{0,60}", r#"[Bearer ,="\\a-z]{0,40}"#], 1..4)) {
        let mut headers = HeaderMap::new();
        for line in &lines {
            let _ = challenge::parse(line);
            if let Ok(value) = HeaderValue::from_str(line) {
                headers.append(WWW_AUTHENTICATE, value);
            }
        }
        let _ = challenge::parse_headers(&headers);
        let _ = challenge::rejects_token(StatusCode::UNAUTHORIZED, &headers);
    }

    /// Challenges rendered as servers write them parse back to what was rendered: schemes,
    /// token68s and parameters (unquoted, unescaped) in order.
    #[test]
    fn www_authenticate_round_trips(
        challenges in prop::collection::vec(generated_challenge(), 1..4),
        space in prop_oneof![Just(""), Just(" "), Just("\t ")],
        empties in any::<bool>(),
    ) {
        let rendered = render(&challenges, space, empties);
        let parsed = challenge::parse(&rendered);
        prop_assert_eq!(parsed.len(), challenges.len(), "{}", rendered);
        for (got, want) in parsed.iter().zip(&challenges) {
            prop_assert_eq!(got.scheme(), want.scheme.as_str());
            prop_assert_eq!(got.token68(), want.token68.as_deref());
            let params: Vec<(&str, &str)> = got.params().collect();
            let wanted: Vec<(&str, &str)> = want.params.iter().map(|(n, v, _)| (n.as_str(), v.as_str())).collect();
            prop_assert_eq!(params, wanted, "{}", rendered);
        }
    }

    /// The 401 decision agrees with RFC 6750 §3.1 read directly off what was generated: the
    /// token is rejected when no Bearer challenge is present, or one says `invalid_token`.
    #[test]
    fn the_401_decision_agrees_with_rfc_6750(
        challenges in prop::collection::vec(generated_challenge(), 0..4),
        status in prop_oneof![Just(401u16), Just(403), Just(400), 100u16..600],
    ) {
        let mut headers = HeaderMap::new();
        if !challenges.is_empty() {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_str(&render(&challenges, " ", false)).unwrap());
        }
        let bearer: Vec<&Generated> = challenges.iter().filter(|c| c.scheme.eq_ignore_ascii_case("bearer")).collect();
        let invalid_token = bearer.iter().any(|c| {
            c.params.iter().find(|(n, _, _)| n.eq_ignore_ascii_case("error"))
                .is_some_and(|(_, v, _)| v.eq_ignore_ascii_case("invalid_token"))
        });
        let expected = status == 401 && (bearer.is_empty() || invalid_token);
        let status = StatusCode::from_u16(status).unwrap();
        prop_assert_eq!(challenge::rejects_token(status, &headers), expected);
    }
}

// ---- origins -----------------------------------------------------------------------------

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("https"),
        Just("http"),
        Just("HTTPS"),
        Just("wss"),
        Just("ws"),
        Just("Https")
    ]
    .prop_map(str::to_string)
}

/// A host as written in a URL: a DNS name (any case, maybe a trailing dot), an IPv4 address,
/// or an IPv6 address in its canonical form.
///
/// Names end in a label that starts with a letter: one that is all digits (`https://0`,
/// `https://api.1`) is IPv4 shorthand to the URL standard (`0.0.0.0`, or no host at all) and
/// a name to `http::Uri` and this crate, which then only ever matches it to itself
/// (`origin_matching_agrees_with_url` covers those too).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", 0..3), "[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", any::<bool>())
            .prop_map(|(mut labels, last, dot)| {
                labels.push(last);
                format!("{}{}", labels.join("."), if dot { "." } else { "" })
            }),
        1 => any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        1 => any::<u128>().prop_map(|v| format!("[{}]", std::net::Ipv6Addr::from(v))),
        1 => Just("[::1]".to_string()),
        1 => Just("localhost".to_string()),
        1 => Just("127.0.0.1".to_string()),
    ]
}

fn port() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![
        Just(None),
        Just(Some(443)),
        Just(Some(80)),
        Just(Some(8443)),
        any::<u16>().prop_map(Some)
    ]
}

fn origin_text() -> impl Strategy<Value = String> {
    (scheme(), host(), port(), any::<bool>()).prop_map(|(s, h, p, slash)| {
        let port = p.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{s}://{h}{port}{}", if slash { "/" } else { "" })
    })
}

/// The reference reading of an origin: `url::Url`'s (scheme, host, port) tuple, with the
/// crate's one documented difference, a trailing dot on a name ignored.
fn url_origin(text: &str) -> Option<(String, String, u16)> {
    let url = url::Url::parse(text).ok()?;
    let host = url.host_str()?;
    let host = host.strip_suffix('.').unwrap_or(host).to_string();
    Some((url.scheme().to_string(), host, url.port_or_known_default()?))
}

/// Destination strings near the allowed origins: the same origin spelled otherwise, another
/// port or scheme, user info, confusable characters, paths and queries.
fn destination() -> impl Strategy<Value = String> {
    let noise = prop_oneof![
        Just(""),
        Just("@evil.example"),
        Just("\\@evil.example"),
        Just(".evil.example"),
        Just("%2e"),
        Just(":"),
        Just("#@evil.example"),
        Just("?x=1"),
        Just("/v1/items"),
    ];
    (
        scheme(),
        proptest::option::of("[a-z]{1,5}:[a-z]{0,5}@"),
        host(),
        port(),
        noise,
    )
        .prop_map(|(s, user, h, p, noise)| {
            let port = p.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{s}://{}{h}{port}{noise}", user.unwrap_or_default())
        })
}

proptest! {
    /// Any string: an origin or a typed `Config` error, never a panic; an origin prints as
    /// something that parses back to itself.
    #[test]
    fn origin_parse_never_panics_and_round_trips(s in prop_oneof![".{0,40}", "[a-zA-Z]{1,5}://[ -~]{0,30}", "[a-zA-Z]{1,5}://[.:/\\[\\]0-9a-z]{0,8}", "(https|wss)://[.]{1,2}(:[0-9]{1,3})?/?", origin_text()]) {
        match Origin::parse(&s) {
            Ok(origin) => {
                let again = Origin::parse(&origin.to_string()).unwrap();
                prop_assert_eq!(&again, &origin);
                prop_assert_eq!(again.to_string(), origin.to_string());
            }
            Err(err) => prop_assert_eq!(err.kind(), ErrorKind::Config),
        }
    }

    /// For every origin a user can write, the crate's reading is `url::Url`'s.
    #[test]
    fn origin_parse_agrees_with_url(s in origin_text()) {
        let origin = Origin::parse(&s).unwrap();
        let reference = url_origin(&s).unwrap();
        prop_assert_eq!((origin.scheme(), origin.host(), origin.port()), (reference.0.as_str(), reference.1.as_str(), reference.2), "{}", s);
    }

    /// Matching agrees with `url::Url`: with an allow-list, the token goes to a request only
    /// when the reference reading says its origin is an allowed one; and always when it does,
    /// for destinations the reference and `http::Uri` read alike. Remembering an approval never
    /// changes a verdict.
    #[test]
    fn origin_matching_agrees_with_url(
        allowed in prop::collection::vec(origin_text(), 1..3),
        to in prop_oneof![destination(), origin_text(), ".{0,30}"],
        insecure in any::<bool>(),
    ) {
        let allow: Vec<Origin> = allowed.iter().map(|s| Origin::parse(s).unwrap()).collect();
        let Ok(uri) = to.parse::<Uri>() else { return Ok(()) };
        let [first, second] = __fuzz::tower_attaches(&allow, insecure, &uri);
        prop_assert_eq!(first, second, "the remembered approval changed the verdict for {}", to);
        let relative = uri.scheme().is_none() && uri.authority().is_none();
        let reference = url_origin(&to);
        let allowed_by_reference = reference.as_ref().is_some_and(|r| allowed.iter().any(|a| url_origin(a).as_ref() == Some(r)));
        if first && !relative {
            prop_assert!(allowed_by_reference, "token sent to {} with allow-list {:?}", to, allowed);
        }
        // Where both read the same host, port and scheme, the verdicts are the same.
        let same_reading = reference.as_ref().is_some_and(|(s, h, p)| {
            uri.scheme_str().is_some_and(|us| us.eq_ignore_ascii_case(s))
                && uri.host().is_some_and(|uh| uh.strip_suffix('.').unwrap_or(uh).eq_ignore_ascii_case(h))
                && uri.port_u16().or(match s.as_str() { "https" | "wss" => Some(443), "http" | "ws" => Some(80), _ => None }) == Some(*p)
        });
        let secure_or_allowed = insecure || uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss"))
            || uri.host().is_some_and(is_loopback_host);
        if same_reading && allowed_by_reference && secure_or_allowed {
            prop_assert!(first, "token withheld from allowed {}", to);
        }
    }

    /// The reqwest middleware reads a `url::Url`: its verdict is the reference's, with no
    /// looser outcome than the tower layer's for the same text.
    #[cfg(feature = "reqwest-middleware")]
    #[test]
    fn reqwest_matching_agrees_with_url(
        allowed in prop::collection::vec(origin_text(), 1..3),
        to in prop_oneof![destination(), origin_text()],
    ) {
        let allow: Vec<Origin> = allowed.iter().map(|s| Origin::parse(s).unwrap()).collect();
        let Ok(url) = url::Url::parse(&to) else { return Ok(()) };
        let attaches = __fuzz::reqwest_attaches(&allow, false, &url);
        let reference = url_origin(&to);
        let allowed_by_reference = reference.as_ref().is_some_and(|r| allowed.iter().any(|a| url_origin(a).as_ref() == Some(r)));
        if attaches {
            prop_assert!(allowed_by_reference, "token sent to {} with allow-list {:?}", to, allowed);
        }
    }

    /// Without an allow-list, plain http gets the token only to loopback, and what the crate
    /// calls loopback, the reference reading of the host calls loopback too.
    #[test]
    fn loopback_agrees_with_url(h in prop_oneof![host(), "[0-9a-fx.:\\[\\]]{1,20}", ".{0,20}"]) {
        if is_loopback_host(&h) {
            let url = url::Url::parse(&format!("http://{h}/"));
            let loopback = url.as_ref().ok().and_then(|u| u.host()).is_some_and(|host| match host {
                url::Host::Domain(d) => d.strip_suffix('.').unwrap_or(d).eq_ignore_ascii_case("localhost"),
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
            });
            prop_assert!(loopback, "{} is loopback to the crate, not to url", h);
        }
        if let Ok(uri) = format!("http://{h}/").parse::<Uri>() {
            let [attaches, _] = __fuzz::tower_attaches(&[], false, &uri);
            prop_assert_eq!(attaches, uri.host().is_some_and(is_loopback_host));
        }
    }
}
