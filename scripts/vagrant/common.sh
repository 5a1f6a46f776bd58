#!/usr/bin/env bash
# Vagrant provisioner run first in every VM: the base packages and Go.
#
# Go comes from the official tarball (go.dev/dl), not the distribution:
# go.mod asks for a newer Go than Debian 12 (golang-1.19) or Ubuntu 20.04
# ship, backports included. The version is the one go.mod names (its
# toolchain line, else its go line), so the VM builds with what the
# project says; the tarball's SHA-256 is checked against go.dev's release
# list. The VM has internet access; this script needs it.
#
# Idempotent: installs only what is missing, and Go only when the version
# in /usr/local/go is not the one wanted.
set -euo pipefail
# shellcheck source=scripts/vagrant/lib.sh
. "${LAYERLAB_SRC:-/layerlab}/scripts/vagrant/lib.sh"

exec > >(tee "$COMMON_LOG") 2>&1

# make and git for the build (git stamps the commit), curl for Go, the
# mkfs tools for the tests' loop filesystems.
# shellcheck disable=SC2086 # a word list
apt_install ca-certificates curl make git $SETUP_PACKAGES

# root builds in the synced folder, which belongs to the vagrant user;
# without this git refuses to read it ("dubious ownership").
safe=$(git config --system --get-all safe.directory || true)
grep -qxF "$LAYERLAB_SRC" <<<"$safe" || git config --system --add safe.directory "$LAYERLAB_SRC"

want=$(go_wanted "$LAYERLAB_SRC/go.mod")
[ -n "$want" ] || die "no go version in $LAYERLAB_SRC/go.mod"
arch=$(dpkg --print-architecture) # amd64, arm64: Go's names too
have=$(/usr/local/go/bin/go env GOVERSION 2>/dev/null || true)
if [ "$have" = "go$want" ]; then
  log "Go $want already in /usr/local/go"
else
  file=go$want.linux-$arch.tar.gz
  log "installing Go $want from go.dev (have: ${have:-none})"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL --retry 3 -o "$tmp/$file" "https://go.dev/dl/$file"
  curl -fsSL --retry 3 -o "$tmp/releases.json" "https://go.dev/dl/?mode=json&include=all"
  sum=$(go_sha256 "$file" <"$tmp/releases.json")
  [ -n "$sum" ] || die "go.dev's release list has no sha256 for $file"
  echo "$sum  $tmp/$file" | sha256sum -c -
  rm -rf /usr/local/go
  tar -C /usr/local -xzf "$tmp/$file"
fi
go version

# For `vagrant ssh`: the same Go on every login shell's PATH.
cat >/etc/profile.d/layerlab-go.sh <<'EOF'
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local
EOF
