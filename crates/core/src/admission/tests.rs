//! The ledger's lines, its change lines and its owners, on files in a temp dir.

use super::*;

fn entry(ms: u64, id: &str) -> Entry {
    Entry {
        at: Duration::from_millis(ms),
        reserve: 32 << 20,
        pid: 42,
        start_ticks: Some(7),
        id: id.parse().expect("id"),
        lasting: false,
    }
}

#[test]
fn round_trips_and_skips_torn_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("state/admission.lock");
    let mut ledger = Ledger::lock(&path).expect("lock");
    assert!(ledger.entries.is_empty());
    ledger.entries = vec![entry(1000, "a")];
    ledger.save().expect("save");
    // A longer ledger overwrites a shorter one without a truncate.
    ledger.entries = vec![entry(1000, "a"), entry(2000, "b")];
    ledger.save().expect("save");
    drop(ledger);
    // A torn tail, as a spawn killed mid-rewrite leaves it.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(b"3000 335544\xff\xfe");
    std::fs::write(&path, bytes).expect("write");
    let mut ledger = Ledger::lock(&path).expect("lock");
    assert_eq!(ledger.entries, vec![entry(1000, "a"), entry(2000, "b")]);
    // Shorter content replaces longer, torn tail and all.
    ledger.entries.truncate(1);
    ledger.save().expect("save");
    drop(ledger);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), entry(1000, "a").line());
}

#[test]
fn a_lasting_reservation_round_trips() {
    let lasting = Entry { lasting: true, ..entry(2500, "r") };
    assert_eq!(lasting.line(), format!("2500 {} 42:7 r R\n", 32 << 20));
    assert_eq!(Entry::parse(lasting.line().trim_end()), Some(lasting));
    assert_eq!(Entry::parse(entry(1, "a").line().trim_end()), Some(entry(1, "a")));
}

#[test]
fn refuses_lines_that_are_not_entries() {
    for bad in
        ["", "1 2 3", "1 2 3 ../x", "x 2 3 a", "1 2 3 a extra", "1 -2 3 a", "1 2 3 a R x", "1 2 3: a", "1 2 :4 a"]
    {
        assert_eq!(Entry::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_line_of_an_older_fleetctl_loads_without_an_owner_start() {
    let old = Entry::parse("2500 1048576 42 r R").expect("an old lasting line");
    assert_eq!((old.pid, old.start_ticks, old.owner(), old.lasting), (42, None, None, true));
    // Written back as it was read until it is adopted or dropped.
    assert_eq!(old.line(), "2500 1048576 42 r R\n");
}

#[test]
fn entries_whose_owner_is_gone_are_dropped_and_old_ones_adopted_or_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let proc_root = Path::new("/proc");
    let me = ProcessRef::of(proc_root, std::process::id() as i32).expect("this process");
    let mine = |id: &str| Entry { pid: me.pid, start_ticks: Some(me.start_ticks), ..entry(1, id) };
    let mut ledger = Ledger::lock(&tmp.path().join("admission.lock")).expect("lock");
    let entries = vec![
        mine("live"),
        // This pid with another start time: a dead owner whose pid was reused.
        Entry { start_ticks: Some(me.start_ticks + 1), ..mine("reused") },
        // An old line that is adopted, and one that is not.
        Entry { pid: 1, start_ticks: None, lasting: true, ..entry(1, "adopted") },
        Entry { pid: 1, start_ticks: None, ..entry(1, "orphan") },
    ];
    let adopt = |e: &Entry| (e.id.as_str() == "adopted").then_some(me);
    let ids = |l: &Ledger| l.entries.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
    ledger.entries = entries.clone();
    assert!(ledger.drop_gone(proc_root, |_| true, adopt));
    assert_eq!(ids(&ledger), ["live", "adopted"]);
    assert_eq!(ledger.entries[1].owner(), Some(me), "adopted");
    assert!(!ledger.drop_gone(proc_root, |_| true, adopt), "nothing more to drop");
    ledger.entries = entries;
    assert!(ledger.drop_gone(proc_root, |e| e.id.as_str() != "orphan", adopt));
    assert_eq!(ids(&ledger), ["live", "adopted", "orphan"], "only the entries checked");
}

#[test]
fn an_owner_releases_its_own_lines_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("admission.lock");
    let owner = ProcessRef { pid: 42, start_ticks: 7 };
    let mut ledger = Ledger::lock(&path).expect("lock");
    ledger.entries = vec![
        entry(1, "mine"),
        Entry { lasting: true, ..entry(2, "mine-too") },
        // Its pid, another start time: another process.
        Entry { start_ticks: Some(8), ..entry(3, "reused") },
        Entry { start_ticks: None, ..entry(4, "old") },
        Entry { pid: 43, ..entry(5, "other") },
    ];
    ledger.save().expect("save");
    drop(ledger);
    Ledger::release(&path, owner).expect("release");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.ends_with("- 42:7\n") && text.lines().count() == 6, "appended, not rewritten: {text}");
    let ids: Vec<String> = Ledger::lock(&path).expect("lock").entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["reused", "old", "other"]);
    Ledger::release(&path, owner).expect("nothing left to release is no error");
    // A release applies to the lines above it only.
    let mut ledger = Ledger::lock(&path).expect("lock");
    ledger.append(entry(6, "after")).expect("append");
    drop(ledger);
    let ids: Vec<String> = Ledger::lock(&path).expect("lock").entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["reused", "old", "other", "after"]);
}

#[test]
fn a_hand_over_line_moves_its_agents_line_to_the_new_owner_until_a_rewrite_folds_it_in() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("admission.lock");
    let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: 7 }, ProcessRef { pid: 43, start_ticks: 9 });
    let mut ledger = Ledger::lock(&path).expect("lock");
    ledger.append(entry(1, "a")).expect("append");
    // Another agent's line of the same spawn pid and start, and a's line under another owner.
    ledger.append(entry(2, "b")).expect("append");
    ledger.append(Entry { pid: 44, ..entry(3, "a") }).expect("append");
    drop(ledger);
    Ledger::hand_over(&path, &"a".parse().expect("id"), spawn, supervisor).expect("hand over");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 4, "appended, not rewritten: {text}");
    let mut ledger = Ledger::lock(&path).expect("lock");
    let owners: Vec<(String, i32)> = ledger.entries.iter().map(|e| (e.id.to_string(), e.pid)).collect();
    assert_eq!(owners, [("a".into(), 43), ("b".into(), 42), ("a".into(), 44)]);
    ledger.save().expect("save");
    drop(ledger);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains('>') && text.lines().count() == 3, "folded in: {text}");
    assert_eq!(Ledger::lock(&path).expect("lock").entries[0].owner(), Some(supervisor));
}

#[test]
fn a_line_appended_after_a_torn_tail_starts_on_a_line_of_its_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("admission.lock");
    let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: 7 }, ProcessRef { pid: 43, start_ticks: 9 });
    // A hand-over after a torn tail.
    std::fs::write(&path, format!("{}3000 3355", entry(1, "a").line())).expect("seed");
    Ledger::hand_over(&path, &"a".parse().expect("id"), spawn, supervisor).expect("hand over");
    let ledger = Ledger::lock(&path).expect("lock");
    assert_eq!(ledger.entries.len(), 1);
    assert_eq!(ledger.entries[0].owner(), Some(supervisor));
    drop(ledger);
    // An entry appended after a torn tail.
    std::fs::write(&path, "3000 3355").expect("seed");
    let mut ledger = Ledger::lock(&path).expect("lock");
    ledger.append(entry(2, "b")).expect("append");
    drop(ledger);
    let ids: Vec<String> = Ledger::lock(&path).expect("lock").entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["b"]);
}

#[test]
fn appends_rewrite_once_there_are_more_than_32_change_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("admission.lock");
    // Short agents one after another: each adds a line, hands it over and releases it.
    for n in 0..200u64 {
        let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: n }, ProcessRef { pid: 43, start_ticks: n });
        let mut ledger = Ledger::lock(&path).expect("lock");
        ledger.append(Entry { start_ticks: Some(n), lasting: true, ..entry(n, "a") }).expect("append");
        drop(ledger);
        Ledger::hand_over(&path, &"a".parse().expect("id"), spawn, supervisor).expect("hand over");
        Ledger::release(&path, supervisor).expect("release");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.lines().count() <= 3 * (FOLD_AFTER + 2), "{} lines on file", text.lines().count());
    assert!(Ledger::lock(&path).expect("lock").entries.is_empty());
}

#[test]
fn change_lines_parse_strictly() {
    let (a, b) = (ProcessRef { pid: 1, start_ticks: 2 }, ProcessRef { pid: 3, start_ticks: 4 });
    let hand_over = Change::HandOver { from: a, to: b, id: "x".parse().expect("id") };
    assert_eq!(hand_over.line(), "> 1:2 3:4 x\n");
    assert_eq!(Change::parse(hand_over.line().trim_end()), Some(hand_over));
    let release = Change::Release { owner: a };
    assert_eq!(release.line(), "- 1:2\n");
    assert_eq!(Change::parse(release.line().trim_end()), Some(release));
    let bad = [
        "> 1:2 3:4",
        "> 1 3:4 x",
        "> 1:2 3:4 x y",
        ">1:2 3:4 x",
        "1:2 3:4 x",
        "> 1:2 3:4 ../x",
        "- 1",
        "- 1:2 x",
        "-1:2",
        "- ",
    ];
    for bad in bad {
        assert_eq!(Change::parse(bad), None, "{bad}");
        assert_eq!(Entry::parse(bad), None, "{bad}: not an entry either");
    }
}

#[test]
fn young_means_recent_and_not_from_the_future() {
    let s = Duration::from_secs;
    assert!(young(s(95), s(100), s(10)));
    assert!(young(s(90), s(100), s(10)));
    assert!(!young(s(89), s(100), s(10)));
    assert!(!young(s(101), s(100), s(10)));
}

#[test]
fn a_hand_over_moves_the_last_line_its_owner_has_of_the_agent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("admission.lock");
    let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: 7 }, ProcessRef { pid: 43, start_ticks: 9 });
    let mut ledger = Ledger::lock(&path).expect("lock");
    // A stray line of the same spawn and agent (a give-back that failed) stays the spawn's,
    // and ends with it.
    ledger.append(entry(1, "a")).expect("append");
    ledger.append(entry(2, "a")).expect("append");
    drop(ledger);
    Ledger::hand_over(&path, &"a".parse().expect("id"), spawn, supervisor).expect("hand over");
    let owners: Vec<Option<ProcessRef>> = Ledger::lock(&path).expect("lock").entries.iter().map(Entry::owner).collect();
    assert_eq!(owners, [Some(spawn), Some(supervisor)]);
}

#[test]
fn a_burst_leaves_at_most_33_change_lines_for_the_next_spawn_to_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("admission.lock");
    // 300 spawns in a row, each handing its line over before the next is admitted.
    for n in 0..300u64 {
        let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: n }, ProcessRef { pid: 43, start_ticks: n });
        let id = format!("a{n}");
        let mut ledger = Ledger::lock(&path).expect("lock");
        ledger.append(Entry { start_ticks: Some(n), ..entry(n, &id) }).expect("append");
        drop(ledger);
        Ledger::hand_over(&path, &id.parse().expect("id"), spawn, supervisor).expect("hand over");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let changes = text.lines().filter(|l| l.starts_with('>')).count();
    assert!(changes <= 33, "{changes} change lines on file");
    let ledger = Ledger::lock(&path).expect("lock");
    assert_eq!(ledger.entries.len(), 300);
    assert!(ledger.entries.iter().all(|e| e.pid == 43), "every line handed over");
}
