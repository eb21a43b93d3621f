/* The arena: bump allocation in chained blocks, marks to roll back to.
 * docs/internals/slab-arena.md.
 *
 * Two chains, both newest first: ordinary blocks (the head is the one being
 * bumped; the oldest is the first block, never freed before destroy) and large
 * blocks (one allocation each). Since both chains only ever grow at the head,
 * a mark is just the two heads and the bump offset of the ordinary head, and
 * rollback pops blocks off both chains until it reaches the marked ones. Every
 * block gets a serial number so a mark whose block was freed (and whose
 * address the hook may have reused) is recognised as stale.
 */
#include "ballast/arena.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

#define DEFAULT_BLOCK_BYTES ((size_t)16 * 1024)
#define MAX_ALIGN _Alignof(max_align_t)

/* One block: the header at the start of its hook allocation, data after it. */
struct block {
	struct block *prev; /* older block of the same chain, NULL for the oldest */
	uint64_t serial;    /* unique within the arena, from 1 */
	size_t size;        /* usable bytes after the header */
	size_t used;        /* bytes handed out, padding included */
	size_t bytes;       /* size of the hook allocation */
};

/* Header size rounded up so the data is aligned like malloc's memory. */
#define HDR ((sizeof(struct block) + MAX_ALIGN - 1) & ~(MAX_ALIGN - 1))

struct bl_arena {
	struct bl_alloc_hook hook; /* where memory comes from */
	size_t block_bytes;        /* usable bytes per ordinary block */
	size_t max_bytes;          /* cap on reserved, 0: none */
	struct block *head;        /* ordinary block being bumped */
	struct block *first;       /* oldest ordinary block, kept by reset */
	struct block *large;       /* newest large block, NULL when none */
	uint64_t next_serial;      /* serial of the next block */
	size_t used;               /* bytes handed out, padding included */
	size_t reserved;           /* sum of block->bytes over both chains */
	size_t high_water;         /* max used seen */
	size_t blocks;             /* ordinary blocks */
	size_t large_blocks;       /* large blocks */
	uint64_t failed;           /* failed allocations */
	int last_error;            /* outcome of the last allocation */
};

static char *data_of(const struct block *b)
{
	return (char *)b + HDR;
}

/* Takes a block of `size` usable bytes from the hook, within the cap. */
static int new_block(struct bl_arena *a, size_t size, struct block **out)
{
	size_t bytes;
	struct block *b;

	if (size > SIZE_MAX - HDR)
		return BL_ENOMEM;
	bytes = HDR + size;
	if (a->max_bytes && (a->reserved > a->max_bytes || bytes > a->max_bytes - a->reserved))
		return BL_EFULL;
	b = a->hook.malloc_fn(a->hook.ctx, bytes);
	if (!b)
		return BL_ENOMEM;
	b->prev = NULL;
	b->serial = a->next_serial++;
	b->size = size;
	b->used = 0;
	b->bytes = bytes;
	a->reserved += bytes;
	*out = b;
	return 0;
}

static void free_block(struct bl_arena *a, struct block *b)
{
	a->used -= b->used;
	a->reserved -= b->bytes;
	a->hook.free_fn(a->hook.ctx, b, b->bytes);
}

int bl_arena_create(const struct bl_arena_config *cfg, struct bl_arena **out)
{
	struct bl_alloc_hook hook = bl_alloc_malloc;
	struct bl_arena *a;
	struct block *b;
	int err;

	if (!cfg || !out)
		return BL_EINVAL;
	if (cfg->hook) {
		if (!cfg->hook->malloc_fn != !cfg->hook->free_fn)
			return BL_EINVAL;
		if (cfg->hook->malloc_fn)
			hook = *cfg->hook;
	}
	if (cfg->block_bytes > SIZE_MAX / 4)
		return BL_EINVAL;
	a = hook.malloc_fn(hook.ctx, sizeof *a);
	if (!a)
		return BL_ENOMEM;
	memset(a, 0, sizeof *a);
	a->hook = hook;
	a->block_bytes = cfg->block_bytes ? cfg->block_bytes : DEFAULT_BLOCK_BYTES;
	a->block_bytes = (a->block_bytes + MAX_ALIGN - 1) & ~(MAX_ALIGN - 1);
	a->max_bytes = cfg->max_bytes;
	a->next_serial = 1;
	err = new_block(a, a->block_bytes, &b);
	if (err) {
		hook.free_fn(hook.ctx, a, sizeof *a);
		return err;
	}
	a->head = a->first = b;
	a->blocks = 1;
	*out = a;
	return 0;
}

void bl_arena_destroy(struct bl_arena *a)
{
	struct block *b, *prev;

	if (!a)
		return;
	for (b = a->head; b; b = prev) {
		prev = b->prev;
		a->hook.free_fn(a->hook.ctx, b, b->bytes);
	}
	for (b = a->large; b; b = prev) {
		prev = b->prev;
		a->hook.free_fn(a->hook.ctx, b, b->bytes);
	}
	a->hook.free_fn(a->hook.ctx, a, sizeof *a);
}

/* Bumps b for bytes at align; NULL when they do not fit. */
static void *bump(struct bl_arena *a, struct block *b, size_t bytes, size_t align)
{
	uintptr_t base = (uintptr_t)data_of(b);
	uintptr_t cur = base + b->used;
	uintptr_t p = (cur + align - 1) & ~(uintptr_t)(align - 1);
	size_t off = (size_t)(p - base);

	if (p < cur || off > b->size || bytes > b->size - off)
		return NULL;
	a->used += off + bytes - b->used;
	b->used = off + bytes;
	if (a->used > a->high_water)
		a->high_water = a->used;
	return (void *)p;
}

static void *fail(struct bl_arena *a, int err)
{
	a->last_error = err;
	a->failed++;
	return NULL;
}

void *bl_arena_alloc(struct bl_arena *a, size_t bytes, size_t align)
{
	size_t slack;
	struct block *b;
	void *p;
	int err;

	if (align == 0)
		align = MAX_ALIGN;
	if ((align & (align - 1)) != 0)
		return fail(a, BL_EINVAL);
	if (bytes == 0)
		bytes = 1;
	p = bump(a, a->head, bytes, align);
	if (p) {
		a->last_error = 0;
		return p;
	}
	/* Block data is aligned to MAX_ALIGN; more needs up to align - MAX_ALIGN
	 * bytes of padding in the worst case. */
	slack = align > MAX_ALIGN ? align - MAX_ALIGN : 0;
	if (bytes > SIZE_MAX / 2 || slack > SIZE_MAX / 2)
		return fail(a, BL_ENOMEM);
	if (bytes + slack <= a->block_bytes) {
		err = new_block(a, a->block_bytes, &b);
		if (err)
			return fail(a, err);
		b->prev = a->head;
		a->head = b;
		a->blocks++;
	} else {
		err = new_block(a, bytes + slack, &b);
		if (err)
			return fail(a, err);
		b->prev = a->large;
		a->large = b;
		a->large_blocks++;
	}
	p = bump(a, b, bytes, align); /* fits by construction */
	a->last_error = 0;
	return p;
}

void *bl_arena_zalloc(struct bl_arena *a, size_t bytes, size_t align)
{
	void *p = bl_arena_alloc(a, bytes, align);

	if (p)
		memset(p, 0, bytes);
	return p;
}

int bl_arena_last_error(const struct bl_arena *a)
{
	return a->last_error;
}

struct bl_arena_mark bl_arena_mark(const struct bl_arena *a)
{
	struct bl_arena_mark m = {
		.block = a->head,
		.serial = a->head->serial,
		.used = a->head->used,
		.large = a->large,
		.large_serial = a->large ? a->large->serial : 0,
	};

	return m;
}

/* Returns the block of the chain from b that is m_block with serial, or NULL. */
static struct block *find(struct block *b, const void *m_block, uint64_t serial)
{
	for (; b; b = b->prev) {
		if (b == m_block && b->serial == serial)
			return b;
		if (b->serial < serial)
			break; /* serials only decrease along a chain */
	}
	return NULL;
}

int bl_arena_rollback(struct bl_arena *a, const struct bl_arena_mark *m)
{
	struct block *keep, *keep_large = NULL, *b;

	if (!m)
		return BL_EINVAL;
	keep = find(a->head, m->block, m->serial);
	if (!keep || m->used > keep->used)
		return BL_EINVAL;
	if (m->large) {
		keep_large = find(a->large, m->large, m->large_serial);
		if (!keep_large)
			return BL_EINVAL;
	}
	while (a->head != keep) {
		b = a->head;
		a->head = b->prev;
		a->blocks--;
		free_block(a, b);
	}
	a->used -= keep->used - m->used;
	keep->used = m->used;
	while (a->large != keep_large) {
		b = a->large;
		a->large = b->prev;
		a->large_blocks--;
		free_block(a, b);
	}
	return 0;
}

void bl_arena_reset(struct bl_arena *a)
{
	struct bl_arena_mark m = {
		.block = a->first,
		.serial = a->first->serial,
		.used = 0,
		.large = NULL,
		.large_serial = 0,
	};

	(void)bl_arena_rollback(a, &m); /* cannot fail: first is always there */
}

void bl_arena_stats(const struct bl_arena *a, struct bl_arena_stats *st)
{
	st->used = a->used;
	st->reserved = a->reserved;
	st->high_water = a->high_water;
	st->blocks = a->blocks;
	st->large_blocks = a->large_blocks;
	st->failed_allocs = a->failed;
}
