/* The autoscaler's control loop in the daemon: every `autoscaler.interval` it
 * gathers the workers' metrics (supervised processes' CPU and memory from
 * /proc, heartbeats, leases carrying "worker"), plans with the pure planner
 * (ballast/planner.h: Kubernetes' replica calculation, bands, several metrics,
 * behaviors, burst mode, the budget cap) and has an actuator carry the plan
 * out: local (supervisor.c), exec (exec_actuator.c), or none (recommend only).
 *
 * docs/autoscaler.md is the user's guide, docs/internals/autoscaler-loop.md
 * the why. The loop thread owns everything here.
 */
#ifndef BALLAST_AUTOSCALER_H
#define BALLAST_AUTOSCALER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "budgets.h"
#include "config.h"
#include "http.h"
#include "metrics.h"

struct bl_autoscaler;

/* Starts the loop for cfg->autoscaler (nothing when the section is absent:
 * *out is NULL and 0 is returned). ballast_url is what supervised workers
 * get as BALLAST_URL. saved (borrowed, may be NULL) is the state a snapshot
 * kept, accepted by bl_autoscaler_check_saved: the history, the burst state
 * and the count carried out, which the loop starts from. Returns 0, or
 * BL_EINVAL / BL_ENOMEM with a reason. */
int bl_autoscaler_create(uv_loop_t *loop, const struct bl_config *cfg, const char *ballast_url,
			 struct bl_budgets *budgets, json_t *saved, struct bl_autoscaler **out,
			 char *err, size_t errcap);

/* The snapshot's "autoscaler" component: bl_autoscaler_save returns the
 * state to keep (NULL for a NULL as, or before the kubernetes actuator has
 * read the count); bl_autoscaler_check_saved returns 0 when state can be
 * restored, else BL_ECORRUPT (or BL_ENOMEM) with a reason. The autoscaler
 * starts after the snapshot is read, so the daemon keeps the accepted state
 * and passes it to bl_autoscaler_create. */
json_t *bl_autoscaler_save(struct bl_autoscaler *as);
/* Calls fn(ctx) on the loop whenever a supervised worker process starts, so
 * the daemon can write a snapshot with its identity at once rather than at
 * the next snapshot.interval. as may be NULL (nothing happens). */
void bl_autoscaler_on_workers_changed(struct bl_autoscaler *as, void (*fn)(void *ctx), void *ctx);
int bl_autoscaler_check_saved(json_t *state, char *err, size_t errcap);

/* Checks that cfg's autoscaler can be applied. Returns 0 or BL_EINVAL. */
int bl_autoscaler_check(const struct bl_config *cfg, char *err, size_t errcap);

/* Applies a reload: targets, bounds, windows and behaviors change at once;
 * history, burst state and workers are kept. A change of actuator (or its
 * command) needs a restart: it is logged and added to warnings (may be NULL). */
void bl_autoscaler_apply(struct bl_autoscaler *as, const struct bl_config *cfg, json_t *warnings);

/* Stops deciding and, for the local actuator, stops the workers (SIGTERM,
 * SIGKILL after grace, at most grace_cap_ns); done(ctx) once they are gone
 * (at once when there is nothing to wait for). */
void bl_autoscaler_shutdown(struct bl_autoscaler *as, int64_t grace_cap_ns, void (*done)(void *),
			    void *ctx);
void bl_autoscaler_destroy(struct bl_autoscaler *as);

/* HTTP: POST /v1/workers/{id}/heartbeat, GET /v1/autoscale. as may be NULL
 * (no autoscaler configured). */
void bl_autoscaler_heartbeat(struct bl_autoscaler *as, struct bl_http_req *req, const char *id);
void bl_autoscaler_get(struct bl_autoscaler *as, struct bl_http_req *req);

/* The GET /v1/autoscale document, for /v1/state (null without autoscaler). */
json_t *bl_autoscaler_json(struct bl_autoscaler *as);

/* Appends the ballast_autoscaler_* families. */
void bl_autoscaler_write_metrics(struct bl_autoscaler *as, struct bl_text *t);

#endif
