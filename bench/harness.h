/* The in-process benchmarks' harness (bench_pools, bench_planner): clocks, a
 * PRNG, and calibrate + warm up + time RUNS runs of an operation.
 *
 * The including file defines, before including this header,
 *   static int64_t target_ns;   the length of one timed run, in ns
 * (so that each benchmark keeps its own default and its --quick). */
#ifndef BALLAST_BENCH_HARNESS_H
#define BALLAST_BENCH_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define RUNS 5

/* Reads the wall clock (CLOCK_MONOTONIC) and this thread's CPU time. */
static void clocks(int64_t *wall_ns, int64_t *cpu_ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	*wall_ns = (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	*cpu_ns = (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Runs `ops` operations. */
typedef void (*run_fn)(void *ctx, uint64_t ops);

struct figure {
	double median_ns, min_ns, max_ns; /* per op, wall clock */
	double cpu_median_ns;             /* per op, this thread's CPU time */
	uint64_t ops;                     /* per timed run */
};

/* Reads the options every harness benchmark takes: --quick (5 ms runs) and
 * --ms N (1..10000). Returns 0, or 2 after printing the usage of `name`. */
static int parse_args(const char *name, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			target_ns = 5 * NS_PER_MS;
		} else if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc) {
			long ms = strtol(argv[++i], NULL, 10);

			if (ms < 1 || ms > 10000) {
				fprintf(stderr, "%s: --ms takes 1..10000\n", name);
				return 2;
			}
			target_ns = ms * NS_PER_MS;
		} else {
			fprintf(stderr, "usage: %s [--quick] [--ms N]\n", name);
			return 2;
		}
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Calibrates, warms up and times RUNS runs of `run`. The calibration goes
 * by CPU time, so that a busy machine does not shorten the runs. */
static struct figure measure(run_fn run, void *ctx, uint64_t calibration_ops)
{
	struct figure f;
	uint64_t wall[RUNS], cpu[RUNS];
	int64_t w0, c0, w1, c1;

	clocks(&w0, &c0);
	run(ctx, calibration_ops);
	clocks(&w1, &c1);
	if (c1 <= c0)
		c1 = c0 + 1;
	f.ops = (uint64_t)((double)target_ns * (double)calibration_ops / (double)(c1 - c0));
	if (f.ops < 1)
		f.ops = 1;
	run(ctx, f.ops); /* warm-up */
	for (int r = 0; r < RUNS; r++) {
		clocks(&w0, &c0);
		run(ctx, f.ops);
		clocks(&w1, &c1);
		wall[r] = (uint64_t)(w1 - w0);
		cpu[r] = (uint64_t)(c1 - c0);
	}
	qsort(wall, RUNS, sizeof wall[0], cmp_u64);
	qsort(cpu, RUNS, sizeof cpu[0], cmp_u64);
	f.median_ns = (double)wall[RUNS / 2] / (double)f.ops;
	f.min_ns = (double)wall[0] / (double)f.ops;
	f.max_ns = (double)wall[RUNS - 1] / (double)f.ops;
	f.cpu_median_ns = (double)cpu[RUNS / 2] / (double)f.ops;
	return f;
}

#endif
