/* The daemon's own memory: one account every pool of ballast draws from.
 *
 * limits.daemon_memory is a hard cap on what ballast holds in its pools:
 * connections, request buffers (per-connection arenas), unsent responses,
 * input stashed behind a pipelined request, leases and waiters, the bodies of
 * backend metrics scrapes. Each of those
 * allocates through this account (directly, or through its allocator hook
 * given to a slab or an arena), and the account refuses any allocation that
 * would take it past the cap. So ballast answers 503 instead of growing.
 *
 * Two levels, so that work already admitted can finish:
 *   soft = cap x 7/8   new work (a new connection, an acquire, a reservation)
 *                      is answered 503 "overloaded" from here on;
 *   cap                no allocation passes it: what is under way (a release,
 *                      the answer to a request being read) uses the last 1/8.
 * docs/internals/daemon-memory.md explains the choice.
 *
 * Not counted: the fixed tables made once at start-up (the lease index,
 * sized for limits of the config), libuv's and jansson's own allocations
 * (configuration views, JSON documents built for GET answers), the code and
 * stacks. `/metrics` shows both what the account holds and the process RSS.
 *
 * The loop thread owns the account: no locks.
 */
#ifndef BALLAST_DMEM_H
#define BALLAST_DMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/alloc.h"

struct bl_dmem {
	uint64_t cap;            /* hard cap, bytes */
	uint64_t soft;           /* new work is refused from here: cap - cap / 8 */
	uint64_t held;           /* bytes allocated through the account now */
	uint64_t high_water;     /* most ever held at once */
	uint64_t refused_allocs; /* allocations refused at the cap */
	uint64_t overloaded;     /* pieces of new work refused past the soft level */
	struct bl_alloc_hook hook; /* for slabs and arenas: allocates through the account */
};

/* Sets up an empty account with the given cap (bytes, > 0). */
void bl_dmem_init(struct bl_dmem *m, uint64_t cap);

/* Changes the cap (config reload). What is held stays held, even above it;
 * new allocations are refused until frees bring it back under. */
void bl_dmem_set_cap(struct bl_dmem *m, uint64_t cap);

/* Allocates n bytes (malloc alignment), or returns NULL when the account
 * would pass its cap or malloc fails. n == 0 returns NULL. */
void *bl_dmem_alloc(struct bl_dmem *m, size_t n);

/* Frees p, which bl_dmem_alloc returned for n bytes. NULL is a no-op. */
void bl_dmem_free(struct bl_dmem *m, void *p, size_t n);

/* True when new work must be refused: the account holds at least `soft`.
 * Counts one refusal in `overloaded` when it answers true. */
bool bl_dmem_refuse_new_work(struct bl_dmem *m);

#endif
