//! The fleet record's binding: a token is shared only between processes whose source would
//! produce the same kind of token (its type, its DPoP key, its client certificate). Processes
//! bound otherwise never adopt each other's tokens, never wait for each other's lease, never
//! overwrite each other's record; processes bound alike still make one fetch for the fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::future::join_all;
use tower_bearer::dpop::Dpop;
use tower_bearer::fleet::RedisFleet;
use tower_bearer::http_client::ClientIdentity;
use tower_bearer::{Error, RefreshTier, Token, TokenCache, TokenSource};

use crate::support::RedisServer;
use crate::{Tiers, fleet};

/// A source that counts its fetches, names its tokens after `label`, and asks for DPoP-bound
/// tokens when it has a key, as a DPoP-configured `ClientCredentials` does.
struct Counted {
    label: &'static str,
    dpop: Option<Dpop>,
    /// The certificate it declares, as a `ClientCredentials` with `tls_client_auth` does.
    identity: Option<ClientIdentity>,
    fetches: Arc<AtomicU32>,
}

impl TokenSource for Counted {
    async fn fetch(&self) -> Result<Token, Error> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        // Long enough that concurrent caches all want a token while this one fetches.
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(Token::new(format!("{}-{n}", self.label)).with_expires_in(Duration::from_secs(3600)))
    }

    fn dpop(&self) -> Option<&Dpop> {
        self.dpop.as_ref()
    }

    fn client_identity(&self) -> Option<&ClientIdentity> {
        self.identity.as_ref()
    }
}

struct Process {
    fetches: Arc<AtomicU32>,
    tiers: Tiers,
}

impl Process {
    fn new() -> Self {
        Process {
            fetches: Arc::default(),
            tiers: Tiers::default(),
        }
    }

    /// A cache of one process of the fleet, bound as `dpop` says.
    fn cache(
        &self,
        fleet: RedisFleet,
        label: &'static str,
        dpop: Option<&Dpop>,
    ) -> TokenCache<Counted> {
        self.cache_declaring(fleet, label, dpop, None)
    }

    /// A cache of one process of the fleet, bound as `dpop` says, whose source declares
    /// `identity` as its client certificate.
    fn cache_declaring(
        &self,
        fleet: RedisFleet,
        label: &'static str,
        dpop: Option<&Dpop>,
        identity: Option<&ClientIdentity>,
    ) -> TokenCache<Counted> {
        let tiers = self.tiers.clone();
        TokenCache::builder(Counted {
            label,
            dpop: dpop.cloned(),
            identity: identity.cloned(),
            fetches: Arc::clone(&self.fetches),
        })
        .fetch_timeout(Duration::from_secs(20))
        .on_refresh(move |event| {
            if let Some(tier) = event.tier() {
                tiers.0.lock().unwrap().push(tier);
            }
        })
        .fleet(fleet)
        .build()
    }

    fn fetches(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn token(cache: &TokenCache<Counted>) -> String {
    cache.token().await.unwrap().secret().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_with_different_dpop_keys_never_adopt_each_others_tokens() {
    let redis = RedisServer::start();
    let fleet = || fleet(&redis.url()).build().unwrap();
    let (key_a, key_b) = (Dpop::generate().unwrap(), Dpop::generate().unwrap());
    let process = Process::new();

    let a = token(&process.cache(fleet(), "a", Some(&key_a))).await;
    let b = token(&process.cache(fleet(), "b", Some(&key_b))).await;
    assert!(a.starts_with("a-") && b.starts_with("b-"), "{a} {b}");
    assert_eq!(process.fetches(), 2, "key b fetched its own token");
    // Neither publication replaced the other: each key's next process shares its own.
    assert_eq!(token(&process.cache(fleet(), "a", Some(&key_a))).await, a);
    assert_eq!(token(&process.cache(fleet(), "b", Some(&key_b))).await, b);
    assert_eq!(process.fetches(), 2);
    assert_eq!(
        process.tiers.all(),
        [
            RefreshTier::Leased,
            RefreshTier::Leased,
            RefreshTier::Shared,
            RefreshTier::Shared
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_one_dpop_key_still_make_one_fetch_for_the_fleet() {
    let redis = RedisServer::start();
    let key = Dpop::generate().unwrap();
    let process = Process::new();
    let caches: Vec<_> = (0..6)
        .map(|_| process.cache(fleet(&redis.url()).build().unwrap(), "k", Some(&key)))
        .collect();
    let tokens = join_all(caches.iter().map(token)).await;
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_eq!(process.fetches(), 1, "one fetch for the fleet");
    assert_eq!(
        process.tiers.count(RefreshTier::Shared),
        5,
        "{:?}",
        process.tiers.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_process_and_a_dpop_process_never_adopt_each_others_tokens() {
    let redis = RedisServer::start();
    let base = fleet(&redis.url()).build().unwrap();
    let key = Dpop::generate().unwrap();
    // Both orders, each on its own credential: whoever publishes first, the other fetches.
    for (identity, dpop_first) in [("bearer first", false), ("dpop first", true)] {
        let process = Process::new();
        let fleet = || base.credential(identity);
        let (bearer, dpop) = if dpop_first {
            let dpop = token(&process.cache(fleet(), "dpop", Some(&key))).await;
            (token(&process.cache(fleet(), "bearer", None)).await, dpop)
        } else {
            let bearer = token(&process.cache(fleet(), "bearer", None)).await;
            (
                bearer,
                token(&process.cache(fleet(), "dpop", Some(&key))).await,
            )
        };
        assert!(
            bearer.starts_with("bearer-") && dpop.starts_with("dpop-"),
            "{identity}"
        );
        assert_eq!(token(&process.cache(fleet(), "bearer", None)).await, bearer);
        assert_eq!(
            token(&process.cache(fleet(), "dpop", Some(&key))).await,
            dpop
        );
        assert_eq!(process.fetches(), 2, "{identity}: one fetch per binding");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_record_planted_under_a_dpop_key_is_not_adopted() {
    let redis = RedisServer::start();
    let fleet = || fleet(&redis.url()).build().unwrap();
    let key = Dpop::generate().unwrap();
    let process = Process::new();
    token(&process.cache(fleet(), "dpop", Some(&key))).await;
    let bearer = token(&process.cache(fleet(), "bearer", None)).await;
    // Copy the Bearer record over the DPoP one (as a downgrade attempt, or an old version
    // of the crate writing there would): the DPoP process does not take it.
    let base = fleet().key_base().to_owned();
    let scan = redis.cli(&["--scan", "--pattern", &format!("{base}:token:*")]);
    let dpop_key = scan
        .lines()
        .next()
        .expect("the DPoP record has a key of its own");
    let record = redis.cli(&["GET", &format!("{base}:token")]);
    redis.cli(&["SET", dpop_key, record.trim_end()]);
    let dpop = token(&process.cache(fleet(), "dpop", Some(&key))).await;
    assert_ne!(dpop, bearer);
    assert!(dpop.starts_with("dpop-"), "{dpop}");
    assert_eq!(process.fetches(), 3);
}

/// A new self-signed client certificate.
fn identity() -> ClientIdentity {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    ClientIdentity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_different_client_certificates_never_adopt_each_others_tokens() {
    let redis = RedisServer::start();
    let (cert_a, cert_b) = (identity(), identity());
    let bound =
        |cert: &ClientIdentity| fleet(&redis.url()).certificate_bound(cert).build().unwrap();
    let process = Process::new();
    let a = token(&process.cache(bound(&cert_a), "a", None)).await;
    let b = token(&process.cache(bound(&cert_b), "b", None)).await;
    let unbound = token(&process.cache(fleet(&redis.url()).build().unwrap(), "u", None)).await;
    assert!(a.starts_with("a-") && b.starts_with("b-") && unbound.starts_with("u-"));
    assert_eq!(token(&process.cache(bound(&cert_a), "a", None)).await, a);
    assert_eq!(process.fetches(), 3);
}

/// The certificate a source authenticates with binds the fleet's tokens by itself, with no
/// `certificate_bound`: processes declaring other certificates (or none) fetch their own;
/// processes declaring the same one share a token; a certificate named to the fleet wins
/// over the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_a_source_declares_binds_the_fleets_tokens() {
    let redis = RedisServer::start();
    let fleet = || fleet(&redis.url()).build().unwrap();
    let (cert_a, cert_b) = (identity(), identity());
    let process = Process::new();
    let a = token(&process.cache_declaring(fleet(), "a", None, Some(&cert_a))).await;
    let b = token(&process.cache_declaring(fleet(), "b", None, Some(&cert_b))).await;
    let unbound = token(&process.cache(fleet(), "u", None)).await;
    assert!(a.starts_with("a-") && b.starts_with("b-") && unbound.starts_with("u-"));
    assert_eq!(
        process.fetches(),
        3,
        "three certificates (or none), three tokens"
    );

    let again = token(&process.cache_declaring(fleet(), "a", None, Some(&cert_a))).await;
    assert_eq!(again, a, "the same certificate adopts the shared token");
    let named = crate::fleet(&redis.url())
        .certificate_bound(&cert_a)
        .build()
        .unwrap();
    let overridden = token(&process.cache_declaring(named, "x", None, Some(&cert_b))).await;
    assert_eq!(
        overridden, a,
        "the fleet's certificate wins over the source's"
    );
    assert_eq!(process.fetches(), 3);
}

/// A new self-signed client certificate and its key, in PEM.
fn certificate_pem() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Replace `path` as cert-manager and the kubelet do: write beside it, then rename over it.
fn replace(path: &std::path::Path, content: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, content).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// A rotating identity (`ClientIdentity::from_files`) binds the fleet's tokens to the
/// certificate it presents now, whether it is named to the fleet or declared by the source:
/// after its files are replaced, a token bound to the old certificate is no longer adopted,
/// and processes presenting the new one share a new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_certificate_rotation_tokens_bound_to_the_old_certificate_are_not_adopted() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!(
        "tower-bearer-fleet-rotation-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    let (old_cert, old_key) = certificate_pem();
    replace(&cert_path, &old_cert);
    replace(&key_path, &old_key);
    let rotating = ClientIdentity::from_files(&cert_path, &key_path).unwrap();
    // One fleet, built before the rotation, for both sides of it.
    let named_fleet = fleet(&redis.url())
        .certificate_bound(&rotating)
        .build()
        .unwrap();
    let named = || named_fleet.clone();
    let process = Process::new();
    let old = token(&process.cache(named(), "old", None)).await;
    let old_fixed = ClientIdentity::from_pem(old_cert.as_bytes(), old_key.as_bytes()).unwrap();
    let declared = token(&process.cache_declaring(
        fleet(&redis.url()).build().unwrap(),
        "d",
        None,
        Some(&old_fixed),
    ))
    .await;
    assert_eq!(
        declared, old,
        "the old certificate, from files or not, shares one token"
    );

    let (new_cert, new_key) = certificate_pem();
    replace(&cert_path, &new_cert);
    replace(&key_path, &new_key);
    let new = token(&process.cache(named(), "new", None)).await;
    assert!(
        new.starts_with("new-"),
        "a token bound to the old certificate was adopted after the rotation: {new}"
    );
    let by_source = token(&process.cache_declaring(
        fleet(&redis.url()).build().unwrap(),
        "s",
        None,
        Some(&rotating),
    ))
    .await;
    assert_eq!(
        by_source, new,
        "the rotated identity declared by a source shares the new token"
    );
    let new_fixed = ClientIdentity::from_pem(new_cert.as_bytes(), new_key.as_bytes()).unwrap();
    let fixed = token(
        &process.cache(
            fleet(&redis.url())
                .certificate_bound(&new_fixed)
                .build()
                .unwrap(),
            "f",
            None,
        ),
    )
    .await;
    assert_eq!(fixed, new);
    assert_eq!(process.fetches(), 2, "one token per certificate");
    let _ = std::fs::remove_dir_all(dir);
}
