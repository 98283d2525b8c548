//! The failures production brings that the other suites do not: a data directory that
//! cannot be written (exit 3) or is full at start (shipping goes on), a log file replaced by a directory, a symlinked log
//! whose target is switched, the wall clock set back and forth, 10,000 files, a key file
//! emptied or half-written, an intake that never answers or drops the answer after reading
//! the body, and a configuration broken before a SIGHUP. The real binary against the
//! built-in intake; every line is accounted for.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::*;
use sidelog_devtools::intake::Faults;
use sidelog_shipper::config::RequestConcurrency;

const T: Duration = Duration::from_secs(90);

/// Runs `sidelog --config <config>` in a mount namespace of its own where `data_dir` is a
/// fresh tmpfs that `prepare` (shell, `$1` is the mount point) makes unusable first; returns
/// the exit status and what it printed. Only the child sees the mount.
fn run_with_data_dir(h: &Harness, config: &Path, mount: &str, prepare: &str) -> (i32, String) {
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    let script = format!(
        r#"mount -t tmpfs -o {mount} sidelog-test "$1" && {prepare} && exec "$2" --config "$3""#
    );
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(&data)
        .arg(BIN)
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed: {stderr}"));
    (code, stderr)
}

#[test]
fn a_read_only_data_dir_at_start_is_an_error_naming_it() {
    let h = Harness::with_intake();
    append(&h.log("app.log"), numbered("r", 0..10));
    let config = h.default_config();
    let (code, stderr) = run_with_data_dir(&h, &config, "ro,size=1m", "true");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("data_dir"), "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(h.intake().event_count(), 0, "shipped without checkpoints");
}

/// A `data_dir` that is a file, or cannot be made (its parent is a file): a configuration
/// to fix, exit 3 naming it, nothing shipped.
#[test]
fn a_data_dir_that_is_not_a_directory_is_an_error_naming_it() {
    let h = Harness::with_intake();
    append(&h.log("app.log"), numbered("n", 0..10));
    let file = h.dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("file");
    for data_dir in [file.clone(), file.join("below")] {
        let config = h.default_config();
        let data = data_dir.to_str().expect("UTF-8");
        let out = Command::new(shipper_bin())
            .args(["--config", config.to_str().expect("UTF-8")])
            .env("SIDELOG_DATA_DIR", data)
            .env_remove("RUST_LOG")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains(&format!("data_dir {data} cannot be written")),
            "{stderr}"
        );
    }
    assert_eq!(h.intake().event_count(), 0, "shipped without checkpoints");
}

/// A `data_dir` full at start (the checkpoints on the logs' volume, filled by the app) is a
/// bad day, not a configuration error: sidelog ships with its checkpoints in memory, says so
/// once and in a metric, and writes them once space returns; a start from those repeats
/// nothing. (A read-only or missing one is still exit 3, above.)
#[test]
fn a_full_data_dir_at_start_ships_and_writes_checkpoints_once_space_returns() {
    let mut h = Harness::with_intake();
    append(&h.log("app.log"), numbered("f", 0..10));
    let config = h.default_config();
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    let script = r#"mount -t tmpfs -o size=64k sidelog-test "$1" && { cat /dev/zero > "$1/filler" 2>/dev/null; true; } && exec "$2" --config "$3""#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&data)
    .arg(shipper_bin())
    .arg(&config)
    .env("SIDELOG_METRICS_LISTEN", "127.0.0.1:0");
    h.start_command(cmd);
    h.wait_stderr("serving /metrics", T);
    let log = h.stderr();
    let base = log
        .lines()
        .find_map(|l| l.split("addr=").nth(1))
        .map(|a| format!("http://{}", a.split_whitespace().next().unwrap_or("")))
        .expect("admin address");
    h.wait_events(10, T);
    append(&h.log("app.log"), numbered("f", 10..20));
    h.wait_events(20, T);
    wait_for("a failed checkpoint write", T, || {
        h.metric(&base, "sidelog_checkpoint_write_errors_total")
            .unwrap_or(0.0)
            >= 1.0
    });
    assert_eq!(h.metric(&base, "sidelog_checkpoints_unwritten"), Some(1.0));
    // Said once, at start; the failed writes since add no warning of their own.
    assert_eq!(h.stderr().matches("cannot be written").count(), 0);
    assert_eq!(
        h.stderr().matches("is full").count(),
        1,
        "said once:\n{}",
        h.stderr()
    );
    // Space returns (the data directory as the shipper sees it, in its mount namespace).
    let inside = PathBuf::from(format!("/proc/{}/root{}", h.pid(), data.display()));
    std::fs::remove_file(inside.join("filler")).expect("free the space");
    let written = inside.join("checkpoints.json");
    let size = std::fs::metadata(h.log("app.log")).expect("stat").len();
    wait_for("the checkpoints written", T, || {
        std::fs::read_to_string(&written)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["files"][0]["offset"].as_u64())
            == Some(size)
    });
    h.wait_stderr("checkpoints written again", T);
    assert_eq!(h.metric(&base, "sidelog_checkpoints_unwritten"), Some(0.0));
    let checkpoints = std::fs::read(&written).expect("read checkpoints");
    h.kill9();
    // A start from what was written there repeats nothing.
    std::fs::write(data.join("checkpoints.json"), checkpoints).expect("copy out");
    h.assert_restart_sends_nothing(&config, 20);
    let mut arrived = h.messages();
    arrived.sort();
    assert_lines(&arrived, &numbered("f", 0..20), "each line once");
}

#[test]
fn a_log_file_replaced_by_a_directory_is_skipped_and_nothing_lost() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("file", 0..100));
    append(&h.log("other.log"), numbered("other", 0..10));
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rescan_interval_ms = 200;
    });
    h.start(&config);
    h.wait_events(110, T);
    // Its last lines, then the name becomes a directory (a volume mounted over it, a
    // misconfigured app).
    append(&log, numbered("file", 100..150));
    std::fs::remove_file(&log).expect("remove");
    std::fs::create_dir(&log).expect("mkdir");
    h.wait_events(160, T);
    h.wait_rescans(3, T);
    append(&h.log("other.log"), numbered("other", 10..20));
    h.wait_events(170, T);
    // And back to a file: read from its start.
    std::fs::remove_dir(&log).expect("rmdir");
    append(&log, numbered("again", 0..30));
    h.wait_events(200, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let by_file = h.messages_by_file();
    let mut expected = numbered("file", 0..150);
    expected.extend(numbered("again", 0..30));
    assert_lines(&by_file["app.log"], &expected, "app.log");
    assert_lines(
        &by_file["other.log"],
        &numbered("other", 0..20),
        "other.log",
    );
    let log = h.stderr();
    assert_eq!(
        log.matches("not a regular file").count(),
        1,
        "reported once, not once per rescan:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// A log directory laid out like the kubelet's atomic writer: `app.log -> ..data/app.log`,
/// `..data -> ..<generation>`.
struct SwitchedLink {
    dir: PathBuf,
    generation: u32,
}

impl SwitchedLink {
    fn new(dir: &Path) -> SwitchedLink {
        let mut link = SwitchedLink {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        let first = link.next_generation();
        std::os::unix::fs::symlink(&first, dir.join("..data")).expect("..data");
        std::os::unix::fs::symlink("..data/app.log", dir.join("app.log")).expect("app.log");
        link
    }

    /// A new generation directory with an empty `app.log`; returns its name.
    fn next_generation(&mut self) -> String {
        self.generation += 1;
        let name = format!("..gen-{}", self.generation);
        std::fs::create_dir(self.dir.join(&name)).expect("mkdir generation");
        std::fs::write(self.dir.join(&name).join("app.log"), b"").expect("app.log");
        name
    }

    /// The file the link leads to now.
    fn target(&self) -> PathBuf {
        self.dir
            .join(format!("..gen-{}", self.generation))
            .join("app.log")
    }

    /// Points `..data` at a new generation (a rename, atomic) and removes the old one.
    fn switch(&mut self) {
        let old = self.target();
        let next = self.next_generation();
        std::os::unix::fs::symlink(&next, self.dir.join("..data_tmp")).expect("..data_tmp");
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).expect("swap");
        std::fs::remove_dir_all(old.parent().expect("generation")).expect("remove old");
    }
}

#[test]
fn a_symlinked_log_whose_target_is_switched_is_followed_to_the_new_file() {
    let mut h = Harness::with_intake();
    let mut link = SwitchedLink::new(&h.logs());
    append(&link.target(), numbered("gen1", 0..100));
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rescan_interval_ms = 500;
    });
    h.start(&config);
    h.wait_events(100, T);
    // The last lines of the first target just before the switch, which deletes it.
    append(&link.target(), numbered("gen1", 100..150));
    link.switch();
    append(&link.target(), numbered("gen2", 0..100));
    h.wait_events(250, T);
    link.switch();
    append(&link.target(), numbered("gen3", 0..50));
    h.wait_events(300, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("gen1", 0..150);
    expected.extend(numbered("gen2", 0..100));
    expected.extend(numbered("gen3", 0..50));
    let mut got = h.messages_by_file()["app.log"].clone();
    got.sort();
    expected.sort();
    assert_lines(&got, &expected, "every target's lines once");
}

/// libfaketime, which moves the wall clock of the process it is preloaded into (Debian's
/// `faketime` package; `.ci/test` installs it).
fn libfaketime() -> PathBuf {
    let path = PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
    assert!(
        path.exists(),
        "{} missing: install Debian's faketime package",
        path.display()
    );
    path
}

/// The clock's offset as libfaketime reads it from its file: `+7200` or `-3600` seconds.
fn set_clock_offset(file: &Path, secs: i64) {
    std::fs::write(file, format!("{secs:+}\n")).expect("offset file");
}

#[test]
fn the_wall_clock_set_back_and_forth_changes_nothing_but_timestamps() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let offset = h.dir.path().join("clock-offset");
    set_clock_offset(&offset, 0);
    let lib = libfaketime();
    let config = h.default_config();
    let env = [
        ("LD_PRELOAD", lib.to_str().expect("utf8")),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().expect("utf8")),
        // The offset file is read at every reading of the clock, so a jump is in effect as
        // soon as it is written; the monotonic clock, which times batches and retries, is
        // left alone as NTP leaves it.
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let base = h.start_with_admin(&config, &env);
    let writer = PacedWriter::start(&log, "c ", 200, OnRotate::Keep);
    writer.wait_written(200);
    for (secs, what) in [
        (-3600, "an hour back"),
        (7200, "an hour ahead"),
        (0, "back to now"),
    ] {
        // The jump comes while everything written has been delivered.
        let paused = writer.pause.lock().expect("pause");
        h.wait_events(writer.written(), T);
        let arrived = h.intake().event_count();
        set_clock_offset(&offset, secs);
        // Time since the last delivery is measured on the monotonic clock: an hour ahead
        // does not read as an hour without delivery.
        let since = h
            .metric(&base, "sidelog_seconds_since_last_accepted")
            .expect("gauge");
        assert!(since < 5.0, "{what}: {since} s since the last delivery");
        drop(paused);
        // Lines written after the jump arrive as promptly as before: no batch waits for the
        // wall clock to catch up, none is let go early.
        writer.wait_written(400);
        let written = writer.written();
        let waited = Instant::now();
        h.wait_events(written, T);
        let took = waited.elapsed();
        eprintln!("{what}: {written} lines arrived {took:?} after written");
        assert!(took < Duration::from_secs(3), "{what}: lines held {took:?}");
        assert!(h.intake().event_count() > arrived);
        // Events carry the wall clock as it reads now, once the offset is in effect.
        let now_ms = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64)
            + secs * 1000;
        let newest = h.intake().events().last().map(|e| e["timestamp"].as_i64());
        let stamp = newest.flatten().expect("timestamp");
        assert!(
            (stamp - now_ms).abs() < 10_000,
            "{what}: timestamp {stamp} against {now_ms}"
        );
    }
    let n = writer.finish();
    h.wait_events(n, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_each_once(&h.messages(), "c ", n);
    // The checkpoints kept every position across the jumps: a restart sends nothing.
    h.start_with_env(&config, &env);
    h.wait_stderr("caught up with file", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_eq!(h.intake().event_count(), n, "sent again after a restart");
}

#[test]
fn ten_thousand_files_are_each_shipped_once_in_bounded_descriptors() {
    const FILES: usize = 10_000;
    let mut h = Harness::with_intake();
    for i in 0..FILES {
        append(
            &h.log(&format!("f{i:05}.log")),
            numbered(&format!("f{i}"), 0..2),
        );
    }
    let config = h.config_with(|c| c.batch.timeout_ms = 200);
    let started = Instant::now();
    h.start(&config);
    let mut max_fds = 0;
    wait_for("every file's lines", Duration::from_secs(300), || {
        max_fds = max_fds.max(h.open_fds());
        h.intake().event_count() >= 2 * FILES as u64
    });
    let took = started.elapsed();
    let anon_kb = h.anon_kb();
    // One more line each: every file is found again after its descriptor was given back.
    for i in 0..FILES {
        append(
            &h.log(&format!("f{i:05}.log")),
            numbered(&format!("f{i}"), 2..3),
        );
    }
    wait_for("every file's third line", Duration::from_secs(300), || {
        max_fds = max_fds.max(h.open_fds());
        h.intake().event_count() >= 3 * FILES as u64
    });
    assert!(h.terminate().success(), "{}", h.stderr());
    eprintln!(
        "{FILES} files: shipped in {took:?}, at most {max_fds} descriptors, {anon_kb} kB anonymous"
    );
    // tail.max_open_files (1,024 by default), plus the runtime's own descriptors.
    assert!(max_fds <= 1024 + 30, "{max_fds} descriptors open");
    assert!(anon_kb < 32 * 1024, "{anon_kb} kB anonymous memory");
    let by_file = h.messages_by_file();
    assert_eq!(by_file.len(), FILES);
    for i in 0..FILES {
        let name = format!("f{i:05}.log");
        assert_lines(&by_file[&name], &numbered(&format!("f{i}"), 0..3), &name);
    }
    assert_eq!(h.intake().event_count(), 3 * FILES as u64, "duplicates");
}

/// A stream through a key file that goes bad and comes back: the intake takes only
/// `the-right-key-0123456789`.
#[test]
fn a_key_file_emptied_or_half_written_keeps_the_last_good_key() {
    let mut h = Harness::new();
    let intake_key = h.dir.path().join("intake-key");
    std::fs::write(&intake_key, "the-right-key-0123456789\n").expect("key");
    h.start_intake_with(None, |o| o.api_key_file = Some(intake_key.clone()));
    let key_file = h.dir.path().join("api-key");
    std::fs::write(&key_file, "the-right-key-0123456789\n").expect("key");
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = h.default_config();
    h.start(&config);
    let writer = PacedWriter::start(&log, "k ", 200, OnRotate::Keep);
    writer.wait_written(200);
    h.wait_events(100, T);

    // Emptied (a writer that truncates, then writes): the key in use stays.
    std::fs::write(&key_file, b"").expect("empty");
    h.wait_stderr("cannot use the API key file", T);
    let arrived = h.intake().event_count();
    writer.wait_written(200);
    h.wait_events(arrived + 200, T);
    std::fs::write(&key_file, "the-right-key-0123456789\n").expect("key");
    h.wait_stderr("holds a key again", T);

    // Half-written: the intake rejects it once, and the last accepted key takes over.
    std::fs::write(&key_file, "the-right-k").expect("half");
    h.wait_stderr("going back to the last key it accepted", T);
    let arrived = h.intake().event_count();
    writer.wait_written(200);
    h.wait_events(arrived + 200, T);
    // Completed: nothing to say, the key is the one in use.
    std::fs::write(&key_file, "the-right-key-0123456789\n").expect("key");

    let n = writer.finish();
    h.wait_events(n, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_each_once(&h.messages(), "k ", n);
    let log = h.stderr();
    assert_eq!(
        log.matches("cannot use the API key file").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("going back to the last key it accepted")
            .count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains("rejects the API key;"),
        "not ready for a moment:\n{log}"
    );
    let rejected = h.intake().state.key_rejections.load(Ordering::Relaxed);
    assert!((1..=4).contains(&rejected), "{rejected} requests rejected");
    assert!(!log.contains("the-right-k"), "key printed:\n{log}");
}

#[test]
fn an_intake_that_never_answers_is_timed_out_and_retried_without_loss() {
    let (h, n) = stream_through_fault(
        Faults {
            hang_rate: 1.0,
            ..Faults::default()
        },
        3,
        |d| d.request_timeout_ms = 1000,
        500,
    );
    // The hung requests were never read: each line arrived once.
    assert_each_once(&h.messages(), "w ", n);
    assert!(h.stderr().contains("timed out"), "{}", h.stderr());
}

#[test]
fn an_answer_lost_after_the_body_was_read_repeats_its_lines_once() {
    let (h, n) = stream_through_fault(
        Faults {
            lose_answer_rate: 0.3,
            ..Faults::default()
        },
        5,
        |d| d.request_concurrency = RequestConcurrency::Fixed(4),
        500,
    );
    let lost_events = h.intake().state.lost_answer_events.load(Ordering::Relaxed);
    let messages = h.messages();
    let (missing, repeated) = count_missing_and_repeated(&messages, "w ", n);
    assert_eq!(missing, 0);
    // Every copy beyond the first is an event whose answer was lost: sent once more each
    // time, never more.
    assert_eq!(repeated as u64, lost_events, "{repeated} repeats");
    assert!(lost_events > 0);
}

#[test]
fn a_syntax_error_before_sighup_keeps_the_running_configuration() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("one", 0..100));
    let config = h.default_config();
    h.start(&config);
    h.wait_events(100, T);
    let good = std::fs::read_to_string(&config).expect("read");
    // Half an edit: an unclosed table header.
    std::fs::write(&config, good.replace("[batch]", "[batch\n")).expect("write");
    h.send_signal(libc::SIGHUP);
    h.wait_stderr("configuration reload refused", T);
    append(&log, numbered("two", 0..100));
    h.wait_events(200, T);
    // Fixed, and reloaded.
    std::fs::write(&config, &good).expect("write");
    h.send_signal(libc::SIGHUP);
    h.wait_stderr("reloading configuration", T);
    append(&log, numbered("three", 0..100));
    h.wait_events(300, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("one", 0..100);
    expected.extend(numbered("two", 0..100));
    expected.extend(numbered("three", 0..100));
    assert_lines(&h.messages(), &expected, "across the broken reload");
    let log = h.stderr();
    let refusal = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .expect("refusal");
    assert!(
        refusal.contains("sidelog.toml") && refusal.contains("line"),
        "names the file and the line: {refusal}"
    );
}
