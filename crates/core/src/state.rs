//! An agent's record on disk: written atomically by its supervisor (or by `kill` when the
//! supervisor is gone), read by every command without a daemon.

use crate::{
    Error, Result,
    cgroup::Limits,
    id::AgentId,
    labels::Labels,
    paths::write_atomic,
    procs::ProcessRef,
    timefmt::{serde_rfc3339, serde_rfc3339_opt},
};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// The version of the record's shape; bumped when a field changes meaning.
pub const STATE_SCHEMA: u32 = 1;

/// Where an agent is in its life. Names are the `status --json` contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// The supervisor is setting up, or waiting to restart after a failure.
    Starting,
    /// The agent's command is running.
    Running,
    /// It exited with code 0.
    Exited,
    /// It exited non-zero or died of a signal nobody here sent.
    Failed,
    /// The kernel's OOM killer ended it at its memory limit.
    OomKilled,
    /// Its hard timeout fired.
    TimedOut,
    /// An operator, relief or the watcher killed it.
    Killed,
    /// It failed too often too fast; restarts stopped.
    CrashLoop,
    /// It stalled on memory and was killed for it (`spawn --on-stall kill`).
    Stalled,
    /// Its supervisor is gone while the record says it is alive (derived when read).
    Orphaned,
}

impl AgentState {
    /// Whether the agent has ended for good.
    pub fn is_terminal(self) -> bool {
        !matches!(self, AgentState::Starting | AgentState::Running | AgentState::Orphaned)
    }

    /// Every state, in the documented order.
    pub const ALL: [AgentState; 10] = [
        AgentState::Starting,
        AgentState::Running,
        AgentState::Exited,
        AgentState::Failed,
        AgentState::OomKilled,
        AgentState::TimedOut,
        AgentState::Killed,
        AgentState::CrashLoop,
        AgentState::Stalled,
        AgentState::Orphaned,
    ];

    /// The contract name: `oom-killed`, `crash-loop` ...
    pub fn name(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Exited => "exited",
            AgentState::Failed => "failed",
            AgentState::OomKilled => "oom-killed",
            AgentState::TimedOut => "timed-out",
            AgentState::Killed => "killed",
            AgentState::CrashLoop => "crash-loop",
            AgentState::Stalled => "stalled",
            AgentState::Orphaned => "orphaned",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When to start an agent's command again after it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    Never,
    /// After a failure or OOM kill, with exponential backoff and a crash-loop breaker; never
    /// after an operator, relief or a timeout ended it.
    OnFailure,
}

/// How the agent's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// The code a shell would report: the exit code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
}

/// Everything fleetctl records about one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// [`STATE_SCHEMA`] when written.
    pub schema: u32,
    /// The agent's id.
    pub id: AgentId,
    /// Its state as last recorded.
    pub state: AgentState,
    /// Its working directory.
    pub workspace: PathBuf,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The supervisor process.
    #[serde(default)]
    pub supervisor: Option<ProcessRef>,
    /// The agent's main process, while it runs.
    #[serde(default)]
    pub pid: Option<i32>,
    /// When `spawn` was called.
    #[serde(with = "serde_rfc3339")]
    pub created_at: SystemTime,
    /// When the current run's command started.
    #[serde(default, with = "serde_rfc3339_opt")]
    pub started_at: Option<SystemTime>,
    /// When it ended for good.
    #[serde(default, with = "serde_rfc3339_opt")]
    pub ended_at: Option<SystemTime>,
    /// When SIGUSR1 is (or was) due.
    #[serde(default, with = "serde_rfc3339_opt")]
    pub soft_deadline: Option<SystemTime>,
    /// When SIGTERM and then the kill are due.
    #[serde(default, with = "serde_rfc3339_opt")]
    pub hard_deadline: Option<SystemTime>,
    /// Its cgroup limits.
    pub limits: Limits,
    /// The restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How many times it was restarted.
    #[serde(default)]
    pub restarts: u32,
    /// When a restart is scheduled (state `starting` after a failure).
    #[serde(default, with = "serde_rfc3339_opt")]
    pub next_restart_at: Option<SystemTime>,
    /// How the last run's main process ended.
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    /// Why it ended, in words: "OOM-killed at its 64.0 MiB limit", "killed by user" ...
    #[serde(default)]
    pub cause: Option<String>,
    /// Who killed it: `user`, `relief`, `watch`, `timeout`, `supervisor-signal`.
    #[serde(default)]
    pub killed_by: Option<String>,
    /// OOM kills seen in its cgroup over its life.
    #[serde(default)]
    pub oom_kills: u64,
    /// Its cgroup (the unified-tree path).
    pub cgroup: PathBuf,
    /// Its output log.
    pub log: PathBuf,
    /// Whether relief and the watcher must never choose it.
    #[serde(default)]
    pub protect: bool,
    /// The workspace pool slot it leases (`ws-042`), if its workspace is one.
    #[serde(default)]
    pub slot: Option<String>,
    /// The block of ports it leases.
    #[serde(default)]
    pub ports: Option<crate::lease::PortBlock>,
    /// Its scratch directory, removed when it ends.
    #[serde(default)]
    pub scratch: Option<PathBuf>,
    /// The user and group it runs as (`uid:gid`); with `--user auto`, the uid it leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The names (never the values) of the variables `--env`, `--env-file` and
    /// `--pass-env` added to its environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_added: Vec<String>,
    /// The most memory its last run used, read by the supervisor before removing the
    /// cgroup, so the number to resize it by outlives the run (after an OOM kill too).
    #[serde(default)]
    pub final_peak_bytes: Option<u64>,
    /// Its labels (`spawn --label`), which selectors match.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// What spawn was told beyond the fields above, so `restart` can start the same agent
    /// again; records written before it existed have none (restart then uses the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawned_with: Option<SpawnSettings>,
    /// Bytes admission counts for it while it uses less (`--memory-reserve`); None: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reserve: Option<u64>,
    /// Since when the current run has stalled on memory (see the `stall` event); None while
    /// it has not, or once the pressure eased.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_rfc3339_opt")]
    pub stalled_since: Option<SystemTime>,
    /// The signal relief and the guard send its main process before they kill it, so it
    /// can save its state (`spawn --save-signal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_signal: Option<String>,
}

/// The settings of a spawn that the rest of the record does not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnSettings {
    /// The soft timeout in milliseconds; none for off.
    pub soft_timeout_ms: Option<u64>,
    /// The hard timeout in milliseconds; none for off.
    pub hard_timeout_ms: Option<u64>,
    /// SIGTERM-to-kill grace of the hard timeout, in milliseconds.
    pub kill_grace_ms: u64,
    /// The first restart delay, in milliseconds.
    pub restart_backoff_ms: u64,
    /// Failures that stop restarts.
    pub crash_loop_after: u32,
    /// The log's rotation size.
    pub log_max_size: u64,
    /// `--user` as given (`auto`, a name, `UID:GID`); none for the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `--cwd` as given; none for the workspace itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// `--allow-new-privs`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_new_privs: bool,
    /// `--stall-signal`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_signal: Option<String>,
    /// `--on-stall kill`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_stall_kill: bool,
}

impl AgentRecord {
    /// A record of agent `id` that has not started: `starting`, created now, no supervisor,
    /// pid, times, history or leases; workspace and command empty. Callers fill in what they
    /// know (`spawn` its plan; a view from the cgroup what the cgroup tells).
    pub fn new(id: AgentId, limits: Limits, cgroup: PathBuf, log: PathBuf) -> AgentRecord {
        AgentRecord {
            schema: STATE_SCHEMA,
            id,
            state: AgentState::Starting,
            workspace: PathBuf::new(),
            command: Vec::new(),
            supervisor: None,
            pid: None,
            created_at: SystemTime::now(),
            started_at: None,
            ended_at: None,
            soft_deadline: None,
            hard_deadline: None,
            limits,
            restart: RestartPolicy::Never,
            restarts: 0,
            next_restart_at: None,
            exit: None,
            cause: None,
            killed_by: None,
            oom_kills: 0,
            cgroup,
            log,
            protect: false,
            slot: None,
            ports: None,
            scratch: None,
            user: None,
            env_added: Vec::new(),
            final_peak_bytes: None,
            labels: Labels::new(),
            spawned_with: None,
            memory_reserve: None,
            stalled_since: None,
            save_signal: None,
        }
    }

    /// Loads a record; a missing file is `Ok(None)`, a corrupt one an error naming it.
    pub fn load(path: &Path) -> Result<Option<AgentRecord>> {
        // Every `status` and `memory` reads each agent's record: the fewest system calls, and
        // one read when that brought all of it (it parses).
        let mut parsed = None;
        let read = crate::cgroup::files::read_whole_unless(path, |b| {
            parsed = serde_json::from_slice(b).ok();
            parsed.is_some()
        });
        let bytes = match read {
            Ok(_) if parsed.is_some() => return Ok(parsed),
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Parse { path: path.to_path_buf(), detail: e.to_string() })
    }

    /// Saves the record atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text =
            serde_json::to_vec_pretty(self).map_err(|e| Error::Parse { path: path.into(), detail: e.to_string() })?;
        text.push(b'\n');
        write_atomic(path, &text).map_err(|e| Error::io("write", path, e))
    }
}

/// Who asked for an agent to be killed, written before the kill so whoever records the end
/// (usually the supervisor) names the right cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    /// `user`, `relief`, `watch`.
    pub by: String,
    /// Extra words for the cause ("fleet at 96.1 %").
    #[serde(default)]
    pub detail: Option<String>,
    /// When it was asked.
    #[serde(with = "serde_rfc3339")]
    pub at: SystemTime,
    /// The process doing the killing: while it lives, the end it causes is its to record.
    #[serde(default)]
    pub killer: Option<ProcessRef>,
}

impl KillRequest {
    /// Loads a request, if there is a readable one.
    pub fn load(path: &Path) -> Option<KillRequest> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Saves it atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| Error::Parse { path: path.into(), detail: e.to_string() })?;
        write_atomic(path, &text).map_err(|e| Error::io("write", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written by schema 1, committed so a later change that cannot read it fails.
    const FIXTURE_V1: &str = include_str!("../tests/fixtures/state-v1.json");

    #[test]
    fn old_records_still_load() {
        let rec: AgentRecord = serde_json::from_str(FIXTURE_V1).expect("schema 1 fixture must load");
        assert_eq!(rec.id.as_str(), "agent-001");
        assert_eq!(rec.state, AgentState::OomKilled);
        assert_eq!(rec.exit.map(|e| e.shell_code()), Some(137));
    }

    #[test]
    fn save_then_load_round_trips() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("state.json");
        let mut rec: AgentRecord = serde_json::from_str(FIXTURE_V1).expect("fixture");
        rec.state = AgentState::Running;
        rec.save(&path).expect("save");
        assert_eq!(AgentRecord::load(&path).expect("load"), Some(rec));
        assert_eq!(AgentRecord::load(&tmp.path().join("none")).expect("missing is fine"), None);
    }

    #[test]
    fn corrupt_records_name_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("state.json");
        std::fs::write(&path, "{\"schema\": 1, \"id\": ").expect("write");
        let err = AgentRecord::load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn state_names_are_the_contract() {
        let names: Vec<String> = AgentState::ALL
            .iter()
            .map(|s| serde_json::to_value(s).expect("ser").as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            names,
            [
                "starting",
                "running",
                "exited",
                "failed",
                "oom-killed",
                "timed-out",
                "killed",
                "crash-loop",
                "stalled",
                "orphaned"
            ]
        );
        for s in AgentState::ALL {
            assert_eq!(serde_json::to_value(s).expect("ser"), s.name());
        }
    }
}
