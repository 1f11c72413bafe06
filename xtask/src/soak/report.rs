//! The invariants table (invariant | checked | violations | example) and the run's totals.

use super::{ledger::Shared, world::World};
use std::collections::BTreeSet;

pub struct Row {
    pub name: &'static str,
    pub checked: u64,
    /// One key per distinct violation, so a checkpoint that sees the same one again does
    /// not count it twice.
    seen: BTreeSet<String>,
    example: Option<String>,
}

pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    pub fn new(names: &[&'static str]) -> Table {
        Table {
            rows: names.iter().map(|&name| Row { name, checked: 0, seen: BTreeSet::new(), example: None }).collect(),
        }
    }

    fn row(&mut self, name: &str) -> &mut Row {
        let at = self.rows.iter().position(|r| r.name == name).unwrap_or(0);
        &mut self.rows[at]
    }

    /// One check of invariant `name`; when `ok` is false, a violation known by `key`,
    /// described by `example` (built only then).
    pub fn check(&mut self, name: &str, ok: bool, key: impl FnOnce() -> String, example: impl FnOnce() -> String) {
        let row = self.row(name);
        row.checked += 1;
        if !ok && row.seen.insert(key()) {
            let text = example();
            println!("soak: VIOLATION [{name}] {text}");
            row.example.get_or_insert(text);
        }
    }

    /// Sets a row's count of checks where one check covers many (the use samples).
    pub fn set_checked(&mut self, name: &str, checked: u64) {
        self.row(name).checked = checked;
    }

    pub fn violations(&self) -> usize {
        self.rows.iter().map(|r| r.seen.len()).sum()
    }

    pub fn print(&self, title: &str) {
        println!("\n{title}\n| invariant | checked | violations | example |\n|---|---|---|---|");
        for r in &self.rows {
            let example = r.example.as_deref().unwrap_or("");
            let example = if example.chars().count() > 160 {
                format!("{}…", example.chars().take(160).collect::<String>())
            } else {
                example.to_string()
            };
            println!("| {} | {} | {} | {} |", r.name, r.checked, r.seen.len(), example.replace('|', "/"));
        }
    }
}

/// Agents, spawns, kills by kind, faults by kind, OOM and guard kills.
pub fn totals(shared: &Shared, world: &World) {
    let events: Vec<serde_json::Value> = std::fs::read_to_string(world.journal())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let exits = |state: &str| events.iter().filter(|e| e["event"] == "exit" && e["state"] == state).count();
    let killed_by = |by: &str| events.iter().filter(|e| e["event"] == "exit" && e["killed_by"] == by).count();
    let book = shared.book();
    let u = &book.usage;
    println!("\ntotals");
    for (what, n) in &book.counts {
        println!("  {what}: {n}");
    }
    println!("  commands run: {}", book.commands);
    println!(
        "  ends in the journal: {} exited, {} failed, {} timed-out, {} oom-killed, {} killed (user {}, relief {}, guard {})",
        exits("exited"),
        exits("failed"),
        exits("timed-out"),
        exits("oom-killed"),
        exits("killed"),
        killed_by("user"),
        killed_by("relief"),
        killed_by("watch"),
    );
    let relief_by = |by: &str| events.iter().filter(|e| e["event"] == "relief_kill" && e["by"] == by).count();
    println!(
        "  oom_kill events: {}; relief_kill events: relief {}, guard {}",
        events.iter().filter(|e| e["event"] == "oom_kill").count(),
        relief_by("relief"),
        relief_by("watch")
    );
    println!(
        "  fleet use: max {:.1} %, longest at or above the kill threshold {:.2} s ({} samples)",
        u.max_percent,
        u.longest_above.as_secs_f64(),
        u.samples
    );
}
