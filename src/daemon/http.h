/* ballast's HTTP/1.1 server on libuv: connections, keep-alive, pipelining,
 * bounded requests, timeouts, a connection cap, and responses.
 *
 * One loop thread owns every object here. A request is handed to the handler
 * once it is complete; the handler answers with one of the bl_http_respond*
 * calls, at once or later (a waiting acquire answers when it is admitted).
 * A connection parses its next pipelined request only after the current one
 * is answered, so responses always leave in request order.
 */
#ifndef BALLAST_HTTP_H
#define BALLAST_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct bl_http_server;
struct bl_http_conn;
struct bl_dmem;

struct bl_http_limits {
	uint32_t max_connections;   /* open connections; more are answered 503 and closed */
	uint64_t max_body;          /* request body bytes; more is 413 */
	uint64_t max_header;        /* request line + header bytes; more is 431 */
	uint64_t request_timeout_ms; /* idle keep-alive and slow-request timeout */
	struct bl_dmem *mem;        /* the account connections and buffers draw from (dmem.h) */
};

struct bl_http_req;
typedef void (*bl_http_abort_fn)(struct bl_http_req *req);

/* One request, valid from the handler call until it is answered. */
struct bl_http_req {
	struct bl_http_conn *conn; /* owning connection */
	const char *method;        /* "GET", "POST", ... */
	const char *path;          /* decoded of nothing: the path as sent, no query */
	const char *query;         /* after '?', or "" */
	const char *authorization; /* Authorization header value, or NULL */
	const char *content_type;  /* Content-Type header value, or NULL */
	char *body;                /* body bytes, NUL-terminated; the handler may change them */
	size_t body_len;           /* body length in bytes */
	uint64_t start_ns;         /* uv_hrtime() when the request's first byte arrived */
	const char *route;         /* route label for metrics, set by the handler */
	bool keep_alive;           /* false when the answer closes the connection */
	bl_http_abort_fn on_abort; /* called if the peer goes away before the answer */
	void *handler_data;        /* for the handler's use */
};

/* Called for each complete request. */
typedef void (*bl_http_handler_fn)(void *ctx, struct bl_http_req *req);

/* Called after every answer is queued: status and time since the first byte.
 * req->route is NULL for requests refused before routing (malformed, too large). */
typedef void (*bl_http_done_fn)(void *ctx, const struct bl_http_req *req, int status,
				 uint64_t duration_ns);

struct bl_http_stats {
	uint64_t connections_open;     /* now */
	uint64_t connections_accepted; /* since start */
	uint64_t connections_refused;  /* turned away at a cap (connections or memory) */
	uint64_t connections_refused_memory; /* ... of which at the daemon's memory cap */
	uint64_t timeouts;             /* idle or slow connections closed */
	uint64_t parse_errors;         /* malformed requests */
};

/* Creates a server on loop. handler answers requests, done (optional) sees
 * every answer, ctx is passed to both. limits->mem is required. Returns 0,
 * BL_EINVAL (no account) or BL_ENOMEM. */
int bl_http_server_create(uv_loop_t *loop, const struct bl_http_limits *limits,
			  bl_http_handler_fn handler, bl_http_done_fn done, void *ctx,
			  struct bl_http_server **out);

/* Binds and listens on host:port (IPv4 or IPv6 literal, or "localhost").
 * Returns 0, or a negative libuv error with a message in err. */
int bl_http_server_listen(struct bl_http_server *s, const char *host, uint16_t port, char *err,
			  size_t errcap);

/* The bound address as "host:port" (the real port when 0 was asked). */
const char *bl_http_server_address(const struct bl_http_server *s);

/* Applies new limits; open connections see them from their next request. */
void bl_http_server_set_limits(struct bl_http_server *s, const struct bl_http_limits *limits);

/* Stops accepting, closes idle connections, and lets requests in progress
 * finish (their answers carry Connection: close). Calls done(ctx) once no
 * connection is left. */
void bl_http_server_drain(struct bl_http_server *s, void (*done)(void *ctx), void *ctx);

/* Closes every connection now (answers not yet written are lost). */
void bl_http_server_close_all(struct bl_http_server *s);

/* True while draining. */
bool bl_http_server_draining(const struct bl_http_server *s);

void bl_http_server_stats(const struct bl_http_server *s, struct bl_http_stats *out);

/* The connection pool's statistics (struct bl_slab_stats, ballast/slab.h). */
struct bl_slab_stats;
void bl_http_server_pool_stats(const struct bl_http_server *s, struct bl_slab_stats *out);

/* Frees s. The loop must have closed all its handles first (run it after
 * bl_http_server_close_all or a finished drain). NULL is a no-op. */
void bl_http_server_destroy(struct bl_http_server *s);

/* ---- answering -------------------------------------------------------- */

/* Answers req with status, content type and body (copied). extra_headers,
 * if not NULL, is a block of "Name: value\r\n" lines. Exactly one respond
 * call per request; req is invalid afterwards. */
void bl_http_respond(struct bl_http_req *req, int status, const char *content_type,
		     const char *body, size_t len, const char *extra_headers);

/* Answers with a JSON document (the reference is stolen) as application/json. */
void bl_http_respond_json(struct bl_http_req *req, int status, json_t *doc,
			  const char *extra_headers);

/* Answers {"error":{"code":code,"message":<formatted>}}. */
void bl_http_respond_error(struct bl_http_req *req, int status, const char *code,
			   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Same, with extra members merged into the top-level object (stolen, may be NULL). */
void bl_http_respond_error_ex(struct bl_http_req *req, int status, const char *code,
			      json_t *extra, const char *extra_headers, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* The reason phrase for status ("Not Found"). */
const char *bl_http_status_text(int status);

#endif
