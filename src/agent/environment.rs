//! The agent's environment, made once at spawn and carried by the plan: nothing of the
//! caller's passes unless it is on a short allowlist or named.
//!
//! In order, a later source replacing an earlier one's value:
//! 1. from the caller, [`FROM_CALLER`] (and `LC_*`);
//! 2. `HOME`, `USER`, `LOGNAME` and `SHELL` of the user the agent runs as (with no passwd
//!    entry: its scratch dir, its uid, `/bin/sh`);
//! 3. `--env-file FILE` lines, `--pass-env NAME` (the caller's value), `--env KEY=VALUE`;
//! 4. the `FLEET_*` variables the supervisor sets (`supervisor/runner.rs`), which
//!    no source above may set.

use super::identity::Identity;
use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::Path,
};

/// What passes from the caller unnamed: the search path, language, terminal and time zone.
pub const FROM_CALLER: [&str; 7] = ["PATH", "LANG", "LANGUAGE", "TERM", "COLORTERM", "TZ", "NO_COLOR"];

/// The search path when the caller has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `spawn` was asked to add.
#[derive(Debug, Default, Clone)]
pub struct Additions<'a> {
    pub env_files: &'a [std::path::PathBuf],
    pub pass_env: &'a [String],
    pub env: &'a [String],
}

/// The agent's environment, and the names of the variables the additions set (for its record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentEnv {
    pub vars: Vec<(OsString, OsString)>,
    pub added: Vec<String>,
}

impl AgentEnv {
    fn set(&mut self, key: OsString, value: OsString) {
        match self.vars.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((key, value)),
        }
    }

    fn add(&mut self, key: &str, value: OsString) {
        if !self.added.iter().any(|k| k == key) {
            self.added.push(key.to_string());
        }
        self.set(key.into(), value);
    }
}

/// Builds the environment of an agent running as `who` from the caller's variables
/// (`caller`) and `additions`. The error is the one line for exit 2.
pub fn build(
    caller: &[(OsString, OsString)],
    who: &Identity,
    scratch: &Path,
    additions: &Additions,
) -> Result<AgentEnv, String> {
    let mut env = AgentEnv::default();
    let from_caller = |k: &OsStr| FROM_CALLER.iter().any(|a| k == OsStr::new(a)) || k.as_bytes().starts_with(b"LC_");
    for (key, value) in caller.iter().filter(|(k, _)| from_caller(k)) {
        env.set(key.clone(), value.clone());
    }
    if !env.vars.iter().any(|(k, _)| k == "PATH") {
        env.set("PATH".into(), DEFAULT_PATH.into());
    }
    set_identity(&mut env, who, scratch);
    for file in additions.env_files {
        for (key, value) in read_env_file(file)? {
            env.add(&key, value);
        }
    }
    for name in additions.pass_env {
        check_name(name, "--pass-env")?;
        let value = caller.iter().find(|(k, _)| k == name.as_str()).map(|(_, v)| v.clone()).ok_or_else(|| {
            format!("--pass-env {name}: {name} is not set in your environment; set it, or drop --pass-env {name}")
        })?;
        env.add(name, value);
    }
    for pair in additions.env {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("--env {pair}: give KEY=VALUE"))?;
        check_name(key, &format!("--env {pair}"))?;
        env.add(key, value.into());
    }
    Ok(env)
}

/// Sets `HOME`, `USER`, `LOGNAME` and `SHELL` for `who` (with no passwd entry: `scratch`,
/// the uid, `/bin/sh`), except those an addition set, which win.
pub fn set_identity(env: &mut AgentEnv, who: &Identity, scratch: &Path) {
    let name = who.name.clone().unwrap_or_else(|| who.credentials.uid.to_string());
    let home = who.home.clone().unwrap_or_else(|| scratch.to_path_buf());
    let shell = who.shell.clone().unwrap_or_else(|| "/bin/sh".into());
    let vars = [
        ("HOME", home.into_os_string()),
        ("USER", name.clone().into()),
        ("LOGNAME", name.into()),
        ("SHELL", shell.into_os_string()),
    ];
    for (key, value) in vars {
        if !env.added.iter().any(|k| k == key) {
            env.set(key.into(), value);
        }
    }
}

/// `KEY=VALUE` lines; `#` comments and blank lines are skipped. The value is taken as it
/// stands (no quotes removed), as docker's `--env-file` does.
fn read_env_file(file: &Path) -> Result<Vec<(String, OsString)>, String> {
    let text = std::fs::read(file).map_err(|e| format!("--env-file {}: cannot read it: {e}", file.display()))?;
    let mut vars = Vec::new();
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line.trim_ascii_start();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        let at = format!("{}:{}", file.display(), n + 1);
        let eq = trimmed.iter().position(|b| *b == b'=').ok_or_else(|| {
            format!("--env-file {at}: not KEY=VALUE: write one variable per line, or start a comment with #")
        })?;
        let key = String::from_utf8_lossy(&trimmed[..eq]).into_owned();
        check_name(&key, &format!("--env-file {at}"))?;
        vars.push((key, OsStr::from_bytes(&trimmed[eq + 1..]).to_owned()));
    }
    Ok(vars)
}

/// A variable name an addition may set: letters, digits and `_`, not starting with a digit,
/// and not `FLEET_*`, which fleetctl sets.
fn check_name(key: &str, source: &str) -> Result<(), String> {
    let valid = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "{source}: '{key}' is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    if key.starts_with("FLEET_") {
        return Err(format!(
            "{source}: {key} is fleetctl's to set (FLEET_* variables describe the agent's run); pick another name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::identity::auto_identity;

    fn caller() -> Vec<(OsString, OsString)> {
        [("PATH", "/bin"), ("LC_ALL", "C"), ("SECRET", "s3"), ("FLEET_STATE_DIR", "/x"), ("HOME", "/root")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    fn get<'a>(env: &'a AgentEnv, key: &str) -> Option<&'a OsStr> {
        env.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_os_str())
    }

    #[test]
    fn only_the_allowlist_passes_and_the_user_comes_from_the_identity() {
        let env =
            build(&caller(), &auto_identity(200_001), Path::new("/scratch/a"), &Additions::default()).expect("env");
        assert_eq!(get(&env, "PATH"), Some(OsStr::new("/bin")));
        assert_eq!(get(&env, "LC_ALL"), Some(OsStr::new("C")));
        assert_eq!(get(&env, "SECRET"), None);
        assert_eq!(get(&env, "FLEET_STATE_DIR"), None);
        assert_eq!(get(&env, "HOME"), Some(OsStr::new("/scratch/a")), "no passwd entry: its scratch dir");
        assert_eq!(get(&env, "USER"), Some(OsStr::new("200001")));
        assert!(env.added.is_empty());
    }

    #[test]
    fn additions_apply_in_order_and_only_their_names_are_kept() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("vars");
        std::fs::write(&file, "# comment\n\nA=from-file\nB= spaced = kept \r\n").expect("write");
        let (files, pass, set) = ([file], ["SECRET".to_string()], ["A=from-flag".to_string(), "C=".to_string()]);
        let additions = Additions { env_files: &files, pass_env: &pass, env: &set };
        let env = build(&caller(), &auto_identity(7), Path::new("/s"), &additions).expect("env");
        assert_eq!(get(&env, "A"), Some(OsStr::new("from-flag")), "--env wins over the file");
        assert_eq!(get(&env, "B"), Some(OsStr::new(" spaced = kept ")));
        assert_eq!(get(&env, "SECRET"), Some(OsStr::new("s3")), "passed by name");
        assert_eq!(get(&env, "C"), Some(OsStr::new("")));
        assert_eq!(env.added, ["A", "B", "SECRET", "C"]);
    }

    #[test]
    fn bad_additions_name_the_source() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("vars");
        std::fs::write(&file, "OK=1\njust words\n").expect("write");
        let files = [file.clone()];
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (unset, fleet_pass) = (strings(&["UNSET_HERE"]), strings(&["FLEET_STATE_DIR"]));
        let (no_eq, digit, fleet_set) = (strings(&["NOEQUALS"]), strings(&["1X=y"]), strings(&["FLEET_CGROUP=/"]));
        let cases: Vec<(Additions, String)> = vec![
            (Additions { env_files: &files, ..Default::default() }, format!("{}:2", file.display())),
            (Additions { pass_env: &unset, ..Default::default() }, "UNSET_HERE is not set".into()),
            (Additions { env: &no_eq, ..Default::default() }, "give KEY=VALUE".into()),
            (Additions { env: &digit, ..Default::default() }, "not a variable name".into()),
            (Additions { env: &fleet_set, ..Default::default() }, "fleetctl's to set".into()),
            (Additions { pass_env: &fleet_pass, ..Default::default() }, "fleetctl's to set".into()),
        ];
        for (additions, want) in cases {
            let err = build(&caller(), &auto_identity(7), Path::new("/s"), &additions).expect_err(&want);
            assert!(err.contains(&want), "{err} lacks {want}");
        }
    }
}
