//! The operator's view of 50 agents: `status` and `memory` one row per agent, fitted to the
//! terminal (80 and 120 columns, through a real pseudo-terminal) or to `COLUMNS`, plain in a
//! pipe; `watch` at 120x40 with its header, "+N more" and the warning when no guard runs;
//! and what `status` keeps of an agent the OOM killer ended.

use crate::util::{TestFleet, pty::Pty};
use serde_json::Value;
use std::time::Duration;

const AGENTS: usize = 50;

/// Lines that are agent rows: they start with an id of this test (`a1`…`a50`).
fn rows(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.split_whitespace().next().is_some_and(is_id)).collect()
}

fn is_id(word: &str) -> bool {
    word.strip_prefix('a').and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| (1..=AGENTS).contains(&n))
}

fn no_box_drawing(text: &str) {
    assert!(!text.contains(['│', '─', '┌', '╞', '└']), "no box drawing:\n{text}");
}

/// A fleet of [`AGENTS`] sleepers `a1`…`a50` in slots `ws-001`…, of which `a7` was killed.
fn fifty(test: &str) -> Option<TestFleet> {
    let f = TestFleet::new(test)?;
    f.small_start_reserve();
    f.set_budget(512 << 20);
    for n in 1..=AGENTS {
        std::fs::create_dir_all(f.roots.join(format!("ws/ws-{n:03}"))).expect("slot");
        f.run(&["spawn", &format!("a{n}"), &format!("ws-{n:03}"), "--", "sleep", "600"]).code(0);
    }
    f.run(&["kill", "a7"]).code(0);
    Some(f)
}

#[test]
fn fifty_agents_get_one_row_each_fitted_to_the_terminal() {
    let Some(f) = fifty("tables50") else { return };

    for (command, live) in [("status", AGENTS), ("memory", AGENTS - 1)] {
        for cols in [80u16, 120] {
            let Some(pty) = Pty::open("tables50", 40, cols) else { return f.finish() };
            let (code, text) = pty.run(&mut f.cmd(&[command]));
            assert_eq!(code, Some(0), "{command} at {cols}:\n{text}");
            let too_long: Vec<&str> = text.lines().filter(|l| l.chars().count() > usize::from(cols)).collect();
            assert!(
                too_long.is_empty(),
                "{command} at {cols} columns: lines wrap:\n{}\n---\n{text}",
                too_long.join("\n")
            );
            let rows = rows(&text);
            assert_eq!(rows.len(), live, "{command} at {cols}: one line per agent:\n{text}");
            let at = |id: &str| rows.iter().position(|r| r.split_whitespace().next() == Some(id));
            if command == "status" {
                assert!(at("a2") < at("a10") && at("a9") < at("a10"), "natural order:\n{text}");
                assert!(rows.iter().all(|r| r.contains("running") || r.contains("killed")), "states whole:\n{text}");
            }
        }
    }

    f.finish();
}

#[test]
fn tables_into_a_pipe_are_plain_sorted_naturally_and_take_columns_and_no_headers() {
    let Some(f) = fifty("tablepipe") else { return };
    // The workspace in one form: the slot's name, running or ended.
    let status = f.run(&["status"]).code(0).stdout.clone();
    no_box_drawing(&status);
    let row = |id: &str| rows(&status).into_iter().find(|r| r.split_whitespace().next() == Some(id)).expect("a row");
    assert!(row("a8").contains("ws-008") && row("a8").contains("running"), "{}", row("a8"));
    assert!(row("a7").contains("ws-007") && !row("a7").contains("/ws-007"), "ended, same form: {}", row("a7"));
    assert_eq!(rows(&status).len(), AGENTS, "a pipe without COLUMNS: one line per agent:\n{status}");
    let narrow = f.cmd(&["status"]).env("COLUMNS", "80").output().expect("status");
    let narrow = String::from_utf8_lossy(&narrow.stdout);
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "COLUMNS=80 honoured in a pipe:\n{narrow}");
    no_box_drawing(&f.run(&["memory"]).code(0).stdout);
    let wide = f.cmd(&["status", "-o", "wide"]).env("COLUMNS", "80").output().expect("status -o wide");
    let wide = String::from_utf8_lossy(&wide.stdout);
    for column in ["PID", "CPU", "DEADLINES", "MAX", "PORTS", "RESTARTS", "EXIT / CAUSE"] {
        assert!(wide.contains(column), "-o wide has {column} whatever the width:\n{wide}");
    }
    let bare = f.run(&["status", "--no-headers"]).code(0).stdout.clone();
    assert_eq!(bare.lines().count(), AGENTS, "rows only:\n{bare}");
    assert!(bare.starts_with("a1 ") && bare.lines().nth(1).is_some_and(|l| l.starts_with("a2 ")), "{bare}");
    let memory = f.run(&["memory", "--sort", "id", "--no-headers"]).code(0).stdout.clone();
    assert_eq!(memory.lines().count(), AGENTS - 1, "{memory}");
    assert!(memory.lines().nth(1).is_some_and(|l| l.starts_with("a2 ")), "natural order:\n{memory}");

    f.finish();
}

#[test]
fn watch_at_120_by_40_has_a_one_line_header_the_time_a_count_of_the_rest_and_a_warning() {
    let Some(f) = fifty("watch50") else { return };
    // Above a kill threshold of 2 % with no guard: 49 agents and their
    // supervisors use well over the 1.3 MiB that is of a 64 MiB budget.
    f.set_budget(64 << 20);
    f.set_config("[agent]\nstart_reserve = \"1M\"\n[thresholds]\nspawn = 1\nkill = 2\n");
    let Some(mut pty) = Pty::open("tables50", 40, 120) else { return f.finish() };
    let child = pty.spawn(&mut f.cmd(&["watch", "--interval", "200ms"]));
    // Every row the terminal has goes to a bar, but for the header, gauge, guard line, the
    // count and one spare: 35 of 40.
    let hidden = format!("+{} more", AGENTS - 1 - 35);
    let screen = pty.read_until(Duration::from_secs(60), |s| s.contains(&hidden) && s.contains("WARNING"));
    crate::watch::interrupt(&child);
    assert_eq!(pty.wait_draining(child), Some(130));
    assert!(screen.contains(&hidden), "the agents that do not fit are counted:\n{screen}");
    // Whole rows of the 120-column screen: a line that wrapped would be cut across two.
    let rows = crate::util::pty::screen_rows(&screen, 120);
    let warning = rows.iter().rev().find(|l| l.contains("WARNING")).expect("a warning line");
    assert!(warning.contains("kill threshold 2 %") && warning.contains("--auto-kill`"), "one whole line: {warning}");
    let header = rows.iter().rev().find(|l| l.contains("UTC  fleet")).expect("the header");
    assert!(header.contains("kill 2 %  49 agents"), "one whole line: {header}");
    let clock = header.split_whitespace().next().unwrap_or("");
    assert!(clock.len() == 8 && clock.chars().filter(|c| *c == ':').count() == 2, "the time: {header}");
    f.finish();
}

#[test]
fn status_after_an_oom_kill_keeps_the_peak_and_the_run_time() {
    let Some(f) = TestFleet::new("oompeak") else { return };
    f.set_budget(512 << 20);
    let hog = crate::util::hog_script(96, "sleep 600");
    f.run(&["spawn", "o1", "ws-001", "--memory-max", "48M", "--memory-high", "40M", "--", "sh", "-c", &hog]).code(0);
    let agent = f.wait_state("o1", &["oom-killed"], Duration::from_secs(120));
    let peak = agent["memory_peak_bytes"].as_u64().unwrap_or(0);
    assert!(peak >= 32 << 20, "the final peak is kept: {agent}");
    assert!(agent["ran_seconds"].is_u64(), "how long it ran: {agent}");
    let dirs = fleet_core::paths::Dirs { state: f.state.clone(), log: f.tmp.path().join("log") };
    let path = dirs.state_path(&"o1".parse().expect("id"));
    let record: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the record")).expect("json");
    assert_eq!(record["final_peak_bytes"].as_u64(), Some(peak), "{record}");
    let table = f.run(&["status", "o1"]).code(0).stdout.clone();
    let row = table.lines().find(|l| l.starts_with("o1 ")).expect("a row");
    assert!(row.contains(&fleet_core::size::format_iec(peak)), "the peak in the table: {row}");
    f.finish();
}
