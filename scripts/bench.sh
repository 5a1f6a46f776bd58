#!/usr/bin/env bash
# `make bench`: the quick profile of the harness on loop filesystems it
# makes and removes, for every driver available here. Extra arguments go to
# `layerlab bench` (e.g. PROFILE=standard make bench, or --driver overlay2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/leakcheck.sh bin/layerlab bench --profile "${PROFILE:-quick}" "$@"
echo "open results/latest/index.html (Markdown: results/latest/report.md)"
