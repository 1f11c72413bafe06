//! Starting the agent's command in its cgroup, the way its [`Placement`] says:
//!
//! - **Born in it** ([`Placement::birth_dir`], pure cgroup v2): clone3(2) with
//!   `CLONE_INTO_CGROUP | CLONE_VFORK`. The child gets a copy of the supervisor's small
//!   memory, as from fork.
//! - **Joining it** everywhere else (hybrid hosts, and kernels before 5.7 that refuse the
//!   clone): the way posix_spawn(3) starts a command, clone(2) with `CLONE_VM | CLONE_VFORK`,
//!   and the child enters its cgroup before exec ([`Placement::enter`]). It borrows the
//!   supervisor's memory until its exec instead of copying it. std's `Command` has to fork
//!   (copy the page tables, then fault on every page either process writes) as soon as a step
//!   must run between fork and exec, and the agent needs several.
//!
//! Either way the supervisor sleeps until the exec.
//!
//! Everything the child uses is prepared before the clone, most of it before the cgroup
//! exists ([`Prepared`]): NUL-terminated argv and envp, the workspace path, the program's
//! path, and (from the caller) the cgroup opened for placement. The child only makes
//! async-signal-safe calls on them and ends in `execvpe` or `_exit`; a failure's errno and
//! step reach the parent through a page both share ([`memory::Report`]).

mod memory;

use crate::agent::{
    identity::{self, Credentials},
    place,
};
use anyhow::{Context, Result};
use fleet_core::cgroup::{Born, Placement, Refused, Step};
use memory::{Report, Stack};
use std::{
    ffi::{CStr, CString, OsStr, OsString},
    os::{
        fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
};

/// What to start, and where.
pub struct Launch<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub cwd: &'a std::path::Path,
    /// The agent's environment, made at spawn: never the supervisor's own.
    pub base_env: &'a [(OsString, OsString)],
    /// Added to (`Some`) or removed from (`None`) `base_env`.
    pub env: Vec<(&'a str, Option<OsString>)>,
    /// Who it runs as; `None` keeps the supervisor's user.
    pub credentials: Option<&'a Credentials>,
    /// Whether it gets no_new_privs.
    pub no_new_privs: bool,
}

/// The child's own steps; a failure names the one that failed. Entering the cgroup
/// ([`Placement::enter`]) comes right after the descriptors, before the user switch gives up
/// the right to write `cgroup.procs`; its steps ([`Step::ALL`]) are numbered after these.
const STEPS: [&str; 5] =
    ["set up its descriptors", "switch to its user", "set no_new_privs", "enter its working directory", "exec"];
const EXEC: usize = 4;

/// The name of the child's step number `step` (see [`STEPS`]).
fn step_name(step: usize) -> &'static str {
    match step.checked_sub(STEPS.len()) {
        None => STEPS[step],
        Some(placement) => Step::ALL.get(placement).map_or("enter its cgroup", |s| s.what()),
    }
}

/// The number a failed step of [`Placement::enter`] is reported under.
fn placement_step(refused: Refused) -> usize {
    STEPS.len() + Step::ALL.iter().position(|s| *s == refused.step).unwrap_or(Step::ALL.len())
}

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
    credentials: Option<Credentials>,
    no_new_privs: bool,
    stack: Stack,
    report: Report,
}

impl Prepared {
    pub fn new(spec: Launch) -> Result<Prepared> {
        let argv: Vec<CString> = std::iter::once(spec.program)
            .chain(spec.args.iter().map(String::as_str))
            .map(|a| cstr(OsStr::new(a)))
            .collect::<Result<_>>()?;
        let envp = environment(spec.base_env, &spec.env).into_iter().map(|kv| cstr(&kv)).collect::<Result<_>>()?;
        let path = spec.base_env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
        let found = search_path(spec.program, path, spec.cwd).map(|p| cstr(p.as_os_str())).transpose()?;
        let script_argv = script_argv(&argv, found.as_ref());
        let (stack, report) = (Stack::new()?, Report::new()?);
        Ok(Prepared {
            argv,
            envp,
            cwd: cstr(spec.cwd.as_os_str())?,
            found,
            script_argv,
            credentials: spec.credentials.cloned(),
            no_new_privs: spec.no_new_privs,
            stack,
            report,
        })
    }

    /// Adds `KEY=VALUE` to the environment (for values known only at the start).
    pub fn set_env(&mut self, key: &str, value: &OsStr) -> Result<()> {
        self.envp.push(cstr(&key_value(OsString::from(key), value))?);
        Ok(())
    }

    /// Starts the command in the cgroup of `placement` and returns its pid once it has
    /// exec'd.
    pub fn start(mut self, stdin: OwnedFd, output: OwnedFd, placement: &Placement) -> Result<i32> {
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.envp);
        let script_argv = self.script_argv.as_deref().map(null_terminated);
        let child = Child {
            argv: &argv,
            envp: &envp,
            script_argv: script_argv.as_deref(),
            cwd: &self.cwd,
            found: self.found.as_deref(),
            program: &self.argv[0],
            stdin: stdin.as_raw_fd(),
            output: output.as_raw_fd(),
            placement,
            credentials: self.credentials.as_ref(),
            no_new_privs: self.no_new_privs,
            report: &self.report,
        };
        self.report.clear();
        let born = match placement.birth_dir() {
            // SAFETY: the child runs `child.run`: async-signal-safe calls only, and it never
            // returns.
            Some(dir) => unsafe { clone_into(dir, || child.run(Born::InCgroup)) },
            None => None,
        };
        let pid = match born {
            Some(pid) => pid,
            None => {
                let flags = nix::sched::CloneFlags::CLONE_VM | nix::sched::CloneFlags::CLONE_VFORK;
                // SAFETY: the child runs `child.run` on `stack` (large enough, with a guard page
                // below it: see `memory::Stack`) and execs or exits; CLONE_VFORK keeps this thread,
                // and so every value the child borrows, suspended until then. The supervisor is
                // single-threaded and has no signal handlers installed, so nothing else can run
                // on the shared memory meanwhile.
                unsafe {
                    nix::sched::clone(
                        Box::new(|| child.run(Born::Outside)),
                        self.stack.as_mut(),
                        flags,
                        Some(libc::SIGCHLD),
                    )
                }
                .context("cannot start the agent's process")?
                .as_raw()
            }
        };
        if let Some((step, errno)) = self.report.failure() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            let err = std::io::Error::from_raw_os_error(errno);
            return Err(anyhow::Error::new(err).context(format!("cannot {}", step_name(step))));
        }
        Ok(pid)
    }
}

/// What the child needs, all prepared before the clone.
struct Child<'a> {
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    script_argv: Option<&'a [*const libc::c_char]>,
    cwd: &'a CStr,
    found: Option<&'a CStr>,
    program: &'a CStr,
    stdin: RawFd,
    output: RawFd,
    placement: &'a Placement,
    credentials: Option<&'a Credentials>,
    no_new_privs: bool,
    report: &'a Report,
}

impl Child<'_> {
    /// The child's side, from the clone to the exec, entering its cgroup on the way as a
    /// process `born` there or not.
    fn run(&self, born: Born) -> ! {
        // SAFETY: this runs in the clone child, on memory that is either shared with the
        // suspended supervisor or a copy of it: only async-signal-safe calls on data prepared
        // before the clone, and it leaves by exec or _exit, never by returning.
        unsafe {
            let fail = |step: usize| -> ! {
                self.report.fail(step, *libc::__errno_location());
                libc::_exit(127)
            };
            // The supervisor ignores SIGPIPE, and an ignored disposition survives exec.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            place::unblock_signals();
            if libc::dup2(self.stdin, 0) < 0 || libc::dup2(self.output, 1) < 0 || libc::dup2(self.output, 2) < 0 {
                fail(0);
            }
            // Its own process group, so signals meant for the supervisor's never reach it.
            libc::setpgid(0, 0);
            if let Err(refused) = self.placement.enter(born) {
                self.report.fail(placement_step(refused), refused.errno);
                libc::_exit(127)
            }
            if self.credentials.is_some_and(|c| !c.assume()) {
                fail(1);
            }
            if self.no_new_privs && !identity::forbid_new_privs() {
                fail(2);
            }
            // As the agent's user: a directory it cannot enter fails here, not in the agent.
            if libc::chdir(self.cwd.as_ptr()) < 0 {
                fail(3);
            }
            if let Some(path) = self.found {
                libc::execve(path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            }
            // The search's own result failed (or there was none): search as execvp(3)
            // does, so its errno is the one reported.
            libc::execvpe(self.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            let errno = *libc::__errno_location();
            if let (libc::ENOEXEC, Some(script_argv)) = (errno, self.script_argv) {
                libc::execve(c"/bin/sh".as_ptr(), script_argv.as_ptr(), self.envp.as_ptr());
                *libc::__errno_location() = errno;
            }
            fail(EXEC)
        }
    }
}

/// The kernel's `struct clone_args` up to `cgroup` (version 2, Linux 5.7), declared here
/// because libc has it for some targets only.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Starts `child` born in the cgroup directory `dir`, suspended in the parent until it has
/// exec'd or exited; its pid, or `None` when the kernel cannot (before 5.7, or refusing the
/// cgroup), for the caller to join the cgroup the other way, which reports its own errors.
///
/// # Safety
/// The child is a copy of the calling thread alone, as after fork(2): `child` must make only
/// async-signal-safe calls and end in exec or `_exit`.
unsafe fn clone_into(dir: BorrowedFd, child: impl FnOnce()) -> Option<i32> {
    let mut args = CloneArgs {
        flags: libc::CLONE_VFORK as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3(2) with no stack given: like fork(2), the child returns here on a copy
    // of this thread's stack, and runs `child`, which never returns.
    match unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) } {
        0 => {
            child();
            // SAFETY: unreachable, since `child` execs or exits; never return into the copy.
            unsafe { libc::_exit(127) }
        }
        pid if pid > 0 => Some(pid as i32),
        _ => None,
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
/// agent's `PATH` (relative entries taken from `cwd`, where the child will be). Found
/// while the supervisor waits for its cgroup, it spares the child one failed exec per
/// directory before it (nine on a host whose PATH starts with ~/.cargo/bin and pyenv's
/// shims). A name with a slash is not searched.
fn search_path(program: &str, path: Option<&OsStr>, cwd: &std::path::Path) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return None;
    }
    which::which_in(program, Some(path?), cwd).ok()
}

/// `base` with `changes` applied, as `KEY=VALUE` strings.
fn environment(base: &[(OsString, OsString)], changes: &[(&str, Option<OsString>)]) -> Vec<OsString> {
    let mut env: Vec<(OsString, OsString)> =
        base.iter().filter(|(k, _)| !changes.iter().any(|(c, _)| k == c)).cloned().collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{
        cgroup::{Cgroup, Fleet, Layout, Mounts, OwnCgroups},
        roots::Roots,
    };
    use std::{fs::File, path::Path};

    fn start(program: &str, args: &[String], placement: &Placement) -> Result<i32> {
        let cwd = std::env::temp_dir();
        let env = [("PATH".into(), std::env::var_os("PATH").unwrap_or_default())];
        let launch = Launch { program, args, cwd: &cwd, ..bare(&env) };
        let (stdin, output) = (File::open("/dev/null").unwrap(), File::create("/dev/null").unwrap());
        Prepared::new(launch).unwrap().start(stdin.into(), output.into(), placement)
    }

    /// A launch of nothing yet, with `env`, as the supervisor's own user.
    fn bare(env: &[(OsString, OsString)]) -> Launch<'_> {
        Launch {
            program: "",
            args: &[],
            cwd: Path::new("/"),
            base_env: env,
            env: Vec::new(),
            credentials: None,
            no_new_privs: false,
        }
    }

    /// The clone3 way, for real: the command's first cgroup is the one it was given, though
    /// nothing wrote it into `cgroup.procs`. This host's cgroup2 tree takes CLONE_INTO_CGROUP
    /// whether or not it has controllers, so the test runs on hybrid hosts too, with a cgroup
    /// of that tree alone (which is what makes its placement a birth).
    #[test]
    fn a_command_is_born_in_the_cgroup_whose_directory_it_is_given() {
        if !nix::unistd::geteuid().is_root() {
            // The suite's convention (tests/util/skip.rs): fail where the runner promised
            // root; else say so past libtest's output capture, and count it.
            assert!(std::env::var_os("FLEETCTL_TEST_AS_ROOT").is_none(), "FLEETCTL_TEST_AS_ROOT is set: run as root");
            let line =
                "SKIPPED a_command_is_born_in_the_cgroup_whose_directory_it_is_given: making a cgroup needs root\n";
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            if let Some(path) = std::env::var_os("FLEETCTL_TEST_SKIPS") {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
                file.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes())).expect("record the skip");
            }
            return;
        }
        let roots = Roots::host();
        let mounts = Mounts::locate(&roots.cgroup, &roots.proc).unwrap();
        let own = OwnCgroups::read(&roots.proc).unwrap();
        let name = format!("fleetctl-test-born-{}", std::process::id());
        // Under this process's own cgroup, as every test nests its fleet; the cgroup2 tree alone.
        let unified = Fleet::resolve(&mounts, &own, &name).unwrap().root.unified;
        let cgroup = Cgroup { layout: Layout::Unified, unified, memory_v1: None, pids_v1: None };
        cgroup.create().unwrap();
        let placement = Placement::open(&cgroup, &roots.proc).unwrap();
        let pid = start("sleep", &["1000".to_string()], &placement).unwrap();

        let text = std::fs::read_to_string(roots.proc.join(pid.to_string()).join("cgroup")).unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        drop(placement);
        cgroup.remove().unwrap();
        let born_in = OwnCgroups::parse(&text).unified;
        assert!(born_in.ends_with(&format!("/{name}")), "born in {born_in:?}, not in {name}");
    }

    /// A cgroup of a hybrid host's shape whose `cgroup.procs` are plain files (or, for
    /// `refusing`, one the kernel answers every write with ENOSPC): for the launcher's error
    /// reports, without root.
    fn joinable(tmp: &Path, refusing: bool) -> Placement {
        let dir = |h: &str| {
            let d = tmp.join(h);
            std::fs::create_dir(&d).unwrap();
            match (refusing, h) {
                (true, "pids") => std::os::unix::fs::symlink("/dev/full", d.join("cgroup.procs")).unwrap(),
                _ => std::fs::write(d.join("cgroup.procs"), "").unwrap(),
            }
            d
        };
        let cgroup = Cgroup {
            layout: Layout::Hybrid,
            unified: dir("unified"),
            memory_v1: Some(dir("memory")),
            pids_v1: Some(dir("pids")),
        };
        Placement::open(&cgroup, tmp).unwrap()
    }

    #[test]
    fn a_failed_step_is_named_with_its_errno() {
        let tmp = tempfile::tempdir().unwrap();
        let err = start("/nonexistent/fleetctl-test", &[], &joinable(tmp.path(), false)).unwrap_err();
        assert_eq!(format!("{err:#}"), "cannot exec: No such file or directory (os error 2)");
    }

    #[test]
    fn a_refused_placement_is_named_and_nothing_is_exec_d() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("ran");
        let script = format!("touch {}", marker.display());
        let err = start("sh", &["-c".to_string(), script], &joinable(tmp.path(), true)).unwrap_err();
        assert_eq!(format!("{err:#}"), "cannot join its cgroup: No space left on device (os error 28)");
        assert!(!marker.exists(), "the command ran outside its cgroup");
    }
}
