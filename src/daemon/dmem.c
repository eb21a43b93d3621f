/* The daemon's memory account. See dmem.h. */
#include "dmem.h"

#include <stdlib.h>

static void *hook_malloc(void *ctx, size_t bytes)
{
	return bl_dmem_alloc(ctx, bytes);
}

static void hook_free(void *ctx, void *p, size_t bytes)
{
	bl_dmem_free(ctx, p, bytes);
}

void bl_dmem_init(struct bl_dmem *m, uint64_t cap)
{
	*m = (struct bl_dmem){0};
	m->hook = (struct bl_alloc_hook){hook_malloc, hook_free, m};
	bl_dmem_set_cap(m, cap);
}

void bl_dmem_set_cap(struct bl_dmem *m, uint64_t cap)
{
	m->cap = cap;
	m->soft = cap - cap / 8;
}

void *bl_dmem_alloc(struct bl_dmem *m, size_t n)
{
	void *p;

	if (n == 0 || n > m->cap || m->held > m->cap - n) {
		m->refused_allocs++;
		return NULL;
	}
	p = malloc(n);
	if (!p) {
		m->refused_allocs++;
		return NULL;
	}
	m->held += n;
	if (m->held > m->high_water)
		m->high_water = m->held;
	return p;
}

void bl_dmem_free(struct bl_dmem *m, void *p, size_t n)
{
	if (!p)
		return;
	free(p);
	m->held = m->held >= n ? m->held - n : 0;
}

bool bl_dmem_refuse_new_work(struct bl_dmem *m)
{
	if (m->held < m->soft)
		return false;
	m->overloaded++;
	return true;
}
