//! Integration tests for calling several APIs: a token per destination ([`keyed`]), discovery,
//! token exchange, revocation, and the hooks (a rejection rule of one's own, an initial
//! token). Token endpoints and APIs are axum servers on 127.0.0.1 that count what reached them.

#[path = "../sources/common.rs"]
mod common;

mod discovery;
mod hooks;
mod keyed;
mod redaction;
mod token_exchange;
