//! `fleetctl watch [--auto-kill] [--interval 1s] [--metrics-file PATH] [--order growth] …`:
//! the live view, and with `--auto-kill` the fleet's memory guard.
//!
//! The loop sleeps in `poll(2)` on what the kernel offers to wake it (a threshold alarm on
//! the fleet root at the kill threshold, a PSI trigger on the host) and on a self-pipe for
//! Ctrl-C; the timeout is only the refresh interval, shortened as headroom shrinks. At or
//! above the kill threshold it relieves down to the spawn threshold with relief's policy and
//! options; by default it takes the agent that grew the most first (`--order growth`), which
//! only a sampler that runs can know.

mod screen;

use crate::{
    agent::{
        relief::{Outcome, Relief, relieve},
        sample::{LightSampler, metrics},
        take_host_lock,
    },
    context::Ctx,
    exit::Exit,
    systemd::notify::Notifier,
};
use anyhow::{Context, Result};
use fleet_cli::{ReliefOrder, WatchArgs};
use fleet_core::{cgroup::UsageAlarm, meminfo::Budget, paths::write_atomic, procs::protect_from_oom};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use screen::Screen;
use std::{
    io::Read,
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// Sampling gets faster as use approaches the kill threshold. A fast tick measures only the
/// budget (a few small reads), so sampling at 20 ms costs little while it matters.
fn interval_for(percent: f64, spawn: u8, kill: u8, calm: Duration) -> Duration {
    if percent >= f64::from(kill.saturating_sub(5)) {
        Duration::from_millis(20)
    } else if percent >= f64::from(spawn) {
        Duration::from_millis(100)
    } else {
        calm
    }
}

/// How often the guard run by systemd writes its status line (to the journal).
const SERVICE_STATUS_EVERY: Duration = Duration::from_secs(60);

/// After the kernel's alarm, sample this fast for [`ALERT_FOR`]: the alarm fires on charged
/// memory, and the budget's "used" (which leaves out reclaimable page cache) may cross a
/// moment later.
const ALERT_INTERVAL: Duration = Duration::from_millis(10);
/// How long the alert lasts.
const ALERT_FOR: Duration = Duration::from_secs(2);

/// `--order growth` looks back this far, or two refresh intervals when those are longer: a
/// runaway that crossed the threshold did its growing in the last few seconds, while a
/// steady agent's usage over that long stays within noise.
const GROWTH_WINDOW: Duration = Duration::from_secs(10);

/// Entry point.
pub fn run(ctx: &Ctx, args: WatchArgs) -> Result<Exit> {
    // Only one watcher may kill: two would each relieve the same shortfall.
    let _lock = if args.auto_kill {
        Some(take_host_lock(ctx, "watch", "another auto-killing watcher is running; only one may kill")?)
    } else {
        None
    };
    guard_self(ctx);

    // Ctrl-C: the handler counts presses and wakes the loop through a pipe. The first stops
    // cleanly (restoring the fleet root's memory.high); a second exits at once.
    let (wake_rx, wake_tx) = nix::unistd::pipe().context("cannot create a pipe")?;
    let mut wake_rx = std::fs::File::from(wake_rx);
    let presses = Arc::new(AtomicU32::new(0));
    let counter = presses.clone();
    let wake_tx = std::fs::File::from(wake_tx);
    ctrlc::set_handler(move || {
        if counter.fetch_add(1, Ordering::SeqCst) >= 1 {
            crate::end_process_now(Exit::Interrupted); // the second press: now
        }
        let _ = nix::unistd::write(&wake_tx, b"x");
    })
    .context("cannot install the Ctrl-C handler")?;

    let (spawn_t, kill_t) = (ctx.spawn_threshold(), ctx.kill_threshold());
    // The guard keeps the fleet's scope on a systemd host: after a boot it makes it.
    match args.auto_kill {
        true => crate::systemd::scope::ensure(ctx)?,
        false => crate::systemd::scope::require(ctx)?,
    }
    crate::systemd::scope::make_fleet_root(ctx, args.auto_kill)?;
    let first = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let arm = |total: u64| {
        UsageAlarm::arm(&ctx.fleet.root, total * u64::from(kill_t) / 100).context("cannot arm the memory alarm")
    };
    let mut alarm = if args.auto_kill { Some(arm(first.total)?) } else { None };
    let mut armed_for = first.total;
    // Run by systemd: `systemctl start` returns now, with the scope made and the guard armed.
    let notifier = Notifier::from_env();
    if let Some(n) = &notifier {
        n.ready(&format!("guarding {} at {kill_t} %", ctx.fleet.root.unified.display()));
    }
    // Under systemd the lines go to the journal: a status line a minute, kills as they come.
    let status_every = if notifier.is_some() { SERVICE_STATUS_EVERY } else { args.interval };
    let mut screen = Screen::new(args.interval, status_every);
    let mut sampler = LightSampler::new(GROWTH_WINDOW.max(args.interval * 2));
    let victims = &args.victims;
    let mut relief = Relief {
        target_percent: spawn_t,
        order: victims.order,
        by: "watch".into(),
        grace: victims.grace,
        save_grace: victims.save_grace,
        growth: Default::default(),
    };
    let mut alert_until: Option<Instant> = None;
    let mut last_metrics: Option<Instant> = None;
    let mut metrics_failing = false;
    let mut relief_stuck = false;
    while presses.load(Ordering::SeqCst) == 0 {
        // From the loop itself: a guard stuck anywhere in it stops the pings, and systemd
        // restarts it (`WatchdogSec=`).
        if let Some(n) = &notifier {
            n.alive();
        }
        let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
        // A new budget (setup-host --fleet-memory-max under a running guard) moves the alarm.
        if alarm.is_some() && budget.total != armed_for {
            drop(alarm.take()); // restores memory.high first
            alarm = Some(arm(budget.total)?);
            armed_for = budget.total;
        }
        // The view and the metrics file refresh at their own pace; only the budget is read
        // on every tick. Records, events and page-cache detail are read when relief has to
        // choose victims.
        if screen.due() {
            let agents = sampler.sample(&ctx.fleet, screen.room())?;
            screen.draw(&budget, &agents, spawn_t, kill_t, args.auto_kill);
        }
        if let Some(path) = &args.metrics_file
            && last_metrics.is_none_or(|t| t.elapsed() >= args.interval)
        {
            let first = last_metrics.is_none();
            last_metrics = Some(Instant::now());
            let written = metrics::text(ctx)
                .and_then(|text| write_atomic(path, text.as_bytes()).map_err(anyhow::Error::from))
                .with_context(|| format!("cannot write the metrics file {}", path.display()));
            match written {
                // A path that never worked is the operator's to fix, before anything is guarded.
                Err(e) if first => return Err(e),
                // A full disk later must not end the guard: say so once, retry each interval.
                Err(e) if !metrics_failing => {
                    metrics_failing = true;
                    screen.say(&format!("{e:#}; still watching, retrying each interval"));
                }
                Err(_) => {}
                Ok(()) if metrics_failing => {
                    metrics_failing = false;
                    screen.say(&format!("the metrics file {} is written again", path.display()));
                }
                Ok(()) => {}
            }
        }
        if args.auto_kill && budget.percent() >= f64::from(kill_t) {
            let started = Instant::now();
            if victims.order == ReliefOrder::Growth {
                // A fresh sample: an agent born since the last refresh is likely the one
                // that pushed use over, and relief plans from this growth until it is done.
                // Should it fail, the last sample's growth is still the best there is.
                let _ = sampler.sample(&ctx.fleet, 0);
                relief.growth = sampler.growth();
            }
            screen.say(&format!(
                "fleet at {:.1} %, at or above the kill threshold of {kill_t} %: relieving to {spawn_t} %",
                budget.percent()
            ));
            let outcome = relieve(ctx, &relief, &victims.protect, None, |k| {
                // A round of kills can outlast the watchdog's interval without this.
                if let Some(n) = &notifier {
                    n.alive();
                }
                screen.say(&format!(
                    "killed {} (held {}): fleet {:.1} % -> {:.1} %",
                    k.id,
                    fleet_core::size::format_iec(k.bytes),
                    k.before.percent(),
                    k.after.percent()
                ))
            });
            let trouble = match outcome {
                Ok(Outcome::Reached { kills, budget }) => {
                    screen.say(&format!(
                        "relieved: fleet at {:.1} % after {kills} kill(s) in {} ms",
                        budget.percent(),
                        started.elapsed().as_millis()
                    ));
                    None
                }
                Ok(Outcome::Stuck { message }) => Some(message),
                Err(e) => Some(format!("relief failed: {e:#}; trying again")),
            };
            let Some(trouble) = trouble else {
                relief_stuck = false;
                continue;
            };
            // Stuck (only protected agents left) or failed, the guard goes on: one line per
            // run of such tries, and the next one after the usual wait, never at once, which
            // would spin a core and flood the log.
            if !relief_stuck {
                screen.say(&trouble);
            }
            relief_stuck = true;
        } else {
            relief_stuck = false;
        }
        let mut wait = interval_for(budget.percent(), spawn_t, kill_t, args.interval);
        if alert_until.is_some_and(|t| Instant::now() < t) {
            wait = ALERT_INTERVAL;
        }
        if let Some(most) = notifier.as_ref().and_then(Notifier::max_sleep) {
            wait = wait.min(most);
        }
        let mut fds = vec![PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
        if let Some(a) = &alarm {
            let (fd, flags) = a.poll_target();
            fds.push(PollFd::new(fd, flags));
        }
        let ms = wait.as_millis().min(u128::from(u16::MAX)) as u16;
        let woke = poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0
            && fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        drop(fds);
        if woke && let Some(a) = &alarm {
            a.drain();
            alert_until = Some(Instant::now() + ALERT_FOR);
        }
    }
    let mut byte = [0u8; 1];
    let _ = wake_rx.read(&mut byte);
    drop(alarm); // restores memory.high on v2
    screen.finish();
    Ok(Exit::Interrupted)
}

/// The guard must outlive the agents it guards: ask the OOM killer to spare it and keep its
/// memory from being paged out when memory is tight. Both need root; otherwise it runs
/// unprotected, as the docs say.
///
/// Its code is locked whole; everything else as it is touched (`MCL_ONFAULT`): locking
/// every current and future mapping whole would also fill what the allocator has only
/// reserved, a 1 GiB arena with mimalloc.
fn guard_self(ctx: &Ctx) {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    let _ = protect_from_oom(&ctx.proc_root);
    let _ = fleet_core::own_pages::lock_file_pages(&ctx.proc_root);
    let on_fault = MlockAllFlags::from_bits_retain(libc::MCL_ONFAULT);
    let _ = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE | on_fault);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_speeds_up_near_the_threshold() {
        let calm = Duration::from_secs(1);
        assert_eq!(interval_for(50.0, 85, 95, calm), calm);
        assert_eq!(interval_for(86.0, 85, 95, calm), Duration::from_millis(100));
        assert_eq!(interval_for(91.0, 85, 95, calm), Duration::from_millis(20));
    }
}
