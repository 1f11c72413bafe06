//! Kernel parameters for hundreds of agents, read and written through `<proc>/sys`.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A kernel parameter fleetctl wants at least this high, and why.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Dotted name, as in `sysctl -a`.
    pub key: &'static str,
    /// The floor: a host already above it is left alone.
    pub min: u64,
    /// One line for the drop-in file and `doctor`.
    pub why: &'static str,
}

/// What a host of 300+ agents needs (each value is justified in docs/setup-host.md).
pub const RECOMMENDED: [Param; 6] = [
    Param {
        key: "kernel.pid_max",
        min: 4_194_304,
        why: "300 agents x pids.max 512 = 153,600 pids, beyond the 32,768 default",
    },
    Param {
        key: "kernel.threads-max",
        min: 1_048_576,
        why: "threads count too: compilers and test runners start one per core per agent",
    },
    Param {
        key: "fs.inotify.max_user_watches",
        min: 1_048_576,
        why: "every agent's file watchers (cargo, tsserver, vite) run as the same user",
    },
    Param {
        key: "fs.inotify.max_user_instances",
        min: 8_192,
        why: "128 by default: a handful of agents exhaust it and watchers fail with EMFILE",
    },
    Param { key: "fs.file-max", min: 2_097_152, why: "hundreds of agents x thousands of open files each" },
    Param {
        key: "vm.max_map_count",
        min: 1_048_576,
        why: "JVMs, browsers and linkers map many regions; 65,530 by default",
    },
];

/// The file behind `key` under `<proc_root>/sys`.
pub fn path(proc_root: &Path, key: &str) -> PathBuf {
    proc_root.join("sys").join(key.replace('.', "/"))
}

/// Reads a numeric parameter.
pub fn read(proc_root: &Path, key: &str) -> Result<u64> {
    let p = path(proc_root, key);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    text.trim().parse().map_err(|_| Error::Parse { path: p, detail: format!("not a number: {:?}", text.trim()) })
}

/// Writes a numeric parameter.
pub fn write(proc_root: &Path, key: &str, value: u64) -> Result<()> {
    let p = path(proc_root, key);
    std::fs::write(&p, value.to_string()).map_err(|e| Error::io("write", &p, e))
}

/// The drop-in file's text: one `key = value` per parameter, each with its reason.
pub fn drop_in(params: &[(Param, u64)]) -> String {
    let mut text = String::from("# Written by `fleetctl setup-host`: limits for hundreds of concurrent agents.\n");
    for (p, value) in params {
        text.push_str(&format!("# {}\n{} = {value}\n", p.why, p.key));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys_paths() {
        assert_eq!(
            path(Path::new("/proc"), "fs.inotify.max_user_watches"),
            PathBuf::from("/proc/sys/fs/inotify/max_user_watches")
        );
        assert_eq!(path(Path::new("/p"), "kernel.threads-max"), PathBuf::from("/p/sys/kernel/threads-max"));
    }

    #[test]
    fn the_host_has_every_recommended_parameter() {
        for p in RECOMMENDED {
            assert!(read(Path::new("/proc"), p.key).is_ok(), "{}", p.key);
        }
    }
}
