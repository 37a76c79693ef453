//! `AssertionSigner`: client assertions signed by a key that lives behind a local HTTP
//! endpoint (a KMS stand-in), and by an in-process key through the same trait; the token
//! endpoint stand-in verifies every signature and claim.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_bearer::secret::ClientSecret;
use tower_bearer::source::assertion::SigningKey;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{ErrorKind, TokenSource};

use crate::kms::Kms;
use crate::support::{StandIn, oauth_error, token};

const KEY: &[u8] = b"kms-held-key-0123456789abcdef-0123";

/// The KMS, holding `KEY`.
async fn hs256_kms() -> Kms {
    Kms::start(|input| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, KEY);
        hmac::sign(&key, input).as_ref().to_vec()
    })
    .await
}

/// The token endpoint: verifies the assertion's HS256 signature and its claims.
async fn verifying_token_endpoint() -> StandIn {
    StandIn::start(|seen, _| {
        let form = seen.form();
        let jwt = &form["client_assertion"];
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, KEY);
        if hmac::verify(&key, input.as_bytes(), &signature).is_err() {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        let part = |i: usize| -> serde_json::Value {
            serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(input.split('.').nth(i).unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        let (header, claims) = (part(0), part(1));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let url = format!(
            "http://{}{}",
            seen.headers["host"].to_str().unwrap(),
            seen.uri.path()
        );
        let ok = header["alg"] == "HS256"
            && claims["iss"] == "kms-client"
            && claims["sub"] == "kms-client"
            && claims["aud"] == url.as_str()
            && claims["exp"].as_u64().unwrap() > now
            && claims["jti"].as_str().is_some_and(|j| j.len() == 32)
            && form["client_assertion_type"]
                == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        if !ok {
            return (StatusCode::BAD_REQUEST, "bad claims").into_response();
        }
        token(&format!(
            "signed-by-{}",
            header["kid"].as_str().unwrap_or("none")
        ))
    })
    .await
}

#[tokio::test]
async fn a_signer_behind_an_http_endpoint_signs_each_client_assertion() {
    let kms = hs256_kms().await;
    let token_endpoint = verifying_token_endpoint().await;
    let signer = kms.signer("HS256", Some("kms-key-1"));
    let source = ClientCredentials::builder(
        token_endpoint.url("/token"),
        ClientAuth::private_key_jwt_signed_by("kms-client", signer),
    )
    .build()
    .unwrap();
    assert_eq!(
        source.fetch().await.unwrap().secret(),
        "signed-by-kms-key-1"
    );
    assert_eq!(
        source.fetch().await.unwrap().secret(),
        "signed-by-kms-key-1"
    );
    // One signature per assertion, each over a different input (new jti, new iat).
    let signed = kms.inputs();
    assert_eq!(signed.len(), 2);
    assert_ne!(signed[0], signed[1]);
}

#[tokio::test]
async fn an_in_process_key_is_one_signer_and_a_failing_kms_is_a_typed_error() {
    let token_endpoint = verifying_token_endpoint().await;
    let key = SigningKey::hs256(&ClientSecret::new(std::str::from_utf8(KEY).unwrap()))
        .unwrap()
        .with_key_id("local");
    let source = ClientCredentials::builder(
        token_endpoint.url("/token"),
        ClientAuth::private_key_jwt_signed_by("kms-client", key),
    )
    .build()
    .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "signed-by-local");

    let down = hs256_kms().await;
    down.fail(true);
    let source = ClientCredentials::builder(
        token_endpoint.url("/token"),
        ClientAuth::private_key_jwt_signed_by("kms-client", down.signer("HS256", None)),
    )
    .build()
    .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    // Nothing reached the token endpoint without a signature.
    assert_eq!(token_endpoint.seen().len(), 1);
}

/// A token endpoint that accepts ES256 assertions signed by the key it currently trusts.
async fn es256_endpoint(trusted: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> StandIn {
    StandIn::start(move |seen, i| {
        let form = seen.form();
        let (input, signature) = form["client_assertion"].rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let public = trusted.lock().unwrap().clone();
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            public,
        );
        match key.verify(input.as_bytes(), &signature) {
            Ok(()) => token(&format!("es256-{i}")),
            Err(_) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        }
    })
    .await
}

#[tokio::test]
async fn a_rotated_key_file_signs_the_next_assertion_and_the_cached_token_stays() {
    use tower_bearer::TokenCache;
    use tower_bearer::source::signer::KeyFile;

    let first = rcgen::KeyPair::generate().unwrap();
    let second = rcgen::KeyPair::generate().unwrap();
    let dir = crate::support::temp_dir("key-file");
    let path = dir.join("client-key.pem");
    std::fs::write(&path, first.serialize_pem()).unwrap();
    let trusted = std::sync::Arc::new(std::sync::Mutex::new(first.public_key_raw().to_vec()));
    let endpoint = es256_endpoint(trusted.clone()).await;
    let source = ClientCredentials::builder(
        endpoint.url("/token"),
        ClientAuth::private_key_jwt_signed_by("client", KeyFile::es256(&path).with_key_id("k")),
    )
    .build()
    .unwrap();
    let cache = TokenCache::new(source);
    let before = cache.token().await.unwrap();
    assert_eq!(before.secret(), "es256-0");

    // The key is rotated: the server now trusts only the new one.
    crate::support::replace_file(&path, &second.serialize_pem());
    *trusted.lock().unwrap() = second.public_key_raw().to_vec();
    // The cache and its token are untouched by the rotation.
    assert_eq!(cache.token().await.unwrap().secret(), "es256-0");
    assert_eq!(endpoint.seen().len(), 1);
    // The next token request is signed with the new key, and accepted.
    cache.invalidate(&before);
    assert_eq!(cache.token().await.unwrap().secret(), "es256-1");

    // A rotated file that is not a key is a typed error, never the old key.
    let fresh = cache.current().unwrap();
    crate::support::replace_file(&path, "not a key");
    cache.invalidate(&fresh);
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(endpoint.seen().len(), 2);
}
