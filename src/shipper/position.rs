//! Where a line is, as the reader and the checkpoints both know it: a file's identity (device
//! and inode, checked against a fingerprint of its first bytes), a stream (one opening of a
//! file's content) and the byte ranges of streams that events cover.
//!
//! The inode alone is fooled when a deleted file's inode is reused; the first bytes alone are
//! fooled by files that share a header. Together they follow a file across renames and notice
//! a reused inode. A file shorter than [`FINGERPRINT_BYTES`] is fingerprinted over what it has,
//! and the fingerprint is widened as it grows, so a small file is read at once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// How many leading bytes the fingerprint covers at most.
pub const FINGERPRINT_BYTES: usize = 1024;

/// One opening of a file's content: the file bytes of events are counted per stream, and a
/// truncation starts a new one. The checkpoint tracker knows streams by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// The file bytes one event accounts for: `[start, end)` of stream `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub stream: StreamId,
    pub start: u64,
    pub end: u64,
}

/// A hash of the first `len` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

impl Fingerprint {
    /// Fingerprints the first `min(FINGERPRINT_BYTES, want)` bytes of `file`.
    pub fn of(file: &File, want: usize) -> io::Result<Fingerprint> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let want = want.min(FINGERPRINT_BYTES);
        let mut filled = 0;
        while filled < want {
            match file.read_at(&mut buf[filled..want], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Fingerprint {
            len: filled as u32,
            hash: fnv1a(&buf[..filled]),
        })
    }

    /// Whether `file` still starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let now = Fingerprint::of(file, self.len as usize)?;
        Ok(now == *self)
    }

    pub fn is_complete(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }
}

/// FNV-1a, 64 bit: stable across versions and platforms, which the checkpoint file needs.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where a file lives on disk, independent of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct DevIno {
    pub dev: u64,
    pub ino: u64,
}

impl DevIno {
    pub fn of(meta: &std::fs::Metadata) -> DevIno {
        use std::os::unix::fs::MetadataExt;
        DevIno {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_grows_and_still_matches_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"hello\n").expect("write");
        let small =
            Fingerprint::of(&File::open(&path).expect("open"), FINGERPRINT_BYTES).expect("fp");
        assert_eq!(small.len, 6);
        f.write_all(&[b'x'; 2000]).expect("write");
        let file = File::open(&path).expect("open");
        assert!(small.matches(&file).expect("match"));
        let full = Fingerprint::of(&file, FINGERPRINT_BYTES).expect("fp");
        assert!(full.is_complete());
        assert_ne!(full, small);
        std::fs::write(&path, b"other\n").expect("rewrite");
        assert!(
            !small
                .matches(&File::open(&path).expect("open"))
                .expect("match")
        );
    }
}
