//! The soak's actors, each a thread with its own seeded generator: spawners (some racing on
//! one id), one hog at a time, an operator (`kill`, `relief`, `gc`), the faults (`faults`),
//! a monitor reading `status --json`, and a sampler of the fleet's use every 100 ms.

use super::{
    faults,
    ledger::{Agent, Kind, Live, Race, Shared},
    rng::Rng,
    world::{Outcome, World},
};
use std::{
    sync::Barrier,
    thread::Scope,
    time::{Duration, Instant},
};

/// Every fleetctl call's bound: far above any documented wait (grace 1 s, settle 5 s).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a hog may take to end (stopped by the guard, the kernel or its own limit).
const HOG_DEADLINE: Duration = Duration::from_secs(120);
/// At most this many protected holders at once, so they alone never hold the fleet near
/// the kill threshold (3 × 96 MiB of the 768 MiB budget).
const PROTECTED_HOLDERS: usize = 3;
const SPAWNERS: u64 = 3;
/// The prefix of ids that several callers spawn at once.
const RACED: &str = "r";

fn racing(id: &str) -> bool {
    id.starts_with(RACED)
}

/// Starts every actor in `scope`; they run until `shared.stop`.
pub fn start<'s>(scope: &'s Scope<'s, '_>, world: &'s World, shared: &'s Shared, seed: u64) {
    let go = |stream: u64, f: fn(&World, &Shared, &mut Rng)| {
        scope.spawn(move || f(world, shared, &mut Rng::new(seed, stream)));
    };
    for stream in 1..=SPAWNERS {
        go(stream, spawner);
    }
    go(10, hogs);
    go(20, operator);
    go(30, faults::chaos);
    go(40, monitor);
    go(50, sampler);
}

/// Sleeps `low..=high` ms in short slices, returning false once the run stops.
pub fn nap(shared: &Shared, rng: &mut Rng, low: u64, high: u64) -> bool {
    let until = Instant::now() + Duration::from_millis(rng.range(low, high));
    while Instant::now() < until {
        if shared.stopping() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !shared.stopping()
}

/// Books a command's answer: anything but `ok` (or exit 1 while the state disk was full,
/// which is documented: one line, nothing half-made) is an odd answer.
pub fn answer(shared: &Shared, args: &[&str], out: &Outcome, ok: &[i32], started: Instant) {
    let mut book = shared.book();
    book.commands += 1;
    let full = out.code == 1 && book.disk_was_full(started);
    if out.timed_out || !(ok.contains(&out.code) || full) {
        book.odd_answers.push(out.describe(args));
    }
}

/// The spawn flags and shell command of a `kind` agent.
pub fn recipe(kind: Kind, rng: &mut Rng) -> (Vec<String>, String) {
    let grow = |bytes: u64, steps: u64, pause: &str| {
        format!(
            r#"i=0; while [ $i -lt {steps} ]; do eval "v$i=\$(head -c {bytes} /dev/zero | tr '\\0' x)"; i=$((i+1)); sleep {pause}; done; echo done; sleep 60; test -n "$v1""#
        )
    };
    let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect();
    match kind {
        Kind::Exits => (vec![], format!("sleep {}; exit 0", rng.range(2, 25))),
        Kind::Fails => (vec![], format!("sleep {}; echo failing; exit 3", rng.range(1, 10))),
        Kind::Tree => (vec![], "sleep 30 & sleep 30 & wait".into()),
        Kind::Stubborn => (vec![], format!("trap '' TERM; echo trapped; sleep {}", rng.range(20, 60))),
        Kind::Chatty => (
            vec![],
            format!("i=0; while [ $i -lt {} ]; do echo tick $i; i=$((i+1)); sleep 0.3; done", rng.range(60, 200)),
        ),
        Kind::TimesOut => {
            let hard = format!("{}s", rng.range(2, 5));
            // The soft timeout's SIGUSR1 is a request to wrap up: the agent notes it and
            // carries on, as a real one would, until the hard timeout.
            let script = "trap 'echo soft timeout' USR1; sleep 120".into();
            (flags(&["--soft-timeout", "1s", "--hard-timeout", &hard, "--kill-grace", "1s"]), script)
        }
        Kind::Holder => {
            let (mb, secs) = (rng.range(32, 96), rng.range(30, 90));
            (
                vec![],
                format!("x=$(head -c {} /dev/zero | tr '\\0' x); echo ready; sleep {secs}; test -n \"$x\"", mb << 20),
            )
        }
        Kind::SlowHog => (vec![], grow(4 << 20, 300, "0.1")),
        Kind::FastHog => (vec![], grow(32 << 20, 40, "0.05")),
        Kind::BurstHog => (vec![], "exec perl -e '$x = \"x\" x (1 << 30); sleep 60'".into()),
        Kind::LimitHog => (flags(&["--memory-max", "64M", "--memory-high", "64M"]), grow(8 << 20, 40, "0.05")),
    }
}

/// `fleetctl spawn` of a new `kind` agent `id` (booked before the call), with `failpoint`
/// armed if given.
pub fn spawn(
    world: &World,
    shared: &Shared,
    rng: &mut Rng,
    id: &str,
    kind: Kind,
    protected: bool,
    failpoint: Option<&str>,
) -> Outcome {
    let (flags, script) = recipe(kind, rng);
    // `auto` leases a pool slot; otherwise a path shared by many (a named slot could be one
    // `auto` handed out, which is a documented refusal this soak does not want to count).
    let shared_ws = world.tmp.join("shared-ws").to_string_lossy().into_owned();
    let ws = if rng.chance(30) { "auto".to_string() } else { shared_ws };
    let mut args: Vec<String> = vec!["spawn".into(), id.into(), ws];
    if protected {
        args.push("--protect".into());
    }
    if rng.chance(15) {
        args.extend(["--ports".to_string(), "2".to_string()]);
    }
    args.extend(flags);
    args.extend(["--".to_string(), "sh".to_string(), "-c".to_string(), script]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    shared.book().agents.insert(
        id.to_string(),
        Agent { kind, protected, admitted: false, user_killed: false, orphaned: false, half: false },
    );
    let started = Instant::now();
    let out = world.exec(&argv, failpoint, COMMAND_TIMEOUT);
    let mut book = shared.book();
    match out.code {
        0 => book.count("spawns admitted"),
        75 => book.count("spawns refused (75)"),
        4 => book.count("spawns raced (4)"),
        _ if failpoint.is_none() => book.count("spawns failed"),
        _ => {}
    }
    if out.code == 0
        && let Some(a) = book.agents.get_mut(id)
    {
        a.admitted = true;
    }
    if failpoint.is_none() {
        drop(book);
        // Busy (4) is an answer only for ids several callers race on: every other id is new.
        let ok: &[i32] = if racing(id) { &[0, 4, 75] } else { &[0, 75] };
        answer(shared, &argv[..2], &out, ok, started);
    }
    out
}

fn spawner(world: &World, shared: &Shared, rng: &mut Rng) {
    while nap(shared, rng, 200, 1000) {
        let _turn = shared.pause.read().unwrap_or_else(|e| e.into_inner());
        if shared.stopping() || shared.book().live_count() >= shared.target {
            continue;
        }
        if rng.chance(8) {
            race(world, shared, rng);
            continue;
        }
        let kind = *rng.pick(&[
            Kind::Exits,
            Kind::Exits,
            Kind::Fails,
            Kind::Tree,
            Kind::Stubborn,
            Kind::Chatty,
            Kind::TimesOut,
            Kind::Holder,
        ]);
        let protected = if kind == Kind::Holder {
            rng.chance(50) && protected_holders(shared) < PROTECTED_HOLDERS
        } else {
            rng.chance(15)
        };
        let id = shared.book().new_id("a");
        shared.book().count("agents");
        spawn(world, shared, rng, &id, kind, protected, None);
    }
}

fn protected_holders(shared: &Shared) -> usize {
    let book = shared.book();
    book.live.iter().filter(|l| book.agents.get(&l.id).is_some_and(|a| a.kind == Kind::Holder && a.protected)).count()
}

/// 2-4 callers spawn one new id at once: at most one may win; the others get exit 4 (or
/// 75 when the fleet is full).
fn race(world: &World, shared: &Shared, rng: &mut Rng) {
    let callers = rng.range(2, 4) as usize;
    let id = shared.book().new_id(RACED);
    shared.book().count("agents");
    let barrier = Barrier::new(callers);
    let seeds: Vec<u64> = (0..callers).map(|_| rng.next()).collect();
    let codes: Vec<i32> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                let (barrier, id) = (&barrier, &id);
                s.spawn(move || {
                    barrier.wait();
                    spawn(world, shared, &mut Rng::new(seed, 0), id, Kind::Exits, false, None).code
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(-1000)).collect()
    });
    // The losers' booking must not undo the winner's.
    let mut book = shared.book();
    if let Some(a) = book.agents.get_mut(&id) {
        a.admitted = codes.contains(&0);
    }
    book.count("races");
    book.races.push(Race { id, codes });
}

/// One hog at a time: spawn it, wait for its end (the guard, the kernel or its own limit),
/// then rest.
fn hogs(world: &World, shared: &Shared, rng: &mut Rng) {
    while nap(shared, rng, 1000, 5000) {
        let id = {
            let _turn = shared.pause.read().unwrap_or_else(|e| e.into_inner());
            if shared.stopping() {
                break;
            }
            let kind = *rng.pick(&[Kind::SlowHog, Kind::FastHog, Kind::BurstHog, Kind::BurstHog, Kind::LimitHog]);
            let id = shared.book().new_id("h");
            shared.book().count("agents");
            if spawn(world, shared, rng, &id, kind, false, None).code != 0 {
                continue;
            }
            id
        };
        if !wait_until(shared, HOG_DEADLINE, || !shared.book().live.iter().any(|l| l.id == id)) {
            // Not ended by any policy within its deadline: an operator steps in.
            let _turn = shared.pause.read().unwrap_or_else(|e| e.into_inner());
            if let Some(a) = shared.book().agents.get_mut(&id) {
                a.user_killed = true;
            }
            shared.book().count("hogs that outlived their deadline");
            let started = Instant::now();
            let out = world.exec(&["kill", &id, "--force"], None, COMMAND_TIMEOUT);
            answer(shared, &["kill", "--force"], &out, &[0, 5], started);
        }
    }
}

/// Waits (in 100 ms steps, up to `timeout`) for `done`; false at the timeout or the run's
/// end. The monitor refreshes `live` once a second, so a new agent is seen first.
fn wait_until(shared: &Shared, timeout: Duration, done: impl Fn() -> bool) -> bool {
    std::thread::sleep(Duration::from_millis(1500));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !shared.stopping() {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// Picks a live agent at random.
pub fn some_live(shared: &Shared, rng: &mut Rng, supervised: bool) -> Option<Live> {
    let book = shared.book();
    let pool: Vec<&Live> =
        book.live.iter().filter(|l| !supervised || (l.state == "running" && l.supervisor_pid.is_some())).collect();
    (!pool.is_empty()).then(|| (*rng.pick(&pool)).clone())
}

/// Operators: `kill` (graceful or `--force`), `relief N`, `gc`.
fn operator(world: &World, shared: &Shared, rng: &mut Rng) {
    while nap(shared, rng, 1000, 4000) {
        let _turn = shared.pause.read().unwrap_or_else(|e| e.into_inner());
        if shared.stopping() {
            break;
        }
        let started = Instant::now();
        match rng.range(0, 99) {
            0..50 => {
                let Some(victim) = some_live(shared, rng, false) else { continue };
                let force = rng.chance(40);
                if let Some(a) = shared.book().agents.get_mut(&victim.id) {
                    a.user_killed = true;
                }
                shared.book().count(if force { "kills --force" } else { "kills (grace 1s)" });
                let args =
                    if force { vec!["kill", &victim.id, "--force"] } else { vec!["kill", &victim.id, "--grace", "1s"] };
                let out = world.exec(&args, None, COMMAND_TIMEOUT);
                answer(shared, &args, &out, &[0, 5], started);
            }
            // Rare and mild: relief run often would stop every hog before the guard sees it.
            50..60 => {
                let target = rng.range(40, 75).to_string();
                let order = *rng.pick(&["largest", "largest", "newest", "oldest"]);
                shared.book().count("relief runs");
                let args = ["relief", &target, "--order", order, "--grace", "1s"];
                let out = world.exec(&args, None, COMMAND_TIMEOUT);
                answer(shared, &args, &out, &[0, 3, 4], started);
            }
            60..75 => {
                // Half of them collect ended records too, as a long-lived host's cron would.
                let args: &[&str] = if rng.chance(50) { &["gc"] } else { &["gc", "--older-than", "2m"] };
                shared.book().count("gc runs");
                let out = world.exec(args, None, COMMAND_TIMEOUT);
                answer(shared, args, &out, &[0], started);
            }
            _ => {
                let out = world.exec(&["memory", "--json"], None, COMMAND_TIMEOUT);
                answer(shared, &["memory", "--json"], &out, &[0], started);
            }
        }
    }
}

/// Reads `status --json` once a second into `live`.
fn monitor(world: &World, shared: &Shared, rng: &mut Rng) {
    while nap(shared, rng, 1000, 1000) {
        let started = Instant::now();
        let out = world.exec(&["status", "--json"], None, COMMAND_TIMEOUT);
        answer(shared, &["status", "--json"], &out, &[0], started);
        if let Some(agents) = parse_status(&out.stdout) {
            shared.book().live = live_of(&agents);
        }
    }
}

pub fn parse_status(stdout: &str) -> Option<Vec<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(stdout).ok()?;
    v["agents"].as_array().cloned()
}

pub fn live_of(agents: &[serde_json::Value]) -> Vec<Live> {
    agents
        .iter()
        .filter(|a| matches!(a["state"].as_str(), Some("starting" | "running" | "orphaned")))
        .map(|a| Live {
            id: a["id"].as_str().unwrap_or_default().to_string(),
            state: a["state"].as_str().unwrap_or_default().to_string(),
            supervisor_pid: a["supervisor_pid"].as_i64().map(|p| p as i32),
        })
        .collect()
}

/// The fleet's use (usage minus inactive page cache, as fleetctl counts it) every 100 ms,
/// and the longest stretch at or above the kill threshold.
fn sampler(world: &World, shared: &Shared, _rng: &mut Rng) {
    let kill_at = world.budget as f64 * super::invariants::KILL_THRESHOLD / 100.0;
    while !shared.stopping() {
        let root = &world.fleet.root;
        if let (Ok(usage), Ok(inactive)) = (root.memory_current(), root.inactive_file()) {
            let used = usage.saturating_sub(inactive) as f64;
            let now = Instant::now();
            let mut book = shared.book();
            let u = &mut book.usage;
            u.samples += 1;
            u.max_percent = u.max_percent.max(used * 100.0 / world.budget as f64);
            if used >= kill_at {
                let since = *u.above_since.get_or_insert(now);
                u.longest_above = u.longest_above.max(now - since);
            } else {
                u.above_since = None;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
