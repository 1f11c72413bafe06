//! Starting the agent's command the way posix_spawn(3) does: clone(2) with `CLONE_VM |
//! CLONE_VFORK`. The child borrows the supervisor's memory until its exec instead of copying
//! it, and the supervisor sleeps until then. std's `Command` has to fork (copy the page
//! tables, then fault on every page either process writes) as soon as a step must run
//! between fork and exec, and the agent needs several: see [`crate::agent::place`].
//!
//! Everything the child uses is prepared before the clone: NUL-terminated argv and envp, the
//! workspace path, the descriptors of the `cgroup.procs` files. Sharing memory with a
//! suspended parent, the child only makes async-signal-safe calls on them, returns into
//! none of the parent's code, and ends in `execvpe` or `_exit`; a failure's errno and step
//! reach the parent through the shared memory.

use crate::agent::place;
use anyhow::{Context, Result};
use fleet_core::cgroup::Cgroup;
use std::{
    ffi::{CString, OsStr, OsString},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    sync::atomic::{AtomicI32, Ordering},
};

/// What to start, and where.
pub struct Launch<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub cwd: &'a std::path::Path,
    /// Added to (`Some`) or removed from (`None`) the supervisor's environment.
    pub env: Vec<(&'a str, Option<OsString>)>,
    pub stdin: OwnedFd,
    /// The agent's stdout and stderr.
    pub output: OwnedFd,
    pub cgroup: &'a Cgroup,
}

/// The steps the child takes, in order; a failure names the one that failed.
const STEPS: [&str; 4] = ["set up its descriptors", "enter the workspace", "join its cgroup", "exec"];

/// The child's stack. execvpe builds each candidate path on the stack (at most PATH_MAX plus
/// a name), and a script without `#!` gets its argv copied there for /bin/sh.
const STACK_SIZE: usize = 256 << 10;

/// Starts the command in `cgroup` and returns its pid once it has exec'd.
pub fn launch(spec: Launch) -> Result<i32> {
    let cstr = |s: &OsStr| CString::new(s.as_bytes()).context("a NUL byte in the command or its environment");
    let argv_owned: Vec<CString> = std::iter::once(spec.program)
        .chain(spec.args.iter().map(String::as_str))
        .map(|a| cstr(OsStr::new(a)))
        .collect::<Result<_>>()?;
    let envp_owned = environment(&spec.env).into_iter().map(|kv| cstr(&kv)).collect::<Result<Vec<_>>>()?;
    let argv = null_terminated(&argv_owned);
    let envp = null_terminated(&envp_owned);
    let cwd = cstr(spec.cwd.as_os_str())?;
    let procs = place::open_procs(spec.cgroup)?;
    let (stdin, output) = (spec.stdin.as_raw_fd(), spec.output.as_raw_fd());
    let (failed_step, failed_errno) = (AtomicI32::new(-1), AtomicI32::new(0));
    let (step_slot, errno_slot) = (&failed_step, &failed_errno);
    let mut stack = Stack::new()?;

    let child = move || -> isize {
        // SAFETY: this runs in the clone child, on its own stack, in memory it shares with
        // the suspended supervisor: only async-signal-safe calls on data prepared above, and
        // it leaves by exec or _exit, never by returning into the parent's frames.
        unsafe {
            let fail = |step: i32| -> isize {
                errno_slot.store(*libc::__errno_location(), Ordering::Relaxed);
                step_slot.store(step, Ordering::Relaxed);
                libc::_exit(127)
            };
            // The supervisor ignores SIGPIPE, and an ignored disposition survives exec.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            place::reset_inherited();
            if libc::dup2(stdin, 0) < 0 || libc::dup2(output, 1) < 0 || libc::dup2(output, 2) < 0 {
                return fail(0);
            }
            if libc::chdir(cwd.as_ptr()) < 0 {
                return fail(1);
            }
            // Its own process group, so signals meant for the supervisor's never reach it.
            libc::setpgid(0, 0);
            if place::join(&procs).is_err() {
                return fail(2);
            }
            libc::execvpe(argv_owned[0].as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(3)
        }
    };
    let flags = nix::sched::CloneFlags::CLONE_VM | nix::sched::CloneFlags::CLONE_VFORK;
    // SAFETY: the child runs `child` on `stack` (large enough: see STACK_SIZE, with a guard
    // page below it) and execs or exits; CLONE_VFORK keeps this thread, and so every value
    // the child borrows, suspended until then. The supervisor is single-threaded and has no
    // signal handlers installed, so nothing else can run on the shared memory meanwhile.
    let pid = unsafe { nix::sched::clone(Box::new(child), stack.as_mut(), flags, Some(libc::SIGCHLD)) }
        .context("cannot start the agent's process")?;
    let step = failed_step.load(Ordering::Relaxed);
    if step >= 0 {
        let _ = nix::sys::wait::waitpid(pid, None);
        let err = std::io::Error::from_raw_os_error(failed_errno.load(Ordering::Relaxed));
        return Err(anyhow::Error::new(err).context(format!("cannot {}", STEPS[step as usize])));
    }
    Ok(pid.as_raw())
}

/// The supervisor's environment with `changes` applied, as `KEY=VALUE` strings.
fn environment(changes: &[(&str, Option<OsString>)]) -> Vec<OsString> {
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !changes.iter().any(|(c, _)| k == c)).collect();
    env.extend(changes.iter().filter_map(|(k, v)| Some((OsString::from(k), v.clone()?))));
    env.into_iter()
        .map(|(mut k, v)| {
            k.push("=");
            k.push(v);
            k
        })
        .collect()
}

/// The array of pointers execve(2) takes, ending in a null pointer.
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// The child's stack: its own mapping, with an inaccessible page below it, so an overflow
/// faults instead of writing into the supervisor's memory.
struct Stack {
    base: std::ptr::NonNull<libc::c_void>,
}

const GUARD: usize = 4096;

impl Stack {
    fn new() -> Result<Stack> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if p == libc::MAP_FAILED || libc::mprotect(p, GUARD, libc::PROT_NONE) != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot map a stack for the agent's start");
            }
            p
        };
        Ok(Stack { base: std::ptr::NonNull::new(base).context("mmap returned null")? })
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping above the guard page is ours, readable and writable, for as long
        // as `self` lives.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().cast::<u8>().add(GUARD), STACK_SIZE) }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; the child has exec'd or exited.
        unsafe { libc::munmap(self.base.as_ptr(), STACK_SIZE + GUARD) };
    }
}
