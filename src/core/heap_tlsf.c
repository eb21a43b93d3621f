/* TLSF's search: two-level segregated fit (Masmano et al., 2004).
 *
 * Free blocks sit in lists by size class. The first level is the power of two
 * (fls of the size), the second splits each power of two into SL_COUNT equal
 * ranges; below SMALL_BLOCK, classes are simply GRAIN apart. A bitmap of
 * non-empty first levels and one of non-empty lists per first level turn
 * "smallest non-empty class at least this big" into two find-first-set
 * instructions, so insert, remove and find are O(1). They are inline in
 * heap_internal.h; this file has the rare paths. */
#include "heap_internal.h"

/* tlsf_find when no class wholly above the request has a block. The
 * request's own class may still hold a block big enough (near exhaustion, or
 * a request for the whole heap): look there before failing. Only failures
 * and near-failures pay this walk. */
struct blk *bl_heap__tlsf_find_slow(struct bl_heap *h, size_t need, unsigned *c)
{
	struct blk *b;

	*c = tlsf_class(need);
	for (b = h->bins[*c]; b; b = links(b)->next)
		if (blk_size(b) >= need)
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
	for (b = h->bins[(fl << SL_LOG2) + sl]; b; b = links(b)->next)
		if (blk_size(b) > best)
			best = blk_size(b);
	return best;
}

bool bl_heap__tlsf_indexed(const struct bl_heap *h, const struct blk *b)
{
	struct blk *e;

	for (e = h->bins[tlsf_class(blk_size(b))]; e; e = links(e)->next)
		if (e == b)
			return true;
	return false;
}
