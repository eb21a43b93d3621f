/* The daemon's own metrics in Prometheus text exposition format 0.0.4:
 * requests by route and status, a latency histogram by route, connections,
 * and the process (CPU, RSS, fds, start time). Later capabilities append
 * their families through bl_metrics_text_* helpers.
 */
#ifndef BALLAST_METRICS_H
#define BALLAST_METRICS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds of the latency histogram, in seconds. */
#define BL_METRICS_BUCKETS 14

/* A growable text buffer for building expositions and other responses. */
struct bl_text {
	char *p;     /* NUL-terminated text */
	size_t len;  /* bytes used */
	size_t cap;  /* bytes allocated */
	int failed;  /* an allocation failed: the text is incomplete */
};

void bl_text_printf(struct bl_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bl_text_free(struct bl_text *t);

struct bl_metrics;

/* Creates the registry. start_wall_s is the process start (epoch seconds). */
int bl_metrics_create(double start_wall_s, struct bl_metrics **out);
void bl_metrics_destroy(struct bl_metrics *m);

/* Counts one answered request. route is a static label ("/v1/state"), or
 * NULL for requests refused before routing. */
void bl_metrics_observe_request(struct bl_metrics *m, const char *route, int status,
				uint64_t duration_ns);

/* Total requests answered since start. */
uint64_t bl_metrics_requests_total(const struct bl_metrics *m);

/* Appends the HTTP request families (counter and histogram). */
void bl_metrics_write_http(const struct bl_metrics *m, struct bl_text *t);

/* Appends process_* families read from /proc/self. */
void bl_metrics_write_process(const struct bl_metrics *m, struct bl_text *t);

/* Process figures, also used by /v1/state. Fields are -1 when unknown. */
struct bl_process_stats {
	double cpu_seconds;  /* user + system */
	int64_t rss_bytes;
	int64_t open_fds;
	int64_t max_fds;
};
void bl_process_stats_read(struct bl_process_stats *out);

#endif
