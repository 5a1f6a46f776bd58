#!/usr/bin/env bash
# Runs a command and fails if it left mounts or loop devices behind, even
# when the command itself passed. Usage: leakcheck.sh CMD [ARGS...]
set -uo pipefail
export LC_ALL=C # sort and comm must agree on the order
snap() { { findmnt -rn -o TARGET,FSTYPE; losetup -a 2>/dev/null | cut -d: -f1,3; } | sort; }
before=$(snap)
"$@"
rc=$?
after=$(snap)
leaked=$(comm -13 <(echo "$before") <(echo "$after"))
if [ -n "$leaked" ]; then
  echo "leakcheck: left behind by '$*':" >&2
  echo "$leaked" >&2
  [ $rc = 0 ] && rc=1
fi
exit $rc
