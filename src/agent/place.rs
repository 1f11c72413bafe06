//! Atomic placement: a command is inside its agent's cgroup before its first instruction.
//!
//! The child writes `0` ("myself") into the agent's `cgroup.procs` in every hierarchy
//! between fork and exec. The files are opened in the parent beforehand, so the child only
//! calls `write(2)`, which is async-signal-safe; if any write fails, exec never happens and
//! `spawn()` returns the error. Nothing of an agent ever runs unlimited.

use anyhow::{Context, Result};
use fleet_core::cgroup::Cgroup;
use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::Command,
};

/// Arranges for `cmd`'s child to join `cgroup` just before exec.
pub fn place_before_exec(cmd: &mut Command, cgroup: &Cgroup) -> Result<()> {
    let files: Vec<File> = cgroup
        .procs_files()
        .into_iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .create(false)
                .open(&path)
                .with_context(|| format!("cannot open {} to place the command", path.display()))
        })
        .collect::<Result<_>>()?;
    // SAFETY: the closure runs in the forked child, where only async-signal-safe calls are
    // allowed. It performs nothing but write(2) on descriptors opened above; it allocates
    // nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            for file in &files {
                let n = libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1);
                if n != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}
