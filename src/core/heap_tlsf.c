/* TLSF's free-block index: two-level segregated fit (Masmano et al., 2004).
 *
 * Free blocks sit in lists by size class. The first level is the power of two
 * (fls of the size), the second splits each power of two into SL_COUNT equal
 * ranges; below SMALL_BLOCK, classes are simply GRAIN apart. A bitmap of
 * non-empty first levels and one of non-empty lists per first level turn
 * "smallest non-empty class at least this big" into two find-first-set
 * instructions, so insert, remove and find are O(1). */
#include "heap_internal.h"

static unsigned fls_size(size_t x)
{
	return (unsigned)(sizeof(unsigned long long) * 8 - 1) -
	       (unsigned)__builtin_clzll((unsigned long long)x);
}

static unsigned ffs_u64(uint64_t x)
{
	return (unsigned)__builtin_ctzll((unsigned long long)x);
}

/* The class holding blocks of exactly `size` bytes. */
static void mapping(size_t size, unsigned *fl, unsigned *sl)
{
	if (size < SMALL_BLOCK) {
		*fl = 0;
		*sl = (unsigned)(size / (SMALL_BLOCK / SL_COUNT));
	} else {
		unsigned f = fls_size(size);

		*sl = (unsigned)(size >> (f - SL_LOG2)) - SL_COUNT;
		*fl = f - FL_SHIFT + 1;
	}
}

void bl_heap__tlsf_insert(struct bl_heap *h, struct blk *b)
{
	unsigned fl, sl;
	struct fnode *l = links(b);

	mapping(b->size, &fl, &sl);
	l->prev = NULL;
	l->next = h->bins[fl][sl];
	if (l->next)
		links(l->next)->prev = b;
	h->bins[fl][sl] = b;
	h->fl_bitmap |= UINT64_C(1) << fl;
	h->sl_bitmap[fl] |= 1u << sl;
}

void bl_heap__tlsf_remove(struct bl_heap *h, struct blk *b)
{
	unsigned fl, sl;
	struct fnode *l = links(b);

	mapping(b->size, &fl, &sl);
	if (l->prev)
		links(l->prev)->next = l->next;
	else
		h->bins[fl][sl] = l->next;
	if (l->next)
		links(l->next)->prev = l->prev;
	if (!h->bins[fl][sl]) {
		h->sl_bitmap[fl] &= ~(1u << sl);
		if (!h->sl_bitmap[fl])
			h->fl_bitmap &= ~(UINT64_C(1) << fl);
	}
}

struct blk *bl_heap__tlsf_find(struct bl_heap *h, size_t need)
{
	size_t size = need;
	unsigned fl, sl;
	uint32_t sl_map;
	uint64_t fl_map;
	struct blk *b;

	/* Round up to the next class boundary, so any block of the class found
	 * is big enough: that is what keeps the search free of list walks. */
	if (size >= SMALL_BLOCK)
		size += ((size_t)1 << (fls_size(size) - SL_LOG2)) - 1;
	mapping(size, &fl, &sl);
	if (fl < FL_COUNT) {
		sl_map = h->sl_bitmap[fl] & (~0u << sl);
		if (!sl_map) {
			fl_map = fl + 1 < 64 ? h->fl_bitmap & (~UINT64_C(0) << (fl + 1)) : 0;
			if (fl_map) {
				fl = ffs_u64(fl_map);
				sl_map = h->sl_bitmap[fl];
			}
		}
		if (sl_map)
			return h->bins[fl][ffs_u64(sl_map)];
	}
	/* Nothing in a class wholly above the request. The request's own class
	 * may still hold a block big enough (near exhaustion, or a request for
	 * the whole heap): look there before failing. Only failures pay this. */
	mapping(need, &fl, &sl);
	for (b = h->bins[fl][sl]; b; b = links(b)->next)
		if (b->size >= need)
			return b;
	return NULL;
}

size_t bl_heap__tlsf_largest(const struct bl_heap *h)
{
	unsigned fl, sl;
	size_t best = 0;
	struct blk *b;

	if (!h->fl_bitmap)
		return 0;
	fl = 63u - (unsigned)__builtin_clzll((unsigned long long)h->fl_bitmap);
	sl = 31u - (unsigned)__builtin_clz(h->sl_bitmap[fl]);
	for (b = h->bins[fl][sl]; b; b = links(b)->next)
		if (b->size > best)
			best = b->size;
	return best;
}

bool bl_heap__tlsf_indexed(const struct bl_heap *h, const struct blk *b)
{
	unsigned fl, sl;
	struct blk *e;

	mapping(b->size, &fl, &sl);
	for (e = h->bins[fl][sl]; e; e = links(e)->next)
		if (e == b)
			return true;
	return false;
}
