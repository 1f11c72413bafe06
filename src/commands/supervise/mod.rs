//! The per-agent supervisor (`fleetctl supervise ID`, started by `spawn`, hidden from help).
//!
//! It reads its plan from stdin and inherits the agent's lock as fd 3, moves itself to the
//! kernel to spare it from the OOM killer, starts the agent's command, reports the pid (or
//! the error) on stdout, lets go of stdout so the caller's pipes close, and moves itself to
//! the fleet's `supervisors/` cgroup (outside every agent). From then on it sleeps in `poll(2)` until
//! the kernel has news: a signal, output, an OOM event, or the next deadline.

mod lifecycle;
mod logsink;
mod outcome;
mod runner;

use crate::{
    agent::plan::{LEASE_FD, LOCK_FD, SupervisorPlan},
    exit::Exit,
};
use anyhow::{Context, Result};
use fleet_cli::SuperviseArgs;
use fleet_core::{lease::Leases, lock::Lock};
use std::{
    fs::File,
    io::{Read, Write},
    os::fd::{FromRawFd, OwnedFd},
};

/// What the supervisor tells `spawn` on its stdout, as one JSON line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    /// The agent's main pid, when it started.
    pub pid: Option<i32>,
    /// Why it did not.
    pub error: Option<String>,
}

/// Entry point.
pub fn run(args: SuperviseArgs) -> Result<Exit> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("cannot read the plan")?;
    let plan: SupervisorPlan = serde_json::from_str(&text).context("invalid plan on stdin")?;
    anyhow::ensure!(plan.id == args.id, "plan is for {}, not {}", plan.id, args.id);
    // SAFETY: `spawn` placed the lock's descriptor at LOCK_FD for us, and nothing else here
    // owns that number.
    let lock_file = inherit(unsafe { OwnedFd::from_raw_fd(LOCK_FD) })?;
    let lock = Lock::from_inherited(lock_file, plan.dirs().lock_path(&plan.id));
    let leases = match plan.has_leases {
        // SAFETY: as for the lock: `spawn` placed the leases' descriptor at LEASE_FD.
        true => Some(inherit(unsafe { OwnedFd::from_raw_fd(LEASE_FD) })?),
        false => None,
    }
    .map(|f| Leases::from_inherited(f, plan.dirs().leases_path()));
    redirect_to_null(libc::STDIN_FILENO);

    let started = lifecycle::Supervisor::prepare(plan, lock, leases).and_then(|mut sup| {
        let running = sup.start_run(0)?;
        Ok((sup, running))
    });
    let ready = match &started {
        Ok((_, running)) => Ready { pid: Some(running.pid), error: None },
        Err(e) => Ready { pid: None, error: Some(format!("{e:#}")) },
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(&ready).unwrap_or_default());
    let _ = out.flush();
    drop(out);
    // Let go of the caller's pipes: a CI runner waits for them to close.
    redirect_to_null(libc::STDOUT_FILENO);
    redirect_to_null(libc::STDERR_FILENO);

    match started {
        Ok((mut sup, running)) => {
            sup.move_to_supervisors();
            // From here on the supervisor mostly sleeps: let go of the setup code's pages.
            let _ = fleet_core::procs::release_text_pages(std::path::Path::new("/proc"));
            sup.supervise(running);
            Ok(Exit::Ok)
        }
        // `spawn` saw the error and cleans up what it made.
        Err(_) => Ok(Exit::Failure),
    }
}

/// Takes an inherited descriptor. `spawn` cleared close-on-exec to pass it to us; set it
/// again, or the agent would inherit the lock and keep the id "alive" (or a lease held)
/// after its supervisor died.
fn inherit(fd: OwnedFd) -> Result<File> {
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .context("cannot set close-on-exec on an inherited descriptor")?;
    Ok(File::from(fd))
}

/// Points `fd` at /dev/null.
fn redirect_to_null(fd: i32) {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto a standard descriptor we own; `null` is closed right after.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}
