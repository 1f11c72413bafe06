//! The invariants, checked against `status --json`, the journal (docs/events.md), the
//! cgroups, /proc/locks and the scratch root: at checkpoints (actors quiesced) and once at
//! the end, after the operator's `kill --all --force` and `gc`.

use super::{
    actors::{COMMAND_TIMEOUT, answer, parse_status},
    ledger::{Agent, Kind, Shared},
    report::Table,
    world::{Guard, World},
};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

/// The guard's default kill threshold (`thresholds.kill`, 95 %).
pub const KILL_THRESHOLD: f64 = 95.0;
/// How long fleet use may stay at or above the kill threshold. The guard samples at its
/// fastest there and kills at once (no grace); the rest is room for a loaded machine.
pub const GUARD_REACTION: Duration = Duration::from_secs(2);

const ENDED_ONCE: &str = "every run ended exactly once in the journal";
const ONE_CAUSE: &str = "every end has one cause";
const CHOSEN: &str = "no agent killed that no policy chose";
const PROTECTED: &str = "protected agents never chosen by relief/guard";
const USE: &str = "use above the kill threshold no longer than the guard's reaction (2 s)";
const GUARD_UP: &str = "the guard keeps guarding";
const RACES: &str = "racing spawns of one id: exactly one wins";
const ANSWERS: &str = "commands answer as documented (exit codes, no hang)";
const LEFT: &str = "nothing left behind (cgroups, processes, locks, leases, scratch)";

pub fn table() -> Table {
    Table::new(&[ENDED_ONCE, ONE_CAUSE, CHOSEN, PROTECTED, USE, GUARD_UP, RACES, ANSWERS, LEFT])
}

/// What the journal says about one id.
#[derive(Default)]
struct Story {
    runs: usize,
    exits: Vec<Value>,
    relief_kills: Vec<Value>,
}

fn stories(world: &World) -> BTreeMap<String, Story> {
    let text = std::fs::read_to_string(world.journal()).unwrap_or_default();
    let mut by_id: BTreeMap<String, Story> = BTreeMap::new();
    for event in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let story = by_id.entry(event["id"].as_str().unwrap_or_default().to_string()).or_default();
        match event["event"].as_str() {
            Some("spawn") => story.runs += 1,
            Some("exit") => story.exits.push(event),
            Some("relief_kill") => story.relief_kills.push(event),
            _ => {}
        }
    }
    by_id
}

fn terminal(state: Option<&str>) -> bool {
    matches!(state, Some("exited" | "failed" | "oom-killed" | "timed-out" | "killed" | "crash-loop"))
}

/// One round of checks. `last` is the end of the run: every run must have ended by then
/// and nothing may be left.
pub fn checkpoint(world: &World, shared: &Shared, table: &mut Table, guard: &mut Guard, last: bool) {
    let started = Instant::now();
    let out = world.exec(&["status", "--json"], None, COMMAND_TIMEOUT);
    answer(shared, &["status", "--json"], &out, &[0], started);
    let states: BTreeMap<String, String> = parse_status(&out.stdout)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (a["id"].as_str().unwrap_or_default().to_string(), a["state"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let mut journal = stories(world);
    // The journal is written before the record: a record that says ended has its event.
    // A gap may still be a supervisor between the two writes; look again once.
    let missing = |j: &BTreeMap<String, Story>| {
        j.iter().any(|(id, s)| s.exits.len() < s.runs && (last || terminal(states.get(id).map(String::as_str))))
    };
    if missing(&journal) {
        std::thread::sleep(Duration::from_secs(2));
        journal = stories(world);
    }
    let book = shared.book();
    // A relief SIGKILLed after its victim's supervisor recorded the end never writes that
    // victim's relief_kill event; the exit's `killed_by: relief` stands alone then.
    let relief_cut = book.counts.contains_key("fault: relief SIGKILLed after supervisor");
    for (id, story) in &journal {
        let agent = book.agents.get(id);
        let state = states.get(id).map(String::as_str);
        let ended = last || terminal(state);
        let ok = story.runs <= 1 && story.exits.len() <= story.runs && (!ended || story.exits.len() == story.runs);
        table.check(ENDED_ONCE, ok, || id.clone(), || describe(id, agent, state, story));
        // Extra ends of one run are the row above's finding; the causes row and the
        // policy row judge each run's first end.
        for exit in story.exits.iter().take(story.runs) {
            check_end(table, id, agent, exit, story, relief_cut, last);
        }
        for kill in &story.relief_kills {
            let protected = agent.is_some_and(|a| a.protected);
            table.check(
                PROTECTED,
                !protected,
                || format!("{id} relief_kill"),
                || format!("{id} was protected, yet chosen: {kill}"),
            );
        }
    }
    let u = &book.usage;
    let within = u.longest_above <= GUARD_REACTION;
    table.check(
        USE,
        within,
        || "use".into(),
        || {
            format!(
                "at or above {KILL_THRESHOLD} % for {:.2} s (max {:.1} %)",
                u.longest_above.as_secs_f64(),
                u.max_percent
            )
        },
    );
    table.set_checked(USE, u.samples);
    if last {
        // Admitted means its run started: the journal must know it.
        for (id, a) in book.agents.iter().filter(|(id, a)| a.admitted && !journal.contains_key(*id)) {
            table.check(
                ENDED_ONCE,
                false,
                || id.clone(),
                || format!("{id} ({:?}) was admitted but the journal has no run of it", a.kind),
            );
        }
    }
    if !last {
        let guard_exit = guard.exited();
        table.check(
            GUARD_UP,
            guard_exit.is_none(),
            || "guard".into(),
            || format!("the guard exited ({guard_exit:?}): {}", world.guard_err()),
        );
    }
    for race in &book.races {
        let wins = race.codes.iter().filter(|&&c| c == 0).count();
        let runs = journal.get(&race.id).map_or(0, |s| s.runs);
        let explained = race.codes.iter().all(|c| [0, 4, 75].contains(c) || (*c == 1 && !book.disk_full.is_empty()));
        let ok = wins <= 1 && runs == wins && explained && (wins == 1 || race.codes.iter().any(|&c| c != 4));
        table.check(
            RACES,
            ok,
            || race.id.clone(),
            || format!("{}: spawn codes {:?}, {runs} run(s) in the journal", race.id, race.codes),
        );
    }
    for (n, odd) in book.odd_answers.iter().enumerate() {
        table.check(ANSWERS, false, || n.to_string(), || odd.clone());
    }
    table.set_checked(ANSWERS, book.commands);
    drop(book);
    left_behind(world, table, &states, last);
}

fn describe(id: &str, agent: Option<&Agent>, state: Option<&str>, story: &Story) -> String {
    let what = agent.map_or("not the soak's".to_string(), |a| {
        let mut w = format!("{:?}", a.kind);
        for (on, note) in [
            (a.orphaned, "supervisor SIGKILLed"),
            (a.half, "spawn SIGKILLed"),
            (a.user_killed, "kill sent"),
            (a.protected, "protected"),
        ] {
            if on {
                w += &format!(", {note}");
            }
        }
        w
    });
    let causes: Vec<&str> = story.exits.iter().filter_map(|e| e["cause"].as_str()).collect();
    format!(
        "{id} ({what}): {} run(s), {} exit event(s) {causes:?}, status {}",
        story.runs,
        story.exits.len(),
        state.unwrap_or("no record")
    )
}

/// One end: one known state with a cause, and a policy (or the agent itself) that chose it.
fn check_end(
    table: &mut Table,
    id: &str,
    agent: Option<&Agent>,
    exit: &Value,
    story: &Story,
    relief_cut: bool,
    last: bool,
) {
    let state = exit["state"].as_str().unwrap_or("");
    let by = exit["killed_by"].as_str();
    let has_cause = exit["cause"].as_str().is_some_and(|c| !c.trim().is_empty());
    let one_cause = has_cause
        && match state {
            // `supervisor-signal`: a kill whose request could not be saved (a full state
            // disk) reaches the supervisor as a bare SIGTERM (src/agent/stop.rs).
            "killed" => matches!(by, Some("user" | "relief" | "watch" | "supervisor-signal")),
            "timed-out" => matches!(by, None | Some("timeout")),
            "exited" | "failed" | "oom-killed" => by.is_none(),
            _ => false,
        };
    let key = || format!("{id} {state}");
    table.check(ONE_CAUSE, one_cause, key, || format!("{id}: {exit}"));
    // A run that never started is the ENDED_ONCE row's finding, not a kill.
    let Some(a) = agent.filter(|a| !a.half) else { return };
    let relief_by = |who: &str| story.relief_kills.iter().any(|k| k["by"] == who);
    let chosen = match state {
        // The kernel's victim is the hog: the only agent ever near a limit.
        "oom-killed" => a.kind.is_hog(),
        "timed-out" => a.kind == Kind::TimesOut,
        "killed" => match by {
            Some("user") => a.user_killed,
            Some("relief") => relief_by("relief") || relief_cut,
            Some("watch") => relief_by("watch"),
            // Whoever sent it (an operator, relief, the guard) is on record elsewhere.
            Some("supervisor-signal") => a.user_killed || !story.relief_kills.is_empty() || relief_cut,
            _ => false,
        },
        // Its own failure, or an orphan's output meeting a closed pipe (its supervisor was
        // killed: that is the fault's doing, not an unchosen kill).
        "failed" => a.kind == Kind::Fails || a.orphaned,
        "exited" => !matches!(a.kind, Kind::Fails) && !a.kind.is_hog(),
        _ => false,
    };
    // relief and the guard journal their `relief_kill` after the victim's end (it carries
    // the memory freed, measured afterwards), so a checkpoint may see the end first: judged
    // again at the next one, and for good at the last.
    let evidence_to_come = state == "killed" && matches!(by, Some("relief" | "watch" | "supervisor-signal"));
    if !chosen && evidence_to_come && !last {
        return;
    }
    table.check(CHOSEN, chosen, key, || {
        format!(
            "{id} ({:?}{}) ended {state}: {}",
            a.kind,
            if a.protected { ", protected" } else { "" },
            exit["cause"].as_str().unwrap_or("no cause")
        )
    });
    if a.protected && matches!(by, Some("relief" | "watch")) {
        table.check(PROTECTED, false, key, || format!("{id} was protected, yet killed by {}", by.unwrap_or("")));
    } else if a.protected {
        table.check(PROTECTED, true, String::new, String::new);
    }
}

/// Mid-run: an ended agent keeps no process and no lock. At the end: no agent cgroup, no
/// process in the fleet's cgroups, no held lock or lease, no scratch dir.
fn left_behind(world: &World, table: &mut Table, states: &BTreeMap<String, String>, last: bool) {
    let held = fleet_core::lock::HeldLocks::read(Path::new("/proc"));
    let state_dir = world.state();
    for (id, state) in states.iter().filter(|(_, s)| last || terminal(Some(s))) {
        let procs = world.fleet.agents().child(id).procs().unwrap_or_default();
        table.check(
            LEFT,
            procs.is_empty(),
            || format!("{id} procs"),
            || format!("{id} ({state}) still has processes {procs:?}"),
        );
        let lock = state_dir.join(format!("agents/{id}/lock"));
        table.check(
            LEFT,
            !held.contains(&lock),
            || format!("{id} lock"),
            || format!("{id} ({state}): {} is still held", lock.display()),
        );
    }
    if !last {
        return;
    }
    let cgroups = world.fleet.agent_names().unwrap_or_default();
    table.check(LEFT, cgroups.is_empty(), || "cgroups".into(), || format!("agent cgroups left: {cgroups:?}"));
    let procs: Vec<i32> =
        [world.fleet.supervisors(), world.fleet.agents()].iter().flat_map(|c| c.procs().unwrap_or_default()).collect();
    table.check(LEFT, procs.is_empty(), || "procs".into(), || format!("processes left in the fleet: {procs:?}"));
    // Lease files (a pool's slots, the host's ports) live in the fleet's lock dir.
    let leases: Vec<_> = entries(&world.tmp.join("lock")).into_iter().filter(|p| held.contains(p)).collect();
    table.check(
        LEFT,
        leases.is_empty(),
        || "leases".into(),
        || format!("a workspace slot or port lease is still held: {leases:?}"),
    );
    // Scratch dirs are `<scratch root>/<fleet key>/<id>`: the fleet's own directory may stay.
    let scratch: Vec<String> = entries(&world.tmp.join("scratch"))
        .iter()
        .flat_map(|fleet| entries(fleet))
        .map(|p| p.display().to_string())
        .collect();
    table.check(LEFT, scratch.is_empty(), || "scratch".into(), || format!("scratch dirs left: {scratch:?}"));
}

/// The operator's end of the run: every agent still alive is killed (`kill --all --force`),
/// then `gc` records what no supervisor did; both must answer 0. Waits (up to 15 s) for
/// the supervisors to finish.
pub fn end_of_run(world: &World, shared: &Shared) {
    {
        let mut book = shared.book();
        let live: Vec<String> = book.live.iter().map(|l| l.id.clone()).collect();
        for id in live {
            if let Some(a) = book.agents.get_mut(&id) {
                a.user_killed = true;
            }
        }
    }
    // `live` is a second old: anything not yet ended may be killed by the operator now.
    let out = world.exec(&["status", "--json"], None, COMMAND_TIMEOUT);
    for live in super::actors::live_of(&parse_status(&out.stdout).unwrap_or_default()) {
        if let Some(a) = shared.book().agents.get_mut(&live.id) {
            a.user_killed = true;
        }
    }
    for args in [&["kill", "--all", "--force"][..], &["gc"][..]] {
        let started = Instant::now();
        let out = world.exec(args, None, COMMAND_TIMEOUT);
        answer(shared, args, &out, &[0], started);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while world.fleet.supervisors().populated().unwrap_or(false) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The paths in directory `dir` (none if it cannot be read).
fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect()
}
