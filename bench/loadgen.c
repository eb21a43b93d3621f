/* loadgen: a closed-loop HTTP/1.1 load generator on libuv, for the decision flow.
 *
 *   loadgen --url http://127.0.0.1:PORT [--connections 50] [--duration 10s]
 *           [--warmup 2s] [--mode healthz|acquire-release|acquire]
 *           [--budget NAME] [--tokens N] [--pool NAME]
 *
 * Each connection is keep-alive and has one request in flight at a time: it
 * sends the next request only when the previous answer is complete (closed
 * loop). In acquire-release mode a connection alternates POST /v1/acquire and
 * POST /v1/release with the lease id the acquire answered; when an acquire is
 * refused it acquires again. In acquire mode it only acquires (leases pile up
 * until their TTL reclaims them). In healthz mode it sends GET /healthz.
 *
 * Every request's latency (from the write being queued to the last byte of the
 * answer parsed) goes into a log-linear histogram of fixed size: 128 linear
 * sub-buckets per power of two of nanoseconds, so a percentile is within
 * 0.8 % of the true value and recording allocates nothing. Requests sent during
 * the warm-up are neither timed nor counted. At the end it prints one line:
 *
 *   RESULT mode=... connections=... requests=N duration_s=... rps=...
 *          [pairs_per_s=...] p50_us=... p99_us=... p999_us=... max_us=...
 *          errors=N non2xx=N
 *
 * `errors` counts transport failures (connect, read, write, unparsable answer)
 * and 2xx acquire answers without a lease, inside the measured window; `non2xx`
 * counts complete answers whose status is not 2xx. A connection that fails is
 * reopened after 10 ms. pairs_per_s (acquire-release only) is the rate of
 * releases answered 2xx, i.e. of complete acquire + release cycles.
 * Exit status: 0 when at least one request completed in the window, 1 when
 * none did, 2 on a usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <uv.h>

/* ---- log-linear latency histogram (nanoseconds) ---- */

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)          /* linear sub-buckets per power of two */
#define NBUCKETS ((64 - SUB_BITS) * SUB + SUB)

struct hist {
	uint64_t count[NBUCKETS];
	uint64_t total;
	uint64_t max;
};

static unsigned hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - SUB_BITS;
	return (shift + 1) * SUB + (unsigned)((v >> shift) - SUB);
}

/* The largest value that lands in bucket i. */
static uint64_t hist_upper(unsigned i)
{
	unsigned shift;
	uint64_t m;

	if (i < SUB)
		return i;
	shift = i / SUB - 1;
	m = (uint64_t)(i % SUB + SUB);
	return (m << shift) + (UINT64_C(1) << shift) - 1;
}

static void hist_record(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

/* The value at or below which p % of the samples lie (upper bucket bound,
 * never above the exact maximum). */
static uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t want, seen = 0;

	if (h->total == 0)
		return 0;
	want = (uint64_t)((p / 100.0) * (double)h->total + 0.999999);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < NBUCKETS; i++) {
		seen += h->count[i];
		if (seen >= want) {
			uint64_t u = hist_upper(i);

			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

/* ---- options ---- */

enum mode { MODE_HEALTHZ, MODE_ACQUIRE_RELEASE, MODE_ACQUIRE };
static const char *const mode_names[] = {"healthz", "acquire-release", "acquire"};

struct opts {
	char host[256];
	int port;
	int connections;
	uint64_t duration_ns;
	uint64_t warmup_ns;
	enum mode mode;
	const char *budget;
	const char *pool;  /* NULL: acquire from the budget only */
	unsigned long long tokens;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: loadgen --url http://HOST:PORT [--connections N] [--duration 10s] "
	           "[--warmup 2s]\n"
	           "               [--mode healthz|acquire-release|acquire] [--budget NAME] "
	           "[--tokens N] [--pool NAME]\n");
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "loadgen: %s: '%s'\n", what, arg ? arg : "");
	usage(stderr);
	return 2;
}

/* "10s", "500ms", "2m", "1.5s", or a bare number of seconds. */
static int parse_duration(const char *s, uint64_t *ns)
{
	char *end;
	double v, mult = 1e9;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -1;
	if (*end == 0 || strcmp(end, "s") == 0)
		mult = 1e9;
	else if (strcmp(end, "ms") == 0)
		mult = 1e6;
	else if (strcmp(end, "us") == 0)
		mult = 1e3;
	else if (strcmp(end, "m") == 0)
		mult = 60e9;
	else
		return -1;
	if (v * mult > 86400e9)
		return -1;
	*ns = (uint64_t)(v * mult);
	return 0;
}

/* http://HOST:PORT[/...]; HOST an IPv4 address or "localhost". */
static int parse_url(const char *url, struct opts *o)
{
	const char *p, *colon, *end;
	char *e;
	long port;
	size_t hl;

	if (strncmp(url, "http://", 7) != 0)
		return -1;
	p = url + 7;
	end = p + strcspn(p, "/");
	colon = memchr(p, ':', (size_t)(end - p));
	if (!colon || colon == p)
		return -1;
	hl = (size_t)(colon - p);
	if (hl >= sizeof o->host)
		return -1;
	memcpy(o->host, p, hl);
	o->host[hl] = 0;
	if (strcmp(o->host, "localhost") == 0)
		strcpy(o->host, "127.0.0.1");
	errno = 0;
	port = strtol(colon + 1, &e, 10);
	if (e != end || errno || port < 1 || port > 65535)
		return -1;
	o->port = (int)port;
	return 0;
}

static int known_option(const char *key)
{
	static const char *const keys[] = {"--url",  "--connections", "--duration", "--warmup",
	                                   "--mode", "--budget",      "--tokens", "--pool"};

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(key, keys[i]) == 0)
			return 1;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	const char *url = NULL;

	memset(o, 0, sizeof *o);
	o->connections = 50;
	o->duration_ns = UINT64_C(10000000000);
	o->warmup_ns = UINT64_C(2000000000);
	o->mode = MODE_ACQUIRE_RELEASE;
	o->budget = "bench";
	o->tokens = 100;

	for (int i = 1; i < argc; i++) {
		const char *name = argv[i], *val, *eq;
		char key[32];

		if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strncmp(name, "--", 2) != 0)
			return usage_error("unexpected argument", name);
		eq = strchr(name, '=');
		if (eq) {
			size_t n = (size_t)(eq - name);

			if (n >= sizeof key)
				return usage_error("unknown option", name);
			memcpy(key, name, n);
			key[n] = 0;
			val = eq + 1;
		} else {
			if (strlen(name) >= sizeof key)
				return usage_error("unknown option", name);
			strcpy(key, name);
			val = NULL;
		}
		if (!known_option(key))
			return usage_error("unknown option", name);
		if (!val) {
			if (i + 1 >= argc)
				return usage_error("missing value for", name);
			val = argv[++i];
		}

		if (strcmp(key, "--url") == 0) {
			url = val;
			if (parse_url(val, o) != 0)
				return usage_error("--url wants http://IPV4:PORT", val);
		} else if (strcmp(key, "--connections") == 0) {
			char *e;
			long n;

			errno = 0;
			n = strtol(val, &e, 10);
			if (*e || e == val || errno || n < 1 || n > 10000)
				return usage_error("--connections wants 1..10000", val);
			o->connections = (int)n;
		} else if (strcmp(key, "--duration") == 0) {
			if (parse_duration(val, &o->duration_ns) != 0 || o->duration_ns == 0)
				return usage_error("--duration wants e.g. 10s, 500ms", val);
		} else if (strcmp(key, "--warmup") == 0) {
			if (parse_duration(val, &o->warmup_ns) != 0)
				return usage_error("--warmup wants e.g. 2s, 0", val);
		} else if (strcmp(key, "--mode") == 0) {
			unsigned m;

			for (m = 0; m < sizeof mode_names / sizeof mode_names[0]; m++)
				if (strcmp(val, mode_names[m]) == 0)
					break;
			if (m == sizeof mode_names / sizeof mode_names[0])
				return usage_error("--mode wants healthz, acquire-release or acquire", val);
			o->mode = (enum mode)m;
		} else if (strcmp(key, "--budget") == 0) {
			if (!*val || strlen(val) > 128 || strpbrk(val, "\"\\"))
				return usage_error("--budget wants a plain name", val);
			for (const char *c = val; *c; c++)
				if ((unsigned char)*c < 0x20)
					return usage_error("--budget wants a plain name", val);
			o->budget = val;
		} else if (strcmp(key, "--pool") == 0) {
			if (!*val || strlen(val) > 128 || strpbrk(val, "\"\\"))
				return usage_error("--pool wants a plain name", val);
			o->pool = val;
		} else if (strcmp(key, "--tokens") == 0) {
			char *e;

			errno = 0;
			o->tokens = strtoull(val, &e, 10);
			if (*e || e == val || errno || val[0] == '-')
				return usage_error("--tokens wants a count", val);
		} else {
			return usage_error("unknown option", name);
		}
	}
	if (!url)
		return usage_error("--url is required", "");
	return 0;
}

/* ---- connections ---- */

#define RBUF 65536
#define BODY_MAX 4096
#define LEASE_MAX 64

enum req { REQ_HEALTHZ, REQ_ACQUIRE, REQ_RELEASE };

struct conn {
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	uv_timer_t retry;
	http_parser parser;
	int open;       /* tcp handle initialised and not yet closed */
	int closing;
	enum req kind;  /* the request in flight */
	uint64_t sent_ns;
	size_t body_len;
	char body[BODY_MAX];
	char lease[LEASE_MAX + 1];
	char release_req[512];
	size_t release_len;
	char rbuf[RBUF];
};

struct counters {
	uint64_t requests, errors, non2xx, pairs;
};

static struct opts opt;
static uv_loop_t *loop;
static struct conn *conns;
static struct hist hist;
static struct counters measured, warm;
static int measuring, stopping;
static uint64_t t_start, t_end;
static uv_timer_t warm_timer, end_timer;
static struct sockaddr_in addr;
static char healthz_req[512], acquire_req[1024];
static size_t healthz_len, acquire_len;
static int last_err; /* the last libuv error seen, for the summary */

static void conn_start(struct conn *c);
static void on_retry(uv_timer_t *t);
static void conn_send(struct conn *c, enum req kind);

static struct counters *bucket(void)
{
	return measuring ? &measured : &warm;
}

static void count_error(int err)
{
	bucket()->errors++;
	if (err)
		last_err = err;
}

static void on_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	c->open = 0;
	c->closing = 0;
	if (!stopping)
		uv_timer_start(&c->retry, on_retry, 10, 0);
}

static void conn_fail(struct conn *c, int err)
{
	if (!stopping)
		count_error(err);
	if (c->open && !c->closing) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->tcp, on_closed);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	*buf = uv_buf_init(c->rbuf, RBUF);
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;

	c->body_len = 0;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	size_t room = BODY_MAX - 1 - c->body_len;

	if (len > room)
		len = room;
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

/* Copies the value of "lease":"..." from the answer into c->lease. */
static int extract_lease(struct conn *c)
{
	static const char key[] = "\"lease\":\"";
	const char *p, *q;
	size_t n;

	c->body[c->body_len] = 0;
	p = strstr(c->body, key);
	if (!p)
		return -1;
	p += sizeof key - 1;
	q = strchr(p, '"');
	if (!q)
		return -1;
	n = (size_t)(q - p);
	if (n == 0 || n > LEASE_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)p[i]))
			return -1;
	memcpy(c->lease, p, n);
	c->lease[n] = 0;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;
	uint64_t now = uv_hrtime();
	int ok = p->status_code >= 200 && p->status_code < 300;
	int timed = measuring && c->sent_ns >= t_start;
	struct counters *k = timed ? &measured : &warm;
	enum req next;

	if (stopping)
		return 0;
	if (timed)
		hist_record(&hist, now - c->sent_ns);
	k->requests++;
	if (!ok)
		k->non2xx++;

	switch (c->kind) {
	case REQ_ACQUIRE:
		next = REQ_ACQUIRE;
		if (ok && extract_lease(c) != 0)
			k->errors++;
		else if (ok && opt.mode == MODE_ACQUIRE_RELEASE)
			next = REQ_RELEASE;
		break;
	case REQ_RELEASE:
		if (ok)
			k->pairs++;
		next = REQ_ACQUIRE;
		break;
	default:
		next = REQ_HEALTHZ;
		break;
	}
	if (!http_should_keep_alive(p)) {
		/* The server closes after this answer: reconnect, then go on. */
		conn_fail(c, 0);
		return 0;
	}
	conn_send(c, next);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	size_t n;

	if (nread == 0)
		return;
	if (nread < 0) {
		conn_fail(c, (int)nread);
		return;
	}
	n = http_parser_execute(&c->parser, &parser_settings, buf->base, (size_t)nread);
	if (c->closing || stopping)
		return;
	if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || n != (size_t)nread) {
		fprintf(stderr, "loadgen: bad answer: %s\n",
		        http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
		conn_fail(c, 0);
	}
}

static void on_written(uv_write_t *w, int status)
{
	struct conn *c = w->data;

	if (status < 0 && status != UV_ECANCELED)
		conn_fail(c, status);
}

static void conn_send(struct conn *c, enum req kind)
{
	uv_buf_t b;
	int rc;

	if (stopping || c->closing)
		return;
	switch (kind) {
	case REQ_ACQUIRE:
		b = uv_buf_init(acquire_req, (unsigned)acquire_len);
		break;
	case REQ_RELEASE: {
		char body[LEASE_MAX + 32];
		int bl = snprintf(body, sizeof body, "{\"lease\":\"%s\"}", c->lease);
		int n = snprintf(c->release_req, sizeof c->release_req,
		                 "POST /v1/release HTTP/1.1\r\nHost: %s:%d\r\n"
		                 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		                 opt.host, opt.port, bl, body);

		c->release_len = (size_t)n;
		b = uv_buf_init(c->release_req, (unsigned)c->release_len);
		break;
	}
	default:
		b = uv_buf_init(healthz_req, (unsigned)healthz_len);
		break;
	}
	c->kind = kind;
	c->sent_ns = uv_hrtime();
	c->write.data = c;
	rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	if (rc < 0)
		conn_fail(c, rc);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	int rc;

	if (status < 0) {
		conn_fail(c, status);
		return;
	}
	if (stopping)
		return;
	uv_tcp_nodelay(&c->tcp, 1);
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0) {
		conn_fail(c, rc);
		return;
	}
	conn_send(c, opt.mode == MODE_HEALTHZ ? REQ_HEALTHZ : REQ_ACQUIRE);
}

static void conn_start(struct conn *c)
{
	int rc;

	if (stopping || c->open)
		return;
	rc = uv_tcp_init(loop, &c->tcp);
	if (rc < 0) {
		count_error(rc);
		uv_timer_start(&c->retry, on_retry, 10, 0);
		return;
	}
	c->open = 1;
	c->tcp.data = c;
	c->connect.data = c;
	rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, on_connected);
	if (rc < 0)
		conn_fail(c, rc);
}

static void on_retry(uv_timer_t *t)
{
	conn_start(t->data);
}

static void on_warm(uv_timer_t *t)
{
	measuring = 1;
	t_start = uv_hrtime();
}

static void on_end(uv_timer_t *t)
{
	t_end = uv_hrtime();
	stopping = 1;
	for (int i = 0; i < opt.connections; i++) {
		struct conn *c = &conns[i];

		uv_close((uv_handle_t *)&c->retry, NULL);
		if (c->open && !c->closing) {
			c->closing = 1;
			uv_close((uv_handle_t *)&c->tcp, on_closed);
		}
	}
	uv_close((uv_handle_t *)&warm_timer, NULL);
	uv_close((uv_handle_t *)&end_timer, NULL);
}

int main(int argc, char **argv)
{
	char body[256];
	int bl, rc;
	double secs, us = 1e3;

	rc = parse_opts(argc, argv, &opt);
	if (rc)
		return rc;
	rc = uv_ip4_addr(opt.host, opt.port, &addr);
	if (rc < 0)
		return usage_error("--url host is not an IPv4 address", opt.host);

	healthz_len = (size_t)snprintf(healthz_req, sizeof healthz_req,
	                               "GET /healthz HTTP/1.1\r\nHost: %s:%d\r\n\r\n", opt.host,
	                               opt.port);
	if (opt.pool)
		bl = snprintf(body, sizeof body, "{\"budget\":\"%s\",\"pool\":\"%s\",\"tokens\":%llu}",
		              opt.budget, opt.pool, opt.tokens);
	else
		bl = snprintf(body, sizeof body, "{\"budget\":\"%s\",\"tokens\":%llu}", opt.budget,
		              opt.tokens);
	acquire_len = (size_t)snprintf(acquire_req, sizeof acquire_req,
	                               "POST /v1/acquire HTTP/1.1\r\nHost: %s:%d\r\n"
	                               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
	                               opt.host, opt.port, bl, body);

	conns = calloc((size_t)opt.connections, sizeof *conns);
	if (!conns) {
		fprintf(stderr, "loadgen: out of memory\n");
		return 1;
	}
	loop = uv_default_loop();
	for (int i = 0; i < opt.connections; i++) {
		uv_timer_init(loop, &conns[i].retry);
		conns[i].retry.data = &conns[i];
		conn_start(&conns[i]);
	}
	uv_timer_init(loop, &warm_timer);
	uv_timer_init(loop, &end_timer);
	if (opt.warmup_ns == 0)
		on_warm(&warm_timer);
	else
		uv_timer_start(&warm_timer, on_warm, (opt.warmup_ns + 999999) / 1000000, 0);
	uv_timer_start(&end_timer, on_end, (opt.warmup_ns + opt.duration_ns + 999999) / 1000000, 0);
	uv_run(loop, UV_RUN_DEFAULT);

	if (!measuring) /* cannot happen: the end timer fires after the warm-up one */
		t_start = t_end;
	secs = (double)(t_end - t_start) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	printf("RESULT mode=%s connections=%d requests=%" PRIu64 " duration_s=%.2f rps=%.0f",
	       mode_names[opt.mode], opt.connections, measured.requests, secs,
	       (double)measured.requests / secs);
	if (opt.mode == MODE_ACQUIRE_RELEASE)
		printf(" pairs_per_s=%.0f", (double)measured.pairs / secs);
	printf(" p50_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f errors=%" PRIu64
	       " non2xx=%" PRIu64 "\n",
	       (double)hist_percentile(&hist, 50) / us, (double)hist_percentile(&hist, 99) / us,
	       (double)hist_percentile(&hist, 99.9) / us, (double)hist.max / us, measured.errors,
	       measured.non2xx);
	if (warm.errors || warm.non2xx)
		fprintf(stderr, "loadgen: warm-up (not in RESULT): %" PRIu64 " errors, %" PRIu64
		                " non-2xx\n", warm.errors, warm.non2xx);
	if (last_err)
		fprintf(stderr, "loadgen: last transport error: %s\n", uv_strerror(last_err));
	uv_loop_close(loop);
	free(conns);
	return measured.requests ? 0 : 1;
}
