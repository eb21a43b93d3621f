/* What-if autoscaling plans: POST /v1/autoscale/plan and `ballast plan`.
 *
 * Turns a JSON request (the schema is in docs/autoscaler.md) into the
 * planner's input, runs bl_planner_plan once, and turns its result into the
 * JSON answer. Nothing is recorded anywhere: a plan is a call whose result
 * is not committed. No daemon state, no clock (times in the request are
 * seconds relative to the moment of the plan, which is time 0), no I/O, so
 * the HTTP handler and the CLI, which plans locally without a daemon, give
 * the same answer for the same request.
 *
 * For a plain request (one target, no min/max, no behavior, no history) the
 * answer is Kubernetes' replica calculation and nothing else: replicas
 * default to 1..2^31-1 (not the daemon's 5..100), and the behaviors
 * (stabilization windows, rate policies) apply only when the request brings
 * a "behavior" object or a "history".
 */
#ifndef BALLAST_PLAN_H
#define BALLAST_PLAN_H

#include <jansson.h>
#include <stddef.h>

#include "ballast/alloc.h"

/* Plans from a decoded request object. Returns 0 with *out the answer and
 * *status 200; or a negative BL_E code with *out an error document in the
 * daemon's shape ({"error":{"code","message"}, ...}) and *status its HTTP
 * status: BL_EINVAL and 400 "invalid_field" for a malformed request (the
 * message starts with the JSON path of the problem, such as
 * "pods[2].request: must be an integer ≥ 0 or null, not -5", and the path is
 * also in "path"); BL_EINVAL and 422 "cannot_plan" when no target can be
 * computed (no sample matches a pod, a pod has no request ... as Kubernetes
 * fails), with "reason" and the per-target detail "targets"; BL_ENOMEM and
 * 503 "overloaded". *out is NULL only when memory ran out even for the error
 * document. The caller owns *out. in is not changed. hook (NULL: malloc)
 * provides the per-call scratch memory, all of it freed before returning. */
int bl_plan_from_json(const json_t *in, const struct bl_alloc_hook *hook, json_t **out,
		      int *status);

/* The same from len bytes of request text: a body that is not one JSON
 * object is BL_ESYNTAX with 400 and the decoder's code ("malformed_json",
 * "too_deep", "not_an_object") and, where known, the byte "offset". */
int bl_plan_from_text(const char *body, size_t len, const struct bl_alloc_hook *hook,
		      json_t **out, int *status);

#endif
