//! The systemd side on a host that may have none: a fleet configured into fleetctl's scope
//! is refused (exit 69) while the scope is missing, with nothing made; the watcher speaks
//! the notify protocol (READY=1 once armed, WATCHDOG=1 from its loop) whenever
//! `NOTIFY_SOCKET` is set. The rest runs in the systemd VM.

use crate::util::TestFleet;
use std::{
    os::unix::net::UnixDatagram,
    process::Stdio,
    time::{Duration, Instant},
};

/// The fleet root on a systemd host.
const IN_SCOPE: &str = "/system.slice/fleetctl-fleet.scope/fleet";

#[test]
fn a_fleet_in_a_missing_scope_is_refused_and_nothing_is_made() {
    let Some(f) = TestFleet::new("no-scope") else { return };
    let unified =
        fleet_core::cgroup::Mounts::locate(std::path::Path::new("/sys/fs/cgroup"), std::path::Path::new("/proc"))
            .expect("mounts")
            .unified;
    let slice = unified.join("system.slice");
    if slice.join("fleetctl-fleet.scope").exists() {
        // A systemd host where fleetctl runs: the scope is there and spawn would use it.
        crate::util::skip("no-scope", "this host has fleetctl-fleet.scope");
        return f.finish();
    }
    let slice_was_there = slice.exists();
    for args in [
        &["spawn", "in-scope", "ws-001", "--", "sleep", "60"][..],
        &["cgroup-create", "in-scope"][..],
        &["watch", "--interval", "200ms"][..],
    ] {
        let run =
            crate::util::Run::from(f.cmd(args).env("FLEET_CGROUP_PARENT", IN_SCOPE).output().expect("run fleetctl"));
        run.code(69).one_error_line("fleetctl-fleet.scope, which does not exist");
        assert!(run.stderr.contains("systemctl start fleetctl"), "{}", run.stderr);
        assert_eq!(slice.exists(), slice_was_there, "{args:?} made cgroups above the fleet root");
    }
    let status = f.run(&["status", "--json"]);
    status.code(0);
    assert!(!status.stdout.contains("in-scope"), "a record was left: {}", status.stdout);
    f.finish();
}

/// Reads datagrams from `socket` until one contains `text`.
fn wait_message(socket: &UnixDatagram, text: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {text:?} from the watcher in {timeout:?}");
        socket.set_read_timeout(Some(left)).expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message.contains(text) {
                return message;
            }
        }
    }
}

#[test]
fn the_watcher_tells_systemd_it_is_ready_and_alive() {
    let Some(f) = TestFleet::new("notify") else { return };
    let path = f.tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    // A refresh interval far above the watchdog's: the pings must come at half the
    // watchdog's timeout all the same.
    let mut watcher = f
        .cmd(&["watch", "--auto-kill", "--interval", "60s"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    let ready = wait_message(&socket, "READY=1", Duration::from_secs(30));
    assert!(ready.contains("STATUS=guarding"), "{ready}");
    // Armed before READY: a second auto-killing watcher is refused at once.
    f.run(&["watch", "--auto-kill"]).code(4).one_error_line("another auto-killing watcher is running");
    for _ in 0..3 {
        wait_message(&socket, "WATCHDOG=1", Duration::from_secs(20));
    }
    crate::watch::interrupt(&watcher);
    let status = watcher.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{status}");
    let _ = watcher.stderr.take();
    f.finish();
}

/// Run by systemd, the guard's lines go to the journal: a status line a minute, not one per
/// sample (a second's would be 86,400 lines a day).
#[test]
fn the_guard_run_by_systemd_writes_a_status_line_a_minute() {
    let Some(f) = TestFleet::new("journal-lines") else { return };
    let path = f.tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let watcher = f
        .cmd(&["watch", "--auto-kill", "--interval", "100ms"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    wait_message(&socket, "READY=1", Duration::from_secs(30));
    // Four pings at half a second each: some twenty samples at 100 ms.
    for _ in 0..4 {
        wait_message(&socket, "WATCHDOG=1", Duration::from_secs(20));
    }
    crate::watch::interrupt(&watcher);
    let out = watcher.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|l| l.contains(" fleet ")).count(), 1, "{text}");
    f.finish();
}

/// systemd-oomd reads its omit mark on each cgroup it would kill, never on the fleet's scope
/// above them: every agent's cgroup and the supervisors' carry it (cgroup v2, where oomd runs).
#[test]
fn agents_and_supervisors_are_marked_for_systemd_oomd_to_leave_alone() {
    let Some(f) = TestFleet::new("oomd-omit") else { return };
    if f.fleet.root.memory_v1.is_some() {
        crate::util::skip("oomd-omit", "cgroup v1 memory here: systemd-oomd runs on cgroup v2 only");
        f.finish();
        return;
    }
    f.run(&["spawn", "o1", "ws-001", "--", "sleep", "600"]).code(0);
    let mark = |dir: &std::path::Path| {
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
        let mut value = [0u8; 8];
        // SAFETY: getxattr(2) into a buffer of the length given.
        let n = unsafe {
            libc::getxattr(path.as_ptr(), c"user.oomd_omit".as_ptr(), value.as_mut_ptr().cast(), value.len())
        };
        (n > 0).then(|| String::from_utf8_lossy(&value[..n as usize]).into_owned())
    };
    assert_eq!(mark(&f.cgroup("o1").unified).as_deref(), Some("1"), "the agent's cgroup");
    assert_eq!(mark(&f.fleet.supervisors().unified).as_deref(), Some("1"), "the supervisors' cgroup");
    f.run(&["kill", "o1", "--force"]).code(0);
    f.finish();
}
