//! The value parsers the flags use, and the config file's values too: each says what was
//! wrong and what to give instead.

use super::agent::Timeout;
use fleet_core::{size::Limit, state::AgentState};
use std::time::Duration;

/// Parses a memory limit ("4G", "512M", "max").
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    text.parse()
}

/// The smallest memory limit taken. Below it not even a shell starts, and a number there is
/// almost always a missing unit: `--memory-max 10` meaning 10G.
pub const MIN_MEMORY_LIMIT: u64 = 1 << 20;

/// Parses `--memory-max` and `--memory-high`: a limit of at least [`MIN_MEMORY_LIMIT`].
pub fn parse_memory_limit(text: &str) -> Result<Limit, String> {
    let t = text.trim();
    // The flag takes values that start with '-' so that this, not clap's "use '-- -1'"
    // (which would make it the agent's command), answers.
    if t.starts_with('-') {
        return Err(format!("a memory limit of {t} is negative: give a size such as 512M or 4G, or max for none"));
    }
    match parse_limit(text)? {
        Limit::Bytes(0) => {
            Err("a memory limit of 0 cannot run anything: give a size such as 512M, or max for none".into())
        }
        Limit::Bytes(n) if n < MIN_MEMORY_LIMIT => {
            let unitless = t.bytes().all(|b| b.is_ascii_digit());
            let hint = if unitless { format!(" (a number alone is bytes: did you mean {t}G?)") } else { String::new() };
            Err(format!("a memory limit of {} cannot run anything: give at least 1M{hint}", Limit::Bytes(n)))
        }
        limit => Ok(limit),
    }
}

/// Parses `--swap-max`: a size or "max", never negative.
pub fn parse_swap_limit(text: &str) -> Result<Limit, String> {
    match text.trim() {
        t if t.starts_with('-') => {
            Err(format!("a swap limit of {t} is negative: give a size such as 1G, 0 for none, or max"))
        }
        _ => parse_limit(text),
    }
}

/// Parses `spawn --label KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    fleet_core::labels::parse_label(text)
}

/// Parses `-l/--selector`.
pub fn parse_selector(text: &str) -> Result<fleet_core::labels::Selector, String> {
    text.parse()
}

/// Parses `--protect ID|SELECTOR`: a selector when it has a character no id may have.
pub fn parse_protected(text: &str) -> Result<super::pressure::Protected, String> {
    use super::pressure::Protected;
    if text.contains(['=', '!', '(', ',', ' ']) {
        return parse_selector(text).map(Protected::Selector);
    }
    text.parse().map(Protected::Id)
}

/// Parses a byte size (no "max").
pub fn parse_size(text: &str) -> Result<u64, String> {
    fleet_core::size::parse_bytes(text)
}

/// The smallest log cap: a page. Below it the log would rotate at nearly every write.
pub const MIN_LOG_SIZE: u64 = 4096;

/// A log cap (`--log-max-size`, `agent.log_max_size`): a size of at least [`MIN_LOG_SIZE`].
pub fn parse_log_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_LOG_SIZE {
        return Err(format!(
            "invalid log size '{text}': the log is rotated past this size (one old file kept), so give at least 4K, e.g. 64M"
        ));
    }
    Ok(bytes)
}

/// `20000-29999`: an inclusive port range.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range '{text}': give LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 20000-29999");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A tmpfs `size=`: bytes with an IEC suffix, or a percentage of RAM from 1 to 100.
pub fn parse_tmpfs_size(text: &str) -> Result<String, String> {
    if let Some(pct) = text.strip_suffix('%') {
        return match pct.parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(text.to_string()),
            _ => Err(format!("invalid size '{text}': a percentage must be 1% to 100%")),
        };
    }
    let bytes = fleet_core::size::parse_bytes(text)?;
    if bytes < 1 << 20 {
        return Err(format!("invalid size '{text}': give at least 1M"));
    }
    Ok(bytes.to_string())
}

/// Parses a task count or "max".
pub fn parse_pids(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Limit::Max);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("pids max must be at least 1 (or 'max')".into()),
        Ok(n) => Ok(Limit::Bytes(n)),
        Err(_) => Err(format!("invalid task count '{text}': use a whole number such as 512, or 'max'")),
    }
}

/// Parses "10s", "15m", "1h 30m" (humantime). A number alone is refused with the unit it
/// most likely lacks, as a size without one is: `--soft-timeout 15` meant 15 what? Only 0,
/// which is the same in every unit, needs none.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(number) = t.parse::<f64>()
        && number.is_finite()
    {
        if number == 0.0 {
            return Ok(Duration::ZERO);
        }
        let hint = if number < 0.0 {
            return Err(format!("invalid duration '{t}': a duration cannot be negative; use e.g. 10s, 15m, 1h30m"));
        } else if number.fract() == 0.0 {
            format!("{t}s or {t}m")
        } else {
            format!("{}ms", (number * 1000.0).round())
        };
        return Err(format!("invalid duration '{t}': a number needs a unit (s, m, h): did you mean {hint}?"));
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration '{text}' ({e}): use e.g. 10s, 15m, 1h30m"))
}

/// The shortest refresh `watch --interval` takes: below it the view would redraw faster
/// than anyone reads it, and 0 would spin a core. The guard's own sampling speeds up near
/// the threshold whatever the interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Parses `watch --interval`: a duration of at least [`MIN_INTERVAL`].
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d < MIN_INTERVAL => Err(format!("an interval of {text} is too short: give at least 100ms, e.g. 1s")),
        d => Ok(d),
    }
}

/// Parses a duration or "off".
pub fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if matches!(text, "off" | "none" | "never") {
        return Ok(Timeout::Off);
    }
    match parse_duration(text)? {
        d if d.is_zero() => Err("a timeout of 0 would fire at once: give a duration, or 'off' for no timeout".into()),
        d => Ok(Timeout::After(d)),
    }
}

/// Parses a relief target percentage.
pub fn parse_target(text: &str) -> Result<u8, String> {
    match text.trim_end_matches('%').parse::<u8>() {
        Ok(n) if (1..=99).contains(&n) => Ok(n),
        _ => Err(format!("invalid target '{text}': give a percentage of the fleet budget from 1 to 99, e.g. 75")),
    }
}

/// The signals an agent may ask for to be told something (`spawn --stall-signal`): those a
/// program can catch and that mean nothing fatal by default to fleetctl's own handling.
pub const AGENT_SIGNALS: [&str; 6] = ["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGINT", "SIGWINCH", "SIGTERM"];

/// Parses a signal name (`SIGUSR2`, `USR2`, any case) into its `SIG` spelling.
pub fn parse_signal(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    match AGENT_SIGNALS.contains(&name.as_str()) {
        true => Ok(name),
        false => Err(format!("unknown signal '{text}': use one of {}", AGENT_SIGNALS.join(", "))),
    }
}

/// Parses a state name from the status contract.
pub fn parse_state(text: &str) -> Result<AgentState, String> {
    AgentState::ALL.into_iter().find(|s| s.name() == text).ok_or_else(|| {
        let names: Vec<&str> = AgentState::ALL.iter().map(|s| s.name()).collect();
        format!("unknown state '{text}': use one of {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_with_or_without_sig() {
        assert_eq!(parse_signal("SIGUSR2").as_deref(), Ok("SIGUSR2"));
        assert_eq!(parse_signal("usr1").as_deref(), Ok("SIGUSR1"));
        assert!(parse_signal("SIGKILL").unwrap_err().contains("SIGUSR2"));
        assert!(parse_signal("12").is_err());
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("15m"), Ok(Timeout::After(Duration::from_secs(900))));
        assert_eq!(parse_timeout("2s"), Ok(Timeout::After(Duration::from_secs(2))));
        assert!(parse_timeout("0").unwrap_err().contains("fire at once"));
        assert_eq!(parse_timeout("off"), Ok(Timeout::Off));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").unwrap_err().contains("e.g. 10s"));
    }

    #[test]
    fn memory_limits_have_a_floor_that_names_a_missing_unit() {
        assert_eq!(parse_memory_limit("512M"), Ok(Limit::Bytes(512 << 20)));
        assert_eq!(parse_memory_limit("max"), Ok(Limit::Max));
        assert!(parse_memory_limit("10").unwrap_err().contains("did you mean 10G?"));
        let zero = parse_memory_limit("0").unwrap_err();
        assert!(zero.contains("max for none") && !zero.contains("0G"), "{zero}");
        assert!(parse_memory_limit("-1G").unwrap_err().contains("-1G is negative"));
        assert!(parse_swap_limit("-1").unwrap_err().contains("negative"));
        let err = parse_memory_limit("64K").unwrap_err();
        assert!(err.contains("at least 1M") && !err.contains("did you mean"), "{err}");
    }

    #[test]
    fn a_number_alone_is_not_a_duration() {
        assert_eq!(
            parse_duration("15"),
            Err("invalid duration '15': a number needs a unit (s, m, h): did you mean 15s or 15m?".into())
        );
        assert!(parse_duration("0.5").unwrap_err().contains("did you mean 500ms?"));
        assert!(parse_duration("-5").unwrap_err().contains("cannot be negative"));
        assert!(parse_timeout("90").unwrap_err().contains("did you mean 90s"));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn watch_intervals_have_a_floor() {
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("100ms"), Ok(MIN_INTERVAL));
        assert!(parse_interval("0").unwrap_err().contains("at least 100ms"));
        assert!(parse_interval("10ms").is_err());
    }
}
