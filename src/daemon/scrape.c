/* A scraper: one backend's metrics endpoint, fetched on the daemon's loop.
 *
 * A scrape runs through resolve (names only), connect (each address in
 * turn), send, and read, under one deadline timer. Whatever ends it first —
 * the whole answer, an error, the deadline — delivers the result at once;
 * the connection and a name resolution still running are then wound down,
 * and only when nothing of the scrape is left does the next one get
 * scheduled. That is what keeps two scrapes of one scraper from ever
 * overlapping, even when a resolver thread is slow to come back.
 *
 * Lifetime: the scraper's handles (two timers, the connection) and a
 * pending getaddrinfo each hold it; destroy closes and cancels them, and
 * the last close callback frees the memory.
 */
#include "scrape.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ballast/error.h"
#include "clock.h"
#include "ballast/units.h"
#include "httpparse.h"

/* Bytes read from the socket at a time. */
#define READ_BUF_SIZE 16384
/* Longest Content-Encoding value kept for the error message. */
#define ENCODING_MAX 32

enum phase {
	PH_RESOLVING,  /* getaddrinfo under way */
	PH_CONNECTING, /* TCP connect under way */
	PH_WAITING,    /* request sent or being sent, no answer byte yet */
	PH_READING,    /* answer arriving */
};

/* What the URL says, in the shape a scrape needs. */
struct target {
	char *host;          /* name or address, no brackets, NUL-terminated */
	uint16_t port;       /* 80 when not given */
	char *request;       /* the whole GET request */
	size_t request_len;  /* bytes at request */
};

struct bl_scraper {
	uv_loop_t *loop;
	uv_timer_t tick;              /* starts the next scrape */
	uv_timer_t deadline;          /* the current scrape's timeout */
	uv_tcp_t tcp;                 /* the current scrape's connection */
	uv_getaddrinfo_t gai;         /* name resolution */
	uv_connect_t connect_req;
	uv_write_t write_req;
	struct bl_hp hp;              /* the answer's parser */

	struct target t;              /* host, port and the request to send */
	char port_str[6];             /* t.port as text, for getaddrinfo */
	bool literal;                 /* t.host is an IP address: no resolution */
	struct sockaddr_storage addr; /* that address, when literal */
	int64_t interval_ns;          /* from one scrape's start to the next's */
	int64_t timeout_ns;           /* one scrape's budget */
	bl_scrape_result_fn on_result;
	void *ctx;

	int handles_open;             /* timers and tcp until their close callbacks */
	bool tcp_open;                /* tcp initialised, its close callback not yet run */
	bool tcp_closing;             /* uv_close called on tcp */
	bool gai_pending;             /* getaddrinfo's callback not yet run */
	bool gai_cancelled;           /* uv_cancel was called on it */
	bool retry_connect;           /* tcp is closing to try the next address */
	bool destroyed;               /* bl_scraper_destroy was called */
	bool in_flight;               /* started, result not yet delivered */
	bool busy;                    /* started, not yet wound down */
	enum phase phase;             /* where the current scrape is */
	int64_t started_ns;           /* uv_hrtime() at its start */
	struct addrinfo *ai_list;     /* resolved addresses (freed at wind-down) */
	struct addrinfo *ai_next;     /* the next one to try */
	char peer[64];                /* the address tried last, for messages */

	/* The answer. */
	int status;                   /* HTTP status, 0 before one is read */
	bool complete;                /* a whole final answer was parsed */
	bool got_bytes;               /* any byte arrived */
	struct bl_alloc_hook mem;     /* where the body comes from */
	char *body;                   /* from mem, NUL-terminated */
	size_t body_len;              /* bytes used */
	size_t body_cap;              /* bytes allocated */
	bool last_was_value;          /* header callbacks: the last piece was a value */
	char field[20];               /* current header name, lower case, truncated */
	size_t field_len;
	bool in_encoding;             /* the current value is Content-Encoding's */
	char encoding[ENCODING_MAX];  /* Content-Encoding, truncated */
	size_t encoding_len;
	char cb_error[160];           /* why a parser callback stopped the parser */

	char error[192];              /* the current scrape's error */
	struct bl_scraper_stats stats;
	char read_buf[READ_BUF_SIZE];
};

static void cleanup_scrape(struct bl_scraper *s);
static void wound_down(struct bl_scraper *s);
static void connect_next(struct bl_scraper *s);

/* ---- the URL ------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes n bytes at in as base64 at out (4 * ceil(n / 3) bytes, plus a NUL). */
static void base64(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
		out[o++] = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes n bytes at in into out (at least n bytes); returns the
 * decoded length, or -1 on a bad escape. */
static long percent_decode(const char *in, size_t n, unsigned char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] != '%') {
			out[o++] = (unsigned char)in[i];
			continue;
		}
		if (i + 2 >= n)
			return -1;
		int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (unsigned char)(hi << 4 | lo);
		i += 2;
	}
	return (long)o;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* Parses url into t (allocating t->host and t->request) or fails with a
 * message in err; t is untouched on failure. */
static int parse_url(const char *url, struct target *t, char *err, size_t errcap)
{
	const char *p, *auth, *auth_end, *at = NULL, *hp, *host, *host_end, *port = NULL;
	const char *target, *target_end;
	size_t len, host_len;
	char auth_hdr[21 + (BL_SCRAPE_URL_MAX + 2) / 3 * 4 + 3];
	unsigned long portnum = 80;
	char *h, *req;
	int n;

	if (!url)
		return bl_errorf(err, errcap, BL_EINVAL, "no URL");
	len = strlen(url);
	if (len > BL_SCRAPE_URL_MAX)
		return bl_errorf(err, errcap, BL_EINVAL, "the URL is longer than %d bytes",
				 BL_SCRAPE_URL_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
			return bl_errorf(err, errcap, BL_EINVAL,
					 "the URL contains a space or control byte at offset %zu; "
					 "percent-encode it", i);
	if (strncasecmp(url, "https://", 8) == 0)
		return bl_errorf(err, errcap, BL_ENOTSUP,
				 "https:// is not supported for scraping; use an http:// URL");
	if (strncasecmp(url, "http://", 7) != 0)
		return bl_errorf(err, errcap, BL_EINVAL, "'%.80s' is not an http:// URL", url);
	auth = url + 7;
	auth_end = auth + strcspn(auth, "/?#");
	for (p = auth; p < auth_end; p++)
		if (*p == '@')
			at = p;
	hp = at ? at + 1 : auth;
	if (hp[0] == '[') {
		host = hp + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (!host_end)
			return bl_errorf(err, errcap, BL_EINVAL, "the IPv6 address has no closing ']'");
		p = host_end + 1;
		if (p < auth_end && *p != ':')
			return bl_errorf(err, errcap, BL_EINVAL, "unexpected text after ']'");
	} else {
		const char *colon = memchr(hp, ':', (size_t)(auth_end - hp));

		if (colon && memchr(colon + 1, ':', (size_t)(auth_end - colon - 1)))
			return bl_errorf(err, errcap, BL_EINVAL,
					 "an IPv6 address needs brackets, such as http://[::1]:8000/");
		host = hp;
		host_end = host;
		while (host_end < auth_end && *host_end != ':')
			host_end++;
		p = host_end;
		for (const char *q = host; q < host_end; q++)
			if (!host_char(*q))
				return bl_errorf(err, errcap, BL_EINVAL,
						 "the host '%.*s' has a character a host name "
						 "cannot have", (int)(host_end - host), host);
	}
	host_len = (size_t)(host_end - host);
	if (host_len == 0)
		return bl_errorf(err, errcap, BL_EINVAL, "the URL has no host");
	if (p < auth_end) { /* ':' */
		port = p + 1;
		if (port == auth_end) {
			portnum = 80; /* "host:" means the default (RFC 3986) */
		} else {
			portnum = 0;
			for (const char *q = port; q < auth_end; q++) {
				if (*q < '0' || *q > '9' || portnum > 65535)
					return bl_errorf(err, errcap, BL_EINVAL,
							 "the port '%.*s' is not a number in "
							 "1..65535 (an IPv6 address needs brackets)",
							 (int)(auth_end - port), port);
				portnum = portnum * 10 + (unsigned long)(*q - '0');
			}
			if (portnum == 0 || portnum > 65535)
				return bl_errorf(err, errcap, BL_EINVAL,
						 "the port %lu is not in 1..65535", portnum);
		}
	}
	h = malloc(host_len + 1);
	if (!h)
		return BL_ENOMEM;
	memcpy(h, host, host_len);
	h[host_len] = '\0';
	if (hp[0] == '[') {
		struct sockaddr_in6 sa;

		if (uv_ip6_addr(h, 80, &sa) != 0) {
			free(h);
			return bl_errorf(err, errcap, BL_EINVAL, "'[%.*s]' is not an IPv6 address",
					 (int)host_len, host);
		}
	}
	if (at) {
		unsigned char user[BL_SCRAPE_URL_MAX];
		long ulen = percent_decode(auth, (size_t)(at - auth), user);

		if (ulen < 0) {
			free(h);
			return bl_errorf(err, errcap, BL_EINVAL,
					 "the user information has a bad %%-escape");
		}
		memcpy(auth_hdr, "Authorization: Basic ", 21);
		base64(user, (size_t)ulen, auth_hdr + 21);
		strcat(auth_hdr, "\r\n");
	}
	/* The request target: path and query, no fragment. */
	target = auth_end;
	target_end = target + strcspn(target, "#");
#define REQUEST_ARGS                                                                  \
	"GET %s%.*s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: ballast/%s\r\n"              \
	"Accept: text/plain;version=0.0.4\r\nAccept-Encoding: identity\r\n"             \
	"%sConnection: close\r\n\r\n",                                                  \
		*target == '/' ? "" : "/", (int)(target_end - target), target,        \
		(int)(auth_end - hp), hp, BL_VERSION, at ? auth_hdr : ""
	n = snprintf(NULL, 0, REQUEST_ARGS);
	req = n > 0 ? malloc((size_t)n + 1) : NULL;
	if (!req) {
		free(h);
		return BL_ENOMEM;
	}
	snprintf(req, (size_t)n + 1, REQUEST_ARGS);
#undef REQUEST_ARGS
	t->host = h;
	t->port = (uint16_t)portnum;
	t->request = req;
	t->request_len = (size_t)n;
	return 0;
}

int bl_scrape_url_check(const char *url, char *err, size_t errcap)
{
	struct target t;
	int rc = parse_url(url, &t, err, errcap);

	if (rc == BL_ENOMEM)
		return bl_errorf(err, errcap, rc, "out of memory");
	if (rc == 0) {
		free(t.host);
		free(t.request);
	}
	return rc;
}

/* ---- ending a scrape ---------------------------------------------------- */

static const char *phase_text(enum phase ph)
{
	switch (ph) {
	case PH_RESOLVING: return "resolving";
	case PH_CONNECTING: return "connecting to";
	case PH_WAITING: return "waiting for an answer from";
	case PH_READING: return "reading the answer from";
	}
	return "?";
}

/* Hands the outcome to on_result (unless the scraper is being destroyed),
 * then winds the scrape down. */
static void deliver(struct bl_scraper *s, bool ok, bool timed_out)
{
	struct bl_scrape_result r;
	int64_t now = (int64_t)uv_hrtime();

	if (!s->in_flight)
		return;
	s->in_flight = false;
	uv_timer_stop(&s->deadline);
	r.ok = ok;
	r.error = ok ? "" : s->error;
	r.http_status = s->status;
	r.body = s->complete ? (s->body ? s->body : "") : NULL;
	r.body_len = s->complete ? s->body_len : 0;
	r.duration_ns = now - s->started_ns;
	r.finished_ns = now;
	r.timed_out = timed_out;

	s->stats.successes += ok;
	s->stats.failures += !ok;
	s->stats.timeouts += timed_out;
	if (ok)
		s->stats.last_success_ns = now;
	s->stats.last_finished_ns = now;
	s->stats.last_duration_ns = r.duration_ns;
	s->stats.last_status = s->status;
	snprintf(s->stats.last_error, sizeof s->stats.last_error, "%s", r.error);

	if (!s->destroyed)
		s->on_result(s->ctx, &r); /* may destroy s: it stays allocated until the loop runs */
	cleanup_scrape(s);
	wound_down(s);
}

static void failf(struct bl_scraper *s, bool timed_out, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void failf(struct bl_scraper *s, bool timed_out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof s->error, fmt, ap);
	va_end(ap);
	deliver(s, false, timed_out);
}

static void body_free(struct bl_scraper *s)
{
	if (s->body)
		s->mem.free_fn(s->mem.ctx, s->body, s->body_cap);
	s->body = NULL;
	s->body_len = s->body_cap = 0;
}

/* Makes the body buffer hold cap bytes, keeping what it has. Returns false
 * (the buffer unchanged) when the memory hook refuses. */
static bool body_reserve(struct bl_scraper *s, size_t cap)
{
	char *b = s->mem.malloc_fn(s->mem.ctx, cap);

	if (!b)
		return false;
	if (s->body_len)
		memcpy(b, s->body, s->body_len);
	b[s->body_len] = '\0';
	if (s->body)
		s->mem.free_fn(s->mem.ctx, s->body, s->body_cap);
	s->body = b;
	s->body_cap = cap;
	return true;
}

static void maybe_free(struct bl_scraper *s)
{
	if (!s->destroyed || s->handles_open > 0 || s->gai_pending)
		return;
	if (s->ai_list)
		uv_freeaddrinfo(s->ai_list);
	body_free(s);
	free(s->t.host);
	free(s->t.request);
	free(s);
}

static void on_tick(uv_timer_t *t);

/* Called whenever a piece of a scrape is released: once nothing is left,
 * the next scrape is scheduled interval_ns after this one's start. */
static void wound_down(struct bl_scraper *s)
{
	int64_t wait_ns;

	if (s->destroyed) {
		maybe_free(s);
		return;
	}
	if (!s->busy || s->in_flight || s->tcp_open || s->gai_pending)
		return;
	s->busy = false;
	uv_update_time(s->loop); /* wait_ns and the timer both count from now */
	wait_ns = s->started_ns + s->interval_ns - (int64_t)uv_hrtime();
	uv_timer_start(&s->tick, on_tick,
		       wait_ns > 0 ? (uint64_t)((wait_ns + BL_NS_PER_MS - 1) / BL_NS_PER_MS) : 0, 0);
}

static void on_tcp_closed(uv_handle_t *h)
{
	struct bl_scraper *s = h->data;

	s->handles_open--;
	s->tcp_open = false;
	s->tcp_closing = false;
	if (s->retry_connect && s->in_flight && !s->destroyed) {
		s->retry_connect = false;
		connect_next(s);
		return;
	}
	s->retry_connect = false;
	wound_down(s);
}

static void close_tcp(struct bl_scraper *s)
{
	if (s->tcp_open && !s->tcp_closing) {
		s->tcp_closing = true;
		uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
	}
}

/* Asks a pending getaddrinfo to stop. Its callback still comes (with
 * UV_EAI_CANCELED, or with the result when a thread had already taken it). */
static void cancel_gai(struct bl_scraper *s)
{
	if (s->gai_pending && !s->gai_cancelled) {
		s->gai_cancelled = true;
		uv_cancel((uv_req_t *)&s->gai);
	}
}

/* Releases what the finished scrape holds; the tcp close and a pending
 * getaddrinfo finish later and call wound_down. */
static void cleanup_scrape(struct bl_scraper *s)
{
	close_tcp(s);
	cancel_gai(s);
	if (s->ai_list) {
		uv_freeaddrinfo(s->ai_list);
		s->ai_list = s->ai_next = NULL;
	}
	body_free(s);
}

static void on_deadline(uv_timer_t *t)
{
	struct bl_scraper *s = t->data;
	char d[32];

	if (bl_format_duration(s->timeout_ns, d, sizeof d) < 0)
		snprintf(d, sizeof d, "%lld ns", (long long)s->timeout_ns);
	if (s->phase == PH_RESOLVING)
		failf(s, true, "timed out after %s resolving '%s'", d, s->t.host);
	else
		failf(s, true, "timed out after %s %s %s", d, phase_text(s->phase), s->peer);
}

/* ---- the answer --------------------------------------------------------- */

static struct bl_scraper *of(struct bl_hp *p)
{
	return p->data;
}

static int stop(struct bl_scraper *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Makes the parser fail with a message of ours. */
static int stop(struct bl_scraper *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->cb_error, sizeof s->cb_error, fmt, ap);
	va_end(ap);
	return -1;
}

static int on_message_begin(struct bl_hp *p)
{
	struct bl_scraper *s = of(p);

	s->last_was_value = true;
	s->field_len = 0;
	s->in_encoding = false;
	s->encoding_len = 0;
	return 0;
}

static int on_header_field(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_scraper *s = of(p);

	if (s->last_was_value) {
		s->field_len = 0;
		s->last_was_value = false;
	}
	for (size_t i = 0; i < len && s->field_len < sizeof s->field - 1; i++) {
		char ch = at[i];
		s->field[s->field_len++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
	}
	s->field[s->field_len] = '\0';
	return 0;
}

static int on_header_value(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_scraper *s = of(p);

	if (!s->last_was_value) {
		s->last_was_value = true;
		s->in_encoding = strcmp(s->field, "content-encoding") == 0;
	}
	for (size_t i = 0; s->in_encoding && i < len && s->encoding_len < ENCODING_MAX - 1; i++)
		s->encoding[s->encoding_len++] = at[i];
	s->encoding[s->encoding_len] = '\0';
	return 0;
}

static bool identity_encoding(const struct bl_scraper *s)
{
	const char *e = s->encoding;
	size_t n = s->encoding_len;

	while (n && (*e == ' ' || *e == '\t')) {
		e++;
		n--;
	}
	while (n && (e[n - 1] == ' ' || e[n - 1] == '\t'))
		n--;
	return n == 0 || (n == 8 && strncasecmp(e, "identity", 8) == 0);
}

static int on_headers_complete(struct bl_hp *p)
{
	struct bl_scraper *s = of(p);

	s->status = (int)bl_hp_status_code(p);
	if (s->status / 100 == 1)
		return 0; /* interim: the parser skips its (empty) body */
	if (!identity_encoding(s))
		return stop(s, "the answer is compressed (Content-Encoding: %s); ballast asks "
			       "for identity and reads nothing else", s->encoding);
	if (bl_hp_has_content_length(p) && bl_hp_content_length(p) > BL_SCRAPE_BODY_MAX)
		return stop(s, "the body is %llu bytes, over the cap of %zu bytes",
			    (unsigned long long)bl_hp_content_length(p), BL_SCRAPE_BODY_MAX);
	if (bl_hp_has_content_length(p)) {
		size_t want = (size_t)bl_hp_content_length(p) + 1;

		body_free(s);
		if (!body_reserve(s, want))
			return stop(s, "no memory for a %zu-byte body (limits.daemon_memory)",
				    want - 1);
	}
	return 0;
}

static int on_body(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_scraper *s = of(p);

	if (len > BL_SCRAPE_BODY_MAX - s->body_len)
		return stop(s, "the body passed the cap of %zu bytes", BL_SCRAPE_BODY_MAX);
	if (s->body_len + len + 1 > s->body_cap) {
		size_t cap = s->body_cap ? s->body_cap : 16384;

		while (cap < s->body_len + len + 1)
			cap *= 2;
		if (cap > BL_SCRAPE_BODY_MAX + 1)
			cap = BL_SCRAPE_BODY_MAX + 1;
		if (!body_reserve(s, cap))
			return stop(s, "no memory for a %zu-byte body (limits.daemon_memory)",
				    s->body_len + len);
	}
	memcpy(s->body + s->body_len, at, len);
	s->body_len += len;
	s->body[s->body_len] = '\0';
	return 0;
}

static int on_message_complete(struct bl_hp *p)
{
	struct bl_scraper *s = of(p);

	if (s->status / 100 == 1)
		return 0; /* 100 Continue and the like: the real answer follows */
	s->complete = true;
	bl_hp_pause(p); /* whatever follows the answer is not read */
	return 0;
}

static const struct bl_hp_callbacks callbacks = {
	.on_message_begin = on_message_begin,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* The answer is whole: a success for 2xx, a failure otherwise. */
static void answered(struct bl_scraper *s)
{
	if (s->status >= 200 && s->status <= 299) {
		s->error[0] = '\0';
		deliver(s, true, false);
	} else if (s->status >= 300 && s->status <= 399) {
		failf(s, false, "HTTP %d from %s: redirects are not followed; give the final URL",
		      s->status, s->peer);
	} else {
		failf(s, false, "HTTP %d from %s; a 2xx answer was expected", s->status, s->peer);
	}
}

static void parse_failed(struct bl_scraper *s)
{
	if (s->cb_error[0])
		failf(s, false, "%s (from %s)", s->cb_error, s->peer);
	else
		failf(s, false, "malformed HTTP answer from %s: %s", s->peer, bl_hp_error(&s->hp));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct bl_scraper *s = h->data;

	(void)suggested;
	*b = uv_buf_init(s->read_buf, sizeof s->read_buf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct bl_scraper *s = st->data;
	enum bl_hp_status rc;
	size_t used;

	if (!s->in_flight || nread == 0)
		return;
	if (nread > 0) {
		s->phase = PH_READING;
		s->got_bytes = true;
		rc = bl_hp_execute(&s->hp, b->base, (size_t)nread, &used);
		if (rc == BL_HP_ERROR)
			parse_failed(s);
		else if (s->complete)
			answered(s);
		return;
	}
	if (nread != UV_EOF) {
		failf(s, false, "reading from %s: %s", s->peer, uv_strerror((int)nread));
		return;
	}
	/* The peer closed: an answer without a length ends here. */
	rc = bl_hp_finish(&s->hp);
	if (rc != BL_HP_ERROR && s->complete)
		answered(s);
	else if (rc == BL_HP_ERROR && s->cb_error[0])
		parse_failed(s);
	else if (!s->got_bytes)
		failf(s, false, "%s closed the connection without answering", s->peer);
	else
		failf(s, false, "%s closed the connection before the answer was complete", s->peer);
}

static void on_write(uv_write_t *w, int status)
{
	struct bl_scraper *s = w->data;

	if (status < 0 && status != UV_ECANCELED && s->in_flight)
		failf(s, false, "sending the request to %s: %s", s->peer, uv_strerror(status));
}

/* ---- connecting --------------------------------------------------------- */

static void name_peer(struct bl_scraper *s, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
		snprintf(s->peer, sizeof s->peer, "[%s]:%u", ip,
			 ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	} else {
		uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
		snprintf(s->peer, sizeof s->peer, "%s:%u", ip,
			 ntohs(((const struct sockaddr_in *)sa)->sin_port));
	}
}

/* This address did not work: try the next one, or fail with this error. */
static void connect_failed(struct bl_scraper *s, int err)
{
	snprintf(s->error, sizeof s->error, "cannot connect to %s: %s", s->peer, uv_strerror(err));
	if (s->ai_next) {
		s->retry_connect = true; /* on_tcp_closed goes on */
		close_tcp(s);
		return;
	}
	deliver(s, false, false);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct bl_scraper *s = req->data;
	uv_buf_t b;
	int rc;

	if (status == UV_ECANCELED || !s->in_flight)
		return;
	if (status < 0) {
		connect_failed(s, status);
		return;
	}
	s->phase = PH_WAITING;
	bl_hp_init_response(&s->hp, &callbacks, s);
	rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
	if (rc == 0) {
		b = uv_buf_init(s->t.request, (unsigned)s->t.request_len);
		rc = uv_write(&s->write_req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
	}
	if (rc < 0)
		failf(s, false, "sending the request to %s: %s", s->peer, uv_strerror(rc));
}

static void try_connect(struct bl_scraper *s, const struct sockaddr *sa)
{
	int rc;

	s->phase = PH_CONNECTING;
	name_peer(s, sa);
	rc = uv_tcp_init(s->loop, &s->tcp);
	if (rc < 0) {
		failf(s, false, "cannot open a socket: %s", uv_strerror(rc));
		return;
	}
	s->tcp.data = s;
	s->tcp_open = true;
	s->handles_open++;
	rc = uv_tcp_connect(&s->connect_req, &s->tcp, sa, on_connect);
	if (rc < 0)
		connect_failed(s, rc);
}

static void connect_next(struct bl_scraper *s)
{
	struct addrinfo *ai = s->ai_next;

	while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
		ai = ai->ai_next;
	if (!ai) {
		if (!s->error[0])
			snprintf(s->error, sizeof s->error, "'%s' has no IPv4 or IPv6 address",
				 s->t.host);
		deliver(s, false, false);
		return;
	}
	s->ai_next = ai->ai_next;
	try_connect(s, ai->ai_addr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct bl_scraper *s = req->data;

	s->gai_pending = false;
	if (!s->in_flight || s->destroyed) {
		/* Timed out or destroyed meanwhile. */
		if (res)
			uv_freeaddrinfo(res);
		wound_down(s);
		return;
	}
	if (status < 0) {
		if (res)
			uv_freeaddrinfo(res);
		failf(s, false, "cannot resolve '%s': %s", s->t.host, uv_strerror(status));
		return;
	}
	s->ai_list = s->ai_next = res;
	connect_next(s);
}

static void on_tick(uv_timer_t *t)
{
	struct bl_scraper *s = t->data;
	struct addrinfo hints;
	int rc;

	s->in_flight = true;
	s->busy = true;
	s->started_ns = (int64_t)uv_hrtime();
	s->status = 0;
	s->complete = false;
	s->got_bytes = false;
	s->cb_error[0] = '\0';
	s->error[0] = '\0';
	s->peer[0] = '\0';
	bl_timer_start(&s->deadline, on_deadline,
		       (uint64_t)((s->timeout_ns + BL_NS_PER_MS - 1) / BL_NS_PER_MS), 0);
	if (s->literal) {
		try_connect(s, (const struct sockaddr *)&s->addr);
		return;
	}
	s->phase = PH_RESOLVING;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	rc = uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->t.host, s->port_str, &hints);
	if (rc < 0) {
		failf(s, false, "cannot resolve '%s': %s", s->t.host, uv_strerror(rc));
		return;
	}
	s->gai_pending = true;
	s->gai_cancelled = false;
}

/* ---- the scraper -------------------------------------------------------- */

int bl_scraper_create(uv_loop_t *loop, const char *url, int64_t interval_ns, int64_t timeout_ns,
		      bl_scrape_result_fn on_result, void *ctx, struct bl_scraper **out)
{
	struct bl_scraper *s;
	int rc;

	if (!loop || !on_result || !out || interval_ns <= 0 || timeout_ns <= 0)
		return BL_EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return BL_ENOMEM;
	rc = parse_url(url, &s->t, NULL, 0);
	if (rc != 0) {
		free(s);
		return rc;
	}
	s->loop = loop;
	s->mem = bl_alloc_malloc;
	s->interval_ns = interval_ns;
	s->timeout_ns = timeout_ns;
	s->on_result = on_result;
	s->ctx = ctx;
	snprintf(s->port_str, sizeof s->port_str, "%u", s->t.port);
	s->literal = uv_ip4_addr(s->t.host, s->t.port, (struct sockaddr_in *)&s->addr) == 0 ||
		     uv_ip6_addr(s->t.host, s->t.port, (struct sockaddr_in6 *)&s->addr) == 0;
	uv_timer_init(loop, &s->tick);
	uv_timer_init(loop, &s->deadline);
	s->tick.data = s->deadline.data = s;
	s->gai.data = s;
	s->connect_req.data = s;
	s->write_req.data = s;
	s->handles_open = 2;
	s->busy = true; /* until the first tick */
	uv_timer_start(&s->tick, on_tick, 0, 0);
	*out = s;
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct bl_scraper *s = h->data;

	s->handles_open--;
	maybe_free(s);
}

void bl_scraper_destroy(struct bl_scraper *s)
{
	if (!s || s->destroyed)
		return;
	s->destroyed = true;
	s->in_flight = false; /* abandoned: no result */
	uv_close((uv_handle_t *)&s->tick, on_timer_closed);
	uv_close((uv_handle_t *)&s->deadline, on_timer_closed);
	close_tcp(s);
	cancel_gai(s);
}

void bl_scraper_set_memory(struct bl_scraper *s, const struct bl_alloc_hook *mem)
{
	s->mem = mem ? *mem : bl_alloc_malloc;
}

void bl_scraper_stats(const struct bl_scraper *s, struct bl_scraper_stats *out)
{
	*out = s->stats;
	out->in_flight = s->in_flight;
}

int bl_scrape_sum(const struct bl_scrape_result *r, const char *metric,
		  const struct bl_promtext_match *labels, size_t n_labels, double *out,
		  size_t *n_series, char *err, size_t errcap)
{
	if (!r)
		return bl_errorf(err, errcap, BL_EINVAL, "no result");
	if (!r->ok)
		return bl_errorf(err, errcap, BL_EIO, "the scrape failed: %s", r->error);
	return bl_promtext_sum(r->body, r->body_len, metric, labels, n_labels, out, n_series, err,
			       errcap);
}
