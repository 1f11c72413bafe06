//! `spawn --queue`: a caller's place in the spawn line ([`fleet_core::queue`]) and its wait.
//! It joins only when admission would refuse it (or others already wait). Behind others it
//! waits for the ticket directly ahead of it to go ([`Gone`]); at the head it sleeps on the
//! queue dir's inotify watch, and looks again when woken, or after [`RECHECK`] at the latest.

use crate::{
    agent::admission::Refused,
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_cli::Timeout;
use fleet_core::{
    admission::Ledger,
    event::Event,
    id::AgentId,
    labels::Labels,
    queue::{self, Alarm, Bell, Gone, Reason, Ticket},
    timefmt::human_duration,
};
use std::time::{Duration, Instant};

/// The slow safety re-check of a waiter that nothing woke. Ends of agents, returned
/// admissions and waiters leaving wake the line at once; what this catches is memory an
/// agent gives back while it runs, which nothing announces on every host (on cgroup v1
/// there is no event for falling use).
pub const RECHECK: Duration = Duration::from_secs(2);

/// How often a waiter behind others looks at its cancel mark though its bell has not rung:
/// a safety net only (`kill` rings the bell as it marks, but a `kill` in another network
/// namespace cannot reach it).
pub const CANCEL_CHECK: Duration = Duration::from_secs(10);

/// A spawn's place in line: none until it first has to wait.
pub struct Line<'a> {
    ctx: &'a Ctx,
    id: AgentId,
    labels: Labels,
    deadline: Option<Instant>,
    created: Instant,
    joined_at: Instant,
    ticket: Option<Ticket>,
    alarm: Option<Alarm>,
    bell: Option<Bell>,
    reason: Reason,
}

impl<'a> Line<'a> {
    /// A line for agent `id` with `labels` that gives up after `timeout` (`off`: never).
    pub fn new(ctx: &'a Ctx, id: &AgentId, labels: &Labels, timeout: Timeout) -> Line<'a> {
        let now = Instant::now();
        Line {
            ctx,
            id: id.clone(),
            labels: labels.clone(),
            deadline: timeout.duration().map(|t| now + t),
            created: now,
            joined_at: now,
            ticket: None,
            alarm: None,
            bell: None,
            reason: Reason::Turn,
        }
    }

    /// Live waiters ahead of this spawn: all of them before it has joined.
    pub fn ahead(&self) -> Result<usize> {
        Ok(match &self.ticket {
            // The head (what every admission check of a waiter is) needs no full listing.
            Some(ticket) if ticket.directly_ahead()?.is_none() => 0,
            Some(ticket) => ticket.ahead()?,
            None => queue::line(&self.dir())?.len(),
        })
    }

    /// Exit 6 when `kill` has taken this waiter out of line.
    pub fn check_cancelled(&mut self) -> Result<()> {
        if !self.ticket.as_ref().is_some_and(Ticket::cancelled) {
            return Ok(());
        }
        self.left("cancelled");
        Err(Fail::error(
            Exit::Withdrawn,
            format!(
                "{}: taken out of the line by `fleetctl kill` after waiting {}; nothing was started",
                self.id,
                human_duration(self.joined_at.elapsed())
            ),
        ))
    }

    /// Whether it has a place in line yet.
    pub fn joined(&self) -> bool {
        self.ticket.is_some()
    }

    /// Returns once this waiter is the head of the line, with its inotify watch made (so the
    /// admission check that follows, and every event after it, is not missed); until then it
    /// sleeps on its bell, which rings when the waiter directly ahead goes and when `kill`
    /// marks it, and ends the wait at the deadline (exit 75). Nothing to do for a spawn that
    /// has not joined.
    pub fn wait_for_turn(&mut self) -> Result<()> {
        loop {
            let Some(ticket) = &mut self.ticket else { return Ok(()) };
            let Some(ahead) = ticket.directly_ahead()? else { break };
            if self.bell.is_none() {
                self.bell = ticket.take_bell();
            }
            let mut gone = Gone::watch(&self.dir(), &ahead, self.bell.as_ref().map(Bell::name))?;
            // Looked at once the bell is hung: a mark made before is seen here, one after rings.
            self.check_cancelled()?;
            while !gone.gone() {
                let nap = match self.deadline {
                    Some(deadline) => CANCEL_CHECK.min(deadline.saturating_duration_since(Instant::now())),
                    None => CANCEL_CHECK,
                };
                match &self.bell {
                    Some(bell) => {
                        bell.sleep(nap);
                    }
                    // No bell (its bind failed): woken by the ticket ahead going, or the nap.
                    None => {
                        gone.wait(nap);
                    }
                }
                self.check_cancelled()?;
                if self.deadline.is_some_and(|d| d <= Instant::now()) {
                    let refused = Refused::Turn { ahead: self.ahead()? };
                    self.left("timeout");
                    return Err(refused.error(self.ctx, &self.id, Some(self.created.elapsed())));
                }
            }
        }
        // The head needs the fleet's events, not its bell.
        self.bell = None;
        if self.alarm.is_none() {
            crate::failpoint::hit(crate::failpoint::QUEUE_HEAD);
            self.alarm = Some(Alarm::watch(&self.dir())?);
        }
        Ok(())
    }

    /// Waits after `refused`: joins the line while `ledger` is still locked (which orders the
    /// tickets; a spawn that has not joined yet always passes it) and releases it. At the
    /// head with its watch made it sleeps until woken, [`RECHECK`], or the deadline, which
    /// ends the wait with `refused`'s exit 75; otherwise it returns at once, for
    /// [`Line::wait_for_turn`] and a fresh admission check.
    pub fn wait(&mut self, ledger: Option<Ledger>, refused: &Refused) -> Result<()> {
        let reason = refused.reason();
        match &self.ticket {
            None if ledger.is_none() => anyhow::bail!("{}: joining the line needs the admission lock", self.id),
            None => {
                let ticket = Ticket::join(&self.dir(), &self.id, reason, &self.labels)?;
                self.joined_at = Instant::now();
                let ahead = ticket.ahead()?;
                self.ticket = Some(ticket);
                let joined = Event::Queued { reason: reason.name().into(), ahead };
                let _ = fleet_core::journal::append(&self.ctx.dirs.journal_path(), &self.id, &joined);
                eprintln!("fleetctl: {}: waiting in line for {} ({ahead} ahead)", self.id, describe(reason));
            }
            Some(ticket) if reason != self.reason => ticket.set_reason(reason)?,
            Some(_) => {}
        }
        self.reason = reason;
        drop(ledger);
        let mut nap = crate::failpoint::queue_recheck(RECHECK);
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.left("timeout");
                return Err(refused.error(self.ctx, &self.id, Some(self.created.elapsed())));
            }
            nap = nap.min(left);
        }
        // Not yet watching (it has just joined): no sleep before the watch is made, or the
        // end of an agent between the refusal and the watch would go unseen until RECHECK.
        if let Some(alarm) = &self.alarm {
            alarm.sleep(nap);
        }
        Ok(())
    }

    /// Waits for a lease pool (workspace slots, ports) that refused with `err`, keeping its
    /// place at the head of the line.
    pub fn wait_for_pool(&mut self, err: anyhow::Error) -> Result<()> {
        let ledger = Ledger::lock(&self.ctx.dirs.admission_path())?;
        self.wait(Some(ledger), &Refused::Pool(err))
    }

    /// The spawn is admitted and has its leases: it leaves the line, and the next in line
    /// is woken by its ticket's removal.
    pub fn admitted(mut self) {
        self.left("admitted");
    }

    /// Journals leaving, once, and gives up the ticket.
    fn left(&mut self, outcome: &str) {
        // Its bell goes with its place in line, not with the process.
        self.bell = None;
        if let Some(ticket) = self.ticket.take() {
            let waited = self.joined_at.elapsed().as_millis() as u64;
            let event = Event::QueueLeft { outcome: outcome.into(), waited_ms: waited };
            let _ = fleet_core::journal::append(&self.ctx.dirs.journal_path(), &self.id, &event);
            // Only now: the next in line may be admitted, and its event comes after this.
            drop(ticket);
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        queue::dir(&self.ctx.dirs.state)
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        // A spawn that failed after it had waited (its id busy, say).
        self.left("failed");
    }
}

/// What a waiter waits for, in words.
pub fn describe(reason: Reason) -> &'static str {
    match reason {
        Reason::Memory => "memory below the spawn threshold",
        Reason::Pool => "a free workspace slot, port block or uid",
        Reason::Cap => "an agent to end (the fleet is at max_agents)",
        Reason::Turn => "the spawns ahead of it",
    }
}
