//! An agent's log: capped however it is written, read whole across its rotation, and each
//! run marked where it begins.

use crate::util::TestFleet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn logs_reads_across_rotation() {
    let Some(f) = TestFleet::new("logrot") else { return };
    // 300 numbered lines of 21 bytes (6300 bytes) in writes of 25 lines, through a 4K cap:
    // both files in use.
    let script = "i=100; while [ $i -lt 400 ]; do echo \"line $i ..........\"; i=$((i+1)); \
                  [ $((i % 25)) = 0 ] && sleep 0.02; done; echo done; sleep 600";
    f.run(&["spawn", "r1", "ws-001", "--log-max-size", "4K", "--", "sh", "-c", script]).code(0);
    f.wait_log("r1", "done", T);
    let dir = f.tmp.path().join("log/agents");
    assert!(dir.join("r1.log.1").exists(), "rotated");
    let all = f.run(&["logs", "r1"]).code(0).stdout.clone();
    let numbers: Vec<u32> =
        all.lines().filter_map(|l| l.strip_prefix("line ")).filter_map(|l| l.split(' ').next()?.parse().ok()).collect();
    assert!(!numbers.is_empty() && numbers.windows(2).all(|w| w[1] == w[0] + 1), "one log, in order:\n{all}");
    let current = std::fs::read_to_string(dir.join("r1.log")).expect("log");
    let in_current = current.lines().filter(|l| l.starts_with("line ")).count();
    assert!(numbers.len() > in_current, "the rotated part is read too:\n{all}");
    assert_eq!(numbers.last(), Some(&399));
    // The last lines, reaching back into the rotated part.
    let n = in_current + 3;
    let tail = f.run(&["logs", "r1", "-n", &(n + 1).to_string()]).code(0).stdout.clone();
    assert_eq!(tail.lines().count(), n + 1, "{tail}");
    assert!(tail.starts_with(&format!("line {} ", 399 - n + 1)), "{tail}");
    f.run(&["kill", "r1"]).code(0);
    f.finish();
}

#[test]
fn one_large_write_keeps_the_log_cap() {
    let Some(f) = TestFleet::new("logbig") else { return };
    // One write of 28 KB through an 8K cap: neither file passes the cap.
    let big = "x=$(head -c 28000 /dev/zero | tr '\\0' y); printf '%s\\n' \"$x\"; echo big-done; sleep 600";
    f.run(&["spawn", "r2", "ws-001", "--log-max-size", "8K", "--", "sh", "-c", big]).code(0);
    f.wait_log("r2", "big-done", T);
    let dir = f.tmp.path().join("log/agents");
    for file in ["r2.log", "r2.log.1"] {
        let len = std::fs::metadata(dir.join(file)).map(|m| m.len()).unwrap_or(0);
        assert!(len <= 8192, "{file} is {len} bytes, past the 8K cap");
    }
    f.run(&["kill", "r2"]).code(0);
    f.finish();
}

#[test]
fn each_run_of_an_id_is_marked_in_its_log() {
    let Some(f) = TestFleet::new("logmark") else { return };
    f.run(&["spawn", "again", "ws-001", "--wait", "--", "echo", "first"]).code(0);
    f.run(&["spawn", "again", "ws-001", "--wait", "--", "echo", "second"]).code(0);
    let log = f.log("again");
    let marks: Vec<&str> = log.lines().filter(|l| l.starts_with("fleetctl: run 1 of again started at ")).collect();
    assert_eq!(marks.len(), 2, "{log}");
    let pid = f.agent("again")["pid"].clone();
    assert!(pid.is_null() || marks[1].ends_with(&format!("pid {pid}")), "{log}");
    let first = log.find("first").expect("first");
    let second_mark = log.rfind("fleetctl: run 1 of again").expect("mark");
    assert!(first < second_mark && second_mark < log.find("second").expect("second"), "{log}");
    f.finish();
}

#[test]
fn a_log_cap_below_a_page_is_refused() {
    let Some(f) = TestFleet::new("logzero") else { return };
    for size in ["0", "100"] {
        f.run(&["spawn", "z", "ws-001", "--log-max-size", size, "--", "true"])
            .code(2)
            .one_error_line("give at least 4K");
    }
    f.set_config("[agent]\nlog_max_size = \"0\"\n");
    f.run(&["spawn", "z", "ws-001", "--", "true"]).code(1).one_error_line("agent.log_max_size = \"0\": not a log size");
    f.set_config("");
    f.finish();
}
