//! The scale run: N agents spawned by 16 parallel callers, then relief and `kill --all`
//! over all of them, with every record accounted for: zero failures, zero duplicates, one
//! spawn and one exit event per agent. A failed check fails the benchmark.

use crate::bench::{Env, ms};
use anyhow::{Result, ensure};
use fleet_core::cgroup::Fleet;
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

/// Parallel callers of `spawn`, as a fleet controller fanning out would be.
pub const CALLERS: usize = 16;

/// Spawns `agents` sleeping agents from [`CALLERS`] threads; returns the table row.
pub fn up(env: &Env, fleet: &Fleet, agents: usize) -> Result<String> {
    let failures = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CALLERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= agents {
                        break;
                    }
                    // As agents run in production, as an unprivileged user: one running as
                    // root could rewrite its own limits, so `status` reads those from the kernel.
                    let ok = env
                        .fleetctl(&["spawn", &format!("a{i:03}"), "ws", "--user", "65534", "--", "sleep", "1000"])
                        .status()
                        .is_ok_and(|s| s.success());
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let took = start.elapsed();
    let failures = failures.load(Ordering::SeqCst);
    let status = json(env, &["status", "--json"])?;
    let running: Vec<&Value> =
        status["agents"].as_array().map(|a| a.iter().filter(|a| a["state"] == "running").collect()).unwrap_or_default();
    let pids: BTreeSet<i64> = running.iter().filter_map(|a| a["pid"].as_i64()).collect();
    let cgroups = fleet.agent_names()?.len();
    ensure!(failures == 0, "{failures} of {agents} spawns failed");
    ensure!(
        running.len() == agents && pids.len() == agents && cgroups == agents,
        "{} running, {} distinct pids, {cgroups} cgroups for {agents} agents",
        running.len(),
        pids.len()
    );
    Ok(format!(
        "| {agents} agents up, {CALLERS} parallel callers | {} ({} running, 0 failures, 0 duplicate pids) | | |",
        ms(took),
        running.len()
    ))
}

/// Relief over all agents (a fleet budget set so the fleet stands at 50 %, target 45 %),
/// then `kill --all --force`, then the records: every agent ended once, by whoever
/// reported it. Returns the table rows.
pub fn relief_and_down(env: &Env, fleet: &Fleet, agents: usize) -> Result<Vec<String>> {
    // The fleet's own use (the budget measure would take the host's while the fleet root
    // has no limit).
    let (budget_file, usage_file) = match &fleet.root.memory_v1 {
        Some(dir) => (dir.join("memory.limit_in_bytes"), dir.join("memory.usage_in_bytes")),
        None => (fleet.root.unified.join("memory.max"), fleet.root.unified.join("memory.current")),
    };
    let used: u64 = std::fs::read_to_string(&usage_file)?.trim().parse()?;
    std::fs::write(&budget_file, (used * 2).to_string())?;
    let start = Instant::now();
    let relief = env.fleetctl(&["relief", "45", "--grace", "0s"]).stdout(std::process::Stdio::piped()).output()?;
    let relief_took = start.elapsed();
    let reported: Vec<String> = String::from_utf8_lossy(&relief.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("killed ").and_then(|r| r.split_whitespace().next()).map(str::to_string))
        .collect();
    ensure!(relief.status.success(), "relief failed: {}", String::from_utf8_lossy(&relief.stderr));
    std::fs::write(&budget_file, "-1").or_else(|_| std::fs::write(&budget_file, "max"))?;

    let start = Instant::now();
    let down = env.fleetctl(&["kill", "--all", "--force"]).output()?;
    let down_took = start.elapsed();
    ensure!(down.status.success(), "kill --all --force: {}", String::from_utf8_lossy(&down.stderr));
    let left = fleet.agent_names()?.len();
    ensure!(left == 0, "{left} agent cgroups left after kill --all");

    // Every record accounted for: all ended, killed by relief exactly for the ones relief
    // reported, one spawn and one exit event each.
    let status = json(env, &["status", "--json"])?;
    // The scale run's own agents (the latency rounds before it left records of their own).
    let records: Vec<Value> = status["agents"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["id"].as_str().is_some_and(is_scale_id)).cloned().collect())
        .unwrap_or_default();
    ensure!(records.len() == agents, "{} records for {agents} agents", records.len());
    let by_relief: BTreeSet<&str> =
        records.iter().filter(|a| a["killed_by"] == "relief").filter_map(|a| a["id"].as_str()).collect();
    let reported_set: BTreeSet<&str> = reported.iter().map(String::as_str).collect();
    ensure!(reported.len() == reported_set.len(), "relief reported a kill twice");
    ensure!(by_relief == reported_set, "records say relief killed {by_relief:?}, relief reported {reported_set:?}");
    ensure!(records.iter().all(|a| a["state"] == "killed"), "a record is not `killed`");
    let journal = std::fs::read_to_string(env.tmp.join("log/events.jsonl"))?;
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in journal.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let key = (e["id"].as_str().unwrap_or("").to_string(), e["event"].as_str().unwrap_or("").to_string());
        *counts.entry(key).or_default() += 1;
    }
    for a in &records {
        let id = a["id"].as_str().unwrap_or("").to_string();
        for event in ["spawn", "exit"] {
            let n = counts.get(&(id.clone(), event.to_string())).copied().unwrap_or(0);
            ensure!(n == 1, "{id}: {n} {event} events");
        }
    }
    Ok(vec![
        format!(
            "| relief 45 % over {agents} agents (fleet at 50 %) | {} ({} killed, each reported once) | | |",
            ms(relief_took),
            reported.len()
        ),
        format!("| {agents} agents down, kill --all --force | {} (0 left, exit 0) | | |", ms(down_took)),
        format!("| records after the scale run | {agents} of {agents} ended once: 1 spawn + 1 exit event each | | |"),
    ])
}

/// `a000` … `a299`: the ids [`up`] gives.
fn is_scale_id(id: &str) -> bool {
    id.len() == 4 && id.starts_with('a') && id[1..].bytes().all(|b| b.is_ascii_digit())
}

fn json(env: &Env, args: &[&str]) -> Result<Value> {
    let out = env.fleetctl(args).stdout(std::process::Stdio::piped()).output()?;
    ensure!(out.status.success(), "fleetctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}
