//! A client identity read from two files that are rotated in place: the files' stamps are
//! looked at on every use, and the pair is read again, and checked, only when they change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::Pair;
use crate::Error;
use crate::file_stamp::FileStamp;

/// The two files of a rotating identity, and the pair in use.
pub(super) struct IdentityFiles {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The files' stamps when last looked at (whether or not they parsed then), and the
    /// last pair that did.
    current: Mutex<([FileStamp; 2], Arc<Pair>)>,
}

impl IdentityFiles {
    /// Both files, read now: an error if they do not hold a matching pair.
    pub(super) fn open(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, Error> {
        let (stamps, pair) = read_pair(&cert_path, &key_path)?;
        Ok(IdentityFiles {
            cert_path,
            key_path,
            current: Mutex::new((stamps, Arc::new(pair))),
        })
    }

    pub(super) fn describe(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path);
    }
}

/// Read both files and check them as a pair; the stamps are taken before reading, so that a
/// change while reading is seen at the next look.
fn read_pair(cert_path: &Path, key_path: &Path) -> Result<([FileStamp; 2], Pair), Error> {
    let unreadable = |path: &Path, e: std::io::Error| {
        Error::config(format!("the file {} cannot be read", path.display())).with_source(e)
    };
    let stamps = [
        FileStamp::read(cert_path).map_err(|e| unreadable(cert_path, e))?,
        FileStamp::read(key_path).map_err(|e| unreadable(key_path, e))?,
    ];
    let cert = std::fs::read(cert_path).map_err(|e| unreadable(cert_path, e))?;
    let key = Zeroizing::new(std::fs::read(key_path).map_err(|e| unreadable(key_path, e))?);
    let pair = Pair::from_pem(&cert, &key)?;
    pair.check_key_matches()?;
    Ok((stamps, pair))
}

impl IdentityFiles {
    pub(super) fn current(&self) -> Arc<Pair> {
        let stamps = [
            FileStamp::read(&self.cert_path),
            FileStamp::read(&self.key_path),
        ];
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let [Ok(cert), Ok(key)] = &stamps
            && current.0 == [*cert, *key]
        {
            return Arc::clone(&current.1);
        }
        match read_pair(&self.cert_path, &self.key_path) {
            Ok((stamps, pair)) => {
                tracing::info!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    "the client certificate files have changed; presenting the new certificate"
                );
                *current = (stamps, Arc::new(pair));
            }
            Err(error) => {
                tracing::warn!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    kind = ?error.kind(),
                    %error,
                    "the client certificate files have changed but do not hold a usable \
                     certificate and key; still presenting the previous certificate"
                );
                // Warn once per change: look again when the files next change.
                if let [Ok(cert), Ok(key)] = stamps {
                    current.0 = [cert, key];
                }
            }
        }
        Arc::clone(&current.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtls::ClientIdentity;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The certificate a source declares (what the fleet binds shared tokens to) is the one in
    /// the files now, and a broken replacement leaves the previous one declared.
    #[test]
    fn a_file_identity_declares_the_certificate_in_the_files_now() {
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-mtls-unit-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("c.pem"), dir.join("k.pem"));
        let write = |path: &Path, text: &str| {
            let staged = path.with_extension("new");
            std::fs::write(&staged, text).unwrap();
            std::fs::rename(&staged, path).unwrap();
        };
        let (a_cert, a_key) = pair();
        let (b_cert, b_key) = pair();
        write(&cert_path, &a_cert);
        write(&key_path, &a_key);
        let identity = ClientIdentity::from_files(&cert_path, &key_path).unwrap();
        let leaf = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(identity.cert_chain_and_key().0[0], leaf(&a_cert));

        write(&cert_path, &b_cert);
        write(&key_path, &b_key);
        assert_eq!(identity.cert_chain_and_key().0[0], leaf(&b_cert));
        let unchanged = identity.current();
        assert!(Arc::ptr_eq(&unchanged, &identity.current()), "not re-read");

        write(&key_path, "-----BEGIN PRIVATE KEY-----\ntrunc");
        assert_eq!(identity.cert_chain()[0], leaf(&b_cert));
        assert!(identity.is_rotating());
        let _ = std::fs::remove_dir_all(dir);
    }
}
