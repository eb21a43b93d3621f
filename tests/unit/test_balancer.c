/* Unit tests for the load balancer (balancer.h).
 *
 * Exact sequences where a strategy is deterministic (round robin, nginx's
 * smooth weighted round robin, slow start's shares), chi-square bounds over
 * 100k picks with a fixed seed where it is random (random, p2c), hand-moved
 * time for peak EWMA and slow start, the consistent-hashing properties (same
 * key same backend, minimal disruption, the load bound), allocation failures
 * SQLite-style, and a property test: seeded random sequences of every
 * operation against a plain model, checking that a pick never returns a
 * backend that is not live or not eligible.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_hook_test.h"
#include "ballast/balancer.h"
#include "ballast/error.h"

#define S(x) ((bl_time_ns)(x) * BL_NS_PER_S)
#define MS(x) ((bl_time_ns)(x) * BL_NS_PER_MS)
#define LONG_AGO BL_BALANCER_JOINED_LONG_AGO

/* ---- helpers -------------------------------------------------------------- */

static struct bl_balancer_config cfg_for(enum bl_balance_strategy s)
{
	struct bl_balancer_config c;

	bl_balancer_config_default(&c);
	c.strategy = s;
	c.seed = 42;
	c.hook = &test_hook;
	return c;
}

static struct bl_balancer *make_cfg(const struct bl_balancer_config *c)
{
	struct bl_balancer *b = NULL;

	assert_int_equal(bl_balancer_create(c, &b), 0);
	assert_non_null(b);
	return b;
}

static struct bl_balancer *make(enum bl_balance_strategy s)
{
	struct bl_balancer_config c = cfg_for(s);

	return make_cfg(&c);
}

static size_t add_at(struct bl_balancer *b, const char *name, uint32_t weight, bl_time_ns joined)
{
	size_t idx = SIZE_MAX;

	assert_int_equal(bl_balancer_add(b, name, weight, joined, &idx), 0);
	return idx;
}

static size_t add(struct bl_balancer *b, const char *name, uint32_t weight)
{
	return add_at(b, name, weight, LONG_AGO);
}

/* Adds n backends named b0, b1, ... of weight 1; they take slots 0..n-1. */
static void add_n(struct bl_balancer *b, size_t n)
{
	char name[32];

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "b%zu", i);
		assert_int_equal(add(b, name, 1), i);
	}
}

/* An eligibility mask that counts how often it is asked. */
struct mask {
	const bool *ok;      /* NULL: all eligible */
	size_t n;            /* entries in ok */
	unsigned long calls; /* times asked */
};

static bool mask_fn(void *ctx, size_t idx)
{
	struct mask *m = ctx;

	m->calls++;
	return !m->ok || (idx < m->n && m->ok[idx]);
}

static size_t pick_m(struct bl_balancer *b, uint64_t key, bl_time_ns now, struct mask *m)
{
	size_t idx = SIZE_MAX;

	assert_int_equal(bl_balancer_pick(b, key, now, m ? mask_fn : NULL, m, &idx), 0);
	return idx;
}

static size_t pick(struct bl_balancer *b, bl_time_ns now)
{
	return pick_m(b, 0, now, NULL);
}

static struct bl_balancer_backend_stats bstats(const struct bl_balancer *b, size_t idx,
					       bl_time_ns now)
{
	struct bl_balancer_backend_stats st;

	assert_int_equal(bl_balancer_backend_stats(b, idx, now, &st), 0);
	return st;
}

/* One whole call: start, then finish after latency at now. */
static void call(struct bl_balancer *b, size_t idx, int64_t latency, bool failed, bl_time_ns now)
{
	assert_int_equal(bl_balancer_on_start(b, idx), 0);
	assert_int_equal(bl_balancer_on_finish(b, idx, latency, failed, now), 0);
}

/* Pearson's chi-square of observed counts against expected shares. */
static double chi_square(const uint64_t *obs, const double *share, size_t n, uint64_t total)
{
	double x2 = 0;

	for (size_t i = 0; i < n; i++) {
		double e = share[i] * (double)total;

		x2 += ((double)obs[i] - e) * ((double)obs[i] - e) / e;
	}
	return x2;
}

/* ---- names and configuration ------------------------------------------------- */

static void test_strategy_names(void **state)
{
	enum bl_balance_strategy s;

	(void)state;
	for (int i = 0; i < BL_BALANCE_STRATEGY_COUNT; i++) {
		const char *name = bl_balance_strategy_name((enum bl_balance_strategy)i);

		assert_int_equal(bl_balance_strategy_parse(name, strlen(name), &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(bl_balance_strategy_name(BL_BALANCE_PEAK_EWMA), "peak_ewma");
	assert_string_equal(bl_balance_strategy_name(BL_BALANCE_CONSISTENT_HASH), "consistent_hash");
	assert_string_equal(bl_balance_strategy_name((enum bl_balance_strategy)99), "unknown");
	s = BL_BALANCE_P2C;
	assert_int_equal(bl_balance_strategy_parse("Random", 6, &s), BL_EINVAL);
	assert_int_equal(bl_balance_strategy_parse("random_", 7, &s), BL_EINVAL);
	assert_int_equal(bl_balance_strategy_parse("rando", 5, &s), BL_EINVAL);
	assert_int_equal(bl_balance_strategy_parse(NULL, 0, &s), BL_EINVAL);
	assert_int_equal(s, BL_BALANCE_P2C);
	/* len counts: a longer buffer is parsed up to len. */
	assert_int_equal(bl_balance_strategy_parse("p2c and more", 3, &s), 0);
	assert_int_equal(s, BL_BALANCE_P2C);
}

static void test_config(void **state)
{
	struct bl_balancer_config c;
	char err[256];

	(void)state;
	bl_balancer_config_default(&c);
	assert_int_equal(c.strategy, BL_BALANCE_PEAK_EWMA);
	assert_int_equal(c.max_backends, 1024);
	assert_int_equal(c.choices, 2);
	assert_int_equal(c.slow_start_ns, 0);
	assert_true(c.slow_start_min_share == 0.1);
	assert_int_equal(c.ewma_decay_ns, S(10));
	assert_int_equal(c.ewma_initial_ns, 0);
	assert_true(c.error_alpha == 0.1);
	assert_true(c.hash_balance_factor == 1.25);
	assert_null(c.hook);
	assert_int_equal(bl_balancer_config_check(&c, err, sizeof err), 0);
	assert_string_equal(err, "");

	static const struct {
		int field;   /* which field to spoil */
		double value;
		const char *msg; /* prefix of the message */
	} rows[] = {
		{ 0, 7, "strategy: 7 is not a strategy (round_robin, weighted," },
		{ 0, -1, "strategy: -1 is not a strategy" },
		{ 1, 0, "max_backends: 0 is outside 1..65536 (how many backends" },
		{ 1, 65537, "max_backends: 65537 is outside 1..65536" },
		{ 2, 1, "choices: 1 is outside 2..8 (how many random backends p2c and peak_ewma" },
		{ 2, 9, "choices: 9 is outside 2..8" },
		{ 3, -1e9, "slow_start: -1000000000ns is negative (a duration such as 30s" },
		{ 4, 0, "slow_start_min_share: 0 is outside (0, 1]" },
		{ 4, 1.5, "slow_start_min_share: 1.5 is outside (0, 1]" },
		{ 4, NAN, "slow_start_min_share: nan is outside (0, 1]" },
		{ 5, 0, "ewma_decay: 0s must be above 0 (the latency EWMA's time constant" },
		{ 6, -5, "ewma_initial: -5ns is negative" },
		{ 7, 0, "error_alpha: 0 is outside (0, 1]" },
		{ 7, 1.01, "error_alpha: 1.01 is outside (0, 1]" },
		{ 8, 0.5, "hash_balance_factor: 0.5 must be 0 (unbounded) or in 1..1000000" },
		{ 8, -1, "hash_balance_factor: -1 must be 0" },
		{ 8, NAN, "hash_balance_factor: nan must be 0" },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_balancer *b = NULL;

		bl_balancer_config_default(&c);
		switch (rows[i].field) {
		case 0: c.strategy = (enum bl_balance_strategy)(int)rows[i].value; break;
		case 1: c.max_backends = (size_t)rows[i].value; break;
		case 2: c.choices = (unsigned)rows[i].value; break;
		case 3: c.slow_start_ns = (int64_t)rows[i].value; break;
		case 4: c.slow_start_min_share = rows[i].value; break;
		case 5: c.ewma_decay_ns = (int64_t)rows[i].value; break;
		case 6: c.ewma_initial_ns = (int64_t)rows[i].value; break;
		case 7: c.error_alpha = rows[i].value; break;
		case 8: c.hash_balance_factor = rows[i].value; break;
		}
		assert_int_equal(bl_balancer_config_check(&c, err, sizeof err), BL_EINVAL);
		if (strncmp(err, rows[i].msg, strlen(rows[i].msg)) != 0)
			fail_msg("row %zu: got \"%s\", want \"%s...\"", i, err, rows[i].msg);
		assert_int_equal(bl_balancer_create(&c, &b), BL_EINVAL);
		assert_null(b);
	}
	/* Boundaries that pass. */
	bl_balancer_config_default(&c);
	c.max_backends = BL_BALANCER_BACKENDS_MAX;
	c.choices = BL_BALANCER_CHOICES_MAX;
	c.slow_start_min_share = 1.0;
	c.error_alpha = 1.0;
	c.hash_balance_factor = 0;
	assert_int_equal(bl_balancer_config_check(&c, NULL, 0), 0);
	c.hash_balance_factor = 1.0;
	assert_int_equal(bl_balancer_config_check(&c, NULL, 0), 0);
}

static void test_create_destroy(void **state)
{
	struct bl_balancer_config c = cfg_for(BL_BALANCE_ROUND_ROBIN);
	struct bl_alloc_hook half = { t_malloc, NULL, &hs };
	struct bl_balancer *b = NULL;

	(void)state;
	bl_balancer_destroy(NULL);
	assert_int_equal(bl_balancer_create(NULL, &b), BL_EINVAL);
	assert_int_equal(bl_balancer_create(&c, NULL), BL_EINVAL);
	c.hook = &half;
	assert_int_equal(bl_balancer_create(&c, &b), BL_EINVAL);
	assert_null(b);
	/* The default hook, malloc. */
	c.hook = NULL;
	assert_int_equal(bl_balancer_create(&c, &b), 0);
	add_n(b, 20);
	bl_balancer_destroy(b);
	/* The test hook: everything given back. */
	b = make(BL_BALANCE_ROUND_ROBIN);
	add_n(b, 100);
	assert_true(hs.live > 0);
	bl_balancer_destroy(b);
}

/* ---- backends ---------------------------------------------------------------------- */

static void test_add_errors(void **state)
{
	struct bl_balancer_config c = cfg_for(BL_BALANCE_ROUND_ROBIN);
	char name[BL_BALANCER_NAME_MAX + 2];
	size_t idx = 77;
	struct bl_balancer *b;

	(void)state;
	c.max_backends = 3;
	b = make_cfg(&c);
	assert_int_equal(bl_balancer_add(b, NULL, 1, 0, &idx), BL_EINVAL);
	assert_int_equal(bl_balancer_add(b, "", 1, 0, &idx), BL_EINVAL);
	assert_int_equal(bl_balancer_add(b, "a", 0, 0, &idx), BL_EINVAL);
	assert_int_equal(bl_balancer_add(b, "a", BL_BALANCER_WEIGHT_MAX + 1, 0, &idx), BL_EINVAL);
	memset(name, 'x', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	assert_int_equal(bl_balancer_add(b, name, 1, 0, &idx), BL_ETOOBIG);
	assert_int_equal(idx, 77);
	assert_int_equal(bl_balancer_count(b), 0);
	name[BL_BALANCER_NAME_MAX] = '\0'; /* exactly the longest */
	assert_int_equal(bl_balancer_add(b, name, BL_BALANCER_WEIGHT_MAX, 0, &idx), 0);
	assert_int_equal(idx, 0);
	assert_string_equal(bstats(b, 0, 0).name, name);
	assert_int_equal(bl_balancer_add(b, name, 1, 0, &idx), BL_EEXIST);
	assert_int_equal(bl_balancer_add(b, "b", 1, 0, NULL), 0);
	assert_int_equal(bl_balancer_add(b, "c", 1, 0, &idx), 0);
	assert_int_equal(idx, 2);
	assert_int_equal(bl_balancer_add(b, "d", 1, 0, &idx), BL_EFULL);
	assert_int_equal(bl_balancer_count(b), 3);
	assert_int_equal(bl_balancer_slots(b), 3);

	/* Other operations on slots that hold nothing. */
	assert_int_equal(bl_balancer_remove(b, 3), BL_ENOENT);
	assert_int_equal(bl_balancer_remove(b, SIZE_MAX), BL_ENOENT);
	assert_int_equal(bl_balancer_set_weight(b, 9, 1), BL_ENOENT);
	assert_int_equal(bl_balancer_set_weight(b, 0, 0), BL_EINVAL);
	assert_int_equal(bl_balancer_rejoin(b, 5, 0), BL_ENOENT);
	assert_int_equal(bl_balancer_on_start(b, 5), BL_ENOENT);
	assert_int_equal(bl_balancer_on_finish(b, 5, 1, false, 0), BL_ENOENT);
	assert_int_equal(bl_balancer_on_cancel(b, 5), BL_ENOENT);
	assert_int_equal(bl_balancer_set_load(b, 5, 1, false), BL_ENOENT);
	assert_int_equal(bl_balancer_find(b, "zz", &idx), BL_ENOENT);
	assert_int_equal(bl_balancer_find(b, NULL, &idx), BL_ENOENT);
	assert_int_equal(bl_balancer_find(b, "c", &idx), 0);
	assert_int_equal(idx, 2);
	{
		struct bl_balancer_backend_stats st;

		memset(&st, 0x5A, sizeof st);
		assert_int_equal(bl_balancer_backend_stats(b, 3, 0, &st), BL_ENOENT);
		assert_int_equal((unsigned char)st.name[0], 0x5A);
	}
	bl_balancer_destroy(b);
}

/* Remove and add keep the other backends' state; a removed backend with
 * calls in flight drains, and its slot is only reused once it is empty. */
static void test_add_remove_keeps_state(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_PEAK_EWMA);
	struct bl_balancer_backend_stats before[3], after;
	struct bl_balancer_stats st;
	size_t a, bb, c, d, c2, idx;

	(void)state;
	a = add(b, "a", 2);
	bb = add(b, "b", 1);
	c = add(b, "c", 3);
	call(b, a, MS(10), false, S(1));
	call(b, bb, MS(20), true, S(1));
	call(b, c, MS(30), false, S(1));
	assert_int_equal(bl_balancer_on_start(b, a), 0);
	assert_int_equal(bl_balancer_set_load(b, c, 4.5, false), 0);
	for (size_t i = 0; i < 3; i++)
		before[i] = bstats(b, i, S(2));

	/* b leaves with nothing in flight: its slot is free at once. */
	assert_int_equal(bl_balancer_remove(b, bb), 0);
	assert_int_equal(bl_balancer_remove(b, bb), BL_ENOENT);
	assert_int_equal(bl_balancer_count(b), 2);
	assert_int_equal(bl_balancer_find(b, "b", &idx), BL_ENOENT);
	assert_int_equal(bl_balancer_backend_stats(b, bb, S(2), &after), BL_ENOENT);
	after = bstats(b, a, S(2));
	assert_memory_equal(&after, &before[a], sizeof after);
	after = bstats(b, c, S(2));
	assert_memory_equal(&after, &before[c], sizeof after);

	/* d takes b's slot, fresh. */
	d = add(b, "d", 1);
	assert_int_equal(d, bb);
	after = bstats(b, d, S(2));
	assert_string_equal(after.name, "d");
	assert_int_equal(after.completions, 0);
	assert_false(after.latency_sampled);
	assert_true(after.error_rate == 0);
	after = bstats(b, a, S(2));
	assert_memory_equal(&after, &before[a], sizeof after);

	/* a leaves with a call in flight: it drains. */
	assert_int_equal(bl_balancer_remove(b, a), 0);
	bl_balancer_stats(b, &st);
	assert_int_equal(st.backends, 2);
	assert_int_equal(st.draining, 1);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.total_weight, 4);
	after = bstats(b, a, S(2));
	assert_true(after.draining);
	assert_int_equal(after.inflight, 1);
	assert_int_equal(bl_balancer_find(b, "a", &idx), BL_ENOENT);
	assert_int_equal(bl_balancer_on_start(b, a), BL_ENOENT);
	assert_int_equal(bl_balancer_set_weight(b, a, 5), BL_ENOENT);
	assert_int_equal(bl_balancer_set_load(b, a, 1, false), BL_ENOENT);
	for (int i = 0; i < 100; i++) {
		size_t p = pick(b, S(2));

		assert_true(p == c || p == d);
	}
	/* "a" comes back as a new backend in another slot while the old drains. */
	c2 = add(b, "a", 1);
	assert_true(c2 != a);
	assert_int_equal(bl_balancer_find(b, "a", &idx), 0);
	assert_int_equal(idx, c2);
	assert_true(bstats(b, a, S(2)).draining);
	/* The drained call ends: the old slot is free. */
	assert_int_equal(bl_balancer_on_finish(b, a, MS(10), false, S(3)), 0);
	assert_int_equal(bl_balancer_backend_stats(b, a, S(3), &after), BL_ENOENT);
	assert_int_equal(bl_balancer_on_finish(b, a, MS(10), false, S(3)), BL_ENOENT);
	bl_balancer_stats(b, &st);
	assert_int_equal(st.draining, 0);
	assert_int_equal(st.backends, 3);
	/* The slot count shrinks back once the highest slots are free. */
	assert_int_equal(bl_balancer_slots(b), c2 + 1);
	assert_int_equal(bl_balancer_remove(b, c2), 0);
	assert_int_equal(bl_balancer_slots(b), 3);
	after = bstats(b, c, S(2));
	after.picks = before[c].picks; /* the picks above may have chosen it */
	assert_memory_equal(&after, &before[c], sizeof after);

	/* set_weight keeps the figures. */
	assert_int_equal(bl_balancer_set_weight(b, c, 7), 0);
	after = bstats(b, c, S(2));
	assert_int_equal(after.weight, 7);
	assert_int_equal(after.completions, before[c].completions);
	assert_true(after.latency_ewma_ns == before[c].latency_ewma_ns);
	bl_balancer_stats(b, &st);
	assert_int_equal(st.total_weight, 8);
	bl_balancer_destroy(b);
}

/* Many backends: slots grow, indices stay, and removing in any order leaves
 * the rest in place. */
static void test_many_backends(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_ROUND_ROBIN);
	char name[32];
	size_t idx;

	(void)state;
	add_n(b, 1024);
	assert_int_equal(bl_balancer_add(b, "one too many", 1, 0, &idx), BL_EFULL);
	for (size_t i = 0; i < 1024; i += 2)
		assert_int_equal(bl_balancer_remove(b, i), 0);
	assert_int_equal(bl_balancer_count(b), 512);
	for (size_t i = 1; i < 1024; i += 2) {
		snprintf(name, sizeof name, "b%zu", i);
		assert_int_equal(bl_balancer_find(b, name, &idx), 0);
		assert_int_equal(idx, i);
	}
	/* Round robin goes over the odd slots in order. */
	size_t first = pick(b, 0);

	for (size_t k = 1; k < 1024; k++) {
		size_t p = pick(b, 0);

		assert_int_equal(p, first + 2 * k > 1023 ? (first + 2 * k) % 1024 : first + 2 * k);
	}
	bl_balancer_destroy(b);
}

/* ---- round robin ---------------------------------------------------------------------- */

static void test_round_robin(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_ROUND_ROBIN);
	bool ok[4] = { true, true, false, true };
	struct mask m = { ok, 4, 0 };
	char seq[16] = { 0 };

	(void)state;
	add_n(b, 4);
	for (int i = 0; i < 8; i++)
		seq[i] = (char)('a' + pick(b, 0));
	assert_string_equal(seq, "abcdabcd");
	/* c refused: skipped, the order otherwise kept. */
	memset(seq, 0, sizeof seq);
	for (int i = 0; i < 9; i++)
		seq[i] = (char)('a' + pick_m(b, 0, 0, &m));
	assert_string_equal(seq, "abdabdabd");
	/* Eligible backends are found without scanning: one question per pick
	 * when nothing is refused, two when the next in turn is. */
	m.calls = 0;
	ok[2] = true;
	for (int i = 0; i < 8; i++)
		pick_m(b, 0, 0, &m);
	assert_int_equal(m.calls, 8);

	/* A backend added in the middle takes its place in the order; the
	 * turn stays on the backend it was on. */
	assert_int_equal(pick(b, 0), 0);
	assert_int_equal(bl_balancer_remove(b, 1), 0);
	assert_int_equal(pick(b, 0), 2);
	assert_int_equal(add(b, "again", 1), 1);
	memset(seq, 0, sizeof seq);
	for (int i = 0; i < 8; i++)
		seq[i] = (char)('a' + pick(b, 0));
	assert_string_equal(seq, "dabcdabc");
	bl_balancer_destroy(b);
}

/* ---- smooth weighted round robin ---------------------------------------------------------- */

static void test_weighted_sequences(void **state)
{
	static const struct {
		uint32_t w[4];
		size_t n;
		const char *seq; /* one full cycle, as nginx produces it */
	} rows[] = {
		{ { 5, 1, 1 }, 3, "aabacaa" }, /* nginx's own example */
		{ { 1, 1, 1 }, 3, "abc" },
		{ { 3, 1 }, 2, "aaba" },
		{ { 2, 1 }, 2, "aba" },
		{ { 1, 2 }, 2, "bab" },
		{ { 4, 2, 1 }, 3, "abacaba" },
		{ { 1000000, 1000000 }, 2, "ab" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_balancer *b = make(BL_BALANCE_WEIGHTED);
		size_t len = strlen(rows[i].seq);
		char got[64] = { 0 };
		char name[8];

		for (size_t j = 0; j < rows[i].n; j++) {
			snprintf(name, sizeof name, "%c", (char)('a' + j));
			add(b, name, rows[i].w[j]);
		}
		/* Three cycles: the sequence repeats exactly. */
		for (size_t k = 0; k < 3 * len; k++)
			got[k] = (char)('a' + pick(b, 0));
		for (size_t k = 0; k < 3 * len; k++)
			if (got[k] != rows[i].seq[k % len])
				fail_msg("row %zu: got %s, want %s repeated", i, got, rows[i].seq);
		bl_balancer_destroy(b);
	}
}

static void test_weighted_skips_ineligible(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_WEIGHTED);
	bool ok[3] = { true, true, false };
	struct mask m = { ok, 3, 0 };
	char got[16] = { 0 };

	(void)state;
	add(b, "a", 5);
	add(b, "b", 1);
	add(b, "c", 1);
	/* With c refused, the sequence is that of weights 5, 1. */
	for (int k = 0; k < 12; k++)
		got[k] = (char)('a' + pick_m(b, 0, 0, &m));
	assert_string_equal(got, "aaabaaaaabaa");
	bl_balancer_destroy(b);
}

/* ---- random ---------------------------------------------------------------------- */

static void test_random_weighted(void **state)
{
	static const uint32_t w[4] = { 1, 2, 3, 4 };
	struct bl_balancer *b = make(BL_BALANCE_RANDOM);
	uint64_t obs[4] = { 0 };
	double share[4];
	const uint64_t n = 100000;

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		char name[4] = { (char)('a' + i), 0 };

		add(b, name, w[i]);
		share[i] = w[i] / 10.0;
	}
	for (uint64_t k = 0; k < n; k++)
		obs[pick(b, 0)]++;
	/* 3 degrees of freedom: 16.27 is the 0.1 % tail. */
	assert_true(chi_square(obs, share, 4, n) < 16.27);

	/* d refused: the rest in proportion 1:2:3. */
	bool ok[4] = { true, true, true, false };
	struct mask m = { ok, 4, 0 };

	memset(obs, 0, sizeof obs);
	for (uint64_t k = 0; k < n; k++)
		obs[pick_m(b, 0, 0, &m)]++;
	assert_int_equal(obs[3], 0);
	share[0] = 1 / 6.0;
	share[1] = 2 / 6.0;
	share[2] = 3 / 6.0;
	assert_true(chi_square(obs, share, 3, n) < 13.82);
	bl_balancer_destroy(b);
}

/* With 1024 backends random stays O(1): about one eligibility question per
 * pick with equal weights; with one backend eligible it still finds it. */
static void test_random_many(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_RANDOM);
	bool ok[1024] = { false };
	struct mask m = { NULL, 0, 0 };
	uint64_t obs[1024] = { 0 };
	double share[1024];

	(void)state;
	add_n(b, 1024);
	for (int k = 0; k < 102400; k++)
		obs[pick_m(b, 0, 0, &m)]++;
	assert_int_equal(m.calls, 102400);
	for (int i = 0; i < 1024; i++)
		share[i] = 1 / 1024.0;
	/* 1023 degrees of freedom: mean 1023, sd 45; 1200 is 4 sd out. */
	assert_true(chi_square(obs, share, 1024, 102400) < 1200);

	ok[777] = true;
	m.ok = ok;
	m.n = 1024;
	for (int k = 0; k < 100; k++)
		assert_int_equal(pick_m(b, 0, 0, &m), 777);
	bl_balancer_destroy(b);
}

/* ---- least in flight and p2c ---------------------------------------------------------- */

static void test_least_inflight(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_LEAST_INFLIGHT);
	static const unsigned inflight[4] = { 3, 1, 2, 5 };
	uint64_t seen[4] = { 0 };

	(void)state;
	add_n(b, 4);
	/* All idle: ties take turns. */
	for (int k = 0; k < 8; k++)
		seen[pick(b, 0)]++;
	for (int i = 0; i < 4; i++)
		assert_int_equal(seen[i], 2);
	for (size_t i = 0; i < 4; i++)
		for (unsigned k = 0; k < inflight[i]; k++)
			assert_int_equal(bl_balancer_on_start(b, i), 0);
	for (int k = 0; k < 10; k++)
		assert_int_equal(pick(b, 0), 1);
	/* b refused: the next least, c. */
	{
		bool ok[4] = { true, false, true, true };
		struct mask m = { ok, 4, 0 };

		assert_int_equal(pick_m(b, 0, 0, &m), 2);
	}
	/* Weight counts: d (5 in flight) with weight 10 costs 6/10. */
	assert_int_equal(bl_balancer_set_weight(b, 3, 10), 0);
	assert_int_equal(pick(b, 0), 3);
	assert_int_equal(bl_balancer_set_weight(b, 3, 1), 0);

	/* External loads, when all are fresh, add to the in-flight counts:
	 * 3+0, 1+5, 2+0, 5+0 -> c. */
	assert_int_equal(bl_balancer_set_load(b, 0, 0, false), 0);
	assert_int_equal(bl_balancer_set_load(b, 1, 5, false), 0);
	assert_int_equal(bl_balancer_set_load(b, 2, 0, false), 0);
	assert_int_equal(bl_balancer_set_load(b, 3, 0, false), 0);
	assert_int_equal(pick(b, 0), 2);
	assert_true(bstats(b, 1, 0).load == 6.0);
	/* b's load goes stale: unknown, so it stands at the mean of the fresh
	 * ones (0), not at its old 5: b is the least loaded again. */
	assert_int_equal(bl_balancer_set_load(b, 1, 123, true), 0);
	assert_false(bstats(b, 1, 0).external_load_fresh);
	assert_true(bstats(b, 1, 0).load == 1.0);
	assert_int_equal(pick(b, 0), 1);
	/* Unknown is never zero: with the others at 4, a stale b counts 4. */
	for (size_t i = 0; i < 4; i++)
		if (i != 1)
			assert_int_equal(bl_balancer_set_load(b, i, 4, false), 0);
	assert_true(bstats(b, 1, 0).load == 5.0);
	assert_int_equal(pick(b, 0), 1); /* 1+4 vs 3+4, 2+4, 5+4 */
	assert_int_equal(bl_balancer_set_load(b, 2, 0, false), 0);
	/* mean of 4, 0, 4 = 8/3: b at 1 + 8/3 > c at 2 + 0 */
	assert_int_equal(pick(b, 0), 2);
	/* Loads out of range are refused and change nothing. */
	assert_int_equal(bl_balancer_set_load(b, 2, -1, false), BL_EINVAL);
	assert_int_equal(bl_balancer_set_load(b, 2, NAN, false), BL_EINVAL);
	assert_int_equal(bl_balancer_set_load(b, 2, 2e9, false), BL_EINVAL);
	assert_int_equal(bl_balancer_set_load(b, 3, BL_BALANCER_LOAD_MAX, false), 0);
	assert_int_equal(bl_balancer_set_load(b, 3, 4, false), 0);
	assert_true(bstats(b, 2, 0).external_load_fresh);
	assert_true(bstats(b, 2, 0).load == 2.0);
	/* A stale flag ignores the value, even a bad one. */
	assert_int_equal(bl_balancer_set_load(b, 2, NAN, true), 0);
	bl_balancer_destroy(b);
}

static void test_p2c_distribution(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_P2C);
	const size_t n = 10;
	const uint64_t picks = 100000;
	uint64_t obs[10] = { 0 };
	double share[10];

	(void)state;
	add_n(b, n);
	/* Backend i has i calls in flight: the rank of its load is i. */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < i; k++)
			assert_int_equal(bl_balancer_on_start(b, i), 0);
	for (uint64_t k = 0; k < picks; k++)
		obs[pick(b, 0)]++;
	/* The least loaded of two distinct uniform draws: rank r wins with
	 * probability 2 (n - 1 - r) / (n (n - 1)); the most loaded never. */
	assert_int_equal(obs[n - 1], 0);
	for (size_t r = 0; r < n; r++)
		share[r] = 2.0 * (double)(n - 1 - r) / (double)(n * (n - 1));
	/* 8 degrees of freedom: 26.12 is the 0.1 % tail. */
	assert_true(chi_square(obs, share, n - 1, picks) < 26.12);
	bl_balancer_destroy(b);
}

static void test_p2c_eligibility(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_P2C);
	bool ok[1024] = { false };
	struct mask m = { NULL, 0, 0 };

	(void)state;
	add_n(b, 1024);
	/* All eligible: two questions per pick, whatever N. */
	for (int k = 0; k < 10000; k++)
		pick_m(b, 0, 0, &m);
	assert_int_equal(m.calls, 20000);
	/* One eligible: found by the fallback scan. */
	m.ok = ok;
	m.n = 1024;
	ok[5] = true;
	assert_int_equal(pick_m(b, 0, 0, &m), 5);
	/* Two eligible: always the less loaded of the two. */
	ok[900] = true;
	assert_int_equal(bl_balancer_on_start(b, 5), 0);
	for (int k = 0; k < 100; k++)
		assert_int_equal(pick_m(b, 0, 0, &m), 900);
	/* Three eligible, the loads 1, 0, 2: never the most loaded. */
	ok[17] = true;
	assert_int_equal(bl_balancer_on_start(b, 17), 0);
	assert_int_equal(bl_balancer_on_start(b, 17), 0);
	for (int k = 0; k < 200; k++) {
		size_t p = pick_m(b, 0, 0, &m);

		assert_true(p == 5 || p == 900);
	}
	bl_balancer_destroy(b);
}

/* ---- peak EWMA ---------------------------------------------------------------------- */

static void test_peak_ewma(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_PEAK_EWMA);
	size_t fast, slow;
	bl_time_ns t = S(100);
	struct bl_balancer_backend_stats st;

	(void)state;
	fast = add(b, "fast", 1);
	slow = add(b, "slow", 1);
	/* Never measured, initial 0: an idle new backend is tried at once; one
	 * with a call in flight waits for its answer (Finagle's penalty). */
	assert_int_equal(bl_balancer_on_start(b, fast), 0);
	assert_int_equal(pick(b, t), slow);
	assert_int_equal(bl_balancer_on_finish(b, fast, MS(10), false, t), 0);
	call(b, slow, MS(50), false, t);
	st = bstats(b, fast, t);
	assert_true(st.latency_sampled);
	assert_true(st.latency_ewma_ns == (double)MS(10));

	/* Steady state: the faster backend wins. */
	for (int k = 0; k < 50; k++) {
		t += MS(100);
		call(b, fast, MS(10), false, t);
		call(b, slow, MS(50), false, t);
		assert_int_equal(pick(b, t), fast);
	}
	/* Cost is latency x (in flight + 1): 10 ms x 6 > 50 ms x 1. */
	for (int k = 0; k < 5; k++)
		assert_int_equal(bl_balancer_on_start(b, fast), 0);
	assert_int_equal(pick(b, t), slow);
	for (int k = 0; k < 5; k++)
		assert_int_equal(bl_balancer_on_cancel(b, fast), 0);
	assert_int_equal(pick(b, t), fast);

	/* A latency spike on the fast backend moves traffic at the next call:
	 * the estimate jumps to the peak. */
	t += MS(100);
	call(b, fast, MS(500), false, t);
	assert_true(bstats(b, fast, t).latency_ewma_ns == (double)MS(500));
	assert_int_equal(pick(b, t), slow);

	/* Then it decays back with time as normal samples come in: 10 ms +
	 * 490 ms x e^(-t/10 s). Still avoided 10 s on, preferred again after
	 * 30 s, nearly back to 10 ms after 60 s. */
	bl_time_ns spike = t;
	int crossed_at = -1;

	while (t - spike < S(60)) {
		t += MS(100);
		call(b, fast, MS(10), false, t);
		call(b, slow, MS(50), false, t);
		size_t p = pick(b, t);

		if (t - spike <= S(10))
			assert_int_equal(p, slow);
		if (p == fast && crossed_at < 0)
			crossed_at = (int)((t - spike) / BL_NS_PER_MS);
		if (t - spike >= S(30))
			assert_int_equal(p, fast);
	}
	/* 490 e^(-x/10) = 40 -> x = 25.05 s */
	assert_in_range(crossed_at, 24000, 26500);
	st = bstats(b, fast, t);
	assert_true(st.latency_ewma_ns > (double)MS(10) && st.latency_ewma_ns < (double)MS(12));

	/* Idle, the estimate decays toward zero (read-only): e^-1 after one
	 * decay time, e^-2 after two; the stored estimate is unchanged. */
	double e0 = st.latency_ewma_ns;

	st = bstats(b, fast, t + S(10));
	assert_true(fabs(st.latency_now_ns - e0 * exp(-1)) < 1.0);
	st = bstats(b, fast, t + S(20));
	assert_true(fabs(st.latency_now_ns - e0 * exp(-2)) < 1.0);
	assert_true(st.latency_ewma_ns == e0);

	/* A failure never lowers the estimate: a backend failing fast must not
	 * look fast. */
	call(b, slow, MS(1), true, t + MS(1));
	assert_true(bstats(b, slow, t + MS(1)).latency_ewma_ns == (double)MS(50));
	call(b, slow, MS(80), true, t + MS(2));
	assert_true(bstats(b, slow, t + MS(2)).latency_ewma_ns == (double)MS(80));
	bl_balancer_destroy(b);
}

/* With three backends, p2c over peak EWMA: the fastest wins each time it is
 * drawn (2/3 of picks), the slowest never. */
static void test_peak_ewma_three(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_PEAK_EWMA);
	uint64_t obs[3] = { 0 };
	bl_time_ns t = S(1);

	(void)state;
	add_n(b, 3);
	call(b, 0, MS(10), false, t);
	call(b, 1, MS(20), false, t);
	call(b, 2, MS(30), false, t);
	for (int k = 0; k < 30000; k++)
		obs[pick(b, t)]++;
	assert_int_equal(obs[2], 0);
	assert_in_range(obs[0], 19500, 20500);
	/* The external load counts as queue depth: 10 ms x (0 + 5 + 1) loses to
	 * 20 ms x 1 and to 30 ms x 1. */
	assert_int_equal(bl_balancer_set_load(b, 0, 5, false), 0);
	assert_int_equal(bl_balancer_set_load(b, 1, 0, false), 0);
	assert_int_equal(bl_balancer_set_load(b, 2, 0, false), 0);
	memset(obs, 0, sizeof obs);
	for (int k = 0; k < 3000; k++)
		obs[pick(b, t)]++;
	assert_int_equal(obs[0], 0);
	bl_balancer_destroy(b);
}

/* ---- consistent hashing ------------------------------------------------------------ */

#define KEYS 10000

static uint64_t key_of(int i)
{
	char s[32];
	int n = snprintf(s, sizeof s, "session-%d", i);

	return bl_balancer_hash(s, (size_t)n);
}

/* Maps KEYS keys to backend indices without starting calls, so that the
 * load bound never binds. */
static void map_keys(struct bl_balancer *b, size_t *out, struct mask *m)
{
	for (int i = 0; i < KEYS; i++)
		out[i] = pick_m(b, key_of(i), 0, m);
}

static void test_hash_same_key(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_CONSISTENT_HASH);
	static size_t first[KEYS], again[KEYS];
	uint64_t per[10] = { 0 };

	(void)state;
	add_n(b, 10);
	map_keys(b, first, NULL);
	map_keys(b, again, NULL);
	assert_memory_equal(first, again, sizeof first);
	/* Spread: each of 10 backends gets about 1000 of the keys. */
	for (int i = 0; i < KEYS; i++)
		per[first[i]]++;
	for (int i = 0; i < 10; i++)
		assert_in_range(per[i], 850, 1150);
	/* Independent of slot order: the same names added in reverse order map
	 * each key to the same name. */
	struct bl_balancer *r = make(BL_BALANCE_CONSISTENT_HASH);
	char name[8];

	for (int i = 9; i >= 0; i--) {
		snprintf(name, sizeof name, "b%d", i);
		add(r, name, 1);
	}
	for (int i = 0; i < KEYS; i++) {
		size_t p = pick_m(r, key_of(i), 0, NULL);

		assert_string_equal(bstats(r, p, 0).name, bstats(b, first[i], 0).name);
	}
	bl_balancer_destroy(r);
	bl_balancer_destroy(b);
}

static void test_hash_minimal_disruption(void **state)
{
	static size_t before[KEYS], after[KEYS];
	const size_t n = 10;
	const size_t gone = 3;
	struct bl_balancer *b = make(BL_BALANCE_CONSISTENT_HASH);
	size_t moved = 0, idx;

	(void)state;
	add_n(b, n);
	map_keys(b, before, NULL);
	assert_int_equal(bl_balancer_remove(b, gone), 0);
	map_keys(b, after, NULL);
	for (int i = 0; i < KEYS; i++) {
		if (before[i] != after[i]) {
			moved++;
			/* Only the keys of the backend that left move. */
			assert_int_equal(before[i], gone);
		}
		assert_true(after[i] != gone);
	}
	/* ~1/N of the keys: between 0.5/N and 1.5/N. */
	assert_in_range(moved, KEYS / n / 2, KEYS * 3 / n / 2);

	/* It comes back (into the same slot): every key goes home. */
	idx = add(b, "b3", 1);
	assert_int_equal(idx, gone);
	map_keys(b, after, NULL);
	assert_memory_equal(before, after, sizeof before);

	/* An 11th backend takes ~1/11 of the keys, from all the others, and
	 * no key moves between the old ones. */
	idx = add(b, "b10", 1);
	map_keys(b, after, NULL);
	moved = 0;
	for (int i = 0; i < KEYS; i++) {
		if (before[i] != after[i]) {
			moved++;
			assert_int_equal(after[i], idx);
		}
	}
	assert_in_range(moved, KEYS / 11 / 2, KEYS * 3 / 11 / 2);

	/* Reweighting one backend moves keys only to or from it. */
	assert_int_equal(bl_balancer_set_weight(b, idx, 4), 0);
	map_keys(b, before, NULL);
	moved = 0;
	for (int i = 0; i < KEYS; i++) {
		if (before[i] != after[i]) {
			moved++;
			assert_int_equal(before[i], idx);
		}
	}
	/* From 1/11 to 4/14 of the keys. */
	{
		size_t mine = 0;

		for (int i = 0; i < KEYS; i++)
			mine += before[i] == idx;
		assert_in_range(mine, 2550, 3150);
	}
	bl_balancer_destroy(b);
}

/* A refused backend's keys go where they would go without it; the others
 * stay. */
static void test_hash_ineligible(void **state)
{
	static size_t with[KEYS], without[KEYS], refused[KEYS];
	struct bl_balancer *b = make(BL_BALANCE_CONSISTENT_HASH);
	struct bl_balancer *twin = make(BL_BALANCE_CONSISTENT_HASH);
	bool ok[8];
	struct mask m = { ok, 8, 0 };

	(void)state;
	add_n(b, 8);
	add_n(twin, 8);
	assert_int_equal(bl_balancer_remove(twin, 6), 0);
	for (int i = 0; i < 8; i++)
		ok[i] = i != 6;
	map_keys(b, with, NULL);
	map_keys(twin, without, NULL);
	map_keys(b, refused, &m);
	assert_memory_equal(without, refused, sizeof without);
	for (int i = 0; i < KEYS; i++)
		if (with[i] != 6)
			assert_int_equal(refused[i], with[i]);
	/* The eligibility question is asked for leading bids only: O(log N). */
	assert_true(m.calls < (unsigned long)KEYS * 6);
	bl_balancer_destroy(twin);
	bl_balancer_destroy(b);
}

static void test_hash_weights(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_CONSISTENT_HASH);
	static size_t map[KEYS];
	uint64_t per[4] = { 0 };

	(void)state;
	add(b, "w1", 1);
	add(b, "w2", 2);
	add(b, "w3", 3);
	add(b, "w4", 4);
	map_keys(b, map, NULL);
	for (int i = 0; i < KEYS; i++)
		per[map[i]]++;
	for (int i = 0; i < 4; i++)
		assert_in_range(per[i], (uint64_t)(i + 1) * 1000 - 150, (uint64_t)(i + 1) * 1000 + 150);
	bl_balancer_destroy(b);
}

/* One hot key cannot overload a backend: with c = 1.25, no backend takes a
 * call past ceil(1.25 x average); the key's own backend fills first. */
static void test_hash_bounded_load(void **state)
{
	struct bl_balancer_config c = cfg_for(BL_BALANCE_CONSISTENT_HASH);
	const uint64_t hot = key_of(7);
	uint64_t total = 0;
	size_t home, p;
	struct bl_balancer *b;

	(void)state;
	b = make_cfg(&c);
	add_n(b, 4);
	home = pick_m(b, hot, 0, NULL);
	for (int k = 0; k < 100; k++) {
		p = pick_m(b, hot, 0, NULL);
		uint64_t cap = (uint64_t)ceil(1.25 * (double)(total + 1) / 4.0);

		assert_true(bstats(b, p, 0).inflight + 1 <= cap);
		/* The home backend takes it whenever it has room. */
		if (bstats(b, home, 0).inflight + 1 <= cap)
			assert_int_equal(p, home);
		assert_int_equal(bl_balancer_on_start(b, p), 0);
		total++;
	}
	for (size_t i = 0; i < 4; i++)
		assert_in_range(bstats(b, i, 0).inflight, 1, 32);
	/* As calls end, the key returns home. */
	for (size_t i = 0; i < 4; i++)
		while (bstats(b, i, 0).inflight > 0)
			assert_int_equal(bl_balancer_on_cancel(b, i), 0);
	assert_int_equal(pick_m(b, hot, 0, NULL), home);

	/* Weighted bound: a weight-3 backend may hold 3 times as much. */
	assert_int_equal(bl_balancer_set_weight(b, home, 3), 0);
	total = 0;
	for (int k = 0; k < 120; k++) {
		p = pick_m(b, hot, 0, NULL);
		double cap = ceil(1.25 * (double)(total + 1) / 6.0 * bstats(b, p, 0).weight);

		assert_true((double)(bstats(b, p, 0).inflight + 1) <= cap);
		assert_int_equal(bl_balancer_on_start(b, p), 0);
		total++;
	}
	assert_in_range(bstats(b, home, 0).inflight, 50, 75);
	bl_balancer_destroy(b);

	/* Unbounded (0): all on one. */
	c.hash_balance_factor = 0;
	b = make_cfg(&c);
	add_n(b, 4);
	home = pick_m(b, hot, 0, NULL);
	for (int k = 0; k < 100; k++) {
		assert_int_equal(pick_m(b, hot, 0, NULL), home);
		assert_int_equal(bl_balancer_on_start(b, home), 0);
	}
	bl_balancer_destroy(b);

	/* The bound is waived when only full backends are eligible: better a
	 * loaded backend than none. */
	c.hash_balance_factor = 1.25;
	b = make_cfg(&c);
	add_n(b, 2);
	{
		bool ok[2] = { false, false };
		struct mask m = { ok, 2, 0 };

		home = pick_m(b, hot, 0, NULL);
		ok[home] = true;
		for (int k = 0; k < 20; k++) {
			assert_int_equal(pick_m(b, hot, 0, &m), home);
			assert_int_equal(bl_balancer_on_start(b, home), 0);
		}
	}
	bl_balancer_destroy(b);
}

/* 1024 backends: the eligibility question is asked a handful of times per
 * pick, not 1024. */
static void test_hash_many(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_CONSISTENT_HASH);
	struct mask m = { NULL, 0, 0 };
	static size_t map[KEYS];
	static uint64_t per[1024];

	(void)state;
	add_n(b, 1024);
	map_keys(b, map, &m);
	assert_true(m.calls < (unsigned long)KEYS * 12);
	for (int i = 0; i < KEYS; i++)
		per[map[i]]++;
	for (int i = 0; i < 1024; i++)
		assert_true(per[i] < 40); /* mean 9.8 */
	bl_balancer_destroy(b);
}

/* ---- slow start ---------------------------------------------------------------------- */

static struct bl_balancer *slow_start_pool(enum bl_balance_strategy s, size_t *old, size_t *young)
{
	struct bl_balancer_config c = cfg_for(s);
	struct bl_balancer *b;

	c.slow_start_ns = S(30);
	c.slow_start_min_share = 0.1;
	b = make_cfg(&c);
	*old = add(b, "old", 1);
	*young = add_at(b, "young", 1, S(100));
	return b;
}

static void test_slow_start_ramp(void **state)
{
	static const struct {
		bl_time_ns at;
		double factor;
	} rows[] = {
		{ S(90), 0.1 },   /* before it joined */
		{ S(100), 0.1 },  /* joining: the floor */
		{ S(101), 0.1 },  /* 1/30 < 0.1 */
		{ S(103), 0.1 },
		{ S(106), 0.2 },
		{ S(115), 0.5 },
		{ S(127), 0.9 },
		{ S(130), 1.0 },  /* the window is over */
		{ S(1000), 1.0 },
	};
	size_t old, young;
	struct bl_balancer *b = slow_start_pool(BL_BALANCE_WEIGHTED, &old, &young);

	(void)state;
	assert_int_equal(bl_balancer_set_weight(b, young, 4), 0);
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_balancer_backend_stats st = bstats(b, young, rows[i].at);

		if (fabs(st.slow_start_factor - rows[i].factor) > 1e-12 ||
		    fabs(st.effective_weight - 4 * rows[i].factor) > 1e-12)
			fail_msg("row %zu: factor %g weight %g, want %g", i, st.slow_start_factor,
				 st.effective_weight, rows[i].factor);
		assert_int_equal(st.joined_ns, S(100));
	}
	/* Present from the start: no ramp, even at time 0 or before. */
	assert_true(bstats(b, old, INT64_MIN).slow_start_factor == 1.0);
	assert_true(bstats(b, old, 0).slow_start_factor == 1.0);
	/* Rejoining restarts the ramp. */
	assert_int_equal(bl_balancer_rejoin(b, young, S(500)), 0);
	assert_true(bstats(b, young, S(500)).slow_start_factor == 0.1);
	assert_true(bstats(b, young, S(515)).slow_start_factor == 0.5);
	bl_balancer_destroy(b);
}

/* The share each strategy gives a backend halfway through its ramp (factor
 * 0.5, weights equal): a third of the calls, against two thirds. */
static void test_slow_start_shares(void **state)
{
	static const enum bl_balance_strategy exact[] = {
		BL_BALANCE_WEIGHTED, BL_BALANCE_ROUND_ROBIN,
	};
	size_t old, young;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct bl_balancer *b = slow_start_pool(exact[i], &old, &young);
		uint64_t got = 0;

		for (int k = 0; k < 3000; k++)
			got += pick(b, S(115)) == young;
		if (got != 1000)
			fail_msg("%s: %llu of 3000", bl_balance_strategy_name(exact[i]),
				 (unsigned long long)got);
		/* After the window: half. */
		got = 0;
		for (int k = 0; k < 3000; k++)
			got += pick(b, S(130)) == young;
		assert_int_equal(got, 1500);
		bl_balancer_destroy(b);
	}
	{
		struct bl_balancer *b = slow_start_pool(BL_BALANCE_RANDOM, &old, &young);
		uint64_t got = 0;

		for (int k = 0; k < 30000; k++)
			got += pick(b, S(115)) == young;
		assert_in_range(got, 9600, 10400);
		bl_balancer_destroy(b);
	}
	{
		/* consistent_hash: at 0.1 the young one wins 0.1/1.1 of keys,
		 * at 0.5 a third, then half; keys only move toward it. */
		struct bl_balancer *b = slow_start_pool(BL_BALANCE_CONSISTENT_HASH, &old, &young);
		static const struct {
			bl_time_ns at;
			uint64_t lo, hi;
		} rows[] = { { S(100), 700, 1100 }, { S(115), 3100, 3550 }, { S(130), 4800, 5200 } };
		bool was_young[KEYS] = { false };

		for (size_t r = 0; r < 3; r++) {
			uint64_t got = 0;

			for (int k = 0; k < KEYS; k++) {
				bool y = pick_m(b, key_of(k), rows[r].at, NULL) == young;

				if (was_young[k])
					assert_true(y);
				was_young[k] = y;
				got += y;
			}
			assert_in_range(got, rows[r].lo, rows[r].hi);
		}
		bl_balancer_destroy(b);
	}
	{
		/* least_inflight: idle, the young one costs 1/0.5 = 2 against 1;
		 * it wins once the old one has 2 calls in flight (3 > 2). */
		struct bl_balancer *b = slow_start_pool(BL_BALANCE_LEAST_INFLIGHT, &old, &young);

		assert_int_equal(pick(b, S(115)), old);
		assert_int_equal(bl_balancer_on_start(b, old), 0);
		assert_int_equal(bl_balancer_on_start(b, old), 0);
		assert_int_equal(pick(b, S(115)), young);
		assert_int_equal(pick(b, S(115)), young);
		/* After the window: 1 against 3. */
		assert_int_equal(pick(b, S(130)), young);
		assert_int_equal(bl_balancer_on_start(b, young), 0);
		assert_int_equal(pick(b, S(130)), young); /* 2 against 3 */
		assert_int_equal(bl_balancer_on_start(b, young), 0);
		assert_int_equal(bl_balancer_on_start(b, young), 0);
		assert_int_equal(pick(b, S(130)), old); /* 4 against 3 */
		bl_balancer_destroy(b);
	}
}

/* ---- nothing eligible ------------------------------------------------------------------- */

static void test_none_eligible(void **state)
{
	(void)state;
	for (int s = 0; s < BL_BALANCE_STRATEGY_COUNT; s++) {
		struct bl_balancer *b = make((enum bl_balance_strategy)s);
		bool ok[100] = { false };
		struct mask m = { ok, 100, 0 };
		struct bl_balancer_stats st;
		size_t idx = 12345;

		/* Empty pool. */
		assert_int_equal(bl_balancer_pick(b, 1, 0, NULL, NULL, &idx), BL_EAGAIN);
		add_n(b, 100);
		assert_int_equal(bl_balancer_pick(b, 1, 0, mask_fn, &m, &idx), BL_EAGAIN);
		assert_int_equal(idx, 12345);
		/* Even under slow start, and with calls in flight. */
		assert_int_equal(bl_balancer_on_start(b, 3), 0);
		assert_int_equal(bl_balancer_pick(b, 2, S(5), mask_fn, &m, &idx), BL_EAGAIN);
		bl_balancer_stats(b, &st);
		assert_int_equal(st.none, 3);
		assert_int_equal(st.picks, 0);
		/* One eligible: it, every time. */
		ok[63] = true;
		for (int k = 0; k < 50; k++)
			assert_int_equal(pick_m(b, (uint64_t)k, 0, &m), 63);
		bl_balancer_stats(b, &st);
		assert_int_equal(st.picks, 50);
		assert_int_equal(bstats(b, 63, 0).picks, 50);
		bl_balancer_destroy(b);
	}
}

/* ---- metrics ------------------------------------------------------------------------ */

static void test_metrics(void **state)
{
	struct bl_balancer *b = make(BL_BALANCE_P2C);
	struct bl_balancer_backend_stats st;
	struct bl_balancer_stats all;
	size_t a;
	double want = 0;

	(void)state;
	a = add(b, "a", 3);
	add(b, "b", 1);
	/* Nothing in flight: finish and cancel are refused, nothing changes. */
	assert_int_equal(bl_balancer_on_finish(b, a, 5, false, 0), BL_EINVAL);
	assert_int_equal(bl_balancer_on_cancel(b, a), BL_EINVAL);
	assert_int_equal(bl_balancer_on_start(b, a), 0);
	assert_int_equal(bl_balancer_on_finish(b, a, -1, false, 0), BL_EINVAL);
	st = bstats(b, a, 0);
	assert_int_equal(st.inflight, 1);
	assert_int_equal(st.completions, 0);
	assert_false(st.latency_sampled);
	assert_int_equal(bl_balancer_on_cancel(b, a), 0);

	/* The error rate is an EWMA over calls with alpha 0.1. */
	for (int k = 0; k < 10; k++) {
		call(b, a, MS(100), true, S(k));
		want += 0.1 * (1 - want);
	}
	st = bstats(b, a, S(10));
	assert_true(fabs(st.error_rate - (1 - pow(0.9, 10))) < 1e-12);
	assert_true(fabs(st.error_rate - want) < 1e-12);
	call(b, a, MS(100), false, S(11));
	st = bstats(b, a, S(11));
	assert_true(fabs(st.error_rate - want * 0.9) < 1e-12);
	assert_int_equal(st.completions, 11);
	assert_int_equal(st.failures, 10);
	assert_int_equal(st.weight, 3);
	assert_true(st.effective_weight == 3.0);
	assert_true(st.latency_ewma_ns == (double)MS(100));
	assert_false(st.draining);

	/* A lower latency is blended by time: half a decay time later it
	 * weighs 1 - e^-0.5. */
	call(b, a, MS(20), false, S(16));
	st = bstats(b, a, S(16));
	want = 100.0 * exp(-0.5) + 20.0 * (1 - exp(-0.5));
	assert_true(fabs(st.latency_ewma_ns / (double)MS(1) - want) < 1e-9);
	/* Time going backwards (a late report) does not decay anything. */
	call(b, a, MS(10), false, S(15));
	assert_true(bstats(b, a, S(16)).latency_ewma_ns == st.latency_ewma_ns);

	/* In flight across the pool. */
	assert_int_equal(bl_balancer_on_start(b, a), 0);
	assert_int_equal(bl_balancer_on_start(b, a), 0);
	assert_int_equal(bl_balancer_on_start(b, 1), 0);
	bl_balancer_stats(b, &all);
	assert_int_equal(all.inflight, 3);
	assert_int_equal(all.backends, 2);
	assert_int_equal(all.total_weight, 4);
	assert_int_equal(all.strategy, BL_BALANCE_P2C);
	assert_true(bstats(b, a, 0).load == 2.0);
	bl_balancer_destroy(b);
}

/* ---- reconfigure ------------------------------------------------------------------- */

static void test_reconfigure(void **state)
{
	struct bl_balancer_config c = cfg_for(BL_BALANCE_ROUND_ROBIN);
	struct bl_balancer *b = make_cfg(&c);
	struct bl_balancer_backend_stats before, after;
	struct bl_balancer_stats st;

	(void)state;
	add_n(b, 3);
	call(b, 1, MS(30), true, S(1));
	assert_int_equal(bl_balancer_on_start(b, 2), 0);
	before = bstats(b, 1, S(1));
	c.strategy = BL_BALANCE_LEAST_INFLIGHT;
	c.max_backends = 2; /* below what it holds: nothing is taken away */
	assert_int_equal(bl_balancer_reconfigure(b, &c), 0);
	after = bstats(b, 1, S(1));
	assert_memory_equal(&before, &after, sizeof before);
	bl_balancer_stats(b, &st);
	assert_int_equal(st.strategy, BL_BALANCE_LEAST_INFLIGHT);
	assert_int_equal(st.backends, 3);
	assert_int_equal(pick(b, S(1)), 0);
	assert_int_equal(bl_balancer_add(b, "x", 1, 0, NULL), BL_EFULL);
	/* An invalid configuration changes nothing. */
	c.strategy = BL_BALANCE_RANDOM;
	c.choices = 0;
	assert_int_equal(bl_balancer_reconfigure(b, &c), BL_EINVAL);
	bl_balancer_stats(b, &st);
	assert_int_equal(st.strategy, BL_BALANCE_LEAST_INFLIGHT);
	bl_balancer_destroy(b);
}

/* ---- the hash ---------------------------------------------------------------------- */

static void test_hash_function(void **state)
{
	(void)state;
	/* Pinned: several daemons and restarts must map keys alike. */
	assert_int_equal(bl_balancer_hash("", 0), bl_balancer_hash(NULL, 0));
	assert_int_equal(bl_balancer_hash("session-1", 9), key_of(1));
	assert_true(bl_balancer_hash("a", 1) != bl_balancer_hash("a\0", 2));
	assert_true(bl_balancer_hash("abcdefgh", 8) != bl_balancer_hash("abcdefgh\0", 9));
	assert_true(bl_balancer_hash("abcdefghi", 9) != bl_balancer_hash("abcdefghj", 9));
	/* The same bytes at another address hash alike. */
	{
		char buf[40];

		memcpy(buf + 3, "prompt-prefix-0123456789", 24);
		assert_int_equal(bl_balancer_hash(buf + 3, 24),
				 bl_balancer_hash("prompt-prefix-0123456789", 24));
	}
	/* Golden values: a change here remaps every key of every pool. */
	assert_int_equal(bl_balancer_hash("", 0), UINT64_C(0xd36329e2067b7d34));
	assert_int_equal(bl_balancer_hash("session-42", 10), UINT64_C(0x6d8d3b98146a442f));
}

/* ---- allocation failures ------------------------------------------------------------- */

static void test_alloc_failures(void **state)
{
	bool failed_any = true;

	(void)state;
	for (long k = 1; failed_any; k++) {
		struct bl_balancer_config c = cfg_for(BL_BALANCE_WEIGHTED);
		struct bl_balancer *b = NULL;
		char name[16];

		memset(&hs, 0, sizeof hs);
		hs.fail_at = k;
		failed_any = false;
		int err = bl_balancer_create(&c, &b);

		if (err) {
			assert_int_equal(err, BL_ENOMEM);
			assert_null(b);
			assert_int_equal(hs.live, 0);
			failed_any = true;
			continue;
		}
		for (size_t i = 0; i < 40;) {
			struct bl_balancer_stats before, after;
			size_t idx = 999;

			bl_balancer_stats(b, &before);
			snprintf(name, sizeof name, "n%zu", i);
			err = bl_balancer_add(b, name, (uint32_t)(i + 1), 0, &idx);
			if (err) {
				assert_int_equal(err, BL_ENOMEM);
				assert_false(failed_any);
				failed_any = true;
				assert_int_equal(idx, 999);
				bl_balancer_stats(b, &after);
				assert_memory_equal(&before, &after, sizeof before);
				/* The backends already in are intact. */
				for (size_t j = 0; j < i; j++) {
					snprintf(name, sizeof name, "n%zu", j);
					assert_int_equal(bl_balancer_find(b, name, &idx), 0);
					assert_int_equal(idx, j);
					assert_int_equal(bstats(b, j, 0).weight, j + 1);
				}
				continue; /* the next attempt succeeds */
			}
			assert_int_equal(idx, i);
			assert_int_equal(bl_balancer_on_start(b, i), 0);
			i++;
		}
		/* Picks never allocate. */
		long calls = hs.calls;

		for (int p = 0; p < 1000; p++)
			pick(b, 0);
		assert_int_equal(hs.calls, calls);
		bl_balancer_destroy(b);
		assert_int_equal(hs.live, 0);
	}
}

/* ---- property: random operations against a model ----------------------------------------- */

#define PROP_NAMES 24

struct model {
	bool live[PROP_NAMES];     /* name i is live */
	size_t idx[PROP_NAMES];    /* its slot when live */
	uint64_t inflight[PROP_NAMES];
	/* slots that drain, with their calls in flight */
	size_t drain_idx[256];
	uint64_t drain_calls[256];
	size_t ndrain;
};

struct prop_mask {
	bool ok[4 * PROP_NAMES]; /* by slot */
	const struct bl_balancer *b;
	bool bad;                /* asked about a slot that is not live */
};

static bool prop_eligible(void *ctx, size_t idx)
{
	struct prop_mask *m = ctx;
	struct bl_balancer_backend_stats st;

	if (bl_balancer_backend_stats(m->b, idx, 0, &st) != 0 || st.draining)
		m->bad = true;
	return idx < 4 * PROP_NAMES && m->ok[idx];
}

static void test_random_against_model(void **state)
{
	uint64_t ops = 20000;
	const char *env = getenv("BALLAST_PROP_OPS");

	(void)state;
	if (env && *env)
		ops = strtoull(env, NULL, 10);
	for (int strat = 0; strat < BL_BALANCE_STRATEGY_COUNT; strat++) {
		struct bl_balancer_config c = cfg_for((enum bl_balance_strategy)strat);
		struct model md;
		struct prop_mask pm;
		struct bl_balancer *b;
		bl_time_ns now = S(1);
		char name[16];

		c.slow_start_ns = S(2);
		c.max_backends = 16;
		c.seed = (uint64_t)strat + 1;
		b = make_cfg(&c);
		memset(&md, 0, sizeof md);
		memset(&pm, 0, sizeof pm);
		pm.b = b;
		rng_state = (uint64_t)strat * 7919 + 1;
		for (uint64_t op = 0; op < ops; op++) {
			size_t i = rng() % PROP_NAMES, idx;
			unsigned what = (unsigned)(rng() % 100);
			size_t nlive = 0;

			now += (bl_time_ns)(rng() % (uint64_t)MS(50));
			for (size_t j = 0; j < PROP_NAMES; j++)
				nlive += md.live[j];
			snprintf(name, sizeof name, "n%zu", i);
			if (what < 8) {
				int rc = bl_balancer_add(b, name, (uint32_t)(rng() % 5 + 1),
							 rng() % 2 ? now : LONG_AGO, &idx);

				if (md.live[i]) {
					assert_int_equal(rc, BL_EEXIST);
				} else if (nlive >= 16) {
					assert_int_equal(rc, BL_EFULL);
				} else if (rc == 0) {
					md.live[i] = true;
					md.idx[i] = idx;
					md.inflight[i] = 0;
				} else {
					/* no slot left: 32 live or draining */
					assert_int_equal(rc, BL_EFULL);
					assert_true(nlive + md.ndrain >= 32);
				}
			} else if (what < 14) {
				if (!md.live[i])
					continue;
				assert_int_equal(bl_balancer_remove(b, md.idx[i]), 0);
				md.live[i] = false;
				if (md.inflight[i] > 0) {
					assert_true(md.ndrain < 256);
					md.drain_idx[md.ndrain] = md.idx[i];
					md.drain_calls[md.ndrain++] = md.inflight[i];
				}
			} else if (what < 20) {
				if (md.ndrain == 0)
					continue;
				size_t d = rng() % md.ndrain;

				if (rng() % 2)
					assert_int_equal(bl_balancer_on_cancel(b, md.drain_idx[d]), 0);
				else
					assert_int_equal(bl_balancer_on_finish(b, md.drain_idx[d],
									       MS(5), true, now), 0);
				if (--md.drain_calls[d] == 0) {
					struct bl_balancer_backend_stats st;

					assert_int_equal(bl_balancer_backend_stats(b, md.drain_idx[d],
										   now, &st),
							 BL_ENOENT);
					md.drain_idx[d] = md.drain_idx[md.ndrain - 1];
					md.drain_calls[d] = md.drain_calls[md.ndrain - 1];
					md.ndrain--;
				}
			} else if (what < 30) {
				if (!md.live[i] || md.inflight[i] == 0)
					continue;
				assert_int_equal(bl_balancer_on_finish(b, md.idx[i],
								       (int64_t)(rng() % (uint64_t)S(2)),
								       rng() % 4 == 0, now),
						 0);
				md.inflight[i]--;
			} else if (what < 33) {
				if (!md.live[i])
					continue;
				assert_int_equal(bl_balancer_set_load(b, md.idx[i],
								      (double)(rng() % 50), rng() % 3 == 0),
						 0);
			} else if (what < 35) {
				if (!md.live[i])
					continue;
				assert_int_equal(bl_balancer_set_weight(b, md.idx[i],
									(uint32_t)(rng() % 9 + 1)),
						 0);
			} else if (what < 36) {
				if (md.live[i])
					assert_int_equal(bl_balancer_rejoin(b, md.idx[i], now), 0);
			} else {
				/* A pick with a random mask, then maybe a start. */
				bool any = false;
				int rc;

				for (size_t s = 0; s < 4 * PROP_NAMES; s++)
					pm.ok[s] = rng() % 4 != 0;
				for (size_t j = 0; j < PROP_NAMES; j++)
					any |= md.live[j] && pm.ok[md.idx[j]];
				idx = SIZE_MAX;
				rc = bl_balancer_pick(b, rng() % 64, now, prop_eligible, &pm, &idx);
				assert_false(pm.bad);
				if (!any) {
					assert_int_equal(rc, BL_EAGAIN);
					continue;
				}
				assert_int_equal(rc, 0);
				assert_true(pm.ok[idx]);
				size_t j;

				for (j = 0; j < PROP_NAMES; j++)
					if (md.live[j] && md.idx[j] == idx)
						break;
				assert_true(j < PROP_NAMES);
				if (rng() % 3 != 0) {
					assert_int_equal(bl_balancer_on_start(b, idx), 0);
					md.inflight[j]++;
				}
			}
			/* The balancer's totals agree with the model. */
			if (op % 64 == 0) {
				struct bl_balancer_stats st;
				uint64_t inflight = 0;
				size_t live = 0;

				for (size_t j = 0; j < PROP_NAMES; j++) {
					if (!md.live[j])
						continue;
					live++;
					inflight += md.inflight[j];
					assert_int_equal(bstats(b, md.idx[j], now).inflight,
							 md.inflight[j]);
				}
				bl_balancer_stats(b, &st);
				assert_int_equal(st.backends, live);
				assert_int_equal(st.inflight, inflight);
				assert_int_equal(st.draining, md.ndrain);
			}
		}
		bl_balancer_destroy(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strategy_names),
		cmocka_unit_test(test_config),
		cmocka_unit_test_setup_teardown(test_create_destroy, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_add_errors, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_add_remove_keeps_state, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_many_backends, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_round_robin, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_weighted_sequences, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_weighted_skips_ineligible, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_random_weighted, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_random_many, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_least_inflight, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_p2c_distribution, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_p2c_eligibility, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_peak_ewma, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_peak_ewma_three, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_hash_same_key, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_hash_minimal_disruption, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_hash_ineligible, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_hash_weights, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_hash_bounded_load, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_hash_many, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_slow_start_ramp, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_slow_start_shares, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_none_eligible, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_metrics, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_reconfigure, reset_hook, check_no_leak),
		cmocka_unit_test(test_hash_function),
		cmocka_unit_test_setup_teardown(test_alloc_failures, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_random_against_model, reset_hook, check_no_leak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
