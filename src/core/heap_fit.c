/* The fit family of heap strategies: first_fit, next_fit, best_fit, worst_fit
 * and tlsf. They share one block format (a header with the block's size and its
 * predecessor's size, so both neighbours are found in O(1)), splitting and
 * coalescing; they differ only in how free blocks are indexed and searched.
 * The four "fit" strategies keep one unordered free list; tlsf keeps the
 * segregated lists of heap_tlsf.c. */
#include <string.h>

#include "ballast/error.h"
#include "heap_internal.h"

/* Block size that holds `bytes` of payload. bytes is at most the heap's size,
 * far from overflow. */
static size_t block_need(size_t bytes)
{
	size_t n = ((bytes + GRAIN - 1) & ~(GRAIN - 1)) + HDR;

	return n < MIN_BLOCK ? MIN_BLOCK : n;
}

/* The block physically after b, or NULL when b is the last. */
static struct blk *next_phys(const struct bl_heap *h, struct blk *b)
{
	char *n = (char *)b + b->size;

	return n < h->end ? (struct blk *)n : NULL;
}

/* ---- the single free list of first/next/best/worst fit ---- */

static void list_insert(struct bl_heap *h, struct blk *b)
{
	struct fnode *l = links(b);

	l->prev = NULL;
	l->next = h->list;
	if (h->list)
		links(h->list)->prev = b;
	h->list = b;
}

static void list_remove(struct bl_heap *h, struct blk *b)
{
	struct fnode *l = links(b);

	if (l->prev)
		links(l->prev)->next = l->next;
	else
		h->list = l->next;
	if (l->next)
		links(l->next)->prev = l->prev;
	if (h->rover == b)
		h->rover = l->next;
}

static struct blk *list_find(struct bl_heap *h, size_t need)
{
	struct blk *b, *pick = NULL;

	switch (h->strategy) {
	case BL_HEAP_FIRST_FIT:
		for (b = h->list; b; b = links(b)->next)
			if (b->size >= need)
				return b;
		return NULL;
	case BL_HEAP_NEXT_FIT: {
		/* From the rover to the end, then from the head to the rover. */
		struct blk *start = h->rover ? h->rover : h->list;

		for (b = start; b; b = links(b)->next)
			if (b->size >= need)
				goto found;
		for (b = h->list; b && b != start; b = links(b)->next)
			if (b->size >= need)
				goto found;
		return NULL;
found:
		h->rover = links(b)->next;
		return b;
	}
	case BL_HEAP_BEST_FIT:
		for (b = h->list; b; b = links(b)->next) {
			if (b->size < need || (pick && b->size >= pick->size))
				continue;
			pick = b;
			if (b->size == need)
				break;
		}
		return pick;
	case BL_HEAP_WORST_FIT:
		for (b = h->list; b; b = links(b)->next)
			if (!pick || b->size > pick->size)
				pick = b;
		return pick && pick->size >= need ? pick : NULL;
	default:
		return NULL;
	}
}

/* ---- index dispatch ---- */

static void idx_insert(struct bl_heap *h, struct blk *b)
{
	if (h->strategy == BL_HEAP_TLSF)
		bl_heap__tlsf_insert(h, b);
	else
		list_insert(h, b);
}

static void idx_remove(struct bl_heap *h, struct blk *b)
{
	if (h->strategy == BL_HEAP_TLSF)
		bl_heap__tlsf_remove(h, b);
	else
		list_remove(h, b);
}

/* ---- splitting and coalescing ---- */

/* Cuts b down to `need` bytes when the rest can make a block of its own, and
 * returns the rest (not yet tagged, not indexed), or NULL. */
static struct blk *split(struct bl_heap *h, struct blk *b, size_t need)
{
	struct blk *rest, *n;

	if (b->size - need < MIN_BLOCK)
		return NULL;
	rest = (struct blk *)((char *)b + need);
	rest->size = b->size - need;
	rest->prev_size = need;
	rest->order = 0;
	b->size = need;
	n = next_phys(h, rest);
	if (n)
		n->prev_size = rest->size;
	return rest;
}

/* Makes b (not indexed) free: merges it with a free neighbour on either side
 * and indexes the result. */
static void put_free(struct bl_heap *h, struct blk *b)
{
	struct blk *n = next_phys(h, b), *p;

	if (n && blk_is(n, TAG_FREE)) {
		idx_remove(h, n);
		b->size += n->size;
		n->tag = TAG_DEAD;
	}
	if (b->prev_size) {
		p = (struct blk *)((char *)b - b->prev_size);
		if (blk_is(p, TAG_FREE)) {
			idx_remove(h, p);
			p->size += b->size;
			b->tag = TAG_DEAD;
			b = p;
		}
	}
	n = next_phys(h, b);
	if (n)
		n->prev_size = b->size;
	b->tag = tag_of(b, TAG_FREE);
	idx_insert(h, b);
}

void bl_heap__fit_init(struct bl_heap *h)
{
	struct blk *b = (struct blk *)h->base;

	b->size = h->total;
	b->prev_size = 0;
	b->order = 0;
	b->tag = tag_of(b, TAG_FREE);
	idx_insert(h, b);
}

struct blk *bl_heap__fit_alloc(struct bl_heap *h, size_t bytes)
{
	size_t need = block_need(bytes);
	struct blk *b, *rest;

	if (need > h->total)
		return NULL;
	if (h->strategy == BL_HEAP_TLSF)
		b = bl_heap__tlsf_find(h, need);
	else
		b = list_find(h, need);
	if (!b)
		return NULL;
	idx_remove(h, b);
	rest = split(h, b, need);
	if (rest) {
		/* b was free, so the block after it is not: nothing to merge. */
		rest->tag = tag_of(rest, TAG_FREE);
		idx_insert(h, rest);
	}
	b->tag = tag_of(b, TAG_USED);
	h->used += b->size;
	return b;
}

void bl_heap__fit_release(struct bl_heap *h, struct blk *b)
{
	h->used -= b->size;
	put_free(h, b);
}

bool bl_heap__fit_resize(struct bl_heap *h, struct blk *b, size_t bytes)
{
	size_t need = block_need(bytes);
	struct blk *n, *rest;

	if (need > h->total)
		return false;
	if (need <= b->size) {
		rest = split(h, b, need);
		if (rest) {
			h->used -= rest->size;
			put_free(h, rest);
		}
		return true;
	}
	n = next_phys(h, b);
	if (!n || !blk_is(n, TAG_FREE) || b->size + n->size < need)
		return false;
	idx_remove(h, n);
	h->used += n->size;
	b->size += n->size;
	n->tag = TAG_DEAD;
	n = next_phys(h, b);
	if (n)
		n->prev_size = b->size;
	rest = split(h, b, need);
	if (rest) {
		h->used -= rest->size;
		rest->tag = tag_of(rest, TAG_FREE);
		idx_insert(h, rest);
	}
	return true;
}

bool bl_heap__fit_owns(const struct bl_heap *h, const struct blk *b)
{
	uintptr_t u = (uintptr_t)b, lo = (uintptr_t)h->base, hi = (uintptr_t)h->end;
	const struct blk *n;

	if (u < lo || u > hi - MIN_BLOCK || (u - lo) % GRAIN)
		return false;
	if (!blk_is(b, TAG_USED))
		return false;
	if (b->size < MIN_BLOCK || b->size % GRAIN || b->size > hi - u)
		return false;
	if (b->prev_size > u - lo || b->prev_size % GRAIN)
		return false;
	n = (const struct blk *)((const char *)b + b->size);
	return (const char *)n == h->end || n->prev_size == b->size;
}

size_t bl_heap__fit_largest(const struct bl_heap *h)
{
	size_t best = 0;
	struct blk *b;

	if (h->strategy == BL_HEAP_TLSF)
		return bl_heap__tlsf_largest(h);
	for (b = h->list; b; b = links(b)->next)
		if (b->size > best)
			best = b->size;
	return best;
}

int bl_heap__fit_check(const struct bl_heap *h)
{
	size_t used = 0, free_bytes = 0, nfree = 0, nused = 0, listed = 0, prev = 0;
	bool prev_free = false;
	char *p = h->base;
	struct blk *b;

	while (p < h->end) {
		bool is_free;

		b = (struct blk *)p;
		is_free = blk_is(b, TAG_FREE);
		if (!is_free && !blk_is(b, TAG_USED))
			return BL_ECORRUPT;
		if (b->size < MIN_BLOCK || b->size % GRAIN ||
		    b->size > (size_t)(h->end - p) || b->prev_size != prev)
			return BL_ECORRUPT;
		if (is_free && prev_free)
			return BL_ECORRUPT; /* two free neighbours left unmerged */
		if (is_free) {
			free_bytes += b->size;
			nfree++;
			if (h->strategy == BL_HEAP_TLSF && !bl_heap__tlsf_indexed(h, b))
				return BL_ECORRUPT;
		} else {
			used += b->size;
			nused++;
		}
		prev_free = is_free;
		prev = b->size;
		p += b->size;
	}
	if (p != h->end || used != h->used || used + free_bytes != h->total ||
	    nused != h->live)
		return BL_ECORRUPT;
	if (h->strategy == BL_HEAP_TLSF) {
		for (size_t f = 0; f < FL_COUNT; f++)
			for (size_t s = 0; s < SL_COUNT; s++)
				for (b = h->bins[f][s]; b; b = links(b)->next)
					listed++;
	} else {
		for (b = h->list; b; b = links(b)->next) {
			if (!blk_is(b, TAG_FREE) || ++listed > nfree)
				return BL_ECORRUPT;
		}
	}
	return listed == nfree ? 0 : BL_ECORRUPT;
}
