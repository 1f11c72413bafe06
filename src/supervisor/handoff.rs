//! The hand-over from `spawn` to the agent's supervisor.
//!
//! `spawn` forks the supervisor as soon as it holds the id's lock and leases, then makes the
//! cgroup and writes the record while the supervisor detaches from the caller and prepares
//! the agent's start. The two halves take about as long (docs/benchmarks.md, "Where spawn time
//! goes"), so on a host with two cores or more, spawn's latency loses one of them.
//!
//! Three messages on one socket pair:
//! 1. [`CGROUP_MADE`], one byte from `spawn` once the cgroup's directories exist: the
//!    supervisor opens the files the start needs (`cgroup.procs`, the v1 OOM notification)
//!    while `spawn` writes the limits and the record;
//! 2. [`GO`], one byte: limits and record are in place, start the command;
//! 3. the report back, one JSON line ([`Ready`]).
//!
//! End-of-file instead of a byte means "give up, exit". A socket and not a pipe, because
//! `send(MSG_NOSIGNAL)` to a supervisor that has died fails instead of raising SIGPIPE in
//! `spawn`.

use super::{Ready, become_supervisor};
use crate::agent::plan::SupervisorPlan;
use anyhow::{Context, Result};
use fleet_core::{lease::Leases, lock::Lock, state::AgentRecord};
use nix::{
    sys::{
        signal::{Signal, kill},
        socket::{MsgFlags, send},
        wait::waitpid,
    },
    unistd::{ForkResult, Pid},
};
use std::{
    io::{BufRead, BufReader, Read},
    os::{fd::AsRawFd, unix::net::UnixStream},
};

/// The cgroup's directories exist; its limits do not yet.
pub const CGROUP_MADE: u8 = b'c';
/// The cgroup, its limits and the record are in place: start.
pub const GO: u8 = b'g';

/// `spawn`'s side: a supervisor that is setting itself up and waits for "go". Dropped
/// without [`Starting::go`], it is told to give up and reaped, so a failed spawn leaves no
/// process behind (and its lock copy is closed before `spawn`'s undo removes the files).
pub struct Starting {
    pid: Pid,
    channel: Option<UnixStream>,
}

impl Starting {
    /// Forks the supervisor. The child becomes it in place, holding the lock and the leases
    /// through its copies of the descriptors, and never returns from this call.
    pub fn fork(plan: &SupervisorPlan, record: AgentRecord, lock: &Lock, leases: Option<&Leases>) -> Result<Starting> {
        let (ours, theirs) = UnixStream::pair().context("cannot create a socket pair")?;
        // Descriptors for the child, duplicated before the fork: the copies share the open
        // file descriptions, so the lock and the leases stay held after `spawn` exits.
        let lock_file = lock.file().try_clone().context("cannot duplicate the lock")?;
        let leases = leases.map(Leases::try_clone).transpose().context("cannot duplicate the leases")?;
        debug_assert!(
            fleet_core::procs::thread_count(&plan.proc_root).is_none_or(|n| n == 1),
            "spawn must fork while single-threaded"
        );
        // SAFETY: spawn has started no thread, so the child inherits no lock held by another
        // thread and may run any code. It never returns into this function's callers (their
        // undo must not run twice): it leaves through `_exit`.
        let pid = match unsafe { nix::unistd::fork() }.context("cannot fork the supervisor")? {
            ForkResult::Child => {
                drop(ours);
                let lock = Lock::from_inherited(lock_file, plan.dirs().lock_path(&plan.id));
                let code = become_supervisor(plan.clone(), record, lock, leases, theirs);
                // SAFETY: _exit ends the process without unwinding into spawn's frames.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => child,
        };
        Ok(Starting { pid, channel: Some(ours) })
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Tells the supervisor the cgroup's directories exist.
    pub fn cgroup_made(&self) {
        if let Some(channel) = &self.channel {
            // A failed send means the supervisor is gone; `go` finds out.
            let _ = send(channel.as_raw_fd(), &[CGROUP_MADE], MsgFlags::MSG_NOSIGNAL);
        }
    }

    /// Tells the supervisor the cgroup and the record are ready, and waits for its report:
    /// the supervisor's pid and the agent's, once the command has been exec'd in its cgroup.
    pub fn go(mut self) -> Result<(Pid, i32)> {
        let channel = self.channel.take().context("the supervisor was already told")?;
        // A failed send means the supervisor is gone; reading its report says so.
        let _ = send(channel.as_raw_fd(), &[GO], MsgFlags::MSG_NOSIGNAL);
        let mut line = String::new();
        let read = BufReader::new(&channel).read_line(&mut line);
        // No report (or an unreadable one): make sure the supervisor is gone before the
        // caller's undo removes what it would use.
        let Some(ready) = read.ok().and_then(|_| serde_json::from_str::<Ready>(&line).ok()) else {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
            anyhow::bail!("the supervisor exited before reporting; `fleetctl events` may say why");
        };
        match (ready.pid, ready.error) {
            (Some(pid), _) => Ok((self.pid, pid)),
            (None, error) => {
                let _ = waitpid(self.pid, None);
                Err(anyhow::anyhow!(error.unwrap_or_else(|| "the supervisor failed".into())))
            }
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(channel) = self.channel.take() {
            drop(channel); // end-of-file: the supervisor exits without starting anything
            let _ = waitpid(self.pid, None);
        }
    }
}

/// The supervisor's side: waits for `message` from `spawn`. False when `spawn` gave up or
/// died first; the supervisor then exits, and whatever `spawn` made is its undo's (or gc's).
pub fn wait_for(channel: &mut UnixStream, message: u8) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match channel.read(&mut byte) {
            Ok(n) => return n == 1 && byte[0] == message,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}
