//! A waiter's wait for the ticket directly ahead of it to go, without inotify and without
//! looking at the rest of the line: a shared `flock(2)` on that ticket, which its waiter holds
//! exclusively for as long as it waits, is granted the moment that waiter leaves the line,
//! is admitted, is withdrawn and exits, or dies (the kernel drops the lock of a process that
//! ends). The blocking call runs in a thread of its own, so the waiter can still look at
//! its cancel mark and its deadline now and then.

use super::{Waiter, ticket_path};
use std::{
    fs::File,
    path::Path,
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::JoinHandle,
    time::Duration,
};

/// A wait for one waiter's ticket to be let go.
pub struct Gone {
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Gone {
    /// Starts waiting for the ticket of `ahead` in `dir`.
    pub fn watch(dir: &Path, ahead: &Waiter) -> std::io::Result<Gone> {
        let path = ticket_path(dir, ahead.seq, &ahead.id);
        let (tell, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("queue-ahead".into()).spawn(move || {
            // Gone already (its file removed): nothing to wait for.
            if let Ok(file) = File::open(&path) {
                // Let go at once, with the descriptor: a lock held on a dead waiter's ticket
                // would make readers take it for live.
                let _ = file.lock_shared();
            }
            let _ = tell.send(());
        })?;
        Ok(Gone { done, thread: Some(thread) })
    }

    /// Waits up to `timeout`; true once the ticket has been let go (the thread has ended).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        match self.done.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                // Joined, so no thread of the queue is left when the spawn later forks.
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }
}
