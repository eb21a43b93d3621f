/* The kubernetes actuator: reads and sets the replicas of one Deployment or
 * StatefulSet through its scale subresource,
 *
 *   GET   {api}/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
 *   PATCH {api}/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
 *         Content-Type: application/merge-patch+json
 *         {"metadata":{"resourceVersion":"…"},"spec":{"replicas":N}}
 *
 * (statefulsets/{name}/scale for a StatefulSet), over HTTPS with libcurl and
 * the pod's service-account token and CA, or an explicit URL, token file and
 * CA file.
 *
 * What ballast adds to a bare PATCH:
 *
 *   - no blocking on the loop: every operation runs in libuv's thread pool
 *     (uv_queue_work) and its callback comes back on the loop thread;
 *   - optimistic concurrency: a scale reads the object first and patches with
 *     the resourceVersion it read, so it never overwrites a change it has not
 *     seen; on 409 Conflict it reads again and retries (max_conflict_retries
 *     times). If the object already has the count, nothing is written;
 *   - one operation at a time: a scale asked for while one runs is kept, a
 *     later one replaces it (coalescing), and the latest runs once the current
 *     one has ended; every caller is answered, with the count that was applied;
 *   - errors a person can act on: 401 names the token file, 403 the RBAC rule
 *     that is missing, 404 the object, others carry the API's Status message;
 *   - the token file is read again for every request: projected service-account
 *     tokens rotate.
 *
 * Everything but the work done in the thread pool runs on the loop thread;
 * nothing here is thread-safe. See docs/internals/k8s-actuator.md.
 */
#ifndef BALLAST_K8S_H
#define BALLAST_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ballast/units.h"

/* Where the kubelet mounts the service account: token, ca.crt, namespace. */
#define BL_K8S_SERVICEACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define BL_K8S_ERR_MAX 512 /* bytes of an error message, NUL included */

enum bl_k8s_kind { BL_K8S_DEPLOYMENT, BL_K8S_STATEFULSET };
enum bl_k8s_op { BL_K8S_OP_GET, BL_K8S_OP_SCALE };

struct bl_k8s_config {
	enum bl_k8s_kind kind;       /* what to scale, default BL_K8S_DEPLOYMENT */
	const char *namespace;       /* NULL: read from <serviceaccount_dir>/namespace */
	const char *name;            /* the object's name; required */
	const char *api_url;         /* "https://host:port[/prefix]", or NULL: https://
					$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
					http:// only when given explicitly (kubectl proxy,
					tests), and with a token only to a loopback host */
	const char *token_file;      /* NULL: <serviceaccount_dir>/token; "": send none */
	const char *ca_file;         /* NULL: <serviceaccount_dir>/ca.crt; "": the system's
					trust store. Only used for https */
	const char *serviceaccount_dir; /* NULL: BL_K8S_SERVICEACCOUNT_DIR */
	int64_t timeout_ns;          /* one HTTP request, connection included, default 10 s */
	uint32_t max_conflict_retries; /* re-reads after a 409, default 3, at most 20 */
	int64_t conflict_backoff_ns; /* first wait before a re-read, doubled each time,
					default 100 ms, 0 .. 10 s */
};

/* How one get or scale went. Pointers are valid during the callback only. */
struct bl_k8s_result {
	enum bl_k8s_op op;
	int rc;                   /* 0, or BL_EAGAIN (transient: unreachable, timeout,
				     409 after every retry, 429, 5xx, shutting down),
				     BL_ENOENT (404), BL_EINVAL (the API refused the
				     change: 400, 422), BL_EIO (needs an operator: 401,
				     403, TLS, token unreadable, an answer that is not
				     a Scale, any other status) */
	const char *error;        /* "" on success, else a message for a person */
	int http_status;          /* status of the last HTTP answer, 0 when none came */
	uint32_t desired;         /* scale: the count applied, the latest asked for
				     (may differ from what this caller asked) */
	bool patched;             /* scale: a PATCH was accepted; false when the object
				     already had the count */
	uint32_t conflicts;       /* 409 Conflict answers in this operation */
	uint32_t requests;        /* HTTP requests made by this operation */
	bool has_scale;           /* the next fields come from the server */
	uint32_t spec_replicas;   /* the object's spec.replicas (after a patch) */
	uint32_t status_replicas; /* status.replicas: pods that exist now */
	const char *resource_version; /* metadata.resourceVersion, "" if none */
	const char *selector;     /* status.selector, "" if none */
	bl_time_ns started_ns;    /* monotonic (uv_hrtime): the operation started (a
				     pending one: when its turn came) */
	bl_time_ns ended_ns;      /* monotonic: its result reached the loop */
};

typedef void (*bl_k8s_done_fn)(void *ctx, const struct bl_k8s_result *r);

struct bl_k8s_stats {
	bool busy;                /* an operation runs: in the thread pool, or waiting
				     out the pause after a 409 */
	bool pending_scale;       /* a scale waits for it */
	uint32_t pending_desired; /* ... with this count */
	uint64_t operations;      /* gets and scales run (cancelled ones included) */
	uint64_t failures;        /* operations whose rc was not 0 */
	uint64_t requests;        /* HTTP requests made */
	uint64_t patches;         /* PATCHes accepted */
	uint64_t conflicts;       /* 409 Conflict answers */
	uint64_t coalesced;       /* scales replaced by a later one before they ran */
	bool has_desired;         /* desired is set */
	uint32_t desired;         /* the latest count asked for */
	bool has_scale;           /* the next three are set */
	uint32_t spec_replicas;   /* last seen spec.replicas */
	uint32_t status_replicas; /* last seen status.replicas */
	bl_time_ns seen_ns;       /* monotonic: when they were seen */
	bool has_success;         /* last_success_* are set */
	bl_time_ns last_success_ns;   /* monotonic: the last operation that succeeded */
	int64_t last_success_unix_ms; /* ... the same, wall clock */
	int last_rc;              /* rc of the last operation, 0 if none */
	int last_http_status;     /* its last HTTP status, 0 if none */
	char last_error[BL_K8S_ERR_MAX]; /* the last failure's message, kept after a
					    success; "" if none yet */
	bool shutting_down;
};

struct bl_k8s;

/* Fills cfg with the defaults (name still to be set). */
void bl_k8s_config_defaults(struct bl_k8s_config *cfg);

/* Creates the actuator on loop with a copy of cfg. Resolves the namespace (reading
 * <serviceaccount_dir>/namespace if cfg gives none) and the API URL (from the
 * environment if cfg gives none) now; the token and CA files are read by each
 * request. Nothing is sent before the first get or scale. Returns 0; BL_EINVAL
 * with a reason in err (a missing or malformed name, namespace or URL, no URL and
 * no in-cluster environment, http with a token to a host that is not loopback, a
 * setting out of range); or BL_ENOMEM. *out is set only on success. err may be
 * NULL. */
int bl_k8s_create(uv_loop_t *loop, const struct bl_k8s_config *cfg, struct bl_k8s **out,
		  char *err, size_t errcap);

/* Reads the scale subresource: spec.replicas, status.replicas, resourceVersion.
 * A get asked for while an operation runs is run after it (gets asked for
 * meanwhile share one request). cb(ctx, result) is called once, later, on the
 * loop thread, never from within this call; cb may be NULL. Returns 0, BL_EINVAL
 * once shutdown has begun, or BL_ENOMEM; cb is not called when it fails. */
int bl_k8s_get(struct bl_k8s *k, bl_k8s_done_fn cb, void *ctx);

/* Sets spec.replicas to desired: reads the object, patches it with the
 * resourceVersion read unless it already has desired, and on 409 reads again and
 * retries. Runs now if nothing runs; else desired is kept as the count to apply
 * next, replacing a pending one, and the callers of both are answered by that
 * run. cb as for bl_k8s_get. Returns 0; BL_ERANGE if desired exceeds INT32_MAX;
 * BL_EINVAL once shutdown has begun; or BL_ENOMEM. */
int bl_k8s_scale(struct bl_k8s *k, uint32_t desired, bl_k8s_done_fn cb, void *ctx);

/* Fills *out. */
void bl_k8s_stats(const struct bl_k8s *k, struct bl_k8s_stats *out);

/* The URL of the scale subresource, for logs and status. Valid until destroy. */
const char *bl_k8s_url(const struct bl_k8s *k);

/* "deployment" or "statefulset". */
const char *bl_k8s_kind_name(enum bl_k8s_kind kind);

typedef void (*bl_k8s_shutdown_fn)(void *ctx);

/* Stops for the daemon's exit: waiting callers are answered with BL_EAGAIN
 * ("shutting down"), a running operation is cancelled (its transfer aborted, a
 * backoff cut short) and answered the same way once its thread has let go.
 * done(ctx) is then called on the loop; after it destroy frees at once. done may
 * be NULL. A second call does nothing. */
void bl_k8s_shutdown(struct bl_k8s *k, bl_k8s_shutdown_fn done, void *ctx);

/* Frees k. Safe at any time on the loop thread: callbacks not yet made are
 * dropped; if an operation is still in the thread pool it is cancelled and k is
 * freed when it has ended, so the loop must keep running until then (uv_run
 * does: the work request keeps it alive). NULL is a no-op. */
void bl_k8s_destroy(struct bl_k8s *k);

#endif
