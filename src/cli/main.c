/* The `ballast` command. Exit codes: 0 ok, 1 failure, 2 usage error. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"usage: ballast <command> [options]\n"
	"\n"
	"commands:\n"
	"  serve [-c FILE] [--listen ADDR:PORT]   run the daemon (embedded default config without -c)\n"
	"  check FILE                             validate a config; prints file:line:column: problems\n"
	"  status [--url URL] [--json]            summarise a running daemon's /v1/state\n"
	"  version                                print the version\n"
	"  help                                   print this help\n"
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
		char host[128], err[256];
		uint16_t port;

		if (bl_listen_parse(opts.listen_override, host, sizeof host, &port, err, sizeof err))
			return usage_error("serve: --listen ", err);
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

static int cmd_status(int argc, char **argv)
{
	const char *url = getenv("BALLAST_URL") ? getenv("BALLAST_URL") : "http://127.0.0.1:7070";
	bool as_json = false;
	char full[1024], errbuf[CURL_ERROR_SIZE] = "";
	struct fetch f = {0};
	long code = 0;
	json_t *doc;
	json_error_t jerr;
	CURL *c;
	CURLcode cc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			as_json = true;
		else
			return usage_error("status: unexpected argument ", argv[i]);
	}
	{
		size_t n = strlen(url);
		while (n > 0 && url[n - 1] == '/')
			n--;
		snprintf(full, sizeof full, "%.*s/v1/state", (int)n, url);
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c = curl_easy_init();
	if (!c) {
		fprintf(stderr, "ballast status: cannot initialise libcurl\n");
		return 1;
	}
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_global_cleanup();
	if (cc != CURLE_OK) {
		fprintf(stderr, "ballast status: cannot reach %s: %s\n", full,
			errbuf[0] ? errbuf : curl_easy_strerror(cc));
		free(f.p);
		return 1;
	}
	if (code != 200) {
		fprintf(stderr, "ballast status: %s answered HTTP %ld: %s\n", full, code,
			f.p ? f.p : "");
		free(f.p);
		return 1;
	}
	if (as_json) {
		fwrite(f.p, 1, f.len, stdout);
		free(f.p);
		return 0;
	}
	doc = json_loadb(f.p ? f.p : "", f.len, 0, &jerr);
	free(f.p);
	if (!doc) {
		fprintf(stderr, "ballast status: %s did not answer JSON: %s\n", full, jerr.text);
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
	print_section(doc, "budgets");
	print_section(doc, "pools");
	print_section(doc, "memory");
	print_section(doc, "autoscaler");
	json_decref(doc);
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
	return usage_error("unknown command ", cmd);
}
