/* The slab: a pool of fixed-size objects.
 *
 * For objects that are allocated and freed often and are all the same size
 * (connections, requests, leases). Free objects are kept on a stack of
 * pointers, so alloc and free are O(1); the stack has one slot per object,
 * stored in the slab with the objects, so an object costs its size rounded up
 * to the alignment plus one pointer. When no object is free the pool grows by
 * one slab of objects_per_slab objects, taken from the allocator hook in one
 * piece, until a cap on the total number of objects or bytes is reached; past
 * the cap bl_slab_alloc returns NULL, never aborts. Slabs are kept until
 * destroy.
 *
 * bl_slab_alloc and bl_slab_free are inline: the common case (pop or push the
 * stack) is a handful of instructions in the caller, and only an empty or
 * full stack segment, a zeroing pool, a refused pointer or a debug build
 * calls into src/core/slab.c. They are also ordinary functions with external
 * linkage (C99 inline: slab.c holds the external definitions), so their
 * addresses can be taken and a call the compiler does not inline behaves the
 * same.
 *
 * Checks on bl_slab_free (docs/internals/slab-arena.md explains them):
 *   - always: NULL and pointers misaligned for the pool are refused (BL_EINVAL);
 *     a double free is refused (BL_EINVAL), detected by a tag a free object
 *     carries in its second word;
 *   - in builds without NDEBUG: a pointer that does not point at the start of
 *     an object of one of this pool's slabs is refused (BL_EINVAL) before any
 *     of its memory is read. This lookup is O(slabs); release builds skip it,
 *     so there free is O(1) and trusts the pointer to be from this pool.
 *     Since free is inline, NDEBUG as the calling code is compiled decides.
 *
 * Memory comes only from the hook given at creation (malloc/free when NULL);
 * nothing is global. Thread-safety: none inside. A pool may be used from any
 * thread, but from one at a time: the caller locks.
 */
#ifndef BALLAST_SLAB_H
#define BALLAST_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#include "ballast/alloc.h"

/* How a pool is made. Zero-initialize, then set what you need. */
struct bl_slab_config {
	size_t object_size;      /* bytes per object, > 0 (required) */
	size_t align;            /* object alignment, a power of two; 0 or anything
				  * below alignof(max_align_t) means alignof(max_align_t) */
	size_t objects_per_slab; /* objects added per growth step; 0 means 64 */
	size_t max_objects;      /* cap on objects in all slabs; 0 means no cap */
	size_t max_bytes;        /* cap on bytes taken from the hook for slabs
				  * (bytes_reserved); 0 means no cap */
	bool zero;               /* zero each object's bytes on alloc */
	const struct bl_alloc_hook *hook; /* copied; NULL means malloc/free */
};

/* A pool's counters, as of the call to bl_slab_stats. */
struct bl_slab_stats {
	size_t object_stride;   /* bytes between objects: object_size rounded up to
				 * the alignment (and to at least two pointers) */
	size_t objects_in_use;  /* objects allocated and not yet freed */
	size_t objects_free;    /* objects in the slabs not in use */
	size_t slabs;           /* slabs taken from the hook */
	size_t bytes_reserved;  /* bytes taken from the hook for slabs (headers,
				 * free-stack slots and alignment padding
				 * included; the pool struct not) */
	size_t high_water;      /* most objects in use at once since creation */
	uint64_t failed_allocs; /* bl_slab_alloc calls that returned NULL */
};

struct bl_slab;

/* Creates a pool as cfg describes and stores it in *out. No slab is allocated
 * until the first bl_slab_alloc. Returns 0; BL_EINVAL when cfg or out is NULL,
 * object_size is 0, align is not a power of two, the hook has only one of its
 * two functions, or one slab's size overflows size_t; BL_ENOMEM when the hook
 * fails. On failure *out is left untouched. */
int bl_slab_create(const struct bl_slab_config *cfg, struct bl_slab **out);

/* Frees the pool and all its slabs. Objects still allocated become invalid.
 * NULL is a no-op. */
void bl_slab_destroy(struct bl_slab *s);

/* Returns an object of at least object_size bytes, aligned as configured and
 * zeroed when the pool was created with zero, in O(1) (plus one hook call and
 * O(objects_per_slab) to tag a new slab's objects when none is free).
 * Returns NULL when the pool is at its cap (bl_slab_last_error gives BL_EFULL)
 * or the hook failed (BL_ENOMEM); the pool is then unchanged except that
 * failed_allocs counts the failure. Defined inline below. */
inline void *bl_slab_alloc(struct bl_slab *s);

/* Returns p, which bl_slab_alloc of s returned, to the pool, in O(1) (O(slabs)
 * in builds without NDEBUG, which check that p belongs to s). Returns 0, or
 * BL_EINVAL and leaves the pool unchanged when p is NULL, misaligned, already
 * free, or (without NDEBUG) not an object of s. Defined inline below. */
inline int bl_slab_free(struct bl_slab *s, void *p);

/* Returns the outcome of the last bl_slab_alloc on s: 0 when it returned an
 * object, BL_EFULL when the cap was reached, BL_ENOMEM when the hook failed.
 * 0 before the first call. */
int bl_slab_last_error(const struct bl_slab *s);

/* Returns whether p points at the start of an object slot in one of s's slabs,
 * whether that object is allocated or free. O(slabs). */
bool bl_slab_contains(const struct bl_slab *s, const void *p);

/* Fills *st with s's counters. */
void bl_slab_stats(const struct bl_slab *s, struct bl_slab_stats *st);

/* ---- the inline fast paths; nothing below is API ---------------------------
 *
 * Free objects are kept on a stack of pointers, one slot per object, stored
 * in the slabs themselves (docs/internals/slab-arena.md says why a stack and
 * not a list threaded through the objects). struct bl_slab starts with this
 * struct, so the inline functions reach the stack without a call. Use the
 * functions above, never these fields. */
struct bl_slab__hot {
	void **top;             /* next empty slot of the stack's current segment */
	uintptr_t alloc_floor;  /* alloc pops inline while top is above this: the
				 * segment's first slot, or UINTPTR_MAX to send
				 * every alloc to bl_slab__alloc_slow (a zeroing
				 * pool, or a failure whose error is to be reset) */
	uintptr_t free_ceiling; /* free pushes inline while top is below this:
				 * one past the segment's last slot */
	uintptr_t align_mask;   /* object alignment - 1, for misaligned pointers */
	int last_error;         /* outcome of the last bl_slab_alloc */
};

/* The tag a free object carries in its second word. Mixed with the object's
 * address, so a copy of a free object elsewhere does not carry it. */
#define BL_SLAB__FREE_TAG(p) ((uintptr_t)UINT64_C(0xa5b1f4eec0def00d) ^ (uintptr_t)(p))

/* The out-of-line halves, in src/core/slab.c: alloc when the inline path may
 * not pop, and free with every check (always in builds without NDEBUG). */
void *bl_slab__alloc_slow(struct bl_slab *s);
int bl_slab__free_slow(struct bl_slab *s, void *p);

inline void *bl_slab_alloc(struct bl_slab *s)
{
	struct bl_slab__hot *h = (struct bl_slab__hot *)(void *)s;
	void **top = h->top;
	void **obj;

	if (__builtin_expect((uintptr_t)top <= h->alloc_floor, 0))
		return bl_slab__alloc_slow(s);
	obj = top[-1];
	h->top = top - 1;
	obj[1] = NULL; /* no longer tagged free */
	return obj;
}

inline int bl_slab_free(struct bl_slab *s, void *p)
{
#ifdef NDEBUG
	struct bl_slab__hot *h = (struct bl_slab__hot *)(void *)s;
	void **top = h->top;
	void **w = p;

	if (__builtin_expect(p && ((uintptr_t)p & h->align_mask) == 0 &&
			     (uintptr_t)top < h->free_ceiling &&
			     (uintptr_t)w[1] != BL_SLAB__FREE_TAG(p), 1)) {
		*top = p;
		h->top = top + 1;
		w[1] = (void *)BL_SLAB__FREE_TAG(p);
		return 0;
	}
#endif
	return bl_slab__free_slow(s, p);
}

#endif
