/* The local actuator: a supervisor that runs N copies of a worker command.
 *
 * The autoscaler's control loop decides how many workers should run and calls
 * bl_supervisor_scale(); the supervisor makes it so on the daemon's libuv
 * loop:
 *
 *   - each worker is argv run directly (execvp, no shell) in cwd, with the
 *     daemon's environment (unless clear_env), the extra env entries, and
 *     BALLAST_URL and BALLAST_WORKER_ID ("w-1", "w-2", ... never reused);
 *   - each worker leads a process group of its own (a new session), so the
 *     whole tree it starts can be signalled and measured as one;
 *   - a worker that exits on its own is restarted under the same id after an
 *     exponential backoff (backoff_base_ns, doubling, at most
 *     backoff_max_ns; back to the base once a run lasted backoff_reset_ns);
 *   - scaling down picks the least busy workers: those waiting to restart
 *     first, then fewest leases, then the most recently started; each gets
 *     SIGTERM (its group) and SIGKILL when grace_ns runs out, never earlier,
 *     whatever it holds;
 *   - when a worker's leader exits, whatever is left of its group gets
 *     SIGKILL: a worker is its process group, as a container is its cgroup;
 *   - every sample_interval_ns the supervisor reads /proc (off the loop
 *     thread) and gives each worker its CPU use in cores and its resident
 *     memory, summed over its group and descendants.
 *
 * The control loop tells it how busy each worker is (bl_supervisor_set_busy)
 * and reads bl_supervisor_stats() / bl_supervisor_workers() to plan.
 * docs/internals/supervisor.md explains the choices.
 *
 * Everything runs on the loop thread; no function here is thread-safe.
 */
#ifndef BALLAST_SUPERVISOR_H
#define BALLAST_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ballast/units.h"

#define BL_SUPERVISOR_ID_MAX 24          /* bytes of a worker id, NUL included */
#define BL_SUPERVISOR_MAX_REPLICAS 10000 /* the highest max_replicas accepted */
#define BL_SUPERVISOR_HISTORY_MAX 1024   /* the most exited workers kept */

enum bl_supervisor_state {
	BL_WORKER_STARTING, /* spawned, younger than startup_ns */
	BL_WORKER_RUNNING,  /* up for startup_ns or more */
	BL_WORKER_STOPPING, /* SIGTERM sent (scale-down or shutdown), waiting for exit */
	BL_WORKER_BACKOFF,  /* exited or failed to spawn; restarts when its delay ends */
	BL_WORKER_EXITED,   /* gone for good (only in the history) */
};

/* Returns "starting", "running", "stopping", "backoff" or "exited". */
const char *bl_supervisor_state_name(enum bl_supervisor_state state);

enum bl_supervisor_event_kind {
	BL_SUPERVISOR_EV_STARTED,      /* a process was spawned for the worker */
	BL_SUPERVISOR_EV_SPAWN_FAILED, /* uv_spawn refused (error); backoff follows */
	BL_SUPERVISOR_EV_RUNNING,      /* the worker outlived startup_ns */
	BL_SUPERVISOR_EV_STOPPING,     /* SIGTERM sent to the worker's group */
	BL_SUPERVISOR_EV_KILLED,       /* grace ran out: SIGKILL sent */
	BL_SUPERVISOR_EV_EXITED,       /* the leader exited (exit_status, term_signal) */
	BL_SUPERVISOR_EV_REMOVED,      /* the worker is gone for good (stopped) */
};

/* What happened to a worker, for the control loop's log and lease reclaim. */
struct bl_supervisor_event {
	enum bl_supervisor_event_kind kind;
	const char *id;          /* the worker, valid during the call */
	int pid;                 /* its process, 0 if none */
	bl_time_ns at_ns;        /* monotonic (uv_hrtime) */
	int64_t exit_status;     /* EXITED: exit code, 0 when signalled */
	int term_signal;         /* EXITED: the signal that ended it, or 0 */
	int error;               /* SPAWN_FAILED: the libuv error (UV_ENOENT, ...) */
	bool expected;           /* EXITED: it was asked to stop */
	bool will_restart;       /* EXITED / SPAWN_FAILED: a restart is scheduled */
	int64_t restart_in_ns;   /* ... this long from now */
	uint32_t restarts;       /* restarts of this worker so far */
	uint32_t leases;         /* leases it held, as last told by set_busy */
};

typedef void (*bl_supervisor_event_fn)(void *ctx, const struct bl_supervisor_event *ev);

/* A process told apart from any later one that reuses its pid: the pid and
 * its start time (field 22 of /proc/<pid>/stat, clock ticks after boot;
 * meaningful only within one boot). */
struct bl_supervisor_identity {
	int pid;
	uint64_t start_ticks;
};

struct bl_supervisor_config {
	const char *const *argv;   /* the worker command, NULL-terminated; argv[0] is
				      looked up in PATH; required */
	const char *const *env;    /* extra "KEY=VALUE" entries, NULL-terminated, or NULL */
	bool clear_env;            /* true: only env and the BALLAST_* variables */
	const char *cwd;           /* working directory, or NULL: the daemon's */
	const char *ballast_url;   /* BALLAST_URL, e.g. "http://127.0.0.1:7070"; required */
	uint32_t min_replicas;     /* scale() clamps into min..max */
	uint32_t max_replicas;     /* 1..BL_SUPERVISOR_MAX_REPLICAS */
	int64_t grace_ns;          /* SIGTERM to SIGKILL, default 30 s; 0 = kill at once */
	int64_t backoff_base_ns;   /* first restart delay, default 1 s */
	int64_t backoff_max_ns;    /* largest restart delay, default 60 s */
	int64_t backoff_reset_ns;  /* a run this long restarts the backoff, default 60 s */
	int64_t startup_ns;        /* starting -> running after this uptime, default 1 s */
	int64_t sample_interval_ns;/* /proc sampling period, default 1 s; 0 = never */
	uint32_t history;          /* exited workers kept for bl_supervisor_workers,
				      default 16, at most BL_SUPERVISOR_HISTORY_MAX */
	const char *proc_root;     /* where to read process figures, default "/proc" */
	uint64_t first_seq;        /* ids start at "w-<first_seq>"; 0 means 1 (a restarted
				      daemon continues where the last one stopped) */
	const struct bl_supervisor_identity *orphans; /* workers an earlier daemon left
				      running (it was killed): stopped at create, see
				      bl_supervisor_create; may be NULL */
	size_t n_orphans;
	bl_supervisor_event_fn on_event; /* optional, called on the loop thread; it
				      may read stats and workers, and must not call
				      scale, shutdown or destroy */
	void *ctx;                 /* for on_event */
};

/* One worker as bl_supervisor_workers() reports it. */
struct bl_supervisor_worker {
	char id[BL_SUPERVISOR_ID_MAX];  /* "w-<n>" */
	enum bl_supervisor_state state;
	int pid;                   /* its current process (the group leader), 0 if none */
	bl_time_ns created_ns;     /* monotonic: when the supervisor made it */
	bl_time_ns started_ns;     /* monotonic: when its current (or last) process started */
	bl_time_ns until_ns;       /* backoff: restart time; stopping: SIGKILL time; else 0 */
	uint32_t restarts;         /* processes started after the first */
	uint32_t leases;           /* as last told by bl_supervisor_set_busy */
	double cpu_cores;          /* CPU over the last sample interval, in cores */
	uint64_t rss_bytes;        /* resident memory at the last sample */
	uint32_t procs;            /* processes counted at the last sample */
	bl_time_ns sampled_ns;     /* monotonic time of that sample, 0 if none yet */
	bool has_exit;             /* a process of this worker has exited */
	int64_t last_exit_status;  /* its exit code (0 when signalled) */
	int last_term_signal;      /* the signal that ended it, or 0 */
	int last_spawn_error;      /* libuv error of the last failed spawn, or 0 */
};

/* Counts for the control loop and /metrics. */
struct bl_supervisor_stats {
	uint32_t desired;          /* the last scale() target, after clamping */
	uint32_t current;          /* starting + running */
	uint32_t starting;
	uint32_t running;
	uint32_t stopping;
	uint32_t backoff;
	uint64_t spawns;           /* processes started */
	uint64_t spawn_failures;   /* uv_spawn errors */
	uint64_t crashes;          /* exits nobody asked for */
	uint64_t kills;            /* SIGKILLs at the end of a grace */
	uint32_t orphans_stopped;  /* workers of an earlier daemon stopped at create */
	double cpu_cores;          /* sum over live workers at their last sample */
	uint64_t rss_bytes;        /* likewise */
	bool shutting_down;
};

struct bl_supervisor;

/* Fills cfg with the defaults (and zero / NULL for the rest: argv and
 * ballast_url must still be set). */
void bl_supervisor_config_defaults(struct bl_supervisor_config *cfg);

/* Creates a supervisor on loop with a deep copy of cfg (the caller may free
 * its strings afterwards). No worker starts before the first
 * bl_supervisor_scale(). Each of cfg->orphans that is still the same process
 * (same start time) and still leads its process group gets SIGTERM to its
 * group now and SIGKILL after grace_ns if it is still there (checked again);
 * a pid that now belongs to another process is left alone. Returns 0; BL_EINVAL with a reason in err (argv or
 * ballast_url missing, min > max, max out of range, a duration out of
 * 0 .. 7 days, backoff_max below backoff_base, an env entry without '=' or
 * naming BALLAST_URL / BALLAST_WORKER_ID, history too large); or BL_ENOMEM. *out is set only
 * on success. err may be NULL. */
int bl_supervisor_create(uv_loop_t *loop, const struct bl_supervisor_config *cfg,
			 struct bl_supervisor **out, char *err, size_t errcap);

/* Sets how many workers should run: desired is clamped into
 * min_replicas..max_replicas. Missing workers are spawned now (a spawn that
 * fails goes to backoff, not an error here); surplus ones are stopped, least
 * busy first (see above). Workers already stopping do not count and cannot be
 * taken back. Returns 0; BL_EINVAL once shutdown has begun; BL_ENOMEM with
 * nothing changed. */
int bl_supervisor_scale(struct bl_supervisor *sup, uint32_t desired);

/* Records that worker id holds leases leases now; it steers which workers a
 * scale-down stops. Returns 0, or BL_ENOENT for an id that is not live. */
int bl_supervisor_set_busy(struct bl_supervisor *sup, const char *id, uint32_t leases);

/* Fills *out. */
void bl_supervisor_stats(const struct bl_supervisor *sup, struct bl_supervisor_stats *out);

/* Copies up to cap workers into out: the live ones in id order, then the
 * exited ones kept in the history, in the order they went. Returns how many
 * there are in all (which may exceed cap). */
size_t bl_supervisor_workers(const struct bl_supervisor *sup, struct bl_supervisor_worker *out,
			     size_t cap);

/* Copies up to cap identities of the live workers' processes into out (those
 * with a process whose start time could be read). Returns how many there are
 * in all. With bl_supervisor_next_seq, what a snapshot keeps so that a
 * daemon restarted after a crash can stop the workers it left behind and go
 * on numbering after them. */
size_t bl_supervisor_identities(const struct bl_supervisor *sup,
				struct bl_supervisor_identity *out, size_t cap);

/* The number the next new worker's id will carry ("w-<n>"). */
uint64_t bl_supervisor_next_seq(const struct bl_supervisor *sup);

/* Looks up one live worker by id. Returns 0, or BL_ENOENT. */
int bl_supervisor_worker(const struct bl_supervisor *sup, const char *id,
			 struct bl_supervisor_worker *out);

typedef void (*bl_supervisor_done_fn)(void *ctx);

/* Stops everything for the daemon's exit: pending restarts are dropped, every
 * live process gets SIGTERM and, after grace_ns (the config's when negative),
 * SIGKILL; sampling stops. done(ctx) is called on the loop once every worker
 * has exited and every handle is closed; then call bl_supervisor_destroy.
 * done may be NULL. Calling it twice does nothing the second time. */
void bl_supervisor_shutdown(struct bl_supervisor *sup, int64_t grace_ns,
			    bl_supervisor_done_fn done, void *ctx);

/* Frees sup, which must have been shut down: call it once shutdown's done
 * has been called (calling it earlier is a bug and aborts). NULL is a no-op. */
void bl_supervisor_destroy(struct bl_supervisor *sup);

#endif
