//! Reading `WWW-Authenticate` (RFC 9110 §11.6.1) to decide whether a 401 means "this token is no
//! good" (RFC 6750 §3.1).
//!
//! One parser and one decision, [`rejects_token`], used by both the tower layer and the
//! reqwest middleware. What they do with a rejection is the same too: drop exactly the token
//! that was sent if it is still the current one (so a storm of 401s costs one refresh), at most
//! once per second per cache (so a server that rejects every token cannot cause a refresh
//! loop), then replay the request once if configured to. A 401 is taken as a rejection of the token that was sent when no `Bearer`
//! challenge gives a reason, or when one says `error="invalid_token"`; any other Bearer error
//! (`insufficient_scope`, `invalid_request`, ...) and every other status pass through untouched.
//!
//! The parser is lenient and never panics: several challenges in one header line or across
//! several lines, quoted strings with escapes, `token68` credentials, odd spacing and case are all
//! understood, and garbage is skipped up to the next comma.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, StatusCode, header::WWW_AUTHENTICATE};
//! use tower_bearer::challenge::{self, rejects_token};
//!
//! let challenges = challenge::parse(
//!     r#"Basic realm="legacy", Bearer realm="api", error="invalid_token", error_description="The token \"expired\"""#,
//! );
//! assert_eq!(challenges.len(), 2);
//! let bearer = &challenges[1];
//! assert!(bearer.is_bearer());
//! assert_eq!(bearer.param("ERROR"), Some("invalid_token"));
//! assert_eq!(bearer.param("error_description"), Some(r#"The token "expired""#));
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
//! assert!(rejects_token(StatusCode::UNAUTHORIZED, &headers));
//!
//! headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="insufficient_scope""#));
//! assert!(!rejects_token(StatusCode::UNAUTHORIZED, &headers));
//! assert!(!rejects_token(StatusCode::FORBIDDEN, &HeaderMap::new()));
//! ```

use std::fmt;
use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, StatusCode};

/// One challenge from a `WWW-Authenticate` header: an auth scheme with either a `token68` or a
/// list of `name=value` parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The auth scheme as sent (`Bearer`, `Basic`, `DPoP`, ...). Compare it case-insensitively.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is `Bearer` (case-insensitive, as RFC 9110 §11.1 says).
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }

    /// Whether the scheme is `DPoP` (case-insensitive; RFC 9449 §7.1).
    pub fn is_dpop(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("dpop")
    }

    /// The `token68` form of the challenge (`Negotiate YII...`), if it has one.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The value of parameter `name` (case-insensitive), unquoted; the first if repeated.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All parameters in order, names as sent, values unquoted.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token68 can be a credential-like blob (Negotiate, ...): show only its length.
        f.debug_struct("Challenge")
            .field("scheme", &self.scheme)
            .field("token68_len", &self.token68.as_ref().map(String::len))
            .field("params", &self.params)
            .finish()
    }
}

/// Parse one `WWW-Authenticate` header value into its challenges. Never fails: anything that
/// cannot be understood is skipped.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    parse_into(value.as_bytes(), &mut out);
    out
}

/// Parse every `WWW-Authenticate` line in `headers` (a response may send several).
pub fn parse_headers(headers: &HeaderMap) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        parse_into(value.as_bytes(), &mut out);
    }
    out
}

/// Whether a response with this status and headers rejects the bearer token that was sent, so
/// that token should be dropped (and the request may be replayed once with a new one).
///
/// True only for a 401 where either some `Bearer` challenge says `error="invalid_token"`, or
/// there is no `Bearer` challenge at all (no `WWW-Authenticate`, or only other schemes), as
/// RFC 6750 §3.1 reads. A `Bearer` challenge naming another error (`insufficient_scope`,
/// `invalid_request`) or none (a bare `Bearer realm="..."`, which RFC 6750 uses for a request
/// that carried no credentials) means a new token is not what the server asks for. Any status
/// other than 401 (a 403 above all) is never a rejection of the token.
pub fn rejects_token(status: StatusCode, headers: &HeaderMap) -> bool {
    rejects_in_scheme(status, headers, Challenge::is_bearer)
}

/// [`rejects_token`] for a DPoP-bound token (RFC 9449 §7.1): the same rule, read from the
/// `DPoP` challenges. `DPoP error="use_dpop_nonce"` (a nonce is wanted, the token is fine) and
/// `DPoP error="invalid_dpop_proof"` (the proof, not the token) are not rejections.
///
/// ```
/// use http::{HeaderMap, HeaderValue, StatusCode, header::WWW_AUTHENTICATE};
/// use tower_bearer::challenge::rejects_dpop_token;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP algs="ES256", error="invalid_token""#));
/// assert!(rejects_dpop_token(StatusCode::UNAUTHORIZED, &headers));
/// headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#));
/// assert!(!rejects_dpop_token(StatusCode::UNAUTHORIZED, &headers));
/// ```
pub fn rejects_dpop_token(status: StatusCode, headers: &HeaderMap) -> bool {
    rejects_in_scheme(status, headers, Challenge::is_dpop)
}

/// A 401 rejects the token unless a challenge of the token's scheme gives another reason.
fn rejects_in_scheme(
    status: StatusCode,
    headers: &HeaderMap,
    is_scheme: fn(&Challenge) -> bool,
) -> bool {
    if status != StatusCode::UNAUTHORIZED {
        return false;
    }
    if !headers.contains_key(WWW_AUTHENTICATE) {
        return true;
    }
    let mut same_scheme = false;
    for challenge in parse_headers(headers).iter().filter(|c| is_scheme(c)) {
        if challenge
            .param("error")
            .is_some_and(|error| error.eq_ignore_ascii_case("invalid_token"))
        {
            return true;
        }
        same_scheme = true;
    }
    !same_scheme
}

/// A rule of your own deciding that a response rejects the token, beside [`rejects_token`]:
/// for servers that do not speak RFC 6750 (a 403 whose headers say the token expired, a 401
/// with a vendor challenge).
///
/// A response rejects the token when [`rejects_token`] says so **or** the rule does; what
/// follows is the same either way: the token that was sent is dropped if it is still the
/// current one (so a storm of such responses costs one refresh), at most once per second per
/// cache, and the request is replayed once where the layer or middleware replays. Set it with
/// [`BearerAuthLayer::rejects_token_when`](crate::BearerAuthLayer::rejects_token_when) or
/// `BearerAuthMiddleware::rejects_token_when` (and their per-destination counterparts).
///
/// The rule sees the status and headers only, not the body (which the caller is still to read).
///
/// ```
/// use http::{HeaderMap, HeaderValue, StatusCode};
/// use tower_bearer::challenge::RejectionRule;
///
/// // This API answers 403 with `X-Error: token_expired` when the token has expired.
/// let rule = RejectionRule::new(|status, headers| {
///     status == StatusCode::FORBIDDEN
///         && headers.get("x-error").is_some_and(|v| v == "token_expired")
/// });
/// let mut headers = HeaderMap::new();
/// headers.insert("x-error", HeaderValue::from_static("token_expired"));
/// assert!(rule.rejects(StatusCode::FORBIDDEN, &headers));
/// assert!(!rule.rejects(StatusCode::FORBIDDEN, &HeaderMap::new()));
/// // The default still applies beside the rule.
/// assert!(rule.rejects(StatusCode::UNAUTHORIZED, &HeaderMap::new()));
/// ```
#[derive(Clone)]
pub struct RejectionRule(Arc<RuleFn>);

/// Boxed inside the `Arc` so a rule is one word in each response future.
type RuleFn = Box<dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync>;

impl RejectionRule {
    /// A rule that says a response with this status and headers rejects the token.
    pub fn new(rule: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static) -> Self {
        RejectionRule(Arc::new(Box::new(rule)))
    }

    /// Whether a response with this status and headers rejects the token: by
    /// [`rejects_token`], or by this rule.
    pub fn rejects(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        rejects_token(status, headers) || (self.0)(status, headers)
    }

    /// The rule alone, without the default: for the DPoP scheme, whose default is
    /// [`rejects_dpop_token`].
    pub(crate) fn matches(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        (self.0)(status, headers)
    }
}

impl fmt::Debug for RejectionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RejectionRule")
    }
}

/// A response extension saying that the response rejects the token, set by a layer below the
/// bearer layer that judges what the bearer layer does not read, such as
/// [`BodyRule`](crate::body_rule::BodyRule) reading the body. The bearer layer treats
/// a response carrying it as it treats a 401 that rejects the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedToken;

// ---- the parser --------------------------------------------------------------------------

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// At the end of a list element: only whitespace before a comma or the end.
    fn at_element_end(&mut self) -> bool {
        self.skip_ws();
        matches!(self.peek(), None | Some(b','))
    }

    /// Skip whatever is left of the current list element (garbage), honouring quotes so a
    /// comma inside a quoted string does not end it.
    fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b',' => return,
                b'"' => {
                    let _ = self.quoted_string();
                }
                _ => self.i += 1,
            }
        }
    }

    /// A quoted-string starting at the current `"`; unescaped. An unterminated one runs to the
    /// end of the input.
    fn quoted_string(&mut self) -> String {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        text(&out)
    }

    /// `BWS "=" BWS ( token / quoted-string )` after a parameter name. Restores the position
    /// and returns `None` when what follows is not a parameter value.
    fn param_value(&mut self) -> Option<String> {
        let start = self.i;
        self.skip_ws();
        if self.peek() != Some(b'=') {
            self.i = start;
            return None;
        }
        self.i += 1;
        self.skip_ws();
        let value = match self.peek() {
            Some(b'"') => self.quoted_string(),
            _ => {
                let token = self.take_while(is_tchar);
                // `name=` followed by nothing, or `abc==`, is token68 padding, not a parameter.
                if token.is_empty() {
                    self.i = start;
                    return None;
                }
                text(token)
            }
        };
        if self.at_element_end() {
            Some(value)
        } else {
            self.i = start;
            None
        }
    }
}

fn parse_into(s: &[u8], out: &mut Vec<Challenge>) {
    let mut c = Cursor { s, i: 0 };
    // Index in `out` of the challenge that auth-params after a comma belong to.
    let mut current: Option<usize> = None;
    loop {
        // Empty list elements (`, ,`) are allowed.
        while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
            c.i += 1;
        }
        if c.at_end() {
            break;
        }
        let name = c.take_while(is_tchar);
        if name.is_empty() {
            c.skip_element();
            continue;
        }
        // `name = value` after a comma: another parameter of the current challenge.
        if let Some(idx) = current {
            let save = c.i;
            if let Some(value) = c.param_value() {
                if out[idx].token68.is_none() {
                    out[idx].params.push((text(name), value));
                }
                continue;
            }
            c.i = save;
        }
        // Otherwise `name` is a new auth-scheme.
        let mut challenge = Challenge {
            scheme: text(name),
            token68: None,
            params: Vec::new(),
        };
        let spaces = c.skip_ws();
        if !matches!(c.peek(), None | Some(b',')) {
            if spaces == 0 {
                // `Bearer"x"` or `Bearer=...`: not a challenge we understand.
                c.skip_element();
                current = None;
                continue;
            }
            let start = c.i;
            let first = c.take_while(is_tchar);
            let param = if first.is_empty() {
                None
            } else {
                c.param_value().map(|value| (text(first), value))
            };
            match param {
                Some(param) => challenge.params.push(param),
                None => {
                    c.i = start;
                    let body = c.take_while(is_token68_char);
                    let pad = c.take_while(|b| b == b'=');
                    if !body.is_empty() && c.at_element_end() {
                        let mut token68 = body.to_vec();
                        token68.extend_from_slice(pad);
                        challenge.token68 = Some(text(&token68));
                    } else {
                        c.skip_element();
                    }
                }
            }
        }
        out.push(challenge);
        current = Some(out.len() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn one(value: &str) -> Challenge {
        let mut all = parse(value);
        assert_eq!(all.len(), 1, "{value:?} -> {all:?}");
        all.pop().unwrap()
    }

    fn headers(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_static(line));
        }
        h
    }

    #[test]
    fn bare_scheme() {
        let c = one("Bearer");
        assert!(c.is_bearer());
        assert_eq!(c.params().count(), 0);
        assert_eq!(c.token68(), None);
    }

    #[test]
    fn rfc6750_example_with_quoted_params() {
        let c = one(
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        );
        assert_eq!(c.param("realm"), Some("example"));
        assert_eq!(c.param("error"), Some("invalid_token"));
        assert_eq!(
            c.param("error_description"),
            Some("The access token expired")
        );
    }

    #[test]
    fn scheme_and_param_names_are_case_insensitive() {
        let c = one("bEaReR ERROR=invalid_token");
        assert!(c.is_bearer());
        assert_eq!(c.scheme(), "bEaReR");
        assert_eq!(c.param("error"), Some("invalid_token"));
    }

    #[test]
    fn several_challenges_in_one_line() {
        let all = parse(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].scheme(), "Newauth");
        assert_eq!(all[0].param("type"), Some("1"));
        assert_eq!(all[0].param("title"), Some(r#"Login to "apps""#));
        assert_eq!(all[1].scheme(), "Basic");
        assert_eq!(all[1].param("realm"), Some("simple"));
    }

    #[test]
    fn commas_inside_quoted_strings_do_not_split() {
        let c = one(r#"Bearer error_description="a, b, c=d", error="invalid_token""#);
        assert_eq!(c.param("error_description"), Some("a, b, c=d"));
        assert_eq!(c.param("error"), Some("invalid_token"));
    }

    #[test]
    fn odd_spacing_and_empty_elements() {
        let all = parse(
            " ,  Basic   realm = \"x\" ,, \t Bearer\terror =\t\"invalid_token\"  ,  scope=\"a b\" , ",
        );
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].param("realm"), Some("x"));
        assert_eq!(all[1].param("error"), Some("invalid_token"));
        assert_eq!(all[1].param("scope"), Some("a b"));
    }

    #[test]
    fn token68_with_padding() {
        let all = parse("Negotiate YIIBhwYGKwYBBQUCoIIBezCC==, Bearer error=invalid_token");
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].token68(), Some("YIIBhwYGKwYBBQUCoIIBezCC=="));
        assert_eq!(all[1].param("error"), Some("invalid_token"));
        assert_eq!(one("Basic abc=").token68(), Some("abc="));
        assert_eq!(one("Basic a/b+c~").token68(), Some("a/b+c~"));
    }

    #[test]
    fn debug_hides_token68() {
        let c = one("Negotiate c2VjcmV0LWJsb2I=");
        let debug = format!("{c:?}");
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: &[&[u8]] = &[
            b"",
            b",,,,",
            b"=",
            b"===",
            b"\"",
            b"\"unterminated",
            b"Bearer \"",
            b"Bearer error=\"unterminated\\",
            b"Bearer error=",
            b"Bearer error= ,",
            b"Bearer =x",
            b"Bearer\"x\"",
            b"Bearer=x",
            b"Bearer a b c d",
            b"\\\\\\",
            b"Bearer realm=\"\xff\xfe\"",
            b"\xff\xfe\xfd",
            b"Bearer, , error=invalid_token",
            b"Basic abc==def, Bearer",
        ];
        for input in inputs {
            let mut out = Vec::new();
            parse_into(input, &mut out);
        }
        // A cheap exhaustive sweep over short strings of the interesting bytes.
        let alphabet = b"Ba =\",\\\t/";
        let mut buf = Vec::new();
        for n in 0..alphabet.len().pow(4) {
            buf.clear();
            let mut k = n;
            for _ in 0..4 {
                buf.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            let mut out = Vec::new();
            parse_into(&buf, &mut out);
        }
    }

    #[test]
    fn garbage_is_skipped_up_to_the_next_challenge() {
        let all = parse(r#"@@@ junk "x,y", Bearer error="invalid_token""#);
        let bearer: Vec<_> = all.iter().filter(|c| c.is_bearer()).collect();
        assert_eq!(bearer.len(), 1, "{all:?}");
        assert_eq!(bearer[0].param("error"), Some("invalid_token"));
    }

    #[test]
    fn params_across_header_lines_do_not_leak_between_lines() {
        let h = headers(&["Bearer realm=\"a\"", "error=\"insufficient_scope\""]);
        let all = parse_headers(&h);
        // The second line has no scheme: `error` is read as a scheme-less element, not as a
        // parameter of the first line's challenge.
        assert_eq!(all[0].param("error"), None, "{all:?}");
    }

    #[test]
    fn rejection_when_no_challenge() {
        assert!(rejects_token(StatusCode::UNAUTHORIZED, &HeaderMap::new()));
    }

    #[test]
    fn rejection_when_invalid_token() {
        let h = headers(&[r#"Bearer realm="api", error="invalid_token""#]);
        assert!(rejects_token(StatusCode::UNAUTHORIZED, &h));
    }

    #[test]
    fn rejection_when_invalid_token_on_a_second_header_line() {
        let h = headers(&[
            "Basic realm=\"x\"",
            "DPoP algs=\"ES256\", Bearer error=invalid_token",
        ]);
        assert!(rejects_token(StatusCode::UNAUTHORIZED, &h));
    }

    #[test]
    fn rejection_when_there_is_no_bearer_challenge() {
        assert!(rejects_token(
            StatusCode::UNAUTHORIZED,
            &headers(&["Basic realm=\"api\""])
        ));
    }

    #[test]
    fn no_rejection_for_a_bearer_challenge_without_invalid_token() {
        assert!(!rejects_token(
            StatusCode::UNAUTHORIZED,
            &headers(&["Bearer realm=\"api\""])
        ));
        // ... unless another Bearer challenge says invalid_token.
        assert!(rejects_token(
            StatusCode::UNAUTHORIZED,
            &headers(&["Bearer realm=\"api\"", "Bearer error=\"invalid_token\""])
        ));
    }

    #[test]
    fn no_rejection_for_other_bearer_errors() {
        for error in ["insufficient_scope", "invalid_request", "something_new"] {
            let value = format!("Bearer error=\"{error}\"");
            let mut h = HeaderMap::new();
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_str(&value).unwrap());
            assert!(!rejects_token(StatusCode::UNAUTHORIZED, &h), "{error}");
        }
    }

    #[test]
    fn no_rejection_for_other_statuses() {
        let h = headers(&[r#"Bearer error="invalid_token""#]);
        for status in [
            StatusCode::FORBIDDEN,
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            assert!(!rejects_token(status, &h), "{status}");
            assert!(!rejects_token(status, &HeaderMap::new()), "{status}");
        }
    }
}
