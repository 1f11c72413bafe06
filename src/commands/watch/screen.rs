//! What `watch` shows: on a terminal, a one-line header with the time, a gauge for the fleet,
//! whether a guard runs (a warning when the fleet is at the kill threshold and none does), a
//! bar per agent that fits and "+N more" for the rest (indicatif), redrawn in place;
//! elsewhere, one timestamped line per interval and one per action, so it can run as a
//! service and its log reads top to bottom.

use crate::{agent::sample::Light, render::columns::cut};
use fleet_core::{meminfo::Budget, size::format_iec, timefmt::rfc3339};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant, SystemTime};

/// How often bars are redrawn.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// Agents sampled in detail for the log lines of a pipe or file (which name the top five).
const LINE_AGENTS: usize = 20;

/// The view.
pub enum Screen {
    /// A terminal: `rows` by `cols` when it says.
    Bars {
        multi: MultiProgress,
        lines: HeaderLines,
        agents: Vec<ProgressBar>,
        last: Option<Instant>,
        rows: usize,
        cols: usize,
    },
    /// A pipe or file: a sample every `every`, a status line every `print_every` (the
    /// journal under systemd takes a minute's, not a second's); kills always.
    Lines { every: Duration, last: Option<Instant>, print_every: Duration, printed: Option<Instant> },
}

/// The lines above and below the agents' bars on a terminal.
pub struct HeaderLines {
    /// The time, the fleet's use and thresholds, the agent count: one line that fits.
    header: ProgressBar,
    /// The fleet's gauge.
    fleet: ProgressBar,
    /// Whether a guard runs; a warning when the fleet is at the kill threshold and none does.
    guard: ProgressBar,
    /// "+N more" when agents do not fit.
    more: ProgressBar,
}

/// Lines that are not agents' bars: header, gauge, guard, "+N more", and one spare so
/// the terminal never scrolls.
const OTHER_LINES: usize = 5;

/// Width of the name before each bar.
const NAME: usize = 14;

/// The widest a bar gets.
const BAR_MAX: usize = 40;

impl Screen {
    /// Bars on a terminal, lines elsewhere: one per `print_every` at most.
    pub fn new(every: Duration, print_every: Duration) -> Screen {
        let Some((rows, cols)) = crate::terminal::size() else {
            return Screen::Lines { every, last: None, print_every: print_every.max(every), printed: None };
        };
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let text = || multi.add(ProgressBar::new(1).with_style(style("{msg}")));
        let header = text();
        let fleet = multi.add(ProgressBar::new(1).with_style(style(&bar_template(cols, "cyan/blue"))));
        fleet.set_prefix("fleet");
        let lines = HeaderLines { header, fleet, guard: text(), more: text() };
        Screen::Bars { multi, lines, agents: Vec::new(), last: None, rows, cols }
    }

    /// How many agents, the largest first, the view shows: a bar for each that fits the
    /// terminal's rows, or those the log lines name.
    pub fn room(&self) -> usize {
        match self {
            Screen::Bars { rows, .. } => rows.saturating_sub(OTHER_LINES).max(1),
            Screen::Lines { .. } => LINE_AGENTS,
        }
    }

    /// Whether the view wants a new sample: bars five times a second, lines once per interval.
    pub fn due(&self) -> bool {
        match self {
            Screen::Bars { last, .. } => last.is_none_or(|t| t.elapsed() >= BAR_REFRESH),
            Screen::Lines { every, last, .. } => last.is_none_or(|t| t.elapsed() >= *every),
        }
    }

    /// Shows one sample.
    pub fn draw(&mut self, budget: &Budget, agents: &[Light], spawn: u8, kill: u8, auto_kill: bool) {
        // The sampler returns them largest first.
        let sorted: Vec<&Light> = agents.iter().collect();
        let unguarded = !auto_kill && budget.percent() >= f64::from(kill);
        let guard = match (auto_kill, unguarded) {
            (true, _) => format!("guard: auto-kill on at {kill} %"),
            (false, true) => format!(
                "WARNING: fleet at {:.1} % >= kill threshold {kill} % and no guard runs: `fleetctl relief` or `watch --auto-kill`",
                budget.percent()
            ),
            (false, false) => format!("no guard: nothing is killed at {kill} % (watch --auto-kill guards)"),
        };
        match self {
            Screen::Bars { multi, lines, agents: bars, last, rows, cols } => {
                *last = Some(Instant::now());
                let now = rfc3339(SystemTime::now());
                let header = format!(
                    "{} UTC  fleet {:.1} % of {}  spawn stops {spawn} %, kill {kill} %  {} agents",
                    now.get(11..19).unwrap_or(&now),
                    budget.percent(),
                    format_iec(budget.total),
                    agents.len()
                );
                // A line as long as the terminal would wrap on some terminals: one short.
                let fit = |line: &str| cut(line, cols.saturating_sub(1));
                lines.header.set_message(fit(&header));
                lines.fleet.set_length(budget.total.max(1));
                lines.fleet.set_position(budget.used);
                lines.fleet.set_message(format!("{} of {}", format_iec(budget.used), format_iec(budget.total)));
                lines.guard.set_message(fit(&guard));
                let room = rows.saturating_sub(OTHER_LINES).max(1);
                let shown = sorted.len().min(room);
                let hidden = sorted.len() - shown;
                lines.more.set_message(if hidden > 0 { format!("+{hidden} more") } else { String::new() });
                while bars.len() < shown {
                    let bar = ProgressBar::new(1).with_style(style(&bar_template(*cols, "green/white")));
                    bars.push(multi.insert_before(&lines.more, bar));
                }
                while bars.len() > shown {
                    if let Some(bar) = bars.pop() {
                        bar.finish_and_clear();
                        multi.remove(&bar);
                    }
                }
                for (bar, a) in bars.iter().zip(&sorted) {
                    let max = a.max.unwrap_or(budget.total);
                    bar.set_prefix(cut(&a.id, NAME));
                    bar.set_length(max.max(1));
                    bar.set_position(a.current.min(max));
                    bar.set_message(format!("{} of {}", format_iec(a.current), format_iec(max)));
                }
            }
            Screen::Lines { last, print_every, printed, .. } => {
                *last = Some(Instant::now());
                if printed.is_some_and(|t| t.elapsed() < *print_every) {
                    return;
                }
                *printed = *last;
                let top: Vec<String> =
                    sorted.iter().take(5).map(|a| format!("{} {}", a.id, format_iec(a.current))).collect();
                let summary = format!(
                    "{:.1} % ({} of {}) | spawn stops {spawn} %, kill {kill} % | {} agents | {guard}",
                    budget.percent(),
                    format_iec(budget.used),
                    format_iec(budget.total),
                    agents.len()
                );
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

/// A bar line that fits `cols`: the name, the bar, and "953.0 MiB of 1000.0 MiB".
fn bar_template(cols: usize, colors: &str) -> String {
    let message = 24;
    let bar = cols.saturating_sub(NAME + 4 + message + 1).clamp(10, BAR_MAX);
    format!("{{prefix:>{NAME}}} [{{bar:{bar}.{colors}}}] {{msg}}")
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}
