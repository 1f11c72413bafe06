//! What `watch` shows: on a terminal, a gauge for the fleet and a bar per agent (indicatif),
//! redrawn in place; elsewhere, one timestamped line per interval and one per action, so it
//! can run as a service and its log reads top to bottom.

use crate::agent::sample::Light;
use fleet_core::{meminfo::Budget, size::format_iec, timefmt::rfc3339};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::{
    io::IsTerminal,
    time::{Duration, Instant, SystemTime},
};

/// How often bars are redrawn.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// Bars for at most this many agents (the largest).
pub const MAX_BARS: usize = 20;

/// The view.
pub enum Screen {
    /// A terminal.
    Bars { multi: MultiProgress, fleet: ProgressBar, agents: Vec<ProgressBar>, last: Option<Instant> },
    /// A pipe or file.
    Lines { every: Duration, last: Option<Instant> },
}

impl Screen {
    /// Bars on a terminal, lines elsewhere.
    pub fn new(every: Duration) -> Screen {
        if !std::io::stdout().is_terminal() {
            return Screen::Lines { every, last: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let fleet = multi.add(ProgressBar::new(1).with_style(style("{prefix:>14} [{bar:40.cyan/blue}] {msg}")));
        fleet.set_prefix("fleet");
        Screen::Bars { multi, fleet, agents: Vec::new(), last: None }
    }

    /// Whether the view wants a new sample: bars five times a second, lines once per interval.
    pub fn due(&self) -> bool {
        match self {
            Screen::Bars { last, .. } => last.is_none_or(|t| t.elapsed() >= BAR_REFRESH),
            Screen::Lines { every, last } => last.is_none_or(|t| t.elapsed() >= *every),
        }
    }

    /// Shows one sample.
    pub fn draw(&mut self, budget: &Budget, agents: &[Light], spawn: u8, kill: u8, auto_kill: bool) {
        // The sampler returns them largest first.
        let sorted: Vec<&Light> = agents.iter().collect();
        let guard = if auto_kill { "auto-kill on" } else { "watching" };
        let summary = format!(
            "{:.1} % ({} of {}) | spawn stops {spawn} %, kill {kill} % | {} agents | {guard}",
            budget.percent(),
            format_iec(budget.used),
            format_iec(budget.total),
            agents.len()
        );
        match self {
            Screen::Bars { multi, fleet, agents: bars, last } => {
                *last = Some(Instant::now());
                fleet.set_length(budget.total.max(1));
                fleet.set_position(budget.used);
                fleet.set_message(summary);
                let shown = sorted.len().min(MAX_BARS);
                while bars.len() < shown {
                    bars.push(
                        multi.add(ProgressBar::new(1).with_style(style("{prefix:>14} [{bar:40.green/white}] {msg}"))),
                    );
                }
                while bars.len() > shown {
                    if let Some(bar) = bars.pop() {
                        bar.finish_and_clear();
                        multi.remove(&bar);
                    }
                }
                for (bar, a) in bars.iter().zip(&sorted) {
                    let max = a.max.unwrap_or(budget.total);
                    bar.set_prefix(a.id.clone());
                    bar.set_length(max.max(1));
                    bar.set_position(a.current.min(max));
                    bar.set_message(format!("{} of {}", format_iec(a.current), format_iec(max)));
                }
            }
            Screen::Lines { last, .. } => {
                *last = Some(Instant::now());
                let top: Vec<String> =
                    sorted.iter().take(5).map(|a| format!("{} {}", a.id, format_iec(a.current))).collect();
                // Like the bars' lines: a stdout that cannot be written must not stop the guard.
                let _ = crate::out::outln!("{} fleet {summary}; top: {}", rfc3339(SystemTime::now()), top.join(", "));
            }
        }
    }

    /// An action line (kills), above the bars on a terminal.
    pub fn say(&self, line: &str) {
        let stamped = format!("{} {line}", rfc3339(SystemTime::now()));
        match self {
            Screen::Bars { multi, .. } => {
                let _ = multi.println(stamped);
            }
            Screen::Lines { .. } => {
                let _ = crate::out::outln!("{stamped}");
            }
        }
    }

    /// Leaves the terminal clean.
    pub fn finish(&self) {
        if let Screen::Bars { multi, .. } = self {
            let _ = multi.clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}
