//! Timestamps as fleetctl stores them: RFC 3339 with milliseconds, UTC, via humantime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats a time as `2026-11-22T11:30:01.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A time as an operator reads it, in local time with its offset (the `TZ` variable, else
/// /etc/localtime, as `date` does): `2026-11-22 12:30:01.123 +01:00`. Without a zone it is
/// UTC, `+00:00`.
pub fn local_display(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    // `time_t` by inference: naming libc's alias warns on musl, whose time_t changed width.
    let secs = since.as_secs() as _;
    // SAFETY: an all-zero `tm` is a valid value of the plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return rfc3339(t);
    }
    let offset = tm.tm_gmtoff;
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} {sign}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_millis(),
        offset / 3600,
        offset % 3600 / 60
    )
}

/// Parses what [`rfc3339`] wrote.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// Seconds since the epoch, for arithmetic on deadlines.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}

/// A duration as an operator reads it, to the second: `14m 3s`, `0s`.
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Serde adapter storing a `SystemTime` as an RFC 3339 string.
pub mod serde_rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    /// Serializes.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*t))
    }

    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        d.deserialize_str(Rfc3339)
    }

    /// Parses the text where it lies (a record's timestamps need no string of their own).
    pub(super) struct Rfc3339;

    impl serde::de::Visitor<'_> for Rfc3339 {
        type Value = SystemTime;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SystemTime, E> {
            parse_rfc3339(text).ok_or_else(|| E::custom(format!("bad timestamp '{text}'")))
        }
    }
}

/// Serde adapter for an optional `SystemTime`.
pub mod serde_rfc3339_opt {
    use super::*;
    use serde::{Deserializer, Serializer};

    /// Serializes.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        d.deserialize_option(Maybe)
    }

    struct Maybe;

    impl<'de> serde::de::Visitor<'de> for Maybe {
        type Value = Option<SystemTime>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(super::serde_rfc3339::Rfc3339).map(Some)
        }
    }
}
