/* bench_budget: nanoseconds per rate-budget decision, in process.
 *
 * Runs ~10 M decisions per scenario on one budget shaped like a provider
 * quota (requests, input and output tokens, concurrency), advancing a virtual
 * clock by hand, and prints ns/op. For comparison, the same workload runs in
 * the same process against what a user would write by hand: a token bucket
 * per dimension in floating point, refilled on every call (no reconciliation,
 * no retry time beyond a division, no adaptation).
 *
 *   bench_budget [decisions]        default 10000000
 *
 * Timing uses CLOCK_MONOTONIC around whole loops; the library itself never
 * reads a clock.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast/budget.h"
#include "ballast/error.h"

#define NS_PER_S 1000000000LL

static volatile uint64_t sink; /* keeps results alive */

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

static void anthropic(struct bl_budget_limits *l)
{
	bl_budget_limits_default(l);
	l->rate[BL_DIM_REQUESTS] = (struct bl_budget_rate){4000, 60 * NS_PER_S};
	l->rate[BL_DIM_INPUT_TOKENS] = (struct bl_budget_rate){400000, 60 * NS_PER_S};
	l->rate[BL_DIM_OUTPUT_TOKENS] = (struct bl_budget_rate){80000, 60 * NS_PER_S};
	l->concurrent = 64;
}

static void report(const char *what, long n, int64_t ns, long admitted)
{
	printf("%-46s %8.1f ns/op  (%ld ops, %.1f %% admitted)\n", what, (double)ns / (double)n, n,
	       100.0 * (double)admitted / (double)n);
}

/* The hand-written alternative: one float token bucket per dimension. */
struct fbucket {
	double tokens;   /* available now */
	double cap;      /* burst */
	double rate_ns;  /* refill per ns */
	int64_t last_ns; /* last refill */
};

struct fbudget {
	struct fbucket b[3];
};

static void fbudget_init(struct fbudget *f)
{
	static const double limit[3] = {4000, 400000, 80000};

	for (int i = 0; i < 3; i++) {
		f->b[i].cap = 0.05 * limit[i];
		f->b[i].tokens = f->b[i].cap;
		f->b[i].rate_ns = 0.9 * limit[i] / (60.0 * NS_PER_S);
		f->b[i].last_ns = 0;
	}
}

/* All or nothing over three buckets; returns 0 or the ns to wait. */
static int64_t fbudget_take(struct fbudget *f, const double *n, int64_t now)
{
	int64_t wait = 0;

	for (int i = 0; i < 3; i++) {
		struct fbucket *b = &f->b[i];

		b->tokens += (double)(now - b->last_ns) * b->rate_ns;
		if (b->tokens > b->cap)
			b->tokens = b->cap;
		b->last_ns = now;
		if (b->tokens < n[i]) {
			int64_t w = (int64_t)((n[i] - b->tokens) / b->rate_ns) + 1;

			if (w > wait)
				wait = w;
		}
	}
	if (wait)
		return wait;
	for (int i = 0; i < 3; i++)
		f->b[i].tokens -= n[i];
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000000L;
	struct bl_budget_limits l;
	struct bl_budget b;
	struct bl_budget_decision dec;
	struct bl_amounts a, u;
	uint64_t seed = 88172645463325252ULL;
	int64_t t0, now;
	long admitted;

	if (n <= 0) {
		fprintf(stderr, "usage: bench_budget [decisions > 0]\n");
		return 2;
	}
	anthropic(&l);
	printf("bench_budget: %ld decisions per scenario, budget 4000 RPM / 400k ITPM / 80k OTPM / 64 "
	       "concurrent\n",
	       n);

	/* 1. Admitted: acquire + release with a refund, time moving fast enough
	 *    that everything conforms. */
	memset(&a, 0, sizeof a);
	a.n[BL_DIM_REQUESTS] = 1;
	a.n[BL_DIM_INPUT_TOKENS] = 1200;
	a.n[BL_DIM_OUTPUT_TOKENS] = 400;
	u = a;
	u.n[BL_DIM_OUTPUT_TOKENS] = 250;
	bl_budget_init(&b, &l);
	now = 0;
	admitted = 0;
	t0 = wall_ns();
	for (long i = 0; i < n; i++) {
		now += 400 * 1000 * 1000; /* 2.5/s: 3000 ITPM-s, 625 OTPM-s, under every rate */
		if (bl_budget_acquire(&b, &a, now, &dec) == 0) {
			admitted++;
			bl_budget_release(&b, &a, &u, dec.ticket, now, NULL);
		}
	}
	report("admitted: acquire + release (refund), pair", n, wall_ns() - t0, admitted);

	/* 2. Refused: the budget is drained and time stands still. */
	bl_budget_init(&b, &l);
	a.n[BL_DIM_INPUT_TOKENS] = 20000;
	bl_budget_acquire(&b, &a, 0, &dec);
	a.n[BL_DIM_INPUT_TOKENS] = 1200;
	admitted = 0;
	t0 = wall_ns();
	for (long i = 0; i < n; i++)
		if (bl_budget_acquire(&b, &a, 1000, &dec) == 0)
			admitted++;
		else
			sink += (uint64_t)dec.retry_at_ns;
	report("refused: acquire, retry_at computed", n, wall_ns() - t0, admitted);

	/* 3. Saturated: random sizes, the clock a little behind demand, so about
	 *    half the decisions admit; leases released at once. */
	bl_budget_init(&b, &l);
	now = 0;
	admitted = 0;
	t0 = wall_ns();
	for (long i = 0; i < n; i++) {
		uint64_t r = xorshift(&seed);

		a.n[BL_DIM_INPUT_TOKENS] = 1 + r % 3000;
		a.n[BL_DIM_OUTPUT_TOKENS] = 1 + (r >> 20) % 600;
		now += 125 * 1000 * 1000; /* 8/s for 4/s of capacity */
		if (bl_budget_acquire(&b, &a, now, &dec) == 0) {
			admitted++;
			bl_budget_release(&b, &a, NULL, dec.ticket, now, NULL);
		}
	}
	report("saturated: acquire (+ release if admitted)", n, wall_ns() - t0, admitted);

	/* 4. The same saturated stream against float token buckets. */
	{
		struct fbudget f;
		double want[3];

		fbudget_init(&f);
		seed = 88172645463325252ULL;
		now = 0;
		admitted = 0;
		t0 = wall_ns();
		for (long i = 0; i < n; i++) {
			uint64_t r = xorshift(&seed);
			int64_t w;

			want[0] = 1;
			want[1] = (double)(1 + r % 3000);
			want[2] = (double)(1 + (r >> 20) % 600);
			now += 125 * 1000 * 1000;
			w = fbudget_take(&f, want, now);
			if (w == 0)
				admitted++;
			else
				sink += (uint64_t)w;
		}
		report("baseline: float token buckets, same stream", n, wall_ns() - t0, admitted);
	}

	/* 5. Stats, as /metrics would read them. */
	{
		struct bl_budget_stats st;
		long m = n / 10 > 0 ? n / 10 : 1;

		t0 = wall_ns();
		for (long i = 0; i < m; i++) {
			bl_budget_stats(&b, now + i, &st);
			sink += st.dim[BL_DIM_INPUT_TOKENS].available;
		}
		report("stats", m, wall_ns() - t0, m);
	}
	return sink == 42 ? 1 : 0;
}
