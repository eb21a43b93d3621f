/* Unit tests for the simulator's engine and scenario loader (src/sim):
 * determinism (the same seed gives byte-identical reports), conservation
 * (every task ends exactly once: done, failed or dropped), the ballast
 * policy drawing no provider 429 on a steady scenario, and the loader's
 * file:line:column messages, for its own sections and for the policy blocks
 * the daemon's loader reads. Runs are short: simulated time is cheap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ballast/error.h"
#include "report.h"
#include "scenario.h"
#include "sim.h"

/* A small steady scenario: demand about 80 % of the input-token limit. */
static const char steady[] =
	"name: unit-steady\n"
	"duration: 20m\n"
	"fleet:\n"
	"  replicas: 6\n"
	"  startup: {dist: lognormal, median: 10s, p99: 30s}\n"
	"  tasks_per_worker: 4\n"
	"workload:\n"
	"  arrivals: {kind: poisson, rate: 1/s}\n"
	"  task:\n"
	"    cpu: {dist: lognormal, median: 3s, p99: 10s}\n"
	"    calls: 2\n"
	"    input_tokens: {dist: lognormal, median: 2000, p99: 6000, max: 9000}\n"
	"    output_tokens: {dist: lognormal, median: 300, p99: 1000}\n"
	"    max_tokens: 1000\n"
	"providers:\n"
	"  p:\n"
	"    window: sliding_window\n"
	"    limits:\n"
	"      requests: {limit: 1000, per: 1m}\n"
	"      input_tokens: {limit: 360000, per: 1m}\n"
	"      output_tokens: {limit: 200000, per: 1m}\n"
	"    latency: {dist: lognormal, median: 500ms, p99: 3s}\n"
	"    per_output_token: 5ms\n"
	"budgets:\n"
	"  p:\n"
	"    limits:\n"
	"      requests: {limit: 1000, per: 1m}\n"
	"      input_tokens: {limit: 360000, per: 1m}\n"
	"      output_tokens: {limit: 200000, per: 1m}\n"
	"autoscaler:\n"
	"  min_replicas: 2\n"
	"  max_replicas: 30\n"
	"  budget: p\n";

/* Everything at once, and more demand than the quota: a burst, an outage
 * with errors, memory that can OOM a worker, a short queue and max_wait,
 * tenants, and a drain too short for what is left. */
static const char rough[] =
	"name: unit-rough\n"
	"duration: 15m\n"
	"drain: 20s\n"
	"fleet:\n"
	"  replicas: 3\n"
	"  startup: 15s\n"
	"  tasks_per_worker: 6\n"
	"  memory: 1GiB\n"
	"  base_memory: 200MiB\n"
	"workload:\n"
	"  arrivals:\n"
	"    kind: constant\n"
	"    rate: 90/m\n"
	"    bursts: [{at: 5m, for: 30s, factor: 10}]\n"
	"  task:\n"
	"    cpu: {dist: exponential, mean: 2s}\n"
	"    memory: {dist: lognormal, median: 120MiB, p99: 600MiB}\n"
	"    calls: {dist: uniform, low: 1, high: 4}\n"
	"    input_tokens: {dist: lognormal, median: 3000, p99: 20000}\n"
	"    output_tokens: {dist: exponential, mean: 400}\n"
	"  max_queue: 200\n"
	"  max_wait: 2m\n"
	"  slo: 1m\n"
	"  tenants:\n"
	"    - {name: interactive, share: 1, priority: high}\n"
	"    - {name: batch, share: 3, priority: low}\n"
	"providers:\n"
	"  p:\n"
	"    window: fixed_window\n"
	"    limits:\n"
	"      requests: {limit: 120, per: 1m}\n"
	"      input_tokens: {limit: 200000, per: 1m}\n"
	"      concurrent: 20\n"
	"    latency: {dist: lognormal, median: 1s, p99: 8s}\n"
	"    error_rate: 0.02\n"
	"    outages: [{at: 8m, for: 1m}]\n"
	"baselines:\n"
	"  retry: {base: 500ms, max: 20s, attempts: 4, error_attempts: 2}\n"
	"budgets:\n"
	"  p:\n"
	"    limits:\n"
	"      requests: {limit: 120, per: 1m}\n"
	"      input_tokens: {limit: 200000, per: 1m}\n"
	"      concurrent: 20\n"
	"    max_queue: 50\n"
	"    tenants: {interactive: {weight: 4}, batch: {weight: 1}}\n"
	"memory:\n"
	"  capacity: auto\n"
	"autoscaler:\n"
	"  min_replicas: 2\n"
	"  max_replicas: 12\n"
	"  targets: {inflight_per_replica: 4, queue_per_replica: 10}\n"
	"  budget: p\n";

/* A pool of two backends: one with its own budget, one without, a strict
 * provider under both, an outage on the second. Mixed paths at once. */
static const char pooled[] =
	"name: unit-pooled\n"
	"duration: 10m\n"
	"fleet: {replicas: 4, startup: 10s, tasks_per_worker: 4}\n"
	"workload:\n"
	"  arrivals: {kind: poisson, rate: 2/s, bursts: [{at: 3m, for: 20s, factor: 5}]}\n"
	"  task: {cpu: 1s, calls: 2, input_tokens: {dist: exponential, mean: 2000},\n"
	"         output_tokens: 200, max_tokens: 400}\n"
	"  pool: llm\n"
	"providers:\n"
	"  p:\n"
	"    window: sliding_window\n"
	"    limits: {requests: {limit: 90, per: 1m}, input_tokens: {limit: 150000, per: 1m}}\n"
	"    latency: {dist: lognormal, median: 500ms, p99: 3s}\n"
	"backends:\n"
	"  a: {provider: p}\n"
	"  b: {provider: p, outages: [{at: 5m, for: 2m}]}\n"
	"budgets:\n"
	"  a: {limits: {requests: {limit: 90, per: 1m}, input_tokens: {limit: 150000, per: 1m}}}\n"
	"pools:\n"
	"  llm:\n"
	"    strategy: p2c\n"
	"    backends: [{name: a, url: \"http://a\", budget: a}, {name: b, url: \"http://b\"}]\n"
	"    breaker: {min_calls: 5, consecutive_failures: 3, open_for: 10s}\n"
	"autoscaler: {min_replicas: 2, max_replicas: 20}\n";

static struct bl_scenario *load(const char *text)
{
	struct bl_scenario *sc = NULL;
	struct bl_diags d = {0};
	int rc = bl_scenario_load_string(text, strlen(text), "unit.yaml", &sc, &d);

	if (rc)
		bl_diags_print(&d, stderr);
	assert_int_equal(rc, 0);
	bl_diags_cleanup(&d);
	return sc;
}

/* Runs every policy and returns summary.json as a string (the caller frees). */
static char *run_all(const struct bl_scenario *sc, uint64_t seed, struct bl_sim_result *res)
{
	struct bl_sim_options o = {.seed = seed};
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	for (int p = 0; p < BL_SIM_POLICY_COUNT; p++) {
		char err[256] = "";
		int rc = bl_sim_run(sc, (enum bl_sim_policy)p, &o, &res[p], err, sizeof err);

		if (rc)
			fprintf(stderr, "%s: %s\n", bl_sim_policy_name((enum bl_sim_policy)p), err);
		assert_int_equal(rc, 0);
	}
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	bl_sim_write_summary(f, sc, seed, sc->duration_ns, res, BL_SIM_POLICY_COUNT);
	bl_sim_write_timeseries(f, res, BL_SIM_POLICY_COUNT);
	fclose(f);
	return buf;
}

static void cleanup_all(struct bl_sim_result *res)
{
	for (int p = 0; p < BL_SIM_POLICY_COUNT; p++)
		bl_sim_result_cleanup(&res[p]);
}

static void test_deterministic(void **state)
{
	struct bl_scenario *sc = load(rough);
	struct bl_sim_result a[BL_SIM_POLICY_COUNT], b[BL_SIM_POLICY_COUNT];
	char *x = run_all(sc, 42, a), *y = run_all(sc, 42, b), *z;

	assert_string_equal(x, y);
	cleanup_all(b);
	z = run_all(sc, 43, b);
	assert_string_not_equal(x, z);
	/* The arrivals are the policies' common ground: the same count for all. */
	for (int p = 1; p < BL_SIM_POLICY_COUNT; p++)
		assert_int_equal(a[p].tasks_total, a[0].tasks_total);
	free(x);
	free(y);
	free(z);
	cleanup_all(a);
	cleanup_all(b);
	bl_scenario_destroy(sc);
}

static void check_conservation(const char *text, uint64_t seed)
{
	struct bl_scenario *sc = load(text);
	struct bl_sim_result r[BL_SIM_POLICY_COUNT];
	char *x = run_all(sc, seed, r);

	for (int p = 0; p < BL_SIM_POLICY_COUNT; p++) {
		assert_true(r[p].tasks_total > 0);
		assert_int_equal(r[p].tasks_done + r[p].tasks_failed + r[p].tasks_dropped,
				 r[p].tasks_total);
		assert_true(r[p].tasks_in_slo <= r[p].tasks_done);
	}
	free(x);
	cleanup_all(r);
	bl_scenario_destroy(sc);
}

static void test_conservation(void **state)
{
	check_conservation(steady, 1);
	for (uint64_t seed = 1; seed <= 4; seed++) {
		check_conservation(rough, seed);
		check_conservation(pooled, seed);
	}
}

/* The rough scenario does what it says: bursts, 429s for the baselines,
 * errors, OOM kills without memory admission, none with it. */
static void test_rough_story(void **state)
{
	struct bl_scenario *sc = load(rough);
	struct bl_sim_result r[BL_SIM_POLICY_COUNT];
	char *x = run_all(sc, 5, r);

	assert_true(r[BL_SIM_HPA].provider_429s > 0);
	assert_true(r[BL_SIM_STATIC].provider_429s > 0);
	assert_true(r[BL_SIM_BALLAST].provider_errors > 0);
	assert_int_equal(r[BL_SIM_BALLAST].oom_kills, 0);
	assert_true(r[BL_SIM_BALLAST].memory_peak_fraction <= 1.0);
	assert_true(r[BL_SIM_STATIC].oom_kills > 0);
	assert_true(r[BL_SIM_BALLAST].tasks_dropped > 0);
	free(x);
	cleanup_all(r);
	bl_scenario_destroy(sc);
}

/* In the pool, the backend with a budget never draws a 429 under ballast;
 * the one without backs off instead of retrying at one instant; the breaker
 * keeps ballast's calls out of b's outage. */
static void test_pooled_story(void **state)
{
	struct bl_scenario *sc = load(pooled);
	struct bl_sim_result r[BL_SIM_POLICY_COUNT];
	char *x = run_all(sc, 2, r);

	assert_true(r[BL_SIM_BALLAST].provider_errors < r[BL_SIM_HPA].provider_errors / 4);
	assert_true(r[BL_SIM_BALLAST].tasks_failed < r[BL_SIM_HPA].tasks_failed);
	assert_true(r[BL_SIM_BALLAST].events < 20 * r[BL_SIM_BALLAST].tasks_total);
	free(x);
	cleanup_all(r);
	bl_scenario_destroy(sc);
}

static void test_ballast_no_429s(void **state)
{
	struct bl_scenario *sc = load(steady);
	struct bl_sim_result r[BL_SIM_POLICY_COUNT];
	char *x = run_all(sc, 3, r);

	assert_int_equal(r[BL_SIM_BALLAST].provider_429s, 0);
	assert_int_equal(r[BL_SIM_BALLAST].tasks_done, r[BL_SIM_BALLAST].tasks_total);
	assert_true(r[BL_SIM_BALLAST].replica_seconds > 0);
	assert_true(r[BL_SIM_STATIC].scale_events == 0);
	free(x);
	cleanup_all(r);
	bl_scenario_destroy(sc);
}

/* Loads text, expects it to fail with a message containing want. */
static void expect_error(const char *text, const char *want)
{
	struct bl_scenario *sc = NULL;
	struct bl_diags d = {0};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_int_not_equal(bl_scenario_load_string(text, strlen(text), "s.yaml", &sc, &d), 0);
	assert_null(sc);
	bl_diags_print(&d, f);
	fclose(f);
	if (!strstr(buf, want))
		fprintf(stderr, "expected '%s' in:\n%s", want, buf);
	assert_non_null(strstr(buf, want));
	free(buf);
	bl_diags_cleanup(&d);
}

static void test_loader_errors(void **state)
{
	static const char base[] = "workload:\n"
				   "  arrivals: {kind: poisson, rate: 2/s}\n"
				   "providers:\n"
				   "  p: {limits: {requests: {limit: 10, per: 1m}}}\n";
	char text[2048];

	/* A scenario key. */
	snprintf(text, sizeof text, "%sfleet:\n  replicas: lots\n", base);
	expect_error(text, "s.yaml:6:13: fleet.replicas: expected a whole number in 1..10000, "
			   "got 'lots'");
	snprintf(text, sizeof text, "%sfleet:\n  replica: 3\n", base);
	expect_error(text, "s.yaml:6:3: fleet: unknown key 'replica'; accepted here: replicas,");
	/* A distribution. */
	snprintf(text, sizeof text, "%sfleet:\n  startup: {dist: gamma, mean: 3s}\n", base);
	expect_error(text, "s.yaml:6:19: fleet.startup.dist: 'gamma' is not accepted; expected one "
			   "of constant, uniform, exponential, lognormal");
	/* A policy block: the daemon's loader, at the scenario's line and column. */
	snprintf(text, sizeof text, "%sbudgets:\n  p:\n    target_utilization: 1.2\n", base);
	expect_error(text, "s.yaml:7:25: budgets.p.target_utilization: 1.2 is outside 0.85..0.95");
	/* Cross-references. */
	snprintf(text, sizeof text, "%s  provider: q\n", "workload:\n"
							 "  arrivals: {kind: poisson, rate: 2/s}\n");
	snprintf(text + strlen(text), sizeof text - strlen(text),
		 "providers:\n  p: {limits: {requests: {limit: 10, per: 1m}}}\n");
	expect_error(text, "s.yaml:3:13: workload.provider: expected the name of a provider");
	snprintf(text, sizeof text, "%sbudgetz: {}\n", base);
	expect_error(text, "s.yaml:5:1: unknown key 'budgetz'");
	expect_error("workload:\n  arrivals: {kind: trace, file: /nonexistent/x.csv}\n"
		     "providers:\n  p: {limits: {requests: {limit: 10, per: 1m}}}\n",
		     "s.yaml:2:33: workload.arrivals.file: cannot open the trace /nonexistent/x.csv");
}

/* A CSV trace: rows become arrivals with their tokens and tenants; a bad
 * row is reported at the trace's file and line. */
static void test_trace(void **state)
{
	char path[] = "/tmp/test_sim_traceXXXXXX", text[1024];
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	struct bl_scenario *sc;
	struct bl_sim_result r[BL_SIM_POLICY_COUNT];
	char *x;

	assert_non_null(f);
	fputs("# comment\ntime_s,input_tokens,output_tokens,tenant\n0.5,1000,100,a\n"
	      "1.5,2000,200\n\n2.25,3000,300,b\n", f);
	fclose(f);
	snprintf(text, sizeof text,
		 "duration: 1m\n"
		 "workload:\n"
		 "  arrivals: {kind: trace, file: %s}\n"
		 "  tenants: [{name: a}, {name: b, priority: low}]\n"
		 "providers:\n  p: {limits: {requests: {limit: 100, per: 1m}}}\n", path);
	sc = load(text);
	assert_int_equal(sc->n_trace, 3);
	assert_int_equal(sc->trace[0].at_ns, 500 * BL_NS_PER_MS);
	assert_int_equal(sc->trace[1].input_tokens, 2000);
	assert_int_equal(sc->trace[1].tenant, -1);
	assert_int_equal(sc->trace[2].tenant, 1);
	x = run_all(sc, 1, r);
	for (int p = 0; p < BL_SIM_POLICY_COUNT; p++) {
		assert_int_equal(r[p].tasks_total, 3);
		assert_int_equal(r[p].tenants[0].tasks_total, 1);
		assert_int_equal(r[p].tenants[1].tasks_total, 1);
	}
	assert_non_null(strstr(x, "\"tenants\": {"));
	free(x);
	cleanup_all(r);
	bl_scenario_destroy(sc);
	/* Time going back on line 4. */
	f = fopen(path, "w");
	fputs("0,1,1\n5,1,1\n6,1,1\n4,1,1\n", f);
	fclose(f);
	{
		char want[128];

		snprintf(want, sizeof want, "%s:4:1: expected time_s,input_tokens,output_tokens", path);
		expect_error(text, want);
	}
	unlink(path);
}

/* The rate and burst arithmetic arrivals use. */
static void test_rate_factor(void **state)
{
	static const char text[] = "workload:\n"
				   "  arrivals:\n"
				   "    kind: diurnal\n"
				   "    rate: 10/s\n"
				   "    peak: 12h\n"
				   "    low: 0.2\n"
				   "    bursts: [{at: 1h, for: 30s, factor: 10}]\n"
				   "providers:\n  p: {limits: {requests: {limit: 10, per: 1m}}}\n";
	struct bl_scenario *sc = load(text);
	const int64_t h = 3600 * BL_NS_PER_S;

	assert_true(sc->rate_per_s == 10.0);
	assert_true(bl_scenario_rate_factor(sc, 12 * h) > 0.999999);
	assert_true(bl_scenario_rate_factor(sc, 0) < 0.200001);
	assert_true(bl_scenario_rate_factor(sc, 0) > 0.199999);
	assert_true(bl_scenario_rate_factor(sc, h + 10 * BL_NS_PER_S) > 10 * 0.2);
	assert_true(bl_scenario_rate_factor_max(sc) == 10.0);
	bl_scenario_destroy(sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_conservation),
		cmocka_unit_test(test_rough_story),
		cmocka_unit_test(test_ballast_no_429s),
		cmocka_unit_test(test_pooled_story),
		cmocka_unit_test(test_loader_errors),
		cmocka_unit_test(test_rate_factor),
		cmocka_unit_test(test_trace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
