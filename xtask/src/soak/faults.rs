//! The faults: SIGKILLed supervisors (by pid, after checking the pid is one of this fleet's
//! supervisors), `spawn`, `kill` and `relief` SIGKILLed at fleetctl's own failpoints
//! (`FLEETCTL_FAILPOINT`, src/failpoint.rs), and a state disk full for a few seconds.

use super::{
    actors::{COMMAND_TIMEOUT, answer, nap, some_live, spawn},
    ledger::{Kind, Shared},
    rng::Rng,
    world::World,
};
use std::{
    io::Write,
    time::{Duration, Instant},
};

/// fleetctl's failpoints (src/failpoint.rs); a hit is a real SIGKILL of that command.
const SPAWN_AFTER_CGROUP: &str = "spawn-after-cgroup";
const SPAWN_AFTER_GO: &str = "spawn-after-go";
const KILL_AFTER_SUPERVISOR: &str = "kill-after-supervisor";
const SIGKILLED: i32 = -9;

pub fn chaos(world: &World, shared: &Shared, rng: &mut Rng) {
    while nap(shared, rng, 3000, 8000) {
        let _turn = shared.pause.read().unwrap_or_else(|e| e.into_inner());
        if shared.stopping() {
            break;
        }
        match rng.range(0, 5) {
            0 => kill_a_supervisor(world, shared, rng),
            1 => spawn_killed_at(world, shared, rng, SPAWN_AFTER_CGROUP),
            2 => spawn_killed_at(world, shared, rng, SPAWN_AFTER_GO),
            3 => stop_killed_at_failpoint(world, shared, rng),
            4 => relief_killed_at_failpoint(world, shared),
            _ => fill_the_state_disk(world, shared, rng),
        }
    }
}

/// SIGKILL of a running agent's supervisor: the agent is an orphan from then on.
fn kill_a_supervisor(world: &World, shared: &Shared, rng: &mut Rng) {
    let Some(victim) = some_live(shared, rng, true) else { return };
    let Some(pid) = victim.supervisor_pid else { return };
    // The pid came from a status a moment ago: it must still be in this fleet's
    // supervisors/ cgroup, or it is someone else's process now.
    if !world.fleet.supervisors().procs().unwrap_or_default().contains(&pid) {
        return;
    }
    if let Some(a) = shared.book().agents.get_mut(&victim.id) {
        a.orphaned = true;
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    shared.book().count("fault: supervisor SIGKILLed");
    shared.note(&format!("fault: SIGKILLed {}'s supervisor (pid {pid})", victim.id));
}

/// A new agent's `spawn`, SIGKILLed at `point`. Refused before it gets there (exit 75) is
/// a refusal, not a fault.
fn spawn_killed_at(world: &World, shared: &Shared, rng: &mut Rng, point: &'static str) {
    let id = shared.book().new_id("f");
    shared.book().count("agents");
    let started = Instant::now();
    let out = spawn(world, shared, rng, &id, Kind::Exits, false, Some(point));
    let mut book = shared.book();
    match out.code {
        SIGKILLED => {
            book.count(if point == SPAWN_AFTER_CGROUP {
                "fault: spawn SIGKILLed after cgroup"
            } else {
                "fault: spawn SIGKILLed after go"
            });
            shared.note(&format!("fault: spawn {id} SIGKILLed at {point}"));
            if let Some(a) = book.agents.get_mut(&id) {
                // After `go` the agent runs under its supervisor; before, nothing ran.
                a.admitted = point == SPAWN_AFTER_GO;
                a.half = point == SPAWN_AFTER_CGROUP;
            }
        }
        _ => {
            drop(book);
            answer(shared, &["spawn", "(failpoint)"], &out, &[75], started);
        }
    }
}

/// `kill` of a live agent, SIGKILLed once its supervisor recorded the end, before the
/// cgroup is removed. An agent that ended first is a note (0) or gone (5).
fn stop_killed_at_failpoint(world: &World, shared: &Shared, rng: &mut Rng) {
    let Some(victim) = some_live(shared, rng, true) else { return };
    if let Some(a) = shared.book().agents.get_mut(&victim.id) {
        a.user_killed = true;
    }
    let started = Instant::now();
    let args = ["kill", &victim.id, "--force"];
    let out = world.exec(&args, Some(KILL_AFTER_SUPERVISOR), COMMAND_TIMEOUT);
    if out.code == SIGKILLED {
        shared.book().count("fault: kill SIGKILLed after supervisor");
        shared.note(&format!("fault: kill {} SIGKILLed at {KILL_AFTER_SUPERVISOR}", victim.id));
    } else {
        answer(shared, &args, &out, &[0, 5], started);
    }
}

/// `relief` SIGKILLed at its first victim's failpoint (or done without a victim).
fn relief_killed_at_failpoint(world: &World, shared: &Shared) {
    let started = Instant::now();
    let args = ["relief", "20", "--grace", "0"];
    shared.book().count("relief runs");
    let out = world.exec(&args, Some(KILL_AFTER_SUPERVISOR), COMMAND_TIMEOUT);
    if out.code == SIGKILLED {
        shared.book().count("fault: relief SIGKILLed after supervisor");
        shared.note(&format!("fault: relief SIGKILLed at {KILL_AFTER_SUPERVISOR}"));
    } else {
        answer(shared, &args, &out, &[0, 3, 4], started);
    }
}

/// Fills the state dir's tmpfs to ENOSPC for 2-5 s, then frees it.
fn fill_the_state_disk(world: &World, shared: &Shared, rng: &mut Rng) {
    let filler = world.state().join("filler");
    let Ok(mut file) = std::fs::File::create(&filler) else { return };
    let chunk = vec![0u8; 64 << 10];
    // Bounded: the tmpfs is 32 MiB.
    for _ in 0..1024 {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(file);
    let at = shared.book().disk_full.len();
    shared.book().disk_full.push((Instant::now(), None));
    shared.book().count("fault: state disk full");
    shared.note("fault: state disk full");
    std::thread::sleep(Duration::from_millis(rng.range(2000, 5000)));
    let _ = std::fs::remove_file(&filler);
    shared.book().disk_full[at].1 = Some(Instant::now());
    shared.note("fault: state disk freed");
}
