/* The HTTP API: routing, auth, and the handlers of the foundation endpoints.
 * Later capabilities add their rows to the route table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ballast/error.h"
#include "daemon.h"
#include "jsonreq.h"
#include "log.h"
#include "plan.h"

/* param is the path segment matched by "{}" in the route, or NULL. */
typedef void (*handler_fn)(struct bl_daemon *d, struct bl_http_req *req, const char *param);

struct route {
	const char *method;
	const char *path;   /* the path; one segment may be "{}", matching any non-empty segment */
	handler_fn handler;
	bool mutating;      /* needs the bearer token when auth is on */
};

/* Longest path segment a "{}" captures. */
#define MAX_PARAM 128

static void h_healthz(struct bl_daemon *d, struct bl_http_req *req, const char *param);
static void h_readyz(struct bl_daemon *d, struct bl_http_req *req, const char *param);
static void h_metrics(struct bl_daemon *d, struct bl_http_req *req, const char *param);
static void h_state(struct bl_daemon *d, struct bl_http_req *req, const char *param);
static void h_config(struct bl_daemon *d, struct bl_http_req *req, const char *param);
static void h_reload(struct bl_daemon *d, struct bl_http_req *req, const char *param);
static void h_snapshot(struct bl_daemon *d, struct bl_http_req *req, const char *param);

static void h_acquire(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_budgets_acquire(d->budgets, req);
}

static void h_release(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_budgets_release(d->budgets, req);
}

static void h_extend(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	bl_budgets_extend(d->budgets, req, param);
}

static void h_resize(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	bl_budgets_resize(d->budgets, req, param);
}

static void h_budgets(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_budgets_list(d->budgets, req);
}

static void h_budget(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	bl_budgets_get(d->budgets, req, param);
}

static void h_pools(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_pools_list(d->pools, req);
}

static void h_pool(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	bl_pools_get(d->pools, req, param);
}

static void h_pool_backend(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	bl_pools_set_backend(d->pools, req, param, param + strlen(param) + 1);
}

static void h_heartbeat(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	bl_autoscaler_heartbeat(d->autoscaler, req, param);
}

static void h_autoscale(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_autoscaler_get(d->autoscaler, req);
}

static void h_memory_reserve(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_budgets_memory_reserve(d->budgets, req);
}

static void h_memory(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_budgets_memory_get(d->budgets, req);
}

/* A what-if plan: pure, so it needs no token; scratch memory comes from
 * the daemon's account (limits.daemon_memory). */
static void h_plan(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	json_t *answer;
	int status;

	(void)param;
	bl_plan_from_text(req->body, req->body_len, &d->mem.hook, &answer, &status);
	bl_http_respond_json(req, status, answer, NULL); /* NULL answer: 503 out of memory */
}

static const struct route routes[] = {
	{"POST", "/v1/acquire", h_acquire, true},
	{"POST", "/v1/release", h_release, true},
	{"POST", "/v1/leases/{}/extend", h_extend, true},
	{"POST", "/v1/leases/{}/resize", h_resize, true},
	{"GET", "/v1/budgets", h_budgets, false},
	{"GET", "/v1/budgets/{}", h_budget, false},
	{"POST", "/v1/memory/reserve", h_memory_reserve, true},
	{"GET", "/v1/pools", h_pools, false},
	{"POST", "/v1/workers/{}/heartbeat", h_heartbeat, true},
	{"GET", "/v1/autoscale", h_autoscale, false},
	{"GET", "/v1/pools/{}", h_pool, false},
	{"POST", "/v1/pools/{}/backends/{}", h_pool_backend, true},
	{"GET", "/v1/memory", h_memory, false},
	{"POST", "/v1/autoscale/plan", h_plan, false},
	{"GET", "/healthz", h_healthz, false},
	{"GET", "/readyz", h_readyz, false},
	{"GET", "/metrics", h_metrics, false},
	{"GET", "/v1/state", h_state, false},
	{"GET", "/v1/config", h_config, false},
	{"POST", "/v1/reload", h_reload, true},
	{"POST", "/v1/snapshot", h_snapshot, true},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* ---- helpers ---------------------------------------------------------- */

void bl_api_bad_request(struct bl_http_req *req, const struct bl_json_error *e)
{
	bool at_offset = strcmp(e->code, "malformed_json") == 0 || strcmp(e->code, "too_deep") == 0;

	bl_http_respond_error_ex(req, 400, e->code,
				 at_offset ? json_pack("{s:I}", "offset", (json_int_t)e->offset) : NULL,
				 NULL, "%s", e->message);
}

int bl_api_body(struct bl_http_req *req, bool empty_ok, const char *const *allowed,
		struct bl_json_fields *out)
{
	struct bl_json_error e = {0};

	/* The Content-Type is not checked: `curl -d` sends a form type with JSON. */
	if (bl_json_fields_decode(req->body, req->body_len, empty_ok, out, &e) != 0 ||
	    !bl_json_only_keys(out, allowed, &e)) {
		bl_json_fields_cleanup(out);
		bl_api_bad_request(req, &e);
		return -1;
	}
	return 0;
}

static bool authorized(struct bl_daemon *d, struct bl_http_req *req)
{
	const char *h = req->authorization;

	if (!d->auth_token)
		return true;
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	return bl_token_equal(h, strlen(h), d->auth_token, d->auth_token_len);
}

static json_t *diags_json(const struct bl_diags *dg)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < dg->n; i++)
		json_array_append_new(arr, json_pack("{s:s,s:i,s:i,s:s,s:s}", "file", dg->items[i].file,
						     "line", dg->items[i].line, "column",
						     dg->items[i].column, "path", dg->items[i].path,
						     "message", dg->items[i].message));
	return arr;
}

static json_t *ms_or_null(int64_t ms)
{
	return ms ? json_integer(ms) : json_null();
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

/* ---- dispatch --------------------------------------------------------- */

/* Matches path against pattern segment by segment; each "{}" segment
 * captures a non-empty segment into param, one after another, each
 * NUL-terminated (the handler finds the second after the first's NUL). */
static bool path_match(const char *pattern, const char *path, char *param, size_t cap)
{
	size_t used = 0;

	for (;;) {
		const char *pe = strchr(pattern, '/'), *qe = strchr(path, '/');
		size_t plen = pe ? (size_t)(pe - pattern) : strlen(pattern);
		size_t qlen = qe ? (size_t)(qe - path) : strlen(path);

		if (plen == 2 && pattern[0] == '{' && pattern[1] == '}') {
			if (qlen == 0 || used + qlen + 1 > cap)
				return false;
			memcpy(param + used, path, qlen);
			param[used + qlen] = '\0';
			used += qlen + 1;
		} else if (plen != qlen || memcmp(pattern, path, plen) != 0) {
			return false;
		}
		if (!pe || !qe)
			return !pe && !qe;
		pattern = pe + 1;
		path = qe + 1;
	}
}

void bl_api_handle(void *ctx, struct bl_http_req *req)
{
	struct bl_daemon *d = ctx;
	char allow[64] = "", param[MAX_PARAM];
	size_t n = 0;

	for (size_t i = 0; i < N_ROUTES; i++) {
		if (!path_match(routes[i].path, req->path, param, sizeof param))
			continue;
		if (strcmp(routes[i].method, req->method) == 0) {
			req->route = routes[i].path;
			if (routes[i].mutating && !authorized(d, req)) {
				bl_http_respond_error(req, 401, "unauthorized",
						      "this endpoint needs 'Authorization: Bearer "
						      "<token>' with the token from auth.token_file");
				return;
			}
			routes[i].handler(d, req, strstr(routes[i].path, "{}") ? param : NULL);
			return;
		}
		n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "",
				      routes[i].method);
	}
	if (n) {
		char hdr[96];

		req->route = "(method_not_allowed)";
		snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
		bl_http_respond_error_ex(req, 405, "method_not_allowed", NULL, hdr,
					 "%s is not allowed on %.200s; allowed: %s", req->method,
					 req->path, allow);
		return;
	}
	req->route = "(not_found)";
	bl_http_respond_error(req, 404, "not_found",
			      "no endpoint %.200s; see docs/api.md (GET /v1/state lists what is "
			      "configured)",
			      req->path);
}

void bl_api_done(void *ctx, const struct bl_http_req *req, int status, uint64_t duration_ns)
{
	struct bl_daemon *d = ctx;

	bl_metrics_observe_request(d->metrics, req->route, status, duration_ns);
	if (d->cfg->log_access) {
		char qp[300];
		bl_log(BL_LOG_INFO, "request", "method=%s path=%s status=%d duration_us=%llu",
		       req->method ? req->method : "-",
		       bl_log_quote(qp, sizeof qp, req->path ? req->path : "-"), status,
		       (unsigned long long)(duration_ns / 1000));
	}
}

/* ---- handlers --------------------------------------------------------- */

static void h_healthz(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	static const char ok[] = "{\"status\":\"ok\"}\n";

	(void)d;
	bl_http_respond(req, 200, "application/json", ok, sizeof ok - 1, NULL);
}

static void h_readyz(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	if (d->ready) {
		static const char ok[] = "{\"status\":\"ready\"}\n";
		bl_http_respond(req, 200, "application/json", ok, sizeof ok - 1, NULL);
		return;
	}
	bl_http_respond_error(req, 503, "not_ready",
			      d->shutting_down ? "draining: the daemon is shutting down"
					       : "starting: state not restored yet");
}

/* ballast's own memory (limits.daemon_memory) and the pools drawing on it. */
static void write_daemon_memory(struct bl_daemon *d, struct bl_text *t)
{
	const char *names[4];
	struct bl_slab_stats ss[4];
	struct bl_http_stats hs;
	size_t n = bl_budgets_object_pools(d->budgets, names, ss, 3);

	bl_http_server_stats(d->http, &hs);
	names[n] = "connections";
	bl_http_server_pool_stats(d->http, &ss[n++]);
	bl_text_printf(t,
		       "# HELP ballast_daemon_memory_cap_bytes limits.daemon_memory.\n"
		       "# TYPE ballast_daemon_memory_cap_bytes gauge\n"
		       "ballast_daemon_memory_cap_bytes %llu\n"
		       "# HELP ballast_daemon_memory_held_bytes Bytes ballast's pools hold.\n"
		       "# TYPE ballast_daemon_memory_held_bytes gauge\n"
		       "ballast_daemon_memory_held_bytes %llu\n"
		       "# HELP ballast_daemon_memory_high_water_bytes Most bytes the pools held.\n"
		       "# TYPE ballast_daemon_memory_high_water_bytes gauge\n"
		       "ballast_daemon_memory_high_water_bytes %llu\n"
		       "# HELP ballast_daemon_memory_refused_allocs_total Allocations refused at "
		       "the cap.\n# TYPE ballast_daemon_memory_refused_allocs_total counter\n"
		       "ballast_daemon_memory_refused_allocs_total %llu\n"
		       "# HELP ballast_daemon_overloaded_total New work answered 503 overloaded "
		       "(requests and connections).\n"
		       "# TYPE ballast_daemon_overloaded_total counter\n"
		       "ballast_daemon_overloaded_total %llu\n"
		       "# HELP ballast_http_connections_refused_memory_total Connections refused "
		       "at limits.daemon_memory.\n"
		       "# TYPE ballast_http_connections_refused_memory_total counter\n"
		       "ballast_http_connections_refused_memory_total %llu\n",
		       (unsigned long long)d->mem.cap, (unsigned long long)d->mem.held,
		       (unsigned long long)d->mem.high_water,
		       (unsigned long long)d->mem.refused_allocs,
		       (unsigned long long)d->mem.overloaded,
		       (unsigned long long)hs.connections_refused_memory);
#define POOL_FAMILY(metric, type, help, field, fmt, cast)                                       \
	do {                                                                                    \
		bl_text_printf(t, "# HELP " metric " " help "\n# TYPE " metric " " type "\n");  \
		for (size_t i = 0; i < n; i++)                                                  \
			bl_text_printf(t, metric "{kind=\"%s\"} " fmt "\n", names[i],           \
				       (cast)ss[i].field);                                      \
	} while (0)
	POOL_FAMILY("ballast_daemon_objects_in_use", "gauge", "Objects taken from a daemon pool.",
		    objects_in_use, "%zu", size_t);
	POOL_FAMILY("ballast_daemon_objects_high_water", "gauge", "Most objects in use at once.", high_water,
		    "%zu", size_t);
	POOL_FAMILY("ballast_daemon_objects_bytes_reserved", "gauge", "Bytes a daemon pool holds.",
		    bytes_reserved, "%zu", size_t);
	POOL_FAMILY("ballast_daemon_objects_failed_allocs_total", "counter", "Allocations a pool refused.",
		    failed_allocs, "%llu", unsigned long long);
#undef POOL_FAMILY
}

static void h_metrics(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	struct bl_text t = {0};
	struct bl_http_stats hs;

	bl_http_server_stats(d->http, &hs);
	bl_text_printf(&t,
		       "# HELP ballast_build_info Build information; the value is always 1.\n"
		       "# TYPE ballast_build_info gauge\nballast_build_info{version=\"%s\"} 1\n"
		       "# HELP ballast_up 1 while the daemon is ready, 0 while it drains.\n"
		       "# TYPE ballast_up gauge\nballast_up %d\n"
		       "# HELP ballast_http_connections_open Open HTTP connections.\n"
		       "# TYPE ballast_http_connections_open gauge\n"
		       "ballast_http_connections_open %llu\n"
		       "# HELP ballast_http_connections_accepted_total Connections accepted.\n"
		       "# TYPE ballast_http_connections_accepted_total counter\n"
		       "ballast_http_connections_accepted_total %llu\n"
		       "# HELP ballast_http_connections_refused_total Connections refused at "
		       "limits.max_connections.\n"
		       "# TYPE ballast_http_connections_refused_total counter\n"
		       "ballast_http_connections_refused_total %llu\n"
		       "# HELP ballast_http_timeouts_total Idle or slow connections closed.\n"
		       "# TYPE ballast_http_timeouts_total counter\n"
		       "ballast_http_timeouts_total %llu\n"
		       "# HELP ballast_config_reloads_total Config reloads, by result.\n"
		       "# TYPE ballast_config_reloads_total counter\n"
		       "ballast_config_reloads_total{result=\"ok\"} %llu\n"
		       "ballast_config_reloads_total{result=\"refused\"} %llu\n"
		       "# HELP ballast_snapshot_writes_total State snapshot writes, by result.\n"
		       "# TYPE ballast_snapshot_writes_total counter\n"
		       "ballast_snapshot_writes_total{result=\"ok\"} %llu\n"
		       "ballast_snapshot_writes_total{result=\"error\"} %llu\n"
		       "# HELP ballast_snapshot_last_success_timestamp_seconds When the last "
		       "snapshot was written.\n"
		       "# TYPE ballast_snapshot_last_success_timestamp_seconds gauge\n"
		       "ballast_snapshot_last_success_timestamp_seconds %.3f\n",
		       BL_VERSION, d->ready ? 1 : 0, (unsigned long long)hs.connections_open,
		       (unsigned long long)hs.connections_accepted,
		       (unsigned long long)hs.connections_refused, (unsigned long long)hs.timeouts,
		       (unsigned long long)d->reloads, (unsigned long long)d->reload_failures,
		       (unsigned long long)d->snapshot_writes,
		       (unsigned long long)d->snapshot_failures, (double)d->snapshot_last_ms / 1000.0);
	bl_budgets_write_metrics(d->budgets, &t);
	bl_pools_write_metrics(d->pools, &t);
	bl_autoscaler_write_metrics(d->autoscaler, &t);
	write_daemon_memory(d, &t);
	bl_metrics_write_http(d->metrics, &t);
	bl_metrics_write_process(d->metrics, &t);
	if (t.failed) {
		bl_text_free(&t);
		bl_http_respond_error(req, 503, "overloaded", "out of memory");
		return;
	}
	bl_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", t.p, t.len, NULL);
	bl_text_free(&t);
}

static void h_state(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	struct bl_http_stats hs;
	struct bl_process_stats ps;
	json_t *doc, *budgets, *pools;

	bl_http_server_stats(d->http, &hs);
	bl_process_stats_read(&ps);
	budgets = bl_budgets_json(d->budgets);
	pools = bl_pools_json(d->pools);

	doc = json_pack(
		"{s:{s:s,s:i,s:I,s:f,s:b,s:b,s:s},"
		" s:{s:s,s:I,s:I,s:I,s:o},"
		" s:{s:s+,s:I,s:I,s:I,s:o,s:I,s:o,s:{s:b,s:i,s:i,s:i,s:o,s:o}},"
		" s:{s:I,s:I},"
		" s:{s:I,s:I,s:I,s:I,s:I,s:I},"
		" s:{s:f,s:I,s:I,s:I},"
		" s:o,s:o,s:o,s:o}",
		"ballast", "version", BL_VERSION, "pid", (int)getpid(), "started_at_ms",
		(json_int_t)(d->start_wall_s * 1000), "uptime_s",
		(double)(uv_hrtime() - d->start_mono_ns) / 1e9, "ready", d->ready, "draining",
		d->shutting_down, "listen", bl_http_server_address(d->http),

		"config", "source", d->config_path ? d->config_path : "<default>", "loaded_at_ms",
		(json_int_t)d->config_loaded_at_ms, "reloads", (json_int_t)d->reloads,
		"reload_failures", (json_int_t)d->reload_failures, "last_reload_error",
		str_or_null(d->last_reload_error),

		"snapshot", "path", d->cfg->state_dir, "/" BL_SNAPSHOT_FILE, "interval_ms",
		(json_int_t)(d->cfg->snapshot_interval_ns / 1000000), "writes",
		(json_int_t)d->snapshot_writes, "failures", (json_int_t)d->snapshot_failures,
		"last_written_at_ms", ms_or_null(d->snapshot_last_ms), "last_bytes",
		(json_int_t)d->snapshot_last_bytes, "last_error", str_or_null(d->snapshot_last_error),
		"restored", "found", d->restore.found != 0, "components", d->restore.restored,
		"skipped", d->restore.skipped, "failed", d->restore.failed, "written_at_ms",
		ms_or_null(d->restore.written_at_ms), "moved_aside",
		d->restore.moved_aside ? json_string(d->restore.aside_path) : json_null(),

		"lifetime", "starts", (json_int_t)d->starts, "first_start_ms",
		(json_int_t)d->first_start_ms,

		"http", "connections_open", (json_int_t)hs.connections_open, "connections_accepted",
		(json_int_t)hs.connections_accepted, "connections_refused",
		(json_int_t)hs.connections_refused, "timeouts", (json_int_t)hs.timeouts,
		"parse_errors", (json_int_t)hs.parse_errors, "requests_total",
		(json_int_t)bl_metrics_requests_total(d->metrics),

		"process", "cpu_seconds", ps.cpu_seconds, "rss_bytes", (json_int_t)ps.rss_bytes,
		"open_fds", (json_int_t)ps.open_fds, "max_fds", (json_int_t)ps.max_fds,

		"budgets", budgets, "pools", pools, "memory", bl_budgets_memory_json(d->budgets),
		"autoscaler", bl_autoscaler_json(d->autoscaler));
	bl_http_respond_json(req, 200, doc, NULL);
}

static void h_config(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	(void)param;
	bl_http_respond_json(req, 200, bl_config_to_json(d->cfg, true), NULL);
}

static void h_reload(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	static const char *const allowed[] = {"dry_run", NULL};
	struct bl_diags dg = {0};
	struct bl_json_error e = {0};
	struct bl_json_fields body;
	json_t *warnings;
	bool dry_run = false;
	int rc;

	(void)param;
	if (bl_api_body(req, true, allowed, &body) != 0)
		return;
	rc = bl_json_get_bool(&body, "dry_run", &dry_run, &e);
	bl_json_fields_cleanup(&body);
	if (rc < 0) {
		bl_api_bad_request(req, &e);
		return;
	}
	warnings = json_array();
	rc = bl_daemon_reload(d, dry_run, &dg, warnings);
	if (rc != 0) {
		bl_http_respond_error_ex(req, 422, "invalid_config",
					 json_pack("{s:o}", "problems", diags_json(&dg)), NULL,
					 "%s has %zu problem%s; the running config stays",
					 d->config_path, dg.n, dg.n == 1 ? "" : "s");
		json_decref(warnings);
		bl_diags_cleanup(&dg);
		return;
	}
	bl_diags_cleanup(&dg);
	bl_http_respond_json(req, 200,
			     json_pack("{s:b,s:b,s:s,s:o}", "reloaded", !dry_run && d->config_path,
				       "dry_run", dry_run, "source",
				       d->config_path ? d->config_path : "<default>", "warnings",
				       warnings),
			     NULL);
}

static void h_snapshot(struct bl_daemon *d, struct bl_http_req *req, const char *param)
{
	static const char *const allowed[] = {NULL};
	struct bl_json_fields body;

	(void)param;
	if (bl_api_body(req, true, allowed, &body) != 0)
		return;
	bl_json_fields_cleanup(&body);
	if (d->shutting_down) {
		bl_http_respond_error(req, 503, "draining",
				      "shutting down: the final snapshot is written on exit");
		return;
	}
	bl_daemon_snapshot_now(d, req); /* answered when the write is done */
}
