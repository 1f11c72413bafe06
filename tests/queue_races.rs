//! The spawn queue against the commands that race it: `restart` while others wait, two
//! spawns of one id and their reservations, `kill` of a waiter as it is admitted.

use crate::queue::{T, in_background, queued, waiting};
use crate::util::{TestFleet, wait_until};
use std::time::Duration;

/// A fleet of 256 MiB whose agents start at 1 MiB, with `big` running on a 100 MiB
/// reservation and `w` waiting in line for memory behind it: its 120 MiB would pass the
/// threshold of 217 MiB for as long as `big` runs, whatever else ends.
fn with_a_memory_waiter(f: &TestFleet) -> crate::queue::Started {
    f.set_budget(256 << 20);
    f.set_config("[agent]\nstart_reserve = \"1M\"\n");
    f.run(&["spawn", "big", "ws-001", "--memory-reserve", "100M", "--", "sleep", "600"]).code(0);
    let w = queued(f, "w", &["--queue", "--memory-reserve", "120M"]);
    wait_until(T, || format!("{:?}", waiting(f)), || waiting(f).len() == 1);
    assert_eq!(waiting(f), [(1, "w".into(), "memory".into())]);
    w
}

/// `restart` of a running agent while a spawn waits in line: its new run is not refused for
/// the waiter's turn (which would leave the agent stopped for good), and the waiter keeps
/// its place.
#[test]
fn restart_while_others_wait_starts_the_agent_again() {
    let Some(f) = TestFleet::new("queue-restart") else { return };
    f.run(&["spawn", "small", "ws-001", "--", "sleep", "600"]).code(0);
    let w = with_a_memory_waiter(&f);
    // A spawn without --queue is refused while `w` waits; a restart is not.
    f.run(&["spawn", "other", "ws-001", "--", "sleep", "600"]).code(75).one_error_line("wait in line");
    let before = f.agent("small")["pid"].as_i64().expect("pid");
    f.run(&["restart", "small"]).code(0);
    let again = f.wait_state("small", &["running"], Duration::from_secs(30));
    assert_ne!(again["pid"].as_i64(), Some(before), "a new run: {again:#}");
    assert_eq!(waiting(&f), [(1, "w".into(), "memory".into())], "the waiter keeps its place");
    f.run(&["kill", "w"]).code(0);
    crate::queue::waited_then(w.output().code(6), "w: taken out of the line by `fleetctl kill`");
    f.run(&["kill", "--all"]).code(0);
    f.finish();
}

/// A second spawn of a running id is admitted before it finds the id taken (exit 4). Its
/// admission must not take the running agent's reservation out of the ledger: a third
/// spawn that fits only without that reservation is still refused.
#[test]
fn a_losing_duplicate_spawn_keeps_the_winners_reservation() {
    let Some(f) = TestFleet::new("queue-dup-reserve") else { return };
    f.set_budget(256 << 20);
    f.set_config("[agent]\nstart_reserve = \"1M\"\n");
    f.run(&["spawn", "dup", "ws-001", "--memory-reserve", "100M", "--", "sleep", "600"]).code(0);
    // Admitted on its 1 MiB (the reservation of 100 MiB is counted), refused for the id.
    f.run(&["spawn", "dup", "ws-001", "--", "sleep", "600"]).code(4).one_error_line("dup is already running");
    // 100 MiB reserved + 130 MiB is above the threshold of 217 MiB.
    f.run(&["spawn", "third", "ws-001", "--memory-reserve", "130M", "--", "sleep", "600"])
        .code(75)
        .one_error_line("at or above the spawn threshold of 85 %");
    assert!(!f.state.join("agents/third").exists());
    // Once `dup` has ended, its reservation goes with it.
    f.run(&["kill", "dup"]).code(0);
    f.run(&["spawn", "third", "ws-001", "--memory-reserve", "130M", "--", "sleep", "600"]).code(0);
    f.run(&["kill", "--all"]).code(0);
    f.finish();
}

/// `kill` of a waiter admitted a moment before (stopped between its admission and its
/// start): the kill does not claim it took the waiter out of line while the waiter goes on
/// to start; it says the waiter was admitted, lets it start and stops it.
#[test]
fn kill_of_a_waiter_as_it_is_admitted_stops_what_it_starts() {
    let Some(f) = crate::queue::full_at_one_agent("queue-kill-admitted") else { return };
    let mut w = in_background(
        f.cmd(&["spawn", "w", "ws-001", "--queue", "--", "sleep", "600"])
            .env("FLEETCTL_FAILPOINT", "queue-admitted:stop"),
    );
    wait_until(T, || format!("{:?}", waiting(&f)), || waiting(&f).len() == 1);
    f.run(&["kill", "holder"]).code(0);
    crate::queue::wait_stopped(w.child().id(), "the waiter after its admission");
    let kill = in_background(&mut f.cmd(&["kill", "w"]));
    admitted_then_stopped(&f, kill, w);
    assert!(waiting(&f).is_empty());
    f.finish();
}

/// Reads `kill`'s first line, its verdict on the waiter `w`, while `w` is still stopped (a
/// failpoint), then continues `w`: the kill said it found `w` admitted, `w`'s spawn started
/// its agent, and the kill stopped it.
fn admitted_then_stopped(f: &TestFleet, mut kill: crate::queue::Started, mut w: crate::queue::Started) {
    use std::io::BufRead;
    let mut first = String::new();
    let stdout = kill.child().stdout.take().expect("stdout");
    let mut stdout = std::io::BufReader::new(stdout);
    stdout.read_line(&mut first).expect("read kill's first line");
    use nix::sys::signal::{Signal, kill as signal};
    signal(nix::unistd::Pid::from_raw(w.child().id() as i32), Signal::SIGCONT).expect("continue the waiter");
    let spawned = w.output();
    let killed = kill.output();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read kill's output");
    assert!(first.starts_with("w: admitted from the line"), "{first}{rest}{killed:?}");
    killed.code(0);
    assert!(rest.contains("w: stopped"), "{first}{rest}{killed:?}");
    spawned.code(0);
    assert_eq!(f.agent("w")["state"], "killed", "{spawned:?}");
}

/// `kill -l` lists a matching waiter, which is admitted and leaves the line (stopped there,
/// failpoint `queue-left`, before its record with its labels exists) before the kill takes
/// it out (stopped after its listing, failpoint `kill-listed-waiters`): the kill finds it
/// admitted by its line in the ledger and stops what it starts, rather than missing it.
#[test]
fn kill_by_label_of_a_waiter_admitted_after_its_listing_stops_it() {
    let Some(f) = crate::queue::full_at_one_agent("queue-kill-listed") else { return };
    let mut w = in_background(
        f.cmd(&["spawn", "w", "ws-001", "--queue", "--label", "team=x", "--", "sleep", "600"])
            .env("FLEETCTL_FAILPOINT", "queue-left:stop"),
    );
    wait_until(T, || format!("{:?}", waiting(&f)), || waiting(&f).len() == 1);
    let mut kill =
        in_background(f.cmd(&["kill", "-l", "team=x"]).env("FLEETCTL_FAILPOINT", "kill-listed-waiters:stop"));
    let kill_pid = kill.child().id();
    crate::queue::wait_stopped(kill_pid, "the kill after listing the waiters");
    f.run(&["kill", "holder"]).code(0);
    crate::queue::wait_stopped(w.child().id(), "the waiter after leaving the line");
    assert!(waiting(&f).is_empty(), "w has left the line");
    use nix::sys::signal::{Signal, kill as signal};
    signal(nix::unistd::Pid::from_raw(kill_pid as i32), Signal::SIGCONT).expect("continue the kill");
    admitted_then_stopped(&f, kill, w);
    f.finish();
}
