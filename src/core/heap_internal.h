/* Internals shared by the heap's files: the block header, the heap object and
 * the per-family entry points. Not API: include/ballast/heap.h is. */
#ifndef BALLAST_HEAP_INTERNAL_H
#define BALLAST_HEAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/heap.h"

#define HDR ((size_t)BL_HEAP_HEADER_BYTES)
#define GRAIN ((size_t)BL_HEAP_MIN_ALIGN)

/* State words. Stored XORed with the header's own address, so a header copied
 * elsewhere, or user data that happens to hold a constant, does not pass. */
#define TAG_USED UINT64_C(0x5553454442414c31) /* a live block */
#define TAG_FREE UINT64_C(0x4652454542414c32) /* a free block */
#define TAG_SHIM UINT64_C(0x5348494d42414c33) /* in front of an aligned pointer */
#define TAG_DEAD UINT64_C(0)                  /* merged away: not a block */

/* The header in front of every block (BL_HEAP_HEADER_BYTES bytes). */
struct blk {
	size_t size;      /* whole block in bytes, header included; for a shim,
	                   * the distance back to the real block's header */
	size_t prev_size; /* size of the block just before, 0 for the first (fit
	                   * family); the alignment asked for (shim); unused (buddy) */
	uint64_t tag;     /* TAG_* ^ address of this header */
	uint32_t order;   /* buddy: log2(size); otherwise 0 */
	uint32_t align_log2; /* live block: log2 of the alignment it was asked
	                      * for, so a moving realloc keeps it */
};

/* Links of a free block, kept in its payload. */
struct fnode {
	struct blk *next; /* next in its free list, NULL at the end */
	struct blk *prev; /* previous in its free list, NULL at the head */
};

/* Smallest block of the fit family: a header plus the links. */
#define MIN_BLOCK (HDR + GRAIN)

/* TLSF index geometry: 16 second-level lists per power of two; sizes below
 * 256 bytes go to first level 0, in 16-byte steps. */
#define SL_LOG2 4
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
	size_t live;         /* allocated blocks */
	uint64_t allocs;     /* successful allocations */
	uint64_t frees;      /* successful frees */
	uint64_t failed;     /* allocations that returned NULL */
	int last_error;      /* error of the last failed allocation call */

	/* Free-list strategies: one unordered list, LIFO insertion. */
	struct blk *list;    /* head */
	struct blk *rover;   /* next_fit: where the next search starts */

	/* TLSF: bitmaps of non-empty lists and the lists. */
	uint64_t fl_bitmap;           /* bit f: some list in first level f */
	uint32_t sl_bitmap[FL_COUNT]; /* bit s: list [f][s] non-empty */
	struct blk *bins[FL_COUNT][SL_COUNT]; /* free lists by size class */

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

static inline void *payload(struct blk *b)
{
	return (char *)b + HDR;
}

static inline struct fnode *links(struct blk *b)
{
	return (struct fnode *)payload(b);
}

/* The fit family (first/next/best/worst fit and TLSF). Sizes are payload bytes
 * already checked to fit in the heap. */
void bl_heap__fit_init(struct bl_heap *h);
struct blk *bl_heap__fit_alloc(struct bl_heap *h, size_t bytes);
void bl_heap__fit_release(struct bl_heap *h, struct blk *b);
bool bl_heap__fit_resize(struct bl_heap *h, struct blk *b, size_t bytes);
bool bl_heap__fit_owns(const struct bl_heap *h, const struct blk *b);
size_t bl_heap__fit_largest(const struct bl_heap *h);
int bl_heap__fit_check(const struct bl_heap *h);

/* TLSF's index, used by the fit family when strategy is BL_HEAP_TLSF. */
void bl_heap__tlsf_insert(struct bl_heap *h, struct blk *b);
void bl_heap__tlsf_remove(struct bl_heap *h, struct blk *b);
struct blk *bl_heap__tlsf_find(struct bl_heap *h, size_t block_bytes);
size_t bl_heap__tlsf_largest(const struct bl_heap *h);
bool bl_heap__tlsf_indexed(const struct bl_heap *h, const struct blk *b);

/* The buddy family. */
void bl_heap__buddy_init(struct bl_heap *h);
struct blk *bl_heap__buddy_alloc(struct bl_heap *h, size_t bytes);
void bl_heap__buddy_release(struct bl_heap *h, struct blk *b);
bool bl_heap__buddy_resize(struct bl_heap *h, struct blk *b, size_t bytes);
bool bl_heap__buddy_owns(const struct bl_heap *h, const struct blk *b);
size_t bl_heap__buddy_largest(const struct bl_heap *h);
int bl_heap__buddy_check(const struct bl_heap *h);

#endif
