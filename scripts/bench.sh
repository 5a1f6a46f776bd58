#!/usr/bin/env bash
# `make bench`. The benchmark harness (`layerlab bench`, with reports) is
# not built yet; until it is, this runs the Go benchmarks that exist, on
# loop filesystems they make and remove, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "layerlab bench: the harness and its reports are not built yet (see README)."
echo "Running the existing Go benchmarks instead: overlay2's Prepare+mount+umount+Remove"
echo "cycle next to its floor (raw mount+umount of the same overlay + one fsync'd write)."
echo
bash scripts/leakcheck.sh go test -run '^$' -bench 'Overlay2' -benchtime 300x -count 3 ./drivers/overlay/
