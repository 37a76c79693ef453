//! What changes when a file is replaced or rewritten: the check a rotating file
//! ([`KeyFile`](crate::source::signer::KeyFile), a file-backed
//! [`ClientIdentity`](crate::mtls::ClientIdentity)) makes before it parses the file again.

use std::time::SystemTime;

/// A file's size, modification time and (on Unix) inode: an atomic rename changes the inode,
/// a rewrite in place the size or the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: u64,
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        FileStamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(metadata),
        }
    }

    /// The stamp of the file at `path`.
    pub(crate) fn read(path: &std::path::Path) -> std::io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of(&m))
    }
}
