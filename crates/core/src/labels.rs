//! Agent labels (`spawn --label batch=42`) and the selectors that pick agents by them
//! (`-l batch=42`, `-l 'team in (a,b)'`): the rules, the parsing and the matching, in one
//! place so every command that takes a selector reads it the same way.

use std::{collections::BTreeMap, fmt, str::FromStr};

/// An agent's labels, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// The longest label key or value (Kubernetes' name limit).
pub const MAX_LABEL_LEN: usize = 63;

/// The most labels one agent may carry: enough for batches, teams and tasks, few enough that
/// a metrics line stays readable.
pub const MAX_LABELS: usize = 16;

/// The rule every key and non-empty value follows, as messages state it.
const RULE: &str = "1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// Checks a label key: 1-63 letters, digits, `-`, `_` or `.`, starting and ending with a
/// letter or digit.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a label key is empty: give key=value, e.g. batch=42".into());
    }
    check_word(key).map_err(|()| format!("invalid label key '{key}': use {RULE}"))
}

/// Checks a label value: empty, or as a key.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_word(value).map_err(|()| format!("invalid value '{value}' for label '{key}': use {RULE} (or nothing)"))
}

fn check_word(word: &str) -> Result<(), ()> {
    let bytes = word.as_bytes();
    let edge = |b: u8| b.is_ascii_alphanumeric();
    let inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let ok = bytes.len() <= MAX_LABEL_LEN
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
        && bytes.iter().all(|&b| inner(b));
    if ok { Ok(()) } else { Err(()) }
}

/// Parses one `key=value` as `spawn --label` takes it.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("invalid label '{text}': give key=value, e.g. batch=42"));
    };
    check_key(key)?;
    check_value(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Collects `--label` pairs into [`Labels`]: a key given twice or more than [`MAX_LABELS`]
/// keys is an error, since either is a typo in a script.
pub fn collect(pairs: &[(String, String)]) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for (key, value) in pairs {
        if labels.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("label '{key}' is given twice: give each key once"));
        }
    }
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels given: an agent carries at most {MAX_LABELS}", labels.len()));
    }
    Ok(labels)
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` (or `key==value`).
    Equals(String, String),
    /// `key!=value`: the key is missing or has another value.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`: the key is missing or has none of the values.
    NotIn(String, Vec<String>),
    /// `key`: the agent has the key.
    Exists(String),
    /// `!key`: the agent does not have the key.
    Missing(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Missing(k) => !labels.contains_key(k),
        }
    }
}

/// A label selector: requirements separated by commas, all of which must hold (Kubernetes'
/// equality- and set-based forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Whether an agent with `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The requirements, in the order given.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Selector, String> {
        let bad = |why: &str| {
            format!("invalid selector '{text}': {why}; e.g. -l batch=42, -l 'team in (a,b)', -l 'batch=42,tier!=gpu'")
        };
        let mut requirements = Vec::new();
        for part in split_top_level(text).map_err(|why| bad(&why))? {
            requirements.push(requirement(part.trim()).map_err(|why| bad(&why))?);
        }
        Ok(Selector { text: text.trim().to_string(), requirements })
    }
}

/// Splits at the commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0u32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("a ')' without its '('")?,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("a '(' without its ')'".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if part.is_empty() {
        return Err("an empty requirement".into());
    }
    let key = |k: &str| check_key(k.trim()).map(|()| k.trim().to_string());
    let value = |k: &str, v: &str| check_value(k.trim(), v.trim()).map(|()| v.trim().to_string());
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, value(k, v)?));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, value(k, v)?));
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::Missing(key(k)?));
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let list = part[open + 1..].strip_suffix(')').ok_or("text after ')'")?;
        let (k, op) = head.rsplit_once(char::is_whitespace).ok_or("give 'key in (values)'")?;
        let values = list.split(',').map(|v| value(k, v)).collect::<Result<Vec<_>, _>>()?;
        return match op {
            "in" => Ok(Requirement::In(key(k)?, values)),
            "notin" => Ok(Requirement::NotIn(key(k)?, values)),
            other => Err(format!("unknown operator '{other}' (use in or notin)")),
        };
    }
    Ok(Requirement::Exists(key(part)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn select(selector: &str, agent: &[(&str, &str)]) -> bool {
        selector.parse::<Selector>().expect(selector).matches(&labels(agent))
    }

    #[test]
    fn labels_follow_the_rule() {
        assert_eq!(parse_label("batch=42"), Ok(("batch".into(), "42".into())));
        assert_eq!(parse_label("tier="), Ok(("tier".into(), String::new())));
        assert_eq!(parse_label("a.b_c-d=x.y"), Ok(("a.b_c-d".into(), "x.y".into())));
        for bad in ["batch", "=42", "-x=1", "x-=1", "b a=1", "x=a b", "x=-1", "x=a,b", &format!("{}=1", "k".repeat(64))]
        {
            let err = parse_label(bad).unwrap_err();
            assert!(!err.contains('\n') && err.contains("label"), "{bad}: {err}");
        }
        let twice = [("a".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())];
        assert!(collect(&twice).unwrap_err().contains("twice"));
        let many: Vec<_> = (0..=MAX_LABELS).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(collect(&many).is_err());
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let agent = [("batch", "42"), ("team", "a")];
        assert!(select("batch=42", &agent));
        assert!(select("batch==42", &agent));
        assert!(!select("batch=43", &agent));
        assert!(select("batch=42,team=a", &agent));
        assert!(!select("batch=42,team=b", &agent));
        assert!(select("team in (a,b)", &agent));
        assert!(select("team in ( b , a )", &agent));
        assert!(!select("team in (b,c)", &agent));
        assert!(select("team notin (b,c)", &agent));
        assert!(select("tier notin (gpu)", &agent));
        assert!(select("team!=b", &agent));
        assert!(select("tier!=gpu", &agent));
        assert!(select("batch", &agent));
        assert!(!select("tier", &agent));
        assert!(select("!tier", &agent));
        assert!(select("team in (a,b),batch", &agent));
    }

    #[test]
    fn bad_selectors_say_what_to_give() {
        for bad in ["", "batch=42,", "team in (a", "team in a,b)", "team within (a)", "b a=1", "x=a b", "in (a)"] {
            let err = bad.parse::<Selector>().unwrap_err();
            assert!(err.starts_with("invalid selector") && err.contains("-l batch=42"), "{bad}: {err}");
        }
    }
}
