//! The supervisor's memory-pressure trigger itself: armed the unprivileged way even by a
//! supervisor that holds CAP_SYS_RESOURCE (no real-time `psimon` kernel thread per agent, on
//! the kernels that can spare it), and dropped, not spun on, when the agent's cgroup is
//! removed while its run lives.

use crate::util::{Run, TestFleet, skip, wait_until};
use std::{
    collections::BTreeSet,
    io::{Read, Write},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

const T: Duration = Duration::from_secs(60);

/// The kernel's `psimon` threads (one per cgroup with a privileged trigger), each as its pid
/// and start time, so a pid reused by a new thread is a new thread.
fn psimon_threads() -> BTreeSet<(i32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "psimon"))
        .filter_map(|pid| Some((pid, stat_field(pid.into(), 19)?.parse().ok()?)))
        .collect()
}

/// Field `n` of `/proc/<pid>/stat` counted from the state (0), which follows the name.
fn stat_field(pid: i64, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().nth(n)?.to_owned())
}

/// The scheduler state of `pid` (`S` asleep, `R` running, `T` stopped, `Z` a zombie); None
/// once it is gone.
fn proc_state(pid: i64) -> Option<char> {
    stat_field(pid, 0)?.chars().next()
}

/// Whether the kernel watches a trigger opened without CAP_SYS_RESOURCE in another way than
/// a privileged one (Linux 6.5 and later): it then refuses such a trigger a window that is
/// not a whole multiple of 2 s (EINVAL). An older kernel takes it, as it takes every trigger
/// with a `psimon` thread of its own whatever the opener's capabilities.
fn kernel_spares_unprivileged_triggers(pressure: &Path) -> bool {
    let pressure = pressure.to_owned();
    // Capabilities are per thread: this one lowers its own, opens, and ends.
    std::thread::spawn(move || {
        use caps::{CapSet, Capability::CAP_SYS_RESOURCE};
        caps::drop(None, CapSet::Effective, CAP_SYS_RESOURCE).expect("lower CAP_SYS_RESOURCE");
        let open = std::fs::OpenOptions::new().read(true).write(true).open(&pressure);
        let mut file = open.unwrap_or_else(|e| panic!("open {}: {e}", pressure.display()));
        match file.write_all(b"full 100000 500000\0") {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => true,
            Err(e) => panic!("a 500 ms trigger on {}: {e}", pressure.display()),
        }
    })
    .join()
    .expect("probe thread")
}

/// Whether `pid` has CAP_SYS_RESOURCE (bit 24) in its effective set.
fn has_sys_resource(pid: i64) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(eff, 16).is_ok_and(|caps| caps & (1 << 24) != 0)
}

/// Runs `cmd` to its end in a new user namespace that maps every uid and gid to itself:
/// the same root, with every capability in the namespace's own sets, which is what the
/// kernel reads when it decides how to watch a trigger (as a root that keeps
/// CAP_SYS_RESOURCE is on most hosts; this machine's root may not have it). `None` where
/// the kernel refuses a user namespace.
fn run_in_identity_userns(mut cmd: Command) -> Option<Output> {
    let (mut ready_r, ready_w) = std::io::pipe().expect("pipe");
    let (go_r, mut go_w) = std::io::pipe().expect("pipe");
    let (ready_fd, go_fd) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
    // SAFETY: only async-signal-safe calls between fork and exec, on descriptors the parent
    // keeps open until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let pid = libc::getpid().to_ne_bytes();
            let mut mapped = 0u8;
            if libc::write(ready_fd, pid.as_ptr().cast(), 4) != 4
                || libc::read(go_fd, (&raw mut mapped).cast(), 1) != 1
                || mapped != 1
            {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        });
    }
    // The maps are written from outside the namespace, which setgroups(2) needs.
    let mapper = std::thread::spawn(move || {
        let mut pid = [0u8; 4];
        if ready_r.read_exact(&mut pid).is_err() {
            return;
        }
        let pid = i32::from_ne_bytes(pid);
        let mapped = ["uid_map", "gid_map"]
            .iter()
            .all(|map| std::fs::write(format!("/proc/{pid}/{map}"), "0 0 4294967295").is_ok());
        let _ = go_w.write_all(&[u8::from(mapped)]);
    });
    let out = cmd.output();
    drop((ready_w, go_r));
    mapper.join().expect("mapper");
    out.ok()
}

/// How many agents the psimon test spawns: a regression starts a thread for each, so it
/// shows as at least this many new threads, and psimon threads the rest of the host starts
/// meanwhile (which cannot be told apart: a kernel thread names no cgroup) fail the test only
/// if they are as many.
const PRIVILEGED_AGENTS: usize = 3;

#[test]
fn a_supervisor_with_cap_sys_resource_arms_its_trigger_without_a_realtime_kernel_thread() {
    let Some(f) = TestFleet::new("stall_psimon") else { return };
    f.fleet.ensure().expect("fleet root");
    let pressure = f.fleet.root.unified.join("memory.pressure");
    if !pressure.exists() {
        skip("stall_psimon", "the kernel has no pressure stall information (boot with psi=1)");
        return f.finish();
    }
    if !kernel_spares_unprivileged_triggers(&pressure) {
        skip("stall_psimon", "before Linux 6.5 every trigger has a psimon thread, whatever the opener's capabilities");
        return f.finish();
    }
    let before = psimon_threads();
    for n in 1..=PRIVILEGED_AGENTS {
        let (id, ws) = (format!("privileged-{n}"), format!("ws-00{n}"));
        std::fs::create_dir_all(f.roots.join("ws").join(&ws)).expect("workspace");
        let spawn = f.cmd(&["spawn", &id, &ws, "--", "sh", "-c", "echo up; exec sleep 600"]);
        let Some(out) = run_in_identity_userns(spawn) else {
            skip("stall_psimon", "the kernel refused a user namespace");
            return f.finish();
        };
        Run::from(out).code(0);
        f.wait_log(&id, "up", T);
        let supervisor = f.agent(&id)["supervisor_pid"].as_i64().expect("supervisor pid");
        if !has_sys_resource(supervisor) {
            skip("stall_psimon", "the supervisor did not get CAP_SYS_RESOURCE in its user namespace");
            return f.finish();
        }
        // Its trigger is armed (before the agent started) ...
        let fds = std::fs::read_dir(format!("/proc/{supervisor}/fd")).expect("supervisor fds");
        let trigger = f.cgroup(&id).unified.join("memory.pressure");
        assert!(
            fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).any(|l| l == trigger),
            "no trigger open on {}",
            trigger.display()
        );
    }
    // ... and no real-time kernel thread came with them (each lives as long as its trigger).
    let started: Vec<(i32, u64)> = psimon_threads().difference(&before).copied().collect();
    assert!(
        started.len() < PRIVILEGED_AGENTS,
        "psimon thread(s) {started:?} started with {PRIVILEGED_AGENTS} agents' triggers"
    );
    f.finish();
}

/// A fleet that watches stalls, with a cgroup `escape` in its unified tree for an agent to
/// move out to; None where the test cannot run (the skip recorded, the fleet finished).
fn watching_fleet_with_escape(test: &str) -> Option<(TestFleet, PathBuf)> {
    let f = TestFleet::new(test)?;
    f.set_config("[agent]\nstall_threshold = 10\nstall_after = \"4s\"\n");
    f.fleet.ensure().expect("fleet root");
    if !f.fleet.root.unified.join("memory.pressure").exists() {
        skip(test, "the kernel has no pressure stall information (boot with psi=1)");
        f.finish();
        return None;
    }
    let escape = f.fleet.root.unified.join("escape");
    std::fs::create_dir(&escape).expect("escape cgroup");
    Some((f, escape))
}

/// An agent (root: it can) that moves its main process out of its cgroup into `escape` and
/// removes the cgroup, then waits for `stop-moving` in its workspace.
fn mover(own: &Path, escape: &Path) -> String {
    format!(
        "if echo $$ > {esc}/cgroup.procs && rmdir {own}; then echo moved-out; else echo cannot-move; fi; \
         while [ ! -e stop-moving ]; do sleep 0.1; done",
        esc = escape.display(),
        own = own.display()
    )
}

/// The CPU time `pid` has used, in clock ticks (utime + stime).
fn cpu_ticks(pid: i64) -> u64 {
    let field = |n| stat_field(pid, n).and_then(|f| f.parse::<u64>().ok()).expect("supervisor utime/stime");
    field(11) + field(12)
}

#[test]
fn a_trigger_whose_cgroup_is_removed_under_a_live_run_is_dropped_not_spun_on() {
    let Some((f, escape)) = watching_fleet_with_escape("stall_lost") else { return };
    let script = mover(&f.cgroup("mover").unified, &escape);
    f.run(&["spawn", "mover", "ws-001", "--", "sh", "-c", &script]).code(0);
    wait_until(T, || f.log("mover"), || f.log("mover").contains("moved-out") || f.log("mover").contains("cannot-move"));
    assert!(f.log("mover").contains("moved-out"), "{}", f.log("mover"));

    // The lost trigger is said once and dropped: it neither spins the supervisor nor reads
    // as a stall.
    let lost = f.wait_event("mover", "supervisor_error", T);
    assert!(lost["error"].as_str().is_some_and(|e| e.contains("no longer watched")), "{lost}");
    let supervisor = f.agent("mover")["supervisor_pid"].as_i64().expect("supervisor pid");
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let (start, began) = (cpu_ticks(supervisor), Instant::now());
    // A supervisor polling a dead descriptor never sleeps: it is seen asleep (in its poll)
    // on many reads in a row only once it has stopped polling it, and uses next to no CPU
    // meanwhile, where a spinning one uses most of what it gets.
    let mut asleep = 0;
    wait_until(
        T,
        || format!("the supervisor ({supervisor}) never stays asleep: it spins"),
        || {
            asleep = if proc_state(supervisor) == Some('S') { asleep + 1 } else { 0 };
            asleep >= 20
        },
    );
    let used = cpu_ticks(supervisor) - start;
    let window = began.elapsed().as_secs_f64() * hz as f64;
    assert!((used as f64) <= 1.0 + window / 10.0, "the supervisor used {used} of {window:.0} ticks: it spins");
    assert!(f.events("mover").iter().all(|e| e["event"] != "stall"), "{:?}", f.events("mover"));
    assert_eq!(f.agent("mover")["state"], "running");

    std::fs::write(f.roots.join("ws/ws-001/stop-moving"), "").expect("stop file");
    f.wait_state("mover", &["exited"], T);
    wait_until(T, || format!("{} still populated", escape.display()), || std::fs::remove_dir(&escape).is_ok());
    f.finish();
}

/// An agent whose main process leaves behind, outside its cgroup (`escape`), a helper that
/// holds the agent's output open, removes the cgroup once told to (`remove`, after the main
/// process has exited), and exits once told to (`helper-exit`). Told by files in its
/// workspace; it says how far it got there too.
fn remover_after_exit(own: &Path, escape: &Path) -> String {
    format!(
        "sh -c 'echo $$ > {esc}/cgroup.procs && touch helper-out; \
           while [ ! -e remove ]; do sleep 0.1; done; \
           until rmdir {own}; do sleep 0.1; done; touch removed; \
           while [ ! -e helper-exit ]; do sleep 0.1; done' & \
         echo up; while [ ! -e main-exit ]; do sleep 0.1; done",
        esc = escape.display(),
        own = own.display()
    )
}

/// Sends `signal` to `pid`, a supervisor this test started.
fn signal(pid: i64, signal: i32) {
    // SAFETY: kill(2) has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "signal {signal} to {pid}");
}

#[test]
fn a_trigger_lost_in_the_wake_its_run_ends_in_is_not_reported() {
    let Some((f, escape)) = watching_fleet_with_escape("stall_lost_at_end") else { return };
    let script = remover_after_exit(&f.cgroup("ender").unified, &escape);
    f.run(&["spawn", "ender", "ws-001", "--", "sh", "-c", &script]).code(0);
    let ws = f.roots.join("ws/ws-001");
    f.wait_log("ender", "up", T);
    wait_until(T, || f.log("ender"), || ws.join("helper-out").exists());
    let agent = f.agent("ender");
    let supervisor = agent["supervisor_pid"].as_i64().expect("supervisor pid");
    let main = agent["pid"].as_i64().expect("main pid");

    // Staged so that one wake of the supervisor finds both the main process's exit and the
    // trigger's error: it is stopped while the main process exits and the cgroup goes.
    signal(supervisor, libc::SIGSTOP);
    wait_until(T, || format!("supervisor {supervisor} not stopped"), || proc_state(supervisor) == Some('T'));
    std::fs::write(ws.join("main-exit"), "").expect("main-exit");
    wait_until(T, || format!("main {main} not exited"), || proc_state(main) == Some('Z'));
    std::fs::write(ws.join("remove"), "").expect("remove");
    wait_until(T, || f.log("ender"), || ws.join("removed").exists());
    signal(supervisor, libc::SIGCONT);
    // That wake reaps the main process first: once it is gone, the wake has been handled
    // (the helper still holds the output open, so the run ends only after it).
    wait_until(T, || format!("main {main} not reaped"), || proc_state(main) != Some('Z'));
    std::fs::write(ws.join("helper-exit"), "").expect("helper-exit");
    f.wait_state("ender", &["exited"], T);

    let said: Vec<_> = f.events("ender").into_iter().filter(|e| e["event"] == "supervisor_error").collect();
    assert!(said.is_empty(), "a trigger lost as its run ended was reported: {said:?}");
    wait_until(T, || format!("{} still populated", escape.display()), || std::fs::remove_dir(&escape).is_ok());
    f.finish();
}
