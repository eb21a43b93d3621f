#include "ballast/lease.h"

#include <stdlib.h>

#include "ballast/error.h"

struct bl_lease_table {
	size_t capacity;               /* most live leases */
	size_t count;                  /* live leases */
	size_t mask;                   /* buckets - 1 (a power of two) */
	struct bl_lease_node **buckets;
	struct bl_lease_node **heap;   /* min-heap by expires_ns, count entries */
};

/* Ids are chosen by callers (random or sequential): mix them so sequential
 * ids spread over the buckets too. */
static size_t bucket_of(const struct bl_lease_table *t, uint64_t id)
{
	id ^= id >> 33;
	id *= UINT64_C(0xff51afd7ed558ccd);
	id ^= id >> 33;
	return (size_t)id & t->mask;
}

int bl_lease_table_create(size_t capacity, struct bl_lease_table **out)
{
	struct bl_lease_table *t;
	size_t buckets = 16;

	if (capacity == 0 || capacity > (size_t)1 << 31)
		return BL_EINVAL;
	while (buckets < capacity)
		buckets <<= 1;
	t = calloc(1, sizeof *t);
	if (!t)
		return BL_ENOMEM;
	t->buckets = calloc(buckets, sizeof *t->buckets);
	t->heap = calloc(capacity, sizeof *t->heap);
	if (!t->buckets || !t->heap) {
		bl_lease_table_destroy(t);
		return BL_ENOMEM;
	}
	t->capacity = capacity;
	t->mask = buckets - 1;
	*out = t;
	return 0;
}

void bl_lease_table_destroy(struct bl_lease_table *t)
{
	if (!t)
		return;
	free(t->buckets);
	free(t->heap);
	free(t);
}

static void heap_set(struct bl_lease_table *t, size_t i, struct bl_lease_node *n)
{
	t->heap[i] = n;
	n->heap_pos = (uint32_t)i;
}

static void sift_up(struct bl_lease_table *t, size_t i)
{
	struct bl_lease_node *n = t->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (t->heap[parent]->expires_ns <= n->expires_ns)
			break;
		heap_set(t, i, t->heap[parent]);
		i = parent;
	}
	heap_set(t, i, n);
}

static void sift_down(struct bl_lease_table *t, size_t i)
{
	struct bl_lease_node *n = t->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		bl_time_ns best = n->expires_ns;

		if (l < t->count && t->heap[l]->expires_ns < best) {
			m = l;
			best = t->heap[l]->expires_ns;
		}
		if (r < t->count && t->heap[r]->expires_ns < best)
			m = r;
		if (m == i)
			break;
		heap_set(t, i, t->heap[m]);
		i = m;
	}
	heap_set(t, i, n);
}

int bl_lease_insert(struct bl_lease_table *t, struct bl_lease_node *node)
{
	size_t b;

	if (node->id == 0)
		return BL_EINVAL;
	if (bl_lease_find(t, node->id))
		return BL_EEXIST;
	if (t->count == t->capacity)
		return BL_EFULL;
	b = bucket_of(t, node->id);
	node->hnext = t->buckets[b];
	t->buckets[b] = node;
	heap_set(t, t->count++, node);
	sift_up(t, t->count - 1);
	return 0;
}

struct bl_lease_node *bl_lease_find(const struct bl_lease_table *t, uint64_t id)
{
	struct bl_lease_node *n;

	for (n = t->buckets[bucket_of(t, id)]; n; n = n->hnext)
		if (n->id == id)
			return n;
	return NULL;
}

void bl_lease_remove(struct bl_lease_table *t, struct bl_lease_node *node)
{
	struct bl_lease_node **pp = &t->buckets[bucket_of(t, node->id)];
	size_t i = node->heap_pos;

	while (*pp && *pp != node)
		pp = &(*pp)->hnext;
	if (!*pp)
		return; /* not in this table */
	*pp = node->hnext;
	node->hnext = NULL;
	t->count--;
	if (i != t->count) {
		heap_set(t, i, t->heap[t->count]);
		sift_down(t, i);
		sift_up(t, t->heap[i]->heap_pos);
	}
	t->heap[t->count] = NULL;
}

void bl_lease_set_expiry(struct bl_lease_table *t, struct bl_lease_node *node,
			 bl_time_ns expires_ns)
{
	node->expires_ns = expires_ns;
	sift_down(t, node->heap_pos);
	sift_up(t, node->heap_pos);
}

struct bl_lease_node *bl_lease_first_expiry(const struct bl_lease_table *t)
{
	return t->count ? t->heap[0] : NULL;
}

struct bl_lease_node *bl_lease_pop_expired(struct bl_lease_table *t, bl_time_ns now_ns)
{
	struct bl_lease_node *n = bl_lease_first_expiry(t);

	if (!n || n->expires_ns > now_ns)
		return NULL;
	bl_lease_remove(t, n);
	return n;
}

size_t bl_lease_count(const struct bl_lease_table *t)
{
	return t->count;
}

size_t bl_lease_capacity(const struct bl_lease_table *t)
{
	return t->capacity;
}

void bl_lease_foreach(const struct bl_lease_table *t,
		      void (*fn)(struct bl_lease_node *node, void *ctx), void *ctx)
{
	for (size_t i = 0; i < t->count; i++)
		fn(t->heap[i], ctx);
}
