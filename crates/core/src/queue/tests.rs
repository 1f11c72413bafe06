//! Tests of the spawn queue: tickets, the line, the wait for the ticket ahead, bells, cancel.

use super::*;

fn id(s: &str) -> AgentId {
    s.parse().expect("id")
}

#[test]
fn tickets_line_up_in_arrival_order_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let a = Ticket::join(&dir, &id("a"), Reason::Memory, &Labels::new()).expect("join");
    let b = Ticket::join(&dir, &id("b"), Reason::Turn, &Labels::new()).expect("join");
    assert!(a.seq < b.seq);
    let waiting = line(&dir).expect("line");
    assert_eq!(waiting.iter().map(|w| w.id.to_string()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!((waiting[0].reason, waiting[0].pid), (Reason::Memory, std::process::id() as i32));
    assert_eq!((a.ahead().expect("a"), b.ahead().expect("b")), (0, 1));
    drop(a);
    assert_eq!(b.ahead().expect("b"), 0);
    // A later ticket still comes after b.
    let c = Ticket::join(&dir, &id("c"), Reason::Cap, &Labels::new()).expect("join");
    assert!(c.seq > b.seq);
    drop((b, c));
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
}

#[test]
fn a_waiter_waits_for_the_ticket_directly_ahead_and_no_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let labels: Labels = [("batch".to_string(), "7".to_string())].into();
    let a = Ticket::join(&dir, &id("a"), Reason::Cap, &Labels::new()).expect("join");
    let b = Ticket::join(&dir, &id("b"), Reason::Turn, &labels).expect("join");
    let mut c = Ticket::join(&dir, &id("c"), Reason::Turn, &Labels::new()).expect("join");
    assert_eq!(a.directly_ahead().expect("a"), None, "a is the head");
    let ahead_of_c = c.directly_ahead().expect("c").expect("b is ahead of c");
    assert_eq!((ahead_of_c.id.as_str(), &ahead_of_c.labels), ("b", &labels));
    let bell = c.take_bell().expect("bell");
    let mut gone = Gone::watch(&dir, &ahead_of_c, Some(bell.name())).expect("watch");
    assert!(!bell.sleep(Duration::from_millis(50)) && !gone.gone(), "b still waits");
    // The head leaving does not concern c.
    drop(a);
    assert!(!bell.sleep(Duration::from_millis(50)) && !gone.gone(), "b still waits");
    // b's lock goes with it, dead or alive: here its ticket is dropped. c's bell rings.
    drop(b);
    assert!(bell.sleep(Duration::from_secs(30)), "b's going rings c's bell");
    assert!(gone.gone());
    assert_eq!(c.directly_ahead().expect("c"), None, "c is the head now");
    // A dead waiter's ticket ahead (a lock nobody holds) is passed and removed.
    std::fs::write(dir.join("000000000000.dead"), "1 0 memory\n").expect("write");
    let d = Ticket::join(&dir, &id("d"), Reason::Turn, &Labels::new()).expect("join");
    assert_eq!(d.directly_ahead().expect("d").map(|w| w.id), Some(id("c")));
    assert_eq!(c.directly_ahead().expect("c"), None);
    assert!(!dir.join("000000000000.dead").exists());
}

#[test]
fn an_unlocked_ticket_is_a_dead_waiters_and_is_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let live = Ticket::join(&dir, &id("live"), Reason::Memory, &Labels::new()).expect("join");
    // A dead waiter's ticket: a file nobody holds a lock on.
    std::fs::write(dir.join("000000000000.dead"), "1 0 memory\n").expect("write");
    let waiting = line(&dir).expect("line");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].id, id("live"));
    assert!(!dir.join("000000000000.dead").exists());
    // One `kill` took out of line and whose waiter then died goes too, with its mark.
    std::fs::write(dir.join("000000000099.gone"), "1 0 memory\n").expect("write");
    std::fs::write(cancel_path(&dir, 99), "").expect("write");
    assert_eq!(line(&dir).expect("line").len(), 1);
    assert!(!dir.join("000000000099.gone").exists() && !cancel_path(&dir, 99).exists());
    drop(live);
}

#[test]
fn a_cancel_mark_reaches_its_waiter_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let a = Ticket::join(&dir, &id("a"), Reason::Memory, &Labels::new()).expect("join");
    let mut b = Ticket::join(&dir, &id("b"), Reason::Memory, &Labels::new()).expect("join");
    let b_bell = b.take_bell().expect("bell");
    let ledger = Ledger::lock(&tmp.path().join("admission")).expect("ledger");
    let seq = |c: Option<Cancel>| match c {
        Some(Cancel::Withdrawn(w)) => Some(w.seq),
        other => panic!("{other:?}"),
    };
    assert_eq!(seq(cancel(&dir, &id("b"), &ledger).expect("cancel")), Some(b.seq));
    assert_eq!(cancel(&dir, &id("zz"), &ledger).expect("cancel"), None);
    assert!(b.cancelled() && !a.cancelled());
    assert!(b_bell.sleep(Duration::from_secs(30)), "the cancel rang b's bell");
    // Out of line at once, before its waiter has even woken.
    assert_eq!(line(&dir).expect("line").len(), 1);
    assert_eq!(cancel(&dir, &id("b"), &ledger).expect("cancel"), None);
    let alarm = Alarm::watch(&dir).expect("watch");
    wake(&dir);
    assert!(alarm.sleep(Duration::from_secs(5)), "wake() is seen");
    drop((a, b));
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "wake")).count(),
        0
    );
}

#[test]
fn a_bell_is_bound_under_a_random_name_before_its_ticket_shows_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let a = Ticket::join(&dir, &id("a"), Reason::Memory, &Labels::new()).expect("join");
    let b = Ticket::join(&dir, &id("b"), Reason::Memory, &Labels::new()).expect("join");
    let names: Vec<String> = line(&dir).expect("line").into_iter().map(|w| w.bell.expect("a bell")).collect();
    assert_ne!(names[0], names[1]);
    // Not derived from the ticket: reading /proc/locks (dev and inode) does not give it.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(a.path()).expect("metadata");
    assert!(!names[0].contains(&format!("{}-{}", meta.dev(), meta.ino())), "{}", names[0]);
    // Bound already when the ticket names it: nobody can take it first.
    for name in &names {
        let taken = Bell::hang_named(name.clone()).expect_err("the name is bound");
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
    }
    drop((a, b));
}

#[test]
fn a_waiter_without_a_bell_still_learns_that_the_ticket_ahead_went() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let a = Ticket::join(&dir, &id("a"), Reason::Memory, &Labels::new()).expect("join");
    let b = Ticket::join(&dir, &id("b"), Reason::Turn, &Labels::new()).expect("join");
    let ahead = b.directly_ahead().expect("b").expect("a is ahead");
    let mut gone = Gone::watch(&dir, &ahead, None).expect("watch");
    assert!(!gone.wait(Duration::from_millis(50)), "a still waits");
    drop(a);
    assert!(gone.wait(Duration::from_secs(30)), "a's going ends the wait");
    assert!(gone.gone(), "and stays seen");
    drop(b);
}

#[test]
fn an_admitted_waiter_is_not_cancelled_and_a_stale_mark_is_not_inherited() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir(tmp.path());
    let mut ledger = Ledger::lock(&tmp.path().join("admission")).expect("ledger");
    let a = Ticket::join(&dir, &id("a"), Reason::Memory, &Labels::new()).expect("join");
    let pid = std::process::id() as i32;
    let entry =
        crate::admission::Entry { at: Duration::ZERO, reserve: 0, pid, start_ticks: None, id: id("a"), lasting: false };
    ledger.entries.push(entry);
    assert!(matches!(cancel(&dir, &id("a"), &ledger).expect("cancel"), Some(Cancel::Admitted(_))));
    assert!(!a.cancelled());
    // A mark for a number whose ticket has gone, and the next ticket given that number.
    let seq = a.seq;
    drop(a);
    std::fs::write(cancel_path(&dir, seq), "").expect("write");
    let b = Ticket::join(&dir, &id("b"), Reason::Memory, &Labels::new()).expect("join");
    assert_eq!(b.seq, seq);
    assert!(!b.cancelled());
}
