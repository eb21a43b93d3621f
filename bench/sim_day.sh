#!/bin/sh
# The simulator's speed target (issue 7): 24 simulated hours of up to 100
# replicas and ~1 000 000 tasks, every policy, in under 30 s on the 2-core
# build machine. Prints the wall time per policy and for all four together.
#   bench/sim_day.sh [BUILD_DIR]      (default: build, a Release build is best)
set -eu
BIN=${1:-build}/ballast
SCENARIO=$(dirname "$0")/scenarios/sim-day.yaml
[ -x "$BIN" ] || { echo "bench/sim_day.sh: build $BIN first (make build)" >&2; exit 1; }
now() { date +%s.%N; }
for p in ballast hpa uncoordinated static; do
	t0=$(now)
	"$BIN" sim "$SCENARIO" --policy "$p" >/dev/null
	t1=$(now)
	printf '%-14s %6.2f s\n' "$p" "$(awk "BEGIN{print $t1 - $t0}")"
done
t0=$(now)
"$BIN" sim "$SCENARIO" | sed -n '4,7p'
t1=$(now)
printf 'all four       %6.2f s (target: under 30 s)\n' "$(awk "BEGIN{print $t1 - $t0}")"
