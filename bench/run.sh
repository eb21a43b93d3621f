#!/usr/bin/env bash
# End-to-end benchmark: starts the release build of ballast on a free loopback
# port and drives it with wrk (50 keep-alive connections, one wrk thread so the
# two cores are split between client and server), then prints req/s and
# p50/p99/p99.9 per endpoint. Usage: bench/run.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-${2:-10}}
conns=${BENCH_CONNECTIONS:-50}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/$build/ballast"
[ -x "$bin" ] || { echo "bench: $bin not built (make build)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench: wrk missing (scripts/deps.sh bench)" >&2; exit 1; }

work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat >"$work/ballast.yaml" <<YAML
state_dir: $work/state
log: {level: info}
YAML
"$bin" serve -c "$work/ballast.yaml" --listen 127.0.0.1:0 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
	addr=$(sed -n 's/.*msg="listening" addr=\([^ ]*\).*/\1/p' "$work/log")
	[ -n "$addr" ] && break
	sleep 0.05
done
[ -n "$addr" ] || { cat "$work/log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  ballast $("$bin" version | cut -d' ' -f2)  wrk -t1 -c$conns -d${secs}s"
printf '%-16s %10s %9s %9s %9s %9s %7s\n' endpoint req/s p50_us p99_us p99.9_us max_us errors
for path in /healthz /v1/state /metrics; do
	wrk -t1 -c"$conns" -d"${secs}s" -s "$top/bench/wrk-report.lua" "http://$addr$path" >"$work/wrk.out" 2>&1 || true
	line=$(grep '^RESULT' "$work/wrk.out" || { cat "$work/wrk.out" >&2; exit 1; })
	eval "$(echo "$line" | sed 's/^RESULT //')"
	printf '%-16s %10s %9s %9s %9s %9s %7s\n' "$path" "$rps" "$p50_us" "$p99_us" "$p999_us" "$max_us" "$errors"
done
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "daemon peak RSS: ${rss} KiB"
