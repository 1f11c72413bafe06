//! The watcher's side of `Type=notify`: READY=1 once the scope exists and the guard is
//! armed, WATCHDOG=1 from the guard's loop, so a loop that hangs stops the pings and
//! systemd restarts the service (`WatchdogSec=`).

use sd_notify::NotifyState;
use std::time::Duration;

/// The notification socket systemd gave this process, if any.
#[derive(Debug)]
pub struct Notifier {
    /// `WatchdogSec=`, when systemd expects pings from this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Some when systemd runs this process as a notify service (`NOTIFY_SOCKET` is set).
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET")?;
        Some(Notifier { watchdog: sd_notify::watchdog_enabled() })
    }

    /// The guard is armed: `systemctl start` returns.
    pub fn ready(&self, status: &str) {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// One turn of the guard's loop went round.
    pub fn alive(&self) {
        if self.watchdog.is_some() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
    }

    /// The longest the loop may sleep between pings: half the watchdog's timeout, as
    /// `sd_watchdog_enabled(3)` advises.
    pub fn max_sleep(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}
