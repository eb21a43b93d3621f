#!/usr/bin/env bash
# Allocator comparison (issue 6): runs bench_alloc (glibc malloc, plus ballast's
# slab, arena and heap strategies) and bench_alloc_{jemalloc,mimalloc,tcmalloc}
# (that malloc only, --sys-only) where built, and prints one table of ns per
# alloc/free pair, one footprint table and the verdicts on issue 6's targets.
# Usage: bench/bench_alloc.sh [BUILD_DIR] [MS] [ROUNDS]; MS (default 100) is
# the length of one timed run; ROUNDS (default 3) is how many times the four
# binaries run, one after the other in turn, so a change in background load
# falls on all of them; each cell reports the median over the rounds. One
# round takes about 0.5 + 0.4 x MS/100 minutes. Pin it to one CPU on a busy
# machine (taskset -c 1 bench/bench_alloc.sh ...; the binaries inherit it).
# The libraries come from `scripts/deps.sh bench`; a missing one is skipped.
set -euo pipefail
build=${1:-build}
ms=${2:-${BENCH_ALLOC_MS:-100}}
rounds=${3:-${BENCH_ALLOC_ROUNDS:-3}}
top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/$build/bench"
[ -x "$dir/bench_alloc" ] || { echo "bench_alloc: $dir/bench_alloc not built (make build)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for ((r = 1; r <= rounds; r++)); do
	"$dir/bench_alloc" --ms "$ms" | sed "s/^\(speed\|foot\)\t/\1\t$r\t/" >>"$out"
	for impl in jemalloc mimalloc tcmalloc; do
		if [ -x "$dir/bench_alloc_$impl" ]; then
			"$dir/bench_alloc_$impl" --sys-only --ms "$ms" |
				sed "s/^\(speed\|foot\)\t/\1\t$r\t/" >>"$out"
		else
			echo "# bench_alloc_$impl not built (library missing: scripts/deps.sh bench)" >>"$out"
		fi
	done
done

grep '^#' "$out" | sort -u
awk -F'\t' -v rounds="$rounds" '
function fmt(x) { return x == "" ? "–" : sprintf("%.1f", x) }
# median of the k values v[key, 1..k]
function med(v, key, k,    i, j, t, a) {
	for (i = 1; i <= k; i++) a[i] = v[key, i]
	for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
$1 == "speed" {
	a = $3; wl = $4
	if (!(a in seen)) { seen[a] = 1; order[++n] = a }
	k = ++cnt[a, wl]; v[a SUBSEP wl, k] = $5; byround[a, wl, $2] = $5
}
$1 == "foot" { a = $3
	if (!(a in fseen)) { fseen[a] = 1; ford[++fn] = a }
	k = ++fcnt[a]; live[a] = $4; used[a] = $5; fail[a] = $7; fext[a, k] = $6 }
END {
	split("lifo64 rand64 lifo256 rand256 randsz", w, " ")
	for (i = 1; i <= n; i++) for (j = 1; j <= 5; j++) {
		a = order[i]; key = a SUBSEP w[j]
		if (cnt[a, w[j]]) ns[a, w[j]] = med(v, key, cnt[a, w[j]])
		if (a ~ /^malloc/ && cnt[a, w[j]] && (!(w[j] in best) || ns[a, w[j]] < best[w[j]])) {
			best[w[j]] = ns[a, w[j]]; bestname[w[j]] = a
		}
	}
	for (i = 1; i <= fn; i++) ext[ford[i]] = med(fext, ford[i], fcnt[ford[i]])
	print ""
	printf "ns per alloc+free pair: in each of %d rounds the median of 5 timed runs; the table gives the median over the rounds\n", rounds
	print ""
	print "| allocator | 64 B LIFO | 64 B random | 256 B LIFO | 256 B random | 16–4095 B random |"
	print "|---|---:|---:|---:|---:|---:|"
	for (i = 1; i <= n; i++) {
		a = order[i]; line = "| " a
		for (j = 1; j <= 5; j++) line = line " | " fmt(ns[a, w[j]])
		print line " |"
	}
	print ""
	print "Footprint on the replayed trace (peak live = most requested bytes live at once)"
	print ""
	print "| allocator | peak live | peak used (heap: blocks+headers) | used/live | peak extent (heap) / peak RSS growth (malloc) | extent/live | failed allocs in a 1.10 x live region |"
	print "|---|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= fn; i++) {
		a = ford[i]
		u = used[a] == "-" ? "–" : sprintf("%.2f MiB", used[a] / 1048576)
		ur = used[a] == "-" ? "–" : sprintf("%.3f", used[a] / live[a])
		fl = a ~ /^malloc/ ? "n/a" : fail[a]
		printf "| %s | %.2f MiB | %s | %s | %.2f MiB | %.3f | %s |\n", a, live[a] / 1048576, u, ur,
			ext[a] / 1048576, ext[a] / live[a], fl
	}
	print ""
	print "Verdicts (issue 6 targets), on the medians over the rounds; in brackets the same ratio in each round"
	ok = 1
	for (j = 1; j <= 4; j++) {
		r = best[w[j]] / ns["slab", w[j]]
		if (r < 2) ok = 0
		per = ""
		for (k = 1; k <= rounds; k++)
			if (byround["slab", w[j], k] && byround[bestname[w[j]], w[j], k])
				per = per sprintf(" %.2f", byround[bestname[w[j]], w[j], k] / byround["slab", w[j], k])
		printf "- slab %s: %.1f ns vs fastest general %s %.1f ns: %.2fx faster (target >= 2x): %s [%s ]\n",
			w[j], ns["slab", w[j]], bestname[w[j]], best[w[j]], r, (r >= 2 ? "HOLDS" : "MISSED"), per
	}
	printf "- slab >= 2x on all fixed sizes: %s\n", ok ? "HOLDS" : "MISSED"
	t = ns["heap tlsf", "randsz"]; r = t / best["randsz"]
	per = ""
	for (k = 1; k <= rounds; k++)
		if (byround["heap tlsf", "randsz", k] && byround[bestname["randsz"], "randsz", k])
			per = per sprintf(" %.2f", byround["heap tlsf", "randsz", k] / byround[bestname["randsz"], "randsz", k])
	printf "- tlsf randsz: %.1f ns vs fastest general %s %.1f ns: %.2fx (target <= 1.5x): %s [%s ]\n",
		t, bestname["randsz"], best["randsz"], r, (r <= 1.5 ? "HOLDS" : "MISSED"), per
	a = "heap tlsf"
	printf "- tlsf footprint: peak used %.3f x live, peak extent %.3f x live, %d failures in a 1.10 x live region (target <= 1.1 x live): %s\n",
		used[a] / live[a], ext[a] / live[a], fail[a],
		(ext[a] / live[a] <= 1.1 && fail[a] == 0) ? "HOLDS" : (used[a] / live[a] <= 1.1 ? "HOLDS on used bytes, MISSED on extent/fit" : "MISSED")
}' "$out"
echo
echo "raw rows (speed: round, allocator, workload, median, min, max ns, pairs per run):"
grep -v '^#' "$out"
