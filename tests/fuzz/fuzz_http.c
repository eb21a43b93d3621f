/* libFuzzer target: the HTTP server's request handling (src/daemon/http.c)
 * over a real loopback connection — the parser adapter, header and body
 * accounting, pipelining, answers given at once or later, early errors.
 *
 * Each input is sent by a client socket to an in-process server on its own
 * libuv loop; the loop runs until the server has answered everything and
 * freed the connection, so a leak of any connection state shows up as a
 * leak of this input. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmem.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t *loop;
static struct bl_http_server *srv;
static uint16_t port;

/* A request answered on the next loop turn, through the late-answer path. */
struct later {
	uv_timer_t timer;
	struct bl_http_req *req;
};

static void later_closed(uv_handle_t *h)
{
	free(h->data);
}

static void later_fire(uv_timer_t *t)
{
	struct later *l = t->data;

	if (l->req) {
		l->req->on_abort = NULL;
		bl_http_respond(l->req, 200, "text/plain", "late\n", 5, NULL);
	}
	uv_close((uv_handle_t *)&l->timer, later_closed);
}

static void later_abort(struct bl_http_req *req)
{
	struct later *l = req->handler_data;

	l->req = NULL;
	req->on_abort = NULL;
	bl_http_respond(req, 499, "text/plain", "", 0, NULL);
}

/* Answers by the path's first letter: at once, later, an error, or close. */
static void handle(void *ctx, struct bl_http_req *req)
{
	(void)ctx;
	req->route = "fuzz";
	switch (req->path[0] ? req->path[1] : 0) {
	case 'l': {
		struct later *l = calloc(1, sizeof *l);

		if (!l) {
			bl_http_respond_error(req, 503, "overloaded", "out of memory");
			return;
		}
		l->req = req;
		l->timer.data = l;
		req->handler_data = l;
		req->on_abort = later_abort;
		uv_timer_init(loop, &l->timer);
		uv_timer_start(&l->timer, later_fire, 0, 0);
		return;
	}
	case 'e':
		bl_http_respond_error(req, 404, "not_found", "no %.40s", req->path);
		return;
	case 'c':
		req->keep_alive = false;
		bl_http_respond(req, 200, "text/plain", req->body, req->body_len, NULL);
		return;
	default:
		bl_http_respond(req, 200, "text/plain", req->body, req->body_len,
				"X-Echo: 1\r\n");
	}
}

/* The server's memory account, as the daemon's: 16 MiB, its smallest cap. */
static struct bl_dmem mem;

static void setup(void)
{
	struct bl_http_limits lim = {.max_connections = 4,
				     .max_body = 1024,
				     .max_header = 1024,
				     .request_timeout_ms = 20,
				     .mem = &mem};
	char err[256];

	bl_dmem_init(&mem, UINT64_C(16) << 20);

	loop = malloc(sizeof *loop);
	if (!loop || uv_loop_init(loop) != 0 ||
	    bl_http_server_create(loop, &lim, handle, NULL, NULL, &srv) != 0 ||
	    bl_http_server_listen(srv, "127.0.0.1", 0, err, sizeof err) != 0)
		abort();
	/* The bound port, from the address the server reports. */
	port = (uint16_t)atoi(strrchr(bl_http_server_address(srv), ':') + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct bl_http_stats st;
	size_t sent = 0;
	char sink[65536];
	bool half_close = size > 0 && (data[0] & 1);
	int fd, spins;

	if (!srv)
		setup();
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		abort();
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
		abort();
	/* Feed the input while the server reads it; drain its answers. */
	for (spins = 0; spins < 20000; spins++) {
		ssize_t n;

		uv_run(loop, UV_RUN_NOWAIT);
		if (sent < size) {
			n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != ENOTCONN)
				break; /* the server closed on us */
			if (sent == size && half_close)
				shutdown(fd, SHUT_WR);
		}
		n = recv(fd, sink, sizeof sink, 0);
		if (n == 0)
			break; /* the server closed: everything is answered */
		if (n < 0 && errno != EAGAIN && errno != ENOTCONN)
			break;
		if (sent == size && spins > 200 && n < 0) {
			/* Idle: stop waiting once the request timeout must have fired. */
			bl_http_server_stats(srv, &st);
			if (st.connections_open == 0)
				break;
		}
	}
	close(fd);
	/* Let the server see the close and free the connection. */
	for (spins = 0; spins < 100000; spins++) {
		uv_run(loop, UV_RUN_NOWAIT);
		bl_http_server_stats(srv, &st);
		if (st.connections_open == 0)
			break;
	}
	if (st.connections_open != 0)
		abort(); /* a connection that never goes away */
	for (int i = 0; i < 10; i++)
		uv_run(loop, UV_RUN_NOWAIT); /* close callbacks, late timers */
	return 0;
}
