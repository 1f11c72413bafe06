//! The spawn queue's hand-off: how long after a slot frees the next waiter's agent starts.
//!
//! The fleet is capped at one agent (`--max-agents 1`). Each trial has a running agent and a
//! `spawn --queue` waiting behind it (its ticket is in the queue dir); the clock starts when
//! `kill --force` of the running agent returns, and stops when the waiting spawn exits,
//! which it does once its agent's command has been exec'd. That waiter's agent is the next
//! trial's running one. The figure is the wake-up (inotify on the queue dir, the supervisor's
//! touch as it exits) plus a whole spawn: it is compared with the spawn latency above.

use crate::bench::{Env, check, ms};
use anyhow::{Context, Result, ensure};
use std::time::{Duration, Instant};

/// The table row: p50 and p99 over `trials` hand-offs.
pub fn handoff(env: &Env, trials: usize) -> Result<String> {
    check(env.fleetctl(&["kill", "--all", "--force"]).status()?, "kill --all")?;
    let queue_dir = env.tmp.join("state/queue");
    let spawn = |id: &str| {
        env.fleetctl(&["spawn", id, "ws", "--max-agents", "1", "--queue=60s", "--", "sleep", "1000"])
            .spawn()
            .with_context(|| format!("spawn {id}"))
    };
    let mut running = "qh".to_string();
    check(spawn(&running)?.wait()?, "spawn of the first agent")?;
    let mut times = Vec::with_capacity(trials);
    for i in 0..trials {
        let next = format!("qw{i}");
        let mut waiter = spawn(&next)?;
        let in_line = Instant::now() + Duration::from_secs(30);
        let suffix = format!(".{next}");
        while !std::fs::read_dir(&queue_dir)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(&suffix)))
            .unwrap_or(false)
        {
            ensure!(Instant::now() < in_line, "{next} never joined the line");
            std::thread::sleep(Duration::from_millis(5));
        }
        check(env.fleetctl(&["kill", "--force", &running]).status()?, "kill")?;
        let freed = Instant::now();
        check(waiter.wait()?, "the queued spawn")?;
        times.push(freed.elapsed());
        running = next;
    }
    check(env.fleetctl(&["kill", "--all", "--force"]).status()?, "kill --all")?;
    times.sort_unstable();
    let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    Ok(format!(
        "| queue hand-off: a freed slot (agent cap) to the next waiter's agent started, {trials} trials | p50 {} p99 {} | | |",
        ms(at(50)),
        ms(at(99))
    ))
}
