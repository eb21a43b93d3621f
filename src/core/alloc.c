#include "ballast/alloc.h"

#include <stdlib.h>

static void *std_malloc(void *ctx, size_t bytes)
{
	(void)ctx;
	return malloc(bytes);
}

static void std_free(void *ctx, void *p, size_t bytes)
{
	(void)ctx;
	(void)bytes;
	free(p);
}

/* Read-only: the core keeps no mutable globals. */
const struct bl_alloc_hook bl_alloc_malloc = {std_malloc, std_free, NULL};
