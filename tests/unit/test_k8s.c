/* The kubernetes actuator against an in-test API server.
 *
 * The server is a thread with plain sockets on 127.0.0.1:0 that follows the
 * contract of the apps/v1 scale subresource as the real API server does:
 *
 *   GET   /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}/scale
 *         -> 200 an autoscaling/v1 Scale object
 *   PATCH (same path), Content-Type: application/merge-patch+json
 *         -> 415 for another type; 409 Conflict (a Status) when the patch
 *            carries a metadata.resourceVersion that is not the current one;
 *            else spec.replicas is applied, resourceVersion bumped, 200 Scale
 *   a wrong bearer token -> 401, forbidden mode -> 403, another object -> 404,
 *   all with a v1 Status body as Kubernetes writes them.
 *
 * Plain http on loopback: the actuator allows it for an explicit api_url (as
 * for kubectl proxy). The tests wait for events, never for a fixed time; the
 * only time limits are the actuator's own request timeout and WAIT_MS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>
#include <jansson.h>

#include "ballast/error.h"
#include "k8s.h"
#include "log.h"

#define MS BL_NS_PER_MS
#define WAIT_MS 10000 /* the most any wait may take before the test fails */
#define MAX_LOG 64
#define MAX_HUNG 8

/* ---- the API server -------------------------------------------------------------- */

struct logged {
	char method[8];
	char path[256];
	char ctype[64];
	char auth[256];
	char body[512];
	int status;
};

struct server {
	int fd;
	int port;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t mu;
	/* the object, guarded by mu */
	char resource[16];   /* "deployments" or "statefulsets" */
	char ns[64];
	char name[64];
	int replicas;
	int status_replicas;
	long rv;             /* resourceVersion */
	char token[64];      /* the bearer token accepted; "" = any */
	bool forbidden;      /* 403 to everything */
	int bump_after_get;  /* GETs after which another writer bumps rv */
	int fail_status;     /* answer every request with this, 0 = off */
	const char *fail_body;
	bool hang;           /* read requests, never answer */
	int hung[MAX_HUNG];  /* their connections, closed at stop */
	int n_hung;
	struct logged log[MAX_LOG];
	int n_log;
};

/* An answer is built here and sent only once the request is logged, so the
 * test never sees a result before the server's log has it. */
struct out {
	char buf[8192];
	size_t len;
};

static void send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void respond(struct out *o, int status, const char *reason, const char *body)
{
	int n = snprintf(o->buf, sizeof o->buf,
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 status, reason, strlen(body), body);

	assert_true(n > 0 && (size_t)n < sizeof o->buf);
	o->len = (size_t)n;
}

static void respond_status(struct out *fd, int code, const char *reason, const char *why,
			   const char *message)
{
	json_t *st = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion",
			       "v1", "metadata", "status", "Failure", "message", message,
			       "reason", why, "code", code);
	char *s = json_dumps(st, JSON_COMPACT);

	respond(fd, code, reason, s);
	free(s);
	json_decref(st);
}

/* The Scale as the API server writes it. Called with mu held. */
static void respond_scale(struct server *sv, struct out *fd)
{
	char rv[32];
	char *s;
	json_t *o;

	snprintf(rv, sizeof rv, "%ld", sv->rv);
	o = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s},s:{s:i},s:{s:i,s:s}}", "kind", "Scale",
		      "apiVersion", "autoscaling/v1", "metadata", "name", sv->name, "namespace",
		      sv->ns, "resourceVersion", rv, "uid", "3b1f0f0e-0000-4000-8000-000000000001",
		      "spec", "replicas", sv->replicas, "status", "replicas", sv->status_replicas,
		      "selector", "app=agents");
	if (sv->replicas == 0)
		json_object_del(json_object_get(o, "spec"), "replicas"); /* omitempty */
	s = json_dumps(o, JSON_COMPACT);
	respond(fd, 200, "OK", s);
	free(s);
	json_decref(o);
}

static int handle_patch(struct server *sv, struct out *fd, const char *ctype, const char *body)
{
	json_error_t jerr;
	json_t *p, *rv, *rep;
	char cur[32], msg[256];

	if (strcmp(ctype, "application/merge-patch+json") != 0) {
		respond_status(fd, 415, "Unsupported Media Type", "UnsupportedMediaType",
			       "the body of the request was in an unknown format");
		return 415;
	}
	p = json_loads(body, 0, &jerr);
	if (!json_is_object(p)) {
		json_decref(p);
		respond_status(fd, 400, "Bad Request", "BadRequest", "error decoding patch");
		return 400;
	}
	snprintf(cur, sizeof cur, "%ld", sv->rv);
	rv = json_object_get(json_object_get(p, "metadata"), "resourceVersion");
	if (rv && (!json_is_string(rv) || strcmp(json_string_value(rv), cur) != 0)) {
		snprintf(msg, sizeof msg, "Operation cannot be fulfilled on %s.apps \"%s\": the "
			 "object has been modified; please apply your changes to the latest "
			 "version and try again", sv->resource, sv->name);
		json_decref(p);
		respond_status(fd, 409, "Conflict", "Conflict", msg);
		return 409;
	}
	rep = json_object_get(json_object_get(p, "spec"), "replicas");
	if (rep && (!json_is_integer(rep) || json_integer_value(rep) < 0)) {
		json_decref(p);
		respond_status(fd, 422, "Unprocessable Entity", "Invalid",
			       "spec.replicas: Invalid value: must be greater than or equal to 0");
		return 422;
	}
	if (rep) {
		sv->replicas = (int)json_integer_value(rep);
		sv->status_replicas = sv->replicas; /* the controller is quick here */
	}
	sv->rv++;
	json_decref(p);
	respond_scale(sv, fd);
	return 200;
}

/* Answers one request on fd; returns true when fd is to be closed. */
static bool serve_one(struct server *sv, int fd)
{
	char buf[8192], path[256], method[8], want[512], msg[512];
	char ctype[64] = "", auth[256] = "";
	size_t n = 0, clen = 0;
	char *end, *line, *body;
	struct logged *lg;
	struct out out = {.len = 0};
	struct out *o = &out;
	int status = 0;

	for (;;) {
		ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);

		if (r <= 0)
			return true;
		n += (size_t)r;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end) {
			clen = 0;
			for (char *l = strstr(buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
				if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
					clen = strtoul(l + 17, NULL, 10);
			if (n >= (size_t)(end + 4 - buf) + clen)
				break;
		}
		if (n == sizeof buf - 1)
			return true;
	}
	body = end + 4;
	body[clen] = '\0';
	*end = '\0';
	if (sscanf(buf, "%7s %255s", method, path) != 2)
		return true;
	for (line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
		if (strncasecmp(line + 2, "Content-Type: ", 14) == 0)
			sscanf(line + 16, "%63[^\r]", ctype);
		if (strncasecmp(line + 2, "Authorization: ", 15) == 0)
			sscanf(line + 17, "%255[^\r]", auth);
	}

	pthread_mutex_lock(&sv->mu);
	if (sv->hang && sv->n_hung < MAX_HUNG) {
		sv->hung[sv->n_hung++] = fd;
		status = -1;
		goto log;
	}
	snprintf(want, sizeof want, "/apis/apps/v1/namespaces/%s/%s/%s/scale", sv->ns,
		 sv->resource, sv->name);
	if (sv->fail_status) {
		status = sv->fail_status;
		respond(o, status, "Failing", sv->fail_body);
	} else if (sv->token[0] &&
		   !(strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, sv->token) == 0)) {
		status = 401;
		respond_status(o, 401, "Unauthorized", "Unauthorized", "Unauthorized");
	} else if (strcmp(path, want) != 0) {
		char res[16] = "", name[64] = "";

		sscanf(path, "/apis/apps/v1/namespaces/%*[^/]/%15[^/]/%63[^/]", res, name);
		snprintf(msg, sizeof msg, "%s.apps \"%s\" not found", res, name);
		status = 404;
		respond_status(o, 404, "Not Found", "NotFound", msg);
	} else if (sv->forbidden) {
		snprintf(msg, sizeof msg, "%s.apps \"%s\" is forbidden: User "
			 "\"system:serviceaccount:%s:ballast\" cannot %s resource \"%s/scale\" in "
			 "API group \"apps\" in the namespace \"%s\"", sv->resource, sv->name, sv->ns,
			 strcmp(method, "GET") == 0 ? "get" : "patch", sv->resource, sv->ns);
		status = 403;
		respond_status(o, 403, "Forbidden", "Forbidden", msg);
	} else if (strcmp(method, "GET") == 0) {
		status = 200;
		respond_scale(sv, o);
		if (sv->bump_after_get > 0) {
			sv->bump_after_get--;
			sv->rv++; /* another writer, between our GET and our PATCH */
		}
	} else if (strcmp(method, "PATCH") == 0) {
		status = handle_patch(sv, o, ctype, body);
	} else {
		status = 405;
		respond_status(o, 405, "Method Not Allowed", "MethodNotAllowed", "method not allowed");
	}
log:
	if (sv->n_log < MAX_LOG) {
		lg = &sv->log[sv->n_log++];
		snprintf(lg->method, sizeof lg->method, "%s", method);
		snprintf(lg->path, sizeof lg->path, "%s", path);
		snprintf(lg->ctype, sizeof lg->ctype, "%s", ctype);
		snprintf(lg->auth, sizeof lg->auth, "%s", auth);
		snprintf(lg->body, sizeof lg->body, "%s", body);
		lg->status = status;
	}
	pthread_mutex_unlock(&sv->mu);
	send_all(fd, out.buf, out.len);
	return status != -1;
}

static void *server_main(void *arg)
{
	struct server *sv = arg;

	while (!atomic_load(&sv->stop)) {
		struct pollfd p = {.fd = sv->fd, .events = POLLIN};
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept(sv->fd, NULL, NULL);
		if (fd < 0)
			continue;
		if (serve_one(sv, fd))
			close(fd);
	}
	for (int i = 0; i < sv->n_hung; i++)
		close(sv->hung[i]);
	return NULL;
}

static int listen_loopback(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void server_start(struct server *sv)
{
	memset(sv, 0, sizeof *sv);
	pthread_mutex_init(&sv->mu, NULL);
	atomic_init(&sv->stop, false);
	snprintf(sv->resource, sizeof sv->resource, "deployments");
	snprintf(sv->ns, sizeof sv->ns, "agents");
	snprintf(sv->name, sizeof sv->name, "workers");
	snprintf(sv->token, sizeof sv->token, "good-token");
	sv->replicas = 3;
	sv->status_replicas = 3;
	sv->rv = 100;
	sv->fd = listen_loopback(&sv->port);
	assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void server_stop(struct server *sv)
{
	atomic_store(&sv->stop, true);
	pthread_join(sv->thread, NULL);
	close(sv->fd);
	pthread_mutex_destroy(&sv->mu);
}

static int server_requests(struct server *sv)
{
	int n;

	pthread_mutex_lock(&sv->mu);
	n = sv->n_log;
	pthread_mutex_unlock(&sv->mu);
	return n;
}

/* ---- harness ------------------------------------------------------------------------ */

#define MAX_GOT 8

struct got {
	int calls;
	struct bl_k8s_result r;  /* the last result, with its strings copied below */
	char error[BL_K8S_ERR_MAX];
	char rv[128];
	char selector[128];
};

struct fixture {
	uv_loop_t loop;
	uv_timer_t guard;
	bool timed_out;
	struct server sv;
	struct bl_k8s *k;
	struct bl_k8s_config cfg;
	char dir[64];
	char token_file[128];
	char url[64];
	bool shut_down;
};

static void on_result(void *ctx, const struct bl_k8s_result *r)
{
	struct got *g = ctx;

	g->calls++;
	g->r = *r;
	snprintf(g->error, sizeof g->error, "%s", r->error);
	snprintf(g->rv, sizeof g->rv, "%s", r->resource_version);
	snprintf(g->selector, sizeof g->selector, "%s", r->selector);
	g->r.error = g->error;
	g->r.resource_version = g->rv;
	g->r.selector = g->selector;
}

static void on_guard(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->timed_out = true;
}

/* Runs the loop until *flag is true (or WAIT_MS passes: the test fails). */
static void run_until(struct fixture *f, const bool *flag)
{
	f->timed_out = false;
	uv_timer_start(&f->guard, on_guard, WAIT_MS, 0);
	while (!*flag && !f->timed_out)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_timer_stop(&f->guard);
	assert_false(f->timed_out);
}

static bool got_calls(const struct got *g, int n)
{
	return g->calls >= n;
}

/* Runs the loop until g has been called n times. */
static void wait_got(struct fixture *f, struct got *g, int n)
{
	f->timed_out = false;
	uv_timer_start(&f->guard, on_guard, WAIT_MS, 0);
	while (!got_calls(g, n) && !f->timed_out)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_timer_stop(&f->guard);
	assert_false(f->timed_out);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	assert_non_null(f);
	bl_log_set_level(BL_LOG_ERROR);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	uv_timer_init(&f->loop, &f->guard);
	f->guard.data = f;
	server_start(&f->sv);
	snprintf(f->dir, sizeof f->dir, "/tmp/bl-k8s-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->token_file, sizeof f->token_file, "%s/token", f->dir);
	write_file(f->token_file, "good-token\n");
	snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->sv.port);
	bl_k8s_config_defaults(&f->cfg);
	f->cfg.namespace = "agents";
	f->cfg.name = "workers";
	f->cfg.api_url = f->url;
	f->cfg.token_file = f->token_file;
	f->cfg.timeout_ns = 5000 * MS;
	f->cfg.conflict_backoff_ns = 1 * MS;
	*state = f;
	return 0;
}

static void on_shutdown_done(void *ctx)
{
	struct fixture *f = ctx;

	f->shut_down = true;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[160];

	if (f->k) {
		if (!f->shut_down) {
			bl_k8s_shutdown(f->k, on_shutdown_done, f);
			run_until(f, &f->shut_down);
		}
		bl_k8s_destroy(f->k);
	}
	server_stop(&f->sv);
	uv_close((uv_handle_t *)&f->guard, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	snprintf(path, sizeof path, "%s/token", f->dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/namespace", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void create(struct fixture *f)
{
	char err[512] = "";
	int rc = bl_k8s_create(&f->loop, &f->cfg, &f->k, err, sizeof err);

	if (rc)
		fail_msg("bl_k8s_create: %s", err);
}

static void assert_contains(const char *s, const char *part)
{
	if (!strstr(s, part))
		fail_msg("'%s' does not contain '%s'", s, part);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_get_reads_the_scale(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};
	struct bl_k8s_stats st;

	create(f);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	assert_int_equal(g.calls, 0); /* never from within the call */
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	assert_string_equal(g.r.error, "");
	assert_int_equal(g.r.op, BL_K8S_OP_GET);
	assert_int_equal(g.r.http_status, 200);
	assert_true(g.r.has_scale);
	assert_int_equal(g.r.spec_replicas, 3);
	assert_int_equal(g.r.status_replicas, 3);
	assert_string_equal(g.rv, "100");
	assert_string_equal(g.selector, "app=agents");
	assert_int_equal(g.r.requests, 1);
	assert_true(g.r.ended_ns >= g.r.started_ns);

	assert_int_equal(f->sv.n_log, 1);
	assert_string_equal(f->sv.log[0].method, "GET");
	assert_string_equal(f->sv.log[0].path, "/apis/apps/v1/namespaces/agents/deployments/workers/scale");
	assert_string_equal(f->sv.log[0].auth, "Bearer good-token");

	bl_k8s_stats(f->k, &st);
	assert_false(st.busy);
	assert_int_equal(st.operations, 1);
	assert_int_equal(st.requests, 1);
	assert_int_equal(st.failures, 0);
	assert_true(st.has_scale);
	assert_int_equal(st.spec_replicas, 3);
	assert_true(st.has_success);
	assert_true(st.last_success_unix_ms > 0);
	assert_false(st.has_desired);
}

static void test_scale_patches_with_the_resource_version(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};
	struct bl_k8s_stats st;
	json_t *body;

	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 7, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	assert_int_equal(g.r.op, BL_K8S_OP_SCALE);
	assert_int_equal(g.r.desired, 7);
	assert_true(g.r.patched);
	assert_int_equal(g.r.conflicts, 0);
	assert_int_equal(g.r.requests, 2);
	assert_true(g.r.has_scale);
	assert_int_equal(g.r.spec_replicas, 7);
	assert_string_equal(g.rv, "101");

	assert_int_equal(f->sv.n_log, 2);
	assert_string_equal(f->sv.log[0].method, "GET");
	assert_string_equal(f->sv.log[1].method, "PATCH");
	assert_string_equal(f->sv.log[1].ctype, "application/merge-patch+json");
	assert_string_equal(f->sv.log[1].auth, "Bearer good-token");
	body = json_loads(f->sv.log[1].body, 0, NULL);
	assert_non_null(body);
	assert_string_equal(json_string_value(json_object_get(json_object_get(body, "metadata"),
							      "resourceVersion")), "100");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(body, "spec"),
							    "replicas")), 7);
	json_decref(body);
	assert_int_equal(f->sv.replicas, 7);

	bl_k8s_stats(f->k, &st);
	assert_int_equal(st.patches, 1);
	assert_true(st.has_desired);
	assert_int_equal(st.desired, 7);
	assert_int_equal(st.spec_replicas, 7);
	assert_int_equal(st.requests, 2);
}

static void test_scale_to_the_current_count_writes_nothing(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 3, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	assert_false(g.r.patched);
	assert_int_equal(g.r.requests, 1);
	assert_int_equal(f->sv.n_log, 1);
	assert_int_equal(f->sv.rv, 100);
}

static void test_scale_to_zero_and_back(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 0, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	assert_true(g.r.patched);
	assert_int_equal(g.r.spec_replicas, 0); /* omitted in the answer: omitempty */
	assert_int_equal(f->sv.replicas, 0);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 2);
	assert_int_equal(g.r.rc, 0);
	assert_int_equal(g.r.spec_replicas, 0);
	assert_int_equal(bl_k8s_scale(f->k, 2, on_result, &g), 0);
	wait_got(f, &g, 3);
	assert_int_equal(g.r.rc, 0);
	assert_int_equal(f->sv.replicas, 2);
	assert_int_equal(bl_k8s_scale(f->k, (uint32_t)INT32_MAX + 1, on_result, &g), BL_ERANGE);
}

static void test_conflict_is_retried_after_a_re_read(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};
	struct bl_k8s_stats st;

	f->sv.bump_after_get = 1; /* someone writes between our GET and PATCH, once */
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 9, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	assert_true(g.r.patched);
	assert_int_equal(g.r.conflicts, 1);
	assert_int_equal(g.r.requests, 4);
	assert_int_equal(f->sv.n_log, 4);
	assert_string_equal(f->sv.log[0].method, "GET");
	assert_string_equal(f->sv.log[1].method, "PATCH");
	assert_int_equal(f->sv.log[1].status, 409);
	assert_string_equal(f->sv.log[2].method, "GET");
	assert_string_equal(f->sv.log[3].method, "PATCH");
	assert_int_equal(f->sv.log[3].status, 200);
	assert_contains(f->sv.log[3].body, "\"resourceVersion\":\"101\"");
	assert_int_equal(f->sv.replicas, 9);
	bl_k8s_stats(f->k, &st);
	assert_int_equal(st.conflicts, 1);
	assert_int_equal(st.failures, 0);
}

static void test_conflict_gives_up_after_the_retries(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};
	struct bl_k8s_stats st;

	f->sv.bump_after_get = 1000; /* another writer that never stops */
	f->cfg.max_conflict_retries = 2;
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 9, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EAGAIN);
	assert_int_equal(g.r.http_status, 409);
	assert_int_equal(g.r.conflicts, 3);
	assert_int_equal(g.r.requests, 6);
	assert_false(g.r.patched);
	assert_contains(g.error, "conflict (409) after 2 re-reads");
	assert_contains(g.error, "deployment agents/workers");
	assert_contains(g.error, "the object has been modified");
	assert_int_equal(f->sv.replicas, 3);
	bl_k8s_stats(f->k, &st);
	assert_int_equal(st.failures, 1);
	assert_int_equal(st.last_rc, BL_EAGAIN);
	assert_string_equal(st.last_error, g.error);
}

static void test_unauthorized_names_the_token_file(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	write_file(f->token_file, "stale-token\n");
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_int_equal(g.r.http_status, 401);
	assert_contains(g.error, "refused the token (401 Unauthorized)");
	assert_contains(g.error, f->token_file);
	assert_int_equal(f->sv.n_log, 1); /* no PATCH after a failed GET */
}

static void test_token_is_read_for_every_request(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	create(f);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	/* the kubelet rotates the projected token */
	pthread_mutex_lock(&f->sv.mu);
	snprintf(f->sv.token, sizeof f->sv.token, "rotated-token");
	pthread_mutex_unlock(&f->sv.mu);
	write_file(f->token_file, "rotated-token\n");
	assert_int_equal(bl_k8s_scale(f->k, 4, on_result, &g), 0);
	wait_got(f, &g, 2);
	assert_int_equal(g.r.rc, 0);
	assert_string_equal(f->sv.log[2].auth, "Bearer rotated-token");
}

static void test_missing_token_file(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	unlink(f->token_file);
	create(f);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_int_equal(g.r.http_status, 0);
	assert_contains(g.error, "cannot read the service account token");
	assert_contains(g.error, f->token_file);
	assert_int_equal(server_requests(&f->sv), 0);
}

static void test_no_token_sends_none(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	f->cfg.token_file = "";
	create(f);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_int_equal(g.r.http_status, 401);
	assert_contains(g.error, "none is sent (token_file is empty)");
	assert_string_equal(f->sv.log[0].auth, "");
	/* behind kubectl proxy no token is needed */
	f->sv.token[0] = '\0';
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 2);
	assert_int_equal(g.r.rc, 0);
}

static void test_forbidden_names_the_rbac_rule(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	f->sv.forbidden = true;
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_int_equal(g.r.http_status, 403);
	assert_contains(g.error, "forbidden (403) to get deployments/scale 'workers' in namespace "
			"'agents'");
	assert_contains(g.error, "needs get and patch on deployments/scale");
	assert_contains(g.error, "deploy/kubernetes/role.yaml");
	assert_contains(g.error, "cannot get resource \"deployments/scale\"");
}

static void test_not_found_names_the_object(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	f->cfg.name = "missing";
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_ENOENT);
	assert_int_equal(g.r.http_status, 404);
	assert_contains(g.error, "deployment 'missing' not found in namespace 'agents'");
	assert_contains(g.error, "deployments.apps \"missing\" not found");
}

static void test_statefulset(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	snprintf(f->sv.resource, sizeof f->sv.resource, "statefulsets");
	f->cfg.kind = BL_K8S_STATEFULSET;
	create(f);
	assert_string_equal(bl_k8s_kind_name(BL_K8S_STATEFULSET), "statefulset");
	assert_contains(bl_k8s_url(f->k), "/apis/apps/v1/namespaces/agents/statefulsets/workers/scale");
	assert_int_equal(bl_k8s_scale(f->k, 2, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, 0);
	assert_true(g.r.patched);
	assert_int_equal(f->sv.replicas, 2);
	assert_string_equal(f->sv.log[1].path, "/apis/apps/v1/namespaces/agents/statefulsets/workers/scale");

	/* a 403 names the statefulsets rule */
	f->sv.forbidden = true;
	assert_int_equal(bl_k8s_scale(f->k, 4, on_result, &g), 0);
	wait_got(f, &g, 2);
	assert_int_equal(g.r.http_status, 403);
	assert_contains(g.error, "needs get and patch on statefulsets/scale for 'workers'");
}

static void test_server_down(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};
	char url[64];
	int port, fd = listen_loopback(&port);

	close(fd); /* nothing listens there now */
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	f->cfg.api_url = url;
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EAGAIN);
	assert_int_equal(g.r.http_status, 0);
	assert_false(g.r.has_scale);
	assert_contains(g.error, "cannot reach the Kubernetes API at http://127.0.0.1:");
}

static void test_other_errors_carry_the_api_message(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	f->sv.fail_status = 503;
	f->sv.fail_body = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
			  "\"message\":\"etcdserver: request timed out\",\"code\":503}";
	create(f);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EAGAIN);
	assert_int_equal(g.r.http_status, 503);
	assert_contains(g.error, "answered 503 to get");
	assert_contains(g.error, "etcdserver: request timed out");

	f->sv.fail_status = 418;
	f->sv.fail_body = "short and\nstout";
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 2);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_contains(g.error, "answered 418 to get");
	assert_contains(g.error, "short and stout");

	f->sv.fail_status = 200;
	f->sv.fail_body = "{\"kind\":\"Deployment\"}";
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 3);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_contains(g.error, "is not a Scale object (kind Deployment)");

	f->sv.fail_body = "<html>";
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 4);
	assert_int_equal(g.r.rc, BL_EIO);
	assert_contains(g.error, "is not JSON");
}

static void test_scales_coalesce(void **state)
{
	struct fixture *f = *state;
	struct got g4 = {0}, g5 = {0}, g6 = {0}, gg = {0};
	struct bl_k8s_stats st;

	create(f);
	/* 4 starts at once; 5 waits; 6 replaces 5; the get waits behind them */
	assert_int_equal(bl_k8s_scale(f->k, 4, on_result, &g4), 0);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &g5), 0);
	assert_int_equal(bl_k8s_get(f->k, on_result, &gg), 0);
	assert_int_equal(bl_k8s_scale(f->k, 6, on_result, &g6), 0);
	bl_k8s_stats(f->k, &st);
	assert_true(st.busy);
	assert_true(st.pending_scale);
	assert_int_equal(st.pending_desired, 6);
	assert_int_equal(st.coalesced, 1);
	assert_int_equal(st.desired, 6);

	wait_got(f, &gg, 1);
	assert_int_equal(g4.calls, 1);
	assert_int_equal(g4.r.desired, 4);
	assert_int_equal(g5.calls, 1);
	assert_int_equal(g5.r.desired, 6); /* answered by the run that applied 6 */
	assert_int_equal(g6.calls, 1);
	assert_int_equal(g6.r.desired, 6);
	assert_int_equal(g6.r.rc, 0);
	assert_int_equal(gg.r.rc, 0);
	assert_int_equal(gg.r.spec_replicas, 6);

	/* GET PATCH(4) GET PATCH(6) GET, one at a time */
	assert_int_equal(f->sv.n_log, 5);
	assert_string_equal(f->sv.log[1].method, "PATCH");
	assert_contains(f->sv.log[1].body, "\"replicas\":4");
	assert_string_equal(f->sv.log[3].method, "PATCH");
	assert_contains(f->sv.log[3].body, "\"replicas\":6");
	assert_string_equal(f->sv.log[4].method, "GET");
	bl_k8s_stats(f->k, &st);
	assert_int_equal(st.patches, 2);
	assert_int_equal(st.operations, 3);
	assert_false(st.busy);
	assert_false(st.pending_scale);
}

static void test_timeout(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	f->sv.hang = true;
	f->cfg.timeout_ns = 200 * MS;
	create(f);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0);
	wait_got(f, &g, 1);
	assert_int_equal(g.r.rc, BL_EAGAIN);
	assert_contains(g.error, "no answer from http://127.0.0.1:");
	assert_contains(g.error, "within 200 ms");
}

/* Waits until the hanging server holds n requests. */
static void wait_hung(struct fixture *f, int n)
{
	f->timed_out = false;
	uv_timer_start(&f->guard, on_guard, WAIT_MS, 0);
	while (server_requests(&f->sv) < n && !f->timed_out)
	{
		struct timespec ms = {.tv_sec = 0, .tv_nsec = 1000000};

		uv_run(&f->loop, UV_RUN_NOWAIT);
		nanosleep(&ms, NULL);
	}
	uv_timer_stop(&f->guard);
	assert_false(f->timed_out);
}

static void test_shutdown_with_a_request_in_flight(void **state)
{
	struct fixture *f = *state;
	struct got gs = {0}, gg = {0};
	struct bl_k8s_stats st;

	f->sv.hang = true;
	f->cfg.timeout_ns = 60000 * MS; /* shutdown must not wait for this */
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &gs), 0);
	assert_int_equal(bl_k8s_get(f->k, on_result, &gg), 0);
	wait_hung(f, 1);
	bl_k8s_shutdown(f->k, on_shutdown_done, f);
	bl_k8s_shutdown(f->k, on_shutdown_done, f); /* a second call does nothing */
	assert_int_equal(bl_k8s_scale(f->k, 6, on_result, &gs), BL_EINVAL);
	assert_int_equal(bl_k8s_get(f->k, on_result, &gg), BL_EINVAL);
	bl_k8s_stats(f->k, &st);
	assert_true(st.shutting_down);
	run_until(f, &f->shut_down);
	assert_int_equal(gs.calls, 1);
	assert_int_equal(gs.r.rc, BL_EAGAIN);
	assert_contains(gs.error, "shutting down");
	assert_int_equal(gg.calls, 1);
	assert_int_equal(gg.r.rc, BL_EAGAIN);
	assert_int_equal(server_requests(&f->sv), 1);
}

static void test_destroy_with_a_request_in_flight(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	f->sv.hang = true;
	f->cfg.timeout_ns = 60000 * MS;
	create(f);
	assert_int_equal(bl_k8s_scale(f->k, 5, on_result, &g), 0);
	wait_hung(f, 1);
	bl_k8s_destroy(f->k); /* freed once its thread lets go */
	f->k = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(g.calls, 0);
}

static void destroy_from_callback(void *ctx, const struct bl_k8s_result *r)
{
	struct fixture *f = ctx;

	bl_k8s_destroy(f->k);
	f->k = NULL;
}

static void test_destroy_from_a_callback(void **state)
{
	struct fixture *f = *state;
	struct got g = {0};

	create(f);
	assert_int_equal(bl_k8s_get(f->k, destroy_from_callback, f), 0);
	assert_int_equal(bl_k8s_get(f->k, on_result, &g), 0); /* shares the first request */
	assert_int_equal(bl_k8s_scale(f->k, 8, on_result, &g), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_null(f->k);
	assert_int_equal(g.calls, 0);
}

static void destroy_in_done(void *ctx)
{
	struct fixture *f = ctx;

	bl_k8s_destroy(f->k); /* frees at once: shutdown has completed */
	f->k = NULL;
	f->shut_down = true;
}

static void test_shutdown_while_idle_then_destroy_in_done(void **state)
{
	struct fixture *f = *state;

	create(f);
	bl_k8s_shutdown(f->k, destroy_in_done, f);
	assert_false(f->shut_down); /* done comes later, on the loop */
	run_until(f, &f->shut_down);
	assert_null(f->k);
}

static void test_create_validates(void **state)
{
	struct fixture *f = *state;
	struct bl_k8s_config c = f->cfg;
	struct bl_k8s *k = NULL;
	char err[512];

#define REFUSED(part)                                                                  \
	do {                                                                           \
		err[0] = '\0';                                                         \
		assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), BL_EINVAL); \
		assert_null(k);                                                        \
		assert_contains(err, part);                                            \
		c = f->cfg;                                                            \
	} while (0)
	c.name = NULL;
	REFUSED("name: '' is not a Kubernetes name");
	c.name = "Workers";
	REFUSED("name: 'Workers' is not a Kubernetes name");
	c.namespace = "a.b";
	REFUSED("namespace: 'a.b' is not a Kubernetes namespace");
	c.api_url = "ftp://127.0.0.1";
	REFUSED("must start with https://");
	c.api_url = "https://";
	REFUSED("has no host");
	c.api_url = "https://user:pw@api.example.com";
	REFUSED("no user, query, fragment");
	c.api_url = "http://10.0.0.1:8080";
	REFUSED("a bearer token would cross the network in clear text");
	c.timeout_ns = 0;
	REFUSED("timeout:");
	c.max_conflict_retries = 21;
	REFUSED("max_conflict_retries:");
	c.conflict_backoff_ns = -1;
	REFUSED("conflict_backoff:");
	c.kind = (enum bl_k8s_kind)7;
	REFUSED("kind: must be deployment or statefulset");
	c.namespace = NULL;
	c.serviceaccount_dir = "/nonexistent-bl-sa";
	REFUSED("namespace: not set, and /nonexistent-bl-sa/namespace cannot be read");
#undef REFUSED

	/* http without a token to any host: a local proxy's business */
	c.api_url = "http://10.0.0.1:8080/";
	c.token_file = "";
	assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), 0);
	assert_string_equal(bl_k8s_url(k),
			    "http://10.0.0.1:8080/apis/apps/v1/namespaces/agents/deployments/workers/scale");
	bl_k8s_destroy(k);
	k = NULL;

	/* a path prefix is kept (API gateways such as Rancher's) */
	c = f->cfg;
	c.api_url = "https://rancher.example.com/k8s/clusters/c-1//";
	assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), 0);
	assert_string_equal(bl_k8s_url(k), "https://rancher.example.com/k8s/clusters/c-1/apis/apps/"
			    "v1/namespaces/agents/deployments/workers/scale");
	bl_k8s_destroy(k);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void test_in_cluster_defaults(void **state)
{
	struct fixture *f = *state;
	struct bl_k8s_config c;
	struct bl_k8s *k = NULL;
	char err[512], path[160];

	bl_k8s_config_defaults(&c);
	assert_int_equal(c.kind, BL_K8S_DEPLOYMENT);
	assert_int_equal(c.timeout_ns, 10000 * MS);
	assert_int_equal(c.max_conflict_retries, 3);
	c.name = "workers";
	c.serviceaccount_dir = f->dir;
	snprintf(path, sizeof path, "%s/namespace", f->dir);
	write_file(path, "team-a\n");

	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), BL_EINVAL);
	assert_contains(err, "KUBERNETES_SERVICE_HOST is not in the environment");

	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), 0);
	assert_string_equal(bl_k8s_url(k),
			    "https://10.96.0.1:443/apis/apps/v1/namespaces/team-a/deployments/workers/scale");
	bl_k8s_destroy(k);
	k = NULL;

	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	c.kind = BL_K8S_STATEFULSET;
	c.namespace = "other";
	assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), 0);
	assert_string_equal(bl_k8s_url(k), "https://[fd00:10:96::1]:443/apis/apps/v1/namespaces/"
			    "other/statefulsets/workers/scale");
	bl_k8s_destroy(k);
	k = NULL;

	setenv("KUBERNETES_SERVICE_PORT", "44x", 1);
	assert_int_equal(bl_k8s_create(&f->loop, &c, &k, err, sizeof err), BL_EINVAL);
	assert_contains(err, "do not make a URL");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_reads_the_scale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scale_patches_with_the_resource_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scale_to_the_current_count_writes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scale_to_zero_and_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_is_retried_after_a_re_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_gives_up_after_the_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unauthorized_names_the_token_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_is_read_for_every_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_token_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_token_sends_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forbidden_names_the_rbac_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found_names_the_object, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statefulset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_errors_carry_the_api_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scales_coalesce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_with_a_request_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_with_a_request_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_from_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_while_idle_then_destroy_in_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_validates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_cluster_defaults, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
