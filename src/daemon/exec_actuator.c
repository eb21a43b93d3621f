/* The exec actuator: one operator command at a time, the latest count next.
 * See exec_actuator.h and docs/internals/supervisor.md.
 *
 * A run goes RUNNING (the command is alive) -> DRAINING (it exited; reading
 * what is left of its stderr) -> CLOSING (its handles are closing) -> IDLE,
 * and only then is its result final and the next request started. The one
 * timer serves the timeout, the SIGKILL after it, and the wait for stderr.
 */
#include "exec_actuator.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "clock.h"
#include "log.h"
#include "spawnenv.h"

#define DEFAULT_TIMEOUT_NS (60 * BL_NS_PER_S)
#define DEFAULT_KILL_GRACE_NS (5 * BL_NS_PER_S)
#define DEFAULT_TAIL_BYTES 4096
#define MAX_DURATION_NS (INT64_C(24) * 3600 * BL_NS_PER_S)
/* After the command exits, how long its stderr may stay open (held by a
 * descendant that left its group) before the run is called over anyway. */
#define STDERR_DRAIN_MS 1000
#define READ_CHUNK 16384

enum phase { PHASE_IDLE, PHASE_RUNNING, PHASE_DRAINING, PHASE_CLOSING };

struct bl_exec_actuator {
	uv_loop_t *loop;
	char **argv;                /* the command, then one slot for the count */
	size_t argc;                /* strings before that slot */
	char **envp;
	char *cwd;
	int64_t timeout_ns;
	int64_t kill_grace_ns;
	size_t tail_cap;            /* bytes of stderr kept */
	bl_exec_done_fn on_done;
	void *ctx;

	enum phase phase;
	uv_process_t proc;          /* valid while proc_open */
	uv_pipe_t err;              /* the command's stderr, valid while err_open */
	uv_timer_t timer;
	bool proc_open, err_open;
	bool eof;                   /* its stderr is read to the end (or failed) */
	bool term_sent;             /* SIGTERM sent (timeout or shutdown) */
	int pid;
	uint32_t closes;            /* per-run handles still closing */
	char arg[16];               /* the count, as the last argument */
	struct bl_exec_result cur;  /* the run in progress */
	char *tail_run;             /* tail_cap + 1 bytes: stderr of the run in progress */
	size_t tail_run_len;
	char *tail_last;            /* tail_cap + 1 bytes: stderr of the last run */
	char readbuf[READ_CHUNK];

	bool pending;
	uint32_t pending_desired;
	uint64_t runs, failures, timeouts, coalesced;
	bool has_last;
	struct bl_exec_result last;

	bool shutting_down;
	bool done_called;
	bool timer_closing;
	bl_exec_shutdown_fn done;
	void *done_ctx;
};

static uint64_t ns_to_ms_ceil(int64_t ns)
{
	return ns <= 0 ? 0 : (uint64_t)((ns + BL_NS_PER_MS - 1) / BL_NS_PER_MS);
}

static void start_run(struct bl_exec_actuator *a, uint32_t desired);
static void on_timer(uv_timer_t *t);

static void on_timer_closed(uv_handle_t *h)
{
	struct bl_exec_actuator *a = h->data;

	a->done_called = true;
	if (a->done)
		a->done(a->done_ctx);
}

static void maybe_done(struct bl_exec_actuator *a)
{
	if (!a->shutting_down || a->phase != PHASE_IDLE || a->timer_closing)
		return;
	a->timer_closing = true;
	uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}

static void signal_group(struct bl_exec_actuator *a, int sig)
{
	if (a->pid <= 0)
		return;
	if (kill(-a->pid, sig) != 0 && a->proc_open)
		uv_process_kill(&a->proc, sig);
}

/* Every handle of the run is closed: the result is final. */
static void finish_run(struct bl_exec_actuator *a)
{
	struct bl_exec_result *r = &a->cur;
	char *t;
	char tailq[256];

	r->ended_ns = bl_mono_now();
	r->ok = !r->spawn_error && !r->timed_out && r->term_signal == 0 && r->exit_status == 0;
	if (!r->ok)
		a->failures++;
	if (r->timed_out)
		a->timeouts++;
	/* the run's tail becomes the last one */
	t = a->tail_last;
	a->tail_last = a->tail_run;
	a->tail_run = t;
	a->tail_last[a->tail_run_len] = '\0';
	r->stderr_tail = a->tail_last;
	r->stderr_len = a->tail_run_len;
	a->tail_run_len = 0;
	a->last = *r;
	a->has_last = true;
	a->phase = PHASE_IDLE;
	a->pid = 0;

	if (r->ok)
		bl_log(BL_LOG_INFO, "exec actuator done", "desired=%" PRIu32 " duration_ms=%" PRId64,
		       r->desired, (r->ended_ns - r->started_ns) / BL_NS_PER_MS);
	else
		bl_log(BL_LOG_WARN, "exec actuator failed",
		       "desired=%" PRIu32 " status=%" PRId64 " signal=%d timed_out=%s error=%s stderr=%s",
		       r->desired, r->exit_status, r->term_signal, r->timed_out ? "true" : "false",
		       r->spawn_error ? uv_err_name(r->spawn_error) : "none",
		       bl_log_quote(tailq, sizeof tailq, a->tail_last));

	if (!a->shutting_down && a->pending) {
		a->pending = false;
		if (a->pending_desired == a->last.desired && a->last.ok)
			a->coalesced++; /* already applied */
		else
			start_run(a, a->pending_desired);
	}
	if (a->on_done)
		a->on_done(a->ctx, &a->last);
	maybe_done(a);
}

static void on_run_handle_closed(uv_handle_t *h)
{
	struct bl_exec_actuator *a = h->data;

	if (h == (uv_handle_t *)&a->proc)
		a->proc_open = false;
	else
		a->err_open = false;
	if (--a->closes == 0)
		finish_run(a);
}

static void end_run(struct bl_exec_actuator *a)
{
	a->phase = PHASE_CLOSING;
	uv_timer_stop(&a->timer);
	a->closes = (uint32_t)a->proc_open + (uint32_t)a->err_open;
	if (a->proc_open)
		uv_close((uv_handle_t *)&a->proc, on_run_handle_closed);
	if (a->err_open)
		uv_close((uv_handle_t *)&a->err, on_run_handle_closed);
	if (a->closes == 0)
		finish_run(a);
}

static void append_tail(struct bl_exec_actuator *a, const char *data, size_t n)
{
	size_t cap = a->tail_cap;

	if (n >= cap) {
		memcpy(a->tail_run, data + n - cap, cap);
		a->tail_run_len = cap;
		return;
	}
	if (a->tail_run_len + n > cap) {
		size_t drop = a->tail_run_len + n - cap;

		memmove(a->tail_run, a->tail_run + drop, a->tail_run_len - drop);
		a->tail_run_len -= drop;
	}
	memcpy(a->tail_run + a->tail_run_len, data, n);
	a->tail_run_len += n;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct bl_exec_actuator *a = h->data;

	buf->base = a->readbuf;
	buf->len = sizeof a->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct bl_exec_actuator *a = s->data;

	if (nread > 0) {
		append_tail(a, buf->base, (size_t)nread);
		return;
	}
	if (nread == 0)
		return; /* EAGAIN */
	uv_read_stop(s);
	a->eof = true;
	if (a->phase == PHASE_DRAINING)
		end_run(a);
}

static void on_exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct bl_exec_actuator *a = p->data;

	/* nothing of the command outlives it */
	kill(-a->pid, SIGKILL);
	a->cur.exit_status = exit_status;
	a->cur.term_signal = term_signal;
	a->phase = PHASE_DRAINING;
	uv_timer_stop(&a->timer);
	if (a->eof)
		end_run(a);
	else
		bl_timer_start(&a->timer, on_timer, STDERR_DRAIN_MS, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct bl_exec_actuator *a = t->data;

	switch (a->phase) {
	case PHASE_RUNNING:
		if (!a->term_sent) {
			a->term_sent = true;
			a->cur.timed_out = true;
			bl_log(BL_LOG_WARN, "exec actuator timed out", "desired=%" PRIu32 " pid=%d",
			       a->cur.desired, a->pid);
			signal_group(a, SIGTERM);
			bl_timer_start(&a->timer, on_timer, ns_to_ms_ceil(a->kill_grace_ns), 0);
		} else {
			signal_group(a, SIGKILL);
		}
		break;
	case PHASE_DRAINING:
		end_run(a); /* stderr held open by someone else: stop waiting */
		break;
	case PHASE_IDLE:
	case PHASE_CLOSING:
		break;
	}
}

static void start_run(struct bl_exec_actuator *a, uint32_t desired)
{
	uv_process_options_t opt;
	uv_stdio_container_t stdio[3];
	int rc;

	memset(&a->cur, 0, sizeof a->cur);
	a->cur.desired = desired;
	a->cur.started_ns = bl_mono_now();
	a->eof = false;
	a->term_sent = false;
	a->tail_run_len = 0;
	a->phase = PHASE_RUNNING;
	a->runs++;
	snprintf(a->arg, sizeof a->arg, "%" PRIu32, desired);
	a->argv[a->argc] = a->arg;

	uv_pipe_init(a->loop, &a->err, 0);
	a->err.data = a;
	a->err_open = true;
	memset(&opt, 0, sizeof opt);
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_IGNORE;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&a->err;
	opt.exit_cb = on_exit_cb;
	opt.file = a->argv[0];
	opt.args = a->argv;
	opt.env = a->envp;
	opt.cwd = a->cwd;
	opt.flags = UV_PROCESS_DETACHED; /* its own group, so a timeout ends all of it */
	opt.stdio_count = 3;
	opt.stdio = stdio;
	a->proc.data = a;
	rc = uv_spawn(a->loop, &a->proc, &opt);
	a->argv[a->argc] = NULL;
	a->proc_open = true;
	if (rc != 0) {
		a->cur.spawn_error = rc;
		a->pid = 0;
		end_run(a);
		return;
	}
	a->pid = a->proc.pid;
	bl_log(BL_LOG_INFO, "exec actuator running", "desired=%" PRIu32 " pid=%d", desired, a->pid);
	if (uv_read_start((uv_stream_t *)&a->err, on_alloc, on_read) != 0)
		a->eof = true;
	bl_timer_start(&a->timer, on_timer, ns_to_ms_ceil(a->timeout_ns), 0);
}

/* ---- the API ----------------------------------------------------------------- */

void bl_exec_actuator_config_defaults(struct bl_exec_actuator_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->timeout_ns = DEFAULT_TIMEOUT_NS;
	cfg->kill_grace_ns = DEFAULT_KILL_GRACE_NS;
	cfg->stderr_tail_bytes = DEFAULT_TAIL_BYTES;
}

/* Frees a and what it owns. */
static void free_actuator(struct bl_exec_actuator *a)
{
	free(a->tail_last);
	free(a->tail_run);
	free(a->cwd);
	bl_strv_free(a->argv);
	bl_strv_free(a->envp);
	free(a);
}

int bl_exec_actuator_create(uv_loop_t *loop, const struct bl_exec_actuator_config *cfg,
			    struct bl_exec_actuator **out, char *err, size_t errcap)
{
	struct bl_exec_actuator *a;
	size_t n_env;
	int rc;

	if (!loop || !cfg || !out)
		return bl_errorf(err, errcap, BL_EINVAL, "exec actuator: loop, config and out are required");
	if (!cfg->argv || !cfg->argv[0] || !cfg->argv[0][0])
		return bl_errorf(err, errcap, BL_EINVAL,
				 "command: a scaling command (a non-empty argv) is required");
	if (cfg->timeout_ns <= 0 || cfg->timeout_ns > MAX_DURATION_NS)
		return bl_errorf(err, errcap, BL_EINVAL, "timeout: %" PRId64
				 " ns is out of range (more than 0, at most 24h)", cfg->timeout_ns);
	if (cfg->kill_grace_ns < 0 || cfg->kill_grace_ns > MAX_DURATION_NS)
		return bl_errorf(err, errcap, BL_EINVAL, "kill_grace: %" PRId64
				 " ns is out of range (0 .. 24h)", cfg->kill_grace_ns);
	if (cfg->stderr_tail_bytes < 1 || cfg->stderr_tail_bytes > BL_EXEC_TAIL_MAX)
		return bl_errorf(err, errcap, BL_EINVAL, "stderr_tail: %zu bytes is out of range"
				 " (1 .. %d)", cfg->stderr_tail_bytes, BL_EXEC_TAIL_MAX);

	a = calloc(1, sizeof *a);
	if (!a)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	rc = bl_spawn_env_build(cfg->env, cfg->clear_env, NULL, 0, &a->envp, &n_env, err, errcap);
	if (rc)
		goto out_free;
	a->argv = bl_strv_dup(cfg->argv, 1, &a->argc);
	a->cwd = cfg->cwd ? strdup(cfg->cwd) : NULL;
	a->tail_cap = cfg->stderr_tail_bytes;
	a->tail_run = calloc(1, a->tail_cap + 1);
	a->tail_last = calloc(1, a->tail_cap + 1);
	if (!a->argv || (cfg->cwd && !a->cwd) || !a->tail_run || !a->tail_last) {
		rc = bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
		goto out_free;
	}
	a->loop = loop;
	a->timeout_ns = cfg->timeout_ns;
	a->kill_grace_ns = cfg->kill_grace_ns;
	a->on_done = cfg->on_done;
	a->ctx = cfg->ctx;
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	*out = a;
	return 0;

out_free:
	free_actuator(a);
	return rc;
}

int bl_exec_actuator_request(struct bl_exec_actuator *a, uint32_t desired)
{
	if (a->shutting_down)
		return BL_EINVAL;
	if (a->phase != PHASE_IDLE) {
		if (a->pending)
			a->coalesced++;
		a->pending = true;
		a->pending_desired = desired;
		return 0;
	}
	start_run(a, desired);
	return 0;
}

void bl_exec_actuator_stats(const struct bl_exec_actuator *a, struct bl_exec_stats *out)
{
	memset(out, 0, sizeof *out);
	out->running = a->phase != PHASE_IDLE;
	out->running_desired = out->running ? a->cur.desired : 0;
	out->pending = a->pending;
	out->pending_desired = a->pending ? a->pending_desired : 0;
	out->runs = a->runs;
	out->failures = a->failures;
	out->timeouts = a->timeouts;
	out->coalesced = a->coalesced;
	out->has_last = a->has_last;
	if (a->has_last)
		out->last = a->last;
	out->shutting_down = a->shutting_down;
}

void bl_exec_actuator_shutdown(struct bl_exec_actuator *a, bl_exec_shutdown_fn done, void *ctx)
{
	if (a->shutting_down)
		return;
	a->shutting_down = true;
	a->done = done;
	a->done_ctx = ctx;
	if (a->pending) {
		a->pending = false;
		a->coalesced++;
	}
	if (a->phase == PHASE_RUNNING && !a->term_sent) {
		a->term_sent = true;
		signal_group(a, SIGTERM);
		bl_timer_start(&a->timer, on_timer, ns_to_ms_ceil(a->kill_grace_ns), 0);
	}
	maybe_done(a);
}

void bl_exec_actuator_destroy(struct bl_exec_actuator *a)
{
	if (!a)
		return;
	if (!a->done_called) {
		bl_log(BL_LOG_ERROR, "bl_exec_actuator_destroy before shutdown completed", NULL);
		abort();
	}
	free_actuator(a);
}
