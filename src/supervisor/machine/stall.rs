//! When memory pressure becomes a stall. The kernel's trigger fires at most once per window
//! while all the agent's tasks wait on memory for more than the threshold of it; triggers
//! that keep coming for the configured time are a stall, and a silence of two windows says
//! the pressure eased. Two named timers carry it: `stall_due` and `stall_eased`.

use super::{Action, Machine, Phase};
use crate::supervisor::timers::fired;
use fleet_core::event::Event;
use std::time::{Duration, Instant};

/// A stall in progress.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StallState {
    /// When the pressure began: a window before the first trigger of the run of them.
    since: Option<Instant>,
    /// The stall was marked (event, record, signal).
    marked: bool,
    /// The machine killed the run for it: what the stall was, for the verdict.
    pub killed_for: Option<String>,
}

/// Slack on top of two windows before silence counts as eased: the kernel checks
/// unprivileged triggers on its 2 s averaging tick, not at the window's edge.
const EASE_SLACK: Duration = Duration::from_secs(1);

impl Machine {
    /// Whether the driver should listen to the memory-pressure trigger.
    pub fn wants_pressure(&self) -> bool {
        self.policy.stall.is_some() && matches!(self.phase, Phase::Running { .. })
    }

    pub(super) fn pressure_triggered(&mut self, now: Instant) {
        let Some(policy) = &self.policy.stall else { return };
        if !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        if self.stall.since.is_none() {
            // The trigger speaks of the window that just ended.
            let since = now.checked_sub(policy.window).unwrap_or(now);
            self.stall.since = Some(since);
            self.timers.stall_due = Some(since + policy.after);
        }
        self.timers.stall_eased = Some(now + 2 * policy.window + EASE_SLACK);
    }

    pub(super) fn stall_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(policy) = self.policy.stall.clone() else { return };
        if fired(&mut self.timers.stall_eased, now) {
            self.stall.since = None;
            self.timers.stall_due = None;
            if std::mem::take(&mut self.stall.marked) {
                out.push(Action::RecordStalled(None));
                out.push(Action::SaveRecord);
                out.push(Action::Note("memory pressure eased: no longer stalled".into()));
            }
        }
        let (Phase::Running { pid }, Some(since)) = (&self.phase, self.stall.since) else { return };
        if !fired(&mut self.timers.stall_due, now) || self.stall.marked {
            return;
        }
        let pid = *pid;
        self.stall.marked = true;
        let lasted = now.saturating_duration_since(since);
        let what = format!(
            "all its tasks waited on memory over {} % of the time for {}",
            policy.threshold_percent,
            humantime::format_duration(Duration::from_secs(lasted.as_secs()))
        );
        out.push(Action::Note(format!("stalled on memory: {what}")));
        out.push(Action::Journal(Event::Stall {
            threshold_percent: policy.threshold_percent,
            after_ms: lasted.as_millis() as u64,
            signal: policy.signal.map(|s| s.as_str().to_string()),
            kill: policy.kill,
        }));
        out.push(Action::RecordStalled(Some(lasted)));
        out.push(Action::SaveRecord);
        if let Some(signal) = policy.signal {
            out.push(Action::SignalMain { pid, signal });
        }
        if policy.kill {
            self.stall.killed_for = Some(what);
            out.push(Action::KillAll);
        }
    }
}
