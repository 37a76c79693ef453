//! The request bodies the tower layer can send a second time ([`ReplayBody`]), for
//! [`BearerAuthLayer::replay_on_401`](crate::BearerAuthLayer::replay_on_401) (the
//! [`Replay`](crate::Replay) mode; the replay itself is the [pipeline](mod@crate::pipeline)'s).
//!
//! A replay needs a copy of the request made *before* it is sent, because the inner service
//! consumes the original. Bodies held in memory (`String`, `Bytes`, `Full`, `Empty`, ...) can be
//! copied; a streaming body cannot, and a request with one is never replayed (its 401 still
//! drops the rejected token). Bodies larger than [`MAX_REPLAY_BODY`] are not copied either.
//! Implement the trait for your own body type if it can be copied.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
//! use tower_bearer::ReplayBody;
//!
//! assert_eq!(String::from("hi").try_clone_body().as_deref(), Some("hi"));
//! assert!(Full::new(Bytes::from_static(b"{}")).try_clone_body().is_some());
//! assert!(Empty::<Bytes>::new().try_clone_body().is_some());
//!
//! // A boxed body is replayable only while it is known to be empty.
//! let empty: BoxBody<Bytes, std::convert::Infallible> = Empty::new().boxed();
//! assert!(empty.try_clone_body().is_some());
//! let full: BoxBody<Bytes, std::convert::Infallible> = Full::new(Bytes::from_static(b"x")).boxed();
//! assert!(full.try_clone_body().is_none());
//! ```

use bytes::{Buf, Bytes};
use http::Request;
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full};

/// The largest body the tower layer copies for a replay: 1 MiB. A request with a larger body is
/// sent once (a rejection still drops the token).
pub const MAX_REPLAY_BODY: u64 = 1024 * 1024;

/// A request body that may be copied so the request can be sent again.
pub trait ReplayBody: Sized {
    /// A copy of the body to send again, or `None` if this body cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;

    /// The body's length, when known before copying it: a body longer than
    /// [`MAX_REPLAY_BODY`] is not copied. Default: unknown (`try_clone_body` decides).
    fn replay_len(&self) -> Option<u64> {
        None
    }
}

macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {$(
        impl ReplayBody for $ty {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }

            fn replay_len(&self) -> Option<u64> {
                Some(self.len() as u64)
            }
        }
    )*};
}

replay_by_clone!(String, Vec<u8>, Bytes, &'static str, &'static [u8]);

impl ReplayBody for () {
    fn try_clone_body(&self) -> Option<Self> {
        Some(())
    }
}

impl<D: Buf + Clone> ReplayBody for Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }

    fn replay_len(&self) -> Option<u64> {
        self.size_hint().exact()
    }
}

impl<D> ReplayBody for Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(Empty::new())
    }
}

impl<D: Buf + 'static, E> ReplayBody for BoxBody<D, E> {
    /// Replayable only when the body is already known to be empty.
    fn try_clone_body(&self) -> Option<Self> {
        self.is_end_stream().then(BoxBody::default)
    }
}

impl<D: Buf + 'static, E> ReplayBody for UnsyncBoxBody<D, E> {
    /// Replayable only when the body is already known to be empty.
    fn try_clone_body(&self) -> Option<Self> {
        self.is_end_stream().then(UnsyncBoxBody::default)
    }
}

#[cfg(feature = "reqwest")]
impl ReplayBody for ::reqwest::Body {
    /// Replayable when the body is held in memory (not a stream).
    fn try_clone_body(&self) -> Option<Self> {
        self.as_bytes()
            .map(|bytes| ::reqwest::Body::from(Bytes::copy_from_slice(bytes)))
    }

    fn replay_len(&self) -> Option<u64> {
        self.as_bytes().map(|bytes| bytes.len() as u64)
    }
}

/// A copy of `request` (method, URI, version, headers, extensions and body), if its body can
/// be copied and is no longer than [`MAX_REPLAY_BODY`].
pub(crate) fn try_clone_request<B: ReplayBody>(request: &Request<B>) -> Option<Request<B>> {
    if request
        .body()
        .replay_len()
        .is_some_and(|len| len > MAX_REPLAY_BODY)
    {
        tracing::debug!("the request body is too large to copy for a replay: sending it once");
        return None;
    }
    let body = request.body().try_clone_body()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}
