/* The heap: a variable-size pool over one fixed region.
 *
 * The region is either the caller's (a pointer and a size; the heap never frees
 * it) or obtained once at creation through a hook (ballast/alloc.h). Nothing grows
 * afterwards: when no block fits, bl_heap_alloc() returns NULL, records the
 * reason (bl_heap_last_error()) and counts a failed allocation. It never
 * aborts.
 *
 * The placement strategy is chosen at creation and fixed for the heap's life:
 *   first_fit, next_fit, best_fit, worst_fit  one free list, scanned;
 *   tlsf                                      two-level segregated fit, O(1);
 *   buddy                                     power-of-two blocks.
 * docs/internals/heap.md says what each does, what it costs and when to
 * choose it, and describes the block layout.
 *
 * Every block carries a small header with a state word tied to its address, so
 * bl_heap_free() refuses, with BL_EINVAL, a pointer the heap never handed out
 * and a pointer already freed (as long as its memory has not been handed out
 * again: a stale pointer to a reallocated block is indistinguishable from the
 * new owner's).
 *
 * Pure: no I/O, no clock, no globals. Not thread-safe: there are no locks
 * inside, the caller serialises every call on one heap. Different heaps are
 * independent. Functions that fail leave the heap as it was.
 */
#ifndef BALLAST_HEAP_H
#define BALLAST_HEAP_H

#include <stdbool.h>
#include <stddef.h>

#include "ballast/alloc.h"
#include <stdint.h>

/* Placement strategies. */
enum bl_heap_strategy {
	BL_HEAP_FIRST_FIT = 0, /* first free block that fits, in free-list order */
	BL_HEAP_NEXT_FIT = 1,  /* first fit, resuming where the last search stopped */
	BL_HEAP_BEST_FIT = 2,  /* smallest free block that fits */
	BL_HEAP_WORST_FIT = 3, /* largest free block */
	BL_HEAP_TLSF = 4,      /* two-level segregated fit: O(1) alloc and free */
	BL_HEAP_BUDDY = 5,     /* binary buddy system over a power-of-two area */
};

/* Number of strategies; valid values are 0 .. BL_HEAP_STRATEGIES - 1. */
#define BL_HEAP_STRATEGIES 6

/* Alignment every allocation gets at least, in bytes. */
#define BL_HEAP_MIN_ALIGN 16u

/* Bytes of bookkeeping in front of every block (the block header). */
#define BL_HEAP_HEADER_BYTES 16u

/* How to build a heap. Zero-initialise and set what you need. */
struct bl_heap_config {
	void *region;        /* caller-owned memory, or NULL to obtain it */
	size_t region_bytes; /* size of region, or how much to obtain, in bytes */
	enum bl_heap_strategy strategy; /* placement strategy */
	size_t alignment;    /* alignment of bl_heap_alloc() results in bytes:
	                      * 0 means BL_HEAP_MIN_ALIGN; else a power of two */
	const struct bl_alloc_hook *hook; /* where the region comes from; NULL: malloc/free */
};

/* A snapshot of a heap's accounting. Block bytes include headers, so
 * used_bytes + free_bytes == total_bytes. */
struct bl_heap_stats {
	size_t total_bytes;        /* bytes under management */
	size_t used_bytes;         /* bytes in allocated blocks */
	size_t free_bytes;         /* bytes in free blocks */
	size_t largest_free_bytes; /* size of the largest free block */
	double fragmentation;      /* 1 - largest_free / free; 0 if nothing free */
	size_t high_water_bytes;   /* the most used_bytes has ever been */
	size_t live_blocks;        /* allocations not yet freed */
	uint64_t allocations;      /* successful allocations so far (realloc
	                            * that moves counts one) */
	uint64_t frees;            /* successful frees so far */
	uint64_t failed_allocations; /* allocation calls that returned NULL for
	                              * lack of room, a size beyond the heap or a
	                              * bad alignment (not for a foreign pointer
	                              * passed to realloc) */
};

struct bl_heap;

/* Returns the strategy's name ("first_fit", "tlsf", ...) or "unknown". */
const char *bl_heap_strategy_name(enum bl_heap_strategy s);

/* Parses a strategy name as bl_heap_strategy_name() spells it. Returns the
 * strategy (>= 0), or BL_EINVAL for NULL or an unknown name. */
int bl_heap_strategy_parse(const char *name);

/* Creates a heap as cfg describes and stores it in *out. A caller region is
 * aligned up to BL_HEAP_MIN_ALIGN and trimmed; the buddy strategy manages the
 * largest power of two that fits and leaves the rest unused. Returns 0;
 * BL_EINVAL for a NULL argument, an unknown strategy or an alignment that is
 * not a power of two; BL_ERANGE for a region too small to hold one block or
 * too large to describe; BL_ENOMEM when the hook fails (nothing is
 * leaked and *out is untouched). */
int bl_heap_create(const struct bl_heap_config *cfg, struct bl_heap **out);

/* Destroys h, returning obtained memory through the hook. A caller region
 * is left alone; pointers into it become meaningless. NULL is a no-op. */
void bl_heap_destroy(struct bl_heap *h);

/* Returns a block of at least `bytes` bytes aligned to the heap's alignment,
 * or NULL when no block fits (last error BL_ENOMEM) or the request exceeds
 * the whole heap (BL_ETOOBIG). A request for 0 bytes gets a unique minimal
 * block that must be freed like any other. */
void *bl_heap_alloc(struct bl_heap *h, size_t bytes);

/* Like bl_heap_alloc() with alignment `align`, a power of two (smaller values
 * than BL_HEAP_MIN_ALIGN mean BL_HEAP_MIN_ALIGN). NULL with last error
 * BL_EINVAL for a bad alignment. Large alignments cost up to align +
 * BL_HEAP_HEADER_BYTES extra bytes for the life of the block. */
void *bl_heap_aligned_alloc(struct bl_heap *h, size_t bytes, size_t align);

/* Frees p, merging the block with free neighbours (buddies, for buddy).
 * Returns 0 (also for p NULL), or BL_EINVAL, changing nothing, when p was not
 * handed out by h or was already freed. */
int bl_heap_free(struct bl_heap *h, void *p);

/* Resizes p to `bytes`, in place when the block itself or the free block right
 * after it (its buddies, for buddy) has room, else by moving; contents up to
 * the smaller of the two sizes are kept. p NULL behaves as bl_heap_alloc().
 * Returns the block, or NULL leaving p valid and unchanged (last error
 * BL_ENOMEM, BL_ETOOBIG, or BL_EINVAL for a foreign or freed p). A block from
 * bl_heap_aligned_alloc() keeps its alignment. */
void *bl_heap_realloc(struct bl_heap *h, void *p, size_t bytes);

/* Returns how many bytes p may use (at least what was asked for), or 0 for
 * NULL or a pointer h did not hand out. */
size_t bl_heap_usable_size(const struct bl_heap *h, const void *p);

/* Returns the error of the last allocation call on h that returned NULL
 * (BL_ENOMEM, BL_ETOOBIG, BL_EINVAL), or 0 if none has. */
int bl_heap_last_error(const struct bl_heap *h);

/* Fills *st with h's accounting. Finding the largest free block costs
 * O(free blocks) for the free-list strategies, O(blocks in the top size class)
 * for tlsf and O(orders) for buddy. */
void bl_heap_stats(const struct bl_heap *h, struct bl_heap_stats *st);

/* Returns h's strategy. */
enum bl_heap_strategy bl_heap_strategy(const struct bl_heap *h);

/* Walks every block and checks the heap's invariants: headers intact, sizes
 * adding up, no two free neighbours left unmerged, the free index holding
 * exactly the free blocks. Returns 0 or BL_ECORRUPT. O(blocks); for tests and
 * debugging. */
int bl_heap_check(const struct bl_heap *h);

#endif
