/* Where ballast's allocators get their memory.
 *
 * The slab, the arena and the heap each take one hook at creation, so the
 * daemon can hand all three the same source (and a test can inject failures
 * into every growth path). A NULL hook means malloc and free.
 */
#ifndef BALLAST_ALLOC_H
#define BALLAST_ALLOC_H

#include <stddef.h>

struct bl_alloc_hook {
	/* Returns bytes of memory aligned at least for any object whose alignment
	 * is at most alignof(max_align_t) (as malloc does), or NULL. */
	void *(*malloc_fn)(void *ctx, size_t bytes);
	/* Releases p, which malloc_fn returned for `bytes` bytes. */
	void (*free_fn)(void *ctx, void *p, size_t bytes);
	void *ctx; /* passed to both functions untouched */
};

/* The hook an allocator uses when given none: malloc and free. */
extern const struct bl_alloc_hook bl_alloc_malloc;

#endif
