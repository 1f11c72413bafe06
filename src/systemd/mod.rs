//! fleetctl on a systemd host: the fleet's delegated scope (made once per boot by the
//! watcher, never by spawn), the watcher's notifications to systemd, and what `systemctl
//! show` says, for setup-host and doctor. The unit and config texts setup-host and the
//! package share are `fleet_core::host::packaging`'s.
//!
//! systemd is reached only through its own tools (`systemd-run`, `systemctl`) and the
//! notification socket; spawn's path uses none of them.

pub mod checks;
pub mod notify;
pub mod scope;
pub mod show;
