//! The append-only event journal: one JSON object per line, so `grep`, `jq` and
//! `fleetctl events` all read it, and a torn last line costs one event, not the file.

use crate::{Error, Result, id::AgentId, timefmt::rfc3339};
use serde_json::{Map, Value, json};
use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path, time::SystemTime};

/// Appends one event. Each line goes out in a single `write(2)` on an `O_APPEND` file, so
/// concurrent writers (supervisors, kill, relief) never interleave within a line.
pub fn append(path: &Path, event: &str, id: &AgentId, detail: Value) -> Result<()> {
    let mut line = Map::new();
    line.insert("ts".into(), json!(rfc3339(SystemTime::now())));
    line.insert("event".into(), json!(event));
    line.insert("id".into(), json!(id.as_str()));
    if let Value::Object(fields) = detail {
        line.extend(fields);
    }
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    // Not world-readable: agents run as other users and must not read each other's ends.
    let open = || std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path);
    // The directory exists for every append but a fresh host's first: open first, and make
    // the directory only when it is missing.
    let opened = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
            }
            open()
        }
        other => other,
    };
    let mut file = opened.map_err(|e| Error::io("open journal", path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| Error::io("append to", path, e))
}

/// Reads every parseable line; bad lines are returned separately with their line numbers so
/// callers can name them instead of failing.
pub fn read(path: &Path) -> Result<(Vec<Value>, Vec<usize>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => good.push(v),
            _ if line.trim().is_empty() => {}
            _ => bad.push(n + 1),
        }
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_skips_torn_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("log/events.jsonl");
        let id: AgentId = "a1".parse().expect("id");
        append(&path, "spawn", &id, json!({"pid": 7})).expect("append");
        std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"{\"torn\n").expect("w");
        append(&path, "exit", &id, json!({"code": 0})).expect("append");
        let (good, bad) = read(&path).expect("read");
        assert_eq!(good.len(), 2);
        assert_eq!(good[0]["event"], "spawn");
        assert_eq!(good[1]["code"], 0);
        assert_eq!(bad, vec![2]);
    }
}
