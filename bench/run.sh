#!/usr/bin/env bash
# End-to-end benchmark, every part in one run on one machine, loopback only:
#   1. bench_budget (in-process ns per decision), if built;
#   2. wrk against GET /healthz, /v1/state, /metrics of the release build of
#      ballast (50 keep-alive connections, one wrk thread so the two cores are
#      split between client and server);
#   3. bench/loadgen (closed loop, 50 keep-alive connections) against ballast:
#      GET /healthz, then the decision flow POST /v1/acquire + /v1/release;
#   4. Redis 7 (redis-server started here, no persistence) running the GCRA
#      script bench/gcra.lua through EVALSHA under redis-benchmark, 50 clients;
#   5. the comparison against issue 3's targets.
# Usage: bench/run.sh [BUILD_DIR] [SECONDS]; BENCH_SECONDS (default 10) sets
# each timed run's length, BENCH_CONNECTIONS (default 50) the connections.
# Every process it starts is stopped on exit (trap). A run takes about
# 6 x BENCH_SECONDS + 25 s (85 s at 10 s); each client run is killed by
# timeout(1) after 3 x BENCH_SECONDS + 60 s at the most, so it always ends.
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-${2:-10}}
conns=${BENCH_CONNECTIONS:-50}
warmup=2
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/$build/ballast"
loadgen="$top/$build/bench/loadgen"
micro="$top/$build/bench/bench_budget"
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] && [ "$secs" -le 600 ] ||
	{ echo "bench: BENCH_SECONDS must be 1..600, not '$secs'" >&2; exit 2; }
[[ $conns =~ ^[0-9]+$ ]] && [ "$conns" -ge 1 ] && [ "$conns" -le 1000 ] ||
	{ echo "bench: BENCH_CONNECTIONS must be 1..1000, not '$conns'" >&2; exit 2; }
[ -x "$bin" ] || { echo "bench: $bin not built (make build)" >&2; exit 1; }
[ -x "$loadgen" ] || { echo "bench: $loadgen not built (make build)" >&2; exit 1; }
for tool in wrk redis-server redis-cli redis-benchmark timeout; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/deps.sh build bench)" >&2; exit 1; }
done
bound=$((secs * 3 + 60)) # the most any single client run may take

work=$(mktemp -d)
pid='' rpid='' lgpid=''
cleanup() {
	[ -n "$lgpid" ] && kill "$lgpid" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One field of a `RESULT key=value ...` line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# CPU time (user + system, clock ticks) a process has used, and per request.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_us_per() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$hz" 'BEGIN { printf "%.1f", n ? (b - a) * 1e6 / hz / n : 0 }'; }

# The share of CPU time the machine spent busy over one second before we start:
# other work on the box skews every figure below, so say how much there was.
busy_pct() {
	local a b
	read -ra a < <(head -n 1 /proc/stat)
	sleep 1
	read -ra b < <(head -n 1 /proc/stat)
	awk -v u="$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))" \
	    -v i="$(( (b[4]+b[5]) - (a[4]+a[5]) ))" 'BEGIN { printf "%.0f", 100 * u / (u + i) }'
}

cat >"$work/ballast.yaml" <<YAML
state_dir: $work/state
log: {level: info}
budgets:
  bench:
    limits:
      requests: {limit: 1000000000, per: 1m}
      tokens: {limit: 1000000000000, per: 1m}
pools:
  bench:                # the calls never go out: the pick and its bookkeeping are measured
    strategy: peak_ewma
    backends:
      - {name: a, url: "http://127.0.0.1:9"}
      - {name: b, url: "http://127.0.0.1:9"}
      - {name: c, url: "http://127.0.0.1:9"}
YAML
"$bin" serve -c "$work/ballast.yaml" --listen 127.0.0.1:0 2>"$work/log" &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/.*msg="listening" addr=\([^ ]*\).*/\1/p' "$work/log")
	[ -n "$addr" ] && break
	sleep 0.05
done
[ -n "$addr" ] || { cat "$work/log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  ballast $("$bin" version | cut -d' ' -f2)  $(redis-server --version | cut -d' ' -f1-3)"
echo "command: bench/run.sh $build  (BENCH_SECONDS=$secs, $conns connections)"
echo "background: CPU $(busy_pct) % busy over 1 s before the run, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. in process ----
echo
if [ -x "$micro" ]; then
	echo "== in-process decisions (bench_budget) =="
	timeout "$bound" "$micro"
else
	echo "== bench_budget not built: skipped =="
fi

# ---- 2. wrk ----
echo
echo "== wrk -t1 -c$conns -d${secs}s =="
printf '%-16s %10s %9s %9s %9s %9s %7s\n' endpoint req/s p50_us p99_us p99.9_us max_us errors
for path in /healthz /v1/state /metrics; do
	timeout "$bound" wrk -t1 -c"$conns" -d"${secs}s" -s "$top/bench/wrk-report.lua" "http://$addr$path" >"$work/wrk.out" 2>&1 || true
	line=$(grep '^RESULT' "$work/wrk.out" || { cat "$work/wrk.out" >&2; exit 1; })
	printf '%-16s %10s %9s %9s %9s %9s %7s\n' "$path" "$(field rps "$line")" "$(field p50_us "$line")" \
		"$(field p99_us "$line")" "$(field p999_us "$line")" "$(field max_us "$line")" "$(field errors "$line")"
done

# ---- 3. loadgen against ballast ----
echo
echo "== loadgen: closed loop, $conns keep-alive connections, ${warmup}s warm-up + ${secs}s =="
printf '%-34s %10s %9s %9s %9s %9s %7s %7s %12s\n' run req/s p50_us p99_us p99.9_us max_us errors non2xx srv_cpu_us/req
# The daemon's own CPU time per request over the timed window (after the
# warm-up): less sensitive than req/s to what else the two cores are doing.
run_loadgen() { # mode [loadgen options] -> sets lgres to the RESULT line plus " srv_cpu_us=...", or fails
	local c0 c1 mode=$1
	shift
	timeout "$bound" "$loadgen" --url "http://$addr" --connections "$conns" --duration "${secs}s" \
		--warmup "${warmup}s" --mode "$mode" --budget bench --tokens 100 "$@" 2>"$work/loadgen.err" >"$work/loadgen.out" &
	lgpid=$!
	sleep "$warmup"
	c0=$(cpu_ticks "$pid")
	wait "$lgpid" || true
	lgpid=
	c1=$(cpu_ticks "$pid")
	lgres=$(grep '^RESULT' "$work/loadgen.out") || { cat "$work/loadgen.out" "$work/loadgen.err" >&2; return 1; }
	lgres="$lgres srv_cpu_us=$(cpu_us_per "$c0" "$c1" "$(field requests "$lgres")")"
}
show() { # label RESULT-line
	printf '%-34s %10s %9s %9s %9s %9s %7s %7s %12s\n' "$1" "$(field rps "$2")" "$(field p50_us "$2")" \
		"$(field p99_us "$2")" "$(field p999_us "$2")" "$(field max_us "$2")" "$(field errors "$2")" \
		"$(field non2xx "$2")" "$(field srv_cpu_us "$2")"
}
run_loadgen healthz
lg_health=$lgres
show "GET /healthz" "$lg_health"
run_loadgen acquire-release
lg_ar=$lgres
show "POST acquire + release (requests)" "$lg_ar"
echo "  acquire+release pairs/s: $(field pairs_per_s "$lg_ar")"
run_loadgen acquire-release --pool bench
lg_pool=$lgres
show "POST acquire(budget+pool) + release" "$lg_pool"
echo "  with a pool (peak_ewma over 3 backends, breakers, latency EWMA): pairs/s $(field pairs_per_s "$lg_pool")"
[ -s "$work/loadgen.err" ] && sed 's/^/  /' "$work/loadgen.err"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "daemon peak RSS: ${rss} KiB"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=

# ---- 4. Redis 7 + GCRA Lua ----
echo
rport=
for _ in $(seq 20); do
	port=$((20000 + RANDOM % 40000))
	redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --save '' --appendonly no \
		--daemonize no --dir "$work" --logfile "$work/redis.log" &
	rpid=$!
	for _ in $(seq 50); do
		if redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null | grep -q PONG; then rport=$port; break; fi
		kill -0 "$rpid" 2>/dev/null || break
		sleep 0.05
	done
	[ -n "$rport" ] && break
	kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null || true; rpid=
done
[ -n "$rport" ] || { echo "bench: could not start redis-server" >&2; cat "$work/redis.log" >&2; exit 1; }
rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }
sha=$(rcli SCRIPT LOAD "$(cat "$top/bench/gcra.lua")")
[[ $sha =~ ^[0-9a-f]{40}$ ]] || { echo "bench: SCRIPT LOAD failed: $sha" >&2; exit 1; }
# The same quota as the ballast budget: 1e9 requests per minute is one per
# 0.06 us; a tolerance of one whole minute means it never refuses in the run.
gcra=(EVALSHA "$sha" 1 bench 0.06 60000000 1)
errs0=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_error_replies://p')
# Calibrate (and warm up): redis-benchmark takes a request count, not a duration.
timeout "$bound" redis-benchmark -h 127.0.0.1 -p "$rport" -c "$conns" -n 20000 -q "${gcra[@]}" >"$work/rb0.out" 2>&1 || true
rate=$(tr '\r' '\n' <"$work/rb0.out" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -n 1)
[ -n "$rate" ] || { cat "$work/rb0.out" >&2; exit 1; }
n=$(awk -v r="$rate" -v s="$secs" 'BEGIN { n = int(r * s); print (n < 10000 ? 10000 : n) }')
errs1=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_error_replies://p')
c0=$(cpu_ticks "$rpid")
timeout "$bound" redis-benchmark -h 127.0.0.1 -p "$rport" -c "$conns" -n "$n" --precision 3 "${gcra[@]}" >"$work/rb.out" 2>&1 || true
c1=$(cpu_ticks "$rpid")
r_cpu=$(cpu_us_per "$c0" "$c1" "$n")
tr '\r' '\n' <"$work/rb.out" >"$work/rb.txt"
errs2=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_error_replies://p')
check=$(rcli "${gcra[@]}" | head -n 1)
r_rps=$(sed -n 's/.*throughput summary: \([0-9.]*\) requests per second.*/\1/p' "$work/rb.txt")
r_secs=$(sed -n 's/.* requests completed in \([0-9.]*\) seconds.*/\1/p' "$work/rb.txt")
# avg min p50 p95 p99 max, in ms, on the line after the header.
read -r _ _ r_p50 _ r_p99 r_max < <(awk '/avg +min +p50/ { getline; print; exit }' "$work/rb.txt")
# redis-benchmark prints no exact p99.9: take the first percentile line at or above it.
read -r r_p999 r_p999_at < <(awk '/^Latency by percentile/ { s = 1; next }
	s && /^[0-9.]+% <=/ { p = $1; sub("%", "", p); if (p + 0 >= 99.9) { print $3, p; exit } }' "$work/rb.txt")
[ -n "$r_rps" ] && [ -n "${r_p99:-}" ] || { cat "$work/rb.txt" >&2; exit 1; }
us() { awk -v m="$1" 'BEGIN { printf "%.0f", m * 1000 }'; }
echo "== Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') + bench/gcra.lua: redis-benchmark -c $conns -n $n EVALSHA (1 key), ${r_secs}s =="
printf '%-34s %10s %9s %9s %9s %9s %7s %7s %12s\n' run ops/s p50_us p99_us p99.9_us max_us errors non2xx srv_cpu_us/op
printf '%-34s %10.0f %9s %9s %9s %9s %7s %7s %12s\n' "EVALSHA gcra (one decision)" "$r_rps" "$(us "$r_p50")" \
	"$(us "$r_p99")" "<=$(us "${r_p999:-0}")" "$(us "$r_max")" "$((errs2 - errs1))" - "$r_cpu"
echo "  p99.9: redis-benchmark prints no exact p99.9; shown is its ${r_p999_at:-?} % line, an upper bound"
echo "  error replies: calibration $((errs1 - errs0)), timed run $((errs2 - errs1)); a check call after the run answered allowed=$check"
rcli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait "$rpid" 2>/dev/null || true; rpid=

# ---- 5. comparison ----
echo
echo "== comparison (issue 3 targets) =="
h_rps=$(field rps "$lg_health"); h_p50=$(field p50_us "$lg_health")
a_rps=$(field rps "$lg_ar"); a_pairs=$(field pairs_per_s "$lg_ar")
a_p50=$(field p50_us "$lg_ar"); a_p99=$(field p99_us "$lg_ar")
verdict() { if [ "$1" = 1 ]; then echo holds; else echo "does NOT hold"; fi; }
awk -v a="$a_rps" -v pr="$a_pairs" -v r="$r_rps" -v ap="$a_p99" -v rp="$(us "$r_p99")" \
    -v h="$h_rps" -v hp="$h_p50" -v a50="$a_p50" -v hc="$(field srv_cpu_us "$lg_health")" \
    -v ac="$(field srv_cpu_us "$lg_ar")" -v rc="$r_cpu" 'BEGIN {
	printf "decisions/s: ballast %.0f acquire+release req/s (%.0f pairs/s) vs Redis+Lua %.0f EVALSHA/s: %.2fx by requests, %.2fx by pairs\n", a, pr, r, a / r, pr / r
	printf "p99: ballast acquire+release %d us vs Redis+Lua %d us\n", ap, rp
	printf "decision path over GET /healthz: %.0f vs %.0f req/s = %+.1f %% time per request; p50 %d vs %d us = %+.1f %%\n", a, h, 100 * (h / a - 1), a50, hp, 100 * (a50 / hp - 1)
	printf "server CPU: ballast %.1f us per acquire or release request vs %.1f per GET /healthz (%+.1f %%); Redis %.1f us per EVALSHA\n", ac, hc, hc ? 100 * (ac / hc - 1) : 0, rc
}'
echo "target 1, more decisions/s than Redis+Lua: by req/s $(verdict "$(awk -v a="$a_rps" -v r="$r_rps" 'BEGIN { print (a > r) }')"), by acquire+release pairs/s $(verdict "$(awk -v a="$a_pairs" -v r="$r_rps" 'BEGIN { print (a > r) }')")"
echo "target 2, ballast p99 < 2 ms: $(verdict "$(awk -v p="$a_p99" 'BEGIN { print (p < 2000) }')")"
echo "target 3, decision path < 15 % over GET /healthz (req/s): $(verdict "$(awk -v a="$a_rps" -v h="$h_rps" 'BEGIN { print (h / a - 1 < 0.15) }')")"
