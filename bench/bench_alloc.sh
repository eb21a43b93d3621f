#!/usr/bin/env bash
# Allocator comparison (issue 6): runs bench_alloc (glibc malloc, plus ballast's
# slab, arena and heap strategies) and bench_alloc_{jemalloc,mimalloc,tcmalloc}
# (that malloc only, --sys-only) where built, and prints one table of ns per
# alloc/free pair, one footprint table and the verdicts on issue 6's targets.
# Usage: bench/bench_alloc.sh [BUILD_DIR] [MS]; MS (default 100) is the length
# of one timed run; a run takes about 1 + 0.75 x MS/100 minutes.
# The libraries come from `scripts/deps.sh bench`; a missing one is skipped.
set -euo pipefail
build=${1:-build}
ms=${2:-${BENCH_ALLOC_MS:-100}}
top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/$build/bench"
[ -x "$dir/bench_alloc" ] || { echo "bench_alloc: $dir/bench_alloc not built (make build)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$dir/bench_alloc" --ms "$ms" >>"$out"
for impl in jemalloc mimalloc tcmalloc; do
	if [ -x "$dir/bench_alloc_$impl" ]; then
		"$dir/bench_alloc_$impl" --sys-only --ms "$ms" >>"$out"
	else
		echo "# bench_alloc_$impl not built (library missing: scripts/deps.sh bench)" >>"$out"
	fi
done

grep '^#' "$out" | sort -u
awk -F'\t' '
function fmt(x) { return x == "" ? "–" : sprintf("%.1f", x) }
$1 == "speed" {
	if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
	ns[$2, $3] = $4; lo[$2, $3] = $5; hi[$2, $3] = $6
	if ($2 ~ /^malloc/ && (!(($3) in best) || $4 < best[$3])) { best[$3] = $4; bestname[$3] = $2 }
}
$1 == "foot" { if (!($2 in fseen)) { fseen[$2] = 1; ford[++fn] = $2 }
	live[$2] = $3; used[$2] = $4; ext[$2] = $5; fail[$2] = $6 }
END {
	split("lifo64 rand64 lifo256 rand256 randsz", w, " ")
	print ""
	print "ns per alloc+free pair (median of 5 runs; min and max in the raw rows below)"
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
	print "Verdicts (issue 6 targets)"
	ok = 1
	for (j = 1; j <= 4; j++) {
		r = best[w[j]] / ns["slab", w[j]]
		if (r < 2) ok = 0
		printf "- slab %s: %.1f ns vs fastest general %s %.1f ns: %.2fx faster (target >= 2x): %s\n",
			w[j], ns["slab", w[j]], bestname[w[j]], best[w[j]], r, (r >= 2 ? "HOLDS" : "MISSED")
	}
	printf "- slab >= 2x on all fixed sizes: %s\n", ok ? "HOLDS" : "MISSED"
	t = ns["heap tlsf", "randsz"]; r = t / best["randsz"]
	printf "- tlsf randsz: %.1f ns vs fastest general %s %.1f ns: %.2fx (target <= 1.5x): %s\n",
		t, bestname["randsz"], best["randsz"], r, (r <= 1.5 ? "HOLDS" : "MISSED")
	a = "heap tlsf"
	printf "- tlsf footprint: peak used %.3f x live, peak extent %.3f x live, %d failures in a 1.10 x live region (target <= 1.1 x live): %s\n",
		used[a] / live[a], ext[a] / live[a], fail[a],
		(ext[a] / live[a] <= 1.1 && fail[a] == 0) ? "HOLDS" : (used[a] / live[a] <= 1.1 ? "HOLDS on used bytes, MISSED on extent/fit" : "MISSED")
}' "$out"
echo
echo "raw rows:"
grep -v '^#' "$out"
