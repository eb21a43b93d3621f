/* The ballast daemon: one libuv loop thread that owns all state, the HTTP
 * API, signals, config reloads and state snapshots. Internal to src/daemon.
 */
#ifndef BALLAST_DAEMON_H
#define BALLAST_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "autoscaler.h"
#include "budgets.h"
#include "config.h"
#include "dmem.h"
#include "http.h"
#include "jsonreq.h"
#include "metrics.h"
#include "snapshot.h"

struct bl_daemon_options {
	const char *config_path;     /* NULL: the embedded default config */
	const char *listen_override; /* --listen ADDR:PORT, or NULL */
};

/* A request waiting for the next snapshot write (POST /v1/snapshot). */
struct bl_snapshot_waiter {
	struct bl_http_req *req;
	struct bl_snapshot_waiter *next;
};

struct bl_daemon {
	uv_loop_t *loop;
	struct bl_config *cfg;            /* the running config */
	char *config_path;                /* NULL: embedded default */
	char *listen_override;            /* from the command line, wins over the config */
	struct bl_http_server *http;
	struct bl_metrics *metrics;
	struct bl_snapshot *snap;
	struct bl_budgets *budgets;       /* rate budgets, memory, leases, waiters */
	struct bl_pools *pools;           /* backend pools: breakers and balancers */
	struct bl_autoscaler *autoscaler; /* NULL without an autoscaler section */
	json_t *autoscaler_saved;         /* its state as the snapshot had it, or NULL */
	struct bl_dmem mem;               /* ballast's own memory: limits.daemon_memory */
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t snapshot_timer;        /* periodic snapshot */
	uv_timer_t drain_deadline;        /* forces shutdown if draining takes too long */
	char *auth_token;                 /* bearer token, NULL when auth is off */
	size_t auth_token_len;
	bool ready;                       /* config loaded and state restored */
	bool shutting_down;               /* SIGTERM/SIGINT seen */
	bool drained;                     /* no connection left */
	double start_wall_s;              /* process start, epoch seconds */
	uint64_t start_mono_ns;           /* uv_hrtime() at start */
	int64_t config_loaded_at_ms;      /* epoch ms of the running config's load */
	uint64_t reloads;                 /* successful reloads */
	uint64_t reload_failures;         /* refused reloads */
	char last_reload_error[512];      /* "" when the last reload worked */
	bool snapshot_in_flight;          /* a write is running in the thread pool */
	bool snapshot_again;              /* another write was asked for meanwhile */
	bool final_snapshot_done;         /* the shutdown snapshot has been written */
	uint64_t snapshot_writes;         /* successful writes */
	uint64_t snapshot_failures;       /* failed writes */
	int64_t snapshot_last_ms;         /* epoch ms of the last successful write */
	size_t snapshot_last_bytes;       /* its size */
	char snapshot_last_error[300];    /* "" when the last write worked */
	struct bl_snapshot_waiter *snapshot_waiters; /* answered after the next write */
	struct bl_snapshot_restore_report restore;   /* what start-up restored */
	uint64_t starts;                  /* daemon starts on this state_dir, restored */
	int64_t first_start_ms;           /* epoch ms of the first start, restored */
	int exit_code;                    /* what bl_daemon_run returns */
};

/* Runs the daemon until SIGTERM/SIGINT. Returns the process exit code:
 * 0 after a clean drain, 1 when start-up failed (the reason is logged). */
int bl_daemon_run(const struct bl_daemon_options *opts);

/* Wall clock in milliseconds since the epoch. */
int64_t bl_daemon_wall_ms(void);

/* Reloads the config from its file (SIGHUP, POST /v1/reload). With dry_run
 * it validates only. On failure the running config stays, diags (if not
 * NULL) receive the problems, and BL_EINVAL/BL_EIO is returned. warnings
 * (if not NULL) receives a JSON array of changes that need a restart. */
int bl_daemon_reload(struct bl_daemon *d, bool dry_run, struct bl_diags *diags, json_t *warnings);

/* Asks for a snapshot write now; waiter (may be NULL) is answered after it. */
void bl_daemon_snapshot_now(struct bl_daemon *d, struct bl_http_req *waiter);

/* The HTTP request handler (api.c). */
void bl_api_handle(void *ctx, struct bl_http_req *req);
/* Sees every answer: metrics and the access log (api.c). */
void bl_api_done(void *ctx, const struct bl_http_req *req, int status, uint64_t duration_ns);

/* Decodes req's body as a JSON object holding only the allowed keys
 * (NULL-terminated) into *out. Returns 0; or answers 400 (what, and the byte
 * offset for malformed JSON) and returns -1. empty_ok: an empty body is {}.
 * Release *out with bl_json_fields_cleanup either way. */
int bl_api_body(struct bl_http_req *req, bool empty_ok, const char *const *allowed,
		struct bl_json_fields *out);

/* Answers 400 for a JSON request error (see jsonreq.h). */
void bl_api_bad_request(struct bl_http_req *req, const struct bl_json_error *e);

/* Compares a presented token with the expected one in time that depends only
 * on the expected token's length. */
bool bl_token_equal(const char *given, size_t given_len, const char *expected,
		    size_t expected_len);

#endif
