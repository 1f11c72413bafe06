//! `fleetctl doctor`: is this host ready for a fleet? One line per check, each failing line
//! with its fix; exit 1 when any check fails. Read-only: it takes no lock and changes nothing (except that, like every command that
//! reads records, it journals a supervisor death it is the first to see).

use crate::out::outln;
use crate::{
    agent::view,
    context::Ctx,
    exit::Exit,
    setup::{Paths, Status, Step, steps},
    systemd::checks::Level,
};
use anyhow::Result;
use fleet_cli::DoctorArgs;
use fleet_core::{
    cgroup::Layout,
    host::{mounts, swap, sysctl},
    lease::{self, LeaseFile},
    lock::HeldLocks,
    size::format_iec,
};
use std::path::{Path, PathBuf};

/// How a check came out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Fail,
    /// Worth knowing, and a choice for the operator: never a failure.
    Note,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Fail => "fail",
            Verdict::Note => "note",
        }
    }
}

/// One check's outcome.
struct Check {
    name: String,
    verdict: Verdict,
    message: String,
    fix: Option<String>,
}

/// The checks in order, printed once all have run: as lines, or as JSON.
#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn say(&mut self, verdict: Verdict, topic: &str, text: &str, fix: Option<&str>) {
        let check = Check { name: topic.into(), verdict, message: text.into(), fix: fix.map(str::to_string) };
        self.checks.push(check);
    }

    fn failed(&self) -> usize {
        self.checks.iter().filter(|c| c.verdict == Verdict::Fail).count()
    }

    /// One line a check: `FAIL  topic  what; fix: how` (a note says "to change").
    fn print_lines(&self) -> Result<()> {
        for c in &self.checks {
            let word = if c.verdict == Verdict::Fail { "FAIL" } else { c.verdict.word() };
            let (name, text) = (&c.name, &c.message);
            match &c.fix {
                Some(fix) if c.verdict != Verdict::Ok => {
                    let how = if c.verdict == Verdict::Note { "to change" } else { "fix" };
                    outln!("{word:<5} {name:<11} {text}; {how}: {fix}")?
                }
                _ => outln!("{word:<5} {name:<11} {text}")?,
            }
        }
        match self.failed() {
            0 => outln!("doctor: this host is ready"),
            n => outln!("doctor: {n} check(s) failed"),
        }
    }

    /// `doctor --json` (docs/doctor-json.md).
    fn json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(
                |c| serde_json::json!({"name": c.name, "status": c.verdict.word(), "message": c.message, "fix": c.fix}),
            )
            .collect();
        serde_json::json!({"schema": 1, "ready": self.failed() == 0, "failed": self.failed(), "checks": checks})
    }
}

/// Entry point.
pub fn run(ctx: &Ctx, args: DoctorArgs) -> Result<Exit> {
    if !args.root.is_dir() {
        return Err(crate::exit::Fail::error(
            Exit::Usage,
            format!("--root {} is not a directory: give the prefix setup-host was given", args.root.display()),
        ));
    }
    let mut r = Report::default();
    let paths = Paths::new(ctx, &std::fs::canonicalize(&args.root).unwrap_or(args.root.clone()));
    let m = &ctx.mounts;
    let where_ = match m.layout {
        Layout::Unified => format!("cgroup2 at {}", m.unified.display()),
        Layout::Hybrid => format!(
            "v1 memory at {}, v1 pids at {}, cgroup2 at {}",
            m.memory_v1.as_deref().unwrap_or(Path::new("?")).display(),
            m.pids_v1.as_deref().unwrap_or(Path::new("?")).display(),
            m.unified.display()
        ),
    };
    r.say(Verdict::Ok, "layout", &format!("{}: {where_}", m.layout), None);
    cgroups(ctx, &paths, &mut r);
    oom_group(ctx, &mut r);
    delegation(ctx, &mut r);
    swap_check(ctx, &mut r)?;
    for p in sysctl::RECOMMENDED {
        match sysctl::read(&ctx.proc_root, p.key) {
            Ok(v) if v >= p.min => r.say(Verdict::Ok, "sysctl", &format!("{} = {v}", p.key), None),
            Ok(v) => r.say(
                Verdict::Fail,
                "sysctl",
                &format!("{} = {v}, below {} ({})", p.key, p.min, p.why),
                Some("sudo fleetctl setup-host --only sysctl"),
            ),
            Err(e) => r.say(Verdict::Fail, "sysctl", &format!("{e}"), None),
        }
    }
    for (what, dir) in [("state dir", &paths.state), ("log dir", &paths.log), ("lock dir", &paths.lock)] {
        let writable = nix::unistd::access(dir.as_path(), nix::unistd::AccessFlags::W_OK).is_ok();
        match (dir.is_dir(), writable) {
            (true, true) => r.say(Verdict::Ok, "dirs", &format!("{what} {} is writable", dir.display()), None),
            (true, false) => r.say(
                Verdict::Fail,
                "dirs",
                &format!("{what} {} is not writable by you", dir.display()),
                Some("run as root, or `sudo fleetctl setup-host --delegate $USER`"),
            ),
            (false, _) => r.say(
                Verdict::Fail,
                "dirs",
                &format!("{what} {} does not exist", dir.display()),
                Some("sudo fleetctl setup-host --only dirs"),
            ),
        }
    }
    pool(ctx, &paths.workspaces, &mut r)?;
    scratch(ctx, &paths.scratch, &mut r)?;
    watcher(ctx, &paths.state, &mut r);
    if fleet_core::host::systemd::booted_here() {
        for f in crate::systemd::checks::run(ctx) {
            let verdict = match f.level {
                Level::Ok => Verdict::Ok,
                Level::Fail => Verdict::Fail,
                Level::Note => Verdict::Note,
            };
            r.say(verdict, f.name, &f.message, f.fix.as_deref());
        }
    }
    budget(ctx, &mut r);
    migrations(ctx, &mut r);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r.json())?)?;
    } else {
        r.print_lines()?;
    }
    Ok(if r.failed() == 0 { Exit::Ok } else { Exit::Failure })
}

fn cgroups(ctx: &Ctx, paths: &Paths, r: &mut Report) {
    if fleet_core::host::systemd::in_scope(&ctx.cgroup_parent) {
        // The watcher makes it in the scope: there or not is all there is to say.
        return match ctx.fleet.is_complete() {
            true => r.say(
                Verdict::Ok,
                "cgroups",
                &format!("fleet root {} with agents/ and supervisors/", ctx.fleet.root.unified.display()),
                None,
            ),
            false => r.say(
                Verdict::Fail,
                "cgroups",
                &format!("the fleet root {} is not made yet", ctx.fleet.root.unified.display()),
                Some("sudo systemctl restart fleetctl (the watcher makes it, with the budget from the config)"),
            ),
        };
    }
    let host = steps::Host {
        paths: paths.clone(),
        fleet: ctx.fleet.clone(),
        top: ctx.cgroup_top(),
        proc_root: ctx.proc_root.clone(),
        opts: steps::Options::default(),
    };
    match steps::inspect(&host, Step::Cgroups) {
        Ok(items) => {
            let missing: Vec<String> =
                items.iter().filter(|i| matches!(i.status, Status::Missing(_))).map(|i| i.what.clone()).collect();
            match missing.first() {
                None => r.say(
                    Verdict::Ok,
                    "cgroups",
                    &format!("fleet root {} with agents/ and supervisors/", ctx.fleet.root.unified.display()),
                    None,
                ),
                Some(first) => r.say(
                    Verdict::Fail,
                    "cgroups",
                    &format!("{} item(s) missing, first: {first}", missing.len()),
                    Some("sudo fleetctl setup-host --only cgroups"),
                ),
            }
        }
        Err(e) => r.say(Verdict::Fail, "cgroups", &format!("{e:#}"), None),
    }
}

fn delegation(ctx: &Ctx, r: &mut Report) {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid();
    if me.is_root() {
        return r.say(Verdict::Ok, "delegation", "running as root", None);
    }
    let owned = std::fs::metadata(&ctx.fleet.root.unified).is_ok_and(|m| m.uid() == me.as_raw());
    match owned {
        true => r.say(Verdict::Ok, "delegation", "the fleet subtree is delegated to you", None),
        false => r.say(
            Verdict::Fail,
            "delegation",
            &format!("uid {me} may not manage {}", ctx.fleet.root.unified.display()),
            Some("run as root, or `sudo fleetctl setup-host --delegate $USER`"),
        ),
    }
}

fn swap_check(ctx: &Ctx, r: &mut Report) -> Result<()> {
    let active = swap::active(&ctx.proc_root)?;
    if active.is_empty() {
        r.say(Verdict::Ok, "swap", "no swap on this host", None);
        return Ok(());
    }
    let names: Vec<String> = active.iter().map(|p| p.display().to_string()).collect();
    // On hybrid hosts agents' swap 0 is the memsw limit, which exists only with swap accounting.
    let accounted = ctx.fleet.root.memory_v1.is_none() || ctx.mounts.swap_accounted();
    match accounted {
        true => r.say(
            Verdict::Ok,
            "swap",
            &format!("swap on ({}); agents get swap 0 from their cgroups", names.join(", ")),
            None,
        ),
        false => r.say(
            Verdict::Fail,
            "swap",
            &format!("swap on ({}) and the kernel does not account it per cgroup: agents could swap", names.join(", ")),
            Some("boot with swapaccount=1, or `sudo fleetctl setup-host --swapoff`"),
        ),
    }
    Ok(())
}

fn pool(ctx: &Ctx, root: &Path, r: &mut Report) -> Result<()> {
    let slots = lease::pool_slots(root)?;
    if slots.is_empty() {
        r.say(
            Verdict::Fail,
            "workspaces",
            &format!("no workspace slots under {} (`spawn ID auto` needs them)", root.display()),
            Some("sudo fleetctl setup-host --only workspaces"),
        );
        return Ok(());
    }
    let path = lease::pool_lease_path(&ctx.lock_dir, &fleet_core::paths::canonical_or_absolute(root));
    let held: Vec<u32> = match LeaseFile::inspect(&path).ok().flatten() {
        Some(file) => slots.iter().map(|(n, _)| *n).filter(|n| file.slot_held(*n).unwrap_or(false)).collect(),
        None => Vec::new(),
    };
    r.say(
        Verdict::Ok,
        "workspaces",
        &format!("{} slots under {}, {} leased", slots.len(), root.display(), held.len()),
        None,
    );
    // A slot held that none of our live agents has is held by another fleet leasing from
    // this pool (the kernel's locks say so; nothing is written down).
    let ours: Vec<u32> = view::load_all(ctx)
        .map(|(views, _)| views)
        .unwrap_or_default()
        .iter()
        .filter(|v| v.supervised && !v.state.is_terminal())
        .filter_map(|v| v.record.slot.as_deref().and_then(lease::slot_number))
        .collect();
    let theirs = held.iter().filter(|n| !ours.contains(n)).count();
    if theirs > 0 {
        r.say(
            Verdict::Note,
            "workspaces",
            &format!(
                "the pool {} is shared with another fleet: {theirs} slot(s) are leased by agents not in this fleet's records (its leases and ours exclude each other)",
                root.display()
            ),
            Some("give each fleet its own --workspace-root"),
        );
    }
    Ok(())
}

fn scratch(ctx: &Ctx, dir: &Path, r: &mut Report) -> Result<()> {
    match mounts::at(&ctx.proc_root, dir)? {
        Some(m) if m.fstype == "tmpfs" => {
            let size = m.options.split(',').find_map(|o| o.strip_prefix("size=")).unwrap_or("unlimited");
            r.say(Verdict::Ok, "scratch", &format!("tmpfs on {} (size={size})", dir.display()), None);
        }
        _ => r.say(
            Verdict::Fail,
            "scratch",
            &format!("{} is not a tmpfs: agents' scratch files would land on disk, uncapped", dir.display()),
            Some("sudo fleetctl setup-host --only scratch"),
        ),
    }
    for (state_dir, agents) in other_fleets_in(dir, &ctx.fleet_key()) {
        r.say(
            Verdict::Note,
            "scratch",
            &format!(
                "the scratch root {} is shared with the fleet whose state dir is {} ({agents} scratch dir(s) of its agents; each fleet keeps to its own)",
                dir.display(),
                state_dir.display()
            ),
            Some("give each fleet its own --scratch-root: they share the tmpfs's size"),
        );
    }
    Ok(())
}

/// Other fleets with a directory in the scratch root (`<scratch-root>/<fleet key>/`): their
/// state dirs, and how many scratch dirs each has there. A directory counts as a fleet's only
/// when its name reads back as a state dir that exists.
fn other_fleets_in(scratch_root: &Path, own_key: &str) -> Vec<(PathBuf, usize)> {
    let mut fleets: Vec<(PathBuf, usize)> = std::fs::read_dir(scratch_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let state_dir = fleet_core::paths::key_path(&name).filter(|_| name != own_key)?;
            state_dir.join("agents").is_dir().then(|| (state_dir, count_entries(&entry.path())))
        })
        .collect();
    fleets.sort();
    fleets
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn watcher(ctx: &Ctx, state_dir: &Path, r: &mut Report) {
    let lock = state_dir.join("watch.lock");
    if HeldLocks::read(&ctx.proc_root).contains(&lock) {
        let who = fleet_core::lock::read_holder(&lock).map(|h| format!(" (pid {})", h.pid)).unwrap_or_default();
        r.say(Verdict::Ok, "watcher", &format!("an auto-killing watcher is running{who}"), None);
    } else {
        r.say(
            Verdict::Fail,
            "watcher",
            "no auto-killing watcher: nothing kills agents when the fleet nears its budget",
            Some("run `fleetctl watch --auto-kill` under your init system (setup-host writes a systemd unit)"),
        );
    }
}

/// The fleet's budget and use now, for the operator's eye.
fn budget(ctx: &Ctx, r: &mut Report) {
    if let Ok(b) = fleet_core::meminfo::Budget::measure(&ctx.fleet, &ctx.proc_root) {
        r.say(
            Verdict::Ok,
            "budget",
            &format!("{} used of {} ({:.1} %)", format_iec(b.used), format_iec(b.total), b.percent()),
            None,
        );
    }
}

/// Whether one OOM kill would take every agent: the kernel kills the whole of the highest
/// cgroup with `memory.oom.group` between its victim and the cgroup that ran out, so the
/// flag belongs on each agent (fleetctl sets it there) and never on `agents/`, the fleet
/// root or any cgroup above it up to the top of the tree (systemd sets it on a unit with
/// `OOMPolicy=kill`): a unit's, a slice's or the host's OOM would take the fleet whole.
fn oom_group(ctx: &Ctx, r: &mut Report) {
    match ctx.fleet.highest_oom_group(&ctx.mounts.unified) {
        Ok(Some(dir)) => r.say(
            Verdict::Fail,
            "oom group",
            &format!("memory.oom.group is 1 on {}: one OOM kill would end every agent below it", dir.display()),
            Some(&format!(
                "echo 0 > {} (a systemd unit with OOMPolicy=kill sets it: use OOMPolicy=continue)",
                dir.join("memory.oom.group").display()
            )),
        ),
        Ok(None) if ctx.mounts.layout == Layout::Unified => {
            r.say(Verdict::Ok, "oom group", "an OOM kill takes the victim's agent, not the fleet", None)
        }
        Ok(None) => {}
        Err(e) => r.say(Verdict::Fail, "oom group", &format!("cannot tell: {e}"), None),
    }
}

/// Whether placing an agent in its cgroup can wait for an RCU grace period. On pure cgroup
/// v2 it never does: the agent is born in its cgroup (clone3 with CLONE_INTO_CGROUP), which
/// migrates nothing. On hybrid hosts the agent joins its v1 cgroups by writing
/// `cgroup.procs`, and unless a hierarchy is mounted with `favordynmods` (it applies to all
/// of them: the kernel has one lock for every migration) the first such write after a quiet
/// moment waits for one. setup-host leaves that choice to the operator: it slows every fork
/// and exit a little, and only a reboot turns it off again.
fn migrations(ctx: &Ctx, r: &mut Report) {
    if ctx.mounts.layout == Layout::Unified {
        r.say(
            Verdict::Ok,
            "spawn",
            "agents are born in their cgroups (clone3): a spawn waits for no grace period",
            None,
        );
    } else if mounts::favours_dynmods(&ctx.proc_root) {
        r.say(
            Verdict::Ok,
            "spawn",
            "cgroups mounted with favordynmods: placing an agent waits for no grace period",
            None,
        );
    } else {
        r.say(
            Verdict::Note,
            "spawn",
            "cgroups mounted without favordynmods: on this hybrid host a spawn after a quiet moment waits for an \
             RCU grace period (13 ms median against 5.5 ms on the machine in docs/benchmarks.md)",
            Some("boot with cgroup_favordynmods=true, or `sudo mount -o remount,favordynmods` the cgroup2 mount; either holds until reboot"),
        );
    }
}
