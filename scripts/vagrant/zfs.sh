#!/usr/bin/env bash
# Vagrant provisioner of the zfs VM (Debian 12): kernel OpenZFS from
# Debian's contrib section (zfs-dkms builds the module against the running
# kernel's headers; zfsutils-linux has zpool and zfs), a pool on the extra
# disk and a dataset mounted at /var/lib/layerlab. Then the zfs driver's
# tests with kernel ZFS (on this project's CI host they run on zfs-fuse)
# and the benchmark.
set -euo pipefail
# shellcheck source=scripts/vagrant/lib.sh
. "${LAYERLAB_SRC:-/layerlab}/scripts/vagrant/lib.sh"
start_report

POOL=$LABEL
DATASET=$POOL/root

# contrib: OpenZFS is CDDL, which Debian keeps out of main.
if ! grep -rqsE '^[^#]*[[:space:]]contrib([[:space:]]|$)|^Components:.*[[:space:]]contrib' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  log "enabling Debian contrib for $codename"
  echo "deb http://deb.debian.org/debian $codename contrib" >/etc/apt/sources.list.d/layerlab-contrib.list
  APT_UPDATED= # the new section's lists
fi

# The module is built for the running kernel. A box older than the
# archive may boot a kernel whose headers are gone from it; then install
# the current kernel and ask for a reboot.
headers=linux-headers-$(uname -r)
apt_update
if ! dpkg-query -W -f='${Status}' "$headers" 2>/dev/null | grep -q "install ok installed" &&
  ! apt-cache show "$headers" >/dev/null 2>&1; then
  arch=$(dpkg --print-architecture)
  apt_install "linux-image-$arch" "linux-headers-$arch"
  die "the archive has no $headers for the running kernel; installed the current kernel: run \`vagrant reload $LAYERLAB_VM --provision\`"
fi
apt_install "$headers" zfs-dkms zfsutils-linux
modprobe zfs
[ -e /dev/zfs ] || die "modprobe zfs left no /dev/zfs"

if ! zpool list "$POOL" >/dev/null 2>&1; then
  # Imported pools come back at boot from /etc/zfs/zpool.cache; try an
  # import before deciding the disk is new.
  if ! zpool import "$POOL" 2>/dev/null; then
    dev=$(stable_path "$(find_disk)")
    log "creating zfs pool $POOL on $dev"
    # ashift=12: 4 KiB sectors whatever the virtual disk claims; the pool's
    # own dataset is not mounted, only $DATASET.
    zpool create -o ashift=12 -O mountpoint=none "$POOL" "$dev"
  fi
fi
if ! zfs list "$DATASET" >/dev/null 2>&1; then
  mkdir -p "$MNT"
  # Leave /var/lib/layerlab empty for the mount, or zfs refuses it.
  [ -z "$(ls -A "$MNT")" ] || die "$MNT is not empty; zfs will not mount $DATASET over it"
  # xattr=sa: image layers carry xattrs (security.capability), which zfs
  # otherwise keeps in hidden directories.
  zfs create -o mountpoint="$MNT" -o xattr=sa "$DATASET"
fi
[ "$(zfs get -H -o value mounted "$DATASET")" = yes ] || zfs mount "$DATASET"
[ "$(findmnt -no FSTYPE "$MNT")" = zfs ] || die "$MNT is $(findmnt -no FSTYPE "$MNT"), not the zfs dataset $DATASET"

vm_facts() {
  echo "# zfs version"
  zfs version
  echo
  echo "# zpool status"
  zpool status "$POOL"
  echo
  echo "# zfs list"
  zfs list -r -o name,used,avail,mountpoint "$POOL"
}

# The tests make their own pool on an image file under TMPDIR: that file
# stays on the root filesystem, as a pool backed by a file in another pool
# can deadlock.
run_suite zfs /var/tmp/layerlab-tmp ./drivers/zfs/...
