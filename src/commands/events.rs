//! `fleetctl events [ID | -l SELECTOR] [--since 1h] [-f] [--json]`: the journal, filtered.

use crate::out::UNWRITTEN;
use crate::{agent::follow::Follower, context::Ctx, exit::Exit, render::shell::quote_command};
use anyhow::{Context, Result};
use fleet_cli::EventsArgs;
use fleet_core::{
    event::Event,
    journal::{self, Entry},
    size::{Limit, format_iec},
    timefmt::{local_display, parse_rfc3339},
};
use serde_json::json;
use std::{
    io::Write,
    time::{Duration, SystemTime},
};

/// Whether agent `id`'s record carries labels `selector` matches (an event without an
/// agent, or of an agent whose record is gone, matches no selector).
fn labels_match(ctx: &Ctx, id: &str, selector: &fleet_core::labels::Selector) -> bool {
    let Ok(id) = id.parse::<fleet_core::id::AgentId>() else { return false };
    let record = fleet_core::state::AgentRecord::load(&ctx.dirs.state_path(&id));
    record.ok().flatten().is_some_and(|r| selector.matches(&r.labels))
}

/// How often `-f` looks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Entry point.
pub fn run(ctx: &Ctx, args: EventsArgs) -> Result<Exit> {
    let path = ctx.dirs.journal_path();
    let since = args.since.map(|d| SystemTime::now() - d);
    // Which agents a selector picks, looked up once per id, when its first event is read:
    // with -f, agents spawned later are picked too.
    let selected = std::cell::RefCell::new(std::collections::HashMap::<String, bool>::new());
    let picked = |id: &str| {
        let Some(selector) = &args.selector else { return true };
        *selected.borrow_mut().entry(id.to_string()).or_insert_with(|| labels_match(ctx, id, selector))
    };
    if let Some(selector) = &args.selector
        && !args.follow
    {
        crate::agent::select::matching_ids(ctx, selector)?;
    }
    let keep = |e: &Entry| {
        let id_ok = args.id.as_ref().is_none_or(|id| e.text("id") == id.as_str()) && picked(e.text("id"));
        let time_ok = since.is_none_or(|s| parse_rfc3339(e.text("ts")).is_some_and(|t| t >= s));
        id_ok && time_ok
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut about_id = false;
    // The rotated generations, oldest first, then the journal: one journal.
    for file in journal::generations(&path) {
        // Following, the journal itself is read through the follower below, from its start:
        // one descriptor for the history and what comes after, so nothing written between
        // the two is lost, across a rotation too.
        if args.follow && file == path {
            continue;
        }
        let (events, bad) = journal::read(&file)?;
        for e in events.iter().filter(|e| keep(e)) {
            writeln!(out, "{}", render(e, args.json)).context(UNWRITTEN)?;
        }
        about_id |= args.id.as_ref().is_some_and(|id| events.iter().any(|e| e.text("id") == id.as_str()));
        if !bad.is_empty() {
            out.flush().context(UNWRITTEN)?;
            let lines: Vec<String> = bad.iter().map(usize::to_string).collect();
            eprintln!("fleetctl: skipped unreadable journal line(s) {} of {}", lines.join(", "), file.display());
        }
    }
    out.flush().context(UNWRITTEN)?;
    if !args.follow {
        // Nothing about an id that has neither events nor a record nor a cgroup is most
        // likely a typo. (Following, it may be an agent about to be spawned.)
        if let Some(id) = &args.id
            && !about_id
            && !crate::agent::exists(ctx, id)
        {
            let message = format!("no such agent: {id} (no events, no record; see `fleetctl status`)");
            return Err(crate::exit::Fail::error(Exit::NoSuchAgent, message));
        }
        return Ok(Exit::Ok);
    }
    // The journal from its start, then what is appended, across rotations (the rest of the
    // rotated file first).
    let mut follower = match path.exists() {
        true => Some(Follower::open(&path, 0)?),
        false => None,
    };
    let mut pending = Vec::new();
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            std::thread::sleep(FOLLOW_INTERVAL);
        }
        if follower.is_none() && path.exists() {
            follower = Some(Follower::open(&path, 0)?);
        }
        let Some(f) = &mut follower else { continue };
        f.copy_new(&mut pending).context("cannot read the journal")?;
        // Only whole lines: a writer may be mid-line.
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(e) = Entry::parse(&String::from_utf8_lossy(&line))
                && keep(&e)
            {
                writeln!(out, "{}", render(&e, args.json)).context(UNWRITTEN)?;
            }
        }
        out.flush().context(UNWRITTEN)?;
    }
}

/// One event as a line: the journal's JSON, or `TIME  ID  EVENT  details`, the time in
/// local time with its offset (docs/events.md).
fn render(e: &Entry, json: bool) -> String {
    if json {
        return e.line.to_string();
    }
    let ts = parse_rfc3339(e.text("ts")).map(local_display).unwrap_or_else(|| e.text("ts").to_string());
    let detail = match &e.event {
        Some(Event::Spawn { pid, command, .. } | Event::Restart { pid, command, .. }) => {
            format!("pid {pid} {}", quote_command(command))
        }
        Some(Event::Exit(exit)) => format!("{}: {}", exit.state, without_prefix(&exit.cause, exit.state.name())),
        Some(Event::OomKill { oom_kills, memory_max: Limit::Bytes(max) }) => {
            format!("{oom_kills} OOM kill(s) at its {} memory limit", format_iec(*max))
        }
        Some(Event::OomKill { oom_kills, memory_max: Limit::Max }) => {
            format!("{oom_kills} OOM kill(s), with no memory limit of its own")
        }
        Some(Event::SoftTimeout { .. }) => "SIGUSR1 sent".into(),
        Some(Event::HardTimeout { signalled, .. }) => format!("SIGTERM sent to {signalled} process(es)"),
        Some(Event::RestartScheduled { delay_ms, cause }) => format!("in {delay_ms} ms after: {cause}"),
        Some(Event::CrashLoop { cause, .. }) => without_prefix(cause, "crash-loop").to_string(),
        Some(Event::ReliefKill { by, used_percent, freed_bytes, .. }) => {
            format!("killed by {} at {}% use, freeing {}", killer(by), json!(used_percent), format_iec(*freed_bytes))
        }
        // The rest, and events this version does not know: their fields as they are.
        _ => {
            let mut rest = e.line.clone();
            if let Some(map) = rest.as_object_mut() {
                for k in ["ts", "id", "event"] {
                    map.remove(k);
                }
            }
            rest.to_string()
        }
    };
    format!("{ts}  {:<12} {:<17} {detail}", e.text("id"), e.text("event"))
}

/// Who made a pressure kill, in words that match its `by`: relief, or the watcher's guard.
fn killer(by: &str) -> String {
    match by {
        "watch" => "the guard (watch)".into(),
        other => other.into(),
    }
}

/// `cause` without the state it starts with, which the line already says: `crash loop: …`
/// after `crash-loop`, `killed by relief …` after `killed` (leaving `by relief …`),
/// `OOM-killed at its …` after `oom-killed`.
fn without_prefix<'a>(cause: &'a str, state: &str) -> &'a str {
    let lower = cause.to_ascii_lowercase();
    let said = [state.to_string(), state.replace('-', " ")].into_iter().find(|s| lower.starts_with(s.as_str()));
    match said {
        Some(said) => {
            let rest = &cause[said.len()..];
            let rest = rest.strip_prefix(": ").or_else(|| rest.strip_prefix(' ')).unwrap_or(rest);
            if rest.is_empty() { cause } else { rest }
        }
        None => cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &str) -> String {
        render(&Entry::parse(line).expect("a journal line"), false)
    }

    /// The text form reads the typed event: one line each, sizes in IEC units.
    #[test]
    fn each_event_renders_on_one_line() {
        let at = r#""id":"a1","ts":"2026-01-01T10:00:00.250Z""#;
        let cases = [
            (r#""command":["sh","-c","make"],"event":"spawn","pid":41,"restarts":0"#, "spawn", "pid 41 sh -c make"),
            (
                r#""cause":"c","code":1,"event":"exit","killed_by":null,"oom_kills":0,"restarts":0,"signal":null,"state":"oom-killed","summary":null"#,
                "exit",
                "oom-killed: c",
            ),
            (
                r#""event":"oom_kill","memory_max":"max","oom_kills":2"#,
                "oom_kill",
                "2 OOM kill(s), with no memory limit of its own",
            ),
            (
                r#""event":"oom_kill","memory_max":67108864,"oom_kills":1"#,
                "oom_kill",
                "1 OOM kill(s) at its 64.0 MiB memory limit",
            ),
            (r#""event":"hard_timeout","grace_ms":500,"signalled":3"#, "hard_timeout", "SIGTERM sent to 3 process(es)"),
            (
                r#""cause":"exit code 1","delay_ms":250,"event":"restart_scheduled""#,
                "restart_scheduled",
                "in 250 ms after: exit code 1",
            ),
            (
                r#""agent_bytes":1,"by":"relief","event":"relief_kill","freed_bytes":1048576,"target_percent":80,"used_after_percent":70.0,"used_percent":90.0"#,
                "relief_kill",
                "killed by relief at 90.0% use, freeing 1.0 MiB",
            ),
            (r#""event":"spawn_refused","reason":"pool""#, "spawn_refused", r#"{"reason":"pool"}"#),
            (
                r#""command":["sh","-c","echo a\necho 'b c'"],"event":"spawn","pid":7,"restarts":0"#,
                "spawn",
                r"pid 7 sh -c $'echo a\necho \'b c\''",
            ),
            (
                r#""cause":"crash loop: 5 failures within 10m","code":1,"event":"exit","killed_by":null,"oom_kills":0,"restarts":4,"signal":null,"state":"crash-loop","summary":null"#,
                "exit",
                "crash-loop: 5 failures within 10m",
            ),
            (r#""cause":"crash loop: 5 failures","event":"crash_loop","failures":5"#, "crash_loop", "5 failures"),
            (
                r#""cause":"killed by relief (fleet at 91 %)","code":null,"event":"exit","killed_by":"relief","oom_kills":0,"restarts":0,"signal":9,"state":"killed","summary":null"#,
                "exit",
                "killed: by relief (fleet at 91 %)",
            ),
            (
                r#""cause":"OOM-killed at its 50.0 MiB memory limit","code":null,"event":"exit","killed_by":null,"oom_kills":1,"restarts":0,"signal":9,"state":"oom-killed","summary":null"#,
                "exit",
                "oom-killed: at its 50.0 MiB memory limit",
            ),
            (
                r#""agent_bytes":1,"by":"watch","event":"relief_kill","freed_bytes":2097152,"target_percent":80,"used_after_percent":70.0,"used_percent":96.0"#,
                "relief_kill",
                "killed by the guard (watch) at 96.0% use, freeing 2.0 MiB",
            ),
            (r#""event":"swap_storm","swapped":9"#, "swap_storm", r#"{"swapped":9}"#),
        ];
        for (fields, name, detail) in cases {
            let line = format!("{{{fields},{at}}}");
            let local = local_display(parse_rfc3339("2026-01-01T10:00:00.250Z").expect("time"));
            assert_eq!(text(&line), format!("{local}  a1           {name:<17} {detail}"), "{line}");
            let written: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert_eq!(
                render(&Entry::parse(&line).expect("line"), true),
                written.to_string(),
                "--json: the line's JSON"
            );
        }
    }
}
