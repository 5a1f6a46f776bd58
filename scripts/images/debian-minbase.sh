#!/usr/bin/env bash
# Builds a Debian minbase root filesystem with debootstrap, from the mirror
# scripts/vm/build.sh uses, for drivers/layer's real-image test, and prints
# its directory. The result is cached under CACHE and reused; a failed
# build leaves nothing there. /dev is emptied (an image carries no device
# nodes; a runtime makes them), as are docs and apt's lists.
#
# make setup builds it; tests ask with --cached, which never reaches the
# network and exits 5 when the image is not built yet.
#
# usage: debian-minbase.sh [--cached] [CACHE]   (default: ${LAYERLAB_IMAGE_CACHE:-/var/cache/layerlab/images})
set -euo pipefail
cached=false
if [ "${1:-}" = --cached ]; then cached=true; shift; fi
cache=${1:-${LAYERLAB_IMAGE_CACHE:-/var/cache/layerlab/images}}
mirror=${LAYERLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
dest="$cache/debian-$suite-minbase"

if [ -f "$dest/ready" ]; then
  echo "$dest/rootfs"
  exit 0
fi
if $cached; then
  echo "no Debian minbase image in $dest (make setup builds it)" >&2
  exit 5
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (run make setup)" >&2; exit 3; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -20 "$work/debootstrap.log" >&2
  # debootstrap unmounts what it mounted in the chroot; make sure.
  for m in proc sys dev/pts dev; do umount "$work/rootfs/$m" 2>/dev/null || true; done
  exit 4
fi
rm -rf "$work"/rootfs/dev/* "$work"/rootfs/usr/share/{doc,man,locale,info} \
  "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/log/*
rm -rf "$dest"
mkdir -p "$dest"
mv "$work/rootfs" "$dest/rootfs"
touch "$dest/ready"
echo "$dest/rootfs"
