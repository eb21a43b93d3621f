/* Unit tests for the heap: every strategy runs seeded random alloc/free/realloc
 * sequences against a shadow model (no overlap, alignment, every byte
 * writable, contents kept across realloc, full coalescing at the end), then
 * table-driven edge cases (size 0, overflowing sizes, exhaustion and recovery,
 * foreign pointers, double frees, misaligned and tiny regions) and allocation
 * failure injected into create through the allocator hook.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/heap.h"

static uint64_t rng_state;

/* splitmix64: small, seeded, good enough for test streams. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t below(size_t n)
{
	return (size_t)(rng() % n);
}

/* ---- helpers ---- */

static struct bl_heap *make(enum bl_heap_strategy s, void *region, size_t bytes)
{
	struct bl_heap_config cfg = { .region = region, .region_bytes = bytes,
				      .strategy = s };
	struct bl_heap *h = NULL;

	assert_int_equal(bl_heap_create(&cfg, &h), 0);
	assert_non_null(h);
	return h;
}

static void assert_coalesced(const struct bl_heap *h)
{
	struct bl_heap_stats st;

	assert_int_equal(bl_heap_check(h), 0);
	bl_heap_stats(h, &st);
	assert_int_equal(st.used_bytes, 0);
	assert_int_equal(st.live_blocks, 0);
	assert_int_equal(st.free_bytes, st.total_bytes);
	assert_int_equal(st.largest_free_bytes, st.free_bytes);
	assert_true(st.fragmentation == 0.0);
}

/* ---- the shadow model ---- */

#define SLOTS 192

struct shadow {
	unsigned char *p; /* what the heap returned, NULL for an empty slot */
	size_t size;      /* bytes asked for */
	size_t align;     /* alignment asked for */
	uint32_t id;      /* seeds the fill pattern */
};

static unsigned char pattern(uint32_t id, size_t i)
{
	return (unsigned char)((id * 131u) ^ (uint32_t)(i * 7u) ^ (uint32_t)(i >> 8));
}

static void fill(struct shadow *s)
{
	for (size_t i = 0; i < s->size; i++)
		s->p[i] = pattern(s->id, i);
}

static void verify(const struct shadow *s, size_t upto)
{
	for (size_t i = 0; i < upto; i++)
		if (s->p[i] != pattern(s->id, i))
			fail_msg("block %u byte %zu of %zu changed", s->id, i, s->size);
}

/* The block must lie in the region, be aligned, have room and overlap no
 * other live block. */
static void check_placement(const struct bl_heap *h, const struct shadow *sh,
			    int self, const unsigned char *lo, const unsigned char *hi)
{
	const struct shadow *s = &sh[self];
	size_t len = s->size ? s->size : 1;

	assert_true(s->p >= lo && s->p + len <= hi);
	assert_int_equal((uintptr_t)s->p % s->align, 0);
	assert_true(bl_heap_usable_size(h, s->p) >= s->size);
	for (int i = 0; i < SLOTS; i++) {
		size_t olen;

		if (i == self || !sh[i].p)
			continue;
		olen = sh[i].size ? sh[i].size : 1;
		if (s->p < sh[i].p + olen && sh[i].p < s->p + len)
			fail_msg("blocks %u and %u overlap", s->id, sh[i].id);
	}
}

static size_t random_size(void)
{
	switch (below(10)) {
	case 0:
		return below(17); /* includes 0 */
	case 1: case 2: case 3: case 4:
		return 1 + below(256);
	case 5: case 6: case 7: case 8:
		return 1 + below(4096);
	default:
		return 1 + below(24 * 1024);
	}
}

static size_t random_align(size_t heap_align)
{
	size_t a = (size_t)1 << (4 + below(9)); /* 16 .. 4096 */

	return a < heap_align ? heap_align : a;
}

/* One seeded run of `ops` operations on a fresh heap over a 256 KiB region. */
static void random_run(enum bl_heap_strategy strategy, uint64_t seed, int ops,
		       size_t heap_align)
{
	enum { REGION = 256 * 1024 };
	unsigned char *region = malloc(REGION);
	struct bl_heap_config cfg = { .region = region, .region_bytes = REGION,
				      .strategy = strategy, .alignment = heap_align };
	struct shadow sh[SLOTS];
	struct bl_heap_stats st;
	struct bl_heap *h;
	uint32_t next_id = 1;
	uint64_t failed = 0, allocs = 0;
	size_t live = 0, base_align = heap_align ? heap_align : 16;

	assert_non_null(region);
	assert_int_equal(bl_heap_create(&cfg, &h), 0);
	memset(sh, 0, sizeof(sh));
	rng_state = seed;
	for (int op = 0; op < ops; op++) {
		int slot = (int)below(SLOTS);
		struct shadow *s = &sh[slot];
		size_t r = below(100);

		if (!s->p) {
			/* Allocate: mostly plain, sometimes aligned. */
			s->size = random_size();
			if (r < 20) {
				s->align = random_align(base_align);
				s->p = bl_heap_aligned_alloc(h, s->size, s->align);
			} else {
				s->align = base_align;
				s->p = bl_heap_alloc(h, s->size);
			}
			if (!s->p) {
				assert_int_equal(bl_heap_last_error(h), BL_ENOMEM);
				failed++;
				continue;
			}
			allocs++;
			live++;
			s->id = next_id++;
			check_placement(h, sh, slot, region, region + REGION);
			fill(s);
		} else if (r < 55) {
			verify(s, s->size);
			assert_int_equal(bl_heap_free(h, s->p), 0);
			s->p = NULL;
			live--;
		} else {
			size_t n = random_size(), keep = n < s->size ? n : s->size;
			unsigned char *q;

			verify(s, s->size);
			q = bl_heap_realloc(h, s->p, n);
			if (!q) {
				/* The old block stays valid and intact. */
				assert_int_equal(bl_heap_last_error(h), BL_ENOMEM);
				failed++;
				verify(s, s->size);
				continue;
			}
			if (q != s->p)
				allocs++;
			s->p = q;
			verify(s, keep);
			s->size = n;
			s->id = next_id++;
			check_placement(h, sh, slot, region, region + REGION);
			fill(s);
		}
		if (op % 16 == 0)
			assert_int_equal(bl_heap_check(h), 0);
	}
	assert_int_equal(bl_heap_check(h), 0);
	bl_heap_stats(h, &st);
	assert_int_equal(st.live_blocks, live);
	assert_int_equal(st.failed_allocations, failed);
	assert_int_equal(st.allocations, allocs);
	assert_int_equal(st.used_bytes + st.free_bytes, st.total_bytes);
	assert_true(st.high_water_bytes >= st.used_bytes);
	assert_true(st.fragmentation >= 0.0 && st.fragmentation <= 1.0);
	/* Free in random order, then everything must have merged back. */
	for (int i = 0; i < SLOTS; i++) {
		int j = (int)below(SLOTS);
		struct shadow t = sh[i];

		sh[i] = sh[j];
		sh[j] = t;
	}
	for (int i = 0; i < SLOTS; i++) {
		if (!sh[i].p)
			continue;
		verify(&sh[i], sh[i].size);
		assert_int_equal(bl_heap_free(h, sh[i].p), 0);
	}
	assert_coalesced(h);
	bl_heap_destroy(h);
	free(region);
}

static void test_random(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;

	random_run(s, 0x1234 + (uint64_t)s, 4000, 0);
	random_run(s, 0xbeef + (uint64_t)s, 4000, 0);
	random_run(s, 0x5eed + (uint64_t)s, 2000, 64);
}

/* ---- names ---- */

static void test_names(void **state)
{
	(void)state;
	for (int i = 0; i < BL_HEAP_STRATEGIES; i++)
		assert_int_equal(bl_heap_strategy_parse(
			bl_heap_strategy_name((enum bl_heap_strategy)i)), i);
	assert_string_equal(bl_heap_strategy_name(BL_HEAP_TLSF), "tlsf");
	assert_string_equal(bl_heap_strategy_name((enum bl_heap_strategy)99), "unknown");
	assert_int_equal(bl_heap_strategy_parse("best-fit"), BL_EINVAL);
	assert_int_equal(bl_heap_strategy_parse(""), BL_EINVAL);
	assert_int_equal(bl_heap_strategy_parse(NULL), BL_EINVAL);
}

/* ---- create: bad configurations ---- */

static void *null_malloc_never(void *ctx, size_t n)
{
	(void)ctx;
	(void)n;
	return NULL;
}

static void test_create_errors(void **state)
{
	static _Alignas(64) unsigned char buf[4096];
	struct bl_alloc_hook half = { null_malloc_never, NULL, NULL };
	struct {
		const char *what;
		struct bl_heap_config cfg;
		int want;
	} cases[] = {
		{ "unknown strategy", { buf, sizeof(buf), (enum bl_heap_strategy)6, 0, NULL }, BL_EINVAL },
		{ "alignment not a power of two", { buf, sizeof(buf), BL_HEAP_TLSF, 24, NULL }, BL_EINVAL },
		{ "allocator without free", { NULL, 4096, BL_HEAP_TLSF, 0, &half }, BL_EINVAL },
		{ "empty region", { buf, 0, BL_HEAP_FIRST_FIT, 0, NULL }, BL_ERANGE },
		{ "tiny region", { buf, 40, BL_HEAP_FIRST_FIT, 0, NULL }, BL_ERANGE },
		{ "tiny after aligning", { buf + 1, 48, BL_HEAP_BEST_FIT, 0, NULL }, BL_ERANGE },
		{ "tiny for buddy", { buf, 63, BL_HEAP_BUDDY, 0, NULL }, BL_ERANGE },
		{ "buddy after aligning", { buf + 8, 64, BL_HEAP_BUDDY, 0, NULL }, BL_ERANGE },
		{ "absurd size", { NULL, SIZE_MAX, BL_HEAP_TLSF, 0, NULL }, BL_ERANGE },
		{ "region past the address space", { (void *)(UINTPTR_MAX - 4095), 8192,
						      BL_HEAP_TLSF, 0, NULL }, BL_ERANGE },
	};
	struct bl_heap *h = (struct bl_heap *)&cases; /* must stay untouched */

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (bl_heap_create(&cases[i].cfg, &h) != cases[i].want)
			fail_msg("%s: not %s", cases[i].what, bl_errname(cases[i].want));
		assert_ptr_equal(h, (struct bl_heap *)&cases);
	}
	assert_int_equal(bl_heap_create(NULL, &h), BL_EINVAL);
	assert_int_equal(bl_heap_create(&cases[0].cfg, NULL), BL_EINVAL);
	bl_heap_destroy(NULL);
}

/* ---- allocation failure injection through the hook ---- */

struct counting {
	int fail_at;     /* fail the nth call (1-based), 0 for never */
	int calls;       /* malloc calls so far */
	int outstanding; /* blocks given and not freed */
};

static void *counting_malloc(void *ctx, size_t n)
{
	struct counting *c = ctx;
	void *p;

	if (++c->calls == c->fail_at)
		return NULL;
	p = malloc(n);
	if (p)
		c->outstanding++;
	return p;
}

static void counting_free(void *ctx, void *p, size_t bytes)
{
	(void)bytes;
	struct counting *c = ctx;

	c->outstanding--;
	free(p);
}

static void test_create_failure_injection(void **state)
{
	static unsigned char buf[8192];

	(void)state;
	for (int s = 0; s < BL_HEAP_STRATEGIES; s++) {
		for (int own = 0; own < 2; own++) {
			int needed = own ? 1 : 2; /* the heap, and the region if obtained */

			for (int n = 1; n <= needed + 1; n++) {
				struct counting c = { .fail_at = n };
				struct bl_alloc_hook a = { counting_malloc, counting_free, &c };
				struct bl_heap_config cfg = { own ? buf : NULL, sizeof(buf),
							      (enum bl_heap_strategy)s, 0, &a };
				struct bl_heap *h = NULL;
				int rc = bl_heap_create(&cfg, &h);

				if (n <= needed) {
					assert_int_equal(rc, BL_ENOMEM);
					assert_null(h);
					assert_int_equal(c.outstanding, 0);
					continue;
				}
				assert_int_equal(rc, 0);
				assert_int_equal(c.calls, needed);
				/* The heap is whole: it allocates and frees. */
				void *p = bl_heap_alloc(h, 1000);
				assert_non_null(p);
				memset(p, 0xab, 1000);
				assert_int_equal(bl_heap_free(h, p), 0);
				assert_coalesced(h);
				bl_heap_destroy(h);
				assert_int_equal(c.outstanding, 0);
			}
		}
	}
}

/* ---- edge cases, run for every strategy ---- */

static void test_size_zero(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	struct bl_heap *h = make(s, NULL, 4096);
	void *a = bl_heap_alloc(h, 0), *b = bl_heap_alloc(h, 0);

	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	assert_int_equal(bl_heap_free(h, a), 0);
	assert_int_equal(bl_heap_free(h, b), 0);
	assert_int_equal(bl_heap_free(h, NULL), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_huge_sizes(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	struct bl_heap *h = make(s, NULL, 64 * 1024);
	size_t sizes[] = { SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2 + 1, (size_t)1 << 40,
			   64 * 1024 + 1 };
	struct bl_heap_stats st;
	char *p = bl_heap_alloc(h, 100);
	uint64_t failed = 0;

	assert_non_null(p);
	memset(p, 0x5a, 100);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_null(bl_heap_alloc(h, sizes[i]));
		assert_int_equal(bl_heap_last_error(h), BL_ETOOBIG);
		assert_null(bl_heap_aligned_alloc(h, sizes[i], 4096));
		assert_int_equal(bl_heap_last_error(h), BL_ETOOBIG);
		assert_null(bl_heap_realloc(h, p, sizes[i]));
		assert_int_equal(bl_heap_last_error(h), BL_ETOOBIG);
		failed += 3;
	}
	/* Exactly the heap's size cannot fit either: headers take room. */
	assert_null(bl_heap_alloc(h, 64 * 1024));
	assert_int_equal(bl_heap_last_error(h), BL_ENOMEM);
	failed++;
	assert_null(bl_heap_aligned_alloc(h, 16, (size_t)1 << 20));
	assert_int_equal(bl_heap_last_error(h), BL_ETOOBIG);
	failed++;
	for (int i = 0; i < 100; i++)
		assert_int_equal((unsigned char)p[i], 0x5a);
	bl_heap_stats(h, &st);
	assert_int_equal(st.failed_allocations, failed);
	assert_int_equal(st.live_blocks, 1);
	assert_int_equal(bl_heap_free(h, p), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_bad_alignment(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	struct bl_heap *h = make(s, NULL, 16 * 1024);
	size_t good[] = { 1, 2, 8, 16, 32, 64, 128, 1024, 4096 };

	assert_null(bl_heap_aligned_alloc(h, 10, 0));
	assert_int_equal(bl_heap_last_error(h), BL_EINVAL);
	assert_null(bl_heap_aligned_alloc(h, 10, 48));
	assert_int_equal(bl_heap_last_error(h), BL_EINVAL);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t a = good[i] < 16 ? 16 : good[i];
		char *p = bl_heap_aligned_alloc(h, 100, good[i]);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % a, 0);
		memset(p, 1, 100);
		assert_int_equal(bl_heap_free(h, p), 0);
		/* A freed aligned pointer is refused the second time. */
		assert_int_equal(bl_heap_free(h, p), BL_EINVAL);
	}
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_exhaustion_recovery(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	enum { REGION = 32 * 1024, MAXB = REGION / 64 };
	struct bl_heap *h = make(s, NULL, REGION);
	void **blocks = calloc(MAXB, sizeof(*blocks));
	struct bl_heap_stats st;
	int n = 0;
	void *p;

	assert_non_null(blocks);
	while ((p = bl_heap_alloc(h, 48)) != NULL) {
		assert_true(n < MAXB);
		memset(p, n, 48);
		blocks[n++] = p;
	}
	assert_int_equal(bl_heap_last_error(h), BL_ENOMEM);
	assert_null(bl_heap_alloc(h, 48)); /* still full: NULL again, no abort */
	bl_heap_stats(h, &st);
	assert_int_equal(st.failed_allocations, 2);
	assert_int_equal(st.live_blocks, (size_t)n);
	assert_true(st.free_bytes < 128);
	assert_int_equal(st.high_water_bytes, st.used_bytes);
	assert_int_equal(bl_heap_check(h), 0);
	/* Free every other block: fragmented, and a big request still fails. */
	for (int i = 0; i < n; i += 2)
		assert_int_equal(bl_heap_free(h, blocks[i]), 0);
	bl_heap_stats(h, &st);
	assert_true(st.fragmentation > 0.5);
	assert_null(bl_heap_alloc(h, 1024));
	for (int i = 1; i < n; i += 2)
		assert_int_equal(bl_heap_free(h, blocks[i]), 0);
	assert_coalesced(h);
	/* Recovered: half the heap in one piece. */
	p = bl_heap_alloc(h, REGION / 2 - 64);
	assert_non_null(p);
	memset(p, 0xee, REGION / 2 - 64);
	assert_int_equal(bl_heap_free(h, p), 0);
	bl_heap_stats(h, &st);
	assert_true(st.high_water_bytes >= REGION - 128);
	assert_coalesced(h);
	bl_heap_destroy(h);
	free(blocks);
}

static void test_foreign_pointers(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	static _Alignas(16) unsigned char region[16 * 1024];
	struct bl_heap *h = make(s, region, sizeof(region));
	struct bl_heap_stats before, after;
	char *a = bl_heap_alloc(h, 200), *b = bl_heap_alloc(h, 200);
	int local;
	void *foreign[6];

	assert_non_null(a);
	assert_non_null(b);
	memset(a, 0, 200);
	memset(b, 0, 200);
	foreign[0] = &local;               /* outside the region */
	foreign[1] = a + 1;                /* misaligned */
	foreign[2] = a + 16;               /* inside a live block */
	foreign[3] = a + 64;
	foreign[4] = region + sizeof(region) - 16; /* free space at the end */
	foreign[5] = region;               /* the first header itself */
	bl_heap_stats(h, &before);
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		assert_int_equal(bl_heap_free(h, foreign[i]), BL_EINVAL);
		assert_null(bl_heap_realloc(h, foreign[i], 10));
		assert_int_equal(bl_heap_last_error(h), BL_EINVAL);
		assert_int_equal(bl_heap_usable_size(h, foreign[i]), 0);
	}
	bl_heap_stats(h, &after);
	assert_int_equal(after.used_bytes, before.used_bytes);
	assert_int_equal(after.live_blocks, 2);
	assert_int_equal(after.frees, 0);
	assert_int_equal(bl_heap_check(h), 0);
	assert_int_equal(bl_heap_free(h, a), 0);
	assert_int_equal(bl_heap_free(h, b), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_double_free(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	struct bl_heap *h = make(s, NULL, 16 * 1024);
	void *a = bl_heap_alloc(h, 100), *b = bl_heap_alloc(h, 100);
	void *c = bl_heap_alloc(h, 100);
	struct bl_heap_stats st;

	assert_int_equal(bl_heap_free(h, b), 0);
	assert_int_equal(bl_heap_free(h, b), BL_EINVAL); /* free, not merged */
	assert_int_equal(bl_heap_free(h, a), 0);          /* merges with b */
	assert_int_equal(bl_heap_free(h, a), BL_EINVAL);
	assert_int_equal(bl_heap_free(h, b), BL_EINVAL);  /* merged away */
	assert_null(bl_heap_realloc(h, a, 50));
	assert_int_equal(bl_heap_last_error(h), BL_EINVAL);
	bl_heap_stats(h, &st);
	assert_int_equal(st.frees, 2);
	assert_int_equal(st.live_blocks, 1);
	assert_int_equal(bl_heap_check(h), 0);
	assert_int_equal(bl_heap_free(h, c), 0);
	assert_int_equal(bl_heap_free(h, c), BL_EINVAL);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_misaligned_region(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	static _Alignas(64) unsigned char buf[8192 + 64];
	unsigned char *region = buf + 3;
	struct bl_heap *h = make(s, region, 8192);
	struct bl_heap_stats st;
	unsigned char *p[8];

	bl_heap_stats(h, &st);
	assert_true(st.total_bytes <= 8192 - 13);
	for (int i = 0; i < 8; i++) {
		p[i] = bl_heap_alloc(h, 100 + (size_t)i);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % BL_HEAP_MIN_ALIGN, 0);
		assert_true(p[i] >= region && p[i] + 100 + i <= region + 8192);
		memset(p[i], i, 100 + (size_t)i);
	}
	for (int i = 0; i < 8; i++)
		assert_int_equal(bl_heap_free(h, p[i]), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_tiny_region(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	static _Alignas(64) unsigned char buf[64];
	size_t region = s == BL_HEAP_BUDDY ? 64 : 48;
	struct bl_heap *h = make(s, buf, region);
	void *p;

	/* Room for one smallest block and no more. */
	p = bl_heap_alloc(h, 0);
	assert_non_null(p);
	assert_null(bl_heap_alloc(h, 0));
	assert_int_equal(bl_heap_last_error(h), BL_ENOMEM);
	assert_int_equal(bl_heap_free(h, p), 0);
	p = bl_heap_alloc(h, 16);
	assert_non_null(p);
	memset(p, 0x11, 16);
	assert_null(bl_heap_realloc(h, p, region - BL_HEAP_HEADER_BYTES + 1));
	assert_int_equal(bl_heap_free(h, p), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_resize(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	struct bl_heap *h = make(s, NULL, 64 * 1024);
	unsigned char *a, *b, *q;
	struct bl_heap_stats st;

	/* NULL behaves as alloc. */
	a = bl_heap_realloc(h, NULL, 100);
	assert_non_null(a);
	for (int i = 0; i < 100; i++)
		a[i] = (unsigned char)i;
	/* The rest of the heap follows a and is free: grows in place. */
	q = bl_heap_realloc(h, a, 1000);
	assert_ptr_equal(q, a);
	for (int i = 0; i < 100; i++)
		assert_int_equal(a[i], i);
	memset(a + 100, 0x77, 900);
	/* Shrinks in place. */
	q = bl_heap_realloc(h, a, 50);
	assert_ptr_equal(q, a);
	for (int i = 0; i < 50; i++)
		assert_int_equal(a[i], i);
	/* A neighbour in the way: moves, keeping the contents. */
	b = bl_heap_alloc(h, 2000);
	assert_non_null(b);
	memset(b, 0x33, 2000);
	q = bl_heap_realloc(h, a, 20000);
	assert_non_null(q);
	for (int i = 0; i < 50; i++)
		assert_int_equal(q[i], i);
	assert_int_equal(bl_heap_free(h, a), BL_EINVAL); /* the old place is gone */
	/* Too big to fit anywhere: NULL, q intact. */
	assert_null(bl_heap_realloc(h, q, 63 * 1024));
	assert_int_equal(bl_heap_last_error(h), BL_ENOMEM);
	for (int i = 0; i < 50; i++)
		assert_int_equal(q[i], i);
	bl_heap_stats(h, &st);
	assert_int_equal(st.live_blocks, 2);
	assert_int_equal(bl_heap_check(h), 0);
	/* Size 0 keeps a minimal block. */
	q = bl_heap_realloc(h, q, 0);
	assert_non_null(q);
	assert_int_equal(bl_heap_free(h, q), 0);
	assert_int_equal(bl_heap_free(h, b), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

static void test_heap_alignment(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	struct bl_heap_config cfg = { NULL, 64 * 1024, s, 256, NULL };
	struct bl_heap *h;
	void *p[10];

	assert_int_equal(bl_heap_create(&cfg, &h), 0);
	for (int i = 0; i < 10; i++) {
		p[i] = bl_heap_alloc(h, 10 + 100 * (size_t)i);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 256, 0);
	}
	for (int i = 0; i < 10; i++) {
		p[i] = bl_heap_realloc(h, p[i], 3000);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 256, 0);
	}
	for (int i = 0; i < 10; i++)
		assert_int_equal(bl_heap_free(h, p[i]), 0);
	assert_coalesced(h);
	bl_heap_destroy(h);
}

/* ---- splitting and merging a large free block in place ---- */

/* Batches allocated from the front of one large free block and freed in
 * reverse, so every alloc splits it and every free merges into it (tlsf
 * swaps it in its list when its class does not change, and moves it when it
 * does): the heap stays consistent after every step and whole at the end. */
static void test_lifo_batches(void **state)
{
	enum bl_heap_strategy s = (enum bl_heap_strategy)(intptr_t)*state;
	enum { N = 120 };
	struct bl_heap *h = make(s, NULL, 256 * 1024);
	unsigned char *p[N];

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			size_t n = 1 + (size_t)((i * 37 + round * 101) % 1500);

			p[i] = bl_heap_alloc(h, n);
			assert_non_null(p[i]);
			memset(p[i], i, n);
			assert_int_equal(bl_heap_check(h), 0);
		}
		for (int i = N - 1; i >= 0; i--) {
			assert_int_equal(p[i][0], (unsigned char)i);
			assert_int_equal(bl_heap_free(h, p[i]), 0);
			assert_int_equal(bl_heap_check(h), 0);
		}
		assert_coalesced(h);
	}
	bl_heap_destroy(h);
}

/* ---- placement: the strategies really differ ---- */

static void test_placement(void **state)
{
	/* Holes of 256, 1024 and 512 payload bytes, separated by live blocks;
	 * which hole a 200-byte request lands in names the strategy. */
	struct {
		enum bl_heap_strategy s;
		int hole; /* 0: the 256 one, 1: 1024, 2: 512 */
	} cases[] = {
		{ BL_HEAP_BEST_FIT, 0 },
		{ BL_HEAP_WORST_FIT, 1 },
		{ BL_HEAP_TLSF, 0 },
		{ BL_HEAP_FIRST_FIT, 2 }, /* the most recently freed hole heads the list */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bl_heap *h = make(cases[i].s, NULL, 8192);
		size_t sizes[] = { 256, 64, 1024, 64, 512, 64 };
		void *p[6], *q;

		for (int j = 0; j < 6; j++)
			assert_non_null(p[j] = bl_heap_alloc(h, sizes[j]));
		assert_int_equal(bl_heap_free(h, p[0]), 0);
		assert_int_equal(bl_heap_free(h, p[2]), 0);
		assert_int_equal(bl_heap_free(h, p[4]), 0);
		/* The tail past p[5] is one more, larger, free block: use it up
		 * exactly (the six blocks take their sizes plus a header each). */
		size_t taken = 0;

		for (int j = 0; j < 6; j++)
			taken += sizes[j] + BL_HEAP_HEADER_BYTES;
		assert_non_null(q = bl_heap_alloc(h, 8192 - taken - BL_HEAP_HEADER_BYTES));
		{
			struct bl_heap_stats st;

			bl_heap_stats(h, &st); /* nothing free but the three holes */
			assert_int_equal(st.free_bytes, 256 + 1024 + 512 + 3 * BL_HEAP_HEADER_BYTES);
		}
		{
			void *r = bl_heap_alloc(h, 200);

			assert_ptr_equal(r, p[cases[i].hole * 2]);
			assert_int_equal(bl_heap_free(h, r), 0);
		}
		assert_int_equal(bl_heap_free(h, q), 0);
		for (int j = 1; j < 6; j += 2)
			assert_int_equal(bl_heap_free(h, p[j]), 0);
		assert_coalesced(h);
		bl_heap_destroy(h);
	}
}

#define PER_STRATEGY(fn)                                                        \
	cmocka_unit_test_prestate(fn, (void *)(intptr_t)BL_HEAP_FIRST_FIT),     \
	cmocka_unit_test_prestate(fn, (void *)(intptr_t)BL_HEAP_NEXT_FIT),      \
	cmocka_unit_test_prestate(fn, (void *)(intptr_t)BL_HEAP_BEST_FIT),      \
	cmocka_unit_test_prestate(fn, (void *)(intptr_t)BL_HEAP_WORST_FIT),     \
	cmocka_unit_test_prestate(fn, (void *)(intptr_t)BL_HEAP_TLSF),          \
	cmocka_unit_test_prestate(fn, (void *)(intptr_t)BL_HEAP_BUDDY)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_create_failure_injection),
		cmocka_unit_test(test_placement),
		PER_STRATEGY(test_size_zero),
		PER_STRATEGY(test_huge_sizes),
		PER_STRATEGY(test_bad_alignment),
		PER_STRATEGY(test_exhaustion_recovery),
		PER_STRATEGY(test_foreign_pointers),
		PER_STRATEGY(test_double_free),
		PER_STRATEGY(test_misaligned_region),
		PER_STRATEGY(test_tiny_region),
		PER_STRATEGY(test_resize),
		PER_STRATEGY(test_heap_alignment),
		PER_STRATEGY(test_lifo_batches),
		PER_STRATEGY(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
