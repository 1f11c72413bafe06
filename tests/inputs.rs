//! What an operator types: one memory limit alone, durations without a unit, negative and
//! zero sizes. Each is taken as meant or refused with one line that says what to type.

use crate::util::TestFleet;
use fleet_core::size::Limit;
use std::time::Duration;

const MIB: u64 = 1 << 20;

#[test]
fn a_memory_max_alone_brings_its_high_from_the_flag_the_config_and_cgroup_create() {
    let Some(f) = TestFleet::new("maxalone") else { return };
    f.run(&["spawn", "m1", "ws-001", "--memory-max", "300M", "--", "sleep", "600"]).code(0);
    f.wait_state("m1", &["running"], Duration::from_secs(30));
    let limits = f.limits("m1");
    assert_eq!((limits.memory_max, limits.memory_high), (Limit::Bytes(300 * MIB), Limit::Bytes(225 * MIB)));
    f.run(&["cgroup-create", "c1", "--memory-max", "1G"]).code(0);
    let limits = f.limits("c1");
    assert_eq!((limits.memory_max, limits.memory_high), (Limit::Bytes(1024 * MIB), Limit::Bytes(768 * MIB)));
    f.set_config("[agent]\nmemory_max = \"1G\"\n");
    f.run(&["cgroup-create", "c2"]).code(0);
    assert_eq!(f.limits("c2").memory_high, Limit::Bytes(768 * MIB), "the config's max alone");
    // A typed high above a typed max is still refused, and leaves nothing.
    f.run(&["cgroup-create", "c3", "--memory-max", "1G", "--memory-high", "2G"])
        .code(2)
        .one_error_line("must not exceed");
    assert!(!f.cgroup("c3").exists(), "nothing half-made");
    f.finish();
}

/// `spawn u1 ws-001 FLAGS -- sleep 600` in `f`.
fn spawn(f: &TestFleet, flags: &[&str]) -> crate::util::Run {
    let mut args = vec!["spawn", "u1", "ws-001"];
    args.extend(flags);
    args.extend(["--", "sleep", "600"]);
    f.run(&args)
}

#[test]
fn a_number_without_a_unit_is_not_a_duration() {
    let Some(f) = TestFleet::new("unitless") else { return };
    spawn(&f, &["--soft-timeout", "15"]).code(2).one_error_line("did you mean 15s");
    spawn(&f, &["--soft-timeout", "90"]).code(2).one_error_line("did you mean 90s");
    spawn(&f, &["--kill-grace", "0.5"]).code(2).one_error_line("did you mean 500ms?");
    f.run(&["events", "--since", "15"]).code(2).one_error_line("did you mean 15s");
    assert_eq!(f.status()["agents"].as_array().map(Vec::len), Some(0), "nothing was made");
    f.finish();
}

#[test]
fn negative_and_zero_sizes_get_one_line_that_says_what_to_give() {
    let Some(f) = TestFleet::new("badsizes") else { return };
    let negative = spawn(&f, &["--memory-max", "-1G"]);
    negative.code(2).one_error_line("memory limit of -1G is negative");
    assert!(!negative.stderr.contains("'-- -1"), "no tip that makes -1 the command: {}", negative.stderr);
    spawn(&f, &["--swap-max", "-1"]).code(2).one_error_line("swap limit of -1 is negative");
    let zero = spawn(&f, &["--memory-max", "0"]);
    zero.code(2).one_error_line("max for none");
    assert!(!zero.stderr.contains("0G"), "{}", zero.stderr);
    // No flag's error suggests `-- VALUE`, which would make the value (or a typo) the command.
    for args in [&["--pids-max", "-1"][..], &["--ports", "-1"], &["--soft-timeout", "-5m"], &["--memroy-max", "1G"]] {
        let run = spawn(&f, args);
        run.code(2).one_error_line("");
        assert!(!run.stderr.contains("use '--"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(f.status()["agents"].as_array().map(Vec::len), Some(0), "nothing was made");
    f.finish();
}
