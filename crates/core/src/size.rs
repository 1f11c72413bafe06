//! Memory sizes as operators type them (`4G`, `512M`, `max`) and as fleetctl prints them
//! (IEC units: `3.9 GiB`).

use std::{fmt, str::FromStr};

/// A cgroup limit: a number of bytes or the kernel's `max` (no limit). Stored as the number or
/// the string `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// `max`: unlimited.
    Max,
    /// A byte count.
    #[serde(untagged)]
    Bytes(u64),
}

impl Limit {
    /// The byte count, or `None` for `max`.
    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Max => None,
            Limit::Bytes(b) => Some(b),
        }
    }

    /// The text a cgroup v2 interface file takes.
    pub fn to_v2(self) -> String {
        match self {
            Limit::Max => "max".to_string(),
            Limit::Bytes(b) => b.to_string(),
        }
    }

    /// The limit as the kernel keeps it once written: in whole pages (it rounds a byte count
    /// down to its page size, on v1 and v2 alike), and a count too large to be one is no limit.
    pub fn as_kernel_keeps(self) -> Limit {
        match self {
            Limit::Bytes(b) if b < V1_UNLIMITED_FLOOR => Limit::Bytes(b - b % page_size()),
            _ => Limit::Max,
        }
    }

    /// Parses what a cgroup v2 file holds: `max` or a decimal number.
    pub fn from_v2(text: &str) -> Option<Limit> {
        match text.trim() {
            "max" => Some(Limit::Max),
            n => n.parse().ok().map(Limit::Bytes),
        }
    }
}

/// The kernel's page size (4 KiB where it cannot be asked).
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf(3) reads a constant of the running system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Cgroup v1 reports "unlimited" as a huge page-aligned number; anything at or above this
/// is treated as no limit.
pub const V1_UNLIMITED_FLOOR: u64 = 1 << 62;

/// By hand, not derived: serde's untagged variant buffers every value and builds (and formats)
/// an error for the tagged variant first, four times per record, which was an eighth of the
/// time `status` spends reading 1,000 agents' records.
impl<'de> serde::Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Limit, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count or \"max\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Limit, E> {
                Ok(Limit::Bytes(n))
            }
            // What formats with signed integers only (TOML) give for a count.
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Limit, E> {
                u64::try_from(n)
                    .map(Limit::Bytes)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Limit, E> {
                match s {
                    "max" => Ok(Limit::Max),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl FromStr for Limit {
    type Err = String;

    /// Accepts `max`, a byte count, or a number with a K/M/G/T suffix (powers of 1024, an
    /// optional `i`/`iB`/`B`): `4G`, `512MiB`, `1.5G`, `0`.
    fn from_str(text: &str) -> Result<Limit, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(Limit::Max);
        }
        parse_bytes(t).map(Limit::Bytes)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Max => f.write_str("max"),
            Limit::Bytes(b) => f.write_str(&format_iec(*b)),
        }
    }
}

/// Parses `4G`, `512M`, `1.5GiB`, `1024` into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size '{text}': use a byte count or a number with K, M, G or T (e.g. 4G, 512M) or 'max'");
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let unit = unit.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let bytes = f * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// Formats bytes in IEC units with one decimal: `3.9 GiB`, `512.0 MiB`, `17 B`.
pub fn format_iec(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_stored_as_a_number_or_max_and_read_back() {
        for limit in [Limit::Max, Limit::Bytes(0), Limit::Bytes(4 << 30), Limit::Bytes(u64::MAX)] {
            let text = serde_json::to_string(&limit).unwrap();
            assert_eq!(serde_json::from_str::<Limit>(&text).unwrap(), limit, "{text}");
        }
        assert_eq!(serde_json::to_string(&Limit::Max).unwrap(), "\"max\"");
        for bad in ["\"4G\"", "-1", "1.5", "null", "\"MAX\""] {
            let err = serde_json::from_str::<Limit>(bad).unwrap_err().to_string();
            assert!(err.contains("a byte count or \"max\""), "{bad}: {err}");
        }
    }

    #[test]
    fn a_limit_is_kept_in_whole_pages_as_the_kernel_keeps_it() {
        let page = page_size();
        assert_eq!(Limit::Bytes(64 * page).as_kernel_keeps(), Limit::Bytes(64 * page));
        assert_eq!(Limit::Bytes(64 * page + 1).as_kernel_keeps(), Limit::Bytes(64 * page));
        assert_eq!(Limit::Bytes(page - 1).as_kernel_keeps(), Limit::Bytes(0));
        assert_eq!(Limit::Max.as_kernel_keeps(), Limit::Max);
        assert_eq!(Limit::Bytes(u64::MAX).as_kernel_keeps(), Limit::Max, "too large to be a limit");
    }

    #[test]
    fn parses_what_operators_type() {
        for (text, want) in [
            ("4G", Limit::Bytes(4 << 30)),
            ("3g", Limit::Bytes(3 << 30)),
            ("512M", Limit::Bytes(512 << 20)),
            ("512MiB", Limit::Bytes(512 << 20)),
            ("1.5G", Limit::Bytes(3 << 29)),
            ("0", Limit::Bytes(0)),
            ("4096", Limit::Bytes(4096)),
            ("max", Limit::Max),
            ("MAX", Limit::Max),
        ] {
            assert_eq!(text.parse::<Limit>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_nonsense_with_the_rule() {
        for text in ["", "G", "4X", "-1", "4 GB extra", "99999999999T"] {
            let err = text.parse::<Limit>().unwrap_err();
            assert!(err.contains("e.g. 4G"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_iec() {
        assert_eq!(format_iec(17), "17 B");
        assert_eq!(format_iec(4 << 30), "4.0 GiB");
        assert_eq!(format_iec(4_187_593_113), "3.9 GiB");
        assert_eq!(format_iec(1536 << 10), "1.5 MiB");
    }

    #[test]
    fn v2_round_trip() {
        assert_eq!(Limit::from_v2("max\n"), Some(Limit::Max));
        assert_eq!(Limit::from_v2("4096\n"), Some(Limit::Bytes(4096)));
        assert_eq!(Limit::Bytes(7).to_v2(), "7");
        assert_eq!(Limit::from_v2("junk"), None);
    }
}
