//! Starting the agent's command the way posix_spawn(3) does: clone(2) with `CLONE_VM |
//! CLONE_VFORK`. The child borrows the supervisor's memory until its exec instead of copying
//! it, and the supervisor sleeps until then. std's `Command` has to fork (copy the page
//! tables, then fault on every page either process writes) as soon as a step must run
//! between fork and exec, and the agent needs several: see [`crate::agent::place`].
//!
//! Everything the child uses is prepared before the clone, most of it before the cgroup
//! exists ([`Prepared`]): NUL-terminated argv and envp, the workspace path, the program's
//! path, and (from the caller) the descriptors of the `cgroup.procs` files. Sharing memory
//! with a suspended parent, the child only makes async-signal-safe calls on them, returns
//! into none of the parent's code, and ends in `execvpe` or `_exit`; a failure's errno and
//! step reach the parent through the shared memory.

use crate::agent::place;
use anyhow::{Context, Result};
use std::{
    ffi::{CString, OsStr, OsString},
    fs::File,
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
}

/// The steps the child takes, in order; a failure names the one that failed.
const STEPS: [&str; 4] = ["set up its descriptors", "enter the workspace", "join its cgroup", "exec"];

/// The child's stack. execvpe builds each candidate path on the stack (at most PATH_MAX plus
/// a name), and glibc's copies a script's argv there for /bin/sh.
const STACK_SIZE: usize = 256 << 10;

/// A launch made ready before its cgroup exists: everything the child needs but the
/// cgroup's descriptors, so that starting it costs one clone and one exec.
pub struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    /// Where the search of `PATH` finds the program, tried first (see [`search_path`]).
    found: Option<CString>,
    /// `/bin/sh SCRIPT ARGS…`, for a found program that the kernel cannot exec (a script
    /// without `#!`), which execvp(3) runs with the shell. glibc's does; musl's does not.
    script_argv: Option<Vec<CString>>,
    stack: Stack,
}

impl Prepared {
    pub fn new(spec: Launch) -> Result<Prepared> {
        let argv: Vec<CString> = std::iter::once(spec.program)
            .chain(spec.args.iter().map(String::as_str))
            .map(|a| cstr(OsStr::new(a)))
            .collect::<Result<_>>()?;
        let envp = environment(&spec.env).into_iter().map(|kv| cstr(&kv)).collect::<Result<_>>()?;
        let found = search_path(spec.program, spec.cwd).map(|p| cstr(p.as_os_str())).transpose()?;
        let script_argv = script_argv(&argv, found.as_ref());
        Ok(Prepared { argv, envp, cwd: cstr(spec.cwd.as_os_str())?, found, script_argv, stack: Stack::new()? })
    }

    /// Adds `KEY=VALUE` to the environment (for values known only at the start).
    pub fn set_env(&mut self, key: &str, value: &OsStr) -> Result<()> {
        self.envp.push(cstr(&key_value(OsString::from(key), value))?);
        Ok(())
    }

    /// Starts the command in the cgroup whose `cgroup.procs` files are `procs` (from
    /// [`place::open_procs`]) and returns its pid once it has exec'd. With
    /// `reset_oom_score`, the child first gives up the OOM protection it inherits.
    pub fn start(mut self, stdin: OwnedFd, output: OwnedFd, procs: &[File], reset_oom_score: bool) -> Result<i32> {
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.envp);
        let script_argv = self.script_argv.as_deref().map(null_terminated);
        let (cwd, found, program) = (&self.cwd, &self.found, &self.argv[0]);
        let (stdin, output) = (stdin.as_raw_fd(), output.as_raw_fd());
        let (failed_step, failed_errno) = (AtomicI32::new(-1), AtomicI32::new(0));
        let (step_slot, errno_slot) = (&failed_step, &failed_errno);

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
                place::unblock_signals();
                if reset_oom_score {
                    place::reset_oom_score();
                }
                if libc::dup2(stdin, 0) < 0 || libc::dup2(output, 1) < 0 || libc::dup2(output, 2) < 0 {
                    return fail(0);
                }
                if libc::chdir(cwd.as_ptr()) < 0 {
                    return fail(1);
                }
                // Its own process group, so signals meant for the supervisor's never reach it.
                libc::setpgid(0, 0);
                if place::join(procs).is_err() {
                    return fail(2);
                }
                if let Some(path) = found {
                    libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                }
                // The search's own result failed (or there was none): search as execvp(3)
                // does, so its errno is the one reported.
                libc::execvpe(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                let errno = *libc::__errno_location();
                if let (libc::ENOEXEC, Some(script_argv)) = (errno, &script_argv) {
                    libc::execve(c"/bin/sh".as_ptr(), script_argv.as_ptr(), envp.as_ptr());
                    *libc::__errno_location() = errno;
                }
                fail(3)
            }
        };
        let flags = nix::sched::CloneFlags::CLONE_VM | nix::sched::CloneFlags::CLONE_VFORK;
        // SAFETY: the child runs `child` on `stack` (large enough: see STACK_SIZE, with a guard
        // page below it) and execs or exits; CLONE_VFORK keeps this thread, and so every value
        // the child borrows, suspended until then. The supervisor is single-threaded and has no
        // signal handlers installed, so nothing else can run on the shared memory meanwhile.
        let pid = unsafe { nix::sched::clone(Box::new(child), self.stack.as_mut(), flags, Some(libc::SIGCHLD)) }
            .context("cannot start the agent's process")?;
        let step = failed_step.load(Ordering::Relaxed);
        if step >= 0 {
            let _ = nix::sys::wait::waitpid(pid, None);
            let err = std::io::Error::from_raw_os_error(failed_errno.load(Ordering::Relaxed));
            return Err(anyhow::Error::new(err).context(format!("cannot {}", STEPS[step as usize])));
        }
        Ok(pid.as_raw())
    }
}

/// `/bin/sh PROGRAM ARGS…` as execvp(3) runs a script without `#!` (glibc's argv: the
/// shell, the path the program was found at, then the arguments after argv\[0\]).
fn script_argv(argv: &[CString], found: Option<&CString>) -> Option<Vec<CString>> {
    let script = match found {
        Some(path) => path,
        None if argv[0].as_bytes().contains(&b'/') => &argv[0],
        None => return None,
    };
    Some([c"/bin/sh".to_owned(), script.clone()].into_iter().chain(argv[1..].iter().cloned()).collect())
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).context("a NUL byte in the command or its environment")
}

/// Where execvp(3) would find `program`: the first executable file of that name in the
/// supervisor's `PATH` (relative entries taken from `cwd`, where the child will be). Found
/// while the supervisor waits for its cgroup, it spares the child one failed exec per
/// directory before it (nine on a host whose PATH starts with ~/.cargo/bin and pyenv's
/// shims). A name with a slash is not searched.
fn search_path(program: &str, cwd: &std::path::Path) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    which::which_in(program, Some(path), cwd).ok()
}

/// The supervisor's environment with `changes` applied, as `KEY=VALUE` strings.
fn environment(changes: &[(&str, Option<OsString>)]) -> Vec<OsString> {
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !changes.iter().any(|(c, _)| k == c)).collect();
    env.extend(changes.iter().filter_map(|(k, v)| Some((OsString::from(k), v.clone()?))));
    env.into_iter().map(|(k, v)| key_value(k, &v)).collect()
}

/// `KEY=VALUE`, as execve(2) takes an environment entry.
fn key_value(mut key: OsString, value: &OsStr) -> OsString {
    key.push("=");
    key.push(value);
    key
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
