#!/usr/bin/env bash
# Vagrant provisioner of the aufs VM (Ubuntu 20.04): aufs is in no
# mainline kernel; Ubuntu's 5.4 kernel builds it as a module, which may sit
# in linux-modules-extra-<release>, a package cloud images leave out. The
# extra disk is ext4 at /var/lib/layerlab (aufs takes ext4 or xfs
# branches). Then the aufs driver's tests, on ext4 and xfs loop
# filesystems, and the benchmark. This is the only place aufs is verified.
set -euo pipefail
# shellcheck source=scripts/vagrant/lib.sh
. "${LAYERLAB_SRC:-/layerlab}/scripts/vagrant/lib.sh"
start_report

if ! grep -qw aufs /proc/filesystems; then
  if ! modprobe aufs 2>/dev/null; then
    apt_install "linux-modules-extra-$(uname -r)"
    modprobe aufs || die "kernel $(uname -r) has no aufs module, not even in linux-modules-extra; Ubuntu stopped building aufs in later kernels, so if this box boots a HWE kernel, install and boot focal's GA 5.4 kernel (linux-generic)"
  fi
fi
echo aufs >/etc/modules-load.d/layerlab-aufs.conf # loaded again after a reboot

apt_install e2fsprogs
if ! blkid -L "$LABEL" >/dev/null; then
  dev=$(find_disk)
  log "formatting $dev: ext4, label $LABEL"
  # -F: mke2fs asks before formatting a whole disk; find_disk made sure it is blank.
  mkfs.ext4 -q -F -L "$LABEL" "$dev"
  udevadm settle
fi
ensure_mount "LABEL=$LABEL" ext4 defaults,nofail
[ -d /dev/shm ] || die "/dev/shm is missing; aufs keeps its xino files there"

vm_facts() {
  echo "# aufs"
  cat /sys/module/aufs/version 2>/dev/null || modinfo -F version aufs
  modinfo -n aufs
}

run_suite aufs "$MNT/tmp" ./drivers/aufs/...
