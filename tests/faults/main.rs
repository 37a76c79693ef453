//! The fault suite: a real, rotating token endpoint on 127.0.0.1 ([`server::FaultServer`])
//! misbehaves on command, and a `RefreshTokenGrant` behind `TokenCache` and `BearerAuthLayer`
//! is driven through each fault, then through all of them at once under load (`soak`).
//!
//! For each fault the suite checks what a request gets when no token is usable (a typed error
//! naming the cause, the endpoint's host, and no secret), that a still-usable token keeps being
//! served while the fault lasts, that backoff bounds the token requests (counted at the
//! server), and that no rotated refresh token is lost (the server never sees a spent one, and
//! the store ends with the one the server accepts).
//!
//! Real time, with generous margins: paused time cannot drive a real socket.

mod cases;
#[path = "../sources/common.rs"]
mod common;
mod server;
mod soak;
