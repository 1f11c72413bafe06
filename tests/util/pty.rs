//! fleetctl on a pseudo-terminal of a chosen size, as on an operator's terminal: what it
//! draws, with the escape sequences taken out.

use std::{
    fs::File,
    io::Read,
    os::fd::AsRawFd,
    process::{Child, Command},
    time::{Duration, Instant},
};

/// A pseudo-terminal pair; the child gets the slave side as stdin, stdout and stderr.
pub struct Pty {
    master: File,
    slave: Option<File>,
}

impl Pty {
    /// A `rows` x `cols` terminal, or `None` (the skip recorded for `test`) where there are
    /// no pseudo-terminals.
    pub fn open(test: &str, rows: u16, cols: u16) -> Option<Pty> {
        let size = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        match nix::pty::openpty(Some(&size), None) {
            Ok(pty) => Some(Pty { master: File::from(pty.master), slave: Some(File::from(pty.slave)) }),
            Err(e) => {
                super::skip(test, &format!("no pseudo-terminals here (openpty: {e})"));
                None
            }
        }
    }

    /// Starts `cmd` on the terminal, with no `COLUMNS` to override its size.
    pub fn spawn(&mut self, cmd: &mut Command) -> Child {
        let slave = self.slave.take().expect("one command per terminal");
        let child = cmd
            .stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave)
            .env("TERM", "xterm")
            .env_remove("COLUMNS")
            .env_remove("LINES")
            .spawn()
            .expect("fleetctl on a pty");
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(self.master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        child
    }

    /// Runs `cmd` to its end; its exit code and what it drew.
    pub fn run(mut self, cmd: &mut Command) -> (Option<i32>, String) {
        let mut child = self.spawn(cmd);
        let mut screen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 8192];
        let code = loop {
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => screen.extend_from_slice(&buf[..n]),
                _ => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // What it wrote before it ended is still in the terminal.
                        while let Ok(n @ 1..) = self.master.read(&mut buf) {
                            screen.extend_from_slice(&buf[..n]);
                        }
                        break status.code();
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        (code, strip_ansi(&String::from_utf8_lossy(&screen)))
    }

    /// Reads what `child` draws until `done` holds for it (or `timeout` passes); returns it.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let mut screen = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline && !done(&strip_ansi(&String::from_utf8_lossy(&screen))) {
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => screen.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        strip_ansi(&String::from_utf8_lossy(&screen))
    }

    /// Waits for `child` while reading the terminal, so it never blocks writing to it.
    pub fn wait_draining(&mut self, mut child: Child) -> Option<i32> {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            let _ = self.master.read(&mut buf);
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        None
    }
}

/// The rows of a `cols`-wide screen the text fills: a line longer than the terminal goes on
/// in the next row, as the terminal wraps it (the live view pads each line to the width).
pub fn screen_rows(text: &str, cols: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let chars: Vec<char> = line.chars().collect();
        rows.extend(chars.chunks(cols.max(1)).map(|c| c.iter().collect::<String>()));
    }
    rows
}

/// Removes terminal escape sequences (CSI `ESC [ … final`) and carriage returns, leaving
/// the text a person sees, line by line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}
