//! Agent ids: the names operators give agents, which also name cgroups, locks and logs, so
//! they must never be able to escape the directory they are joined onto.

use std::{fmt, str::FromStr};

/// The rule, as printed in error messages.
pub const ID_RULE: &str =
    "an id is 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit";

/// A validated agent id: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AgentId {
    type Err = String;

    fn from_str(text: &str) -> Result<AgentId, String> {
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && text.len() <= 64 {
            Ok(AgentId(text.to_string()))
        } else {
            let shown: String = text.chars().take(40).collect();
            let more = if text.chars().count() > 40 { "..." } else { "" };
            Err(format!("invalid id '{shown}{more}': {ID_RULE}"))
        }
    }
}

impl TryFrom<String> for AgentId {
    type Error = String;
    fn try_from(s: String) -> Result<AgentId, String> {
        s.parse()
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_rule() {
        let max = "a".repeat(64);
        for ok in ["agent-001", "a", "A.b_c-9", "0", max.as_str()] {
            assert!(ok.parse::<AgentId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_escapes_and_junk() {
        let long = "a".repeat(300);
        for bad in ["", "../x", "a/b", "-rf", ".hidden", "_x", "a b", "é", "a\n", long.as_str(), "..", "."] {
            let err = bad.parse::<AgentId>().unwrap_err();
            assert!(err.contains(ID_RULE), "{bad}: {err}");
        }
    }
}
