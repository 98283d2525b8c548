//! Which files sidelog may read, decided in one place: every file the reader opens is opened
//! here. A path is read only if its real path (every link resolved) lies under a directory
//! an `include` glob names (its root, as `tail::globs` splits it), in any input. An app
//! that shares the log volume can make links in it; without this, a link
//! `x.log -> /etc/sidelog/secret/api-key` (or to the service account's token) would ship a
//! file only sidelog can read to Datadog.
//!
//! Links that stay under the roots keep working: the kubelet's `..data` swap, a log that is a
//! link to another name in the volume, a chain that leaves and comes back. A root that is
//! itself a link is followed as it resolved when the reader started (a root the app creates
//! later is taken as written: the app must not choose where it leads). To follow links such as
//! `/var/log/containers/*.log` into `/var/log/pods`, include that directory too (and exclude
//! its files if they are not to be tailed under their own names).
//!
//! Opening never blocks and takes regular files only: a FIFO where a log was would otherwise
//! hold the reader forever. After the open, the descriptor's own path (`/proc/self/fd`) is
//! checked again, so a link swapped between the check and the open is caught too.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Why a file was not opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("its real path {} is outside the included directories", .real.display())]
    Outside { real: PathBuf },
    #[error("not a regular file")]
    NotRegular,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The directories files may be read under.
#[derive(Debug)]
pub(crate) struct Confinement {
    allowed: Vec<PathBuf>,
}

impl Confinement {
    /// Under the `roots` (absolute, as the globs name them), and under what each root that
    /// exists now resolves to.
    pub(crate) fn new<'a>(roots: impl IntoIterator<Item = &'a Path>) -> Confinement {
        let mut allowed = Vec::new();
        for root in roots {
            let lexical = normalize(root);
            if let Ok(real) = std::fs::canonicalize(&lexical)
                && !allowed.contains(&real)
            {
                allowed.push(real);
            }
            if !allowed.contains(&lexical) {
                allowed.push(lexical);
            }
        }
        Confinement { allowed }
    }

    /// Anywhere: for tests of the reader that are not about confinement.
    #[cfg(test)]
    pub(crate) fn anywhere() -> std::sync::Arc<Confinement> {
        std::sync::Arc::new(Confinement {
            allowed: vec![PathBuf::from("/")],
        })
    }

    fn allows(&self, real: &Path) -> bool {
        self.allowed.iter().any(|dir| real.starts_with(dir))
    }

    /// Opens `path` for reading if it is a regular file under the allowed directories.
    pub(crate) fn open(&self, path: &Path) -> Result<File, OpenError> {
        let real = std::fs::canonicalize(path)?;
        if !self.allows(&real) {
            return Err(OpenError::Outside { real });
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&real)?;
        if !file.metadata()?.is_file() {
            return Err(OpenError::NotRegular);
        }
        if let Some(now) = opened_path(&file)
            && !self.allows(&now)
        {
            return Err(OpenError::Outside { real: now });
        }
        Ok(file)
    }
}

/// Where an open descriptor leads, as the kernel names it; `None` where `/proc` is not there.
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// `path` without `.` and with `..` taken back, without looking at the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A log volume with one file, a directory outside it with a secret, and the confinement
    /// of `volume/*.log`.
    struct Layout {
        _dir: tempfile::TempDir,
        volume: PathBuf,
        secret: PathBuf,
        confinement: Confinement,
    }

    fn layout() -> Layout {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("logs");
        let outside = dir.path().join("secret");
        std::fs::create_dir_all(&volume).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(volume.join("app.log"), "a line\n").expect("write");
        let secret = outside.join("api-key");
        std::fs::write(&secret, "the key\n").expect("write");
        let confinement = Confinement::new([volume.as_path()]);
        Layout {
            _dir: dir,
            volume,
            secret,
            confinement,
        }
    }

    #[test]
    fn links_out_of_the_roots_are_refused() {
        let l = layout();
        symlink(&l.secret, l.volume.join("key.log")).expect("link");
        symlink("/proc/self/environ", l.volume.join("env.log")).expect("link");
        for name in ["key.log", "env.log"] {
            let err = l.confinement.open(&l.volume.join(name)).expect_err(name);
            assert!(matches!(err, OpenError::Outside { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn links_that_stay_under_the_roots_are_read() {
        let l = layout();
        // The kubelet's atomic writer: name -> ..data/name, ..data -> ..timestamp.
        std::fs::create_dir(l.volume.join("..2026_12_07")).expect("mkdir");
        std::fs::write(l.volume.join("..2026_12_07/b.log"), "b\n").expect("write");
        symlink("..2026_12_07", l.volume.join("..data")).expect("link");
        symlink("..data/b.log", l.volume.join("b.log")).expect("link");
        // A chain that leaves the volume and comes back into it.
        let hop = l.secret.parent().expect("dir").join("hop");
        symlink(l.volume.join("app.log"), &hop).expect("link");
        symlink(&hop, l.volume.join("c.log")).expect("link");
        for name in ["app.log", "b.log", "c.log"] {
            l.confinement.open(&l.volume.join(name)).expect(name);
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let l = layout();
        let fifo = l.volume.join("pipe.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        assert!(matches!(
            l.confinement.open(&fifo),
            Err(OpenError::NotRegular)
        ));
    }

    #[test]
    fn a_root_that_is_a_link_counts_as_it_resolved_at_start() {
        let l = layout();
        let alias = l.volume.parent().expect("dir").join("alias");
        symlink(&l.volume, &alias).expect("link");
        let c = Confinement::new([alias.as_path()]);
        c.open(&alias.join("app.log"))
            .expect("through the root's link");
        assert!(matches!(c.open(&l.secret), Err(OpenError::Outside { .. })));
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
