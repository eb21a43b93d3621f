/* Unit tests for the slab: alignment and stride, exact statistics, caps on
 * objects and bytes, zeroing, refused foreign and double frees, seeded random
 * alloc/free sequences checked against a shadow model, and allocation failure
 * injected at every hook call of create and of each growth step.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/slab.h"

#include "alloc_hook_test.h"

static struct bl_slab *make(size_t size, size_t align, size_t per, size_t max_obj, size_t max_bytes,
			    bool zero)
{
	struct bl_slab_config cfg = {
		.object_size = size,
		.align = align,
		.objects_per_slab = per,
		.max_objects = max_obj,
		.max_bytes = max_bytes,
		.zero = zero,
		.hook = &test_hook,
	};
	struct bl_slab *s = NULL;

	assert_int_equal(bl_slab_create(&cfg, &s), 0);
	assert_non_null(s);
	return s;
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

/* ---- tests ---------------------------------------------------------------- */

static void test_create_invalid(void **state)
{
	struct bl_slab_config cfg = { .object_size = 8, .hook = &test_hook };
	struct bl_alloc_hook half = { t_malloc, NULL, &hs };
	struct bl_slab *s = (struct bl_slab *)&cfg;

	(void)state;
	assert_int_equal(bl_slab_create(NULL, &s), BL_EINVAL);
	assert_int_equal(bl_slab_create(&cfg, NULL), BL_EINVAL);
	cfg.object_size = 0;
	assert_int_equal(bl_slab_create(&cfg, &s), BL_EINVAL);
	cfg.object_size = 8;
	cfg.align = 24;
	assert_int_equal(bl_slab_create(&cfg, &s), BL_EINVAL);
	cfg.align = 0;
	cfg.hook = &half;
	assert_int_equal(bl_slab_create(&cfg, &s), BL_EINVAL);
	cfg.hook = &test_hook;
	cfg.object_size = SIZE_MAX - 4;
	assert_int_equal(bl_slab_create(&cfg, &s), BL_EINVAL);
	cfg.object_size = SIZE_MAX / 8;
	cfg.objects_per_slab = 64;
	assert_int_equal(bl_slab_create(&cfg, &s), BL_EINVAL);
	assert_ptr_equal(s, (struct bl_slab *)&cfg); /* untouched on failure */
	bl_slab_destroy(NULL);
}

static void test_default_hook(void **state)
{
	struct bl_slab_config cfg = { .object_size = 40 };
	struct bl_slab *s = NULL;
	void *p[100];

	(void)state;
	assert_int_equal(bl_slab_create(&cfg, &s), 0);
	for (int i = 0; i < 100; i++) {
		p[i] = bl_slab_alloc(s);
		assert_non_null(p[i]);
		memset(p[i], 0xab, 40);
	}
	for (int i = 0; i < 100; i++)
		assert_int_equal(bl_slab_free(s, p[i]), 0);
	bl_slab_destroy(s);
}

static void test_stats_exact(void **state)
{
	struct bl_slab *s = make(24, 0, 4, 0, 0, false);
	struct bl_slab_stats st;
	void *p[9];

	(void)state;
	bl_slab_stats(s, &st);
	size_t a = MAXA < 2 * sizeof(void *) ? 2 * sizeof(void *) : MAXA;
	assert_int_equal(st.object_stride, (24 + a - 1) / a * a);
	assert_int_equal(st.objects_in_use, 0);
	assert_int_equal(st.objects_free, 0);
	assert_int_equal(st.slabs, 0);
	assert_int_equal(st.bytes_reserved, 0);
	assert_int_equal(hs.live, 1); /* just the pool struct */

	for (int i = 0; i < 9; i++) {
		p[i] = bl_slab_alloc(s);
		assert_non_null(p[i]);
		assert_int_equal(bl_slab_last_error(s), 0);
		assert_true(bl_slab_contains(s, p[i]));
	}
	bl_slab_stats(s, &st);
	assert_int_equal(st.objects_in_use, 9);
	assert_int_equal(st.objects_free, 3);
	assert_int_equal(st.slabs, 3);
	assert_int_equal(st.high_water, 9);
	assert_int_equal(st.failed_allocs, 0);
	/* bytes_reserved is exactly what the hook handed out for slabs */
	assert_int_equal(hs.live, 4);
	size_t pool_bytes = hs.live_bytes - st.bytes_reserved;
	assert_true(pool_bytes > 0 && pool_bytes < 256);

	for (int i = 0; i < 5; i++)
		assert_int_equal(bl_slab_free(s, p[i]), 0);
	bl_slab_stats(s, &st);
	assert_int_equal(st.objects_in_use, 4);
	assert_int_equal(st.objects_free, 8);
	assert_int_equal(st.high_water, 9);
	/* LIFO reuse, no growth */
	assert_ptr_equal(bl_slab_alloc(s), p[4]);
	bl_slab_stats(s, &st);
	assert_int_equal(st.slabs, 3);
	assert_int_equal(st.objects_in_use, 5);
	bl_slab_destroy(s);
}

static void test_alignment(void **state)
{
	static const size_t aligns[] = { 1, 8, 16, 32, 64, 256, 4096 };
	static const size_t sizes[] = { 1, 7, 24, 100, 4097 };

	(void)state;
	for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
		for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
			struct bl_slab *s = make(sizes[z], aligns[a], 3, 0, 0, false);
			size_t want = aligns[a] < MAXA ? MAXA : aligns[a];
			struct bl_slab_stats st;
			void *p[10];

			bl_slab_stats(s, &st);
			assert_int_equal(st.object_stride % want, 0);
			assert_true(st.object_stride >= sizes[z]);
			assert_true(st.object_stride < sizes[z] + want + 2 * sizeof(void *));
			for (int i = 0; i < 10; i++) {
				p[i] = bl_slab_alloc(s);
				assert_non_null(p[i]);
				assert_int_equal((uintptr_t)p[i] % want, 0);
				fill(p[i], sizes[z], (unsigned)i);
			}
			for (int i = 0; i < 10; i++) {
				check_fill(p[i], sizes[z], (unsigned)i);
				assert_int_equal(bl_slab_free(s, p[i]), 0);
			}
			bl_slab_destroy(s);
			assert_int_equal(hs.live, 0);
		}
	}
}

static void test_cap_objects(void **state)
{
	struct bl_slab *s = make(32, 0, 10, 25, 0, false);
	struct bl_slab_stats st;
	void *p[25];

	(void)state;
	for (int i = 0; i < 25; i++) {
		p[i] = bl_slab_alloc(s);
		assert_non_null(p[i]);
	}
	bl_slab_stats(s, &st);
	assert_int_equal(st.slabs, 3); /* 10 + 10 + 5: the last one trimmed to the cap */
	assert_int_equal(st.objects_free, 0);
	long calls = hs.calls;
	for (int i = 0; i < 3; i++) {
		assert_null(bl_slab_alloc(s));
		assert_int_equal(bl_slab_last_error(s), BL_EFULL);
	}
	assert_int_equal(hs.calls, calls); /* the hook is not even asked */
	bl_slab_stats(s, &st);
	assert_int_equal(st.failed_allocs, 3);
	assert_int_equal(st.objects_in_use, 25);
	assert_int_equal(bl_slab_free(s, p[7]), 0);
	assert_ptr_equal(bl_slab_alloc(s), p[7]);
	assert_int_equal(bl_slab_last_error(s), 0);
	assert_null(bl_slab_alloc(s));
	bl_slab_destroy(s);
}

/* Bytes one slab of `per` objects of 64 bytes takes from the hook. */
static size_t slab_bytes(size_t per)
{
	struct bl_slab *probe = make(64, 0, per, 0, 0, false);
	struct bl_slab_stats st;

	assert_non_null(bl_slab_alloc(probe));
	bl_slab_stats(probe, &st);
	bl_slab_destroy(probe);
	return st.bytes_reserved;
}

static void test_cap_bytes(void **state)
{
	struct bl_slab_stats st;
	size_t one_slab, per_obj, fixed;

	(void)state;
	/* A slab is a fixed part (header, padding) plus, per object, the
	 * object and its free-stack slot. */
	one_slab = slab_bytes(8);
	per_obj = (one_slab - slab_bytes(4)) / 4;
	fixed = one_slab - 8 * per_obj;
	assert_true(per_obj >= 64 + sizeof(void *));

	/* Room for two full slabs and a third of 3 objects. */
	size_t cap = 2 * one_slab + fixed + 3 * per_obj + per_obj / 2;
	struct bl_slab *s = make(64, 0, 8, 0, cap, false);
	int n = 0;

	while (bl_slab_alloc(s))
		n++;
	assert_int_equal(bl_slab_last_error(s), BL_EFULL);
	assert_int_equal(n, 19);
	bl_slab_stats(s, &st);
	assert_int_equal(st.slabs, 3);
	assert_true(st.bytes_reserved <= cap);
	assert_true(cap - st.bytes_reserved < per_obj);
	assert_int_equal(st.failed_allocs, 1);
	bl_slab_destroy(s);

	/* A cap below one object: every alloc is refused, nothing reserved. */
	s = make(64, 0, 8, 0, 10, false);
	assert_null(bl_slab_alloc(s));
	assert_int_equal(bl_slab_last_error(s), BL_EFULL);
	bl_slab_destroy(s);
}

static void test_zeroing(void **state)
{
	struct bl_slab *s = make(100, 0, 4, 0, 0, true);
	struct bl_slab *nz = make(100, 0, 4, 0, 0, false);
	unsigned char zero[100] = { 0 };
	void *p, *q;

	(void)state;
	for (int round = 0; round < 3; round++) {
		p = bl_slab_alloc(s);
		assert_memory_equal(p, zero, sizeof zero);
		memset(p, 0xff, 100);
		assert_int_equal(bl_slab_free(s, p), 0);
		q = bl_slab_alloc(s);
		assert_ptr_equal(p, q);
		assert_memory_equal(q, zero, sizeof zero);
		memset(q, 0xee, 100);
		assert_int_equal(bl_slab_free(s, q), 0);
	}
	/* Without zero, old contents beyond the free-list words stay. */
	p = bl_slab_alloc(nz);
	memset(p, 0x5a, 100);
	assert_int_equal(bl_slab_free(nz, p), 0);
	q = bl_slab_alloc(nz);
	assert_ptr_equal(p, q);
	assert_int_equal(((unsigned char *)q)[99], 0x5a);
	bl_slab_destroy(s);
	bl_slab_destroy(nz);
}

static void test_bad_frees_refused(void **state)
{
	struct bl_slab *s = make(48, 0, 4, 0, 0, false);
	struct bl_slab *other = make(48, 0, 4, 0, 0, false);
	struct bl_slab_stats before, after;
	_Alignas(64) char local[256];
	char *p = bl_slab_alloc(s);
	char *q = bl_slab_alloc(s);
	char *o = bl_slab_alloc(other);

	(void)state;
	memset(local, 0, sizeof local);
	bl_slab_stats(s, &before);
	assert_int_equal(bl_slab_free(s, NULL), BL_EINVAL);
	assert_int_equal(bl_slab_free(s, p + 1), BL_EINVAL);        /* misaligned */
	assert_int_equal(bl_slab_free(s, p + 8), BL_EINVAL);        /* misaligned */
#ifndef NDEBUG
	assert_int_equal(bl_slab_free(s, p + MAXA), BL_EINVAL);     /* inside an object */
	assert_int_equal(bl_slab_free(s, local), BL_EINVAL);        /* not from a slab */
	assert_int_equal(bl_slab_free(s, o), BL_EINVAL);            /* another pool's */
	assert_false(bl_slab_contains(s, o));
	assert_false(bl_slab_contains(s, p + MAXA));
	assert_false(bl_slab_contains(s, local));
#endif
	bl_slab_stats(s, &after);
	assert_memory_equal(&before, &after, sizeof before);

	/* double free, also after the object went round the free list */
	assert_int_equal(bl_slab_free(s, p), 0);
	assert_int_equal(bl_slab_free(s, p), BL_EINVAL);
	assert_int_equal(bl_slab_free(s, q), 0);
	assert_int_equal(bl_slab_free(s, p), BL_EINVAL);
	assert_int_equal(bl_slab_free(s, q), BL_EINVAL);
	/* never-allocated free objects of the slab */
	bl_slab_stats(s, &after);
	assert_int_equal(after.objects_in_use, 0);
	assert_int_equal(after.objects_free, 4);
	assert_ptr_equal(bl_slab_alloc(s), q);
	assert_ptr_equal(bl_slab_alloc(s), p);
	assert_int_equal(bl_slab_free(s, p), 0);
	assert_int_equal(bl_slab_free(s, q), 0);
	bl_slab_stats(s, &after);
	assert_int_equal(after.objects_in_use, 0);
	assert_int_equal(bl_slab_free(other, o), 0);
	bl_slab_destroy(s);
	bl_slab_destroy(other);
}

/* The free stack spans the slabs' slots, one segment per slab: freeing and
 * allocating across segment boundaries, and back and forth right on one,
 * keeps LIFO order and exact counts. */
static void test_stack_segments(void **state)
{
	struct bl_slab *s = make(40, 0, 3, 0, 0, false);
	struct bl_slab_stats st;
	void *p[10];

	(void)state;
	for (int i = 0; i < 10; i++) {
		p[i] = bl_slab_alloc(s);
		assert_non_null(p[i]);
		memset(p[i], i, 40);
	}
	bl_slab_stats(s, &st);
	assert_int_equal(st.slabs, 4); /* 3 + 3 + 3 + 3, two never used */
	assert_int_equal(st.objects_free, 2);
	for (int i = 0; i < 10; i++)
		assert_int_equal(bl_slab_free(s, p[i]), 0);
	bl_slab_stats(s, &st);
	assert_int_equal(st.objects_in_use, 0);
	assert_int_equal(st.objects_free, 12);
	assert_int_equal(st.high_water, 10);
	/* Last freed, first out, across all four segments. */
	for (int i = 9; i >= 0; i--)
		assert_ptr_equal(bl_slab_alloc(s), p[i]);
	/* The two never used objects come only now, in address order. */
	void *f1 = bl_slab_alloc(s), *f2 = bl_slab_alloc(s);
	assert_non_null(f1);
	assert_true((char *)f2 > (char *)f1);
	bl_slab_stats(s, &st);
	assert_int_equal(st.high_water, 12);
	assert_int_equal(st.slabs, 4);
	/* Back and forth on a segment boundary: 3 then 4 objects free. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(bl_slab_free(s, p[i]), 0);
	for (int round = 0; round < 20; round++) {
		assert_int_equal(bl_slab_free(s, p[3]), 0);
		bl_slab_stats(s, &st);
		assert_int_equal(st.objects_free, 4);
		assert_ptr_equal(bl_slab_alloc(s), p[3]);
		bl_slab_stats(s, &st);
		assert_int_equal(st.objects_free, 3);
		assert_int_equal(st.objects_in_use, 9);
	}
	for (int i = 3; i < 10; i++)
		assert_int_equal(bl_slab_free(s, p[i]), 0);
	assert_int_equal(bl_slab_free(s, f1), 0);
	assert_int_equal(bl_slab_free(s, f2), 0);
	bl_slab_stats(s, &st);
	assert_int_equal(st.objects_in_use, 0);
	assert_int_equal(st.high_water, 12);
	bl_slab_destroy(s);
}

/* last_error is the outcome of the last alloc, also when frees in between
 * take the inline path and the next alloc could have too. */
static void test_error_then_inline(void **state)
{
	struct bl_slab *s = make(32, 0, 2, 2, 0, false);
	void *a = bl_slab_alloc(s), *b = bl_slab_alloc(s);

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_null(bl_slab_alloc(s));
	assert_int_equal(bl_slab_last_error(s), BL_EFULL);
	assert_int_equal(bl_slab_free(s, a), 0);
	assert_int_equal(bl_slab_last_error(s), BL_EFULL); /* free leaves it */
	assert_ptr_equal(bl_slab_alloc(s), a);
	assert_int_equal(bl_slab_last_error(s), 0);
	assert_int_equal(bl_slab_free(s, a), 0);
	assert_ptr_equal(bl_slab_alloc(s), a);
	assert_int_equal(bl_slab_last_error(s), 0);
	assert_int_equal(bl_slab_free(s, a), 0);
	assert_int_equal(bl_slab_free(s, b), 0);
	bl_slab_destroy(s);
}

/* The inline functions also exist as ordinary functions (slab.c emits them):
 * called through pointers they behave the same, checks included. */
static void test_external_definitions(void **state)
{
	void *(*alloc_fn)(struct bl_slab *) = bl_slab_alloc;
	int (*free_fn)(struct bl_slab *, void *) = bl_slab_free;
	struct bl_slab *s = make(24, 0, 4, 0, 0, true);
	struct bl_slab_stats st;
	char *p, *q;

	(void)state;
	p = alloc_fn(s);
	q = bl_slab_alloc(s);
	assert_non_null(p);
	assert_non_null(q);
	memset(p, 0x77, 24);
	assert_int_equal(free_fn(s, p), 0);
	assert_int_equal(free_fn(s, p), BL_EINVAL);
	assert_int_equal(bl_slab_free(s, p), BL_EINVAL);
	assert_int_equal(free_fn(s, q + 8), BL_EINVAL);
	assert_ptr_equal(alloc_fn(s), p);
	for (int i = 0; i < 24; i++)
		assert_int_equal(p[i], 0); /* zeroed again */
	/* Never handed out: tagged free, refused in any build. */
	bl_slab_stats(s, &st);
	assert_ptr_equal(q, p + st.object_stride);
	assert_int_equal(free_fn(s, q + st.object_stride), BL_EINVAL);
	assert_int_equal(bl_slab_free(s, q + st.object_stride), BL_EINVAL);
	assert_int_equal(st.objects_in_use, 2);
	assert_int_equal(free_fn(s, p), 0);
	assert_int_equal(bl_slab_free(s, q), 0);
	bl_slab_destroy(s);
}

/* Random alloc/free against a shadow of live objects: every object aligned,
 * no two overlapping, every byte writable and intact until freed, stats equal
 * to the shadow's counts. */
static void run_random(uint64_t seed, size_t size, size_t align, size_t per, size_t cap, bool zero)
{
	enum { N = 300, STEPS = 4000 };
	struct bl_slab *s = make(size, align, per, cap, 0, zero);
	void *live[N];
	unsigned ids[N];
	size_t n = 0, high = 0, want_align = align < MAXA ? MAXA : align;
	unsigned next_id = 1;
	uint64_t fails = 0;
	struct bl_slab_stats st;

	rng_state = seed;
	bl_slab_stats(s, &st);
	for (int step = 0; step < STEPS; step++) {
		bool do_alloc = n == 0 || (n < N && rng() % 100 < (step % 1000 < 600 ? 65 : 35));

		if (do_alloc) {
			char *p = bl_slab_alloc(s);

			if (!p) {
				assert_true(cap && n == cap);
				assert_int_equal(bl_slab_last_error(s), BL_EFULL);
				fails++;
				continue;
			}
			assert_int_equal((uintptr_t)p % want_align, 0);
			for (size_t i = 0; i < n; i++) {
				char *o = live[i];
				assert_true(p + st.object_stride <= o || o + st.object_stride <= p);
			}
			if (zero) {
				for (size_t i = 0; i < size; i++)
					assert_int_equal(p[i], 0);
			}
			fill(p, size, next_id);
			live[n] = p;
			ids[n++] = next_id++;
			if (n > high)
				high = n;
		} else {
			size_t k = rng() % n;

			check_fill(live[k], size, ids[k]);
			assert_int_equal(bl_slab_free(s, live[k]), 0);
			live[k] = live[--n];
			ids[k] = ids[n];
		}
		bl_slab_stats(s, &st);
		assert_int_equal(st.objects_in_use, n);
		assert_int_equal(st.high_water, high);
		assert_int_equal(st.failed_allocs, fails);
		assert_true(st.objects_in_use + st.objects_free <= st.slabs * per);
		if (cap)
			assert_true(st.objects_in_use + st.objects_free <= cap);
	}
	for (size_t i = 0; i < n; i++) {
		check_fill(live[i], size, ids[i]);
		assert_int_equal(bl_slab_free(s, live[i]), 0);
	}
	bl_slab_stats(s, &st);
	assert_int_equal(st.objects_in_use, 0);
	bl_slab_destroy(s);
	assert_int_equal(hs.live, 0);
}

static void test_random_model(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 8; seed++) {
		run_random(seed, 1 + (size_t)(seed * 37 % 200), seed % 3 ? 0 : 64, 1 + (size_t)(seed * 7 % 40), 0, seed & 1);
		run_random(seed * 1000, 24, 32, 16, 100, false);
	}
}

/* Fails the k-th hook call for k = 1, 2, ... through create and a sequence of
 * allocations that grows the pool several times. Each failure must return
 * BL_ENOMEM, leave stats as they were, and the pool must work afterwards. */
static void test_fail_every_growth(void **state)
{
	struct bl_slab_config cfg = { .object_size = 40, .objects_per_slab = 5, .hook = &test_hook };
	bool failed_any = true;

	(void)state;
	for (long k = 1; failed_any; k++) {
		struct bl_slab *s = NULL;
		struct bl_slab_stats before, after;
		void *p[23];
		int got = 0;

		memset(&hs, 0, sizeof hs);
		hs.fail_at = k;
		failed_any = false;
		int err = bl_slab_create(&cfg, &s);
		if (err) {
			assert_int_equal(err, BL_ENOMEM);
			assert_null(s);
			assert_int_equal(hs.live, 0);
			failed_any = true;
			continue;
		}
		while (got < 23) {
			bl_slab_stats(s, &before);
			void *o = bl_slab_alloc(s);
			if (!o) {
				assert_int_equal(bl_slab_last_error(s), BL_ENOMEM);
				bl_slab_stats(s, &after);
				assert_int_equal(after.failed_allocs, before.failed_allocs + 1);
				after.failed_allocs--;
				assert_memory_equal(&before, &after, sizeof before);
				assert_false(failed_any);
				failed_any = true;
				continue;
			}
			memset(o, got, 40);
			p[got++] = o;
		}
		bl_slab_stats(s, &after);
		assert_int_equal(after.slabs, 5);
		assert_int_equal(after.objects_in_use, 23);
		assert_int_equal(after.failed_allocs, failed_any ? 1 : 0);
		for (int i = 0; i < 23; i++)
			assert_int_equal(bl_slab_free(s, p[i]), 0);
		bl_slab_destroy(s);
		assert_int_equal(hs.live, 0);
		assert_int_equal(hs.live_bytes, 0);
	}
	assert_true(hs.fail_at > 6); /* create + 5 growth steps were all exercised */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_invalid, reset_hook, check_no_leak),
		cmocka_unit_test(test_default_hook),
		cmocka_unit_test_setup_teardown(test_stats_exact, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_alignment, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_cap_objects, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_cap_bytes, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_zeroing, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_bad_frees_refused, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_stack_segments, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_error_then_inline, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_external_definitions, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_random_model, reset_hook, check_no_leak),
		cmocka_unit_test_setup_teardown(test_fail_every_growth, reset_hook, check_no_leak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
