//! A waiter's wait for the ticket directly ahead of it to go, without inotify and without
//! looking at the rest of the line: a shared `flock(2)` on that ticket, which its waiter holds
//! exclusively for as long as it waits, is granted the moment that waiter leaves the line,
//! is admitted, is withdrawn and exits, or dies (the kernel drops the lock of a process that
//! ends). The blocking call runs in a thread of its own, which rings the waiter's [`Bell`]
//! when it returns; `kill` rings the same bell when it takes the waiter out of line, so the
//! waiter sleeps on one thing and wakes for either.
//!
//! A bell is a datagram socket in the abstract namespace named after the waiter's ticket
//! (its device and inode): no file to clean up after a waiter that dies (the kernel
//! unbinds it with the process), and a ring for a waiter gone is refused, not queued.

use super::{Waiter, ticket_path};
use std::{
    fs::File,
    os::{
        linux::net::SocketAddrExt,
        unix::{
            fs::MetadataExt,
            net::{SocketAddr, UnixDatagram},
        },
    },
    path::Path,
    sync::mpsc::{self, Receiver, TryRecvError},
    thread::JoinHandle,
    time::Duration,
};

/// A waiter's bell: what it sleeps on while it waits behind others.
pub struct Bell {
    socket: UnixDatagram,
}

/// The bell's name for the ticket with `meta`.
fn bell_name(meta: &std::fs::Metadata) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("fleetctl-queue-bell-{}-{}", meta.dev(), meta.ino()))
}

impl Bell {
    /// The bell of the ticket open as `file` (the waiter's own).
    pub(super) fn hang(file: &File) -> std::io::Result<Bell> {
        let socket = UnixDatagram::bind_addr(&bell_name(&file.metadata()?)?)?;
        Ok(Bell { socket })
    }

    /// Sleeps until the bell rings or `timeout` passes; true when it rang.
    pub fn sleep(&self, timeout: Duration) -> bool {
        // A zero timeout would mean "block for ever" to the socket.
        let _ = self.socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        let mut byte = [0u8; 8];
        self.socket.recv(&mut byte).is_ok()
    }
}

/// Rings the bell of the ticket at `path`; nothing when its waiter is gone.
pub(super) fn ring(path: &Path) {
    if let Ok(addr) = std::fs::metadata(path).and_then(|m| bell_name(&m))
        && let Ok(socket) = UnixDatagram::unbound()
    {
        // Never blocks: a bell with rings unheard already will be heard.
        let _ = socket.set_nonblocking(true);
        let _ = socket.send_to_addr(b"!", &addr);
    }
}

/// A wait for one waiter's ticket to be let go.
pub struct Gone {
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Gone {
    /// Starts waiting for the ticket of `ahead` in `dir`; `own` (the waiter's own ticket)
    /// has its bell rung when it goes.
    pub fn watch(dir: &Path, ahead: &Waiter, own: &Path) -> std::io::Result<Gone> {
        let path = ticket_path(dir, ahead.seq, &ahead.id);
        let own = own.to_path_buf();
        let (tell, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("queue-ahead".into()).spawn(move || {
            // Gone already (its file removed): nothing to wait for.
            if let Ok(file) = File::open(&path) {
                // Let go at once, with the descriptor: a lock held on a dead waiter's ticket
                // would make readers take it for live.
                let _ = file.lock_shared();
            }
            let _ = tell.send(());
            ring(&own);
        })?;
        Ok(Gone { done, thread: Some(thread) })
    }

    /// Whether the ticket has been let go (the thread has ended).
    pub fn gone(&mut self) -> bool {
        match self.done.try_recv() {
            Ok(()) | Err(TryRecvError::Disconnected) => {
                // Joined, so no thread of the queue is left when the spawn later forks.
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                true
            }
            Err(TryRecvError::Empty) => false,
        }
    }
}
