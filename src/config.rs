//! The config file (`/etc/fleet/fleet.toml`, or `--config`), read as raw values: its shape
//! and key names checked, each value kept as written. `settings.rs` turns the values into
//! typed settings, once; a key this file does not list is refused here, with the key named
//! and the nearest known one suggested.

use crate::exit::{Exit, Fail};
use anyhow::{Context, Result};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// Where the config file is looked for when neither `--config` nor `FLEET_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/fleet/fleet.toml";

/// Every key the file may hold, as `section.key`.
pub const KEYS: &[&str] = &[
    "paths.cgroup_parent",
    "paths.state_dir",
    "paths.log_dir",
    "paths.workspace_root",
    "paths.scratch_root",
    "paths.lock_dir",
    "fleet.memory_max",
    "thresholds.spawn",
    "thresholds.kill",
    "thresholds.max_agents",
    "agent.memory_max",
    "agent.memory_high",
    "agent.swap_max",
    "agent.pids_max",
    "agent.soft_timeout",
    "agent.hard_timeout",
    "agent.kill_grace",
    "agent.log_max_size",
    "agent.port_range",
    "agent.start_reserve",
    "agent.user",
    "agent.uid_range",
    "agent.memory_reserve",
    "agent.stall_threshold",
    "agent.stall_after",
];

/// The file's values by key, as written; no file means no values.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: Option<PathBuf>,
    values: BTreeMap<&'static str, toml::Value>,
}

impl ConfigFile {
    /// Reads `explicit` (which must exist), or the default path if it exists, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
        let path = match explicit {
            Some(p) => p,
            None if Path::new(DEFAULT_CONFIG).exists() => Path::new(DEFAULT_CONFIG),
            None => return Ok(ConfigFile::default()),
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        ConfigFile::parse(path, &text).map_err(|problem| Fail::error(Exit::Failure, problem))
    }

    /// Parses the text of the file at `path`; an error is one line naming the file.
    pub fn parse(path: &Path, text: &str) -> std::result::Result<ConfigFile, String> {
        let at = path.display();
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("{at}: {}", syntax_error(text, &e)))?;
        let mut values = BTreeMap::new();
        for (section, body) in table {
            let Some(body) = body.as_table() else {
                let problem = match KEYS.iter().any(|k| k.split('.').next() == Some(section.as_str())) {
                    true => format!("`{section}` is a section: write [{section}] and its keys on the lines below it"),
                    false => unknown(&section),
                };
                return Err(format!("{at}: {problem}"));
            };
            for (key, value) in body {
                let full = format!("{section}.{key}");
                let Some(known) = KEYS.iter().find(|k| **k == full) else {
                    return Err(format!("{at}: {}", unknown(&full)));
                };
                values.insert(*known, value.clone());
            }
        }
        Ok(ConfigFile { path: Some(path.to_path_buf()), values })
    }

    /// The value of `key` (one of [`KEYS`]), if the file gives one.
    pub fn get(&self, key: &'static str) -> Option<&toml::Value> {
        debug_assert!(KEYS.contains(&key), "{key} is not a config key");
        self.values.get(key)
    }

    /// The one-line error for `key`'s value: the file, the key and its value as written, then
    /// `problem` (what is wrong; what to do).
    pub fn bad_value(&self, key: &str, problem: &str) -> String {
        let value = self.values.get(key).map(|v| v.to_string()).unwrap_or_default();
        self.error(&format!("{key} = {value}: {problem}"))
    }

    /// A one-line error about this file: its path, then `problem`.
    pub fn error(&self, problem: &str) -> String {
        format!("{}: {problem}", self.path.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG)).display())
    }
}

/// A TOML syntax error on one line: where it is and what the parser expected, without the
/// excerpt of the file it draws beneath.
fn syntax_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}: fix the TOML there")
        }
        None => format!("{message}: fix the TOML"),
    }
}

/// The message for a key (or section) fleetctl does not know: the nearest known key, or the
/// ones it could have been.
fn unknown(key: &str) -> String {
    match nearest(key) {
        Some(near) => format!("unknown key `{key}`; did you mean `{near}`?"),
        None => format!("unknown key `{key}`; the keys are {}", KEYS.join(", ")),
    }
}

/// The known key closest to `key`: the same name in another section (`agent.state_dir` for
/// `paths.state_dir`), or one a typo or two away.
fn nearest(key: &str) -> Option<&'static str> {
    let name = |k: &str| k.rsplit('.').next().unwrap_or_default().to_string();
    // Several sections may have the name (`agent.memory_max`, `fleet.memory_max`): the
    // section closest to the one written wins.
    let moved = KEYS.iter().filter(|k| name(k) == name(key)).min_by_key(|k| strsim::osa_distance(key, k));
    if let Some(moved) = moved {
        return Some(moved);
    }
    let (distance, best) = KEYS.iter().map(|k| (strsim::osa_distance(key, k), *k)).min()?;
    // Optimal string alignment: a swap of two neighbours, the commonest typo (`memroy`),
    // counts as one edit. A third of the name may be wrong; beyond that it is a guess.
    (distance <= (key.len() / 3).max(1)).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("/etc/fleet/fleet.toml"), text)
    }

    #[test]
    fn known_keys_are_kept_as_written() {
        let file = parse("[agent]\nlog_max_size = \"abc\"\n[thresholds]\nspawn = 96\n").expect("parses");
        assert_eq!(file.get("agent.log_max_size").and_then(|v| v.as_str()), Some("abc"));
        assert_eq!(file.get("thresholds.spawn").and_then(|v| v.as_integer()), Some(96));
        assert!(file.get("agent.memory_max").is_none());
        assert_eq!(
            file.bad_value("agent.log_max_size", "not a size"),
            "/etc/fleet/fleet.toml: agent.log_max_size = \"abc\": not a size"
        );
    }

    #[test]
    fn a_misspelt_key_names_the_nearest() {
        let err = parse("[agent]\nmemroy_max = \"4G\"\n").expect_err("refused");
        assert_eq!(err, "/etc/fleet/fleet.toml: unknown key `agent.memroy_max`; did you mean `agent.memory_max`?");
        let err = parse("[agent]\nstate_dir = \"/x\"\n").expect_err("refused");
        assert!(err.ends_with("did you mean `paths.state_dir`?"), "{err}");
        let err = parse("[agnet]\nmemory_max = \"4G\"\n").expect_err("refused");
        assert!(err.ends_with("unknown key `agnet.memory_max`; did you mean `agent.memory_max`?"), "{err}");
        let err = parse("spawn = 90\n").expect_err("refused");
        assert!(err.ends_with("unknown key `spawn`; did you mean `thresholds.spawn`?"), "{err}");
        let err = parse("[agent]\nzzz = 1\n").expect_err("refused");
        assert!(err.contains("unknown key `agent.zzz`; the keys are paths.cgroup_parent,"), "{err}");
    }

    #[test]
    fn every_error_is_one_line() {
        for text in ["[agent\nx = 1\n", "agent = 3\n", "[agent]\nmemory_max = \"4G\"\nmemory_max = \"5G\"\n", "x = \n"]
        {
            let err = parse(text).expect_err("refused");
            assert!(!err.contains('\n'), "{text:?}: {err}");
            assert!(err.starts_with("/etc/fleet/fleet.toml: "), "{err}");
        }
        assert!(parse("[agent\n").expect_err("refused").contains("line 1, column"));
        assert!(parse("agent = 3\n").expect_err("refused").contains("write [agent]"));
    }
}
