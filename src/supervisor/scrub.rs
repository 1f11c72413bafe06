//! The supervisor forgets what `spawn` was called with. It is a fork of `spawn`, so its
//! command line (world-readable in `/proc/PID/cmdline`) still holds `--env KEY=VALUE`, and
//! its environment is the caller's whole environment, readable by any process of its uid
//! (an agent of a delegated fleet, or one run as the caller). The agent's own environment
//! is built at spawn and carried by the plan; the supervisor never reads its arguments or
//! variables after the fork.

use std::ops::Range;

/// The variables the supervisor keeps.
const KEPT: [&str; 2] = ["PATH", "FLEETCTL_FAILPOINT"];

/// Right after the fork: no longer dumpable (its `/proc/PID/environ` and `mem` then need
/// root, and no process of its uid may ptrace it), the environment emptied, and the memory
/// the kernel shows as its command line and environment overwritten with `title` and zeros
/// (the technique of BSD's setproctitle). `arg_env` is where those lie
/// ([`fleet_core::procs::OwnStat`]).
pub fn forget_the_callers_arguments(arg_env: Option<[Range<usize>; 2]>, title: &str) {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // Kept, as no secrets: PATH, which execvpe(3) searches when the start's own search of
    // the agent's PATH found nothing, and an armed failpoint (the fault tests).
    let kept: Vec<_> = KEPT.iter().filter_map(|name| std::env::var_os(name).map(|value| (*name, value))).collect();
    // SAFETY: the supervisor is single-threaded here (spawn forks while single-threaded), so
    // no other thread reads the environment while it is replaced.
    unsafe {
        libc::clearenv();
        for (name, value) in kept {
            std::env::set_var(name, value);
        }
    }
    let Some([args, env]) = arg_env else { return };
    let title = title.as_bytes();
    // SAFETY: both ranges are this process's own initial stack strings, as the kernel
    // reports them; after `clearenv` and with argv never read again nothing points into
    // them that is used. The title is cut to leave the area's last byte a NUL.
    unsafe {
        let shown = title.len().min(args.len() - 1);
        std::ptr::copy_nonoverlapping(title.as_ptr(), args.start as *mut u8, shown);
        std::ptr::write_bytes((args.start + shown) as *mut u8, 0, args.len() - shown);
        std::ptr::write_bytes(env.start as *mut u8, 0, env.len());
    }
}
