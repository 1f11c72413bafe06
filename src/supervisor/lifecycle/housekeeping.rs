//! What the supervisor does once, after `spawn` has returned (the housekeeping timer):
//! OOM protection, the move to `<root>/supervisors`, and letting go of setup memory.

use super::Supervisor;
use fleet_core::event::Event;
use fleet_core::procs::protect_from_oom;

impl Supervisor {
    /// What the supervisor does once, after `spawn` has returned: take protection from the
    /// OOM killer, leave the caller's cgroup for the fleet's `supervisors/`, outside every
    /// agent, and, since from then on it mostly sleeps, let go of its setup code's pages and
    /// of what `spawn` left on the heap before its next sleep ([`super::idle`]).
    ///
    /// None of it is done before: on a host with two cores, the supervisor, the agent's
    /// own start-up and `spawn`'s exit compete for them, and every syscall the supervisor
    /// makes meanwhile is one `spawn`'s caller may wait for.
    pub(super) fn housekeeping(&mut self) {
        // Only root may lower oom_score_adj; an unprivileged supervisor runs unprotected.
        self.oom_protected = protect_from_oom(&self.plan.proc_root).is_ok();
        // The lock file names its holder for a refused spawn's message (when the record
        // cannot say); until now it named `spawn`, which held the same lock.
        if let Err(e) = self.lock.set_holder("supervisor") {
            self.note(&format!("cannot name the supervisor in the lock file: {e:#}"));
        }
        // A quiet agent has an (empty) log too, for `fleetctl logs`.
        let _ = self.log();
        let joined = match self.joined_supervisors_early {
            true => self.plan.supervisors.attach_v1(0),
            false => self.plan.supervisors.attach(0),
        };
        if let Err(e) = joined {
            self.note(&format!("cannot move the supervisor into {}: {e:#}", self.plan.supervisors.unified.display()));
            self.event(&Event::SupervisorError { error: format!("cannot join supervisors cgroup: {e:#}") });
        }
        // Done right before the poll, so what runs until then is not resident either.
        self.let_go = super::idle::LetGo::Due;
    }
}
