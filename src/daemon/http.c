#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ballast/arena.h"
#include "ballast/error.h"
#include "ballast/slab.h"
#include "dmem.h"
#include "httpparse.h"
#include "log.h"

/* Bytes read from the socket at a time, shared by every connection: the loop
 * parses them before it reads again, so one buffer serves all. */
#define READ_BUF_SIZE 65536
/* Past this many unsent response bytes a connection stops reading, so a
 * client that pipelines without reading cannot grow our memory. */
#define WRITE_QUEUE_HIGH (1u << 20)
/* How long a refused connection may linger while its 503 is sent. */
#define REFUSE_LINGER_MS 1000
/* Each connection's arena: its first block is kept between requests, so a
 * usual request line, headers and body cost no allocation at all. */
#define CONN_ARENA_BLOCK 2048
/* Connections added to the pool at a time. */
#define CONNS_PER_SLAB 64

enum conn_state {
	CONN_IDLE,       /* between requests: no byte of the next one yet */
	CONN_READING,    /* a request is arriving */
	CONN_DISPATCHED, /* the handler has it and has not answered */
	CONN_CLOSING,    /* handles are being closed */
};

/* A growable byte buffer with a hard cap, in the connection's arena: growing
 * takes a new piece and leaves the old one until the arena is reset when the
 * request is answered (at most as much again as the final size). */
struct buf {
	char *p;    /* bytes, NUL-terminated when len < cap */
	size_t len; /* bytes used */
	size_t cap; /* bytes allocated */
};

enum wanted_header { HDR_NONE, HDR_AUTHORIZATION, HDR_CONTENT_TYPE, HDR_EXPECT };

struct bl_http_conn {
	uv_tcp_t tcp;                  /* the socket */
	uv_timer_t timer;              /* idle and slow-request timeout */
	struct bl_hp hp;               /* request parser */
	struct bl_http_server *srv;    /* owner */
	struct bl_http_conn *prev;     /* server's list of connections */
	struct bl_http_conn *next;
	enum conn_state state;
	int handles_open;              /* tcp and timer, until their close callbacks */
	bool refused;                  /* over a cap: a 503 is on its way, then close */
	bool from_heap;                /* refused for memory: malloc'd outside the pool */
	bool in_dispatch;              /* inside the handler call */
	bool answered;                 /* the dispatched request has its answer */
	bool peer_gone;                /* closed while a request was dispatched */
	bool close_after_write;        /* close once the queued answers are sent */
	bool reading;                  /* uv_read_start is in effect */
	bool last_was_value;           /* header callbacks: last piece was a value */
	enum wanted_header wanted;     /* which header the current value belongs to */
	char field[32];                /* current header name, lower case, truncated */
	size_t field_len;
	size_t header_bytes;           /* request line + headers so far */
	size_t writes_pending;         /* uv_write requests not yet completed */
	int early_status;              /* an error found while parsing (413, 431) */
	const char *early_code;
	struct bl_arena *arena;        /* the current request's buffers; reset on its answer */
	struct buf url, auth, ctype, expect, body;
	char *pending;                 /* input after a request answered later (dmem) */
	size_t pending_len;
	struct bl_http_req req;        /* the request being handled */
};

struct bl_http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	bool listening;                /* listener handle is initialised */
	bool draining;
	bool listener_closed;
	struct bl_http_limits limits;
	bl_http_handler_fn handler;
	bl_http_done_fn done;
	void *ctx;
	void (*drain_done)(void *ctx);
	void *drain_ctx;
	struct bl_http_conn *conns;    /* every open connection, refused ones too */
	struct bl_slab *conn_pool;     /* struct bl_http_conn objects, from the account */
	struct bl_http_stats stats;
	char address[80];              /* bound "host:port" */
	char read_buf[READ_BUF_SIZE];
	bool read_buf_busy;            /* handed to libuv and not yet returned */
};

/* An answer the socket did not take at once (from the account). */
struct wreq {
	uv_write_t w;
	struct bl_http_conn *conn;
	size_t len;
	size_t alloc;  /* bytes taken from the account */
	char data[];
};

static void conn_close(struct bl_http_conn *c);
static void restart_timer(struct bl_http_conn *c);
static void conn_feed(struct bl_http_conn *c, const char *data, size_t len);
static void respond_early(struct bl_http_conn *c, int status, const char *code, const char *msg);

/* ---- small buffers ---------------------------------------------------- */

static int buf_append(struct bl_arena *a, struct buf *b, const char *p, size_t n, size_t limit)
{
	if (b->len + n > limit)
		return BL_ETOOBIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		q = bl_arena_alloc(a, cap, 1);
		if (!q)
			return BL_ENOMEM;
		if (b->len)
			memcpy(q, b->p, b->len);
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* Makes room for exactly want more bytes (a body of known length), so that
 * it arrives without copies. */
static int buf_reserve(struct bl_arena *a, struct buf *b, size_t want)
{
	char *q;

	if (b->len + want + 1 <= b->cap)
		return 0;
	q = bl_arena_alloc(a, b->len + want + 1, 1);
	if (!q)
		return BL_ENOMEM;
	if (b->len)
		memcpy(q, b->p, b->len);
	q[b->len] = '\0';
	b->p = q;
	b->cap = b->len + want + 1;
	return 0;
}

static void buf_forget(struct buf *b)
{
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- status text ------------------------------------------------------ */

const char *bl_http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- parser callbacks ------------------------------------------------- */

static struct bl_http_conn *conn_of(struct bl_hp *p)
{
	return p->data;
}

static int fail_early(struct bl_http_conn *c, int status, const char *code)
{
	c->early_status = status;
	c->early_code = code;
	return -1;
}

static int count_header(struct bl_http_conn *c, size_t n)
{
	c->header_bytes += n;
	if (c->header_bytes > c->srv->limits.max_header)
		return fail_early(c, 431, "header_too_large");
	return 0;
}

static int on_message_begin(struct bl_hp *p)
{
	struct bl_http_conn *c = conn_of(p);

	c->state = CONN_READING;
	c->header_bytes = 0;
	c->last_was_value = true;
	c->wanted = HDR_NONE;
	c->early_status = 0;
	c->req.start_ns = uv_hrtime();
	/* The whole request must arrive within the timeout of its first byte. */
	restart_timer(c);
	return 0;
}

static int on_url(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_http_conn *c = conn_of(p);

	if (count_header(c, len))
		return -1;
	int err = buf_append(c->arena, &c->url, at, len, c->srv->limits.max_header);

	if (err)
		return err == BL_ETOOBIG ? fail_early(c, 431, "header_too_large")
					 : fail_early(c, 503, "overloaded");
	return 0;
}

static int on_header_field(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_http_conn *c = conn_of(p);

	if (count_header(c, len + 4))
		return -1;
	if (c->last_was_value) {
		c->field_len = 0;
		c->wanted = HDR_NONE;
		c->last_was_value = false;
	}
	for (size_t i = 0; i < len && c->field_len < sizeof c->field - 1; i++) {
		char ch = at[i];
		c->field[c->field_len++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
	}
	c->field[c->field_len] = '\0';
	return 0;
}

static int on_header_value(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_http_conn *c = conn_of(p);
	struct buf *dst = NULL;
	int err;

	if (count_header(c, len))
		return -1;
	if (!c->last_was_value) {
		c->last_was_value = true;
		if (strcmp(c->field, "authorization") == 0)
			c->wanted = HDR_AUTHORIZATION;
		else if (strcmp(c->field, "content-type") == 0)
			c->wanted = HDR_CONTENT_TYPE;
		else if (strcmp(c->field, "expect") == 0)
			c->wanted = HDR_EXPECT;
		else
			c->wanted = HDR_NONE;
	}
	switch (c->wanted) {
	case HDR_AUTHORIZATION: dst = &c->auth; break;
	case HDR_CONTENT_TYPE: dst = &c->ctype; break;
	case HDR_EXPECT: dst = &c->expect; break;
	case HDR_NONE: return 0;
	}
	err = buf_append(c->arena, dst, at, len, c->srv->limits.max_header);
	if (err)
		return err == BL_ETOOBIG ? fail_early(c, 431, "header_too_large")
					 : fail_early(c, 503, "overloaded");
	return 0;
}

static void write_raw(struct bl_http_conn *c, const char *data, size_t len);

static int on_headers_complete(struct bl_hp *p)
{
	struct bl_http_conn *c = conn_of(p);

	if (bl_hp_http_major(p) != 1)
		return fail_early(c, 505, "http_version_not_supported");
	if (bl_hp_has_content_length(p) && bl_hp_content_length(p) > c->srv->limits.max_body)
		return fail_early(c, 413, "body_too_large");
	if (bl_hp_has_content_length(p) && bl_hp_content_length(p) > 0 &&
	    buf_reserve(c->arena, &c->body, (size_t)bl_hp_content_length(p)) != 0)
		return fail_early(c, 503, "overloaded");
	if (c->expect.len && strcasecmp(c->expect.p, "100-continue") == 0)
		write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	return 0;
}

static int on_body(struct bl_hp *p, const char *at, size_t len)
{
	struct bl_http_conn *c = conn_of(p);
	int err = buf_append(c->arena, &c->body, at, len, c->srv->limits.max_body);

	if (err == BL_ETOOBIG)
		return fail_early(c, 413, "body_too_large");
	if (err)
		return fail_early(c, 503, "overloaded");
	return 0;
}

static int on_message_complete(struct bl_hp *p)
{
	/* Stop here: the next pipelined request waits until this one is answered. */
	bl_hp_pause(p);
	return 0;
}

static const struct bl_hp_callbacks callbacks = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- writing ---------------------------------------------------------- */

static void conn_maybe_free(struct bl_http_conn *c)
{
	struct bl_http_server *s = c->srv;

	if (c->handles_open > 0 || c->writes_pending > 0)
		return;
	if (c->state == CONN_CLOSING && c->req.conn && !c->answered)
		return; /* the handler still holds the request: free on its answer */
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (!c->refused)
		s->stats.connections_open--;
	bl_arena_destroy(c->arena);
	bl_dmem_free(s->limits.mem, c->pending, c->pending_len);
	if (c->from_heap)
		free(c);
	else
		bl_slab_free(s->conn_pool, c);
	if (s->draining && !s->conns && s->listener_closed && s->drain_done) {
		void (*done)(void *) = s->drain_done;
		s->drain_done = NULL;
		done(s->drain_ctx);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct bl_http_conn *c = h->data;

	c->handles_open--;
	conn_maybe_free(c);
}

static void conn_close(struct bl_http_conn *c)
{
	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_DISPATCHED && !c->answered) {
		c->peer_gone = true;
		c->state = CONN_CLOSING;
		if (c->req.on_abort)
			c->req.on_abort(&c->req);
	}
	c->state = CONN_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void conn_start_reading(struct bl_http_conn *c);

static void on_write_done(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	struct bl_http_conn *c = wr->conn;

	bl_dmem_free(c->srv->limits.mem, wr, wr->alloc);
	c->writes_pending--;
	if (c->state == CONN_CLOSING) {
		conn_maybe_free(c);
		return;
	}
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->close_after_write && c->writes_pending == 0) {
		conn_close(c);
		return;
	}
	/* Reading was stopped for backpressure: resume once the queue drains. */
	if (!c->reading && c->state != CONN_DISPATCHED && !c->close_after_write &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < WRITE_QUEUE_HIGH / 2 &&
	    !c->pending)
		conn_start_reading(c);
}

/* Sends bufs in order: straight to the socket when it takes them all (no
 * write request, no callback — libuv would re-arm epoll after each queued
 * write), queueing only what it did not take. */
static void send_bufs(struct bl_http_conn *c, const uv_buf_t *bufs, unsigned nbufs)
{
	size_t total = 0, done, o = 0;
	struct wreq *wr;
	uv_buf_t b;
	int n;

	for (unsigned i = 0; i < nbufs; i++)
		total += bufs[i].len;
	n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
	if (n < 0 && n != UV_EAGAIN) {
		conn_close(c);
		return;
	}
	done = n > 0 ? (size_t)n : 0;
	if (done == total)
		return;
	wr = bl_dmem_alloc(c->srv->limits.mem, sizeof *wr + total - done);
	if (!wr) {
		/* Past the daemon's memory cap: this client is not reading its
		 * answers, so it loses its connection rather than ballast its memory. */
		conn_close(c);
		return;
	}
	wr->alloc = sizeof *wr + total - done;
	wr->conn = c;
	for (unsigned i = 0; i < nbufs; i++) {
		size_t len = bufs[i].len, skip = done > len ? len : done;

		done -= skip;
		memcpy(wr->data + o, bufs[i].base + skip, len - skip);
		o += len - skip;
	}
	wr->len = o;
	b = uv_buf_init(wr->data, (unsigned)o);
	if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write_done) < 0) {
		bl_dmem_free(c->srv->limits.mem, wr, wr->alloc);
		conn_close(c);
		return;
	}
	c->writes_pending++;
}

/* Closes a connection marked close_after_write once nothing is left to send. */
static void close_if_sent(struct bl_http_conn *c)
{
	if (c->close_after_write && c->writes_pending == 0 && c->state != CONN_CLOSING)
		conn_close(c);
}

static void write_raw(struct bl_http_conn *c, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);

	send_bufs(c, &b, 1);
}

/* Sends head and body, in one system call when the socket takes them. */
static void write_response(struct bl_http_conn *c, int status, const char *content_type,
			   const char *body, size_t len, const char *extra, bool keep_alive,
			   bool http10)
{
	char head[1024];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
			 status, bl_http_status_text(status), content_type, len,
			 keep_alive ? (http10 ? "Connection: keep-alive\r\n" : "")
				    : "Connection: close\r\n",
			 extra ? extra : "");
	uv_buf_t bufs[2];

	if (n < 0 || (size_t)n >= sizeof head) {
		n = snprintf(head, sizeof head, "HTTP/1.1 500 Internal Server Error\r\n"
						"Content-Length: 0\r\nConnection: close\r\n\r\n");
		len = 0;
		c->close_after_write = true;
	}
	bufs[0] = uv_buf_init(head, (unsigned)n);
	bufs[1] = uv_buf_init((char *)body, (unsigned)len);
	send_bufs(c, bufs, len ? 2 : 1);
}

/* ---- reading ---------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct bl_http_conn *c = h->data;
	struct bl_http_server *s = c->srv;

	(void)suggested;
	if (s->read_buf_busy) {
		*b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS; we retry next tick */
		return;
	}
	s->read_buf_busy = true;
	*b = uv_buf_init(s->read_buf, sizeof s->read_buf);
}

static void on_timeout(uv_timer_t *t)
{
	struct bl_http_conn *c = t->data;

	if (c->refused || c->state == CONN_IDLE) {
		c->srv->stats.timeouts += !c->refused;
		conn_close(c);
	} else if (c->state == CONN_READING) {
		c->srv->stats.timeouts++;
		respond_early(c, 408, "request_timeout", "the request did not arrive in time");
	}
}

static void restart_timer(struct bl_http_conn *c)
{
	uint64_t ms = c->refused ? REFUSE_LINGER_MS : c->srv->limits.request_timeout_ms;
	uv_timer_start(&c->timer, on_timeout, ms, 0);
}

static void reset_request(struct bl_http_conn *c)
{
	buf_forget(&c->url);
	buf_forget(&c->auth);
	buf_forget(&c->ctype);
	buf_forget(&c->expect);
	buf_forget(&c->body);
	bl_arena_reset(c->arena);
	memset(&c->req, 0, sizeof c->req);
}

static void conn_stop_reading(struct bl_http_conn *c);

/* Keeps input that arrives behind a request not yet answered, up to one
 * maximal request's worth; past that, reading stops until the answer. */
static bool stash_pending(struct bl_http_conn *c, const char *data, size_t len)
{
	struct bl_dmem *m = c->srv->limits.mem;
	size_t cap = c->srv->limits.max_header + c->srv->limits.max_body;
	char *p = bl_dmem_alloc(m, c->pending_len + len);

	if (!p)
		return false;
	if (c->pending_len)
		memcpy(p, c->pending, c->pending_len);
	memcpy(p + c->pending_len, data, len);
	bl_dmem_free(m, c->pending, c->pending_len);
	c->pending = p;
	c->pending_len += len;
	if (c->pending_len >= cap)
		conn_stop_reading(c);
	return true;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct bl_http_conn *c = st->data;
	struct bl_http_server *s = c->srv;

	if (b->base == s->read_buf)
		s->read_buf_busy = false;
	if (nread == UV_ENOBUFS)
		return;
	if (c->refused) {
		if (nread < 0)
			conn_close(c);
		return; /* discard whatever it sends while its 503 goes out */
	}
	if (nread < 0) {
		/* The peer is gone or half-closed: nothing more will arrive. */
		uv_read_stop(st);
		c->reading = false;
		if (c->state == CONN_DISPATCHED && !c->answered)
			conn_close(c);
		else if (c->writes_pending)
			c->close_after_write = true;
		else
			conn_close(c);
		return;
	}
	if (nread > 0 && c->state == CONN_DISPATCHED && !c->answered) {
		/* Pipelined bytes behind a request still being handled. */
		if (!stash_pending(c, b->base, (size_t)nread))
			conn_close(c);
		return;
	}
	if (nread > 0)
		conn_feed(c, b->base, (size_t)nread);
}

static void conn_start_reading(struct bl_http_conn *c)
{
	if (c->reading || c->state == CONN_CLOSING)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

static void conn_stop_reading(struct bl_http_conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

static void dispatch(struct bl_http_conn *c)
{
	struct bl_http_server *s = c->srv;
	char *q;

	uv_timer_stop(&c->timer);
	c->state = CONN_DISPATCHED;
	c->answered = false;
	if (!c->url.p && buf_append(c->arena, &c->url, "/", 1, SIZE_MAX)) {
		respond_early(c, 503, "overloaded", "out of memory");
		return;
	}
	if (!c->body.p && buf_append(c->arena, &c->body, "", 0, SIZE_MAX)) {
		respond_early(c, 503, "overloaded", "out of memory");
		return;
	}
	q = strchr(c->url.p, '?');
	if (q)
		*q++ = '\0';
	c->req.conn = c;
	c->req.method = bl_hp_method(&c->hp);
	c->req.path = c->url.p;
	c->req.query = q ? q : "";
	c->req.authorization = c->auth.len ? c->auth.p : NULL;
	c->req.content_type = c->ctype.len ? c->ctype.p : NULL;
	c->req.body = c->body.p;
	c->req.body_len = c->body.len;
	c->req.keep_alive = bl_hp_keep_alive(&c->hp);
	c->in_dispatch = true;
	s->handler(s->ctx, &c->req);
	c->in_dispatch = false;
}

static const char *early_message(int status)
{
	switch (status) {
	case 413: return "the request body is too large (limits.max_body)";
	case 431: return "the request headers are too large (limits.max_header)";
	case 505: return "only HTTP/1.0 and HTTP/1.1 are spoken here";
	default: return "the request could not be accepted";
	}
}

/* Parses data; dispatches each complete request in turn. */
static void conn_feed(struct bl_http_conn *c, const char *data, size_t len)
{
	while (len > 0 && c->state != CONN_CLOSING && !c->close_after_write) {
		size_t used = 0;
		enum bl_hp_status st = bl_hp_execute(&c->hp, data, len, &used);

		if (st == BL_HP_ERROR) {
			if (c->early_status) {
				respond_early(c, c->early_status, c->early_code,
					      early_message(c->early_status));
			} else {
				char msg[160];
				c->srv->stats.parse_errors++;
				snprintf(msg, sizeof msg, "malformed HTTP request: %s",
					 bl_hp_error(&c->hp));
				respond_early(c, 400, "bad_request", msg);
			}
			return;
		}
		data += used;
		len -= used;
		if (st != BL_HP_PAUSED)
			return;
		dispatch(c);
		if (c->state == CONN_CLOSING)
			return;
		if (!c->answered) {
			/* Answered later: keep the rest for then. Reading goes on so
			 * that a client that hangs up is noticed (on_abort). */
			if (len && !stash_pending(c, data, len))
				conn_close(c);
			return;
		}
		bl_hp_resume(&c->hp);
	}
	if (c->state != CONN_CLOSING && c->reading &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_QUEUE_HIGH)
		conn_stop_reading(c);
}

/* After a late answer: parse what arrived meanwhile, then read again. */
static void conn_resume(struct bl_http_conn *c)
{
	char *data = c->pending;
	size_t len = c->pending_len;

	c->pending = NULL;
	c->pending_len = 0;
	bl_hp_resume(&c->hp);
	if (data) {
		conn_feed(c, data, len);
		bl_dmem_free(c->srv->limits.mem, data, len);
	}
	if (c->state == CONN_IDLE || c->state == CONN_READING)
		conn_start_reading(c);
}

/* ---- answering -------------------------------------------------------- */

static void finish_answer(struct bl_http_conn *c, int status, uint64_t start_ns)
{
	struct bl_http_server *s = c->srv;

	if (s->done)
		s->done(s->ctx, &c->req, status, uv_hrtime() - start_ns);
}

void bl_http_respond(struct bl_http_req *req, int status, const char *content_type,
		     const char *body, size_t len, const char *extra_headers)
{
	struct bl_http_conn *c = req->conn;
	struct bl_http_server *s = c->srv;
	bool keep_alive = req->keep_alive && !s->draining && !c->close_after_write;
	bool http10 = bl_hp_http_minor(&c->hp) == 0;

	c->answered = true;
	if (c->peer_gone) {
		finish_answer(c, status, req->start_ns);
		memset(&c->req, 0, sizeof c->req);
		conn_maybe_free(c);
		return;
	}
	req->keep_alive = keep_alive;
	write_response(c, status, content_type, body, len, extra_headers, keep_alive, http10);
	finish_answer(c, status, req->start_ns);
	if (c->state == CONN_CLOSING)
		return;
	reset_request(c);
	if (!keep_alive || c->close_after_write) {
		c->close_after_write = true;
		conn_stop_reading(c);
		bl_dmem_free(s->limits.mem, c->pending, c->pending_len);
		c->pending = NULL;
		c->pending_len = 0;
		c->state = CONN_IDLE;
		close_if_sent(c);
		return;
	}
	c->state = CONN_IDLE;
	restart_timer(c);
	if (!c->in_dispatch)
		conn_resume(c);
}

void bl_http_respond_json(struct bl_http_req *req, int status, json_t *doc,
			  const char *extra_headers)
{
	char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;

	json_decref(doc);
	if (!text) {
		static const char oom[] =
			"{\"error\":{\"code\":\"overloaded\",\"message\":\"out of memory\"}}";
		bl_http_respond(req, 503, "application/json", oom, sizeof oom - 1, NULL);
		return;
	}
	size_t len = strlen(text);
	text[len] = '\0';
	/* A trailing newline makes curl output readable. */
	char *nl = realloc(text, len + 2);
	if (nl) {
		text = nl;
		text[len++] = '\n';
		text[len] = '\0';
	}
	bl_http_respond(req, status, "application/json", text, len, extra_headers);
	free(text);
}

static void respond_error_v(struct bl_http_req *req, int status, const char *code, json_t *extra,
			    const char *extra_headers, const char *fmt, va_list ap)
	__attribute__((format(printf, 6, 0)));

static void respond_error_v(struct bl_http_req *req, int status, const char *code, json_t *extra,
			    const char *extra_headers, const char *fmt, va_list ap)
{
	char msg[1024];
	json_t *doc;

	vsnprintf(msg, sizeof msg, fmt, ap);
	doc = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	if (doc && extra)
		json_object_update(doc, extra);
	json_decref(extra);
	bl_http_respond_json(req, status, doc, extra_headers);
}

void bl_http_respond_error(struct bl_http_req *req, int status, const char *code,
			   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	respond_error_v(req, status, code, NULL, NULL, fmt, ap);
	va_end(ap);
}

void bl_http_respond_error_ex(struct bl_http_req *req, int status, const char *code,
			      json_t *extra, const char *extra_headers, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	respond_error_v(req, status, code, extra, extra_headers, fmt, ap);
	va_end(ap);
}

/* An error found before the request could be handed over: answer and close,
 * since the rest of the stream cannot be trusted to be framed right. */
static void respond_early(struct bl_http_conn *c, int status, const char *code, const char *msg)
{
	if (c->req.start_ns == 0)
		c->req.start_ns = uv_hrtime();
	c->req.conn = c;
	c->req.keep_alive = false;
	c->req.method = bl_hp_method(&c->hp);
	c->req.path = c->url.p ? c->url.p : "";
	c->req.route = NULL;
	c->state = CONN_DISPATCHED;
	c->close_after_write = true;
	conn_stop_reading(c);
	uv_timer_stop(&c->timer);
	bl_http_respond_error(&c->req, status, code, "%s", msg);
}

/* ---- accepting -------------------------------------------------------- */

/* Turns a just-accepted connection away with a 503, then discards what it
 * sends until it hangs up or a second passes: closing at once could reset the
 * answer away. */
static void refuse(struct bl_http_conn *c, const char *code, const char *message)
{
	char body[256], resp[512];
	int blen = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
			    code, message);
	int n = snprintf(resp, sizeof resp,
			 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
			 "application/json\r\nContent-Length: %d\r\nRetry-After: "
			 "1\r\nConnection: close\r\n\r\n%s",
			 blen, body);

	c->refused = true;
	c->srv->stats.connections_refused++;
	write_raw(c, resp, (size_t)n);
	if (c->state == CONN_CLOSING)
		return;
	restart_timer(c);
	conn_start_reading(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct bl_http_server *s = listener->data;
	struct bl_dmem *m = s->limits.mem;
	struct bl_http_conn *c = NULL;
	bool over_memory;

	if (status < 0) {
		bl_log(BL_LOG_WARN, "accept failed", "error=%s", uv_strerror(status));
		return;
	}
	/* Past the soft level of the daemon's memory, a new connection is new
	 * work: it gets a 503 from a small object outside the pool (it lives
	 * for at most a second and holds no buffer), never a share of the last
	 * eighth kept for the work already admitted. */
	over_memory = bl_dmem_refuse_new_work(m);
	if (!over_memory) {
		c = bl_slab_alloc(s->conn_pool);
		if (c && bl_arena_create(&(struct bl_arena_config){.block_bytes = CONN_ARENA_BLOCK,
								   .hook = &m->hook},
					 &c->arena) != 0) {
			bl_slab_free(s->conn_pool, c);
			c = NULL;
		}
		over_memory = !c;
	}
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c) {
			bl_log(BL_LOG_ERROR, "out of memory accepting a connection", NULL);
			return;
		}
		c->from_heap = true;
	}
	c->srv = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
		c->refused = true;
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (over_memory) {
		s->stats.connections_refused_memory++;
		refuse(c, "overloaded",
		       "ballast is at its own memory cap (limits.daemon_memory); retry later");
		return;
	}
	if (s->stats.connections_open >= s->limits.max_connections) {
		refuse(c, "too_many_connections",
		       "the server is at its connection limit (limits.max_connections); retry later");
		return;
	}
	s->stats.connections_open++;
	s->stats.connections_accepted++;
	bl_hp_init(&c->hp, &callbacks, c);
	c->state = CONN_IDLE;
	restart_timer(c);
	conn_start_reading(c);
}

int bl_http_server_create(uv_loop_t *loop, const struct bl_http_limits *limits,
			  bl_http_handler_fn handler, bl_http_done_fn done, void *ctx,
			  struct bl_http_server **out)
{
	struct bl_http_server *s = calloc(1, sizeof *s);

	if (!s)
		return BL_ENOMEM;
	if (!limits->mem) {
		free(s);
		return BL_EINVAL; /* every connection draws on an account */
	}
	if (bl_slab_create(&(struct bl_slab_config){.object_size = sizeof(struct bl_http_conn),
						    .objects_per_slab = CONNS_PER_SLAB,
						    .zero = true, .hook = &limits->mem->hook},
			   &s->conn_pool) != 0) {
		free(s);
		return BL_ENOMEM;
	}
	s->loop = loop;
	s->limits = *limits;
	s->handler = handler;
	s->done = done;
	s->ctx = ctx;
	s->listener.data = s;
	*out = s;
	return 0;
}

int bl_http_server_listen(struct bl_http_server *s, const char *host, uint16_t port, char *err,
			  size_t errcap)
{
	struct sockaddr_storage ss;
	int namelen = sizeof ss;
	int rc;
	const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
	char ip[64];

	if (uv_ip4_addr(h, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(h, port, (struct sockaddr_in6 *)&ss) != 0) {
		snprintf(err, errcap, "listen address '%s' is not an IPv4 or IPv6 literal", host);
		return UV_EINVAL;
	}
	rc = uv_tcp_init(s->loop, &s->listener);
	if (rc < 0)
		goto fail;
	s->listening = true;
	s->listener.data = s;
	rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
	if (rc < 0)
		goto fail;
	uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &namelen);
	if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
		snprintf(s->address, sizeof s->address, "[%s]:%u", ip,
			 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else {
		uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
		snprintf(s->address, sizeof s->address, "%s:%u", ip,
			 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
	return 0;
fail:
	snprintf(err, errcap, "cannot listen on %s:%u: %s", host, port, uv_strerror(rc));
	return rc;
}

const char *bl_http_server_address(const struct bl_http_server *s)
{
	return s->address;
}

void bl_http_server_set_limits(struct bl_http_server *s, const struct bl_http_limits *limits)
{
	s->limits = *limits;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct bl_http_server *s = h->data;

	s->listener_closed = true;
	if (s->draining && !s->conns && s->drain_done) {
		void (*done)(void *) = s->drain_done;
		s->drain_done = NULL;
		done(s->drain_ctx);
	}
}

void bl_http_server_drain(struct bl_http_server *s, void (*done)(void *ctx), void *ctx)
{
	struct bl_http_conn *c, *next;

	if (s->draining)
		return;
	s->draining = true;
	s->drain_done = done;
	s->drain_ctx = ctx;
	for (c = s->conns; c; c = next) {
		next = c->next;
		if (c->state == CONN_IDLE) {
			if (c->writes_pending)
				c->close_after_write = true;
			else
				conn_close(c);
		}
		/* READING and DISPATCHED finish; their answers carry Connection: close. */
	}
	if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
		uv_close((uv_handle_t *)&s->listener, on_listener_closed);
	else
		on_listener_closed((uv_handle_t *)&s->listener);
}

void bl_http_server_close_all(struct bl_http_server *s)
{
	struct bl_http_conn *c, *next;

	for (c = s->conns; c; c = next) {
		next = c->next;
		conn_close(c);
	}
	if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
		uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

bool bl_http_server_draining(const struct bl_http_server *s)
{
	return s->draining;
}

void bl_http_server_stats(const struct bl_http_server *s, struct bl_http_stats *out)
{
	*out = s->stats;
}

void bl_http_server_pool_stats(const struct bl_http_server *s, struct bl_slab_stats *out)
{
	bl_slab_stats(s->conn_pool, out);
}

void bl_http_server_destroy(struct bl_http_server *s)
{
	if (!s)
		return;
	bl_slab_destroy(s->conn_pool);
	free(s);
}
