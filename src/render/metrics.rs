//! Prometheus text exposition (format 0.0.4) for the host and each agent, so existing
//! monitoring can scrape every node of a fleet (node_exporter's textfile collector reads
//! the file `watch --metrics-file` rewrites).

use crate::agent::sample::status::{AgentStatus, StatusReport};
use fleet_core::{cgroup::PressureTotals, event::Kind, journal_counts::JournalCounts, state::AgentState};
use std::{collections::BTreeMap, fmt::Write};

/// What the fleet did over time, beside the report's snapshot: the journal's counts and the
/// host's stall totals.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// The event journal, counted.
    pub journal: JournalCounts,
    /// Host memory PSI `total=`, if the kernel has PSI.
    pub pressure: Option<PressureTotals>,
}

/// Renders the report. Every family has HELP and TYPE; units are base units (bytes,
/// seconds) and ratios are 0-1, as Prometheus conventions ask.
pub fn render(report: &StatusReport, counters: &FleetCounters) -> String {
    let mut out = String::new();
    let h = &report.host;
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge(
        "fleet_memory_budget_bytes",
        "The fleet's memory budget: the fleet root's memory limit, or MemTotal.",
        h.budget_bytes as f64,
    );
    gauge("fleet_memory_used_bytes", "Fleet memory in use: budget minus available.", h.used_bytes as f64);
    gauge("fleet_memory_used_ratio", "Fleet memory in use as a share of the budget.", h.used_percent / 100.0);
    gauge(
        "fleet_spawn_threshold_ratio",
        "Spawns are refused at or above this share of the budget.",
        f64::from(h.spawn_threshold) / 100.0,
    );
    gauge(
        "fleet_kill_threshold_ratio",
        "The watcher kills at or above this share of the budget.",
        f64::from(h.kill_threshold) / 100.0,
    );
    gauge("fleet_swap_used_bytes", "Host swap in use.", h.swap_used_bytes as f64);
    if let Some(p) = h.pressure_some_avg10 {
        gauge(
            "fleet_memory_pressure_some_ratio",
            "Host memory PSI some avg10: share of time some task waited on memory.",
            p / 100.0,
        );
    }
    if let Some(p) = h.pressure_full_avg10 {
        gauge(
            "fleet_memory_pressure_full_ratio",
            "Host memory PSI full avg10: share of time all tasks waited on memory.",
            p / 100.0,
        );
    }

    render_counters(&mut out, counters);

    family(&mut out, "fleet_agents", "gauge", "Agents by state.");
    for s in AgentState::ALL {
        let n = h.agents_by_state.get(&s).copied().unwrap_or(0);
        let _ = writeln!(out, "fleet_agents{{state=\"{s}\"}} {n}");
    }

    type Field = fn(&AgentStatus) -> Option<f64>;
    let per_agent: [(&str, &str, &str, Field); 8] = [
        ("fleet_agent_memory_bytes", "gauge", "Memory charged to the agent's cgroup.", |a| {
            a.memory_current_bytes.map(|v| v as f64)
        }),
        ("fleet_agent_memory_max_bytes", "gauge", "The agent's memory limit.", |a| {
            a.memory_max_bytes.map(|v| v as f64)
        }),
        (
            "fleet_agent_memory_reserve_bytes",
            "gauge",
            "What admission counts the agent for while it uses less (--memory-reserve).",
            |a| a.memory_reserve_bytes.map(|v| v as f64),
        ),
        ("fleet_agent_memory_peak_bytes", "gauge", "The most memory the agent's cgroup used.", |a| {
            a.memory_peak_bytes.map(|v| v as f64)
        }),
        ("fleet_agent_tasks", "gauge", "Tasks (processes and threads) in the agent's cgroup.", |a| {
            a.pids_current.map(|v| v as f64)
        }),
        ("fleet_agent_uptime_seconds", "gauge", "Seconds since the agent's current run started.", |a| {
            a.uptime_seconds.map(|v| v as f64)
        }),
        ("fleet_agent_oom_kills_total", "counter", "OOM kills in the agent's cgroup over its life.", |a| {
            Some(a.oom_kills as f64)
        }),
        ("fleet_agent_restarts_total", "counter", "Restarts under --restart on-failure.", |a| {
            Some(f64::from(a.restarts))
        }),
    ];
    for (name, kind, help, value) in per_agent {
        family(&mut out, name, kind, help);
        for a in &report.agents {
            if let Some(v) = value(a) {
                let _ = writeln!(out, "{name}{{{}}} {v}", agent_labels(a));
            }
        }
    }
    family(&mut out, "fleet_agent_info", "gauge", "Always 1; labels carry the agent's state.");
    for a in &report.agents {
        let _ = writeln!(out, "fleet_agent_info{{{},state=\"{}\"}} 1", agent_labels(a), a.state);
    }
    out
}

/// The labels of an agent's series: `id`, and `labels` with its `spawn --label`s as
/// `key=value,…` (sorted by key) when it has any. One label rather than one per key: label
/// keys may hold '.' and '-', which Prometheus label names may not, and a selector's
/// `key=value` reads the same in a query (`labels=~".*batch=42.*"`).
fn agent_labels(a: &AgentStatus) -> String {
    let mut text = format!("id=\"{}\"", escape(&a.id));
    if !a.labels.is_empty() {
        let pairs: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(text, ",labels=\"{}\"", escape(&pairs.join(",")));
    }
    text
}

/// The journal's kill causes as the `by` label: the watcher is the guard, `user` an operator.
fn killer_label(killed_by: &str) -> &str {
    match killed_by {
        "watch" => "guard",
        "user" => "operator",
        other => other,
    }
}

/// Fleet-level counters. Label values an alert names exist from the start at 0, so the
/// first increase is a change Prometheus can see, not a series appearing.
fn render_counters(out: &mut String, c: &FleetCounters) {
    if let Some(p) = c.pressure {
        for (kind, us) in [("some", p.some_us), ("full", p.full_us)] {
            let name = format!("fleet_memory_pressure_{kind}_seconds_total");
            let what = if kind == "some" { "some task" } else { "every task" };
            family(
                out,
                &name,
                "counter",
                &format!("Host memory PSI {kind} total: seconds in which {what} waited on memory."),
            );
            let _ = writeln!(out, "{name} {}", us as f64 / 1e6);
        }
    }
    let j = &c.journal;
    if let Some(start) = j.first_ts.as_deref().and_then(fleet_core::timefmt::parse_rfc3339) {
        family(
            out,
            "fleet_journal_start_time_seconds",
            "gauge",
            "Unix time of the event journal's first line: the fleet counters count from there.",
        );
        let _ = writeln!(out, "fleet_journal_start_time_seconds {}", fleet_core::timefmt::unix_secs(start));
    }
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    };
    fn labelled<K: AsRef<str>>(out: &mut String, name: &str, help: &str, label: &str, values: &BTreeMap<K, u64>) {
        family(out, name, "counter", help);
        for (value, n) in values {
            let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(value.as_ref()));
        }
    }
    // Reasons are whatever admission writes; each appears with its first refusal.
    let refused = &j.refusals_by_reason;
    labelled(out, "fleet_spawns_refused_total", "Spawns refused at admission, by reason.", "reason", refused);
    counter(out, "fleet_oom_kills_total", "Agent runs ended by an OOM kill (oom_kill events).", j.event(Kind::OomKill));
    let kills = from_zero(["guard", "operator", "relief", "timeout"], &j.exits_by_killer, killer_label);
    labelled(out, "fleet_kills_total", "Agents killed, by who killed them (guard = watch --auto-kill).", "by", &kills);
    counter(
        out,
        "fleet_supervisor_deaths_total",
        "Supervisors found dead while their agent's run had not ended.",
        j.event(Kind::SupervisorDied),
    );
    let ends: Vec<&str> = AgentState::ALL.into_iter().filter(|s| s.is_terminal()).map(AgentState::name).collect();
    let exits = from_zero(ends, &j.exits_by_state, std::convert::identity);
    labelled(out, "fleet_exits_total", "Agents that ended for good, by final state.", "state", &exits);
    counter(
        out,
        "fleet_journal_unreadable_lines_total",
        "Journal lines that could not be counted (torn or not JSON).",
        j.unreadable_lines,
    );
}

/// `counts` under the labels `label` gives them, with every one of `zeros` present.
fn from_zero<'a>(
    zeros: impl IntoIterator<Item = &'a str>,
    counts: &'a BTreeMap<String, u64>,
    label: impl Fn(&'a str) -> &'a str,
) -> BTreeMap<&'a str, u64> {
    let mut out: BTreeMap<&str, u64> = zeros.into_iter().map(|k| (k, 0)).collect();
    for (key, n) in counts {
        *out.entry(label(key)).or_insert(0) += n;
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_name_the_guard_and_start_at_zero() {
        let mut journal = JournalCounts::default();
        let lines = [
            r#"{"ts":"2026-01-01T00:00:00.500Z","event":"exit","id":"a","state":"killed","killed_by":"watch"}"#,
            r#"{"ts":"2026-01-01T00:00:01Z","event":"exit","id":"b","state":"killed","killed_by":"user"}"#,
            r#"{"ts":"2026-01-01T00:00:02Z","event":"exit","id":"c","state":"killed","killed_by":"gc"}"#,
            r#"{"ts":"2026-01-01T00:00:03Z","event":"spawn_refused","id":"d","reason":"memory"}"#,
            r#"{"ts":"2026-01-01T00:00:04Z","event":"supervisor_died","id":"e"}"#,
        ];
        journal.add_lines(lines.join("\n").as_bytes());
        let pressure = Some(PressureTotals { some_us: 2_500_000, full_us: 1 });
        let mut out = String::new();
        render_counters(&mut out, &FleetCounters { journal, pressure });
        for want in [
            "fleet_memory_pressure_some_seconds_total 2.5\n",
            "fleet_memory_pressure_full_seconds_total 0.000001\n",
            "fleet_journal_start_time_seconds 1767225600.5\n",
            "fleet_spawns_refused_total{reason=\"memory\"} 1\n",
            "fleet_oom_kills_total 0\n",
            "fleet_kills_total{by=\"guard\"} 1\n",
            "fleet_kills_total{by=\"operator\"} 1\n",
            "fleet_kills_total{by=\"relief\"} 0\n",
            "fleet_kills_total{by=\"gc\"} 1\n",
            "fleet_supervisor_deaths_total 1\n",
            "fleet_exits_total{state=\"killed\"} 3\n",
            "fleet_exits_total{state=\"oom-killed\"} 0\n",
            "# TYPE fleet_exits_total counter\n",
        ] {
            assert!(out.contains(want), "no {want:?} in:\n{out}");
        }
        assert!(!out.contains("state=\"running\""), "only ends are exits:\n{out}");
    }

    #[test]
    fn the_report_becomes_gauges_per_host_state_and_agent() {
        use crate::render::fixtures::{self, MIB};
        let mut odd = fixtures::agent("we\"ird", AgentState::Exited);
        odd.restarts = 1;
        let report = StatusReport {
            schema: 1,
            host: fixtures::host(),
            agents: vec![fixtures::running("web"), odd],
            bad_records: vec![],
        };
        let out = render(&report, &FleetCounters::default());
        for want in [
            "# HELP fleet_memory_budget_bytes The fleet's memory budget: the fleet root's memory limit, or MemTotal.\n\
             # TYPE fleet_memory_budget_bytes gauge\nfleet_memory_budget_bytes 4294967296\n",
            "fleet_memory_used_ratio 0.25\n",
            "fleet_spawn_threshold_ratio 0.85\n",
            "fleet_memory_pressure_some_ratio 0.015\n",
            "fleet_agents{state=\"running\"} 1\n",
            "fleet_agents{state=\"oom-killed\"} 0\n",
            &format!("fleet_agent_memory_bytes{{id=\"web\"}} {}\n", 64 * MIB),
            "fleet_agent_tasks{id=\"web\"} 3\n",
            "fleet_agent_uptime_seconds{id=\"web\"} 125\n",
            "fleet_agent_oom_kills_total{id=\"web\"} 1\n",
            "# TYPE fleet_agent_restarts_total counter\n",
            "fleet_agent_restarts_total{id=\"we\\\"ird\"} 1\n",
            "fleet_agent_info{id=\"we\\\"ird\",state=\"exited\"} 1\n",
        ] {
            assert!(out.contains(want), "no {want:?} in:\n{out}");
        }
        // Labels ride on every per-agent series of an agent that has them, and only there.
        let mut batch = fixtures::running("b1");
        batch.labels = BTreeMap::from([("batch".into(), "42".into()), ("team".into(), "a.b".into())]);
        let labelled = render(&StatusReport { agents: vec![batch], ..report }, &FleetCounters::default());
        for want in [
            "fleet_agent_tasks{id=\"b1\",labels=\"batch=42,team=a.b\"} 3\n",
            "fleet_agent_info{id=\"b1\",labels=\"batch=42,team=a.b\",state=\"running\"} 1\n",
        ] {
            assert!(labelled.contains(want), "no {want:?} in:\n{labelled}");
        }
        assert!(!out.contains("labels="), "{out}");
        // What was not measured is left out, not written as zero; CPU is not exported.
        assert!(!out.contains("fleet_agent_memory_bytes{id=\"we\\\""), "{out}");
        assert!(!out.contains("cpu"), "{out}");
        // Without PSI counters, no stall totals.
        assert!(!out.contains("seconds_total"), "{out}");
    }
}
