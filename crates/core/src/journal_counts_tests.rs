//! The journal's counts: what is counted, the cache, chunked reading and rotation.

use super::*;
use std::io::Write;

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

const EXIT_RELIEF: &str =
    r#"{"ts":"2026-01-01T00:00:00Z","event":"exit","id":"a","state":"killed","killed_by":"relief"}"#;
const EXIT_GUARD: &str = r#"{"ts":"2026-01-01T00:00:01Z","event":"exit","id":"b","state":"killed","killed_by":"watch","cause":"killed by \"watch\""}"#;
const OOM: &str = r#"{"ts":"2026-01-01T00:00:02Z","event":"oom_kill","id":"c","oom_kills":1}"#;
const EXIT_OOM: &str = r#"{"ts":"2026-01-01T00:00:02Z","event":"exit","id":"c","state":"oom-killed","killed_by":null}"#;
const REFUSED: &str =
    r#"{"ts":"2026-01-01T00:00:03Z","event":"spawn_refused","id":"d","reason":"memory","used_percent":86.0}"#;
const DIED: &str = r#"{"ts":"2026-01-01T00:00:04Z","event":"supervisor_died","id":"e","seen_by":"status"}"#;

#[test]
fn counts_events_exits_killers_and_refusals() {
    let mut c = JournalCounts::default();
    let text = [EXIT_RELIEF, EXIT_GUARD, OOM, EXIT_OOM, REFUSED, REFUSED, DIED, "{\"torn", ""].join("\n");
    c.add_lines(text.as_bytes());
    assert_eq!(c.first_ts.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(c.event(Kind::Exit), 3);
    assert_eq!(c.event(Kind::OomKill), 1);
    assert_eq!(c.event(Kind::SupervisorDied), 1);
    assert_eq!(c.exits_by_state["killed"], 2);
    assert_eq!(c.exits_by_state["oom-killed"], 1);
    assert_eq!(c.exits_by_killer["relief"], 1);
    assert_eq!(c.exits_by_killer["watch"], 1);
    assert_eq!(c.exits_by_killer.len(), 2, "a null killed_by is no killer");
    assert_eq!(c.refusals_by_reason["memory"], 2);
    assert_eq!(c.unreadable_lines, 1);
}

#[test]
fn the_cache_counts_only_what_was_appended_and_starts_over_for_a_new_journal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("counts.json"));
    assert_eq!(count(&journal, &cache).expect("no journal"), JournalCounts::default());

    append(&journal, &[EXIT_RELIEF, OOM]);
    assert_eq!(count(&journal, &cache).expect("count").event(Kind::Exit), 1);
    // A line being written (no newline yet) waits for the next count.
    std::fs::OpenOptions::new().append(true).open(&journal).expect("open").write_all(b"{\"ts\":").expect("w");
    let c = count(&journal, &cache).expect("count");
    assert_eq!((c.event(Kind::Exit), c.unreadable_lines), (1, 0));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("open")
        .write_all(format!("{}\n", &EXIT_GUARD[6..]).as_bytes())
        .expect("w");
    append(&journal, &[DIED]);
    let c = count(&journal, &cache).expect("count");
    assert_eq!((c.event(Kind::Exit), c.event(Kind::SupervisorDied), c.unreadable_lines), (2, 1, 0));
    assert_eq!(c.exits_by_killer["watch"], 1);

    // The cache is what is read: counts it holds that the journal lacks stay.
    let mut cached: Cache = serde_json::from_slice(&std::fs::read(&cache).expect("cache")).expect("parse");
    cached.counts.events.insert("exit".into(), 100);
    std::fs::write(&cache, serde_json::to_vec(&cached).expect("ser")).expect("write");
    assert_eq!(count(&journal, &cache).expect("count").event(Kind::Exit), 100);

    // Replaced by a new file (another inode) that is no rotation: counted from its start.
    std::fs::remove_file(&journal).expect("rm");
    append(&journal, &[REFUSED]);
    let c = count(&journal, &cache).expect("count");
    assert_eq!((c.event(Kind::Exit), c.event(Kind::SpawnRefused)), (0, 1));
    // Truncated in place and written again past the old offset: the first line differs.
    std::fs::write(&journal, format!("{OOM}\n{OOM}\n{OOM}\n")).expect("rewrite");
    let c = count(&journal, &cache).expect("count");
    assert_eq!((c.event(Kind::SpawnRefused), c.event(Kind::OomKill)), (0, 3));
    // An unwritable cache costs a full count, not an error.
    let c = count(&journal, &tmp.path().join("no/such/dir/counts.json")).expect("count");
    assert_eq!(c.event(Kind::OomKill), 3);
}

#[test]
fn counters_keep_counting_across_rotations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("counts.json"));
    let gen1 = crate::journal::generation(&journal, 1);
    append(&journal, &[OOM, OOM]);
    assert_eq!(count(&journal, &cache).expect("count").event(Kind::OomKill), 2);
    // One more line, then a rotation before the next count: the rest of the rotated
    // file and the new journal are both counted, and nothing twice.
    append(&journal, &[OOM]);
    std::fs::rename(&journal, &gen1).expect("rotate");
    append(&journal, &[REFUSED]);
    let c = count(&journal, &cache).expect("count");
    assert_eq!((c.event(Kind::OomKill), c.event(Kind::SpawnRefused)), (3, 1));
    // Two rotations between counts: every generation after the cached one counts.
    let rotate = || {
        for n in (0..3).rev() {
            let from = crate::journal::generation(&journal, n);
            if from.exists() {
                std::fs::rename(&from, crate::journal::generation(&journal, n + 1)).expect("rotate");
            }
        }
    };
    append(&journal, &[DIED]);
    rotate();
    append(&journal, &[EXIT_RELIEF]);
    rotate();
    append(&journal, &[EXIT_GUARD]);
    let c = count(&journal, &cache).expect("count");
    assert_eq!((c.event(Kind::OomKill), c.event(Kind::SupervisorDied), c.event(Kind::Exit)), (3, 1, 2));
    // Without a cache, every generation there is counts: the same totals here.
    let fresh = count(&journal, &tmp.path().join("fresh.json")).expect("count");
    assert_eq!(fresh.event(Kind::Exit), 2);
    assert_eq!(fresh.event(Kind::SupervisorDied), 1);
}

/// A journal of `lines` lines of every kind counted, with unreadable and blank lines
/// among them, as the journal's writers and a crash would leave it.
fn generated_journal(lines: usize) -> String {
    let kinds = [EXIT_RELIEF, EXIT_GUARD, OOM, EXIT_OOM, REFUSED, DIED, "{\"torn", "", "not json"];
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(kinds[i * 7 % kinds.len()]);
        text.push('\n');
    }
    text
}

fn whole_buffer_count(text: &str) -> JournalCounts {
    let mut c = JournalCounts::default();
    c.add_lines(text.as_bytes());
    c
}

#[test]
fn a_line_split_across_pieces_is_counted_once_whole() {
    let text = format!("{EXIT_RELIEF}\n{EXIT_GUARD}\n{REFUSED}\n");
    let want = whole_buffer_count(&text);
    let bytes = text.as_bytes();
    for i in 0..=bytes.len() {
        // Two pieces, and three with the middle one inside a line (no newline in it).
        for j in [i, (i + 5).min(bytes.len())] {
            let mut counter = ChunkCounter::default();
            counter.feed(&bytes[..i]);
            counter.feed(&bytes[i..j]);
            counter.feed(&bytes[j..]);
            let (got, complete) = counter.finish();
            assert_eq!(got, want, "split at {i} and {j}");
            assert_eq!(complete, bytes.len() as u64);
        }
    }
}

#[test]
fn a_partial_last_line_is_not_counted_until_complete() {
    let mut counter = ChunkCounter::default();
    counter.feed(format!("{OOM}\n{}", &EXIT_GUARD[..40]).as_bytes());
    counter.feed(&EXIT_GUARD.as_bytes()[40..60]);
    let (c, complete) = counter.finish();
    assert_eq!((c.event(Kind::OomKill), c.event(Kind::Exit), c.unreadable_lines), (1, 0, 0));
    assert_eq!(complete, OOM.len() as u64 + 1, "the next count starts at the partial line");

    // In a file: the partial line straddles a chunk boundary and is left for next time.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("events.counts.json"));
    let full = generated_journal(CHUNK / 30);
    let cut = full[..CHUNK - 10].rfind('\n').expect("a newline") + 1;
    let long = format!(r#"{{"ts":"2026-01-01T00:00:05Z","event":"exit","id":"p","pad":"{}"}}"#, "x".repeat(400));
    let (head, tail) = long.split_at(300);
    std::fs::write(&journal, format!("{}{head}", &full[..cut])).expect("write");
    assert_eq!(count(&journal, &cache).expect("count"), whole_buffer_count(&full[..cut]));
    let cached: Cache = serde_json::from_slice(&std::fs::read(&cache).expect("cache")).expect("parse");
    assert_eq!(cached.offset, cut as u64, "the next count starts at the partial line");
    // Completed: counted once.
    append(&journal, &[tail]);
    let want = whole_buffer_count(&format!("{}{long}\n", &full[..cut]));
    assert_eq!(count(&journal, &cache).expect("count"), want);
    assert_eq!(want.event(Kind::Exit), whole_buffer_count(&full[..cut]).event(Kind::Exit) + 1);
}

#[test]
fn counting_in_chunks_equals_counting_the_whole_journal_at_once() {
    let text = generated_journal(20_000);
    assert!(text.len() > 10 * CHUNK, "spans many chunks: {} bytes", text.len());
    let want = whole_buffer_count(&text);
    assert!(want.unreadable_lines > 0 && want.event(Kind::Exit) > 0, "{want:?}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("events.counts.json"));
    std::fs::write(&journal, &text).expect("write");
    assert_eq!(count(&journal, &cache).expect("count"), want);
    // Any piece size, including ones that split lines everywhere.
    for size in [1, 7, 4093, CHUNK + 1] {
        let mut counter = ChunkCounter::default();
        text.as_bytes().chunks(size).for_each(|piece| counter.feed(piece));
        assert_eq!(counter.finish(), (want.clone(), text.len() as u64), "pieces of {size}");
    }
}

#[test]
fn a_full_count_holds_a_chunk_and_a_line_not_the_journal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("events.counts.json"));
    let text = generated_journal(40_000);
    std::fs::write(&journal, &text).expect("write");
    crate::alloc_count::reset_peak();
    let counted = count(&journal, &cache).expect("count");
    let peak = crate::alloc_count::peak();
    assert_eq!(counted, whole_buffer_count(&text));
    assert!(peak < 4 * CHUNK as u64, "a count of a {} byte journal held {peak} bytes at once", text.len());
}

#[test]
fn an_overlong_line_is_one_unreadable_line_and_is_not_held() {
    let mut counter = ChunkCounter::default();
    counter.feed(format!("{OOM}\n").as_bytes());
    let nuls = vec![0u8; CHUNK];
    for _ in 0..(3 * MAX_LINE / CHUNK) {
        counter.feed(&nuls);
        assert!(counter.carry.capacity() <= 2 * MAX_LINE, "held {}", counter.carry.capacity());
    }
    counter.feed(format!("\n{OOM}\n").as_bytes());
    let (c, complete) = counter.finish();
    assert_eq!((c.event(Kind::OomKill), c.unreadable_lines), (2, 1));
    assert_eq!(complete, (2 * OOM.len() + 3 + 3 * MAX_LINE) as u64);
}
