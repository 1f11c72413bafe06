//! Agent ids: the names operators give agents, which also name cgroups, locks and logs, so
//! they must never be able to escape the directory they are joined onto.

use std::cmp::Ordering;
use std::{fmt, str::FromStr};

/// The rule, as printed in error messages.
pub const ID_RULE: &str =
    "an id is 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit";

/// Prefixes of the kernel's own files in every cgroup directory: `cgroup.*` and one per
/// controller (`memory.max`, `pids.max`, `io.pressure`, v1's `memory.limit_in_bytes` ...).
/// An agent's cgroup is `agents/<id>`, beside such files, so an id must not begin with one of
/// these followed by a dot. A prefix rule and not a list of files: kernels add files to
/// existing controllers every few releases, controllers themselves rarely.
pub const CGROUP_FILE_PREFIXES: &[&str] = &[
    "cgroup",
    "cpu",
    "cpuacct",
    "cpuset",
    "io",
    "blkio",
    "memory",
    "pids",
    "hugetlb",
    "rdma",
    "misc",
    "dmem",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
    "debug",
];

/// Files of cgroup v1 hierarchies that have no prefix.
pub const CGROUP_V1_FILES: &[&str] = &["tasks", "notify_on_release", "release_agent"];

/// The reason an id that names a cgroup file is refused, as printed in error messages.
pub const CGROUP_FILE_RULE: &str = "the kernel keeps a file of that name in every cgroup (ids may not start with a controller's name and a dot, such as memory. or cgroup., nor be tasks, notify_on_release or release_agent); pick another id";

/// Whether `id` is, or could become, the name of a file the kernel keeps in every cgroup.
fn names_cgroup_file(id: &str) -> bool {
    let prefix = id.split_once('.').map(|(p, _)| p);
    prefix.is_some_and(|p| CGROUP_FILE_PREFIXES.contains(&p)) || CGROUP_V1_FILES.contains(&id)
}

/// A validated agent id: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. Parsing accepts every id an
/// agent may already have; [`AgentId::parse_new`] also refuses the names of cgroup interface
/// files ([`CGROUP_FILE_PREFIXES`], [`CGROUP_V1_FILES`]), for the commands that make an
/// agent's cgroup. Builds before that rule made agents such as `io.worker`, and those must
/// stay visible and killable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the id of an agent (or bare cgroup) about to be made: the id rule, and not a
    /// name the kernel keeps, or may one day keep, in every cgroup directory.
    pub fn parse_new(text: &str) -> Result<AgentId, String> {
        let id: AgentId = text.parse()?;
        if names_cgroup_file(&id.0) {
            return Err(format!("invalid id '{text}': {CGROUP_FILE_RULE}"));
        }
        Ok(id)
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

/// Ids in the order a person counts them: runs of digits compare as numbers, so `a2` comes
/// before `a10` (and `ws-9` before `ws-10`); equal numbers with more leading zeros come first.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (digits(a), digits(b));
                let trim = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
                let (za, zb) = (trim(&a[..na]).min(na - 1), trim(&b[..nb]).min(nb - 1));
                let (va, vb) = (&a[za..na], &b[zb..nb]);
                let by_value = va.len().cmp(&vb.len()).then_with(|| va.cmp(vb)).then_with(|| nb.cmp(&na));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (a, b) = (&a[na..], &b[nb..]);
            }
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => (a, b) = (&a[1..], &b[1..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_counts_numbers() {
        let mut ids = vec!["a10", "a2", "b1", "a1", "a02", "agent-100", "agent-99", "a"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["a", "a1", "a02", "a2", "a10", "agent-99", "agent-100", "b1"]);
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
    }

    #[test]
    fn accepts_the_rule() {
        let max = "a".repeat(64);
        for ok in ["agent-001", "a", "A.b_c-9", "0", max.as_str()] {
            assert!(ok.parse::<AgentId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_the_names_of_cgroup_files() {
        for bad in [
            "cgroup.procs",
            "cgroup.kill",
            "cgroup.not_yet_invented",
            "memory.max",
            "memory.limit_in_bytes",
            "memory.oom.group",
            "pids.max",
            "cpu.weight",
            "io.pressure",
            "cpuset.cpus",
            "hugetlb.2MB.max",
            "tasks",
            "notify_on_release",
            "release_agent",
        ] {
            let err = AgentId::parse_new(bad).unwrap_err();
            assert!(err.contains(CGROUP_FILE_RULE), "{bad}: {err}");
            // An agent an older build made under such a name is still an agent.
            assert_eq!(bad.parse::<AgentId>().map(String::from).as_deref(), Ok(bad));
        }
        // Close to one, but not a kernel file: a dot after another word, no dot, other case.
        for ok in ["memory", "pids-1", "memoryhog.1", "web.memory.max", "Memory.max", "tasks-2", "cgroup_x", "io1.a"] {
            assert!(AgentId::parse_new(ok).is_ok(), "{ok}");
        }
        let err = AgentId::parse_new("../x").unwrap_err();
        assert!(err.contains(ID_RULE), "the id rule comes first: {err}");
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
