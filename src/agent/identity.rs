//! Who an agent runs as. In order: `spawn --user`, then `agent.user` in the config, then,
//! under sudo, the user who ran sudo (their primary group alone, and their home). A user
//! named with `--user` or `agent.user` gets its groups, as systemd's `User=` does. Root with none of these is
//! refused: agents never run as root unless asked (`--user root`). A non-root caller (a
//! delegated fleet) cannot switch users, so its agents run as itself.
//!
//! `auto` gives each agent the uid of its workspace slot, `agent.uid_range`'s first plus the
//! slot's number ([`slot_uid`]), with a private group of the same number and no
//! supplementary groups. Tied to the slot, a uid never reaches a slot it is not in: the
//! files an agent leaves in its slot are only ever handed to the next agent of that slot,
//! and before that agent starts, whatever still runs as the uid is killed ([`end_leftovers`]).

mod as_user;

pub use as_user::{end_leftovers, in_child_as};
use fleet_core::lease::{self, LeaseFile};
use nix::unistd::{Gid, Group, Uid, User};
use std::{ops::RangeInclusive, path::PathBuf};

/// What the agent's process switches to between fork and exec: prepared at spawn, carried
/// by the plan, assumed by the child ([`Credentials::assume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; empty for none.
    pub groups: Vec<u32>,
}

impl Credentials {
    /// Becomes this user for good (real, effective and saved ids), by raw system calls: the
    /// child between clone and exec may share the supervisor's memory (CLONE_VM), and libc's
    /// setuid family signals every thread of the process and takes its locks to keep them
    /// alike, which such a child must not do. Allocates nothing. False on a failure, errno set.
    pub fn assume(&self) -> bool {
        let groups: &[libc::gid_t] = &self.groups;
        // SAFETY: three system calls on memory prepared before the clone; setgroups(2) reads
        // `groups.len()` ids from its pointer.
        unsafe {
            libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0
                && libc::syscall(libc::SYS_setresgid, self.gid, self.gid, self.gid) == 0
                && libc::syscall(libc::SYS_setresuid, self.uid, self.uid, self.uid) == 0
                && (self.uid == 0 || drop_capabilities())
        }
    }
}

/// Empties the calling thread's capability sets (effective, permitted, inheritable, ambient).
/// Leaving uid 0 normally clears them, but not under an inherited `SECBIT_NO_SETUID_FIXUP`
/// (a unit's `SecureBits=no-setuid-fixup`): an agent, or the child that SIGKILLs a uid's
/// leftovers, would keep root's powers under a user's uid. Raw system calls on the stack
/// only, for a child between clone and exec. False on a failure, errno set.
pub fn drop_capabilities() -> bool {
    /// `struct __user_cap_header_struct` and one of the two `__user_cap_data_struct`s of
    /// capability version 3 (64 capabilities).
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: VERSION_3, pid: 0 };
    let none = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    let (clear_all, unused): (libc::c_ulong, libc::c_ulong) = (libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0);
    // SAFETY: prctl with integers, and capset(2) reading one header and two data structs.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, clear_all, unused, unused, unused) == 0
            && libc::syscall(libc::SYS_capset, &header as *const Header, none.as_ptr()) == 0
    }
}

/// Sets no_new_privs on the calling process: from its exec on, no setuid bit or file
/// capability gives it (or anything it runs) more than it has. One system call, for the
/// child between clone and exec. False on a failure, errno set.
pub fn forbid_new_privs() -> bool {
    // prctl(2) reads its arguments as unsigned longs.
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, on, unused, unused, unused) == 0 }
}

/// A user the agent may run as, with what its environment says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub credentials: Credentials,
    /// The passwd entry's name, home and shell, when the uid has one.
    pub name: Option<String>,
    pub home: Option<PathBuf>,
    pub shell: Option<PathBuf>,
}

/// The answer to "who does this agent run as".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// Switch to this user (the caller is root).
    User(Identity),
    /// A uid of its own, leased from this range at spawn.
    Auto(RangeInclusive<u32>),
    /// Stay the caller, who is not root and cannot switch (a delegated fleet).
    Caller(Identity),
}

/// Who is running `spawn`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub real_uid: u32,
    pub effective_uid: u32,
    pub effective_gid: u32,
    /// `SUDO_UID` and `SUDO_GID`, when both are set and numbers.
    pub sudo: Option<(u32, u32)>,
}

impl Caller {
    /// This process.
    pub fn current() -> Caller {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
        Caller {
            real_uid: Uid::current().as_raw(),
            effective_uid: Uid::effective().as_raw(),
            effective_gid: Gid::effective().as_raw(),
            sudo: number("SUDO_UID").zip(number("SUDO_GID")),
        }
    }
}

/// Decides who the agent runs as from `--user` (`flag`), `agent.user` and `agent.uid_range`
/// (`config`), and the caller. The error is the one line for exit 2.
pub fn resolve(
    flag: Option<&str>,
    config: (Option<&str>, Option<RangeInclusive<u32>>),
    caller: &Caller,
) -> Result<RunAs, String> {
    let (config_user, uid_range) = config;
    let given = flag.map(|v| ("--user", v)).or(config_user.map(|v| ("agent.user", v)));
    if caller.effective_uid != 0 {
        let me = identity(&caller.effective_uid.to_string(), None, Some(caller.effective_gid))?;
        return match given {
            None => Ok(RunAs::Caller(me)),
            Some((_, spec)) if spec != "auto" && parse(spec)?.credentials.uid == me.credentials.uid => {
                Ok(RunAs::Caller(me))
            }
            Some((source, spec)) => Err(format!(
                "{source} {spec}: you are not root (uid {}), so your agents run as you: fleetctl cannot switch users; drop {source}, or run spawn with sudo",
                caller.effective_uid
            )),
        };
    }
    match given {
        Some((_, "auto")) => match uid_range {
            Some(range) => Ok(RunAs::Auto(range)),
            None => Err(
                "--user auto needs a uid range to lease from: set agent.uid_range = \"FIRST-LAST\" (e.g. \"200000-200999\") in the config"
                    .into(),
            ),
        },
        Some((source, spec)) => parse(spec).map(RunAs::User).map_err(|e| format!("{source} {spec}: {e}")),
        None => match caller.sudo {
            // SUDO_UID=0 is root running sudo: no one to fall back to but root, which must be asked for.
            // The caller's primary group only: supplementary groups such as docker, lxd, disk
            // or adm give root back to whatever runs with them.
            Some((uid, gid)) if caller.real_uid == 0 && uid != 0 => {
                let mut who = identity(&uid.to_string(), None, Some(gid))?;
                who.credentials.groups.clear();
                Ok(RunAs::User(who))
            }
            _ => Err(
                "spawn as root with no user to run the agent as: agents never run as root unless asked; pass --user USER, --user root, or set agent.user in the config"
                    .into(),
            ),
        },
    }
}

/// `USER[:GROUP]`, each a name or a number (a number needs no passwd entry).
pub fn parse(spec: &str) -> Result<Identity, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(format!(
            "'{spec}' is not USER[:GROUP]: give a user (name or number), e.g. --user 1000 or --user alice:dev"
        ));
    }
    let gid = group.map(gid_of).transpose()?;
    identity(user, group, gid)
}

/// The identity of `user` (a name or a number), with `gid` as its group when given.
fn identity(user: &str, group: Option<&str>, gid: Option<u32>) -> Result<Identity, String> {
    let entry = match user.parse::<u32>() {
        Ok(n) if n == u32::MAX => return Err(format!("{n} is not a usable uid (it means \"no user\")")),
        Ok(n) => User::from_uid(Uid::from_raw(n)).ok().flatten().map(Ok).unwrap_or(Err(n)),
        Err(_) => match User::from_name(user) {
            Ok(Some(entry)) => Ok(entry),
            _ => return Err(format!("no user named '{user}' on this host: give an existing user, or a uid number")),
        },
    };
    Ok(match entry {
        Ok(entry) => {
            let gid = gid.unwrap_or(entry.gid.as_raw());
            // An explicit group replaces the user's groups: the agent gets that one alone.
            let groups = match (group, std::ffi::CString::new(entry.name.clone())) {
                (None, Ok(name)) => nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                    .map(|g| g.into_iter().map(Gid::as_raw).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            Identity {
                credentials: Credentials { uid: entry.uid.as_raw(), gid, groups },
                name: Some(entry.name),
                home: Some(entry.dir),
                shell: Some(entry.shell),
            }
        }
        Err(uid) => Identity {
            credentials: Credentials { uid, gid: gid.unwrap_or(uid), groups: Vec::new() },
            name: None,
            home: None,
            shell: None,
        },
    })
}

fn gid_of(group: &str) -> Result<u32, String> {
    match group.parse::<u32>() {
        Ok(n) if n == u32::MAX => Err(format!("{n} is not a usable gid (it means \"no group\")")),
        Ok(n) => Ok(n),
        Err(_) => match Group::from_name(group) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            _ => Err(format!("no group named '{group}' on this host: give an existing group, or a gid number")),
        },
    }
}

/// `FIRST-LAST` (`agent.uid_range`): uids above 0, first not above last.
pub fn parse_uid_range(text: &str) -> Result<RangeInclusive<u32>, String> {
    let bad = || {
        format!(
            "agent.uid_range = \"{text}\": give FIRST-LAST, uids above 0 that no user of this host has, e.g. \"200000-200999\""
        )
    };
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let (first, last) =
        (first.trim().parse::<u32>().map_err(|_| bad())?, last.trim().parse::<u32>().map_err(|_| bad())?);
    if first == 0 || first > last || last == u32::MAX {
        return Err(bad());
    }
    Ok(first..=last)
}

/// `agent.uid_range`'s uids and gids must be nobody's: an agent given uid 6 would be `man`,
/// with gid 6 `disk`. One pass over the user and group databases (getpwent/getgrent), at
/// each `--user auto` spawn; the error is the one line for exit 2.
pub fn check_range_is_unused(range: &RangeInclusive<u32>) -> Result<(), String> {
    let taken = |kind: &str, name: &str, id: u32| {
        format!(
            "agent.uid_range = \"{}-{}\" contains {kind} {id} ({name}) of this host: --user auto must give uids and gids no one has; pick a range outside every user and group (e.g. \"200000-200999\")",
            range.start(),
            range.end()
        )
    };
    // SAFETY: spawn is single-threaded, so nothing else walks the databases meanwhile; each
    // entry is read before the next call replaces it.
    unsafe {
        libc::setpwent();
        let mut found = None;
        while let Some(entry) = libc::getpwent().as_ref() {
            if range.contains(&entry.pw_uid) {
                found = Some(taken("uid", &std::ffi::CStr::from_ptr(entry.pw_name).to_string_lossy(), entry.pw_uid));
                break;
            }
        }
        libc::endpwent();
        if let Some(err) = found {
            return Err(err);
        }
        libc::setgrent();
        while let Some(entry) = libc::getgrent().as_ref() {
            if range.contains(&entry.gr_gid) {
                found = Some(taken("gid", &std::ffi::CStr::from_ptr(entry.gr_name).to_string_lossy(), entry.gr_gid));
                break;
            }
        }
        libc::endgrent();
        found.map_or(Ok(()), Err)
    }
}

/// The identity `auto` gives uid `uid`: a private group of the same number, no
/// supplementary groups, and no passwd entry (its HOME is its scratch dir).
pub fn auto_identity(uid: u32) -> Identity {
    Identity { credentials: Credentials { uid, gid: uid, groups: Vec::new() }, name: None, home: None, shell: None }
}

/// The uid of pool slot `slot` (`ws-<slot>`): `range`'s first plus the slot's number, or
/// the one line for exit 2 when the range has none for it (nor for the pool's `highest`).
pub fn slot_uid(range: &RangeInclusive<u32>, slot: u32, highest: u32) -> Result<u32, String> {
    let (first, last) = (*range.start(), *range.end());
    match first.checked_add(slot.max(highest)) {
        Some(top) if top <= last => Ok(first + slot),
        _ => Err(format!(
            "agent.uid_range = \"{first}-{last}\" is too small for the workspace pool: --user auto runs slot ws-N as uid {first}+N, and the pool has slots up to ws-{:03}; widen the range to at least \"{first}-{}\"",
            slot.max(highest),
            u64::from(first) + u64::from(slot.max(highest))
        )),
    }
}

/// Leases `uid` itself on the host's uid lease file in `lock_dir`: the slot's exclusive
/// lease already keeps it from two agents of one pool, this one from agents of two pools
/// that share a range. The lease is the returned file's lock, held by the supervisor (as
/// the other leases are), freed when it dies. `None` when someone holds it.
pub fn lease_uid(lock_dir: &std::path::Path, uid: u32) -> fleet_core::Result<Option<LeaseFile>> {
    let file = LeaseFile::open(&lease::uids_lease_path(lock_dir))?;
    Ok(file.lease_number(uid..=uid)?.map(|_| file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uids no host has in its passwd file (unit tests must not depend on the host's users).
    const FREE: u32 = 3_999_901;

    fn root() -> Caller {
        Caller { real_uid: 0, effective_uid: 0, effective_gid: 0, sudo: None }
    }

    /// Under an inherited SECBIT_NO_SETUID_FIXUP a uid change keeps root's capabilities;
    /// `drop_capabilities` leaves none. Shown in a forked child (the test process keeps its
    /// own bits), which reports through its exit code: 0 when CapEff and CapPrm are empty.
    #[test]
    fn no_capability_survives_the_switch_even_without_setuid_fixup() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("FLEETCTL_TEST_AS_ROOT").is_none(), "FLEETCTL_TEST_AS_ROOT is set: run as root");
            return;
        }
        let empty = |status: &str| {
            ["CapEff:", "CapPrm:"].iter().all(|k| {
                status.lines().find(|l| l.starts_with(k)).is_some_and(|l| l.trim_end().ends_with("0000000000000000"))
            })
        };
        for drop in [false, true] {
            // SAFETY: the child makes system calls, reads one file and leaves by _exit.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => unsafe {
                    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
                    let set = libc::prctl(libc::PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) == 0;
                    let became = libc::syscall(libc::SYS_setresuid, FREE, FREE, FREE) == 0;
                    let dropped = !drop || drop_capabilities();
                    let status = std::fs::read_to_string(fleet_core::roots::Roots::host().proc.join("self/status"))
                        .unwrap_or_default();
                    libc::_exit(match (set, became, dropped) {
                        (true, true, true) if empty(&status) => 0,
                        (true, true, true) => 1,
                        _ => 2,
                    })
                },
                nix::unistd::ForkResult::Parent { child } => {
                    let code = match nix::sys::wait::waitpid(child, None).expect("wait") {
                        nix::sys::wait::WaitStatus::Exited(_, code) => code,
                        other => panic!("{other:?}"),
                    };
                    match drop {
                        false => {
                            assert_eq!(code, 1, "the kernel keeps capabilities under the bit (the reason for the drop)")
                        }
                        true => assert_eq!(code, 0, "none left after drop_capabilities"),
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_need_no_passwd_entry() {
        let who = parse(&format!("{FREE}:{}", FREE + 1)).expect("numbers");
        assert_eq!(who.credentials, Credentials { uid: FREE, gid: FREE + 1, groups: Vec::new() });
        assert_eq!(parse(&FREE.to_string()).expect("number").credentials.gid, FREE, "its own number as group");
    }

    #[test]
    fn bad_specs_say_what_to_give() {
        for bad in ["", ":1", "1:", "4294967295", "1:4294967295", "fleetctl-no-such-user", "1:fleetctl-no-such-group"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("give") || err.contains("usable"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_flag_wins_over_the_config_and_sudo() {
        let caller = Caller { sudo: Some((FREE + 5, FREE + 6)), ..root() };
        let flag = FREE.to_string();
        let pick = |flag: Option<&str>, config: Option<&str>| match resolve(flag, (config, None), &caller) {
            Ok(RunAs::User(who)) => who.credentials.uid,
            other => panic!("{other:?}"),
        };
        assert_eq!(pick(Some(&flag), Some("1")), FREE);
        assert_eq!(pick(None, Some(&flag)), FREE);
        assert_eq!(pick(None, None), FREE + 5, "the sudo caller");
        let sudo_gid = match resolve(None, (None, None), &caller) {
            Ok(RunAs::User(who)) => who.credentials.gid,
            other => panic!("{other:?}"),
        };
        assert_eq!(sudo_gid, FREE + 6);
    }

    #[test]
    fn root_without_a_user_is_refused_naming_the_ways_out() {
        let err = resolve(None, (None, None), &root()).expect_err("refused");
        for way in ["--user USER", "--user root", "agent.user"] {
            assert!(err.contains(way), "{err}");
        }
        // SUDO_* set while the real uid is not root (a setuid wrapper) is not sudo.
        let fake = Caller { real_uid: 1000, sudo: Some((FREE, FREE)), ..root() };
        assert!(resolve(None, (None, None), &fake).is_err());
        // Root running `sudo fleetctl` is still root.
        let root_sudo = Caller { sudo: Some((0, 0)), ..root() };
        assert!(resolve(None, (None, None), &root_sudo).expect_err("root via sudo").contains("--user root"));
    }

    #[test]
    fn auto_needs_a_range() {
        let err = resolve(Some("auto"), (None, None), &root()).expect_err("no range");
        assert!(err.contains("agent.uid_range"), "{err}");
        let ok = resolve(Some("auto"), (None, Some(200000..=200099)), &root()).expect("range");
        assert_eq!(ok, RunAs::Auto(200_000..=200_099));
        for bad in ["0-10", "10-5", "x-1", "1", "5-4294967295"] {
            assert!(parse_uid_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_with_a_hosts_user_or_group_is_refused() {
        // Root's entries are on every host: a range reaching 0 from above cannot be given,
        // so use the first user and group numbers the host has, if any besides root.
        let uid = User::from_name("nobody").ok().flatten().map(|u| u.uid.as_raw()).filter(|&u| u > 0 && u < u32::MAX);
        if let Some(uid) = uid {
            let err = check_range_is_unused(&(uid..=uid)).expect_err("nobody's uid");
            assert!(err.contains("agent.uid_range") && err.contains(&uid.to_string()), "{err}");
        }
        assert_eq!(check_range_is_unused(&(3_999_000..=3_999_999)), Ok(()));
    }

    #[test]
    fn a_slots_uid_is_the_ranges_first_plus_its_number() {
        assert_eq!(slot_uid(&(200_000..=200_099), 1, 99), Ok(200_001));
        assert_eq!(slot_uid(&(200_000..=200_099), 99, 12), Ok(200_099));
        let err = slot_uid(&(200_000..=200_009), 3, 12).expect_err("the pool reaches ws-012");
        assert!(err.contains("agent.uid_range") && err.contains("200000-200012"), "{err}");
        assert!(slot_uid(&(u32::MAX - 2..=u32::MAX - 1), 5, 5).is_err(), "no overflow");
    }

    #[test]
    fn a_non_root_caller_runs_agents_as_itself_only() {
        let me = Caller { real_uid: FREE, effective_uid: FREE, effective_gid: FREE, sudo: None };
        assert!(matches!(resolve(None, (None, None), &me), Ok(RunAs::Caller(w)) if w.credentials.uid == FREE));
        assert!(matches!(resolve(Some(&FREE.to_string()), (None, None), &me), Ok(RunAs::Caller(_))));
        for other in ["root", "auto", "1"] {
            let err = resolve(Some(other), (None, None), &me).expect_err(other);
            assert!(err.contains("cannot switch users"), "{err}");
        }
    }
}
