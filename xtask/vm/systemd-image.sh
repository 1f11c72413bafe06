#!/bin/bash
# The systemd VM tier's image recipe: mmdebstrap's customize hook (`cargo xtask vm-test
# --systemd`, xtask/src/vm/systemd_guest.rs). This file's text is part of the image's cache
# key: editing it rebuilds the image on the next run.
# $1 = the rootfs, $2 = the unpacked kernel's lib/modules/<release> on the host.
set -euo pipefail
R=$1 MODULES=$2
release=$(basename "$MODULES")
# The kernel's modules, so modprobe works in the guest (brd for swap); the kernel itself boots
# from the host's unpacked copy: NVMe and ext4 are built in, so there is no initramfs.
mkdir -p "$R/usr/lib/modules"
cp -a "$MODULES" "$R/usr/lib/modules/"
chroot "$R" depmod -a "$release"
# A fixed machine-id (an empty one makes every boot a first boot), a name, no fstab: / is
# mounted read-write by the kernel and is a throwaway snapshot, so nothing is checked.
head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$R/etc/machine-id"; echo >> "$R/etc/machine-id"
: > "$R/etc/resolv.conf"; echo vmtest > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vmtest\n' > "$R/etc/hosts"
echo '# / is mounted read-write by the kernel; nothing else' > "$R/etc/fstab"
chroot "$R" passwd -qd root
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$R/etc/systemd/journald.conf.d/vmtest.conf"
# The host setting the logout scenario is about: a session's end kills what it started.
mkdir -p "$R/etc/systemd/logind.conf.d"
printf '[Login]\nKillUserProcesses=yes\n' > "$R/etc/systemd/logind.conf.d/vmtest.conf"
# An operator, deploy, with sudo rights as on a real host (the logout scenario logs in as them;
# Debian already has a group named operator).
chroot "$R" useradd -m -s /bin/bash -G sudo deploy
echo 'deploy ALL=(ALL) NOPASSWD: ALL' > "$R/etc/sudoers.d/deploy"; chmod 440 "$R/etc/sudoers.d/deploy"
chroot "$R" systemctl -q set-default multi-user.target
# Gettys would fight over the serial console; the rest is periodic maintenance. systemd-oomd
# is installed but masked: the oomd scenario unmasks and starts it, so the other scenarios
# and the tests run on the Debian default (no oomd).
chroot "$R" systemctl -q mask getty.target getty@tty1.service serial-getty@ttyS0.service \
  systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-pstore.service \
  systemd-oomd.service systemd-oomd.socket
cat > "$R/usr/local/sbin/vmtest-run" <<'EOF'
#!/bin/bash
# Run once per boot by vmtest.service. In: /dev/nvme0n2 = a tar of {cmd, in/}. Out: the
# command's output on the console (ttyS0) with "SDVM| " before each line, a tar of {rc, out/}
# on /dev/nvme0n3, and "SDVM: " marker lines.
say() { echo "SDVM: $*" > /dev/ttyS0; }
# Type=exec: the boot finishes first; wait for it, so the command finds a settled system.
state=$(systemctl is-system-running --wait)
say "start uptime=$(cut -d' ' -f1 /proc/uptime) state=$state"
mkdir -p /vmtest/out && tar -xf /dev/nvme0n2 -C /vmtest || say "cannot unpack the input disk"
cd /vmtest/in
set -o pipefail
bash /vmtest/cmd </dev/null 2>&1 | sed -u 's/^/SDVM| /' > /dev/ttyS0
rc=$?
echo "$rc" > /vmtest/rc
journalctl -b --no-pager > /vmtest/out/journal.txt 2>&1
tar -cf /dev/nvme0n3 -C /vmtest rc out && sync || say "cannot write the output disk"
say "rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
systemctl poweroff --force --force
EOF
chmod 755 "$R/usr/local/sbin/vmtest-run"
cat > "$R/etc/systemd/system/vmtest.service" <<'EOF'
[Unit]
Description=the VM tier's test command
After=multi-user.target
[Service]
Type=exec
ExecStart=/usr/local/sbin/vmtest-run
Environment=HOME=/root TERM=dumb LANG=C.UTF-8
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl -q enable vmtest.service
