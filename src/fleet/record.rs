//! What the fleet keeps in Redis: the key names of a credential, the shared token record, the
//! refresh-token value, and their optional encryption.
//!
//! Every value starts with a short clear-text head the Lua scripts can compare without
//! decrypting, then the payload:
//!
//! - shared token, under `…:token`: `v1.<mode>.<id>.<payload>`, `id` random per publication
//!   (what compare-and-delete compares);
//! - refresh token, under `…:refresh`: `v1.<mode>.<fingerprint>.<payload>`, the fingerprint a
//!   keyed hash of the token (what compare-and-swap compares).
//!
//! `mode` is `p` (the payload is the plain bytes, base64url) or `e` (key id ‖ nonce ‖
//! AES-256-GCM ciphertext ‖ tag, base64url, with the Redis key name and the head as associated
//! data, so a value cannot be moved to another key or credential; the key id names which of
//! the fleet's keys sealed it, so keys can rotate).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;
use crate::crypto::{self, Aes256Gcm, HmacSha256, NONCE_LEN, TAG_LEN};

/// The names of one credential's keys. They share the hash tag `{<hash>}`, so in a Redis
/// Cluster every key of a credential lives in one slot (and one script may touch them all).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `<prefix>:{<hash>}`, shown in logs and `Debug` (it names no secret).
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) lease: String,
    pub(crate) channel: String,
    pub(crate) refresh: String,
    pub(crate) refresh_lock: String,
}

/// What a token is bound to: its type and the key or certificate it was issued for. Processes
/// share a token only when their bindings are equal: a DPoP cache never takes a plain Bearer
/// token (the downgrade its source refuses), and a process never takes a token bound to a key
/// or certificate it does not hold (every request with it would be refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Binding {
    /// `Bearer` or `DPoP` (RFC 9449).
    pub(crate) token_type: TokenType,
    /// The DPoP key's JWK thumbprint (RFC 7638), the token's `cnf.jkt`.
    pub(crate) jkt: Option<String>,
    /// The client certificate's SHA-256 thumbprint (RFC 8705 §3.1), the token's `cnf.x5t#S256`.
    pub(crate) x5t_s256: Option<String>,
}

/// The `token_type` a binding gives: RFC 6750's `Bearer`, or RFC 9449's `DPoP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TokenType {
    #[default]
    Bearer,
    #[serde(rename = "DPoP")]
    Dpop,
}

impl Binding {
    /// A plain Bearer token, bound to nothing: what a record without a binding holds.
    fn is_unbound(&self) -> bool {
        *self == Binding::default()
    }

    /// A short tag naming this binding in key names (a hash: thumbprints are public, but
    /// long).
    fn tag(&self) -> String {
        let token_type: &[u8] = match self.token_type {
            TokenType::Bearer => b"Bearer",
            TokenType::Dpop => b"DPoP",
        };
        fn part(p: &Option<String>) -> &[u8] {
            p.as_deref().unwrap_or("-").as_bytes()
        }
        let hash = crypto::sha256(&[
            b"tower-bearer binding v1\0",
            token_type,
            &[0],
            part(&self.jkt),
            &[0],
            part(&self.x5t_s256),
        ]);
        hex(&hash[..8])
    }
}

/// The keys of one binding of a credential: the shared token, its lease and its publication
/// channel. Each binding has its own, so processes bound differently never wait for, adopt
/// or overwrite each other's tokens; all are under the credential's hash tag.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) binding: Binding,
    pub(crate) token: String,
    pub(crate) lease: String,
    pub(crate) channel: String,
}

impl Keys {
    /// The keys of `binding`'s tokens. A plain Bearer token keeps the credential's own keys.
    pub(crate) fn slot(&self, binding: Binding) -> Slot {
        let suffix = match binding.is_unbound() {
            true => String::new(),
            false => format!(":{}", binding.tag()),
        };
        Slot {
            token: format!("{}{suffix}", self.token),
            lease: format!("{}{suffix}", self.lease),
            channel: format!("{}{suffix}", self.channel),
            binding,
        }
    }

    /// The keys of the credential `identity` under `prefix`: the identity is hashed
    /// (SHA-256), so neither it nor anything secret in it is ever stored.
    pub(crate) fn new(prefix: &str, identity: &str) -> Keys {
        let hash = crypto::sha256(&[b"tower-bearer credential v1\0", identity.as_bytes()]);
        let hash = hex(&hash[..16]);
        let base = format!("{prefix}:{{{hash}}}");
        Keys {
            token: format!("{base}:token"),
            lease: format!("{base}:lease"),
            channel: format!("{base}:published"),
            refresh: format!("{base}:refresh"),
            refresh_lock: format!("{base}:refresh-lock"),
            base,
        }
    }
}

/// A 256-bit key that encrypts tokens at rest in Redis (AES-256-GCM, from the crypto provider:
/// ring or aws-lc-rs).
///
/// Every process of the fleet needs the same key. From your 32 bytes, HKDF-SHA256 (RFC 5869)
/// derives three independent values under distinct labels: the AES-256-GCM key, the HMAC-SHA256
/// key of the refresh tokens' fingerprints, and a public key id that every encrypted value
/// carries, so that keys can rotate: give the fleet the new key as its
/// [`encryption_key`](crate::fleet::RedisFleetBuilder::encryption_key) and the old one as a
/// [`previous_encryption_key`](crate::fleet::RedisFleetBuilder::previous_encryption_key), and
/// values written under either are read while new ones are written under the new key.
///
/// A value that does not decrypt (written under a key this process does not hold, written in
/// clear while a key is set, tampered with) is treated as absent for the shared token, and as
/// an error for a stored refresh token. Keep the key out of Redis: an environment variable, a
/// secrets manager, a file.
///
/// `Debug` never shows the key.
///
/// ```
/// use tower_bearer::fleet::EncryptionKey;
///
/// // 32 random bytes, base64 (standard or URL-safe alphabet), e.g. `openssl rand -base64 32`.
/// let key = EncryptionKey::from_base64("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=")?;
/// assert_eq!(key.id().len(), 8); // names the key in Redis, reveals nothing of it
/// # Ok::<_, tower_bearer::Error>(())
/// ```
#[derive(Clone)]
pub struct EncryptionKey {
    /// Derived from the key: every process holding it agrees on it.
    id: [u8; KEY_ID_LEN],
    aead: Arc<Aes256Gcm>,
    /// Keys the refresh tokens' fingerprints, so a fingerprint in Redis reveals nothing.
    mac: Arc<HmacSha256>,
}

/// The length of a key id, in bytes, at the start of every encrypted payload.
const KEY_ID_LEN: usize = 4;

/// The HKDF salt of fleet keys, and the labels of what is derived from them.
const HKDF_SALT: &[u8] = b"tower-bearer fleet encryption key v1";
const INFO_AEAD: &[u8] = b"tower-bearer fleet: AES-256-GCM key";
const INFO_MAC: &[u8] = b"tower-bearer fleet: HMAC-SHA256 fingerprint key";
const INFO_ID: &[u8] = b"tower-bearer fleet: key id";

impl EncryptionKey {
    /// A key from 32 bytes of key material (random: `openssl rand 32`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 32 {
            return Err(Error::config(format!(
                "a fleet encryption key is 32 bytes, not {}",
                bytes.len()
            )));
        }
        let derive = |info: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            crypto::hkdf_sha256(HKDF_SALT, bytes, info, &mut key[..]);
            key
        };
        let mut id = [0u8; KEY_ID_LEN];
        crypto::hkdf_sha256(HKDF_SALT, bytes, INFO_ID, &mut id);
        Ok(EncryptionKey {
            id,
            aead: Arc::new(Aes256Gcm::new(&derive(INFO_AEAD))),
            mac: Arc::new(HmacSha256::new(&derive(INFO_MAC)[..])),
        })
    }

    /// A key from 32 bytes written in base64 (standard or URL-safe, padded or not).
    pub fn from_base64(encoded: &str) -> Result<Self, Error> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let encoded = encoded.trim();
        let unpadded = encoded.trim_end_matches('=');
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .or_else(|_| URL_SAFE.decode(encoded))
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded))
                .map_err(|_| Error::config("the fleet encryption key is not valid base64"))?,
        );
        Self::from_bytes(&bytes)
    }

    /// A new random key, for tests and for programs that share it some other way.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random(&mut bytes[..]);
        Self::from_bytes(&bytes[..]).expect("32 bytes")
    }

    /// The key's id (8 hex digits), derived from it: what encrypted values in Redis name it
    /// by, and what logs show. It reveals nothing of the key.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// `id ‖ nonce ‖ AES-256-GCM(plain) ‖ tag`.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce);
        let mut body = Vec::with_capacity(plain.len() + TAG_LEN);
        body.extend_from_slice(plain);
        self.aead.seal(nonce, aad, &mut body);
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + body.len());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    /// The plain bytes of `nonce ‖ ciphertext ‖ tag` (after the key id), if they open.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut body = Zeroizing::new(body.to_vec());
        let len = self.aead.open(nonce, aad, &mut body)?.len();
        body.truncate(len);
        Some(body)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// A fleet's keys: one to write with, and the ones it still reads (the current one, then the
/// previous ones, during a rotation).
#[derive(Clone, Debug)]
pub(crate) struct Keyring {
    current: EncryptionKey,
    previous: Arc<[EncryptionKey]>,
}

impl Keyring {
    pub(crate) fn new(current: EncryptionKey, previous: Vec<EncryptionKey>) -> Keyring {
        let previous = previous
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Keyring { current, previous }
    }

    fn find(&self, id: &[u8]) -> Option<&EncryptionKey> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|key| key.id == id)
    }

    /// Every key this fleet reads, the current one first.
    fn all(&self) -> impl Iterator<Item = &EncryptionKey> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }
}

/// Fills `out` from the OS's CSPRNG (through the crypto provider).
pub(crate) fn random(out: &mut [u8]) {
    crypto::fill_random(out).expect("the OS random number generator failed");
}

/// 128 random bits in hex: lease owners and publication ids.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    random(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch on the wall clock: the only clock processes share.
pub(crate) fn wall_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seals or encodes `plain` under `key` and `head`: `<head>.<payload>`, where `head` is
/// `v1.<mode>.<tag>` and is bound to the payload as associated data.
fn encode(cipher: Option<&Keyring>, key: &str, tag: &str, plain: &[u8]) -> Zeroizing<String> {
    let mode = if cipher.is_some() { "e" } else { "p" };
    let head = format!("v1.{mode}.{tag}");
    let payload = match cipher {
        Some(keys) => {
            Zeroizing::new(URL_SAFE_NO_PAD.encode(keys.current.seal(&aad(key, &head), plain)))
        }
        None => Zeroizing::new(URL_SAFE_NO_PAD.encode(plain)),
    };
    let mut out = Zeroizing::new(String::with_capacity(head.len() + 1 + payload.len()));
    out.push_str(&head);
    out.push('.');
    out.push_str(&payload);
    out
}

/// The tag and plain bytes of a value written by [`encode`] under `key`, or why not.
fn decode<'v>(
    cipher: Option<&Keyring>,
    key: &str,
    value: &'v str,
) -> Result<(&'v str, Zeroizing<Vec<u8>>), Unreadable> {
    let mut parts = value.splitn(4, '.');
    let (Some("v1"), Some(mode), Some(tag), Some(payload)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Unreadable::Format);
    };
    let bytes = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Unreadable::Format)?,
    );
    let plain = match (mode, cipher) {
        ("p", None) => bytes,
        ("e", Some(keys)) => {
            let head = &value[..value.len() - payload.len() - 1];
            let (id, sealed) = bytes
                .split_at_checked(KEY_ID_LEN)
                .ok_or(Unreadable::Format)?;
            keys.find(id)
                .ok_or(Unreadable::UnknownKey)?
                .open(&aad(key, head), sealed)
                .ok_or(Unreadable::Decrypt)?
        }
        ("p", Some(_)) => return Err(Unreadable::Plain),
        ("e", None) => return Err(Unreadable::NoKey),
        _ => return Err(Unreadable::Format),
    };
    Ok((tag, plain))
}

fn aad(key: &str, head: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(key.len() + 1 + head.len());
    aad.extend_from_slice(key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(head.as_bytes());
    aad
}

/// Why a value in Redis could not be read. Never carries the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    Format,
    Decrypt,
    UnknownKey,
    Plain,
    NoKey,
    Binding,
}

impl Unreadable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unreadable::Format => "it is not in tower-bearer's format",
            Unreadable::Decrypt => {
                "it does not decrypt with the encryption key it names (tampered with, refused)"
            }
            Unreadable::UnknownKey => {
                "it is encrypted under a key this process does not hold (another key id: give \
                 the fleet that key as a previous_encryption_key during a rotation)"
            }
            Unreadable::Plain => {
                "it is stored in clear while this process has an encryption key (refused)"
            }
            Unreadable::NoKey => "it is encrypted and this process has no encryption key",
            Unreadable::Binding => {
                "its token is bound otherwise than this process's (another token type, DPoP key \
                 or client certificate): never adopted"
            }
        }
    }
}

/// The token the fleet shares: the secret, and its lifetime on the wall clock as the process
/// that fetched it computed it, anchored at the moment its fetch started.
pub(crate) struct SharedToken {
    /// Random per publication: compare-and-delete compares it.
    pub(crate) id: String,
    pub(crate) secret: Zeroizing<String>,
    pub(crate) sent_at_ms: u64,
    pub(crate) expires_at_ms: Option<u64>,
    /// What the token is bound to, as the process that fetched it was.
    pub(crate) binding: Binding,
}

#[derive(Serialize, Deserialize)]
struct Payload<'a> {
    #[serde(rename = "t", borrow)]
    token: std::borrow::Cow<'a, str>,
    #[serde(rename = "s")]
    sent_at_ms: u64,
    #[serde(rename = "e")]
    expires_at_ms: Option<u64>,
    /// The binding; absent (a record of a version before bindings) means a plain Bearer token.
    #[serde(rename = "y", default)]
    token_type: TokenType,
    #[serde(rename = "j", default, skip_serializing_if = "Option::is_none", borrow)]
    jkt: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none", borrow)]
    x5t_s256: Option<std::borrow::Cow<'a, str>>,
}

impl SharedToken {
    /// The value to store under `key`.
    pub(crate) fn encode(&self, cipher: Option<&Keyring>, key: &str) -> Zeroizing<String> {
        let json = Zeroizing::new(
            serde_json::to_vec(&Payload {
                token: std::borrow::Cow::Borrowed(&self.secret),
                sent_at_ms: self.sent_at_ms,
                expires_at_ms: self.expires_at_ms,
                token_type: self.binding.token_type,
                jkt: self.binding.jkt.as_deref().map(Into::into),
                x5t_s256: self.binding.x5t_s256.as_deref().map(Into::into),
            })
            .expect("serialising a string and numbers cannot fail"),
        );
        encode(cipher, key, &self.id, &json)
    }

    /// The record stored under `slot`'s key, if its token has `slot`'s binding.
    pub(crate) fn decode(
        cipher: Option<&Keyring>,
        slot: &Slot,
        value: &str,
    ) -> Result<SharedToken, Unreadable> {
        let (id, plain) = decode(cipher, &slot.token, value)?;
        let payload: Payload<'_> =
            serde_json::from_slice(&plain).map_err(|_| Unreadable::Format)?;
        let binding = Binding {
            token_type: payload.token_type,
            jkt: payload.jkt.map(std::borrow::Cow::into_owned),
            x5t_s256: payload.x5t_s256.map(std::borrow::Cow::into_owned),
        };
        if binding != slot.binding {
            return Err(Unreadable::Binding);
        }
        Ok(SharedToken {
            id: id.to_owned(),
            secret: Zeroizing::new(payload.token.into_owned()),
            sent_at_ms: payload.sent_at_ms,
            expires_at_ms: payload.expires_at_ms,
            binding,
        })
    }

    /// How long it lives from the fetch that got it, if it expires.
    pub(crate) fn lifetime(&self) -> Option<Duration> {
        self.expires_at_ms
            .map(|exp| Duration::from_millis(exp.saturating_sub(self.sent_at_ms)))
    }
}

/// A refresh token as stored under `key`: `v1.<mode>.<fingerprint>.<payload>`.
pub(crate) fn encode_refresh(
    cipher: Option<&Keyring>,
    key: &str,
    token: &str,
) -> Zeroizing<String> {
    encode(
        cipher,
        key,
        &fingerprint(cipher, key, token),
        token.as_bytes(),
    )
}

/// The refresh token stored under `key`.
pub(crate) fn decode_refresh(
    cipher: Option<&Keyring>,
    key: &str,
    value: &str,
) -> Result<Zeroizing<String>, Unreadable> {
    let (_, plain) = decode(cipher, key, value)?;
    let text = std::str::from_utf8(&plain).map_err(|_| Unreadable::Format)?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// What compare-and-swap compares: a keyed hash of the token (HMAC-SHA256 under the current
/// encryption key's fingerprint key when there is one), never the token.
pub(crate) fn fingerprint(cipher: Option<&Keyring>, key: &str, token: &str) -> String {
    keyed_fingerprint(cipher.map(|keys| &keys.current), key, token)
}

/// The fingerprints `token` may be stored under: one per key this fleet reads (the current
/// key's first), space-separated, so that compare-and-swap still matches a token written
/// under a previous key after a rotation.
pub(crate) fn fingerprints(cipher: Option<&Keyring>, key: &str, token: &str) -> String {
    match cipher {
        Some(keys) => keys
            .all()
            .map(|k| keyed_fingerprint(Some(k), key, token))
            .collect::<Vec<_>>()
            .join(" "),
        None => keyed_fingerprint(None, key, token),
    }
}

fn keyed_fingerprint(cipher: Option<&EncryptionKey>, key: &str, token: &str) -> String {
    let unkeyed;
    let mac_key = match cipher {
        Some(cipher) => &*cipher.mac,
        None => {
            unkeyed = HmacSha256::new(b"tower-bearer refresh-token fingerprint");
            &unkeyed
        }
    };
    hex(&mac_key.sign(&[key.as_bytes(), &[0], token.as_bytes()])[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> SharedToken {
        SharedToken {
            id: random_id(),
            secret: Zeroizing::new("secret-token".into()),
            sent_at_ms: 1_000,
            expires_at_ms: Some(61_000),
            binding: Binding::default(),
        }
    }

    fn ring() -> Keyring {
        Keyring::new(EncryptionKey::generate(), Vec::new())
    }

    /// The slot of a plain Bearer token stored under `key`.
    fn slot(key: &str) -> Slot {
        Slot {
            binding: Binding::default(),
            token: key.to_owned(),
            lease: format!("{key}:lease"),
            channel: format!("{key}:published"),
        }
    }

    #[test]
    fn keys_share_one_hash_tag_and_hide_the_identity() {
        let keys = Keys::new("tb", "client-id@https://auth.example.com/token");
        let tag = &keys.base[3..];
        assert!(
            tag.starts_with('{') && tag.ends_with('}') && tag.len() == 34,
            "{tag}"
        );
        for key in [&keys.token, &keys.lease, &keys.refresh, &keys.refresh_lock] {
            assert!(key.starts_with(&keys.base));
            assert!(!key.contains("client-id") && !key.contains("example"));
        }
        assert_ne!(Keys::new("tb", "other").base, keys.base);
        assert_ne!(
            Keys::new("other", "client-id").base,
            Keys::new("tb", "client-id").base
        );
    }

    #[test]
    fn shared_tokens_round_trip_in_clear_and_encrypted() {
        let key = ring();
        for cipher in [None, Some(&key)] {
            let value = shared().encode(cipher, "k");
            let back = SharedToken::decode(cipher, &slot("k"), &value).unwrap();
            assert_eq!(&*back.secret, "secret-token");
            assert_eq!((back.sent_at_ms, back.expires_at_ms), (1_000, Some(61_000)));
            assert_eq!(back.lifetime(), Some(Duration::from_secs(60)));
        }
        let sealed = shared().encode(Some(&key), "k");
        assert!(!sealed.contains("secret-token"));
        assert!(
            !URL_SAFE_NO_PAD
                .decode(sealed.rsplit('.').next().unwrap())
                .unwrap()
                .windows(12)
                .any(|w| w == b"secret-token")
        );
    }

    #[test]
    fn values_that_do_not_belong_are_unreadable() {
        let key = ring();
        let other = ring();
        let sealed = shared().encode(Some(&key), "k");
        let clear = shared().encode(None, "k");
        let read =
            |cipher, key: &str, value: &str| SharedToken::decode(cipher, &slot(key), value).err();
        assert_eq!(
            read(Some(&other), "k", &sealed),
            Some(Unreadable::UnknownKey)
        );
        // Moved to another key: the key name is associated data.
        assert_eq!(read(Some(&key), "k2", &sealed), Some(Unreadable::Decrypt));
        assert_eq!(read(Some(&key), "k", &clear), Some(Unreadable::Plain));
        assert_eq!(read(None, "k", &sealed), Some(Unreadable::NoKey));
        // Another id in the head: the head is associated data too.
        let (head, payload) = sealed.rsplit_once('.').unwrap();
        let swapped = format!("{}.{}", &head[..head.len() - 1], payload);
        assert!(read(Some(&key), "k", &swapped).is_some());
        for garbage in [
            "",
            "v1",
            "v1.p.x",
            "v1.p.x.!!!",
            "v2.p.x.e30",
            "v1.p.x.e30",
            "\u{0}",
        ] {
            assert!(read(None, "k", garbage).is_some(), "{garbage:?}");
        }
    }

    #[test]
    fn a_record_bound_otherwise_is_never_adopted() {
        let keys = Keys::new("tb", "client");
        let dpop = |jkt: &str| Binding {
            token_type: TokenType::Dpop,
            jkt: Some(jkt.to_owned()),
            x5t_s256: None,
        };
        let cert = Binding {
            x5t_s256: Some("cert-a".into()),
            ..Binding::default()
        };
        let bindings = [Binding::default(), dpop("key-a"), dpop("key-b"), cert];
        let slots: Vec<Slot> = bindings.iter().map(|b| keys.slot(b.clone())).collect();
        // Each binding has its own keys, in the credential's hash slot; plain Bearer keeps
        // the credential's own.
        assert_eq!(slots[0].token, keys.token);
        for (i, a) in slots.iter().enumerate() {
            assert!(a.token.starts_with(&keys.base) && a.lease.starts_with(&keys.base));
            for b in &slots[i + 1..] {
                assert!(a.token != b.token && a.lease != b.lease && a.channel != b.channel);
            }
        }
        // A record read under another binding's key (planted, or copied by hand) is refused,
        // in clear and encrypted alike (without the key name moving, as AAD would catch).
        let cipher = ring();
        for cipher in [None, Some(&cipher)] {
            for written in &slots {
                let mut token = shared();
                token.binding = written.binding.clone();
                for read in &slots {
                    let moved = Slot {
                        token: written.token.clone(),
                        ..read.clone()
                    };
                    let value = token.encode(cipher, &written.token);
                    let back = SharedToken::decode(cipher, &moved, &value);
                    match written.binding == read.binding {
                        true => assert_eq!(back.unwrap().binding, read.binding),
                        false => assert_eq!(back.err(), Some(Unreadable::Binding)),
                    }
                }
            }
        }
        // A record of a version before bindings is a plain Bearer token.
        let old = encode(None, "k", "id", br#"{"t":"tok","s":1,"e":null}"#);
        assert!(SharedToken::decode(None, &slot("k"), &old).is_ok());
        let as_dpop = Slot {
            token: "k".into(),
            ..keys.slot(dpop("key-a"))
        };
        assert_eq!(
            SharedToken::decode(None, &as_dpop, &old).err(),
            Some(Unreadable::Binding)
        );
    }

    #[test]
    fn keys_derive_distinct_aead_mac_and_id_with_hkdf() {
        let material = [7u8; 32];
        let key = EncryptionKey::from_bytes(&material).unwrap();
        // The same material gives the same key everywhere: the same id, fingerprints that match.
        let again = EncryptionKey::from_bytes(&material).unwrap();
        assert_eq!(key.id(), again.id());
        assert_eq!(key.id().len(), 8);
        let one = |k: &EncryptionKey| keyed_fingerprint(Some(k), "k", "r1");
        assert_eq!(one(&key), one(&again));
        // The MAC key is not the material itself, nor the AES key: an HMAC under the raw
        // material differs, and a value sealed under one key id opens only under it.
        let raw = HmacSha256::new(&material).sign(&[b"k\0r1"]);
        assert_ne!(hex(&raw[..16]), one(&key));
        let other = EncryptionKey::from_bytes(&[8u8; 32]).unwrap();
        assert_ne!(key.id(), other.id());
        assert_ne!(one(&key), one(&other));
    }

    #[test]
    fn after_a_rotation_values_under_the_previous_key_are_read_and_new_ones_use_the_new_key() {
        let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
        let before = Keyring::new(old.clone(), Vec::new());
        let after = Keyring::new(new.clone(), vec![old.clone()]);
        let sealed = shared().encode(Some(&before), "k");
        let back = SharedToken::decode(Some(&after), &slot("k"), &sealed).unwrap();
        assert_eq!(&*back.secret, "secret-token");
        let refresh = encode_refresh(Some(&before), "k", "r1");
        assert_eq!(&*decode_refresh(Some(&after), "k", &refresh).unwrap(), "r1");
        // Compare-and-swap still recognises the old value's fingerprint.
        let stored_fp = refresh.split('.').nth(2).unwrap();
        assert!(
            fingerprints(Some(&after), "k", "r1")
                .split(' ')
                .any(|fp| fp == stored_fp)
        );
        assert_ne!(fingerprint(Some(&after), "k", "r1"), stored_fp);
        // Written after the rotation: under the new key, which a process with only the old
        // one does not hold (an unknown key id: ignored, not an error).
        let resealed = shared().encode(Some(&after), "k");
        assert!(
            SharedToken::decode(Some(&Keyring::new(new, Vec::new())), &slot("k"), &resealed)
                .is_ok()
        );
        assert_eq!(
            SharedToken::decode(Some(&before), &slot("k"), &resealed).err(),
            Some(Unreadable::UnknownKey)
        );
        // Tampered (a flipped bit in the ciphertext, or in the key id to name the other key):
        // refused.
        let (head, payload) = resealed.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(
            SharedToken::decode(Some(&after), &slot("k"), &tampered).err(),
            Some(Unreadable::Decrypt)
        );
        let mut renamed = URL_SAFE_NO_PAD.decode(payload).unwrap();
        renamed[..KEY_ID_LEN].copy_from_slice(&old.id);
        let renamed = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&renamed));
        assert_eq!(
            SharedToken::decode(Some(&after), &slot("k"), &renamed).err(),
            Some(Unreadable::Decrypt)
        );
    }

    #[test]
    fn refresh_tokens_round_trip_and_fingerprints_hide_them() {
        let key = ring();
        for cipher in [None, Some(&key)] {
            let value = encode_refresh(cipher, "k", "r1");
            assert_eq!(&*decode_refresh(cipher, "k", &value).unwrap(), "r1");
            let fp = fingerprint(cipher, "k", "r1");
            assert!(value.starts_with(&format!(
                "v1.{}.{fp}.",
                if cipher.is_some() { "e" } else { "p" }
            )));
            assert_ne!(fp, fingerprint(cipher, "k", "r2"));
        }
        assert_ne!(
            fingerprint(None, "k", "r1"),
            fingerprint(Some(&key), "k", "r1")
        );
    }

    #[test]
    fn encryption_keys_parse_and_never_show() {
        let b64 = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
        let key = EncryptionKey::from_base64(b64).unwrap();
        assert_eq!(format!("{key:?}"), "EncryptionKey([redacted])");
        assert_eq!(
            format!("{:?}", Keyring::new(key.clone(), Vec::new())),
            "Keyring { current: EncryptionKey([redacted]), previous: [] }"
        );
        EncryptionKey::from_base64(b64.trim_end_matches('=')).unwrap();
        assert!(EncryptionKey::from_base64("c2hvcnQ=").is_err());
        assert!(EncryptionKey::from_base64("not base64 at all!").is_err());
        assert!(EncryptionKey::from_bytes(&[0; 31]).is_err());
    }
}
