//! The events of the journal: one variant per `event` name, with its fields, so every writer
//! and reader agrees on them and `docs/events.md` can be checked against them.
//!
//! A journal line is `{"ts", "event", "id"}` plus the variant's fields, with its keys in
//! sorted order (see [`crate::journal::append`]). Readers meet lines this version does not
//! know (an event of a newer or older fleetctl): [`crate::journal::Entry`] keeps them as
//! they are, with no [`Event`], so they are shown and counted by name, never dropped.

use crate::{size::Limit, state::AgentState};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One journal event. The serde tag is the line's `event` field; the variant's fields are
/// the line's other fields (besides `ts` and `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The supervisor started the agent's first run.
    Spawn {
        /// The agent's main process.
        pid: i32,
        /// Always 0.
        restarts: u32,
        /// The agent's command line.
        command: Vec<String>,
    },
    /// The supervisor started a new run after a failure.
    Restart {
        /// The new run's main process.
        pid: i32,
        /// How many restarts this run is.
        restarts: u32,
        /// The agent's command line.
        command: Vec<String>,
    },
    /// A run failed and the supervisor will start another after a delay.
    RestartScheduled {
        /// The delay, in milliseconds.
        delay_ms: u64,
        /// Why the run ended.
        cause: String,
    },
    /// Starting a new run failed; the agent ends.
    RestartFailed {
        /// Why.
        error: String,
    },
    /// The soft timeout passed: SIGUSR1 went to the main process.
    SoftTimeout {
        /// The main process.
        pid: i32,
    },
    /// The hard timeout passed: SIGTERM went to every process of the agent.
    HardTimeout {
        /// How many processes were signalled.
        signalled: usize,
        /// How long they have before `cgroup.kill`, in milliseconds.
        grace_ms: u64,
    },
    /// The OOM killer ended the run at the agent's own limit.
    OomKill {
        /// OOM kills counted in the run.
        oom_kills: u64,
        /// The agent's `memory.max`.
        memory_max: Limit,
    },
    /// The agent stalled on memory: its `full` memory pressure stayed above the threshold
    /// for the configured time. It is marked `stalled` until the pressure eases.
    Stall {
        /// The pressure threshold, percent of wall time all its tasks were stalled.
        threshold_percent: u8,
        /// How long the pressure stayed above it, in milliseconds.
        after_ms: u64,
        /// The signal sent to its main process (`spawn --stall-signal`), if any.
        signal: Option<String>,
        /// Whether it is being killed for it (`spawn --on-stall kill`).
        kill: bool,
    },
    /// Too many failures in the crash-loop window: no more restarts.
    CrashLoop {
        /// Failures within the window.
        failures: usize,
        /// The last failure, with the count.
        cause: String,
    },
    /// A run's end, once per run.
    Exit(Exit),
    /// A command found the agent's supervisor dead while its run had not ended.
    SupervisorDied {
        /// The dead supervisor.
        supervisor_pid: i32,
        /// Whether the agent's cgroup still had processes.
        agent_alive: bool,
        /// The run's main process, as its record says.
        agent_pid: Option<i32>,
        /// The run's state, as its record says.
        state: AgentState,
    },
    /// `relief` or the watcher killed the agent to bring the fleet's use down.
    ReliefKill {
        /// Who: `relief` or `watch`.
        by: String,
        /// The fleet's use before the kill, in percent of the budget.
        used_percent: f64,
        /// The use relief aims at, in percent.
        target_percent: u8,
        /// The agent's measured memory.
        agent_bytes: u64,
        /// What the kill freed, measured.
        freed_bytes: u64,
        /// The fleet's use after the kill, in percent.
        used_after_percent: f64,
    },
    /// The supervisor hit a problem its agent runs on despite.
    SupervisorError {
        /// What went wrong.
        error: String,
    },
    /// `spawn` refused to start the agent (exit 75).
    SpawnRefused(Refusal),
    /// `spawn --queue` joined the line instead of being refused.
    Queued {
        /// What it waits for: `memory`, `pool`, `cap`, or `turn` (others wait ahead).
        reason: String,
        /// Live waiters ahead of it.
        ahead: usize,
    },
    /// A waiter left the line.
    QueueLeft {
        /// `admitted`, `timeout`, or `cancelled` (by `kill`).
        outcome: String,
        /// How long it waited, in milliseconds.
        waited_ms: u64,
    },
}

/// The fields of an `exit` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The final state.
    pub state: AgentState,
    /// Why it ended, in words.
    pub cause: String,
    /// Who killed it (`user`, `relief`, `watch`, `timeout`, ...), if someone did.
    pub killed_by: Option<String>,
    /// What its supervisor saw of the end; absent when no supervisor recorded it.
    #[serde(flatten)]
    pub observed: Option<ObservedExit>,
    /// `false` when a command recorded the end because the supervisor was gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervised: Option<bool>,
    /// Why the agent's record could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}

impl Exit {
    /// The end of a run its supervisor saw.
    pub fn observed(state: AgentState, cause: String, killed_by: Option<String>, observed: ObservedExit) -> Exit {
        Exit { state, cause, killed_by, observed: Some(observed), supervised: None, record_error: None }
    }

    /// The end of a run whose supervisor was gone, recorded by a command.
    pub fn unsupervised(state: AgentState, killed_by: Option<&str>, cause: &str) -> Exit {
        Exit {
            state,
            cause: cause.to_string(),
            killed_by: killed_by.map(str::to_string),
            observed: None,
            supervised: Some(false),
            record_error: None,
        }
    }
}

/// What a supervisor saw of its agent's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedExit {
    /// The main process's exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// OOM kills over all runs.
    pub oom_kills: u64,
    /// Restarts over the agent's life.
    pub restarts: u32,
    /// The exit in words (`exit code 1`, `killed by SIGKILL`).
    pub summary: Option<String>,
}

/// Why `spawn` refused: the line's `reason` and what goes with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The fleet's memory would reach the spawn threshold.
    Memory {
        /// The fleet's measured use, in percent of the budget.
        used_percent: f64,
        /// With the start reserves of starting agents and this one: what was held against
        /// the threshold.
        counted_percent: f64,
        /// The spawn threshold.
        threshold_percent: u8,
    },
    /// A workspace slot or port block pool is exhausted.
    Pool,
    /// The fleet has its maximum number of agents.
    Cap {
        /// Agents counted: live ones and spawns admitted and still at work.
        agents: usize,
        /// The cap.
        max_agents: usize,
    },
    /// Others wait in line (`spawn --queue`) and this spawn did not join it.
    Queue {
        /// Live waiters.
        waiting: usize,
    },
}

/// An event's name alone, for readers that only count or match (and the docs check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `spawn`
    Spawn,
    /// `restart`
    Restart,
    /// `restart_scheduled`
    RestartScheduled,
    /// `restart_failed`
    RestartFailed,
    /// `soft_timeout`
    SoftTimeout,
    /// `hard_timeout`
    HardTimeout,
    /// `oom_kill`
    OomKill,
    /// `stall`
    Stall,
    /// `crash_loop`
    CrashLoop,
    /// `exit`
    Exit,
    /// `supervisor_died`
    SupervisorDied,
    /// `relief_kill`
    ReliefKill,
    /// `supervisor_error`
    SupervisorError,
    /// `spawn_refused`
    SpawnRefused,
    /// `queued`
    Queued,
    /// `queue_left`
    QueueLeft,
}

impl Kind {
    /// Every event there is.
    pub const ALL: [Kind; 16] = [
        Kind::Spawn,
        Kind::Restart,
        Kind::RestartScheduled,
        Kind::RestartFailed,
        Kind::SoftTimeout,
        Kind::HardTimeout,
        Kind::OomKill,
        Kind::Stall,
        Kind::CrashLoop,
        Kind::Exit,
        Kind::SupervisorDied,
        Kind::ReliefKill,
        Kind::SupervisorError,
        Kind::SpawnRefused,
        Kind::Queued,
        Kind::QueueLeft,
    ];

    /// The `event` field's value (the serde tag of [`Event`]; a unit test holds them equal).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Spawn => "spawn",
            Kind::Restart => "restart",
            Kind::RestartScheduled => "restart_scheduled",
            Kind::RestartFailed => "restart_failed",
            Kind::SoftTimeout => "soft_timeout",
            Kind::HardTimeout => "hard_timeout",
            Kind::OomKill => "oom_kill",
            Kind::Stall => "stall",
            Kind::CrashLoop => "crash_loop",
            Kind::Exit => "exit",
            Kind::SupervisorDied => "supervisor_died",
            Kind::ReliefKill => "relief_kill",
            Kind::SupervisorError => "supervisor_error",
            Kind::SpawnRefused => "spawn_refused",
            Kind::Queued => "queued",
            Kind::QueueLeft => "queue_left",
        }
    }

    /// The kind named `name`; `None` for an event this version does not know.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl Event {
    /// Which event this is.
    pub fn kind(&self) -> Kind {
        match self {
            Event::Spawn { .. } => Kind::Spawn,
            Event::Restart { .. } => Kind::Restart,
            Event::RestartScheduled { .. } => Kind::RestartScheduled,
            Event::RestartFailed { .. } => Kind::RestartFailed,
            Event::SoftTimeout { .. } => Kind::SoftTimeout,
            Event::HardTimeout { .. } => Kind::HardTimeout,
            Event::OomKill { .. } => Kind::OomKill,
            Event::Stall { .. } => Kind::Stall,
            Event::CrashLoop { .. } => Kind::CrashLoop,
            Event::Exit(_) => Kind::Exit,
            Event::SupervisorDied { .. } => Kind::SupervisorDied,
            Event::ReliefKill { .. } => Kind::ReliefKill,
            Event::SupervisorError { .. } => Kind::SupervisorError,
            Event::SpawnRefused(_) => Kind::SpawnRefused,
            Event::Queued { .. } => Kind::Queued,
            Event::QueueLeft { .. } => Kind::QueueLeft,
        }
    }

    /// The event a journal line describes (its `event` name and fields; `ts`, `id` and
    /// anything else are ignored); `None` for a name this version does not know, or fields
    /// that do not fit it.
    pub fn from_line(line: &Value) -> Option<Event> {
        Kind::from_name(line.get("event")?.as_str()?)?;
        Event::deserialize(line).ok()
    }

    /// An event from its name and fields as the untyped writers of earlier versions built
    /// them, for the tests that hold the bytes of a line the same. The error says what does
    /// not fit.
    #[cfg(test)]
    pub(crate) fn from_fields(name: &str, fields: Value) -> serde_json::Result<Event> {
        let mut map = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => return Err(serde::de::Error::custom(format!("the fields of {name} are not an object: {other}"))),
        };
        map.insert("event".into(), Value::from(name));
        Event::deserialize(Value::Object(map))
    }

    /// The line's fields besides `ts` and `id`, `event` among them.
    pub fn to_fields(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Every variant is a struct of plain fields with string keys: serializing gives
            // an object. Were that ever broken, the line still says which event happened.
            _ => Map::from_iter([("event".to_string(), Value::from(self.kind().name()))]),
        }
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
