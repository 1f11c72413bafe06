//! watch: the guard kills a hog that grows through the kill threshold; one killer at a time;
//! the terminal view through a real pseudo-terminal; line output otherwise.

use crate::util::{TestFleet, pty::Pty};
use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

/// Generous: under the VM tier's TCG emulation the grower takes minutes to reach the
/// threshold. Not a timed test.
const T: Duration = Duration::from_secs(180);

/// Grows by 4 MiB every ~100 ms in separate variables (linear, not quadratic), to 400 MiB.
/// The 5 % between the kill threshold and the budget (12.8 MiB) then lasts over a quarter
/// of a second even on a loaded machine: this test is about what the guard does; how fast it
/// does it is measured by `cargo xtask bench`.
const GROWER: &str = r#"i=0; while [ $i -lt 100 ]; do eval "v$i=\$(head -c 4194304 /dev/zero | tr '\\0' x)"; i=$((i+1)); echo "grew $i"; sleep 0.1; done; echo done; sleep 600; test -n "$v1""#;

/// Starts `watch --auto-kill --interval 200ms --metrics-file METRICS` plus `extra`, and
/// returns once the guard is up: it has written its first metrics. Its output is piped.
pub fn start_guard(f: &TestFleet, extra: &[&str], metrics: &std::path::Path) -> Child {
    let mut args =
        vec!["watch", "--auto-kill", "--interval", "200ms", "--metrics-file", metrics.to_str().expect("utf8")];
    args.extend(extra);
    // Its lines go to a file, read with `guard_output`: a pipe nobody reads until the end
    // fills after some 400 of them (80 s at 200 ms, which a slow hog on the emulated VM tier
    // takes), and a full pipe blocks the guard's next line, and with it the guard.
    let stdout = std::fs::File::create(metrics.with_extension("out")).expect("the guard's output file");
    let mut watcher = f.cmd(&args).stdout(stdout).stderr(Stdio::piped()).spawn().expect("watch");
    let deadline = Instant::now() + T;
    while !metrics.exists() {
        if let Some(status) = watcher.try_wait().expect("try_wait") {
            let out = watcher.wait_with_output().expect("watch output");
            panic!("watch ended ({status}): {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(Instant::now() < deadline, "watch never wrote {}", metrics.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    watcher
}

/// What the guard `start_guard` started with `metrics` has printed so far.
pub fn guard_output(metrics: &std::path::Path) -> String {
    std::fs::read_to_string(metrics.with_extension("out")).unwrap_or_default()
}

pub fn interrupt(child: &Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT);
}

#[test]
fn auto_kill_stops_a_hog_that_grows_through_the_kill_threshold() {
    let Some(f) = TestFleet::new("autokill") else { return };
    f.set_budget(256 << 20);
    let metrics = f.tmp.path().join("fleet.prom");
    f.run(&["spawn", "keep", "ws-001", "--protect", "--", "sleep", "600"]).code(0);
    let watcher = start_guard(&f, &[], &metrics);
    assert!(std::fs::read_to_string(&metrics).expect("metrics").contains("fleet_memory_used_bytes"));
    // Only one watcher may kill.
    f.run(&["watch", "--auto-kill"]).code(4).one_error_line("another auto-killing watcher is running");

    f.run(&["spawn", "hog", "ws-001", "--", "sh", "-c", GROWER]).code(0);
    let a = f.wait_state("hog", &["killed", "oom-killed", "exited", "failed"], T);
    assert_eq!(a["state"], "killed", "{a:#}\n{}", f.log("hog"));
    assert_eq!(a["killed_by"], "watch");
    assert!(!f.log("hog").contains("done"), "the hog was stopped before it finished growing");
    assert!(!f.cgroup("hog").exists(), "its cgroup is gone");
    let kill = f.wait_event("hog", "relief_kill", Duration::from_secs(10));
    assert_eq!(kill["by"], "watch");
    // At the kill threshold. On cgroup v2 the watcher's memory.high holds use right at 95 %,
    // so relief's own measurement a moment later can read just under it.
    assert!(kill["used_percent"].as_f64().unwrap_or(0.0) >= 90.0, "{kill}");
    assert_eq!(f.agent("keep")["state"], "running", "the protected agent is spared");

    interrupt(&watcher);
    let out = watcher.wait_with_output().expect("watch exits");
    assert_eq!(out.status.code(), Some(130));
    let text = guard_output(&metrics);
    assert!(text.lines().any(|l| l.contains("killed hog")), "{text}");
    assert!(text.lines().all(|l| l.starts_with("20")), "line output is timestamped lines:\n{text}");
    f.finish();
}

/// Holds `mib` MiB built in 4 MiB steps (a shell building one big string briefly needs twice
/// its size), printing `grew N` after each; `pause` between steps; then `then`.
pub fn stepped_grower(mib: u64, pause: &str, then: &str) -> String {
    format!(
        r#"i=0; while [ $i -lt {} ]; do eval "v$i=\$(head -c 4194304 /dev/zero | tr '\\0' x)"; i=$((i+1)); echo "grew $i"; {pause}; done; {then}; test -n "$v1""#,
        mib / 4
    )
}

/// The issue's complaint: the guard killed a steady large agent rather than the newcomer
/// that spiked. With `--order growth` the agent that grew goes, though the steady one is
/// larger (largest-first would take it: 200 MiB against the newcomer's ~100 at 95 %). The
/// budget leaves the VM tier's 512 MiB guest room for its kernel and the tests: at 384 MiB
/// the guest itself ran out first once.
#[test]
fn the_guard_with_order_growth_kills_the_newcomer_that_grows_not_the_steady_giant() {
    let Some(f) = TestFleet::new("growth") else { return };
    f.set_budget(320 << 20);
    f.run(&["spawn", "steady", "ws-001", "--", "sh", "-c", &stepped_grower(200, "true", "echo ready; sleep 600")])
        .code(0);
    f.wait_log("steady", "ready", T);
    f.run(&["spawn", "bystander", "ws-001", "--", "sleep", "600"]).code(0);
    // relief measures once: it cannot know growth, and says so. The guard's options without
    // the guard are a mistake, not a no-op.
    f.run(&["relief", "50", "--order", "growth"]).code(2).one_error_line("cannot see growth");
    f.run(&["watch", "--order", "growth"]).code(2).one_error_line("--auto-kill");

    let metrics = f.tmp.path().join("fleet.prom");
    // Up (and has sampled the steady agent) once it has written its metrics.
    let watcher = start_guard(&f, &["--order", "growth"], &metrics);
    f.run(&[
        "spawn",
        "newcomer",
        "ws-001",
        "--",
        "sh",
        "-c",
        &stepped_grower(400, "sleep 0.1", "echo done; sleep 600"),
    ])
    .code(0);
    let a = f.wait_state("newcomer", &["killed", "oom-killed", "exited", "failed"], T);
    assert_eq!(a["state"], "killed", "{a:#}\n{}", f.log("newcomer"));
    assert_eq!(a["killed_by"], "watch");
    assert!(!f.log("newcomer").contains("done"), "the newcomer was stopped before it finished growing");
    let kill = f.wait_event("newcomer", "relief_kill", Duration::from_secs(10));
    assert_eq!(kill["by"], "watch");
    for id in ["steady", "bystander"] {
        assert_eq!(f.agent(id)["state"], "running", "{id} was spared");
        assert!(f.events(id).iter().all(|e| e["event"] != "relief_kill"), "{id}: {:?}", f.events(id));
    }

    interrupt(&watcher);
    let out = watcher.wait_with_output().expect("watch exits");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let text = guard_output(&metrics);
    assert_eq!(text.lines().filter(|l| l.contains("killed ")).count(), 1, "one kill:\n{text}");
    f.finish();
}

#[test]
fn watch_draws_gauges_on_a_terminal() {
    let Some(f) = TestFleet::new("watchtty") else { return };
    f.run(&["spawn", "tty-agent", "ws-001", "--", "sleep", "600"]).code(0);
    let Some(mut pty) = Pty::open("watchtty", 30, 120) else { return f.finish() };
    let child = pty.spawn(&mut f.cmd(&["watch", "--interval", "200ms"]));
    // Read until the screen shows what is checked below (or a generous deadline passes).
    let drawn = ["fleet [", "tty-agent [", "spawn stops 85 %, kill 95 %"];
    let text = pty.read_until(Duration::from_secs(30), |s| drawn.iter().all(|d| s.contains(d)));
    interrupt(&child);
    assert_eq!(pty.wait_draining(child), Some(130));
    assert!(text.contains("fleet ["), "the fleet gauge:\n{text}");
    assert!(text.contains("tty-agent ["), "a bar for the agent:\n{text}");
    assert!(text.contains("spawn stops 85 %, kill 95 %"), "{text}");
    f.finish();
}

/// The watcher keeps each agent's usage file open between refreshes. A read in place must
/// follow the usage, and fail once the cgroup is gone, also after a cgroup of the same name
/// has been made again: that failure is how the watcher knows to open the new one.
#[test]
fn a_held_usage_file_follows_its_cgroup_and_fails_once_it_is_gone() {
    let Some(f) = TestFleet::new("held") else { return };
    f.run(&["spawn", "h1", "ws-001", "--", "sh", "-c", &crate::util::hog_script(40, "sleep 600")]).code(0);
    let held = f.cgroup("h1").hold_memory_current().expect("hold memory.current");
    f.wait_log("h1", "ready", Duration::from_secs(90));
    let (in_place, by_path) = (held.read().expect("read in place"), f.cgroup("h1").memory_current().expect("read"));
    assert!(in_place >= 40 << 20, "the held file shows {in_place} bytes, not the hog's 40 MiB");
    assert!(in_place.abs_diff(by_path) < 4 << 20, "held {in_place} against {by_path} by path");

    f.run(&["kill", "h1", "--force"]).code(0);
    assert!(held.read().is_err(), "a removed cgroup's held file still reads");
    f.run(&["cgroup-create", "h1"]).code(0);
    assert!(held.read().is_err(), "the held file reads the new cgroup of the same name");
    let fresh = f.cgroup("h1").hold_memory_current().expect("hold the new one");
    assert!(fresh.read().expect("read the new one") < 40 << 20, "the new cgroup is charged the old hog");
    f.cgroup("h1").kill_and_remove(Duration::from_secs(5)).expect("remove");
    f.finish();
}

/// The metrics file is a side job of the guard. A path that never worked is refused before
/// anything is guarded; a disk that fills up later costs one line and a retry, never the
/// guard.
#[test]
fn a_metrics_file_that_cannot_be_written_is_refused_at_first_and_survived_later() {
    let Some(f) = TestFleet::new("metricsfull") else { return };
    let missing = f.tmp.path().join("no/such/dir/fleet.prom");
    f.run(&["watch", "--metrics-file", missing.to_str().expect("utf8")])
        .code(1)
        .one_error_line("cannot write the metrics file");
    f.run(&["watch", "--interval", "0"]).code(2).one_error_line("at least 100ms");

    let dir = f.tmp.path().join("metrics");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let tmpfs = crate::util::Tmpfs::mount(&dir, "size=1m");
    let metrics = dir.join("fleet.prom");
    let mut watcher = f
        .cmd(&["watch", "--auto-kill", "--interval", "100ms", "--metrics-file", metrics.to_str().expect("utf8")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let lines = crate::util::lines_of(watcher.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics.exists() {
        assert!(Instant::now() < deadline, "watch never wrote {}", metrics.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Fill the disk: the next rewrite fails.
    let filler = tmpfs.fill();
    crate::util::wait_line(&lines, "still watching, retrying each interval", Duration::from_secs(30));
    assert!(watcher.try_wait().expect("try_wait").is_none(), "the guard ended over a full disk");
    std::fs::remove_file(&filler).expect("free the space");
    crate::util::wait_line(&lines, "is written again", Duration::from_secs(30));
    interrupt(&watcher);
    assert_eq!(watcher.wait().expect("watch exits").code(), Some(130));
    let failures = lines.lock().expect("lines").iter().filter(|l| l.contains("cannot write")).count();
    assert_eq!(failures, 1, "one line for the whole time the disk was full");
    drop(tmpfs);
    f.finish();
}

/// Above the kill threshold with only a protected agent left, relief is stuck. The guard
/// says so once and waits like any tick; it must not retry (and print) as fast as it can.
#[test]
fn a_guard_that_cannot_relieve_says_so_once_and_waits() {
    let Some(f) = TestFleet::new("stuck") else { return };
    // Room for the hog's peak while it builds its 40 MiB string (about twice that).
    f.set_budget(128 << 20);
    let hog = crate::util::hog_script(40, "sleep 600");
    f.run(&["spawn", "kept", "ws-001", "--protect", "--", "sh", "-c", &hog]).code(0);
    f.wait_log("kept", "ready", T);
    // The hog's 40 MiB is over 30 % of the budget: past a kill threshold of 25 %.
    let config = f.tmp.path().join("low-thresholds.toml");
    std::fs::write(&config, "[thresholds]\nspawn = 20\nkill = 25\n").expect("config");
    let mut watcher = f
        .cmd(&["watch", "--auto-kill", "--interval", "200ms"])
        .env("FLEET_CONFIG", &config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let lines = crate::util::lines_of(watcher.stdout.take().expect("stdout"));
    crate::util::wait_line(&lines, "cannot reach 20 %", Duration::from_secs(30));
    // Stuck for five more of its 200 ms ticks (one status line each, off a terminal).
    let ticks = || lines.lock().expect("lines").iter().filter(|l| l.contains(" fleet ")).count();
    let stuck_at = ticks();
    crate::util::wait_until(Duration::from_secs(30), || "watch stopped ticking".into(), || ticks() >= stuck_at + 5);
    interrupt(&watcher);
    assert_eq!(watcher.wait().expect("watch exits").code(), Some(130));
    let lines = lines.lock().expect("lines");
    let stuck = lines.iter().filter(|l| l.contains("cannot reach")).count();
    assert_eq!(stuck, 1, "one line while stuck, not:\n{}", lines.join("\n"));
    assert_eq!(f.agent("kept")["state"], "running", "the protected agent is spared");
    f.finish();
}

/// The fleet root's memory.high is the guard's alarm on cgroup v2: a guard that was killed
/// before it could put it back (SIGKILL, a watchdog's abort) left its alarm there, and the
/// next guard must not restore that; a new budget under a running guard moves the alarm.
#[test]
fn the_guards_alarm_follows_the_budget_and_leaves_memory_high_at_max() {
    let Some(f) = TestFleet::new("alarm") else { return };
    if f.fleet.root.memory_v1.is_some() {
        crate::util::skip("alarm", "cgroup v1 memory here: the alarm is an eventfd, not memory.high");
        f.finish();
        return;
    }
    // Budgets below the VM tier's memory, which caps a budget above it.
    f.set_budget(192 << 20);
    let high = f.fleet.root.memory_dir().join("memory.high");
    let read = || std::fs::read_to_string(&high).expect("memory.high").trim().to_string();
    // The kernel keeps memory.high in whole pages.
    let alarm_at = |budget: u64| (budget * 95 / 100 / 4096 * 4096).to_string();
    std::fs::write(&high, (100u64 << 20).to_string()).expect("a stale alarm");
    let metrics = f.tmp.path().join("fleet.prom");
    let watcher = start_guard(&f, &[], &metrics);
    assert_eq!(read(), alarm_at(192 << 20), "armed at 95 % of the budget");
    f.set_budget(320 << 20);
    let moved = alarm_at(320 << 20);
    crate::util::wait_until(T, || format!("memory.high is {}, not {moved}", read()), || read() == moved);
    interrupt(&watcher);
    let out = watcher.wait_with_output().expect("watch exits");
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(read(), "max", "the alarm is gone with the guard, stale or not");
    f.finish();
}
