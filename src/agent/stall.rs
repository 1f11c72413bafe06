//! Stalls on memory as `spawn` plans them: what counts as one (the config's
//! `agent.stall_threshold` and `agent.stall_after`) and what one does (`--stall-signal`,
//! `--on-stall`). The supervisor's machine decides when a stall happens
//! (`supervisor::machine::stall`).

use super::plan::StallPlan;
use crate::settings::AgentDefaults;
use fleet_cli::{OnStall, SpawnArgs};

/// The stall watch `args` asks for, under the config's `defaults`; the error is the usage
/// line for a flag that needs a watch the config turned off.
pub fn plan(defaults: &AgentDefaults, args: &SpawnArgs) -> Result<Option<StallPlan>, String> {
    let kill = args.on_stall == OnStall::Kill;
    let Some(after) = defaults.stall_after else {
        if args.stall_signal.is_some() || kill {
            return Err(
                "--stall-signal and --on-stall kill need stalls watched, and agent.stall_after is \"off\" in the config; set it (e.g. \"30s\") or drop the flag"
                    .into(),
            );
        }
        return Ok(None);
    };
    Ok(Some(StallPlan { threshold_percent: defaults.stall_threshold, after, signal: args.stall_signal.clone(), kill }))
}
