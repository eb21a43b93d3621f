/* The local actuator: N copies of a worker command on the daemon's loop.
 * See supervisor.h and docs/internals/supervisor.md.
 *
 * A worker is a slot with a stable id; over its life it may run several
 * processes (restarts). Its one timer serves whichever state it is in:
 * starting -> running after startup_ns, backoff -> respawn, stopping ->
 * SIGKILL. Every decision about a process that ended is taken once its
 * uv_process_t is closed, so a slot never has two process handles at once.
 */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ballast/error.h"
#include "clock.h"
#include "log.h"
#include "procstat.h"
#include "spawnenv.h"

#define DEFAULT_GRACE_NS (30 * BL_NS_PER_S)
#define DEFAULT_BACKOFF_BASE_NS BL_NS_PER_S
#define DEFAULT_BACKOFF_MAX_NS (60 * BL_NS_PER_S)
#define DEFAULT_BACKOFF_RESET_NS (60 * BL_NS_PER_S)
#define DEFAULT_STARTUP_NS BL_NS_PER_S
#define DEFAULT_SAMPLE_INTERVAL_NS BL_NS_PER_S
#define DEFAULT_HISTORY 16
#define MAX_DURATION_NS (INT64_C(7) * 24 * 3600 * BL_NS_PER_S) /* a week */

static const char *const reserved_env[] = {"BALLAST_URL", "BALLAST_WORKER_ID", NULL};

struct worker {
	struct bl_supervisor *sup;
	struct worker *prev, *next;  /* the live list, in seq order */
	uint64_t seq;                /* n of "w-<n>" */
	char id[BL_SUPERVISOR_ID_MAX];
	char env_id[BL_SUPERVISOR_ID_MAX + 20]; /* "BALLAST_WORKER_ID=<id>" */
	enum bl_supervisor_state state;
	uv_process_t proc;           /* valid while proc_open */
	uv_timer_t timer;            /* startup, restart or SIGKILL, by state */
	bool proc_open;              /* proc was passed to uv_spawn and is not closed yet */
	bool stop;                   /* asked to stop: never restarted again */
	int pid;                     /* the running leader, 0 if none */
	uint64_t start_ticks;        /* its start time (/proc), 0 if unknown */
	bl_time_ns created_ns;       /* monotonic */
	bl_time_ns started_ns;       /* monotonic, last spawn */
	bl_time_ns until_ns;         /* restart or SIGKILL time, 0 if none */
	int64_t restart_in_ns;       /* backoff delay decided at the last exit */
	uint32_t restarts;           /* spawns after the first */
	uint32_t failures;           /* consecutive short runs, drives the backoff */
	uint32_t leases;             /* from set_busy */
	bool has_exit;
	int64_t exit_status;
	int term_signal;
	int spawn_error;             /* libuv error of the last spawn, 0 if it worked */
	/* sampling: CPU is a rate between two samples of the same process */
	int base_pid;                /* the process base_* belongs to */
	uint64_t base_ticks;         /* its cumulative ticks at base_ns */
	bl_time_ns base_ns;
	double cpu_cores;
	uint64_t rss_bytes;
	uint32_t procs;
	bl_time_ns sampled_ns;
};

/* One /proc scan, run on the thread pool. */
struct sample_job {
	uv_work_t req;
	struct bl_supervisor *sup;
	size_t n;
	int *pids;                   /* leaders, sorted */
	struct bl_proc_usage *usage; /* per pid */
	bl_time_ns begun_ns;         /* before the scan */
	bl_time_ns at_ns;            /* the middle of the scan */
	int rc;
};

struct bl_supervisor {
	uv_loop_t *loop;
	char **argv;                 /* owned copy */
	char **envp;                 /* inherited + extra + BALLAST_URL + 1 slot */
	size_t env_slot;             /* index of the BALLAST_WORKER_ID slot */
	char *cwd;                   /* NULL: the daemon's */
	char *proc_root;
	uint32_t min_replicas, max_replicas;
	int64_t grace_ns, backoff_base_ns, backoff_max_ns, backoff_reset_ns, startup_ns;
	int64_t sample_interval_ns;
	bl_supervisor_event_fn on_event;
	void *ctx;

	struct worker *head, *tail;  /* live workers */
	uint32_t n_live;
	uint64_t next_seq;
	uint32_t desired;
	uint64_t spawns, spawn_failures, crashes, kills;

	struct bl_supervisor_worker *hist; /* ring of exited workers */
	uint32_t hist_cap, hist_len, hist_start;

	uv_timer_t sample_timer;
	struct sample_job *job;      /* in flight, or NULL */
	uv_timer_t orphan_timer;     /* SIGKILL for the orphans still there after grace */
	struct bl_supervisor_identity *orphans; /* stopped at create, awaiting SIGKILL */
	size_t n_orphans;
	uint32_t orphans_stopped;
	long clk_tck;
	long page_size;

	bool shutting_down;
	bool done_called;
	int64_t shutdown_grace_ns;
	uint32_t pending_closes;     /* handles closing: freed workers, the sample timer */
	bl_supervisor_done_fn done;
	void *done_ctx;
};

static uint64_t ns_to_ms_ceil(int64_t ns)
{
	return ns <= 0 ? 0 : (uint64_t)((ns + BL_NS_PER_MS - 1) / BL_NS_PER_MS);
}

const char *bl_supervisor_state_name(enum bl_supervisor_state state)
{
	switch (state) {
	case BL_WORKER_STARTING:
		return "starting";
	case BL_WORKER_RUNNING:
		return "running";
	case BL_WORKER_STOPPING:
		return "stopping";
	case BL_WORKER_BACKOFF:
		return "backoff";
	case BL_WORKER_EXITED:
		return "exited";
	}
	return "unknown";
}

static void emit(struct worker *w, enum bl_supervisor_event_kind kind)
{
	struct bl_supervisor *sup = w->sup;
	struct bl_supervisor_event ev = {
		.kind = kind,
		.id = w->id,
		.pid = w->pid,
		.at_ns = bl_mono_now(),
		.restarts = w->restarts,
		.leases = w->leases,
	};

	if (kind == BL_SUPERVISOR_EV_EXITED || kind == BL_SUPERVISOR_EV_SPAWN_FAILED) {
		ev.exit_status = w->exit_status;
		ev.term_signal = w->term_signal;
		ev.error = w->spawn_error;
		ev.expected = w->stop;
		ev.will_restart = !w->stop;
		ev.restart_in_ns = w->stop ? 0 : w->restart_in_ns;
	}
	if (sup->on_event)
		sup->on_event(sup->ctx, &ev);
}

static void fill_info(const struct worker *w, struct bl_supervisor_worker *out)
{
	memset(out, 0, sizeof *out);
	memcpy(out->id, w->id, sizeof out->id);
	out->state = w->state;
	out->pid = w->pid;
	out->created_ns = w->created_ns;
	out->started_ns = w->started_ns;
	out->until_ns = w->until_ns;
	out->restarts = w->restarts;
	out->leases = w->leases;
	out->cpu_cores = w->cpu_cores;
	out->rss_bytes = w->rss_bytes;
	out->procs = w->procs;
	out->sampled_ns = w->sampled_ns;
	out->has_exit = w->has_exit;
	out->last_exit_status = w->exit_status;
	out->last_term_signal = w->term_signal;
	out->last_spawn_error = w->spawn_error;
}

static void maybe_done(struct bl_supervisor *sup)
{
	if (!sup->shutting_down || sup->done_called || sup->n_live || sup->pending_closes ||
	    sup->job)
		return;
	sup->done_called = true;
	bl_log(BL_LOG_INFO, "supervisor stopped", "spawns=%" PRIu64 " crashes=%" PRIu64
	       " kills=%" PRIu64, sup->spawns, sup->crashes, sup->kills);
	if (sup->done)
		sup->done(sup->done_ctx);
}

/* ---- the life of a worker -------------------------------------------------- */

static void spawn_worker(struct worker *w);
static void on_worker_timer(uv_timer_t *t);

/* Signals the worker's whole process group, or at least its leader. */
static void signal_group(struct worker *w, int sig)
{
	if (w->pid <= 0)
		return;
	if (kill(-w->pid, sig) != 0 && w->proc_open)
		uv_process_kill(&w->proc, sig);
}

static void on_worker_timer_closed(uv_handle_t *h)
{
	struct worker *w = h->data;
	struct bl_supervisor *sup = w->sup;

	free(w);
	sup->pending_closes--;
	maybe_done(sup);
}

/* The worker is gone for good: out of the live list, into the history. */
static void finish_worker(struct worker *w)
{
	struct bl_supervisor *sup = w->sup;

	w->state = BL_WORKER_EXITED;
	w->until_ns = 0;
	w->pid = 0;
	w->cpu_cores = 0;
	w->rss_bytes = 0;
	w->procs = 0;
	if (w->prev)
		w->prev->next = w->next;
	else
		sup->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		sup->tail = w->prev;
	sup->n_live--;
	if (sup->hist_cap) {
		uint32_t at;

		if (sup->hist_len < sup->hist_cap) {
			at = (sup->hist_start + sup->hist_len++) % sup->hist_cap;
		} else {
			at = sup->hist_start;
			sup->hist_start = (sup->hist_start + 1) % sup->hist_cap;
		}
		fill_info(w, &sup->hist[at]);
	}
	bl_log(BL_LOG_INFO, "worker removed", "id=%s restarts=%" PRIu32, w->id, w->restarts);
	emit(w, BL_SUPERVISOR_EV_REMOVED);
	uv_timer_stop(&w->timer);
	sup->pending_closes++;
	uv_close((uv_handle_t *)&w->timer, on_worker_timer_closed);
}

/* The delay before the next restart, and the backoff's progress. */
static int64_t next_backoff(struct worker *w, int64_t uptime_ns)
{
	struct bl_supervisor *sup = w->sup;
	int64_t delay = sup->backoff_base_ns;

	if (uptime_ns >= sup->backoff_reset_ns)
		w->failures = 0;
	for (uint32_t i = 0; i < w->failures && delay > 0 && delay < sup->backoff_max_ns; i++)
		delay = delay > INT64_MAX / 2 ? INT64_MAX : delay * 2;
	if (delay > sup->backoff_max_ns)
		delay = sup->backoff_max_ns;
	if (w->failures < UINT32_MAX)
		w->failures++;
	return delay;
}

static void on_proc_closed(uv_handle_t *h)
{
	struct worker *w = h->data;

	w->proc_open = false;
	if (w->stop) {
		finish_worker(w);
		return;
	}
	/* state is BACKOFF: set when the process ended or failed to start */
	w->until_ns = bl_mono_now() + w->restart_in_ns;
	bl_timer_start(&w->timer, on_worker_timer, ns_to_ms_ceil(w->restart_in_ns), 0);
}

static void on_proc_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct worker *w = p->data;
	struct bl_supervisor *sup = w->sup;
	bl_time_ns now = bl_mono_now();
	char idq[64];

	/* A worker is its group: nothing of it outlives its leader. */
	if (kill(-w->pid, SIGKILL) == 0)
		bl_log(BL_LOG_DEBUG, "worker group cleaned up", "id=%s pgid=%d", w->id, w->pid);
	uv_timer_stop(&w->timer);
	w->until_ns = 0;
	w->has_exit = true;
	w->exit_status = exit_status;
	w->term_signal = term_signal;
	w->cpu_cores = 0;
	w->rss_bytes = 0;
	w->procs = 0;
	bl_log_quote(idq, sizeof idq, w->id);
	if (w->stop) {
		bl_log(BL_LOG_INFO, "worker exited", "id=%s pid=%d status=%" PRId64 " signal=%d",
		       idq, w->pid, exit_status, term_signal);
	} else {
		sup->crashes++;
		w->restart_in_ns = next_backoff(w, now - w->started_ns);
		w->state = BL_WORKER_BACKOFF;
		w->until_ns = now + w->restart_in_ns;
		bl_log(BL_LOG_WARN, "worker exited unexpectedly",
		       "id=%s pid=%d status=%" PRId64 " signal=%d restart_in_ms=%" PRIu64, idq,
		       w->pid, exit_status, term_signal, ns_to_ms_ceil(w->restart_in_ns));
	}
	emit(w, BL_SUPERVISOR_EV_EXITED);
	w->pid = 0;
	uv_close((uv_handle_t *)&w->proc, on_proc_closed);
}

/* The worker's timer: what it means depends on the state. */
static void on_worker_timer(uv_timer_t *t)
{
	struct worker *w = t->data;

	switch (w->state) {
	case BL_WORKER_STARTING:
		w->state = BL_WORKER_RUNNING;
		emit(w, BL_SUPERVISOR_EV_RUNNING);
		break;
	case BL_WORKER_BACKOFF:
		if (!w->proc_open && !w->stop) {
			w->restarts++;
			spawn_worker(w);
		}
		break;
	case BL_WORKER_STOPPING:
		if (w->pid > 0) {
			signal_group(w, SIGKILL);
			w->sup->kills++;
			w->until_ns = 0;
			bl_log(BL_LOG_WARN, "worker killed after grace", "id=%s pid=%d leases=%"
			       PRIu32, w->id, w->pid, w->leases);
			emit(w, BL_SUPERVISOR_EV_KILLED);
		}
		break;
	case BL_WORKER_RUNNING:
	case BL_WORKER_EXITED:
		break;
	}
}

static void spawn_worker(struct worker *w)
{
	struct bl_supervisor *sup = w->sup;
	uv_process_options_t opt;
	uv_stdio_container_t stdio[3];
	int rc;

	memset(&opt, 0, sizeof opt);
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 1;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	sup->envp[sup->env_slot] = w->env_id;
	opt.exit_cb = on_proc_exit;
	opt.file = sup->argv[0];
	opt.args = sup->argv;
	opt.env = sup->envp;
	opt.cwd = sup->cwd;
	/* setsid(): a session and process group of its own, so kill(-pid)
	 * reaches the whole tree and the daemon's terminal signals do not. */
	opt.flags = UV_PROCESS_DETACHED;
	opt.stdio_count = 3;
	opt.stdio = stdio;

	w->proc.data = w;
	w->started_ns = bl_mono_now();
	w->until_ns = 0;
	rc = uv_spawn(sup->loop, &w->proc, &opt);
	sup->envp[sup->env_slot] = NULL;
	w->proc_open = true;
	w->cpu_cores = 0;
	w->rss_bytes = 0;
	w->procs = 0;
	w->sampled_ns = 0;
	if (rc != 0) {
		char cmd[256];

		sup->spawn_failures++;
		w->spawn_error = rc;
		w->pid = 0;
		w->state = BL_WORKER_BACKOFF;
		w->restart_in_ns = next_backoff(w, 0);
		w->until_ns = w->started_ns + w->restart_in_ns;
		bl_log(BL_LOG_ERROR, "worker failed to start",
		       "id=%s command=%s error=%s restart_in_ms=%" PRIu64, w->id,
		       bl_log_quote(cmd, sizeof cmd, sup->argv[0]), uv_strerror(rc),
		       ns_to_ms_ceil(w->restart_in_ns));
		emit(w, BL_SUPERVISOR_EV_SPAWN_FAILED);
		uv_close((uv_handle_t *)&w->proc, on_proc_closed);
		return;
	}
	sup->spawns++;
	w->spawn_error = 0;
	w->pid = w->proc.pid;
	{
		struct bl_proc_stat st;

		w->start_ticks = bl_proc_stat_read(sup->proc_root, w->pid, &st) == 0 ? st.start_ticks
										     : 0;
	}
	w->base_pid = w->pid;
	w->base_ticks = 0;
	w->base_ns = w->started_ns;
	bl_log(BL_LOG_INFO, "worker started", "id=%s pid=%d restarts=%" PRIu32, w->id, w->pid,
	       w->restarts);
	if (sup->startup_ns > 0) {
		w->state = BL_WORKER_STARTING;
		emit(w, BL_SUPERVISOR_EV_STARTED);
		bl_timer_start(&w->timer, on_worker_timer, ns_to_ms_ceil(sup->startup_ns), 0);
	} else {
		w->state = BL_WORKER_RUNNING;
		emit(w, BL_SUPERVISOR_EV_STARTED);
		emit(w, BL_SUPERVISOR_EV_RUNNING);
	}
}

/* Asks w to stop: SIGTERM now, SIGKILL once grace_ns has passed. A worker
 * without a process goes at once (or when its handle is closed). */
static void stop_worker(struct worker *w, int64_t grace_ns)
{
	bl_time_ns deadline = bl_mono_now() + grace_ns;

	if (w->stop) {
		/* already stopping: a shutdown may only bring the SIGKILL closer */
		if (w->state == BL_WORKER_STOPPING && w->pid > 0 && w->until_ns > deadline) {
			w->until_ns = deadline;
			bl_timer_start(&w->timer, on_worker_timer, ns_to_ms_ceil(grace_ns), 0);
		}
		return;
	}
	w->stop = true;
	if (w->state == BL_WORKER_BACKOFF || w->pid <= 0) {
		uv_timer_stop(&w->timer);
		w->until_ns = 0;
		if (!w->proc_open)
			finish_worker(w);
		return; /* else on_proc_closed finishes it */
	}
	w->state = BL_WORKER_STOPPING;
	w->until_ns = deadline;
	bl_log(BL_LOG_INFO, "worker stopping", "id=%s pid=%d leases=%" PRIu32 " grace_ms=%" PRIu64,
	       w->id, w->pid, w->leases, ns_to_ms_ceil(grace_ns));
	signal_group(w, SIGTERM);
	emit(w, BL_SUPERVISOR_EV_STOPPING);
	bl_timer_start(&w->timer, on_worker_timer, ns_to_ms_ceil(grace_ns), 0);
}

/* ---- sampling ---------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static void sample_work(uv_work_t *req)
{
	struct sample_job *job = req->data;
	bl_time_ns t0 = bl_mono_now();

	job->rc = bl_proc_usage_of(job->sup->proc_root, job->pids, job->n, job->usage);
	job->at_ns = t0 + (bl_mono_now() - t0) / 2;
}

static void free_job(struct sample_job *job)
{
	free(job->usage);
	free(job->pids);
	free(job);
}

static void apply_sample(struct bl_supervisor *sup, struct worker *w,
			 const struct bl_proc_usage *u, bl_time_ns at)
{
	int64_t dt;

	if (u->procs == 0)
		return; /* exited during the scan; its exit callback is on its way */
	w->rss_bytes = u->rss_pages * (uint64_t)sup->page_size;
	w->procs = u->procs;
	w->sampled_ns = at;
	if (w->base_pid != w->pid) {
		w->base_pid = w->pid;
		w->base_ticks = 0;
		w->base_ns = w->started_ns;
	}
	if (u->ticks < w->base_ticks) {
		/* a process left the tree taking its time with it: start over */
		w->base_ticks = u->ticks;
		w->base_ns = at;
		return;
	}
	dt = at - w->base_ns;
	/* Ticks are 10 ms: a rate over much less than an interval is noise. */
	if (dt < sup->sample_interval_ns / 2 || dt <= 0)
		return;
	w->cpu_cores = (double)(u->ticks - w->base_ticks) / (double)sup->clk_tck /
		       ((double)dt / (double)BL_NS_PER_S);
	w->base_ticks = u->ticks;
	w->base_ns = at;
}

static void sample_after(uv_work_t *req, int status)
{
	struct sample_job *job = req->data;
	struct bl_supervisor *sup = job->sup;

	sup->job = NULL;
	if (status == 0 && job->rc == 0 && !sup->shutting_down) {
		for (struct worker *w = sup->head; w; w = w->next) {
			int *hit;

			if (w->pid <= 0 || w->started_ns > job->begun_ns)
				continue;
			hit = bsearch(&w->pid, job->pids, job->n, sizeof *job->pids, cmp_int);
			if (hit)
				apply_sample(sup, w, &job->usage[hit - job->pids], job->at_ns);
		}
	} else if (status == 0 && job->rc != 0) {
		bl_log(BL_LOG_WARN, "worker sampling failed", "proc=%s error=%s", sup->proc_root,
		       bl_strerror(job->rc));
	}
	free_job(job);
	maybe_done(sup);
}

static void on_sample_timer(uv_timer_t *t)
{
	struct bl_supervisor *sup = t->data;
	struct sample_job *job;
	size_t n = 0, i = 0;

	if (sup->job || sup->shutting_down)
		return; /* the last scan is still running: skip a beat */
	for (struct worker *w = sup->head; w; w = w->next)
		n += w->pid > 0;
	if (n == 0)
		return;
	job = calloc(1, sizeof *job);
	if (!job)
		return;
	job->pids = malloc(n * sizeof *job->pids);
	job->usage = calloc(n, sizeof *job->usage);
	if (!job->pids || !job->usage) {
		free_job(job);
		return;
	}
	for (struct worker *w = sup->head; w; w = w->next)
		if (w->pid > 0)
			job->pids[i++] = w->pid;
	qsort(job->pids, n, sizeof *job->pids, cmp_int);
	job->n = n;
	job->sup = sup;
	job->req.data = job;
	job->begun_ns = bl_mono_now();
	if (uv_queue_work(sup->loop, &job->req, sample_work, sample_after) != 0) {
		free_job(job);
		return;
	}
	sup->job = job;
}

/* ---- the API --------------------------------------------------------------------- */

void bl_supervisor_config_defaults(struct bl_supervisor_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->min_replicas = 0;
	cfg->max_replicas = 100;
	cfg->grace_ns = DEFAULT_GRACE_NS;
	cfg->backoff_base_ns = DEFAULT_BACKOFF_BASE_NS;
	cfg->backoff_max_ns = DEFAULT_BACKOFF_MAX_NS;
	cfg->backoff_reset_ns = DEFAULT_BACKOFF_RESET_NS;
	cfg->startup_ns = DEFAULT_STARTUP_NS;
	cfg->sample_interval_ns = DEFAULT_SAMPLE_INTERVAL_NS;
	cfg->history = DEFAULT_HISTORY;
	cfg->proc_root = "/proc";
}

static int check_duration(const char *name, int64_t v, char *err, size_t errcap)
{
	if (v < 0 || v > MAX_DURATION_NS)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "%s: %" PRId64 " ns is out of range (0 .. 7 days)", name, v);
	return 0;
}

static void on_sample_timer_closed(uv_handle_t *h)
{
	struct bl_supervisor *sup = h->data;

	sup->pending_closes--;
	maybe_done(sup);
}

/* ---- workers an earlier daemon left behind --------------------------------- */

/* Whether id is still that process, alive and leading its own group. */
static bool still_orphan(const struct bl_supervisor *sup, const struct bl_supervisor_identity *id)
{
	struct bl_proc_stat st;

	return id->pid > 1 && id->start_ticks &&
	       bl_proc_stat_read(sup->proc_root, id->pid, &st) == 0 &&
	       st.start_ticks == id->start_ticks && st.pgrp == id->pid && st.state != 'Z';
}

/* Sends sig to the groups of the orphans that are still theirs. */
static void signal_orphans(struct bl_supervisor *sup, int sig)
{
	for (size_t i = 0; i < sup->n_orphans; i++) {
		const struct bl_supervisor_identity *id = &sup->orphans[i];

		if (!still_orphan(sup, id))
			continue;
		if (kill(-id->pid, sig) != 0)
			continue;
		bl_log(BL_LOG_WARN, sig == SIGKILL ? "orphaned worker killed" : "orphaned worker stopped",
		       "pid=%d signal=%s", id->pid, sig == SIGKILL ? "KILL" : "TERM");
		if (sig == SIGKILL)
			sup->kills++;
	}
	if (sig == SIGKILL) {
		free(sup->orphans);
		sup->orphans = NULL;
		sup->n_orphans = 0;
	}
}

static void on_orphan_timer(uv_timer_t *t)
{
	signal_orphans(t->data, SIGKILL);
}

static void on_orphan_timer_closed(uv_handle_t *h)
{
	struct bl_supervisor *sup = h->data;

	sup->pending_closes--;
	maybe_done(sup);
}

/* Stops the workers a killed daemon left running (create's contract).
 * sup->orphans has room for n. */
static void stop_orphans(struct bl_supervisor *sup, const struct bl_supervisor_identity *ids,
			 size_t n)
{
	size_t kept = 0;

	for (size_t i = 0; i < n; i++)
		if (still_orphan(sup, &ids[i]))
			sup->orphans[kept++] = ids[i];
	sup->n_orphans = kept;
	sup->orphans_stopped = (uint32_t)kept;
	if (!kept)
		return;
	signal_orphans(sup, sup->grace_ns > 0 ? SIGTERM : SIGKILL);
	if (sup->n_orphans)
		bl_timer_start(&sup->orphan_timer, on_orphan_timer, ns_to_ms_ceil(sup->grace_ns), 0);
}

/* Frees sup and what it owns (not its workers: there are none left). */
static void free_supervisor(struct bl_supervisor *sup)
{
	free(sup->orphans);
	free(sup->hist);
	free(sup->proc_root);
	free(sup->cwd);
	bl_strv_free(sup->argv);
	/* the BALLAST_WORKER_ID slot is NULL between spawns: the URL is freed too */
	bl_strv_free(sup->envp);
	free(sup);
}

int bl_supervisor_create(uv_loop_t *loop, const struct bl_supervisor_config *cfg,
			 struct bl_supervisor **out, char *err, size_t errcap)
{
	struct bl_supervisor *sup;
	char *url_env;
	size_t n_env, n_url;
	int rc;

	if (!loop || !cfg || !out)
		return bl_errorf(err, errcap, BL_EINVAL, "supervisor: loop, config and out are required");
	if (!cfg->argv || !cfg->argv[0] || !cfg->argv[0][0])
		return bl_errorf(err, errcap, BL_EINVAL,
				 "command: a worker command (a non-empty argv) is required");
	if (!cfg->ballast_url || !cfg->ballast_url[0])
		return bl_errorf(err, errcap, BL_EINVAL, "ballast_url: required (BALLAST_URL of workers)");
	if (cfg->max_replicas < 1 || cfg->max_replicas > BL_SUPERVISOR_MAX_REPLICAS)
		return bl_errorf(err, errcap, BL_EINVAL, "max_replicas: %" PRIu32
				 " is out of range (1 .. %d)", cfg->max_replicas,
				 BL_SUPERVISOR_MAX_REPLICAS);
	if (cfg->min_replicas > cfg->max_replicas)
		return bl_errorf(err, errcap, BL_EINVAL, "min_replicas: %" PRIu32
				 " is above max_replicas %" PRIu32, cfg->min_replicas,
				 cfg->max_replicas);
	if ((rc = check_duration("grace", cfg->grace_ns, err, errcap)) ||
	    (rc = check_duration("backoff_base", cfg->backoff_base_ns, err, errcap)) ||
	    (rc = check_duration("backoff_max", cfg->backoff_max_ns, err, errcap)) ||
	    (rc = check_duration("backoff_reset", cfg->backoff_reset_ns, err, errcap)) ||
	    (rc = check_duration("startup", cfg->startup_ns, err, errcap)) ||
	    (rc = check_duration("sample_interval", cfg->sample_interval_ns, err, errcap)))
		return rc;
	if (cfg->backoff_max_ns < cfg->backoff_base_ns)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "backoff_max: below backoff_base (%" PRId64 " < %" PRId64 " ns)",
				 cfg->backoff_max_ns, cfg->backoff_base_ns);
	if (cfg->history > BL_SUPERVISOR_HISTORY_MAX)
		return bl_errorf(err, errcap, BL_EINVAL, "history: %" PRIu32
				 " is above %d", cfg->history, BL_SUPERVISOR_HISTORY_MAX);

	sup = calloc(1, sizeof *sup);
	if (!sup)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	sup->loop = loop;
	/* two slots: BALLAST_URL, then BALLAST_WORKER_ID per spawn */
	rc = bl_spawn_env_build(cfg->env, cfg->clear_env, reserved_env, 2, &sup->envp, &n_env,
				err, errcap);
	if (rc)
		goto out_free_sup;
	n_url = strlen("BALLAST_URL=") + strlen(cfg->ballast_url) + 1;
	url_env = malloc(n_url);
	if (!url_env)
		goto out_nomem;
	snprintf(url_env, n_url, "BALLAST_URL=%s", cfg->ballast_url);
	sup->envp[n_env] = url_env;
	sup->env_slot = n_env + 1;
	sup->argv = bl_strv_dup(cfg->argv, 0, NULL);
	sup->cwd = cfg->cwd ? strdup(cfg->cwd) : NULL;
	sup->proc_root = strdup(cfg->proc_root ? cfg->proc_root : "/proc");
	sup->hist_cap = cfg->history;
	sup->hist = cfg->history ? calloc(cfg->history, sizeof *sup->hist) : NULL;
	sup->orphans = cfg->n_orphans && cfg->orphans
			       ? calloc(cfg->n_orphans, sizeof *sup->orphans) : NULL;
	if (!sup->argv || (cfg->cwd && !sup->cwd) || !sup->proc_root ||
	    (cfg->history && !sup->hist) || (cfg->n_orphans && cfg->orphans && !sup->orphans))
		goto out_nomem;

	sup->min_replicas = cfg->min_replicas;
	sup->max_replicas = cfg->max_replicas;
	sup->grace_ns = cfg->grace_ns;
	sup->backoff_base_ns = cfg->backoff_base_ns;
	sup->backoff_max_ns = cfg->backoff_max_ns;
	sup->backoff_reset_ns = cfg->backoff_reset_ns;
	sup->startup_ns = cfg->startup_ns;
	sup->sample_interval_ns = cfg->sample_interval_ns;
	sup->on_event = cfg->on_event;
	sup->ctx = cfg->ctx;
	sup->next_seq = cfg->first_seq ? cfg->first_seq : 1;
	sup->clk_tck = sysconf(_SC_CLK_TCK);
	sup->page_size = sysconf(_SC_PAGESIZE);
	if (sup->clk_tck <= 0)
		sup->clk_tck = 100;
	if (sup->page_size <= 0)
		sup->page_size = 4096;

	uv_timer_init(loop, &sup->sample_timer);
	sup->sample_timer.data = sup;
	if (sup->sample_interval_ns > 0) {
		uint64_t ms = ns_to_ms_ceil(sup->sample_interval_ns);

		bl_timer_start(&sup->sample_timer, on_sample_timer, ms, ms);
	}
	/* sampling alone must not keep the loop running */
	uv_unref((uv_handle_t *)&sup->sample_timer);
	uv_timer_init(loop, &sup->orphan_timer);
	sup->orphan_timer.data = sup;
	stop_orphans(sup, cfg->orphans, cfg->n_orphans);
	*out = sup;
	return 0;

out_nomem:
	rc = bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
out_free_sup:
	free_supervisor(sup);
	return rc;
}

size_t bl_supervisor_identities(const struct bl_supervisor *sup,
				struct bl_supervisor_identity *out, size_t cap)
{
	size_t n = 0;

	for (const struct worker *w = sup->head; w; w = w->next) {
		if (!w->pid || !w->start_ticks)
			continue;
		if (n < cap)
			out[n] = (struct bl_supervisor_identity){w->pid, w->start_ticks};
		n++;
	}
	return n;
}

uint64_t bl_supervisor_next_seq(const struct bl_supervisor *sup)
{
	return sup->next_seq;
}

/* Scale-down order: no process first (nothing to lose), then fewest leases,
 * then the most recently started (least warmed up), then the newest id. */
static int cmp_victims(const void *a, const void *b)
{
	const struct worker *x = *(struct worker *const *)a;
	const struct worker *y = *(struct worker *const *)b;
	bool xb = x->state == BL_WORKER_BACKOFF, yb = y->state == BL_WORKER_BACKOFF;

	if (xb != yb)
		return xb ? -1 : 1;
	if (x->leases != y->leases)
		return x->leases < y->leases ? -1 : 1;
	if (x->started_ns != y->started_ns)
		return x->started_ns > y->started_ns ? -1 : 1;
	return x->seq > y->seq ? -1 : x->seq < y->seq;
}

int bl_supervisor_scale(struct bl_supervisor *sup, uint32_t desired)
{
	uint32_t active = 0;

	if (sup->shutting_down)
		return BL_EINVAL;
	if (desired < sup->min_replicas)
		desired = sup->min_replicas;
	if (desired > sup->max_replicas)
		desired = sup->max_replicas;
	for (struct worker *w = sup->head; w; w = w->next)
		active += !w->stop;

	if (active < desired) {
		uint32_t need = desired - active;
		struct worker **fresh = calloc(need, sizeof *fresh);

		if (!fresh)
			return BL_ENOMEM;
		for (uint32_t i = 0; i < need; i++) {
			if (!(fresh[i] = calloc(1, sizeof **fresh))) {
				for (uint32_t j = 0; j < i; j++)
					free(fresh[j]);
				free(fresh);
				return BL_ENOMEM;
			}
		}
		sup->desired = desired;
		for (uint32_t i = 0; i < need; i++) {
			struct worker *w = fresh[i];

			w->sup = sup;
			w->seq = sup->next_seq++;
			snprintf(w->id, sizeof w->id, "w-%" PRIu64, w->seq);
			snprintf(w->env_id, sizeof w->env_id, "BALLAST_WORKER_ID=%s", w->id);
			w->created_ns = bl_mono_now();
			uv_timer_init(sup->loop, &w->timer);
			w->timer.data = w;
			w->prev = sup->tail;
			if (sup->tail)
				sup->tail->next = w;
			else
				sup->head = w;
			sup->tail = w;
			sup->n_live++;
			spawn_worker(w);
		}
		free(fresh);
	} else if (active > desired) {
		struct worker **victims = calloc(active, sizeof *victims);
		uint32_t n = 0;

		if (!victims)
			return BL_ENOMEM;
		sup->desired = desired;
		for (struct worker *w = sup->head; w; w = w->next)
			if (!w->stop)
				victims[n++] = w;
		qsort(victims, n, sizeof *victims, cmp_victims);
		for (uint32_t i = 0; i < active - desired; i++)
			stop_worker(victims[i], sup->grace_ns);
		free(victims);
	} else {
		sup->desired = desired;
	}
	return 0;
}

static struct worker *find_live(const struct bl_supervisor *sup, const char *id)
{
	for (struct worker *w = sup->head; w; w = w->next)
		if (strcmp(w->id, id) == 0)
			return w;
	return NULL;
}

int bl_supervisor_set_busy(struct bl_supervisor *sup, const char *id, uint32_t leases)
{
	struct worker *w = id ? find_live(sup, id) : NULL;

	if (!w)
		return BL_ENOENT;
	w->leases = leases;
	return 0;
}

void bl_supervisor_stats(const struct bl_supervisor *sup, struct bl_supervisor_stats *out)
{
	memset(out, 0, sizeof *out);
	out->desired = sup->desired;
	out->spawns = sup->spawns;
	out->spawn_failures = sup->spawn_failures;
	out->crashes = sup->crashes;
	out->kills = sup->kills;
	out->orphans_stopped = sup->orphans_stopped;
	out->shutting_down = sup->shutting_down;
	for (const struct worker *w = sup->head; w; w = w->next) {
		switch (w->state) {
		case BL_WORKER_STARTING:
			out->starting++;
			break;
		case BL_WORKER_RUNNING:
			out->running++;
			break;
		case BL_WORKER_STOPPING:
			out->stopping++;
			break;
		case BL_WORKER_BACKOFF:
			out->backoff++;
			break;
		case BL_WORKER_EXITED:
			break;
		}
		out->cpu_cores += w->cpu_cores;
		out->rss_bytes += w->rss_bytes;
	}
	out->current = out->starting + out->running;
}

size_t bl_supervisor_workers(const struct bl_supervisor *sup, struct bl_supervisor_worker *out,
			     size_t cap)
{
	size_t n = 0;

	for (const struct worker *w = sup->head; w; w = w->next, n++)
		if (n < cap)
			fill_info(w, &out[n]);
	for (uint32_t i = 0; i < sup->hist_len; i++, n++)
		if (n < cap)
			out[n] = sup->hist[(sup->hist_start + i) % sup->hist_cap];
	return n;
}

int bl_supervisor_worker(const struct bl_supervisor *sup, const char *id,
			 struct bl_supervisor_worker *out)
{
	const struct worker *w = id ? find_live(sup, id) : NULL;

	if (!w)
		return BL_ENOENT;
	fill_info(w, out);
	return 0;
}

void bl_supervisor_shutdown(struct bl_supervisor *sup, int64_t grace_ns,
			    bl_supervisor_done_fn done, void *ctx)
{
	struct worker *w, *next;

	if (sup->shutting_down)
		return;
	sup->shutting_down = true;
	sup->done = done;
	sup->done_ctx = ctx;
	sup->shutdown_grace_ns = grace_ns < 0 ? sup->grace_ns : grace_ns;
	bl_log(BL_LOG_INFO, "supervisor stopping", "workers=%" PRIu32 " grace_ms=%" PRIu64,
	       sup->n_live, ns_to_ms_ceil(sup->shutdown_grace_ns));
	uv_timer_stop(&sup->sample_timer);
	sup->pending_closes++;
	uv_close((uv_handle_t *)&sup->sample_timer, on_sample_timer_closed);
	/* Orphans still inside their grace go now: the daemon is leaving. */
	if (sup->n_orphans)
		signal_orphans(sup, SIGKILL);
	uv_timer_stop(&sup->orphan_timer);
	sup->pending_closes++;
	uv_close((uv_handle_t *)&sup->orphan_timer, on_orphan_timer_closed);
	if (sup->job)
		uv_cancel((uv_req_t *)&sup->job->req); /* or let it finish: sample_after copes */
	for (w = sup->head; w; w = next) {
		next = w->next;
		stop_worker(w, sup->shutdown_grace_ns);
	}
	maybe_done(sup);
}

void bl_supervisor_destroy(struct bl_supervisor *sup)
{
	if (!sup)
		return;
	if (!sup->done_called) {
		bl_log(BL_LOG_ERROR, "bl_supervisor_destroy before shutdown completed", NULL);
		abort();
	}
	free_supervisor(sup);
}
