/* The fit family of heap strategies: first_fit, next_fit, best_fit, worst_fit
 * and tlsf. They share one block format, splitting and coalescing, and differ
 * only in how free blocks are indexed and searched: the four "fit" strategies
 * keep one unordered free list, tlsf the segregated lists of heap_internal.h.
 *
 * Block format: a 16-byte header (the block's size with a PREV_FREE flag, and
 * the tag). A free block also keeps its list links at the start of its payload
 * and its size in its last word, the footer. So the block after a free block
 * finds it in O(1) (PREV_FREE says the footer is there), and a live block
 * carries no size of its neighbour: 16 bytes of overhead, not 32. */
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

static struct blk *at(struct blk *b, size_t off)
{
	return (struct blk *)((char *)b + off);
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
			if (blk_size(b) >= need)
				return b;
		return NULL;
	case BL_HEAP_NEXT_FIT: {
		/* From the rover to the end, then from the head to the rover. */
		struct blk *start = h->rover ? h->rover : h->list;

		for (b = start; b; b = links(b)->next)
			if (blk_size(b) >= need)
				goto found;
		for (b = h->list; b && b != start; b = links(b)->next)
			if (blk_size(b) >= need)
				goto found;
		return NULL;
found:
		h->rover = links(b)->next;
		return b;
	}
	case BL_HEAP_BEST_FIT:
		for (b = h->list; b; b = links(b)->next) {
			if (blk_size(b) < need || (pick && blk_size(b) >= blk_size(pick)))
				continue;
			pick = b;
			if (blk_size(b) == need)
				break;
		}
		return pick;
	case BL_HEAP_WORST_FIT:
		for (b = h->list; b; b = links(b)->next)
			if (!pick || blk_size(b) > blk_size(pick))
				pick = b;
		return pick && blk_size(pick) >= need ? pick : NULL;
	default:
		return NULL;
	}
}

/* ---- index dispatch ---- */

static void idx_insert(struct bl_heap *h, struct blk *b)
{
	if (h->strategy == BL_HEAP_TLSF)
		tlsf_insert(h, b);
	else
		list_insert(h, b);
}

static void idx_remove(struct bl_heap *h, struct blk *b)
{
	if (h->strategy == BL_HEAP_TLSF)
		tlsf_remove(h, b);
	else
		list_remove(h, b);
}

/* ---- free blocks, splitting and coalescing ---- */

/* Makes [b, b + size) a free block, not yet indexed. The block before it
 * must not be free, and the one after it must already say PREV_FREE. */
static void mark_free(struct blk *b, size_t size)
{
	b->head = size;
	b->tag = tag_of(b, TAG_FREE);
	((size_t *)((char *)b + size))[-1] = size; /* the footer */
}

/* mark_free, then indexes b. */
static void make_free(struct bl_heap *h, struct blk *b, size_t size)
{
	mark_free(b, size);
	idx_insert(h, b);
}

/* Indexes free block nb in place of free block ob, of ob_size bytes, which
 * is no longer a block (its links are intact). */
static void idx_swap(struct bl_heap *h, struct blk *ob, size_t ob_size, struct blk *nb)
{
	if (h->strategy == BL_HEAP_TLSF) {
		unsigned oc = tlsf_class(ob_size), nc = tlsf_class(blk_size(nb));

		if (oc == nc) {
			tlsf_replace(h, ob, nb, oc);
		} else {
			tlsf_remove_at(h, ob, oc);
			tlsf_insert_at(h, nb, nc);
		}
	} else {
		list_remove(h, ob);
		list_insert(h, nb);
	}
}

/* Frees [b, b + size), whose predecessor is live: merges it with a free
 * successor, or tells the successor that its predecessor is now free. */
static void free_range(struct bl_heap *h, struct blk *b, size_t size)
{
	struct blk *n = at(b, size);

	if ((char *)n < h->end) {
		if (blk_is(n, TAG_FREE)) {
			/* The block after n already says PREV_FREE. b's new
			 * header and footer leave n's links intact for the
			 * swap. */
			size_t n_size = blk_size(n);

			mark_free(b, size + n_size);
			n->tag = TAG_DEAD;
			idx_swap(h, n, n_size, b);
			return;
		}
		n->head |= PREV_FREE;
	}
	make_free(h, b, size);
}

void bl_heap__fit_init(struct bl_heap *h)
{
	make_free(h, (struct blk *)h->base, h->total);
}

struct blk *bl_heap__fit_alloc(struct bl_heap *h, size_t bytes)
{
	size_t need = block_need(bytes), size;
	bool tlsf = h->strategy == BL_HEAP_TLSF;
	unsigned c = 0;
	struct blk *b;

	if (need > h->total)
		return NULL;
	b = tlsf ? tlsf_find(h, need, &c) : list_find(h, need);
	if (!b)
		return NULL;
	size = blk_size(b);
	if (size - need >= MIN_BLOCK) {
		/* The rest stays free: the block after it keeps PREV_FREE. */
		struct blk *rest = at(b, need);
		unsigned rc;

		mark_free(rest, size - need);
		if (!tlsf) {
			list_remove(h, b);
			list_insert(h, rest);
		} else if ((rc = tlsf_class(size - need)) == c) {
			tlsf_replace(h, b, rest, c);
		} else {
			tlsf_remove_at(h, b, c);
			tlsf_insert_at(h, rest, rc);
		}
		size = need;
	} else {
		struct blk *n = at(b, size);

		if (tlsf)
			tlsf_remove_at(h, b, c);
		else
			list_remove(h, b);
		if ((char *)n < h->end)
			n->head &= ~PREV_FREE;
	}
	b->head = size; /* b was free, so the block before it is not */
	h->used += size;
	return b;
}

void bl_heap__fit_release(struct bl_heap *h, struct blk *b)
{
	size_t size = blk_size(b);

	h->used -= size;
	if (b->head & PREV_FREE) {
		size_t prev_size = ((size_t *)b)[-1];
		struct blk *p = (struct blk *)((char *)b - prev_size);

		idx_remove(h, p);
		b->tag = TAG_DEAD;
		b = p;
		size += prev_size;
	}
	free_range(h, b, size);
}

bool bl_heap__fit_resize(struct bl_heap *h, struct blk *b, size_t bytes)
{
	size_t need = block_need(bytes), size = blk_size(b), flags = b->head & PREV_FREE;
	struct blk *n;

	if (need > h->total)
		return false;
	if (need <= size) {
		if (size - need >= MIN_BLOCK) {
			b->head = need | flags;
			h->used -= size - need;
			free_range(h, at(b, need), size - need);
		}
		return true;
	}
	n = at(b, size);
	if ((char *)n >= h->end || !blk_is(n, TAG_FREE) || size + blk_size(n) < need)
		return false;
	idx_remove(h, n);
	h->used += blk_size(n);
	size += blk_size(n);
	n->tag = TAG_DEAD;
	if (size - need >= MIN_BLOCK) {
		h->used -= size - need;
		make_free(h, at(b, need), size - need);
		size = need;
	} else {
		n = at(b, size);
		if ((char *)n < h->end)
			n->head &= ~PREV_FREE;
	}
	b->head = size | flags;
	return true;
}

size_t bl_heap__fit_largest(const struct bl_heap *h)
{
	size_t best = 0;
	struct blk *b;

	if (h->strategy == BL_HEAP_TLSF)
		return bl_heap__tlsf_largest(h);
	for (b = h->list; b; b = links(b)->next)
		if (blk_size(b) > best)
			best = blk_size(b);
	return best;
}

int bl_heap__fit_check(const struct bl_heap *h)
{
	size_t used = 0, free_bytes = 0, nfree = 0, nused = 0, listed = 0;
	bool prev_free = false;
	char *p = h->base;
	struct blk *b;

	while (p < h->end) {
		bool is_free;
		size_t size;

		b = (struct blk *)p;
		is_free = blk_is(b, TAG_FREE);
		if (!is_free && !blk_is_used(b))
			return BL_ECORRUPT;
		size = blk_size(b);
		if (size < MIN_BLOCK || size > (size_t)(h->end - p) ||
		    (b->head & ~SIZE_MASK & ~PREV_FREE) || !(b->head & PREV_FREE) != !prev_free)
			return BL_ECORRUPT;
		if (is_free && prev_free)
			return BL_ECORRUPT; /* two free neighbours left unmerged */
		if (is_free) {
			if (((size_t *)(p + size))[-1] != size)
				return BL_ECORRUPT; /* footer */
			free_bytes += size;
			nfree++;
			if (h->strategy == BL_HEAP_TLSF && !bl_heap__tlsf_indexed(h, b))
				return BL_ECORRUPT;
		} else {
			used += size;
			nused++;
		}
		prev_free = is_free;
		p += size;
	}
	if (p != h->end || used != h->used || used + free_bytes != h->total ||
	    nused != h->allocs - h->frees)
		return BL_ECORRUPT;
	if (h->strategy == BL_HEAP_TLSF) {
		for (size_t f = 0; f < FL_COUNT; f++)
			for (size_t s = 0; s < SL_COUNT; s++)
				for (b = h->bins[f * SL_COUNT + s]; b; b = links(b)->next)
					if (!blk_is(b, TAG_FREE) || ++listed > nfree)
						return BL_ECORRUPT;
	} else {
		for (b = h->list; b; b = links(b)->next) {
			if (!blk_is(b, TAG_FREE) || ++listed > nfree)
				return BL_ECORRUPT;
		}
	}
	return listed == nfree ? 0 : BL_ECORRUPT;
}
