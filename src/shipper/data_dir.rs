//! The data directory's fitness at start: sidelog refuses to run on a `data_dir` it cannot
//! write checkpoints to, since every line it shipped would be shipped again after a restart.

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
        if source.kind() == io::ErrorKind::StorageFull {
            DataDirError::Full { path, source }
        } else {
            DataDirError::NotWritable { path, source }
        }
    })
}
