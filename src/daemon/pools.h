/* Backend pools in the daemon: per backend a circuit breaker (ballast/breaker.h),
 * per pool a load balancer (ballast/balancer.h), and the views, metrics,
 * operator actions and snapshot part around them.
 *
 * The decision flow (acquire, release, lease expiry) lives in budgets.c; it
 * asks this module for a backend with bl_pool_pick and reports the call's
 * outcome with bl_pool_finish. A backend linked to its own budget is charged
 * there by budgets.c, through the admit callback of bl_pool_pick: the pool
 * knows nothing of budgets.
 *
 * The loop thread owns everything here.
 */
#ifndef BALLAST_POOLS_H
#define BALLAST_POOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ballast/breaker.h"
#include "ballast/units.h"
#include "config.h"
#include "dmem.h"
#include "http.h"
#include "metrics.h"

#define BL_POOL_BACKENDS_MAX 1024 /* backends in one pool */

struct bl_pools;
struct bl_pool;
struct bl_pool_backend;

/* Creates every pool of cfg. Returns 0, or BL_EINVAL / BL_ENOMEM with a
 * reason in err. */
int bl_pools_create(uv_loop_t *loop, const struct bl_config *cfg, struct bl_dmem *dmem,
		    struct bl_pools **out, char *err, size_t errcap);

/* Checks that cfg's pools can be applied. Returns 0 or BL_EINVAL with a
 * reason in err. Changes nothing. */
int bl_pools_check(const struct bl_config *cfg, char *err, size_t errcap);

/* Applies a reloaded config: backends kept by name keep their breaker state
 * and metrics, new ones join (with slow start), removed ones stop being
 * picked and go once their calls are back; removed pools admit nothing.
 * Returns 0, or BL_ENOMEM leaving everything as it was. */
int bl_pools_apply(struct bl_pools *ps, const struct bl_config *cfg, char *err, size_t errcap);

/* Frees the pools a reload retired that have no call in flight. Apply keeps
 * them, because acquires may still wait on them: call this once those have
 * been answered (bl_budgets_drop_retired_pools). */
void bl_pools_collect(struct bl_pools *ps);

/* Whether a reload removed p (it admits nothing, and goes once its calls are
 * back and bl_pools_collect runs). */
bool bl_pool_retired(const struct bl_pool *p);

void bl_pools_shutdown(struct bl_pools *ps);
void bl_pools_destroy(struct bl_pools *ps);

/* The pool of that name (retired ones only with any), or NULL. */
struct bl_pool *bl_pools_find(struct bl_pools *ps, const char *name, bool any);

/* A backend of pool p by name (removed ones too), or NULL. */
struct bl_pool_backend *bl_pool_backend_find(struct bl_pool *p, const char *name);

const char *bl_pool_name(const struct bl_pool *p);
const char *bl_pool_backend_name(const struct bl_pool_backend *be);
const char *bl_pool_backend_url(const struct bl_pool_backend *be);
/* The budget a backend is charged to, or NULL. */
const char *bl_pool_backend_budget(const struct bl_pool_backend *be);
struct bl_pool *bl_pool_backend_pool(struct bl_pool_backend *be);

/* Asked for the backend the balancer chose: true charges it (its budget
 * admitted the call), false skips it for this pick. */
typedef bool (*bl_pool_admit_fn)(void *ctx, struct bl_pool_backend *be);

/* A call sent to a backend. Plain data: the lease keeps it. */
struct bl_pool_choice {
	struct bl_pool_backend *backend;
	struct bl_breaker_permit permit;
};

/* Why a pick found nothing. */
struct bl_pool_refusal {
	uint32_t breaker_refused;  /* backends whose breaker refused */
	uint32_t admit_refused;    /* backends the admit callback refused */
	int64_t retry_after_ns;    /* until the first breaker half-opens; -1 unknown */
};

/* Picks a backend for one call: the pool's strategy among the backends
 * whose breaker admits (all but the forced-open ones when too many are
 * open: "panic"), then admit (may be NULL) for the chosen one, skipping it
 * and picking again if it refuses. key/key_len (key may be NULL) is the
 * consistent_hash affinity key. Returns 0 and fills *out (the backend's
 * in-flight count and references include the call from here on), or
 * BL_EAGAIN and fills *why, or BL_ENOENT for a retired pool. */
int bl_pool_pick(struct bl_pool *p, const char *key, size_t key_len, bl_time_ns now,
		 bl_pool_admit_fn admit, void *admit_ctx, struct bl_pool_choice *out,
		 struct bl_pool_refusal *why);

/* Outcomes of a call, as POST /v1/release names them. */
enum bl_pool_outcome {
	BL_POOL_OK = 0,
	BL_POOL_ERROR = 1,
	BL_POOL_TIMEOUT = 2,
	BL_POOL_RATE_LIMITED = 3,
	BL_POOL_CANCELLED = 4,
};

/* Reports the end of a call bl_pool_pick chose: feeds the breaker (with the
 * permit), the balancer's metrics and the latency histogram, and drops the
 * call's references (a removed backend goes with its last call). */
void bl_pool_finish(const struct bl_pool_choice *c, enum bl_pool_outcome outcome,
		    int64_t latency_ns, bl_time_ns now);

/* Restores a call from a snapshot: counts it in flight again with its permit. */
void bl_pool_restore_call(struct bl_pool_choice *c);

/* HTTP handlers: GET /v1/pools, GET /v1/pools/{name},
 * POST /v1/pools/{name}/backends/{backend} {"state": ...}. */
void bl_pools_list(struct bl_pools *ps, struct bl_http_req *req);
void bl_pools_get(struct bl_pools *ps, struct bl_http_req *req, const char *name);
void bl_pools_set_backend(struct bl_pools *ps, struct bl_http_req *req, const char *pool,
			  const char *backend);

/* Every pool as GET /v1/pools shows it, for /v1/state. */
json_t *bl_pools_json(struct bl_pools *ps);

/* Appends the ballast_backend_* and ballast_pool_* families. */
void bl_pools_write_metrics(struct bl_pools *ps, struct bl_text *t);

/* Snapshot callbacks: breaker states, in wall-clock time. */
json_t *bl_pools_save(void *ctx);
int bl_pools_restore(void *ctx, json_t *state, char *err, size_t errcap);

#endif
