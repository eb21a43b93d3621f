/* The waiting queue: strict priority between classes, deficit round robin by
 * cost across tenants within a class, FIFO within a tenant.
 * docs/internals/waiting.md explains the policy; this file keeps one invariant:
 *
 *   After every public call, in every class with waiters, the turn lane
 *   (q->turn[c]) has received its quantum for the current turn and its deficit
 *   covers the cost of its oldest waiter.
 *
 * So peek only reads the turn lanes, and is trivially stable. settle() restores
 * the invariant after a change, doing exactly what textbook DRR does (visit the
 * next lane, grant it weight * quantum, serve it if it can pay, else move on),
 * except that it skips whole rounds in which nobody could pay in one step.
 */
#include "ballast/waitq.h"

#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

/* ---- lanes and rings ---------------------------------------------------- */

static struct bl_waitq_tenant *lane_tenant(struct bl_waitq_lane *lane, unsigned cls)
{
	struct bl_waitq_lane *first = lane - cls;

	return BL_WAITQ_ENTRY(first, struct bl_waitq_tenant, lanes);
}

static uint64_t quantum_now(const struct bl_waitq *q)
{
	if (q->quantum)
		return q->quantum;
	if (q->total == 0)
		return 1;
	/* Mean cost of the waiters queued now, rounded up, at least 1. */
	return q->cost_sum / q->total + (q->cost_sum % q->total != 0) + (q->cost_sum == 0);
}

/* Puts lane, which just got its first waiter, at the end of the round: just
 * before the turn lane, so that it waits for everyone already waiting. */
static void ring_insert(struct bl_waitq *q, unsigned cls, struct bl_waitq_lane *lane)
{
	struct bl_waitq_lane *turn = q->turn[cls];

	if (!turn) {
		lane->ring_prev = lane->ring_next = lane;
		q->turn[cls] = lane;
		q->turn_started[cls] = false;
	} else {
		lane->ring_next = turn;
		lane->ring_prev = turn->ring_prev;
		turn->ring_prev->ring_next = lane;
		turn->ring_prev = lane;
	}
	q->lanes[cls]++;
}

/* Takes lane, which just lost its last waiter, out of the round. Its deficit
 * goes back to zero: credit is for waiting tenants and is not kept for later. */
static void ring_remove(struct bl_waitq *q, unsigned cls, struct bl_waitq_lane *lane)
{
	if (lane->ring_next == lane) {
		q->turn[cls] = NULL;
	} else {
		lane->ring_prev->ring_next = lane->ring_next;
		lane->ring_next->ring_prev = lane->ring_prev;
		if (q->turn[cls] == lane) {
			q->turn[cls] = lane->ring_next;
			q->turn_started[cls] = false;
		}
	}
	lane->ring_prev = lane->ring_next = NULL;
	lane->deficit = 0;
	q->lanes[cls]--;
}

/* Whole rounds in which no lane could pay: all lanes have just been granted
 * once and failed. Let r_i = rounds lane i still needs. The next lane to pay
 * does so in round R = min r_i; add R - 1 rounds of credit to every lane at
 * once. (R - 1) * credit_i < cost_i - deficit_i, so nothing overflows. */
static void skip_rounds(struct bl_waitq *q, unsigned cls, uint64_t quantum)
{
	struct bl_waitq_lane *start = q->turn[cls], *l = start;
	uint64_t rounds = UINT64_MAX;

	do {
		uint64_t credit = quantum * lane_tenant(l, cls)->weight;
		uint64_t need = l->head->cost - l->deficit; /* > 0: it failed */
		uint64_t r = need / credit + (need % credit != 0);

		if (r < rounds)
			rounds = r;
		l = l->ring_next;
	} while (l != start);
	if (rounds <= 1)
		return;
	do {
		l->deficit += (rounds - 1) * quantum * lane_tenant(l, cls)->weight;
		l = l->ring_next;
	} while (l != start);
}

/* Restores the invariant in class cls (see the top of the file). */
static void settle(struct bl_waitq *q, unsigned cls)
{
	uint32_t failed_grants = 0;
	uint64_t quantum = quantum_now(q);

	while (q->turn[cls]) {
		struct bl_waitq_lane *lane = q->turn[cls];

		if (!q->turn_started[cls]) {
			lane->deficit += quantum * lane_tenant(lane, cls)->weight;
			q->turn_started[cls] = true;
			if (lane->deficit >= lane->head->cost)
				return;
			failed_grants++;
		} else if (lane->deficit >= lane->head->cost) {
			return;
		}
		/* Its turn is over: on to the next lane. */
		q->turn[cls] = lane->ring_next;
		q->turn_started[cls] = false;
		if (failed_grants == q->lanes[cls]) {
			skip_rounds(q, cls, quantum);
			failed_grants = 0;
		}
	}
}

/* Unlinks node from its lane and fixes every count; returns its lane. Does
 * not settle. */
static struct bl_waitq_lane *unlink_node(struct bl_waitq *q, struct bl_waitq_node *node)
{
	unsigned cls = node->cls;
	struct bl_waitq_tenant *t = node->tenant;
	struct bl_waitq_lane *lane = &t->lanes[cls];

	if (node->prev)
		node->prev->next = node->next;
	else
		lane->head = node->next;
	if (node->next)
		node->next->prev = node->prev;
	else
		lane->tail = node->prev;
	node->prev = node->next = NULL;
	node->tenant = NULL;
	lane->count--;
	if (--t->waiters == 0)
		t->queue = NULL;
	q->length[cls]--;
	q->total--;
	q->cost_sum -= node->cost;
	return lane;
}

/* ---- the queue ---------------------------------------------------------- */

int bl_waitq_init(struct bl_waitq *q, uint32_t max_waiters, uint64_t quantum)
{
	if (max_waiters == 0 || quantum > BL_WAITQ_COST_MAX)
		return BL_EINVAL;
	memset(q, 0, sizeof *q);
	q->max_waiters = max_waiters;
	q->quantum = quantum;
	return 0;
}

void bl_waitq_cleanup(struct bl_waitq *q)
{
	for (unsigned c = 0; c < BL_WAITQ_CLASSES; c++) {
		while (q->turn[c]) {
			struct bl_waitq_lane *lane = q->turn[c];

			while (lane->head)
				(void)unlink_node(q, lane->head);
			ring_remove(q, c, lane);
		}
	}
	memset(q->turn_started, 0, sizeof q->turn_started);
}

int bl_waitq_set_max(struct bl_waitq *q, uint32_t max_waiters)
{
	if (max_waiters == 0)
		return BL_EINVAL;
	q->max_waiters = max_waiters;
	return 0;
}

int bl_waitq_set_quantum(struct bl_waitq *q, uint64_t quantum)
{
	if (quantum > BL_WAITQ_COST_MAX)
		return BL_EINVAL;
	q->quantum = quantum;
	return 0;
}

void bl_waitq_node_init(struct bl_waitq_node *node)
{
	memset(node, 0, sizeof *node);
}

int bl_waitq_tenant_init(struct bl_waitq_tenant *t, uint32_t weight)
{
	if (weight < 1 || weight > BL_WAITQ_WEIGHT_MAX)
		return BL_EINVAL;
	memset(t, 0, sizeof *t);
	t->weight = weight;
	return 0;
}

int bl_waitq_tenant_set_weight(struct bl_waitq_tenant *t, uint32_t weight)
{
	if (weight < 1 || weight > BL_WAITQ_WEIGHT_MAX)
		return BL_EINVAL;
	t->weight = weight;
	return 0;
}

uint32_t bl_waitq_tenant_weight(const struct bl_waitq_tenant *t)
{
	return t->weight;
}

uint32_t bl_waitq_tenant_waiters(const struct bl_waitq_tenant *t)
{
	return t->waiters;
}

int bl_waitq_push(struct bl_waitq *q, struct bl_waitq_node *node, enum bl_waitq_class cls,
		  struct bl_waitq_tenant *t, uint64_t cost)
{
	struct bl_waitq_lane *lane;

	if ((unsigned)cls >= BL_WAITQ_CLASSES || (t->waiters && t->queue != q))
		return BL_EINVAL;
	if (node->tenant)
		return BL_EEXIST;
	if (cost > BL_WAITQ_COST_MAX)
		return BL_ERANGE;
	if (q->total >= q->max_waiters)
		return BL_EFULL;

	lane = &t->lanes[cls];
	node->tenant = t;
	node->cost = cost;
	node->cls = (uint8_t)cls;
	node->next = NULL;
	node->prev = lane->tail;
	if (lane->tail)
		lane->tail->next = node;
	else
		lane->head = node;
	lane->tail = node;
	lane->count++;
	t->waiters++;
	t->queue = q;
	q->length[cls]++;
	q->total++;
	q->cost_sum += cost;
	if (lane->count == 1) {
		ring_insert(q, cls, lane);
		/* Only a lane that became the turn lane needs settling. */
		if (q->turn[cls] == lane)
			settle(q, cls);
	}
	return 0;
}

struct bl_waitq_node *bl_waitq_peek(const struct bl_waitq *q)
{
	for (unsigned c = 0; c < BL_WAITQ_CLASSES; c++)
		if (q->turn[c])
			return q->turn[c]->head;
	return NULL;
}

struct bl_waitq_node *bl_waitq_pop(struct bl_waitq *q)
{
	for (unsigned c = 0; c < BL_WAITQ_CLASSES; c++) {
		struct bl_waitq_lane *lane = q->turn[c];
		struct bl_waitq_node *node;

		if (!lane)
			continue;
		node = lane->head;
		(void)unlink_node(q, node);
		lane->deficit -= node->cost; /* covered: the invariant */
		if (lane->count == 0)
			ring_remove(q, c, lane);
		settle(q, c);
		return node;
	}
	return NULL;
}

int bl_waitq_remove(struct bl_waitq *q, struct bl_waitq_node *node)
{
	struct bl_waitq_lane *lane;
	bool was_turn_head;
	unsigned cls;

	if (!node->tenant || node->tenant->queue != q)
		return BL_ENOENT;
	cls = node->cls;
	lane = &node->tenant->lanes[cls];
	was_turn_head = q->turn[cls] == lane && lane->head == node;
	(void)unlink_node(q, node);
	if (lane->count == 0)
		ring_remove(q, cls, lane);
	/* Only the turn lane's oldest waiter is covered by the invariant. */
	if (was_turn_head)
		settle(q, cls);
	return 0;
}

bool bl_waitq_node_is_queued(const struct bl_waitq_node *node)
{
	return node->tenant != NULL;
}

enum bl_waitq_class bl_waitq_node_class(const struct bl_waitq_node *node)
{
	return (enum bl_waitq_class)node->cls;
}

uint64_t bl_waitq_node_cost(const struct bl_waitq_node *node)
{
	return node->cost;
}

struct bl_waitq_tenant *bl_waitq_node_tenant(const struct bl_waitq_node *node)
{
	return node->tenant;
}

uint32_t bl_waitq_length(const struct bl_waitq *q)
{
	return q->total;
}

uint32_t bl_waitq_class_length(const struct bl_waitq *q, enum bl_waitq_class cls)
{
	return (unsigned)cls < BL_WAITQ_CLASSES ? q->length[cls] : 0;
}

uint64_t bl_waitq_cost(const struct bl_waitq *q)
{
	return q->cost_sum;
}

static struct bl_waitq_node *first_from_class(const struct bl_waitq *q, unsigned cls)
{
	for (unsigned c = cls; c < BL_WAITQ_CLASSES; c++)
		if (q->turn[c])
			return q->turn[c]->head;
	return NULL;
}

struct bl_waitq_node *bl_waitq_first(const struct bl_waitq *q)
{
	return first_from_class(q, 0);
}

struct bl_waitq_node *bl_waitq_next(const struct bl_waitq *q, const struct bl_waitq_node *node)
{
	unsigned cls = node->cls;
	const struct bl_waitq_lane *lane;

	if (node->next)
		return node->next;
	lane = &node->tenant->lanes[cls];
	if (lane->ring_next != q->turn[cls])
		return lane->ring_next->head;
	return first_from_class(q, cls + 1);
}

static const char *const class_names[BL_WAITQ_CLASSES] = {"critical", "high", "normal", "low"};

int bl_waitq_class_parse(const char *s, size_t len, enum bl_waitq_class *out)
{
	for (unsigned c = 0; c < BL_WAITQ_CLASSES; c++) {
		if (strlen(class_names[c]) == len && memcmp(class_names[c], s, len) == 0) {
			*out = (enum bl_waitq_class)c;
			return 0;
		}
	}
	return BL_EINVAL;
}

const char *bl_waitq_class_name(enum bl_waitq_class cls)
{
	return (unsigned)cls < BL_WAITQ_CLASSES ? class_names[cls] : "unknown";
}

/* ---- tenant table ------------------------------------------------------- */

/* One slot: a tenant and the name it currently stands for. */
struct slot {
	struct bl_waitq_tenant tenant;          /* handed out; must stay first */
	uint32_t name_len;                      /* 0 when the slot has no name */
	bool pinned;                            /* configured: never recycled */
	char name[BL_WAITQ_TENANT_NAME_MAX];    /* the name's bytes */
};

struct bl_waitq_tenants {
	struct slot *slots;     /* capacity slots, never moved */
	uint32_t *index;        /* open addressing: slot number + 1, 0 = empty */
	uint32_t capacity;      /* number of slots */
	uint32_t index_mask;    /* index size - 1 (size a power of two >= 2 * capacity) */
	uint32_t used;          /* slots [0, used) have been handed out at least once */
	uint32_t hand;          /* where the next search for an idle slot starts */
	uint64_t overflows;     /* lookups served by the overflow slot */
	struct slot overflow;   /* shared by names that found no slot */
};

static uint32_t hash_name(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static bool slot_is(const struct slot *s, const char *name, size_t len)
{
	return s->name_len == len && memcmp(s->name, name, len) == 0;
}

/* Returns the index position holding name, or the empty position where it
 * would go. */
static uint32_t index_find(const struct bl_waitq_tenants *tbl, const char *name, size_t len)
{
	uint32_t i = hash_name(name, len) & tbl->index_mask;

	while (tbl->index[i] && !slot_is(&tbl->slots[tbl->index[i] - 1], name, len))
		i = (i + 1) & tbl->index_mask;
	return i;
}

/* Deletes the entry at position i by shifting later entries of its probe
 * chain back (linear probing without tombstones). */
static void index_delete(struct bl_waitq_tenants *tbl, uint32_t i)
{
	uint32_t j = i;

	tbl->index[i] = 0;
	for (;;) {
		struct slot *s;
		uint32_t home;

		j = (j + 1) & tbl->index_mask;
		if (!tbl->index[j])
			return;
		s = &tbl->slots[tbl->index[j] - 1];
		home = hash_name(s->name, s->name_len) & tbl->index_mask;
		/* Move j's entry to the hole i unless its home lies in (i, j]. */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			tbl->index[i] = tbl->index[j];
			tbl->index[j] = 0;
			i = j;
		}
	}
}

static bool slot_idle(const struct slot *s)
{
	return s->tenant.waiters == 0;
}

/* Returns a slot that can take a new name, or NULL: a never-used one, else an
 * idle, unpinned one (its old name is dropped from the index), searched for
 * round the table from where the last search stopped. */
static struct slot *claim_slot(struct bl_waitq_tenants *tbl)
{
	if (tbl->used < tbl->capacity)
		return &tbl->slots[tbl->used++];
	for (uint32_t n = 0; n < tbl->capacity; n++) {
		struct slot *s = &tbl->slots[tbl->hand];

		tbl->hand = tbl->hand + 1 == tbl->capacity ? 0 : tbl->hand + 1;
		if (!s->pinned && slot_idle(s)) {
			index_delete(tbl, index_find(tbl, s->name, s->name_len));
			s->name_len = 0;
			return s;
		}
	}
	return NULL;
}

static void slot_name(struct bl_waitq_tenants *tbl, struct slot *s, const char *name, size_t len,
		      uint32_t weight)
{
	memcpy(s->name, name, len);
	s->name_len = (uint32_t)len;
	(void)bl_waitq_tenant_init(&s->tenant, weight);
	tbl->index[index_find(tbl, name, len)] = (uint32_t)(s - tbl->slots) + 1;
}

int bl_waitq_tenants_create(uint32_t capacity, struct bl_waitq_tenants **out)
{
	struct bl_waitq_tenants *tbl;
	uint32_t size = 2;

	if (capacity < 1 || capacity > (UINT32_C(1) << 20))
		return BL_EINVAL;
	while (size < 2 * capacity)
		size <<= 1;
	tbl = calloc(1, sizeof *tbl);
	if (!tbl)
		goto fail_table;
	tbl->slots = calloc(capacity, sizeof *tbl->slots);
	if (!tbl->slots)
		goto fail_slots;
	tbl->index = calloc(size, sizeof *tbl->index);
	if (!tbl->index)
		goto fail_index;
	tbl->capacity = capacity;
	tbl->index_mask = size - 1;
	(void)bl_waitq_tenant_init(&tbl->overflow.tenant, BL_WAITQ_WEIGHT_DEFAULT);
	tbl->overflow.name[0] = '*';
	tbl->overflow.name_len = 1;
	*out = tbl;
	return 0;

fail_index:
	free(tbl->slots);
fail_slots:
	free(tbl);
fail_table:
	return BL_ENOMEM;
}

void bl_waitq_tenants_destroy(struct bl_waitq_tenants *tbl)
{
	if (!tbl)
		return;
	free(tbl->index);
	free(tbl->slots);
	free(tbl);
}

static struct slot *lookup(const struct bl_waitq_tenants *tbl, const char *name, size_t len)
{
	uint32_t i = index_find(tbl, name, len);

	return tbl->index[i] ? &tbl->slots[tbl->index[i] - 1] : NULL;
}

static bool valid_name(const char *name, size_t len)
{
	return name && len >= 1 && len <= BL_WAITQ_TENANT_NAME_MAX;
}

int bl_waitq_tenants_configure(struct bl_waitq_tenants *tbl,
			       const struct bl_waitq_tenant_config *cfg, size_t n)
{
	size_t missing = 0, available;

	/* Check everything before changing anything. */
	for (size_t i = 0; i < n; i++) {
		if (!valid_name(cfg[i].name, cfg[i].name_len) || cfg[i].weight < 1 ||
		    cfg[i].weight > BL_WAITQ_WEIGHT_MAX)
			return BL_EINVAL;
		for (size_t k = 0; k < i; k++)
			if (cfg[k].name_len == cfg[i].name_len &&
			    memcmp(cfg[k].name, cfg[i].name, cfg[i].name_len) == 0)
				return BL_EINVAL;
		if (!lookup(tbl, cfg[i].name, cfg[i].name_len))
			missing++;
	}
	/* Slots the missing names can take: never used, or idle and not named in
	 * cfg (their pin, if any, is about to be dropped). */
	available = tbl->capacity - tbl->used;
	for (uint32_t s = 0; s < tbl->used && available < missing; s++) {
		struct slot *sl = &tbl->slots[s];
		bool wanted = false;

		if (!slot_idle(sl))
			continue;
		for (size_t i = 0; i < n && !wanted; i++)
			wanted = slot_is(sl, cfg[i].name, cfg[i].name_len);
		if (!wanted)
			available++;
	}
	if (missing > available)
		return BL_EFULL;

	for (uint32_t s = 0; s < tbl->used; s++) {
		if (tbl->slots[s].pinned) {
			tbl->slots[s].pinned = false;
			tbl->slots[s].tenant.weight = BL_WAITQ_WEIGHT_DEFAULT;
		}
	}
	/* Pin the names that have a slot first, so claiming cannot recycle them. */
	for (size_t i = 0; i < n; i++) {
		struct slot *sl = lookup(tbl, cfg[i].name, cfg[i].name_len);

		if (sl) {
			sl->pinned = true;
			sl->tenant.weight = cfg[i].weight;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct slot *sl;

		if (lookup(tbl, cfg[i].name, cfg[i].name_len))
			continue;
		sl = claim_slot(tbl); /* cannot fail: counted above */
		slot_name(tbl, sl, cfg[i].name, cfg[i].name_len, cfg[i].weight);
		sl->pinned = true;
	}
	return 0;
}

int bl_waitq_tenants_get(struct bl_waitq_tenants *tbl, const char *name, size_t len,
			 struct bl_waitq_tenant **out)
{
	struct slot *s;

	if (!valid_name(name, len))
		return BL_EINVAL;
	s = lookup(tbl, name, len);
	if (!s) {
		s = claim_slot(tbl);
		if (s) {
			slot_name(tbl, s, name, len, BL_WAITQ_WEIGHT_DEFAULT);
		} else {
			tbl->overflows++;
			s = &tbl->overflow;
		}
	}
	*out = &s->tenant;
	return 0;
}

const char *bl_waitq_tenants_name(const struct bl_waitq_tenants *tbl,
				  const struct bl_waitq_tenant *t, size_t *len)
{
	const struct slot *s = (const struct slot *)(const void *)t;

	(void)tbl;
	*len = s->name_len;
	return s->name;
}

uint64_t bl_waitq_tenants_overflows(const struct bl_waitq_tenants *tbl)
{
	return tbl->overflows;
}
