/* Unit tests for the scraper: a real libuv loop and a tiny HTTP server on
 * 127.0.0.1 written here, which answers each connection as the test asks —
 * a vLLM-like page with Content-Length, chunked, up to the close, a 500, a
 * redirect, gzip, garbage, a cut-short body, a body over the cap, or
 * nothing at all. Connection refused uses a port just closed. Each test
 * runs its own loop to the end and checks that uv_loop_close finds no
 * handle left: a scraper destroyed in any state releases everything (and
 * AddressSanitizer checks that the memory went with it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ballast/error.h"
#include "scrape.h"

#define MS INT64_C(1000000)
#define MAX_CONNS 16
#define MAX_RESULTS 8
#define HUGE_BODY ((size_t)5 << 20)

static const char page[] =
	"# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
	"# TYPE vllm:num_requests_running gauge\n"
	"vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 12.0\n"
	"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
	"# TYPE vllm:num_requests_waiting gauge\n"
	"vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 7.0\n"
	"vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 4.0\n"
	"# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.\n"
	"# TYPE vllm:gpu_cache_usage_perc gauge\n"
	"vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.5\n";

/* How the test server answers. */
enum mode {
	M_LENGTH,        /* 200 with Content-Length */
	M_CHUNKED,       /* 100 Continue, then 200 chunked in odd pieces */
	M_UNTIL_CLOSE,   /* 200 without a length: the body ends at the close */
	M_500,           /* 500 with a short body */
	M_REDIRECT,      /* 301 */
	M_GZIP,          /* 200 with Content-Encoding: gzip */
	M_GARBAGE,       /* not HTTP */
	M_TRUNCATED,     /* Content-Length 100, 10 bytes, close */
	M_NOTHING,       /* close at once without a byte */
	M_SILENT,        /* read the request, never answer */
	M_HUGE_LENGTH,   /* Content-Length over the cap */
	M_HUGE_CHUNKED,  /* chunked, on past the cap */
	M_HALF,          /* half a Content-Length answer, then silence */
};

struct server;

struct sconn {
	uv_tcp_t tcp;
	uv_write_t w;
	struct server *srv;
	char req[4096];
	size_t req_len;
	bool answered;
	bool closing;
	char *out;
};

struct server {
	uv_tcp_t listener;
	uint16_t port;
	enum mode mode;
	int accepted;
	int requests;
	char last_request[4096];
	int64_t accept_ns[MAX_RESULTS * 2];
	struct sconn *conns[MAX_CONNS];
	bool closed;
	void (*on_request)(struct server *srv); /* test hook, after a request arrives */
	void (*on_half_sent)(struct server *srv); /* test hook, M_HALF's bytes are sent */
	void *data;
};

/* Everything one test's loop holds. */
struct fixture {
	uv_loop_t loop;
	struct server srv;
	uv_timer_t watchdog;
	bool watchdog_fired;
	struct bl_scraper *scraper;
	int stop_after;       /* destroy everything after this many results */
	int n;                /* results seen */
	struct {
		bool ok;
		bool timed_out;
		int status;
		bool body_null;
		size_t body_len;
		char body[1024];
		char error[256];
		int64_t duration_ns;
		int64_t finished_ns;
		int sum_rc;
		double waiting;
	} r[MAX_RESULTS];
	struct bl_scraper_stats stats_in_cb; /* stats seen from inside the last callback */
};

/* ---- the test server ---------------------------------------------------- */

static void sconn_closed(uv_handle_t *h)
{
	struct sconn *c = h->data;

	for (int i = 0; i < MAX_CONNS; i++)
		if (c->srv->conns[i] == c)
			c->srv->conns[i] = NULL;
	free(c->out);
	free(c);
}

static void sconn_close(struct sconn *c)
{
	if (!c->closing) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, sconn_closed);
	}
}

static void on_sent(uv_write_t *w, int status)
{
	struct sconn *c = w->data;

	/* status: the scraper may hang up first (a body over its cap). */
	if (status == 0 && c->srv->mode == M_HALF && c->srv->on_half_sent)
		c->srv->on_half_sent(c->srv);
	else
		sconn_close(c);
}

static void send_text(struct sconn *c, char *text, size_t len)
{
	uv_buf_t b = uv_buf_init(text, (unsigned)len);

	c->out = text;
	c->w.data = c;
	if (uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, on_sent) != 0)
		sconn_close(c);
}

static char *printf_alloc(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *printf_alloc(size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	*len = (size_t)n;
	return p;
}

static void answer(struct sconn *c)
{
	size_t len = 0, half = strlen(page) / 2;
	char *out = NULL;

	switch (c->srv->mode) {
	case M_LENGTH:
		out = printf_alloc(&len, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
					 "charset=utf-8\r\nContent-Length: %zu\r\n\r\n%s",
				   strlen(page), page);
		break;
	case M_CHUNKED:
		out = printf_alloc(&len, "HTTP/1.1 100 Continue\r\n\r\n"
					 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
					 "Content-Encoding: identity\r\n\r\n"
					 "%zx\r\n%.*s\r\n%zx;ext=1\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n",
				   half, (int)half, page, strlen(page) - half, page + half);
		break;
	case M_UNTIL_CLOSE:
		out = printf_alloc(&len, "HTTP/1.0 200 OK\r\n\r\n%s", page);
		break;
	case M_500:
		out = printf_alloc(&len, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
					 "\r\noops");
		break;
	case M_REDIRECT:
		out = printf_alloc(&len, "HTTP/1.1 301 Moved Permanently\r\nLocation: /m\r\n"
					 "Content-Length: 0\r\n\r\n");
		break;
	case M_GZIP:
		out = printf_alloc(&len, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
					 "Content-Length: 3\r\n\r\n\x1f\x8b\x08");
		break;
	case M_GARBAGE:
		out = printf_alloc(&len, "SSH-2.0-OpenSSH_9.2\r\n");
		break;
	case M_TRUNCATED:
		out = printf_alloc(&len, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
		break;
	case M_HALF:
		out = printf_alloc(&len, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%.*s",
				   strlen(page), (int)half, page);
		break;
	case M_NOTHING:
		sconn_close(c);
		return;
	case M_SILENT:
		return;
	case M_HUGE_LENGTH:
	case M_HUGE_CHUNKED: {
		bool chunked = c->srv->mode == M_HUGE_CHUNKED;
		char head[128];
		int h = chunked ? snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
							      "chunked\r\n\r\n%zx\r\n", HUGE_BODY)
				: snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: "
							      "%zu\r\n\r\n", HUGE_BODY);

		len = (size_t)h + HUGE_BODY + (chunked ? 7 : 0);
		out = malloc(len);
		assert_non_null(out);
		memcpy(out, head, (size_t)h);
		memset(out + h, 'x', HUGE_BODY);
		if (chunked)
			memcpy(out + h + HUGE_BODY, "\r\n0\r\n\r\n", 7);
		break;
	}
	}
	send_text(c, out, len);
}

static void s_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct sconn *c = h->data;

	(void)suggested;
	*b = uv_buf_init(c->req + c->req_len, (unsigned)(sizeof c->req - 1 - c->req_len));
}

static void s_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct sconn *c = st->data;
	struct server *srv = c->srv;

	(void)b;
	if (nread < 0) {
		sconn_close(c); /* the scraper hung up */
		return;
	}
	c->req_len += (size_t)nread;
	c->req[c->req_len] = '\0';
	if (!c->answered && strstr(c->req, "\r\n\r\n")) {
		c->answered = true;
		srv->requests++;
		snprintf(srv->last_request, sizeof srv->last_request, "%s", c->req);
		answer(c);
		if (srv->on_request)
			srv->on_request(srv);
	} else if (c->req_len >= sizeof c->req - 1) {
		sconn_close(c);
	}
}

static void s_connection(uv_stream_t *l, int status)
{
	struct server *srv = l->data;
	struct sconn *c;
	int slot = -1;

	assert_int_equal(status, 0);
	c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->srv = srv;
	uv_tcp_init(l->loop, &c->tcp);
	c->tcp.data = c;
	for (int i = 0; i < MAX_CONNS && slot < 0; i++)
		if (!srv->conns[i])
			slot = i;
	assert_true(slot >= 0);
	srv->conns[slot] = c;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
	if (srv->accepted < MAX_RESULTS * 2)
		srv->accept_ns[srv->accepted] = (int64_t)uv_hrtime();
	srv->accepted++;
	uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

static void server_start(uv_loop_t *loop, struct server *srv, enum mode mode)
{
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int namelen = sizeof ss;

	memset(srv, 0, sizeof *srv);
	srv->mode = mode;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
	assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
	srv->listener.data = srv;
	assert_int_equal(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 16, s_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &namelen), 0);
	srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void server_close(struct server *srv)
{
	if (srv->closed)
		return;
	srv->closed = true;
	uv_close((uv_handle_t *)&srv->listener, NULL);
	for (int i = 0; i < MAX_CONNS; i++)
		if (srv->conns[i])
			sconn_close(srv->conns[i]);
}

/* ---- the scraper's side ------------------------------------------------- */

static void stop_all(struct fixture *f)
{
	bl_scraper_destroy(f->scraper);
	f->scraper = NULL;
	server_close(&f->srv);
	if (!uv_is_closing((uv_handle_t *)&f->watchdog))
		uv_close((uv_handle_t *)&f->watchdog, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->watchdog_fired = true;
	stop_all(f);
}

static void on_result(void *ctx, const struct bl_scrape_result *r)
{
	struct fixture *f = ctx;
	int i = f->n++;

	assert_true(i < MAX_RESULTS);
	f->r[i].ok = r->ok;
	f->r[i].timed_out = r->timed_out;
	f->r[i].status = r->http_status;
	f->r[i].body_null = r->body == NULL;
	f->r[i].body_len = r->body_len;
	if (r->body) {
		assert_int_equal(r->body[r->body_len], '\0');
		snprintf(f->r[i].body, sizeof f->r[i].body, "%s", r->body);
	}
	assert_non_null(r->error);
	assert_int_equal(r->ok, r->error[0] == '\0');
	snprintf(f->r[i].error, sizeof f->r[i].error, "%s", r->error);
	f->r[i].duration_ns = r->duration_ns;
	f->r[i].finished_ns = r->finished_ns;
	f->r[i].waiting = -1;
	f->r[i].sum_rc = bl_scrape_sum(r, "vllm:num_requests_waiting", NULL, 0, &f->r[i].waiting,
				       NULL, NULL, 0);
	bl_scraper_stats(f->scraper, &f->stats_in_cb);
	if (f->n == f->stop_after)
		stop_all(f); /* destroys the scraper from inside its own callback */
}

static void fixture_start(struct fixture *f, enum mode mode)
{
	memset(f, 0, sizeof *f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	server_start(&f->loop, &f->srv, mode);
	uv_timer_init(&f->loop, &f->watchdog);
	f->watchdog.data = f;
	uv_timer_start(&f->watchdog, on_watchdog, 20000, 0);
	f->stop_after = 1;
}

static void scrape_url(struct fixture *f, const char *url, int64_t interval_ns, int64_t timeout_ns)
{
	assert_int_equal(bl_scraper_create(&f->loop, url, interval_ns, timeout_ns, on_result, f,
					   &f->scraper),
			 0);
}

static void scrape(struct fixture *f, const char *path, int64_t interval_ns, int64_t timeout_ns)
{
	char url[128];

	snprintf(url, sizeof url, "http://127.0.0.1:%u%s", f->srv.port, path);
	scrape_url(f, url, interval_ns, timeout_ns);
}

/* Runs the loop until nothing is left, and checks that nothing is. */
static void run_to_end(struct fixture *f)
{
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_false(f->watchdog_fired);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* One scrape against a server in `mode`. */
static void one_scrape(struct fixture *f, enum mode mode, int64_t timeout_ns)
{
	fixture_start(f, mode);
	scrape(f, "/metrics", 1000 * MS, timeout_ns);
	run_to_end(f);
	assert_int_equal(f->n, 1);
}

/* ---- tests -------------------------------------------------------------- */

static void test_content_length(void **state)
{
	struct fixture f;
	char want[128];

	(void)state;
	fixture_start(&f, M_LENGTH);
	scrape(&f, "/metrics?format=text#frag", 1000 * MS, 2000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 1);
	assert_true(f.r[0].ok);
	assert_false(f.r[0].timed_out);
	assert_int_equal(f.r[0].status, 200);
	assert_string_equal(f.r[0].body, page);
	assert_int_equal(f.r[0].body_len, strlen(page));
	assert_int_equal(f.r[0].sum_rc, 0);
	assert_true(f.r[0].waiting == 11.0);
	assert_true(f.r[0].duration_ns > 0);
	/* The request: path and query without the fragment, Host as written. */
	snprintf(want, sizeof want, "GET /metrics?format=text HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n",
		 f.srv.port);
	assert_memory_equal(f.srv.last_request, want, strlen(want));
	assert_non_null(strstr(f.srv.last_request, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(f.srv.last_request, "\r\nAccept-Encoding: identity\r\n"));
	assert_non_null(strstr(f.srv.last_request, "\r\nAccept: text/plain"));
	assert_null(strstr(f.srv.last_request, "Authorization"));
	/* Stats are up to date inside the callback. */
	assert_int_equal(f.stats_in_cb.successes, 1);
	assert_int_equal(f.stats_in_cb.failures, 0);
	assert_true(f.stats_in_cb.last_success_ns == f.r[0].finished_ns);
	assert_int_equal(f.stats_in_cb.last_status, 200);
	assert_string_equal(f.stats_in_cb.last_error, "");
	assert_false(f.stats_in_cb.in_flight);
}

static void test_chunked(void **state)
{
	struct fixture f;

	(void)state;
	one_scrape(&f, M_CHUNKED, 2000 * MS);
	assert_true(f.r[0].ok);
	assert_int_equal(f.r[0].status, 200); /* the 100 was skipped */
	assert_string_equal(f.r[0].body, page);
	assert_true(f.r[0].waiting == 11.0);
}

static void test_until_close(void **state)
{
	struct fixture f;

	(void)state;
	one_scrape(&f, M_UNTIL_CLOSE, 2000 * MS);
	assert_true(f.r[0].ok);
	assert_string_equal(f.r[0].body, page);
}

static void test_status_500(void **state)
{
	struct fixture f;

	(void)state;
	one_scrape(&f, M_500, 2000 * MS);
	assert_false(f.r[0].ok);
	assert_int_equal(f.r[0].status, 500);
	assert_string_equal(f.r[0].body, "oops"); /* the body of any whole answer */
	assert_non_null(strstr(f.r[0].error, "HTTP 500 from 127.0.0.1:"));
	/* Never a zero: the sum says the scrape failed. */
	assert_int_equal(f.r[0].sum_rc, BL_EIO);
	assert_true(f.r[0].waiting == -1);
	assert_int_equal(f.stats_in_cb.failures, 1);
	assert_int_equal(f.stats_in_cb.last_success_ns, 0);
	assert_string_equal(f.stats_in_cb.last_error, f.r[0].error);
}

static void test_failures(void **state)
{
	static const struct {
		enum mode mode;
		const char *says;
	} cases[] = {
		{M_REDIRECT, "redirects are not followed"},
		{M_GZIP, "Content-Encoding: gzip"},
		{M_GARBAGE, "malformed HTTP answer"},
		{M_TRUNCATED, "before the answer was complete"},
		{M_NOTHING, "without answering"},
		{M_HUGE_LENGTH, "over the cap of 4194304 bytes"},
		{M_HUGE_CHUNKED, "passed the cap of 4194304 bytes"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct fixture f;

		one_scrape(&f, cases[i].mode, 5000 * MS);
		if (f.r[0].ok || !strstr(f.r[0].error, cases[i].says))
			fail_msg("case %zu: ok %d, error '%s'; want '%s'", i, f.r[0].ok,
				 f.r[0].error, cases[i].says);
		assert_false(f.r[0].timed_out);
		assert_int_equal(f.r[0].sum_rc, BL_EIO);
		if (cases[i].mode != M_REDIRECT)
			assert_true(f.r[0].body_null);
	}
}

static void test_timeout(void **state)
{
	struct fixture f;
	char want[96];

	(void)state;
	one_scrape(&f, M_SILENT, 100 * MS);
	assert_false(f.r[0].ok);
	assert_true(f.r[0].timed_out);
	assert_int_equal(f.r[0].status, 0);
	assert_true(f.r[0].body_null);
	assert_true(f.r[0].duration_ns >= 99 * MS);
	snprintf(want, sizeof want, "timed out after 100ms waiting for an answer from 127.0.0.1:%u",
		 f.srv.port);
	assert_string_equal(f.r[0].error, want);
	assert_int_equal(f.stats_in_cb.timeouts, 1);
}

static void test_connection_refused(void **state)
{
	struct fixture f;
	uint16_t closed_port;
	char url[64], want[96];

	(void)state;
	fixture_start(&f, M_LENGTH);
	/* The server's port, once the server is gone: nothing listens there. */
	closed_port = f.srv.port;
	server_close(&f.srv);
	uv_run(&f.loop, UV_RUN_NOWAIT);
	snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", closed_port);
	scrape_url(&f, url, 1000 * MS, 2000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 1);
	assert_false(f.r[0].ok);
	assert_false(f.r[0].timed_out);
	assert_int_equal(f.r[0].status, 0);
	assert_true(f.r[0].body_null);
	snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%u: connection refused", closed_port);
	assert_string_equal(f.r[0].error, want);
}

/* Scrapes repeat every interval; each one starts after the previous one
 * ended, even when a scrape takes longer than the interval. */
static void test_interval(void **state)
{
	struct fixture f;

	(void)state;
	fixture_start(&f, M_LENGTH);
	f.stop_after = 3;
	scrape(&f, "/", 30 * MS, 1000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 3);
	assert_int_equal(f.srv.accepted, 3);
	for (int i = 0; i < 3; i++)
		assert_true(f.r[i].ok);
	/* Start to start is the interval (libuv timers count whole ms). */
	for (int i = 1; i < 3; i++) {
		int64_t start = f.r[i].finished_ns - f.r[i].duration_ns;
		int64_t prev = f.r[i - 1].finished_ns - f.r[i - 1].duration_ns;

		assert_true(start - prev >= 29 * MS);
	}
	assert_int_equal(f.stats_in_cb.successes, 3);
}

static void test_never_two_at_once(void **state)
{
	struct fixture f;

	(void)state;
	fixture_start(&f, M_SILENT);
	f.stop_after = 3;
	scrape(&f, "/", 10 * MS, 60 * MS); /* each scrape outlasts the interval */
	run_to_end(&f);
	assert_int_equal(f.n, 3);
	for (int i = 0; i < 3; i++)
		assert_true(f.r[i].timed_out);
	/* Connection k+1 is accepted only after result k was delivered. */
	for (int i = 1; i < f.srv.accepted && i < 3; i++)
		assert_true(f.srv.accept_ns[i] > f.r[i - 1].finished_ns);
	assert_true(f.srv.accepted <= 3);
	assert_int_equal(f.stats_in_cb.timeouts, 3);
}

/* Destroyed while the server holds the request unanswered: no result, and
 * every handle and byte is released. */
static void destroy_on_request(struct server *srv)
{
	struct fixture *f = srv->data;
	struct bl_scraper_stats st;

	bl_scraper_stats(f->scraper, &st);
	assert_true(st.in_flight);
	stop_all(f);
}

static void test_destroy_in_flight(void **state)
{
	struct fixture f;

	(void)state;
	fixture_start(&f, M_SILENT);
	f.srv.on_request = destroy_on_request;
	f.srv.data = &f;
	scrape(&f, "/", 1000 * MS, 5000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 0);
	assert_int_equal(f.srv.requests, 1);
}

static void on_destroy_later(uv_timer_t *t)
{
	struct fixture *f = t->data;
	struct bl_scraper_stats st;

	bl_scraper_stats(f->scraper, &st);
	assert_true(st.in_flight);
	stop_all(f);
}

/* Half the body has come (and is held in the scraper's buffer) when the
 * scraper is destroyed. */
static void destroy_soon(struct server *srv)
{
	struct fixture *f = srv->data;

	uv_timer_start(&f->watchdog, on_destroy_later, 50, 0);
}

static void test_destroy_while_reading(void **state)
{
	struct fixture f;

	(void)state;
	fixture_start(&f, M_HALF);
	f.srv.on_half_sent = destroy_soon;
	f.srv.data = &f;
	scrape(&f, "/", 1000 * MS, 5000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 0);
}

static void test_destroy_before_start(void **state)
{
	struct fixture f;

	(void)state;
	fixture_start(&f, M_LENGTH);
	scrape(&f, "/", 1000 * MS, 5000 * MS);
	stop_all(&f);
	run_to_end(&f);
	assert_int_equal(f.n, 0);
	assert_int_equal(f.srv.accepted, 0);
	bl_scraper_destroy(NULL);
}

/* A host name goes through getaddrinfo; "localhost" may give ::1 first,
 * where nothing listens: the next address is tried. */
static void test_host_name(void **state)
{
	struct fixture f;
	char url[64], want[64];

	(void)state;
	fixture_start(&f, M_LENGTH);
	snprintf(url, sizeof url, "http://localhost:%u/metrics", f.srv.port);
	scrape_url(&f, url, 1000 * MS, 5000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 1);
	if (!f.r[0].ok)
		fail_msg("%s", f.r[0].error);
	snprintf(want, sizeof want, "\r\nHost: localhost:%u\r\n", f.srv.port);
	assert_non_null(strstr(f.srv.last_request, want));
}

/* Destroyed while a resolver thread works on the name. */
static void test_destroy_while_resolving(void **state)
{
	struct fixture f;
	struct bl_scraper_stats st;
	char url[64];

	(void)state;
	fixture_start(&f, M_LENGTH);
	snprintf(url, sizeof url, "http://localhost:%u/", f.srv.port);
	scrape_url(&f, url, 1000 * MS, 5000 * MS);
	uv_run(&f.loop, UV_RUN_NOWAIT); /* the first tick: getaddrinfo is submitted */
	bl_scraper_stats(f.scraper, &st);
	if (f.n == 0)
		assert_true(st.in_flight);
	stop_all(&f);
	run_to_end(&f);
	assert_int_equal(f.n, 0);
}

static void test_unresolvable(void **state)
{
	struct fixture f;

	(void)state;
	fixture_start(&f, M_LENGTH);
	scrape_url(&f, "http://no-such-host.invalid/metrics", 1000 * MS, 3000 * MS);
	run_to_end(&f);
	assert_int_equal(f.n, 1);
	assert_false(f.r[0].ok);
	assert_int_equal(f.r[0].status, 0);
	/* Without a resolver to ask, this may time out instead. */
	assert_true(strstr(f.r[0].error, "cannot resolve 'no-such-host.invalid'") ||
		    strstr(f.r[0].error, "resolving 'no-such-host.invalid'"));
}

static void test_basic_auth(void **state)
{
	struct fixture f;
	char url[96];

	(void)state;
	fixture_start(&f, M_LENGTH);
	snprintf(url, sizeof url, "http://user:p%%40ss@127.0.0.1:%u/metrics", f.srv.port);
	scrape_url(&f, url, 1000 * MS, 2000 * MS);
	run_to_end(&f);
	assert_true(f.r[0].ok);
	/* base64("user:p@ss"); the Host header carries no credentials. */
	assert_non_null(strstr(f.srv.last_request, "\r\nAuthorization: Basic dXNlcjpwQHNz\r\n"));
	assert_null(strstr(f.srv.last_request, "user:"));
}

static void test_url_check(void **state)
{
	static const struct {
		const char *url;
		int rc;
		const char *says;
	} cases[] = {
		{"http://10.0.0.5:8000/metrics", 0, NULL},
		{"HTTP://vllm-0.vllm.svc.cluster.local:8000/metrics", 0, NULL},
		{"http://[::1]:8000/metrics", 0, NULL},
		{"http://host", 0, NULL},
		{"http://host:/m", 0, NULL},
		{"http://host?x=1", 0, NULL},
		{"http://tok@10.0.0.5:8000/metrics", 0, NULL},
		{"https://10.0.0.5/metrics", BL_ENOTSUP, "https://"},
		{"ftp://host/", BL_EINVAL, "not an http:// URL"},
		{"10.0.0.5:8000/metrics", BL_EINVAL, "not an http:// URL"},
		{"http:///metrics", BL_EINVAL, "no host"},
		{"http://:80/", BL_EINVAL, "no host"},
		{"http://host:0/", BL_EINVAL, "1..65535"},
		{"http://host:65536/", BL_EINVAL, "1..65535"},
		{"http://host:99999999999999999999/", BL_EINVAL, "1..65535"},
		{"http://host:8o/", BL_EINVAL, "not a number"},
		{"http://::1:80/", BL_EINVAL, "brackets"},
		{"http://[::1/", BL_EINVAL, "closing ']'"},
		{"http://[::1]x/", BL_EINVAL, "after ']'"},
		{"http://[10.0.0.1]/", BL_EINVAL, "not an IPv6 address"},
		{"http://ho st/", BL_EINVAL, "space or control"},
		{"http://host/\x01", BL_EINVAL, "space or control"},
		{"http://h%41st/", BL_EINVAL, "cannot have"},
		{"http://us%4@host/", BL_EINVAL, "%-escape"},
		{"http://us%@host/", BL_EINVAL, "%-escape"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc;

		err[0] = '\0';
		rc = bl_scrape_url_check(cases[i].url, err, sizeof err);
		if (rc != cases[i].rc || (cases[i].says && !strstr(err, cases[i].says)))
			fail_msg("%s: rc %d, '%s'; want %d and '%s'", cases[i].url, rc, err,
				 cases[i].rc, cases[i].says ? cases[i].says : "");
	}
	{
		char *long_url = malloc(BL_SCRAPE_URL_MAX + 16);

		assert_non_null(long_url);
		memcpy(long_url, "http://h/", 9);
		memset(long_url + 9, 'a', BL_SCRAPE_URL_MAX);
		long_url[BL_SCRAPE_URL_MAX + 9] = '\0';
		assert_int_equal(bl_scrape_url_check(long_url, err, sizeof err), BL_EINVAL);
		free(long_url);
	}
	assert_int_equal(bl_scrape_url_check(NULL, NULL, 0), BL_EINVAL);
}

/* A memory account for the body: refuses past `limit` bytes held. */
struct account {
	size_t limit, held, most, refused;
};

static void *account_malloc(void *ctx, size_t n)
{
	struct account *a = ctx;

	if (n > a->limit - a->held) {
		a->refused++;
		return NULL;
	}
	a->held += n;
	if (a->held > a->most)
		a->most = a->held;
	return malloc(n);
}

static void account_free(void *ctx, void *p, size_t n)
{
	struct account *a = ctx;

	assert_true(n <= a->held);
	a->held -= n;
	free(p);
}

/* The body comes from the daemon's account: a refusal fails the scrape
 * (stale, never zero), and nothing stays held between scrapes. */
static void test_body_on_the_account(void **state)
{
	static const struct {
		enum mode mode;
		size_t limit;
		bool ok;
	} cases[] = {
		{M_LENGTH, 100, false},   /* the Content-Length does not fit */
		{M_CHUNKED, 1000, false}, /* growing to the first 16 KiB does not */
		{M_LENGTH, 1 << 20, true},
		{M_CHUNKED, 1 << 20, true},
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct account a = {.limit = cases[i].limit};
		struct bl_alloc_hook hook = {account_malloc, account_free, &a};
		struct fixture f;

		fixture_start(&f, cases[i].mode);
		scrape(&f, "/metrics", 1000 * MS, 2000 * MS);
		bl_scraper_set_memory(f.scraper, &hook);
		run_to_end(&f);
		assert_int_equal(f.n, 1);
		assert_int_equal(f.r[0].ok, cases[i].ok);
		assert_int_equal(a.held, 0);
		if (cases[i].ok) {
			assert_string_equal(f.r[0].body, page);
			assert_true(f.r[0].waiting == 11.0);
			assert_true(a.most > strlen(page));
			assert_int_equal(a.refused, 0);
		} else {
			assert_non_null(strstr(f.r[0].error, "(limits.daemon_memory)"));
			assert_int_equal(f.r[0].sum_rc, BL_EIO);
			assert_true(f.r[0].waiting == -1);
			assert_int_equal(a.refused, 1);
		}
	}
}

static void test_create_arguments(void **state)
{
	struct bl_scraper *s = NULL;
	uv_loop_t loop;
	void *ctx = NULL;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(bl_scraper_create(&loop, "http://h/", 0, MS, on_result, ctx, &s), BL_EINVAL);
	assert_int_equal(bl_scraper_create(&loop, "http://h/", MS, -1, on_result, ctx, &s), BL_EINVAL);
	assert_int_equal(bl_scraper_create(&loop, "http://h/", MS, MS, NULL, ctx, &s), BL_EINVAL);
	assert_int_equal(bl_scraper_create(NULL, "http://h/", MS, MS, on_result, ctx, &s), BL_EINVAL);
	assert_int_equal(bl_scraper_create(&loop, "h/", MS, MS, on_result, ctx, &s), BL_EINVAL);
	assert_int_equal(bl_scraper_create(&loop, "https://h/", MS, MS, on_result, ctx, &s),
			 BL_ENOTSUP);
	assert_null(s); /* untouched */
	assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_until_close),
		cmocka_unit_test(test_status_500),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_interval),
		cmocka_unit_test(test_never_two_at_once),
		cmocka_unit_test(test_destroy_in_flight),
		cmocka_unit_test(test_destroy_while_reading),
		cmocka_unit_test(test_destroy_before_start),
		cmocka_unit_test(test_host_name),
		cmocka_unit_test(test_destroy_while_resolving),
		cmocka_unit_test(test_unresolvable),
		cmocka_unit_test(test_basic_auth),
		cmocka_unit_test(test_url_check),
		cmocka_unit_test(test_create_arguments),
		cmocka_unit_test(test_body_on_the_account),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
