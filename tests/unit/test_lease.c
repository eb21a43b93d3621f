/* The lease table: lookups, expiry order, extension, capacity, and a
 * randomized run against a plain array model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ballast/error.h"
#include "ballast/lease.h"

struct lease {
	int payload;
	struct bl_lease_node node;
};

static void test_create_rejects_bad_capacity(void **state)
{
	struct bl_lease_table *t = NULL;

	(void)state;
	assert_int_equal(bl_lease_table_create(0, &t), BL_EINVAL);
	assert_null(t);
	bl_lease_table_destroy(NULL);
}

static void test_insert_find_remove(void **state)
{
	struct bl_lease_table *t;
	struct lease a = {.payload = 1, .node = {.id = 42, .expires_ns = 100}};
	struct lease b = {.payload = 2, .node = {.id = 7, .expires_ns = 50}};
	struct lease dup = {.node = {.id = 42, .expires_ns = 1}};
	struct lease zero = {.node = {.id = 0}};

	(void)state;
	assert_int_equal(bl_lease_table_create(2, &t), 0);
	assert_int_equal(bl_lease_insert(t, &a.node), 0);
	assert_int_equal(bl_lease_insert(t, &b.node), 0);
	assert_int_equal(bl_lease_insert(t, &dup.node), BL_EEXIST);
	assert_int_equal(bl_lease_insert(t, &zero.node), BL_EINVAL);
	assert_int_equal(bl_lease_count(t), 2);
	assert_int_equal(BL_CONTAINER_OF(bl_lease_find(t, 42), struct lease, node)->payload, 1);
	assert_ptr_equal(bl_lease_first_expiry(t), &b.node);
	{
		struct lease c = {.node = {.id = 9, .expires_ns = 1}};
		assert_int_equal(bl_lease_insert(t, &c.node), BL_EFULL);
		assert_null(bl_lease_find(t, 9));
	}
	bl_lease_remove(t, &b.node);
	assert_null(bl_lease_find(t, 7));
	assert_ptr_equal(bl_lease_first_expiry(t), &a.node);
	bl_lease_remove(t, &b.node); /* not in the table: no effect */
	assert_int_equal(bl_lease_count(t), 1);
	bl_lease_table_destroy(t);
}

static void test_expiry_order_and_extension(void **state)
{
	struct bl_lease_table *t;
	struct lease l[5];
	const int64_t exp[5] = {500, 100, 300, 200, 400};

	(void)state;
	assert_int_equal(bl_lease_table_create(8, &t), 0);
	for (int i = 0; i < 5; i++) {
		l[i] = (struct lease){.payload = i, .node = {.id = (uint64_t)i + 1, .expires_ns = exp[i]}};
		assert_int_equal(bl_lease_insert(t, &l[i].node), 0);
	}
	assert_null(bl_lease_pop_expired(t, 99));
	/* Extend the earliest past everyone, pull the latest to the front. */
	bl_lease_set_expiry(t, &l[1].node, 1000);
	bl_lease_set_expiry(t, &l[0].node, 50);
	const int order[5] = {0, 3, 2, 4, 1};
	for (int i = 0; i < 5; i++) {
		struct bl_lease_node *n = bl_lease_pop_expired(t, 10000);
		assert_non_null(n);
		assert_int_equal(BL_CONTAINER_OF(n, struct lease, node)->payload, order[i]);
	}
	assert_null(bl_lease_pop_expired(t, 10000));
	assert_int_equal(bl_lease_count(t), 0);
	bl_lease_table_destroy(t);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void count_cb(struct bl_lease_node *n, void *ctx)
{
	(void)n;
	(*(size_t *)ctx)++;
}

static void test_randomized_against_model(void **state)
{
	enum { CAP = 257, OPS = 200000 };
	struct bl_lease_table *t;
	struct lease *pool = calloc(CAP, sizeof *pool);
	int live[CAP] = {0};
	size_t n_live = 0;

	(void)state;
	assert_int_equal(bl_lease_table_create(CAP, &t), 0);
	for (int op = 0; op < OPS; op++) {
		size_t i = rnd() % CAP;
		int kind = (int)(rnd() % 4);

		if (!live[i] && kind < 2) {
			pool[i].payload = (int)i;
			pool[i].node.id = (uint64_t)i * 1000 + 1; /* sequential-ish ids */
			pool[i].node.expires_ns = (int64_t)(rnd() % 1000);
			assert_int_equal(bl_lease_insert(t, &pool[i].node), 0);
			live[i] = 1;
			n_live++;
		} else if (live[i] && kind == 2) {
			bl_lease_remove(t, &pool[i].node);
			live[i] = 0;
			n_live--;
		} else if (live[i] && kind == 3) {
			bl_lease_set_expiry(t, &pool[i].node, (int64_t)(rnd() % 1000));
		}
		if (op % 1000 == 0) {
			/* The minimum in the model is what the table says expires first. */
			int64_t min = INT64_MAX;
			for (size_t k = 0; k < CAP; k++)
				if (live[k] && pool[k].node.expires_ns < min)
					min = pool[k].node.expires_ns;
			if (n_live)
				assert_int_equal(bl_lease_first_expiry(t)->expires_ns, min);
			for (size_t k = 0; k < CAP; k++)
				assert_true((bl_lease_find(t, (uint64_t)k * 1000 + 1) != NULL) == live[k]);
			size_t seen = 0;
			bl_lease_foreach(t, count_cb, &seen);
			assert_int_equal(seen, n_live);
		}
	}
	/* Draining in expiry order yields non-decreasing times. */
	int64_t last = INT64_MIN;
	struct bl_lease_node *n;
	while ((n = bl_lease_pop_expired(t, INT64_MAX))) {
		assert_true(n->expires_ns >= last);
		last = n->expires_ns;
		n_live--;
	}
	assert_int_equal(n_live, 0);
	bl_lease_table_destroy(t);
	free(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_rejects_bad_capacity),
		cmocka_unit_test(test_insert_find_remove),
		cmocka_unit_test(test_expiry_order_and_extension),
		cmocka_unit_test(test_randomized_against_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
