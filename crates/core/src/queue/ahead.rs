//! A waiter's wait for the ticket directly ahead of it to go, without inotify and without
//! looking at the rest of the line: a shared `flock(2)` on that ticket, which its waiter holds
//! exclusively for as long as it waits, is granted the moment that waiter leaves the line:
//! admitted, once it has taken its id and leases; withdrawn, as it exits; or dead (the
//! kernel drops the lock of a process that ends). The blocking call runs in a thread of its own, which rings the waiter's [`Bell`]
//! when it returns; `kill` rings the same bell when it takes the waiter out of line, so the
//! waiter sleeps on one thing and wakes for either.
//!
//! A bell is a datagram socket in the abstract namespace: no file to clean up after a waiter
//! that dies (the kernel unbinds it with the process), and a ring for a waiter gone is
//! refused, not queued. Its name is random and bound before it is written into the ticket,
//! so no one (an agent included: abstract names have no permissions, and agents share the
//! host's network namespace) can take it first; anyone who reads the ticket can ring it,
//! which costs the waiter one look at its mark. A waiter without a bell (its bind failed)
//! still wakes when the ticket ahead goes, and sees a `kill` at its next cancel check.

use super::{Waiter, ticket_path};
use std::{
    fs::File,
    io::Read,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    path::Path,
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::JoinHandle,
    time::Duration,
};

/// A waiter's bell: what it sleeps on while it waits behind others.
#[derive(Debug)]
pub struct Bell {
    socket: UnixDatagram,
    name: String,
}

impl Bell {
    /// A bell with a fresh random name (128 bits from the kernel's random source).
    pub(super) fn hang() -> std::io::Result<Bell> {
        let mut nonce = [0u8; 16];
        File::open("/dev/urandom")?.read_exact(&mut nonce)?;
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Bell::hang_named(format!("fleetctl-queue-bell-{hex}"))
    }

    /// The bell named `name`; fails when that name is bound already.
    pub(super) fn hang_named(name: String) -> std::io::Result<Bell> {
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
        Ok(Bell { socket, name })
    }

    /// Its name, which its ticket gives for `kill` to ring.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sleeps until the bell rings or `timeout` passes; true when it rang.
    pub fn sleep(&self, timeout: Duration) -> bool {
        // A zero timeout would mean "block for ever" to the socket.
        let _ = self.socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        let mut byte = [0u8; 8];
        self.socket.recv(&mut byte).is_ok()
    }
}

/// Rings the bell named `name`; nothing when its waiter is gone.
pub(super) fn ring(name: &str) {
    if let Ok(addr) = SocketAddr::from_abstract_name(name)
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
    let_go: bool,
}

impl Gone {
    /// Starts waiting for the ticket of `ahead` in `dir`; the bell named `own_bell` (the
    /// waiter's own, if it has one) is rung when it goes.
    pub fn watch(dir: &Path, ahead: &Waiter, own_bell: Option<&str>) -> std::io::Result<Gone> {
        let path = ticket_path(dir, ahead.seq, &ahead.id);
        let own_bell = own_bell.map(str::to_string);
        let (tell, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("queue-ahead".into()).spawn(move || {
            // Gone already (its file removed): nothing to wait for.
            if let Ok(file) = File::open(&path) {
                // Let go at once, with the descriptor: a lock held on a dead waiter's ticket
                // would make readers take it for live.
                let _ = file.lock_shared();
            }
            let _ = tell.send(());
            if let Some(bell) = own_bell {
                ring(&bell);
            }
        })?;
        Ok(Gone { done, thread: Some(thread), let_go: false })
    }

    /// Whether the ticket has been let go (the thread has ended).
    pub fn gone(&mut self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// Waits up to `timeout` for the ticket to be let go, for a waiter without a bell;
    /// true once it has been.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        if !self.let_go {
            self.let_go = match self.done.recv_timeout(timeout) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => false,
            };
        }
        if self.let_go {
            // Joined, so no thread of the queue is left when the spawn later forks.
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        self.let_go
    }
}
