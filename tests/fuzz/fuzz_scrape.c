/* libFuzzer target: the scraper's reading of an answer (src/daemon/scrape.c)
 * over a real loopback connection — status line, headers, Content-Length,
 * chunked coding, interim 1xx answers, bodies up to the close, cut-short
 * answers and garbage.
 *
 * For each input a scraper on its own libuv loop GETs a plain socket
 * listening here; the input after its first byte is sent back as the
 * answer, in pieces whose size the first byte chooses, and the socket is
 * closed. The scraper must
 * report exactly one outcome that is consistent (ok only for a 2xx answer
 * with a whole, NUL-terminated body within the cap), and once destroyed it
 * must leave no handle on the loop and no byte allocated. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "scrape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t *loop;
static int listen_fd = -1;
static char url[64];

struct outcome {
	int results;
	struct bl_scraper *scraper;
};

static void setup(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	loop = malloc(sizeof *loop);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (!loop || uv_loop_init(loop) != 0 || listen_fd < 0 ||
	    bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(listen_fd, 4) != 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&sa, &len) != 0)
		abort();
	snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", ntohs(sa.sin_port));
}

static void on_result(void *ctx, const struct bl_scrape_result *r)
{
	struct outcome *o = ctx;

	o->results++;
	if (!r->error || r->ok != (r->error[0] == '\0'))
		abort();
	if (r->ok && (r->http_status < 200 || r->http_status > 299 || !r->body))
		abort();
	if (r->body && (r->body_len > BL_SCRAPE_BODY_MAX || r->body[r->body_len] != '\0'))
		abort();
	if (!r->body && r->body_len != 0)
		abort();
	if (r->http_status < 0 || r->http_status > 999 || r->duration_ns < 0)
		abort();
	bl_scraper_destroy(o->scraper);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome o = {0};
	size_t piece = size ? (size_t)data[0] % 64 + 1 : 1, sent = 0;
	const uint8_t *answer = size ? data + 1 : data;
	size_t len = size ? size - 1 : 0;
	uint64_t give_up = uv_hrtime() + UINT64_C(5000000000);
	char sink[4096];
	int fd = -1, spins;
	bool closed = false;

	if (!loop)
		setup();
	if (bl_scraper_create(loop, url, INT64_C(3600000000000), INT64_C(2000000000), on_result, &o,
			      &o.scraper) != 0)
		abort();
	while (o.results == 0 && uv_hrtime() < give_up) {
		uv_run(loop, UV_RUN_NOWAIT);
		if (fd < 0) {
			fd = accept(listen_fd, NULL, NULL);
			continue;
		}
		while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
			; /* the request: not looked at */
		if (sent < len) {
			size_t n = len - sent < piece ? len - sent : piece;
			ssize_t k = send(fd, answer + sent, n, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (k > 0)
				sent += (size_t)k;
			else if (k < 0 && errno != EAGAIN)
				sent = len; /* the scraper hung up: it has what it wants */
		} else if (!closed) {
			shutdown(fd, SHUT_WR);
			closed = true;
		}
	}
	if (o.results != 1)
		abort(); /* no outcome, though the answer ended with a close */
	if (fd >= 0)
		close(fd);
	/* The destroyed scraper's handles close on the next turns. */
	for (spins = 0; spins < 1000 && uv_loop_alive(loop); spins++)
		uv_run(loop, UV_RUN_NOWAIT);
	if (uv_loop_alive(loop))
		abort();
	return 0;
}
