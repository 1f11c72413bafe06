//! The two files fleetctl installs on a systemd host, as one text each for `setup-host` and
//! the package (`cargo xtask deb`): the watcher's unit (`packaging/fleetctl.service` with the
//! executable filled in) and `/etc/fleet/fleet.toml` (where the fleet lives, its budget).
//! The package's conffile is [`packaged_config`], what a default `setup-host` writes on a
//! systemd host, so running it after the install changes nothing.

use super::systemd::FLEET_ROOT;
use std::path::Path;

/// The fleet root's built-in default where systemd does not run.
pub const FLEET_ROOT_WITHOUT_SYSTEMD: &str = "/fleet";

/// The unit's template; `@FLEETCTL@` is the executable.
const UNIT_TEMPLATE: &str = include_str!("../../../../packaging/fleetctl.service");

/// Where the package installs fleetctl.
pub const PACKAGED_EXE: &str = "/usr/bin/fleetctl";

/// The unit's name.
pub const UNIT: &str = "fleetctl.service";

/// `fleetctl.service` running `exe`.
pub fn unit_text(exe: &Path) -> String {
    UNIT_TEMPLATE.replace("@FLEETCTL@", &exe.display().to_string())
}

/// The unit as the package installs it (`/lib/systemd/system/fleetctl.service`).
pub fn packaged_unit() -> String {
    unit_text(Path::new(PACKAGED_EXE))
}

/// The config file as the package ships it: no fleet root (the built-in one follows the
/// host, so the same file serves a host with or without systemd), no budget of its own.
pub fn packaged_config() -> String {
    config_text(None, None)
}

/// `/etc/fleet/fleet.toml` for a fleet rooted at `cgroup_parent` (None: the built-in one,
/// which follows the host) with the budget `memory_max` (None: "max", the host's memory).
pub fn config_text(cgroup_parent: Option<&str>, memory_max: Option<u64>) -> String {
    let parent = match cgroup_parent {
        Some(parent) => format!("cgroup_parent = {}\n", quoted(parent)),
        None => format!(
            "# Unset, it follows the host: {FLEET_ROOT} (fleetctl's scope) where systemd\n\
             # runs, {FLEET_ROOT_WITHOUT_SYSTEMD} elsewhere.\n\
             # cgroup_parent = \"{FLEET_ROOT_WITHOUT_SYSTEMD}\"\n"
        ),
    };
    format!(
        "# fleetctl's settings: every fleetctl command reads this file, with or without sudo.\n\
         # `fleetctl setup-host` keeps the two values below; the other keys (docs/usage.md) are yours.\n\
         \n\
         [paths]\n\
         # The fleet root cgroup: every agent and its supervisor live below it.\n\
         {parent}\
         \n\
         [fleet]\n\
         # The fleet's memory budget, the fleet root's memory limit; \"max\": the host's memory.\n\
         memory_max = {}\n",
        quoted(&size_value(memory_max))
    )
}

/// The `fleet.memory_max` value for `bytes`: the largest whole K, M or G unit, "max" for none.
pub fn size_value(bytes: Option<u64>) -> String {
    let Some(bytes) = bytes else { return "max".into() };
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `text` with `key = value` set in `[section]`: the key's line replaced where it is, or
/// added at the top of the section, or the section added at the end. Every other line is
/// kept as written, so an operator's own keys and comments survive setup-host. The result is
/// parsed before it is returned: an edit that does not yield valid TOML holding `value` (a
/// file that sets the key as `section.key` elsewhere, say) is refused with one line.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> Result<String, String> {
    let edited = edit_key(text, section, key, value);
    let table: toml::Table = toml::from_str(&edited).map_err(|e| {
        format!(
            "cannot set {section}.{key} in this file without breaking it ({}): set it by hand",
            e.message().trim_end_matches('.')
        )
    })?;
    match table.get(section).and_then(|s| s.get(key)).and_then(|v| v.as_str()) {
        Some(held) if held == value => Ok(edited),
        _ => Err(format!(
            "cannot set {section}.{key} in this file: the edit does not hold {}; set it by hand",
            quoted(value)
        )),
    }
}

/// The text edit behind [`set_key`], unchecked.
fn edit_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let header = format!("[{section}]");
    // `[paths] # mine` is the header too.
    let is_header = |l: &str| {
        l.trim()
            .strip_prefix(header.as_str())
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim().starts_with('#'))
    };
    let line = format!("{key} = {}", quoted(value));
    let mut out: Vec<String> = text.lines().map(str::to_string).collect();
    let start = out.iter().position(|l| is_header(l));
    let Some(start) = start else {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        if !out.is_empty() {
            out.push(String::new());
        }
        out.extend([header, line]);
        return out.join("\n") + "\n";
    };
    let end =
        out.iter().skip(start + 1).position(|l| l.trim_start().starts_with('[')).map_or(out.len(), |i| start + 1 + i);
    let is_key = |l: &str| l.split('=').next().is_some_and(|k| k.trim() == key) && l.contains('=');
    match (start + 1..end).find(|i| is_key(&out[*i])) {
        Some(i) => out[i] = line,
        None => out.insert(start + 1, line),
    }
    out.join("\n") + "\n"
}

/// `value` as a TOML basic string.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_given_executable_as_a_notify_service() {
        let unit = unit_text(Path::new("/opt/fleetctl/bin/fleetctl"));
        assert!(unit.contains("\nExecStart=/opt/fleetctl/bin/fleetctl watch --auto-kill\n"), "{unit}");
        assert!(!unit.contains("@FLEETCTL@"));
        for line in [
            "Type=notify",
            "WatchdogSec=30s",
            "KillSignal=SIGINT",
            "Restart=always",
            "OOMScoreAdjust=-1000",
            "ManagedOOMPreference=omit",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing from\n{unit}");
        }
        // The watcher is not delegated: the fleet lives in the scope (a delegated service
        // cannot restart once it hands controllers down: 219/CGROUP on systemd 252).
        assert!(!unit.contains("Delegate="));
        assert!(packaged_unit().contains("ExecStart=/usr/bin/fleetctl watch --auto-kill"));
    }

    #[test]
    fn the_packaged_config_leaves_the_fleet_root_to_the_host_with_no_budget() {
        let text = packaged_config();
        let table: toml::Table = toml::from_str(&text).expect("valid TOML");
        // No fleet root: a host without systemd must not get the scope's (spawn would exit 69).
        assert_eq!(table["paths"].get("cgroup_parent"), None, "{text}");
        assert!(text.contains("follows the host"), "{text}");
        assert_eq!(table["fleet"]["memory_max"].as_str(), Some("max"));
        let budget: toml::Table = toml::from_str(&config_text(Some("/fleet"), Some(48 << 30))).expect("valid TOML");
        assert_eq!(budget["fleet"]["memory_max"].as_str(), Some("48G"));
        assert_eq!(budget["paths"]["cgroup_parent"].as_str(), Some("/fleet"));
        // setup-host's edit of the shipped file puts the key in [paths], as valid TOML.
        let set = set_key(&text, "paths", "cgroup_parent", FLEET_ROOT).expect("set");
        let table: toml::Table = toml::from_str(&set).expect("valid TOML");
        assert_eq!(table["paths"]["cgroup_parent"].as_str(), Some(FLEET_ROOT));
    }

    #[test]
    fn sizes_are_written_in_their_largest_whole_unit() {
        assert_eq!(size_value(None), "max");
        assert_eq!(size_value(Some(48 << 30)), "48G");
        assert_eq!(size_value(Some(1536 << 20)), "1536M");
        assert_eq!(size_value(Some(1000)), "1000");
    }

    #[test]
    fn setting_a_key_keeps_every_other_line() {
        let mine =
            "# mine\n[thresholds]\nspawn = 80\n\n[paths]\nstate_dir = \"/srv\"\ncgroup_parent = \"/old\" # here\n";
        let set = set_key(mine, "paths", "cgroup_parent", "/fleet").expect("set");
        assert_eq!(
            set,
            "# mine\n[thresholds]\nspawn = 80\n\n[paths]\nstate_dir = \"/srv\"\ncgroup_parent = \"/fleet\"\n"
        );
        let added = set_key(&set, "fleet", "memory_max", "4G").expect("set");
        assert!(added.ends_with("cgroup_parent = \"/fleet\"\n\n[fleet]\nmemory_max = \"4G\"\n"), "{added}");
        let again = set_key(&added, "fleet", "memory_max", "8G").expect("set");
        assert!(again.ends_with("[fleet]\nmemory_max = \"8G\"\n"), "{again}");
        let inserted =
            set_key("[paths]\nstate_dir = \"/srv\"\n[agent]\n", "paths", "cgroup_parent", "/f").expect("set");
        assert_eq!(inserted, "[paths]\ncgroup_parent = \"/f\"\nstate_dir = \"/srv\"\n[agent]\n");
        assert_eq!(set_key("", "fleet", "memory_max", "max").expect("set"), "[fleet]\nmemory_max = \"max\"\n");
    }

    #[test]
    fn a_header_with_a_comment_is_the_section() {
        let set = set_key("[paths] # mine\nstate_dir = \"/srv\"\n", "paths", "cgroup_parent", "/f").expect("set");
        assert_eq!(set, "[paths] # mine\ncgroup_parent = \"/f\"\nstate_dir = \"/srv\"\n");
    }

    #[test]
    fn an_edit_that_would_break_the_file_is_refused() {
        // A dotted key elsewhere: a second [paths] would be a duplicate table.
        let dotted = "paths.cgroup_parent = \"/old\"\n";
        let e = set_key(dotted, "paths", "cgroup_parent", "/f").expect_err("refused");
        assert!(e.starts_with("cannot set paths.cgroup_parent in this file"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        // A file that is not TOML to begin with.
        assert!(set_key("[paths\n", "paths", "cgroup_parent", "/f").is_err());
    }
}
