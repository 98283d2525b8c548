//! `sidelog bench soak`: a Pod's bad days, compressed into minutes, to see a leak or a cost
//! that creeps. 2,000 lines/s over 20 files; each file rotated once a minute in turn, by
//! rename (even files) or copytruncate (odd ones); 1% of requests answered 500; a 30 s
//! outage (503) every 5 minutes, the first after one; the API key rotated (the kubelet's
//! way, in a Secret volume) and a SIGHUP sent every minute. Each minute it prints the
//! shipper's RSS, anonymous memory, descriptors, threads and CPU; at the end, every line
//! written must have arrived.
//!
//! copytruncate loses the lines written between the copy and the truncation, and those the
//! shipper had not read yet are only in the copy: that is the method's, for every shipper.
//! The soak holds the writer and waits until the shipper has read the file to its end before
//! it copies and truncates (a rotation due during an outage waits for the next turn), so
//! what is measured is sidelog's part.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use rustix::process::{Pid, Signal, kill_process};

use super::*;
use crate::kubelet::KubeletVolume;
use crate::lock;
use crate::writer::pace_lines;
use sidelog_shipper::config::{Config, Input};

#[derive(Debug, Clone, clap::Args)]
pub struct SoakOptions {
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Lines per second over all files.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Files written (and rotated in turn).
    #[arg(long, default_value_t = 20)]
    pub files: usize,
    /// Bytes per line.
    #[arg(long, default_value_t = 256)]
    pub line_bytes: usize,
    /// Keep the files (logs, the shipper's and the intake's logs) here instead of in a
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Minutes between outages (the first comes after one minute).
const OUTAGE_EVERY_MIN: u64 = 5;
const OUTAGE: Duration = Duration::from_secs(30);
/// Fraction of requests answered 500 outside the outages.
const ERROR_RATE: f64 = 0.01;
/// How long a copytruncate waits for the shipper to have read its file.
const CATCH_UP: Duration = Duration::from_secs(10);

pub async fn soak(opts: SoakOptions) -> anyhow::Result<()> {
    let files = opts.files.max(1);
    let (_tmp, dir) = temp_or(&opts.dir)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let keys = Keys::new(&dir)?;
    let intake_log = dir.join("intake.log");
    let (mut intake, url) = start_intake_args(
        &[
            "--verify",
            "--api-key-file",
            path_str(&keys.intake)?,
            "--error-rate",
            &ERROR_RATE.to_string(),
        ],
        Some(&intake_log),
    )?;
    let config = write_soak_config(&dir, &logs, &url, &keys.link())?;
    let log = dir.join("shipper.log");
    let mut shipper = start_shipper(&config, &log)?;
    let admin = admin_url(&log, &mut shipper).await?;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| logs.join(format!("app-{i:02}.log")))
        .collect();
    let writer = Writer::start(&paths, opts.rate, opts.line_bytes)?;
    print_header(&opts, files);
    let mut run = Run::new(url, admin, keys, shipper, log, writer, paths)?;
    for minute in 1..=opts.minutes {
        run.play_minute(minute).await?;
        run.report_minute(minute).await?;
    }
    let result = run.finish(&dir).await;
    terminate(&mut intake)?;
    result
}

fn print_header(opts: &SoakOptions, files: usize) {
    println!(
        "sidelog bench soak: {} lines/s over {files} files of {}-byte lines, for {} min; each file rotated once a minute (rename or copytruncate), {}% of requests answered 500, a {} s outage every {OUTAGE_EVERY_MIN} min, the key rotated and a SIGHUP every minute",
        opts.rate,
        opts.line_bytes,
        opts.minutes,
        ERROR_RATE * 100.0,
        OUTAGE.as_secs()
    );
    println!(
        "{:>4} {:>9} {:>9} {:>8} {:>4} {:>7} {:>7} {:>10} {:>10} {:>7} {:>9}",
        "min",
        "RSS kB",
        "anon kB",
        "CPU %",
        "fds",
        "threads",
        "rotated",
        "written",
        "arrived",
        "repeats",
        "requests"
    );
}

/// A soak under way: the shipper, the app writing, the intake's controls, and where the
/// rotations and the CPU reading stand.
struct Run {
    client: reqwest::Client,
    url: String,
    admin: String,
    keys: Keys,
    shipper: ChildGuard,
    pid: u32,
    log: PathBuf,
    writer: Writer,
    paths: Vec<PathBuf>,
    start: Instant,
    cpu_before: f64,
    rotated: u64,
    next_rotation: usize,
    rotation_at: Duration,
}

impl Run {
    fn new(
        url: String,
        admin: String,
        keys: Keys,
        shipper: ChildGuard,
        log: PathBuf,
        writer: Writer,
        paths: Vec<PathBuf>,
    ) -> anyhow::Result<Run> {
        let pid = shipper.0.id();
        let cpu_before = proc_cpu(pid).context("cannot read the shipper's CPU time")?;
        let mut run = Run {
            client: reqwest::Client::new(),
            url,
            admin,
            keys,
            shipper,
            pid,
            log,
            writer,
            paths,
            start: Instant::now(),
            cpu_before,
            rotated: 0,
            next_rotation: 0,
            rotation_at: Duration::ZERO,
        };
        run.rotation_at = run.per_rotation();
        Ok(run)
    }

    /// Every file is rotated once a minute, in turn.
    fn per_rotation(&self) -> Duration {
        Duration::from_secs(60) / self.paths.len() as u32
    }

    /// Minute `minute`'s events and rotations, as they come due, watching that the shipper
    /// stays up.
    async fn play_minute(&mut self, minute: u64) -> anyhow::Result<()> {
        let minute_start = self.start + Duration::from_secs(60 * (minute - 1));
        let minute_end = minute_start + Duration::from_secs(60);
        let mut events = minute_events(minute).into_iter().peekable();
        loop {
            let now = Instant::now();
            if now >= minute_end {
                return Ok(());
            }
            if let Some(&(at, event)) = events.peek()
                && now >= minute_start + at
            {
                events.next();
                self.apply(event).await?;
                continue;
            }
            if now >= self.start + self.rotation_at {
                self.rotate_next().await?;
                continue;
            }
            if let Some(status) = self.shipper.0.try_wait()? {
                bail!(
                    "the shipper exited in minute {minute} ({status}):\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn apply(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Down => set_faults(&self.client, &self.url, "{\"status\": 503}").await,
            Event::Up => {
                let healthy = format!("{{\"error_rate\": {ERROR_RATE}}}");
                set_faults(&self.client, &self.url, &healthy).await
            }
            Event::RotateKey => self.keys.rotate(),
            Event::Reload => kill_process(Pid::from_child(&self.shipper.0), Signal::HUP)
                .context("cannot send SIGHUP"),
        }
    }

    async fn rotate_next(&mut self) -> anyhow::Result<()> {
        let i = self.next_rotation % self.paths.len();
        let (client, admin, path) = (&self.client, &self.admin, &self.paths[i]);
        let done = rotate(&self.writer, i, || caught_up(client, admin, path)).await?;
        self.rotated += u64::from(done);
        self.next_rotation += 1;
        self.rotation_at += self.per_rotation();
        Ok(())
    }

    /// The minute's row: the shipper's resources and CPU over the minute, and the intake's
    /// count of what arrived.
    async fn report_minute(&mut self, minute: u64) -> anyhow::Result<()> {
        let cpu = proc_cpu(self.pid).context("cannot read the shipper's CPU time")?;
        let s = stats(&self.client, &self.url).await?;
        let row = Row::sample(self.pid)?;
        println!(
            "{minute:>4} {:>9} {:>9} {:>8.2} {:>4} {:>7} {:>7} {:>10} {:>10} {:>7} {:>9}",
            row.rss_kb,
            row.anon_kb,
            100.0 * (cpu - self.cpu_before) / 60.0,
            row.fds,
            row.threads,
            self.rotated,
            self.writer.written(),
            num_of(&s, "distinct"),
            num_of(&s, "duplicates"),
            num_of(&s, "requests"),
        );
        self.cpu_before = cpu;
        Ok(())
    }

    /// Stops the app, waits until every line written has arrived, stops the shipper, and
    /// judges: every line arrived and the shipper exited cleanly.
    async fn finish(mut self, dir: &Path) -> anyhow::Result<()> {
        set_faults(&self.client, &self.url, "{}").await?;
        let total = self.writer.finish()?;
        let arrived = wait_arrived(
            &self.client,
            &self.url,
            total,
            &mut self.shipper,
            &self.log,
            Duration::from_secs(120),
        )
        .await;
        let s = match arrived {
            Ok(s) => s,
            Err(e) => {
                let s = stats(&self.client, &self.url).await?;
                bail!(
                    "{e}; {} lines missing below the last of their file, the first (file:line): {}; logs in {}",
                    s["gaps"],
                    s["first_gaps"],
                    dir.display()
                );
            }
        };
        let status = terminate(&mut self.shipper)?;
        let distinct = num_of(&s, "distinct");
        println!(
            "sidelog bench soak: {total} lines written, {distinct} arrived ({} missing), {} repeats, {} rotations; the shipper exited with {status}",
            total.saturating_sub(distinct),
            num_of(&s, "duplicates"),
            self.rotated,
        );
        if distinct < total || !status.success() {
            bail!(
                "soak failed:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// What happens in minute `minute` (from 1), by when in the minute: a key rotation at
/// 20 s, a SIGHUP at 40 s, and every [`OUTAGE_EVERY_MIN`] minutes (the first after one) an
/// outage from its start.
fn minute_events(minute: u64) -> Vec<(Duration, Event)> {
    let mut events = vec![
        (Duration::from_secs(20), Event::RotateKey),
        (Duration::from_secs(40), Event::Reload),
    ];
    if (minute - 1) % OUTAGE_EVERY_MIN == 1 {
        events.push((Duration::ZERO, Event::Down));
        events.push((OUTAGE, Event::Up));
    }
    events.sort_by_key(|(at, _)| *at);
    events
}

/// Rotates file `i`: by rename when it is even, by copytruncate once `caught_up` says the
/// shipper has read it when it is odd. Whether it was rotated.
async fn rotate<F, Fut>(writer: &Writer, i: usize, caught_up: F) -> anyhow::Result<bool>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    if i.is_multiple_of(2) {
        writer.rotate_by_rename(i)?;
        Ok(true)
    } else {
        writer.copytruncate(i, caught_up).await
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Down,
    Up,
    RotateKey,
    Reload,
}

/// The shipper's resources now.
struct Row {
    rss_kb: u64,
    anon_kb: u64,
    fds: usize,
    threads: usize,
}

impl Row {
    /// A sample; a `/proc` that cannot be read is an error, not a zero.
    fn sample(pid: u32) -> anyhow::Result<Row> {
        let kb = |f: &str| {
            proc_status_kb(pid, f).with_context(|| format!("cannot read {f} of shipper {pid}"))
        };
        let count = |d: &str| -> anyhow::Result<usize> {
            Ok(fs::read_dir(format!("/proc/{pid}/{d}"))
                .with_context(|| format!("cannot list /proc/{pid}/{d}"))?
                .count())
        };
        Ok(Row {
            rss_kb: kb("VmRSS")?,
            anon_kb: kb("RssAnon")?,
            fds: count("fd")?,
            threads: count("task")?,
        })
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a temporary path that is not UTF-8")
}

/// The intake's key file and the shipper's Secret volume, rotated together.
struct Keys {
    intake: PathBuf,
    volume: KubeletVolume,
    generation: u32,
}

impl Keys {
    fn new(dir: &Path) -> anyhow::Result<Keys> {
        let key = Keys::key_of(1);
        fs::write(dir.join("intake-key"), &key)?;
        Ok(Keys {
            intake: dir.join("intake-key"),
            volume: KubeletVolume::new(&dir.join("secret"), "api-key", &key)?,
            generation: 1,
        })
    }

    /// The key file as the shipper is configured with it.
    fn link(&self) -> PathBuf {
        self.volume.path()
    }

    fn key_of(generation: u32) -> String {
        format!("soak-key-{generation:04}\n")
    }

    /// A rotation: the intake takes only the new key from now on, and the volume is updated
    /// to it as the kubelet does.
    fn rotate(&mut self) -> anyhow::Result<()> {
        self.generation += 1;
        let key = Keys::key_of(self.generation);
        fs::write(&self.intake, &key)?;
        self.volume.update(&key)?;
        Ok(())
    }
}

/// The shipper's configuration: the defaults, with its admin endpoint on a port of its own
/// choosing (the soak reads a file's lag there before a copytruncate).
fn write_soak_config(dir: &Path, logs: &Path, url: &str, key: &Path) -> anyhow::Result<PathBuf> {
    let mut config = Config {
        data_dir: dir.join("data"),
        metrics_listen: Some("127.0.0.1:0".parse()?),
        ..Config::default()
    };
    config.inputs.push(Input {
        include: vec![format!("{}/*.log", logs.display())],
        service: "soak".into(),
        source: "bench".into(),
        ..Input::default()
    });
    config.datadog.endpoint = Some(url.parse()?);
    config.datadog.api_key_file = Some(key.to_path_buf());
    config.datadog.hostname = Some("soak-host".into());
    let path = dir.join("sidelog.toml");
    crate::config::write(&config, &path)?;
    Ok(path)
}

/// The admin endpoint's base URL, from the shipper's log line that announces it.
async fn admin_url(log: &Path, shipper: &mut ChildGuard) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .filter(|l| l.contains("serving /metrics"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        {
            return Ok(format!("http://{addr}"));
        }
        if let Some(status) = shipper.0.try_wait()? {
            bail!("the shipper exited at start ({status}):\n{text}");
        }
        if Instant::now() > deadline {
            bail!("the shipper did not announce its admin endpoint:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the shipper has read `path` to its end and the intake accepted it all.
async fn caught_up(client: &reqwest::Client, admin: &str, path: &Path) -> bool {
    let series = format!("sidelog_file_lag_bytes{{path=\"{}\"}} ", path.display());
    let Ok(resp) = client.get(format!("{admin}/metrics")).send().await else {
        return false;
    };
    let Ok(text) = resp.text().await else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .is_some_and(|v| v.trim() == "0")
}

/// An app writing sample lines at a steady rate over its files, each line with a write of
/// its own, and reopening a file whose name was rotated away.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    /// Held by the writer for each line, and by a rotation while it works.
    files: Arc<Mutex<Vec<fs::File>>>,
    paths: Vec<PathBuf>,
    handle: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Writer {
    fn start(paths: &[PathBuf], rate: u64, line_bytes: usize) -> anyhow::Result<Writer> {
        let opened: std::io::Result<Vec<fs::File>> = paths.iter().map(|p| open_append(p)).collect();
        let files = Arc::new(Mutex::new(opened?));
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w, f) = (stop.clone(), written.clone(), files.clone());
        let handle = std::thread::spawn(move || write_lines(&f, rate, line_bytes, &s, &w));
        Ok(Writer {
            stop,
            written,
            files,
            paths: paths.to_vec(),
            handle,
        })
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// logrotate's `create`: the file renamed to `.1` (the previous `.1` dropped) and the
    /// app reopening its name.
    fn rotate_by_rename(&self, i: usize) -> anyhow::Result<()> {
        let mut files = lock(&self.files);
        let path = &self.paths[i];
        fs::rename(path, rotated(path))?;
        files[i] = open_append(path)?;
        Ok(())
    }

    /// logrotate's `copytruncate`, once the shipper has read the file to its end (the app
    /// held meanwhile); `false` when it did not catch up within [`CATCH_UP`] (an outage).
    async fn copytruncate<F, Fut>(&self, i: usize, caught_up: F) -> anyhow::Result<bool>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        // Hold the app: a std mutex guard cannot cross an await, so a blocking thread holds
        // the file list until told to let go.
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let files = self.files.clone();
        let holder = tokio::task::spawn_blocking(move || {
            let _guard = lock(&files);
            let _ = held_tx.send(());
            let _ = go_rx.recv();
        });
        held_rx.await.context("writer lock")?;
        let deadline = Instant::now() + CATCH_UP;
        let mut done = false;
        while Instant::now() < deadline {
            if caught_up().await {
                let path = &self.paths[i];
                fs::copy(path, rotated(path))?;
                OpenOptions::new().write(true).open(path)?.set_len(0)?;
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = go_tx.send(());
        holder.await?;
        Ok(done)
    }

    fn finish(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(r) => r.context("writer failed")?,
            Err(_) => bail!("writer panicked"),
        }
        Ok(self.written.load(Ordering::Relaxed))
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn open_append(path: &Path) -> std::io::Result<fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The app's lines (see [`pace_lines`]); a line that came due while a rotation held the
/// files is written as soon as it lets go.
fn write_lines(
    files: &Mutex<Vec<fs::File>>,
    rate: u64,
    line_bytes: usize,
    stop: &AtomicBool,
    written: &AtomicU64,
) -> std::io::Result<()> {
    let n = lock(files).len();
    pace_lines(n, rate, line_bytes, 23, stop, |f, line, total| {
        lock(files)[f].write_all(line)?;
        written.store(total, Ordering::Relaxed);
        Ok(())
    })
}
