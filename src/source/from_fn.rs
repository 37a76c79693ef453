use std::fmt;
use std::future::Future;

use crate::{Error, Token, TokenSource};

/// A [`TokenSource`] made from a closure that returns a future; see [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

/// Turn a closure returning a future of `Result<Token, Error>` into a [`TokenSource`].
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{BearerAuthLayer, Error, Token, source::from_fn};
///
/// let layer = BearerAuthLayer::new(from_fn(|| async {
///     Ok::<_, Error>(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
/// }));
/// # let _ = layer;
/// ```
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send,
{
    FromFn { f }
}

impl<F, Fut> TokenSource for FromFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send,
{
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        (self.f)()
    }
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}
