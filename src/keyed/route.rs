//! Picking a request's key: by its origin through a map, or by a closure over the request.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

use crate::origin::{Place, Site};
use crate::{Error, Origin};

/// Where a request goes, as the key closure of
/// [`BearerAuthLayer::per_request`](crate::BearerAuthLayer::per_request) sees it: the same
/// view for tower requests and reqwest requests.
///
/// ```
/// use http::Method;
/// use tower_bearer::keyed::Destination;
///
/// let uri: http::Uri = "https://api.example.com/tenants/acme/orders".parse().unwrap();
/// let headers = http::HeaderMap::new();
/// let dest = Destination::from_uri(&Method::GET, &uri, &headers);
/// assert_eq!(dest.host(), Some("api.example.com"));
/// assert_eq!(dest.path().split('/').nth(2), Some("acme"));
/// assert!(dest.is(&tower_bearer::Origin::from_static("https://api.example.com")));
/// ```
#[derive(Clone, Copy)]
pub struct Destination<'a> {
    method: &'a Method,
    target: Target<'a>,
    headers: &'a HeaderMap,
}

/// The request's URI, read only as far as the key closure asks.
#[derive(Clone, Copy)]
enum Target<'a> {
    Uri(&'a Uri),
    #[cfg(feature = "reqwest-middleware")]
    Url(&'a ::reqwest::Url),
}

impl<'a> Destination<'a> {
    /// The destination of a request with this method, URI and headers.
    pub fn from_uri(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Destination {
            method,
            target: Target::Uri(uri),
            headers,
        }
    }

    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn from_reqwest(request: &'a ::reqwest::Request) -> Self {
        Destination {
            method: request.method(),
            target: Target::Url(request.url()),
            headers: request.headers(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The scheme (`https`), `None` for a relative URI.
    pub fn scheme(&self) -> Option<&'a str> {
        match self.target {
            Target::Uri(uri) => uri.scheme_str(),
            #[cfg(feature = "reqwest-middleware")]
            Target::Url(url) => Some(url.scheme()),
        }
    }

    /// The host, as written in the URI (IPv6 addresses in brackets). `None` for a relative
    /// URI, and for one the crate's origin rules do not read as a host and a port: with
    /// `https://api.example.com:443.other.example/`, `http::Uri` says the host is
    /// `api.example.com`, and where the request goes is anyone's guess.
    pub fn host(&self) -> Option<&'a str> {
        self.site().map(|site| site.host)
    }

    /// The port written in the URI, if any (not the scheme's default); `None` too where
    /// [`host`](Self::host) is.
    pub fn port(&self) -> Option<u16> {
        self.site().and_then(|site| site.explicit_port)
    }

    /// The destination as the origin rules read it: the allow-list's reading, so that a key
    /// by origin and an allow-list never disagree on where a request goes.
    fn site(&self) -> Option<Site<'a>> {
        match self.target {
            Target::Uri(uri) => Place::of_uri(uri),
            #[cfg(feature = "reqwest-middleware")]
            Target::Url(url) => Place::of_url(url),
        }
        .site()
    }

    /// The path.
    pub fn path(&self) -> &'a str {
        match self.target {
            Target::Uri(uri) => uri.path(),
            #[cfg(feature = "reqwest-middleware")]
            Target::Url(url) => url.path(),
        }
    }

    /// The request headers (as the caller set them; `Authorization` is not yet ours).
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// Whether the request goes to `origin` (scheme, host and port, default ports filled in).
    ///
    /// By the allow-list's rules ([`Origin`]): scheme and host in any case, a trailing dot on
    /// the host ignored, IPv6 addresses however written, and never a URI whose port is not a
    /// number.
    pub fn is(&self, origin: &Origin) -> bool {
        self.site().is_some_and(|site| origin.matches(&site))
    }
}

impl fmt::Debug for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No headers: they may carry credentials.
        f.debug_struct("Destination")
            .field("method", self.method)
            .field("scheme", &self.scheme())
            .field("host", &self.host())
            .field("port", &self.port())
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

type KeyFn<K> = dyn Fn(&Destination<'_>) -> Option<K> + Send + Sync;
type OriginFn<K> = dyn Fn(&Origin) -> Option<K> + Send + Sync;

/// How a layer or middleware picks the key of a request.
pub(crate) enum Route<K> {
    /// By origin: the first entry whose origin is the request's.
    Origins(Arc<[(Origin, K)]>),
    /// By a closure over the origin: a tower service asks it once per origin it remembers.
    Origin(Arc<OriginFn<K>>),
    /// By a closure over the request, asked for every request.
    Request(Arc<KeyFn<K>>),
}

impl<K: Clone> Route<K> {
    pub(crate) fn origins(map: impl IntoIterator<Item = (Origin, K)>) -> Self {
        let mut list: Vec<(Origin, K)> = Vec::new();
        for (origin, key) in map {
            // A later entry for an origin already mapped would never be reached: the first one
            // stands, as in a `match`.
            if !list.iter().any(|(o, _)| *o == origin) {
                list.push((origin, key));
            }
        }
        Route::Origins(list.into())
    }

    pub(crate) fn request(
        pick: impl Fn(&Destination<'_>) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        Route::Request(Arc::new(pick))
    }

    pub(crate) fn origin(pick: impl Fn(&Origin) -> Option<K> + Send + Sync + 'static) -> Self {
        Route::Origin(Arc::new(pick))
    }

    /// The key of a request going to `destination`, if it has one.
    pub(crate) fn key(&self, destination: &Destination<'_>) -> Option<K> {
        match self {
            Route::Origins(list) => {
                let site = destination.site()?;
                list.iter()
                    .find(|(origin, _)| origin.matches(&site))
                    .map(|(_, key)| key.clone())
            }
            Route::Origin(pick) => pick(&Origin::of_site(&destination.site()?).ok()?),
            Route::Request(pick) => pick(destination),
        }
    }

    /// Whether the key depends on the origin alone (so a service may remember it per
    /// authority).
    pub(crate) fn by_origin(&self) -> bool {
        !matches!(self, Route::Request(_))
    }
}

/// The error (or the debug line) for a request whose destination has no key.
pub(crate) fn no_key(destination: &Destination<'_>) -> Error {
    let port = destination
        .port()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    Error::disallowed(format!(
        "no token is configured for {}://{}{port}: the destination has no key",
        destination.scheme().unwrap_or("(relative)"),
        destination.host().unwrap_or(""),
    ))
}

impl<K> Clone for Route<K> {
    fn clone(&self) -> Self {
        match self {
            Route::Origins(list) => Route::Origins(Arc::clone(list)),
            Route::Origin(pick) => Route::Origin(Arc::clone(pick)),
            Route::Request(pick) => Route::Request(Arc::clone(pick)),
        }
    }
}

impl<K> fmt::Debug for Route<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Origins(list) => f
                .debug_list()
                .entries(list.iter().map(|(origin, _)| origin))
                .finish(),
            Route::Origin(_) => f.write_str("Route::Origin"),
            Route::Request(_) => f.write_str("Route::Request"),
        }
    }
}
