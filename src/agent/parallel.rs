//! Mapping over many agents on a few threads, keeping their order: reading hundreds of
//! agents' records and cgroup files is thousands of small system calls, and spreading them
//! over the cores is what keeps `status` and `memory` within their budget.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

/// How [`spread`] shares out its items.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// Threads that map, the calling one included.
    pub workers: usize,
    /// Items a worker takes at a time.
    pub batch: usize,
    /// Below this many items the calling thread does it all.
    pub inline_below: usize,
}

/// Reading agents' records and cgroup files: system calls that keep a core busy. Four
/// workers, more than the two cores this was measured on: a thread waits in the kernel now
/// and then, and on a busy host each runnable thread is another claim on the cores. Sixteen
/// items at a time: few enough that a thread the scheduler set aside holds back only a few
/// while the others take the rest (with a quarter each, `status` waited for the slowest
/// quarter), enough that the shared counter is rarely touched. Below 32 items starting
/// threads costs more than it saves.
pub const READS: Spread = Spread { workers: 4, batch: 16, inline_below: 32 };

/// Maps `f` over `items` as [`READS`] says, keeping the order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    spread(items, READS, f)
}

/// [`par_map`] over items `f` takes by value: each is handed out once, from a slot the
/// worker empties, so nothing is cloned to cross to the threads.
pub fn par_map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    par_map(&slots, |slot| {
        let item = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        f(item.expect("each slot is taken once"))
    })
}

/// Maps `f` over `items`, keeping the order. Workers take `how.batch` items at a time from
/// a shared counter until none are left, so the work spreads by what each thread actually
/// gets done. A panic in `f` is raised again here.
pub fn spread<T: Sync, R: Send>(items: &[T], how: Spread, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < how.inline_below.max(2) || how.workers < 2 {
        return items.iter().map(f).collect();
    }
    let batch = how.batch.max(1);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let start = next.fetch_add(batch, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + batch).min(items.len());
            done.push((start, items[start..end].iter().map(&f).collect::<Vec<R>>()));
        }
    };
    let mut batches: Vec<(usize, Vec<R>)> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..how.workers.min(items.len())).map(|_| s.spawn(work)).collect();
        let mut batches = work();
        for helper in helpers {
            batches.extend(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        batches
    });
    batches.sort_unstable_by_key(|(start, _)| *start);
    batches.into_iter().flat_map(|(_, results)| results).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_items_are_each_mapped_once_in_order() {
        for n in [0, 1, 100, 1001] {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let out = par_map_owned(items.clone(), |s| s + "!");
            assert_eq!(out, items.iter().map(|s| format!("{s}!")).collect::<Vec<_>>(), "{n} items");
        }
    }

    #[test]
    fn every_item_is_mapped_once_and_the_order_is_kept() {
        for n in [0, 1, READS.inline_below - 1, READS.inline_below, READS.batch * READS.workers, 1000, 1001] {
            let items: Vec<usize> = (0..n).collect();
            let seen = Mutex::new(Vec::new());
            let out = par_map(&items, |i| {
                seen.lock().unwrap().push(*i);
                i * 2
            });
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>(), "{n} items");
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            assert_eq!(seen, items, "{n} items: each mapped exactly once");
        }
    }

    #[test]
    fn a_slow_item_does_not_hold_back_the_others() {
        // The worker on the first item waits until every item outside its batch is done:
        // the other workers take them all, where fixed shares (a quarter each) would leave
        // the rest of the first quarter to the waiting worker, and it would wait in vain.
        let items: Vec<usize> = (0..READS.batch * 8).collect();
        let others = items.len() - READS.batch;
        let (done, all_done) = (Mutex::new(0), std::sync::Condvar::new());
        let waited_in_vain = std::sync::atomic::AtomicBool::new(false);
        par_map(&items, |i| {
            if *i == 0 {
                let count = done.lock().unwrap();
                let (_count, timeout) =
                    all_done.wait_timeout_while(count, std::time::Duration::from_secs(20), |n| *n < others).unwrap();
                waited_in_vain.store(timeout.timed_out(), Ordering::SeqCst);
            } else if *i >= READS.batch {
                *done.lock().unwrap() += 1;
                all_done.notify_all();
            }
        });
        assert!(!waited_in_vain.load(Ordering::SeqCst), "the items after the first batch waited for it");
    }

    #[test]
    fn one_item_at_a_time_runs_that_many_at_once() {
        // Two items, two workers, one at a time: each waits for the other to start, which
        // only happens if they run side by side.
        let (started, cond) = (Mutex::new(0), std::sync::Condvar::new());
        let how = Spread { workers: 8, batch: 1, inline_below: 2 };
        let met = spread(&[1, 2], how, |_| {
            let mut n = started.lock().unwrap();
            *n += 1;
            cond.notify_all();
            let (_n, timeout) = cond.wait_timeout_while(n, std::time::Duration::from_secs(20), |n| *n < 2).unwrap();
            !timeout.timed_out()
        });
        assert_eq!(met, [true, true], "the two items ran one after the other");
    }

    #[test]
    #[should_panic(expected = "item 40")]
    fn a_panic_in_a_worker_is_raised_again() {
        let items: Vec<usize> = (0..100).collect();
        par_map(&items, |i| if *i == 40 { panic!("item 40") } else { *i });
    }
}
