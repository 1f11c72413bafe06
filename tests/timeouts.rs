//! Soft then hard timeouts against an agent that ignores SIGTERM.

use crate::util::TestFleet;
use std::time::Duration;

#[test]
fn soft_then_hard_timeout_then_the_kill() {
    let Some(f) = TestFleet::new("timeouts") else { return };
    // Reports each signal and keeps going: only the kill can end it.
    // `wait` is interrupted by a trapped signal in every POSIX shell, so the traps run at
    // once whichever sh this is (dash here, busybox in the VM).
    let stubborn = "trap 'echo got-usr1' USR1; trap 'echo got-term' TERM; echo up; while :; do sleep 1 & wait $!; done";
    let args = [
        "spawn",
        "slow",
        "ws-001",
        "--soft-timeout",
        "1s",
        "--hard-timeout",
        "2s",
        "--kill-grace",
        "1s",
        "--",
        "sh",
        "-c",
        stubborn,
    ];
    f.run(&args).code(0);
    let a = f.wait_state("slow", &["timed-out", "killed", "failed"], Duration::from_secs(60));
    assert_eq!(a["state"], "timed-out", "{a:#}");
    assert_eq!(a["killed_by"], "timeout");
    let log = f.log("slow");
    let (usr1, term) =
        (log.find("got-usr1").expect("SIGUSR1 delivered"), log.find("got-term").expect("SIGTERM delivered"));
    assert!(usr1 < term, "soft before hard:\n{log}");
    assert!(log.contains("grace period over"), "{log}");
    let events: Vec<String> = f.events("slow").iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect();
    let pos = |name: &str| events.iter().position(|e| e == name).unwrap_or_else(|| panic!("no {name} in {events:?}"));
    assert!(
        pos("spawn") < pos("soft_timeout")
            && pos("soft_timeout") < pos("hard_timeout")
            && pos("hard_timeout") < pos("exit")
    );
    assert_eq!(a["signal"], 9, "ended by the kill: {a:#}");
    assert!(!f.cgroup("slow").exists());
    f.finish();
}
