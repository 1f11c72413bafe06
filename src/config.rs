//! The optional config file (`/etc/fleet/fleet.toml`): thresholds and agent defaults.
//! Flags win over environment variables, which win over this file, which wins over the
//! built-in defaults.

use anyhow::{Context, Result};
use fleet_core::size::Limit;
use serde::Deserialize;
use std::{path::Path, time::Duration};

/// Where the config file is looked for when neither `--config` nor `FLEET_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/fleet/fleet.toml";

/// The file's contents; every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[paths]`.
    #[serde(default)]
    pub paths: PathsConfig,
    /// `[thresholds]`.
    #[serde(default)]
    pub thresholds: ThresholdsConfig,
    /// `[agent]`.
    #[serde(default)]
    pub agent: AgentConfig,
}

/// `[paths]`: the same names as the flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub cgroup_parent: Option<String>,
    pub state_dir: Option<std::path::PathBuf>,
    pub log_dir: Option<std::path::PathBuf>,
    pub workspace_root: Option<std::path::PathBuf>,
    pub scratch_root: Option<std::path::PathBuf>,
    pub lock_dir: Option<std::path::PathBuf>,
}

/// `[thresholds]`: percentages of the fleet's memory budget.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// Stop spawning at or above this (85).
    pub spawn: Option<u8>,
    /// Start killing at or above this (95).
    pub kill: Option<u8>,
}

/// `[agent]`: defaults for `spawn` and `cgroup-create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub memory_max: Option<String>,
    pub memory_high: Option<String>,
    pub swap_max: Option<String>,
    pub pids_max: Option<String>,
    pub soft_timeout: Option<String>,
    pub hard_timeout: Option<String>,
    pub kill_grace: Option<String>,
    pub log_max_size: Option<String>,
    /// Where `--ports` blocks come from, "20000-29999".
    pub port_range: Option<String>,
    /// What an agent still starting counts for at least at admission, "32M" (`0`: its use).
    pub start_reserve: Option<String>,
    /// Who agents run as when `spawn --user` is not given: a user, `USER:GROUP`, or `auto`.
    pub user: Option<String>,
    /// Where `auto` leases each agent's uid from, "200000-200999".
    pub uid_range: Option<String>,
}

impl Config {
    /// Loads `explicit` (which must exist), or the default path if it exists, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => p,
            None if Path::new(DEFAULT_CONFIG).exists() => Path::new(DEFAULT_CONFIG),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        config.check().with_context(|| format!("invalid config {}", path.display()))?;
        Ok(config)
    }

    /// Rejects values now rather than at the first spawn that needs them.
    fn check(&self) -> Result<()> {
        for (key, value) in [
            ("memory_max", &self.agent.memory_max),
            ("memory_high", &self.agent.memory_high),
            ("swap_max", &self.agent.swap_max),
        ] {
            if let Some(v) = value {
                v.parse::<Limit>().map_err(|e| anyhow::anyhow!("agent.{key}: {e}"))?;
            }
        }
        if let Some(v) = &self.agent.start_reserve {
            match v.parse::<Limit>() {
                Ok(Limit::Bytes(_)) => {}
                _ => anyhow::bail!(
                    "agent.start_reserve = \"{v}\": give a size such as \"32M\", or \"0\" to count starting agents at their use alone"
                ),
            }
        }
        if let Some(v) = &self.agent.pids_max {
            fleet_cli::parse_pids(v).map_err(|e| anyhow::anyhow!("agent.pids_max: {e}"))?;
        }
        for (key, value) in [("soft_timeout", &self.agent.soft_timeout), ("hard_timeout", &self.agent.hard_timeout)] {
            if let Some(v) = value {
                fleet_cli::parse_timeout(v).map_err(|e| anyhow::anyhow!("agent.{key}: {e}"))?;
            }
        }
        if let Some(v) = &self.agent.port_range {
            fleet_cli::parse_port_range(v).map_err(|e| anyhow::anyhow!("agent.port_range: {e}"))?;
        }
        if let Some(v) = &self.agent.uid_range {
            crate::agent::identity::parse_uid_range(v).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if let Some(v) = &self.agent.kill_grace {
            fleet_cli::parse_duration(v).map_err(|e| anyhow::anyhow!("agent.kill_grace: {e}"))?;
        }
        for (key, value) in [("spawn", self.thresholds.spawn), ("kill", self.thresholds.kill)] {
            if let Some(v) = value {
                anyhow::ensure!((1..=100).contains(&v), "thresholds.{key} = {v}: use a percentage from 1 to 100");
            }
        }
        Ok(())
    }

    /// A limit from `[agent]`, already checked by [`Config::load`].
    pub fn limit(value: &Option<String>) -> Option<Limit> {
        value.as_deref().and_then(|v| v.parse().ok())
    }

    /// A duration from `[agent]`, already checked.
    pub fn duration(value: &Option<String>) -> Option<Duration> {
        value.as_deref().and_then(|v| fleet_cli::parse_duration(v).ok())
    }
}
