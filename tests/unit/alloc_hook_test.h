/* A memory hook for allocator tests (slab, arena): counts what is live,
 * checks that every free gives back the size that was asked for, and fails
 * the Nth call on demand; and a seeded splitmix64 for test streams. Included
 * by one test file each: static on purpose. */
#ifndef BALLAST_TEST_ALLOC_HOOK_H
#define BALLAST_TEST_ALLOC_HOOK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ballast/alloc.h"

#define MAXA _Alignof(max_align_t)

/* ---- a counting hook that fails on demand ------------------------------- */

struct hook_state {
	long calls;        /* malloc_fn calls so far */
	long fail_at;      /* fail the call with this number (from 1); 0: never */
	long live;         /* allocations not yet freed */
	size_t live_bytes; /* their bytes */
};

static void *t_malloc(void *ctx, size_t bytes)
{
	struct hook_state *h = ctx;
	char *raw;

	if (++h->calls == h->fail_at)
		return NULL;
	if (bytes > ((size_t)1 << 40))
		return NULL; /* as glibc would; ASan aborts instead */
	raw = malloc(MAXA + bytes);
	if (!raw)
		return NULL;
	memcpy(raw, &bytes, sizeof bytes); /* checked against free_fn's bytes */
	h->live++;
	h->live_bytes += bytes;
	return raw + MAXA;
}

static void t_free(void *ctx, void *p, size_t bytes)
{
	struct hook_state *h = ctx;
	char *raw = (char *)p - MAXA;
	size_t had;

	memcpy(&had, raw, sizeof had);
	assert_int_equal(had, bytes);
	h->live--;
	h->live_bytes -= bytes;
	free(raw);
}

static struct hook_state hs;
static const struct bl_alloc_hook test_hook = { t_malloc, t_free, &hs };

static int reset_hook(void **state)
{
	(void)state;
	memset(&hs, 0, sizeof hs);
	return 0;
}

static int check_no_leak(void **state)
{
	(void)state;
	assert_int_equal(hs.live, 0);
	assert_int_equal(hs.live_bytes, 0);
	return 0;
}

static uint64_t rng_state;

/* splitmix64: small, seeded, good enough for test streams. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

#endif
