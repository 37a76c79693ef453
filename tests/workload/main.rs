//! Workload identity sources against local stand-ins for the platforms: token files written
//! by the tests (and rotated as the kubelet rotates them), and token endpoints, metadata
//! servers and OIDC endpoints on 127.0.0.1 that check what the platform docs require. No test
//! sends a packet anywhere else, and none sets a process-wide environment variable: every
//! source takes its endpoint from a builder or from an injected environment.

#[path = "../sources/common.rs"]
mod common;

mod support;

#[cfg(all(feature = "jwt", feature = "dpop"))]
#[path = "../support/kms.rs"]
mod kms;

mod azure;
mod chain;
#[cfg(all(unix, feature = "executable"))]
mod executable;
mod github;
mod managed;
mod redaction;
#[cfg(all(feature = "jwt", feature = "dpop"))]
mod signer;
mod token_file;
