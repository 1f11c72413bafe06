//! The spawn queue's hand-off: how long after a slot frees the next waiter's agent starts.
//!
//! The fleet is capped at one agent (`--max-agents 1`). Each trial has a running agent and a
//! `spawn --queue` waiting behind it (its ticket is in the queue dir); the clock starts when
//! `kill --force` of the running agent returns, and stops when the waiting spawn exits,
//! which it does once its agent's command has been exec'd. That waiter's agent is the next
//! trial's running one. The figure is the wake-up (inotify on the queue dir, the supervisor's
//! touch as it exits) plus a whole spawn: it is compared with the spawn latency above. A
//! second row does the same with [`BEHIND`] more waiters in line behind the one that is
//! let in: they must not slow the hand-off (each waits only on the ticket ahead of it).

use crate::bench::{Env, check, ms};
use anyhow::{Context, Result, ensure};
use std::time::{Duration, Instant};

/// Waiters in line behind the one let in, in the second row.
pub const BEHIND: usize = 100;

/// The table rows: p50 and p99 over `trials` hand-offs, alone and with [`BEHIND`] behind.
pub fn handoff(env: &Env, trials: usize) -> Result<Vec<String>> {
    Ok(vec![handoff_behind(env, trials, 0)?, handoff_behind(env, trials, BEHIND)?])
}

fn handoff_behind(env: &Env, trials: usize, behind: usize) -> Result<String> {
    check(env.fleetctl(&["kill", "--all", "--force"]).status()?, "kill --all")?;
    let queue_dir = env.tmp.join("state/queue");
    let spawn = |id: &str| {
        env.fleetctl(&["spawn", id, "ws", "--max-agents", "1", "--queue=5m", "--", "sleep", "1000"])
            .spawn()
            .with_context(|| format!("spawn {id}"))
    };
    let mut running = "qh".to_string();
    check(spawn(&running)?.wait()?, "spawn of the first agent")?;
    let join = |id: &str| -> Result<std::process::Child> {
        let waiter = spawn(id)?;
        let in_line = Instant::now() + Duration::from_secs(30);
        let suffix = format!(".{id}");
        while !std::fs::read_dir(&queue_dir)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(&suffix)))
            .unwrap_or(false)
        {
            ensure!(Instant::now() < in_line, "{id} never joined the line");
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(waiter)
    };
    // The line: each trial adds one waiter at the back and lets the head in, so `behind`
    // wait behind the one let in.
    let mut line = std::collections::VecDeque::new();
    for i in 0..behind {
        let id = format!("qb{i}");
        line.push_back((id.clone(), join(&id)?));
    }
    let mut times = Vec::with_capacity(trials);
    for i in 0..trials {
        let id = format!("qw{i}");
        line.push_back((id.clone(), join(&id)?));
        let (next, mut waiter) = line.pop_front().context("the line ran out")?;
        check(env.fleetctl(&["kill", "--force", &running]).status()?, "kill")?;
        let freed = Instant::now();
        check(waiter.wait()?, "the queued spawn")?;
        times.push(freed.elapsed());
        running = next;
    }
    // Takes the rest out of line (they exit 6) and ends the agents.
    check(env.fleetctl(&["kill", "--all", "--force"]).status()?, "kill --all")?;
    for (_, mut waiter) in line {
        waiter.wait()?;
    }
    times.sort_unstable();
    let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    let behind = match behind {
        0 => String::new(),
        n => format!(", {n} more waiting behind"),
    };
    Ok(format!(
        "| queue hand-off: a freed slot (agent cap) to the next waiter's agent started{behind}, {trials} trials | p50 {} p99 {} | | |",
        ms(at(50)),
        ms(at(99))
    ))
}
