/* Unit tests of the config loader (src/daemon/config.c).
 *
 * Table-driven: configs that must load, and broken configs with the exact
 * diagnostics ("file:line:column: path: message") they must produce, in
 * document order. Allocation failures are injected SQLite-style: the Nth
 * allocation fails, for N = 1, 2, 3 ... until the call succeeds, and each
 * time the call must fail cleanly (ASan's leak checker sees any leak). The
 * loader's own allocations are reached through the linker (--wrap=malloc,
 * calloc, realloc; see tests/CMakeLists.txt), jansson's through
 * json_set_alloc_funcs().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ballast/error.h"
#include "ballast/units.h"
#include "config.h"

#ifndef BALLAST_SOURCE_DIR
#define BALLAST_SOURCE_DIR "."
#endif

/* ---- allocation failure injection ------------------------------------- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static long fail_countdown = -1; /* allocations left before one fails; -1 = never */
static long fail_hits;           /* failures injected since arming */

static bool should_fail(void)
{
	if (fail_countdown < 0)
		return false;
	if (fail_countdown-- == 0) {
		fail_hits++;
		return true;
	}
	return false;
}

void *__wrap_malloc(size_t size)
{
	return should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return should_fail() ? NULL : __real_realloc(p, size);
}

static void *json_fail_malloc(size_t size)
{
	return should_fail() ? NULL : __real_malloc(size);
}

/* ---- helpers ----------------------------------------------------------- */

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void example_path(char *buf, size_t cap)
{
	const char *dir = getenv("BALLAST_SOURCE_DIR");

	snprintf(buf, cap, "%s/examples/ballast.yaml", dir ? dir : BALLAST_SOURCE_DIR);
}

static void format_diag(const struct bl_diag *g, char *buf, size_t cap)
{
	if (g->path[0])
		snprintf(buf, cap, "%s:%d:%d: %s: %s", g->file, g->line, g->column, g->path,
			 g->message);
	else
		snprintf(buf, cap, "%s:%d:%d: %s", g->file, g->line, g->column, g->message);
}

static void dump_diags(const struct bl_diags *d)
{
	bl_diags_print(d, stderr);
}

/* Loads yaml named "t.yaml"; must succeed with no diagnostics. */
static struct bl_config *load_ok(const char *yaml)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;
	int err = bl_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d);

	if (err) {
		fprintf(stderr, "unexpected failure (%s) for:\n%s\n", bl_errname(err), yaml);
		dump_diags(&d);
	}
	assert_int_equal(err, 0);
	assert_non_null(cfg);
	assert_int_equal(d.n, 0);
	bl_diags_cleanup(&d);
	return cfg;
}

/* ---- loading what ships ------------------------------------------------ */

static void test_default_config_loads(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;

	assert_int_equal(bl_config_load_default(&cfg, &d), 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(cfg->source, "<default>");
	assert_string_equal(cfg->listen, "127.0.0.1:7070");
	assert_string_equal(cfg->listen_host, "127.0.0.1");
	assert_int_equal(cfg->listen_port, 7070);
	assert_string_equal(cfg->state_dir, "./ballast-state");
	assert_int_equal(cfg->log_level, BL_LOG_INFO);
	assert_null(cfg->auth_token_file);
	bl_config_destroy(cfg);
	bl_diags_cleanup(&d);
}

static void test_example_loads(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;
	const struct bl_cfg_budget *b;
	const struct bl_cfg_pool *p;
	char path[1024];
	int err;

	example_path(path, sizeof path);
	err = bl_config_load_file(path, &cfg, &d);
	if (err)
		dump_diags(&d);
	assert_int_equal(err, 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(cfg->source, path);
	assert_int_equal(cfg->n_budgets, 2);
	b = bl_config_budget(cfg, "anthropic");
	assert_non_null(b);
	assert_true(b->limits[BL_CFG_DIM_REQUESTS].set);
	assert_int_equal(b->limits[BL_CFG_DIM_REQUESTS].limit, 4000);
	assert_int_equal(b->limits[BL_CFG_DIM_REQUESTS].per_ns, 60 * BL_NS_PER_S);
	assert_false(b->limits[BL_CFG_DIM_TOKENS].set);
	assert_int_equal(b->concurrent, 64);
	assert_int_equal(b->n_tenants, 2);
	assert_string_equal(b->tenants[0].name, "interactive");
	assert_int_equal(b->tenants[0].weight, 4);
	assert_null(bl_config_budget(cfg, "nope"));
	p = bl_config_pool(cfg, "claude");
	assert_non_null(p);
	assert_int_equal(p->strategy, BL_STRATEGY_PEAK_EWMA);
	assert_int_equal(p->n_backends, 3);
	assert_string_equal(p->backends[2].metrics_url, "http://10.0.0.5:8000/metrics");
	assert_null(p->backends[2].budget);
	p = bl_config_pool(cfg, "gpt");
	assert_non_null(p);
	assert_true(p->breaker.window_is_time);
	assert_int_equal(p->breaker.window_ns, 60 * BL_NS_PER_S);
	assert_null(bl_config_pool(cfg, "nope"));
	assert_true(cfg->memory.configured);
	assert_true(cfg->memory.capacity_auto);
	assert_true(cfg->autoscaler.configured);
	assert_int_equal(cfg->autoscaler.actuator, BL_ACTUATOR_LOCAL);
	assert_int_equal(cfg->autoscaler.n_command, 2);
	assert_string_equal(cfg->autoscaler.command[1], "agent.py");
	assert_null(cfg->autoscaler.command[2]);
	bl_config_destroy(cfg);
	bl_diags_cleanup(&d);
}

/* ---- defaults ------------------------------------------------------------ */

static void test_defaults_filled(void **state)
{
	struct bl_config *cfg = load_ok("budgets:\n"
					"  b: {limits: {concurrent: 1}}\n"
					"pools:\n"
					"  p: {backends: [{name: a, url: \"http://h\"}]}\n"
					"memory: {}\n"
					"autoscaler: {}\n");
	const struct bl_cfg_budget *b = &cfg->budgets[0];
	const struct bl_cfg_pool *p = &cfg->pools[0];
	const struct bl_cfg_autoscaler *a = &cfg->autoscaler;

	assert_string_equal(cfg->listen, "127.0.0.1:7070");
	assert_false(cfg->log_access);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->max_body, 64 * 1024);
	assert_int_equal(cfg->max_header, 16 * 1024);
	assert_int_equal(cfg->request_timeout_ns, 10 * BL_NS_PER_S);
	assert_int_equal(cfg->daemon_memory, 256u << 20);
	assert_int_equal(cfg->snapshot_interval_ns, 5 * BL_NS_PER_S);

	for (int i = 0; i < BL_CFG_DIM_COUNT; i++)
		assert_false(b->limits[i].set);
	assert_int_equal(b->concurrent, 1);
	assert_true(b->target_utilization == 0.90);
	assert_true(b->burst == 0.05);
	assert_int_equal(b->lease_ttl_ns, 120 * BL_NS_PER_S);
	assert_int_equal(b->max_queue, 10000);
	assert_true(b->adaptive_decrease == 0.8);
	assert_true(b->adaptive_increase == 0.05);
	assert_int_equal(b->adaptive_period_ns, 10 * BL_NS_PER_S);
	assert_int_equal(b->n_tenants, 0);

	assert_int_equal(p->strategy, BL_STRATEGY_PEAK_EWMA);
	assert_int_equal(p->backends[0].weight, 1);
	assert_null(p->backends[0].budget);
	assert_null(p->backends[0].metrics_url);
	assert_false(p->breaker.window_is_time);
	assert_int_equal(p->breaker.window_count, 50);
	assert_int_equal(p->breaker.min_calls, 20);
	assert_true(p->breaker.failure_rate == 0.5);
	assert_int_equal(p->breaker.slow_call_ns, 20 * BL_NS_PER_S);
	assert_true(p->breaker.slow_rate == 0.8);
	assert_int_equal(p->breaker.consecutive_failures, 5);
	assert_int_equal(p->breaker.open_for_ns, 30 * BL_NS_PER_S);
	assert_int_equal(p->breaker.max_open_for_ns, 300 * BL_NS_PER_S);
	assert_int_equal(p->breaker.half_open_probes, 3);
	assert_false(p->breaker.rate_limited_trips);
	assert_true(p->max_ejected == 0.5);
	assert_int_equal(p->slow_start_ns, 0);
	assert_int_equal(p->ewma_decay_ns, 10 * BL_NS_PER_S);
	assert_int_equal(p->metrics_interval_ns, 5 * BL_NS_PER_S);

	assert_true(cfg->memory.configured);
	assert_true(cfg->memory.capacity_auto);
	assert_true(cfg->memory.safety_buffer == 0.20);
	assert_true(cfg->memory.low == 0.80);
	assert_true(cfg->memory.high == 0.90);

	assert_true(a->configured);
	assert_int_equal(a->min_replicas, 5);
	assert_int_equal(a->max_replicas, 100);
	assert_int_equal(a->interval_ns, 15 * BL_NS_PER_S);
	assert_true(a->cpu.set && a->cpu.low == 0.70 && a->cpu.high == 0.85);
	assert_true(a->memory.set && a->memory.low == 0.80 && a->memory.high == 0.90);
	assert_true(a->inflight_per_replica == 0 && a->queue_per_replica == 0);
	assert_int_equal(a->panic_window_ns, 6 * BL_NS_PER_S);
	assert_true(a->panic_threshold == 2.0);
	assert_int_equal(a->stable_window_ns, 60 * BL_NS_PER_S);
	assert_int_equal(a->scale_up_stabilization_ns, 0);
	assert_int_equal(a->scale_down_stabilization_ns, 300 * BL_NS_PER_S);
	assert_null(a->budget);
	assert_int_equal(a->actuator, BL_ACTUATOR_NONE);
	assert_null(a->command);
	assert_int_equal(a->grace_ns, 30 * BL_NS_PER_S);
	bl_config_destroy(cfg);
}

static void test_absent_sections(void **state)
{
	struct bl_config *cfg = load_ok("listen: 127.0.0.1:7070\n");

	assert_int_equal(cfg->n_budgets, 0);
	assert_int_equal(cfg->n_pools, 0);
	assert_false(cfg->memory.configured);
	assert_false(cfg->autoscaler.configured);
	bl_config_destroy(cfg);
}

/* ---- valid configs -------------------------------------------------------- */

struct good_case {
	const char *name;
	const char *yaml;
};

static const struct good_case good_cases[] = {
	{"ipv6 listen", "listen: \"[::1]:7070\"\n"},
	{"ephemeral port", "listen: 127.0.0.1:0\n"},
	{"localhost", "listen: localhost:8080\n"},
	{"all interfaces", "listen: 0.0.0.0:7070\n"},
	{"quoted strings", "listen: '127.0.0.1:7070'\nstate_dir: \"/var/lib/ballast\"\n"},
	{"null values mean defaults", "log:\nlimits: ~\nsnapshot: {interval: null}\n"},
	{"every log level", "log: {level: debug, access: true}\n"},
	{"boolean spellings", "log: {access: True}\npools:\n  p:\n    backends: [{name: a, url: "
			      "\"http://h\"}]\n    breaker: {rate_limited_trips: FALSE}\n"},
	{"durations", "snapshot: {interval: 250ms}\nlimits: {request_timeout: 1h}\n"},
	{"compound duration", "snapshot: {interval: 1m30s}\n"},
	{"sizes", "limits: {max_body: 512KiB, max_header: 4096, daemon_memory: 16GiB}\n"},
	{"decimal size", "limits: {max_body: 1MB}\n"},
	{"burst at headroom", "budgets:\n  b:\n    limits: {concurrent: 1}\n"
			      "    target_utilization: 0.95\n    burst: 0.05\n"},
	{"burst zero", "budgets: {b: {limits: {requests: {limit: 1, per: 1s}}, burst: 0}}\n"},
	{"all four dimensions", "budgets:\n  b:\n    limits:\n"
				"      requests: {limit: 1, per: 1s}\n"
				"      tokens: {limit: 2, per: 1m}\n"
				"      input_tokens: {limit: 3, per: 1h}\n"
				"      output_tokens: {limit: 4, per: 1d}\n"},
	{"time window", "pools:\n  p:\n    backends: [{name: a, url: \"https://h:443/v1\"}]\n"
			"    breaker: {window: {time: 60s}, min_calls: 500}\n"},
	{"every strategy",
	 "pools:\n"
	 "  a: {strategy: round_robin, backends: [{name: x, url: \"http://h\"}]}\n"
	 "  b: {strategy: weighted, backends: [{name: x, url: \"http://h\"}]}\n"
	 "  c: {strategy: random, backends: [{name: x, url: \"http://h\"}]}\n"
	 "  d: {strategy: least_inflight, backends: [{name: x, url: \"http://h\"}]}\n"
	 "  e: {strategy: p2c, backends: [{name: x, url: \"http://h\"}]}\n"
	 "  f: {strategy: peak_ewma, backends: [{name: x, url: \"http://h\"}]}\n"
	 "  g: {strategy: consistent_hash, backends: [{name: x, url: \"http://h\"}]}\n"},
	{"same backend name in two pools",
	 "pools:\n  a: {backends: [{name: x, url: \"http://h\"}]}\n"
	 "  b: {backends: [{name: x, url: \"http://h\"}]}\n"},
	{"capacity as size", "memory: {capacity: 16GiB, safety_buffer: 0.1, "
			     "watermarks: {low: 0.5, high: 0.95}}\n"},
	{"exec actuator", "autoscaler:\n  actuator: {kind: exec, command: [/bin/scale, --to]}\n"},
	{"kubernetes actuator", "autoscaler:\n  min_replicas: 0\n  max_replicas: 1\n"
				"  actuator: {kind: kubernetes, namespace: agents, "
				"deployment: agent-workers.v2}\n"},
	{"anchors and aliases", "budgets:\n  a: &b {limits: {concurrent: 4}}\n  b: *b\n"
				"pools:\n  p: {backends: [{name: x, url: \"http://h\", budget: a}]}\n"},
	{"core tags", "log: {level: !!str info, access: !!bool false}\n"
		      "limits: !!map {max_connections: !!int 5}\n"},
	{"UTF-8 text and BOM", "\xef\xbb\xbfstate_dir: /var/lib/b\xc3\xa4llast/\xf0\x9f\x9a\x80\n"},
	{"comments and document markers", "# hello\n---\nlisten: 127.0.0.1:1 # trailing\n...\n"},
	{"references resolve", "budgets: {x: {limits: {concurrent: 1}}}\n"
			       "autoscaler: {budget: x}\n"},
};

static void test_good_cases(void **state)
{
	for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0]; i++) {
		struct bl_config *cfg;

		cfg = load_ok(good_cases[i].yaml);
		bl_config_destroy(cfg);
	}
}

static void test_values(void **state)
{
	struct bl_config *cfg;

	cfg = load_ok("listen: \"[::1]:0\"\n");
	assert_string_equal(cfg->listen_host, "::1");
	assert_int_equal(cfg->listen_port, 0);
	bl_config_destroy(cfg);

	cfg = load_ok("log: {level: warn, access: true}\n"
		      "limits: {max_body: 1MiB, request_timeout: 1m30s}\n"
		      "snapshot: {interval: 250ms}\n"
		      "auth: {token_file: /run/token}\n");
	assert_int_equal(cfg->log_level, BL_LOG_WARN);
	assert_true(cfg->log_access);
	assert_int_equal(cfg->max_body, 1 << 20);
	assert_int_equal(cfg->request_timeout_ns, 90 * BL_NS_PER_S);
	assert_int_equal(cfg->snapshot_interval_ns, 250 * BL_NS_PER_MS);
	assert_string_equal(cfg->auth_token_file, "/run/token");
	bl_config_destroy(cfg);

	/* target 0.95 caps the default burst at the 0.05 headroom. */
	cfg = load_ok("budgets: {b: {limits: {concurrent: 1}, target_utilization: 0.95}}\n");
	assert_true(cfg->budgets[0].burst <= 1.0 - 0.95 + 1e-12);
	bl_config_destroy(cfg);

	/* A long open_for raises the default max_open_for with it. */
	cfg = load_ok("pools: {p: {backends: [{name: a, url: \"http://h\"}], "
		      "breaker: {open_for: 10m}}}\n");
	assert_int_equal(cfg->pools[0].breaker.max_open_for_ns, 600 * BL_NS_PER_S);
	bl_config_destroy(cfg);

	/* No namespace: the pod's own, read by the actuator. */
	cfg = load_ok("autoscaler: {actuator: {kind: kubernetes, deployment: w}}\n");
	assert_null(cfg->autoscaler.k8s_namespace);
	assert_string_equal(cfg->autoscaler.k8s_deployment, "w");
	assert_null(cfg->autoscaler.k8s_api_url);
	assert_null(cfg->autoscaler.command);
	bl_config_destroy(cfg);

	cfg = load_ok("autoscaler: {actuator: {kind: kubernetes, namespace: agents, deployment: w, "
		      "api_url: \"http://127.0.0.1:8001\", token_file: /run/t, ca_file: /etc/ca.pem}}\n");
	assert_string_equal(cfg->autoscaler.k8s_namespace, "agents");
	assert_string_equal(cfg->autoscaler.k8s_api_url, "http://127.0.0.1:8001");
	assert_string_equal(cfg->autoscaler.k8s_token_file, "/run/t");
	assert_string_equal(cfg->autoscaler.k8s_ca_file, "/etc/ca.pem");
	assert_false(cfg->autoscaler.k8s_statefulset);
	bl_config_destroy(cfg);

	cfg = load_ok("autoscaler: {actuator: {kind: kubernetes, statefulset: db}}\n");
	assert_true(cfg->autoscaler.k8s_statefulset);
	assert_string_equal(cfg->autoscaler.k8s_deployment, "db");
	bl_config_destroy(cfg);

	cfg = load_ok("autoscaler: {actuator: {kind: local, command: [a], env: {A_1: x, B: \"y=z\"}, "
		      "cwd: /srv}}\n");
	assert_int_equal(cfg->autoscaler.n_env, 2);
	assert_string_equal(cfg->autoscaler.env[0], "A_1=x");
	assert_string_equal(cfg->autoscaler.env[1], "B=y=z");
	assert_null(cfg->autoscaler.env[2]);
	assert_string_equal(cfg->autoscaler.cwd, "/srv");
	bl_config_destroy(cfg);

	cfg = load_ok("memory: {capacity: 16GiB}\n");
	assert_false(cfg->memory.capacity_auto);
	assert_int_equal(cfg->memory.capacity, UINT64_C(16) << 30);
	bl_config_destroy(cfg);

	/* Single-quoted strings are decoded by the loader itself (libfyaml
	 * 0.7.12 leaks on several '' escapes): escapes and line folding. */
	{
		static const struct {
			const char *yaml;
			const char *state_dir;
		} sq[] = {
			{"state_dir: 'it''s'\n", "it's"},
			{"state_dir: 'x''''''''''y'\n", "x'''''y"},
			{"state_dir: ''''''''''''''''''\n", "''''''''"},
			{"state_dir: 'a\n  b  \n\n   c '\n", "a b\nc "},
			{"state_dir: 'a  \r\n  b'\n", "a b"},
			{"state_dir: 'x y\t \n '\n", "x y "},
		};

		for (size_t i = 0; i < sizeof sq / sizeof sq[0]; i++) {
			cfg = load_ok(sq[i].yaml);
			assert_string_equal(cfg->state_dir, sq[i].state_dir);
			bl_config_destroy(cfg);
		}
	}

	/* !!str keeps what looks like a number a string. */
	cfg = load_ok("state_dir: !!str 123\n");
	assert_string_equal(cfg->state_dir, "123");
	bl_config_destroy(cfg);
}

/* ---- broken configs ------------------------------------------------------ */

#define MAX_EXPECT 8

struct bad_case {
	const char *name;
	const char *yaml;
	const char *expect[MAX_EXPECT]; /* one per diagnostic, in order: each a prefix */
};

static const struct bad_case bad_cases[] = {
	/* YAML syntax */
	{"tab indentation", "log:\n\tlevel: info\n",
	 {"t.yaml:2:1: YAML syntax error: tab character may not be used as indentation"}},
	{"unclosed flow map", "log: {level: info\nlimits: {}\n",
	 {"t.yaml:2:7: YAML syntax error: missing comma in flow mapping"}},
	{"unclosed quote", "state_dir: \"abc\n",
	 {"t.yaml:1:13: YAML syntax error: double-quoted scalar without closing quote"}},
	{"bad indentation", "log:\n  level: info\n access: true\n",
	 {"t.yaml:3:2: YAML syntax error: invalid indentation in mapping"}},
	{"unquoted ipv6", "listen: [::1]:7070\n", {"t.yaml:1:14: YAML syntax error: "}},

	/* encoding */
	{"invalid UTF-8", "log: {level: info}\nstate_dir: a\xff\n",
	 {"t.yaml:2:13: the file is not valid UTF-8 (byte 0xff); save it as UTF-8"}},
	{"directive with a stray byte", "%\xdf\n",
	 {"t.yaml:1:2: the file is not valid UTF-8 (byte 0xdf)"}},
	{"overlong UTF-8", "state_dir: \xc0\xaf\n",
	 {"t.yaml:1:12: the file is not valid UTF-8 (byte 0xc0)"}},
	{"UTF-8 surrogate", "state_dir: \xed\xa0\x80\n",
	 {"t.yaml:1:12: the file is not valid UTF-8 (byte 0xed)"}},
	{"truncated UTF-8", "state_dir: \xc3", {"t.yaml:1:12: the file is not valid UTF-8 (byte 0xc3)"}},
	{"column counts characters", "state_dir: \xc3\xa9\xc3\xa9\xff\n",
	 {"t.yaml:1:14: the file is not valid UTF-8 (byte 0xff)"}},

	{"escape character", "state_dir: a\x1b[0m\n",
	 {"t.yaml:1:13: control character U+001B is not allowed in YAML; remove it, or write it as an "
	  "escape inside double quotes (\"\\x1B\")"}},
	{"C1 control", "state_dir: \xc2\x9b\n", {"t.yaml:1:12: control character U+009B is not allowed"}},

	/* document shape */
	{"empty document", "", {"t.yaml:1:1: the document is empty; expected a map of settings"}},
	{"only comments", "# nothing\n\n", {"t.yaml:1:1: the document is empty"}},
	{"null document", "~\n", {"t.yaml:1:1: the document is empty"}},
	{"list root", "- listen\n- state_dir\n",
	 {"t.yaml:1:1: expected a map of settings (listen, state_dir, log, auth, limits, "
	  "snapshot, budgets, pools, memory, autoscaler) at the top level, got a list"}},
	{"scalar root", "hello\n", {"t.yaml:1:1: expected a map of settings", }},
	{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n",
	 {"t.yaml:2:1: a second YAML document starts here; a config is one document"}},

	/* unknown keys */
	{"unknown top key with suggestion", "listn: 127.0.0.1:7070\n",
	 {"t.yaml:1:1: listn: unknown key 'listn'; did you mean 'listen'?"}},
	{"unknown nested key with suggestion", "log: {acess: true}\n",
	 {"t.yaml:1:7: log.acess: unknown key 'acess'; did you mean 'access'?"}},
	{"swapped letters", "budgets:\n  b:\n    limits: {concurrent: 1}\n    tagret_utilization: 0.9\n",
	 {"t.yaml:4:5: budgets.b.tagret_utilization: unknown key 'tagret_utilization'; did you "
	  "mean 'target_utilization'?"}},
	{"unknown key without suggestion", "log: {colour: true}\n",
	 {"t.yaml:1:7: log.colour: unknown key 'colour'; accepted here: level, access"}},
	{"unknown dimension", "budgets: {b: {limits: {request: {limit: 1, per: 1s}}}}\n",
	 {"t.yaml:1:24: budgets.b.limits.request: unknown key 'request'; did you mean 'requests'?"}},
	{"limits empty", "budgets: {b: {limits: {}}}\n",
	 {"t.yaml:1:23: budgets.b.limits: a budget needs at least one limit"}},
	{"merge key", "x: &x {level: info}\nlog: {<<: *x}\n",
	 {"t.yaml:1:1: x: unknown key 'x'", "t.yaml:2:7: log.<<: merge keys (<<) are not supported"}},
	{"map as key", "? [a]\n: 1\n", {"t.yaml:1:3: keys must be plain words, not lists"}},

	/* wrong types */
	{"list for map", "log: [info]\n", {"t.yaml:1:6: log: expected a map of settings, got a list"}},
	{"scalar for map", "limits: 5\n", {"t.yaml:1:9: limits: expected a map of settings, got '5'"}},
	{"map for list", "pools: {p: {backends: {name: a}}}\n",
	 {"t.yaml:1:23: pools.p.backends: expected a list of backends such as [{name: a, url: "
	  "\"https://...\"}], got a map"}},
	{"word for number", "limits: {max_connections: lots}\n",
	 {"t.yaml:1:27: limits.max_connections: expected a whole number in 1..1000000, got 'lots'"}},
	{"quoted number", "limits: {max_connections: \"5\"}\n",
	 {"t.yaml:1:27: limits.max_connections: expected a whole number in 1..1000000, got the "
	  "string '5'"}},
	{"fraction for whole number", "limits: {max_connections: 1.5}\n",
	 {"t.yaml:1:27: limits.max_connections: 1.5 is not a whole number"}},
	{"list for number", "budgets: {b: {limits: {concurrent: 1}, target_utilization: [1]}}\n",
	 {"t.yaml:1:60: budgets.b.target_utilization: expected a number in 0.85..0.95, got a list"}},
	{"yes is not a boolean", "log: {access: yes}\n",
	 {"t.yaml:1:15: log.access: expected true or false, got 'yes'"}},
	{"map for string", "state_dir: {a: 1}\n",
	 {"t.yaml:1:12: state_dir: expected a directory path, got a map"}},
	{"list for duration", "snapshot: {interval: [5s]}\n",
	 {"t.yaml:1:22: snapshot.interval: expected a duration such as 250ms, 30s, 5m or 1h, got a "
	  "list"}},
	{"not a level", "log: {level: verbose}\n",
	 {"t.yaml:1:14: log.level: 'verbose' is not accepted; expected one of debug, info, warn, "
	  "error"}},
	{"strategy typo", "pools: {p: {strategy: peak-ewma, backends: [{name: a, url: \"http://h\"}]}}\n",
	 {"t.yaml:1:23: pools.p.strategy: 'peak-ewma' is not accepted; did you mean 'peak_ewma'?"}},

	/* ranges */
	{"target utilization", "budgets:\n  anthropic:\n    limits: {concurrent: 1}\n"
			       "    target_utilization: 1.2\n",
	 {"t.yaml:4:25: budgets.anthropic.target_utilization: 1.2 is outside 0.85..0.95"}},
	{"burst beyond headroom", "budgets: {b: {limits: {concurrent: 1}, target_utilization: 0.95, "
				  "burst: 0.1}}\n",
	 {"t.yaml:1:73: budgets.b.burst: 0.1 is outside 0..0.05 (1 - target_utilization"}},
	{"negative burst", "budgets: {b: {limits: {concurrent: 1}, burst: -0.1}}\n",
	 {"t.yaml:1:47: budgets.b.burst: -0.1 is outside 0..1"}},
	{"zero connections", "limits: {max_connections: 0}\n",
	 {"t.yaml:1:27: limits.max_connections: 0 is outside 1..1000000"}},
	{"huge integer", "limits: {max_connections: 99999999999999999999999}\n",
	 {"t.yaml:1:27: limits.max_connections: 99999999999999999999999 is outside 1..1000000"}},
	{"zero tenant weight", "budgets: {b: {limits: {concurrent: 1}, tenants: {t: {weight: 0}}}}\n",
	 {"t.yaml:1:62: budgets.b.tenants.t.weight: 0 is outside 1..1000"}},
	{"decrease too small", "budgets: {b: {limits: {concurrent: 1}, adaptive: {decrease: 0.01}}}\n",
	 {"t.yaml:1:61: budgets.b.adaptive.decrease: 0.01 is outside 0.1..0.99"}},
	{"failure rate", "pools: {p: {backends: [{name: a, url: \"http://h\"}], breaker: "
			 "{failure_rate: 1.5}}}\n",
	 {"t.yaml:1:77: pools.p.breaker.failure_rate: 1.5 is outside 0..1"}},
	{"safety buffer", "memory: {safety_buffer: 0.95}\n",
	 {"t.yaml:1:25: memory.safety_buffer: 0.95 is outside 0..0.9"}},
	{"infinity", "memory: {safety_buffer: .inf}\n",
	 {"t.yaml:1:25: memory.safety_buffer: expected a number in 0..0.9, got '.inf'"}},

	/* durations and sizes */
	{"duration without unit", "snapshot: {interval: 5}\n",
	 {"t.yaml:1:22: snapshot.interval: '5' is not a duration; write a number with a unit: "
	  "250ms, 30s, 5m, 1h"}},
	{"duration with space", "snapshot: {interval: 5 s}\n",
	 {"t.yaml:1:22: snapshot.interval: '5 s' is not a duration"}},
	{"negative duration", "snapshot: {interval: -5s}\n",
	 {"t.yaml:1:22: snapshot.interval: '-5s' is not a duration"}},
	{"duration out of range", "snapshot: {interval: 2h}\n",
	 {"t.yaml:1:22: snapshot.interval: 2h is outside 100ms..1h"}},
	{"duration overflow", "snapshot: {interval: 999999999999h}\n",
	 {"t.yaml:1:22: snapshot.interval: '999999999999h' is too long a duration"}},
	{"unknown size unit", "limits: {max_body: 64XB}\n",
	 {"t.yaml:1:20: limits.max_body: '64XB' is not a size; write bytes or a number with a "
	  "unit: 512KiB, 64MiB, 16GiB"}},
	{"size too small", "limits: {max_body: 10}\n",
	 {"t.yaml:1:20: limits.max_body: 10 is outside 1KiB..1GiB"}},
	{"size overflow", "limits: {max_body: 99999999999TiB}\n",
	 {"t.yaml:1:20: limits.max_body: '99999999999TiB' is too large a size"}},
	{"capacity word", "memory: {capacity: lots}\n",
	 {"t.yaml:1:20: memory.capacity: 'lots' is not a size"}},

	/* listen */
	{"no port", "listen: 127.0.0.1\n",
	 {"t.yaml:1:9: listen: '127.0.0.1' has no port; expected host:port such as 127.0.0.1:7070 "
	  "or [::1]:7070"}},
	{"port too big", "listen: 127.0.0.1:99999\n",
	 {"t.yaml:1:9: listen: port '99999' is not a number in 0..65535"}},
	{"port not a number", "listen: 127.0.0.1:http\n",
	 {"t.yaml:1:9: listen: port 'http' is not a number in 0..65535"}},
	{"ipv6 without brackets", "listen: \"::1:7070\"\n",
	 {"t.yaml:1:9: listen: an IPv6 address needs brackets, such as [::1]:7070"}},
	{"bad ipv6", "listen: \"[::g]:7070\"\n", {"t.yaml:1:9: listen: '::g' is not an IPv6 address"}},
	{"hostname", "listen: example.com:80\n",
	 {"t.yaml:1:9: listen: 'example.com' is not an IPv4 address, a bracketed IPv6 address or "
	  "localhost"}},
	{"empty host", "listen: \":7070\"\n",
	 {"t.yaml:1:9: listen: the host is empty; write 0.0.0.0:7070 to listen on every interface"}},
	{"number for listen", "listen: 7070\n", {"t.yaml:1:9: listen: '7070' has no port"}},

	/* strings */
	{"empty string", "state_dir: \"\"\n",
	 {"t.yaml:1:12: state_dir: must not be empty; expected a directory path"}},
	{"NUL in string", "state_dir: \"a\\0b\"\n",
	 {"t.yaml:1:12: state_dir: contains a NUL character"}},

	/* budgets */
	{"budget without limits", "budgets: {b: {max_queue: 5}}\n",
	 {"t.yaml:1:14: budgets.b.limits: a budget needs at least one limit: requests, tokens, "
	  "input_tokens, output_tokens ({limit: N, per: 1m}) or concurrent"}},
	{"null budget", "budgets:\n  b:\n",
	 {"t.yaml:2:3: budgets.b.limits: a budget needs at least one limit"}},
	{"rate without per", "budgets: {b: {limits: {requests: {limit: 5}}}}\n",
	 {"t.yaml:1:34: budgets.b.limits.requests: missing 'per': the window the provider states, "
	  "such as 1m"}},
	{"rate without limit", "budgets: {b: {limits: {requests: {per: 1m}}}}\n",
	 {"t.yaml:1:34: budgets.b.limits.requests: missing 'limit'"}},
	{"rate as number", "budgets: {b: {limits: {requests: 4000}}}\n",
	 {"t.yaml:1:34: budgets.b.limits.requests: expected a map of settings, got '4000'"}},
	{"bad budget name", "budgets: {\"my budget\": {limits: {concurrent: 1}}}\n",
	 {"t.yaml:1:11: budgets.my budget: budget name 'my budget' is not accepted: use 1..64 "
	  "letters, digits, '_', '-' or '.'"}},
	{"budgets as list", "budgets: [a, b]\n",
	 {"t.yaml:1:10: budgets: expected a map of budget names to budget settings, got a list"}},

	/* duplicates */
	{"duplicate key", "log: {level: info, level: warn}\n",
	 {"t.yaml:1:20: log.level: duplicate key 'level'; the first is at line 1"}},
	{"duplicate top key", "listen: 127.0.0.1:1\nstate_dir: x\nlisten: 127.0.0.1:2\n",
	 {"t.yaml:3:1: listen: duplicate key 'listen'; the first is at line 1"}},
	{"duplicate budget", "budgets:\n  a: {limits: {concurrent: 1}}\n  a: {limits: {concurrent: 2}}\n",
	 {"t.yaml:3:3: budgets.a: duplicate budget 'a'; the first is at line 2"}},
	{"duplicate pool", "pools:\n  p: {backends: [{name: a, url: \"http://h\"}]}\n"
			   "  p: {backends: [{name: a, url: \"http://h\"}]}\n",
	 {"t.yaml:3:3: pools.p: duplicate pool 'p'; the first is at line 2"}},
	{"duplicate tenant", "budgets:\n  b:\n    limits: {concurrent: 1}\n    tenants:\n"
			     "      t: {weight: 1}\n      t: {weight: 2}\n",
	 {"t.yaml:6:7: budgets.b.tenants.t: duplicate tenant 't'; the first is at line 5"}},
	{"duplicate backend", "pools:\n  p:\n    backends:\n      - {name: a, url: \"http://h\"}\n"
			      "      - {name: a, url: \"http://i\"}\n",
	 {"t.yaml:5:16: pools.p.backends[1].name: duplicate backend 'a'; the first is backends[0] "
	  "at line 4"}},

	/* references */
	{"backend budget typo", "budgets: {anthropic: {limits: {concurrent: 1}}}\n"
				"pools: {p: {backends: [{name: a, url: \"http://h\", budget: anthropc}]}}\n",
	 {"t.yaml:2:59: pools.p.backends[0].budget: budget 'anthropc' is not configured; did you "
	  "mean 'anthropic'?"}},
	{"backend budget without budgets", "pools: {p: {backends: [{name: a, url: \"http://h\", "
					   "budget: x}]}}\n",
	 {"t.yaml:1:59: pools.p.backends[0].budget: budget 'x' is not configured: there are no "
	  "budgets"}},
	{"autoscaler budget", "budgets: {a: {limits: {concurrent: 1}}}\nautoscaler: {budget: openai}\n",
	 {"t.yaml:2:22: autoscaler.budget: budget 'openai' is not configured under budgets"}},

	/* pools */
	{"pool without backends", "pools: {p: {strategy: p2c}}\n",
	 {"t.yaml:1:12: pools.p.backends: a pool needs at least one backend"}},
	{"empty backend list", "pools: {p: {backends: []}}\n",
	 {"t.yaml:1:23: pools.p.backends: a pool needs at least one backend; the list is empty"}},
	{"backend without url", "pools:\n  p:\n    backends:\n      - name: a\n",
	 {"t.yaml:4:9: pools.p.backends[0]: missing 'url'"}},
	{"backend without name", "pools: {p: {backends: [{url: \"http://h\"}]}}\n",
	 {"t.yaml:1:24: pools.p.backends[0]: missing 'name'"}},
	{"backend as string", "pools: {p: {backends: [\"http://h\"]}}\n",
	 {"t.yaml:1:24: pools.p.backends[0]: expected a map such as {name: a, url: "
	  "\"https://...\"}, got the string 'http://h'"}},
	{"ftp url", "pools: {p: {backends: [{name: a, url: \"ftp://h\"}]}}\n",
	 {"t.yaml:1:39: pools.p.backends[0].url: 'ftp://h' is not an http:// or https:// URL"}},
	{"url without host", "pools: {p: {backends: [{name: a, url: \"http:///x\"}]}}\n",
	 {"t.yaml:1:39: pools.p.backends[0].url: 'http:///x' has no host"}},
	{"url with space", "pools: {p: {backends: [{name: a, url: \"http://h/a b\"}]}}\n",
	 {"t.yaml:1:39: pools.p.backends[0].url: 'http://h/a b' contains a space"}},
	{"window both", "pools: {p: {backends: [{name: a, url: \"http://h\"}], breaker: "
			"{window: {count: 5, time: 5s}}}}\n",
	 {"t.yaml:1:71: pools.p.breaker.window: give either count (outcomes kept) or time (span "
	  "kept), not both"}},
	{"window neither", "pools: {p: {backends: [{name: a, url: \"http://h\"}], breaker: "
			   "{window: {}}}}\n",
	 {"t.yaml:1:71: pools.p.breaker.window: needs count (such as {count: 50}) or time"}},
	{"min calls beyond window", "pools: {p: {backends: [{name: a, url: \"http://h\"}], breaker: "
				    "{window: {count: 10}, min_calls: 20}}}\n",
	 {"t.yaml:1:95: pools.p.breaker.min_calls: 20 exceeds the window of 10 calls"}},
	{"max open shorter", "pools: {p: {backends: [{name: a, url: \"http://h\"}], breaker: "
			     "{max_open_for: 10s}}}\n",
	 {"t.yaml:1:77: pools.p.breaker.max_open_for: 10s is shorter than open_for (30s)"}},

	/* memory and autoscaler */
	{"watermarks inverted", "memory: {watermarks: {low: 0.95}}\n",
	 {"t.yaml:1:28: memory.watermarks.low: low (0.95) must be below high (0.9)"}},
	{"replicas inverted", "autoscaler: {min_replicas: 50, max_replicas: 10}\n",
	 {"t.yaml:1:28: autoscaler.min_replicas: min_replicas (50) must not exceed max_replicas "
	  "(10)"}},
	{"cpu band inverted", "autoscaler: {targets: {cpu: {low: 0.9, high: 0.8}}}\n",
	 {"t.yaml:1:35: autoscaler.targets.cpu.low: low (0.9) must be below high (0.8)"}},
	{"panic window too long", "autoscaler: {panic: {window: 2m}}\n",
	 {"t.yaml:1:30: autoscaler.panic.window: 2m is longer than stable_window (1m)"}},
	{"actuator without kind", "autoscaler: {actuator: {grace: 5s}}\n",
	 {"t.yaml:1:24: autoscaler.actuator: missing 'kind': one of local, exec, kubernetes"}},
	{"actuator kind typo", "autoscaler: {actuator: {kind: kubernets}}\n",
	 {"t.yaml:1:31: autoscaler.actuator.kind: 'kubernets' is not accepted; did you mean "
	  "'kubernetes'?"}},
	{"local without command", "autoscaler: {actuator: {kind: local}}\n",
	 {"t.yaml:1:24: autoscaler.actuator.command: kind local needs a command"}},
	{"command as string", "autoscaler: {actuator: {kind: exec, command: \"scale.sh\"}}\n",
	 {"t.yaml:1:46: autoscaler.actuator.command: expected a list of strings, such as "
	  "[\"python3\", \"agent.py\"], got the string 'scale.sh'"}},
	{"empty command argument", "autoscaler: {actuator: {kind: exec, command: [a, \"\"]}}\n",
	 {"t.yaml:1:50: autoscaler.actuator.command[1]: must not be empty"}},
	{"kubernetes without deployment", "autoscaler: {actuator: {kind: kubernetes}}\n",
	 {"t.yaml:1:24: autoscaler.actuator: kind kubernetes needs 'deployment'"}},
	{"kubernetes with command", "autoscaler: {actuator: {kind: kubernetes, deployment: w, "
				    "command: [x]}}\n",
	 {"t.yaml:1:67: autoscaler.actuator.command: is only used by kind local or exec"}},
	{"bad namespace", "autoscaler: {actuator: {kind: kubernetes, deployment: w, "
			  "namespace: Agents}}\n",
	 {"t.yaml:1:69: autoscaler.actuator.namespace: 'Agents' is not a Kubernetes namespace"}},
	{"namespace on local", "autoscaler: {actuator: {kind: local, command: [a], namespace: x}}\n",
	 {"t.yaml:1:63: autoscaler.actuator.namespace: is only used by kind kubernetes"}},
	{"bad env name", "autoscaler: {actuator: {kind: local, command: [a], env: {1X: y}}}\n",
	 {"t.yaml:1:58: autoscaler.actuator.env: '1X' is not an environment variable name"}},
	{"bad api_url", "autoscaler: {actuator: {kind: kubernetes, deployment: w, api_url: \"ftp://x\"}}\n",
	 {"t.yaml:1:67: autoscaler.actuator.api_url: 'ftp://x' is not an http:// or https:// URL"}},
	{"deployment and statefulset",
	 "autoscaler: {actuator: {kind: kubernetes, deployment: w, statefulset: s}}\n",
	 {"t.yaml:1:71: autoscaler.actuator.statefulset: give 'deployment' or 'statefulset', not "
	  "both"}},
	{"cwd on kubernetes", "autoscaler: {actuator: {kind: kubernetes, deployment: w, cwd: /x}}\n",
	 {"t.yaml:1:63: autoscaler.actuator.cwd: is only used by kind local or exec"}},
	{"memory lease_ttl", "memory: {capacity: 1GiB, lease_ttl: 0s}\n",
	 {"t.yaml:1:37: memory.lease_ttl: 0s is outside 1s..24h"}},

	/* YAML features */
	{"unknown alias", "log: *nope\n",
	 {"t.yaml:1:6: alias '*nope' refers to no anchor defined before it"}},
	{"unsupported tag", "state_dir: !secret x\n",
	 {"t.yaml:1:20: the tag '!secret' is not supported here; remove it"}},
	{"alias bomb", "a: &a [1,2,3,4,5,6,7,8,9,10]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
		       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
		       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
	 {"t.yaml:1:1: aliases expand the document to more than 100000 nodes"}},

	/* several problems at once, reported in document order although
	 * budgets are read first */
	{"many problems",
	 "listen: 127.0.0.1\n"
	 "log: {level: loud}\n"
	 "limits: {max_body: 1XB}\n"
	 "budgets:\n"
	 "  b:\n"
	 "    limits: {requests: {limit: 0, per: 1m}}\n"
	 "    target_utilization: 0.5\n"
	 "bogus: 1\n",
	 {"t.yaml:1:9: listen: '127.0.0.1' has no port",
	  "t.yaml:2:14: log.level: 'loud' is not accepted",
	  "t.yaml:3:20: limits.max_body: '1XB' is not a size",
	  "t.yaml:6:32: budgets.b.limits.requests.limit: 0 is outside 1..1000000000000000",
	  "t.yaml:7:25: budgets.b.target_utilization: 0.5 is outside 0.85..0.95",
	  "t.yaml:8:1: bogus: unknown key 'bogus'"}},
};

static void check_bad_case(const struct bad_case *bc)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = (struct bl_config *)&d; /* must stay untouched */
	size_t n_expect = 0;
	int err;

	while (n_expect < MAX_EXPECT && bc->expect[n_expect])
		n_expect++;
	err = bl_config_load_string(bc->yaml, strlen(bc->yaml), "t.yaml", &cfg, &d);
	if (err != BL_EINVAL || d.n != n_expect) {
		fprintf(stderr, "bad case '%s': err %s, %zu diagnostics (expected %zu):\n", bc->name,
			bl_errname(err), d.n, n_expect);
		dump_diags(&d);
	}
	assert_int_equal(err, BL_EINVAL);
	assert_ptr_equal(cfg, (struct bl_config *)&d);
	assert_int_equal(d.n, n_expect);
	for (size_t i = 0; i < n_expect; i++) {
		char line[1024];

		format_diag(&d.items[i], line, sizeof line);
		if (strncmp(line, bc->expect[i], strlen(bc->expect[i])) != 0)
			fprintf(stderr, "bad case '%s', diagnostic %zu:\n  got      %s\n  expected %s\n",
				bc->name, i, line, bc->expect[i]);
		assert_int_equal(strncmp(line, bc->expect[i], strlen(bc->expect[i])), 0);
	}
	bl_diags_cleanup(&d);
}

static void test_bad_cases(void **state)
{
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++)
		check_bad_case(&bad_cases[i]);
}

/* Text with NUL bytes: len counts, not strlen. libfyaml 0.7.12 crashes on
 * this input, so the loader must refuse it before parsing. */
static void test_nul_bytes(void **state)
{
	static const char crash[] = "? t:\t\0";
	static const char inner[] = "listen: 127.0.0.1:7070\nstate_dir: a\0b\n";
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;

	assert_int_equal(bl_config_load_string(crash, sizeof crash - 1, "t.yaml", &cfg, &d),
			 BL_EINVAL);
	assert_int_equal(bl_config_load_string(inner, sizeof inner - 1, "t.yaml", &cfg, &d),
			 BL_EINVAL);
	assert_null(cfg);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.items[0].line, 1);
	assert_int_equal(d.items[0].column, 6);
	assert_int_equal(d.items[1].line, 2);
	assert_int_equal(d.items[1].column, 13);
	assert_string_equal(d.items[1].message,
			    "control character U+0000 is not allowed in YAML; remove it, or write it "
			    "as an escape inside double quotes (\"\\x00\")");
	bl_diags_cleanup(&d);
}

static void test_too_many_problems(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;
	char *yaml = malloc(300 * 16 + 1);
	size_t o = 0;

	assert_non_null(yaml);
	for (int i = 0; i < 300; i++)
		o += (size_t)sprintf(yaml + o, "bogus%d: 1\n", i);
	assert_int_equal(bl_config_load_string(yaml, o, "t.yaml", &cfg, &d), BL_EINVAL);
	assert_null(cfg);
	assert_int_equal(d.n, 201);
	assert_string_equal(d.items[200].message, "too many problems; stopping after 200");
	bl_diags_cleanup(&d);
	free(yaml);
}

static void test_diags_append_and_print(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	assert_int_equal(bl_diags_add(&d, "earlier", 0, 0, "", "kept %d", 1), 0);
	assert_int_equal(bl_config_load_string("log: {level: x}\n", 16, "a.yaml", &cfg, &d),
			 BL_EINVAL);
	assert_int_equal(bl_config_load_string("", 0, NULL, &cfg, &d), BL_EINVAL);
	assert_int_equal(d.n, 3);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	bl_diags_print(&d, f);
	fclose(f);
	assert_string_equal(text,
			    "earlier: kept 1\n"
			    "a.yaml:1:14: log.level: 'x' is not accepted; expected one of debug, "
			    "info, warn, error\n"
			    "<string>:1:1: the document is empty; expected a map of settings such "
			    "as listen: 127.0.0.1:7070\n");
	free(text);
	bl_diags_cleanup(&d);
	assert_int_equal(d.n, 0);
	bl_diags_cleanup(&d); /* reusable, idempotent */

	/* Without diags the verdict still comes back. */
	assert_int_equal(bl_config_load_string("x: 1\n", 5, "t", &cfg, NULL), BL_EINVAL);
	assert_null(cfg);
}

static void test_load_file_errors(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL;

	assert_int_equal(bl_config_load_file("/nonexistent/ballast.yaml", &cfg, &d), BL_EIO);
	assert_null(cfg);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.items[0].file, "/nonexistent/ballast.yaml");
	assert_int_equal(d.items[0].line, 0);
	assert_string_equal(d.items[0].message, "cannot open: No such file or directory");
	bl_diags_cleanup(&d);

	/* A directory opens but cannot be read. */
	assert_int_equal(bl_config_load_file("/", &cfg, &d), BL_EIO);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.items[0].message, "cannot read"));
	bl_diags_cleanup(&d);
}

static void test_set_listen(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = load_ok("listen: 127.0.0.1:7070\n");

	assert_int_equal(bl_config_set_listen(cfg, "[::1]:0", &d), 0);
	assert_string_equal(cfg->listen, "[::1]:0");
	assert_string_equal(cfg->listen_host, "::1");
	assert_int_equal(cfg->listen_port, 0);
	assert_int_equal(bl_config_set_listen(cfg, "0.0.0.0", &d), BL_EINVAL);
	assert_string_equal(cfg->listen, "[::1]:0");
	assert_int_equal(d.n, 1);
	assert_string_equal(d.items[0].file, "--listen");
	assert_string_equal(d.items[0].path, "listen");
	assert_int_equal(bl_config_set_listen(cfg, "1.2.3.4:65536", NULL), BL_EINVAL);
	bl_diags_cleanup(&d);
	bl_config_destroy(cfg);
}

static void test_names(void **state)
{
	assert_string_equal(bl_cfg_dim_name(BL_CFG_DIM_INPUT_TOKENS), "input_tokens");
	assert_string_equal(bl_cfg_dim_name(BL_CFG_DIM_COUNT), "unknown");
	assert_string_equal(bl_cfg_strategy_name(BL_STRATEGY_CONSISTENT_HASH), "consistent_hash");
	assert_string_equal(bl_cfg_actuator_name(BL_ACTUATOR_NONE), "none");
	assert_string_equal(bl_cfg_actuator_name(BL_ACTUATOR_KUBERNETES), "kubernetes");
	bl_config_destroy(NULL);
	assert_null(bl_config_to_json(NULL, true));
	assert_null(bl_config_budget(NULL, "x"));
}

/* ---- JSON --------------------------------------------------------------- */

static void test_json_round_trip(void **state)
{
	struct bl_diags d = {0};
	struct bl_config *cfg = NULL, *again = NULL;
	json_t *j1, *j2;
	char path[1024], *text;

	example_path(path, sizeof path);
	assert_int_equal(bl_config_load_file(path, &cfg, &d), 0);
	j1 = bl_config_to_json(cfg, false);
	assert_non_null(j1);
	assert_string_equal(json_string_value(json_object_get(j1, "listen")), "127.0.0.1:7070");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j1, "limits"),
							      "max_body")),
			    "64KiB");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j1, "snapshot"),
							      "interval")),
			    "5s");
	/* JSON is YAML: the effective config loads back to the same config. */
	text = json_dumps(j1, JSON_COMPACT);
	assert_non_null(text);
	if (bl_config_load_string(text, strlen(text), "json", &again, &d) != 0)
		dump_diags(&d);
	assert_non_null(again);
	j2 = bl_config_to_json(again, false);
	assert_true(json_equal(j1, j2));
	free(text);
	json_decref(j1);
	json_decref(j2);
	bl_config_destroy(again);

	/* The defaults round-trip too, sections absent included. */
	bl_config_destroy(cfg);
	cfg = load_ok("listen: 127.0.0.1:7070\n");
	j1 = bl_config_to_json(cfg, true);
	assert_true(json_is_null(json_object_get(j1, "memory")));
	assert_true(json_is_null(json_object_get(j1, "autoscaler")));
	assert_true(json_is_null(json_object_get(json_object_get(j1, "auth"), "token_file")));
	text = json_dumps(j1, JSON_COMPACT);
	again = load_ok(text);
	j2 = bl_config_to_json(again, true);
	assert_true(json_equal(j1, j2));
	free(text);
	json_decref(j1);
	json_decref(j2);
	bl_config_destroy(again);
	bl_config_destroy(cfg);
	bl_diags_cleanup(&d);
}

static void test_json_redaction(void **state)
{
	struct bl_config *cfg = load_ok(
		"pools:\n  p:\n    backends:\n"
		"      - {name: a, url: \"https://user:s3cret@api.example.com/v1?x=1\",\n"
		"         metrics_url: \"http://tok@10.0.0.5:8000/metrics\"}\n"
		"      - {name: b, url: \"http://h/a@b\"}\n");
	json_t *j, *b0, *b1;
	char *s;

	j = bl_config_to_json(cfg, true);
	assert_non_null(j);
	b0 = json_array_get(json_object_get(json_object_get(json_object_get(j, "pools"), "p"),
					    "backends"),
			    0);
	b1 = json_array_get(json_object_get(json_object_get(json_object_get(j, "pools"), "p"),
					    "backends"),
			    1);
	assert_string_equal(json_string_value(json_object_get(b0, "url")),
			    "https://<redacted>@api.example.com/v1?x=1");
	assert_string_equal(json_string_value(json_object_get(b0, "metrics_url")),
			    "http://<redacted>@10.0.0.5:8000/metrics");
	/* An '@' in the path is not a credential. */
	assert_string_equal(json_string_value(json_object_get(b1, "url")), "http://h/a@b");
	s = json_dumps(j, 0);
	assert_null(strstr(s, "s3cret"));
	free(s);
	json_decref(j);

	j = bl_config_to_json(cfg, false);
	b0 = json_array_get(json_object_get(json_object_get(json_object_get(j, "pools"), "p"),
					    "backends"),
			    0);
	assert_string_equal(json_string_value(json_object_get(b0, "url")),
			    "https://user:s3cret@api.example.com/v1?x=1");
	json_decref(j);
	bl_config_destroy(cfg);

	s = bl_config_redact_url("not a url @ all");
	assert_string_equal(s, "not a url @ all");
	free(s);
}

/* ---- allocation failures ------------------------------------------------ */

static void test_alloc_failures_load(void **state)
{
	char path[1024], *text;
	long n;
	bool succeeded = false;

	example_path(path, sizeof path);
	text = read_text(path);
	for (n = 0; n < 100000 && !succeeded; n++) {
		struct bl_diags d = {0};
		struct bl_config *cfg = NULL;
		int err;

		assert_int_equal(bl_diags_add(&d, "before", 0, 0, "", "kept"), 0);
		fail_hits = 0;
		fail_countdown = n;
		err = bl_config_load_string(text, strlen(text), "example", &cfg, &d);
		fail_countdown = -1;
		if (fail_hits == 0) {
			assert_int_equal(err, 0);
			succeeded = true;
		} else {
			/* libfyaml's own allocations are not injected, so only ours fail here. */
			assert_int_equal(err, BL_ENOMEM);
			assert_null(cfg);
			assert_int_equal(d.n, 1); /* as it was */
		}
		bl_config_destroy(cfg);
		bl_diags_cleanup(&d);
	}
	assert_true(succeeded);
	assert_true(n > 50); /* the example takes many allocations: all were tried */
	free(text);
}

static void test_alloc_failures_invalid(void **state)
{
	/* The error path allocates diagnostics: those failures must be clean too. */
	static const char yaml[] = "listen: 1\nlog: {level: x, bogus: 1}\nbudgets: {b: {}}\n";
	bool succeeded = false;

	for (long n = 0; n < 10000 && !succeeded; n++) {
		struct bl_diags d = {0};
		struct bl_config *cfg = NULL;
		int err;

		fail_hits = 0;
		fail_countdown = n;
		err = bl_config_load_string(yaml, sizeof yaml - 1, "bad", &cfg, &d);
		fail_countdown = -1;
		assert_null(cfg);
		if (fail_hits == 0) {
			assert_int_equal(err, BL_EINVAL);
			assert_int_equal(d.n, 4);
			succeeded = true;
		} else {
			assert_int_equal(err, BL_ENOMEM);
			assert_int_equal(d.n, 0);
		}
		bl_diags_cleanup(&d);
	}
	assert_true(succeeded);
}

static void test_alloc_failures_json(void **state)
{
	struct bl_config *cfg = NULL;
	char path[1024];
	bool succeeded = false;
	long n;

	example_path(path, sizeof path);
	assert_int_equal(bl_config_load_file(path, &cfg, NULL), 0);
	for (n = 0; n < 100000 && !succeeded; n++) {
		json_t *j;

		json_set_alloc_funcs(json_fail_malloc, free);
		fail_hits = 0;
		fail_countdown = n;
		j = bl_config_to_json(cfg, true);
		fail_countdown = -1;
		json_set_alloc_funcs(malloc, free);
		if (fail_hits == 0) {
			assert_non_null(j);
			succeeded = true;
		} else {
			assert_null(j);
		}
		json_decref(j);
	}
	assert_true(succeeded);
	assert_true(n > 100);
	bl_config_destroy(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_config_loads),
		cmocka_unit_test(test_example_loads),
		cmocka_unit_test(test_defaults_filled),
		cmocka_unit_test(test_absent_sections),
		cmocka_unit_test(test_good_cases),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_bad_cases),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_too_many_problems),
		cmocka_unit_test(test_diags_append_and_print),
		cmocka_unit_test(test_load_file_errors),
		cmocka_unit_test(test_set_listen),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_redaction),
		cmocka_unit_test(test_alloc_failures_load),
		cmocka_unit_test(test_alloc_failures_invalid),
		cmocka_unit_test(test_alloc_failures_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
