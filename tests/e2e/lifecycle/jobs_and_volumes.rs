//! The sidecar's life cycle: `exit_when_file` for Jobs and `delete_after_ship` for volumes
//! with a size limit. The real binary against the built-in intake.

use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn exit_when_file_ships_everything_left_and_exits_0() {
    let mut h = Harness::with_intake();
    let log = h.log("job.log");
    append(&log, numbered("job", 0..500));
    let done = h.dir.path().join("done");
    let config = h.default_config();
    let env = [("SIDELOG_EXIT_WHEN_FILE", done.to_str().expect("utf8"))];
    h.start_with_env(&config, &env);
    h.wait_events(500, T);
    // The job writes its last lines (the very last without newline) and says it is done,
    // while the intake has a bad moment.
    append(&log, numbered("job", 500..1000));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"final words"))
        .expect("append");
    h.intake().force_status(Some(503));
    std::fs::write(&done, b"").expect("marker");
    h.wait_stderr("exit_when_file exists", T);
    // Three refusals after the marker: sidelog kept trying instead of leaving.
    h.wait_faults(3, T);
    assert!(
        h.child
            .as_mut()
            .expect("running")
            .try_wait()
            .expect("wait")
            .is_none(),
        "exited before the intake took everything"
    );
    h.intake().force_status(None);
    let status = h.wait_exit(T);
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    let mut expected = numbered("job", 0..1000);
    expected.push("final words".into());
    assert_lines(&h.messages(), &expected, "job.log");
    // Started again with the marker still there: nothing is sent twice, and it exits.
    h.start_with_env(&config, &env);
    let status = h.wait_exit(T);
    assert!(status.success(), "{}", h.stderr());
    assert_eq!(h.intake().event_count(), 1001);
}

#[test]
fn delete_after_ship_deletes_only_fully_shipped_rotated_files() {
    let mut h = Harness::with_intake();
    let config = h.config_with(|c| {
        c.inputs[0].delete_after_ship = true;
        c.batch.timeout_ms = 100;
        c.tail.rotated_linger_ms = 300;
    });
    let log = h.log("app.log");
    append(&log, numbered("first", 0..300));
    h.start(&config);
    h.wait_events(300, T);

    // The intake is down: the rotated file has lines not accepted yet, so it must stay.
    h.intake().force_status(Some(503));
    append(&log, numbered("first", 300..600));
    let rotated = h.log("app.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    append(&log, numbered("second", 0..100));
    h.wait_stderr("closing file read to its end", T);
    // Three refusals after the close, when the deletion would have been decided.
    h.wait_faults(3, T);
    assert!(rotated.exists(), "deleted with unshipped lines");

    h.intake().force_status(None);
    h.wait_events(700, T);
    wait_for("the rotated file deleted", T, || !rotated.exists());
    assert!(log.exists(), "the live file must stay");
    assert!(
        h.stderr().contains("deleted rotated file"),
        "{}",
        h.stderr()
    );
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut got = h.messages();
    got.sort();
    let mut expected = numbered("first", 0..600);
    expected.extend(numbered("second", 0..100));
    expected.sort();
    assert_lines(&got, &expected, "every line before deletion");
}
