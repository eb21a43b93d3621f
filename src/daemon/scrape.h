/* Scraping a backend's own metrics endpoint on the daemon's loop.
 *
 * A scraper GETs one http:// URL every interval and hands each outcome to
 * on_result: the body of a 2xx answer, or why there is none. What to read
 * from the body is the caller's business; the usual one is a line in
 * on_result that turns it into a load, stale unless the scrape and the
 * metric are both good (bl_scrape_sum below):
 *
 *     static void on_metrics(void *ctx, const struct bl_scrape_result *r)
 *     {
 *         struct backend *be = ctx;
 *         double q = 0;
 *         bool stale = bl_scrape_sum(r, "vllm:num_requests_waiting", NULL, 0,
 *                                    &q, NULL, 0) != 0;
 *         bl_balancer_set_load(be->pool->balancer, be->idx, q, stale);
 *     }
 *
 * A failed scrape is never an empty one: it reports ok = false, and its
 * caller marks the load stale (docs/internals/scraping.md says why).
 *
 * One scrape at a time, each within timeout_ns from its start to its last
 * byte (name resolution, connect, request, response). The next one starts
 * interval_ns after the previous one started, or as soon as the previous
 * one is over if that took longer: never two at once. The first starts on
 * the loop's next turn after create. So a result comes at least every
 * max(interval, timeout) plus a little, failures included.
 *
 * HTTP: HTTP/1.1 GET with Connection: close and Accept-Encoding: identity;
 * the answer is read with Content-Length, chunked transfer coding, or up to
 * the close; 1xx interim answers are skipped; redirects are not followed; a
 * Content-Encoding other than identity is a failure; the body is capped at
 * BL_SCRAPE_BODY_MAX bytes (over it, the scrape fails); the status line and
 * headers are capped by the parser (80 KiB). Hosts are IP literals (no
 * resolution at all) or names resolved with uv_getaddrinfo, each address
 * tried in turn until one connects. Userinfo in the URL (user:password@)
 * is sent as HTTP Basic authentication. https:// is not supported.
 *
 * One loop thread owns a scraper: no locks. Its timer keeps the loop alive
 * until it is destroyed.
 */
#ifndef BALLAST_SCRAPE_H
#define BALLAST_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ballast/alloc.h"
#include "ballast/promtext.h"

/* Most body bytes a scrape accepts. vLLM's page is 50-200 KiB. */
#define BL_SCRAPE_BODY_MAX ((size_t)4 << 20)

/* The longest URL accepted, in bytes. */
#define BL_SCRAPE_URL_MAX 2048

struct bl_scraper;

/* One scrape's outcome. Every pointer is valid only during on_result. */
struct bl_scrape_result {
	bool ok;             /* a 2xx answer whose whole body arrived within the cap */
	const char *error;   /* why not ok, for a person; "" when ok */
	int http_status;     /* the answer's status; 0 when none was read */
	const char *body;    /* the whole body, de-chunked and NUL-terminated, for any
				status; NULL when no whole answer was read */
	size_t body_len;     /* bytes at body, without the NUL */
	int64_t duration_ns; /* from the scrape's start to its end */
	int64_t finished_ns; /* uv_hrtime() at its end */
	bool timed_out;      /* failed because timeout_ns passed */
};

/* Called once per scrape with its outcome, on the loop thread. It may call
 * bl_scraper_destroy on its own scraper. */
typedef void (*bl_scrape_result_fn)(void *ctx, const struct bl_scrape_result *r);

/* Counts since create. */
struct bl_scraper_stats {
	uint64_t successes;       /* scrapes with ok */
	uint64_t failures;        /* scrapes without */
	uint64_t timeouts;        /* failures that were timeouts */
	int64_t last_success_ns;  /* uv_hrtime() at the end of the last success; 0 never */
	int64_t last_finished_ns; /* uv_hrtime() at the end of the last scrape; 0 never */
	int64_t last_duration_ns; /* how long the last scrape took */
	int last_status;          /* HTTP status of the last scrape, 0 when none */
	bool in_flight;           /* a scrape is under way */
	char last_error[192];     /* the last scrape's error, "" when it succeeded */
};

/* Checks that url is one a scraper can use: http://[user[:password]@]host
 * [:port][/path][?query] (a #fragment is dropped), host a name, an IPv4
 * address or a bracketed IPv6 address, port 1..65535 (default 80), no
 * spaces or control bytes, at most BL_SCRAPE_URL_MAX bytes. Returns 0, or
 * BL_EINVAL / BL_ENOTSUP (https://) with a message for a person in err
 * (errcap bytes, NUL-terminated; err may be NULL). */
int bl_scrape_url_check(const char *url, char *err, size_t errcap);

/* Creates a scraper of url on loop: one GET every interval_ns (> 0), each
 * given timeout_ns (> 0), outcomes to on_result(ctx, ...). The first scrape
 * starts on the loop's next turn. Returns 0 and sets *out, or BL_EINVAL
 * (bad interval, timeout, NULL on_result or URL: bl_scrape_url_check says
 * what is wrong with a URL), BL_ENOTSUP (https://) or BL_ENOMEM, leaving
 * *out untouched. */
int bl_scraper_create(uv_loop_t *loop, const char *url, int64_t interval_ns, int64_t timeout_ns,
		      bl_scrape_result_fn on_result, void *ctx, struct bl_scraper **out);

/* Stops s: a scrape under way is abandoned (its on_result is never called,
 * nor any other), its connection closed, a name resolution cancelled. The
 * memory is freed from libuv close callbacks, so the loop must run after
 * this for it to be released, as for any libuv handle. Safe at any time on
 * the loop thread, from on_result too. NULL is a no-op; s is invalid
 * afterwards. */
void bl_scraper_destroy(struct bl_scraper *s);

/* Where the answer's body (up to BL_SCRAPE_BODY_MAX bytes, held only while a
 * scrape is under way) comes from: the daemon passes its memory account
 * (limits.daemon_memory), so a refused allocation fails the scrape ("no
 * memory for ...") instead of passing the cap. NULL: malloc. Call before the
 * first scrape starts (right after create), or between scrapes. */
void bl_scraper_set_memory(struct bl_scraper *s, const struct bl_alloc_hook *mem);

/* Fills *out with s's counts and last outcome. */
void bl_scraper_stats(const struct bl_scraper *s, struct bl_scraper_stats *out);

/* The one-liner of on_result: when r->ok, bl_promtext_sum over r's body
 * (same arguments, same returns); otherwise BL_EIO with r->error in err.
 * A non-zero return means the value is unknown: mark it stale. *out and
 * *n_series (may be NULL) are set only on 0. */
int bl_scrape_sum(const struct bl_scrape_result *r, const char *metric,
		  const struct bl_promtext_match *labels, size_t n_labels, double *out,
		  size_t *n_series, char *err, size_t errcap);

#endif
