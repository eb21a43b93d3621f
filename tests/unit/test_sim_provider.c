/* Unit tests for the simulated provider (src/sim/provider.h): hand-computed
 * cases for each way a provider enforces its limits, and a property check
 * that a sliding window never admits more than its limit over any window.
 * Time moves by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ballast/error.h"
#include "provider.h"
#include "rng.h"

#define S(x) ((int64_t)(x) * BL_NS_PER_S)
#define MS(x) ((int64_t)(x) * BL_NS_PER_MS)

static struct bl_sim_provider_config cfg(enum bl_sim_window w)
{
	struct bl_sim_provider_config c;

	bl_sim_provider_config_default(&c);
	c.window = w;
	return c;
}

static void limit(struct bl_sim_provider_config *c, enum bl_dim d, uint64_t n, int64_t per_ns)
{
	c->rate[d].limit = n;
	c->rate[d].per_ns = per_ns;
}

static int call(struct bl_sim_provider *p, uint64_t in, uint64_t max, bl_time_ns now,
		struct bl_sim_admission *a)
{
	struct bl_sim_call c = {in, max};

	return bl_sim_provider_admit(p, &c, now, a);
}

/* 60 requests a minute, as a bucket: full at first, then one a second. */
static void test_bucket_requests(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_TOKEN_BUCKET);
	struct bl_sim_provider p;
	struct bl_sim_admission a;

	limit(&c, BL_DIM_REQUESTS, 60, S(60));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	for (int i = 0; i < 60; i++)
		assert_int_equal(call(&p, 0, 0, 0, &a), 0);
	assert_int_equal(call(&p, 0, 0, 0, &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(1));
	assert_int_equal(a.retry_after_ns, S(1));
	assert_int_equal(a.dim, BL_DIM_REQUESTS);
	assert_false(a.concurrency);
	/* Half a unit refilled: conforms at 1 s; the header says 1 s (rounded up). */
	assert_int_equal(call(&p, 0, 0, MS(500), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(1));
	assert_int_equal(a.retry_after_ns, S(1));
	assert_int_equal(call(&p, 0, 0, S(1), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(1), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(2));
	/* 30 s idle: 30 units back, not more. */
	for (int i = 0; i < 30; i++)
		assert_int_equal(call(&p, 0, 0, S(31), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(31), &a), BL_EAGAIN);
	assert_int_equal(p.admitted, 91);
	assert_int_equal(p.rejected_429, 4);
	bl_sim_provider_cleanup(&p);
}

/* Output tokens charged at max_tokens on arrival, corrected at the end. */
static void test_bucket_output_correction(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_TOKEN_BUCKET);
	struct bl_sim_provider p;
	struct bl_sim_admission a, b;
	struct bl_sim_call first = {10, 600};

	limit(&c, BL_DIM_OUTPUT_TOKENS, 1000, S(60));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &first, 0, &a), 0);
	/* 400 left; 600 asked: 200 missing at 1000/60 s = 12 s. */
	assert_int_equal(call(&p, 10, 600, 0, &b), BL_EAGAIN);
	assert_int_equal(b.conform_at_ns, S(12));
	assert_int_equal(b.retry_after_ns, S(12));
	assert_int_equal(b.dim, BL_DIM_OUTPUT_TOKENS);
	/* The first produced 100: 500 come back, 900 in the bucket. */
	bl_sim_provider_finish(&p, &first, &a, 100, 0);
	assert_int_equal(call(&p, 10, 600, 0, &b), 0);
	assert_int_equal(call(&p, 10, 301, 0, &b), BL_EAGAIN);
	assert_int_equal(call(&p, 10, 300, 0, &b), 0);
	bl_sim_provider_cleanup(&p);
}

/* Combined tokens count input + max_tokens; a refusal charges nothing. */
static void test_all_or_nothing(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_TOKEN_BUCKET);
	struct bl_sim_provider p;
	struct bl_sim_admission a;

	limit(&c, BL_DIM_REQUESTS, 10, S(60));
	limit(&c, BL_DIM_INPUT_TOKENS, 100, S(60));
	limit(&c, BL_DIM_TOKENS, 1000, S(60));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(call(&p, 80, 100, 0, &a), 0);
	/* 20 input tokens left: 30 does not fit; requests are not charged. */
	assert_int_equal(call(&p, 30, 100, 0, &a), BL_EAGAIN);
	assert_int_equal(a.dim, BL_DIM_INPUT_TOKENS);
	assert_int_equal(a.conform_at_ns, S(6)); /* 10 missing at 100/60 s */
	for (int i = 0; i < 9; i++)
		assert_int_equal(call(&p, 2, 0, 0, &a), 0);
	/* 10 requests now: the 11th is refused on requests. */
	assert_int_equal(call(&p, 0, 0, 0, &a), BL_EAGAIN);
	assert_int_equal(a.dim, BL_DIM_REQUESTS);
	/* Combined tokens: 80 + 100 + 18 = 198 used; 803 does not fit, 802 does. */
	bl_sim_provider_cleanup(&p);
	c.rate[BL_DIM_REQUESTS].limit = 0;
	c.rate[BL_DIM_INPUT_TOKENS].limit = 0;
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(call(&p, 300, 400, 0, &a), 0);
	assert_int_equal(call(&p, 1, 300, 0, &a), BL_EAGAIN);
	assert_int_equal(a.dim, BL_DIM_TOKENS);
	assert_int_equal(call(&p, 0, 300, 0, &a), 0);
	bl_sim_provider_cleanup(&p);
}

/* Fixed windows reset at each boundary, and so admit twice the limit
 * across one. */
static void test_fixed_window(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_FIXED);
	struct bl_sim_provider p;
	struct bl_sim_admission a;

	limit(&c, BL_DIM_REQUESTS, 3, S(10));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(call(&p, 0, 0, 0, &a), 0);
	assert_int_equal(call(&p, 0, 0, S(1), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(2), &a), 0);
	assert_int_equal(call(&p, 0, 0, MS(9500), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(10));
	assert_int_equal(a.retry_after_ns, S(1)); /* 0.5 s, in whole seconds */
	assert_int_equal(call(&p, 0, 0, S(10), &a), 0);
	assert_int_equal(call(&p, 0, 0, MS(19900), &a), 0);
	assert_int_equal(call(&p, 0, 0, MS(19900), &a), 0);
	assert_int_equal(call(&p, 0, 0, MS(19950), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(20));
	assert_int_equal(call(&p, 0, 0, S(20), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(20), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(20), &a), 0);
	/* 5 calls within 19.9 .. 20.0 s: the boundary burst. */
	assert_int_equal(call(&p, 0, 0, S(20), &a), BL_EAGAIN);
	bl_sim_provider_cleanup(&p);
}

/* A correction counts only in the window the call was charged to. */
static void test_fixed_window_correction(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_FIXED);
	struct bl_sim_provider p;
	struct bl_sim_admission a, b;
	struct bl_sim_call x = {0, 800};

	limit(&c, BL_DIM_OUTPUT_TOKENS, 1000, S(60));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &x, 0, &a), 0);
	assert_int_equal(call(&p, 0, 300, S(1), &b), BL_EAGAIN);
	bl_sim_provider_finish(&p, &x, &a, 300, S(2)); /* 500 back */
	assert_int_equal(call(&p, 0, 700, S(2), &b), 0);
	/* Charged at 59 s, finished at 61 s: the new window owes nothing. */
	bl_sim_provider_cleanup(&p);
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &x, S(59), &a), 0);
	assert_int_equal(call(&p, 0, 1000, S(61), &b), 0);
	bl_sim_provider_finish(&p, &x, &a, 0, S(61));
	assert_int_equal(call(&p, 0, 1, S(61), &b), BL_EAGAIN);
	bl_sim_provider_cleanup(&p);
}

/* The sliding window: a unit leaves exactly `per` after it came. */
static void test_sliding_window(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_SLIDING);
	struct bl_sim_provider p;
	struct bl_sim_admission a;

	c.retry_after_round_ns = 0; /* exact */
	limit(&c, BL_DIM_REQUESTS, 3, S(10));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(call(&p, 0, 0, 0, &a), 0);
	assert_int_equal(call(&p, 0, 0, S(1), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(2), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(9), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(10));
	assert_int_equal(a.retry_after_ns, S(1));
	assert_int_equal(call(&p, 0, 0, MS(9999), &a), BL_EAGAIN);
	assert_int_equal(a.retry_after_ns, MS(1));
	assert_int_equal(call(&p, 0, 0, S(10), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(10), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, S(11));
	/* No boundary burst: at 19.9 s the window (9.9, 19.9] holds the call at 10 s. */
	assert_int_equal(call(&p, 0, 0, MS(19900), &a), 0);
	assert_int_equal(call(&p, 0, 0, MS(19900), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(20), &a), 0);
	assert_int_equal(call(&p, 0, 0, S(20), &a), BL_EAGAIN);
	assert_int_equal(a.conform_at_ns, MS(29900));
	bl_sim_provider_cleanup(&p);
}

static void test_sliding_correction(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_SLIDING);
	struct bl_sim_provider p;
	struct bl_sim_admission a, b;
	struct bl_sim_call x = {0, 600};

	limit(&c, BL_DIM_OUTPUT_TOKENS, 1000, S(10));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &x, 0, &a), 0);
	bl_sim_provider_finish(&p, &x, &a, 200, S(1)); /* 200 stay charged at 0 s */
	assert_int_equal(call(&p, 0, 800, S(1), &b), 0);
	/* Full; one more token waits for the 200 charged at 0 s to leave at 10 s. */
	assert_int_equal(call(&p, 0, 1, S(2), &b), BL_EAGAIN);
	assert_int_equal(b.conform_at_ns, S(10));
	assert_int_equal(call(&p, 0, 200, S(10), &b), 0);
	assert_int_equal(call(&p, 0, 1, S(10), &b), BL_EAGAIN);
	assert_int_equal(b.conform_at_ns, S(11));
	bl_sim_provider_cleanup(&p);
}

static void test_concurrency_and_too_large(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_TOKEN_BUCKET);
	struct bl_sim_provider p;
	struct bl_sim_admission a, b, d;
	struct bl_sim_call x = {5, 5};

	c.concurrent = 2;
	limit(&c, BL_DIM_INPUT_TOKENS, 100, S(60));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &x, 0, &a), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &x, 0, &b), 0);
	assert_int_equal(bl_sim_provider_admit(&p, &x, MS(10), &d), BL_EAGAIN);
	assert_true(d.concurrency);
	assert_int_equal(d.conform_at_ns, MS(10));
	assert_int_equal(d.retry_after_ns, BL_SIM_PROVIDER_RETRY_CONCURRENCY_NS);
	bl_sim_provider_finish(&p, &x, &a, 5, MS(20));
	assert_int_equal(bl_sim_provider_admit(&p, &x, MS(20), &d), 0);
	assert_int_equal(call(&p, 101, 0, MS(30), &d), BL_ETOOBIG);
	assert_int_equal(d.dim, BL_DIM_INPUT_TOKENS);
	assert_int_equal(p.too_large, 1);
	bl_sim_provider_cleanup(&p);
}

static void test_outages(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_TOKEN_BUCKET);
	struct bl_sim_provider p;
	double e, f;
	char err[128];

	c.error_rate = 0.01;
	c.outages[0] = (struct bl_sim_outage){S(100), S(60), 1.0, 3.0};
	c.n_outages = 1;
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	bl_sim_provider_conditions(&p, S(99), &e, &f);
	assert_true(e == 0.01 && f == 1.0);
	bl_sim_provider_conditions(&p, S(100), &e, &f);
	assert_true(e == 1.0 && f == 3.0);
	bl_sim_provider_conditions(&p, S(160), &e, &f);
	assert_true(e == 0.01 && f == 1.0);
	bl_sim_provider_cleanup(&p);
	c.outages[0].error_rate = 2;
	assert_int_equal(bl_sim_provider_config_check(&c, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "outages[0]"));
}

/* Property: over every window (t - per, t], a sliding-window provider's
 * admitted units (corrected) never exceed its limit. */
static void test_sliding_property(void **state)
{
	struct bl_sim_provider_config c = cfg(BL_SIM_WINDOW_SLIDING);
	struct bl_sim_provider p;
	struct bl_sim_rng r;
	enum { N = 3000 };
	static bl_time_ns at[N];
	static uint64_t units[N];
	size_t n = 0;
	bl_time_ns now = 0;

	limit(&c, BL_DIM_INPUT_TOKENS, 5000, S(10));
	assert_int_equal(bl_sim_provider_init(&p, &c), 0);
	bl_sim_rng_seed(&r, 7, 0, 0, 0);
	while (n < N) {
		struct bl_sim_admission a;
		uint64_t in = 1 + bl_sim_rng_next(&r) % 400;

		now += (bl_time_ns)(bl_sim_rng_next(&r) % (uint64_t)MS(200));
		if (call(&p, in, 0, now, &a) == 0) {
			at[n] = now;
			units[n++] = in;
		}
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t sum = 0;

		for (size_t j = i; j < n && at[j] < at[i] + S(10); j++)
			sum += units[j];
		assert_true(sum <= 5000);
	}
	bl_sim_provider_cleanup(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_requests),
		cmocka_unit_test(test_bucket_output_correction),
		cmocka_unit_test(test_all_or_nothing),
		cmocka_unit_test(test_fixed_window),
		cmocka_unit_test(test_fixed_window_correction),
		cmocka_unit_test(test_sliding_window),
		cmocka_unit_test(test_sliding_correction),
		cmocka_unit_test(test_concurrency_and_too_large),
		cmocka_unit_test(test_outages),
		cmocka_unit_test(test_sliding_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
