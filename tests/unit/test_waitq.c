/* Unit tests for the waiting queue: strict priority, DRR fairness by cost and
 * weight, FIFO within a tenant, cancellation, bounds, no hoarded credit, the
 * tenant table, and seeded random operation sequences checked step by step
 * against a plain textbook model of the same policy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/waitq.h"

/* A caller's waiter object, with the node embedded somewhere in the middle. */
struct waiter {
	int id;                    /* test's own id */
	int tenant;                /* index into the test's tenants */
	struct bl_waitq_node node; /* the queue's link */
	int cls;                   /* class pushed with */
	uint64_t cost;             /* cost pushed with */
};

#define W(n) BL_WAITQ_ENTRY((n), struct waiter, node)

static uint64_t rng_state;

/* splitmix64: small, seeded, good enough for test streams. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return rng() % n;
}

static struct waiter *new_waiters(size_t n)
{
	struct waiter *w = calloc(n, sizeof *w);

	assert_non_null(w);
	for (size_t i = 0; i < n; i++) {
		w[i].id = (int)i;
		bl_waitq_node_init(&w[i].node);
	}
	return w;
}

static void push_ok(struct bl_waitq *q, struct waiter *w, int cls, struct bl_waitq_tenant *t,
		    int tenant, uint64_t cost)
{
	w->tenant = tenant;
	w->cls = cls;
	w->cost = cost;
	assert_int_equal(bl_waitq_push(q, &w->node, (enum bl_waitq_class)cls, t, cost), 0);
}

static struct waiter *pop_w(struct bl_waitq *q)
{
	struct bl_waitq_node *peeked = bl_waitq_peek(q);
	struct bl_waitq_node *n = bl_waitq_pop(q);

	assert_ptr_equal(n, peeked);
	assert_non_null(n);
	assert_false(bl_waitq_node_is_queued(n));
	return W(n);
}

/* ---- basics -------------------------------------------------------------- */

static void test_init_and_args(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant t;
	struct waiter w;
	enum bl_waitq_class c = BL_WAITQ_NORMAL;

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 0, 10), BL_EINVAL);
	assert_int_equal(bl_waitq_init(&q, 4, BL_WAITQ_COST_MAX + 1), BL_EINVAL);
	assert_int_equal(bl_waitq_init(&q, 4, 0), 0);
	assert_null(bl_waitq_peek(&q));
	assert_null(bl_waitq_pop(&q));
	assert_null(bl_waitq_first(&q));
	assert_int_equal(bl_waitq_length(&q), 0);

	assert_int_equal(bl_waitq_tenant_init(&t, 0), BL_EINVAL);
	assert_int_equal(bl_waitq_tenant_init(&t, BL_WAITQ_WEIGHT_MAX + 1), BL_EINVAL);
	assert_int_equal(bl_waitq_tenant_init(&t, 3), 0);
	assert_int_equal(bl_waitq_tenant_set_weight(&t, 0), BL_EINVAL);
	assert_int_equal(bl_waitq_tenant_weight(&t), 3);

	bl_waitq_node_init(&w.node);
	assert_false(bl_waitq_node_is_queued(&w.node));
	assert_int_equal(bl_waitq_push(&q, &w.node, (enum bl_waitq_class)4, &t, 1), BL_EINVAL);
	assert_int_equal(bl_waitq_push(&q, &w.node, BL_WAITQ_LOW, &t, BL_WAITQ_COST_MAX + 1),
			 BL_ERANGE);
	assert_int_equal(bl_waitq_length(&q), 0);
	assert_int_equal(bl_waitq_remove(&q, &w.node), BL_ENOENT);

	assert_int_equal(bl_waitq_push(&q, &w.node, BL_WAITQ_LOW, &t, 7), 0);
	assert_int_equal(bl_waitq_push(&q, &w.node, BL_WAITQ_LOW, &t, 7), BL_EEXIST);
	assert_true(bl_waitq_node_is_queued(&w.node));
	assert_int_equal(bl_waitq_node_class(&w.node), BL_WAITQ_LOW);
	assert_int_equal(bl_waitq_node_cost(&w.node), 7);
	assert_ptr_equal(bl_waitq_node_tenant(&w.node), &t);
	assert_int_equal(bl_waitq_tenant_waiters(&t), 1);
	assert_int_equal(bl_waitq_cost(&q), 7);
	assert_ptr_equal(bl_waitq_peek(&q), &w.node);
	assert_ptr_equal(bl_waitq_peek(&q), &w.node); /* stable */

	/* A tenant with waiters in q cannot be used with another queue. */
	{
		struct bl_waitq q2;
		struct waiter w2;

		assert_int_equal(bl_waitq_init(&q2, 4, 1), 0);
		bl_waitq_node_init(&w2.node);
		assert_int_equal(bl_waitq_push(&q2, &w2.node, BL_WAITQ_LOW, &t, 1), BL_EINVAL);
		assert_int_equal(bl_waitq_remove(&q2, &w.node), BL_ENOENT);
		assert_int_equal(bl_waitq_length(&q2), 0);
	}

	assert_int_equal(bl_waitq_class_parse("critical", 8, &c), 0);
	assert_int_equal(c, BL_WAITQ_CRITICAL);
	assert_int_equal(bl_waitq_class_parse("low", 3, &c), 0);
	assert_int_equal(c, BL_WAITQ_LOW);
	assert_int_equal(bl_waitq_class_parse("Low", 3, &c), BL_EINVAL);
	assert_int_equal(bl_waitq_class_parse("lowest", 6, &c), BL_EINVAL);
	assert_int_equal(c, BL_WAITQ_LOW);
	assert_string_equal(bl_waitq_class_name(BL_WAITQ_HIGH), "high");
	assert_string_equal(bl_waitq_class_name((enum bl_waitq_class)9), "unknown");

	bl_waitq_cleanup(&q);
	assert_false(bl_waitq_node_is_queued(&w.node));
	assert_int_equal(bl_waitq_tenant_waiters(&t), 0);
	assert_int_equal(bl_waitq_length(&q), 0);
	assert_null(bl_waitq_peek(&q));
}

static void test_strict_priority(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant a, b;
	struct waiter *w = new_waiters(16);

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 100, 10), 0);
	assert_int_equal(bl_waitq_tenant_init(&a, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b, 1000), 0);

	/* Lower classes first, from a heavy tenant; then a critical one. */
	push_ok(&q, &w[0], BL_WAITQ_LOW, &b, 1, 1);
	push_ok(&q, &w[1], BL_WAITQ_LOW, &b, 1, 1);
	push_ok(&q, &w[2], BL_WAITQ_NORMAL, &b, 1, 1);
	assert_ptr_equal(bl_waitq_peek(&q), &w[2].node);
	push_ok(&q, &w[3], BL_WAITQ_HIGH, &a, 0, 50);
	push_ok(&q, &w[4], BL_WAITQ_NORMAL, &a, 0, 1);
	assert_ptr_equal(bl_waitq_peek(&q), &w[3].node);
	push_ok(&q, &w[5], BL_WAITQ_CRITICAL, &a, 0, 1000);
	assert_ptr_equal(bl_waitq_peek(&q), &w[5].node);
	assert_int_equal(bl_waitq_class_length(&q, BL_WAITQ_CRITICAL), 1);
	assert_int_equal(bl_waitq_class_length(&q, BL_WAITQ_HIGH), 1);
	assert_int_equal(bl_waitq_class_length(&q, BL_WAITQ_NORMAL), 2);
	assert_int_equal(bl_waitq_class_length(&q, BL_WAITQ_LOW), 2);
	assert_int_equal(bl_waitq_class_length(&q, (enum bl_waitq_class)7), 0);

	assert_int_equal(pop_w(&q)->id, 5);
	assert_int_equal(pop_w(&q)->id, 3);
	assert_int_equal(pop_w(&q)->cls, BL_WAITQ_NORMAL);
	/* A critical waiter arriving now goes before the remaining normal one. */
	push_ok(&q, &w[6], BL_WAITQ_CRITICAL, &b, 1, 1);
	assert_int_equal(pop_w(&q)->id, 6);
	assert_int_equal(pop_w(&q)->cls, BL_WAITQ_NORMAL);
	assert_int_equal(pop_w(&q)->id, 0);
	assert_int_equal(pop_w(&q)->id, 1);
	assert_null(bl_waitq_pop(&q));
	free(w);
}

/* Serves `pops` waiters from backlogged tenants and returns served cost per
 * tenant. Each tenant refills itself as it is served, so it never runs dry.
 * cost_of(tenant) gives the cost of each new waiter. */
struct backlog {
	struct bl_waitq q;
	struct bl_waitq_tenant t[4];
	struct waiter *w;
	size_t nw;
	uint64_t served_cost[4];
	uint64_t served_count[4];
};

static void backlog_fill(struct backlog *b, int ntenants, int per_tenant,
			 uint64_t (*cost_of)(int tenant))
{
	b->nw = (size_t)(ntenants * per_tenant);
	b->w = new_waiters(b->nw);
	for (int k = 0; k < per_tenant; k++)
		for (int i = 0; i < ntenants; i++)
			push_ok(&b->q, &b->w[k * ntenants + i], BL_WAITQ_NORMAL, &b->t[i], i,
				cost_of(i));
}

static void backlog_serve(struct backlog *b, int pops, uint64_t (*cost_of)(int tenant))
{
	for (int k = 0; k < pops; k++) {
		struct waiter *w = pop_w(&b->q);

		b->served_cost[w->tenant] += w->cost;
		b->served_count[w->tenant]++;
		/* Reuse the object: the tenant queues again at its back. */
		push_ok(&b->q, w, BL_WAITQ_NORMAL, &b->t[w->tenant], w->tenant, cost_of(w->tenant));
	}
}

static void assert_ratio(uint64_t a, uint64_t b, double want, double tolerance)
{
	double got = (double)a / (double)b;

	if (got < want * (1 - tolerance) || got > want * (1 + tolerance))
		fail_msg("ratio %llu/%llu = %.4f, want %.4f +- %.0f%%", (unsigned long long)a,
			 (unsigned long long)b, got, want, tolerance * 100);
}

static uint64_t cost_100(int tenant)
{
	(void)tenant;
	return 100;
}

static uint64_t cost_random(int tenant)
{
	(void)tenant;
	return 1 + rng_below(2000); /* same distribution for everyone */
}

static uint64_t cost_by_tenant(int tenant)
{
	return tenant == 0 ? 100 : 1000; /* tenant 1 sends 10x larger requests */
}

static void test_equal_weights_equal_service(void **state)
{
	static struct backlog b;

	(void)state;
	memset(&b, 0, sizeof b);
	assert_int_equal(bl_waitq_init(&b.q, 1000, 100), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[0], 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[1], 1), 0);
	backlog_fill(&b, 2, 50, cost_100);
	backlog_serve(&b, 10000, cost_100);
	assert_ratio(b.served_cost[0], b.served_cost[1], 1.0, 0.05);
	/* With quantum = cost the two simply alternate. */
	assert_true(b.served_count[0] + 1 >= b.served_count[1] &&
		    b.served_count[1] + 1 >= b.served_count[0]);
	bl_waitq_cleanup(&b.q);
	free(b.w);

	/* Random costs from one distribution, automatic quantum. */
	rng_state = 42;
	memset(&b, 0, sizeof b);
	assert_int_equal(bl_waitq_init(&b.q, 1000, 0), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[0], 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[1], 1), 0);
	backlog_fill(&b, 2, 50, cost_random);
	backlog_serve(&b, 20000, cost_random);
	assert_ratio(b.served_cost[0], b.served_cost[1], 1.0, 0.05);
	bl_waitq_cleanup(&b.q);
	free(b.w);
}

static void test_weights_one_to_four(void **state)
{
	static struct backlog b;

	(void)state;
	memset(&b, 0, sizeof b);
	assert_int_equal(bl_waitq_init(&b.q, 1000, 100), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[0], 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[1], 4), 0);
	backlog_fill(&b, 2, 50, cost_100);
	backlog_serve(&b, 10000, cost_100);
	assert_ratio(b.served_cost[1], b.served_cost[0], 4.0, 0.05);
	bl_waitq_cleanup(&b.q);
	free(b.w);

	/* And with random costs, three tenants 1:4:2. */
	rng_state = 7;
	memset(&b, 0, sizeof b);
	assert_int_equal(bl_waitq_init(&b.q, 1000, 500), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[0], 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[1], 4), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[2], 2), 0);
	backlog_fill(&b, 3, 30, cost_random);
	backlog_serve(&b, 30000, cost_random);
	assert_ratio(b.served_cost[1], b.served_cost[0], 4.0, 0.05);
	assert_ratio(b.served_cost[2], b.served_cost[0], 2.0, 0.05);
	bl_waitq_cleanup(&b.q);
	free(b.w);
}

static void test_unequal_costs_shared_by_cost(void **state)
{
	static struct backlog b;

	(void)state;
	memset(&b, 0, sizeof b);
	assert_int_equal(bl_waitq_init(&b.q, 1000, 100), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[0], 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b.t[1], 1), 0);
	backlog_fill(&b, 2, 20, cost_by_tenant);
	backlog_serve(&b, 11000, cost_by_tenant);
	/* Equal cost served, so the small-request tenant gets ~10x the requests. */
	assert_ratio(b.served_cost[0], b.served_cost[1], 1.0, 0.05);
	assert_ratio(b.served_count[0], b.served_count[1], 10.0, 0.05);
	bl_waitq_cleanup(&b.q);
	free(b.w);
}

static void test_fifo_within_tenant(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant t[3];
	struct waiter *w = new_waiters(90);
	int last[3] = {-1, -1, -1};

	(void)state;
	rng_state = 3;
	assert_int_equal(bl_waitq_init(&q, 100, 50), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(bl_waitq_tenant_init(&t[i], (uint32_t)i + 1), 0);
	for (int k = 0; k < 90; k++) {
		int i = (int)rng_below(3);

		push_ok(&q, &w[k], BL_WAITQ_HIGH, &t[i], i, 1 + rng_below(200));
	}
	for (int k = 0; k < 90; k++) {
		struct waiter *x = pop_w(&q);

		assert_true(x->id > last[x->tenant]);
		last[x->tenant] = x->id;
	}
	assert_null(bl_waitq_peek(&q));
	free(w);
}

/* ---- cancellation ------------------------------------------------------- */

static void test_remove(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant a, b;
	struct waiter *w = new_waiters(10);

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 100, 10), 0);
	assert_int_equal(bl_waitq_tenant_init(&a, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b, 1), 0);
	for (int i = 0; i < 5; i++)
		push_ok(&q, &w[i], BL_WAITQ_NORMAL, &a, 0, 10);
	push_ok(&q, &w[5], BL_WAITQ_NORMAL, &b, 1, 10);

	/* The head: peek moves on to the next of the same tenant, whose turn
	 * continues (no new quantum, no charge for the cancelled one). */
	assert_ptr_equal(bl_waitq_peek(&q), &w[0].node);
	assert_int_equal(bl_waitq_remove(&q, &w[0].node), 0);
	assert_false(bl_waitq_node_is_queued(&w[0].node));
	assert_int_equal(bl_waitq_remove(&q, &w[0].node), BL_ENOENT);
	assert_ptr_equal(bl_waitq_peek(&q), &w[1].node);
	assert_int_equal(a.lanes[BL_WAITQ_NORMAL].deficit, 10);
	/* The middle and the tail. */
	assert_int_equal(bl_waitq_remove(&q, &w[3].node), 0);
	assert_int_equal(bl_waitq_remove(&q, &w[4].node), 0);
	assert_int_equal(bl_waitq_tenant_waiters(&a), 2);
	assert_int_equal(bl_waitq_length(&q), 3);
	assert_int_equal(bl_waitq_cost(&q), 30);
	/* An otherwise empty tenant: b drops out of the round. */
	assert_int_equal(bl_waitq_remove(&q, &w[5].node), 0);
	assert_int_equal(bl_waitq_tenant_waiters(&b), 0);
	assert_null(b.lanes[BL_WAITQ_NORMAL].ring_next);
	assert_int_equal(q.lanes[BL_WAITQ_NORMAL], 1);
	assert_int_equal(pop_w(&q)->id, 1);
	assert_int_equal(pop_w(&q)->id, 2);
	assert_null(bl_waitq_peek(&q));
	assert_int_equal(a.lanes[BL_WAITQ_NORMAL].deficit, 0);

	/* Removing the turn tenant's only waiter hands the turn on. */
	push_ok(&q, &w[6], BL_WAITQ_LOW, &a, 0, 10);
	push_ok(&q, &w[7], BL_WAITQ_LOW, &b, 1, 10);
	assert_ptr_equal(bl_waitq_peek(&q), &w[6].node);
	assert_int_equal(bl_waitq_remove(&q, &w[6].node), 0);
	assert_ptr_equal(bl_waitq_peek(&q), &w[7].node);
	assert_int_equal(bl_waitq_remove(&q, &w[7].node), 0);
	assert_null(bl_waitq_peek(&q));
	assert_int_equal(bl_waitq_length(&q), 0);
	assert_int_equal(bl_waitq_cost(&q), 0);
	free(w);
}

static void test_full(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant t;
	struct waiter *w = new_waiters(5);

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 3, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&t, 1), 0);
	push_ok(&q, &w[0], BL_WAITQ_LOW, &t, 0, 1);
	push_ok(&q, &w[1], BL_WAITQ_NORMAL, &t, 0, 1);
	push_ok(&q, &w[2], BL_WAITQ_CRITICAL, &t, 0, 1);
	/* Full for every class, critical included; nothing changes. */
	assert_int_equal(bl_waitq_push(&q, &w[3].node, BL_WAITQ_CRITICAL, &t, 1), BL_EFULL);
	assert_false(bl_waitq_node_is_queued(&w[3].node));
	assert_int_equal(bl_waitq_length(&q), 3);
	assert_int_equal(bl_waitq_tenant_waiters(&t), 3);
	assert_int_equal(pop_w(&q)->id, 2);
	push_ok(&q, &w[3], BL_WAITQ_LOW, &t, 0, 1);
	/* Lowering the bound drops nobody but refuses pushes. */
	assert_int_equal(bl_waitq_set_max(&q, 0), BL_EINVAL);
	assert_int_equal(bl_waitq_set_max(&q, 1), 0);
	assert_int_equal(bl_waitq_length(&q), 3);
	assert_int_equal(bl_waitq_push(&q, &w[4].node, BL_WAITQ_LOW, &t, 1), BL_EFULL);
	pop_w(&q);
	pop_w(&q);
	pop_w(&q);
	push_ok(&q, &w[4], BL_WAITQ_LOW, &t, 0, 1);
	bl_waitq_cleanup(&q);
	free(w);
}

static void test_no_hoarding(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant a, b;
	struct waiter *w = new_waiters(400);
	int k = 0, got_a = 0;

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 1000, 100), 0);
	assert_int_equal(bl_waitq_tenant_init(&a, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b, 1), 0);

	/* a alone with one small request: it is granted 100, spends 1. */
	push_ok(&q, &w[k++], BL_WAITQ_NORMAL, &a, 0, 1);
	assert_int_equal(a.lanes[BL_WAITQ_NORMAL].deficit, 100);
	pop_w(&q);
	/* Its unused 99 is not kept once it has nothing waiting. */
	assert_int_equal(a.lanes[BL_WAITQ_NORMAL].deficit, 0);

	/* b is busy for a long time while a is away... */
	for (int i = 0; i < 100; i++)
		push_ok(&q, &w[k++], BL_WAITQ_NORMAL, &b, 1, 10);
	for (int i = 0; i < 50; i++)
		assert_int_equal(pop_w(&q)->tenant, 1);
	/* ...and a's absence earned it nothing: when it comes back with many
	 * waiters, it waits for b's current turn, then gets one quantum per turn,
	 * as b does. */
	for (int i = 0; i < 100; i++)
		push_ok(&q, &w[k++], BL_WAITQ_NORMAL, &a, 0, 10);
	assert_int_equal(a.lanes[BL_WAITQ_NORMAL].deficit, 0);
	for (int i = 0; i < 40; i++)
		got_a += pop_w(&q)->tenant == 0;
	assert_true(got_a >= 10 && got_a <= 20);
	bl_waitq_cleanup(&q);
	free(w);
}

/* Costs far above the quantum: rounds without service are skipped in one
 * step, and shares by cost still hold. */
static void test_large_costs_small_quantum(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant a, b;
	struct waiter *w = new_waiters(40);
	uint64_t served[2] = {0, 0};

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 100, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&a, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b, 3), 0);
	for (int i = 0; i < 20; i++) {
		push_ok(&q, &w[2 * i], BL_WAITQ_NORMAL, &a, 0, UINT64_C(1) << 40);
		push_ok(&q, &w[2 * i + 1], BL_WAITQ_NORMAL, &b, 1, UINT64_C(1) << 40);
	}
	for (int i = 0; i < 16; i++) {
		struct waiter *x = pop_w(&q);

		served[x->tenant] += x->cost;
	}
	/* b pays every 2^40 / 3 rounds, a every 2^40: 12 and 4 of 16. */
	assert_int_equal(served[1], UINT64_C(12) << 40);
	assert_int_equal(served[0], UINT64_C(4) << 40);
	bl_waitq_cleanup(&q);

	/* The largest cost and weight do not overflow the credit arithmetic. */
	assert_int_equal(bl_waitq_init(&q, 100, BL_WAITQ_COST_MAX), 0);
	assert_int_equal(bl_waitq_tenant_init(&a, BL_WAITQ_WEIGHT_MAX), 0);
	assert_int_equal(bl_waitq_tenant_init(&b, 1), 0);
	push_ok(&q, &w[0], BL_WAITQ_LOW, &a, 0, BL_WAITQ_COST_MAX);
	push_ok(&q, &w[1], BL_WAITQ_LOW, &a, 0, BL_WAITQ_COST_MAX);
	push_ok(&q, &w[2], BL_WAITQ_LOW, &b, 1, BL_WAITQ_COST_MAX);
	assert_int_equal(pop_w(&q)->id, 0);
	assert_int_equal(pop_w(&q)->id, 1);
	assert_int_equal(pop_w(&q)->id, 2);
	free(w);
}

static void test_iteration(void **state)
{
	struct bl_waitq q;
	struct bl_waitq_tenant a, b;
	struct waiter *w = new_waiters(6);
	int order[6], n = 0;

	(void)state;
	assert_int_equal(bl_waitq_init(&q, 100, 10), 0);
	assert_int_equal(bl_waitq_tenant_init(&a, 1), 0);
	assert_int_equal(bl_waitq_tenant_init(&b, 1), 0);
	push_ok(&q, &w[0], BL_WAITQ_LOW, &a, 0, 1);
	push_ok(&q, &w[1], BL_WAITQ_NORMAL, &a, 0, 1);
	push_ok(&q, &w[2], BL_WAITQ_NORMAL, &b, 1, 1);
	push_ok(&q, &w[3], BL_WAITQ_NORMAL, &a, 0, 1);
	push_ok(&q, &w[4], BL_WAITQ_CRITICAL, &b, 1, 1);
	push_ok(&q, &w[5], BL_WAITQ_LOW, &b, 1, 1);
	for (struct bl_waitq_node *x = bl_waitq_first(&q); x; x = bl_waitq_next(&q, x))
		order[n++] = W(x)->id;
	assert_int_equal(n, 6);
	assert_int_equal(order[0], 4);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 3);
	assert_int_equal(order[3], 2);
	assert_int_equal(order[4], 0);
	assert_int_equal(order[5], 5);
	bl_waitq_cleanup(&q);
	free(w);
}

/* ---- the tenant table --------------------------------------------------- */

static struct bl_waitq_tenant *get(struct bl_waitq_tenants *tbl, const char *name)
{
	struct bl_waitq_tenant *t = NULL;

	assert_int_equal(bl_waitq_tenants_get(tbl, name, strlen(name), &t), 0);
	assert_non_null(t);
	return t;
}

static void assert_name(struct bl_waitq_tenants *tbl, struct bl_waitq_tenant *t, const char *want)
{
	size_t len;
	const char *s = bl_waitq_tenants_name(tbl, t, &len);

	assert_int_equal(len, strlen(want));
	assert_memory_equal(s, want, len);
}

static void test_tenant_table(void **state)
{
	struct bl_waitq_tenants *tbl = NULL;
	struct bl_waitq q;
	struct bl_waitq_tenant *t, *x, *y;
	struct waiter *w = new_waiters(8);
	const struct bl_waitq_tenant_config cfg[] = {
		{"interactive", 11, 4},
		{"batch", 5, 1},
	};
	const struct bl_waitq_tenant_config dup[] = {
		{"a", 1, 2},
		{"a", 1, 3},
	};
	const struct bl_waitq_tenant_config bad[] = {{"a", 1, 0}};
	char long_name[BL_WAITQ_TENANT_NAME_MAX + 1];

	(void)state;
	bl_waitq_tenants_destroy(NULL);
	assert_int_equal(bl_waitq_tenants_create(0, &tbl), BL_EINVAL);
	assert_int_equal(bl_waitq_tenants_create(4, &tbl), 0);
	assert_int_equal(bl_waitq_init(&q, 100, 10), 0);

	assert_int_equal(bl_waitq_tenants_configure(tbl, cfg, 2), 0);
	t = get(tbl, "interactive");
	assert_int_equal(bl_waitq_tenant_weight(t), 4);
	assert_ptr_equal(get(tbl, "interactive"), t);
	assert_name(tbl, t, "interactive");
	assert_int_equal(bl_waitq_tenant_weight(get(tbl, "batch")), 1);
	assert_int_equal(bl_waitq_tenants_configure(tbl, dup, 2), BL_EINVAL);
	assert_int_equal(bl_waitq_tenants_configure(tbl, bad, 1), BL_EINVAL);
	assert_int_equal(bl_waitq_tenant_weight(get(tbl, "interactive")), 4);

	memset(long_name, 'x', sizeof long_name);
	assert_int_equal(bl_waitq_tenants_get(tbl, long_name, sizeof long_name, &x), BL_EINVAL);
	assert_int_equal(bl_waitq_tenants_get(tbl, "", 0, &x), BL_EINVAL);
	assert_int_equal(bl_waitq_tenants_get(tbl, long_name, BL_WAITQ_TENANT_NAME_MAX, &x), 0);

	/* Unknown tenants get weight 1 and a slot of their own. */
	x = get(tbl, "agent-1");
	assert_int_equal(bl_waitq_tenant_weight(x), 1);
	assert_true(x != t);
	push_ok(&q, &w[0], BL_WAITQ_NORMAL, x, 0, 1);
	/* Four slots: interactive, batch, the long name, agent-1. agent-1 is busy,
	 * the long name is idle: agent-2 recycles it. */
	y = get(tbl, "agent-2");
	assert_true(y != x && y != t);
	push_ok(&q, &w[1], BL_WAITQ_NORMAL, y, 1, 1);
	assert_int_equal(bl_waitq_tenants_overflows(tbl), 0);
	/* All slots pinned or busy: agent-3 and agent-4 share the overflow slot. */
	x = get(tbl, "agent-3");
	assert_ptr_equal(get(tbl, "agent-4"), x);
	assert_name(tbl, x, "*");
	assert_int_equal(bl_waitq_tenants_overflows(tbl), 2);
	push_ok(&q, &w[2], BL_WAITQ_NORMAL, x, 2, 1);
	/* The busy names keep their slots. */
	assert_ptr_equal(get(tbl, "agent-2"), y);

	/* A new config needing more slots than free or idle: refused, unchanged. */
	{
		const struct bl_waitq_tenant_config more[] = {
			{"n1", 2, 2}, {"n2", 2, 2}, {"n3", 2, 2},
		};

		assert_int_equal(bl_waitq_tenants_configure(tbl, more, 3), BL_EFULL);
		assert_int_equal(bl_waitq_tenant_weight(get(tbl, "interactive")), 4);
		/* Dropping the old config frees its two idle slots for two new names. */
		assert_int_equal(bl_waitq_tenants_configure(tbl, more, 2), 0);
		assert_int_equal(bl_waitq_tenant_weight(get(tbl, "n1")), 2);
		assert_int_equal(bl_waitq_tenant_weight(get(tbl, "n2")), 2);
	}
	/* A busy tenant leaving the config keeps its waiters, at weight 1. */
	{
		const struct bl_waitq_tenant_config pin2[] = {{"agent-2", 7, 5}};

		assert_int_equal(bl_waitq_tenants_configure(tbl, pin2, 1), 0);
		assert_ptr_equal(get(tbl, "agent-2"), y);
		assert_int_equal(bl_waitq_tenant_weight(y), 5);
		assert_int_equal(bl_waitq_tenants_configure(tbl, NULL, 0), 0);
		assert_int_equal(bl_waitq_tenant_weight(y), 1);
		assert_int_equal(bl_waitq_tenant_waiters(y), 1);
	}

	bl_waitq_cleanup(&q);
	/* Everyone idle now: plenty of names cycle through the four slots. */
	for (int i = 0; i < 100; i++) {
		char name[16];

		snprintf(name, sizeof name, "t%d", i);
		t = get(tbl, name);
		assert_name(tbl, t, name);
		push_ok(&q, &w[3], BL_WAITQ_LOW, t, 0, 1);
		assert_ptr_equal(get(tbl, name), t);
		pop_w(&q);
	}
	assert_int_equal(bl_waitq_tenants_overflows(tbl), 2);
	bl_waitq_tenants_destroy(tbl);
	free(w);
}

/* ---- random sequences against a textbook model ---------------------------- */

#define MT 5    /* tenants */
#define MN 96   /* waiter objects */
#define MAXQ 64 /* queue bound */

/* The model: per class a ring as an array (ring[0] has the turn), per
 * tenant and class a FIFO of waiter ids and a deficit. Settling visits one
 * lane at a time, exactly as DRR is described, with no shortcuts. */
struct model {
	int ring[BL_WAITQ_CLASSES][MT];
	int nring[BL_WAITQ_CLASSES];
	bool started[BL_WAITQ_CLASSES];
	int fifo[MT][BL_WAITQ_CLASSES][MN];
	int nfifo[MT][BL_WAITQ_CLASSES];
	uint64_t deficit[MT][BL_WAITQ_CLASSES];
	uint32_t weight[MT];
	uint64_t quantum;
	uint64_t cost[MN];
	bool queued[MN];
	int total;
	uint64_t cost_sum;
};

static uint64_t model_quantum(const struct model *m)
{
	uint64_t t = (uint64_t)m->total;

	if (m->quantum)
		return m->quantum;
	if (t == 0 || m->cost_sum == 0)
		return 1;
	return (m->cost_sum + t - 1) / t;
}

static void model_rotate(struct model *m, int c)
{
	int first = m->ring[c][0];

	memmove(&m->ring[c][0], &m->ring[c][1], (size_t)(m->nring[c] - 1) * sizeof(int));
	m->ring[c][m->nring[c] - 1] = first;
	m->started[c] = false;
}

static void model_settle(struct model *m, int c)
{
	uint64_t quantum = model_quantum(m);

	while (m->nring[c]) {
		int t = m->ring[c][0];
		uint64_t head_cost = m->cost[m->fifo[t][c][0]];

		if (!m->started[c]) {
			m->deficit[t][c] += quantum * m->weight[t];
			m->started[c] = true;
		}
		if (m->deficit[t][c] >= head_cost)
			return;
		model_rotate(m, c);
	}
}

/* Takes waiter id out of its FIFO (and its tenant out of the ring if that
 * empties it). */
static void model_unlink(struct model *m, int id, int t, int c)
{
	int *f = m->fifo[t][c];
	int k = 0;

	while (f[k] != id)
		k++;
	memmove(&f[k], &f[k + 1], (size_t)(m->nfifo[t][c] - k - 1) * sizeof(int));
	m->nfifo[t][c]--;
	m->queued[id] = false;
	m->total--;
	m->cost_sum -= m->cost[id];
	if (m->nfifo[t][c] == 0) {
		int r = 0;

		while (m->ring[c][r] != t)
			r++;
		memmove(&m->ring[c][r], &m->ring[c][r + 1],
			(size_t)(m->nring[c] - r - 1) * sizeof(int));
		m->nring[c]--;
		if (r == 0)
			m->started[c] = false;
		m->deficit[t][c] = 0;
	}
}

static void model_settle_all(struct model *m)
{
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		model_settle(m, c);
}

static int model_peek(const struct model *m)
{
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		if (m->nring[c])
			return m->fifo[m->ring[c][0]][c][0];
	return -1;
}

static void check_against_model(const struct bl_waitq *q, const struct model *m,
				struct bl_waitq_tenant *t, const struct waiter *w)
{
	struct bl_waitq_node *p = bl_waitq_peek(q);
	int want = model_peek(m);
	struct bl_waitq_node *it;

	if (want < 0)
		assert_null(p);
	else
		assert_ptr_equal(p, &w[want].node);
	assert_ptr_equal(bl_waitq_peek(q), p);
	assert_int_equal(bl_waitq_length(q), m->total);
	assert_int_equal(bl_waitq_cost(q), m->cost_sum);
	/* The walk: class, ring from the turn, FIFO. Deficits match too. */
	it = bl_waitq_first(q);
	for (int c = 0; c < BL_WAITQ_CLASSES; c++) {
		int n = 0;

		for (int r = 0; r < m->nring[c]; r++) {
			int tn = m->ring[c][r];

			for (int k = 0; k < m->nfifo[tn][c]; k++, n++) {
				assert_non_null(it);
				assert_ptr_equal(it, &w[m->fifo[tn][c][k]].node);
				it = bl_waitq_next(q, it);
			}
		}
		assert_int_equal(bl_waitq_class_length(q, (enum bl_waitq_class)c), n);
		for (int tn = 0; tn < MT; tn++)
			assert_int_equal(t[tn].lanes[c].deficit, m->deficit[tn][c]);
	}
	assert_null(it);
	for (int tn = 0; tn < MT; tn++) {
		uint32_t n = 0;

		for (int c = 0; c < BL_WAITQ_CLASSES; c++)
			n += (uint32_t)m->nfifo[tn][c];
		assert_int_equal(bl_waitq_tenant_waiters(&t[tn]), n);
	}
}

static void run_random(uint64_t seed, int steps)
{
	static struct model m;
	struct bl_waitq q;
	struct bl_waitq_tenant t[MT];
	struct waiter *w = new_waiters(MN);
	uint64_t max_cost;

	rng_state = seed;
	memset(&m, 0, sizeof m);
	m.quantum = rng_below(3) == 0 ? 0 : 1 + rng_below(60);
	max_cost = rng_below(2) ? 50 : 500;
	assert_int_equal(bl_waitq_init(&q, MAXQ, m.quantum), 0);
	for (int i = 0; i < MT; i++) {
		m.weight[i] = 1 + (uint32_t)rng_below(4);
		assert_int_equal(bl_waitq_tenant_init(&t[i], m.weight[i]), 0);
	}
	for (int s = 0; s < steps; s++) {
		uint64_t op = rng_below(100);

		if (op < 50) { /* push a random idle waiter */
			int id = (int)rng_below(MN);
			int tn = (int)rng_below(MT);
			int c = (int)rng_below(BL_WAITQ_CLASSES);
			uint64_t cost = rng_below(max_cost + 1);
			int rc;

			if (m.queued[id])
				continue;
			w[id].tenant = tn;
			w[id].cls = c;
			w[id].cost = cost;
			rc = bl_waitq_push(&q, &w[id].node, (enum bl_waitq_class)c, &t[tn], cost);
			if (m.total >= MAXQ) {
				assert_int_equal(rc, BL_EFULL);
				continue;
			}
			assert_int_equal(rc, 0);
			m.cost[id] = cost;
			m.queued[id] = true;
			m.total++;
			m.cost_sum += cost;
			m.fifo[tn][c][m.nfifo[tn][c]++] = id;
			if (m.nfifo[tn][c] == 1)
				m.ring[c][m.nring[c]++] = tn;
		} else if (op < 80) { /* pop */
			int want = model_peek(&m);
			struct bl_waitq_node *n = bl_waitq_pop(&q);

			if (want < 0) {
				assert_null(n);
				continue;
			}
			assert_ptr_equal(n, &w[want].node);
			m.deficit[w[want].tenant][w[want].cls] -= m.cost[want];
			model_unlink(&m, want, w[want].tenant, w[want].cls);
		} else if (op < 97) { /* cancel a random waiter, queued or not */
			int id = (int)rng_below(MN);
			int rc = bl_waitq_remove(&q, &w[id].node);

			if (!m.queued[id]) {
				assert_int_equal(rc, BL_ENOENT);
				continue;
			}
			assert_int_equal(rc, 0);
			model_unlink(&m, id, w[id].tenant, w[id].cls);
		} else { /* change a weight: it applies from the next grant */
			int tn = (int)rng_below(MT);

			m.weight[tn] = 1 + (uint32_t)rng_below(4);
			assert_int_equal(bl_waitq_tenant_set_weight(&t[tn], m.weight[tn]), 0);
		}
		model_settle_all(&m);
		check_against_model(&q, &m, t, w);
	}
	bl_waitq_cleanup(&q);
	for (int i = 0; i < MN; i++)
		assert_false(bl_waitq_node_is_queued(&w[i].node));
	free(w);
}

static void test_random_against_model(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 60; seed++)
		run_random(seed, 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_and_args),
		cmocka_unit_test(test_strict_priority),
		cmocka_unit_test(test_equal_weights_equal_service),
		cmocka_unit_test(test_weights_one_to_four),
		cmocka_unit_test(test_unequal_costs_shared_by_cost),
		cmocka_unit_test(test_fifo_within_tenant),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_no_hoarding),
		cmocka_unit_test(test_large_costs_small_quantum),
		cmocka_unit_test(test_iteration),
		cmocka_unit_test(test_tenant_table),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
