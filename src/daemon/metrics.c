#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ballast/error.h"

static const double bucket_bounds[BL_METRICS_BUCKETS] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01,    0.025,  0.05,    0.1,    0.25,  1.0,    5.0,
};

#define MAX_ROUTES 64
#define MAX_SERIES 256

struct route_hist {
	const char *route;                    /* static label; "" for unrouted */
	uint64_t buckets[BL_METRICS_BUCKETS]; /* non-cumulative counts */
	uint64_t count;
	double sum_s;
};

struct series {
	const char *route; /* static label */
	int status;
	uint64_t count;
};

struct bl_metrics {
	double start_wall_s;
	uint64_t total;
	struct route_hist hist[MAX_ROUTES];
	size_t n_hist;
	struct series series[MAX_SERIES];
	size_t n_series;
};

void bl_text_printf(struct bl_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->failed = 1;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

void bl_text_free(struct bl_text *t)
{
	free(t->p);
	t->p = NULL;
	t->len = t->cap = 0;
	t->failed = 0;
}

int bl_metrics_create(double start_wall_s, struct bl_metrics **out)
{
	struct bl_metrics *m = calloc(1, sizeof *m);

	if (!m)
		return BL_ENOMEM;
	m->start_wall_s = start_wall_s;
	*out = m;
	return 0;
}

void bl_metrics_destroy(struct bl_metrics *m)
{
	free(m);
}

void bl_metrics_observe_request(struct bl_metrics *m, const char *route, int status,
				uint64_t duration_ns)
{
	const char *r = route ? route : "";
	double s = (double)duration_ns / 1e9;
	struct route_hist *h = NULL;
	size_t i;

	m->total++;
	/* Labels are static strings from the route table: compare pointers first. */
	for (i = 0; i < m->n_series; i++)
		if (m->series[i].status == status &&
		    (m->series[i].route == r || strcmp(m->series[i].route, r) == 0))
			break;
	if (i == m->n_series && m->n_series < MAX_SERIES)
		m->series[m->n_series++] = (struct series){.route = r, .status = status};
	if (i < m->n_series)
		m->series[i].count++;

	for (i = 0; i < m->n_hist; i++)
		if (m->hist[i].route == r || strcmp(m->hist[i].route, r) == 0)
			break;
	if (i == m->n_hist && m->n_hist < MAX_ROUTES)
		m->hist[m->n_hist++].route = r;
	if (i < m->n_hist)
		h = &m->hist[i];
	if (!h)
		return;
	h->count++;
	h->sum_s += s;
	for (i = 0; i < BL_METRICS_BUCKETS; i++) {
		if (s <= bucket_bounds[i]) {
			h->buckets[i]++;
			break;
		}
	}
}

uint64_t bl_metrics_requests_total(const struct bl_metrics *m)
{
	return m->total;
}

static const char *route_label(const char *r)
{
	return *r ? r : "unrouted";
}

void bl_metrics_write_http(const struct bl_metrics *m, struct bl_text *t)
{
	bl_text_printf(t, "# HELP ballast_http_requests_total HTTP requests answered, by route "
			  "and status code.\n# TYPE ballast_http_requests_total counter\n");
	for (size_t i = 0; i < m->n_series; i++)
		bl_text_printf(t, "ballast_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
			       route_label(m->series[i].route), m->series[i].status,
			       (unsigned long long)m->series[i].count);
	bl_text_printf(t, "# HELP ballast_http_request_duration_seconds Time from a request's "
			  "first byte to its answer, by route.\n"
			  "# TYPE ballast_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i < m->n_hist; i++) {
		const struct route_hist *h = &m->hist[i];
		uint64_t cum = 0;

		for (size_t b = 0; b < BL_METRICS_BUCKETS; b++) {
			cum += h->buckets[b];
			bl_text_printf(t,
				       "ballast_http_request_duration_seconds_bucket{route=\"%s\","
				       "le=\"%g\"} %llu\n",
				       route_label(h->route), bucket_bounds[b], (unsigned long long)cum);
		}
		bl_text_printf(t,
			       "ballast_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
			       "%llu\n"
			       "ballast_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n"
			       "ballast_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
			       route_label(h->route), (unsigned long long)h->count,
			       route_label(h->route), h->sum_s, route_label(h->route),
			       (unsigned long long)h->count);
	}
}

void bl_process_stats_read(struct bl_process_stats *out)
{
	struct rusage ru;
	struct rlimit rl;
	FILE *f;
	DIR *d;
	long pages = 0, resident = 0;

	out->cpu_seconds = -1;
	out->rss_bytes = -1;
	out->open_fds = -1;
	out->max_fds = -1;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		out->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) == 2)
			out->rss_bytes = (int64_t)resident * sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	d = opendir("/proc/self/fd");
	if (d) {
		int64_t n = 0;
		struct dirent *e;

		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		out->open_fds = n - 1; /* not counting the directory's own fd */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		out->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur;
}

void bl_metrics_write_process(const struct bl_metrics *m, struct bl_text *t)
{
	struct bl_process_stats ps;

	bl_process_stats_read(&ps);
	if (ps.cpu_seconds >= 0)
		bl_text_printf(t, "# HELP process_cpu_seconds_total Total user and system CPU time "
				  "spent in seconds.\n# TYPE process_cpu_seconds_total counter\n"
				  "process_cpu_seconds_total %.6f\n",
			       ps.cpu_seconds);
	if (ps.rss_bytes >= 0)
		bl_text_printf(t, "# HELP process_resident_memory_bytes Resident memory size in "
				  "bytes.\n# TYPE process_resident_memory_bytes gauge\n"
				  "process_resident_memory_bytes %lld\n",
			       (long long)ps.rss_bytes);
	if (ps.open_fds >= 0)
		bl_text_printf(t, "# HELP process_open_fds Number of open file descriptors.\n"
				  "# TYPE process_open_fds gauge\nprocess_open_fds %lld\n",
			       (long long)ps.open_fds);
	if (ps.max_fds >= 0)
		bl_text_printf(t, "# HELP process_max_fds Maximum number of open file "
				  "descriptors.\n# TYPE process_max_fds gauge\nprocess_max_fds %lld\n",
			       (long long)ps.max_fds);
	bl_text_printf(t, "# HELP process_start_time_seconds Start time of the process since "
			  "unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
			  "process_start_time_seconds %.3f\n",
		       m->start_wall_s);
}
