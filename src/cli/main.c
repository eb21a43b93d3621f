/* The `ballast` command. Exit codes: 0 ok, 1 failure, 2 usage error. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/units.h"
#include "config.h"
#include "daemon.h"
#include "plan.h"
#include "report.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"usage: ballast <command> [options]\n"
	"\n"
	"commands:\n"
	"  serve [-c FILE] [--listen ADDR:PORT]   run the daemon (embedded default config without -c)\n"
	"  check FILE                             validate a config; prints file:line:column: problems\n"
	"  status [--url URL] [--json]            summarise a running daemon's /v1/state\n"
	"  acquire [BUDGET] [--pool POOL [--key K]] [--tokens N] [--input-tokens N]\n"
	"          [--output-tokens N] [--requests N] [--wait 2s] [--ttl 2m] [--tenant T]\n"
	"          [--priority P] [-q]\n"
	"                                         take a lease (prints it, with the backend when\n"
	"                                         a pool is named; -q: only its id)\n"
	"  release LEASE [--outcome ok|error|timeout|rate_limited|cancelled]\n"
	"          [--tokens-used N] [--input-tokens-used N] [--output-tokens-used N]\n"
	"                                         give a lease back, reconciling what it used\n"
	"  reserve SIZE [--priority low|normal|critical] [--tenant T] [--wait 2s] [--ttl 10m] [-q]\n"
	"                                         reserve memory (SIZE such as 2GiB); release it\n"
	"                                         with `release LEASE`\n"
	"  resize LEASE SIZE                      grow or shrink a memory reservation in place\n"
	"  budgets [--json]                       rate budgets of a running daemon\n"
	"  pools [--json]                         backend pools: breaker state, in flight, latency\n"
	"  plan FILE|- [--json]                   what-if autoscaling plan, computed locally (no\n"
	"                                         daemon): the answer of POST /v1/autoscale/plan\n"
	"  sim SCENARIO.yaml [--out DIR] [--seed N] [--duration D] [--policy NAME]  simulate a fleet\n"
	"  version                                print the version\n"
	"  help                                   print this help\n"
	"\n"
	"client commands take --url URL (default $BALLAST_URL or http://127.0.0.1:7070)\n"
	"and --token-file FILE (default $BALLAST_TOKEN) for daemons with auth\n"
	"\n"
	"exit codes: 0 ok, 1 failure, 2 usage error\n"
	"docs: README.md, docs/configuration.md, docs/api.md\n";

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "ballast: %s%s\n\n%s", what, arg, usage_text);
	return EXIT_USAGE;
}

static int cmd_serve(int argc, char **argv)
{
	struct bl_daemon_options opts = {0};

	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
			opts.config_path = argv[++i];
		else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			opts.listen_override = argv[++i];
		else if (strncmp(argv[i], "--listen=", 9) == 0)
			opts.listen_override = argv[i] + 9;
		else
			return usage_error("serve: unexpected argument ", argv[i]);
	}
	if (opts.listen_override) {
		/* Check it now, by the config's own rules, to answer with the usage. */
		struct bl_config *cfg = NULL;
		struct bl_diags diags = {0};
		int bad = bl_config_load_default(&cfg, NULL) != 0 ||
			  bl_config_set_listen(cfg, opts.listen_override, &diags) != 0;
		char msg[300];

		snprintf(msg, sizeof msg, "%s", diags.n ? diags.items[0].message : "");
		bl_diags_cleanup(&diags);
		bl_config_destroy(cfg);
		if (bad)
			return usage_error("serve: --listen: ", msg);
	}
	return bl_daemon_run(&opts);
}

static int cmd_check(int argc, char **argv)
{
	struct bl_diags diags = {0};
	struct bl_config *cfg = NULL;
	int rc;

	if (argc != 1)
		return usage_error("check: ", argc ? "expects exactly one FILE" : "missing FILE");
	rc = bl_config_load_file(argv[0], &cfg, &diags);
	if (rc != 0) {
		bl_diags_print(&diags, stderr);
		fprintf(stderr, "%s: %zu problem%s\n", argv[0], diags.n, diags.n == 1 ? "" : "s");
		bl_diags_cleanup(&diags);
		return 1;
	}
	{
		/* What serve and reload check beyond the file: that the budgets,
		 * pools and autoscaler can be built (and memory: auto resolved). */
		char why[512];

		if (bl_budgets_check(cfg, why, sizeof why) != 0 ||
		    bl_pools_check(cfg, why, sizeof why) != 0 ||
		    bl_autoscaler_check(cfg, why, sizeof why) != 0) {
			fprintf(stderr, "%s: %s\n%s: 1 problem\n", argv[0], why, argv[0]);
			bl_config_destroy(cfg);
			bl_diags_cleanup(&diags);
			return 1;
		}
	}
	printf("%s: ok (%zu budget%s, %zu pool%s%s%s)\n", argv[0], cfg->n_budgets,
	       cfg->n_budgets == 1 ? "" : "s", cfg->n_pools, cfg->n_pools == 1 ? "" : "s",
	       cfg->memory.configured ? ", memory" : "",
	       cfg->autoscaler.configured ? ", autoscaler" : "");
	bl_config_destroy(cfg);
	bl_diags_cleanup(&diags);
	return 0;
}

struct fetch {
	char *p;
	size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct fetch *f = ud;
	size_t n = size * nmemb;
	char *q;

	if (f->len + n > (size_t)64 << 20)
		return 0;
	q = realloc(f->p, f->len + n + 1);
	if (!q)
		return 0;
	memcpy(q + f->len, ptr, n);
	f->p = q;
	f->len += n;
	f->p[f->len] = '\0';
	return n;
}

static const char *jstr(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(json_object_get(o, path1), path2);
	return json_is_string(v) ? json_string_value(v) : "-";
}

static long long jint(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(json_object_get(o, path1), path2);
	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static void print_section(json_t *doc, const char *name)
{
	json_t *sec = json_object_get(doc, name), *v;
	const char *key;

	if (!sec || json_is_null(sec)) {
		printf("%-11s none\n", name);
		return;
	}
	if (json_object_get(sec, "status") && json_is_string(json_object_get(sec, "status"))) {
		printf("%-11s %s\n", name, json_string_value(json_object_get(sec, "status")));
		return;
	}
	if (json_object_size(sec) == 0) {
		printf("%-11s none\n", name);
		return;
	}
	printf("%s:\n", name);
	json_object_foreach(sec, key, v) {
		json_t *st = json_object_get(v, "status");
		printf("  %-20s %s\n", key, json_is_string(st) ? json_string_value(st) : "");
	}
}

/* One line per pool and one per backend: state, in flight, latency, errors. */
static void print_pools(json_t *pools)
{
	const char *name;
	json_t *p, *be;
	size_t i;

	if (!json_is_object(pools) || json_object_size(pools) == 0) {
		printf("pools       none\n");
		return;
	}
	printf("pools:\n");
	json_object_foreach(pools, name, p) {
		printf("  %-20s %s  %lld picks  %lld no_backend%s%s\n", name,
		       json_string_value(json_object_get(p, "strategy")),
		       (long long)json_integer_value(json_object_get(p, "picks")),
		       (long long)json_integer_value(json_object_get(p, "no_backend")),
		       json_is_true(json_object_get(p, "panic")) ? "  PANIC (routing to all)" : "",
		       json_is_true(json_object_get(p, "retired")) ? "  (removed)" : "");
		json_array_foreach(json_object_get(p, "backends"), i, be) {
			json_t *lat = json_object_get(be, "latency_ewma_ms");
			json_t *retry = json_object_get(be, "retry_after_ms");

			printf("    %-18s %-11s in flight %-4lld latency %s%.0f ms  errors %.0f %%  trips "
			       "%lld",
			       json_string_value(json_object_get(be, "name")),
			       json_string_value(json_object_get(be, "state")),
			       (long long)json_integer_value(json_object_get(be, "in_flight")),
			       json_is_number(lat) ? "" : "~", json_is_number(lat) ? json_number_value(lat) : 0,
			       json_number_value(json_object_get(be, "error_rate")) * 100,
			       (long long)json_integer_value(json_object_get(be, "trips")));
			if (json_is_integer(retry))
				printf("  retry in %lld ms", (long long)json_integer_value(retry));
			printf("\n");
		}
	}
}

/* The memory budget: capacity, reserved against the watermarks, waiters. */
static void print_memory(json_t *m)
{
	const double gib = 1073741824.0;
	json_t *w = json_object_get(m, "waiters");
	long long waiting = 0;
	const char *k;
	json_t *v;

	if (!json_is_true(json_object_get(m, "configured"))) {
		printf("memory      none\n");
		return;
	}
	json_object_foreach(w, k, v)
		waiting += json_integer_value(v);
	printf("memory      %.2f of %.2f GiB usable reserved (%.0f %%, %s)  watermarks %.2f/%.2f GiB  "
	       "capacity %.2f GiB (%s)  waiting %lld%s\n",
	       (double)json_integer_value(json_object_get(m, "reserved_bytes")) / gib,
	       (double)json_integer_value(json_object_get(m, "usable_bytes")) / gib,
	       json_number_value(json_object_get(m, "utilization")) * 100.0,
	       json_string_value(json_object_get(m, "pressure")),
	       (double)json_integer_value(json_object_get(json_object_get(m, "watermarks"),
							  "low_bytes")) / gib,
	       (double)json_integer_value(json_object_get(json_object_get(m, "watermarks"),
							  "high_bytes")) / gib,
	       (double)json_integer_value(json_object_get(m, "capacity_bytes")) / gib,
	       json_string_value(json_object_get(m, "capacity_source")), waiting,
	       json_is_true(json_object_get(m, "retired")) ? "  (removed from the config)" : "");
}

/* One line per budget and one per limited dimension. */
static void print_budgets(json_t *budgets)
{
	const char *name, *dname;
	json_t *b, *dim;

	if (!json_is_object(budgets) || json_object_size(budgets) == 0) {
		printf("budgets     none\n");
		return;
	}
	printf("budgets:\n");
	json_object_foreach(budgets, name, b) {
		json_t *counts = json_object_get(b, "counts");
		long long conc = json_integer_value(json_object_get(b, "concurrent"));
		char cbuf[32] = "";

		if (conc)
			snprintf(cbuf, sizeof cbuf, "/%lld", conc);
		printf("  %-16s in flight %lld%s  queued %lld  factor %.2f  grants %lld  denials "
		       "%lld  429s %lld  expired %lld%s%s\n",
		       name, (long long)json_integer_value(json_object_get(b, "in_flight")),
		       cbuf,
		       (long long)json_integer_value(json_object_get(b, "queue_depth")),
		       json_number_value(json_object_get(b, "rate_factor")),
		       (long long)json_integer_value(json_object_get(counts, "grants")),
		       (long long)json_integer_value(json_object_get(counts, "denials")),
		       (long long)json_integer_value(json_object_get(counts, "provider_429s")),
		       (long long)json_integer_value(json_object_get(counts, "expired_leases")),
		       json_is_integer(json_object_get(b, "paused_until_ms")) ? "  PAUSED" : "",
		       json_is_true(json_object_get(b, "retired")) ? "  (retired)" : "");
		json_object_foreach(json_object_get(b, "limits"), dname, dim) {
			printf("    %-14s %5.1f%% of %lld per %s  available %lld  debt %lld\n", dname,
			       100.0 * json_number_value(json_object_get(dim, "utilization")),
			       (long long)json_integer_value(json_object_get(dim, "limit")),
			       json_string_value(json_object_get(dim, "per")),
			       (long long)json_integer_value(json_object_get(dim, "available")),
			       (long long)json_integer_value(json_object_get(dim, "debt")));
		}
	}
}

/* Options every client command shares. */
struct client {
	const char *cmd;   /* "status", for messages */
	const char *url;   /* base URL of the daemon */
	char token[4100];  /* bearer token, "" when none */
};

static void client_init(struct client *cl, const char *cmd)
{
	const char *tok = getenv("BALLAST_TOKEN");

	cl->cmd = cmd;
	cl->url = getenv("BALLAST_URL") ? getenv("BALLAST_URL") : "http://127.0.0.1:7070";
	snprintf(cl->token, sizeof cl->token, "%s", tok ? tok : "");
}

/* Takes --url URL and --token-file FILE at argv[*i]; returns 1 if it took one,
 * 0 if argv[*i] is something else, -1 (after printing why) on an error. */
static int client_option(struct client *cl, int argc, char **argv, int *i)
{
	if (strcmp(argv[*i], "--url") == 0 && *i + 1 < argc) {
		cl->url = argv[++*i];
		return 1;
	}
	if (strcmp(argv[*i], "--token-file") == 0 && *i + 1 < argc) {
		FILE *f = fopen(argv[++*i], "r");
		size_t n;

		if (!f) {
			fprintf(stderr, "ballast %s: cannot read --token-file %s\n", cl->cmd, argv[*i]);
			return -1;
		}
		n = fread(cl->token, 1, sizeof cl->token - 1, f);
		fclose(f);
		while (n > 0 && (cl->token[n - 1] == '\n' || cl->token[n - 1] == '\r' ||
				 cl->token[n - 1] == ' '))
			n--;
		cl->token[n] = '\0';
		return 1;
	}
	return 0;
}

/* One HTTP call to the daemon. Returns 0 with the status and the body (a
 * malloc'd NUL-terminated string), or 1 after printing why it failed. */
static int client_call(const struct client *cl, const char *method, const char *path,
		       const char *body, long *status, struct fetch *f)
{
	char full[1024], errbuf[CURL_ERROR_SIZE] = "", auth[4200];
	struct curl_slist *hdrs = NULL;
	size_t n = strlen(cl->url);
	CURL *c;
	CURLcode cc;

	while (n > 0 && cl->url[n - 1] == '/')
		n--;
	snprintf(full, sizeof full, "%.*s%s", (int)n, cl->url, path);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c = curl_easy_init();
	if (!c) {
		fprintf(stderr, "ballast %s: cannot initialise libcurl\n", cl->cmd);
		return 1;
	}
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 70000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (cl->token[0]) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", cl->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	curl_global_cleanup();
	if (cc != CURLE_OK) {
		fprintf(stderr, "ballast %s: cannot reach %s: %s\n", cl->cmd, full,
			errbuf[0] ? errbuf : curl_easy_strerror(cc));
		free(f->p);
		f->p = NULL;
		return 1;
	}
	if (!f->p) {
		f->p = calloc(1, 1);
		if (!f->p)
			return 1;
	}
	return 0;
}

/* Prints an error answer's message (or the raw body) and returns 1. */
static int client_failed(const struct client *cl, long status, struct fetch *f)
{
	json_t *doc = json_loads(f->p, 0, NULL);
	json_t *msg = json_object_get(json_object_get(doc, "error"), "message");

	fprintf(stderr, "ballast %s: HTTP %ld: %s\n", cl->cmd, status,
		json_is_string(msg) ? json_string_value(msg) : f->p);
	json_decref(doc);
	free(f->p);
	return 1;
}

/* POSTs body (the reference is stolen) to path. Returns 0 with the 200
 * answer in *f, or 1 after printing what went wrong. */
static int client_post(const struct client *cl, const char *path, json_t *body, struct fetch *f)
{
	char *text = json_dumps(body, JSON_COMPACT);
	long code = 0;
	int rc;

	json_decref(body);
	if (!text) {
		fprintf(stderr, "ballast %s: out of memory\n", cl->cmd);
		return 1;
	}
	rc = client_call(cl, "POST", path, text, &code, f);
	free(text);
	if (rc)
		return 1;
	if (code != 200)
		return client_failed(cl, code, f);
	return 0;
}

static int cmd_status(int argc, char **argv)
{
	struct client cl;
	bool as_json = false;
	struct fetch f = {0};
	long code = 0;
	json_t *doc;
	json_error_t jerr;
	const char *full = "/v1/state";

	client_init(&cl, "status");
	for (int i = 0; i < argc; i++) {
		int r = client_option(&cl, argc, argv, &i);

		if (r < 0)
			return 1;
		if (r)
			continue;
		if (strcmp(argv[i], "--json") == 0)
			as_json = true;
		else
			return usage_error("status: unexpected argument ", argv[i]);
	}
	if (client_call(&cl, "GET", full, NULL, &code, &f))
		return 1;
	if (code != 200)
		return client_failed(&cl, code, &f);
	if (as_json) {
		fwrite(f.p, 1, f.len, stdout);
		free(f.p);
		return 0;
	}
	doc = json_loadb(f.p ? f.p : "", f.len, 0, &jerr);
	free(f.p);
	if (!doc) {
		fprintf(stderr, "ballast status: %s%s did not answer JSON: %s\n", cl.url, full,
			jerr.text);
		return 1;
	}
	json_t *b = json_object_get(doc, "ballast");
	printf("ballast %s at %s  pid %lld  up %.0fs  %s\n", jstr(doc, "ballast", "version"),
	       jstr(doc, "ballast", "listen"), jint(doc, "ballast", "pid"),
	       json_number_value(json_object_get(b, "uptime_s")),
	       json_is_true(json_object_get(b, "draining")) ? "DRAINING"
	       : json_is_true(json_object_get(b, "ready")) ? "ready"
							   : "NOT READY");
	printf("config      %s  reloads %lld  refused %lld\n", jstr(doc, "config", "source"),
	       jint(doc, "config", "reloads"), jint(doc, "config", "reload_failures"));
	if (json_is_string(json_object_get(json_object_get(doc, "config"), "last_reload_error")))
		printf("            last reload refused: %s\n",
		       jstr(doc, "config", "last_reload_error"));
	printf("snapshot    %s  writes %lld  failures %lld\n", jstr(doc, "snapshot", "path"),
	       jint(doc, "snapshot", "writes"), jint(doc, "snapshot", "failures"));
	if (json_is_string(json_object_get(json_object_get(doc, "snapshot"), "last_error")))
		printf("            last error: %s\n", jstr(doc, "snapshot", "last_error"));
	printf("http        %lld open  %lld accepted  %lld refused  %lld requests\n",
	       jint(doc, "http", "connections_open"), jint(doc, "http", "connections_accepted"),
	       jint(doc, "http", "connections_refused"), jint(doc, "http", "requests_total"));
	printf("process     rss %.1f MiB  fds %lld  cpu %.2fs\n",
	       (double)jint(doc, "process", "rss_bytes") / 1048576.0,
	       jint(doc, "process", "open_fds"),
	       json_number_value(json_object_get(json_object_get(doc, "process"), "cpu_seconds")));
	print_budgets(json_object_get(doc, "budgets"));
	print_pools(json_object_get(doc, "pools"));
	print_memory(json_object_get(doc, "memory"));
	print_section(doc, "autoscaler");
	json_decref(doc);
	return 0;
}

/* Parses a non-negative integer option value; returns false if it is not one. */
static bool parse_count(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return *s && !*end && !errno && *out >= 0;
}

/* Takes "--name N" at argv[*i] when --name is in counts (pairs of option and
 * JSON field, NULL-terminated) and sets the field in body. Returns 1 if it
 * took it, 0 if argv[*i] is another option, -1 after printing the usage. */
static int take_count(int argc, char **argv, int *i, const char *const *counts, json_t *body)
{
	for (int k = 0; counts[k]; k += 2) {
		long long v;

		if (strcmp(argv[*i], counts[k]) != 0)
			continue;
		if (*i + 1 >= argc || !parse_count(argv[*i + 1], &v)) {
			usage_error("expects a non-negative count after ", counts[k]);
			return -1;
		}
		json_object_set_new(body, counts[k + 1], json_integer(v));
		++*i;
		return 1;
	}
	return 0;
}

/* Prints the answer, or with quiet only its lease id. */
static void print_answer(const struct fetch *f, bool quiet)
{
	json_t *doc = json_loads(f->p, 0, NULL);

	if (quiet && json_is_string(json_object_get(doc, "lease")))
		printf("%s\n", json_string_value(json_object_get(doc, "lease")));
	else
		printf("%s", f->p);
	json_decref(doc);
}

/* The options acquire and reserve share: --wait D and --ttl D (durations,
 * sent as wait_ms / ttl_ms), the string options named in `strings` (sent
 * under their name without the dashes), and -q. Returns 1 when argv[*i] was
 * one of them (its value consumed), 0 when not, or EXIT_USAGE after saying
 * what is wrong. */
static int take_option(const char *cmd, int argc, char **argv, int *i,
		       const char *const *strings, json_t *body, bool *quiet)
{
	const char *opt = argv[*i];
	int64_t ns;

	if (strcmp(opt, "-q") == 0 || strcmp(opt, "--quiet") == 0) {
		*quiet = true;
		return 1;
	}
	if (*i + 1 >= argc)
		return 0;
	if (strcmp(opt, "--wait") == 0 || strcmp(opt, "--ttl") == 0) {
		if (bl_parse_duration(argv[*i + 1], strlen(argv[*i + 1]), &ns) != 0) {
			fprintf(stderr, "ballast: %s: %s takes a duration such as 2s, 500ms or 10m, "
					"not '%s'\n", cmd, opt, argv[*i + 1]);
			return EXIT_USAGE;
		}
		json_object_set_new(body, opt[2] == 'w' ? "wait_ms" : "ttl_ms",
				    json_integer(ns / 1000000));
		(*i)++;
		return 1;
	}
	for (; *strings; strings++)
		if (strcmp(opt, *strings) == 0) {
			json_object_set_new(body, opt + 2, json_string(argv[*i + 1]));
			(*i)++;
			return 1;
		}
	return 0;
}

static int cmd_acquire(int argc, char **argv)
{
	static const char *const counts[] = {"--tokens", "tokens", "--input-tokens", "input_tokens",
					     "--output-tokens", "output_tokens", "--requests",
					     "requests", NULL};
	static const char *const strings[] = {"--tenant", "--priority", "--pool", "--key", NULL};
	struct client cl;
	struct fetch f = {0};
	json_t *body = json_object();
	const char *budget = NULL;
	bool quiet = false;

	client_init(&cl, "acquire");
	for (int i = 0; i < argc; i++) {
		int r = client_option(&cl, argc, argv, &i);
		int took;

		if (r < 0)
			goto fail;
		if (r)
			continue;
		took = take_count(argc, argv, &i, counts, body);
		if (took < 0) {
			json_decref(body);
			return EXIT_USAGE;
		}
		if (took)
			continue;
		took = take_option("acquire", argc, argv, &i, strings, body, &quiet);
		if (took == EXIT_USAGE) {
			json_decref(body);
			return EXIT_USAGE;
		}
		if (took)
			continue;
		if (argv[i][0] != '-' && !budget) {
			budget = argv[i];
		} else {
			json_decref(body);
			return usage_error("acquire: unexpected argument ", argv[i]);
		}
	}
	if (!budget && !json_object_get(body, "pool")) {
		json_decref(body);
		return usage_error("acquire: ", "missing BUDGET (or --pool POOL)");
	}
	if (budget)
		json_object_set_new(body, "budget", json_string(budget));
	if (client_post(&cl, "/v1/acquire", body, &f))
		return 1;
	print_answer(&f, quiet);
	free(f.p);
	return 0;
fail:
	json_decref(body);
	return 1;
}

/* Checks a SIZE argument here, so a typo is a usage error that says what a
 * size looks like; the daemon gets it as "size". */
static bool size_ok(const char *cmd, const char *arg)
{
	uint64_t bytes;

	if (bl_parse_size(arg, strlen(arg), &bytes) == 0 && bytes > 0)
		return true;
	fprintf(stderr, "ballast: %s: '%s' is not a size of at least 1 byte, such as 512MiB, 2GiB "
			"or 1048576\n", cmd, arg);
	return false;
}

static int cmd_reserve(int argc, char **argv)
{
	static const char *const strings[] = {"--tenant", "--priority", NULL};
	struct client cl;
	struct fetch f = {0};
	json_t *body = json_object();
	const char *size = NULL;
	bool quiet = false;

	client_init(&cl, "reserve");
	for (int i = 0; i < argc; i++) {
		int r = client_option(&cl, argc, argv, &i);

		if (r < 0)
			goto fail;
		if (r)
			continue;
		r = take_option("reserve", argc, argv, &i, strings, body, &quiet);
		if (r == EXIT_USAGE) {
			json_decref(body);
			return EXIT_USAGE;
		}
		if (r)
			continue;
		if (argv[i][0] != '-' && !size) {
			size = argv[i];
		} else {
			json_decref(body);
			return usage_error("reserve: unexpected argument ", argv[i]);
		}
	}
	if (!size) {
		json_decref(body);
		return usage_error("reserve: ", "missing SIZE (such as 2GiB)");
	}
	if (!size_ok("reserve", size)) {
		json_decref(body);
		return EXIT_USAGE;
	}
	json_object_set_new(body, "size", json_string(size));
	if (client_post(&cl, "/v1/memory/reserve", body, &f))
		return 1;
	print_answer(&f, quiet);
	free(f.p);
	return 0;
fail:
	json_decref(body);
	return 1;
}

static int cmd_resize(int argc, char **argv)
{
	struct client cl;
	struct fetch f = {0};
	const char *lease = NULL, *size = NULL;
	char path[128];

	client_init(&cl, "resize");
	for (int i = 0; i < argc; i++) {
		int r = client_option(&cl, argc, argv, &i);

		if (r < 0)
			return 1;
		if (r)
			continue;
		if (argv[i][0] != '-' && !lease)
			lease = argv[i];
		else if (argv[i][0] != '-' && !size)
			size = argv[i];
		else
			return usage_error("resize: unexpected argument ", argv[i]);
	}
	if (!lease || !size)
		return usage_error("resize: ", "expects LEASE SIZE");
	if (!size_ok("resize", size))
		return EXIT_USAGE;
	if (strlen(lease) > 64 || strspn(lease, "0123456789abcdef") != strlen(lease)) {
		fprintf(stderr, "ballast: resize: '%.80s' is not a lease id (16 hex digits)\n", lease);
		return EXIT_USAGE;
	}
	snprintf(path, sizeof path, "/v1/leases/%s/resize", lease);
	if (client_post(&cl, path, json_pack("{s:s}", "size", size), &f))
		return 1;
	printf("%s", f.p);
	free(f.p);
	return 0;
}

static int cmd_release(int argc, char **argv)
{
	static const char *const counts[] = {"--tokens-used", "tokens_used", "--input-tokens-used",
					     "input_tokens_used", "--output-tokens-used",
					     "output_tokens_used", "--latency-ms", "latency_ms", NULL};
	struct client cl;
	struct fetch f = {0};
	json_t *body = json_object();
	const char *lease = NULL;

	client_init(&cl, "release");
	for (int i = 0; i < argc; i++) {
		int r = client_option(&cl, argc, argv, &i);
		int took;

		if (r < 0) {
			json_decref(body);
			return 1;
		}
		if (r)
			continue;
		took = take_count(argc, argv, &i, counts, body);
		if (took < 0) {
			json_decref(body);
			return EXIT_USAGE;
		}
		if (took)
			continue;
		if (strcmp(argv[i], "--outcome") == 0 && i + 1 < argc) {
			json_object_set_new(body, "outcome", json_string(argv[++i]));
		} else if (argv[i][0] != '-' && !lease) {
			lease = argv[i];
		} else {
			json_decref(body);
			return usage_error("release: unexpected argument ", argv[i]);
		}
	}
	if (!lease) {
		json_decref(body);
		return usage_error("release: ", "missing LEASE");
	}
	json_object_set_new(body, "lease", json_string(lease));
	if (client_post(&cl, "/v1/release", body, &f))
		return 1;
	printf("%s", f.p);
	free(f.p);
	return 0;
}

/* A read-only view of a running daemon: GET path, printed by print, or as
 * the daemon's JSON with --json. */
static int show_view(int argc, char **argv, const char *cmd, const char *path,
		     void (*print)(json_t *doc))
{
	struct client cl;
	struct fetch f = {0};
	bool as_json = false;
	long code = 0;
	json_t *doc;

	client_init(&cl, cmd);
	for (int i = 0; i < argc; i++) {
		int r = client_option(&cl, argc, argv, &i);

		if (r < 0)
			return 1;
		if (r)
			continue;
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
		} else {
			char what[64];

			snprintf(what, sizeof what, "%s: unexpected argument ", cmd);
			return usage_error(what, argv[i]);
		}
	}
	if (client_call(&cl, "GET", path, NULL, &code, &f))
		return 1;
	if (code != 200)
		return client_failed(&cl, code, &f);
	if (as_json) {
		printf("%s", f.p);
		free(f.p);
		return 0;
	}
	doc = json_loads(f.p, 0, NULL);
	free(f.p);
	print(doc);
	json_decref(doc);
	return 0;
}

static void print_budgets_doc(json_t *doc)
{
	print_budgets(json_object_get(doc, "budgets"));
	printf("leases      %lld live\n", (long long)json_integer_value(json_object_get(doc, "leases")));
}

static int cmd_budgets(int argc, char **argv)
{
	return show_view(argc, argv, "budgets", "/v1/budgets", print_budgets_doc);
}

/* pools [--json]: each pool's backends, breaker state and load. */
static void print_pools_doc(json_t *doc)
{
	print_pools(json_object_get(doc, "pools"));
}

static int cmd_pools(int argc, char **argv)
{
	return show_view(argc, argv, "pools", "/v1/pools", print_pools_doc);
}

/* Reads all of f, up to max bytes, into a malloc'd NUL-terminated buffer.
 * Returns it with *len, or NULL (errno set; EFBIG when it is too large). */
static char *read_all(FILE *f, size_t max, size_t *len)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap + 1), *q;

	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (n < cap) {
			if (ferror(f)) {
				free(buf);
				return NULL;
			}
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		if (cap >= max) {
			free(buf);
			errno = EFBIG;
			return NULL;
		}
		cap = cap * 2 > max ? max : cap * 2;
		q = realloc(buf, cap + 1);
		if (!q)
			free(buf);
		buf = q;
	}
	errno = ENOMEM;
	return NULL;
}

/* A what-if plan from a file or stdin, computed here by the same code as
 * POST /v1/autoscale/plan: no daemon needed. */
static int cmd_plan(int argc, char **argv)
{
	const char *path = NULL, *name;
	bool as_json = false;
	json_t *answer = NULL, *msg;
	char *body, *text;
	size_t len = 0;
	int status = 0;
	FILE *f;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			as_json = true;
		else if ((strcmp(argv[i], "-") == 0 || argv[i][0] != '-') && !path)
			path = argv[i];
		else
			return usage_error("plan: unexpected argument ", argv[i]);
	}
	if (!path)
		return usage_error("plan: ", "missing FILE (a JSON plan request, or - for standard input)");
	name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "ballast plan: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	body = read_all(f, (size_t)64 << 20, &len);
	if (f != stdin)
		fclose(f);
	if (!body) {
		fprintf(stderr, "ballast plan: cannot read %s: %s\n", name,
			errno == EFBIG ? "larger than 64 MiB" : strerror(errno));
		return 1;
	}
	bl_plan_from_text(body, len, NULL, &answer, &status);
	free(body);
	if (!answer) {
		fprintf(stderr, "ballast plan: out of memory\n");
		return 1;
	}
	if (status != 200) {
		msg = json_object_get(json_object_get(answer, "error"), "message");
		fprintf(stderr, "ballast plan: %s: %s\n", name,
			json_is_string(msg) ? json_string_value(msg) : "the plan failed");
		json_decref(answer);
		return 1;
	}
	text = json_dumps(answer, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
	if (!text) {
		json_decref(answer);
		fprintf(stderr, "ballast plan: out of memory\n");
		return 1;
	}
	printf("%s\n", text);
	if (!as_json)
		printf("desired %lld replicas (current %lld): %s\n",
		       (long long)json_integer_value(json_object_get(answer, "desired_replicas")),
		       (long long)json_integer_value(json_object_get(answer, "current_replicas")),
		       json_string_value(json_object_get(answer, "reason")));
	free(text);
	json_decref(answer);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd)
		return usage_error("no command given", "");
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("ballast %s\n", BL_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc - 2, argv + 2);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - 2, argv + 2);
	if (strcmp(cmd, "acquire") == 0)
		return cmd_acquire(argc - 2, argv + 2);
	if (strcmp(cmd, "release") == 0)
		return cmd_release(argc - 2, argv + 2);
	if (strcmp(cmd, "reserve") == 0)
		return cmd_reserve(argc - 2, argv + 2);
	if (strcmp(cmd, "resize") == 0)
		return cmd_resize(argc - 2, argv + 2);
	if (strcmp(cmd, "budgets") == 0)
		return cmd_budgets(argc - 2, argv + 2);
	if (strcmp(cmd, "pools") == 0)
		return cmd_pools(argc - 2, argv + 2);
	if (strcmp(cmd, "plan") == 0)
		return cmd_plan(argc - 2, argv + 2);
	if (strcmp(cmd, "sim") == 0)
		return bl_sim_main(argc - 2, argv + 2);
	return usage_error("unknown command ", cmd);
}
