//! A stdout that cannot be written (`> /dev/full`, a full disk under `metrics > file.prom`)
//! ends a command with exit 1 and one line, never a panic; a reader that goes away still
//! ends it quietly.

use crate::util::{Run, TestFleet};
use std::{process::Stdio, time::Duration};

/// `args` with stdout on `file`.
fn run_into(f: &TestFleet, args: &[&str], file: std::fs::File) -> Run {
    Run::from(f.cmd(args).stdout(Stdio::from(file)).output().expect("run fleetctl"))
}

#[test]
fn reports_to_a_full_device_fail_with_one_line() {
    let Some(f) = TestFleet::new("devfull") else { return };
    f.run(&["spawn", "d1", "ws-001", "--", "sleep", "600"]).code(0);
    f.wait_state("d1", &["running"], Duration::from_secs(10));
    let commands: [&[&str]; 7] = [
        &["status"],
        &["status", "--json"],
        &["metrics"],
        &["memory"],
        &["memory", "--json"],
        &["events"],
        &["gc", "--dry-run"],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let run = run_into(&f, args, full);
        run.code(1).one_error_line("cannot write the output");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    }
    // A spawn whose line cannot be printed still started its agent, and says so.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let run = run_into(&f, &["spawn", "d2", "ws-001", "--", "sleep", "600"], full);
    run.code(1).one_error_line("d2 started (pid ");
    assert!(run.stderr.contains("cannot write the output"), "{run:?}");
    f.wait_state("d2", &["running"], Duration::from_secs(10));
    f.run(&["kill", "d1", "d2"]).code(0);
    f.finish();
}

/// `metrics > textfile.prom` on a full disk: one line, exit 1 (a scraper's textfile
/// collector must not be left believing a truncated file is whole without a word).
#[test]
fn metrics_to_a_file_on_a_full_disk_fails_with_one_line() {
    let Some(f) = TestFleet::new("metricsfull") else { return };
    f.run(&["spawn", "m1", "ws-001", "--", "sleep", "600"]).code(0);
    let dir = f.tmp.path().join("textfile");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let disk = crate::util::Tmpfs::mount(&dir, "size=64k");
    let filler = disk.fill();
    let out = std::fs::File::create(dir.join("fleet.prom")).expect("create on the full disk");
    let run = run_into(&f, &["metrics"], out);
    run.code(1).one_error_line("No space left on device");
    std::fs::remove_file(filler).expect("free the space");
    let out = std::fs::File::create(dir.join("fleet.prom")).expect("create");
    run_into(&f, &["metrics"], out).code(0);
    let text = std::fs::read_to_string(dir.join("fleet.prom")).expect("read");
    assert!(text.contains("fleet_agent_memory_bytes"), "{text}");
    drop(disk);
    f.run(&["kill", "m1"]).code(0);
    f.finish();
}
