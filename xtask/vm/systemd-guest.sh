# The systemd VM tier's command, run as root in the guest's /vmtest/in (which holds the .deb,
# the integration-test binary, systemd-scenarios.sh, README.md and operations.md): install the
# package as the docs say,
# set the host up, then the integration tests against the installed fleetctl, then the
# scenarios. Lines starting "SDVMTEST: " and "BENCH: " are for the host's report. Exit status: 0
# only when all of it passed. With SDVM_BENCH=N (`vm-test --systemd --bench`; in/ then holds
# xtask instead of the tests): the spawn benchmark in N rounds and one spawn under strace,
# instead of the tests and scenarios.
set -u
say() { echo "SDVMTEST: $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
say "systemd $(systemctl --version | awk 'NR == 1 { print $2 }'), layout $(stat -fc %T /sys/fs/cgroup)"
# Swap on a RAM disk: without swap, an agent's memory.swap.max 0 proves nothing.
modprobe brd rd_nr=1 rd_size=262144 && mkswap -q /dev/ram0 && swapon /dev/ram0 || { say "no swap"; exit 1; }
rc=0
# The docs' packaged install (README.md and docs/operations.md blocks fenced `sh systemd`),
# each command as written, by deploy, an operator with sudo rights, here beside the .deb.
# Without such a block: `dpkg -i` as root. Either way the budget follows from setup-host.
t=$(now)
blocks=$(awk '/^```sh systemd$/ { on = 1; next } /^```/ { on = 0 } on' README.md operations.md 2>/dev/null |
  sed 's/[[:space:]]*#.*//' | grep -v '^[[:space:]]*$')
if [ -n "$blocks" ]; then
  while IFS= read -r command; do
    echo "\$ $command"
    runuser -u deploy -- bash -c "$command" < /dev/null || { echo "FAIL docs_packaged_install: '$command' failed"; rc=1; }
  done <<< "$blocks"
  [ $rc = 0 ] && echo "PASS docs_packaged_install"
else
  dpkg -i ./fleetctl_*_amd64.deb || { say "FAIL dpkg -i"; exit 1; }
fi
say "install took $(took "$t")"
t=$(now)
fleetctl setup-host --fleet-memory-max 1G || { say "FAIL setup-host"; rc=1; }
say "setup-host took $(took "$t")"
if [ -n "${SDVM_BENCH:-}" ]; then
  t=$(now)
  # The packaged fleetctl; the bench's fleet root beside setup-host's, in the scope setup-host
  # made, so each spawn takes the path it takes on a systemd host (and the bench's teardown
  # leaves the real fleet alone).
  ./xtask bench --only spawn --rounds "$SDVM_BENCH" --fleetctl /usr/bin/fleetctl \
    --cgroup-parent /system.slice/fleetctl-fleet.scope/bench 2>&1 | sed -u 's/^/BENCH: /'
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  say "bench took $(took "$t")"
  # One spawn, its supervisor and its agent traced to the end (the agent exits after 1 s):
  # every socket call they make. A D-Bus round trip (to systemd or logind) starts with a
  # connect to the bus's socket.
  mkdir -p /root/ws
  strace -f -qq -e trace=socket,connect,sendto,sendmsg -o /tmp/spawn.strace \
    fleetctl spawn straced /root/ws --user root --memory-max 64M -- sleep 1 > /dev/null || rc=1
  sed 's/^/BENCH: strace: /' /tmp/spawn.strace
  connects=$(grep -o 'connect(.*sun_path="[^"]*"' /tmp/spawn.strace | sed 's/.*sun_path=//' | sort -u | tr '\n' ' ')
  buses=$(grep -cE 'sun_path="[^"]*(bus|systemd)' /tmp/spawn.strace)
  say "spawn under strace -f: $(grep -cE '(socket|connect|sendto|sendmsg)\(' /tmp/spawn.strace) socket calls, connect to: ${connects:-nothing}; to a D-Bus or systemd socket: $buses"
  [ "$buses" = 0 ] || rc=1
  exit $rc
fi
if [ "${SDVM_TESTS:-1}" = 1 ]; then
  t=$(now)
  # As in .ci/run: a test that finds itself without root fails. Each test nests its fleet
  # under the test process's own cgroup and enables memory and pids there, which cgroup v2
  # allows only where no process lives beside them: in the root cgroup (the busybox tier runs
  # there too). So the suite runs from the root of every hierarchy, its fleets top-level
  # cgroups of a throwaway guest, which systemd leaves alone.
  (
    for dir in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup/memory /sys/fs/cgroup/pids; do
      [ -e $dir/cgroup.procs ] && echo $BASHPID > $dir/cgroup.procs
    done
    FLEETCTL_THROWAWAY_KERNEL=1 FLEETCTL_TEST_AS_ROOT=1 FLEETCTL_BIN=/usr/bin/fleetctl \
      exec ./fleetctl-tests --test-threads=1
  ) 2>&1 | sed -u 's/^/TEST: /'
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  say "integration tests took $(took "$t")"
fi
t=$(now)
bash ./systemd-scenarios.sh || rc=1
say "scenarios took $(took "$t")"
exit $rc
