use std::fmt;

use crate::{Error, Token, TokenSource};

/// A [`TokenSource`] that always returns the same token; see [`static_token`].
#[derive(Clone)]
pub struct StaticToken {
    token: Token,
}

/// A source that always returns `value`, valid until invalidated (or until its JWT `exp`).
///
/// Useful for long-lived API keys sent as bearer tokens, and in tests.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, source::static_token};
///
/// let layer = BearerAuthLayer::new(static_token("my-api-key"));
/// # let _ = layer;
/// ```
pub fn static_token(value: impl Into<String>) -> StaticToken {
    StaticToken {
        token: Token::new(value),
    }
}

impl StaticToken {
    /// A source that always returns a clone of `token` (with whatever lifetime it carries).
    pub fn new(token: Token) -> Self {
        StaticToken { token }
    }
}

impl TokenSource for StaticToken {
    async fn fetch(&self) -> Result<Token, Error> {
        Ok(self.token.clone())
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &self.token)
            .finish()
    }
}
