# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fleetctl_global_optspecs
    string join \n cgroup-parent= state-dir= log-dir= workspace-root= scratch-root= lock-dir= config= h/help V/version
end

function __fish_fleetctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fleetctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fleetctl_using_subcommand
    set -l cmd (__fish_fleetctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fleetctl -n "__fish_fleetctl_needs_command" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_needs_command" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_needs_command" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_needs_command" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_needs_command" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_needs_command" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_needs_command" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "spawn" -d 'Start an agent in its own cgroup under a detached supervisor'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "kill" -d 'Stop agents: SIGTERM to every process, a grace period, then kill the whole cgroup'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "restart" -d 'Stop agents (as kill does) and start them again with the command, limits, workspace, labels and settings of their records'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "logs" -d 'Show an agent\'s output'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "status" -d 'The host and every agent on one screen'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "memory" -d 'Per-agent memory: usage, limits, events and pressure, largest first'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "queue" -d 'The spawns waiting in line (`spawn --queue`): for what, since when, at which position'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "events" -d 'The event journal: spawns, exits and their causes, timeouts, OOM kills, relief'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "relief" -d 'Kill agents, largest first, until fleet memory use is below TARGET percent'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "metrics" -d 'The host and every agent in Prometheus text format'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "watch" -d 'Live view of fleet memory; with --auto-kill, the protected memory guard'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "gc" -d 'Collect what no live process owns: old records of ended agents, empty cgroups, scratch dirs'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "setup-host" -d 'Prepare this host for a fleet: cgroups, kernel parameters, workspace pool, scratch tmpfs'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "doctor" -d 'Check that this host is ready for a fleet, with a fix for each failing line'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "cgroup-create" -d 'Create (or update) a leaf cgroup under the fleet root with limits'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "run-in-cgroup" -d 'Run a command inside an existing agent\'s cgroup, in the foreground'
complete -c fleetctl -n "__fish_fleetctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l label -d 'A label KEY=VALUE for selectors (`-l KEY=VALUE` on status, kill ...); repeatable' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l spawn-threshold -d 'Refuse to spawn when fleet memory use, with agents still starting counted at their start reserve (this one too), would reach this percentage [default: 85]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l queue -d 'Where admission would refuse (memory, a pool, the agent cap), wait in line instead, first come first served, until admitted or until TIMEOUT passes (then exit 75)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l max-agents -d 'Refuse (or, with --queue, wait) while the fleet has this many agents [default: no cap]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l memory-reserve -d 'Memory admission counts for this agent for as long as it lives, when it uses less [default: off]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l log-max-size -d 'Size at which the agent\'s log is rotated (one old file is kept) [default: 64M]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l memory-max -d 'Hard memory limit; the OOM killer ends the agent beyond it. Given alone, the memory high follows at 3/4 of it [default: 4G]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l memory-high -d 'Where the kernel starts reclaiming and throttling [default: 3/4 of the memory max]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l swap-max -d 'Swap the agent may use [default: 0]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l pids-max -d 'Maximum number of tasks (processes and threads) [default: 512]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l soft-timeout -d 'When the agent\'s main process gets SIGUSR1, a warning to wrap up; "off" for never [default: 15m]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l hard-timeout -d 'When every process of the agent gets SIGTERM, then the kill; "off" for never [default: 30m]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l kill-grace -d 'Time between SIGTERM and the kill when the hard timeout fires [default: 10s]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l restart -d 'Restart the agent\'s command when it fails' -r -f -a "never\t'Never restart'
on-failure\t'Restart after a failure or OOM kill, never after a kill or timeout'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l restart-backoff -d 'First restart delay; it doubles after each failure, up to 5 minutes' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l crash-loop-after -d 'Failures within 10 minutes that stop restarts (state crash-loop)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l ports -d 'Lease a block of N consecutive free ports ($FLEET_PORT_BASE, $FLEET_PORTS)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l port-range -d 'Where port blocks come from [default: 20000-29999]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l user -d 'Who the agent runs as: a user (name or uid), optionally :GROUP; "auto" for a uid of its own from agent.uid_range [default: agent.user, or the user who ran sudo]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l env -d 'Set a variable in the agent\'s environment (repeatable)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l env-file -d 'Set the variables of FILE\'s KEY=VALUE lines (repeatable; # starts a comment)' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l pass-env -d 'Pass your own value of variable NAME to the agent (repeatable)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l cwd -d 'Where the agent starts: a directory inside its workspace [default: the workspace]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l stall-signal -d 'Send this signal to the main process when the agent stalls on memory (pressure above agent.stall_threshold for agent.stall_after), so it can shed memory' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l save-signal -d 'Send this signal to the main process before relief or the guard kills the agent, and give it their --save-grace to save its state' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l on-stall -d 'What a stall does besides marking the agent `stalled` and the signal' -r -f -a "mark\t'Only marked (and signalled if asked): it runs on'
kill\t'Killed: a restartable end in state `stalled`, restarted under --restart on-failure'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l wait -d 'Stay attached: stream the output and exit with the agent\'s code; Ctrl-C stops the agent'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l protect -d 'Never choose this agent when relieving memory pressure'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l json -d 'Print the started agent as JSON (docs/spawn-json.md)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -l allow-new-privs -d 'Let setuid binaries raise the agent\'s privileges (no no_new_privs)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand spawn" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -s l -l selector -d 'Stop every running agent whose labels match (e.g. batch=42, \'team in (a,b)\')' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l grace -d 'Time between SIGTERM and the kill' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l all -d 'Stop every agent of the fleet'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -l force -d 'Kill the whole cgroup at once, without SIGTERM or grace'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand kill" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l grace -d 'Time between SIGTERM and the kill when stopping' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand restart" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -s l -l selector -d 'Every agent whose labels match, each log under a `==> ID <==` line' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -s n -l lines -d 'Print only the last N lines' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -s f -l follow -d 'Keep printing new output until the agent ends'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand logs" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l state -d 'Show only agents in these states (comma-separated)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -s l -l selector -d 'Show only agents whose labels match (e.g. batch=42, \'team in (a,b)\', \'batch=42,tier!=gpu\')' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -s o -l output -d 'wide: every column, none dropped or cut to fit the terminal\'s width (or COLUMNS)' -r -f -a "wide\t'Every column'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l json -d 'One JSON object: {"schema", "host", "agents"}'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -l no-headers -d 'Print the rows only: no header or summary lines (for scripts)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l sort -d 'Sort by this column, largest first' -r -f -a "current\t'Memory in use now'
percent\t'Percent of the agent\'s own limit'
peak\t'Most ever used'
oom-kills\t'OOM kills'
pressure\t'Memory pressure (PSI some avg10)'
id\t'Agent id (ascending)'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -s l -l selector -d 'Show only agents whose labels match (e.g. batch=42)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -s o -l output -d 'wide: every column, none dropped or cut to fit the terminal\'s width (or COLUMNS)' -r -f -a "wide\t'Every column'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l json -d 'One JSON object: {"schema", "budget", "agents", "totals"}'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -l no-headers -d 'Print the rows only: no header or summary lines (for scripts)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand memory" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -l json -d 'One JSON object: {"schema", "waiting"}'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand queue" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -s l -l selector -d 'Only events of agents whose labels match (e.g. batch=42)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l since -d 'Only events newer than this long ago (e.g. 1h, 30m)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -s f -l follow -d 'Keep printing new events as they are written'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -l json -d 'One JSON object per line, as written in the journal'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand events" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l order -d 'Which agents go first' -r -f -a "largest\t'Largest memory first: the fewest kills that reach the target'
newest\t'Most recently started first: the least work lost'
oldest\t'Longest running first'
growth\t'The agent that grew the most over the last 10 s first (then largest): the runaway. Only the watcher, which samples, knows growth'
least-work\t'The most memory freed per minute of run time lost first: the agents whose kill frees much and throws away little work'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l protect -d 'Never kill this agent, or the agents whose labels match a selector such as batch=42 (repeatable); agents spawned with --protect are always spared' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l grace -d 'Time between SIGTERM and the kill, per victim' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l save-grace -d 'Time a victim spawned with --save-signal has to save its state after that signal, before SIGTERM; given only while the fleet is below 98 % of its budget; 0s: never' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l dry-run -d 'Print the plan (victims, memory freed, projected use) and kill nothing'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -l json -d 'Print the plan and the kills as one JSON document (docs/relief-json.md)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand relief" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand metrics" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l interval -d 'How often to refresh when memory is calm (at least 100ms); it samples faster as headroom shrinks' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l metrics-file -d 'Rewrite this file atomically each tick with `fleetctl metrics` output (for node_exporter\'s textfile collector)' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l order -d 'Which agents go first' -r -f -a "largest\t'Largest memory first: the fewest kills that reach the target'
newest\t'Most recently started first: the least work lost'
oldest\t'Longest running first'
growth\t'The agent that grew the most over the last 10 s first (then largest): the runaway. Only the watcher, which samples, knows growth'
least-work\t'The most memory freed per minute of run time lost first: the agents whose kill frees much and throws away little work'"
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l grace -d 'Time between SIGTERM and the kill, per victim' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l protect -d 'Never kill this agent, or the agents whose labels match a selector such as batch=42 (repeatable); agents spawned with --protect are always spared' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l save-grace -d 'Time a victim spawned with --save-signal has to save its state after that signal, before SIGTERM; given only while the fleet is below 98 % of its budget; 0s: never' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -l auto-kill -d 'At or above the kill threshold (95 %), kill agents (by --order, protected spared) until use is below the spawn threshold (85 %)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand watch" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l older-than -d 'Collect records of agents that ended longer ago than this' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l logs -d 'Also delete logs of collected agents'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l dry-run -d 'Print what would be collected and change nothing'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -l json -d 'Print what was (or would be) collected as JSON (docs/gc-json.md)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand gc" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l root -d 'Prefix for every file path setup-host touches (tests apply it to a temp tree)' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l only -d 'Run only these steps (config, dirs, cgroups, swap, sysctl, workspaces, scratch, delegate, watcher)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l skip -d 'Skip these steps' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l fleet-memory-max -d 'The fleet\'s memory budget: memory.max on the fleet root' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l slots -d 'Workspace slots to create (ws-001 ...)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l scratch-size -d 'Size cap of the scratch tmpfs: a size (16G) or a percentage of RAM (10%)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l delegate -d 'Let USER run fleetctl on the fleet subtree without root (cgroup v2 delegation)' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l dry-run -d 'Print the plan; change nothing'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l check -d 'Change nothing; exit 1 listing what is missing (for config management)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l revert -d 'Undo what earlier runs changed, from their manifest'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -l swapoff -d 'Also turn host swap off and comment it out of fstab (agents get swap 0 regardless)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand setup-host" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l root -d 'The same prefix setup-host was given' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -l json -d 'Print every check as JSON (docs/doctor-json.md)'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l memory-max -d 'Hard memory limit; the OOM killer ends the agent beyond it. Given alone, the memory high follows at 3/4 of it [default: 4G]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l memory-high -d 'Where the kernel starts reclaiming and throttling [default: 3/4 of the memory max]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l swap-max -d 'Swap the agent may use [default: 0]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l pids-max -d 'Maximum number of tasks (processes and threads) [default: 512]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand cgroup-create" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l cgroup-parent -d 'The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]' -r
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l state-dir -d 'Per-agent state and locks [default: /run/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l log-dir -d 'Per-agent logs and the event journal [default: /var/log/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l workspace-root -d 'Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l scratch-root -d 'Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l lock-dir -d 'Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -l config -d 'Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]' -r -F
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -s h -l help -d 'Print help'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand run-in-cgroup" -s V -l version -d 'Print version'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "spawn" -d 'Start an agent in its own cgroup under a detached supervisor'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "kill" -d 'Stop agents: SIGTERM to every process, a grace period, then kill the whole cgroup'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "restart" -d 'Stop agents (as kill does) and start them again with the command, limits, workspace, labels and settings of their records'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "logs" -d 'Show an agent\'s output'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "status" -d 'The host and every agent on one screen'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "memory" -d 'Per-agent memory: usage, limits, events and pressure, largest first'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "queue" -d 'The spawns waiting in line (`spawn --queue`): for what, since when, at which position'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "events" -d 'The event journal: spawns, exits and their causes, timeouts, OOM kills, relief'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "relief" -d 'Kill agents, largest first, until fleet memory use is below TARGET percent'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "metrics" -d 'The host and every agent in Prometheus text format'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "watch" -d 'Live view of fleet memory; with --auto-kill, the protected memory guard'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "gc" -d 'Collect what no live process owns: old records of ended agents, empty cgroups, scratch dirs'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "setup-host" -d 'Prepare this host for a fleet: cgroups, kernel parameters, workspace pool, scratch tmpfs'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "doctor" -d 'Check that this host is ready for a fleet, with a fix for each failing line'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "cgroup-create" -d 'Create (or update) a leaf cgroup under the fleet root with limits'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "run-in-cgroup" -d 'Run a command inside an existing agent\'s cgroup, in the foreground'
complete -c fleetctl -n "__fish_fleetctl_using_subcommand help; and not __fish_seen_subcommand_from spawn kill restart logs status memory queue events relief metrics watch gc setup-host doctor cgroup-create run-in-cgroup help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
