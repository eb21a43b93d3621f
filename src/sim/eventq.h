/* The simulator's event queue: a binary min-heap on (time, sequence).
 *
 * Events with equal times come out in the order they were pushed (the
 * sequence number breaks ties), so a run never depends on the heap's
 * internal order. Push and pop are O(log n); the array grows by doubling
 * (amortized, never per event once warmed up). Events are plain data; a
 * cancelled event is left in the heap and recognised as stale by its owner
 * (a generation number in `b`).
 */
#ifndef BALLAST_SIM_EVENTQ_H
#define BALLAST_SIM_EVENTQ_H

#include <stddef.h>
#include <stdint.h>

#include "ballast/units.h"

/* One event. */
struct bl_sim_event {
	bl_time_ns at_ns; /* virtual time it fires */
	uint64_t seq;     /* push order: ties on at_ns come out in this order */
	uint32_t kind;    /* the owner's event type */
	uint32_t a;       /* the owner's argument (a task, a worker ...) */
	uint64_t b;       /* the owner's second argument (a generation ...) */
};

struct bl_sim_eventq {
	struct bl_sim_event *heap; /* n entries, heap-ordered */
	size_t n;                  /* events queued */
	size_t cap;                /* allocated entries */
	uint64_t next_seq;         /* sequence number of the next push */
};

/* Sets up an empty queue; allocates nothing yet. */
void bl_sim_eventq_init(struct bl_sim_eventq *q);

/* Frees the queue's array; q is empty after. */
void bl_sim_eventq_cleanup(struct bl_sim_eventq *q);

/* Queues an event. Returns 0 or BL_ENOMEM (q unchanged). */
int bl_sim_eventq_push(struct bl_sim_eventq *q, bl_time_ns at_ns, uint32_t kind, uint32_t a,
		       uint64_t b);

/* Removes the earliest event into *out and returns 1, or returns 0 when q is
 * empty. */
int bl_sim_eventq_pop(struct bl_sim_eventq *q, struct bl_sim_event *out);

/* Returns the earliest event without removing it, or NULL when q is empty. */
const struct bl_sim_event *bl_sim_eventq_peek(const struct bl_sim_eventq *q);

#endif
