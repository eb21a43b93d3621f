/* The arena: a region allocator for memory that dies together (one request's).
 *
 * Allocation bumps a pointer in the current block; when the block is full a new
 * one of block_bytes is chained on, up to a cap on the bytes taken from the
 * hook. A request too big for an empty block gets a block of its own. There is
 * no per-allocation free: memory goes back all at once, with bl_arena_reset
 * (everything) or bl_arena_rollback (everything allocated after a mark, marks
 * nest). docs/internals/slab-arena.md explains the design.
 *
 * Memory comes only from the hook given at creation (malloc/free when NULL);
 * nothing is global. Thread-safety: none inside. An arena may be used from any
 * thread, but from one at a time: the caller locks.
 */
#ifndef BALLAST_ARENA_H
#define BALLAST_ARENA_H

#include <stddef.h>

#include "ballast/alloc.h"
#include <stdint.h>

/* How an arena is made. Zero-initialize, then set what you need. */
struct bl_arena_config {
	size_t block_bytes; /* usable bytes per ordinary block; 0 means 16 KiB */
	size_t max_bytes;   /* cap on bytes taken from the hook for blocks
			     * (reserved), first block included; 0 means no cap */
	const struct bl_alloc_hook *hook; /* copied; NULL means malloc/free */
};

/* A point in an arena's history to roll back to. Plain value: copy it, keep
 * it on the stack. Private fields. */
struct bl_arena_mark {
	const void *block;  /* current block when the mark was taken */
	uint64_t serial;    /* that block's serial number */
	size_t used;        /* bytes used in that block then */
	const void *large;  /* newest large block then, NULL when none */
	uint64_t large_serial; /* its serial number, 0 when none */
};

/* An arena's counters, as of the call to bl_arena_stats. */
struct bl_arena_stats {
	size_t used;            /* bytes handed out and not rolled back, alignment
				 * padding included */
	size_t reserved;        /* bytes taken from the hook for blocks (headers
				 * included; the arena struct not) */
	size_t high_water;      /* most bytes used at once since creation */
	size_t blocks;          /* ordinary blocks, the first one included */
	size_t large_blocks;    /* blocks holding one large allocation */
	uint64_t failed_allocs; /* bl_arena_alloc calls that returned NULL */
};

struct bl_arena;

/* Creates an arena with its first block and stores it in *out. Returns 0;
 * BL_EINVAL when cfg or out is NULL, the hook has only one of its functions,
 * or block_bytes is absurdly large; BL_EFULL when max_bytes cannot hold the
 * first block; BL_ENOMEM when the hook fails. On failure *out is untouched. */
int bl_arena_create(const struct bl_arena_config *cfg, struct bl_arena **out);

/* Frees the arena and all its blocks; everything allocated from it becomes
 * invalid. NULL is a no-op. */
void bl_arena_destroy(struct bl_arena *a);

/* Returns `bytes` bytes (0 counts as 1) aligned to `align` (a power of two; 0
 * means alignof(max_align_t)), uninitialized. O(1): a bump, or one hook call
 * for a new block. Returns NULL, leaving the arena unchanged except for the
 * failure count, when align is not a power of two (bl_arena_last_error gives
 * BL_EINVAL), the cap would be passed (BL_EFULL), or the hook failed or the
 * size is beyond any block the hook could give (BL_ENOMEM). */
void *bl_arena_alloc(struct bl_arena *a, size_t bytes, size_t align);

/* As bl_arena_alloc, but the memory is zeroed. */
void *bl_arena_zalloc(struct bl_arena *a, size_t bytes, size_t align);

/* Returns the outcome of the last bl_arena_alloc or bl_arena_zalloc: 0, or
 * the BL_E* code of why it returned NULL. 0 before the first call. */
int bl_arena_last_error(const struct bl_arena *a);

/* Returns a mark for the arena's present state. Never fails. */
struct bl_arena_mark bl_arena_mark(const struct bl_arena *a);

/* Frees everything allocated since m was taken, including the blocks added
 * since, and makes m's state current again. Marks nest: rolling back to an
 * outer mark also discards every inner one. O(blocks freed). Returns 0, or
 * BL_EINVAL and leaves the arena unchanged when m is not a mark of the present
 * arena history (taken before a reset or before a rollback to an earlier
 * mark, where that is detectable: its blocks are gone, or it lies beyond the
 * present end of its block). */
int bl_arena_rollback(struct bl_arena *a, const struct bl_arena_mark *m);

/* Frees everything allocated from the arena. Keeps the first block (so a
 * reset arena serves small requests without calling the hook again) and
 * returns every other block to the hook, so memory after a burst goes back.
 * Marks taken before the reset must not be used again (rolling back to one is
 * refused where detectable, as bl_arena_rollback says). */
void bl_arena_reset(struct bl_arena *a);

/* Fills *st with a's counters. */
void bl_arena_stats(const struct bl_arena *a, struct bl_arena_stats *st);

#endif
