//! Projection checkpoints: [`CheckpointStore`], one small file per name.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sourcery::checkpoint;

use crate::error::Error;
use crate::sync_directory;

/// Checkpoints in a directory: the position saved under a name lives in
/// the file `<name>.checkpoint`, as decimal text. Clones share the
/// directory.
///
/// A save writes a temporary file, syncs it and renames it over the old
/// one, so a crash leaves either the old checkpoint or the new one, never
/// a mix.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    directory: Arc<PathBuf>,
    /// Saves take turns: they share one temporary file per name.
    saving: Arc<Mutex<()>>,
}

impl CheckpointStore {
    /// Keeps checkpoints in `directory`, creating it if needed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory cannot be created; [`Error::Task`]
    /// when the runtime is shutting down.
    pub async fn open(directory: impl Into<PathBuf>) -> Result<Self, Error> {
        let directory = directory.into();
        let created = directory.clone();
        tokio::task::spawn_blocking(move || {
            fs::create_dir_all(&created).map_err(Error::io("create", &created))
        })
        .await
        .map_err(Error::Task)??;
        Ok(Self {
            directory: Arc::new(directory),
            saving: Arc::new(Mutex::new(())),
        })
    }

    /// The file that holds the checkpoint saved under `name`.
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.directory.join(format!("{}.checkpoint", file_name(name)))
    }
}

// ANCHOR: checkpoint_store
impl checkpoint::CheckpointStore<u64> for CheckpointStore {
    type Error = Error;

    async fn load<'a>(&'a self, name: &'a str) -> Result<Option<u64>, Error> {
        let path = self.file(name);
        tokio::task::spawn_blocking(move || match fs::read_to_string(&path) {
            Ok(text) => match text.trim_end().parse() {
                Ok(position) => Ok(Some(position)),
                Err(_) => Err(Error::CorruptCheckpoint { path }),
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io("read", &path)(error)),
        })
        .await
        .map_err(Error::Task)?
    }

    async fn save<'a>(&'a self, name: &'a str, position: u64) -> Result<(), Error> {
        let path = self.file(name);
        let temporary = self.directory.join(format!("{}.checkpoint.tmp", file_name(name)));
        let saving = Arc::clone(&self.saving);
        tokio::task::spawn_blocking(move || {
            let _turn = saving.lock().unwrap_or_else(PoisonError::into_inner);
            let write = |file: &Path| -> io::Result<()> {
                let mut file = File::create(file)?;
                writeln!(file, "{position}")?;
                file.sync_all()
            };
            write(&temporary).map_err(Error::io("write", &temporary))?;
            fs::rename(&temporary, &path).map_err(Error::io("replace", &path))?;
            sync_directory(&path)
        })
        .await
        .map_err(Error::Task)?
    }
}
// ANCHOR_END: checkpoint_store

/// A file name for a checkpoint name: lowercase ASCII letters, digits,
/// `-` and `_` as they are, every other byte as `%XX`. Two names never
/// share a file, not even on a file system that ignores case, and no name
/// reaches outside the directory (`../x` becomes `%2E%2E%2Fx`).
fn file_name(name: &str) -> String {
    let mut file = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_' {
            file.push(char::from(byte));
        } else {
            let _ = write!(file, "%{byte:02X}");
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn names_become_distinct_plain_file_names() {
        assert_eq!(file_name("account-totals_v2"), "account-totals_v2");
        assert_eq!(file_name("../x"), "%2E%2E%2Fx");
        assert_eq!(file_name("Totals"), "%54otals");
        assert_ne!(file_name("Totals"), file_name("totals"));
        assert_ne!(file_name("%54otals"), file_name("Totals"));
        assert_eq!(file_name(""), "");
        assert_eq!(file_name("é"), "%C3%A9");
    }
}
