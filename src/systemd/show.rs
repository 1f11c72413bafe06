//! What systemd says about a unit (`systemctl show -p …`) and itself (`systemctl
//! --version`), read through its own tool: doctor's and setup-host's view, never spawn's.

use std::{collections::BTreeMap, process::Command};

/// The systemd version fleetctl is known to work with (Debian 12's).
pub const KNOWN_GOOD: u32 = 252;

/// `systemctl show` output: one `Key=Value` per line.
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.to_string())).collect()
}

/// The version from `systemctl --version`'s first line (`systemd 252 (252.22-1~deb12u1)`).
pub fn parse_version(text: &str) -> Option<u32> {
    let first = text.lines().next()?;
    let mut words = first.split_whitespace();
    (words.next()? == "systemd").then_some(())?;
    words.next()?.parse().ok()
}

/// `properties` of `unit`, or why they could not be read.
pub fn show(unit: &str, properties: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut cmd = Command::new("systemctl");
    cmd.arg("show").arg(unit);
    for p in properties {
        cmd.arg("-p").arg(p);
    }
    let out = cmd.output().map_err(|e| format!("cannot run systemctl: {e}"))?;
    if !out.status.success() {
        return Err(format!("systemctl show {unit}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(parse_show(&String::from_utf8_lossy(&out.stdout)))
}

/// The running systemd's version.
pub fn version() -> Option<u32> {
    let out = Command::new("systemctl").arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_is_read_as_keys_and_values() {
        let text = "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nDelegate=yes\n\
                    TasksMax=infinity\nManagedOOMPreference=omit\nExecStart={ path=/usr/bin/fleetctl ; argv[]=x=y }\n";
        let shown = parse_show(text);
        assert_eq!(shown["ActiveState"], "active");
        assert_eq!(shown["TasksMax"], "infinity");
        assert_eq!(shown["ManagedOOMPreference"], "omit");
        assert_eq!(shown["ExecStart"], "{ path=/usr/bin/fleetctl ; argv[]=x=y }");
        assert!(parse_show("").is_empty());
    }

    #[test]
    fn the_version_is_the_second_word_of_the_first_line() {
        assert_eq!(parse_version("systemd 252 (252.22-1~deb12u1)\n+PAM +AUDIT\n"), Some(252));
        assert_eq!(parse_version("systemd 255 (255.4-1ubuntu8)\n"), Some(255));
        assert_eq!(parse_version("elogind 246\n"), None);
        assert_eq!(parse_version(""), None);
    }
}
