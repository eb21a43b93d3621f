/* SVG charts and index.html for `ballast sim --out`. See charts.h. */
#include "charts.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ballast/units.h"

#define W 760.0      /* chart size, px */
#define H 300.0
#define ML 64.0      /* margins: left (y labels), right (legend), top, bottom */
#define MR 130.0
#define MT 34.0
#define MB 40.0

enum what { REPLICAS, CPU, QUOTA, WAITING, R429, LATENCY, N_CHARTS };

static const struct {
	const char *file;
	const char *title;
	const char *unit;
} charts[N_CHARTS] = {
	{"replicas.svg", "Replicas (workers asked for)", "workers"},
	{"cpu.svg", "Fleet CPU utilization against the band", "share of requests"},
	{"quota.svg", "Provider quota used over the last window", "share of the limit"},
	{"waiting.svg", "Tasks waiting (for a worker, or on quota)", "tasks"},
	{"429s.svg", "Provider 429s per sample period", "429s"},
	{"latency.svg", "Task latency, median of the tasks done in each period", "seconds"},
};

static const char *color_of(enum bl_sim_policy p)
{
	static const char *const colors[] = {"#1f5fbf", "#d62728", "#e68a00", "#6b6b6b"};

	return (unsigned)p < 4 ? colors[p] : "#000000";
}

/* The value a chart plots for one sample; NAN for none. */
static double value_of(enum what w, const struct bl_sim_sample *x)
{
	switch (w) {
	case REPLICAS: return x->replicas;
	case CPU: return x->cpu;
	case QUOTA: return x->quota_use;
	case WAITING: return (double)(x->work_queue + x->quota_waiting);
	case R429: return (double)x->provider_429s;
	case LATENCY: return x->latency_p50_ms < 0 ? NAN : x->latency_p50_ms / 1000.0;
	default: return NAN;
	}
}

/* A round step for about n ticks over [0, max]. */
static double nice_step(double max, int n)
{
	double raw = max / n, mag = pow(10, floor(log10(raw))), f = raw / mag;

	return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void html_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '"')
			fputs("&quot;", f);
		else
			fputc(*s, f);
	}
}

static void write_chart(FILE *f, enum what w, const struct bl_scenario *sc, double band_lo,
			double band_hi, const struct bl_sim_result *res, size_t n, double t_end)
{
	double ymax = 0, ystep, tstep, tscale;
	const char *tunit;
	double pw = W - ML - MR, ph = H - MT - MB;

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < res[i].n_samples; k++) {
			double v = value_of(w, &res[i].samples[k]);

			if (!isnan(v) && v > ymax)
				ymax = v;
		}
	if (w == CPU || w == QUOTA)
		ymax = fmax(ymax, 1.0);
	if (ymax <= 0)
		ymax = 1;
	ystep = nice_step(ymax, 5);
	ymax = ceil(ymax / ystep) * ystep;
	/* Time axis in minutes or hours. */
	tscale = t_end > 3 * 3600 ? 3600 : 60;
	tunit = tscale == 3600 ? "h" : "min";
	tstep = nice_step(t_end / tscale, 8);
#define X(t) (ML + (t) / t_end * pw)
#define Y(v) (MT + ph - (v) / ymax * ph)
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
		W, H, W, H);
	fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, H);
	fprintf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">", ML);
	html_escape(f, sc->name);
	fprintf(f, ": %s</text>\n", charts[w].title);
	if (w == CPU) /* the band every policy is judged by */
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
			   "fill=\"#2ca02c\" fill-opacity=\"0.12\"/>\n",
			ML, Y(band_hi), pw, Y(band_lo) - Y(band_hi));
	for (double v = 0; v <= ymax + ystep / 2; v += ystep) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n",
			ML, Y(v), ML + pw, Y(v));
		if (w == CPU || w == QUOTA)
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n",
				ML - 6, Y(v) + 4, v * 100);
		else
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ML - 6,
				Y(v) + 4, v);
	}
	for (double t = 0; t <= t_end / tscale + 1e-9; t += tstep)
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g%s</text>\n",
			X(t * tscale), MT + ph + 16, t, t == 0 ? "" : tunit);
	if (w == QUOTA) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" "
			   "stroke-dasharray=\"6 4\"/>\n", ML, Y(1.0), ML + pw, Y(1.0));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">limit</text>\n", ML + 4, Y(1.0) - 4);
	}
	fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", ML,
		MT + ph, ML + pw, MT + ph);
	fprintf(f, "<text x=\"12\" y=\"%.1f\" transform=\"rotate(-90 12 %.1f)\" "
		   "text-anchor=\"middle\">%s</text>\n", MT + ph / 2, MT + ph / 2, charts[w].unit);
	/* Last policy first, so that ballast's line is drawn on top. */
	for (size_t i = n; i-- > 0;) {
		const struct bl_sim_result *r = &res[i];
		bool open = false;

		for (size_t k = 0; k < r->n_samples; k++) {
			double v = value_of(w, &r->samples[k]);
			double t = (double)r->samples[k].at_ns / 1e9;

			if (t > t_end)
				break;
			if (isnan(v)) {
				if (open)
					fputs("\"/>\n", f);
				open = false;
				continue;
			}
			if (!open)
				fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
					   "points=\"", color_of(r->policy));
			fprintf(f, "%s%.1f,%.1f", open ? " " : "", X(t), Y(v));
			open = true;
		}
		if (open)
			fputs("\"/>\n", f);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			   "stroke-width=\"3\"/>\n", ML + pw + 12, MT + 10 + 18.0 * i, ML + pw + 30,
			MT + 10 + 18.0 * i, color_of(r->policy));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", ML + pw + 36,
			MT + 14 + 18.0 * i, bl_sim_policy_name(r->policy));
	}
#undef X
#undef Y
	fputs("</svg>\n", f);
}

static void html_share(FILE *f, double v)
{
	if (v < 0)
		fputs("<td>-</td>", f);
	else
		fprintf(f, "<td>%.1f%%</td>", v * 100);
}

static void write_index(FILE *f, const struct bl_scenario *sc, uint64_t seed, int64_t duration_ns,
			const struct bl_sim_result *res, size_t n)
{
	char dur[32];

	bl_format_duration(duration_ns, dur, sizeof dur);
	fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ballast sim: ", f);
	html_escape(f, sc->name);
	fputs("</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
	      "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
	      "text-align:right}th:first-child,td:first-child{text-align:left}"
	      "img{display:block;margin:16px 0}</style></head><body>\n<h1>", f);
	html_escape(f, sc->name);
	fprintf(f, "</h1>\n<p>seed %" PRIu64 ", %s of arrivals, the same arrivals for every "
		   "policy. Files: <a href=\"summary.json\">summary.json</a>, "
		   "<a href=\"timeseries.csv\">timeseries.csv</a>. What each number means: "
		   "docs/simulator.md.</p>\n", seed, dur);
	fputs("<table><tr><th>policy</th><th>tasks</th><th>done</th><th>failed</th>"
	      "<th>dropped</th><th>p50 s</th><th>p95 s</th><th>p99 s</th><th>SLO</th>"
	      "<th>429s</th><th>quota mean</th><th>quota min</th><th>CPU in band</th>"
	      "<th>memory peak</th><th>replica-hours</th><th>scale events</th><th>flaps</th>"
	      "</tr>\n", f);
	for (size_t i = 0; i < n; i++) {
		const struct bl_sim_result *r = &res[i];

		fprintf(f, "<tr><td style=\"color:%s\"><b>%s</b></td><td>%" PRIu64 "</td><td>%" PRIu64
			   "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%.1f</td><td>%.1f</td>"
			   "<td>%.1f</td>",
			color_of(r->policy), bl_sim_policy_name(r->policy), r->tasks_total,
			r->tasks_done, r->tasks_failed, r->tasks_dropped, r->latency_p50_ms / 1000,
			r->latency_p95_ms / 1000, r->latency_p99_ms / 1000);
		html_share(f, r->tasks_total ? (double)r->tasks_in_slo / (double)r->tasks_total : 0);
		fprintf(f, "<td>%" PRIu64 "</td>", r->provider_429s);
		html_share(f, r->quota_mean);
		html_share(f, r->quota_min);
		html_share(f, r->cpu_in_band);
		html_share(f, r->memory_peak_fraction);
		fprintf(f, "<td>%.1f</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td></tr>\n",
			r->replica_seconds / 3600, r->scale_events, r->flaps);
	}
	fputs("</table>\n", f);
	for (int w = 0; w < N_CHARTS; w++)
		fprintf(f, "<img src=\"%s\" alt=\"%s\">\n", charts[w].file, charts[w].title);
	fputs("</body></html>\n", f);
}

int bl_sim_write_charts(const char *dir, const struct bl_scenario *sc, uint64_t seed,
			int64_t duration_ns, const struct bl_sim_result *res, size_t n)
{
	const struct bl_cfg_autoscaler *a = &sc->policy->autoscaler;
	double t_end = (double)duration_ns / 1e9;

	for (int w = 0; w <= N_CHARTS; w++) {
		char path[4096];
		FILE *f;
		int bad;

		snprintf(path, sizeof path, "%s/%s", dir, w < N_CHARTS ? charts[w].file : "index.html");
		f = fopen(path, "w");
		if (!f) {
			fprintf(stderr, "ballast sim: cannot write %s: %s\n", path, strerror(errno));
			return -1;
		}
		if (w < N_CHARTS)
			write_chart(f, (enum what)w, sc, a->cpu.low, a->cpu.high, res, n, t_end);
		else
			write_index(f, sc, seed, duration_ns, res, n);
		bad = ferror(f);
		if (fclose(f) != 0 || bad) {
			fprintf(stderr, "ballast sim: cannot write %s\n", path);
			return -1;
		}
	}
	return 0;
}
