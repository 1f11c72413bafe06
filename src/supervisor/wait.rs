//! The supervisor's one poll(2): it sleeps on the signalfd, the agent's output pipe and the
//! v1 OOM eventfd and the memory-pressure trigger until one is ready or the next deadline
//! passes.

use super::oom_group::OomGroup;
use fleet_core::cgroup::StallTrigger;
use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::signalfd::SignalFd,
};
use std::{
    fs::File,
    os::fd::AsFd,
    path::Path,
    time::{Duration, Instant},
};

/// What is readable after a wait.
#[derive(Debug, Default, Clone, Copy)]
pub struct Woke {
    pub signals: bool,
    pub output: bool,
    pub oom: bool,
    pub pressure: bool,
    /// The pressure trigger's cgroup is gone (removed while the run lived): the descriptor
    /// reports an error on every poll from now on, so it must be dropped, not polled again.
    pub pressure_lost: bool,
}

/// Sleeps until a descriptor is readable (the pressure trigger: has fired) or `deadline`
/// passes (None: no deadline). With `release_pages` (the proc root), the code and read-only
/// data pages are let go of right before the sleep, so little of what ran since stays
/// resident while it lasts.
pub fn wait(
    signals: &SignalFd,
    output: Option<&File>,
    oom: Option<&OomGroup>,
    pressure: Option<&StallTrigger>,
    deadline: Option<Instant>,
    release_pages: Option<&Path>,
) -> Woke {
    let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    let output_at = output.map(|o| {
        fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
        fds.len() - 1
    });
    let oom_at = oom.map(|o| {
        fds.push(PollFd::new(o.fd(), PollFlags::POLLIN));
        fds.len() - 1
    });
    // poll(2) itself consumes the trigger's event.
    let pressure_at = pressure.map(|p| {
        fds.push(PollFd::new(p.fd(), PollFlags::POLLPRI));
        fds.len() - 1
    });
    // EINTR cannot happen (every signal we take is blocked); anything else is a bug we
    // cannot act on, and the caller polls again.
    let timeout = timeout(deadline, Instant::now());
    if let Some(proc_root) = release_pages {
        fleet_core::own_pages::release_clean_file_pages(proc_root);
    }
    let _ = poll(&mut fds, timeout);
    let revents = |at: Option<usize>| at.and_then(|i| fds.get(i)).and_then(|f| f.revents());
    let ready = |at: Option<usize>| revents(at).is_some_and(|r| !r.is_empty());
    let (pressure, pressure_lost) = trigger_state(revents(pressure_at));
    Woke { signals: ready(Some(0)), output: ready(output_at), oom: ready(oom_at), pressure, pressure_lost }
}

/// What the trigger's `revents` say: (fired, lost). A removed cgroup's pressure file polls
/// POLLERR together with POLLPRI, at once and forever: that is a lost trigger, not pressure.
fn trigger_state(revents: Option<PollFlags>) -> (bool, bool) {
    let Some(r) = revents else { return (false, false) };
    let lost = r.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL | PollFlags::POLLHUP);
    (!lost && r.contains(PollFlags::POLLPRI), lost)
}

/// The poll timeout for `deadline`: at least 1 ms, so a deadline due now is not a busy
/// loop, and at most a minute.
fn timeout(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(t) => {
            let left = t.saturating_duration_since(now).min(Duration::from_secs(60));
            PollTimeout::from((left.as_millis() as u16).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_on_the_trigger_is_a_lost_trigger_not_pressure() {
        assert_eq!(trigger_state(None), (false, false));
        assert_eq!(trigger_state(Some(PollFlags::empty())), (false, false));
        assert_eq!(trigger_state(Some(PollFlags::POLLPRI)), (true, false));
        // What a removed cgroup's memory.pressure polls, every time.
        assert_eq!(trigger_state(Some(PollFlags::POLLPRI | PollFlags::POLLERR)), (false, true));
        assert_eq!(trigger_state(Some(PollFlags::POLLNVAL)), (false, true));
    }

    #[test]
    fn the_timeout_is_the_time_left_within_bounds() {
        let now = Instant::now();
        assert_eq!(timeout(None, now), PollTimeout::NONE);
        assert_eq!(timeout(Some(now), now), PollTimeout::from(1u16));
        assert_eq!(timeout(Some(now + Duration::from_millis(250)), now), PollTimeout::from(250u16));
        assert_eq!(timeout(Some(now + Duration::from_secs(3600)), now), PollTimeout::from(60_000u16));
    }
}
