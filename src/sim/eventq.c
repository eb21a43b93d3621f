/* The simulator's event heap. See eventq.h. */
#include "eventq.h"

#include <stdbool.h>
#include <stdlib.h>

#include "ballast/error.h"

static bool before(const struct bl_sim_event *x, const struct bl_sim_event *y)
{
	return x->at_ns < y->at_ns || (x->at_ns == y->at_ns && x->seq < y->seq);
}

void bl_sim_eventq_init(struct bl_sim_eventq *q)
{
	*q = (struct bl_sim_eventq){0};
}

void bl_sim_eventq_cleanup(struct bl_sim_eventq *q)
{
	free(q->heap);
	*q = (struct bl_sim_eventq){0};
}

int bl_sim_eventq_push(struct bl_sim_eventq *q, bl_time_ns at_ns, uint32_t kind, uint32_t a,
		       uint64_t b)
{
	struct bl_sim_event e = {at_ns, q->next_seq, kind, a, b};
	size_t i;

	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 1024;
		struct bl_sim_event *h = realloc(q->heap, cap * sizeof *h);

		if (!h)
			return BL_ENOMEM;
		q->heap = h;
		q->cap = cap;
	}
	q->next_seq++;
	i = q->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!before(&e, &q->heap[p]))
			break;
		q->heap[i] = q->heap[p];
		i = p;
	}
	q->heap[i] = e;
	return 0;
}

int bl_sim_eventq_pop(struct bl_sim_eventq *q, struct bl_sim_event *out)
{
	struct bl_sim_event last;
	size_t i = 0;

	if (q->n == 0)
		return 0;
	*out = q->heap[0];
	last = q->heap[--q->n];
	for (;;) {
		size_t l = 2 * i + 1, m;

		if (l >= q->n)
			break;
		m = l + 1 < q->n && before(&q->heap[l + 1], &q->heap[l]) ? l + 1 : l;
		if (!before(&q->heap[m], &last))
			break;
		q->heap[i] = q->heap[m];
		i = m;
	}
	if (q->n)
		q->heap[i] = last;
	return 1;
}

const struct bl_sim_event *bl_sim_eventq_peek(const struct bl_sim_eventq *q)
{
	return q->n ? &q->heap[0] : NULL;
}
