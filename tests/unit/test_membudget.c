/* Unit tests for memory budgets (membudget.h).
 *
 * Table-driven cases for the limits (exact bytes, rounding included) and the
 * admission rule per priority, then the operations one by one, and a property
 * test: seeded random reserve / resize / release / reconfigure sequences run
 * against a plain model of every live reservation.
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

#include "ballast/error.h"
#include "ballast/membudget.h"

/* ---- helpers ------------------------------------------------------------- */

/* xorshift64*: small, seeded, reproducible streams. */
struct rng {
	uint64_t s; /* state, never 0 */
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Uniform in lo..hi inclusive. */
static uint64_t rnd(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(r) % (hi - lo + 1);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 10) : dflt;
}

static struct bl_membudget_config cfg(uint64_t capacity, double buffer, double low, double high)
{
	struct bl_membudget_config c;

	bl_membudget_config_default(&c);
	c.capacity_bytes = capacity;
	c.safety_buffer = buffer;
	c.low = low;
	c.high = high;
	return c;
}

static void init_ok(struct bl_membudget *b, struct bl_membudget_config c)
{
	char err[256];

	assert_int_equal(bl_membudget_config_check(&c, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(bl_membudget_init(b, &c), 0);
}

/* ---- configuration -------------------------------------------------------- */

static void test_config_defaults(void **state)
{
	struct bl_membudget_config c;
	char err[256];

	(void)state;
	bl_membudget_config_default(&c);
	assert_int_equal(c.capacity_bytes, 0);
	assert_true(c.safety_buffer == 0.20);
	assert_true(c.low == 0.80);
	assert_true(c.high == 0.90);
	/* Capacity must be set: the default alone does not pass. */
	assert_int_equal(bl_membudget_config_check(&c, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "capacity_bytes: 0"));
}

static void test_config_rejects(void **state)
{
	static const struct {
		struct bl_membudget_config c;
		const char *msg; /* exact message, or a prefix when it ends in '*' */
	} rows[] = {
		{ { 0, 0.2, 0.8, 0.9 }, "capacity_bytes: 0 must be above 0*" },
		{ { 1000, -0.1, 0.8, 0.9 }, "safety_buffer: -0.10 is outside 0..0.9*" },
		{ { 1000, 0.95, 0.8, 0.9 }, "safety_buffer: 0.95 is outside 0..0.9*" },
		{ { 1000, 0.2, 0.0, 0.9 }, "watermarks.low: 0.00 is outside (0, 1)*" },
		{ { 1000, 0.2, 1.0, 0.9 }, "watermarks.low: 1.00 is outside (0, 1)*" },
		{ { 1000, 0.2, 0.8, 1.01 }, "watermarks.high: 1.01 is outside (0, 1]*" },
		{ { 1000, 0.2, 0.8, 0.0 }, "watermarks.high: 0.00 is outside (0, 1]*" },
		{ { 1000, 0.2, 0.95, 0.90 }, "watermarks.low: 0.95 must be below watermarks.high (0.90)" },
		{ { 1000, 0.2, 0.9, 0.9 }, "watermarks.low: 0.90 must be below watermarks.high (0.90)" },
		{ { 1000, 0.2, 0.8, 0.8000001 },
		  "watermarks.low: 0.80 must be below watermarks.high (0.8000001)" },
		{ { 1, 0.2, 0.8, 0.9 }, "capacity_bytes: 1 leaves no byte below watermarks.low*" },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *want = rows[i].msg;
		size_t n = strlen(want);
		struct bl_membudget b;

		memset(&b, 0xAB, sizeof b);
		assert_int_equal(bl_membudget_config_check(&rows[i].c, err, sizeof err), BL_EINVAL);
		if (want[n - 1] == '*') {
			if (strncmp(err, want, n - 1) != 0)
				fail_msg("row %zu: got \"%s\", want \"%s\"", i, err, want);
		} else {
			assert_string_equal(err, want);
		}
		/* init refuses it and leaves b untouched */
		assert_int_equal(bl_membudget_init(&b, &rows[i].c), BL_EINVAL);
		assert_int_equal(b.reserved_bytes, UINT64_C(0xABABABABABABABAB));
	}
	/* NaN shares are out of range too. */
	{
		struct bl_membudget_config c = cfg(1000, 0.2, 0.8, 0.9);

		c.low = NAN;
		assert_int_equal(bl_membudget_config_check(&c, NULL, 0), BL_EINVAL);
	}
	/* A tiny errcap truncates, NUL-terminated. */
	{
		struct bl_membudget_config c = cfg(0, 0.2, 0.8, 0.9);
		char small[8];

		assert_int_equal(bl_membudget_config_check(&c, small, sizeof small), BL_EINVAL);
		assert_string_equal(small, "capacit");
	}
}

/* ---- limits and rounding ---------------------------------------------------- */

static void test_limits_table(void **state)
{
	static const struct {
		struct bl_membudget_config c;
		uint64_t usable, low, high;
	} rows[] = {
		{ { 1000, 0.20, 0.80, 0.90 }, 800, 640, 720 },
		/* 999 x 0.8 = 799.2 -> 799; 799 x 0.8 = 639.2 -> 639; 799 x 0.9 = 719.1 -> 719 */
		{ { 999, 0.20, 0.80, 0.90 }, 799, 639, 719 },
		/* 16 GiB */
		{ { UINT64_C(17179869184), 0.20, 0.80, 0.90 }, UINT64_C(13743895347),
		  UINT64_C(10995116277), UINT64_C(12369505812) },
		/* 1 TiB, buffer 0.15, band 0.75..0.95 */
		{ { UINT64_C(1) << 40, 0.15, 0.75, 0.95 }, UINT64_C(934584883609),
		  UINT64_C(700938662706), UINT64_C(887855639428) },
		/* Shares finer than a ppm round to the safe side: the buffer up
		 * (0.1000004 -> 100001 ppm), the watermarks down (0.8000004 -> 800000). */
		{ { 1000007, 0.1000004, 0.8000004, 0.90 }, 900005, 720004, 810004 },
		/* No buffer, high watermark 1: normal may take all of capacity. */
		{ { 1000, 0.0, 0.5, 1.0 }, 1000, 500, 1000 },
		/* Largest buffer. */
		{ { 1000, 0.9, 0.8, 0.9 }, 100, 80, 90 },
		/* Tiny capacity: 7 x 0.85 = 5.95 -> 5; 5 x 0.5 = 2.5 -> 2; 5 x 0.75 = 3.75 -> 3 */
		{ { 7, 0.15, 0.5, 0.75 }, 5, 2, 3 },
		/* The largest capacity: no overflow anywhere. */
		{ { UINT64_MAX, 0.20, 0.80, 0.90 }, UINT64_C(14757395258967641292),
		  UINT64_C(11805916207174113033), UINT64_C(13281655733070877162) },
	};

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_membudget b;
		struct bl_membudget_stats st;

		init_ok(&b, rows[i].c);
		bl_membudget_stats(&b, &st);
		if (st.usable_bytes != rows[i].usable || st.low_limit_bytes != rows[i].low ||
		    st.high_limit_bytes != rows[i].high)
			fail_msg("row %zu: usable/low/high %llu/%llu/%llu, want %llu/%llu/%llu", i,
				 (unsigned long long)st.usable_bytes,
				 (unsigned long long)st.low_limit_bytes,
				 (unsigned long long)st.high_limit_bytes,
				 (unsigned long long)rows[i].usable, (unsigned long long)rows[i].low,
				 (unsigned long long)rows[i].high);
		assert_int_equal(st.capacity_bytes, rows[i].c.capacity_bytes);
		assert_int_equal(st.buffer_bytes, rows[i].c.capacity_bytes - rows[i].usable);
		assert_int_equal(bl_membudget_limit(&b, BL_MEM_LOW), rows[i].low);
		assert_int_equal(bl_membudget_limit(&b, BL_MEM_NORMAL), rows[i].high);
		assert_int_equal(bl_membudget_limit(&b, BL_MEM_CRITICAL), rows[i].c.capacity_bytes);
		assert_int_equal(bl_membudget_limit(&b, (enum bl_mem_priority)7), 0);
	}
}

/* For every row and priority: from empty, exactly the limit fits and one byte
 * more is too big; with the limit minus k reserved, k fits and k + 1 does not
 * (not now). */
static void test_admission_boundaries(void **state)
{
	static const struct bl_membudget_config rows[] = {
		{ 1000, 0.20, 0.80, 0.90 },
		{ 999, 0.20, 0.80, 0.90 },
		{ UINT64_C(17179869184), 0.20, 0.80, 0.90 },
		{ 7, 0.15, 0.5, 0.75 },
		{ UINT64_MAX, 0.20, 0.80, 0.90 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++) {
			struct bl_membudget b;
			struct bl_membudget_decision d;
			uint64_t limit;
			uint64_t k;

			init_ok(&b, rows[i]);
			limit = bl_membudget_limit(&b, (enum bl_mem_priority)p);
			k = limit / 2 > 0 ? limit / 2 : 1;

			if (limit < UINT64_MAX) {
				assert_false(bl_membudget_would_admit(&b, limit + 1, (enum bl_mem_priority)p));
				assert_int_equal(bl_membudget_reserve(&b, limit + 1, (enum bl_mem_priority)p, &d),
						 BL_ETOOBIG);
				assert_int_equal(d.limit_bytes, limit);
				assert_int_equal(d.available_bytes, limit);
				assert_int_equal(b.denials, 0); /* too big is not a denial */
				assert_int_equal(b.reserved_bytes, 0);
			}

			assert_true(bl_membudget_would_admit(&b, limit, (enum bl_mem_priority)p));
			assert_int_equal(bl_membudget_reserve(&b, limit, (enum bl_mem_priority)p, &d), 0);
			assert_int_equal(b.reserved_bytes, limit);
			assert_int_equal(bl_membudget_release(&b, limit, (enum bl_mem_priority)p), 0);

			assert_int_equal(bl_membudget_reserve(&b, limit - k, (enum bl_mem_priority)p, NULL), 0);
			assert_false(bl_membudget_would_admit(&b, k + 1, (enum bl_mem_priority)p));
			assert_int_equal(bl_membudget_reserve(&b, k + 1, (enum bl_mem_priority)p, &d),
					 BL_EAGAIN);
			assert_int_equal(d.available_bytes, k);
			assert_int_equal(b.denials, 1);
			assert_int_equal(b.reserved_bytes, limit - k);
			assert_true(bl_membudget_would_admit(&b, k, (enum bl_mem_priority)p));
			assert_int_equal(bl_membudget_reserve(&b, k, (enum bl_mem_priority)p, NULL), 0);
			assert_int_equal(b.reserved_bytes, limit);
			assert_int_equal(bl_membudget_available(&b, (enum bl_mem_priority)p), 0);
			assert_false(bl_membudget_would_admit(&b, 1, (enum bl_mem_priority)p));
		}
	}
}

/* The priorities against one another, capacity 1000 (usable 800, low 640,
 * high 720): each step's answer depends on what the others hold. */
static void test_admission_priorities(void **state)
{
	static const struct {
		enum bl_mem_priority p;
		uint64_t bytes;
		int rc;
		uint64_t reserved_after;
	} steps[] = {
		{ BL_MEM_NORMAL, 600, 0, 600 },
		{ BL_MEM_LOW, 41, BL_EAGAIN, 600 },  /* 641 > 640 */
		{ BL_MEM_LOW, 40, 0, 640 },          /* exactly the low watermark */
		{ BL_MEM_LOW, 1, BL_EAGAIN, 640 },
		{ BL_MEM_NORMAL, 81, BL_EAGAIN, 640 }, /* 721 > 720 */
		{ BL_MEM_NORMAL, 80, 0, 720 },       /* exactly the high watermark */
		{ BL_MEM_NORMAL, 1, BL_EAGAIN, 720 },
		{ BL_MEM_NORMAL, 721, BL_ETOOBIG, 720 }, /* never, even when empty */
		{ BL_MEM_CRITICAL, 281, BL_EAGAIN, 720 }, /* 1001 > capacity */
		{ BL_MEM_CRITICAL, 280, 0, 1000 },   /* into the buffer, up to capacity */
		{ BL_MEM_CRITICAL, 1, BL_EAGAIN, 1000 },
		{ BL_MEM_CRITICAL, 1001, BL_ETOOBIG, 1000 },
		{ BL_MEM_LOW, 641, BL_ETOOBIG, 1000 },
	};
	struct bl_membudget b;

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		int rc;

		assert_int_equal(bl_membudget_would_admit(&b, steps[i].bytes, steps[i].p),
				 steps[i].rc == 0);
		rc = bl_membudget_reserve(&b, steps[i].bytes, steps[i].p, NULL);
		if (rc != steps[i].rc || b.reserved_bytes != steps[i].reserved_after)
			fail_msg("step %zu: rc %s reserved %llu, want %s %llu", i, bl_errname(rc),
				 (unsigned long long)b.reserved_bytes, bl_errname(steps[i].rc),
				 (unsigned long long)steps[i].reserved_after);
	}
	assert_int_equal(b.grants, 4);
	assert_int_equal(b.denials, 6);
	assert_int_equal(b.bytes[BL_MEM_LOW], 40);
	assert_int_equal(b.bytes[BL_MEM_NORMAL], 680);
	assert_int_equal(b.bytes[BL_MEM_CRITICAL], 280);
	assert_int_equal(b.count[BL_MEM_NORMAL], 2);
	/* Nothing normal gets in after a critical release until reserved is back
	 * below the high watermark. */
	assert_int_equal(bl_membudget_release(&b, 280, BL_MEM_CRITICAL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 1, BL_MEM_NORMAL, NULL), BL_EAGAIN);
}

static void test_reserve_invalid(void **state)
{
	struct bl_membudget b;
	struct bl_membudget_decision d = { 7, 7 };

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_reserve(&b, 0, BL_MEM_NORMAL, &d), BL_EINVAL);
	assert_int_equal(bl_membudget_reserve(&b, 1, (enum bl_mem_priority)3, &d), BL_EINVAL);
	assert_int_equal(d.limit_bytes, 7);
	assert_false(bl_membudget_would_admit(&b, 0, BL_MEM_NORMAL));
	assert_false(bl_membudget_would_admit(&b, 1, (enum bl_mem_priority)3));
	assert_int_equal(b.denials, 0);
	assert_int_equal(b.reserved_bytes, 0);
	/* UINT64_MAX is simply too big. */
	assert_int_equal(bl_membudget_reserve(&b, UINT64_MAX, BL_MEM_CRITICAL, &d), BL_ETOOBIG);
	assert_int_equal(d.limit_bytes, 1000);
}

/* ---- resize and release ----------------------------------------------------- */

static void test_resize(void **state)
{
	struct bl_membudget b;
	struct bl_membudget_decision d;

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9)); /* low 640, high 720 */
	assert_int_equal(bl_membudget_reserve(&b, 100, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 500, BL_MEM_LOW, NULL), 0);

	/* Growth obeys the rule: the normal one may reach 220 (600 + 120 = 720). */
	assert_int_equal(bl_membudget_resize(&b, 100, 221, BL_MEM_NORMAL, &d), BL_EAGAIN);
	assert_int_equal(d.available_bytes, 120);
	assert_int_equal(b.reserved_bytes, 600);
	assert_int_equal(b.denials, 1);
	assert_int_equal(bl_membudget_resize(&b, 100, 220, BL_MEM_NORMAL, &d), 0);
	assert_int_equal(b.reserved_bytes, 720);
	assert_int_equal(b.bytes[BL_MEM_NORMAL], 220);
	assert_int_equal(b.high_water_bytes, 720);
	assert_int_equal(b.grants, 3);

	/* A new size above the priority's limit can never fit. */
	assert_int_equal(bl_membudget_resize(&b, 220, 721, BL_MEM_NORMAL, &d), BL_ETOOBIG);
	assert_int_equal(d.limit_bytes, 720);
	assert_int_equal(b.denials, 1);
	/* The low one cannot grow: reserved is above the low watermark. */
	assert_int_equal(bl_membudget_resize(&b, 500, 501, BL_MEM_LOW, NULL), BL_EAGAIN);

	/* Shrinking always succeeds, even above the watermarks, and to 0. */
	assert_int_equal(bl_membudget_resize(&b, 500, 10, BL_MEM_LOW, NULL), 0);
	assert_int_equal(b.reserved_bytes, 230);
	assert_int_equal(bl_membudget_resize(&b, 10, 0, BL_MEM_LOW, &d), 0);
	assert_int_equal(b.reserved_bytes, 220);
	assert_int_equal(b.count[BL_MEM_LOW], 1);
	/* Same size: nothing happens. */
	assert_int_equal(bl_membudget_resize(&b, 220, 220, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(b.reserved_bytes, 220);
	assert_int_equal(b.high_water_bytes, 720);
	/* The empty low reservation is released with 0 bytes. */
	assert_int_equal(bl_membudget_release(&b, 0, BL_MEM_LOW), 0);
	assert_int_equal(b.count[BL_MEM_LOW], 0);
}

static void test_resize_release_errors_leave_state(void **state)
{
	struct bl_membudget b, before;

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_reserve(&b, 100, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 50, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 30, BL_MEM_CRITICAL, NULL), 0);
	before = b;

	/* release: more than the priority holds, a priority with nothing held,
	 * the last reservation with the wrong size, out of range */
	assert_int_equal(bl_membudget_release(&b, 151, BL_MEM_NORMAL), BL_EINVAL);
	assert_int_equal(bl_membudget_release(&b, 1, BL_MEM_LOW), BL_EINVAL);
	assert_int_equal(bl_membudget_release(&b, 0, BL_MEM_LOW), BL_EINVAL);
	assert_int_equal(bl_membudget_release(&b, 29, BL_MEM_CRITICAL), BL_EINVAL);
	assert_int_equal(bl_membudget_release(&b, 31, BL_MEM_CRITICAL), BL_EINVAL);
	assert_int_equal(bl_membudget_release(&b, UINT64_MAX, BL_MEM_CRITICAL), BL_EINVAL);
	assert_int_equal(bl_membudget_release(&b, 1, (enum bl_mem_priority)-1), BL_EINVAL);
	/* resize: the same mistakes */
	assert_int_equal(bl_membudget_resize(&b, 151, 10, BL_MEM_NORMAL, NULL), BL_EINVAL);
	assert_int_equal(bl_membudget_resize(&b, 0, 10, BL_MEM_LOW, NULL), BL_EINVAL);
	assert_int_equal(bl_membudget_resize(&b, 20, 10, BL_MEM_CRITICAL, NULL), BL_EINVAL);
	assert_int_equal(bl_membudget_resize(&b, 1, 2, (enum bl_mem_priority)9, NULL), BL_EINVAL);
	assert_memory_equal(&b, &before, sizeof b);

	/* Everything released: totals back to zero, no underflow left. */
	assert_int_equal(bl_membudget_release(&b, 100, BL_MEM_NORMAL), 0);
	assert_int_equal(bl_membudget_release(&b, 50, BL_MEM_NORMAL), 0);
	assert_int_equal(bl_membudget_release(&b, 30, BL_MEM_CRITICAL), 0);
	assert_int_equal(b.reserved_bytes, 0);
	before = b;
	assert_int_equal(bl_membudget_release(&b, 0, BL_MEM_NORMAL), BL_EINVAL);
	assert_memory_equal(&b, &before, sizeof b);
}

/* ---- pressure and utilization ----------------------------------------------- */

static void test_pressure_transitions(void **state)
{
	static const struct {
		uint64_t reserved;
		enum bl_mem_pressure want;
	} rows[] = {
		{ 0, BL_MEM_PRESSURE_OK },      { 639, BL_MEM_PRESSURE_OK },
		{ 640, BL_MEM_PRESSURE_HIGH },  { 700, BL_MEM_PRESSURE_HIGH },
		{ 720, BL_MEM_PRESSURE_HIGH },  { 721, BL_MEM_PRESSURE_CRITICAL },
		{ 1000, BL_MEM_PRESSURE_CRITICAL }, { 720, BL_MEM_PRESSURE_HIGH },
		{ 639, BL_MEM_PRESSURE_OK },
	};
	struct bl_membudget b;
	uint64_t held = 0;

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_reserve(&b, 1, BL_MEM_CRITICAL, NULL), 0);
	held = 1;
	assert_int_equal(bl_membudget_release(&b, 1, BL_MEM_CRITICAL), 0);
	held = 0;
	/* One critical reservation resized up and down walks through the levels. */
	assert_int_equal(bl_membudget_reserve(&b, 1, BL_MEM_CRITICAL, NULL), 0);
	held = 1;
	assert_int_equal(bl_membudget_resize(&b, 1, 0, BL_MEM_CRITICAL, NULL), 0);
	held = 0;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_membudget_stats st;

		assert_int_equal(bl_membudget_resize(&b, held, rows[i].reserved, BL_MEM_CRITICAL, NULL), 0);
		held = rows[i].reserved;
		assert_int_equal(b.reserved_bytes, rows[i].reserved);
		if (bl_membudget_pressure(&b) != rows[i].want)
			fail_msg("row %zu: reserved %llu: pressure %s, want %s", i,
				 (unsigned long long)rows[i].reserved,
				 bl_mem_pressure_name(bl_membudget_pressure(&b)),
				 bl_mem_pressure_name(rows[i].want));
		assert_true(bl_membudget_utilization(&b) == (double)rows[i].reserved / 800.0);
		bl_membudget_stats(&b, &st);
		assert_int_equal(st.pressure, rows[i].want);
		assert_true(st.utilization == (double)rows[i].reserved / 800.0);
	}
	assert_int_equal(b.high_water_bytes, 1000);
}

static void test_names(void **state)
{
	enum bl_mem_priority p = BL_MEM_NORMAL;

	(void)state;
	assert_int_equal(bl_mem_priority_parse("low", 3, &p), 0);
	assert_int_equal(p, BL_MEM_LOW);
	assert_int_equal(bl_mem_priority_parse("critical!", 8, &p), 0);
	assert_int_equal(p, BL_MEM_CRITICAL);
	assert_int_equal(bl_mem_priority_parse("normal", 6, &p), 0);
	assert_int_equal(p, BL_MEM_NORMAL);
	assert_int_equal(bl_mem_priority_parse("Normal", 6, &p), BL_EINVAL);
	assert_int_equal(bl_mem_priority_parse("high", 4, &p), BL_EINVAL);
	assert_int_equal(bl_mem_priority_parse("low", 2, &p), BL_EINVAL);
	assert_int_equal(bl_mem_priority_parse("", 0, &p), BL_EINVAL);
	assert_int_equal(p, BL_MEM_NORMAL);
	assert_string_equal(bl_mem_priority_name(BL_MEM_LOW), "low");
	assert_string_equal(bl_mem_priority_name(BL_MEM_NORMAL), "normal");
	assert_string_equal(bl_mem_priority_name(BL_MEM_CRITICAL), "critical");
	assert_string_equal(bl_mem_priority_name((enum bl_mem_priority)3), "unknown");
	assert_string_equal(bl_mem_pressure_name(BL_MEM_PRESSURE_OK), "ok");
	assert_string_equal(bl_mem_pressure_name(BL_MEM_PRESSURE_HIGH), "high");
	assert_string_equal(bl_mem_pressure_name(BL_MEM_PRESSURE_CRITICAL), "critical");
	assert_string_equal(bl_mem_pressure_name((enum bl_mem_pressure)5), "unknown");
	assert_int_equal(bl_mem_priority_waitq_class(BL_MEM_LOW), BL_WAITQ_LOW);
	assert_int_equal(bl_mem_priority_waitq_class(BL_MEM_NORMAL), BL_WAITQ_NORMAL);
	assert_int_equal(bl_mem_priority_waitq_class(BL_MEM_CRITICAL), BL_WAITQ_CRITICAL);
}

/* ---- reconfigure ------------------------------------------------------------ */

static void test_reconfigure_keeps_reservations(void **state)
{
	struct bl_membudget b, before;
	struct bl_membudget_config bad = cfg(1000, 0.2, 0.95, 0.9);
	struct bl_membudget_config small = cfg(500, 0.2, 0.8, 0.9); /* usable 400, 320/360 */
	struct bl_membudget_stats st;

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_reserve(&b, 300, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 300, BL_MEM_LOW, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 100, BL_MEM_CRITICAL, NULL), 0);

	before = b;
	assert_int_equal(bl_membudget_reconfigure(&b, &bad), BL_EINVAL);
	assert_memory_equal(&b, &before, sizeof b);

	/* Shrinking the capacity below what is reserved takes nothing back. */
	assert_int_equal(bl_membudget_reconfigure(&b, &small), 0);
	bl_membudget_stats(&b, &st);
	assert_int_equal(st.capacity_bytes, 500);
	assert_int_equal(st.usable_bytes, 400);
	assert_int_equal(st.low_limit_bytes, 320);
	assert_int_equal(st.high_limit_bytes, 360);
	assert_int_equal(st.reserved_bytes, 700);
	assert_int_equal(st.count[BL_MEM_LOW], 1);
	assert_int_equal(st.count[BL_MEM_NORMAL], 1);
	assert_int_equal(st.count[BL_MEM_CRITICAL], 1);
	assert_int_equal(st.pressure, BL_MEM_PRESSURE_CRITICAL);
	assert_int_equal(st.available_bytes[BL_MEM_CRITICAL], 0);
	assert_true(st.utilization == 700.0 / 400.0);
	/* Nothing new is admitted, not even critical; too-big follows the new limits. */
	assert_int_equal(bl_membudget_reserve(&b, 1, BL_MEM_CRITICAL, NULL), BL_EAGAIN);
	assert_int_equal(bl_membudget_reserve(&b, 501, BL_MEM_CRITICAL, NULL), BL_ETOOBIG);
	assert_int_equal(bl_membudget_resize(&b, 100, 101, BL_MEM_CRITICAL, NULL), BL_EAGAIN);
	/* Shrinking and releasing work; admission resumes under the new limits. */
	assert_int_equal(bl_membudget_release(&b, 300, BL_MEM_LOW), 0);
	assert_int_equal(bl_membudget_resize(&b, 300, 200, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(b.reserved_bytes, 300);
	assert_int_equal(bl_membudget_reserve(&b, 21, BL_MEM_LOW, NULL), BL_EAGAIN);
	assert_int_equal(bl_membudget_reserve(&b, 20, BL_MEM_LOW, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 40, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&b, 140, BL_MEM_CRITICAL, NULL), 0);
	assert_int_equal(b.reserved_bytes, 500);
	assert_int_equal(b.high_water_bytes, 700);

	/* Growing it back opens room at once. */
	assert_int_equal(bl_membudget_reconfigure(&b, &before.config), 0);
	assert_int_equal(bl_membudget_available(&b, BL_MEM_NORMAL), 220);
	assert_int_equal(bl_membudget_limit(&b, BL_MEM_LOW), 640);
}

/* ---- state ------------------------------------------------------------------ */

static void test_state_round_trip(void **state)
{
	struct bl_membudget a, b;
	struct bl_membudget_state st, st2;

	(void)state;
	init_ok(&a, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_reserve(&a, 100, BL_MEM_LOW, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&a, 600, BL_MEM_NORMAL, NULL), 0);
	assert_int_equal(bl_membudget_reserve(&a, 50, BL_MEM_NORMAL, NULL), BL_EAGAIN);
	assert_int_equal(bl_membudget_reserve(&a, 250, BL_MEM_CRITICAL, NULL), 0);
	assert_int_equal(bl_membudget_release(&a, 250, BL_MEM_CRITICAL), 0);
	bl_membudget_state_get(&a, &st);
	assert_int_equal(st.bytes[BL_MEM_LOW], 100);
	assert_int_equal(st.count[BL_MEM_NORMAL], 1);
	assert_int_equal(st.high_water_bytes, 950);
	assert_int_equal(st.grants, 3);
	assert_int_equal(st.denials, 1);

	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_state_set(&b, &st), 0);
	assert_memory_equal(&a, &b, sizeof a);
	bl_membudget_state_get(&b, &st2);
	assert_memory_equal(&st, &st2, sizeof st);

	/* Into a smaller budget: kept as on reconfigure. */
	init_ok(&b, cfg(500, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_state_set(&b, &st), 0);
	assert_int_equal(b.reserved_bytes, 700);
	assert_int_equal(bl_membudget_pressure(&b), BL_MEM_PRESSURE_CRITICAL);
	assert_int_equal(bl_membudget_reserve(&b, 1, BL_MEM_CRITICAL, NULL), BL_EAGAIN);
}

static void test_state_rejects(void **state)
{
	struct bl_membudget b, before;
	struct bl_membudget_state st;

	(void)state;
	init_ok(&b, cfg(1000, 0.2, 0.8, 0.9));
	assert_int_equal(bl_membudget_reserve(&b, 10, BL_MEM_LOW, NULL), 0);
	before = b;

	/* bytes with no reservation to hold them */
	memset(&st, 0, sizeof st);
	st.bytes[BL_MEM_NORMAL] = 5;
	st.high_water_bytes = 5;
	assert_int_equal(bl_membudget_state_set(&b, &st), BL_EINVAL);
	/* high-water below the total */
	memset(&st, 0, sizeof st);
	st.bytes[BL_MEM_NORMAL] = 5;
	st.count[BL_MEM_NORMAL] = 1;
	st.high_water_bytes = 4;
	assert_int_equal(bl_membudget_state_set(&b, &st), BL_EINVAL);
	/* a total that overflows */
	memset(&st, 0, sizeof st);
	st.bytes[BL_MEM_LOW] = UINT64_MAX;
	st.bytes[BL_MEM_CRITICAL] = 1;
	st.count[BL_MEM_LOW] = 1;
	st.count[BL_MEM_CRITICAL] = 1;
	st.high_water_bytes = UINT64_MAX;
	assert_int_equal(bl_membudget_state_set(&b, &st), BL_EINVAL);
	assert_memory_equal(&b, &before, sizeof b);

	/* Reservations of 0 bytes (shrunk to nothing) are fine. */
	memset(&st, 0, sizeof st);
	st.count[BL_MEM_LOW] = 2;
	assert_int_equal(bl_membudget_state_set(&b, &st), 0);
	assert_int_equal(b.reserved_bytes, 0);
	assert_int_equal(b.count[BL_MEM_LOW], 2);
}

/* ---- property: random sequences against a model ---------------------------- */

#define MODEL_MAX 64

struct model_res {
	uint64_t bytes;         /* what the reservation holds */
	enum bl_mem_priority p; /* its priority */
};

struct model {
	struct model_res res[MODEL_MAX]; /* live reservations */
	size_t n;                        /* how many */
	uint64_t reserved;               /* sum of res[].bytes */
	uint64_t grants, denials;
};

static void check_against_model(const struct bl_membudget *b, const struct model *m)
{
	uint64_t bytes[BL_MEM_PRIORITY_COUNT] = { 0 }, count[BL_MEM_PRIORITY_COUNT] = { 0 };
	struct bl_membudget_stats st;

	for (size_t i = 0; i < m->n; i++) {
		bytes[m->res[i].p] += m->res[i].bytes;
		count[m->res[i].p]++;
	}
	bl_membudget_stats(b, &st);
	assert_int_equal(st.reserved_bytes, m->reserved);
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++) {
		uint64_t lim = bl_membudget_limit(b, (enum bl_mem_priority)p);

		assert_int_equal(st.bytes[p], bytes[p]);
		assert_int_equal(st.count[p], count[p]);
		assert_int_equal(st.available_bytes[p], m->reserved < lim ? lim - m->reserved : 0);
	}
	assert_int_equal(st.grants, m->grants);
	assert_int_equal(st.denials, m->denials);
	assert_true(st.high_water_bytes >= st.reserved_bytes);
	assert_int_equal(st.pressure, m->reserved < st.low_limit_bytes    ? BL_MEM_PRESSURE_OK
				      : m->reserved <= st.high_limit_bytes ? BL_MEM_PRESSURE_HIGH
									   : BL_MEM_PRESSURE_CRITICAL);
}

static void test_random_against_model(void **state)
{
	static const struct bl_membudget_config configs[] = {
		{ 1000, 0.20, 0.80, 0.90 },
		{ 999, 0.20, 0.80, 0.90 },
		{ 700, 0.10, 0.50, 0.95 },
		{ 1300, 0.30, 0.60, 1.00 },
	};
	uint64_t seeds = env_u64("BL_TEST_SEEDS", 50);
	uint64_t steps = env_u64("BL_TEST_STEPS", 4000);

	(void)state;
	for (uint64_t seed = 1; seed <= seeds; seed++) {
		struct rng r = { seed * UINT64_C(0x9E3779B97F4A7C15) | 1 };
		struct bl_membudget b;
		struct model m;
		uint64_t cap;

		memset(&m, 0, sizeof m);
		init_ok(&b, configs[0]);
		cap = configs[0].capacity_bytes;
		for (uint64_t step = 0; step < steps; step++) {
			unsigned op = (unsigned)rnd(&r, 0, 99);

			if (op < 45 && m.n < MODEL_MAX) {
				enum bl_mem_priority p = (enum bl_mem_priority)rnd(&r, 0, 2);
				uint64_t n = rnd(&r, 1, cap / 3);
				uint64_t lim = bl_membudget_limit(&b, p);
				int want = n > lim ? BL_ETOOBIG
					   : (m.reserved <= lim && n <= lim - m.reserved) ? 0
											  : BL_EAGAIN;
				bool would = bl_membudget_would_admit(&b, n, p);
				int rc = bl_membudget_reserve(&b, n, p, NULL);

				if (rc != want)
					fail_msg("seed %llu step %llu: reserve %llu %s: %s, want %s",
						 (unsigned long long)seed, (unsigned long long)step,
						 (unsigned long long)n, bl_mem_priority_name(p),
						 bl_errname(rc), bl_errname(want));
				assert_int_equal(would, rc == 0);
				if (rc == 0) {
					m.res[m.n++] = (struct model_res){ n, p };
					m.reserved += n;
					m.grants++;
					/* the invariants at admission */
					assert_true(m.reserved <= lim);
					assert_true(m.reserved <= cap);
				} else if (rc == BL_EAGAIN) {
					m.denials++;
				}
			} else if (op < 70 && m.n > 0) {
				size_t i = (size_t)rnd(&r, 0, m.n - 1);
				struct model_res *x = &m.res[i];
				uint64_t nb = rnd(&r, 0, x->bytes * 2 + 1);
				uint64_t lim = bl_membudget_limit(&b, x->p);
				int want = 0;
				int rc;

				if (nb > x->bytes) {
					uint64_t grow = nb - x->bytes;

					want = nb > lim ? BL_ETOOBIG
					       : (m.reserved <= lim && grow <= lim - m.reserved) ? 0
												 : BL_EAGAIN;
				}
				rc = bl_membudget_resize(&b, x->bytes, nb, x->p, NULL);
				assert_int_equal(rc, want);
				if (rc == 0) {
					if (nb > x->bytes) {
						m.grants++;
						m.reserved += nb - x->bytes;
						assert_true(m.reserved <= lim);
						assert_true(m.reserved <= cap);
					} else {
						m.reserved -= x->bytes - nb;
					}
					x->bytes = nb;
				} else if (rc == BL_EAGAIN) {
					m.denials++;
				}
			} else if (op < 97 && m.n > 0) {
				size_t i = (size_t)rnd(&r, 0, m.n - 1);
				struct bl_membudget before = b;
				enum bl_mem_priority p = m.res[i].p;

				/* A release that asks for more than p holds fails cleanly. */
				assert_int_equal(bl_membudget_release(&b, b.bytes[p] + 1, p), BL_EINVAL);
				assert_memory_equal(&b, &before, sizeof b);
				assert_int_equal(bl_membudget_release(&b, m.res[i].bytes, p), 0);
				m.reserved -= m.res[i].bytes;
				m.res[i] = m.res[--m.n];
			} else {
				const struct bl_membudget_config *c = &configs[rnd(&r, 0, 3)];

				assert_int_equal(bl_membudget_reconfigure(&b, c), 0);
				cap = c->capacity_bytes;
			}
			check_against_model(&b, &m);
		}
		/* Release everything: back to zero. */
		while (m.n > 0) {
			assert_int_equal(bl_membudget_release(&b, m.res[m.n - 1].bytes, m.res[m.n - 1].p), 0);
			m.reserved -= m.res[--m.n].bytes;
		}
		check_against_model(&b, &m);
		assert_int_equal(b.reserved_bytes, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_rejects),
		cmocka_unit_test(test_limits_table),
		cmocka_unit_test(test_admission_boundaries),
		cmocka_unit_test(test_admission_priorities),
		cmocka_unit_test(test_reserve_invalid),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_resize_release_errors_leave_state),
		cmocka_unit_test(test_pressure_transitions),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_reconfigure_keeps_reservations),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_rejects),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
