//! Newtypes for the credentials the built-in sources hold: [`ClientSecret`], [`RefreshToken`],
//! [`ApiKey`], [`IdentityToken`].
//!
//! Each one prints `"[redacted]"` in `Debug`, is zeroized when dropped, and gives its value only
//! through an explicit [`secret()`](ClientSecret::secret) call, so a reviewer can find every place
//! a secret leaves its box by searching for `.secret()`.
//!
//! ```
//! use tower_bearer::secret::ClientSecret;
//!
//! let secret = ClientSecret::new("s3cr3t");
//! assert_eq!(format!("{secret:?}"), "ClientSecret([redacted])");
//! assert_eq!(secret.secret(), "s3cr3t");
//! ```

use std::fmt;

use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Debug` prints `"[redacted]"`; the value is zeroized on drop; read it with
        /// [`secret()`](Self::secret). Equality is checked in constant time.
        #[derive(Clone)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// Wrap a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                $name(Zeroizing::new(value.into()))
            }

            /// The secret value. Every use of it can be found by searching for `.secret()`.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}

        impl From<String> for $name {
            fn from(value: String) -> Self {
                $name::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                $name::new(value)
            }
        }
    };
}

secret_type!(
    /// An OAuth 2.0 client secret (RFC 6749 §2.3.1), or the shared secret of a
    /// `client_secret_jwt` or HS256 assertion.
    ClientSecret
);

secret_type!(
    /// A refresh token (RFC 6749 §1.5), or a vendor's long-lived "personal token" traded for
    /// access tokens.
    RefreshToken
);

secret_type!(
    /// An API key exchanged for access tokens.
    ApiKey
);

secret_type!(
    /// A credential the platform gives the workload (a Kubernetes service-account token, a
    /// federated token, a CI OIDC token), sent as a subject token, an assertion or a client
    /// assertion; see [`source::workload`](crate::source::workload).
    IdentityToken
);

/// Compare without an early exit, so the time taken says nothing about where values differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let values = [
            format!("{:?}", ClientSecret::new("cs-value")),
            format!("{:?}", RefreshToken::new("rt-value")),
            format!("{:?}", ApiKey::new("ak-value")),
            format!("{:?}", IdentityToken::new("it-value")),
        ];
        for shown in values {
            assert!(shown.ends_with("([redacted])"), "{shown}");
            assert!(!shown.contains("value"), "{shown}");
        }
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(RefreshToken::new("a"), RefreshToken::new("a"));
        assert_ne!(RefreshToken::new("a"), RefreshToken::new("b"));
        assert_ne!(RefreshToken::new("a"), RefreshToken::new("ab"));
    }
}
