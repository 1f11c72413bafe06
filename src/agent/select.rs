//! Picking agents by their labels (`-l/--selector`): which records a selector matches, and
//! the one error when it matches none, which every command that takes a selector gives
//! (exit 5, as for an unknown id: most likely a typo in the selector).

use crate::{
    agent::view::{self, AgentView},
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_core::{id::AgentId, labels::Selector};

/// Whether the agent of `view` is selected: its record's labels match. An agent seen only
/// through its cgroup (no readable record) has no labels.
pub fn matches(selector: &Selector, view: &AgentView) -> bool {
    selector.matches(&view.record.labels)
}

/// Every agent whose record matches `selector`, with whether it is still alive, by id.
pub fn matching(ctx: &Ctx, selector: &Selector) -> Result<Vec<AgentView>> {
    let (views, _) = view::load_all(ctx)?;
    let mut views: Vec<AgentView> = views.into_iter().filter(|v| matches(selector, v)).collect();
    views.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    Ok(views)
}

/// The ids of [`matching`], or the exit-5 error when there are none.
pub fn matching_ids(ctx: &Ctx, selector: &Selector) -> Result<Vec<AgentId>> {
    let ids: Vec<AgentId> = matching(ctx, selector)?.into_iter().map(|v| v.record.id).collect();
    if ids.is_empty() {
        return Err(none_match(selector));
    }
    Ok(ids)
}

/// The exit-5 error for a selector no agent's labels match.
pub fn none_match(selector: &Selector) -> anyhow::Error {
    Fail::error(
        Exit::NoSuchAgent,
        format!("no agent's labels match '{selector}' (see the labels in `fleetctl status --json`)"),
    )
}
