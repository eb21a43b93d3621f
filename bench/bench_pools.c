/* bench_pools: single-thread ns per operation of the backend-pool cores, the
 * circuit breaker (include/ballast/breaker.h) and the load balancer
 * (include/ballast/balancer.h), in process, with a virtual clock moved by
 * hand. Issue 4 asks for "pick + record ns/op for each strategy with 8, 64
 * and 1024 backends"; the breaker's allow + record is measured alongside.
 *
 *   bench_pools [--quick] [--ms N]
 *     --quick  5 ms per timed run instead of 50: a smoke run, noisier
 *     --ms N   target length of one timed run, 1..10000 ms
 *
 * Breaker: one op = bl_breaker_allow, then bl_breaker_record of its outcome
 * when admitted (or only the call named in the row). Count windows of 50
 * (the default) and 100000 outcomes; time windows of 60 s and 1 h with the
 * clock moving 1 ms per call (a bucket expires every 1000 calls) or 2 s per
 * call (two buckets expire on every call). The baseline is what a user would
 * write by hand: a consecutive-failure counter and an open-until time, with
 * no window, no half-open probes and no permits.
 *
 * Balancer: one op = bl_balancer_pick + bl_balancer_on_start of the chosen
 * backend + bl_balancer_on_finish (with a latency and a failure flag) of the
 * oldest call in flight. 2 x N calls stay in flight (a FIFO), so in-flight
 * counts and latency EWMAs differ between backends and least_inflight, p2c,
 * peak_ewma and the load bound of consistent_hash have something to compare.
 * Weights 1, 2, 3 in turn; no slow start; the clock moves 100 us per op;
 * latencies 20..2000 ms log-uniform, one backend in 8 twice as slow, 2 % of
 * calls failed; consistent_hash keys drawn from 4096 sessions. Every pick
 * goes through an eligibility callback that reads a per-backend bool, as a
 * daemon would ask its breakers: 0 % refused, or round(N / 10) backends
 * refused (1 of 8, 6 of 64, 102 of 1024; chosen with a fixed seed). A pick of
 * a refused backend, or a pick that finds none, aborts the run.
 *
 * Baselines, written here, clearly not ballast and not any proxy's code:
 * what a user would otherwise write in process for the same job, with the
 * same FIFO of calls and the same eligibility array. Their record is an
 * in-flight counter only (no latency EWMA, no error rate), and all of them
 * but the EDF heap ignore weights:
 *   naive round robin   i++ % N, skipping refused backends
 *   naive random        rand() % N, redrawn up to 8 times, then a scan
 *   EDF heap            weighted: earliest deadline first in a binary heap
 *                       (Envoy's approach to weighted round robin); a
 *                       refused backend is charged its turn and skipped
 *   naive least loaded  a linear scan of an int in-flight array
 *   naive p2c           two rand() draws, the one with fewer in flight
 *   ketama ring         160 points per backend, binary search, clockwise
 *                       past refused backends, no load bound
 *
 * Method, as bench_alloc: per cell, a calibration run sets the ops per timed
 * run to about --ms of CPU time, then one untimed warm-up run and 5 timed
 * runs; CLOCK_MONOTONIC around whole runs; the median is reported with the
 * min and the max. The machine is shared, so the median of the thread's own
 * CPU time (CLOCK_THREAD_CPUTIME_ID) per op is reported too: it leaves out
 * the time the thread waited for the core, not the caches others evicted.
 * Random inputs come from arrays precomputed with fixed seeds, so no RNG of
 * ours is timed (the baselines' rand() is, on purpose: it is what they would
 * call). Output: markdown tables.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast/balancer.h"
#include "ballast/breaker.h"
#include "ballast/error.h"

#define SEQ_LEN (1u << 16) /* precomputed random inputs */
#define SEQ_MASK (SEQ_LEN - 1)
#define SESSIONS 4096     /* distinct consistent_hash keys */
#define RING_POINTS 160   /* ketama's points per backend */

static int64_t target_ns = 50 * 1000000LL; /* one timed run (harness.h) */
static volatile uint64_t sink; /* keeps results alive */

#include "harness.h"

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_pools: %s: %s\n", what, bl_strerror(rc));
	exit(1);
}

/* ---- precomputed inputs ----------------------------------------------------- */

static int64_t seq_latency_ns[SEQ_LEN]; /* 20..2000 ms, log-uniform */
static bool seq_failed2[SEQ_LEN];       /* 2 % true: balancer call outcomes */
static bool seq_failed60[SEQ_LEN];      /* 60 % true: a breaker that keeps tripping */
static uint64_t seq_key[SEQ_LEN];       /* consistent_hash keys, from SESSIONS sessions */

static void make_sequences(void)
{
	uint64_t s = 42;
	uint64_t session_key[SESSIONS];
	char name[32];

	for (int i = 0; i < SESSIONS; i++) {
		int n = snprintf(name, sizeof name, "session-%d", i);

		session_key[i] = bl_balancer_hash(name, (size_t)n);
	}
	for (uint32_t i = 0; i < SEQ_LEN; i++) {
		/* 20 ms x 100^u: log-uniform over 20..2000 ms */
		double u = (double)(splitmix(&s) >> 11) * 0x1p-53;
		double ms = 20.0 * exp(u * log(100.0));

		seq_latency_ns[i] = (int64_t)(ms * (double)NS_PER_MS);
		seq_failed2[i] = splitmix(&s) % 100 < 2;
		seq_failed60[i] = splitmix(&s) % 100 < 60;
		seq_key[i] = session_key[splitmix(&s) % SESSIONS];
	}
}

/* ==== circuit breaker ======================================================== */

enum breaker_op {
	BR_ALLOW_RECORD,  /* allow, then record the outcome when admitted */
	BR_ALLOW_ONLY,    /* allow (refused: the breaker is open) */
	BR_WOULD_ALLOW,   /* bl_breaker_would_allow: the balancer's eligibility question */
	BR_NAIVE,         /* the hand-written baseline, allow + record */
};

enum breaker_outcomes {
	OUT_ALL_OK,       /* every call succeeds */
	OUT_EVERY_5TH,    /* every 5th call fails: 20 %, never 5 in a row, never trips */
	OUT_RANDOM_60,    /* 60 % of calls fail at random: it trips, opens, probes */
};

struct breaker_bench {
	struct bl_breaker *b;  /* the breaker under test */
	enum breaker_op op;    /* what one op does */
	enum breaker_outcomes outcomes; /* how calls end */
	int64_t step_ns;       /* clock advance per op */
	bl_time_ns now;
	uint32_t k;            /* position in the sequences */
	uint64_t ops, admitted; /* over every run, calibration included */
	/* the baseline */
	uint32_t naive_consecutive;   /* failures in a row */
	bl_time_ns naive_open_until;  /* refuses until then, ns */
};

static bool outcome_failed(const struct breaker_bench *x, uint32_t k)
{
	switch (x->outcomes) {
	case OUT_EVERY_5TH:
		return k % 5 == 4;
	case OUT_RANDOM_60:
		return seq_failed60[k & SEQ_MASK];
	default:
		return false;
	}
}

static void breaker_run(void *ctx, uint64_t ops)
{
	struct breaker_bench *x = ctx;
	struct bl_breaker *b = x->b;
	struct bl_breaker_permit p;
	uint64_t admitted = 0;
	uint32_t k = x->k;
	bl_time_ns now = x->now;

	switch (x->op) {
	case BR_ALLOW_RECORD:
		for (uint64_t i = 0; i < ops; i++, k++) {
			now += x->step_ns;
			if (bl_breaker_allow(b, now, &p)) {
				bool failed = outcome_failed(x, k);

				admitted++;
				bl_breaker_record(b, &p, failed ? BL_BREAKER_ERROR : BL_BREAKER_OK,
						  100 * NS_PER_MS, now);
			}
		}
		break;
	case BR_ALLOW_ONLY:
		for (uint64_t i = 0; i < ops; i++)
			admitted += bl_breaker_allow(b, now, &p);
		break;
	case BR_WOULD_ALLOW:
		for (uint64_t i = 0; i < ops; i++, now += x->step_ns)
			admitted += bl_breaker_would_allow(b, now);
		break;
	case BR_NAIVE:
		for (uint64_t i = 0; i < ops; i++, k++) {
			now += x->step_ns;
			if (now >= x->naive_open_until) {
				admitted++;
				if (outcome_failed(x, k)) {
					if (++x->naive_consecutive >= 5) {
						x->naive_open_until = now + 30 * NS_PER_S;
						x->naive_consecutive = 0;
					}
				} else {
					x->naive_consecutive = 0;
				}
			}
		}
		break;
	}
	x->k = k;
	x->now = now;
	x->ops += ops;
	x->admitted += admitted;
}

struct breaker_case {
	const char *what;       /* the row's label */
	const char *window;     /* the window column */
	bool time_window;       /* a time window, else a count window */
	uint32_t window_count;  /* count window: outcomes */
	int64_t window_ns;      /* time window: span, ns */
	int64_t step_ns;        /* clock advance per op, ns */
	enum breaker_op op;     /* what one op does */
	enum breaker_outcomes outcomes; /* how calls end */
	bool trip_first;        /* trip it before timing (the refused case) */
	bool short_open;        /* open_for 100 ms, max 1 s: the tripping case */
};

static void breaker_case_run(const struct breaker_case *c)
{
	struct bl_breaker_config cfg;
	struct breaker_bench x;
	char err[256];
	int rc;

	bl_breaker_config_default(&cfg);
	cfg.window_is_time = c->time_window;
	if (c->time_window)
		cfg.window_ns = c->window_ns;
	else
		cfg.window_count = c->window_count;
	if (c->short_open) {
		cfg.open_for_ns = 100 * NS_PER_MS;
		cfg.max_open_for_ns = NS_PER_S;
	}
	if ((rc = bl_breaker_config_check(&cfg, err, sizeof err)) != 0) {
		fprintf(stderr, "bench_pools: breaker config: %s\n", err);
		exit(1);
	}
	memset(&x, 0, sizeof x);
	if ((rc = bl_breaker_create(&cfg, NULL, &x.b)) != 0)
		die("bl_breaker_create", rc);
	x.op = c->op;
	x.outcomes = c->outcomes;
	x.step_ns = c->step_ns;
	x.now = 1000 * NS_PER_S;
	if (c->trip_first) {
		struct bl_breaker_permit p;

		for (int i = 0; i < 5; i++) {
			bl_breaker_allow(x.b, x.now, &p);
			bl_breaker_record(x.b, &p, BL_BREAKER_ERROR, NS_PER_MS, x.now);
		}
		if (bl_breaker_state(x.b, x.now) != BL_BREAKER_OPEN) {
			fprintf(stderr, "bench_pools: the breaker did not trip\n");
			exit(1);
		}
	}
	struct figure f = measure(breaker_run, &x, 200000);
	struct bl_breaker_stats st;

	bl_breaker_stats(x.b, x.now, &st);
	if (c->op == BR_ALLOW_ONLY && x.admitted) {
		fprintf(stderr, "bench_pools: an open breaker admitted a call\n");
		exit(1);
	}
	printf("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %llu |\n", c->what, c->window,
	       f.median_ns, f.min_ns, f.max_ns, f.cpu_median_ns, 100.0 * (double)x.admitted / (double)x.ops,
	       c->op == BR_NAIVE ? 0ULL : (unsigned long long)st.trips);
	fflush(stdout);
	bl_breaker_destroy(x.b);
}

static void bench_breaker(void)
{
	static const struct breaker_case cases[] = {
		{"allow + record, all ok", "count 50", false, 50, 0, NS_PER_MS, BR_ALLOW_RECORD,
		 OUT_ALL_OK, false, false},
		{"allow + record, every 5th fails (20 %, never trips)", "count 50", false, 50, 0,
		 NS_PER_MS, BR_ALLOW_RECORD, OUT_EVERY_5TH, false, false},
		{"allow + record, all ok", "count 100000", false, 100000, 0, NS_PER_MS,
		 BR_ALLOW_RECORD, OUT_ALL_OK, false, false},
		{"allow + record, all ok, 1 ms per call", "time 60 s", true, 0, 60 * NS_PER_S,
		 NS_PER_MS, BR_ALLOW_RECORD, OUT_ALL_OK, false, false},
		{"allow + record, every 5th fails, 1 ms per call", "time 60 s", true, 0,
		 60 * NS_PER_S, NS_PER_MS, BR_ALLOW_RECORD, OUT_EVERY_5TH, false, false},
		{"allow + record, all ok, 2 s per call", "time 60 s", true, 0, 60 * NS_PER_S,
		 2 * NS_PER_S, BR_ALLOW_RECORD, OUT_ALL_OK, false, false},
		{"allow + record, all ok, 1 ms per call", "time 1 h", true, 0, 3600 * NS_PER_S,
		 NS_PER_MS, BR_ALLOW_RECORD, OUT_ALL_OK, false, false},
		{"allow + record, all ok, 2 s per call", "time 1 h", true, 0, 3600 * NS_PER_S,
		 2 * NS_PER_S, BR_ALLOW_RECORD, OUT_ALL_OK, false, false},
		{"allow + record, 60 % fail at random, open_for 100 ms..1 s, 1 ms per call",
		 "count 50", false, 50, 0, NS_PER_MS, BR_ALLOW_RECORD, OUT_RANDOM_60, false, true},
		{"allow, refused (open)", "count 50", false, 50, 0, 0, BR_ALLOW_ONLY, OUT_ALL_OK,
		 true, false},
		{"would_allow, closed (a balancer's eligibility question)", "count 50", false, 50, 0,
		 NS_PER_MS, BR_WOULD_ALLOW, OUT_ALL_OK, false, false},
		{"baseline: hand-written consecutive-failure counter, all ok", "none", false, 50, 0,
		 NS_PER_MS, BR_NAIVE, OUT_ALL_OK, false, false},
		{"baseline: hand-written consecutive-failure counter, every 5th fails", "none",
		 false, 50, 0, NS_PER_MS, BR_NAIVE, OUT_EVERY_5TH, false, false},
	};

	printf("\n### Circuit breaker: ns per op (median of %d runs of ~%lld ms)\n\n", RUNS,
	       (long long)(target_ns / NS_PER_MS));
	printf("| op | window | median ns | min | max | CPU ns | admitted %% | trips |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		breaker_case_run(&cases[i]);
}

/* ==== load balancer ============================================================ */

enum impl {
	IMPL_BALLAST,
	IMPL_NAIVE_RR,
	IMPL_NAIVE_RANDOM,
	IMPL_EDF,
	IMPL_NAIVE_LEAST,
	IMPL_NAIVE_P2C,
	IMPL_KETAMA,
	IMPL_RECORD_ONLY, /* on_start + on_finish alone, no pick */
};

struct ring_point {
	uint64_t hash; /* the point's place on the ring */
	uint32_t idx;  /* the backend it belongs to */
};

struct edf_entry {
	double deadline; /* virtual time of the backend's next turn */
	uint32_t idx;    /* the backend */
};

struct pool_bench {
	enum impl impl;
	struct bl_balancer *b;  /* IMPL_BALLAST, IMPL_RECORD_ONLY */
	size_t n;               /* backends */
	bool *refused;          /* per backend: its breaker would refuse */
	uint32_t *fifo;         /* calls in flight, oldest at head */
	size_t depth;           /* calls in flight: 2 N */
	size_t head;            /* the oldest call's place in fifo */
	uint32_t k;             /* position in the sequences */
	bl_time_ns now;
	uint64_t bad;           /* picks of a refused backend, or none found */
	/* baselines */
	uint32_t *inflight;     /* calls in flight per backend */
	size_t rr;              /* naive round robin's counter */
	struct ring_point *ring; /* ketama: the points, sorted by hash */
	size_t ring_len;        /* points: N x RING_POINTS */
	struct edf_entry *heap; /* EDF: a min-heap of the N backends */
	size_t heap_len;        /* entries in heap */
	double *edf_step;       /* EDF: 1 / weight per backend */
};

static bool eligible_cb(void *ctx, size_t idx)
{
	const bool *refused = ctx;

	return !refused[idx];
}

static uint32_t weight_of(size_t i)
{
	return 1 + (uint32_t)(i % 3);
}

static int ring_cmp(const void *a, const void *b)
{
	const struct ring_point *x = a, *y = b;

	return (x->hash > y->hash) - (x->hash < y->hash);
}

/* --- EDF heap (min-heap on deadline, ties by index) --- */
static bool edf_less(const struct edf_entry *a, const struct edf_entry *b)
{
	return a->deadline < b->deadline || (a->deadline == b->deadline && a->idx < b->idx);
}

static void edf_push(struct pool_bench *x, struct edf_entry e)
{
	size_t i = x->heap_len++;

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!edf_less(&e, &x->heap[p]))
			break;
		x->heap[i] = x->heap[p];
		i = p;
	}
	x->heap[i] = e;
}

/* Gives the top entry a new deadline and sinks it to its place. */
static void edf_sift_top(struct pool_bench *x, double deadline)
{
	struct edf_entry e = {deadline, x->heap[0].idx};
	size_t i = 0, n = x->heap_len;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && edf_less(&x->heap[c + 1], &x->heap[c]))
			c++;
		if (!edf_less(&x->heap[c], &e))
			break;
		x->heap[i] = x->heap[c];
		i = c;
	}
	x->heap[i] = e;
}

/* Earliest deadline first: the top's deadline moves on by 1 / weight and it
 * sinks to its place. A refused backend is charged the same way and the next
 * is tried, so that it does not save up turns while it is refused (as nginx
 * and ballast's weighted do). */
static uint32_t pick_edf(struct pool_bench *x)
{
	for (size_t t = 0; t < x->n; t++) {
		uint32_t idx = x->heap[0].idx;

		edf_sift_top(x, x->heap[0].deadline + x->edf_step[idx]);
		if (!x->refused[idx])
			return idx;
	}
	return UINT32_MAX;
}

/* The pick of one implementation; UINT32_MAX when none is eligible. */
static inline uint32_t pick_one(struct pool_bench *x, uint32_t k)
{
	size_t n = x->n, idx = 0;

	switch (x->impl) {
	case IMPL_BALLAST: {
		int rc = bl_balancer_pick(x->b, seq_key[k & SEQ_MASK], x->now, eligible_cb, x->refused,
					  &idx);

		return rc == 0 ? (uint32_t)idx : UINT32_MAX;
	}
	case IMPL_NAIVE_RR:
		for (size_t t = 0; t < n; t++) {
			idx = x->rr++ % n;
			if (!x->refused[idx])
				return (uint32_t)idx;
		}
		return UINT32_MAX;
	case IMPL_NAIVE_RANDOM:
		for (int t = 0; t < 8; t++) {
			idx = (size_t)rand() % n;
			if (!x->refused[idx])
				return (uint32_t)idx;
		}
		for (idx = 0; idx < n; idx++)
			if (!x->refused[idx])
				return (uint32_t)idx;
		return UINT32_MAX;
	case IMPL_EDF:
		return pick_edf(x);
	case IMPL_NAIVE_LEAST: {
		uint32_t best = UINT32_MAX;

		for (size_t i = 0; i < n; i++)
			if (!x->refused[i] && (best == UINT32_MAX || x->inflight[i] < x->inflight[best]))
				best = (uint32_t)i;
		return best;
	}
	case IMPL_NAIVE_P2C: {
		uint32_t c[2];
		int got = 0;

		for (int t = 0; t < 8 && got < 2; t++) {
			idx = (size_t)rand() % n;
			if (!x->refused[idx])
				c[got++] = (uint32_t)idx;
		}
		if (got == 0)
			return UINT32_MAX;
		if (got == 1)
			return c[0];
		return x->inflight[c[1]] < x->inflight[c[0]] ? c[1] : c[0];
	}
	case IMPL_KETAMA: {
		uint64_t h = seq_key[k & SEQ_MASK];
		size_t lo = 0, hi = x->ring_len;

		while (lo < hi) { /* the first point >= h */
			size_t mid = lo + (hi - lo) / 2;

			if (x->ring[mid].hash < h)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t t = 0; t < x->ring_len; t++) {
			const struct ring_point *p = &x->ring[(lo + t) % x->ring_len];

			if (!x->refused[p->idx])
				return p->idx;
		}
		return UINT32_MAX;
	}
	case IMPL_RECORD_ONLY:
		/* no pick: a backend that was refused never gets a call either */
		idx = (size_t)(seq_key[k & SEQ_MASK] % n);
		while (x->refused[idx])
			idx = idx + 1 == n ? 0 : idx + 1;
		return (uint32_t)idx;
	}
	return UINT32_MAX;
}

/* One op: pick, start it, finish the oldest call in flight. */
static inline void pool_op(struct pool_bench *x, uint32_t k)
{
	uint32_t idx = pick_one(x, k), old;

	if (idx == UINT32_MAX || x->refused[idx]) {
		x->bad++;
		return;
	}
	old = x->fifo[x->head];
	x->fifo[x->head] = idx;
	x->head = x->head + 1 == x->depth ? 0 : x->head + 1;
	if (x->b) {
		int64_t lat = seq_latency_ns[k & SEQ_MASK];

		if (old % 8 == 0)
			lat *= 2;
		bl_balancer_on_start(x->b, idx);
		bl_balancer_on_finish(x->b, old, lat, seq_failed2[k & SEQ_MASK], x->now);
	} else {
		x->inflight[idx]++;
		x->inflight[old]--;
	}
}

static void pool_run(void *ctx, uint64_t ops)
{
	struct pool_bench *x = ctx;
	uint32_t k = x->k;

	for (uint64_t i = 0; i < ops; i++, k++) {
		x->now += 100 * 1000; /* 100 us */
		pool_op(x, k);
	}
	x->k = k;
	if (x->bad) {
		fprintf(stderr, "bench_pools: %llu picks returned a refused backend or none\n",
			(unsigned long long)x->bad);
		exit(1);
	}
}

static void pool_setup(struct pool_bench *x, enum impl impl, enum bl_balance_strategy st, size_t n,
		       bool ten_percent_out)
{
	uint64_t s = 7;
	char name[32];
	int rc;

	memset(x, 0, sizeof *x);
	x->impl = impl;
	x->n = n;
	x->now = 1000 * NS_PER_S;
	x->depth = 2 * n;
	x->refused = calloc(n, sizeof *x->refused);
	x->fifo = calloc(x->depth, sizeof *x->fifo);
	x->inflight = calloc(n, sizeof *x->inflight);
	if (!x->refused || !x->fifo || !x->inflight)
		die("setup", BL_ENOMEM);
	if (ten_percent_out) {
		size_t out = (n + 5) / 10, done = 0;

		while (done < out) {
			size_t i = (size_t)(splitmix(&s) % n);

			if (!x->refused[i]) {
				x->refused[i] = true;
				done++;
			}
		}
	}
	if (impl == IMPL_BALLAST || impl == IMPL_RECORD_ONLY) {
		struct bl_balancer_config cfg;

		bl_balancer_config_default(&cfg);
		cfg.strategy = st;
		cfg.seed = 1;
		cfg.max_backends = n;
		if ((rc = bl_balancer_create(&cfg, &x->b)) != 0)
			die("bl_balancer_create", rc);
		for (size_t i = 0; i < n; i++) {
			size_t idx;

			snprintf(name, sizeof name, "backend-%04zu", i);
			if ((rc = bl_balancer_add(x->b, name, weight_of(i), BL_BALANCER_JOINED_LONG_AGO,
						  &idx)) != 0)
				die("bl_balancer_add", rc);
			if (idx != i) {
				fprintf(stderr, "bench_pools: backend %zu got slot %zu\n", i, idx);
				exit(1);
			}
		}
	}
	if (impl == IMPL_KETAMA) {
		x->ring_len = n * RING_POINTS;
		x->ring = malloc(x->ring_len * sizeof *x->ring);
		if (!x->ring)
			die("setup", BL_ENOMEM);
		for (size_t i = 0; i < n; i++) {
			for (size_t p = 0; p < RING_POINTS; p++) {
				int len = snprintf(name, sizeof name, "backend-%04zu-%zu", i, p);

				x->ring[i * RING_POINTS + p] =
					(struct ring_point){bl_balancer_hash(name, (size_t)len), (uint32_t)i};
			}
		}
		qsort(x->ring, x->ring_len, sizeof *x->ring, ring_cmp);
	}
	if (impl == IMPL_EDF) {
		x->heap = malloc(n * sizeof *x->heap);
		x->edf_step = malloc(n * sizeof *x->edf_step);
		if (!x->heap || !x->edf_step)
			die("setup", BL_ENOMEM);
		for (size_t i = 0; i < n; i++) {
			x->edf_step[i] = 1.0 / (double)weight_of(i);
			edf_push(x, (struct edf_entry){x->edf_step[i], (uint32_t)i});
		}
	}
	srand(1);
	/* Fill the FIFO: 2 N calls in flight before anything is timed. */
	for (size_t i = 0; i < x->depth; i++) {
		uint32_t idx = pick_one(x, (uint32_t)i);

		if (idx == UINT32_MAX)
			die("fill", BL_EAGAIN);
		x->fifo[i] = idx;
		if (x->b)
			bl_balancer_on_start(x->b, idx);
		else
			x->inflight[idx]++;
	}
	x->k = (uint32_t)x->depth;
}

static void pool_teardown(struct pool_bench *x)
{
	bl_balancer_destroy(x->b);
	free(x->refused);
	free(x->fifo);
	free(x->inflight);
	free(x->ring);
	free(x->heap);
	free(x->edf_step);
}

static const size_t pool_sizes[] = {8, 64, 1024};
#define NSIZES (sizeof pool_sizes / sizeof pool_sizes[0])

struct pool_row {
	const char *label;                 /* the table's first column */
	enum impl impl;                    /* ballast or a baseline */
	enum bl_balance_strategy strategy; /* IMPL_BALLAST */
	struct figure f[NSIZES][2]; /* by size, then 0 % / 10 % refused */
};

static void pool_row_run(struct pool_row *r)
{
	for (size_t s = 0; s < NSIZES; s++) {
		for (int out = 0; out < 2; out++) {
			struct pool_bench x;

			pool_setup(&x, r->impl, r->strategy, pool_sizes[s], out);
			r->f[s][out] = measure(pool_run, &x, pool_sizes[s] >= 1024 ? 2000 : 20000);
			pool_teardown(&x);
		}
	}
}

static void print_cell(double v)
{
	if (v >= 1000)
		printf(" %.2f µs |", v / 1000);
	else
		printf(" %.1f |", v);
}

static void print_header(void)
{
	printf("| strategy |");
	for (size_t s = 0; s < NSIZES; s++)
		printf(" N=%zu | N=%zu, 10 %% out |", pool_sizes[s], pool_sizes[s]);
	printf("\n|---|");
	for (size_t s = 0; s < NSIZES; s++)
		printf("---:|---:|");
	printf("\n");
}

static void print_matrix(const struct pool_row *rows, size_t nrows, const char *title, bool cpu)
{
	printf("\n### %s (median of %d runs of ~%lld ms)\n\n", title, RUNS,
	       (long long)(target_ns / NS_PER_MS));
	printf("Columns: N backends; \"10 %% out\": round(N/10) of them refused by the "
	       "eligibility callback.\n\n");
	print_header();
	for (size_t i = 0; i < nrows; i++) {
		printf("| %s |", rows[i].label);
		for (size_t s = 0; s < NSIZES; s++)
			for (int out = 0; out < 2; out++)
				print_cell(cpu ? rows[i].f[s][out].cpu_median_ns
					       : rows[i].f[s][out].median_ns);
		printf("\n");
	}
}

static void bench_balancer(void)
{
	static struct pool_row rows[] = {
		{.label = "round_robin", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_ROUND_ROBIN},
		{.label = "weighted", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_WEIGHTED},
		{.label = "random", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_RANDOM},
		{.label = "least_inflight", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_LEAST_INFLIGHT},
		{.label = "p2c", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_P2C},
		{.label = "peak_ewma", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_PEAK_EWMA},
		{.label = "consistent_hash", .impl = IMPL_BALLAST, .strategy = BL_BALANCE_CONSISTENT_HASH},
		{.label = "record alone (on_start + on_finish, no pick)", .impl = IMPL_RECORD_ONLY, .strategy = BL_BALANCE_ROUND_ROBIN},
		{.label = "baseline: naive round robin (i++ % N)", .impl = IMPL_NAIVE_RR, .strategy = 0},
		{.label = "baseline: naive random (rand() % N)", .impl = IMPL_NAIVE_RANDOM, .strategy = 0},
		{.label = "baseline: EDF binary heap, weighted", .impl = IMPL_EDF, .strategy = 0},
		{.label = "baseline: naive least loaded (linear scan)", .impl = IMPL_NAIVE_LEAST, .strategy = 0},
		{.label = "baseline: naive p2c (two rand() draws)", .impl = IMPL_NAIVE_P2C, .strategy = 0},
		{.label = "baseline: ketama ring, 160 points/backend", .impl = IMPL_KETAMA, .strategy = 0},
	};
	size_t nrows = sizeof rows / sizeof rows[0];

	for (size_t i = 0; i < nrows; i++) {
		fprintf(stderr, "bench_pools: %s\n", rows[i].label);
		pool_row_run(&rows[i]);
	}

	print_matrix(rows, nrows, "Load balancer: pick + record, wall-clock ns per op", false);
	print_matrix(rows, nrows, "Load balancer: pick + record, thread CPU ns per op", true);

	printf("\n#### Spread: min..max wall-clock ns per op of the %d timed runs\n\n", RUNS);
	print_header();
	for (size_t i = 0; i < nrows; i++) {
		printf("| %s |", rows[i].label);
		for (size_t s = 0; s < NSIZES; s++)
			for (int out = 0; out < 2; out++)
				printf(" %.0f..%.0f |", rows[i].f[s][out].min_ns, rows[i].f[s][out].max_ns);
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	if (parse_args("bench_pools", argc, argv) != 0)
		return 2;
	printf("# bench_pools: circuit breaker and load balancer, in process, one thread\n");
	make_sequences();
	bench_breaker();
	bench_balancer();
	return sink == 42 ? 1 : 0;
}
