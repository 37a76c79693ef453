//! No copy of a private key's DER is left in freed memory by the types that hold one: a
//! `ClientIdentity` (mutual TLS) and a `DpopKey` (DPoP), from PEM to drop.
//!
//! The global allocator of this test binary looks for a window of each key's private part in
//! every block it frees. What aws-lc-rs holds is in C memory, which aws-lc wipes on free and
//! this allocator does not see; the copies the docs name as not wiped (`private_key()`,
//! reqwest's identity) are not made here.
#![cfg(all(feature = "dpop", feature = "reqwest"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tower_bearer::dpop::DpopKey;
use tower_bearer::http_client::ClientIdentity;

static SCANNING: AtomicBool = AtomicBool::new(false);
static FREED_WITH_KEY: AtomicUsize = AtomicUsize::new(0);
/// The bytes looked for (a fixed array: nothing allocates while the allocator reads it).
static NEEDLE: Mutex<([u8; 32], bool)> = Mutex::new(([0; 32], false));

/// The system allocator, zeroing each block it hands out (so every byte of a freed block has
/// been written), counting freed blocks that still hold the needle.
struct Scanning;

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::Relaxed)
            && let Ok(needle) = NEEDLE.try_lock()
            && needle.1
        {
            // SAFETY: the block is live until `System.dealloc` below, and zeroed at allocation.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(needle.0.len()).any(|w| w == needle.0) {
                FREED_WITH_KEY.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// 32 bytes of the private part of the key in `pem`: the scalar after `04 20` in an EC key,
/// the middle of the private exponent in an RSA one.
fn private_window(pem: &[u8]) -> [u8; 32] {
    let key = PrivateKeyDer::from_pem_slice(pem).unwrap();
    let der = key.secret_der();
    let at = match der.windows(2).position(|w| w == [0x04, 0x20]) {
        Some(at) if der.len() < 300 => at + 2,
        _ => 400,
    };
    der[at..at + 32].try_into().unwrap()
}

/// One scan at a time: the tests of this binary run on parallel threads.
static SERIAL: Mutex<()> = Mutex::new(());

/// Frees counted while `build` builds and drops a key holder from `pem`.
fn freed_with_key(pem: &[u8], build: impl FnOnce(&[u8])) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    *NEEDLE.lock().unwrap() = (private_window(pem), true);
    FREED_WITH_KEY.store(0, Ordering::Relaxed);
    SCANNING.store(true, Ordering::Relaxed);
    build(pem);
    SCANNING.store(false, Ordering::Relaxed);
    FREED_WITH_KEY.load(Ordering::Relaxed)
}

#[test]
fn the_scan_finds_an_unwiped_key() {
    // The same DER through rustls' type, which does not wipe: the scan must see it.
    let found = freed_with_key(&read("ec_pkcs8.pem"), |pem| {
        drop(PrivateKeyDer::from_pem_slice(pem).unwrap());
    });
    assert!(found > 0);
}

#[test]
fn no_copy_of_a_client_identity_key_is_left_in_freed_memory() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (chain, pem) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
    drop((key, cert));
    let found = freed_with_key(&pem, |pem| {
        let identity = ClientIdentity::from_pem(&chain, pem).unwrap();
        let clone = identity.clone();
        assert_eq!(clone.cert_chain().len(), 1);
        drop((identity, clone));
    });
    assert_eq!(found, 0);
}

#[test]
fn no_copy_of_a_dpop_key_is_left_in_freed_memory() {
    type Load = fn(&[u8]) -> DpopKey;
    let cases: [(&str, Load); 3] = [
        ("ec_pkcs8.pem", |pem| DpopKey::es256_pem(pem).unwrap()),
        ("rsa_pkcs8.pem", |pem| DpopKey::rs256_pem(pem).unwrap()),
        ("rsa_pkcs1.pem", |pem| DpopKey::ps256_pem(pem).unwrap()),
    ];
    for (name, load) in cases {
        let found = freed_with_key(&read(name), |pem| drop(load(pem)));
        assert_eq!(found, 0, "{name}");
    }
}
