/* The lease table: every grant the daemon has handed out and not yet taken
 * back, found by id in O(1) and reclaimed in expiry order in O(log n).
 *
 * Intrusive: the caller embeds a struct bl_lease_node in its own lease
 * object (recovering it with BL_CONTAINER_OF) and owns that memory. The
 * table allocates only at creation, for its fixed capacity. Pure: time is an
 * argument; ids come from the caller.
 */
#ifndef BALLAST_LEASE_H
#define BALLAST_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "ballast/units.h"

#define BL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct bl_lease_node {
	uint64_t id;                 /* unique, non-zero; chosen by the caller */
	bl_time_ns expires_ns;       /* reclaimed once now passes this */
	uint32_t heap_pos;           /* index in the expiry heap (table-private) */
	struct bl_lease_node *hnext; /* hash chain (table-private) */
};

struct bl_lease_table;

/* Creates a table for at most capacity live leases (1..2^31). Returns 0,
 * BL_EINVAL or BL_ENOMEM. */
int bl_lease_table_create(size_t capacity, struct bl_lease_table **out);

/* Frees the table (not the nodes: they are the caller's). NULL is a no-op. */
void bl_lease_table_destroy(struct bl_lease_table *t);

/* Adds node (id and expires_ns set by the caller). Returns 0, BL_EINVAL for
 * id 0, BL_EEXIST if the id is taken (pick another), or BL_EFULL at capacity;
 * on failure the table is unchanged. */
int bl_lease_insert(struct bl_lease_table *t, struct bl_lease_node *node);

/* Returns the node with this id, or NULL. */
struct bl_lease_node *bl_lease_find(const struct bl_lease_table *t, uint64_t id);

/* Removes a node that is in the table. */
void bl_lease_remove(struct bl_lease_table *t, struct bl_lease_node *node);

/* Moves a node's expiry to expires_ns (earlier or later). */
void bl_lease_set_expiry(struct bl_lease_table *t, struct bl_lease_node *node,
			 bl_time_ns expires_ns);

/* The node that expires first, or NULL when empty. */
struct bl_lease_node *bl_lease_first_expiry(const struct bl_lease_table *t);

/* Removes and returns one node whose expiry is <= now_ns, or NULL if none
 * has expired. Call in a loop to reclaim all. */
struct bl_lease_node *bl_lease_pop_expired(struct bl_lease_table *t, bl_time_ns now_ns);

/* Live leases, and the capacity. */
size_t bl_lease_count(const struct bl_lease_table *t);
size_t bl_lease_capacity(const struct bl_lease_table *t);

/* Calls fn for every node, in no particular order. fn must not change the table. */
void bl_lease_foreach(const struct bl_lease_table *t,
		      void (*fn)(struct bl_lease_node *node, void *ctx), void *ctx);

#endif
