/* The slab: fixed-size objects, a stack of pointers to the free ones, slabs
 * taken from the hook one at a time. docs/internals/slab-arena.md.
 *
 * A slab is one hook allocation: a struct chunk header, one stack slot per
 * object, padding up to the object alignment, then nobjs objects `stride`
 * bytes apart. The stack of free objects runs through the slots of all slabs,
 * oldest slab first: each slab's slots are one segment, every segment below
 * the current one is full and every one above it empty, so the stack holds at
 * most as many pointers as there are objects and never needs memory of its
 * own. The inline alloc and free of slab.h work on the current segment; this
 * file moves between segments and does everything else.
 *
 * A free object carries a tag in its second word (BL_SLAB__FREE_TAG, a
 * constant mixed with its address) that says "I am free". bl_slab_alloc
 * overwrites it, so a second free of the same object finds it and is refused.
 *
 * Objects never handed out are not on the stack: they are taken in address
 * order from the newest slab (fresh_next) only when the stack is empty. So
 * whenever a fresh object is taken every object ever handed out is in use,
 * the most objects in use at once is how many were ever handed out, and
 * neither high_water nor the number in use needs a counter on the fast path.
 */
#include "ballast/slab.h"

#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

/* Emits the external definitions of slab.h's inline functions here. */
extern void *bl_slab_alloc(struct bl_slab *s);
extern int bl_slab_free(struct bl_slab *s, void *p);

#define DEFAULT_PER_SLAB 64

/* One slab: the header at the start of its hook allocation. */
struct chunk {
	struct chunk *older; /* the slab added before, NULL for the first */
	struct chunk *newer; /* the slab added after, NULL for the newest */
	char *objs;          /* first object, aligned for the pool */
	size_t nobjs;        /* objects in this slab, and stack slots */
	size_t bytes;        /* size of the hook allocation */
	void *slots[];       /* this slab's segment of the free stack */
};

struct bl_slab {
	struct bl_slab__hot hot;   /* first: all the inline functions touch */
	struct bl_alloc_hook hook; /* where memory comes from */
	size_t object_size;        /* bytes the caller asked for per object */
	size_t stride;             /* bytes between objects */
	size_t align;              /* object alignment, power of two */
	size_t per_slab;           /* objects per growth step */
	size_t max_objects;        /* cap on total_objects, 0: none */
	size_t max_bytes;          /* cap on bytes_reserved, 0: none */
	bool zero;                 /* zero objects on alloc */
	struct chunk *oldest;      /* first slab, NULL before the first alloc */
	struct chunk *newest;      /* last slab, where fresh objects come from */
	struct chunk *seg;         /* slab holding the stack's current segment */
	size_t below;              /* pointers in the full segments below seg */
	char *fresh_next;          /* next never used object of newest */
	size_t fresh_count;        /* never used objects left */
	size_t total_objects;      /* objects in all slabs */
	size_t slabs;              /* number of chunks */
	size_t bytes_reserved;     /* sum of chunk->bytes */
	uint64_t failed;           /* failed bl_slab_alloc calls */
};

static bool is_pow2(size_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

static void tag_free(void *obj)
{
	((void **)obj)[1] = (void *)BL_SLAB__FREE_TAG(obj);
}

static bool is_free(const void *obj)
{
	return (uintptr_t)((void *const *)obj)[1] == BL_SLAB__FREE_TAG(obj);
}

/* Bytes one more object adds to a slab: the object and its stack slot. */
static size_t per_object(const struct bl_slab *s)
{
	return s->stride + sizeof(void *);
}

/* Bytes of a slab besides its objects and slots: header, worst-case padding. */
static size_t chunk_fixed(const struct bl_slab *s)
{
	return sizeof(struct chunk) + s->align - 1;
}

/* Bytes of a slab of n objects. Returns 0 on overflow. */
static size_t chunk_bytes(const struct bl_slab *s, size_t n)
{
	if (n > (SIZE_MAX - chunk_fixed(s)) / per_object(s))
		return 0;
	return chunk_fixed(s) + n * per_object(s);
}

/* Where the inline alloc must stop: the current segment's bottom, or
 * UINTPTR_MAX while every alloc must come here (a zeroing pool, or an error
 * that the next alloc resets). */
static uintptr_t alloc_floor(const struct bl_slab *s)
{
	return s->zero || s->hot.last_error ? UINTPTR_MAX : (uintptr_t)s->seg->slots;
}

/* Points the inline functions at seg's segment, top at `depth` pointers. */
static void use_segment(struct bl_slab *s, struct chunk *seg, size_t depth)
{
	s->seg = seg;
	s->hot.top = seg->slots + depth;
	s->hot.alloc_floor = alloc_floor(s);
	s->hot.free_ceiling = (uintptr_t)(seg->slots + seg->nobjs);
}

/* Pointers on the free stack. */
static size_t stack_depth(const struct bl_slab *s)
{
	return s->seg ? s->below + (size_t)(s->hot.top - s->seg->slots) : 0;
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
	if (cfg->object_size > SIZE_MAX - align - sizeof(void *))
		return BL_EINVAL;
	stride = (cfg->object_size + align - 1) & ~(align - 1);

	s = hook.malloc_fn(hook.ctx, sizeof *s);
	if (!s)
		return BL_ENOMEM;
	memset(s, 0, sizeof *s);
	/* No slab yet: top (NULL) is at neither limit, both inline paths
	 * call out. */
	s->hot.top = NULL;
	s->hot.alloc_floor = 0;
	s->hot.free_ceiling = 0;
	s->hot.align_mask = align - 1;
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
	struct chunk *c, *older;

	if (!s)
		return;
	for (c = s->newest; c; c = older) {
		older = c->older;
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

		if (room < chunk_fixed(s) + per_object(s))
			return 0;
		if (n > (room - chunk_fixed(s)) / per_object(s))
			n = (room - chunk_fixed(s)) / per_object(s);
	}
	return n;
}

/* Adds one slab, its objects all fresh. Called only with the stack empty and
 * no fresh object left. Returns 0, BL_EFULL or BL_ENOMEM; on failure s is
 * unchanged. */
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
	first = ((uintptr_t)(c->slots + n) + s->align - 1) & ~(uintptr_t)(s->align - 1);
	c->objs = (char *)first;
	c->nobjs = n;
	c->bytes = bytes;
	c->older = s->newest;
	c->newer = NULL;
	/* Tagged free like any free object, so freeing one that was never
	 * handed out is refused in any build. */
	for (size_t i = 0; i < n; i++)
		tag_free(c->objs + i * s->stride);
	if (s->newest)
		s->newest->newer = c;
	else
		s->oldest = c;
	s->newest = c;
	if (!s->seg)
		use_segment(s, c, 0);
	s->fresh_next = c->objs;
	s->fresh_count = n;
	s->total_objects += n;
	s->slabs++;
	s->bytes_reserved += bytes;
	return 0;
}

/* Pops the free stack into *obj, stepping down a segment when the current
 * one is empty. Returns false when the stack is empty. */
static bool stack_pop(struct bl_slab *s, void **obj)
{
	if (!s->seg)
		return false;
	if (s->hot.top == s->seg->slots) {
		struct chunk *down = s->seg->older;

		if (!down)
			return false;
		s->below -= down->nobjs;
		use_segment(s, down, down->nobjs);
	}
	*obj = *--s->hot.top;
	return true;
}

/* Pushes p, stepping up a segment when the current one is full. Returns
 * false when every slot is taken: then p cannot be an allocated object. */
static bool stack_push(struct bl_slab *s, void *p)
{
	if (!s->seg)
		return false;
	if (s->hot.top == s->seg->slots + s->seg->nobjs) {
		struct chunk *up = s->seg->newer;

		if (!up)
			return false;
		s->below += s->seg->nobjs;
		use_segment(s, up, 0);
	}
	*s->hot.top++ = p;
	return true;
}

/* bl_slab_alloc when the inline path may not pop: the stack's segment is
 * empty, the pool zeroes, or the last alloc failed. A freed object first,
 * else a fresh one, else a new slab. */
void *bl_slab__alloc_slow(struct bl_slab *s)
{
	void *obj;

	if (!stack_pop(s, &obj)) {
		if (s->fresh_count == 0) {
			int err = grow(s);

			if (err) {
				s->hot.last_error = err;
				s->hot.alloc_floor = UINTPTR_MAX;
				s->failed++;
				return NULL;
			}
		}
		obj = s->fresh_next;
		s->fresh_next += s->stride;
		s->fresh_count--;
	}
	((void **)obj)[1] = NULL; /* no longer tagged free */
	if (s->zero)
		memset(obj, 0, s->stride);
	s->hot.last_error = 0;
	s->hot.alloc_floor = alloc_floor(s);
	return obj;
}

/* The slab holding an object that starts at p, or NULL. */
static const struct chunk *find_chunk(const struct bl_slab *s, const void *p)
{
	uintptr_t a = (uintptr_t)p;

	for (const struct chunk *c = s->newest; c; c = c->older) {
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

/* bl_slab_free with every check: for builds without NDEBUG, for a full
 * segment, and for the pointers the inline checks refuse (to refuse them). */
int bl_slab__free_slow(struct bl_slab *s, void *p)
{
	if (!p || ((uintptr_t)p & s->hot.align_mask) != 0)
		return BL_EINVAL;
#ifndef NDEBUG
	if (!find_chunk(s, p))
		return BL_EINVAL;
#endif
	if (is_free(p) || !stack_push(s, p))
		return BL_EINVAL;
	tag_free(p);
	return 0;
}

int bl_slab_last_error(const struct bl_slab *s)
{
	return s->hot.last_error;
}

void bl_slab_stats(const struct bl_slab *s, struct bl_slab_stats *st)
{
	size_t used = s->total_objects - s->fresh_count; /* ever handed out */

	st->object_stride = s->stride;
	st->objects_in_use = used - stack_depth(s);
	st->objects_free = s->fresh_count + stack_depth(s);
	st->slabs = s->slabs;
	st->bytes_reserved = s->bytes_reserved;
	/* A fresh object is taken only when the stack is empty, that is when
	 * every object ever handed out is in use at once. */
	st->high_water = used;
	st->failed_allocs = s->failed;
}
