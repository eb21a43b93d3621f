/* The simulator's reports and command line. See report.h. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ballast/error.h"
#include "ballast/units.h"
#include "charts.h"

#define EXIT_USAGE 2

static void put_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* A share, or null when not measured (negative). */
static void put_json_share(FILE *f, double v)
{
	if (v < 0)
		fputs("null", f);
	else
		fprintf(f, "%.4f", v);
}

void bl_sim_write_summary(FILE *f, const struct bl_scenario *sc, uint64_t seed,
			  int64_t duration_ns, const struct bl_sim_result *res, size_t n)
{
	fputs("{\n  \"scenario\": ", f);
	put_json_string(f, sc->name);
	fprintf(f, ",\n  \"seed\": %" PRIu64 ",\n  \"duration_s\": %.3f,\n  \"policies\": {",
		seed, (double)duration_ns / 1e9);
	for (size_t i = 0; i < n; i++) {
		const struct bl_sim_result *r = &res[i];
		double slo = r->tasks_total ? (double)r->tasks_in_slo / (double)r->tasks_total : 0;

		fprintf(f, "%s\n    \"%s\": {\n", i ? "," : "", bl_sim_policy_name(r->policy));
		fprintf(f, "      \"tasks_total\": %" PRIu64 ",\n", r->tasks_total);
		fprintf(f, "      \"tasks_done\": %" PRIu64 ",\n", r->tasks_done);
		fprintf(f, "      \"tasks_failed\": %" PRIu64 ",\n", r->tasks_failed);
		fprintf(f, "      \"tasks_dropped\": %" PRIu64 ",\n", r->tasks_dropped);
		fprintf(f, "      \"latency_ms\": {\"p50\": %.3f, \"p95\": %.3f, \"p99\": %.3f},\n",
			r->latency_p50_ms, r->latency_p95_ms, r->latency_p99_ms);
		fprintf(f, "      \"slo_attainment\": %.4f,\n", slo);
		fprintf(f, "      \"provider_429s\": %" PRIu64 ",\n", r->provider_429s);
		fprintf(f, "      \"provider_errors\": %" PRIu64 ",\n", r->provider_errors);
		fprintf(f, "      \"calls\": %" PRIu64 ",\n", r->calls);
		fputs("      \"quota_utilization\": {\"mean\": ", f);
		put_json_share(f, r->quota_mean);
		fputs(", \"min_window\": ", f);
		put_json_share(f, r->quota_min);
		fprintf(f, ", \"windows\": %" PRIu64 "},\n", r->quota_windows);
		fputs("      \"cpu_in_band\": ", f);
		put_json_share(f, r->cpu_in_band);
		fprintf(f, ",\n      \"memory_peak_fraction\": %.4f,\n", r->memory_peak_fraction);
		fprintf(f, "      \"replica_seconds\": %.1f,\n", r->replica_seconds);
		fprintf(f, "      \"peak_replicas\": %u,\n", r->peak_replicas);
		fprintf(f, "      \"scale_events\": %" PRIu64 ",\n", r->scale_events);
		fprintf(f, "      \"flaps\": %" PRIu64 ",\n", r->flaps);
		fprintf(f, "      \"oom_kills\": %" PRIu64 ",\n", r->oom_kills);
		if (r->n_tenants) {
			fputs("      \"tenants\": {", f);
			for (size_t k = 0; k < r->n_tenants; k++) {
				const struct bl_sim_tenant_result *t = &r->tenants[k];

				fprintf(f, "%s\n        ", k ? "," : "");
				put_json_string(f, sc->tenants[k].name);
				fprintf(f, ": {\"tasks_total\": %" PRIu64 ", \"tasks_done\": %" PRIu64
					   ", \"slo_attainment\": %.4f, \"latency_ms\": {\"p50\": %.3f, "
					   "\"p95\": %.3f, \"p99\": %.3f}}",
					t->tasks_total, t->tasks_done,
					t->tasks_total ? (double)t->tasks_in_slo / (double)t->tasks_total : 0,
					t->latency_p50_ms, t->latency_p95_ms, t->latency_p99_ms);
			}
			fputs("\n      },\n", f);
		}
		fprintf(f, "      \"events\": %" PRIu64 "\n    }", r->events);
	}
	fputs("\n  }\n}\n", f);
}

void bl_sim_write_timeseries(FILE *f, const struct bl_sim_result *res, size_t n)
{
	fputs("policy,time_s,replicas,ready,cpu,memory,work_queue,quota_waiting,calls_in_flight,"
	      "quota_use,provider_429s,done,failed,dropped,latency_p50_ms\n", f);
	for (size_t i = 0; i < n; i++) {
		const char *name = bl_sim_policy_name(res[i].policy);

		for (size_t k = 0; k < res[i].n_samples; k++) {
			const struct bl_sim_sample *x = &res[i].samples[k];

			fprintf(f, "%s,%.0f,%u,%u,%.4f,%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64
				   ",%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",",
				name, (double)x->at_ns / 1e9, x->replicas, x->ready, x->cpu, x->memory,
				x->work_queue, x->quota_waiting, x->calls_in_flight, x->quota_use,
				x->provider_429s, x->done, x->failed, x->dropped);
			if (x->latency_p50_ms >= 0)
				fprintf(f, "%.3f", x->latency_p50_ms);
			fputc('\n', f);
		}
	}
}

static void cell_share(FILE *f, double v, int width)
{
	if (v < 0)
		fprintf(f, " %*s", width, "-");
	else
		fprintf(f, " %*.1f%%", width - 1, v * 100);
}

void bl_sim_print_table(FILE *f, const struct bl_scenario *sc, uint64_t seed,
			int64_t duration_ns, const struct bl_sim_result *res, size_t n)
{
	char dur[32];

	bl_format_duration(duration_ns, dur, sizeof dur);
	fprintf(f, "scenario %s, seed %" PRIu64 ", %s of arrivals\n\n", sc->name, seed, dur);
	fprintf(f, "%-13s %8s %8s %7s %7s %9s %9s %9s %7s %7s %7s %7s %7s %7s %9s %6s %5s\n",
		"policy", "tasks", "done", "failed", "dropped", "p50 ms", "p95 ms", "p99 ms", "slo",
		"429s", "quota", "q.min", "cpu ok", "mem pk", "replica-h", "scales", "flaps");
	for (size_t i = 0; i < n; i++) {
		const struct bl_sim_result *r = &res[i];
		double slo = r->tasks_total ? (double)r->tasks_in_slo / (double)r->tasks_total : 0;

		fprintf(f, "%-13s %8" PRIu64 " %8" PRIu64 " %7" PRIu64 " %7" PRIu64 " %9.0f %9.0f %9.0f",
			bl_sim_policy_name(r->policy), r->tasks_total, r->tasks_done, r->tasks_failed,
			r->tasks_dropped, r->latency_p50_ms, r->latency_p95_ms, r->latency_p99_ms);
		cell_share(f, slo, 7);
		fprintf(f, " %7" PRIu64, r->provider_429s);
		cell_share(f, r->quota_mean, 7);
		cell_share(f, r->quota_min, 7);
		cell_share(f, r->cpu_in_band, 7);
		cell_share(f, r->memory_peak_fraction, 7);
		fprintf(f, " %9.1f %6" PRIu64 " %5" PRIu64 "\n", r->replica_seconds / 3600.0,
			r->scale_events, r->flaps);
	}
}

/* ---- the command ------------------------------------------------------------ */

static const char usage[] =
	"usage: ballast sim SCENARIO.yaml [--out DIR] [--seed N] [--duration D] [--policy NAME]...\n"
	"  --out DIR       write DIR/summary.json, DIR/timeseries.csv and charts (DIR/index.html)\n"
	"  --seed N        random seed (default: the scenario's `seed`, else 1)\n"
	"  --duration D    simulated time of arrivals, such as 2h (default: the scenario's)\n"
	"  --policy NAME   ballast, hpa, uncoordinated or static; repeat or separate with\n"
	"                  commas (default: all four, on the same arrivals)\n"
	"docs: docs/simulator.md\n";

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "ballast sim: %s%s\n\n%s", what, arg, usage);
	return EXIT_USAGE;
}

/* mkdir -p. */
static int make_dir(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return -1;
		buf[i] = i < len ? '/' : '\0';
	}
	return 0;
}

static int write_file(const char *dir, const char *name, const struct bl_scenario *sc,
		      uint64_t seed, int64_t duration_ns, const struct bl_sim_result *res, size_t n)
{
	char path[4096];
	FILE *f;
	int bad;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "ballast sim: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (strcmp(name, "summary.json") == 0)
		bl_sim_write_summary(f, sc, seed, duration_ns, res, n);
	else
		bl_sim_write_timeseries(f, res, n);
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		fprintf(stderr, "ballast sim: cannot write %s\n", path);
		return -1;
	}
	return 0;
}

int bl_sim_main(int argc, char **argv)
{
	const char *file = NULL, *out = NULL;
	bool chosen[BL_SIM_POLICY_COUNT] = {false}, any = false, has_seed = false;
	uint64_t seed = 1;
	int64_t duration = 0;
	struct bl_scenario *sc = NULL;
	struct bl_diags diags = {0};
	struct bl_sim_result res[BL_SIM_POLICY_COUNT];
	struct bl_sim_options o = {0};
	size_t n = 0;
	int rc = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		if (strcmp(a, "--out") == 0 || strcmp(a, "--seed") == 0 ||
		    strcmp(a, "--duration") == 0 || strcmp(a, "--policy") == 0) {
			const char *v;

			if (i + 1 >= argc)
				return usage_error("missing a value after ", a);
			v = argv[++i];
			if (strcmp(a, "--out") == 0) {
				out = v;
			} else if (strcmp(a, "--seed") == 0) {
				char *end;

				errno = 0;
				seed = strtoull(v, &end, 10);
				if (!*v || *end || errno || v[0] == '-')
					return usage_error("--seed takes a whole number >= 0, not ", v);
				has_seed = true;
			} else if (strcmp(a, "--duration") == 0) {
				if (bl_parse_duration(v, strlen(v), &duration) || duration < BL_NS_PER_S)
					return usage_error("--duration takes a duration of at least 1s "
							   "such as 30m or 24h, not ", v);
			} else {
				char name[32];
				const char *p = v;

				while (*p) {
					size_t l = strcspn(p, ",");
					enum bl_sim_policy pol;

					if (l == 0 || l >= sizeof name)
						return usage_error("--policy takes ballast, hpa, "
								   "uncoordinated or static, not ", v);
					memcpy(name, p, l);
					name[l] = '\0';
					if (bl_sim_policy_parse(name, &pol))
						return usage_error("--policy takes ballast, hpa, "
								   "uncoordinated or static, not ", name);
					chosen[pol] = any = true;
					p += l + (p[l] == ',');
				}
			}
			continue;
		}
		if (a[0] == '-' && a[1])
			return usage_error("unknown option ", a);
		if (file)
			return usage_error("one scenario at a time; unexpected ", a);
		file = a;
	}
	if (!file)
		return usage_error("missing SCENARIO.yaml", "");
	rc = bl_scenario_load_file(file, &sc, &diags);
	if (rc) {
		bl_diags_print(&diags, stderr);
		if (rc == BL_ENOMEM)
			fprintf(stderr, "ballast sim: out of memory\n");
		bl_diags_cleanup(&diags);
		return 1;
	}
	bl_diags_cleanup(&diags);
	o.seed = has_seed ? seed : sc->seed;
	o.duration_ns = duration ? duration : sc->duration_ns;
	o.progress = isatty(2);
	for (int p = 0; p < BL_SIM_POLICY_COUNT; p++) {
		char err[256] = "";

		if (any && !chosen[p])
			continue;
		rc = bl_sim_run(sc, (enum bl_sim_policy)p, &o, &res[n], err, sizeof err);
		if (rc) {
			fprintf(stderr, "ballast sim: %s: policy %s: %s\n", file,
				bl_sim_policy_name((enum bl_sim_policy)p), err[0] ? err : bl_strerror(rc));
			rc = 1;
			goto out;
		}
		n++;
	}
	bl_sim_print_table(stdout, sc, o.seed, o.duration_ns, res, n);
	if (out) {
		if (make_dir(out) != 0) {
			fprintf(stderr, "ballast sim: cannot create %s: %s\n", out, strerror(errno));
			rc = 1;
			goto out;
		}
		if (write_file(out, "summary.json", sc, o.seed, o.duration_ns, res, n) ||
		    write_file(out, "timeseries.csv", sc, o.seed, o.duration_ns, res, n) ||
		    bl_sim_write_charts(out, sc, o.seed, o.duration_ns, res, n)) {
			rc = 1;
			goto out;
		}
		printf("\nwrote %s/index.html (charts), summary.json and timeseries.csv\n", out);
	}
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		bl_sim_result_cleanup(&res[i]);
	bl_scenario_destroy(sc);
	return rc;
}
