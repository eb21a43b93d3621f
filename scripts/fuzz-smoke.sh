#!/usr/bin/env bash
# Runs every fuzz target in BUILD_DIR for SECONDS each, starting from its seed
# corpus in tests/fuzz/corpus/<name>/. Fails if any target finds a crash.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-20}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
for bin in "$build"/tests/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	name=${name#fuzz_}
	mkdir -p "$work/$name"
	seeds="$top/tests/fuzz/corpus/$name"
	echo "fuzz: $name for ${seconds}s"
	if ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$seconds" -max_len=65536 \
		-artifact_prefix="$work/" "$work/$name" ${seeds:+$( [ -d "$seeds" ] && echo "$seeds")} \
		>"$work/$name.log" 2>&1; then
		passed=$((passed + 1))
		grep -E '^Done|stat::number_of_executed_units' "$work/$name.log" | tail -n 1 || true
	else
		failed=$((failed + 1))
		tail -n 60 "$work/$name.log"
		mkdir -p "$top/fuzz-artifacts" && cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$top/fuzz-artifacts/" 2>/dev/null || true
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
