#!/usr/bin/env bash
# Builds the qemu test guest from Debian packages: Debian's kernel (the ELF
# vmlinux pulled out of vmlinuz, which boots faster than the compressed
# image), only the modules the jobs need, and a minbase rootfs with the
# storage tools, packed as an uncompressed cpio initramfs. The result is
# cached under $CACHE and rebuilt only when an input changes: this script,
# the guest's /init, the package and module lists, or the kernel version.
#
# usage: build.sh [CACHE]   (default: ${LAYERLAB_VM_CACHE:-/var/cache/layerlab/vm})
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${LAYERLAB_VM_CACHE:-/var/cache/layerlab/vm}}
mirror=${LAYERLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

# What the jobs use inside the guest.
packages=kmod,dmsetup,thin-provisioning-tools,e2fsprogs,xfsprogs,btrfs-progs,util-linux,procps,mount
modules=(dm-thin-pool dm-snapshot dm-mod loop xfs btrfs ext4 overlay 9p 9pnet_virtio virtio_pci virtio_blk crc32c_generic)

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
key=$( { cat "$0" "$here/init"; echo "$packages ${modules[*]} $kpkg $kver $suite"; } | sha256sum | cut -c1-16)

if [ -f "$cache/$key/ready" ]; then
  echo "$cache/$key"
  exit 0
fi
echo "vm: building the test guest ($kpkg $kver, $suite minbase) into $cache/$key" >&2
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/layerlab-vm-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. The kernel and its modules, from the Debian package.
(cd "$work" && apt-get download -qq "$kpkg" >/dev/null)
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/kernel"
release=${kpkg#linux-image-}
vmlinuz="$work/kernel/boot/vmlinuz-$release"
# vmlinuz is a boot stub followed by an XZ stream holding the ELF vmlinux.
off=$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
tail -c +$((off + 1)) "$vmlinuz" | xz -dc > "$work/vmlinux" 2>/dev/null || true
file -b "$work/vmlinux" 2>/dev/null | grep -q ELF || { echo "vm: could not extract vmlinux from $vmlinuz" >&2; exit 1; }
depmod -b "$work/kernel" "$release"   # the package ships no module index

# 2. The rootfs.
root="$work/root"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/usr/share/{doc,man,locale,info} "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*

# 3. The needed modules and their dependencies, with a fresh index.
mods=$(for m in "${modules[@]}"; do
  modprobe -d "$work/kernel" -S "$release" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
done | sort -u)
for f in $mods; do
  rel=${f#"$work/kernel"}
  mkdir -p "$root$(dirname "$rel")"
  cp "$f" "$root$rel"
done
cp "$work/kernel/lib/modules/$release/modules.builtin"* "$root/lib/modules/$release/" 2>/dev/null || true
cp "$work/kernel/lib/modules/$release/modules.order" "$root/lib/modules/$release/" 2>/dev/null || true
depmod -b "$root" "$release"

install -m 0755 "$here/init" "$root/init"
mkdir -p "$root/host"

# 4. Pack. Uncompressed: the kernel unpacks it faster than it would decompress.
mkdir -p "$cache/$key"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) > "$cache/$key/initrd.cpio"
cp "$work/vmlinux" "$cache/$key/vmlinux"
echo "$kpkg $kver $suite" > "$cache/$key/inputs"
touch "$cache/$key/ready"
# Older builds are stale once the inputs change.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
echo "vm: guest built in $(( $(date +%s) - start )) s ($(du -sh "$cache/$key/initrd.cpio" | cut -f1) initramfs)" >&2
echo "$cache/$key"
