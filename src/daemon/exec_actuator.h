/* The exec actuator: scaling by running a command of the operator's.
 *
 * bl_exec_actuator_request(a, 7) runs argv + ["7"] (directly, no shell), for
 * example ["kubectl", "scale", "deploy/agents", "--replicas"] or a script
 * that talks to a cloud API. The command is the operator's; ballast only:
 *
 *   - never runs two at once: a request that arrives while one runs is kept,
 *     a later one replaces it, and the latest runs once the current one has
 *     ended (coalescing). It is skipped if it asks for the count the run
 *     that just ended applied successfully;
 *   - runs it in a process group of its own with a timeout: at timeout_ns
 *     the group gets SIGTERM, and SIGKILL kill_grace_ns later; whatever of
 *     the group outlives the command is killed when it exits;
 *   - reports how it went: exit status or signal, timed out or not, the last
 *     stderr_tail_bytes of its stderr (stdin and stdout are /dev/null);
 *   - does not retry a failure: the control loop's next decision is the
 *     retry.
 *
 * Everything runs on the loop thread; nothing here is thread-safe.
 */
#ifndef BALLAST_EXEC_ACTUATOR_H
#define BALLAST_EXEC_ACTUATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ballast/units.h"

#define BL_EXEC_TAIL_MAX 65536 /* the largest stderr_tail_bytes */

/* How one run went. */
struct bl_exec_result {
	uint32_t desired;        /* the count it was given */
	bool ok;                 /* exited 0 by itself, in time */
	int64_t exit_status;     /* exit code, 0 when signalled or never started */
	int term_signal;         /* the signal that ended it, or 0 */
	bool timed_out;          /* timeout_ns ran out and it was signalled */
	int spawn_error;         /* libuv error when it could not start (UV_ENOENT ...), or 0 */
	bl_time_ns started_ns;   /* monotonic (uv_hrtime) */
	bl_time_ns ended_ns;     /* monotonic: exited and its stderr read */
	const char *stderr_tail; /* the last bytes of its stderr, NUL-terminated; valid
				    until the next run ends or the actuator is destroyed */
	size_t stderr_len;       /* bytes in stderr_tail */
};

typedef void (*bl_exec_done_fn)(void *ctx, const struct bl_exec_result *r);

struct bl_exec_actuator_config {
	const char *const *argv;  /* the command, NULL-terminated; argv[0] is looked up in
				     PATH; the desired count is appended; required */
	const char *const *env;   /* extra "KEY=VALUE" entries, NULL-terminated, or NULL */
	bool clear_env;           /* true: only env */
	const char *cwd;          /* working directory, or NULL: the daemon's */
	int64_t timeout_ns;       /* longest run before SIGTERM, default 60 s */
	int64_t kill_grace_ns;    /* SIGTERM to SIGKILL, default 5 s */
	size_t stderr_tail_bytes; /* stderr kept, default 4096, 1 .. BL_EXEC_TAIL_MAX */
	bl_exec_done_fn on_done;  /* optional: after each run, on the loop thread; it may
				     call request and stats, not shutdown or destroy */
	void *ctx;                /* for on_done */
};

struct bl_exec_stats {
	bool running;             /* a run is in progress */
	uint32_t running_desired; /* ... with this count */
	bool pending;             /* a request waits for it to end */
	uint32_t pending_desired; /* ... with this count (the latest) */
	uint64_t runs;            /* runs started (spawn failures included) */
	uint64_t failures;        /* runs that were not ok */
	uint64_t timeouts;        /* runs that timed out */
	uint64_t coalesced;       /* requests replaced by a later one, or skipped */
	bool has_last;            /* last is set */
	struct bl_exec_result last; /* the last run that ended */
	bool shutting_down;
};

struct bl_exec_actuator;

/* Fills cfg with the defaults (argv still to be set). */
void bl_exec_actuator_config_defaults(struct bl_exec_actuator_config *cfg);

/* Creates an exec actuator on loop with a deep copy of cfg. Nothing runs
 * before the first request. Returns 0; BL_EINVAL with a reason in err (no
 * argv, a duration out of range, a bad tail size, an env entry without
 * '='); or BL_ENOMEM. *out is set only on success. err may be NULL. */
int bl_exec_actuator_create(uv_loop_t *loop, const struct bl_exec_actuator_config *cfg,
			    struct bl_exec_actuator **out, char *err, size_t errcap);

/* Asks for desired workers: runs the command now if none runs, else keeps
 * desired as the one to run next (replacing an earlier pending request).
 * A spawn failure is not an error here: it ends the run (see on_done and
 * stats). Returns 0, or BL_EINVAL once shutdown has begun. */
int bl_exec_actuator_request(struct bl_exec_actuator *a, uint32_t desired);

/* Fills *out. Its stderr_tail pointer follows the rule of bl_exec_result. */
void bl_exec_actuator_stats(const struct bl_exec_actuator *a, struct bl_exec_stats *out);

typedef void (*bl_exec_shutdown_fn)(void *ctx);

/* Stops for the daemon's exit: a pending request is dropped, a running
 * command gets SIGTERM to its group now and SIGKILL kill_grace_ns later.
 * done(ctx) is called on the loop once nothing runs and every handle is
 * closed; then call bl_exec_actuator_destroy. done may be NULL. A second
 * call does nothing. */
void bl_exec_actuator_shutdown(struct bl_exec_actuator *a, bl_exec_shutdown_fn done, void *ctx);

/* Frees a, which must have been shut down (calling it before shutdown's
 * done is a bug and aborts). NULL is a no-op. */
void bl_exec_actuator_destroy(struct bl_exec_actuator *a);

#endif
