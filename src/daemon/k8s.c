/* The kubernetes actuator: the scale subresource over libcurl, off the loop.
 * See k8s.h and docs/internals/k8s-actuator.md.
 *
 * An operation (a get or a scale) is a short exchange of HTTP requests decided
 * on the loop thread: GET; for a scale, PATCH unless the count is already
 * right; on 409, a backoff on the loop's timer and GET again. Each request is
 * one work item in libuv's thread pool that reads the token, runs one libcurl
 * easy transfer and keeps the status and body; nothing else happens there. JSON
 * is read and written on the loop only, so the worker shares nothing with the
 * daemon but k's immutable settings and the cancel flag.
 */
#include "k8s.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ballast/error.h"
#include "clock.h"
#include "config.h"
#include "log.h"

#define DEFAULT_TIMEOUT_NS (10 * BL_NS_PER_S)
#define DEFAULT_RETRIES 3
#define DEFAULT_BACKOFF_NS (100 * BL_NS_PER_MS)
#define MAX_TIMEOUT_NS (INT64_C(3600) * BL_NS_PER_S)
#define MAX_BACKOFF_NS (10 * BL_NS_PER_S)
#define MAX_RETRIES 20
#define MAX_BODY_BYTES (1024 * 1024) /* a Scale or a Status is well under 1 KiB */
#define MAX_TOKEN_BYTES 16384        /* service-account JWTs are 1..2 KiB */
#define MAX_RV_BYTES 128
#define MAX_SELECTOR_BYTES 512
#define API_MSG_BYTES 240            /* of the API's Status message, in our messages */

enum step { STEP_GET, STEP_PATCH };

struct waiter {
	struct waiter *next;
	bl_k8s_done_fn cb;
	void *ctx;
};

/* One HTTP request. The loop fills the inputs, the worker the outputs; uv's
 * work queue orders the two. */
struct call {
	uv_work_t work;
	bool patch;        /* PATCH body, else GET */
	char *body;        /* the PATCH body, owned */
	/* out */
	bool attempted;    /* a transfer was started */
	long status;       /* HTTP status, 0 when no answer came */
	int fail_rc;       /* 0: an answer came; else BL_E* with err set */
	char *resp;        /* the answer's body, NUL-terminated, owned */
	size_t resp_len;
	char err[BL_K8S_ERR_MAX];
};

struct op {
	struct bl_k8s *k;
	enum bl_k8s_op kind;
	uint32_t desired;         /* scale */
	uint64_t seq;             /* order of the first request: pending ops run FIFO */
	struct waiter *head, **tail;
	bl_time_ns started_ns;
	enum step step;
	bool in_pool;             /* call is queued or running in the thread pool */
	bool backing_off;         /* the timer will start the next GET */
	struct call call;
	/* the result being built */
	int rc;
	int http_status;
	bool patched;
	uint32_t conflicts;
	uint32_t requests;
	bool has_scale;
	uint32_t spec_replicas, status_replicas;
	char rv[MAX_RV_BYTES];
	char selector[MAX_SELECTOR_BYTES];
	char err[BL_K8S_ERR_MAX];
};

struct bl_k8s {
	uv_loop_t *loop;
	/* settings: read by the workers too, never changed after create */
	enum bl_k8s_kind kind;
	char *ns;
	char *name;
	char *api_url;       /* without a trailing '/' */
	char *url;           /* the scale subresource */
	char *token_file;    /* "" = no token */
	char *ca_file;       /* "" = the system's trust store */
	bool https;
	int64_t timeout_ns;
	uint32_t max_retries;
	int64_t backoff_ns;
	atomic_bool cancel;  /* shutdown: workers abort their transfer */

	uv_timer_t timer;    /* the backoff after a 409 */
	struct op *running;  /* at most one operation at a time */
	struct op *pending_scale;
	struct op *pending_get;
	uint64_t seq;

	uint64_t operations, failures, requests, patches, conflicts, coalesced;
	bool has_desired;
	uint32_t desired;
	bool has_scale;
	uint32_t spec_replicas, status_replicas;
	bl_time_ns seen_ns;
	bool has_success;
	bl_time_ns last_success_ns;
	int64_t last_success_unix_ms;
	int last_rc;
	int last_http_status;
	char last_error[BL_K8S_ERR_MAX];

	bool shutting_down;
	bool timer_closed;
	bool done_called;    /* shutdown has completed */
	bool detached;       /* destroyed: no more callbacks; free when done */
	bl_k8s_shutdown_fn done;
	void *done_ctx;
};

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *resource_of(enum bl_k8s_kind kind)
{
	return kind == BL_K8S_STATEFULSET ? "statefulsets" : "deployments";
}

const char *bl_k8s_kind_name(enum bl_k8s_kind kind)
{
	return kind == BL_K8S_STATEFULSET ? "statefulset" : "deployment";
}

/* ---- the worker: one HTTP request ------------------------------------------------ */

/* Reads the bearer token. Runs in the thread pool: every request reads it again,
 * as the kubelet rotates projected tokens. */
static int read_token(const char *path, char *buf, size_t cap, char *err, size_t errcap)
{
	size_t n = 0, b = 0;
	ssize_t r;
	int fd, e;
	char why[128];

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		if (strerror_r(e, why, sizeof why) != 0)
			snprintf(why, sizeof why, "errno %d", e);
		return bl_errorf(err, errcap, BL_EIO, "cannot read the service account token %s: %s",
				 path, why);
	}
	while (n < cap) {
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			close(fd);
			if (strerror_r(e, why, sizeof why) != 0)
				snprintf(why, sizeof why, "errno %d", e);
			return bl_errorf(err, errcap, BL_EIO,
					 "cannot read the service account token %s: %s", path, why);
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n == cap)
		return bl_errorf(err, errcap, BL_EIO, "the token in %s is larger than %d bytes",
				 path, MAX_TOKEN_BYTES - 1);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	while (b < n && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\n' || buf[b] == '\r'))
		b++;
	if (b == n)
		return bl_errorf(err, errcap, BL_EIO, "the token file %s is empty", path);
	for (size_t i = b; i < n; i++)
		if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
			return bl_errorf(err, errcap, BL_EIO, "the token in %s holds a byte that "
					 "cannot go in a header (0x%02x at %zu)", path,
					 (unsigned char)buf[i], i);
	memmove(buf, buf + b, n - b);
	buf[n - b] = '\0';
	return 0;
}

/* Overwrites a secret in a way the compiler keeps. */
static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n--)
		*v++ = 0;
}

struct sink {
	char *buf;
	size_t len, cap;
	bool toobig;       /* the answer passed MAX_BODY_BYTES */
	bool oom;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sink *s = userp;
	size_t n = size * nmemb;

	if (n > MAX_BODY_BYTES - s->len) {
		s->toobig = true;
		return 0;
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 1024;
		char *p;

		while (cap < s->len + n + 1)
			cap *= 2;
		p = realloc(s->buf, cap);
		if (!p) {
			s->oom = true;
			return 0;
		}
		s->buf = p;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct bl_k8s *k = p;

	return atomic_load(&k->cancel) ? 1 : 0;
}

static int transport_error(struct bl_k8s *k, CURLcode cc, const char *detail, struct call *c)
{
	const char *d = detail[0] ? detail : curl_easy_strerror(cc);
	char *e = c->err;
	size_t cap = sizeof c->err;

	switch (cc) {
	case CURLE_ABORTED_BY_CALLBACK:
		return bl_errorf(e, cap, BL_EAGAIN, "cancelled: shutting down");
	case CURLE_OPERATION_TIMEDOUT:
		return bl_errorf(e, cap, BL_EAGAIN, "no answer from %s within %" PRId64 " ms: %s",
				 k->url, k->timeout_ns / BL_NS_PER_MS, d);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return bl_errorf(e, cap, BL_EAGAIN, "cannot reach the Kubernetes API at %s: %s",
				 k->api_url, d);
	case CURLE_SSL_CACERT_BADFILE:
		return bl_errorf(e, cap, BL_EIO, "cannot load the CA file %s: %s (set ca_file, or "
				 "ca_file \"\" for the system's trust store)", k->ca_file, d);
	case CURLE_PEER_FAILED_VERIFICATION:
		return bl_errorf(e, cap, BL_EIO, "TLS: the API server at %s is not trusted by %s: %s",
				 k->api_url, k->ca_file[0] ? k->ca_file : "the system's trust store",
				 d);
	case CURLE_OUT_OF_MEMORY:
		return bl_errorf(e, cap, BL_ENOMEM, "out of memory");
	default:
		return bl_errorf(e, cap, BL_EAGAIN, "request to %s failed: %s", k->url, d);
	}
}

static void call_work(uv_work_t *w)
{
	struct call *c = w->data;
	struct op *o = (struct op *)((char *)c - offsetof(struct op, call));
	struct bl_k8s *k = o->k;
	struct curl_slist *hdrs = NULL, *h;
	struct sink sink = {0};
	char token[MAX_TOKEN_BYTES], auth[MAX_TOKEN_BYTES + 32], errbuf[CURL_ERROR_SIZE];
	CURL *curl = NULL;
	CURLcode cc;

	if (atomic_load(&k->cancel)) {
		c->fail_rc = bl_errorf(c->err, sizeof c->err, BL_EAGAIN, "cancelled: shutting down");
		return;
	}
	auth[0] = '\0';
	if (k->token_file[0]) {
		c->fail_rc = read_token(k->token_file, token, sizeof token, c->err, sizeof c->err);
		if (c->fail_rc)
			goto out;
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		wipe(token, sizeof token);
	}
	curl = curl_easy_init();
	if (!curl)
		goto oom;
#define ADD_HEADER(s)                                                         \
	do {                                                                  \
		h = curl_slist_append(hdrs, (s));                             \
		if (!h)                                                       \
			goto oom;                                             \
		hdrs = h;                                                     \
	} while (0)
	ADD_HEADER("Accept: application/json");
	ADD_HEADER("User-Agent: ballast/" BL_VERSION);
	ADD_HEADER("Expect:");
	if (auth[0])
		ADD_HEADER(auth);
	if (c->patch)
		ADD_HEADER("Content-Type: application/merge-patch+json");
#undef ADD_HEADER
	errbuf[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, k->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(k->timeout_ns / BL_NS_PER_MS));
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, k);
	if (k->https && k->ca_file[0])
		curl_easy_setopt(curl, CURLOPT_CAINFO, k->ca_file);
	if (c->patch) {
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PATCH");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
	} else {
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	}
	c->attempted = true;
	cc = curl_easy_perform(curl);
	if (cc == CURLE_WRITE_ERROR && sink.toobig) {
		c->fail_rc = bl_errorf(c->err, sizeof c->err, BL_EIO, "the answer from %s is larger "
				       "than %d bytes", k->url, MAX_BODY_BYTES);
		goto out;
	}
	if (cc == CURLE_WRITE_ERROR && sink.oom)
		cc = CURLE_OUT_OF_MEMORY;
	if (cc != CURLE_OK) {
		c->fail_rc = transport_error(k, cc, errbuf, c);
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &c->status);
	c->resp = sink.buf;
	c->resp_len = sink.len;
	sink.buf = NULL;
	goto out;
oom:
	c->fail_rc = bl_errorf(c->err, sizeof c->err, BL_ENOMEM, "out of memory");
out:
	curl_easy_cleanup(curl);
	curl_slist_free_all(hdrs);
	wipe(auth, sizeof auth);
	free(sink.buf);
}

/* ---- the loop: operations ---------------------------------------------------------- */

static void after_call(uv_work_t *w, int status);
static void start_next(struct bl_k8s *k);
static void maybe_done(struct bl_k8s *k);
static void free_k(struct bl_k8s *k);

static void free_op(struct op *o)
{
	struct waiter *w, *next;

	for (w = o->head; w; w = next) {
		next = w->next;
		free(w);
	}
	free(o->call.body);
	free(o->call.resp);
	free(o);
}

static struct op *new_op(struct bl_k8s *k, enum bl_k8s_op kind)
{
	struct op *o = calloc(1, sizeof *o);

	if (!o)
		return NULL;
	o->k = k;
	o->kind = kind;
	o->tail = &o->head;
	o->seq = ++k->seq;
	o->call.work.data = &o->call;
	return o;
}

static int add_waiter(struct op *o, bl_k8s_done_fn cb, void *ctx)
{
	struct waiter *w;

	if (!cb)
		return 0;
	w = calloc(1, sizeof *w);
	if (!w)
		return BL_ENOMEM;
	w->cb = cb;
	w->ctx = ctx;
	*o->tail = w;
	o->tail = &w->next;
	return 0;
}

static void op_fail(struct op *o, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void op_fail(struct op *o, int rc, const char *fmt, ...)
{
	va_list ap;

	o->rc = rc;
	va_start(ap, fmt);
	vsnprintf(o->err, sizeof o->err, fmt, ap);
	va_end(ap);
}

/* The op has its result: record it, answer its callers, free it. k may be
 * destroyed by a callback; it is then only marked detached, not freed. */
static void finish_op(struct bl_k8s *k, struct op *o)
{
	struct bl_k8s_result r;
	struct waiter *w;
	char q[BL_K8S_ERR_MAX + 8];

	memset(&r, 0, sizeof r);
	r.op = o->kind;
	r.rc = o->rc;
	r.error = o->rc ? o->err : "";
	r.http_status = o->http_status;
	r.desired = o->kind == BL_K8S_OP_SCALE ? o->desired : 0;
	r.patched = o->patched;
	r.conflicts = o->conflicts;
	r.requests = o->requests;
	r.has_scale = o->has_scale;
	r.spec_replicas = o->spec_replicas;
	r.status_replicas = o->status_replicas;
	r.resource_version = o->rv;
	r.selector = o->selector;
	r.started_ns = o->started_ns;
	r.ended_ns = bl_mono_now();

	k->operations++;
	k->requests += o->requests;
	k->conflicts += o->conflicts;
	k->patches += o->patched;
	k->last_rc = o->rc;
	k->last_http_status = o->http_status;
	if (o->has_scale) {
		k->has_scale = true;
		k->spec_replicas = o->spec_replicas;
		k->status_replicas = o->status_replicas;
		k->seen_ns = r.ended_ns;
	}
	if (o->rc == 0) {
		k->has_success = true;
		k->last_success_ns = r.ended_ns;
		k->last_success_unix_ms = wall_ms();
		if (o->patched)
			bl_log(BL_LOG_INFO, "kubernetes scaled",
			       "kind=%s namespace=%s name=%s replicas=%" PRIu32 " conflicts=%" PRIu32,
			       bl_k8s_kind_name(k->kind), k->ns, k->name, o->desired, o->conflicts);
	} else {
		k->failures++;
		snprintf(k->last_error, sizeof k->last_error, "%s", o->err);
		if (!k->shutting_down)
			bl_log(BL_LOG_WARN, "kubernetes actuator failed",
			       "op=%s kind=%s namespace=%s name=%s status=%d error=%s",
			       o->kind == BL_K8S_OP_GET ? "get" : "scale", bl_k8s_kind_name(k->kind),
			       k->ns, k->name, o->http_status, bl_log_quote(q, sizeof q, o->err));
	}
	for (w = o->head; w; w = w->next)
		if (!k->detached)
			w->cb(w->ctx, &r);
	free_op(o);
}

static void start_call(struct bl_k8s *k, struct op *o, enum step step, char *body)
{
	free(o->call.body);
	free(o->call.resp);
	memset(&o->call, 0, sizeof o->call);
	o->call.work.data = &o->call;
	o->call.patch = step == STEP_PATCH;
	o->call.body = body;
	o->step = step;
	o->in_pool = true;
	/* uv_queue_work fails only without a work callback */
	(void)uv_queue_work(k->loop, &o->call.work, call_work, after_call);
}

/* Starts op o, which must not be pending any more. */
static void run_op(struct bl_k8s *k, struct op *o)
{
	k->running = o;
	o->started_ns = bl_mono_now();
	start_call(k, o, STEP_GET, NULL);
}

/* Starts the pending operation asked for first, if nothing runs. */
static void start_next(struct bl_k8s *k)
{
	struct op *o;

	if (k->running || k->shutting_down)
		return;
	if (k->pending_scale && (!k->pending_get || k->pending_scale->seq < k->pending_get->seq)) {
		o = k->pending_scale;
		k->pending_scale = NULL;
	} else if (k->pending_get) {
		o = k->pending_get;
		k->pending_get = NULL;
	} else {
		return;
	}
	run_op(k, o);
}

/* Copies at most API_MSG_BYTES of the API's Status message (or of a body that is
 * not one) into buf. */
static void api_message(const struct call *c, char *buf, size_t cap)
{
	json_t *doc = NULL, *m;
	size_t n = 0;

	if (cap > API_MSG_BYTES)
		cap = API_MSG_BYTES;
	buf[0] = '\0';
	if (c->resp && c->resp_len)
		doc = json_loadb(c->resp, c->resp_len, 0, NULL);
	m = json_object_get(doc, "message");
	if (json_is_string(m)) {
		snprintf(buf, cap, "%s", json_string_value(m));
	} else if (c->resp && c->resp_len && !doc) {
		for (size_t i = 0; i < c->resp_len && n + 1 < cap; i++) {
			unsigned char ch = (unsigned char)c->resp[i];

			buf[n++] = ch < 0x20 || ch > 0x7e ? ' ' : (char)ch;
		}
		buf[n] = '\0';
	}
	json_decref(doc);
	if (!buf[0])
		snprintf(buf, cap, "(no message)");
}

/* Words an HTTP status that is not a success. */
static void http_fail(struct bl_k8s *k, struct op *o)
{
	const char *verb = o->step == STEP_PATCH ? "patch" : "get";
	const char *res = resource_of(k->kind);
	long st = o->call.status;
	char msg[API_MSG_BYTES];

	api_message(&o->call, msg, sizeof msg);
	if (st == 409 && o->step == STEP_PATCH) {
		op_fail(o, BL_EAGAIN, "conflict (409) after %" PRIu32 " re-reads: %s %s/%s keeps "
			"changing under ballast (another controller scaling it?); the API said: %s",
			o->conflicts - 1, bl_k8s_kind_name(k->kind), k->ns, k->name, msg);
		return;
	}
	switch (st) {
	case 401:
		if (k->token_file[0])
			op_fail(o, BL_EIO, "the Kubernetes API refused the token (401 Unauthorized): "
				"check the service account token in %s; the API said: %s",
				k->token_file, msg);
		else
			op_fail(o, BL_EIO, "the Kubernetes API wants a token (401 Unauthorized) and "
				"none is sent (token_file is empty); the API said: %s", msg);
		break;
	case 403:
		op_fail(o, BL_EIO, "forbidden (403) to %s %s/scale '%s' in namespace '%s': the "
			"service account needs get and patch on %s/scale for '%s' in namespace "
			"'%s' (see deploy/kubernetes/role.yaml); the API said: %s",
			verb, res, k->name, k->ns, res, k->name, k->ns, msg);
		break;
	case 404:
		op_fail(o, BL_ENOENT, "%s '%s' not found in namespace '%s' (404 at %s); the API "
			"said: %s", bl_k8s_kind_name(k->kind), k->name, k->ns, k->url, msg);
		break;
	case 400:
	case 422:
		op_fail(o, BL_EINVAL, "the Kubernetes API refused replicas=%" PRIu32 " (%ld): %s",
			o->desired, st, msg);
		break;
	default:
		op_fail(o, st == 429 || st >= 500 ? BL_EAGAIN : BL_EIO,
			"the Kubernetes API answered %ld to %s %s: %s", st, verb, k->url, msg);
		break;
	}
}

/* Reads a replica count that autoscaling/v1 may leave out when it is 0. */
static bool get_replicas(json_t *parent, uint32_t *out)
{
	json_t *v = json_object_get(parent, "replicas");
	json_int_t n;

	if (!v) {
		*out = 0;
		return true;
	}
	if (!json_is_integer(v))
		return false;
	n = json_integer_value(v);
	if (n < 0 || n > INT32_MAX)
		return false;
	*out = (uint32_t)n;
	return true;
}

/* Takes the Scale object in the answer into o. Returns false with o failed if it
 * is not one. */
static bool take_scale(struct bl_k8s *k, struct op *o)
{
	json_t *doc, *kind, *meta, *spec, *status, *rv, *sel;
	json_error_t jerr;
	uint32_t sr, st;
	bool ok = false;

	doc = json_loadb(o->call.resp ? o->call.resp : "", o->call.resp_len, 0, &jerr);
	if (!doc) {
		op_fail(o, BL_EIO, "the answer from %s is not JSON (%s at byte %d)", k->url,
			jerr.text, jerr.position);
		return false;
	}
	kind = json_object_get(doc, "kind");
	meta = json_object_get(doc, "metadata");
	spec = json_object_get(doc, "spec");
	status = json_object_get(doc, "status");
	rv = json_object_get(meta, "resourceVersion");
	sel = json_object_get(status, "selector");
	if (!json_is_object(doc) || (kind && !(json_is_string(kind) &&
					      strcmp(json_string_value(kind), "Scale") == 0))) {
		op_fail(o, BL_EIO, "the answer from %s is not a Scale object (kind %s)", k->url,
			json_is_string(kind) ? json_string_value(kind) : "missing");
	} else if (!get_replicas(spec, &sr) || !get_replicas(status, &st)) {
		op_fail(o, BL_EIO, "the Scale from %s has a replicas count that is not an integer "
			"in 0..2147483647", k->url);
	} else if (rv && (!json_is_string(rv) || json_string_length(rv) >= MAX_RV_BYTES)) {
		op_fail(o, BL_EIO, "the Scale from %s has a malformed metadata.resourceVersion",
			k->url);
	} else {
		o->has_scale = true;
		o->spec_replicas = sr;
		o->status_replicas = st;
		snprintf(o->rv, sizeof o->rv, "%s", rv ? json_string_value(rv) : "");
		snprintf(o->selector, sizeof o->selector, "%s",
			 json_is_string(sel) ? json_string_value(sel) : "");
		ok = true;
	}
	json_decref(doc);
	return ok;
}

/* {"metadata":{"resourceVersion":rv},"spec":{"replicas":n}}: a merge patch whose
 * resourceVersion makes the API server answer 409 if the object changed since. */
static char *patch_body(const struct op *o)
{
	json_t *doc;
	char *s;

	if (o->rv[0])
		doc = json_pack("{s:{s:s},s:{s:I}}", "metadata", "resourceVersion", o->rv, "spec",
				"replicas", (json_int_t)o->desired);
	else
		doc = json_pack("{s:{s:I}}", "spec", "replicas", (json_int_t)o->desired);
	if (!doc)
		return NULL;
	s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return s;
}

static void on_backoff(uv_timer_t *t)
{
	struct bl_k8s *k = t->data;
	struct op *o = k->running;

	if (!o || !o->backing_off)
		return;
	o->backing_off = false;
	start_call(k, o, STEP_GET, NULL);
}

/* Decides the next step of the running op from its call's answer. */
static void advance(struct bl_k8s *k, struct op *o)
{
	long st = o->call.status;
	char *body;

	o->http_status = (int)st;
	if (o->call.fail_rc) {
		op_fail(o, o->call.fail_rc, "%s", o->call.err);
		goto finish;
	}
	if (o->step == STEP_GET) {
		if (st != 200) {
			http_fail(k, o);
			goto finish;
		}
		if (!take_scale(k, o) || o->kind == BL_K8S_OP_GET)
			goto finish;
		if (o->spec_replicas == o->desired) {
			o->rc = 0; /* nothing to write */
			goto finish;
		}
		if (k->shutting_down) {
			op_fail(o, BL_EAGAIN, "cancelled: shutting down"); /* no PATCH on the way out */
			goto finish;
		}
		body = patch_body(o);
		if (!body) {
			op_fail(o, BL_ENOMEM, "out of memory");
			goto finish;
		}
		start_call(k, o, STEP_PATCH, body);
		return;
	}
	if (st == 409) {
		int64_t wait_ns = k->backoff_ns << (o->conflicts < 16 ? o->conflicts : 16);

		o->conflicts++;
		if (o->conflicts > k->max_retries) {
			http_fail(k, o);
			goto finish;
		}
		if (k->shutting_down) {
			op_fail(o, BL_EAGAIN, "cancelled: shutting down");
			goto finish;
		}
		/* Someone changed the object since the GET: read it again, after a
		 * pause that doubles with each conflict. */
		if (wait_ns > MAX_BACKOFF_NS)
			wait_ns = MAX_BACKOFF_NS;
		o->backing_off = true;
		bl_timer_start(&k->timer, on_backoff, (uint64_t)(wait_ns / BL_NS_PER_MS), 0);
		return;
	}
	if (st < 200 || st > 299) {
		http_fail(k, o);
		goto finish;
	}
	o->patched = true;
	if (!take_scale(k, o)) {
		/* the write took; only its echo is unreadable */
		o->rc = 0;
		o->has_scale = false;
	}
finish:
	k->running = NULL;
	finish_op(k, o);
	start_next(k);
	maybe_done(k);
}

static void after_call(uv_work_t *w, int status)
{
	struct call *c = w->data;
	struct op *o = (struct op *)((char *)c - offsetof(struct op, call));
	struct bl_k8s *k = o->k;

	o->in_pool = false;
	if (status == UV_ECANCELED) {
		op_fail(o, BL_EAGAIN, "cancelled: shutting down");
		k->running = NULL;
		finish_op(k, o);
		maybe_done(k);
		return;
	}
	o->requests += c->attempted;
	advance(k, o);
}

/* ---- shutdown ------------------------------------------------------------------------ */

static void answer_cancelled(struct bl_k8s *k, struct op *o)
{
	if (!o)
		return;
	op_fail(o, BL_EAGAIN, "cancelled: shutting down");
	finish_op(k, o);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct bl_k8s *k = h->data;
	struct op *o;

	k->timer_closed = true;
	/* an op waiting out its backoff has no work in the pool: end it here */
	if (k->running && k->running->backing_off) {
		o = k->running;
		k->running = NULL;
		answer_cancelled(k, o);
	}
	o = k->pending_scale;
	k->pending_scale = NULL;
	answer_cancelled(k, o);
	o = k->pending_get;
	k->pending_get = NULL;
	answer_cancelled(k, o);
	maybe_done(k);
}

/* Once shut down and idle: says so, and frees k if it was destroyed meanwhile. */
static void maybe_done(struct bl_k8s *k)
{
	if (!k->shutting_down || !k->timer_closed || k->running || k->pending_scale ||
	    k->pending_get || k->done_called)
		return;
	k->done_called = true;
	if (k->detached) {
		free_k(k);
		return;
	}
	if (k->done)
		k->done(k->done_ctx); /* may destroy k: touch nothing after */
}

static void begin_shutdown(struct bl_k8s *k)
{
	k->shutting_down = true;
	atomic_store(&k->cancel, true);
	if (k->running && k->running->in_pool)
		uv_cancel((uv_req_t *)&k->running->call.work); /* or it ends soon: cancel is set */
	uv_close((uv_handle_t *)&k->timer, on_timer_closed);
}

void bl_k8s_shutdown(struct bl_k8s *k, bl_k8s_shutdown_fn done, void *ctx)
{
	if (k->shutting_down)
		return;
	k->done = done;
	k->done_ctx = ctx;
	bl_log(BL_LOG_INFO, "kubernetes actuator stopping", "busy=%s",
	       k->running ? "true" : "false");
	begin_shutdown(k);
}

/* ---- setup ---------------------------------------------------------------------------- */


static char *join_path(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s/%s", dir, file);
	return s;
}

/* Reads the pod's namespace from the service-account mount. */
static int read_namespace(const char *dir, char **out, char *err, size_t errcap)
{
	char buf[128], why[128];
	char *path = join_path(dir, "namespace");
	FILE *f;
	size_t n;
	int e;

	if (!path)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	f = fopen(path, "r");
	if (!f) {
		e = errno;
		if (strerror_r(e, why, sizeof why) != 0)
			snprintf(why, sizeof why, "errno %d", e);
		bl_errorf(err, errcap, BL_EINVAL, "namespace: not set, and %s cannot be read (%s): "
			  "set the namespace when ballast does not run in a pod", path, why);
		free(path);
		return BL_EINVAL;
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (!bl_cfg_k8s_name_ok(buf, 63, false)) {
		bl_errorf(err, errcap, BL_EINVAL, "namespace: %s does not hold a namespace", path);
		free(path);
		return BL_EINVAL;
	}
	free(path);
	*out = strdup(buf);
	return *out ? 0 : bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
}

static bool has_prefix_ci(const char *s, const char *p)
{
	return strncasecmp(s, p, strlen(p)) == 0;
}

/* True when the URL's host is loopback, where a token over http stays local. */
static bool loopback_host(const char *url)
{
	const char *h = strstr(url, "://") + 3;
	size_t n = strcspn(h, ":/");

	if (h[0] == '[')
		return strncmp(h, "[::1]", 5) == 0;
	if (n == 9 && strncasecmp(h, "localhost", 9) == 0)
		return true;
	return strncmp(h, "127.", 4) == 0;
}

/* Checks the URL and copies it without trailing '/'. */
static int take_url(const char *in, bool explicit_url, char **out, char *err, size_t errcap)
{
	const char *h;
	size_t n = strlen(in);
	char *s;

	if (!has_prefix_ci(in, "https://") && !(explicit_url && has_prefix_ci(in, "http://")))
		return bl_errorf(err, errcap, BL_EINVAL, "api_url: '%s' must start with https:// "
				 "(or http:// for a local proxy such as kubectl proxy)", in);
	h = strstr(in, "://") + 3;
	if (!*h || *h == '/' || *h == ':')
		return bl_errorf(err, errcap, BL_EINVAL, "api_url: '%s' has no host", in);
	if (strcspn(h, "@?# \t\r\n") < strlen(h))
		return bl_errorf(err, errcap, BL_EINVAL, "api_url: '%s' may hold a scheme, host, "
				 "port and path prefix only (no user, query, fragment or spaces)",
				 in);
	while (n > 0 && in[n - 1] == '/')
		n--;
	s = strndup(in, n);
	if (!s)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	*out = s;
	return 0;
}

/* https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, as client-go's
 * in-cluster config builds it. */
static int url_from_env(char **out, char *err, size_t errcap)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	size_t n;
	char *s;

	if (!host || !host[0])
		return bl_errorf(err, errcap, BL_EINVAL, "api_url: not set, and "
				 "KUBERNETES_SERVICE_HOST is not in the environment (not in a "
				 "pod?): set api_url");
	if (!port || !port[0])
		port = "443";
	if (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    strcspn(host, "/@?# \t\r\n[]") != strlen(host))
		return bl_errorf(err, errcap, BL_EINVAL, "api_url: KUBERNETES_SERVICE_HOST '%s' "
				 "and KUBERNETES_SERVICE_PORT '%s' do not make a URL", host, port);
	n = strlen(host) + strlen(port) + 16;
	s = malloc(n);
	if (!s)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	if (strchr(host, ':'))
		snprintf(s, n, "https://[%s]:%s", host, port);
	else
		snprintf(s, n, "https://%s:%s", host, port);
	*out = s;
	return 0;
}

void bl_k8s_config_defaults(struct bl_k8s_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->kind = BL_K8S_DEPLOYMENT;
	cfg->timeout_ns = DEFAULT_TIMEOUT_NS;
	cfg->max_conflict_retries = DEFAULT_RETRIES;
	cfg->conflict_backoff_ns = DEFAULT_BACKOFF_NS;
}

static void free_k(struct bl_k8s *k)
{
	free(k->ns);
	free(k->name);
	free(k->api_url);
	free(k->url);
	free(k->token_file);
	free(k->ca_file);
	free(k);
	curl_global_cleanup();
}

int bl_k8s_create(uv_loop_t *loop, const struct bl_k8s_config *cfg, struct bl_k8s **out,
		  char *err, size_t errcap)
{
	const char *sa;
	struct bl_k8s *k;
	size_t n;
	int rc;

	if (!loop || !cfg || !out)
		return bl_errorf(err, errcap, BL_EINVAL, "kubernetes: loop, config and out are "
				 "required");
	if (cfg->kind != BL_K8S_DEPLOYMENT && cfg->kind != BL_K8S_STATEFULSET)
		return bl_errorf(err, errcap, BL_EINVAL, "kind: must be deployment or statefulset");
	if (!cfg->name || !bl_cfg_k8s_name_ok(cfg->name, 253, true))
		return bl_errorf(err, errcap, BL_EINVAL, "name: '%s' is not a Kubernetes name: "
				 "1..253 lowercase letters, digits, '-' or '.', starting and "
				 "ending with a letter or digit", cfg->name ? cfg->name : "");
	if (cfg->namespace && !bl_cfg_k8s_name_ok(cfg->namespace, 63, false))
		return bl_errorf(err, errcap, BL_EINVAL, "namespace: '%s' is not a Kubernetes "
				 "namespace: 1..63 lowercase letters, digits or '-', starting "
				 "and ending with a letter or digit", cfg->namespace);
	if (cfg->timeout_ns < BL_NS_PER_MS || cfg->timeout_ns > MAX_TIMEOUT_NS)
		return bl_errorf(err, errcap, BL_EINVAL, "timeout: %" PRId64 " ns is out of range "
				 "(1ms .. 1h)", cfg->timeout_ns);
	if (cfg->max_conflict_retries > MAX_RETRIES)
		return bl_errorf(err, errcap, BL_EINVAL, "max_conflict_retries: %" PRIu32
				 " is out of range (0 .. %d)", cfg->max_conflict_retries,
				 MAX_RETRIES);
	if (cfg->conflict_backoff_ns < 0 || cfg->conflict_backoff_ns > MAX_BACKOFF_NS)
		return bl_errorf(err, errcap, BL_EINVAL, "conflict_backoff: %" PRId64 " ns is out "
				 "of range (0 .. 10s)", cfg->conflict_backoff_ns);

	k = calloc(1, sizeof *k);
	if (!k)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	sa = cfg->serviceaccount_dir ? cfg->serviceaccount_dir : BL_K8S_SERVICEACCOUNT_DIR;
	if (cfg->api_url)
		rc = take_url(cfg->api_url, true, &k->api_url, err, errcap);
	else
		rc = url_from_env(&k->api_url, err, errcap);
	if (rc)
		goto out_free;
	k->https = has_prefix_ci(k->api_url, "https://");
	if (cfg->namespace) {
		k->ns = strdup(cfg->namespace);
	} else {
		rc = read_namespace(sa, &k->ns, err, errcap);
		if (rc)
			goto out_free;
	}
	k->name = strdup(cfg->name);
	k->token_file = cfg->token_file ? strdup(cfg->token_file) : join_path(sa, "token");
	k->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : join_path(sa, "ca.crt");
	if (!k->ns || !k->name || !k->token_file || !k->ca_file)
		goto oom;
	if (!k->https && k->token_file[0] && !loopback_host(k->api_url)) {
		rc = bl_errorf(err, errcap, BL_EINVAL, "api_url: '%s' is plain http to a host "
			       "that is not loopback: a bearer token would cross the network in "
			       "clear text; use https, or a local kubectl proxy with token_file "
			       "\"\"", k->api_url);
		goto out_free;
	}
	n = strlen(k->api_url) + strlen(k->ns) + strlen(k->name) + 64;
	k->url = malloc(n);
	if (!k->url)
		goto oom;
	snprintf(k->url, n, "%s/apis/apps/v1/namespaces/%s/%s/%s/scale", k->api_url, k->ns,
		 resource_of(cfg->kind), k->name);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = bl_errorf(err, errcap, BL_ENOMEM, "cannot initialise libcurl");
		goto out_free;
	}
	k->loop = loop;
	k->kind = cfg->kind;
	k->timeout_ns = cfg->timeout_ns;
	k->max_retries = cfg->max_conflict_retries;
	k->backoff_ns = cfg->conflict_backoff_ns;
	atomic_init(&k->cancel, false);
	uv_timer_init(loop, &k->timer);
	k->timer.data = k;
	*out = k;
	return 0;

oom:
	rc = bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
out_free:
	free(k->ns);
	free(k->name);
	free(k->api_url);
	free(k->url);
	free(k->token_file);
	free(k->ca_file);
	free(k);
	return rc;
}

/* ---- the API -------------------------------------------------------------------------- */

/* Joins cb to `pending`, the operation of this kind not yet started, or to
 * a new one (*fresh). Returns it, or NULL when out of memory (nothing
 * changed). */
static struct op *join_op(struct bl_k8s *k, struct op *pending, enum bl_k8s_op kind,
			  bl_k8s_done_fn cb, void *ctx, bool *fresh)
{
	struct op *o = pending;

	*fresh = !o;
	if (!o && !(o = new_op(k, kind)))
		return NULL;
	if (add_waiter(o, cb, ctx) != 0) {
		if (*fresh)
			free_op(o);
		return NULL;
	}
	return o;
}

/* A new operation runs now, or waits in *slot for the one running. */
static void start_op(struct bl_k8s *k, struct op *o, struct op **slot)
{
	if (k->running)
		*slot = o;
	else
		run_op(k, o);
}

int bl_k8s_get(struct bl_k8s *k, bl_k8s_done_fn cb, void *ctx)
{
	struct op *o;
	bool fresh;

	if (k->shutting_down)
		return BL_EINVAL;
	o = join_op(k, k->pending_get, BL_K8S_OP_GET, cb, ctx, &fresh);
	if (!o)
		return BL_ENOMEM;
	if (fresh)
		start_op(k, o, &k->pending_get);
	return 0;
}

int bl_k8s_scale(struct bl_k8s *k, uint32_t desired, bl_k8s_done_fn cb, void *ctx)
{
	struct op *o;
	bool fresh;

	if (k->shutting_down)
		return BL_EINVAL;
	if (desired > INT32_MAX)
		return BL_ERANGE;
	o = join_op(k, k->pending_scale, BL_K8S_OP_SCALE, cb, ctx, &fresh);
	if (!o)
		return BL_ENOMEM;
	k->has_desired = true;
	k->desired = desired;
	if (!fresh)
		k->coalesced++; /* the pending count gives way to this one */
	o->desired = desired;
	if (fresh)
		start_op(k, o, &k->pending_scale);
	return 0;
}

void bl_k8s_stats(const struct bl_k8s *k, struct bl_k8s_stats *out)
{
	memset(out, 0, sizeof *out);
	out->busy = k->running != NULL;
	out->pending_scale = k->pending_scale != NULL;
	out->pending_desired = k->pending_scale ? k->pending_scale->desired : 0;
	out->operations = k->operations;
	out->failures = k->failures;
	out->requests = k->requests;
	out->patches = k->patches;
	out->conflicts = k->conflicts;
	out->coalesced = k->coalesced;
	out->has_desired = k->has_desired;
	out->desired = k->desired;
	out->has_scale = k->has_scale;
	out->spec_replicas = k->spec_replicas;
	out->status_replicas = k->status_replicas;
	out->seen_ns = k->seen_ns;
	out->has_success = k->has_success;
	out->last_success_ns = k->last_success_ns;
	out->last_success_unix_ms = k->last_success_unix_ms;
	out->last_rc = k->last_rc;
	out->last_http_status = k->last_http_status;
	snprintf(out->last_error, sizeof out->last_error, "%s", k->last_error);
	out->shutting_down = k->shutting_down;
}

const char *bl_k8s_url(const struct bl_k8s *k)
{
	return k->url;
}

void bl_k8s_destroy(struct bl_k8s *k)
{
	if (!k)
		return;
	if (k->done_called) {
		free_k(k);
		return;
	}
	/* Not idle yet: drop every callback and let the last one out free k. */
	k->detached = true;
	if (!k->shutting_down)
		begin_shutdown(k);
}
