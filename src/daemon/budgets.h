/* Rate budgets in the daemon: the shell around the pure core (budget, waitq,
 * lease table, rate-limit headers). It owns the HTTP endpoints of the
 * decision flow (acquire, release, extend) and of /v1/budgets, the timers
 * that wake waiters and reclaim leases, and the budgets' part of the snapshot.
 */
#ifndef BALLAST_BUDGETS_H
#define BALLAST_BUDGETS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "ballast/slab.h"
#include "config.h"
#include "dmem.h"
#include "http.h"
#include "metrics.h"
#include "pools.h"

struct bl_budgets;

/* Creates every budget of cfg on loop. Returns 0, or BL_EINVAL / BL_ENOMEM
 * with a reason in err. */
int bl_budgets_create(uv_loop_t *loop, const struct bl_config *cfg, struct bl_dmem *dmem,
		      struct bl_pools *pools, struct bl_budgets **out, char *err, size_t errcap);

/* Checks that cfg's budgets can be applied (bl_budgets_apply would succeed).
 * Returns 0 or BL_EINVAL with a reason in err. Changes nothing. */
int bl_budgets_check(const struct bl_config *cfg, char *err, size_t errcap);

/* Applies a reloaded config: budgets keep what they have spent, new ones
 * start, removed ones stop admitting and go once their leases are back.
 * Returns 0, or BL_ENOMEM with a reason in err leaving everything as it was. */
int bl_budgets_apply(struct bl_budgets *bs, const struct bl_config *cfg, char *err, size_t errcap);

/* Answers 404 unknown_pool to every acquire waiting on a pool that a reload
 * has just retired (bl_pools_apply), so that bl_pools_collect may free it.
 * Call between the two. */
void bl_budgets_drop_retired_pools(struct bl_budgets *bs);

/* Shutdown: answers every waiter 503 and closes the timers. Leases stay (in
 * the snapshot). Call once; bl_budgets_destroy after the loop has run. */
void bl_budgets_shutdown(struct bl_budgets *bs);

/* Frees everything. NULL is a no-op. */
void bl_budgets_destroy(struct bl_budgets *bs);

/* Marks the next snapshot as the one written at a clean stop. */
void bl_budgets_mark_clean(struct bl_budgets *bs);

/* Snapshot callbacks (see snapshot.h); ctx is the struct bl_budgets. */
json_t *bl_budgets_save(void *ctx);
/* The same save split for bl_snapshot_register_split: capture copies on the
 * loop thread, render builds the JSON on the thread pool. */
void *bl_budgets_capture(void *ctx);
json_t *bl_budgets_render(void *capture);
void bl_budgets_discard(void *capture);
int bl_budgets_restore(void *ctx, json_t *state, char *err, size_t errcap);

/* HTTP handlers. */
void bl_budgets_acquire(struct bl_budgets *bs, struct bl_http_req *req);
void bl_budgets_release(struct bl_budgets *bs, struct bl_http_req *req);
void bl_budgets_extend(struct bl_budgets *bs, struct bl_http_req *req, const char *lease_id);
/* POST /v1/leases/{id}/resize: grows or shrinks a memory reservation. */
void bl_budgets_resize(struct bl_budgets *bs, struct bl_http_req *req, const char *lease_id);
void bl_budgets_list(struct bl_budgets *bs, struct bl_http_req *req);
void bl_budgets_get(struct bl_budgets *bs, struct bl_http_req *req, const char *name);

/* Every budget as /v1/budgets shows it, for /v1/state. */
json_t *bl_budgets_json(struct bl_budgets *bs);

/* Appends the ballast_budget_* and ballast_memory_* families. */
void bl_budgets_write_metrics(struct bl_budgets *bs, struct bl_text *t);

/* Memory reservations: POST /v1/memory/reserve and GET /v1/memory. A
 * reservation is a lease like any other: POST /v1/release and
 * /v1/leases/{id}/extend take its id, and it is reclaimed on its TTL. */
void bl_budgets_memory_reserve(struct bl_budgets *bs, struct bl_http_req *req);
void bl_budgets_memory_get(struct bl_budgets *bs, struct bl_http_req *req);

/* The memory budget as GET /v1/memory shows it ({"configured":false} when
 * the config has no memory section), for /v1/state. */
json_t *bl_budgets_memory_json(struct bl_budgets *bs);

/* Calls fn for each live lease whose acquire named a "worker", with the
 * budget it holds ("" for a pool-only lease). For the autoscaler. */
void bl_budgets_worker_leases(struct bl_budgets *bs,
			      void (*fn)(void *ctx, const char *worker, const char *budget),
			      void *ctx);

/* Fills the planner's view of budget `name` (queue, utilization of its most
 * used dimension, its target, its rate); busy_workers and per_worker_per_s
 * are left as they are. Returns 0 or BL_ENOENT. */
struct bl_planner_budget;
int bl_budgets_planner_budget(struct bl_budgets *bs, const char *name,
			      struct bl_planner_budget *out);

/* The memory budget's pressure (enum bl_mem_pressure: 0 ok, 1 high, 2
 * critical) and utilization (reserved / usable), or -1 without one. */
int bl_budgets_memory_pressure(struct bl_budgets *bs, double *utilization);

/* The daemon pools this module owns: fills up to cap names and stats,
 * returns how many. */
size_t bl_budgets_object_pools(struct bl_budgets *bs, const char **names, struct bl_slab_stats *ss,
			size_t cap);

#endif
