#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ballast/error.h"
#include "ballast/units.h"
#include "clock.h"
#include "log.h"

/* SIGTERM must end the process within 5 s: connections get this long to
 * finish, the final snapshot the rest. */
#define DRAIN_DEADLINE_MS 4000
/* Longest SIGTERM-to-SIGKILL for supervised workers at shutdown: inside the drain. */
#define WORKER_GRACE_CAP_NS (INT64_C(3) * BL_NS_PER_S)
/* Longest token file accepted. */
#define MAX_TOKEN_BYTES 4096

int64_t bl_daemon_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool bl_token_equal(const char *given, size_t given_len, const char *expected,
		    size_t expected_len)
{
	unsigned char diff = given_len != expected_len;

	/* Walk the expected token whole, whatever was given: no early exit. */
	for (size_t i = 0; i < expected_len; i++) {
		unsigned char g = given_len ? (unsigned char)given[i % given_len] : 0;
		diff |= g ^ (unsigned char)expected[i];
	}
	return diff == 0;
}

/* Reads the bearer token from path: the whole file, trailing whitespace
 * trimmed. Returns a malloc'd token or NULL with a reason in err. */
static char *read_token(const char *path, size_t *len, char *err, size_t errcap)
{
	char buf[MAX_TOKEN_BYTES + 2];
	size_t n = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *tok;

	if (fd < 0) {
		snprintf(err, errcap, "auth.token_file '%s' cannot be read: %s", path, strerror(errno));
		return NULL;
	}
	while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errcap, "auth.token_file '%s' cannot be read: %s", path,
				 strerror(errno));
			close(fd);
			return NULL;
		}
		n += (size_t)r;
	}
	close(fd);
	if (n > MAX_TOKEN_BYTES) {
		snprintf(err, errcap, "auth.token_file '%s' is larger than %d bytes", path,
			 MAX_TOKEN_BYTES);
		return NULL;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	if (n == 0) {
		snprintf(err, errcap, "auth.token_file '%s' is empty; put the bearer token in it", path);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)buf[i] <= ' ' || (unsigned char)buf[i] >= 0x7f) {
			snprintf(err, errcap,
				 "auth.token_file '%s' holds a space or control byte at offset %zu; "
				 "a token is printable ASCII on one line", path, i);
			return NULL;
		}
	}
	tok = malloc(n + 1);
	if (!tok) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	memcpy(tok, buf, n);
	tok[n] = '\0';
	*len = n;
	return tok;
}

static struct bl_http_limits limits_of(struct bl_daemon *d, const struct bl_config *cfg)
{
	return (struct bl_http_limits){
		.mem = &d->mem,
		.max_connections = cfg->max_connections,
		.max_body = cfg->max_body,
		.max_header = cfg->max_header,
		.request_timeout_ms = (uint64_t)(cfg->request_timeout_ns / BL_NS_PER_MS),
	};
}

static void log_diags(const struct bl_diags *diags, const char *what)
{
	char qpath[256], qmsg[700];

	for (size_t i = 0; i < diags->n; i++) {
		const struct bl_diag *g = &diags->items[i];
		bl_log(BL_LOG_ERROR, what, "file=%s line=%d column=%d path=%s error=%s",
		       bl_log_quote(qmsg, sizeof qmsg, g->file), g->line, g->column,
		       bl_log_quote(qpath, sizeof qpath, g->path[0] ? g->path : "-"),
		       bl_log_quote(qmsg + 350, sizeof qmsg - 350, g->message));
	}
}

/* ---- snapshots -------------------------------------------------------- */

struct snapshot_work {
	uv_work_t work;
	struct bl_daemon *d;
	char *dir;                          /* copy: the config may be reloaded meanwhile */
	struct bl_snapshot_capture *cap;    /* taken on the loop, rendered by the work */
	char *text;
	size_t len;
	int64_t at_ms;
	int rc;
	char err[256];
	struct bl_snapshot_waiter *waiters; /* answered when this write is done */
};

static json_t *daemon_save(void *ctx)
{
	struct bl_daemon *d = ctx;

	return json_pack("{s:I,s:I}", "starts", (json_int_t)d->starts, "first_start_ms",
			 (json_int_t)d->first_start_ms);
}

static int daemon_restore(void *ctx, json_t *state, char *err, size_t errcap)
{
	struct bl_daemon *d = ctx;
	json_int_t starts, first;

	if (json_unpack(state, "{s:I,s:I}", "starts", &starts, "first_start_ms", &first) != 0 ||
	    starts < 0 || first < 0) {
		snprintf(err, errcap, "expected {\"starts\":N,\"first_start_ms\":N}");
		return BL_ECORRUPT;
	}
	d->starts = (uint64_t)starts;
	d->first_start_ms = first;
	return 0;
}

/* The autoscaler starts after the snapshot is read (it needs the listening
 * address): its state is checked now and handed over at its creation. Until
 * then, and when the config has no autoscaler, a save keeps it as read. */
static json_t *autoscaler_save(void *ctx)
{
	struct bl_daemon *d = ctx;
	json_t *state = d->autoscaler ? bl_autoscaler_save(d->autoscaler) : NULL;

	/* Nothing known yet (the kubernetes actuator has not read the count):
	 * keep what the file had rather than drop it. */
	if (!state && d->autoscaler_saved && d->cfg->autoscaler.configured)
		state = json_deep_copy(d->autoscaler_saved); /* rendered off the loop: no sharing */
	return state;
}

static int autoscaler_restore(void *ctx, json_t *state, char *err, size_t errcap)
{
	struct bl_daemon *d = ctx;
	int rc = bl_autoscaler_check_saved(state, err, errcap);

	if (rc == 0) {
		json_decref(d->autoscaler_saved);
		d->autoscaler_saved = json_incref(state);
	}
	return rc;
}

static void snapshot_write_work(uv_work_t *w)
{
	struct snapshot_work *sw = w->data;

	/* Building and serialising the document is the slow part with many
	 * leases: here, off the loop, from the capture. */
	sw->rc = bl_snapshot_render(sw->cap, &sw->text, &sw->len);
	if (sw->rc != 0) {
		snprintf(sw->err, sizeof sw->err, "out of memory serialising the state");
		return;
	}
	sw->rc = bl_snapshot_write_file(sw->dir, sw->text, sw->len, sw->err, sizeof sw->err);
}

static void snapshot_start(struct bl_daemon *d);
static void shutdown_finish(struct bl_daemon *d);

static void answer_waiters(struct bl_daemon *d, struct snapshot_work *sw)
{
	struct bl_snapshot_waiter *w = sw->waiters, *next;

	for (; w; w = next) {
		next = w->next;
		if (w->req) {
			w->req->on_abort = NULL;
			if (sw->rc == 0)
				bl_http_respond_json(
					w->req, 200,
					json_pack("{s:I,s:I,s:s+}", "written_at_ms",
						  (json_int_t)sw->at_ms, "bytes", (json_int_t)sw->len,
						  "path", sw->dir, "/" BL_SNAPSHOT_FILE),
					NULL);
			else
				bl_http_respond_error(w->req, 500, "snapshot_failed",
						      "the snapshot could not be written: %s", sw->err);
		}
		free(w);
	}
	(void)d;
}

static void snapshot_write_done(uv_work_t *w, int status)
{
	struct snapshot_work *sw = w->data;
	struct bl_daemon *d = sw->d;
	char q[300];

	if (status < 0 && sw->rc == 0) {
		sw->rc = BL_EIO;
		snprintf(sw->err, sizeof sw->err, "write cancelled: %s", uv_strerror(status));
	}
	d->snapshot_in_flight = false;
	if (sw->rc == 0) {
		d->snapshot_writes++;
		d->snapshot_last_ms = sw->at_ms;
		d->snapshot_last_bytes = sw->len;
		d->snapshot_last_error[0] = '\0';
		bl_log(BL_LOG_DEBUG, "snapshot written", "bytes=%zu", sw->len);
	} else {
		d->snapshot_failures++;
		snprintf(d->snapshot_last_error, sizeof d->snapshot_last_error, "%s", sw->err);
		bl_log(BL_LOG_ERROR, "snapshot write failed", "dir=%s error=%s",
		       bl_log_quote(q, 150, sw->dir), bl_log_quote(q + 150, 150, sw->err));
	}
	answer_waiters(d, sw);
	bl_snapshot_capture_free(sw->cap); /* here, on the loop: buffers go back for reuse */
	free(sw->dir);
	free(sw->text);
	free(sw);
	if (d->snapshot_again) {
		d->snapshot_again = false;
		snapshot_start(d);
	} else if (d->shutting_down && d->drained) {
		shutdown_finish(d);
	}
}

/* Collects state on the loop thread, writes it in the thread pool. */
static void snapshot_start(struct bl_daemon *d)
{
	struct snapshot_work *sw;
	int rc;

	if (d->snapshot_in_flight) {
		d->snapshot_again = true;
		return;
	}
	sw = calloc(1, sizeof *sw);
	if (!sw)
		goto oom;
	sw->d = d;
	sw->at_ms = bl_daemon_wall_ms();
	sw->dir = strdup(d->cfg->state_dir);
	if (!sw->dir || bl_snapshot_capture(d->snap, sw->at_ms, &sw->cap) != 0)
		goto oom;
	sw->waiters = d->snapshot_waiters;
	d->snapshot_waiters = NULL;
	sw->work.data = sw;
	rc = uv_queue_work(d->loop, &sw->work, snapshot_write_work, snapshot_write_done);
	if (rc < 0) {
		sw->rc = BL_EIO;
		snprintf(sw->err, sizeof sw->err, "cannot queue the write: %s", uv_strerror(rc));
		d->snapshot_in_flight = true;
		snapshot_write_done(&sw->work, 0);
		return;
	}
	d->snapshot_in_flight = true;
	return;
oom:
	if (sw) {
		free(sw->dir);
		free(sw);
	}
	d->snapshot_failures++;
	snprintf(d->snapshot_last_error, sizeof d->snapshot_last_error, "out of memory");
	bl_log(BL_LOG_ERROR, "snapshot skipped: out of memory", NULL);
}

static void on_waiter_abort(struct bl_http_req *req)
{
	struct bl_snapshot_waiter *w = req->handler_data;

	/* The client left: answer into the void, keep the write going. */
	w->req = NULL;
	req->on_abort = NULL;
	bl_http_respond(req, 499, "text/plain", "", 0, NULL);
}

void bl_daemon_snapshot_now(struct bl_daemon *d, struct bl_http_req *waiter)
{
	if (waiter) {
		struct bl_snapshot_waiter *w = calloc(1, sizeof *w);

		if (!w) {
			bl_http_respond_error(waiter, 503, "overloaded", "out of memory");
			return;
		}
		w->req = waiter;
		waiter->handler_data = w;
		waiter->on_abort = on_waiter_abort;
		w->next = d->snapshot_waiters;
		d->snapshot_waiters = w;
	}
	snapshot_start(d);
}

static void on_snapshot_timer(uv_timer_t *t)
{
	snapshot_start(t->data);
}

static void schedule_snapshots(struct bl_daemon *d)
{
	uint64_t ms = (uint64_t)(d->cfg->snapshot_interval_ns / BL_NS_PER_MS);

	uv_timer_start(&d->snapshot_timer, on_snapshot_timer, ms ? ms : 1, ms ? ms : 1);
}

#define SNAPSHOT_SOON_MS 1000

/* A worker process started: its identity should be in the snapshot soon,
 * so the next periodic write is brought forward to within a second. All
 * that start in that second share one write, and a crash-looping worker
 * costs at most one snapshot a second (each one a copy of every lease on
 * the loop), never one per restart. */
static void on_workers_changed(void *ctx)
{
	struct bl_daemon *d = ctx;
	uint64_t ms = (uint64_t)(d->cfg->snapshot_interval_ns / BL_NS_PER_MS);

	if (d->shutting_down || uv_timer_get_due_in(&d->snapshot_timer) <= SNAPSHOT_SOON_MS)
		return;
	bl_timer_start(&d->snapshot_timer, on_snapshot_timer, SNAPSHOT_SOON_MS, ms ? ms : 1);
}

/* ---- reload ----------------------------------------------------------- */

/* Reports a problem found after parsing (token file, budget limits) like
 * any other config problem. Returns 0 or BL_ENOMEM. */
static int add_diag(struct bl_diags *dg, const char *file, const char *path, const char *msg)
{
	return bl_diags_add(dg, file, 0, 0, path, "%s", msg);
}

int bl_daemon_reload(struct bl_daemon *d, bool dry_run, struct bl_diags *diags, json_t *warnings)
{
	struct bl_diags local = {0};
	struct bl_diags *dg = diags ? diags : &local;
	struct bl_config *next = NULL;
	char *token = NULL, err[512];
	size_t token_len = 0;
	int rc;

	if (!d->config_path) {
		if (warnings)
			json_array_append_new(warnings,
					      json_string("running the embedded default config: "
							  "nothing to reload (start with -c FILE)"));
		return 0;
	}
	rc = bl_config_load_file(d->config_path, &next, dg);
	if (rc == 0 && d->listen_override)
		rc = bl_config_set_listen(next, d->listen_override, dg); /* --listen wins */
	if (rc != 0)
		goto refused;
	if (next->auth_token_file) {
		token = read_token(next->auth_token_file, &token_len, err, sizeof err);
		if (!token) {
			rc = BL_EIO;
			add_diag(dg, d->config_path, "auth.token_file", err);
			goto refused;
		}
	}
	{
		char why[512];

		if (bl_budgets_check(next, why, sizeof why) != 0) {
			rc = BL_EINVAL;
			add_diag(dg, d->config_path, "budgets", why);
			goto refused;
		}
		if (bl_autoscaler_check(next, why, sizeof why) != 0) {
			rc = BL_EINVAL;
			add_diag(dg, d->config_path, "autoscaler", why);
			goto refused;
		}
		if (bl_pools_check(next, why, sizeof why) != 0) {
			rc = BL_EINVAL;
			add_diag(dg, d->config_path, "pools", why);
			goto refused;
		}
	}
	if (dry_run) {
		free(token);
		bl_config_destroy(next);
		bl_diags_cleanup(&local);
		return 0;
	}
	/* The last step that can fail; nothing above has changed anything. */
	{
		char why[512];

		if (bl_pools_apply(d->pools, next, why, sizeof why) != 0) {
			rc = BL_ENOMEM;
			add_diag(dg, d->config_path, "pools", why);
			goto refused;
		}
		/* Acquires waiting on a pool the reload removed are answered
		 * before the pool may be freed. */
		bl_budgets_drop_retired_pools(d->budgets);
		bl_pools_collect(d->pools);
		if (bl_budgets_apply(d->budgets, next, why, sizeof why) != 0) {
			rc = BL_ENOMEM;
			add_diag(dg, d->config_path, "budgets", why);
			goto refused;
		}
	}
	bl_autoscaler_apply(d->autoscaler, next, warnings);
	/* Where and how we listen, and where state lives, need a restart. */
	if (strcmp(next->listen, d->cfg->listen) != 0 || strcmp(next->state_dir, d->cfg->state_dir) != 0) {
		char *tmp;
		if (strcmp(next->listen, d->cfg->listen) != 0) {
			bl_log(BL_LOG_WARN, "listen changed in the config; restart to apply", NULL);
			if (warnings)
				json_array_append_new(warnings,
						      json_string("listen changed: restart to apply"));
		}
		if (strcmp(next->state_dir, d->cfg->state_dir) != 0) {
			bl_log(BL_LOG_WARN, "state_dir changed in the config; restart to apply", NULL);
			if (warnings)
				json_array_append_new(warnings,
						      json_string("state_dir changed: restart to apply"));
		}
		tmp = next->listen, next->listen = d->cfg->listen, d->cfg->listen = tmp;
		tmp = next->listen_host, next->listen_host = d->cfg->listen_host, d->cfg->listen_host = tmp;
		next->listen_port = d->cfg->listen_port;
		tmp = next->state_dir, next->state_dir = d->cfg->state_dir, d->cfg->state_dir = tmp;
	}
	bl_config_destroy(d->cfg);
	d->cfg = next;
	free(d->auth_token);
	d->auth_token = token;
	d->auth_token_len = token_len;
	bl_log_set_level(next->log_level);
	{
		struct bl_http_limits lim = limits_of(d, next);

		bl_dmem_set_cap(&d->mem, next->daemon_memory);
		bl_http_server_set_limits(d->http, &lim);
	}
	if (!d->shutting_down)
		schedule_snapshots(d);
	d->reloads++;
	d->config_loaded_at_ms = bl_daemon_wall_ms();
	d->last_reload_error[0] = '\0';
	bl_log(BL_LOG_INFO, "config reloaded", "source=%s", d->config_path);
	bl_diags_cleanup(&local);
	return 0;

refused:
	bl_config_destroy(next);
	if (!dry_run) {
		d->reload_failures++;
		if (dg->n && dg->items[0].line)
			snprintf(d->last_reload_error, sizeof d->last_reload_error, "%s:%d:%d: %s: %s",
				 dg->items[0].file, dg->items[0].line, dg->items[0].column,
				 dg->items[0].path, dg->items[0].message);
		else if (dg->n)
			snprintf(d->last_reload_error, sizeof d->last_reload_error, "%s: %s: %s",
				 dg->items[0].file, dg->items[0].path, dg->items[0].message);
		else
			snprintf(d->last_reload_error, sizeof d->last_reload_error, "%s",
				 bl_strerror(rc));
		log_diags(dg, "config reload refused; the running config stays");
	}
	free(token);
	bl_diags_cleanup(&local);
	return rc ? rc : BL_EINVAL;
}

/* ---- signals and shutdown --------------------------------------------- */

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Everything is drained and saved: close the loop's last handles. */
static void shutdown_finish(struct bl_daemon *d)
{
	if (!d->final_snapshot_done) {
		d->final_snapshot_done = true;
		/* Take the shutdown snapshot now that nothing can change state. */
		bl_budgets_mark_clean(d->budgets);
		snapshot_start(d);
		if (d->snapshot_in_flight)
			return; /* snapshot_write_done comes back here */
	}
	close_handle((uv_handle_t *)&d->sig_term);
	close_handle((uv_handle_t *)&d->sig_int);
	close_handle((uv_handle_t *)&d->sig_hup);
	close_handle((uv_handle_t *)&d->snapshot_timer);
	close_handle((uv_handle_t *)&d->drain_deadline);
	bl_log(BL_LOG_INFO, "stopped", "snapshots_written=%llu",
	       (unsigned long long)d->snapshot_writes);
}

static void on_drained(void *ctx)
{
	struct bl_daemon *d = ctx;

	d->drained = true;
	uv_timer_stop(&d->drain_deadline);
	if (!d->snapshot_in_flight)
		shutdown_finish(d);
	/* else: snapshot_write_done calls shutdown_finish */
}

static void on_drain_deadline(uv_timer_t *t)
{
	struct bl_daemon *d = t->data;

	bl_log(BL_LOG_WARN, "drain deadline reached; closing remaining connections", NULL);
	bl_http_server_close_all(d->http);
}

static void begin_shutdown(struct bl_daemon *d, const char *why)
{
	if (d->shutting_down) {
		bl_log(BL_LOG_WARN, "second stop signal; closing connections now", "signal=%s", why);
		bl_http_server_close_all(d->http);
		return;
	}
	d->shutting_down = true;
	d->ready = false;
	uv_timer_stop(&d->snapshot_timer);
	bl_log(BL_LOG_INFO, "draining", "signal=%s", why);
	bl_budgets_shutdown(d->budgets);
	bl_pools_shutdown(d->pools);
	/* Supervised workers get SIGTERM now and SIGKILL within the drain. */
	bl_autoscaler_shutdown(d->autoscaler, WORKER_GRACE_CAP_NS, NULL, NULL);
	bl_timer_start(&d->drain_deadline, on_drain_deadline, DRAIN_DEADLINE_MS, 0);
	bl_http_server_drain(d->http, on_drained, d);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct bl_daemon *d = h->data;

	if (signum == SIGHUP) {
		bl_log(BL_LOG_INFO, "SIGHUP: reloading config", NULL);
		bl_daemon_reload(d, false, NULL, NULL);
		return;
	}
	begin_shutdown(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start-up --------------------------------------------------------- */

static void raise_fd_limit(uint32_t max_connections)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_connections + 64)
		bl_log(BL_LOG_WARN,
		       "the fd limit is below limits.max_connections; connections past it are "
		       "refused by the kernel, not answered 503",
		       "fd_limit=%llu max_connections=%u", (unsigned long long)rl.rlim_cur,
		       max_connections);
}

static int load_initial_config(struct bl_daemon *d, const struct bl_daemon_options *opts)
{
	struct bl_diags diags = {0};
	int rc;

	if (opts->config_path)
		rc = bl_config_load_file(opts->config_path, &d->cfg, &diags);
	else
		rc = bl_config_load_default(&d->cfg, &diags);
	if (rc != 0) {
		bl_diags_print(&diags, stderr);
		log_diags(&diags, "config refused");
		bl_diags_cleanup(&diags);
		return rc;
	}
	bl_diags_cleanup(&diags);
	return 0;
}

int bl_daemon_run(const struct bl_daemon_options *opts)
{
	struct bl_daemon *d = calloc(1, sizeof *d);
	char err[512], q[300];
	struct bl_http_limits lim;
	int rc, code = 1;

	if (!d) {
		fprintf(stderr, "ballast: out of memory\n");
		return 1;
	}
	d->start_wall_s = (double)bl_daemon_wall_ms() / 1000.0;
	d->start_mono_ns = uv_hrtime();
	d->loop = uv_default_loop();
	if (opts->config_path && !(d->config_path = strdup(opts->config_path)))
		goto out;
	if (load_initial_config(d, opts) != 0)
		goto out;
	d->config_loaded_at_ms = bl_daemon_wall_ms();
	bl_log_set_level(d->cfg->log_level);
	if (opts->listen_override) {
		struct bl_diags diags = {0};

		if (!(d->listen_override = strdup(opts->listen_override)) ||
		    bl_config_set_listen(d->cfg, opts->listen_override, &diags) != 0) {
			bl_diags_print(&diags, stderr);
			bl_diags_cleanup(&diags);
			goto out;
		}
	}
	if (d->cfg->auth_token_file) {
		d->auth_token = read_token(d->cfg->auth_token_file, &d->auth_token_len, err, sizeof err);
		if (!d->auth_token) {
			bl_log(BL_LOG_ERROR, "cannot start", "error=%s", bl_log_quote(q, sizeof q, err));
			goto out;
		}
	}
	raise_fd_limit(d->cfg->max_connections);

	bl_dmem_init(&d->mem, d->cfg->daemon_memory);
	if (bl_pools_create(d->loop, d->cfg, &d->mem, &d->pools, err, sizeof err) != 0 ||
	    bl_budgets_create(d->loop, d->cfg, &d->mem, d->pools, &d->budgets, err, sizeof err) != 0) {
		bl_log(BL_LOG_ERROR, "cannot start", "error=%s", bl_log_quote(q, sizeof q, err));
		goto out;
	}
	/* State first: nothing is answered before what was promised is back. */
	if (bl_snapshot_create(d->cfg->state_dir, &d->snap) != 0 ||
	    bl_snapshot_register_required(d->snap, "daemon", daemon_save, daemon_restore, d) != 0 ||
	    bl_snapshot_register_required(d->snap, "pools", bl_pools_save, bl_pools_restore,
					  d->pools) != 0 ||
	    bl_snapshot_register_split(d->snap, "budgets", bl_budgets_capture, bl_budgets_render,
				       bl_budgets_discard, bl_budgets_restore, d->budgets) != 0 ||
	    bl_snapshot_register(d->snap, "autoscaler", autoscaler_save, autoscaler_restore, d) != 0)
		goto out_loop;
	rc = bl_snapshot_restore(d->snap, bl_daemon_wall_ms(), &d->restore);
	if (rc != 0) {
		bl_log(BL_LOG_ERROR, "cannot read the state snapshot", "state_dir=%s error=%s",
		       bl_log_quote(q, 150, d->cfg->state_dir), bl_strerror(rc));
		goto out_loop;
	}
	d->starts++;
	if (d->first_start_ms == 0)
		d->first_start_ms = bl_daemon_wall_ms();

	if (bl_metrics_create(d->start_wall_s, &d->metrics) != 0)
		goto out_loop;
	lim = limits_of(d, d->cfg);
	if (bl_http_server_create(d->loop, &lim, bl_api_handle, bl_api_done, d, &d->http) != 0)
		goto out_loop;
	if (bl_http_server_listen(d->http, d->cfg->listen_host, d->cfg->listen_port, err,
				  sizeof err) != 0) {
		bl_log(BL_LOG_ERROR, "cannot listen", "error=%s", bl_log_quote(q, sizeof q, err));
		goto out_loop;
	}
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	uv_signal_init(d->loop, &d->sig_hup);
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
	uv_signal_start(&d->sig_term, on_signal, SIGTERM);
	uv_signal_start(&d->sig_int, on_signal, SIGINT);
	uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
	uv_timer_init(d->loop, &d->snapshot_timer);
	uv_timer_init(d->loop, &d->drain_deadline);
	d->snapshot_timer.data = d->drain_deadline.data = d;
	schedule_snapshots(d);
	{
		char url[128];

		snprintf(url, sizeof url, "http://%s", bl_http_server_address(d->http));
		if (bl_autoscaler_create(d->loop, d->cfg, url, d->budgets, d->autoscaler_saved,
					 &d->autoscaler, err, sizeof err) != 0) {
			bl_log(BL_LOG_ERROR, "cannot start", "error=%s",
			       bl_log_quote(q, sizeof q, err));
			goto out_loop;
		}
		bl_autoscaler_on_workers_changed(d->autoscaler, on_workers_changed, d);
		if (d->autoscaler)
			on_workers_changed(d); /* the first workers started in create */
	}
	d->ready = true;

	bl_log(BL_LOG_INFO, "listening", "addr=%s version=%s config=%s pid=%d starts=%llu",
	       bl_http_server_address(d->http), BL_VERSION,
	       bl_log_quote(q, sizeof q, d->config_path ? d->config_path : "<default>"),
	       (int)getpid(), (unsigned long long)d->starts);
	if (d->restore.moved_aside)
		bl_log(BL_LOG_WARN, "started clean: the previous snapshot was unusable",
		       "moved_to=%s reason=%s", bl_log_quote(q, 150, d->restore.aside_path),
		       bl_log_quote(q + 150, 150, d->restore.reason));

	uv_run(d->loop, UV_RUN_DEFAULT);
	/* A shutdown snapshot that failed is a failure: state would be lost. */
	code = d->snapshot_last_error[0] ? 1 : 0;
	goto out_loop_closed;

out_loop:
	if (d->http)
		bl_http_server_close_all(d->http);
	if (d->autoscaler)
		bl_autoscaler_shutdown(d->autoscaler, 0, NULL, NULL);
	bl_pools_shutdown(d->pools);
	if (d->budgets)
		bl_budgets_shutdown(d->budgets);
	uv_run(d->loop, UV_RUN_DEFAULT);
out_loop_closed:
	uv_loop_close(d->loop);
out:
	bl_http_server_destroy(d->http);
	bl_autoscaler_destroy(d->autoscaler);
	bl_budgets_destroy(d->budgets); /* before the pools: leases point at backends */
	bl_pools_destroy(d->pools);
	bl_metrics_destroy(d->metrics);
	bl_snapshot_destroy(d->snap);
	json_decref(d->autoscaler_saved);
	bl_config_destroy(d->cfg);
	free(d->auth_token);
	free(d->config_path);
	free(d->listen_override);
	free(d);
	return code;
}
