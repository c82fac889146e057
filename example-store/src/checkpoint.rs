//! Projection checkpoints: [`CheckpointStore`], one small file per name.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sourcery::checkpoint::{self, Advance, Claim, Fence};

use crate::error::Error;
use crate::sync_directory;

/// Checkpoints in a directory: what is kept under a name lives in the file
/// `<name>.checkpoint`. Clones share the directory.
///
/// The file is text, one `key value` line for each of the position saved
/// and the [`Fence`] that claimed the name, each there only when it is
/// known (a claimed name may have no position yet), both decimal:
///
/// ```text
/// position 42
/// fence 7
/// ```
///
/// A file of an older version of this store, a bare position (`42`),
/// still reads as that position without a fence.
///
/// Every write (a save, a claim, an advance) reads the file, decides, and
/// writes a temporary file, syncs it and renames it over the old one, so a
/// crash leaves either the old checkpoint or the new one, never a mix.
/// Writes take turns, so a claim or an advance is one atomic step among
/// the clones of a store; open a directory once per process, and in one
/// process at a time (as the event store's file).
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    directory: Arc<PathBuf>,
    /// Writes take turns: a read and the write that depends on it are one
    /// step, and they share one temporary file per name.
    saving: Arc<Mutex<()>>,
}

/// What a checkpoint file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Saved {
    position: Option<u64>,
    fence: Option<Fence>,
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
        let saved = tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(Error::Task)??;
        Ok(saved.position)
    }

    async fn save<'a>(&'a self, name: &'a str, position: u64) -> Result<(), Error> {
        // Whatever was saved, lower or higher; the fence stays.
        self.update(name, move |saved| {
            let position = Some(position);
            ((), Saved { position, ..saved })
        })
        .await
    }

    async fn claim<'a>(&'a self, name: &'a str, fence: Fence) -> Result<Claim<u64>, Error> {
        self.update(name, move |saved| match saved.fence {
            Some(recorded) if recorded > fence => (Claim::Fenced(recorded), saved),
            _ => (
                Claim::Claimed(saved.position),
                Saved {
                    fence: Some(fence),
                    ..saved
                },
            ),
        })
        .await
    }

    async fn advance<'a>(
        &'a self,
        name: &'a str,
        position: u64,
        fence: Option<Fence>,
    ) -> Result<Advance<u64>, Error> {
        self.update(name, move |saved| {
            if let Some(refused) = checkpoint::refusal(saved.position, saved.fence, position, fence) {
                return (refused, saved);
            }
            let position = Some(position);
            let fence = saved.fence.max(fence);
            (Advance::Saved, Saved { position, fence })
        })
        .await
    }
}

impl CheckpointStore {
    /// Reads what is kept under `name`, lets `decide` answer and say what
    /// to keep, and writes that if it differs: one turn, so no other write
    /// comes between the read and the write.
    async fn update<T: Send + 'static>(
        &self,
        name: &str,
        decide: impl FnOnce(Saved) -> (T, Saved) + Send + 'static,
    ) -> Result<T, Error> {
        let path = self.file(name);
        let temporary = self.directory.join(format!("{}.checkpoint.tmp", file_name(name)));
        let saving = Arc::clone(&self.saving);
        tokio::task::spawn_blocking(move || {
            let _turn = saving.lock().unwrap_or_else(PoisonError::into_inner);
            let before = read(&path)?;
            let (answer, after) = decide(before);
            if after != before {
                let write = |file: &Path| -> io::Result<()> {
                    let mut file = File::create(file)?;
                    file.write_all(after.to_text().as_bytes())?;
                    file.sync_all()
                };
                write(&temporary).map_err(Error::io("write", &temporary))?;
                fs::rename(&temporary, &path).map_err(Error::io("replace", &path))?;
                sync_directory(&path)?;
            }
            Ok(answer)
        })
        .await
        .map_err(Error::Task)?
    }
}

/// What the file at `path` holds: nothing when there is no file.
fn read(path: &Path) -> Result<Saved, Error> {
    match fs::read_to_string(path) {
        Ok(text) => Saved::parse(&text).ok_or_else(|| Error::CorruptCheckpoint {
            path: path.to_owned(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(error) => Err(Error::io("read", path)(error)),
    }
}
// ANCHOR_END: checkpoint_store

impl Saved {
    /// Reads the file format (see [`CheckpointStore`]): `key value` lines,
    /// each key once, at least one; or a bare position, as older versions
    /// wrote.
    fn parse(text: &str) -> Option<Self> {
        if let Ok(position) = text.trim_end().parse() {
            return Some(Self {
                position: Some(position),
                fence: None,
            });
        }
        let mut saved = Self::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "position" if saved.position.is_none() => saved.position = Some(value),
                "fence" if saved.fence.is_none() => saved.fence = Some(Fence::new(value)),
                _ => return None,
            }
        }
        (saved != Self::default()).then_some(saved)
    }

    /// The file format.
    fn to_text(self) -> String {
        let mut text = String::new();
        if let Some(position) = self.position {
            let _ = writeln!(text, "position {position}");
        }
        if let Some(fence) = self.fence {
            let _ = writeln!(text, "fence {}", fence.get());
        }
        text
    }
}

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
    use sourcery::checkpoint::Fence;

    use super::{Saved, file_name};

    #[test]
    fn the_file_format_reads_back_and_older_files_still_read() {
        let both = Saved {
            position: Some(42),
            fence: Some(Fence::new(7)),
        };
        let claimed = Saved {
            position: None,
            fence: Some(Fence::new(3)),
        };
        let saved = Saved {
            position: Some(42),
            fence: None,
        };
        assert_eq!(both.to_text(), "position 42\nfence 7\n");
        for kept in [both, claimed, saved] {
            assert_eq!(Saved::parse(&kept.to_text()), Some(kept));
        }
        assert_eq!(Saved::parse("fence 7\nposition 42\n"), Some(both));
        assert_eq!(Saved::parse("42\n"), Some(saved));
        assert_eq!(Saved::parse("42"), Some(saved));
        for corrupt in [
            "",
            "\n",
            "forty-two\n",
            "position\n",
            "position x\n",
            "position 1\nposition 2\n",
            "offset 4\n",
            "position -1\n",
            "position 4 \n",
        ] {
            assert_eq!(Saved::parse(corrupt), None, "{corrupt:?}");
        }
    }

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
