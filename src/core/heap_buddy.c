/* The buddy strategy: a binary buddy system (Knowlton, 1965).
 *
 * The managed area is the largest power of two that fits in the region. Every
 * block is 2^k bytes at an offset that is a multiple of 2^k, so its buddy, the
 * other half of the block it was split from, is at offset ^ 2^k: found by
 * arithmetic, merged when both halves are free. One free list per order. */
#include "ballast/error.h"
#include "heap_internal.h"

/* A block's order: log2 of its size. */
static unsigned order_of(const struct blk *b)
{
	return (unsigned)__builtin_ctzll((unsigned long long)b->head);
}

static void push(struct bl_heap *h, struct blk *b, unsigned k)
{
	struct fnode *l = links(b);

	b->head = (size_t)1 << k;
	b->tag = tag_of(b, TAG_FREE);
	l->prev = NULL;
	l->next = h->orders[k];
	if (l->next)
		links(l->next)->prev = b;
	h->orders[k] = b;
}

static void unlink_free(struct bl_heap *h, struct blk *b)
{
	struct fnode *l = links(b);

	if (l->prev)
		links(l->prev)->next = l->next;
	else
		h->orders[order_of(b)] = l->next;
	if (l->next)
		links(l->next)->prev = l->prev;
}

/* The smallest order holding `bytes` of payload, or max_order + 1. */
static unsigned order_for(const struct bl_heap *h, size_t bytes)
{
	unsigned k = BUDDY_MIN_ORDER;

	if (bytes > h->total - HDR)
		return h->max_order + 1;
	while (((size_t)1 << k) < bytes + HDR)
		k++;
	return k;
}

static struct blk *buddy_of(const struct bl_heap *h, const struct blk *b, unsigned k)
{
	size_t off = (size_t)((const char *)b - h->base);

	return (struct blk *)(h->base + (off ^ ((size_t)1 << k)));
}

void bl_heap__buddy_init(struct bl_heap *h)
{
	push(h, (struct blk *)h->base, h->max_order);
}

struct blk *bl_heap__buddy_alloc(struct bl_heap *h, size_t bytes)
{
	unsigned want = order_for(h, bytes), k = want;
	struct blk *b;

	while (k <= h->max_order && !h->orders[k])
		k++;
	if (k > h->max_order)
		return NULL;
	b = h->orders[k];
	unlink_free(h, b);
	while (k > want) {
		k--;
		push(h, (struct blk *)((char *)b + ((size_t)1 << k)), k);
	}
	b->head = (size_t)1 << want;
	h->used += b->head;
	return b;
}

void bl_heap__buddy_release(struct bl_heap *h, struct blk *b)
{
	unsigned k = order_of(b);

	h->used -= b->head;
	while (k < h->max_order) {
		struct blk *bud = buddy_of(h, b, k);

		if (!blk_is(bud, TAG_FREE) || bud->head != (size_t)1 << k)
			break;
		unlink_free(h, bud);
		if (bud < b) {
			b->tag = TAG_DEAD;
			b = bud;
		} else {
			bud->tag = TAG_DEAD;
		}
		k++;
	}
	push(h, b, k);
}

bool bl_heap__buddy_resize(struct bl_heap *h, struct blk *b, size_t bytes)
{
	unsigned want = order_for(h, bytes), k = order_of(b), j;
	size_t off = (size_t)((char *)b - h->base);

	if (want > h->max_order)
		return false;
	if (want <= k) {
		/* Give back upper halves; their buddy (the lower half) is ours. */
		while (k > want) {
			k--;
			push(h, (struct blk *)((char *)b + ((size_t)1 << k)), k);
			h->used -= (size_t)1 << k;
		}
	} else {
		/* Grow in place only while b is the lower half and each upper
		 * half is free and whole. */
		for (j = k; j < want; j++) {
			struct blk *bud = buddy_of(h, b, j);

			if ((off & ((size_t)1 << j)) || !blk_is(bud, TAG_FREE) ||
			    bud->head != (size_t)1 << j)
				return false;
		}
		for (j = k; j < want; j++) {
			struct blk *bud = buddy_of(h, b, j);

			unlink_free(h, bud);
			bud->tag = TAG_DEAD;
			h->used += (size_t)1 << j;
		}
	}
	b->head = (size_t)1 << want;
	return true;
}

size_t bl_heap__buddy_largest(const struct bl_heap *h)
{
	for (unsigned k = h->max_order + 1; k-- > BUDDY_MIN_ORDER;)
		if (h->orders[k])
			return (size_t)1 << k;
	return 0;
}

int bl_heap__buddy_check(const struct bl_heap *h)
{
	size_t used = 0, nused = 0, nfree = 0, listed = 0;
	char *p = h->base;

	while (p < h->end) {
		struct blk *b = (struct blk *)p;
		bool is_free = blk_is(b, TAG_FREE);
		size_t off = (size_t)(p - h->base), size = b->head;
		unsigned k;

		if (!is_free && !blk_is_used(b))
			return BL_ECORRUPT;
		if (size == 0 || (size & (size - 1)) != 0)
			return BL_ECORRUPT;
		k = order_of(b);
		if (k < BUDDY_MIN_ORDER || k > h->max_order || off % size)
			return BL_ECORRUPT;
		if (is_free) {
			nfree++;
			if (k < h->max_order) {
				struct blk *bud = buddy_of(h, b, k);

				if (blk_is(bud, TAG_FREE) && bud->head == size)
					return BL_ECORRUPT; /* unmerged buddies */
			}
		} else {
			used += size;
			nused++;
		}
		p += size;
	}
	if (p != h->end || used != h->used || nused != h->allocs - h->frees)
		return BL_ECORRUPT;
	for (unsigned k = 0; k < BUDDY_ORDERS; k++)
		for (struct blk *b = h->orders[k]; b; b = links(b)->next) {
			if (!blk_is(b, TAG_FREE) || b->head != (size_t)1 << k || ++listed > nfree)
				return BL_ECORRUPT;
		}
	return listed == nfree ? 0 : BL_ECORRUPT;
}
