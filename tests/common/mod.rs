//! Test harness: a temporary log directory, the built-in intake on 127.0.0.1, and the real
//! `sidelog` binary started against them. Conditions are awaited by polling with a deadline.

#![allow(dead_code)]

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

    pub fn start_intake(&mut self, port: Option<u16>) {
        self.start_intake_with(port, |_| {});
    }

    /// Starts the intake (keeping events, checking the key in `api-key`) after `adjust` had
    /// its say on the options.
    pub fn start_intake_with(
        &mut self,
        port: Option<u16>,
        adjust: impl FnOnce(&mut IntakeOptions),
    ) {
        let mut opts = IntakeOptions {
            listen: port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))),
            api_key_file: Some(self.dir.path().join("api-key")),
            keep_events: true,
            ..IntakeOptions::default()
        };
        adjust(&mut opts);
        let intake = self.rt.block_on(Intake::start(opts)).expect("start intake");
        self.intake = Some(intake);
    }

    /// Starts `sidelog --config <config>` with extra environment variables.
    pub fn start_with_env(&mut self, config: &Path, env: &[(&str, &str)]) {
        let config = config.to_str().expect("UTF-8 path");
        self.start_args(&["--config", config], env);
    }

    /// Starts `sidelog <args>` with extra environment variables (and none of the Datadog
    /// Agent's from the machine's environment).
    pub fn start_args(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let mut cmd = Command::new(shipper_bin());
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.start_command(cmd);
    }

    /// Starts `cmd` (sidelog, or a wrapper that execs it) as the running shipper: its stderr
    /// to the run's file, without `RUST_LOG` or the Datadog Agent's variables of the machine.
    pub fn start_command(&mut self, mut cmd: Command) {
        self.runs += 1;
        let stderr = File::create(self.stderr_path(self.runs)).expect("stderr file");
        cmd.env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DD_")) {
            cmd.env_remove(k);
        }
        self.child = Some(cmd.spawn().expect("spawn sidelog"));
    }

    /// Kills the shipper with SIGKILL (no cleanup at all) and reaps it; it must have been
    /// running until then (an exit of its own would be a failure the test did not ask for).
    #[track_caller]
    pub fn kill9(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.take().expect("running");
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "sidelog ended before the kill: {status:?}\n{}",
                self.stderr()
            );
        }
        signal(&child, libc::SIGKILL);
        let status = child.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "sidelog ended otherwise than by the kill: {status:?}\n{}",
            self.stderr()
        );
    }

    /// An outage: the intake closes its connections and stops listening (connections are
    /// refused), keeping its port for [`Harness::intake_up`].
    pub fn intake_down(&self) {
        self.rt
            .block_on(self.intake().go_down())
            .expect("intake down");
    }

    /// The intake listens again on its port after [`Harness::intake_down`].
    pub fn intake_up(&self) {
        let _guard = self.rt.enter();
        self.intake().come_up().expect("intake up");
    }

    /// Starts sidelog with its admin endpoint on a port of the system's choosing and
    /// returns the endpoint's base URL, as sidelog reports it.
    pub fn start_with_admin(&mut self, config: &Path, env: &[(&str, &str)]) -> String {
        let mut env = env.to_vec();
        env.push(("SIDELOG_METRICS_LISTEN", "127.0.0.1:0"));
        self.start_with_env(config, &env);
        self.wait_stderr("serving /metrics", Duration::from_secs(30));
        let log = self.stderr();
        // In the text format `addr=127.0.0.1:9500`, in JSON `"addr":"127.0.0.1:9500"`.
        let addr = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .and_then(|l| {
                let at = l
                    .find("addr=")
                    .map(|i| i + 5)
                    .or_else(|| l.find("\"addr\":\"").map(|i| i + 8))?;
                l[at..]
                    .split(|c: char| c == '"' || c.is_whitespace())
                    .next()
            })
            .unwrap_or_else(|| panic!("no admin address in sidelog's log:\n{log}"));
        format!("http://{addr}")
    }

    pub fn intake(&self) -> &Intake {
        self.intake.as_ref().expect("intake running")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(name)
    }

    /// Writes a config with the given extra TOML appended (may override nothing already set:
    /// tables given in `extra` must not repeat the ones here).
    pub fn write_config(&self, endpoint: &str, datadog_extra: &str, extra: &str) -> PathBuf {
        self.write_config_full(endpoint, "", datadog_extra, extra)
    }

    /// As [`Harness::write_config`], with extra keys for the `[[inputs]]` table too.
    pub fn write_config_full(
        &self,
        endpoint: &str,
        input_extra: &str,
        datadog_extra: &str,
        extra: &str,
    ) -> PathBuf {
        let path = self.dir.path().join("sidelog.toml");
        // Tests compare lines in order: one request at a time unless a test says otherwise.
        let concurrency = if datadog_extra.contains("request_concurrency") {
            ""
        } else {
            "request_concurrency = 1"
        };
        // Quick retries unless a test says otherwise (the defaults wait up to 2.5 s).
        let retries = if datadog_extra.contains("retry_") {
            ""
        } else {
            "retry_initial_ms = 50\nretry_max_ms = 500"
        };
        let text = format!(
            r#"
data_dir = "{data}"
log_level = "debug"
shutdown_timeout_ms = 10000
shutdown_quiet_ms = 200

[[inputs]]
include = ["{logs}/*.log"]
service = "user-msvc"
source = "go"
tags = ["team:users"]
{input_extra}

[datadog]
endpoint = "{endpoint}"
api_key_file = "{key}"
hostname = "test-host"
tags = ["env:test"]
{retries}
{concurrency}
{datadog_extra}

{extra}
"#,
            data = self.dir.path().join("data").display(),
            logs = self.logs().display(),
            key = self.dir.path().join("api-key").display(),
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The usual config: the running intake, 200 ms batches.
    pub fn default_config(&self) -> PathBuf {
        let endpoint = self.intake().endpoint();
        self.write_config(&endpoint, "", "[batch]\ntimeout_ms = 200\n")
    }

    pub fn stderr_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("sidelog-{run}.stderr"))
    }

    /// Starts `sidelog --config <config>`, its stderr going to a file.
    pub fn start(&mut self, config: &Path) {
        self.start_with_env(config, &[]);
    }

    /// What the current run printed so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path(self.runs)).unwrap_or_default()
    }

    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {needle:?} in sidelog's log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running shipper's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Open descriptors of the running shipper; a `/proc` that cannot be read fails the
    /// test rather than reading as none.
    #[track_caller]
    pub fn open_fds(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.pid());
        let count = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
            .count();
        assert!(count >= 3, "{dir} lists {count} descriptors: not sidelog's");
        count
    }

    /// Peak resident memory of the running shipper, in kB (`VmHWM`).
    #[track_caller]
    pub fn peak_rss_kb(&self) -> u64 {
        self.proc_status_kb("VmHWM")
    }

    /// Anonymous resident memory of the running shipper, in kB (`RssAnon`): the heap and
    /// stacks, what the page cache cannot give back.
    #[track_caller]
    pub fn anon_kb(&self) -> u64 {
        self.proc_status_kb("RssAnon")
    }

    /// A `kB` field of `/proc/<pid>/status`; a missing file or field fails the test.
    #[track_caller]
    fn proc_status_kb(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"));
        assert!(
            value > 0,
            "{field} of 0 kB in {path}: not a running process"
        );
        value
    }

    /// Samples the running shipper's anonymous memory every 10 ms until the sampler is
    /// finished: its peak, in kB (the kernel keeps a peak of the resident set, not of the
    /// anonymous part alone).
    pub fn sample_anon(&self) -> AnonPeak {
        let path = format!("/proc/{}/status", self.pid());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(&path) else {
                    break;
                };
                let kb = status
                    .lines()
                    .find_map(|l| l.strip_prefix("RssAnon:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                peak = peak.max(kb);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        AnonPeak { stop, handle }
    }

    /// Bytes the running shipper has read (`rchar` of `/proc/<pid>/io`).
    #[track_caller]
    pub fn bytes_read(&self) -> u64 {
        let path = format!("/proc/{}/io", self.pid());
        let io =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no rchar in {path}:\n{io}"))
    }

    /// (path, accepted offset) of every stream in the checkpoint file; `None` while there is
    /// no readable checkpoint file.
    pub fn checkpoint_offsets(&self) -> Option<Vec<(String, u64)>> {
        let path = self.dir.path().join("data/checkpoints.json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        let files = json["files"].as_array()?;
        Some(
            files
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or_default().to_string(),
                        e["offset"].as_u64().unwrap_or(0),
                    )
                })
                .collect(),
        )
    }

    /// Every message that arrived, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.intake()
            .events()
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Stops `writer`, waits until as many events as it wrote lines arrived, stops sidelog
    /// with SIGTERM (exit 0 required) and checks each line arrived exactly once.
    pub fn finish_stream(&mut self, writer: PacedWriter, prefix: &str) {
        let n = writer.finish();
        wait_for(
            &format!("{n} lines at the intake"),
            Duration::from_secs(60),
            || self.intake().event_count() >= n,
        );
        assert!(self.terminate().success(), "{}", self.stderr());
        assert_each_once(&self.messages(), prefix, n);
    }

    /// Starts sidelog again with `config` after a clean stop, lets it read its files to the
    /// end, stops it, and checks the intake still holds exactly `expected` events: the
    /// checkpoints covered everything sent before.
    #[track_caller]
    pub fn assert_restart_sends_nothing(&mut self, config: &Path, expected: u64) {
        self.start(config);
        self.wait_stderr("caught up with file", Duration::from_secs(60));
        assert!(self.terminate().success(), "{}", self.stderr());
        assert_eq!(
            self.intake().event_count(),
            expected,
            "sent again after a restart"
        );
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(Duration::from_secs(30))
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate_within(&mut self, timeout: Duration) -> ExitStatus {
        signal(self.child.as_ref().expect("running"), libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the running shipper to exit (it was told to by a signal,
    /// or ends on its own), and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "sidelog did not exit within {timeout:?}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the running shipper.
    pub fn send_signal(&self, sig: i32) {
        signal(self.child.as_ref().expect("running"), sig);
    }

    /// Events that arrived, grouped by the `filename:` tag, messages in arrival order.
    pub fn messages_by_file(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.intake().events() {
            let tags = e["ddtags"].as_str().unwrap_or_default();
            let file = tags
                .split(',')
                .find_map(|t| t.strip_prefix("filename:"))
                .unwrap_or("?")
                .to_string();
            out.entry(file)
                .or_default()
                .push(e["message"].as_str().unwrap_or_default().to_string());
        }
        out
    }

    /// A GET of `url`: its status and body (status 0 and the error when there is no answer).
    pub fn get(&self, url: &str) -> (u16, String) {
        self.rt.block_on(async {
            match reqwest::get(url).await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.text().await.unwrap_or_default())
                }
                Err(e) => (0, e.to_string()),
            }
        })
    }

    /// One sample (`name{labels}`) of the admin endpoint's metrics at `base`; `None` when
    /// the endpoint does not answer or has no such sample.
    pub fn metric(&self, base: &str, series: &str) -> Option<f64> {
        let text = self.rt.block_on(async {
            reqwest::get(format!("{base}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()
        })?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    /// Faults the intake injected so far (refusals, dropped connections, slow answers).
    pub fn faults_injected(&self) -> u64 {
        self.intake()
            .state
            .faults_injected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the intake has injected `more` faults beyond those injected so far: a
    /// fault window measured in what the shipper met, not in time.
    pub fn wait_faults(&self, more: u64, timeout: Duration) {
        let target = self.faults_injected() + more;
        wait_for(&format!("{more} more faults injected"), timeout, || {
            self.faults_injected() >= target
        });
    }

    /// Waits until sidelog has rescanned its globs `more` times beyond those in its log now.
    pub fn wait_rescans(&self, more: usize, timeout: Duration) {
        let target = self.stderr().matches("globs rescanned").count() + more;
        wait_for(&format!("{more} more rescans"), timeout, || {
            self.stderr().matches("globs rescanned").count() >= target
        });
    }

    /// Waits until `n` events arrived; on a timeout, says how many did and what sidelog
    /// logged last.
    #[track_caller]
    pub fn wait_events(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.intake().event_count() < n {
            if Instant::now() >= deadline {
                let log = self.stderr();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                panic!(
                    "timed out after {timeout:?}: {} of {n} events at the intake; sidelog's log ends:\n{}",
                    self.intake().event_count(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// A running sampler of a shipper's anonymous memory (see [`Harness::sample_anon`]).
pub struct AnonPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl AnonPeak {
    /// Stops sampling; the peak seen, in kB (never 0: the process was sampled).
    #[track_caller]
    pub fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = self.handle.join().expect("sampler");
        assert!(peak > 0, "the shipper's memory was never sampled");
        peak
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) with a pid we own has no memory-safety requirements.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

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

/// Compares arrived lines with written ones; on a mismatch reports counts and the first
/// difference instead of both lists.
#[track_caller]
pub fn assert_lines(actual: &[String], expected: &[String], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let unique: std::collections::HashSet<&String> = actual.iter().collect();
    panic!(
        "{what}: {} lines arrived ({} distinct), {} expected; first difference at {first}: got {:?}, expected {:?}",
        actual.len(),
        unique.len(),
        expected.len(),
        actual.get(first),
        expected.get(first)
    );
}

/// Checks that the messages starting with `prefix` carry each sequence number `0..n` exactly
/// once (numbers as written by [`PacedWriter`]); reports what is missing or repeated.
#[track_caller]
pub fn assert_each_once(messages: &[String], prefix: &str, n: u64) {
    let mut count = vec![0u32; n as usize];
    let mut foreign = 0;
    for m in messages {
        let Some(rest) = m.strip_prefix(prefix) else {
            continue;
        };
        match rest.trim().parse::<u64>() {
            Ok(seq) if seq < n => count[seq as usize] += 1,
            _ => foreign += 1,
        }
    }
    let missing: Vec<usize> = (0..n as usize).filter(|&i| count[i] == 0).collect();
    let repeated: Vec<usize> = (0..n as usize).filter(|&i| count[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && foreign == 0,
        "{prefix}: {} of {n} missing (first {:?}), {} repeated (first {:?}), {foreign} unexpected",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
    );
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

/// A thread appending `"<prefix><seq>"` lines to a file at a steady rate, like an app.
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
            let start = Instant::now();
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * lines_per_sec as f64) as u64;
                if seq >= due {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
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

/// For the messages starting with `prefix` and numbered `0..n` (as [`PacedWriter`] writes
/// them): how many numbers never arrived, and how many arrivals were repeats.
pub fn count_missing_and_repeated(messages: &[String], prefix: &str, n: u64) -> (usize, usize) {
    let mut count = vec![0u32; n as usize];
    for m in messages {
        if let Some(seq) = m
            .strip_prefix(prefix)
            .and_then(|rest| rest.trim().parse::<u64>().ok())
            && seq < n
        {
            count[seq as usize] += 1;
        }
    }
    let missing = count.iter().filter(|&&c| c == 0).count();
    let repeated = count.iter().map(|&c| c.saturating_sub(1) as usize).sum();
    (missing, repeated)
}

/// A directory laid out like the kubelet's atomic writer makes a Secret, ConfigMap or
/// Downward API volume: `<file> -> ..data/<file>`, `..data -> ..<timestamp>`, the content in
/// the timestamped directory.
pub struct KubeletVolume {
    dir: PathBuf,
    file: String,
    generation: u32,
}

impl KubeletVolume {
    pub fn new(dir: &Path, file: &str, content: &str) -> KubeletVolume {
        std::fs::create_dir_all(dir).expect("mkdir volume");
        let mut v = KubeletVolume {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            generation: 0,
        };
        let ts = v.write_generation(content);
        std::os::unix::fs::symlink(&ts, dir.join("..data")).expect("..data");
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).expect("file link");
        v
    }

    /// The file as the container sees it.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    fn write_generation(&mut self, content: &str) -> String {
        self.generation += 1;
        let ts = format!(
            "..2026_11_26_10_00_{:02}.{:09}",
            self.generation, self.generation
        );
        std::fs::create_dir(self.dir.join(&ts)).expect("mkdir generation");
        std::fs::write(self.dir.join(&ts).join(&self.file), content).expect("content");
        ts
    }

    /// What the kubelet does on an update: a new timestamped directory, a `..data_tmp`
    /// symlink to it renamed over `..data`, then the old directory removed.
    pub fn update(&mut self, content: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).expect("read ..data");
        let ts = self.write_generation(content);
        std::os::unix::fs::symlink(&ts, self.dir.join("..data_tmp")).expect("..data_tmp");
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).expect("swap");
        std::fs::remove_dir_all(self.dir.join(old)).expect("remove old generation");
    }
}

/// A paced stream of `rate` lines a second ("w 0", "w 1", ...) through `fault`, applied
/// between two healthy stretches until the intake injected it `times` times, then a clean
/// stop once every line written has arrived. `datadog_extra` goes into `[datadog]`; batches
/// leave after 100 ms. Returns the stopped harness and the number of lines written: what
/// the fault may repeat is for the caller to judge.
pub fn stream_through_fault(
    fault: Faults,
    times: u64,
    datadog_extra: &str,
    rate: u64,
) -> (Harness, u64) {
    const T: Duration = Duration::from_secs(90);
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let endpoint = h.intake().endpoint();
    let config = h.write_config(&endpoint, datadog_extra, "[batch]\ntimeout_ms = 100\n");
    h.start(&config);
    let writer = PacedWriter::start(&log, "w ", rate, OnRotate::Keep);
    h.wait_events(200, T);
    h.intake().set_faults(fault);
    h.wait_faults(times, T);
    h.intake().set_faults(Faults::default());
    writer.wait_written(200);
    let n = writer.finish();
    h.wait_events(n, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    (h, n)
}
