//! Redirects: a token (or DPoP proof) never reaches an origin other than the one it was attached
//! for, on any hop of a chain.
//!
//! Nothing in this crate follows redirects; the HTTP client under it does, and neither common
//! one keeps that promise alone. tower-http's `FollowRedirect` and reqwest rebuild every hop
//! from the headers of the *first* request, and remove credentials only when the last hop
//! changed origin: on `api.example.com → storage.example/a → storage.example/b`, the second
//! storage hop gets `Authorization` back. reqwest never removes the `DPoP` proof at all. So:
//!
//! - **tower**: `TokensStayHome` (feature `tower-http`) as the policy of `FollowRedirect`.
//!   Once a chain has left the origin of its first request, every later hop goes without
//!   `Authorization`, `DPoP`, `Cookie` and `Proxy-Authorization`, even one that comes back:
//!   a redirect that returns to the first origin was chosen by another origin, which picked
//!   the path (and, with 307/308, the method and body) the credentials would be sent to. That
//!   is the Fetch standard's rule too. Below the bearer layer, it removes what the layer
//!   attached; above it, each hop reaches the layer as a new request, marked so that the
//!   layer attaches nothing to it (as to a destination outside the allow-list).
//! - **reqwest**: `reqwest_policy` (feature `reqwest`) as the client's redirect policy. A
//!   reqwest policy sees URLs, not headers, so it cannot remove anything: it follows redirects
//!   within the origin of the request (up to 10, as reqwest's default) and stops at the first
//!   one that leaves it, handing you the 3xx. Follow its `Location` yourself, with a client
//!   that has no token middleware (a pre-signed download URL needs no token).
//!
//! ```
//! # #[cfg(feature = "tower-http")] fn tower() {
//! use tower::ServiceBuilder;
//! use tower_bearer::{BearerAuthLayer, redirect::TokensStayHome, source::static_token};
//! use tower_http::follow_redirect::FollowRedirectLayer;
//! # let hyper_util_client = tower::service_fn(|_: http::Request<String>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//!
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(static_token("abc")))
//!     .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
//!     .service(hyper_util_client);
//! # let _ = client;
//! # }
//! # #[cfg(feature = "reqwest")] fn reqwest() {
//! // reqwest:
//! let client = reqwest::Client::builder()
//!     .redirect(tower_bearer::redirect::reqwest_policy())
//!     .build();
//! # let _ = client;
//! # }
//! ```

#[cfg(any(feature = "tower-http", feature = "reqwest"))]
use std::fmt;

#[cfg(feature = "tower-http")]
use http::HeaderName;
#[cfg(feature = "tower-http")]
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};

#[cfg(any(feature = "tower-http", feature = "reqwest"))]
use crate::origin::Place;

/// What a redirect that left the origin takes off every later hop: the credentials a client
/// sends on its own (tower-http's `FilterCredentials` list) and the DPoP proof.
#[cfg(feature = "tower-http")]
const CREDENTIALS: [HeaderName; 4] = [
    AUTHORIZATION,
    HeaderName::from_static("dpop"),
    COOKIE,
    PROXY_AUTHORIZATION,
];

/// The mark [`TokensStayHome`] puts on every hop after a chain left the origin of its first
/// request: the bearer layer attaches no token to a request that carries it (see
/// [`crate::origin`]'s `Destinations`). Only this module makes one.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "tower-http"), allow(dead_code))]
pub(crate) struct LeftHome;

/// Whether a request is a hop of a redirect chain that has left the origin of its first
/// request (and so may carry no token). One lookup in an empty map for requests that carry
/// no extensions.
#[inline]
pub(crate) fn left_home(extensions: &http::Extensions) -> bool {
    extensions.get::<LeftHome>().is_some()
}

/// A tower-http redirect policy that keeps credentials on the origin they were sent to: once a
/// chain has left the origin of its first request, no later hop carries `Authorization`,
/// `DPoP`, `Cookie` or `Proxy-Authorization` (a hop back to the first origin neither), and
/// the bearer layer attaches nothing to it. It follows at most 20 redirects, as tower-http's
/// `Standard` does; compose it with `Limited` for fewer
/// (`Limited::new(5).and(TokensStayHome::new())`, with tower-http's `PolicyExt`).
///
/// Use it in place of tower-http's default policy, whose `FilterCredentials` compares only
/// the last two hops; see [the module](self) for the rule and why returning hops stay bare.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode, header::{AUTHORIZATION, LOCATION}};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_bearer::{BearerAuthLayer, redirect::TokensStayHome, source::static_token};
/// use tower_http::follow_redirect::FollowRedirectLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
/// // A stand-in for the network: api.example.com sends us to storage.example, which
/// // redirects within itself once, then answers with the `Authorization` it got.
/// let network = service_fn(|req: Request<String>| async move {
///     let auth = req.headers().get(AUTHORIZATION).cloned();
///     let to = match (req.uri().host(), req.uri().path()) {
///         (Some("api.example.com"), _) => "https://storage.example/a",
///         (_, "/a") => "/b",
///         _ => {
///             let seen = auth.map_or("none".into(), |v| v.to_str().unwrap().to_owned());
///             return Ok::<_, Infallible>(Response::new(seen));
///         }
///     };
///     let mut moved = Response::new(String::new());
///     *moved.status_mut() = StatusCode::FOUND;
///     moved.headers_mut().insert(LOCATION, to.parse().unwrap());
///     Ok(moved)
/// });
/// let client = ServiceBuilder::new()
///     .layer(BearerAuthLayer::new(static_token("abc")))
///     .layer(FollowRedirectLayer::with_policy(TokensStayHome::new()))
///     .service(network);
///
/// let response = client.oneshot(Request::get("https://api.example.com/file").body(String::new())?).await?;
/// assert_eq!(response.body(), "none");
/// # Ok(()) }
/// ```
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
#[derive(Clone, Default)]
pub struct TokensStayHome {
    /// The URI of the first request of the chain, once seen.
    home: Option<http::Uri>,
    /// Whether a hop has gone to another origin.
    left: bool,
    redirects: usize,
}

#[cfg(feature = "tower-http")]
impl TokensStayHome {
    /// The most redirects one chain follows, as tower-http's `Standard` policy.
    const MAX_REDIRECTS: usize = 20;

    /// The policy, for `FollowRedirectLayer::with_policy`.
    pub fn new() -> Self {
        TokensStayHome::default()
    }
}

#[cfg(feature = "tower-http")]
impl fmt::Debug for TokensStayHome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No URI: its query may carry a credential (a pre-signed URL).
        f.debug_struct("TokensStayHome")
            .field("left", &self.left)
            .field("redirects", &self.redirects)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tower-http")]
impl<B, E> tower_http::follow_redirect::policy::Policy<B, E> for TokensStayHome {
    fn redirect(
        &mut self,
        _: &tower_http::follow_redirect::policy::Attempt<'_>,
    ) -> Result<tower_http::follow_redirect::policy::Action, E> {
        use tower_http::follow_redirect::policy::Action;
        if self.redirects >= Self::MAX_REDIRECTS {
            return Ok(Action::Stop);
        }
        self.redirects += 1;
        Ok(Action::Follow)
    }

    /// Called with the first request of a chain, then with every hop: the decision is made
    /// here, from the hop's own URI, so that it holds however the policy is composed.
    fn on_request(&mut self, request: &mut http::Request<B>) {
        let Some(home) = &self.home else {
            // The first request: it defines home, and goes as the caller (and the bearer
            // layer) made it.
            self.home = Some(request.uri().clone());
            return;
        };
        self.left = self.left || !same_origin(home, request.uri());
        if self.left {
            let headers = request.headers_mut();
            for name in &CREDENTIALS {
                headers.remove(name);
            }
            request.extensions_mut().insert(LeftHome);
        }
    }
}

/// Whether `to` is the origin of `home`, by the allow-list's rules; a URI that is not an
/// absolute `scheme://host[:port]` is never anyone's origin.
#[cfg(feature = "tower-http")]
fn same_origin(home: &http::Uri, to: &http::Uri) -> bool {
    match (Place::of_uri(home).site(), Place::of_uri(to).site()) {
        (Some(home), Some(to)) => home.same_origin(&to),
        _ => false,
    }
}

/// A reqwest redirect policy that never lets reqwest carry a token or DPoP proof to another
/// origin: it follows redirects that stay on the origin of the request (at most 10, reqwest's
/// default), and stops at the first one that leaves it, so the response is that 3xx, with its
/// `Location`.
///
/// reqwest rebuilds every hop from the first request's headers and removes `Authorization`
/// only when the last hop changed origin (`A → B → B` puts it back on the second `B` hop); it
/// never removes the `DPoP` proof. A reqwest policy sees the URLs of the chain but not the
/// headers, so stopping is the one safe choice. Set it on the `reqwest::Client` under
/// `BearerAuthMiddleware`:
///
/// ```
/// let client = reqwest::Client::builder()
///     .redirect(tower_bearer::redirect::reqwest_policy())
///     .build()?;
/// # Ok::<_, reqwest::Error>(())
/// ```
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub fn reqwest_policy() -> ::reqwest::redirect::Policy {
    const MAX_REDIRECTS: usize = 10;
    ::reqwest::redirect::Policy::custom(|attempt| {
        // `previous` starts with the URL of the request itself.
        let home = attempt.previous().first().map(Place::of_url);
        let stays = match (
            home.and_then(Place::site),
            Place::of_url(attempt.url()).site(),
        ) {
            (Some(home), Some(to)) => home.same_origin(&to),
            _ => false,
        };
        if !stays {
            tracing::debug!(
                "redirect to another origin not followed: the response is the 3xx itself"
            );
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(TooManyRedirects)
        } else {
            attempt.follow()
        }
    })
}

/// The error of a chain longer than [`reqwest_policy`] follows.
#[cfg(feature = "reqwest")]
#[derive(Debug)]
struct TooManyRedirects;

#[cfg(feature = "reqwest")]
impl fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too many redirects")
    }
}

#[cfg(feature = "reqwest")]
impl std::error::Error for TooManyRedirects {}
