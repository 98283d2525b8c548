//! The built-in intake the shipper ships to: started, taken down and up, its faults counted,
//! and what arrived read back.

use super::*;
use sidelog_shipper::config::DatadogConfig;

impl Harness {
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

    pub fn intake(&self) -> &Intake {
        self.intake.as_ref().expect("intake running")
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

/// A paced stream of `rate` lines a second ("w 0", "w 1", ...) through `fault`, applied
/// between two healthy stretches until the intake injected it `times` times, then a clean
/// stop once every line written has arrived. `datadog` adjusts the `[datadog]` settings; batches
/// leave after 100 ms. Returns the stopped harness and the number of lines written: what
/// the fault may repeat is for the caller to judge.
pub fn stream_through_fault(
    fault: Faults,
    times: u64,
    datadog: impl FnOnce(&mut DatadogConfig),
    rate: u64,
) -> (Harness, u64) {
    const T: Duration = Duration::from_secs(90);
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        datadog(&mut c.datadog);
    });
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
