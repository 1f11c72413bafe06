//! The per-agent supervisor: the child that `spawn` forks, which becomes the agent's
//! supervisor in place (no second exec of fleetctl: that was half of spawn's latency).
//!
//! It starts a new session, lets go of the caller's terminal and pipes (a CI runner waits for
//! them to close), prepares the agent's start while `spawn` makes the cgroup ([`handoff`]),
//! starts the agent's command, and reports the pid (or the error) to `spawn`. Shortly after
//! (50 ms), once `spawn` has returned, it takes protection from the OOM killer and moves
//! itself to the fleet's `supervisors/` cgroup (outside every agent) (on systemd hosts it
//! leaves the caller's cgroup2 cgroup at once, before the start). From then on it
//! sleeps in `poll(2)` until the kernel has news: a signal, output, an OOM event, or the
//! next deadline.

pub mod handoff;
mod launch;
mod lifecycle;
mod logsink;
mod machine;
mod oom_group;
mod outcome;
mod run_end;
mod runner;
mod scrub;
mod timers;
mod wait;

use crate::agent::plan::SupervisorPlan;
use fleet_core::{lease::Leases, lock::Lock, state::AgentRecord};
use std::{io::Write, os::unix::net::UnixStream};

/// What the supervisor tells `spawn`, as one JSON line on their socket ([`handoff`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    /// The agent's main pid, when it started.
    pub pid: Option<i32>,
    /// Why it did not.
    pub error: Option<String>,
}

/// Runs in the child `spawn` forked, holding the agent's lock and leases; returns the
/// process's exit code and never returns into `spawn`'s code.
fn become_supervisor(
    plan: SupervisorPlan,
    record: AgentRecord,
    lock: Lock,
    leases: Option<Leases>,
    mut channel: UnixStream,
) -> i32 {
    // Read once: where its arguments lie, and who it is for its ledger lines at the end.
    let own = fleet_core::procs::own_stat(&plan.proc_root);
    let me = own.as_ref().map(|own| own.me);
    scrub::forget_the_callers_arguments(own.and_then(|own| own.arg_env), &format!("fleetctl supervisor {}", plan.id));
    let _ = nix::unistd::setsid();
    redirect_to_null(&[libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO]);
    {
        use std::os::fd::AsRawFd;
        let mut keep = vec![lock.file().as_raw_fd(), channel.as_raw_fd()];
        keep.extend(leases.iter().flat_map(Leases::fds));
        close_inherited(&keep);
    }
    name_process(&plan);
    // Where systemd ends units by their cgroup, out of the caller's at once: a oneshot
    // orchestrator or a session that ends right after spawn returns must not take the
    // supervisor along. It overlaps spawn's own work; elsewhere it waits for the housekeeping.
    let joined_early = plan.join_early && plan.supervisors.attach_unified(0).is_ok();
    let queue_dir = fleet_core::queue::dir(&plan.state_dir);
    let ledger_path =
        fleet_core::paths::Dirs { state: plan.state_dir.clone(), log: plan.log_dir.clone() }.admission_path();
    let prepared = lifecycle::Supervisor::prepare(plan, record, me, lock, leases, joined_early);
    // The cgroup exists, and `spawn` is writing its limits: open what the start needs of it.
    if !handoff::wait_for(&mut channel, handoff::CGROUP_MADE) {
        return 1;
    }
    let prepared = prepared.and_then(|mut sup| {
        sup.place_first_run()?;
        Ok(sup)
    });
    if !handoff::wait_for(&mut channel, handoff::GO) {
        return 1;
    }
    let started = prepared.and_then(|mut sup| {
        let pid = sup.start_first_run()?;
        Ok((sup, pid))
    });
    let ready = match &started {
        Ok((_, pid)) => Ready { pid: Some(*pid), error: None },
        Err(e) => Ready { pid: None, error: Some(format!("{e:#}")) },
    };
    let _ = writeln!(channel, "{}", serde_json::to_string(&ready).unwrap_or_default());
    drop(channel);
    match started {
        Ok((mut sup, _)) => {
            sup.supervise();
            // The agent's lock and leases go with the supervisor: then a queued spawn may
            // have room, under the agent cap or in a pool, and is woken to look.
            drop(sup);
            // Its ledger lines too, before the wake: a line it owns counts for as long as it
            // lives, and the spawn woken next must decide without them.
            if let Some(me) = me {
                let _ = fleet_core::admission::Ledger::release(&ledger_path, me);
            }
            fleet_core::queue::wake(&queue_dir);
            crate::failpoint::hit(crate::failpoint::SUPERVISOR_END);
            0
        }
        // `spawn` saw the error and cleans up what it made.
        Err(_) => 1,
    }
}

/// `ps -o comm` and `top` show `sup:<id>` (at most 15 bytes, the kernel's limit), so a
/// supervisor is not mistaken for a `spawn` still running.
fn name_process(plan: &SupervisorPlan) {
    let mut name: Vec<u8> = format!("sup:{}", plan.id).into_bytes();
    name.truncate(15);
    if let Ok(c) = std::ffi::CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}

/// Closes every descriptor above stderr but `keep`: whatever `spawn`'s caller left open
/// without close-on-exec (a CI runner's pipe, a terminal) must not stay open for the agent's
/// whole life.
fn close_inherited(keep: &[i32]) {
    let mut keep: Vec<u32> = keep.iter().filter_map(|fd| u32::try_from(*fd).ok()).filter(|fd| *fd > 2).collect();
    keep.sort_unstable();
    let mut first = 3;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > first {
            // SAFETY: closes descriptors this process owns and will not use again: one
            // close_range(2) per gap between the kept ones, instead of listing /proc/self/fd
            // and closing each entry. (A raw syscall: musl's libc has no wrapper.)
            unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0) };
        }
        first = fd.saturating_add(1);
    }
}

/// Points each of `fds` at /dev/null.
fn redirect_to_null(fds: &[i32]) {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in fds {
            // SAFETY: dup2 onto a standard descriptor we own; `null` is closed right after.
            unsafe { libc::dup2(null.as_raw_fd(), *fd) };
        }
    }
}
