//! Prometheus text exposition (format 0.0.4) for the host and each agent, so existing
//! monitoring can scrape every node of a fleet (node_exporter's textfile collector reads
//! the file `watch --metrics-file` rewrites).

use crate::render::status::StatusReport;
use fleet_core::state::AgentState;
use std::fmt::Write;

/// Renders the report. Every family has HELP and TYPE; units are base units (bytes,
/// seconds) and ratios are 0-1, as Prometheus conventions ask.
pub fn render(report: &StatusReport) -> String {
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

    family(&mut out, "fleet_agents", "gauge", "Agents by state.");
    for s in AgentState::ALL {
        let n = h.agents_by_state.get(&s).copied().unwrap_or(0);
        let _ = writeln!(out, "fleet_agents{{state=\"{s}\"}} {n}");
    }

    type Field = fn(&crate::render::status::AgentStatus) -> Option<f64>;
    let per_agent: [(&str, &str, &str, Field); 7] = [
        ("fleet_agent_memory_bytes", "gauge", "Memory charged to the agent's cgroup.", |a| {
            a.memory_current_bytes.map(|v| v as f64)
        }),
        ("fleet_agent_memory_max_bytes", "gauge", "The agent's memory limit.", |a| {
            a.memory_max_bytes.map(|v| v as f64)
        }),
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
                let _ = writeln!(out, "{name}{{id=\"{}\"}} {v}", escape(&a.id));
            }
        }
    }
    family(&mut out, "fleet_agent_info", "gauge", "Always 1; labels carry the agent's state.");
    for a in &report.agents {
        let _ = writeln!(out, "fleet_agent_info{{id=\"{}\",state=\"{}\"}} 1", escape(&a.id), a.state);
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
