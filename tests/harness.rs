//! The harness's own checks: each must fail when what it checks is not so, or a test that
//! uses it could pass by accident.

use crate::util::Run;

fn with_stderr(stderr: &str) -> Run {
    Run { code: 2, stdout: String::new(), stderr: stderr.to_string() }
}

#[test]
fn one_error_line_accepts_one_line_with_the_fragment() {
    with_stderr("fleetctl: unknown step 'x'; steps are: cgroups, ...\n").one_error_line("unknown step");
}

#[test]
#[should_panic(expected = "exactly one line")]
fn one_error_line_refuses_a_second_line() {
    with_stderr("fleetctl: unknown step 'x'\nCaused by:\n    more\n").one_error_line("unknown step");
}

#[test]
#[should_panic(expected = "exactly one line")]
fn one_error_line_refuses_silence() {
    with_stderr("").one_error_line("unknown step");
}

#[test]
#[should_panic(expected = "exactly one line")]
fn one_error_line_refuses_a_line_without_the_fragment() {
    with_stderr("fleetctl: something else\n").one_error_line("unknown step");
}

#[test]
fn each_skip_is_one_more_line_in_the_skips_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("skips");
    crate::util::skip::record(&file, "SKIPPED a: needs root to create cgroups\n");
    crate::util::skip::record(&file, "SKIPPED part of b: no promtool\n");
    let text = std::fs::read_to_string(&file).expect("skips file");
    assert_eq!(text, "SKIPPED a: needs root to create cgroups\nSKIPPED part of b: no promtool\n");
}
