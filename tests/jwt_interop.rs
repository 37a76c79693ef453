//! The crate writes and signs its JWTs itself, with its crypto provider: an independent
//! implementation must accept them. jsonwebtoken checks every algorithm the crate signs with,
//! through both of its backends (aws-lc-rs and the RustCrypto crates), called directly (not
//! through jsonwebtoken's process-wide default).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use jsonwebtoken::crypto::{CryptoProvider, aws_lc, rust_crypto};
use jsonwebtoken::{Algorithm, DecodingKey};
use tower_bearer::TokenSource;
use tower_bearer::http_client::{HttpClient, HttpFuture, HttpRequest};
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::assertion::{Assertion, SigningKey};
use tower_bearer::source::{ClientAuth, ClientCredentials, JwtBearer};

const HMAC_KEY: &str = "both-backends-hmac-key-0123456789";

/// Answers every token request and keeps the JWT it carried.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl HttpClient for Capture {
    fn execute(&self, request: HttpRequest) -> HttpFuture<'_> {
        let jwt = form_urlencoded::parse(request.body())
            .find(|(name, _)| name == "client_assertion" || name == "assertion")
            .map(|(_, value)| value.into_owned())
            .expect("a JWT in the request");
        self.0.lock().unwrap().push(jwt);
        Box::pin(async {
            let body = Bytes::from_static(br#"{"access_token":"tok","expires_in":60}"#);
            Ok(http::Response::new(body))
        })
    }
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Check the signature of `jwt` with `backend`'s verifier, without jsonwebtoken's default.
fn verifies(backend: &CryptoProvider, jwt: &str, alg: Algorithm, key: &DecodingKey) -> bool {
    use base64::Engine as _;
    let (message, signature) = jwt.rsplit_once('.').unwrap();
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    let verifier = (backend.verifier_factory)(&alg, key).unwrap();
    verifier.verify(message.as_bytes(), &signature).is_ok()
}

#[test]
fn assertions_verify_with_both_jsonwebtoken_backends() {
    let backends: [(&str, &CryptoProvider); 2] = [
        ("aws_lc", &aws_lc::DEFAULT_PROVIDER),
        ("rust_crypto", &rust_crypto::DEFAULT_PROVIDER),
    ];

    let capture = Capture::default();
    let hmac = ClientSecret::new(HMAC_KEY);
    let rsa_public = || DecodingKey::from_rsa_pem(&pem("rsa_public.pem")).unwrap();
    let private_key_jwt = |key| ClientAuth::private_key_jwt("cid", key);
    let sources = [
        (
            private_key_jwt(SigningKey::rs256_pem(&pem("rsa_pkcs1.pem")).unwrap()),
            Algorithm::RS256,
            rsa_public(),
        ),
        (
            private_key_jwt(SigningKey::ps256_pem(&pem("rsa_pkcs8.pem")).unwrap()),
            Algorithm::PS256,
            rsa_public(),
        ),
        (
            private_key_jwt(SigningKey::es256_pem(&pem("ec_pkcs8.pem")).unwrap()),
            Algorithm::ES256,
            DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap(),
        ),
        (
            ClientAuth::client_secret_jwt("cid", &hmac).unwrap(),
            Algorithm::HS256,
            DecodingKey::from_secret(HMAC_KEY.as_bytes()),
        ),
    ];

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut expected = Vec::new();
    for (auth, alg, public) in sources {
        let source = ClientCredentials::builder("https://auth.example.com/token", auth)
            .build_with(capture.clone())
            .unwrap();
        assert_eq!(rt.block_on(source.fetch()).unwrap().secret(), "tok");
        expected.push((alg, public));
    }
    // The JWT-bearer grant signs through the same path.
    let grant = JwtBearer::builder(
        "https://auth.example.com/token",
        Assertion::new(SigningKey::hs256(&hmac).unwrap(), "robot@example.com"),
    )
    .build_with(capture.clone())
    .unwrap();
    assert_eq!(rt.block_on(grant.fetch()).unwrap().secret(), "tok");
    expected.push((
        Algorithm::HS256,
        DecodingKey::from_secret(HMAC_KEY.as_bytes()),
    ));

    let jwts = capture.0.lock().unwrap().clone();
    assert_eq!(jwts.len(), expected.len());
    for (jwt, (alg, public)) in jwts.iter().zip(&expected) {
        assert_eq!(jsonwebtoken::decode_header(jwt).unwrap().alg, *alg);
        for (name, backend) in backends {
            assert!(verifies(backend, jwt, *alg, public), "{alg:?} with {name}");
        }
    }
}
