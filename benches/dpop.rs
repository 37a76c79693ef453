//! What a DPoP-bound request costs, apart from the bearer fast path (which DPoP does not
//! touch: a DPoP-bound token never takes the fast path, and the fast path reads no binding).
//!
//! - `proof/*`: one `Dpop::proof` (a `jti` from the CSPRNG, `iat`, the claims' JSON, base64,
//!   one signature), per algorithm, with `ath` hashed in the call as a custom source would.
//! - `raw_signature/ES256`: aws-lc-rs signing a proof-sized message, nothing else.
//! - `layer/*`: a request through `BearerAuthLayer` with a fresh DPoP-bound token over a no-op
//!   service, at 1 thread, driven as `fast_path` drives its rows: the per-request signature,
//!   the `Authorization` value and `ath` prebuilt per token, the named future (no copy, no
//!   box: without `replay_on_401` a nonce challenge is answered on the next request). Next to
//!   it, `bearer_auth/https` and the `limit/https` of `fast_path`.
//!
//!     cargo bench --bench dpop --features dpop,aws-lc-rs   # the raw row signs with aws-lc-rs
//!
//! Token: 800 bytes. Keys: P-256 (ES256), RSA 2048 (RS256, PS256).

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Uri};
use support::{HTTPS, NoOp, runtime, through_runtime, token_value};
use tower::Layer;
use tower_bearer::dpop::{Dpop, DpopKey};
use tower_bearer::{BearerAuthLayer, Error, Token, TokenCache, TokenSource};

/// A fixed token, DPoP-bound to `dpop`.
struct BoundToken {
    value: String,
    dpop: Dpop,
}

impl TokenSource for BoundToken {
    async fn fetch(&self) -> Result<Token, Error> {
        Ok(Token::new(self.value.clone())
            .with_expires_in(Duration::from_secs(24 * 3600))
            .with_dpop(self.dpop.clone()))
    }
}

fn keys() -> Vec<DpopKey> {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/rsa_pkcs8.pem"
    ))
    .unwrap();
    vec![
        DpopKey::generate().unwrap(),
        DpopKey::rs256_pem(&pem).unwrap(),
        DpopKey::ps256_pem(&pem).unwrap(),
    ]
}

fn dpop(c: &mut Criterion) {
    let token = token_value();
    let uri = Uri::from_static(HTTPS);
    let mut group = c.benchmark_group("dpop");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for key in keys() {
        let dpop = Dpop::new(key.clone());
        group.bench_function(format!("proof/{}", key.algorithm()), |b| {
            b.iter(|| {
                black_box(
                    dpop.proof(&Method::GET, &uri, Some(black_box(&token)))
                        .unwrap(),
                )
            })
        });
    }

    // The signature alone, over a message the size of a proof's header and claims: what is
    // left of `proof/ES256` once this is taken away is the work around it.
    let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let message = vec![b'e'; 420];
    group.bench_function("raw_signature/ES256", |b| {
        b.iter(|| black_box(pair.sign(&rng, black_box(&message)).unwrap()))
    });

    let rt = runtime(1);
    for key in keys() {
        let cache = TokenCache::new(BoundToken {
            value: token.clone(),
            dpop: Dpop::new(key.clone()),
        });
        rt.block_on(cache.token()).unwrap();
        let layer = BearerAuthLayer::from_cache(cache).layer(NoOp);
        group.bench_function(format!("layer/{}", key.algorithm()), |b| {
            b.iter_custom(|iters| through_runtime(&rt, 1, iters, HTTPS, &|| layer.clone()))
        });
    }
    let cache = TokenCache::new(tower_bearer::source::static_token(token.clone()));
    rt.block_on(cache.token()).unwrap();
    let bearer = BearerAuthLayer::from_cache(cache).layer(NoOp);
    group.bench_function("bearer_auth/https", |b| {
        b.iter_custom(|iters| through_runtime(&rt, 1, iters, HTTPS, &|| bearer.clone()))
    });
    let limit = support::limit(&token);
    group.bench_function("limit/https", |b| {
        b.iter_custom(|iters| through_runtime(&rt, 1, iters, HTTPS, &|| limit.clone()))
    });
    group.finish();
}

criterion_group!(benches, dpop);
criterion_main!(benches);
