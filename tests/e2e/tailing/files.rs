//! Tailing under rotation, truncation, deletion and hostile files: the real binary against the
//! built-in intake, every line checked at the intake.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use sidelog_shipper::config::{Compression, Input, ReadFrom};

/// A second input over `glob`, with the settings' defaults.
fn input(glob: &str) -> Input {
    Input {
        include: vec![glob.to_string()],
        ..Input::default()
    }
}

const T: Duration = Duration::from_secs(60);

/// A config for rotation tests: quick batches, quick release of drained rotated files.
fn rotation_config(h: &Harness) -> std::path::PathBuf {
    h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rotated_linger_ms = 1000;
    })
}

fn logrotate(h: &Harness, mode: &str) {
    let conf = h.dir.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  {mode}\n  rotate 5\n  missingok\n  nocompress\n}}\n",
            h.log("app.log").display()
        ),
    )
    .expect("write logrotate.conf");
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(h.dir.path().join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("run logrotate (install it: apt-get install logrotate; .ci/run does)");
    assert!(
        out.status.success(),
        "logrotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `rotations` rotations of app.log by `rotate` while a paced writer appends; checks
/// that every line arrived exactly once.
fn rotate_while_writing(on_rotate: OnRotate, rotate: impl Fn(&Harness, usize)) {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create log");
    let config = rotation_config(&h);
    h.start(&config);
    h.wait_stderr("tailing file", T);
    let writer = PacedWriter::start(&log, "w ", 1000, on_rotate);
    for round in 0..3 {
        writer.wait_written(400);
        rotate(&h, round);
    }
    writer.wait_written(400);
    h.finish_stream(writer, "w ");
}

#[test]
fn logrotate_create_while_writing_loses_nothing() {
    // The writer notices the rename and reopens its path, after writing 20 more lines to the
    // renamed file through its old descriptor.
    rotate_while_writing(OnRotate::Reopen { late: 20 }, |h, _| logrotate(h, "create"));
}

#[test]
fn rename_by_the_writer_with_old_descriptor_still_writing() {
    rotate_while_writing(OnRotate::Reopen { late: 50 }, |h, round| {
        std::fs::rename(h.log("app.log"), h.log(&format!("app.log.{round}"))).expect("rename");
    });
}

#[test]
fn logrotate_copytruncate_while_writing() {
    // copytruncate copies the file, then truncates it; lines written between the two steps
    // are lost by copytruncate itself, and lines sidelog has not read before the truncation
    // are only in the copy. The writer pauses across logrotate and sidelog is let catch up,
    // so what is tested is sidelog's part: the truncation is noticed and the file read again
    // from its start, with nothing lost or repeated.
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create log");
    let config = rotation_config(&h);
    h.start(&config);
    h.wait_stderr("tailing file", T);
    let writer = PacedWriter::start(&log, "w ", 1000, OnRotate::Keep);
    for _ in 0..3 {
        writer.wait_written(400);
        let pause = writer.pause.clone();
        let _paused = pause.lock().expect("pause");
        let written = writer.written();
        wait_for("sidelog caught up", T, || {
            h.intake().event_count() >= written
        });
        logrotate(&h, "copytruncate");
    }
    writer.wait_written(400);
    h.finish_stream(writer, "w ");
    assert!(h.stderr().contains("file truncated"), "{}", h.stderr());
}

#[test]
fn truncated_and_rewritten_past_the_read_position() {
    // Truncated and at once written longer than before: the size never looks smaller, only
    // the first bytes tell.
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("old", 0..100));
    let config = rotation_config(&h);
    h.start(&config);
    h.wait_events(100, T);
    let mut text = Vec::new();
    for l in numbered("new", 0..300) {
        text.extend_from_slice(l.as_bytes());
        text.push(b'\n');
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open");
    f.set_len(0).expect("truncate");
    std::os::unix::fs::FileExt::write_all_at(&f, &text, 0).expect("rewrite");
    drop(f);
    h.wait_events(400, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("old", 0..100);
    expected.extend(numbered("new", 0..300));
    assert_lines(&h.messages(), &expected, "app.log");
}

#[test]
fn deleted_while_behind_is_read_to_its_end() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("del", 0..20_000));
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.batch.max_events = 100;
        c.tail.rotated_linger_ms = 500;
        c.tail.read_buffer_bytes = 8192;
    });
    // The intake refuses everything, so the reader fills the pipeline and stops reading.
    h.intake().force_status(Some(503));
    h.start(&config);
    h.wait_stderr("retrying", T);
    std::fs::remove_file(&log).expect("delete");
    h.intake().force_status(None);
    h.wait_events(20_000, T);
    h.wait_stderr("file left its name", T);
    h.wait_stderr("closing file read to its end", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &numbered("del", 0..20_000), "deleted file");
}

#[test]
fn reused_inode_is_not_mistaken_for_the_checkpointed_file() {
    let mut h = Harness::with_intake();
    let config = rotation_config(&h);
    let a = h.log("a.log");
    append(&a, numbered("a", 0..50));
    h.start(&config);
    h.wait_events(50, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    // While sidelog is down, a.log goes and b.log arrives. Whether or not the file system
    // gives b.log a.log's inode, the checkpoint is made to name b.log's inode: the
    // fingerprint must tell the files apart.
    std::fs::remove_file(&a).expect("delete a");
    let b = h.log("b.log");
    append(&b, numbered("b", 0..80));
    let meta = std::fs::metadata(&b).expect("stat b");
    let cp = h.dir.path().join("data/checkpoints.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cp).expect("checkpoints")).expect("json");
    let entry = &mut v["files"][0];
    assert_eq!(entry["offset"], 50 * 26);
    entry["dev"] = meta.dev().into();
    entry["inode"] = meta.ino().into();
    std::fs::write(&cp, v.to_string()).expect("write checkpoints");
    h.start(&config);
    h.wait_events(130, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(
        &h.messages_by_file()["b.log"],
        &numbered("b", 0..80),
        "b.log",
    );
}

#[test]
fn files_sharing_their_first_kilobytes_are_distinct() {
    let mut h = Harness::with_intake();
    let header = format!("# {}", "same header ".repeat(200).trim_end());
    for name in ["x.log", "y.log"] {
        append(&h.log(name), vec![header.clone()]);
        append(&h.log(name), numbered(name, 0..100));
    }
    let config = rotation_config(&h);
    h.start(&config);
    h.wait_events(202, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    // More lines while down: each file resumes from its own checkpoint.
    for name in ["x.log", "y.log"] {
        append(&h.log(name), numbered(name, 100..150));
    }
    h.start(&config);
    h.wait_events(302, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let by_file = h.messages_by_file();
    for name in ["x.log", "y.log"] {
        let mut expected = vec![header.clone()];
        expected.extend(numbered(name, 0..150));
        assert_lines(&by_file[name], &expected, name);
    }
}

#[test]
fn a_thousand_files_under_a_descriptor_limit() {
    let mut h = Harness::with_intake();
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.max_open_files = 100;
    });
    for i in 0..1000 {
        append(
            &h.log(&format!("f{i:04}.log")),
            numbered(&format!("f{i}"), 0..3),
        );
    }
    h.start(&config);
    let mut max_fds = 0;
    wait_for("3,000 events", T, || {
        max_fds = max_fds.max(h.open_fds());
        h.intake().event_count() >= 3000
    });
    // Each file written a little more: closed files are reopened and read.
    for i in 0..1000 {
        append(
            &h.log(&format!("f{i:04}.log")),
            numbered(&format!("f{i}"), 3..5),
        );
    }
    wait_for("5,000 events", T, || {
        max_fds = max_fds.max(h.open_fds());
        h.intake().event_count() >= 5000
    });
    assert!(h.terminate().success(), "{}", h.stderr());
    // 100 files, plus the runtime's own descriptors (sockets, inotify, epoll, stdio).
    assert!(max_fds <= 130, "{max_fds} descriptors open");
    let by_file = h.messages_by_file();
    assert_eq!(by_file.len(), 1000);
    for i in 0..1000 {
        let name = format!("f{i:04}.log");
        assert_lines(&by_file[&name], &numbered(&format!("f{i}"), 0..5), &name);
    }
    assert_eq!(h.intake().event_count(), 5000, "duplicates");
}

#[test]
fn a_hundred_megabyte_line_is_split_in_bounded_memory() {
    let mut h = Harness::with_intake();
    let log = h.log("huge.log");
    let piece: Vec<u8> = (0..1000u32)
        .flat_map(|i| format!("{i:04}|").into_bytes())
        .collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&log).expect("create");
        for _ in 0..20_000 {
            f.write_all(&piece).expect("write");
        }
        f.write_all(b"\nafter\n").expect("write");
    }
    let total = piece.len() * 20_000;
    let config = h.config_with(|c| {
        c.datadog.compression = Compression::None;
        c.batch.timeout_ms = 100;
    });
    h.start(&config);
    let events = (total as u64).div_ceil(900_000) + 1;
    h.wait_events(events, Duration::from_secs(180));
    let rss_kb = h.peak_rss_kb();
    assert!(h.terminate().success(), "{}", h.stderr());
    let msgs = h.messages();
    assert_eq!(msgs.last().map(String::as_str), Some("after"));
    let mut joined = String::with_capacity(total);
    let pieces = &msgs[..msgs.len() - 1];
    for (i, m) in pieces.iter().enumerate() {
        let mut m = m.as_str();
        assert!(m.len() <= 900_000 + 2 * 15, "event of {} bytes", m.len());
        if i > 0 {
            m = m.strip_prefix("...TRUNCATED...").expect("leading marker");
        }
        if i + 1 < pieces.len() {
            m = m.strip_suffix("...TRUNCATED...").expect("trailing marker");
        }
        joined.push_str(m);
    }
    assert_eq!(joined.len(), total);
    assert!(
        joined
            .as_bytes()
            .chunks(piece.len())
            .all(|c| c == piece.as_slice())
    );
    // A 100 MB line never sits in memory whole.
    assert!(rss_kb < 80 * 1024, "peak RSS {rss_kb} kB");
}

#[test]
fn oversize_empty_nul_crlf_and_invalid_utf8_lines() {
    let mut h = Harness::with_intake();
    let log = h.log("odd.log");
    let long = "L".repeat(2500);
    let mut text = Vec::new();
    text.extend_from_slice(b"first\r\n\r\n\n");
    text.extend_from_slice(long.as_bytes());
    text.extend_from_slice(b"\nbad \xc3\x28 \xf0\x9f end\nnul\x00in\x00line\n\xff\r\nlast\n");
    std::fs::write(&log, &text).expect("write");
    let config = h.config_with(|c| {
        c.inputs[0].max_line_bytes = 1024;
        c.inputs[0].skip_empty_lines = false;
        c.batch.timeout_ms = 100;
    });
    h.start(&config);
    h.wait_events(10, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let m = &h.messages_by_file()["odd.log"];
    let marker = "...TRUNCATED...";
    let expected: Vec<String> = vec![
        "first".into(),
        "".into(),
        "".into(),
        format!("{}{marker}", "L".repeat(1024)),
        format!("{marker}{}{marker}", "L".repeat(1024)),
        format!("{marker}{}", "L".repeat(452)),
        "bad \u{FFFD}( \u{FFFD} end".into(),
        "nul\u{0}in\u{0}line".into(),
        "\u{FFFD}".into(),
        "last".into(),
    ];
    assert_lines(m, &expected, "odd.log");
}

#[test]
fn symlinks_are_followed_and_a_loop_is_reported_once() {
    let mut h = Harness::with_intake();
    let real_dir = h.dir.path().join("real");
    std::fs::create_dir(&real_dir).expect("mkdir");
    let target = real_dir.join("container-1.txt");
    append(&target, numbered("linked", 0..10));
    std::os::unix::fs::symlink(&target, h.log("container-1.log")).expect("symlink");
    std::os::unix::fs::symlink(h.log("loop-b.log"), h.log("loop-a.log")).expect("loop a");
    std::os::unix::fs::symlink(h.log("loop-a.log"), h.log("loop-b.log")).expect("loop b");
    std::os::unix::fs::symlink(h.log("missing"), h.log("dangling.log")).expect("dangling");
    // The links' target directory is included too (as /var/log/pods is beside
    // /var/log/containers); nothing in it matches by its own name.
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rescan_interval_ms = 200;
        c.inputs
            .push(input(&format!("{}/*.log", real_dir.display())));
    });
    h.start(&config);
    h.wait_events(10, T);
    // Several rescans pass; the loop is reported once per link, not once per rescan.
    append(&target, numbered("linked", 10..20));
    h.wait_events(20, T);
    h.wait_rescans(3, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(
        &h.messages_by_file()["container-1.log"],
        &numbered("linked", 0..20),
        "linked",
    );
    let log = h.stderr();
    let reports = log.matches("cannot read file").count();
    assert_eq!(reports, 2, "one report per looping link:\n{log}");
    assert!(!log.contains("dangling"), "{log}");
}

/// An app that shares the log volume makes links in it: to the API key, to a file of
/// sidelog's own `/proc`, to a file outside through a chain of links. Only what really lies
/// under the included directories is read: the links out are each reported once, counted and
/// skipped; a chain that leaves and comes back is read. Nothing else arrives.
#[test]
fn links_out_of_the_log_directory_are_never_read() {
    let mut h = Harness::with_intake();
    let logs = h.logs();
    let link = |target: &std::path::Path, name: &str| {
        std::os::unix::fs::symlink(target, logs.join(name)).expect("symlink");
    };
    link(&h.dir.path().join("api-key"), "key.log");
    link(std::path::Path::new("/proc/self/environ"), "environ.log");
    let outside = h.dir.path().join("elsewhere");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("secret.txt"), "a secret line\n").expect("secret");
    std::os::unix::fs::symlink(outside.join("secret.txt"), outside.join("hop")).expect("hop");
    link(&outside.join("hop"), "chain-out.log");
    append(&logs.join("real.txt"), numbered("inside", 0..10));
    std::os::unix::fs::symlink(logs.join("real.txt"), outside.join("back")).expect("back");
    link(&outside.join("back"), "chain-back.log");
    append(&h.log("app.log"), numbered("app", 0..10));
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rescan_interval_ms = 200;
    });
    let base = h.start_with_admin(&config, &[]);
    h.wait_events(20, T);
    h.wait_rescans(3, T);
    let outside_files = h.metric(&base, "sidelog_files_outside_total");
    assert!(h.terminate().success(), "{}", h.stderr());
    let by_file = h.messages_by_file();
    assert_eq!(
        by_file.keys().collect::<Vec<_>>(),
        ["app.log", "chain-back.log"],
        "{by_file:?}"
    );
    assert_lines(
        &by_file["chain-back.log"],
        &numbered("inside", 0..10),
        "chain back",
    );
    let all = h.messages().join("\n");
    assert!(!all.contains(API_KEY) && !all.contains("secret"), "{all}");
    assert_eq!(outside_files, Some(3.0));
    let log = h.stderr();
    assert_eq!(
        log.matches("outside the included directories").count(),
        3,
        "once per link out:\n{log}"
    );
    assert!(!log.contains(API_KEY), "{log}");
}

#[test]
fn ignore_older_and_read_from_end() {
    let mut h = Harness::with_intake();
    let old = h.log("old.log");
    append(&old, numbered("old", 0..10));
    let f = std::fs::File::options()
        .write(true)
        .open(&old)
        .expect("open");
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .expect("set mtime");
    drop(f);
    let fresh = h.log("fresh.log");
    append(&fresh, numbered("fresh", 0..10));
    let config = h.config_with(|c| {
        c.inputs[0].ignore_older_secs = 600;
        c.inputs[0].read_from = ReadFrom::End;
        c.batch.timeout_ms = 100;
    });
    h.start(&config);
    h.wait_stderr("not reading file last modified before ignore_older_secs", T);
    h.wait_stderr("tailing file", T);
    // Found at startup without a checkpoint: fresh.log starts at its end; the old file is
    // ignored until written again, and then only its new lines are read.
    append(&fresh, numbered("fresh", 10..15));
    append(&old, numbered("old", 10..13));
    h.wait_events(8, T);
    let created = h.log("created.log");
    append(&created, numbered("created", 0..4));
    h.wait_events(12, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let by_file = h.messages_by_file();
    assert_lines(&by_file["fresh.log"], &numbered("fresh", 10..15), "fresh");
    assert_lines(&by_file["old.log"], &numbered("old", 10..13), "old");
    // A file that appears later is read from its start whatever read_from says.
    assert_lines(
        &by_file["created.log"],
        &numbered("created", 0..4),
        "created",
    );
}

#[test]
fn unterminated_last_line_is_held_then_shipped_at_shutdown() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"complete\npart").expect("write");
    let config = rotation_config(&h);
    h.start(&config);
    h.wait_events(1, T);
    // Completed while running: one line, not two.
    append(&log, vec![" one".to_string()]);
    h.wait_events(2, T);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"tail without newline"))
        .expect("append");
    // A line of another file, written after the partial one: the tailer learns of both
    // from one inotify queue, in order, so when the probe arrives the partial line had been
    // read, and it was not sent.
    append(&h.log("other.log"), vec!["probe".to_string()]);
    h.wait_events(3, T);
    assert_eq!(h.messages(), vec!["complete", "part one", "probe"]);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_eq!(
        h.messages(),
        vec!["complete", "part one", "probe", "tail without newline"]
    );
    // Its checkpoint covers it: a restart sends nothing again.
    h.assert_restart_sends_nothing(&config, 4);
}

#[test]
fn renamed_to_a_name_the_globs_match_is_not_read_twice() {
    let mut h = Harness::with_intake();
    let logs = h.logs();
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rescan_interval_ms = 200;
        c.inputs.push(input(&format!("{}/*.log.*", logs.display())));
    });
    let log = h.log("app.log");
    append(&log, numbered("one", 0..100));
    h.start(&config);
    h.wait_events(100, T);
    std::fs::rename(&log, h.log("app.log.1")).expect("rename");
    append(&h.log("app.log.1"), numbered("one", 100..150));
    append(&log, numbered("two", 0..50));
    h.wait_events(200, T);
    // Inotify told of the rename at once; two rescans later the name has been looked at by
    // the slow path too, which would have taken app.log.1 for a new file.
    h.wait_rescans(2, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut msgs = h.messages();
    msgs.sort();
    let mut expected = numbered("one", 0..150);
    expected.extend(numbered("two", 0..50));
    expected.sort();
    assert_lines(&msgs, &expected, "renamed within the globs");
    assert!(Path::new(&h.log("app.log.1")).exists());
}

#[test]
fn a_fast_file_does_not_starve_the_others() {
    let mut h = Harness::with_intake();
    let big = h.log("big.log");
    let total = 300_000u64;
    append(&big, numbered("big", 0..total as usize));
    let config = h.config_with(|c| {
        c.datadog.compression = Compression::None;
        c.batch.timeout_ms = 100;
        c.batch.max_events = 200;
        c.tail.read_buffer_bytes = 16_384;
    });
    h.start(&config);
    h.wait_events(1, T);
    append(&h.log("small.log"), numbered("small", 0..10));
    wait_for("small.log at the intake", T, || {
        h.messages_by_file()
            .get("small.log")
            .is_some_and(|m| m.len() == 10)
    });
    let big_done = h.intake().event_count() - 10;
    assert!(
        big_done < total / 2,
        "small.log waited for {big_done} lines of big.log"
    );
    h.wait_events(total + 10, T);
    assert!(h.terminate().success(), "{}", h.stderr());
}

#[test]
fn checkpoint_follows_a_file_renamed_while_stopped() {
    let mut h = Harness::with_intake();
    let config = rotation_config(&h);
    append(&h.log("app.log"), numbered("app", 0..100));
    h.start(&config);
    h.wait_events(100, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    std::fs::rename(h.log("app.log"), h.log("app-1.log")).expect("rename");
    append(&h.log("app-1.log"), numbered("app", 100..120));
    h.start(&config);
    h.wait_events(120, T);
    h.wait_stderr("caught up with file", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let msgs = h.messages();
    assert_lines(&msgs, &numbered("app", 0..120), "renamed while stopped");
}

#[test]
fn a_file_rotated_out_of_the_globs_while_stopped_is_read_from_its_checkpoint() {
    let mut h = Harness::with_intake();
    let config = rotation_config(&h);
    let log = h.log("app.log");
    append(&log, numbered("app", 0..100));
    h.start(&config);
    h.wait_events(100, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    // While sidelog is down the app writes on, and logrotate renames the file to a name the
    // globs do not match and the app starts a new one.
    append(&log, numbered("app", 100..150));
    std::fs::rename(&log, h.log("app.log.1")).expect("rotate");
    append(&log, numbered("new", 0..30));
    h.start(&config);
    h.wait_events(180, T);
    h.wait_stderr("a file was rotated while sidelog was stopped", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let by_file = h.messages_by_file();
    let mut expected = numbered("app", 0..150);
    expected.extend(numbered("new", 0..30));
    let mut got = by_file["app.log"].clone();
    got.sort();
    expected.sort();
    assert_lines(
        &got,
        &expected,
        "both files, tagged with the name written to",
    );
    assert_eq!(by_file.len(), 1, "{by_file:?}");
}

#[test]
fn a_reload_while_a_rotated_file_is_unshipped_loses_none_of_it() {
    let mut h = Harness::with_intake();
    let config = rotation_config(&h);
    let log = h.log("app.log");
    append(&log, numbered("app", 0..100));
    h.start(&config);
    h.wait_events(100, T);
    // The intake refuses; the file is rotated with lines read but not accepted; a SIGHUP
    // restarts the pipeline before they are.
    h.intake().force_status(Some(503));
    append(&log, numbered("app", 100..200));
    std::fs::rename(&log, h.log("app.log.1")).expect("rotate");
    append(&log, numbered("new", 0..30));
    h.wait_stderr("closing file read to its end", T);
    h.wait_faults(2, T);
    h.send_signal(libc::SIGHUP);
    h.wait_stderr("a file was rotated while sidelog was stopped", T);
    h.intake().force_status(None);
    h.wait_events(230, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("app", 0..200);
    expected.extend(numbered("new", 0..30));
    let mut got = h.messages();
    got.sort();
    expected.sort();
    assert_lines(&got, &expected, "across the reload");
}

#[test]
fn without_file_events_open_files_are_polled() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create log");
    // Rescans once a minute: within the test's deadline only the polls can bring lines.
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.file_events = false;
        c.tail.rescan_interval_ms = 60_000;
    });
    h.start(&config);
    h.wait_stderr("tailing file", T);
    let writer = PacedWriter::start(&log, "w ", 200, OnRotate::Keep);
    writer.wait_written(400);
    let n = writer.finish();
    h.wait_events(n, Duration::from_secs(20));
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_each_once(&h.messages(), "w ", n);
    assert!(h.stderr().contains("file events off"), "{}", h.stderr());
}

/// An app that reopens its log late: after the rename it writes on through its old
/// descriptor, stops long enough for sidelog to read the rotated file to its end and close
/// it, then writes again before it reopens. The late lines arrive: the rotated file's write
/// brings it back, read from where it was closed.
#[test]
fn lines_written_to_a_rotated_file_after_it_was_closed_arrive() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    let mut old = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("open");
    use std::io::Write;
    let lines = |from: usize, to: usize| -> Vec<u8> {
        numbered("late", from..to)
            .into_iter()
            .flat_map(|l| (l + "\n").into_bytes())
            .collect()
    };
    old.write_all(&lines(0, 100)).expect("write");
    let config = rotation_config(&h);
    h.start(&config);
    h.wait_events(100, T);
    std::fs::rename(&log, h.log("app.log.1")).expect("rename");
    old.write_all(&lines(100, 150)).expect("write");
    h.wait_events(150, T);
    h.wait_stderr("closing file read to its end", T);
    old.write_all(&lines(150, 200)).expect("late write");
    h.wait_events(200, T);
    std::fs::write(&log, lines(200, 210)).expect("the reopened log");
    h.wait_events(210, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_each_once_prefixed(&h.messages(), "late", 210);
    assert!(
        h.stderr().contains("was written to again"),
        "{}",
        h.stderr()
    );
}

fn assert_each_once_prefixed(messages: &[String], prefix: &str, n: usize) {
    let mut got: Vec<String> = messages.to_vec();
    got.sort();
    let mut want = numbered(prefix, 0..n);
    want.sort();
    assert_lines(&got, &want, prefix);
}
