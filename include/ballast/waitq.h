/* The waiting queue: who is admitted next when a budget cannot admit everyone.
 *
 * A request that cannot be admitted yet (a rate budget out of tokens, a memory
 * budget above its watermark) waits in the daemon instead of making its client
 * retry. Rate budgets and memory budgets share this one queue. The queue
 * decides WHO goes next; the caller decides WHETHER that waiter can be admitted
 * now: it peeks, checks its own budget, and pops only when the head fits.
 *
 * Policy (docs/internals/waiting.md explains the why):
 *   1. Strict priority between four classes: critical, high, normal, low. A
 *      waiter never waits behind one of a lower class.
 *   2. Within a class, deficit round robin (DRR) across tenants, by COST (the
 *      tokens or bytes the waiter asks for, not the number of waiters), each
 *      tenant's share proportional to its weight.
 *   3. FIFO within a tenant and class.
 *
 * Intrusive and allocation-free: the caller embeds a struct bl_waitq_node in its
 * own waiter object and gets the object back with BL_WAITQ_ENTRY. Per-tenant
 * state (a FIFO and a deficit per class) lives in a struct bl_waitq_tenant that
 * the caller owns too, either its own or one handed out by the optional tenant
 * table at the end of this header (struct bl_waitq_tenants: names to slots,
 * allocated once at creation).
 *
 * Complexity: push, remove and the length queries are O(1); peek is O(1) (it
 * looks at four class heads); pop is O(1) when the quantum is at least the
 * typical cost and at worst O(tenants waiting in that class).
 *
 * Pure: no I/O, no clock, no globals, no locks (the daemon's loop thread owns
 * the queue). Functions that fail leave the queue, nodes and tenants as they
 * were.
 */
#ifndef BALLAST_WAITQ_H
#define BALLAST_WAITQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Priority classes, most urgent first. The numeric order is the service order. */
enum bl_waitq_class {
	BL_WAITQ_CRITICAL = 0, /* served before everything else */
	BL_WAITQ_HIGH = 1,     /* served when no critical waiter is queued */
	BL_WAITQ_NORMAL = 2,   /* the default class */
	BL_WAITQ_LOW = 3,      /* served only when no other class has waiters */
};

/* Number of classes. */
#define BL_WAITQ_CLASSES 4

/* Largest cost of one waiter (2^46: 64 TiB as bytes). Larger is BL_ERANGE. */
#define BL_WAITQ_COST_MAX (UINT64_C(1) << 46)

/* Largest tenant weight. Weights are 1..BL_WAITQ_WEIGHT_MAX. */
#define BL_WAITQ_WEIGHT_MAX 65535u

/* Weight of a tenant the configuration does not name. */
#define BL_WAITQ_WEIGHT_DEFAULT 1u

/* Returns the object that embeds node: BL_WAITQ_ENTRY(n, struct waiter, wq). */
#define BL_WAITQ_ENTRY(node, type, member) \
	((type *)(void *)((char *)(node) - offsetof(type, member)))

struct bl_waitq_tenant;

/* One waiter, embedded in the caller's own waiter object. The caller owns the
 * memory; the queue links it while it is queued. Fields are private: read them
 * through the functions below. Call bl_waitq_node_init before first use. */
struct bl_waitq_node {
	struct bl_waitq_node *prev;     /* older waiter of the same tenant and class */
	struct bl_waitq_node *next;     /* newer waiter of the same tenant and class */
	struct bl_waitq_tenant *tenant; /* tenant while queued; NULL when not queued */
	uint64_t cost;                  /* units charged to the tenant when popped */
	uint8_t cls;                    /* enum bl_waitq_class while queued */
};

/* One tenant's waiters in one class: a FIFO, and its place in the class's
 * round-robin ring while it has waiters. Private. */
struct bl_waitq_lane {
	struct bl_waitq_node *head;      /* oldest waiter, NULL when empty */
	struct bl_waitq_node *tail;      /* newest waiter, NULL when empty */
	struct bl_waitq_lane *ring_prev; /* previous lane in the class ring */
	struct bl_waitq_lane *ring_next; /* next lane in the class ring */
	uint64_t deficit;                /* DRR credit in cost units; 0 when empty */
	uint32_t count;                  /* waiters in this lane */
};

/* Per-tenant queue state. The caller owns it (embedded, or from a table such
 * as struct bl_waitq_tenants) and keeps it alive and in place while it has
 * waiters (bl_waitq_tenant_waiters > 0). While it has waiters it belongs to
 * the one queue they are in; when idle it may be reused with any queue. */
struct bl_waitq_tenant {
	struct bl_waitq_lane lanes[BL_WAITQ_CLASSES]; /* one FIFO per class */
	uint32_t weight;  /* share of its class, 1..BL_WAITQ_WEIGHT_MAX */
	uint32_t waiters; /* waiters queued, all classes */
	const struct bl_waitq *queue; /* the queue holding its waiters, or NULL */
};

/* The queue. Embeddable; set up with bl_waitq_init. Fields are private. */
struct bl_waitq {
	struct bl_waitq_lane *turn[BL_WAITQ_CLASSES]; /* lane whose DRR turn it is, NULL if class empty */
	bool turn_started[BL_WAITQ_CLASSES]; /* the turn lane already got its quantum */
	uint32_t lanes[BL_WAITQ_CLASSES];    /* tenants with waiters, per class */
	uint32_t length[BL_WAITQ_CLASSES];   /* waiters per class */
	uint32_t total;       /* waiters, all classes */
	uint32_t max_waiters; /* bound on total; push fails with BL_EFULL at it */
	uint64_t quantum;     /* cost credit per unit of weight per turn; 0 = auto */
	uint64_t cost_sum;    /* sum of the costs of all queued waiters */
};

/* Sets up q, empty, for at most max_waiters (>= 1) waiters.
 *
 * quantum is the credit, in the caller's cost units, that a tenant of weight
 * w receives at the start of each of its DRR turns (w * quantum). Pick it near
 * the typical cost of one waiter: small enough that tenants interleave finely,
 * large enough that a typical waiter is served on its tenant's first turn.
 * 0 selects the automatic quantum: the mean cost of the waiters queued at the
 * moment of the grant (at least 1), which follows the workload. Allocates
 * nothing. Returns 0, or BL_EINVAL (max_waiters 0, quantum above
 * BL_WAITQ_COST_MAX) leaving q untouched. */
int bl_waitq_init(struct bl_waitq *q, uint32_t max_waiters, uint64_t quantum);

/* Detaches every waiter still queued (each node reads as not queued, each
 * tenant as idle) and leaves q empty. The caller answers its waiters first;
 * this only makes sure no stale links survive. Frees nothing. */
void bl_waitq_cleanup(struct bl_waitq *q);

/* Changes the bound on waiters. Lowering it below the current length drops
 * nobody: pushes fail until the queue has shrunk. Returns 0 or BL_EINVAL (0). */
int bl_waitq_set_max(struct bl_waitq *q, uint32_t max_waiters);

/* Changes the quantum (0 = automatic) for the turns that start from now on.
 * Returns 0 or BL_EINVAL (above BL_WAITQ_COST_MAX). */
int bl_waitq_set_quantum(struct bl_waitq *q, uint64_t quantum);

/* Prepares a node for its first push: it reads as not queued. */
void bl_waitq_node_init(struct bl_waitq_node *node);

/* Sets up an idle tenant with weight 1..BL_WAITQ_WEIGHT_MAX. Returns 0 or
 * BL_EINVAL (weight out of range) leaving t untouched. */
int bl_waitq_tenant_init(struct bl_waitq_tenant *t, uint32_t weight);

/* Changes t's weight; it takes effect at t's next DRR turn. Returns 0 or
 * BL_EINVAL (out of range) leaving t untouched. */
int bl_waitq_tenant_set_weight(struct bl_waitq_tenant *t, uint32_t weight);

/* Returns t's weight. */
uint32_t bl_waitq_tenant_weight(const struct bl_waitq_tenant *t);

/* Returns how many waiters t has queued, all classes. A tenant with none is
 * idle: the caller may free, move or reuse it. */
uint32_t bl_waitq_tenant_waiters(const struct bl_waitq_tenant *t);

/* Queues node at the back of tenant t's FIFO in class cls, costing cost
 * (0..BL_WAITQ_COST_MAX) units when popped. node and t must stay valid and in
 * place until node leaves the queue (pop, remove or cleanup).
 * Returns 0, or leaves everything unchanged and returns
 *   BL_EFULL   the queue holds max_waiters waiters;
 *   BL_EEXIST  node is already queued;
 *   BL_ERANGE  cost above BL_WAITQ_COST_MAX;
 *   BL_EINVAL  cls out of range, or t has waiters in another queue. */
int bl_waitq_push(struct bl_waitq *q, struct bl_waitq_node *node, enum bl_waitq_class cls,
		  struct bl_waitq_tenant *t, uint64_t cost);

/* Returns the waiter that goes next under the policy, without removing it, or
 * NULL when q is empty. Stable: without a push, pop, remove or setting change
 * in between, two calls return the same node. A push never changes the answer
 * unless it is the only waiter or outranks the head by class. */
struct bl_waitq_node *bl_waitq_peek(const struct bl_waitq *q);

/* Removes the node bl_waitq_peek returns, charges its cost to its tenant's
 * deficit in that class, and returns it (not queued any more), or returns
 * NULL when q is empty. */
struct bl_waitq_node *bl_waitq_pop(struct bl_waitq *q);

/* Removes node wherever it is, without charging its tenant: for a waiter
 * whose wait ran out or whose client went away. O(1). Returns 0, or BL_ENOENT
 * if node is not queued in q (nothing changes). */
int bl_waitq_remove(struct bl_waitq *q, struct bl_waitq_node *node);

/* Returns true when node is queued (in any queue). */
bool bl_waitq_node_is_queued(const struct bl_waitq_node *node);

/* Returns the class node was queued in; meaningful only while it is queued. */
enum bl_waitq_class bl_waitq_node_class(const struct bl_waitq_node *node);

/* Returns the cost node was queued with. */
uint64_t bl_waitq_node_cost(const struct bl_waitq_node *node);

/* Returns the tenant node is queued for, or NULL when it is not queued. */
struct bl_waitq_tenant *bl_waitq_node_tenant(const struct bl_waitq_node *node);

/* Returns the number of waiters in q. */
uint32_t bl_waitq_length(const struct bl_waitq *q);

/* Returns the number of waiters of class cls (0 for a class out of range). */
uint32_t bl_waitq_class_length(const struct bl_waitq *q, enum bl_waitq_class cls);

/* Returns the sum of the costs of all waiters in q. */
uint64_t bl_waitq_cost(const struct bl_waitq *q);

/* Iteration for snapshots and debugging: bl_waitq_first then bl_waitq_next
 * until NULL visit every waiter once, by class, then by tenant in round-robin
 * order from the tenant whose turn it is, then FIFO. That is close to, but not
 * exactly, the service order. The queue must not change during the walk. O(1)
 * per step. */
struct bl_waitq_node *bl_waitq_first(const struct bl_waitq *q);

/* Returns the waiter after node in the walk, or NULL after the last. */
struct bl_waitq_node *bl_waitq_next(const struct bl_waitq *q, const struct bl_waitq_node *node);

/* Parses a class name ("critical", "high", "normal", "low"; exact, lower case)
 * of len bytes at s. Returns 0 and sets *out, or BL_EINVAL leaving it. */
int bl_waitq_class_parse(const char *s, size_t len, enum bl_waitq_class *out);

/* Returns the name of cls ("critical" ...), or "unknown" out of range. */
const char *bl_waitq_class_name(enum bl_waitq_class cls);

/* ---- Tenant table (optional) ---------------------------------------------
 *
 * Maps tenant names to tenant slots for one queue, so that rate budgets and
 * memory budgets need not each write their own. Configured tenants (with
 * their weights) are pinned; any other name gets a slot of weight 1 on first
 * use, and that slot is recycled for another name once it is idle. All memory
 * is allocated by bl_waitq_tenants_create; nothing after that allocates.
 * When every slot is busy (that many distinct tenants are waiting at once),
 * new names share one overflow slot of weight 1: they keep FIFO order among
 * themselves and compete with the others as a single tenant. Nothing fails.
 * (A name that got the overflow slot and later a slot of its own has waiters
 * in both; FIFO holds within each.) Looking up a known name is O(1); a new
 * name costs O(capacity) at worst, when few slots are idle. */

/* Longest tenant name, in bytes. */
#define BL_WAITQ_TENANT_NAME_MAX 64

/* One configured tenant, as the config states it. */
struct bl_waitq_tenant_config {
	const char *name; /* bytes, not NUL-terminated necessarily */
	size_t name_len;  /* 1..BL_WAITQ_TENANT_NAME_MAX */
	uint32_t weight;  /* 1..BL_WAITQ_WEIGHT_MAX */
};

struct bl_waitq_tenants;

/* Creates a table of capacity slots (1..1048576; configured tenants count
 * against it) plus the overflow slot. Returns 0 and sets *out, or BL_EINVAL /
 * BL_ENOMEM. */
int bl_waitq_tenants_create(uint32_t capacity, struct bl_waitq_tenants **out);

/* Frees the table. Its tenants must be idle (no waiters queued): call after
 * bl_waitq_cleanup. NULL is a no-op. */
void bl_waitq_tenants_destroy(struct bl_waitq_tenants *tbl);

/* Replaces the set of configured tenants with cfg[0..n): those get their
 * weight and are pinned; previously configured tenants not in cfg fall back
 * to weight 1 and become recyclable. Waiting tenants keep their waiters; a
 * weight change applies from their next turn. Returns 0, or leaves the table
 * unchanged and returns BL_EINVAL (a bad name or weight, a duplicate name) or
 * BL_EFULL (not enough free or idle slots for the new names). */
int bl_waitq_tenants_configure(struct bl_waitq_tenants *tbl,
			       const struct bl_waitq_tenant_config *cfg, size_t n);

/* Finds the slot for the tenant named by len bytes at name, claiming one
 * (weight 1) for a name seen for the first time, or returning the overflow
 * slot when none is free. The slot stays this name's while it has waiters or
 * is configured; an idle unconfigured slot may go to another name at a later
 * bl_waitq_tenants_get, so push with it straight away. Returns 0 and sets
 * *out, or BL_EINVAL (empty name or longer than BL_WAITQ_TENANT_NAME_MAX). */
int bl_waitq_tenants_get(struct bl_waitq_tenants *tbl, const char *name, size_t len,
			 struct bl_waitq_tenant **out);

/* Returns the name of a slot from tbl (not NUL-terminated) and sets *len, or
 * returns "*" for the overflow slot. */
const char *bl_waitq_tenants_name(const struct bl_waitq_tenants *tbl,
				  const struct bl_waitq_tenant *t, size_t *len);

/* Returns how many lookups fell back to the overflow slot since creation. */
uint64_t bl_waitq_tenants_overflows(const struct bl_waitq_tenants *tbl);

#endif
