//! Writing like an app: lines appended at once or at a steady rate, through a rotation; and
//! volumes updated like the kubelet's (the development tools' own, as the soak uses it).

use super::*;

pub use sidelog_devtools::kubelet::KubeletVolume;
use sidelog_devtools::writer::Pace;

/// Appends `lines` (each gets a `\n`) to `path`.
pub fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    f.write_all(&buf).expect("append");
}

/// `prefix-000000` ... numbered lines, easy to check for order and gaps.
pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!("{prefix} line {i:06} of the test"))
        .collect()
}

/// How a [`PacedWriter`] behaves when its file is renamed away.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnRotate {
    /// Keeps writing through its descriptor (copytruncate, or an app never told).
    Keep,
    /// Reopens its path once the name leads elsewhere (an app that handles the rotation
    /// signal), after writing `late` more lines to the old file.
    Reopen { late: u64 },
}

/// A thread appending `"<prefix><seq>"` lines to a file at a steady rate, like an app, on the
/// development tools' clock ([`Pace`]). The benchmarks' writer makes sample lines with
/// timestamps for the latency; the tests need numbered lines to find what is missing or
/// repeated, and a writer that reopens its file after a rotation.
pub struct PacedWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Held by the test to pause the writer (e.g. across a copytruncate).
    pub pause: std::sync::Arc<std::sync::Mutex<()>>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl PacedWriter {
    pub fn start(
        path: &Path,
        prefix: &str,
        lines_per_sec: u64,
        on_rotate: OnRotate,
    ) -> PacedWriter {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let pause = std::sync::Arc::new(std::sync::Mutex::new(()));
        let (path, prefix) = (path.to_path_buf(), prefix.to_string());
        let (s, w, p) = (stop.clone(), written.clone(), pause.clone());
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open log for writing")
        };
        let handle = std::thread::spawn(move || {
            let mut file = open(&path);
            let mut late_left: Option<u64> = None;
            let pace = Pace::new(lines_per_sec);
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                pace.wait_for(seq);
                let _paused = p.lock().expect("pause lock");
                let mut line = format!("{prefix}{seq:08}").into_bytes();
                line.push(b'\n');
                file.write_all(&line).expect("write line");
                seq += 1;
                w.store(seq, Ordering::Relaxed);
                if let OnRotate::Reopen { late } = on_rotate {
                    let ours = file.metadata().expect("fstat").ino();
                    let named = std::fs::metadata(&path).map(|m| m.ino()).ok();
                    if named != Some(ours) {
                        let left = late_left.get_or_insert(late);
                        if *left == 0 {
                            file = open(&path);
                            late_left = None;
                        } else {
                            *left -= 1;
                        }
                    }
                }
            }
            seq
        });
        PacedWriter {
            stop,
            written,
            pause,
            handle: Some(handle),
        }
    }

    pub fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `more` lines beyond what is written now have been written.
    pub fn wait_written(&self, more: u64) {
        let target = self.written() + more;
        wait_for("lines written", Duration::from_secs(60), || {
            self.written() >= target
        });
    }

    /// Stops writing; returns how many lines were written.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("writer thread")
    }
}
