/* The heap's public face: creation, the allocation calls shared by every
 * strategy, aligned blocks, pointer validation and statistics. The strategies
 * live in heap_fit.c (first/next/best/worst fit, tlsf with heap_tlsf.c) and
 * heap_buddy.c. */
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "heap_internal.h"

_Static_assert(sizeof(struct blk) == BL_HEAP_HEADER_BYTES, "block header size");
_Static_assert(BL_HEAP_HEADER_BYTES % BL_HEAP_MIN_ALIGN == 0, "header breaks alignment");

static const char *const strategy_names[BL_HEAP_STRATEGIES] = {
	[BL_HEAP_FIRST_FIT] = "first_fit", [BL_HEAP_NEXT_FIT] = "next_fit",
	[BL_HEAP_BEST_FIT] = "best_fit",   [BL_HEAP_WORST_FIT] = "worst_fit",
	[BL_HEAP_TLSF] = "tlsf",           [BL_HEAP_BUDDY] = "buddy",
};

const char *bl_heap_strategy_name(enum bl_heap_strategy s)
{
	if ((unsigned)s >= BL_HEAP_STRATEGIES)
		return "unknown";
	return strategy_names[s];
}

int bl_heap_strategy_parse(const char *name)
{
	if (!name)
		return BL_EINVAL;
	for (int i = 0; i < BL_HEAP_STRATEGIES; i++)
		if (strcmp(name, strategy_names[i]) == 0)
			return i;
	return BL_EINVAL;
}

static bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

#define GRAIN_LOG2 4u
_Static_assert(GRAIN == (size_t)1 << GRAIN_LOG2, "GRAIN_LOG2");

static bool is_buddy(const struct bl_heap *h)
{
	return h->strategy == BL_HEAP_BUDDY;
}

/* Bytes a managed area needs at least to hold one block. */
static size_t min_area(enum bl_heap_strategy s)
{
	return s == BL_HEAP_BUDDY ? (size_t)1 << BUDDY_MIN_ORDER : MIN_BLOCK;
}

/* Lays the managed area over [mem, mem + bytes): aligned in, trimmed, and for
 * buddy cut to a power of two. Returns false when too little is left. */
static bool place(struct bl_heap *h, void *mem, size_t bytes)
{
	uintptr_t lo = ((uintptr_t)mem + GRAIN - 1) & ~(uintptr_t)(GRAIN - 1);
	uintptr_t hi = ((uintptr_t)mem + bytes) & ~(uintptr_t)(GRAIN - 1);
	size_t n;

	if (hi <= lo)
		return false;
	n = (size_t)(hi - lo);
	if (h->strategy == BL_HEAP_BUDDY) {
		unsigned k = 0;

		while (k + 1 < BUDDY_ORDERS && ((size_t)1 << (k + 1)) <= n)
			k++;
		n = (size_t)1 << k;
		h->max_order = k;
	}
	if (n < min_area(h->strategy))
		return false;
	h->base = (char *)lo;
	h->total = n;
	h->end = h->base + n;
	return true;
}

int bl_heap_create(const struct bl_heap_config *cfg, struct bl_heap **out)
{
	struct bl_alloc_hook a = bl_alloc_malloc;
	struct bl_heap *h;
	size_t align;
	void *mem;

	if (!cfg || !out || (unsigned)cfg->strategy >= BL_HEAP_STRATEGIES)
		return BL_EINVAL;
	align = cfg->alignment ? cfg->alignment : GRAIN;
	if (!is_pow2(align))
		return BL_EINVAL;
	if (align < GRAIN)
		align = GRAIN;
	if (cfg->hook) {
		if (!cfg->hook->malloc_fn || !cfg->hook->free_fn)
			return BL_EINVAL;
		a = *cfg->hook;
	}
	/* Keep every size sum far from overflow, and refuse what cannot hold a
	 * block before allocating anything. */
	if (cfg->region_bytes > SIZE_MAX / 4 ||
	    cfg->region_bytes < min_area(cfg->strategy))
		return BL_ERANGE;
	if (cfg->region && (uintptr_t)cfg->region > UINTPTR_MAX - cfg->region_bytes)
		return BL_ERANGE;

	h = a.malloc_fn(a.ctx, sizeof(*h));
	if (!h)
		return BL_ENOMEM;
	memset(h, 0, sizeof(*h));
	h->strategy = cfg->strategy;
	h->alignment = align;
	h->alloc = a;
	mem = cfg->region;
	if (!mem) {
		mem = a.malloc_fn(a.ctx, cfg->region_bytes);
		if (!mem) {
			a.free_fn(a.ctx, h, sizeof(*h));
			return BL_ENOMEM;
		}
		h->owned = mem;
		h->owned_bytes = cfg->region_bytes;
	}
	if (!place(h, mem, cfg->region_bytes))
		goto free_region;
	if (is_buddy(h))
		bl_heap__buddy_init(h);
	else
		bl_heap__fit_init(h);
	*out = h;
	return 0;

free_region:
	if (h->owned)
		a.free_fn(a.ctx, h->owned, h->owned_bytes);
	a.free_fn(a.ctx, h, sizeof(*h));
	return BL_ERANGE;
}

void bl_heap_destroy(struct bl_heap *h)
{
	struct bl_alloc_hook a;

	if (!h)
		return;
	a = h->alloc;
	if (h->owned)
		a.free_fn(a.ctx, h->owned, h->owned_bytes);
	a.free_fn(a.ctx, h, sizeof(*h));
}

/* resolve() for a pointer whose header is not a live block's: the block of
 * an aligned allocation, behind its shim, or NULL. */
static struct blk *resolve_shim(const struct bl_heap *h, struct blk *s, struct blk **shim)
{
	uintptr_t lo = (uintptr_t)h->base;
	struct blk *b;

	if (!blk_is(s, TAG_SHIM))
		return NULL;
	/* The shim says how far back its block is. */
	if (s->head % GRAIN || s->head > (size_t)((uintptr_t)s - lo))
		return NULL;
	b = (struct blk *)((char *)s - s->head);
	if (is_buddy(h) ? !buddy_owns(h, b) : !fit_owns(h, b))
		return NULL;
	if ((char *)s < (char *)payload(b) || (char *)s + HDR + GRAIN > (char *)b + blk_size(b))
		return NULL;
	*shim = s;
	return b;
}

/* Finds the block behind p, or NULL when p is not a live allocation of h.
 * *shim gets the shim header of an aligned allocation, or NULL. Reads only
 * the header in front of p (and a shim's block's). */
static struct blk *resolve(const struct bl_heap *h, const void *p, struct blk **shim)
{
	uintptr_t u = (uintptr_t)p, off = u - (uintptr_t)h->base;
	struct blk *b = (struct blk *)(u - HDR);
	size_t size;

	*shim = NULL;
	/* In the region, past the first header, on the grain: off wraps
	 * around for a p below the region. */
	if (off - HDR >= h->total - HDR || off % GRAIN)
		return NULL;
	if (!blk_is_used(b))
		return resolve_shim(h, b, shim);
	size = b->head & SIZE_MASK;
	if (is_buddy(h))
		return buddy_owns(h, b) ? b : NULL;
	return size >= MIN_BLOCK && size <= (size_t)(h->end - (char *)b) ? b : NULL;
}

static struct blk *family_alloc(struct bl_heap *h, size_t bytes)
{
	return is_buddy(h) ? bl_heap__buddy_alloc(h, bytes) : bl_heap__fit_alloc(h, bytes);
}

static void family_release(struct bl_heap *h, struct blk *b)
{
	if (is_buddy(h))
		bl_heap__buddy_release(h, b);
	else
		bl_heap__fit_release(h, b);
}

static void *fail(struct bl_heap *h, int err)
{
	h->failed++;
	h->last_error = err;
	return NULL;
}

/* Tags b live with its alignment and counts the allocation. */
static void note_alloc(struct bl_heap *h, struct blk *b, unsigned align_log2)
{
	blk_set_used(b, align_log2);
	h->allocs++;
	if (h->used > h->high_water)
		h->high_water = h->used;
}

/* Allocates with alignment `align` (a power of two >= GRAIN). A block whose
 * payload is not aligned by chance gets a shim header just before the aligned
 * pointer, leading back to the block. */
static void *alloc_aligned(struct bl_heap *h, size_t bytes, size_t align)
{
	struct blk *b, *s;
	uintptr_t p;

	if (bytes > h->total || align > h->total)
		return fail(h, BL_ETOOBIG);
	b = family_alloc(h, align == GRAIN ? bytes : bytes + align + HDR);
	if (!b)
		return fail(h, BL_ENOMEM);
	note_alloc(h, b, (unsigned)__builtin_ctzll((unsigned long long)align));
	p = (uintptr_t)payload(b);
	if (p % align == 0)
		return (void *)p;
	p = (p + HDR + align - 1) & ~(uintptr_t)(align - 1);
	s = (struct blk *)(p - HDR);
	s->head = (size_t)((char *)s - (char *)b);
	s->tag = tag_of(s, TAG_SHIM);
	return (void *)p;
}

void *bl_heap_alloc(struct bl_heap *h, size_t bytes)
{
	struct blk *b;

	if (h->alignment != GRAIN || bytes > h->total)
		return alloc_aligned(h, bytes, h->alignment);
	/* The common case, without the alignment arithmetic. */
	b = family_alloc(h, bytes);
	if (!b)
		return fail(h, BL_ENOMEM);
	note_alloc(h, b, GRAIN_LOG2);
	return payload(b);
}

void *bl_heap_aligned_alloc(struct bl_heap *h, size_t bytes, size_t align)
{
	if (!is_pow2(align))
		return fail(h, BL_EINVAL);
	if (align < h->alignment)
		align = h->alignment;
	return alloc_aligned(h, bytes, align);
}

/* Frees a block resolve() accepted. */
static void release(struct bl_heap *h, struct blk *b, struct blk *shim)
{
	if (shim)
		shim->tag = TAG_DEAD;
	family_release(h, b);
	h->frees++;
}

int bl_heap_free(struct bl_heap *h, void *p)
{
	struct blk *b, *shim;

	if (!p)
		return 0;
	b = resolve(h, p, &shim);
	if (!b)
		return BL_EINVAL;
	release(h, b, shim);
	return 0;
}

static size_t usable(struct blk *b, const void *p)
{
	return (size_t)((char *)b + blk_size(b) - (const char *)p);
}

void *bl_heap_realloc(struct bl_heap *h, void *p, size_t bytes)
{
	struct blk *b, *shim;
	size_t keep;
	void *q;
	bool moved_ok;

	if (!p)
		return bl_heap_alloc(h, bytes);
	b = resolve(h, p, &shim);
	if (!b) {
		h->last_error = BL_EINVAL;
		return NULL;
	}
	if (bytes > h->total)
		return fail(h, BL_ETOOBIG);
	if (!shim) {
		moved_ok = is_buddy(h) ? bl_heap__buddy_resize(h, b, bytes)
				       : bl_heap__fit_resize(h, b, bytes);
		if (moved_ok) {
			if (h->used > h->high_water)
				h->high_water = h->used;
			return p;
		}
	}
	q = alloc_aligned(h, bytes, (size_t)1 << blk_align_log2(b));
	if (!q)
		return NULL;
	keep = usable(b, p);
	memcpy(q, p, keep < bytes ? keep : bytes);
	release(h, b, shim);
	return q;
}

size_t bl_heap_usable_size(const struct bl_heap *h, const void *p)
{
	struct blk *b, *shim;

	if (!p)
		return 0;
	b = resolve(h, p, &shim);
	return b ? usable(b, p) : 0;
}

int bl_heap_last_error(const struct bl_heap *h)
{
	return h->last_error;
}

void bl_heap_stats(const struct bl_heap *h, struct bl_heap_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->total_bytes = h->total;
	st->used_bytes = h->used;
	st->free_bytes = h->total - h->used;
	st->largest_free_bytes = is_buddy(h) ? bl_heap__buddy_largest(h)
					     : bl_heap__fit_largest(h);
	st->fragmentation = st->free_bytes
		? 1.0 - (double)st->largest_free_bytes / (double)st->free_bytes : 0.0;
	st->high_water_bytes = h->high_water;
	st->live_blocks = (size_t)(h->allocs - h->frees);
	st->allocations = h->allocs;
	st->frees = h->frees;
	st->failed_allocations = h->failed;
}

enum bl_heap_strategy bl_heap_strategy(const struct bl_heap *h)
{
	return h->strategy;
}

int bl_heap_check(const struct bl_heap *h)
{
	return is_buddy(h) ? bl_heap__buddy_check(h) : bl_heap__fit_check(h);
}
