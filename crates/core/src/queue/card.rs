//! What a ticket file says: one `key value` line each, under a header naming the format's
//! version, so `fleetctl queue` of a newer fleetctl still reads an older waiter's ticket.
//!
//! ```text
//! fleet-queue-ticket 2
//! reason memory
//! pid 4242
//! since 1764970000000
//! bell fleetctl-queue-bell-5f0c9a…
//! label batch=42
//! ```
//!
//! The reason comes first at a fixed offset and width: a waiter rewrites it in place
//! ([`REASON_AT`]), in one small write a reader sees whole or not at all, without taking
//! its ticket's lock from under it. Version 1 was one line, `PID SINCE_MS REASON`.

use super::Reason;
use crate::labels::Labels;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first line: the format and its version.
const HEADER: &str = "fleet-queue-ticket 2\n";

/// Where the reason's word starts: after the header and `reason `.
pub const REASON_AT: u64 = (HEADER.len() + "reason ".len()) as u64;

/// The reason's word, padded to the longest one, as written at [`REASON_AT`].
pub fn reason_field(reason: Reason) -> String {
    format!("{:<6}", reason.name())
}

/// The whole text of a ticket.
pub fn write(reason: Reason, pid: u32, since: SystemTime, bell: Option<&str>, labels: &Labels) -> String {
    let since = since.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let mut text = format!("{HEADER}reason {}\npid {pid}\nsince {since}\n", reason_field(reason));
    if let Some(bell) = bell {
        text.push_str(&format!("bell {bell}\n"));
    }
    for (key, value) in labels {
        text.push_str(&format!("label {key}={value}\n"));
    }
    text
}

/// What a reader takes from a ticket's text: pid, since, reason, labels. A field it cannot
/// read is left at its default (pid 0, the epoch, `turn`, no labels): the ticket's lock, not
/// its text, says whether its waiter lives.
pub fn read(text: &str) -> (i32, SystemTime, Reason, Labels) {
    let (mut pid, mut since, mut reason, mut labels) = (0, UNIX_EPOCH, Reason::Turn, Labels::new());
    let millis = |s: &str| s.parse().ok().map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    if !text.starts_with("fleet-queue-ticket ") {
        // Version 1.
        let mut fields = text.split_whitespace();
        pid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        since = fields.next().and_then(millis).unwrap_or(UNIX_EPOCH);
        reason = fields.next().and_then(Reason::parse).unwrap_or(Reason::Turn);
        return (pid, since, reason, labels);
    }
    // Keys it does not know (a later version's) are skipped.
    for (key, value) in text.lines().skip(1).filter_map(|l| l.split_once(' ')) {
        let value = value.trim();
        match key {
            "reason" => reason = Reason::parse(value).unwrap_or(Reason::Turn),
            "pid" => pid = value.parse().unwrap_or(0),
            "since" => since = millis(value).unwrap_or(UNIX_EPOCH),
            "label" => {
                if let Some((k, v)) = value.split_once('=') {
                    labels.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
    }
    (pid, since, reason, labels)
}

/// The name of the waiter's bell ([`super::Bell`]), if it has one: `kill` rings it.
pub fn bell(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("bell ")).map(|name| name.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_reads_back_what_was_written_and_its_reason_is_rewritten_in_place() {
        let labels: Labels = [("batch".to_string(), "42".to_string()), ("team".into(), "".into())].into();
        let since = UNIX_EPOCH + Duration::from_millis(1_764_970_000_123);
        let mut text = write(Reason::Memory, 4242, since, Some("fleetctl-queue-bell-ab"), &labels);
        assert_eq!(read(&text), (4242, since, Reason::Memory, labels.clone()));
        assert_eq!(bell(&text).as_deref(), Some("fleetctl-queue-bell-ab"));
        assert_eq!(bell(&write(Reason::Memory, 1, since, None, &labels)), None);
        let at = REASON_AT as usize;
        text.replace_range(at..at + 6, &reason_field(Reason::Cap));
        assert_eq!(read(&text).2, Reason::Cap);
        assert!(text.starts_with("fleet-queue-ticket 2\nreason cap   \npid 4242\n"), "{text}");
    }

    #[test]
    fn a_version_1_ticket_and_unknown_keys_are_read() {
        let (pid, since, reason, labels) = read("77 1000 pool  \n");
        assert_eq!((pid, since, reason), (77, UNIX_EPOCH + Duration::from_secs(1), Reason::Pool));
        assert!(labels.is_empty());
        let later = "fleet-queue-ticket 3\nreason cap\npid 5\npriority 9\nlabel a=b\n";
        assert_eq!(read(later).0, 5);
        assert_eq!(read(later).3.get("a").map(String::as_str), Some("b"));
    }
}
