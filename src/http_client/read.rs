//! The one reader of a token endpoint's answer, shared by every [`HttpClient`](super::HttpClient)
//! the crate implements (its own reqwest client, the user's `reqwest::Client`,
//! `ClientWithMiddleware`, a tower service): a deadline for the answer's head, then one of its
//! own for the body, and a size cap checked as the body arrives, into a buffer zeroized on drop.

use std::future::Future;
use std::time::Duration;

use bytes::Buf;
use http_body::Body;
use http_body_util::BodyExt;
use zeroize::Zeroizing;

use super::HttpResponse;
use crate::{BoxError, Error};

/// How long a call may take and how much of an answer is accepted.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) timeout: Duration,
    pub(super) max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: super::DEFAULT_TIMEOUT,
            max_response_bytes: super::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl Limits {
    /// Wait for `send` (connect, send, read the status line and headers) at most `timeout`.
    pub(super) async fn head<T>(
        &self,
        send: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, send).await {
            Ok(answer) => answer,
            Err(_elapsed) => Err(Error::transient(format!(
                "the token endpoint did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Read the whole body of `response`: refused past the size cap (an `InvalidResponse`),
    /// and given `timeout` again from now, so that an answer the server has begun to send (a
    /// rotation it has committed) is not cut by what was left of the first deadline.
    pub(super) async fn read<B>(&self, response: http::Response<B>) -> Result<HttpResponse, Error>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let max = self.max_response_bytes;
        let too_large = || {
            Error::invalid_response(format!(
                "the token endpoint's answer is larger than {max} bytes"
            ))
            .with_status(status)
        };
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .or(body.size_hint().exact());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let mut buf = ZeroizingBuf::with_capacity(declared.unwrap_or(0) as usize);
        let read = async {
            let mut body = std::pin::pin!(body);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| body_error(e.into()).with_status(status))?;
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        if buf.len() + chunk.len() > max {
                            return Err(too_large());
                        }
                        buf.extend_from_slice(chunk);
                        let n = chunk.len();
                        data.advance(n);
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(read) => read?,
            Err(_elapsed) => {
                return Err(Error::transient(format!(
                    "the token endpoint's answer was not read within {:?} of its headers",
                    self.timeout
                ))
                .with_status(status));
            }
        }
        let mut out = http::Response::new(buf.into_bytes());
        *out.status_mut() = status;
        *out.headers_mut() = parts.headers;
        Ok(out)
    }
}

/// A failure while the body was read: transient (the connection broke). A reqwest error loses
/// its URL first (its query string can hold a credential).
fn body_error(err: BoxError) -> Error {
    #[cfg(feature = "reqwest")]
    let err: BoxError = match err.downcast::<reqwest::Error>() {
        Ok(err) => Box::new(err.without_url()),
        Err(err) => err,
    };
    Error::transient("the token endpoint's answer could not be read").with_source(err)
}

/// The answer's body as it arrives: it holds the access and refresh tokens, so it is
/// zeroized on drop, and it grows by moving to a new buffer (the old one wiped) rather than
/// by reallocation, which would free a copy without wiping it.
pub(super) struct ZeroizingBuf(Zeroizing<Vec<u8>>);

impl ZeroizingBuf {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        ZeroizingBuf(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        let needed = self.0.len() + bytes.len();
        if needed > self.0.capacity() {
            let mut grown = Vec::with_capacity(needed.max(2 * self.0.capacity()).max(1024));
            grown.extend_from_slice(&self.0);
            // The old buffer is zeroized as it is dropped here.
            self.0 = Zeroizing::new(grown);
        }
        self.0.extend_from_slice(bytes);
    }

    /// Bytes that are zeroized when their last clone is dropped.
    pub(super) fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_buffer_grows_by_moving() {
        let mut buf = ZeroizingBuf::with_capacity(4);
        buf.extend_from_slice(b"abc");
        buf.extend_from_slice(&[b'x'; 3000]);
        buf.extend_from_slice(b"end");
        assert_eq!(buf.len(), 3006);
        let bytes = buf.into_bytes();
        assert!(bytes.starts_with(b"abcxxx") && bytes.ends_with(b"xxend"));
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_an_invalid_response() {
        let limits = Limits {
            max_response_bytes: 8,
            ..Limits::default()
        };
        // No declared length: the cap is met while reading.
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(
            [&b"{\"access"[..], &b"_token\"}"[..]]
                .map(|chunk| Ok::<_, std::io::Error>(http_body::Frame::data(chunk))),
        ));
        let err = limits.read(http::Response::new(body)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidResponse);
        let ok = limits
            .read(http::Response::new(http_body_util::Full::new(&b"{}"[..])))
            .await
            .unwrap();
        assert_eq!(ok.body().as_ref(), b"{}");
    }
}
