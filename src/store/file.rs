use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::RefreshTokenStore;
use crate::Error;
use crate::secret::RefreshToken;

/// A [`RefreshTokenStore`] in one file holding the token (and a newline).
///
/// Each save writes a temporary file next to the target, created with mode 0600 (owner only,
/// on Unix), fsyncs it, renames it over the target and fsyncs the directory: a crash leaves
/// either the old token or the new one, never half of one. Reads and writes run on tokio's
/// blocking pool.
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
/// assert_eq!(store.load().await?.unwrap().secret(), "r0");
/// store.save(Some(&RefreshToken::new("r0")), &RefreshToken::new("r1")).await?;
/// assert_eq!(FileStore::new(&path).load().await?.unwrap().secret(), "r1");
/// # std::fs::remove_file(&path).unwrap(); Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    path: PathBuf,
    initial: Option<RefreshToken>,
}

impl FileStore {
    /// A store in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore {
            path: path.into(),
            initial: None,
        }
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
}

impl RefreshTokenStore for FileStore {
    async fn load(&self) -> Result<Option<RefreshToken>, Error> {
        let path = self.path.clone();
        let read = blocking(move || match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(zeroize::Zeroizing::new(text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| io_error("could not read the refresh token file", e))?;
        Ok(match read {
            Some(text) => Some(text.trim())
                .filter(|t| !t.is_empty())
                .map(RefreshToken::new),
            None => self.initial.clone(),
        })
    }

    async fn save(&self, _old: Option<&RefreshToken>, new: &RefreshToken) -> Result<(), Error> {
        let path = self.path.clone();
        let new = new.clone();
        blocking(move || write_atomically(&path, new.secret()))
            .await
            .map_err(|e| io_error("could not save the rotated refresh token", e))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the file operation was cancelled")))
}

fn io_error(message: &'static str, err: io::Error) -> Error {
    let err_kind = err.kind();
    let error = match err_kind {
        io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound => Error::config(message),
        _ => Error::transient(message),
    };
    error.with_source(err)
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
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
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
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["rt"]);
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
        store.save(None, &RefreshToken::new("r2")).await.unwrap();
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
}
