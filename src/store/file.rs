use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use super::{RefreshTokenStore, StoreLock};
use crate::Error;
use crate::secret::RefreshToken;

/// A [`RefreshTokenStore`] in one file holding the token (and a newline), shared safely by
/// processes on one host.
///
/// - **Atomic writes.** Each save writes a temporary file next to the target, created with
///   mode 0600 (owner only, on Unix), fsyncs it, renames it over the target and fsyncs the
///   directory: a crash leaves either the old token or the new one, never half of one.
/// - **Compare-and-swap.** [`save(old, new)`](RefreshTokenStore::save) reads the file and
///   writes only if it still holds `old`, under an advisory lock (`flock` on Unix, `LockFileEx`
///   on Windows) on the sibling file `<path>.lock`, which every save and every
///   [`lock`](RefreshTokenStore::lock) of every process takes. The lock file is created with
///   mode 0600 and never removed (removing a lock file others may hold open breaks the lock).
/// - **Locked rotations.** [`lock`](RefreshTokenStore::lock) holds that advisory lock until the
///   returned guard is dropped, so processes sharing the file spend the refresh token one at
///   a time, each starting from the token the previous one saved.
/// - **Ordered writes.** Reads and writes run on tokio's blocking pool, one at a time per
///   store (clones share the queue) and in call order; a write whose caller gave up still
///   finishes before the next one starts, so an older token never lands over a newer one.
///
/// - **Nothing through a symlink, nothing planted.** The token file and the lock file are
///   opened with `O_NOFOLLOW` (on Unix): a symbolic link in their place is refused, never
///   followed. A token file not owned by the current user, or readable or writable by its
///   group or others, is refused too (a [`Config`](crate::ErrorKind::Config) error naming the
///   problem, never the token).
/// - **Bounded waits.** [`lock`](RefreshTokenStore::lock) (and a save that needs the lock)
///   polls the advisory lock with backoff for at most [`lock_timeout`](Self::lock_timeout)
///   (30 s by default), then fails with a [`Transient`](crate::ErrorKind::Transient) error: a
///   frozen holder stalls the others that long, not forever.
///
/// The advisory lock binds processes that use `FileStore` (or take the same lock); anything
/// else writing the file is only caught by the compare-and-swap. Advisory locks on network
/// file systems are only as good as the file system's lock support.
///
/// ```
/// use tower_bearer::secret::RefreshToken;
/// use tower_bearer::store::{FileStore, RefreshTokenStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_bearer::Error> {
/// # let path = std::env::temp_dir().join(format!("tower-bearer-doc-{}", std::process::id()));
/// // First run: the file does not exist yet, so the initial token is used (and the file is
/// // written at the first rotation). Later runs read the newest token from the file.
/// let store = FileStore::new(&path).with_initial(RefreshToken::new("r0"));
/// let lock = store.lock().await?; // other processes wait here
/// let old = store.load().await?;
/// assert_eq!(old.as_ref().unwrap().secret(), "r0");
/// store.save(old.as_ref(), &RefreshToken::new("r1")).await?;
/// drop(lock);
/// assert_eq!(FileStore::new(&path).load().await?.unwrap().secret(), "r1");
/// # std::fs::remove_file(&path).unwrap();
/// # std::fs::remove_file(path.with_file_name(format!("tower-bearer-doc-{}.lock", std::process::id()))).unwrap();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    path: PathBuf,
    initial: Option<RefreshToken>,
    lock_timeout: Duration,
    shared: Arc<Shared>,
}

/// What clones of one `FileStore` share.
#[derive(Default)]
struct Shared {
    /// Serialises file reads and writes, in call order (tokio's mutex is fair). The guard moves
    /// into the blocking task, so it is released when the I/O is done, not when the caller
    /// stops waiting.
    io: Arc<tokio::sync::Mutex<()>>,
    /// One `lock()` holder at a time among clones; the advisory lock excludes everyone else.
    rotation: Arc<tokio::sync::Mutex<()>>,
    /// The advisory lock of the current `lock()` holder: saves made while it is held write
    /// under it instead of waiting for it. Never held across an await.
    held: Mutex<Weak<AdvisoryLock>>,
}

/// The advisory lock on `<path>.lock`, released when the file is closed.
struct AdvisoryLock {
    _file: File,
}

/// What `lock()` returns, inside its `StoreLock`.
struct Locked {
    _advisory: Arc<AdvisoryLock>,
    _rotation: OwnedMutexGuard<()>,
}

impl FileStore {
    /// A store in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore {
            path: path.into(),
            initial: None,
            lock_timeout: Duration::from_secs(30),
            shared: Arc::default(),
        }
    }

    /// How long [`lock`](RefreshTokenStore::lock) (or a save) waits for another process's lock
    /// before failing with a transient error (default 30 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The token to use while the file does not exist.
    pub fn with_initial(mut self, token: RefreshToken) -> Self {
        self.initial = Some(token);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>.lock`.
    fn lock_path(&self) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(".lock");
        PathBuf::from(name)
    }

    /// The advisory lock: a new one, or (with `share_held`) the one this store's `lock()`
    /// holder has. Polls instead of blocking a thread, so giving up is instant and clean, and
    /// so a save waiting here notices a `lock()` of this store that got there first.
    async fn advisory_lock(&self, share_held: bool) -> Result<Arc<AdvisoryLock>, Error> {
        let mut file = None;
        let mut wait = Duration::from_millis(1);
        let give_up = crate::time::after(self.lock_timeout);
        loop {
            if share_held && let Some(held) = self.held() {
                return Ok(held);
            }
            let lock_file = match &file {
                Some(lock_file) => lock_file,
                None => {
                    let path = self.lock_path();
                    let opened = blocking(move || open_private(&path, false))
                        .await
                        .map_err(|e| io_error("could not open the refresh token lock file", e))?;
                    file.insert(opened)
                }
            };
            match lock_file.try_lock() {
                Ok(()) => {
                    let file = file.take().expect("opened above");
                    return Ok(Arc::new(AdvisoryLock { _file: file }));
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(io_error("could not lock the refresh token lock file", e));
                }
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(Error::transient(format!(
                    "the refresh token file stayed locked by another process for {:?} (lock_timeout)",
                    self.lock_timeout
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(20));
        }
    }

    fn held(&self) -> Option<Arc<AdvisoryLock>> {
        self.shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
    }

    /// The stored value: the file's token, or the initial one while there is no file.
    fn read(path: &Path, initial: Option<RefreshToken>) -> io::Result<Option<RefreshToken>> {
        let mut options = OpenOptions::new();
        options.read(true);
        no_follow(&mut options);
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(initial),
            Err(e) => return Err(refuse_symlink(e)),
        };
        check_private(&file)?;
        let mut text = zeroize::Zeroizing::new(String::new());
        io::Read::read_to_string(&mut file, &mut text)?;
        Ok(Some(text.trim())
            .filter(|t| !t.is_empty())
            .map(RefreshToken::new))
    }
}

/// Refuse to follow a symbolic link at the last component of the path (Unix).
fn no_follow(options: &mut OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    #[cfg(not(unix))]
    let _ = options;
}

/// `O_NOFOLLOW` on a symbolic link fails with `ELOOP`: say so.
fn refuse_symlink(err: io::Error) -> io::Error {
    #[cfg(unix)]
    if err.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the path is a symbolic link, which the file store never follows",
        );
    }
    err
}

/// The token file must be the current user's, and nobody else's to read or write.
fn check_private(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        if meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the token file's mode is {:o}: group or others may read or write it (chmod 600 it, after checking who wrote it)",
                    meta.mode() & 0o777
                ),
            ));
        }
        if meta.uid() != current_uid()? {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the token file is owned by another user",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// The user this process creates files as: the owner of a file it just created (std has no
/// safe `geteuid`, and the crate forbids `unsafe`). Found once per process.
#[cfg(unix)]
fn current_uid() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if let Some(uid) = UID.get() {
        return Ok(*uid);
    }
    let probe = std::env::temp_dir().join(format!(
        ".tower-bearer-uid-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let file = open_private(&probe, true)?;
    let uid = file.metadata()?.uid();
    let _ = fs::remove_file(&probe);
    Ok(*UID.get_or_init(|| uid))
}

impl RefreshTokenStore for FileStore {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        let io = Arc::clone(&self.shared.io).lock_owned().await;
        let (path, initial) = (self.path.clone(), self.initial.clone());
        blocking(move || {
            let _io = io;
            Self::read(&path, initial)
        })
        .await
        .map_err(|e| io_error("could not read the refresh token file", e))
    }

    /// Compare-and-swap under the advisory lock; see the [type docs](FileStore).
    async fn save(&self, old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        // The first await: saves queue in call order.
        let io = Arc::clone(&self.shared.io).lock_owned().await;
        let advisory = self.advisory_lock(true).await?;
        let (path, initial) = (self.path.clone(), self.initial.clone());
        let (old, new) = (old.cloned(), new.clone());
        let swapped = blocking(move || {
            // Both locks live until the write is done, whether or not anyone still waits.
            let _locks = (io, advisory);
            if Self::read(&path, initial)? != old {
                return Ok(false);
            }
            write_atomically(&path, new.secret())?;
            Ok(true)
        })
        .await
        .map_err(|e| io_error("could not save the rotated refresh token", e))?;
        if swapped {
            Ok(())
        } else {
            Err(Error::conflict(
                "the refresh token file changed since it was read: another process rotated the token first",
            ))
        }
    }

    /// Waits (without blocking a thread) for the advisory lock on `<path>.lock`.
    async fn lock(&self) -> Result<StoreLock, Error> {
        let rotation = Arc::clone(&self.shared.rotation).lock_owned().await;
        let advisory = self.advisory_lock(false).await?;
        *self.shared.held.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&advisory);
        Ok(StoreLock::new(Locked {
            _advisory: advisory,
            _rotation: rotation,
        }))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the file operation was cancelled")))
}

/// An I/O error, with its reason (never a token: I/O errors here name no file contents).
fn io_error(message: &'static str, err: io::Error) -> Error {
    let message = format!("{message}: {err}");
    let error = match err.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound => Error::config(message),
        _ => Error::transient(message),
    };
    error.with_source(err)
}

/// Open for writing, created with mode 0600 on Unix; `new`: the file must not exist yet.
fn open_private(path: &Path, new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    no_follow(&mut options);
    options.open(path).map_err(refuse_symlink)
}

/// Temp file (0600) + write + fsync + rename + fsync of the directory.
fn write_atomically(path: &Path, token: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?;
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = (|| {
        let mut file = open_private(&tmp, true)?;
        let mut contents = zeroize::Zeroizing::new(String::with_capacity(token.len() + 1));
        contents.push_str(token);
        contents.push('\n');
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("initial", &self.initial)
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-{name}-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = temp_dir("roundtrip");
        let store = FileStore::new(dir.join("rt"));
        assert_eq!(store.load().await.unwrap(), None);
        store.save(None, &RefreshToken::new("r1")).await.unwrap();
        store
            .save(Some(&RefreshToken::new("r1")), &RefreshToken::new("r2"))
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().unwrap().secret(), "r2");
        assert_eq!(fs::read_to_string(dir.join("rt")).unwrap(), "r2\n");
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["rt", "rt.lock"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let store = FileStore::new(dir.join("rt"));
        store.save(None, &RefreshToken::new("r1")).await.unwrap();
        let mode = fs::metadata(dir.join("rt")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_initial_token_is_used_until_the_file_exists() {
        let dir = temp_dir("initial");
        let store = FileStore::new(dir.join("rt")).with_initial(RefreshToken::new("seed"));
        assert_eq!(store.load().await.unwrap().unwrap().secret(), "seed");
        // The initial token is the stored value for the compare-and-swap.
        let err = store
            .save(None, &RefreshToken::new("r2"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        store
            .save(Some(&RefreshToken::new("seed")), &RefreshToken::new("r2"))
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().unwrap().secret(), "r2");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_directory_is_a_config_error_naming_no_token() {
        let store = FileStore::new("/nonexistent-tower-bearer-dir/rt");
        let err = store
            .save(None, &RefreshToken::new("r-secret"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(!format!("{err} {err:?}").contains("r-secret"));
    }

    fn rt(k: usize) -> RefreshToken {
        RefreshToken::new(format!("r{k}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_saves_land_in_call_order() {
        let dir = temp_dir("order");
        let store = FileStore::new(dir.join("rt")).with_initial(rt(0));
        // Twenty chained compare-and-swaps, all started before any has finished: each must
        // find its predecessor's write.
        let saves: Vec<_> = (0..20)
            .map(|k| {
                let store = store.clone();
                async move { store.save(Some(&rt(k)), &rt(k + 1)).await }
            })
            .collect();
        for result in futures::future::join_all(saves).await {
            result.unwrap();
        }
        assert_eq!(fs::read_to_string(dir.join("rt")).unwrap(), "r20\n");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_save_dropped_mid_write_lands_before_the_next_one() {
        let dir = temp_dir("dropped");
        let store = FileStore::new(dir.join("rt")).with_initial(rt(0));
        for k in 0..10 {
            // Held: the save finds the advisory lock at once and starts its write on its first
            // poll, then its caller gives up.
            let lock = store.lock().await.unwrap();
            let (old, new) = (rt(2 * k), rt(2 * k + 1));
            let mut dropped = Box::pin(store.save(Some(&old), &new));
            assert!(futures::poll!(dropped.as_mut()).is_pending());
            drop(dropped);
            // The next save sees that write, never the other way round.
            store.save(Some(&new), &rt(2 * k + 2)).await.unwrap();
            drop(lock);
        }
        assert_eq!(fs::read_to_string(dir.join("rt")).unwrap(), "r20\n");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_lock_excludes_another_store_on_the_same_file_until_dropped() {
        let dir = temp_dir("lock");
        let (a, b) = (
            FileStore::new(dir.join("rt")),
            FileStore::new(dir.join("rt")),
        );
        let held = a.lock().await.unwrap();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move {
                let _lock = b.lock().await.unwrap();
                b.load().await.unwrap()
            }
        });
        // Another store's bare save waits for the lock too; the holder's store writes at once.
        let bare = tokio::spawn({
            let b = b.clone();
            async move { b.save(Some(&rt(1)), &rt(2)).await }
        });
        a.save(None, &rt(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished() && !bare.is_finished());
        drop(held);
        bare.await.unwrap().unwrap();
        assert_eq!(waiting.await.unwrap(), Some(rt(2)));
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlinked_lock_file_is_refused_and_creates_nothing_elsewhere() {
        let dir = temp_dir("symlink-lock");
        let elsewhere = dir.join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.join("rt.lock")).unwrap();
        let store = FileStore::new(dir.join("rt"));
        let err = store.lock().await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = store.save(None, &rt(1)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
        assert!(!elsewhere.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlinked_or_planted_token_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("planted");
        // A symbolic link to a token someone else controls.
        fs::write(dir.join("target"), "r-planted\n").unwrap();
        fs::set_permissions(dir.join("target"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("linked")).unwrap();
        let err = FileStore::new(dir.join("linked")).load().await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A token file others may write (or read).
        fs::write(dir.join("rt"), "r-planted\n").unwrap();
        fs::set_permissions(dir.join("rt"), fs::Permissions::from_mode(0o644)).unwrap();
        let store = FileStore::new(dir.join("rt"));
        let err = store.load().await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("mode is 644"), "{err}");
        assert!(!format!("{err} {err:?}").contains("r-planted"));
        // The save's compare-and-swap reads it too: nothing is written over it.
        let err = store.save(Some(&rt(0)), &rt(1)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
        fs::set_permissions(dir.join("rt"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(store.load().await.unwrap().unwrap().secret(), "r-planted");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_frozen_lock_holder_stalls_others_only_until_their_lock_timeout() {
        let dir = temp_dir("frozen");
        let holder = FileStore::new(dir.join("rt"));
        let _frozen = holder.lock().await.unwrap();
        let other = FileStore::new(dir.join("rt")).lock_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = other.lock().await.unwrap_err();
        let waited = started.elapsed();
        assert_eq!(err.kind(), crate::ErrorKind::Transient, "{err}");
        assert!(err.to_string().contains("lock_timeout"), "{err}");
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        // A bare save from the other store gives up just the same.
        let err = other.save(None, &rt(1)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Transient, "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_save_on_a_changed_file_is_a_conflict_and_writes_nothing() {
        let dir = temp_dir("conflict");
        let store = FileStore::new(dir.join("rt"));
        store.save(None, &rt(1)).await.unwrap();
        let err = store.save(Some(&rt(0)), &rt(9)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        assert!(!format!("{err} {err:?}").contains("r9"));
        assert_eq!(fs::read_to_string(dir.join("rt")).unwrap(), "r1\n");
        fs::remove_dir_all(dir).unwrap();
    }
}
