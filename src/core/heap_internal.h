/* Internals shared by the heap's files: the block header, the heap object,
 * the tlsf index (inline: it is on every allocation's path) and the
 * per-family entry points. Not API: include/ballast/heap.h is. */
#ifndef BALLAST_HEAP_INTERNAL_H
#define BALLAST_HEAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/heap.h"

#define HDR ((size_t)BL_HEAP_HEADER_BYTES)
#define GRAIN ((size_t)BL_HEAP_MIN_ALIGN)

/* State words. Stored XORed with the header's own address, so a header copied
 * elsewhere, or user data that happens to hold a constant, does not pass. A
 * live block's word also carries, in its top ALIGN_BITS bits, log2 of the
 * alignment it was asked for, so a moving realloc keeps it. */
#define TAG_USED UINT64_C(0x5553454442414c31) /* a live block */
#define TAG_FREE UINT64_C(0x4652454542414c32) /* a free block */
#define TAG_SHIM UINT64_C(0x5348494d42414c33) /* in front of an aligned pointer */
#define TAG_DEAD UINT64_C(0)                  /* merged away: not a block */
#define ALIGN_SHIFT 58
#define ALIGN_BITS (~UINT64_C(0) << ALIGN_SHIFT)

/* The header in front of every block (BL_HEAP_HEADER_BYTES bytes). */
struct blk {
	size_t head;  /* fit family: whole block in bytes, header included, a
	               * multiple of GRAIN, ORed with PREV_FREE; buddy: the block
	               * size, 1 << order; shim: the distance back to the real
	               * block's header */
	uint64_t tag; /* TAG_* ^ address of this header (| alignment, live) */
};

/* Fit family: the block just before is free, and its last word (the footer)
 * holds its size. */
#define PREV_FREE ((size_t)1)
#define SIZE_MASK (~(GRAIN - 1))

/* Links of a free block, kept in its payload. */
struct fnode {
	struct blk *next; /* next in its free list, NULL at the end */
	struct blk *prev; /* previous in its free list, NULL at the head */
};

/* Smallest block of the fit family: a header, the links and the footer,
 * rounded up to the grain. */
#define MIN_BLOCK ((HDR + sizeof(struct fnode) + sizeof(size_t) + GRAIN - 1) & ~(GRAIN - 1))

/* TLSF index geometry: SL_COUNT second-level lists per power of two; sizes
 * below SMALL_BLOCK go to first level 0, one list per GRAIN step (exact). */
#define SL_LOG2 5
#define SL_COUNT (1u << SL_LOG2)
#define FL_SHIFT (SL_LOG2 + 4)
#define SMALL_BLOCK ((size_t)1 << FL_SHIFT)
#define FL_COUNT (sizeof(size_t) * 8 - FL_SHIFT + 1)

/* Buddy geometry: the smallest block is 64 bytes. */
#define BUDDY_MIN_ORDER 6
#define BUDDY_ORDERS (sizeof(size_t) * 8)

struct bl_heap {
	enum bl_heap_strategy strategy; /* fixed at creation */
	size_t alignment;    /* alignment of bl_heap_alloc() results, bytes */
	char *base;          /* first managed byte, GRAIN-aligned */
	char *end;           /* one past the last managed byte */
	size_t total;        /* end - base, bytes */
	void *owned;         /* region obtained through the hook, or NULL */
	size_t owned_bytes;  /* its size, for the hook's free */
	struct bl_alloc_hook alloc; /* the hook used at create and destroy */

	size_t used;         /* bytes in allocated blocks, headers included */
	size_t high_water;   /* the most `used` has been */
	uint64_t allocs;     /* successful allocations (live = allocs - frees) */
	uint64_t frees;      /* successful frees */
	uint64_t failed;     /* allocations that returned NULL */
	int last_error;      /* error of the last failed allocation call */

	/* Free-list strategies: one unordered list, LIFO insertion. */
	struct blk *list;    /* head */
	struct blk *rover;   /* next_fit: where the next search starts */

	/* TLSF: bitmaps of non-empty lists and the lists. */
	uint64_t fl_bitmap;           /* bit f: some list in first level f */
	uint32_t sl_bitmap[FL_COUNT]; /* bit s: list [f][s] non-empty */
	struct blk *bins[FL_COUNT * SL_COUNT]; /* free lists by size class */

	/* Buddy: one free list per order. */
	unsigned max_order;               /* log2(total) */
	struct blk *orders[BUDDY_ORDERS]; /* free blocks of each order */
};

static inline uint64_t tag_of(const struct blk *b, uint64_t t)
{
	return t ^ (uint64_t)(uintptr_t)b;
}

static inline bool blk_is(const struct blk *b, uint64_t t)
{
	return b->tag == tag_of(b, t);
}

/* A live block, whatever alignment it carries. */
static inline bool blk_is_used(const struct blk *b)
{
	return ((b->tag ^ tag_of(b, TAG_USED)) & ~ALIGN_BITS) == 0;
}

static inline unsigned blk_align_log2(const struct blk *b)
{
	return (unsigned)((b->tag ^ tag_of(b, TAG_USED)) >> ALIGN_SHIFT);
}

static inline void blk_set_used(struct blk *b, unsigned align_log2)
{
	b->tag = tag_of(b, TAG_USED) ^ ((uint64_t)align_log2 << ALIGN_SHIFT);
}

static inline size_t blk_size(const struct blk *b)
{
	return b->head & SIZE_MASK;
}

static inline void *payload(struct blk *b)
{
	return (char *)b + HDR;
}

static inline struct fnode *links(struct blk *b)
{
	return (struct fnode *)payload(b);
}

/* ---- the tlsf index (Masmano et al., 2004): docs/internals/heap.md ----
 *
 * A class is one index c = fl * SL_COUNT + sl into bins; its first level is
 * c >> SL_LOG2 and its second level c % SL_COUNT. */

static inline unsigned fls_size(size_t x)
{
	return (unsigned)(sizeof(unsigned long long) * 8 - 1) -
	       (unsigned)__builtin_clzll((unsigned long long)x);
}

/* The class holding blocks of exactly `size` bytes (size >= GRAIN). */
static inline unsigned tlsf_class(size_t size)
{
	unsigned f;

	if (size < SMALL_BLOCK)
		return (unsigned)(size / GRAIN);
	f = fls_size(size);
	return ((f - FL_SHIFT) << SL_LOG2) + (unsigned)(size >> (f - SL_LOG2));
}

static inline void tlsf_insert_at(struct bl_heap *h, struct blk *b, unsigned c)
{
	struct blk *head = h->bins[c];

	links(b)->prev = NULL;
	if (head)
		links(head)->prev = b;
	links(b)->next = head;
	h->bins[c] = b;
	h->fl_bitmap |= UINT64_C(1) << (c >> SL_LOG2);
	h->sl_bitmap[c >> SL_LOG2] |= 1u << (c % SL_COUNT);
}

static inline void tlsf_remove_at(struct bl_heap *h, struct blk *b, unsigned c)
{
	struct blk *next = links(b)->next, *prev = links(b)->prev;

	if (next)
		links(next)->prev = prev;
	if (prev) {
		links(prev)->next = next;
		return;
	}
	h->bins[c] = next;
	if (!next) {
		h->sl_bitmap[c >> SL_LOG2] &= ~(1u << (c % SL_COUNT));
		if (!h->sl_bitmap[c >> SL_LOG2])
			h->fl_bitmap &= ~(UINT64_C(1) << (c >> SL_LOG2));
	}
}

static inline void tlsf_insert(struct bl_heap *h, struct blk *b)
{
	tlsf_insert_at(h, b, tlsf_class(blk_size(b)));
}

static inline void tlsf_remove(struct bl_heap *h, struct blk *b)
{
	tlsf_remove_at(h, b, tlsf_class(blk_size(b)));
}

/* Puts nb where ob is in the list of class c, both of that class. Saves a
 * remove and an insert, with their bitmap updates, when a block only shrinks
 * or grows a little: splitting or merging a large free block. */
static inline void tlsf_replace(struct bl_heap *h, struct blk *ob, struct blk *nb, unsigned c)
{
	struct blk *next = links(ob)->next, *prev = links(ob)->prev;

	/* The two links are written apart, each after a branch, on purpose:
	 * as one copy gcc makes it a 16-byte vector load and store, and the
	 * next 8-byte load of a link cannot be forwarded from that store
	 * (measured: the whole alloc/free pair twice as slow). */
	if (next)
		links(next)->prev = nb;
	links(nb)->next = next;
	if (prev)
		links(prev)->next = nb;
	else
		h->bins[c] = nb;
	links(nb)->prev = prev;
}

/* The smallest non-empty class whose every block holds `need` bytes, or
 * NULL: two find-first-set instructions (bl_heap__tlsf_find_slow covers the
 * rest). *c gets the class found. */
struct blk *bl_heap__tlsf_find_slow(struct bl_heap *h, size_t need, unsigned *c);

static inline struct blk *tlsf_find(struct bl_heap *h, size_t need, unsigned *c)
{
	size_t size = need;
	unsigned cls, fl;
	uint32_t sl_map;
	uint64_t fl_map;

	/* Round up to the next class boundary, so any block of the class found
	 * is big enough: that is what keeps the search free of list walks.
	 * Below SMALL_BLOCK a class holds one size: nothing to round. */
	if (size >= SMALL_BLOCK)
		size += ((size_t)1 << (fls_size(size) - SL_LOG2)) - 1;
	cls = tlsf_class(size);
	fl = cls >> SL_LOG2;
	if (fl < FL_COUNT) {
		sl_map = h->sl_bitmap[fl] & (~0u << (cls % SL_COUNT));
		if (!sl_map) {
			fl_map = h->fl_bitmap & (~UINT64_C(0) << (fl + 1));
			if (fl_map) {
				fl = (unsigned)__builtin_ctzll((unsigned long long)fl_map);
				sl_map = h->sl_bitmap[fl];
			}
		}
		if (sl_map) {
			*c = (fl << SL_LOG2) + (unsigned)__builtin_ctz(sl_map);
			return h->bins[*c];
		}
	}
	return bl_heap__tlsf_find_slow(h, need, c);
}

/* Whether b is the header of a live block of the fit family: in the region,
 * tagged live for its own address, a plausible size. Reads b's header only:
 * the tag is the check, and a free that reads no other line is faster. */
static inline bool fit_owns(const struct bl_heap *h, const struct blk *b)
{
	uintptr_t u = (uintptr_t)b, lo = (uintptr_t)h->base, hi = (uintptr_t)h->end;
	size_t size;

	if (u < lo || u > hi - MIN_BLOCK || (u - lo) % GRAIN)
		return false;
	if (!blk_is_used(b))
		return false;
	size = blk_size(b);
	return size >= MIN_BLOCK && size <= hi - u;
}

/* Whether b is the header of a live buddy block. */
static inline bool buddy_owns(const struct bl_heap *h, const struct blk *b)
{
	uintptr_t u = (uintptr_t)b, lo = (uintptr_t)h->base, hi = (uintptr_t)h->end;
	size_t size;

	if (u < lo || u >= hi || (u - lo) % ((size_t)1 << BUDDY_MIN_ORDER))
		return false;
	if (!blk_is_used(b))
		return false;
	size = b->head;
	return size >= ((size_t)1 << BUDDY_MIN_ORDER) && size <= h->total &&
	       (size & (size - 1)) == 0 && (size_t)(u - lo) % size == 0;
}

/* The heap's files' shared entry points. Sizes are payload bytes already
 * checked to be at most the heap's size. */

/* The fit family (first/next/best/worst fit and TLSF). alloc returns the
 * block with its size set, not yet tagged live: the caller tags it. */
void bl_heap__fit_init(struct bl_heap *h);
struct blk *bl_heap__fit_alloc(struct bl_heap *h, size_t bytes);
void bl_heap__fit_release(struct bl_heap *h, struct blk *b);
bool bl_heap__fit_resize(struct bl_heap *h, struct blk *b, size_t bytes);
size_t bl_heap__fit_largest(const struct bl_heap *h);
int bl_heap__fit_check(const struct bl_heap *h);

/* TLSF's non-hot helpers (heap_tlsf.c). */
size_t bl_heap__tlsf_largest(const struct bl_heap *h);
bool bl_heap__tlsf_indexed(const struct bl_heap *h, const struct blk *b);

/* The buddy family; alloc as the fit family's. */
void bl_heap__buddy_init(struct bl_heap *h);
struct blk *bl_heap__buddy_alloc(struct bl_heap *h, size_t bytes);
void bl_heap__buddy_release(struct bl_heap *h, struct blk *b);
bool bl_heap__buddy_resize(struct bl_heap *h, struct blk *b, size_t bytes);
size_t bl_heap__buddy_largest(const struct bl_heap *h);
int bl_heap__buddy_check(const struct bl_heap *h);

#endif
