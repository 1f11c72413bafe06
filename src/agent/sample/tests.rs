//! The sampler's levels over a fake cgroup tree in a temp dir: which files each level opens,
//! as inotify reports them. This tests the policy (which files), not the kernel: "hot paths
//! read only what they show" (docs/ARCHITECTURE.md).

use super::*;
use fleet_core::cgroup::{Fleet, Layout};
use std::{
    collections::{BTreeSet, HashMap},
    ffi::CString,
    io::Read,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

/// The files opened in some directories since the last [`Opens::take`], as `label/name`.
struct Opens {
    inotify: std::fs::File,
    labels: HashMap<i32, &'static str>,
}

impl Opens {
    fn watch(dirs: &[(&'static str, &Path)]) -> Opens {
        // SAFETY: a plain system call; the descriptor it returns is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let inotify = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut labels = HashMap::new();
        for (label, dir) in dirs {
            let path = CString::new(dir.as_os_str().as_bytes()).expect("path");
            // SAFETY: `path` is a valid C string that outlives the call.
            let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_OPEN) };
            assert!(wd >= 0, "inotify_add_watch {}: {}", dir.display(), std::io::Error::last_os_error());
            labels.insert(wd, *label);
        }
        Opens { inotify, labels }
    }

    /// The files opened since the last call (each once).
    fn take(&mut self) -> BTreeSet<String> {
        let mut opened = BTreeSet::new();
        let mut buf = [0u8; 16384];
        // Events are queued as the opens happen, so everything is there; the descriptor is
        // non-blocking, so an empty queue ends the loop.
        while let Ok(n) = self.inotify.read(&mut buf) {
            let mut at = 0;
            while at + 16 <= n {
                let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().expect("4 bytes"));
                let (wd, len) = (word(0) as i32, word(12) as usize);
                let name = &buf[at + 16..at + 16 + len];
                let name = String::from_utf8_lossy(name).trim_end_matches('\0').to_string();
                if !name.is_empty() {
                    opened.insert(format!("{}/{name}", self.labels[&wd]));
                }
                at += 16 + len;
            }
        }
        opened
    }
}

/// One agent's cgroup read by path, all of it from the kernel (an agent seen through its
/// cgroup, without a record to take its limits from).
fn read(cgroup: &Cgroup, detail: Detail, started: bool) -> CgroupSample {
    read_under(cgroup, None, detail, Recorded { started, limits: None })
}

fn seed(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("seed");
    }
}

const PSI: &str = "some avg10=1.50 avg60=0 avg300=0 total=9\nfull avg10=0.25 avg60=0 avg300=0 total=3\n";
const STAT_V2: &str = "anon 1000\nfile 9000\nactive_file 1000\ninactive_file 8192\n";

/// A unified agent cgroup with every file any level could read.
fn unified(dir: &Path) -> Cgroup {
    seed(
        dir,
        &[
            ("memory.current", "65536\n"),
            ("memory.peak", "131072\n"),
            ("memory.max", "262144\n"),
            ("memory.high", "max\n"),
            ("memory.events", "low 0\nhigh 3\nmax 4\noom 1\noom_kill 1\n"),
            ("memory.pressure", PSI),
            ("memory.stat", STAT_V2),
            ("memory.swap.current", "0\n"),
            ("pids.current", "7\n"),
            ("cpu.stat", "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n"),
            ("cgroup.events", "populated 1\nfrozen 0\n"),
        ],
    );
    Cgroup { layout: Layout::Unified, unified: dir.into(), memory_v1: None, pids_v1: None }
}

/// A hybrid one: the v1 memory and pids directories beside the unified one.
fn hybrid(root: &Path) -> Cgroup {
    let (u, m, p) = (root.join("u"), root.join("m"), root.join("p"));
    seed(&u, &[("memory.pressure", PSI), ("cpu.stat", "usage_usec 5000\n"), ("cgroup.events", "populated 1\n")]);
    seed(
        &m,
        &[
            ("memory.usage_in_bytes", "65536\n"),
            ("memory.max_usage_in_bytes", "131072\n"),
            ("memory.limit_in_bytes", "262144\n"),
            ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ("memory.failcnt", "5\n"),
            ("memory.memsw.failcnt", "1\n"),
            ("memory.stat", "cache 9000\ninactive_file 100\ntotal_inactive_file 8192\n"),
        ],
    );
    seed(&p, &[("pids.current", "7\n"), ("pids.events", "max 0\n")]);
    Cgroup { layout: Layout::Hybrid, unified: u, memory_v1: Some(m), pids_v1: Some(p) }
}

fn watch(cg: &Cgroup) -> Opens {
    let mut dirs = vec![("u", cg.unified.as_path())];
    dirs.extend(cg.memory_v1.as_deref().map(|d| ("m", d)));
    dirs.extend(cg.pids_v1.as_deref().map(|d| ("p", d)));
    Opens::watch(&dirs)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn each_level_opens_only_its_files_on_pure_v2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cg = unified(tmp.path());
    let mut opens = watch(&cg);
    let stats = ["u/memory.current", "u/memory.peak", "u/memory.max"];
    let cases: [(Detail, bool, Vec<&str>); 5] = [
        (Detail::Status, true, [&stats[..], &["u/pids.current", "u/cpu.stat"]].concat()),
        (Detail::Status, false, [&stats[..], &["u/pids.current"]].concat()),
        (Detail::Metrics, true, [&stats[..], &["u/pids.current"]].concat()),
        (Detail::Memory, true, [&stats[..], &["u/memory.high", "u/memory.events", "u/memory.pressure"]].concat()),
        (Detail::Relief, true, vec!["u/memory.current", "u/memory.stat"]),
    ];
    for (detail, started, want) in cases {
        let sample = read(&cg, detail, started);
        assert_eq!(opens.take(), set(&want), "{detail:?} (started: {started})");
        assert_eq!(sample.current, Some(65536), "{detail:?}");
    }
}

#[test]
fn each_level_opens_only_its_files_on_hybrid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cg = hybrid(tmp.path());
    let mut opens = watch(&cg);
    let stats = ["m/memory.usage_in_bytes", "m/memory.max_usage_in_bytes", "m/memory.limit_in_bytes"];
    let cases: [(Detail, Vec<&str>); 4] = [
        (Detail::Status, [&stats[..], &["p/pids.current", "u/cpu.stat"]].concat()),
        (Detail::Metrics, [&stats[..], &["p/pids.current"]].concat()),
        (
            Detail::Memory,
            [
                &stats[..],
                &[
                    "m/memory.soft_limit_in_bytes",
                    "m/memory.oom_control",
                    "m/memory.failcnt",
                    "m/memory.memsw.failcnt",
                    "u/memory.pressure",
                ],
            ]
            .concat(),
        ),
        (Detail::Relief, vec!["m/memory.usage_in_bytes", "m/memory.stat"]),
    ];
    for (detail, want) in cases {
        read(&cg, detail, true);
        assert_eq!(opens.take(), set(&want), "{detail:?}");
    }
}

/// An agent with a readable record: its limits are the ones spawn wrote, shown as the kernel
/// keeps them (whole pages) without reading them back, and of v1's failure counters only the
/// one that can count: `status` opens four files, `memory` five on hybrid, four on v2.
#[test]
fn with_its_record_s_limits_no_level_reads_the_limit_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let page = 4096; // the record's limits are whole pages here, on any page size up to 4 KiB
    let limits = fleet_core::cgroup::Limits {
        memory_max: Limit::Bytes(1 << 30),
        memory_high: Limit::Bytes((768 << 20) + page / 2),
        swap_max: Limit::Bytes(0),
        ..Default::default()
    };
    let recorded = Recorded { started: true, limits: Some(limits) };
    let cases = [
        (
            unified(&tmp.path().join("v2")),
            vec!["u/memory.current", "u/memory.peak", "u/pids.current", "u/cpu.stat"],
            vec!["u/memory.current", "u/memory.peak", "u/memory.events", "u/memory.pressure"],
        ),
        (
            hybrid(&tmp.path().join("v1")),
            vec!["m/memory.usage_in_bytes", "m/memory.max_usage_in_bytes", "p/pids.current", "u/cpu.stat"],
            vec![
                "m/memory.usage_in_bytes",
                "m/memory.max_usage_in_bytes",
                "m/memory.oom_control",
                // No swap allowed: memory+swap, as large as memory, is the limit a charge fails at.
                "m/memory.memsw.failcnt",
                "u/memory.pressure",
            ],
        ),
    ];
    for (cg, status_files, memory_files) in cases {
        let mut opens = watch(&cg);
        let status = read_under(&cg, None, Detail::Status, recorded);
        assert_eq!(opens.take(), set(&status_files), "{:?}", cg.layout);
        // The record's limit, not the file's (262144 in the fake tree).
        assert_eq!((status.current, status.max, status.pids), (Some(65536), Some(Limit::Bytes(1 << 30)), Some(7)));
        let memory = read_under(&cg, None, Detail::Memory, recorded);
        assert_eq!(opens.take(), set(&memory_files), "{:?}", cg.layout);
        assert_eq!(memory.max, Some(Limit::Bytes(1 << 30)));
        assert!(memory.high.and_then(Limit::bytes).is_some_and(|h| h % page == 0 && h <= (768 << 20) + page / 2));
        assert!(memory.events.oom_kill > 0, "{memory:?}");
    }
}

#[test]
fn only_relief_parses_memory_stat_and_reads_what_each_view_shows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for cg in [unified(&tmp.path().join("v2")), hybrid(&tmp.path().join("v1"))] {
        let mut opens = watch(&cg);
        for detail in [Detail::Status, Detail::Metrics, Detail::Memory] {
            read(&cg, detail, true);
            let opened = opens.take();
            assert!(!opened.iter().any(|f| f.ends_with("/memory.stat")), "{detail:?} parsed memory.stat: {opened:?}");
        }
        let relief = read(&cg, Detail::Relief, true);
        assert_eq!((relief.current, relief.inactive_file), (Some(65536), 8192), "{:?}", cg.layout);
        let status = read(&cg, Detail::Status, true);
        assert_eq!((status.peak, status.max, status.pids), (Some(131072), Some(Limit::Bytes(262144)), Some(7)));
        assert_eq!((status.cpu_usec, status.inactive_file, status.high), (Some(5000), 0, None));
        assert_eq!(read(&cg, Detail::Metrics, true).cpu_usec, None, "metrics does not export CPU time");
        let memory = read(&cg, Detail::Memory, true);
        assert_eq!((memory.pressure.some_avg10, memory.pids, memory.inactive_file), (1.5, None, 0));
        assert!(memory.events.oom_kill > 0 && memory.high == Some(Limit::Max), "{memory:?}");
    }
}

#[test]
fn reading_under_the_held_parent_opens_the_same_files_and_reads_the_same() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (v2, v1) = (tmp.path().join("v2"), tmp.path().join("v1"));
    let cases = [
        (unified(&v2.join("a1")), Cgroup { layout: Layout::Unified, unified: v2, memory_v1: None, pids_v1: None }),
        (
            hybrid(&v1),
            Cgroup { layout: Layout::Hybrid, unified: v1.clone(), memory_v1: Some(v1.clone()), pids_v1: Some(v1) },
        ),
    ];
    for (cg, parent) in cases {
        let held = HeldParent::open(&parent).expect("hold the parent");
        let mut opens = watch(&cg);
        for detail in [Detail::Status, Detail::Metrics, Detail::Memory, Detail::Relief] {
            let by_path = read(&cg, detail, true);
            let by_path_opened = opens.take();
            assert_eq!(
                read_under(&cg, Some(&held), detail, Recorded { started: true, limits: None }),
                by_path,
                "{detail:?} {:?}",
                cg.layout
            );
            assert_eq!(opens.take(), by_path_opened, "{detail:?} {:?}", cg.layout);
        }
    }
}

#[test]
fn a_gone_cgroup_is_not_measured_at_any_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gone = Cgroup { layout: Layout::Unified, unified: tmp.path().join("gone"), memory_v1: None, pids_v1: None };
    for detail in [Detail::Status, Detail::Metrics, Detail::Memory, Detail::Relief] {
        assert_eq!(read(&gone, detail, true).current, None, "{detail:?}");
    }
}

/// A fleet of `n` unified agents `a0`, `a1`, ... using 1, 2, ... MiB.
fn fleet(root: &Path, n: u64) -> (Fleet, Vec<PathBuf>) {
    let fleet =
        Fleet { root: Cgroup { layout: Layout::Unified, unified: root.into(), memory_v1: None, pids_v1: None } };
    let dirs = (0..n)
        .map(|i| {
            let cg = unified(&root.join("agents").join(format!("a{i}")));
            std::fs::write(cg.unified.join("memory.current"), format!("{}\n", (i + 1) << 20)).expect("usage");
            cg.unified
        })
        .collect();
    (fleet, dirs)
}

#[test]
fn the_watchers_refresh_reads_usage_and_the_shown_limits_then_only_held_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (fleet, dirs) = fleet(tmp.path(), 3);
    let labels = ["a0", "a1", "a2"];
    let mut opens = Opens::watch(&labels.iter().zip(&dirs).map(|(l, d)| (*l, d.as_path())).collect::<Vec<_>>());
    let mut sampler = LightSampler::new(std::time::Duration::from_secs(10));
    let first = sampler.sample(&fleet, 1).expect("sample");
    let ids: Vec<&str> = first.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["a2", "a1", "a0"], "largest first");
    assert_eq!((first[0].max, first[1].max), (Some(262144), None), "the limit of the shown only");
    assert_eq!(opens.take(), set(&["a0/memory.current", "a1/memory.current", "a2/memory.current", "a2/memory.max"]));
    // Later refreshes read the held usage files in place: no file is opened at all, and
    // without the limits nothing but usage is read.
    std::fs::write(dirs[0].join("memory.current"), format!("{}\n", 9 << 20)).expect("grow");
    opens.take(); // the write above
    let again = sampler.sample(&fleet, 0).expect("sample");
    assert_eq!(opens.take(), BTreeSet::new());
    assert_eq!((again[0].id.as_str(), again[0].current), ("a0", 9 << 20));
    assert_eq!(sampler.growth()["a0"], 8 << 20, "growth is tracked from the refreshes");
}

#[test]
fn limits_come_from_the_record_only_for_agents_that_cannot_rewrite_them() {
    let me = nix::unistd::geteuid().as_raw();
    let other = if me == 65534 { 65533 } else { 65534 };
    assert!(super::cannot_rewrite_its_limits(Some(&format!("{other}:{other}"))), "another, unprivileged user");
    assert!(!super::cannot_rewrite_its_limits(Some("0:0")), "root can write any cgroup file");
    assert!(!super::cannot_rewrite_its_limits(Some(&format!("{me}:{me}"))), "the owner of the fleet's cgroups");
    assert!(!super::cannot_rewrite_its_limits(None), "unknown: read the kernel");
    assert!(!super::cannot_rewrite_its_limits(Some("nobody")), "not a uid: read the kernel");
}
