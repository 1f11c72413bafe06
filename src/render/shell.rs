//! A command line as a POSIX shell would read it back, on one line: what `events` prints for
//! a spawn, so a multi-line `sh -c` script cannot break the one-event-a-line layout.

/// Bytes that need no quoting in any POSIX shell.
fn plain(arg: &str) -> bool {
    !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
}

/// One argument: as is when nothing in it is special, in single quotes when only quoting is
/// needed, else in bash's `$'…'` with escapes for newlines and other control characters.
pub fn quote_arg(arg: &str) -> String {
    if plain(arg) {
        return arg.to_string();
    }
    if !arg.chars().any(char::is_control) {
        return format!("'{}'", arg.replace('\'', r"'\''"));
    }
    let mut out = String::from("$'");
    for c in arg.chars() {
        match c {
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            c if c.is_control() => out.push_str(&format!(r"\x{:02x}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A command and its arguments, each quoted, joined by spaces.
pub fn quote_command(args: &[String]) -> String {
    args.iter().map(|a| quote_arg(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(args: &[&str]) -> String {
        quote_command(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn plain_words_stay_as_they_are() {
        assert_eq!(q(&["cargo", "build", "--release", "-j4", "a=b", "./x.sh"]), "cargo build --release -j4 a=b ./x.sh");
    }

    #[test]
    fn spaces_quotes_and_empty_arguments_are_single_quoted() {
        assert_eq!(q(&["sh", "-c", "echo hi; sleep 1"]), "sh -c 'echo hi; sleep 1'");
        assert_eq!(q(&["echo", "it's", ""]), r"echo 'it'\''s' ''");
        assert_eq!(q(&["echo", "$HOME", "*"]), r"echo '$HOME' '*'");
    }

    #[test]
    fn a_multi_line_script_stays_on_one_line() {
        let text = q(&["sh", "-c", "set -e\necho 'a'\tb\\c\n"]);
        assert_eq!(text, r"sh -c $'set -e\necho \'a\'\tb\\c\n'");
        assert!(!text.contains('\n'));
        assert_eq!(quote_arg("bell\u{7}"), r"$'bell\x07'");
    }
}
