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
    time::{Duration, Instant},
};

/// What is readable after a wait.
#[derive(Debug, Default, Clone, Copy)]
pub struct Woke {
    pub signals: bool,
    pub output: bool,
    pub oom: bool,
    pub pressure: bool,
}

/// Sleeps until a descriptor is readable (the pressure trigger: has fired) or `deadline`
/// passes (None: no deadline).
pub fn wait(
    signals: &SignalFd,
    output: Option<&File>,
    oom: Option<&OomGroup>,
    pressure: Option<&StallTrigger>,
    deadline: Option<Instant>,
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
    let _ = poll(&mut fds, timeout(deadline, Instant::now()));
    let ready =
        |at: Option<usize>| at.and_then(|i| fds.get(i)).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
    Woke { signals: ready(Some(0)), output: ready(output_at), oom: ready(oom_at), pressure: ready(pressure_at) }
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
    fn the_timeout_is_the_time_left_within_bounds() {
        let now = Instant::now();
        assert_eq!(timeout(None, now), PollTimeout::NONE);
        assert_eq!(timeout(Some(now), now), PollTimeout::from(1u16));
        assert_eq!(timeout(Some(now + Duration::from_millis(250)), now), PollTimeout::from(250u16));
        assert_eq!(timeout(Some(now + Duration::from_secs(3600)), now), PollTimeout::from(60_000u16));
    }
}
