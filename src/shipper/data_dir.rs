//! The data directory's fitness at start: sidelog refuses to run on a `data_dir` it cannot
//! write checkpoints to (read-only, missing, not a directory: a configuration to fix), since
//! every line it shipped would be shipped again after a restart. A full one is a bad day, not
//! a configuration error: sidelog ships all the same (see [`DataDirError::is_full`]), since
//! in a Pod whose checkpoints share the logs' volume nothing else would free the space.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A `data_dir` that cannot hold checkpoints: sidelog does not start on it, since every
/// line it shipped would be shipped again after a restart.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data_dir {path} is full ({source}); sidelog keeps its checkpoints there: free space or give it another volume"
    )]
    Full { path: PathBuf, source: io::Error },
    #[error(
        "data_dir {path} cannot be written ({source}); sidelog keeps its checkpoints there: mount a writable volume (an emptyDir) or set data_dir"
    )]
    NotWritable { path: PathBuf, source: io::Error },
}

impl DataDirError {
    /// Whether the directory is only full: shipping goes on with checkpoints in memory.
    pub fn is_full(&self) -> bool {
        matches!(self, DataDirError::Full { .. })
    }
}

/// Bytes the start-up probe writes: a block, as the first checkpoint file takes.
const PROBE_BYTES: usize = 4096;

/// Checks at start that `data_dir` can hold checkpoints: creates it, writes, syncs and
/// removes a probe file of a block.
pub fn probe(data_dir: &Path) -> Result<(), DataDirError> {
    let probe = data_dir.join(".sidelog-probe");
    let result = fs::create_dir_all(data_dir).and_then(|()| {
        let mut f = File::create(&probe)?;
        f.write_all(&[b'\n'; PROBE_BYTES])?;
        f.sync_all()
    });
    let _ = fs::remove_file(&probe);
    result.map_err(|source| {
        let path = data_dir.to_path_buf();
        if matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) {
            DataDirError::Full { path, source }
        } else {
            DataDirError::NotWritable { path, source }
        }
    })
}
