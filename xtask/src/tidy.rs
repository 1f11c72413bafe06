//! The tidy test: rules of docs/ARCHITECTURE.md and of the brief that a reviewer should not
//! have to check by eye, as one `#[test]` that walks the sources (rust-analyzer's `tidy.rs`
//! is the model). `cargo test --workspace` runs it; each failure is one line,
//! `path:line: rule, what to do`.
//!
//! - **kernel paths**: no string literal starting with `/proc` or `/sys` in the product
//!   (`src/`, `crates/cli/`): only `crates/core` names them (`fleet_core::roots::Roots`),
//!   and everything else takes its roots as parameters.
//! - **cgroup directories**: no `create_dir`, `create_dir_all`, `remove_dir`,
//!   `remove_dir_all`, `mkdir` or `rmdir` on a product line that also says `cgroup`,
//!   `unified`, `memory_v1` or `pids_v1` (a cgroup's name or one of its directories):
//!   cgroups are made and removed by `fleet_core::cgroup`.
//! - **exit**: no `process::exit` outside `src/main.rs`: commands return an `Exit`. `main`'s
//!   `end_process_now` is for a signal handler that cannot return (watch's second Ctrl-C), and is
//!   called from the files in [`EXIT_NOW_CALLERS`] alone.
//! - **commands stand alone**: no `src/commands/` module uses another command (`commands::`):
//!   what two commands share lives in `src/agent/`.
//! - **opener**: every `.rs` file's first line is a `//!` comment saying what it is.
//! - **length**: no `.rs` file over [`MAX_LINES`] lines.
//!
//! `xtask/` and `tests/` are outside the first two rules: they watch the real host to check
//! the product, and must not see it through the product's own seam (docs/decisions.md).
//! Comments are not code: a doc comment may name `/proc/locks`. The rules read text, not
//! meaning: a path assembled from pieces (`Path::new("/").join("proc")`) passes them, and
//! review is still what catches it.

use std::path::Path;

/// The longest a source file may be.
const MAX_LINES: usize = 500;

/// What a cgroup directory is called in code: the word, and [`fleet_core::cgroup::Cgroup`]'s
/// directory fields.
const CGROUP_WORDS: [&str; 4] = ["cgroup", "unified", "memory_v1", "pids_v1"];

/// The files that may call `main`'s `end_process_now`: signal handlers that cannot return.
const EXIT_NOW_CALLERS: [&str; 1] = ["src/commands/watch/mod.rs"];

/// Calls that make or remove a directory.
const DIR_CALLS: [&str; 6] = ["create_dir", "create_dir_all", "remove_dir", "remove_dir_all", "mkdir", "rmdir"];

/// The failures of one file, given its path from the workspace root (with `/`) and its text:
/// one line each, `path:line: rule, what to do`.
pub fn check(path: &str, text: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fail = |line: usize, what: &str| failures.push(format!("{path}:{line}: {what}"));
    if !text.starts_with("//!") {
        fail(1, "no `//!` opening line: start the file with one line saying what it is");
    }
    let lines = text.lines().count();
    if lines > MAX_LINES {
        fail(lines, &format!("{lines} lines, over {MAX_LINES}: split the file by what its parts do"));
    }
    let product = path.starts_with("src/") || path.starts_with("crates/cli/");
    let lexed = lex(text);
    for (i, code) in lexed.code.iter().enumerate() {
        let line = i + 1;
        if path != "src/main.rs" && code.contains("process::exit") {
            fail(line, "`process::exit` outside src/main.rs: return an `Exit` and let `main` end the process");
        }
        if path.starts_with("src/commands/") && path != "src/commands/mod.rs" && code.contains("commands::") {
            fail(line, "a command uses another command: move what they share to src/agent/");
        }
        if path.starts_with("src/")
            && path != "src/main.rs"
            && !EXIT_NOW_CALLERS.contains(&path)
            && code.contains("end_process_now(")
        {
            fail(
                line,
                "`end_process_now` outside a signal handler that cannot return: return an `Exit` and let `main` end the process",
            );
        }
        let strings = || lexed.strings.get(i).into_iter().flatten().map(String::as_str);
        if product && identifiers(code).any(|id| DIR_CALLS.contains(&id)) {
            let says = |t: &str| CGROUP_WORDS.iter().any(|w| t.to_lowercase().contains(w));
            if says(code) || strings().any(says) {
                fail(
                    line,
                    "a cgroup directory made or removed outside crates/core: use `fleet_core::cgroup` (Cgroup::create, Cgroup::remove, make_dir, remove_empty_dir)",
                );
            }
        }
        if product {
            for root in strings().filter_map(kernel_root) {
                fail(
                    line,
                    &format!(
                        "a \"{root}\" path outside crates/core: take the root as a parameter (the context's or the plan's; fleet_core::roots::Roots holds the host's)"
                    ),
                );
            }
        }
    }
    failures
}

/// `/proc` or `/sys` when a string literal's text is that path or starts with it.
fn kernel_root(literal: &str) -> Option<&'static str> {
    ["/proc", "/sys"]
        .into_iter()
        .find(|root| literal.strip_prefix(root).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// The identifiers of a line of code.
fn identifiers(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// A source file split into its code (one entry per line, comments removed and string
/// literals emptied) and its string literals (by the line each starts on).
struct Lexed {
    code: Vec<String>,
    strings: Vec<Vec<String>>,
}

/// Splits Rust source into code and string literals. Knows line and nested block comments,
/// plain, byte, C and raw strings, and tells char literals from lifetimes; enough for rules
/// about what the code says, not a parser.
fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let (mut code, mut strings, mut line) = (String::new(), Vec::<(usize, String)>::new(), 1);
    let mut i = 0;
    // Copies `chars[from..to]` as code or skips it, keeping its newlines either way.
    let newlines = |from: usize, to: usize, code: &mut String, line: &mut usize| {
        let n = chars[from..to].iter().filter(|c| **c == '\n').count();
        code.extend(std::iter::repeat_n('\n', n));
        *line += n;
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let after_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            newlines(start, i, &mut code, &mut line);
        } else if c == 'r' && !after_ident_or_prefix(&chars, i) && matches!(next, Some('"' | '#')) {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                code.push(c);
                i += 1;
                continue;
            }
            let open = i + 2 + hashes;
            let mut end = open;
            while end < chars.len() && !(chars[end] == '"' && chars[end + 1..].iter().take(hashes).all(|c| *c == '#')) {
                end += 1;
            }
            strings.push((line, chars[open..end.min(chars.len())].iter().collect()));
            code.push_str("\"\"");
            newlines(open, end.min(chars.len()), &mut code, &mut line);
            i = (end + 1 + hashes).min(chars.len());
        } else if c == '"' {
            let mut end = i + 1;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            strings.push((line, chars[i + 1..end.min(chars.len())].iter().collect()));
            code.push_str("\"\"");
            newlines(i + 1, end.min(chars.len()), &mut code, &mut line);
            i = end + 1;
        } else if c == '\'' && !after_ident && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{..}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            code.push_str("' '");
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            code.push_str("' '");
            i += 3;
        } else {
            if c == '\n' {
                line += 1;
            }
            code.push(c);
            i += 1;
        }
    }
    let code: Vec<String> = code.split('\n').map(str::to_string).collect();
    let mut by_line = vec![Vec::new(); code.len()];
    for (line, text) in strings {
        by_line[line - 1].push(text);
    }
    Lexed { code, strings: by_line }
}

/// Whether the `r` at `i` is part of an identifier rather than a raw string's prefix (`r"`,
/// `br"`, `cr"`).
fn after_ident_or_prefix(chars: &[char], i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).map(|j| chars[j]);
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    match before(1) {
        Some('b' | 'c') => ident(before(2)),
        c => ident(c),
    }
}

/// Every `.rs` file under `root` but build output and hidden directories, as paths from
/// `root` with `/`.
fn rust_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let (path, name) = (entry.path(), entry.file_name().to_string_lossy().into_owned());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs")
                && let Ok(rel) = path.strip_prefix(root)
            {
                files.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_sources_are_tidy() {
    let root = crate::root();
    let files = rust_files(&root);
    assert!(files.iter().any(|f| f == "src/main.rs"), "no sources found under {}", root.display());
    let failures: Vec<String> =
        files.iter().flat_map(|f| check(f, &std::fs::read_to_string(root.join(f)).unwrap_or_default())).collect();
    assert!(failures.is_empty(), "{} tidy failure(s):\n{}", failures.len(), failures.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENER: &str = "//! A file.\n";

    fn checked(path: &str, body: &str) -> Vec<String> {
        check(path, &format!("{OPENER}{body}"))
    }

    #[test]
    fn a_proc_literal_added_to_src_fails_with_its_line() {
        let body = "fn pid() {\n    let _ = std::fs::read(\"/proc/self/stat\");\n}\n";
        let failures = checked("src/agent/x.rs", body);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("src/agent/x.rs:3: a \"/proc\" path outside crates/core: "), "{failures:?}");
        assert_eq!(checked("src/x.rs", "const P: &str = \"/proc\";\n").len(), 1);
        assert_eq!(checked("crates/cli/src/x.rs", "let s = format!(\"/sys/fs/cgroup/{x}\");\n").len(), 1);
        assert_eq!(checked("src/x.rs", "let p = c\"/proc/self/oom_score_adj\";\n").len(), 1);
        assert_eq!(checked("src/x.rs", "let p = r#\"/sys\"#;\n").len(), 1);
    }

    #[test]
    fn kernel_paths_are_core_s_and_the_witnesses_and_comments_may_name_them() {
        let body = "let p = Path::new(\"/proc\");\n";
        for path in ["crates/core/src/roots.rs", "tests/util/mod.rs", "xtask/src/bench.rs"] {
            assert_eq!(checked(path, body), Vec::<String>::new(), "{path}");
        }
        let quiet = "// reads \"/proc/locks\"\n/// `/proc/self/task`\n/* \"/sys\" */ let a = \"see /proc\";\n\
                     let b = \"/process\"; let c = \"/system\"; let d = '\"'; fn f<'a>(x: &'a str) {}\n";
        assert_eq!(checked("src/x.rs", quiet), Vec::<String>::new());
    }

    #[test]
    fn a_cgroup_directory_made_or_removed_outside_core_fails() {
        for line in [
            "std::fs::create_dir(&cgroup_dir)?;",
            "fs::remove_dir(cg.unified.join(\"x\"))?;",
            "for d in [&a.memory_v1, &a.pids_v1] { std::fs::create_dir_all(d)?; }",
            "std::fs::remove_dir(path).context(\"cannot remove the cgroup\")?;",
            "nix::unistd::mkdir(&dir, mode).map_err(|e| cgroup_error(e))?;",
        ] {
            let failures = checked("src/setup/x.rs", &format!("{line}\n"));
            assert_eq!(failures.len(), 1, "{line}: {failures:?}");
            assert!(failures[0].starts_with("src/setup/x.rs:2: a cgroup directory"), "{failures:?}");
        }
        let fine = "std::fs::create_dir_all(&agent_dir)?;\ncgroup::make_dir(dir)?;\ncgroup.create()?;\n\
                    // create_dir(cgroup) in a comment\n";
        assert_eq!(checked("src/x.rs", fine), Vec::<String>::new());
        assert_eq!(checked("crates/core/src/cgroup/mod.rs", "std::fs::create_dir(cgroup)?;\n"), Vec::<String>::new());
    }

    #[test]
    fn a_command_never_uses_another() {
        let uses = "use crate::{commands::spawn, context::Ctx};\n";
        assert_eq!(checked("src/commands/restart.rs", uses).len(), 1);
        assert_eq!(checked("src/commands/watch/screen.rs", uses).len(), 1);
        assert_eq!(checked("src/commands/watch/mod.rs", uses).len(), 1);
        assert_eq!(checked("src/commands/mod.rs", "pub mod spawn; // commands::spawn\n").len(), 0);
        assert_eq!(checked("src/agent/spawn.rs", uses).len(), 0);
    }

    #[test]
    fn only_main_exits_the_process() {
        let body = "fn stop() {\n    std::process::exit(1);\n}\n";
        assert_eq!(checked("src/main.rs", body), Vec::<String>::new());
        let failures = checked("src/commands/watch/mod.rs", body);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("src/commands/watch/mod.rs:3: `process::exit` outside src/main.rs"));
        assert_eq!(checked("xtask/src/x.rs", "let rule = \"process::exit\"; // process::exit\n").len(), 0);
        let now = "fn stop() {\n    crate::end_process_now(Exit::Interrupted);\n}\n";
        assert_eq!(checked("src/commands/watch/mod.rs", now), Vec::<String>::new());
        assert_eq!(checked("src/commands/kill.rs", now).len(), 1);
    }

    #[test]
    fn every_file_opens_with_what_it_is_and_stays_short() {
        let failures = check("tests/x.rs", "// not a module comment\nfn f() {}\n");
        assert_eq!(failures, ["tests/x.rs:1: no `//!` opening line: start the file with one line saying what it is"]);
        let long = format!("{OPENER}{}", "fn f() {}\n".repeat(MAX_LINES));
        let failures = check("xtask/src/long.rs", &long);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("xtask/src/long.rs:501: 501 lines, over 500: split"), "{failures:?}");
        assert_eq!(check("x.rs", &format!("{OPENER}{}", "fn f() {}\n".repeat(MAX_LINES - 1))).len(), 0);
    }
}
