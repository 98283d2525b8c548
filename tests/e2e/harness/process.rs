//! The shipper as a process: started with a configuration, arguments or a wrapper, its log
//! read, its memory and descriptors looked at in `/proc`, its admin endpoint asked, signalled,
//! killed and reaped.

use super::*;

impl Harness {
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

    /// Waits until sidelog has rescanned its globs `more` times beyond those in its log now.
    pub fn wait_rescans(&self, more: usize, timeout: Duration) {
        let target = self.stderr().matches("globs rescanned").count() + more;
        wait_for(&format!("{more} more rescans"), timeout, || {
            self.stderr().matches("globs rescanned").count() >= target
        });
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
