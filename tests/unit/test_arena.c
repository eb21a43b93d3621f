/* Unit tests for the arena: alignment, exact statistics, block chaining, large
 * allocations, the cap, marks nested three deep, stale marks refused, reset,
 * seeded random sequences of allocations, marks and rollbacks checked against
 * a shadow model, and allocation failure injected at every hook call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/arena.h"
#include "ballast/error.h"

#include "alloc_hook_test.h"

static struct bl_arena *make(size_t block_bytes, size_t max_bytes)
{
	struct bl_arena_config cfg = {
		.block_bytes = block_bytes,
		.max_bytes = max_bytes,
		.hook = &test_hook,
	};
	struct bl_arena *a = NULL;

	assert_int_equal(bl_arena_create(&cfg, &a), 0);
	assert_non_null(a);
	return a;
}

static void fill(void *p, size_t n, unsigned id)
{
	unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(id * 31u + i);
}

static void check_fill(const void *p, size_t n, unsigned id)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		assert_int_equal(b[i], (unsigned char)(id * 31u + i));
}

static struct bl_arena_stats stats(const struct bl_arena *a)
{
	struct bl_arena_stats st;

	bl_arena_stats(a, &st);
	return st;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_create_invalid(void **state)
{
	struct bl_arena_config cfg = { .hook = &test_hook };
	struct bl_alloc_hook half = { NULL, t_free, &hs };
	struct bl_arena *a = (struct bl_arena *)&cfg;

	(void)state;
	assert_int_equal(bl_arena_create(NULL, &a), BL_EINVAL);
	assert_int_equal(bl_arena_create(&cfg, NULL), BL_EINVAL);
	cfg.hook = &half;
	assert_int_equal(bl_arena_create(&cfg, &a), BL_EINVAL);
	cfg.hook = &test_hook;
	cfg.block_bytes = SIZE_MAX / 2;
	assert_int_equal(bl_arena_create(&cfg, &a), BL_EINVAL);
	cfg.block_bytes = 1024;
	cfg.max_bytes = 1000; /* cannot hold the first block */
	assert_int_equal(bl_arena_create(&cfg, &a), BL_EFULL);
	assert_ptr_equal(a, (struct bl_arena *)&cfg);
	bl_arena_destroy(NULL);
}

static void test_default_hook(void **state)
{
	struct bl_arena_config cfg = { 0 };
	struct bl_arena *a = NULL;

	(void)state;
	assert_int_equal(bl_arena_create(&cfg, &a), 0);
	for (int i = 0; i < 1000; i++) {
		char *p = bl_arena_alloc(a, 100, 0);
		assert_non_null(p);
		memset(p, 1, 100);
	}
	assert_non_null(bl_arena_alloc(a, 1 << 20, 0));
	bl_arena_destroy(a);
}

static void test_alignment_and_stats(void **state)
{
	struct bl_arena *a = make(4096, 0);
	struct bl_arena_stats st0 = stats(a), st;
	static const size_t aligns[] = { 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 };

	(void)state;
	assert_int_equal(st0.used, 0);
	assert_int_equal(st0.blocks, 1);
	assert_int_equal(st0.large_blocks, 0);
	assert_int_equal(hs.live, 2); /* the arena struct and the first block */
	assert_true(hs.live_bytes > st0.reserved);
	assert_true(st0.reserved >= 4096 && st0.reserved < 4096 + 128);

	/* exact accounting for MAXA-sized, MAXA-aligned requests */
	for (int i = 1; i <= 10; i++) {
		char *p = bl_arena_alloc(a, MAXA, 0);
		assert_int_equal((uintptr_t)p % MAXA, 0);
		assert_int_equal(stats(a).used, (size_t)i * MAXA);
	}
	/* 1 byte then MAXA alignment: padding counts as used */
	assert_non_null(bl_arena_alloc(a, 1, 1));
	assert_int_equal(stats(a).used, 10 * MAXA + 1);
	assert_non_null(bl_arena_alloc(a, 1, 0));
	assert_int_equal(stats(a).used, 11 * MAXA + 1);
	assert_non_null(bl_arena_alloc(a, 0, 1)); /* 0 counts as 1 */
	assert_int_equal(stats(a).used, 11 * MAXA + 2);
	bl_arena_reset(a);

	for (int round = 0; round < 50; round++) {
		for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
			size_t al = aligns[k] ? aligns[k] : MAXA;
			size_t n = 1 + (size_t)(round * 13 + k) % 97;
			char *p = bl_arena_alloc(a, n, aligns[k]);

			assert_non_null(p);
			assert_int_equal((uintptr_t)p % al, 0);
			memset(p, 0x77, n);
		}
	}
	st = stats(a);
	assert_true(st.blocks > 1);
	assert_int_equal(st.reserved, st0.reserved * st.blocks);
	assert_true(st.used <= st.blocks * 4096);
	assert_int_equal(st.high_water, st.used);

	assert_null(bl_arena_alloc(a, 8, 3));
	assert_int_equal(bl_arena_last_error(a), BL_EINVAL);
	assert_null(bl_arena_alloc(a, 8, 48));
	assert_int_equal(stats(a).failed_allocs, 2);
	assert_non_null(bl_arena_alloc(a, 8, 8));
	assert_int_equal(bl_arena_last_error(a), 0);
	assert_null(bl_arena_alloc(a, SIZE_MAX, 0));
	assert_int_equal(bl_arena_last_error(a), BL_ENOMEM);
	assert_null(bl_arena_alloc(a, 8, (size_t)1 << (sizeof(size_t) * 8 - 1)));
	assert_int_equal(stats(a).failed_allocs, 4);
	assert_int_equal(bl_arena_last_error(a), BL_ENOMEM);
	bl_arena_destroy(a);
}

static void test_zalloc(void **state)
{
	struct bl_arena *a = make(512, 0);
	struct bl_arena_mark m = bl_arena_mark(a);
	unsigned char *p;

	(void)state;
	p = bl_arena_alloc(a, 300, 0);
	memset(p, 0xff, 300);
	assert_int_equal(bl_arena_rollback(a, &m), 0);
	p = bl_arena_zalloc(a, 300, 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(p[i], 0);
	p = bl_arena_zalloc(a, 5000, 64); /* large */
	assert_int_equal((uintptr_t)p % 64, 0);
	for (int i = 0; i < 5000; i++)
		assert_int_equal(p[i], 0);
	bl_arena_destroy(a);
}

static void test_chaining_and_large(void **state)
{
	struct bl_arena *a = make(256, 0);
	size_t r0 = stats(a).reserved;
	struct bl_arena_stats st;
	char *p[40];

	(void)state;
	/* 16 allocations of 16 bytes fill a 256-byte block. */
	for (int i = 0; i < 40; i++) {
		p[i] = bl_arena_alloc(a, 16, 16);
		fill(p[i], 16, (unsigned)i);
	}
	st = stats(a);
	assert_int_equal(st.blocks, 3);
	assert_int_equal(st.reserved, 3 * r0);
	assert_int_equal(st.used, 40 * 16);

	/* Bigger than a block: a block of its own; the current block keeps
	 * serving small requests. */
	char *big = bl_arena_alloc(a, 1000, 0);
	assert_non_null(big);
	fill(big, 1000, 99);
	st = stats(a);
	assert_int_equal(st.large_blocks, 1);
	assert_int_equal(st.blocks, 3);
	assert_int_equal(st.used, 40 * 16 + 1000);
	assert_true(st.reserved > 3 * r0 + 1000);
	char *after = bl_arena_alloc(a, 16, 16);
	assert_ptr_equal(after, p[39] + 16);
	assert_int_equal(stats(a).blocks, 3);

	/* Large with big alignment. */
	char *huge = bl_arena_alloc(a, 300, 4096);
	assert_non_null(huge);
	assert_int_equal((uintptr_t)huge % 4096, 0);
	memset(huge, 1, 300);
	assert_int_equal(stats(a).large_blocks, 2);

	/* An exact fit for an empty block is an ordinary block. */
	assert_non_null(bl_arena_alloc(a, 256, 0));
	assert_int_equal(stats(a).blocks, 4);
	assert_int_equal(stats(a).large_blocks, 2);

	for (int i = 0; i < 40; i++)
		check_fill(p[i], 16, (unsigned)i);
	check_fill(big, 1000, 99);

	size_t high = stats(a).high_water;
	bl_arena_reset(a);
	st = stats(a);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.blocks, 1);
	assert_int_equal(st.large_blocks, 0);
	assert_int_equal(st.reserved, r0);
	assert_int_equal(st.high_water, high);
	assert_int_equal(hs.live, 2); /* the arena and its first block */
	/* The first block is reused: no hook call for small requests. */
	long calls = hs.calls;
	for (int i = 0; i < 16; i++)
		assert_non_null(bl_arena_alloc(a, 16, 16));
	assert_int_equal(hs.calls, calls);
	bl_arena_destroy(a);
}

static void test_cap(void **state)
{
	struct bl_arena *probe = make(256, 0);
	size_t r0 = stats(probe).reserved;

	(void)state;
	bl_arena_destroy(probe);

	struct bl_arena *a = make(256, 3 * r0 + 100);
	struct bl_arena_mark m = bl_arena_mark(a);
	int n = 0;

	while (bl_arena_alloc(a, 64, 0))
		n++;
	assert_int_equal(n, 12); /* three blocks of four */
	assert_int_equal(bl_arena_last_error(a), BL_EFULL);
	assert_int_equal(stats(a).failed_allocs, 1);
	assert_true(stats(a).reserved <= 3 * r0 + 100);
	/* a large one that would pass the cap */
	assert_null(bl_arena_alloc(a, 1000, 0));
	assert_int_equal(bl_arena_last_error(a), BL_EFULL);
	/* back under the cap, it works again */
	assert_int_equal(bl_arena_rollback(a, &m), 0);
	assert_int_equal(stats(a).blocks, 1);
	assert_non_null(bl_arena_alloc(a, 64, 0));
	assert_non_null(bl_arena_alloc(a, 2 * r0 - 200, 0));
	assert_int_equal(stats(a).large_blocks, 1);
	bl_arena_destroy(a);
}

/* Three nested marks, rolled back innermost first and then all at once. */
static void test_marks_nested(void **state)
{
	struct bl_arena *a = make(256, 0);
	struct bl_arena_mark m[3];
	struct bl_arena_stats at[3];
	char *base[3][20];

	(void)state;
	for (int d = 0; d < 3; d++) {
		m[d] = bl_arena_mark(a);
		at[d] = stats(a);
		for (int i = 0; i < 20; i++) {
			size_t n = i % 7 == 3 ? 700 : 24; /* some large ones */
			base[d][i] = bl_arena_alloc(a, n, 8);
			assert_non_null(base[d][i]);
			fill(base[d][i], 24, (unsigned)(d * 100 + i));
		}
	}
	assert_true(stats(a).blocks > at[2].blocks);
	assert_true(stats(a).large_blocks > at[2].large_blocks);

	for (int d = 2; d >= 0; d--) {
		/* allocate a bit more past the marks, then roll back */
		for (int i = 0; i < 30; i++)
			assert_non_null(bl_arena_alloc(a, 40, 0));
		assert_int_equal(bl_arena_rollback(a, &m[d]), 0);
		struct bl_arena_stats st = stats(a);
		assert_int_equal(st.used, at[d].used);
		assert_int_equal(st.reserved, at[d].reserved);
		assert_int_equal(st.blocks, at[d].blocks);
		assert_int_equal(st.large_blocks, at[d].large_blocks);
		for (int e = 0; e < d; e++)
			for (int i = 0; i < 20; i++)
				check_fill(base[e][i], 24, (unsigned)(e * 100 + i));
		/* rolling back to the same mark twice is fine and a no-op */
		assert_int_equal(bl_arena_rollback(a, &m[d]), 0);
		assert_int_equal(stats(a).used, at[d].used);
	}
	assert_int_equal(stats(a).used, 0);
	assert_int_equal(hs.live, 2);

	/* Outer rollback discards the inner marks at once. */
	struct bl_arena_mark outer = bl_arena_mark(a);
	for (int i = 0; i < 50; i++)
		bl_arena_alloc(a, 30, 0);
	struct bl_arena_mark mid = bl_arena_mark(a);
	for (int i = 0; i < 50; i++)
		bl_arena_alloc(a, 30, 0);
	bl_arena_alloc(a, 900, 0);
	struct bl_arena_mark inner = bl_arena_mark(a);
	bl_arena_alloc(a, 900, 0);
	assert_int_equal(bl_arena_rollback(a, &outer), 0);
	assert_int_equal(stats(a).blocks, 1);
	assert_int_equal(stats(a).large_blocks, 0);
	/* the inner marks' blocks are gone: refused, arena unchanged */
	assert_int_equal(bl_arena_rollback(a, &mid), BL_EINVAL);
	assert_int_equal(bl_arena_rollback(a, &inner), BL_EINVAL);
	assert_int_equal(bl_arena_rollback(a, NULL), BL_EINVAL);
	assert_int_equal(stats(a).used, 0);
	bl_arena_destroy(a);
}

static void test_stale_marks(void **state)
{
	struct bl_arena *a = make(256, 0);
	struct bl_arena_mark m1, m2, m3;

	(void)state;
	bl_arena_alloc(a, 100, 0);
	m1 = bl_arena_mark(a);
	bl_arena_alloc(a, 100, 0);
	m2 = bl_arena_mark(a); /* same block, further on */
	bl_arena_alloc(a, 1000, 0);
	m3 = bl_arena_mark(a); /* with a large block */
	assert_int_equal(bl_arena_rollback(a, &m1), 0);
	struct bl_arena_stats st = stats(a);
	/* m2 lies beyond the present end of its block, m3's large block is gone */
	assert_int_equal(bl_arena_rollback(a, &m2), BL_EINVAL);
	assert_int_equal(bl_arena_rollback(a, &m3), BL_EINVAL);
	assert_int_equal(stats(a).used, st.used);
	/* after reset, a mark in a freed block is refused even if the hook
	 * hands the same address out again */
	for (int i = 0; i < 10; i++)
		bl_arena_alloc(a, 100, 0);
	struct bl_arena_mark late = bl_arena_mark(a);
	bl_arena_reset(a);
	for (int i = 0; i < 10; i++)
		bl_arena_alloc(a, 100, 0);
	assert_int_equal(bl_arena_rollback(a, &late), BL_EINVAL);
	bl_arena_destroy(a);
}

/* A live allocation in the shadow model. */
struct shadow {
	char *p;      /* where */
	size_t n;     /* bytes */
	unsigned id;  /* fill pattern */
	int depth;    /* marks open when it was made */
};

/* Random allocations (sizes 1..600 and a few large, varied alignment) with
 * marks pushed and rolled back at random: after every step the live set has
 * no overlap, every allocation holds its pattern, and used equals the value
 * recorded at the mark after each rollback. */
static void run_random(uint64_t seed)
{
	enum { N = 2000, DEPTH = 8 };
	struct bl_arena *a = make(1024, 0);
	struct shadow *live = calloc(N, sizeof *live);
	struct bl_arena_mark marks[DEPTH];
	struct bl_arena_stats at[DEPTH];
	size_t n = 0;
	int depth = 0;
	unsigned next_id = 1;

	assert_non_null(live);
	rng_state = seed;
	for (int step = 0; step < 3000; step++) {
		unsigned r = (unsigned)(rng() % 100);

		if (r < 8 && depth < DEPTH) {
			marks[depth] = bl_arena_mark(a);
			at[depth++] = stats(a);
		} else if (r < 14 && depth > 0) {
			int d = (int)(rng() % (uint64_t)depth);

			assert_int_equal(bl_arena_rollback(a, &marks[d]), 0);
			struct bl_arena_stats st = stats(a);
			assert_int_equal(st.used, at[d].used);
			assert_int_equal(st.reserved, at[d].reserved);
			assert_int_equal(st.blocks, at[d].blocks);
			assert_int_equal(st.large_blocks, at[d].large_blocks);
			depth = d; /* marks[d] itself is reused next push */
			while (n > 0 && live[n - 1].depth > d)
				n--;
			for (size_t i = 0; i < n; i++)
				check_fill(live[i].p, live[i].n, live[i].id);
		} else if (n < N) {
			size_t sz = rng() % 50 == 0 ? 1000 + rng() % 5000 : 1 + rng() % 600;
			size_t al = (size_t)1 << (rng() % 8);
			char *p = bl_arena_alloc(a, sz, al);

			assert_non_null(p);
			assert_int_equal((uintptr_t)p % al, 0);
			for (size_t i = 0; i < n; i++)
				assert_true(p + sz <= live[i].p || live[i].p + live[i].n <= p);
			fill(p, sz, next_id);
			live[n++] = (struct shadow){ p, sz, next_id++, depth };
		}
		assert_true(stats(a).used <= stats(a).reserved);
	}
	for (size_t i = 0; i < n; i++)
		check_fill(live[i].p, live[i].n, live[i].id);
	free(live);
	bl_arena_destroy(a);
	assert_int_equal(hs.live, 0);
}

static void test_random_model(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 6; seed++)
		run_random(seed);
}

/* Fails the k-th hook call for k = 1, 2, ... through create and a sequence of
 * allocations that adds ordinary and large blocks. Each failure returns NULL
 * with BL_ENOMEM and leaves the stats as they were (but the failure count);
 * the arena keeps working; nothing leaks. */
static void test_fail_every_growth(void **state)
{
	bool failed_any = true;
	long k;

	(void)state;
	for (k = 1; failed_any; k++) {
		struct bl_arena_config cfg = { .block_bytes = 256, .hook = &test_hook };
		struct bl_arena *a = NULL;
		char *p[30];
		int got = 0;

		memset(&hs, 0, sizeof hs);
		hs.fail_at = k;
		failed_any = false;
		int err = bl_arena_create(&cfg, &a);
		if (err) {
			assert_int_equal(err, BL_ENOMEM);
			assert_null(a);
			assert_int_equal(hs.live, 0);
			failed_any = true;
			continue;
		}
		struct bl_arena_mark m = bl_arena_mark(a);
		while (got < 30) {
			size_t sz = got % 6 == 5 ? 500 : 100; /* every 6th is large */
			struct bl_arena_stats before = stats(a);
			char *o = bl_arena_alloc(a, sz, 0);

			if (!o) {
				assert_int_equal(bl_arena_last_error(a), BL_ENOMEM);
				struct bl_arena_stats after = stats(a);
				assert_int_equal(after.failed_allocs, before.failed_allocs + 1);
				after.failed_allocs--;
				assert_memory_equal(&before, &after, sizeof before);
				assert_false(failed_any);
				failed_any = true;
				continue;
			}
			fill(o, sz, (unsigned)got);
			p[got++] = o;
		}
		for (int i = 0; i < 30; i++)
			check_fill(p[i], i % 6 == 5 ? 500 : 100, (unsigned)i);
		assert_int_equal(stats(a).large_blocks, 5);
		assert_int_equal(bl_arena_rollback(a, &m), 0);
		assert_int_equal(stats(a).used, 0);
		bl_arena_destroy(a);
		assert_int_equal(hs.live, 0);
		assert_int_equal(hs.live_bytes, 0);
	}
	assert_true(k > 15); /* create's two calls and a dozen growth steps */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_invalid, reset_hook, check_no_leak),
		cmocka_unit_test(test_default_hook),
		cmocka_unit_test_setup_teardown(test_alignment_and_stats, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_zalloc, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_chaining_and_large, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_cap, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_marks_nested, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_stale_marks, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_random_model, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_fail_every_growth, reset_hook, check_no_leak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
