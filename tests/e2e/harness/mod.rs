//! The harness of the integration tests: a temporary directory with the logs and the key, the
//! built-in intake on 127.0.0.1 (`intake`), the real `sidelog` binary started against them
//! and watched (`process`), the configurations it is given (`config`), writers like an app's
//! (`writers`) and the checks of what arrived (`checks`). Conditions are awaited by polling
//! with a deadline, never by sleeping a fixed time.

mod checks;
mod config;
mod intake;
mod process;
mod writers;

pub use checks::*;
pub use config::url;
pub use intake::*;
pub use process::*;
pub use writers::*;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sidelog_devtools::intake::{Faults, Intake, IntakeOptions};

pub const API_KEY: &str = "test-api-key-0123456789";
pub const BIN: &str = env!("CARGO_BIN_EXE_sidelog");

/// The shipper the harness starts: `SIDELOG_BIN` when set (CI sets the image's own binary,
/// the static `dist` build without the development tools), else the one cargo built.
pub fn shipper_bin() -> String {
    match std::env::var("SIDELOG_BIN") {
        Ok(bin) if !bin.is_empty() => {
            assert!(Path::new(&bin).is_file(), "SIDELOG_BIN={bin} is not a file");
            bin
        }
        _ => BIN.to_string(),
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub intake: Option<Intake>,
    pub child: Option<Child>,
    runs: usize,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("mkdir logs");
        std::fs::write(dir.path().join("api-key"), format!("{API_KEY}\n")).expect("key");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            dir,
            rt,
            intake: None,
            child: None,
            runs: 0,
        }
    }

    /// A harness with an intake already listening on an ephemeral port.
    pub fn with_intake() -> Harness {
        let mut h = Harness::new();
        h.start_intake(None);
        h
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(name)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The classic YAML alias bomb ("billion laughs"): twelve levels of nine aliases, 9^12 copies
/// of one short string if a reader expanded them all, in 13 lines.
pub fn yaml_alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [\"lol\"]\n");
    for level in 1..=12 {
        let refs: Vec<String> = (0..9).map(|_| format!("*a{}", level - 1)).collect();
        text.push_str(&format!("a{level}: &a{level} [{}]\n", refs.join(", ")));
    }
    text
}
