/* The slab: fixed-size objects, a free list threaded through the free objects,
 * slabs taken from the hook one at a time. docs/internals/slab-arena.md.
 *
 * A slab is one hook allocation: a struct chunk header, padding up to the
 * object alignment, then nobjs objects `stride` bytes apart. A free object
 * holds, in its first word, the next free object and, in its second, a tag
 * (FREE_TAG mixed with its own address and that next pointer) that says "I am
 * free". bl_slab_alloc overwrites the tag, so a second free of the same object
 * finds a tag that matches and is refused.
 */
#include "ballast/slab.h"

#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

#define FREE_TAG ((uintptr_t)UINT64_C(0xa5b1f4eec0def00d))
#define DEFAULT_PER_SLAB 64

/* One slab: the header at the start of its hook allocation. */
struct chunk {
	struct chunk *next; /* older slab, NULL for the first */
	char *objs;         /* first object, aligned for the pool */
	size_t nobjs;       /* objects in this slab */
	size_t bytes;       /* size of the hook allocation */
};

struct bl_slab {
	struct bl_alloc_hook hook; /* where memory comes from */
	size_t object_size;       /* bytes the caller asked for per object */
	size_t stride;            /* bytes between objects */
	size_t align;             /* object alignment, power of two */
	size_t per_slab;          /* objects per growth step */
	size_t max_objects;       /* cap on total_objects, 0: none */
	size_t max_bytes;         /* cap on bytes_reserved, 0: none */
	bool zero;                /* zero objects on alloc */
	struct chunk *chunks;     /* newest slab first */
	void *free_list;          /* first free object, NULL when none */
	size_t total_objects;     /* objects in all slabs */
	size_t in_use;            /* objects handed out */
	size_t slabs;             /* number of chunks */
	size_t bytes_reserved;    /* sum of chunk->bytes */
	size_t high_water;        /* max in_use seen */
	uint64_t failed;          /* failed bl_slab_alloc calls */
	int last_error;           /* outcome of the last bl_slab_alloc */
};

static bool is_pow2(size_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

static uintptr_t free_tag(const void *obj, const void *next)
{
	return FREE_TAG ^ (uintptr_t)obj ^ ((uintptr_t)next << 1);
}

/* Marks obj free and links it in front of next. */
static void put_free(void *obj, void *next)
{
	void **w = obj;

	w[0] = next;
	w[1] = (void *)free_tag(obj, next);
}

static bool is_free(const void *obj)
{
	void *const *w = obj;

	return (uintptr_t)w[1] == free_tag(obj, w[0]);
}

/* Bytes of a slab of n objects: header, worst-case padding, objects.
 * Returns 0 on overflow. */
static size_t chunk_bytes(const struct bl_slab *s, size_t n)
{
	size_t fixed = sizeof(struct chunk) + s->align - 1;

	if (n > (SIZE_MAX - fixed) / s->stride)
		return 0;
	return fixed + n * s->stride;
}

int bl_slab_create(const struct bl_slab_config *cfg, struct bl_slab **out)
{
	struct bl_alloc_hook hook = bl_alloc_malloc;
	struct bl_slab *s;
	size_t align, stride;

	if (!cfg || !out || cfg->object_size == 0)
		return BL_EINVAL;
	if (cfg->hook) {
		if (!cfg->hook->malloc_fn != !cfg->hook->free_fn)
			return BL_EINVAL;
		if (cfg->hook->malloc_fn)
			hook = *cfg->hook;
	}
	align = cfg->align;
	if (align != 0 && !is_pow2(align))
		return BL_EINVAL;
	if (align < _Alignof(max_align_t))
		align = _Alignof(max_align_t);
	if (align < 2 * sizeof(void *))
		align = 2 * sizeof(void *);
	if (cfg->object_size > SIZE_MAX - align)
		return BL_EINVAL;
	stride = (cfg->object_size + align - 1) & ~(align - 1);

	s = hook.malloc_fn(hook.ctx, sizeof *s);
	if (!s)
		return BL_ENOMEM;
	memset(s, 0, sizeof *s);
	s->hook = hook;
	s->object_size = cfg->object_size;
	s->stride = stride;
	s->align = align;
	s->per_slab = cfg->objects_per_slab ? cfg->objects_per_slab : DEFAULT_PER_SLAB;
	s->max_objects = cfg->max_objects;
	s->max_bytes = cfg->max_bytes;
	s->zero = cfg->zero;
	if (chunk_bytes(s, s->per_slab) == 0) {
		hook.free_fn(hook.ctx, s, sizeof *s);
		return BL_EINVAL;
	}
	*out = s;
	return 0;
}

void bl_slab_destroy(struct bl_slab *s)
{
	struct chunk *c, *next;

	if (!s)
		return;
	for (c = s->chunks; c; c = next) {
		next = c->next;
		s->hook.free_fn(s->hook.ctx, c, c->bytes);
	}
	s->hook.free_fn(s->hook.ctx, s, sizeof *s);
}

/* How many objects the next slab may hold under the caps; 0 when none. */
static size_t next_slab_objects(const struct bl_slab *s)
{
	size_t n = s->per_slab;

	if (s->max_objects) {
		if (s->total_objects >= s->max_objects)
			return 0;
		if (n > s->max_objects - s->total_objects)
			n = s->max_objects - s->total_objects;
	}
	if (s->max_bytes) {
		size_t room = s->max_bytes > s->bytes_reserved ? s->max_bytes - s->bytes_reserved : 0;
		size_t fixed = sizeof(struct chunk) + s->align - 1;

		if (room < fixed + s->stride)
			return 0;
		if (n > (room - fixed) / s->stride)
			n = (room - fixed) / s->stride;
	}
	return n;
}

/* Adds one slab and threads its objects onto the (empty) free list.
 * Returns 0, BL_EFULL or BL_ENOMEM; on failure s is unchanged. */
static int grow(struct bl_slab *s)
{
	size_t n = next_slab_objects(s);
	size_t bytes;
	struct chunk *c;
	uintptr_t first;

	if (n == 0)
		return BL_EFULL;
	bytes = chunk_bytes(s, n);
	c = s->hook.malloc_fn(s->hook.ctx, bytes);
	if (!c)
		return BL_ENOMEM;
	first = ((uintptr_t)(c + 1) + s->align - 1) & ~(uintptr_t)(s->align - 1);
	c->objs = (char *)first;
	c->nobjs = n;
	c->bytes = bytes;
	c->next = s->chunks;
	s->chunks = c;
	/* Back to front, so the slab is handed out in address order. */
	for (size_t i = n; i-- > 0;) {
		void *obj = c->objs + i * s->stride;

		put_free(obj, s->free_list);
		s->free_list = obj;
	}
	s->total_objects += n;
	s->slabs++;
	s->bytes_reserved += bytes;
	return 0;
}

void *bl_slab_alloc(struct bl_slab *s)
{
	void **obj;

	if (!s->free_list) {
		int err = grow(s);

		if (err) {
			s->last_error = err;
			s->failed++;
			return NULL;
		}
	}
	obj = s->free_list;
	s->free_list = obj[0];
	obj[1] = NULL; /* no longer tagged free */
	if (s->zero)
		memset(obj, 0, s->stride);
	s->in_use++;
	if (s->in_use > s->high_water)
		s->high_water = s->in_use;
	s->last_error = 0;
	return obj;
}

/* The slab holding an object that starts at p, or NULL. */
static const struct chunk *find_chunk(const struct bl_slab *s, const void *p)
{
	uintptr_t a = (uintptr_t)p;

	for (const struct chunk *c = s->chunks; c; c = c->next) {
		uintptr_t lo = (uintptr_t)c->objs;

		if (a >= lo && a - lo < c->nobjs * s->stride)
			return (a - lo) % s->stride == 0 ? c : NULL;
	}
	return NULL;
}

bool bl_slab_contains(const struct bl_slab *s, const void *p)
{
	return find_chunk(s, p) != NULL;
}

int bl_slab_free(struct bl_slab *s, void *p)
{
	if (!p || ((uintptr_t)p & (s->align - 1)) != 0)
		return BL_EINVAL;
#ifndef NDEBUG
	if (!find_chunk(s, p))
		return BL_EINVAL;
#endif
	if (is_free(p))
		return BL_EINVAL;
	put_free(p, s->free_list);
	s->free_list = p;
	s->in_use--;
	return 0;
}

int bl_slab_last_error(const struct bl_slab *s)
{
	return s->last_error;
}

void bl_slab_stats(const struct bl_slab *s, struct bl_slab_stats *st)
{
	st->object_stride = s->stride;
	st->objects_in_use = s->in_use;
	st->objects_free = s->total_objects - s->in_use;
	st->slabs = s->slabs;
	st->bytes_reserved = s->bytes_reserved;
	st->high_water = s->high_water;
	st->failed_allocs = s->failed;
}
