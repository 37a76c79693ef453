use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use http::{Request, Uri};

use crate::Error;
use crate::redirect::left_home;

/// A web origin: scheme, host and port (RFC 6454), the unit of the allow-list.
///
/// Parsed from `scheme://host[:port]` (a trailing `/` is accepted; a path, query, fragment or
/// user info is not). Scheme and host are compared case-insensitively, a trailing dot on the
/// host is ignored, and the default port is filled in for `http`/`ws` (80) and `https`/`wss`
/// (443), so `https://API.example.com` and `https://api.example.com:443/` are the same origin.
///
/// ```
/// use tower_bearer::Origin;
///
/// let origin: Origin = "https://API.Example.com".parse()?;
/// assert_eq!(origin, Origin::from_static("https://api.example.com:443/"));
/// assert_eq!(origin.to_string(), "https://api.example.com");
/// assert_eq!(origin.port(), 443);
/// assert!("https://api.example.com/v1".parse::<Origin>().is_err());
/// # Ok::<_, tower_bearer::Error>(())
/// ```
///
/// Where tokens may go: an optional allow-list of [`Origin`]s and the plain-http rule, shared by
/// the tower layer and the reqwest middleware.
///
/// Before attaching the token to a request, the middleware looks at its destination:
///
/// - a relative URI (no scheme, no authority, as in a request to a service that adds the base
///   URL itself) gets the token;
/// - plain `http://` gets the token only when the host is loopback by [`is_loopback_host`]
///   (`localhost`, `127.0.0.0/8`, `[::1]`), unless
///   [`allow_insecure_http(true)`](crate::BearerAuthLayer::allow_insecure_http) (for tests);
/// - when an allow-list is set, only requests to one of its origins (scheme, host and port,
///   with default ports filled in) get the token;
/// - a URI whose authority parsers read two ways (`https://api.example.com:443.other.example`,
///   which `http::Uri` reads as host `api.example.com` and no port) never gets it;
/// - a hop of a redirect chain that has left the origin of its first request (marked by
///   [`redirect::TokensStayHome`](crate::redirect), with `FollowRedirect` above the layer) never
///   gets it either.
///
/// Keys by origin ([`per_origin`](crate::BearerAuthLayer::per_origin)) read a destination by
/// the same rules.
///
/// Any other request goes out without the token, or fails with an [`Error`] of kind
/// [`Disallowed`](crate::ErrorKind::Disallowed), as [`OnDisallowedOrigin`] says. An
/// `Authorization` header that the caller set on such a request is left as it is.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, header::AUTHORIZATION};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_bearer::{BearerAuthLayer, OnDisallowedOrigin, Origin, source::static_token};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
/// let layer = BearerAuthLayer::new(static_token("abc"))
///     .allow_origin(Origin::from_static("https://api.example.com"))
///     .on_disallowed_origin(OnDisallowedOrigin::SendWithoutToken);
/// let client = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
///     Ok::<_, Infallible>(Response::new(req.headers().contains_key(AUTHORIZATION)))
/// }));
///
/// let to = |uri: &str| Request::get(uri).body(()).unwrap();
/// // `:443` is the default port of https: the same origin.
/// assert!(*client.clone().oneshot(to("https://api.example.com:443/v1/items")).await?.body());
/// assert!(!*client.clone().oneshot(to("https://cdn.example.com/file")).await?.body());
/// assert!(!*client.clone().oneshot(to("http://api.example.com/v1/items")).await?.body());
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
}

impl Origin {
    /// Parse `scheme://host[:port]`.
    pub fn parse(origin: &str) -> Result<Origin, Error> {
        let invalid = |why: &str| {
            Error::config(format!(
                "{origin:?} is not an origin (scheme://host[:port]): {why}"
            ))
        };
        let uri: Uri = origin.parse().map_err(|_| invalid("not a URI"))?;
        let site = match Place::of_uri(&uri) {
            Place::Site(site) => site,
            Place::Relative => return Err(invalid("no scheme and no host")),
            Place::Unclear(why) => return Err(invalid(why)),
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid("user info is not part of an origin"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() || origin.contains('#') {
            return Err(invalid(
                "a path, query or fragment is not part of an origin",
            ));
        }
        Origin::of_site(&site).map_err(invalid)
    }

    /// The origin of `site`, written as [`Origin`] writes every origin (lowercase, no trailing
    /// dot, IPv6 in its canonical form, the port filled in), or why it is none.
    pub(crate) fn of_site(site: &Site<'_>) -> Result<Origin, &'static str> {
        // Empty once normalized, too: `https://.` is no host at all, and `https://..` is not
        // `https://.` written fully qualified.
        let host = normalize_host(site.host);
        if host.is_empty() || host.ends_with('.') {
            return Err("empty host");
        }
        let port = site
            .port()
            .ok_or("no port, and the scheme has no default one")?;
        // An IPv6 literal in its canonical form (`[::1]`, not `[0:0::1]`), as `url::Url` and
        // so reqwest write it.
        let host = match ipv6(host) {
            Some(ip) => format!("[{ip}]"),
            None => host.to_ascii_lowercase(),
        };
        Ok(Origin {
            scheme: site.scheme.to_ascii_lowercase().into(),
            host: host.into(),
            port,
        })
    }

    /// Parse a literal origin.
    ///
    /// # Panics
    ///
    /// If `origin` is not `scheme://host[:port]`; use [`Origin::parse`] for values that are not
    /// literals in your code.
    pub fn from_static(origin: &'static str) -> Origin {
        match Origin::parse(origin) {
            Ok(origin) => origin,
            Err(err) => panic!("{err}"),
        }
    }

    /// The scheme, lowercase.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lowercase; IPv6 addresses keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, with the scheme's default filled in.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether `site` is this origin.
    pub(crate) fn matches(&self, site: &Site<'_>) -> bool {
        // Written as the origin is (lowercase, no trailing dot): the port decides.
        if site.host == &*self.host && site.scheme == &*self.scheme {
            return site.port() == Some(self.port);
        }
        let this = Site {
            scheme: &self.scheme,
            host: &self.host,
            explicit_port: Some(self.port),
        };
        this.same_origin(site)
    }
}

impl FromStr for Origin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::parse(s)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if default_port(&self.scheme) != Some(self.port) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

/// What to do with a request whose destination may not receive the token (not in the
/// allow-list, or plain `http://` to a host that is not loopback).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnDisallowedOrigin {
    /// Send the request without the token (the default): right for a client that also talks
    /// to hosts that need no token, such as a CDN or pre-signed storage URLs.
    #[default]
    SendWithoutToken,
    /// Fail the request with an [`Error`] of kind
    /// [`Disallowed`](crate::ErrorKind::Disallowed) before anything is sent.
    Fail,
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else {
        None
    }
}

fn is_secure(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss")
}

/// Whether `host` (as `http::Uri` cuts it out of an authority) is a bracketed IPv6 literal or
/// an RFC 3986 `reg-name` / IPv4 address. `http::Uri` takes `h[:]` as an authority whose host
/// is `h[`, which is neither.
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(_) => ipv6(host).is_some(),
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)),
    }
}

/// Whether what follows the host in `authority` is nothing, an empty port (`host:`, which
/// means the default one, RFC 3986 §3.2.3) or a port number.
fn port_is_valid(authority: &http::uri::Authority) -> bool {
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, host_port)| host_port);
    match host_port.strip_prefix(authority.host()) {
        Some("" | ":") => true,
        Some(rest) => rest.strip_prefix(':').is_some_and(|port| {
            port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
        }),
        None => false,
    }
}

/// The bytes of a plain host: letters, digits, `-`, `.`, `_`, `~`.
static PLAIN_HOST: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

/// An authority that is a plain host name or IPv4 address (letters, digits, `-`, `.`, `_`,
/// `~`), then possibly `:` and a port number: its host and port, in one pass over the bytes.
/// `None` for anything else (userinfo, an IPv6 literal, an empty host or port, other
/// characters), which [`Place::of_uri`] reads by the general rules: for every authority this
/// accepts, they read the same host and port (a property test says so).
#[inline]
pub(crate) fn plain_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let bytes = authority.as_bytes();
    let end = bytes
        .iter()
        .position(|&b| !PLAIN_HOST[usize::from(b)])
        .unwrap_or(bytes.len());
    if end == 0 {
        return None;
    }
    let host = &authority[..end];
    let Some(port) = bytes.get(end..).and_then(|rest| rest.strip_prefix(b":")) else {
        return (end == bytes.len()).then_some((host, None));
    };
    if port.is_empty() || port.len() > 5 {
        return None;
    }
    let mut value: u32 = 0;
    for &b in port {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    u16::try_from(value).ok().map(|port| (host, Some(port)))
}

fn normalize_host(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// The address of a bracketed IPv6 literal.
fn ipv6(host: &str) -> Option<Ipv6Addr> {
    host.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Whether two hosts as written in URIs name the same host: the same name in any case, with or
/// without one trailing dot, or the same IPv6 address however it is written.
fn same_host(a: &str, b: &str) -> bool {
    let (a, b) = (normalize_host(a), normalize_host(b));
    a.eq_ignore_ascii_case(b) || ipv6(a).is_some_and(|ip| ipv6(b) == Some(ip))
}

/// Where a request goes, as every origin rule of the crate reads it: the allow-list, the
/// plain-http rule, [`per_origin`](crate::BearerAuthLayer::per_origin) and the redirect
/// policies ([`crate::redirect`]) all start from [`Place::of_uri`] or [`Place::of_url`], so
/// that no two of them can read one destination two ways.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place<'a> {
    /// A relative URI: no scheme, no authority.
    Relative,
    /// An absolute URI with a scheme, a host and a port that means one thing.
    Site(Site<'a>),
    /// Anything else, with the reason: a scheme without a host or a host without a scheme, or
    /// a port that is not a number (`http::Uri` reads `host:443.other.example` as the host
    /// `host` with no port, which would match by the default port: what a client or proxy
    /// makes of such an authority is anyone's guess).
    Unclear(&'static str),
}

/// An absolute destination: scheme, host and port as written (user info left out).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Site<'a> {
    pub(crate) scheme: &'a str,
    /// As written: any case, IPv6 literals in brackets, a trailing dot kept.
    pub(crate) host: &'a str,
    /// The explicit port, if any.
    pub(crate) explicit_port: Option<u16>,
}

impl<'a> Place<'a> {
    /// The place of a tower request.
    pub(crate) fn of_uri(uri: &'a Uri) -> Place<'a> {
        match (uri.scheme_str(), uri.authority()) {
            (None, None) => Place::Relative,
            (Some(scheme), Some(authority)) => match plain_host_port(authority.as_str()) {
                // The common case in one pass; the general rules read it the same way.
                Some((host, explicit_port)) => Place::Site(Site {
                    scheme,
                    host,
                    explicit_port,
                }),
                None => Place::of_authority(scheme, authority),
            },
            _ => Place::Unclear("a destination needs both scheme and host"),
        }
    }

    /// The place of an absolute URI with this scheme and authority, by the general rules.
    pub(crate) fn of_authority(scheme: &'a str, authority: &'a http::uri::Authority) -> Place<'a> {
        if !is_host(normalize_host(authority.host())) {
            Place::Unclear("the host is neither a name nor an IP address")
        } else if !port_is_valid(authority) {
            Place::Unclear("the port after the host is not a number")
        } else {
            Place::Site(Site {
                scheme,
                host: authority.host(),
                explicit_port: authority.port_u16(),
            })
        }
    }

    /// The place of a reqwest request (`url::Url` has checked the port already).
    #[cfg(feature = "reqwest")]
    pub(crate) fn of_url(url: &'a ::reqwest::Url) -> Place<'a> {
        // `Url` always has a scheme; a host is missing only for `file:`-like URLs.
        match url.host_str() {
            Some(host) => Place::Site(Site {
                scheme: url.scheme(),
                host,
                explicit_port: url.port(),
            }),
            None => Place::Unclear("a destination needs both scheme and host"),
        }
    }

    /// The site, if this is one.
    pub(crate) fn site(self) -> Option<Site<'a>> {
        match self {
            Place::Site(site) => Some(site),
            _ => None,
        }
    }
}

impl Site<'_> {
    /// The port, with the scheme's default filled in; `None` for a scheme without one.
    pub(crate) fn port(&self) -> Option<u16> {
        self.explicit_port.or_else(|| default_port(self.scheme))
    }

    /// Whether `other` is the same origin: scheme, host and port, by the rules of [`Origin`].
    pub(crate) fn same_origin(&self, other: &Site<'_>) -> bool {
        self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.port().is_some()
            && self.port() == other.port()
            && same_host(self.host, other.host)
    }
}

impl fmt::Display for Site<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.explicit_port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Whether `host` is a loopback host: the one rule the crate uses wherever it matters (plain
/// `http` allowed, no proxy for token endpoint calls).
///
/// `host` is as it appears in a URI (`http::Uri::host`, `url::Url::host_str`): IPv6 addresses
/// in brackets or bare. Loopback is:
///
/// - an IPv4 address in `127.0.0.0/8`, in dotted-decimal form;
/// - `::1`, and IPv4-mapped loopback (`::ffff:127.0.0.1`, any address of `127.0.0.0/8`);
/// - the name `localhost`, in any case, with or without a trailing dot (the same name written
///   fully qualified).
///
/// Everything else is not loopback, and in particular:
///
/// - names *under* `localhost` (`api.localhost`): RFC 6761 asks resolvers to map them to
///   loopback, but many (glibc with a plain `/etc/hosts`) send them to DNS, which can answer
///   anything;
/// - shorthand IPv4 forms (`127.1`, `2130706433`, `0x7f.0.0.1`), which some parsers expand and
///   others do not, and `0.0.0.0`;
/// - the deprecated IPv4-compatible form `::127.0.0.1`.
///
/// A host that is not loopback by this rule is treated as remote: the safe side.
///
/// ```
/// use tower_bearer::is_loopback_host;
///
/// assert!(is_loopback_host("127.0.0.1"));
/// assert!(is_loopback_host("[::1]"));
/// assert!(is_loopback_host("LocalHost."));
/// assert!(!is_loopback_host("api.localhost"));
/// assert!(!is_loopback_host("localhost.example.com"));
/// ```
pub fn is_loopback_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        // A bracketed host is an IPv6 literal and nothing else.
        return inner
            .strip_suffix(']')
            .and_then(|ip| ip.parse::<Ipv6Addr>().ok())
            .is_some_and(is_loopback_v6);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => is_loopback_v6(ip),
        Err(_) => false,
    }
}

fn is_loopback_v6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
}

/// The destination rules of one layer or middleware.
#[derive(Clone, Debug, Default)]
pub(crate) struct Destinations {
    allow: Option<Arc<[Origin]>>,
    pub(crate) on_disallowed: OnDisallowedOrigin,
    allow_insecure_http: bool,
}

/// The authority (`host[:port]`, as written) of the last `https` request the allow-list let
/// through, kept by each service: the next request to the same place is approved by one
/// comparison of a few bytes instead of parsing and matching the origin again. The verdict is a
/// function of scheme, host and port alone, so equal bytes mean an equal verdict. Held inline
/// (no allocation, no reference count) so cloning a service stays cheap.
#[derive(Clone)]
pub(crate) struct Approved {
    len: u8,
    bytes: [u8; Approved::CAPACITY],
}

impl Approved {
    /// Longer authorities are checked in full each time.
    const CAPACITY: usize = 63;

    pub(crate) const NONE: Approved = Approved {
        len: 0,
        bytes: [0; Approved::CAPACITY],
    };

    #[inline]
    pub(crate) fn is(&self, authority: &str) -> bool {
        let len = usize::from(self.len);
        len != 0 && authority.len() == len && self.bytes[..len] == *authority.as_bytes()
    }

    pub(crate) fn remember(&mut self, authority: &str) {
        match self.bytes.get_mut(..authority.len()) {
            // Never keep userinfo (`user:password@host`): it would be a copy of a credential.
            Some(slot) if !authority.is_empty() && !authority.contains('@') => {
                slot.copy_from_slice(authority.as_bytes());
                self.len = authority.len() as u8;
            }
            _ => self.len = 0,
        }
    }
}

/// What to do with one request.
#[derive(Debug)]
pub(crate) enum Verdict {
    Attach,
    /// Send it without the token.
    Skip,
    /// Fail it with this error.
    Refuse(Error),
}

impl Destinations {
    pub(crate) fn allow_origin(&mut self, origin: Origin) {
        let mut list: Vec<Origin> = self.allow.as_deref().unwrap_or_default().to_vec();
        if !list.contains(&origin) {
            list.push(origin);
        }
        self.allow = Some(list.into());
    }

    pub(crate) fn allow_insecure_http(&mut self, allow: bool) {
        self.allow_insecure_http = allow;
    }

    /// Whether a tower request may get the token by the cheap rules alone: not a hop of a
    /// redirect chain that left its first origin ([`crate::redirect`]), and
    /// [`quick_uri`](Self::quick_uri). `false` means "ask
    /// [`check_request`](Self::check_request)", not "no".
    #[inline]
    pub(crate) fn quick_attach<B>(&self, request: &Request<B>, approved: &Approved) -> bool {
        !left_home(request.extensions()) && self.quick_uri(request.uri(), approved)
    }

    /// The verdict for a tower request: none of the token for a hop of a redirect chain that
    /// left its first origin (marked by [`crate::redirect`]'s policy, `FollowRedirect` above
    /// the layer), else [`check_uri`](Self::check_uri).
    #[inline]
    pub(crate) fn check_request<B>(
        &self,
        request: &Request<B>,
        approved: &mut Approved,
    ) -> Verdict {
        if left_home(request.extensions()) {
            return self.refuse(|| {
                "refusing to send the bearer token on a redirect: the chain has left the origin \
                 of its first request"
                    .to_string()
            });
        }
        self.check_uri(request.uri(), approved)
    }

    /// Whether `uri` may get the token by the cheap rules alone: a relative URI, `https` with
    /// no allow-list, or `https` to the authority this service last let through. `false` means
    /// "ask [`check_uri`](Self::check_uri)", not "no".
    #[inline]
    pub(crate) fn quick_uri(&self, uri: &Uri, approved: &Approved) -> bool {
        // `scheme_str` and a `str` compare inline; `Scheme`'s `PartialEq` is an out-of-line
        // call into the http crate on every request.
        match uri.scheme_str() {
            None => uri.authority().is_none(),
            Some(scheme) => {
                scheme == "https"
                    && (self.allow.is_none()
                        || uri.authority().is_some_and(|a| approved.is(a.as_str())))
            }
        }
    }

    /// The verdict for a tower request. The common cases (a relative URI; `https` without an
    /// allow-list, or to the authority last approved) cost a comparison or two; a newly
    /// approved `https` authority is remembered in `approved`.
    #[inline]
    pub(crate) fn check_uri(&self, uri: &Uri, approved: &mut Approved) -> Verdict {
        if self.quick_uri(uri, approved) {
            return Verdict::Attach;
        }
        let verdict = self.check(Place::of_uri(uri));
        if let (Verdict::Attach, Some("https"), Some(authority)) =
            (&verdict, uri.scheme_str(), uri.authority())
        {
            approved.remember(authority.as_str());
        }
        verdict
    }

    /// The verdict for a reqwest request.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn check_url(&self, url: &::reqwest::Url) -> Verdict {
        self.check(Place::of_url(url))
    }

    #[cold]
    fn check(&self, place: Place<'_>) -> Verdict {
        let site = match place {
            Place::Relative => return Verdict::Attach,
            Place::Site(site) => site,
            Place::Unclear(why) => {
                return self
                    .refuse(|| format!("refusing to send the bearer token to this URI: {why}"));
            }
        };
        let Site { scheme, host, .. } = site;
        if !is_secure(scheme) && !self.allow_insecure_http && !is_loopback_host(host) {
            return self.refuse(|| {
                format!(
                    "refusing to send the bearer token over plain {scheme} to {host}: use https, \
                     or allow_insecure_http(true) for tests"
                )
            });
        }
        if let Some(allow) = &self.allow
            && !allow.iter().any(|o| o.matches(&site))
        {
            return self.refuse(|| {
                format!("refusing to send the bearer token to {site}: not in the allowed origins")
            });
        }
        Verdict::Attach
    }

    pub(crate) fn refuse(&self, message: impl FnOnce() -> String) -> Verdict {
        match self.on_disallowed {
            OnDisallowedOrigin::SendWithoutToken => {
                tracing::debug!(reason = %message(), "request sent without the bearer token");
                Verdict::Skip
            }
            OnDisallowedOrigin::Fail => Verdict::Refuse(Error::disallowed(message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn attaches(d: &Destinations, s: &str) -> bool {
        matches!(
            d.check_uri(&uri(s), &mut Approved::NONE.clone()),
            Verdict::Attach
        )
    }

    fn list(origins: &[&'static str]) -> Destinations {
        let mut d = Destinations::default();
        for o in origins {
            d.allow_origin(Origin::from_static(o));
        }
        d
    }

    #[test]
    fn origin_parsing_normalises_case_default_port_and_trailing_slash() {
        let a = Origin::parse("HTTPS://Api.Example.COM").unwrap();
        assert_eq!(a, Origin::parse("https://api.example.com:443/").unwrap());
        assert_eq!(a.to_string(), "https://api.example.com");
        assert_eq!(
            Origin::parse("http://h:8080").unwrap().to_string(),
            "http://h:8080"
        );
        assert_eq!(Origin::parse("http://[::1]:3000").unwrap().host(), "[::1]");
        assert_eq!(Origin::parse("https://api.example.com.").unwrap(), a);
    }

    #[test]
    fn origin_parsing_rejects_what_is_not_an_origin() {
        for bad in [
            "",
            "api.example.com",
            "/v1",
            "https://api.example.com/v1",
            "https://api.example.com/?q=1",
            "https://user:pw@api.example.com",
            "https://api.example.com#frag",
            "grpc://api.example.com",
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}");
        }
    }

    #[test]
    #[should_panic(expected = "is not an origin")]
    fn from_static_panics_on_a_bad_literal() {
        let _ = Origin::from_static("not an origin");
    }

    #[test]
    fn relative_uris_get_the_token() {
        let d = list(&["https://api.example.com"]);
        assert!(attaches(&d, "/v1/items?x=1"));
        assert!(attaches(&Destinations::default(), "/"));
    }

    #[test]
    fn https_gets_the_token_without_an_allow_list() {
        assert!(attaches(
            &Destinations::default(),
            "https://anything.example/"
        ));
    }

    /// The one loopback rule, for every form a host takes in a URI.
    #[test]
    fn loopback_rule_table() {
        let table: &[(&str, bool)] = &[
            ("localhost", true),
            ("LOCALHOST", true),
            ("LocalHost", true),
            ("localhost.", true),
            ("LOCALHOST.", true),
            ("127.0.0.1", true),
            ("127.1.2.3", true),
            ("127.255.255.255", true),
            ("::1", true),
            ("[::1]", true),
            ("[0:0:0:0:0:0:0:1]", true),
            ("[::ffff:127.0.0.1]", true),
            ("::ffff:127.9.9.9", true),
            ("[::FFFF:7f00:1]", true),
            // Not loopback.
            ("", false),
            (".", false),
            ("localhost..", false),
            ("api.localhost", false),
            ("api.localhost.", false),
            ("localhost.example.com", false),
            ("localhost.evil.example", false),
            ("127.0.0.1.evil.example", false),
            ("evil-localhost", false),
            ("example.com", false),
            ("10.0.0.1", false),
            ("128.0.0.1", false),
            ("126.255.255.255", false),
            ("0.0.0.0", false),
            ("127.1", false),
            ("2130706433", false),
            ("0x7f.0.0.1", false),
            ("127.0.0.1.", false),
            ("[127.0.0.1]", false),
            ("[::1", false),
            ("::1]", false),
            ("::2", false),
            ("[::]", false),
            ("[::ffff:10.0.0.1]", false),
            ("[::127.0.0.1]", false),
            ("[fe80::1]", false),
        ];
        for &(host, loopback) in table {
            assert_eq!(is_loopback_host(host), loopback, "{host:?}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let d = Destinations::default();
        for ok in [
            "http://127.0.0.1:8080/",
            "http://127.9.9.9/",
            "http://localhost:3000/",
            "http://LOCALHOST./",
            "http://[::1]:80/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(attaches(&d, ok), "{ok}");
        }
        for bad in [
            "http://api.example.com/",
            "http://10.0.0.1/",
            "http://localhost.evil.example/",
            "http://127.0.0.1.evil.example/",
            "http://[::2]/",
            "ws://api.example.com/",
        ] {
            assert!(
                matches!(
                    d.check_uri(&uri(bad), &mut Approved::NONE.clone()),
                    Verdict::Skip
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn allow_insecure_http_opts_out() {
        let mut d = Destinations::default();
        d.allow_insecure_http(true);
        assert!(attaches(&d, "http://api.example.com/"));
    }

    #[test]
    fn allow_list_matches_scheme_host_and_port() {
        let d = list(&["https://api.example.com", "http://127.0.0.1:8080"]);
        assert!(attaches(&d, "https://api.example.com/x"));
        assert!(attaches(&d, "https://API.example.com:443/x"));
        assert!(attaches(&d, "http://127.0.0.1:8080/x"));
        for other in [
            "https://api.example.com:8443/x",
            "http://api.example.com/x",
            "https://evil.example/x",
            "https://api.example.com.evil.example/x",
            "http://127.0.0.1:8081/x",
            "http://localhost:8080/x",
        ] {
            assert!(
                matches!(
                    d.check_uri(&uri(other), &mut Approved::NONE.clone()),
                    Verdict::Skip
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn allow_listed_plain_http_still_needs_loopback_or_the_opt_out() {
        let d = list(&["http://internal.example"]);
        assert!(!attaches(&d, "http://internal.example/"));
        let mut d = d;
        d.allow_insecure_http(true);
        assert!(attaches(&d, "http://internal.example/"));
    }

    #[test]
    fn fail_mode_returns_a_disallowed_error_without_the_path() {
        let mut d = list(&["https://api.example.com"]);
        d.on_disallowed = OnDisallowedOrigin::Fail;
        let Verdict::Refuse(err) = d.check_uri(
            &uri("https://other.example:8443/secret/path?key=v"),
            &mut Approved::NONE.clone(),
        ) else {
            panic!("expected a refusal")
        };
        assert_eq!(err.kind(), ErrorKind::Disallowed);
        let msg = err.to_string();
        assert!(msg.contains("https://other.example:8443"), "{msg}");
        assert!(!msg.contains("secret") && !msg.contains("key="), "{msg}");
    }

    #[test]
    fn an_approved_authority_is_remembered_and_only_it() {
        let d = list(&["https://api.example.com"]);
        let mut approved = Approved::NONE;
        let api = uri("https://api.example.com/v1");
        assert!(!d.quick_uri(&api, &approved));
        assert!(matches!(d.check_uri(&api, &mut approved), Verdict::Attach));
        assert!(d.quick_uri(&uri("https://api.example.com/v2?x=1"), &approved));
        // Anything else still goes through the full rules.
        for other in [
            "https://api.example.com.evil.example/",
            "https://api.example.co/",
            "https://api.example.com:444/",
            "http://api.example.com/",
        ] {
            assert!(!d.quick_uri(&uri(other), &approved), "{other}");
            let mut scratch = approved.clone();
            assert!(
                matches!(d.check_uri(&uri(other), &mut scratch), Verdict::Skip),
                "{other}"
            );
        }
        // A refused authority is never remembered.
        let mut approved = Approved::NONE;
        let _ = d.check_uri(&uri("https://evil.example/"), &mut approved);
        assert!(!d.quick_uri(&uri("https://evil.example/"), &approved));
        // Userinfo is a credential: allowed by the full check, never copied into the memo.
        let mut approved = Approved::NONE;
        let with_userinfo = uri("https://user:pw@api.example.com/");
        assert!(matches!(
            d.check_uri(&with_userinfo, &mut approved),
            Verdict::Attach
        ));
        assert!(!d.quick_uri(&with_userinfo, &approved));
        // One longer than the inline buffer is checked in full every time, and still allowed.
        let long = format!("{}.example.com", "a".repeat(70));
        let d = list(&[Box::leak(format!("https://{long}").into_boxed_str())]);
        let mut approved = Approved::NONE;
        let long_uri = uri(&format!("https://{long}/"));
        assert!(matches!(
            d.check_uri(&long_uri, &mut approved),
            Verdict::Attach
        ));
        assert!(!d.quick_uri(&long_uri, &approved));
    }

    /// Found by the `origin` fuzz target: `wss://.` parsed as an origin with an empty host,
    /// which printed as `wss://`, which does not parse (and by the property test after it:
    /// `https://..` printed as `https://.`).
    #[test]
    fn a_host_that_is_only_a_dot_is_no_origin() {
        for bad in [
            "wss://.",
            "https://./",
            "http://.:8080",
            "https://..",
            "https://a../",
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
            assert!(err.to_string().contains("empty host"), "{err}");
        }
        let origin = Origin::parse("https://api.example.com.").unwrap();
        assert_eq!(Origin::parse(&origin.to_string()).unwrap(), origin);
    }

    /// Found by the `origin` fuzz target: `http::Uri` takes `wss://ws[:]` with host `ws[` and
    /// no port, which became the origin `wss://ws[` (port 443 by default), which does not
    /// parse. A port that is not a number was likewise read as the default port.
    #[test]
    fn a_host_or_port_that_http_uri_cuts_oddly_is_no_origin() {
        for bad in [
            "wss://ws[:]",
            "https://a[b",
            "https://[::1",
            "https://[nonsense]",
            "https://api.example.com:443.evil.example",
            "https://api.example.com:x",
        ] {
            if let Ok(origin) = Origin::parse(bad) {
                panic!("{bad} parsed as {origin}");
            }
        }
        for good in [
            "https://[::1]:8443",
            "https://[2001:db8::1]",
            "http://127.0.0.1:80/",
            "https://a_b.example:",
        ] {
            let origin = Origin::parse(good).unwrap();
            assert_eq!(
                Origin::parse(&origin.to_string()).unwrap(),
                origin,
                "{good}"
            );
        }
    }

    /// Found by `proptests::origin_matching_agrees_with_url`: `http::Uri` reads
    /// `https://127.0.0.1:443.evil.example` as host `127.0.0.1` without a port, which matched
    /// the allowed `https://127.0.0.1` by its default port; `url::Url` calls it no URL at all.
    #[test]
    fn a_port_that_is_not_a_number_never_gets_the_token() {
        let d = list(&["https://api.example.com", "http://127.0.0.1"]);
        for bad in [
            "https://api.example.com:443.evil.example/",
            "https://api.example.com:evil.example/",
            "https://api.example.com:443:443/",
            "https://api.example.com:99999/",
            "https://user:pw@api.example.com:x/",
            "http://127.0.0.1:80.evil.example/",
        ] {
            // `http::Uri` refuses some of these itself; those it takes must not get the token.
            assert!(bad.parse::<Uri>().is_err() || !attaches(&d, bad), "{bad}");
        }
        assert!(
            "https://api.example.com:443.evil.example/"
                .parse::<Uri>()
                .is_ok()
        );
        // Valid ports, an empty one and user info still match.
        for good in [
            "https://api.example.com/",
            "https://api.example.com:/",
            "https://api.example.com:443/",
            "https://api.example.com:0443/",
            "https://user:pw@api.example.com/",
            "http://127.0.0.1:80/",
        ] {
            assert!(attaches(&d, good), "{good}");
        }
        // Without an allow-list, plain http to loopback by a malformed authority is refused too.
        assert!(!attaches(
            &Destinations::default(),
            "http://127.0.0.1:80.evil.example/"
        ));
        assert!(attaches(&Destinations::default(), "http://[::1]:8080/"));
        assert!(attaches(&Destinations::default(), "http://[::1]/"));
    }

    #[test]
    fn authority_without_scheme_is_not_relative() {
        let d = Destinations {
            on_disallowed: OnDisallowedOrigin::Fail,
            ..Destinations::default()
        };
        assert!(matches!(
            d.check_uri(&uri("api.example.com:443"), &mut Approved::NONE.clone()),
            Verdict::Refuse(_)
        ));
    }
}
