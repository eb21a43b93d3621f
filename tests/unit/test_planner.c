/* Unit tests for the autoscaling planner (planner.h).
 *
 * Table-driven cases, each worked out by hand in its comment, for the
 * Kubernetes replica calculation (pod grouping, missing / unready / failed /
 * deleting / pending pods, the cpu initialization period and readiness delay,
 * both tolerances, the re-check after the fill-in, bands), the average-value
 * targets, the demand window and burst mode, the behaviors, the budget cap
 * and the whole plan with its reason; then allocation failures, a 10 000-pod
 * pool and a property test over random plans.
 *
 * Defaults unless a case says otherwise: tolerance 0.1 both ways, cpu
 * initialization 300 s, readiness delay 30 s. A POD() started 600 s ago and
 * became ready 590 s ago: past the initialization period, ready, so its
 * sample counts whatever its timestamp.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/planner.h"

#include "alloc_hook_test.h"

#define S BL_NS_PER_S
#define NOW (1000 * S) /* the history's clock in plan cases */

/* ---- building inputs --------------------------------------------------------- */

#define PODX(n, req, ph, rd, start, tr)                                                        \
	{ .name = (n), .phase = BL_PLANNER_POD_##ph, .ready = BL_PLANNER_READY_##rd,          \
	  .has_start_time = true, .start_time_s = (start), .has_ready_transition = true,     \
	  .ready_transition_s = (tr), .has_request = true, .request = (req) }
#define POD(n, req) PODX(n, req, RUNNING, TRUE, -600, -590)
#define SAMPLE_AT(n, u, ts, win) \
	{ .pod = (n), .usage = (u), .has_timestamp = true, .timestamp_s = (ts), .window_s = (win) }
#define SAMPLE(n, u) SAMPLE_AT(n, u, -5, 30)

#define PODS(...)                                      \
	(const struct bl_planner_pod[]){ __VA_ARGS__ }, \
	sizeof((const struct bl_planner_pod[]){ __VA_ARGS__ }) / sizeof(struct bl_planner_pod)
#define USAGE(...)                                       \
	(const struct bl_planner_usage[]){ __VA_ARGS__ }, \
	sizeof((const struct bl_planner_usage[]){ __VA_ARGS__ }) / sizeof(struct bl_planner_usage)
#define NO_USAGE NULL, 0

#define TGT(v) { .value = (v) }
#define BAND(lo, hi) { .band = true, .low = (lo), .high = (hi) }

static struct bl_planner_hpa_options hpa_opts(double up, double down)
{
	struct bl_planner_hpa_options o = { { up, down }, 300, 30 };

	return o;
}

static void assert_contains(const char *s, const char *want)
{
	if (!strstr(s, want))
		fail_msg("\"%s\"\n  does not contain \"%s\"", s, want);
}

/* ---- utilization: the Kubernetes table ------------------------------------------ */

struct rcase {
	const char *what;
	enum bl_planner_resource res;
	struct bl_planner_target target;
	double up, down;
	int32_t current;
	const struct bl_planner_pod *pods;
	size_t np;
	const struct bl_planner_usage *usage;
	size_t nu;
	int32_t replicas;
	int32_t util;
	int64_t raw;
	enum bl_planner_outcome outcome;
};

static void test_resource_table(void **state)
{
	const struct rcase rows[] = {
		/* The issue's example: 3 pods at 1000m of 2000m, target 30 %.
		 * util = 3000 x 100 / 6000 = 50, ratio = 50/30 = 1.6667 (float64
		 * 1.66666666666666674), x 3 ready = 5.0000000000000002 rounds
		 * to 5.0 in float64, ceil 5. raw = 3000/3 = 1000. */
		{ "issue example", BL_PLANNER_CPU, TGT(30), 0.1, 0.1, 3,
		  PODS(POD("p0", 2000), POD("p1", 2000), POD("p2", 2000)),
		  USAGE(SAMPLE("p0", 1000), SAMPLE("p1", 1000), SAMPLE("p2", 1000)),
		  5, 50, 1000, BL_PLANNER_SCALE },
		/* One pod at 600m of 2000m = 30 % = the target: ratio 1.0,
		 * within tolerance, keep 3. */
		{ "at target", BL_PLANNER_CPU, TGT(30), 0.1, 0.1, 3,
		  PODS(POD("p0", 2000)), USAGE(SAMPLE("p0", 600)), 3, 30, 600, BL_PLANNER_WITHIN },
		/* 4 x 200/1000 = 20 %, ratio 0.4, ceil(0.4 x 4 = 1.6) = 2. */
		{ "scale down", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 200), SAMPLE("b", 200), SAMPLE("c", 200), SAMPLE("d", 200)),
		  2, 20, 200, BL_PLANNER_SCALE },
		/* 55 % of 50: ratio 55/50 = 1.1 is the same float64 as 1 + 0.1:
		 * within (the bound is inclusive), keep 4. */
		{ "tolerance up bound", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 550), SAMPLE("b", 550), SAMPLE("c", 550), SAMPLE("d", 550)),
		  4, 55, 550, BL_PLANNER_WITHIN },
		/* 56 %: 1.12 > 1.1, ceil(1.12 x 4 = 4.48) = 5. */
		{ "just over tolerance", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 560), SAMPLE("b", 560), SAMPLE("c", 560), SAMPLE("d", 560)),
		  5, 56, 560, BL_PLANNER_SCALE },
		/* 45 %: 0.9 >= 1 - 0.1, within, keep 4. */
		{ "tolerance down bound", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 450), SAMPLE("b", 450), SAMPLE("c", 450), SAMPLE("d", 450)),
		  4, 45, 450, BL_PLANNER_WITHIN },
		/* 44 %: 0.88 is out, but ceil(0.88 x 4 = 3.52) = 4: a "scale"
		 * that lands on the current count. */
		{ "out of tolerance, same count", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 440), SAMPLE("b", 440), SAMPLE("c", 440), SAMPLE("d", 440)),
		  4, 44, 440, BL_PLANNER_SCALE },
		/* Separate tolerances up 0.05 / down 0.3. 54 %: 1.08 > 1.05,
		 * ceil(4.32) = 5. */
		{ "up tolerance 0.05", BL_PLANNER_CPU, TGT(50), 0.05, 0.3, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 540), SAMPLE("b", 540), SAMPLE("c", 540), SAMPLE("d", 540)),
		  5, 54, 540, BL_PLANNER_SCALE },
		/* 36 %: 0.72 >= 0.7, within the wide down tolerance, keep 4. */
		{ "down tolerance 0.3 within", BL_PLANNER_CPU, TGT(50), 0.05, 0.3, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 360), SAMPLE("b", 360), SAMPLE("c", 360), SAMPLE("d", 360)),
		  4, 36, 360, BL_PLANNER_WITHIN },
		/* 34 %: 0.68 < 0.7, ceil(0.68 x 4 = 2.72) = 3. */
		{ "down tolerance 0.3 out", BL_PLANNER_CPU, TGT(50), 0.05, 0.3, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 340), SAMPLE("b", 340), SAMPLE("c", 340), SAMPLE("d", 340)),
		  3, 34, 340, BL_PLANNER_SCALE },
		/* Truncation matters: 100/300 = 33 % (not 33.3), 33/30 = 1.1
		 * exactly the bound: within, keep 3. With the exact 33.3 % it
		 * would have been 1.11 and a scale-up. */
		{ "truncated percentage", BL_PLANNER_CPU, TGT(30), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100)),
		  USAGE(SAMPLE("a", 34), SAMPLE("b", 33), SAMPLE("c", 33)), 3, 33, 33, BL_PLANNER_WITHIN },
		/* raw_usage truncates too: (100 + 101) / 2 = 100. util 100 %,
		 * ratio 2, ceil(2 x 2) = 4. */
		{ "raw usage truncated", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 2,
		  PODS(POD("a", 100), POD("b", 100)), USAGE(SAMPLE("a", 100), SAMPLE("b", 101)),
		  4, 100, 100, BL_PLANNER_SCALE },
		/* Missing pod on a scale-down: 3 x 40/100 = 40 %, ratio 0.8;
		 * the missing pod counts at 100 %: (120 + 100) / 400 = 55 %,
		 * 1.1, within: keep 4. Without it, ceil(0.8 x 3) = 3. */
		{ "missing, fill brings within", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), POD("m", 100)),
		  USAGE(SAMPLE("a", 40), SAMPLE("b", 40), SAMPLE("c", 40)),
		  4, 40, 40, BL_PLANNER_FILL_WITHIN },
		/* Missing pod on a scale-down, still out: 3 x 10/100 = 10 %,
		 * 0.2; with the missing pod at 100 %: 130/400 = 32 % (32.5
		 * truncated), 0.64, ceil(0.64 x 4 = 2.56) = 3. */
		{ "missing at 100 % on scale-down", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), POD("m", 100)),
		  USAGE(SAMPLE("a", 10), SAMPLE("b", 10), SAMPLE("c", 10)), 3, 10, 10, BL_PLANNER_SCALE },
		/* Missing pod on a scale-up: 100 %, ratio 2; the missing pod at
		 * 0: 300/400 = 75 %, 1.5, ceil(1.5 x 4) = 6. */
		{ "missing at 0 on scale-up", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), POD("m", 100)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("c", 100)), 6, 100, 100, BL_PLANNER_SCALE },
		/* Target above 100 %: a missing pod counts at max(100, 150) =
		 * 150 % on a scale-down. 300/300 = 100 %, 100/150 = 0.667;
		 * (300 + 150) / 400 = 112 %, 0.7467, ceil(2.987) = 3. */
		{ "missing at the target above 100 %", BL_PLANNER_CPU, TGT(150), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), POD("m", 100)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("c", 100)), 3, 100, 100, BL_PLANNER_SCALE },
		/* Target 200 %: 3 x 100 % = 0.5; the missing pod at 200 %:
		 * (300 + 200) / 400 = 125 %, 0.625, ceil(2.5) = 3 (at 100 % it
		 * would have been 100 %, 0.5, 2). */
		{ "missing at the target 200 %", BL_PLANNER_CPU, TGT(200), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), POD("m", 100)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("c", 100)), 3, 100, 100, BL_PLANNER_SCALE },
		/* Unready on a scale-up: x is not ready and became so 10 s
		 * after its start (-590 < -600 + 30): never ready, unready. The
		 * 3 others: 100 %, ratio 2; x at 0: 300/400 = 75 %, ceil(1.5 x 4)
		 * = 6. Its own sample (100) is not used. */
		{ "unready at 0 on scale-up", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), PODX("x", 100, RUNNING, FALSE, -600, -590)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("c", 100), SAMPLE("x", 100)),
		  6, 100, 100, BL_PLANNER_SCALE },
		/* Unready on a scale-down: ignored, and not counted. 3 x 30 % =
		 * 0.6, no fill: ceil(0.6 x 3 = 1.7999999999999998) = 2 (over
		 * the 4 pods it would have been 3). */
		{ "unready ignored on scale-down", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), PODX("x", 100, RUNNING, FALSE, -600, -590)),
		  USAGE(SAMPLE("a", 30), SAMPLE("b", 30), SAMPLE("c", 30), SAMPLE("x", 100)),
		  2, 30, 30, BL_PLANNER_SCALE },
		/* ... and when within tolerance it is not even filled in: 3 x
		 * 48 % = 0.96, within: keep 4 (filled at 0 it would have been
		 * 144/400 = 36 %, and 3). */
		{ "unready ignored within tolerance", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), PODX("x", 100, RUNNING, FALSE, -600, -590)),
		  USAGE(SAMPLE("a", 48), SAMPLE("b", 48), SAMPLE("c", 48), SAMPLE("x", 100)),
		  4, 48, 48, BL_PLANNER_WITHIN },
		/* Pending is unready for any resource, memory too. 2 pods at
		 * 100 %, ratio 2; the pending pod at 0: 200/300 = 66 %, 1.32,
		 * ceil(3.96) = 4. */
		{ "pending on memory", BL_PLANNER_MEMORY, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("p", 100, PENDING, FALSE, -5, -5)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100)), 4, 100, 100, BL_PLANNER_SCALE },
		/* Failed and deleting pods are ignored, samples or not, and
		 * are not missing: 2 x 100 %, ratio 2, ceil(2 x 2) = 4. */
		{ "failed and deleting ignored", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("f", 100, FAILED, FALSE, -600, -590),
		       { .name = "d", .phase = BL_PLANNER_POD_RUNNING, .ready = BL_PLANNER_READY_TRUE,
			 .deleting = true, .has_start_time = true, .start_time_s = -600,
			 .has_ready_transition = true, .ready_transition_s = -590, .has_request = true,
			 .request = 100 },
		       { .name = "d2", .phase = BL_PLANNER_POD_RUNNING, .ready = BL_PLANNER_READY_TRUE,
			 .deleting = true, .has_request = true, .request = 100 }),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("f", 0), SAMPLE("d", 0)),
		  4, 100, 100, BL_PLANNER_SCALE },
		/* A Succeeded pod is not filtered (as in Kubernetes): without a
		 * sample it is missing, at 0 on this scale-up: 200/300 = 66 %,
		 * ceil(1.32 x 3) = 4. */
		{ "succeeded pod is missing", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("s", 100, SUCCEEDED, FALSE, -600, -590)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100)), 4, 100, 100, BL_PLANNER_SCALE },
		/* cpu initialization period: x started 60 s ago (< 300 s) and
		 * is ready since 20 s ago; its sample ends 5 s ago over 30 s, so
		 * it began before x was ready (-5 < -20 + 30): unready. 2 x 150
		 * % = ratio 3; x at 0: 300/300 = 100 %, ratio 2, ceil(2 x 3) = 6. */
		{ "cpu init: sample before readiness", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, TRUE, -60, -20)),
		  USAGE(SAMPLE("a", 150), SAMPLE("b", 150), SAMPLE_AT("x", 150, -5, 30)),
		  6, 150, 150, BL_PLANNER_SCALE },
		/* Same, ready since 60 s: -5 >= -60 + 30, a whole window after
		 * readiness: it counts. 150 %, ratio 3, ceil(3 x 3) = 9. */
		{ "cpu init: sample after readiness", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, TRUE, -100, -60)),
		  USAGE(SAMPLE("a", 150), SAMPLE("b", 150), SAMPLE_AT("x", 150, -5, 30)),
		  9, 150, 150, BL_PLANNER_SCALE },
		/* Started exactly 300 s ago: start + period is not after now,
		 * so the period is over and a ready pod counts whatever its
		 * sample's timestamp: 9. Half a second later it would be in
		 * the period, its sample before readiness: 6. */
		{ "cpu init: period just over", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, TRUE, -300, -20)),
		  USAGE(SAMPLE("a", 150), SAMPLE("b", 150), SAMPLE_AT("x", 150, -5, 30)),
		  9, 150, 150, BL_PLANNER_SCALE },
		{ "cpu init: period not over", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, TRUE, -299.5, -20)),
		  USAGE(SAMPLE("a", 150), SAMPLE("b", 150), SAMPLE_AT("x", 150, -5, 30)),
		  6, 150, 150, BL_PLANNER_SCALE },
		/* Within the period a Ready condition of status Unknown is not
		 * False: x counts once its window is past (-5 >= -50 + 30).
		 * 100 % over 3, ceil(2 x 3) = 6. */
		{ "cpu init: ready Unknown counts", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, UNKNOWN, -60, -50)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE_AT("x", 100, -5, 30)),
		  6, 100, 100, BL_PLANNER_SCALE },
		/* Readiness delay, past the initialization period: x is not
		 * ready and its readiness last changed 10 s after its start
		 * (-600 + 30 > -590): it never was ready, unready. 2 x 100 %,
		 * ratio 2; x at 0: 66 %, ceil(3.96) = 4. */
		{ "readiness delay: never ready", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, FALSE, -600, -590)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("x", 100)), 4, 100, 100, BL_PLANNER_SCALE },
		/* x went unready 100 s after its start (-570 <= -500): it was
		 * ready once, so its sample counts: 100 % over 3, 6. */
		{ "readiness delay: was ready", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, FALSE, -600, -500)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("x", 100)), 6, 100, 100, BL_PLANNER_SCALE },
		/* Readiness does not matter for memory: the never-ready x of
		 * the case above counts, 6. */
		{ "memory ignores readiness", BL_PLANNER_MEMORY, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, FALSE, -600, -590)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("x", 100)), 6, 100, 100, BL_PLANNER_SCALE },
		/* No Ready condition at all: unready for cpu, 4 as above. */
		{ "no ready condition", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, NONE, -600, -590)),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("x", 100)), 4, 100, 100, BL_PLANNER_SCALE },
		/* No start time: unready for cpu, 4. */
		{ "no start time", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100),
		       { .name = "x", .phase = BL_PLANNER_POD_RUNNING, .ready = BL_PLANNER_READY_TRUE,
			 .has_ready_transition = true, .ready_transition_s = -590, .has_request = true,
			 .request = 100 }),
		  USAGE(SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("x", 100)), 4, 100, 100, BL_PLANNER_SCALE },
		/* Unset times are Kubernetes' zero time. A sample without a
		 * timestamp is before any readiness: unready, 6 (the "sample
		 * before readiness" case). */
		{ "sample without timestamp", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100), PODX("x", 100, RUNNING, TRUE, -60, -20)),
		  USAGE(SAMPLE("a", 150), SAMPLE("b", 150),
			{ .pod = "x", .usage = 150, .window_s = 30 }),
		  6, 150, 150, BL_PLANNER_SCALE },
		/* A readiness without a transition time is at the zero time:
		 * any sample is after it plus its window: x counts, 9. */
		{ "readiness without transition time", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 3,
		  PODS(POD("a", 100), POD("b", 100),
		       { .name = "x", .phase = BL_PLANNER_POD_RUNNING, .ready = BL_PLANNER_READY_TRUE,
			 .has_start_time = true, .start_time_s = -60, .has_request = true, .request = 100 }),
		  USAGE(SAMPLE("a", 150), SAMPLE("b", 150), SAMPLE_AT("x", 150, -5, 30)),
		  9, 150, 150, BL_PLANNER_SCALE },
		/* Re-check reverses the direction: 2 x 45 % = 0.9 (a scale-down
		 * by the first pass, but there are missing pods); the two
		 * missing at 100 %: (90 + 200) / 400 = 72 %, 1.44 > 1: it
		 * points up now, keep 4. */
		{ "fill reverses a scale-down", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), POD("m", 100), POD("n", 100)),
		  USAGE(SAMPLE("a", 45), SAMPLE("b", 45)), 4, 45, 45, BL_PLANNER_FILL_REVERSED },
		/* Re-check reverses a scale-up: 2 x 60 % = 1.2; two pending
		 * pods at 0: 120/400 = 30 %, 0.6 < 1, keep 4. */
		{ "fill reverses a scale-up", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 4,
		  PODS(POD("a", 100), POD("b", 100), PODX("p", 100, PENDING, FALSE, -5, -5),
		       PODX("q", 100, PENDING, FALSE, -5, -5)),
		  USAGE(SAMPLE("a", 60), SAMPLE("b", 60)), 4, 60, 60, BL_PLANNER_FILL_REVERSED },
		/* The count after the fill goes the other way: the pod list has
		 * 5 pods but the pool says 2. 3 x 5 % = 0.1; 2 missing at 100 %:
		 * 215/500 = 43 %, 0.86 (a scale-down), ceil(0.86 x 5 = 4.3) = 5
		 * > 2: keep 2. */
		{ "count reverses", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 2,
		  PODS(POD("a", 100), POD("b", 100), POD("c", 100), POD("m", 100), POD("n", 100)),
		  USAGE(SAMPLE("a", 5), SAMPLE("b", 5), SAMPLE("c", 5)), 2, 5, 5, BL_PLANNER_COUNT_REVERSED },
		/* Band 70-85 %, aiming at 77.5 %: 80 % is inside, keep 4. */
		{ "band inside", BL_PLANNER_CPU, BAND(70, 85), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 800), SAMPLE("b", 800), SAMPLE("c", 800), SAMPLE("d", 800)),
		  4, 80, 800, BL_PLANNER_WITHIN },
		/* 88 %: above, 88/77.5 = 1.1355, ceil(4.542) = 5. With a
		 * tolerance of 0.2 alone this would be within: the band
		 * replaces it. */
		{ "band above, tolerance ignored", BL_PLANNER_CPU, BAND(70, 85), 0.2, 0.2, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 880), SAMPLE("b", 880), SAMPLE("c", 880), SAMPLE("d", 880)),
		  5, 88, 880, BL_PLANNER_SCALE },
		/* 60 %: below, 60/77.5 = 0.774, ceil(3.097) = 4: removing a
		 * pod would push the rest to 80 %, but 4 stays (aiming at the
		 * middle, not the edge). */
		{ "band below, middle keeps 4", BL_PLANNER_CPU, BAND(70, 85), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 600), SAMPLE("b", 600), SAMPLE("c", 600), SAMPLE("d", 600)),
		  4, 60, 600, BL_PLANNER_SCALE },
		/* 50 %: 50/77.5 = 0.645, ceil(2.58) = 3. */
		{ "band below", BL_PLANNER_CPU, BAND(70, 85), 0.1, 0.1, 4,
		  PODS(POD("a", 1000), POD("b", 1000), POD("c", 1000), POD("d", 1000)),
		  USAGE(SAMPLE("a", 500), SAMPLE("b", 500), SAMPLE("c", 500), SAMPLE("d", 500)),
		  3, 50, 500, BL_PLANNER_SCALE },
		/* Samples for pods not in the list are ignored: a 0 for "ghost"
		 * does not lower 100 % over 2, ceil(2 x 2) = 4. */
		{ "samples of unknown pods", BL_PLANNER_CPU, TGT(50), 0.1, 0.1, 2,
		  PODS(POD("a", 100), POD("b", 100)),
		  USAGE(SAMPLE("ghost", 0), SAMPLE("a", 100), SAMPLE("b", 100)), 4, 100, 100, BL_PLANNER_SCALE },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct rcase *r = &rows[i];
		struct bl_planner_resource_metric m = { r->res, r->target, r->pods, r->np, r->usage, r->nu };
		struct bl_planner_hpa_options o = hpa_opts(r->up, r->down);
		struct bl_planner_resource_result out;
		int rc = bl_planner_resource(r->current, &m, &o, NULL, &out, err, sizeof err);

		if (rc != 0)
			fail_msg("%s: rc %d (%s)", r->what, rc, err);
		if (out.replicas != r->replicas || out.utilization_percent != r->util ||
		    out.raw_usage != r->raw || out.outcome != r->outcome)
			fail_msg("%s: got %d replicas, %d %%, raw %lld, outcome %d; want %d, %d %%, %lld, %d",
				 r->what, out.replicas, out.utilization_percent, (long long)out.raw_usage,
				 out.outcome, r->replicas, r->util, (long long)r->raw, r->outcome);
	}
}

/* The figures behind one answer: counts of each kind and the fill-in. */
static void test_resource_details(void **state)
{
	const struct bl_planner_pod pods[] = {
		POD("a", 100), POD("b", 100), POD("c", 100),          /* ready */
		PODX("x", 100, RUNNING, FALSE, -600, -590),           /* unready (never ready) */
		PODX("p", 100, PENDING, FALSE, -5, -5),               /* unready (pending) */
		POD("m", 100),                                        /* missing */
		PODX("f", 100, FAILED, FALSE, -600, -590),            /* ignored */
	};
	const struct bl_planner_usage usage[] = {
		SAMPLE("a", 100), SAMPLE("b", 100), SAMPLE("c", 100), SAMPLE("x", 100),
		SAMPLE("f", 100), SAMPLE("zz", 100),
	};
	struct bl_planner_resource_metric m = { BL_PLANNER_CPU, TGT(50), pods, 7, usage, 6 };
	struct bl_planner_hpa_options o = hpa_opts(0.1, 0.1);
	struct bl_planner_resource_result out;
	char err[256];

	(void)state;
	/* 3 ready at 100 %: ratio 2 (a scale-up). Missing m at 0, unready x
	 * and p at 0: 300/600 = 50 %, ratio 1.0: within after the fill: keep 5. */
	assert_int_equal(bl_planner_resource(5, &m, &o, NULL, &out, err, sizeof err), 0);
	assert_int_equal(out.ready_pods, 3);
	assert_int_equal(out.unready_pods, 2);
	assert_int_equal(out.missing_pods, 1);
	assert_int_equal(out.ignored_pods, 1);
	assert_int_equal(out.unmatched_samples, 1);
	assert_int_equal(out.missing_fill_percent, 0);
	assert_true(out.unready_filled);
	assert_int_equal(out.filled_pods, 6);
	assert_int_equal(out.utilization_percent, 100);
	assert_int_equal(out.new_utilization_percent, 50);
	assert_true(out.usage_ratio == 2.0);
	assert_true(out.new_usage_ratio == 1.0);
	assert_int_equal(out.outcome, BL_PLANNER_FILL_WITHIN);
	assert_int_equal(out.replicas, 5);

	/* Exactly at the target with a missing pod: ratio 1.0 is neither a
	 * scale-up nor a scale-down, so nothing is filled in, and the
	 * re-check (1.0, within) keeps the count. */
	{
		const struct bl_planner_pod p2[] = { POD("a", 100), POD("m", 100) };
		const struct bl_planner_usage u2[] = { SAMPLE("a", 50) };
		struct bl_planner_resource_metric m2 = { BL_PLANNER_CPU, TGT(50), p2, 2, u2, 1 };

		assert_int_equal(bl_planner_resource(7, &m2, &o, NULL, &out, err, sizeof err), 0);
		assert_int_equal(out.missing_fill_percent, -1);
		assert_int_equal(out.filled_pods, 1);
		assert_int_equal(out.outcome, BL_PLANNER_FILL_WITHIN);
		assert_int_equal(out.replicas, 7);
	}
	/* NUL-terminated names and explicit lengths mix: "ab" of "abc". */
	{
		const struct bl_planner_pod p3[] = { { .name = "abc", .name_len = 2,
						       .phase = BL_PLANNER_POD_RUNNING,
						       .ready = BL_PLANNER_READY_TRUE, .has_start_time = true,
						       .start_time_s = -600, .has_ready_transition = true,
						       .ready_transition_s = -590, .has_request = true,
						       .request = 100 } };
		const struct bl_planner_usage u3[] = { SAMPLE("ab", 80) };
		struct bl_planner_resource_metric m3 = { BL_PLANNER_CPU, TGT(50), p3, 1, u3, 1 };

		assert_int_equal(bl_planner_resource(1, &m3, &o, NULL, &out, err, sizeof err), 0);
		assert_int_equal(out.ready_pods, 1);
		assert_int_equal(out.replicas, 2); /* 80/50 = 1.6, ceil(1.6) = 2 */
	}
}

struct ecase {
	const char *what;
	const struct bl_planner_pod *pods;
	size_t np;
	const struct bl_planner_usage *usage;
	size_t nu;
	int rc;
	const char *msg; /* a part of the message */
};

static void test_resource_errors(void **state)
{
	const struct ecase rows[] = {
		{ "no pods", NULL, 0, NO_USAGE, BL_EINVAL, "no pods returned by selector" },
		{ "no usage", PODS(POD("a", 100), POD("b", 100)), NO_USAGE, BL_EINVAL,
		  "did not receive metrics for targeted pods" },
		{ "only unknown pods", PODS(POD("a", 100)), USAGE(SAMPLE("ghost", 10)), BL_EINVAL,
		  "none of the 1 pods has a cpu sample that counts (0 unready, 1 missing, 0 deleting or failed)" },
		{ "only unready pods", PODS(PODX("x", 100, RUNNING, FALSE, -600, -590)),
		  USAGE(SAMPLE("x", 10)), BL_EINVAL, "(1 unready, 0 missing" },
		/* Every pod needs a request, even one without usage, as in
		 * Kubernetes' calculateRequests. */
		{ "missing request", PODS(POD("a", 100), { .name = "p3", .phase = BL_PLANNER_POD_PENDING }),
		  USAGE(SAMPLE("a", 10)), BL_EINVAL, "missing request for p3: pods[1] has no cpu request" },
		{ "requests add up to 0", PODS(POD("a", 0)), USAGE(SAMPLE("a", 10)), BL_EINVAL,
		  "no metrics returned matched known pods" },
		{ "utilization beyond int32", PODS(POD("a", 1)), USAGE(SAMPLE("a", INT64_MAX / 2)), BL_ERANGE,
		  "is outside the int32 range" },
		{ "repeated pod", PODS(POD("a", 100), POD("b", 100), POD("a", 100)), USAGE(SAMPLE("a", 1)),
		  BL_EINVAL, "pods[2]: the name \"a\" repeats pods[0]" },
		{ "second sample", PODS(POD("a", 100)), USAGE(SAMPLE("a", 1), SAMPLE("a", 2)), BL_EINVAL,
		  "metrics[1]: a second sample for pod \"a\" (after metrics[0])" },
		{ "negative usage", PODS(POD("a", 100)), USAGE(SAMPLE("a", -1)), BL_EINVAL,
		  "metrics[0].usage: -1 must be 0 or more" },
		{ "negative request", PODS(POD("a", -5)), USAGE(SAMPLE("a", 1)), BL_EINVAL,
		  "pods[0].request: -5 must be 0 or more" },
		{ "time not finite", PODS(PODX("a", 100, RUNNING, TRUE, NAN, -590)), USAGE(SAMPLE("a", 1)),
		  BL_EINVAL, "pods[0].start_time_s: must be a finite number" },
		{ "window negative", PODS(POD("a", 100)), USAGE(SAMPLE_AT("a", 1, 0, -1)), BL_EINVAL,
		  "metrics[0].window_s" },
		{ "empty name", PODS(POD("", 100)), USAGE(SAMPLE("a", 1)), BL_EINVAL,
		  "pods[0]: the name must have 1..1024 bytes" },
		{ "bad phase", PODS({ .name = "a", .phase = (enum bl_planner_phase)9 }), USAGE(SAMPLE("a", 1)),
		  BL_EINVAL, "pods[0].phase: 9 is not a phase" },
	};
	struct bl_planner_hpa_options o = hpa_opts(0.1, 0.1);
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct ecase *r = &rows[i];
		struct bl_planner_resource_metric m = { BL_PLANNER_CPU, TGT(50), r->pods, r->np, r->usage, r->nu };
		struct bl_planner_resource_result out;
		int rc = bl_planner_resource(3, &m, &o, NULL, &out, err, sizeof err);

		if (rc != r->rc)
			fail_msg("%s: rc %d, want %d (%s)", r->what, rc, r->rc, err);
		if (!strstr(err, r->msg))
			fail_msg("%s: \"%s\" does not contain \"%s\"", r->what, err, r->msg);
	}
	/* Bad targets and options. */
	{
		struct bl_planner_resource_metric m = { BL_PLANNER_CPU, TGT(0), NULL, 0, NULL, 0 };
		struct bl_planner_resource_result out;

		assert_int_equal(bl_planner_resource(1, &m, &o, NULL, &out, err, sizeof err), BL_EINVAL);
		assert_string_equal(err, "target: 0 must be above 0");
		m.target = (struct bl_planner_target)BAND(85, 70);
		assert_int_equal(bl_planner_resource(1, &m, &o, NULL, &out, err, sizeof err), BL_EINVAL);
		assert_contains(err, "0 < low < high");
		m.target = (struct bl_planner_target)TGT(50);
		o.tolerance.down = 1.5;
		assert_int_equal(bl_planner_resource(1, &m, &o, NULL, &out, err, sizeof err), BL_EINVAL);
		assert_contains(err, "tolerance.down: 1.5 is outside 0..1");
	}
}

/* Scratch memory: a failed allocation is BL_ENOMEM, and nothing leaks on
 * any path (the hook checks sizes and counts). */
static void test_resource_alloc(void **state)
{
	const struct bl_planner_pod pods[] = { POD("a", 100), POD("b", 100) };
	const struct bl_planner_usage usage[] = { SAMPLE("a", 100), SAMPLE("b", 100) };
	struct bl_planner_resource_metric m = { BL_PLANNER_CPU, TGT(50), pods, 2, usage, 2 };
	struct bl_planner_hpa_options o = hpa_opts(0.1, 0.1);
	struct bl_planner_resource_result out;
	char err[128];

	(void)state;
	hs.fail_at = 1;
	assert_int_equal(bl_planner_resource(2, &m, &o, &test_hook, &out, err, sizeof err), BL_ENOMEM);
	assert_contains(err, "out of memory");
	assert_int_equal(hs.live, 0);
	hs.fail_at = 0;
	assert_int_equal(bl_planner_resource(2, &m, &o, &test_hook, &out, err, sizeof err), 0);
	assert_int_equal(out.replicas, 4);
	assert_int_equal(hs.live, 0);
	/* An error found after the allocation frees it too. */
	m.usage_count = 0;
	assert_int_equal(bl_planner_resource(2, &m, &o, &test_hook, &out, err, sizeof err), BL_EINVAL);
	assert_int_equal(hs.live, 0);
	assert_int_equal(hs.calls, 3);
}

/* 10 000 pods, samples in reverse order, one missing: the look-up is by
 * sorted names. 9 999 ready at 600/1000 = 60 %, 1.2 (a scale-up); the
 * missing pod at 0: 5 999 400 / 10 000 000 = 59 % (59.994 truncated),
 * 59/50 = 1.18 (float64 1.17999999999999993783), x 10 000 rounds to
 * 11800.0 exactly: 11 800. */
static void test_resource_many_pods(void **state)
{
	enum { N = 10000 };
	struct bl_planner_pod *pods = calloc(N, sizeof *pods);
	struct bl_planner_usage *usage = calloc(N, sizeof *usage);
	char (*names)[16] = calloc(N, sizeof *names);
	struct bl_planner_hpa_options o = hpa_opts(0.1, 0.1);
	struct bl_planner_resource_result out;
	char err[256];

	(void)state;
	assert_non_null(pods);
	assert_non_null(usage);
	assert_non_null(names);
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "worker-%05d", i);
		pods[i] = (struct bl_planner_pod)POD(names[i], 1000);
	}
	for (int i = 0; i < N - 1; i++)
		usage[i] = (struct bl_planner_usage)SAMPLE(names[N - 1 - i], 600);
	{
		struct bl_planner_resource_metric m = { BL_PLANNER_CPU, TGT(50), pods, N, usage, N - 1 };

		assert_int_equal(bl_planner_resource(N, &m, &o, NULL, &out, err, sizeof err), 0);
	}
	assert_int_equal(out.ready_pods, N - 1);
	assert_int_equal(out.missing_pods, 1);
	assert_int_equal(out.utilization_percent, 60);
	assert_int_equal(out.new_utilization_percent, 59);
	assert_int_equal(out.replicas, 11800);
	free(pods);
	free(usage);
	free(names);
}

/* ---- average value ------------------------------------------------------------------ */

static void test_average_table(void **state)
{
	static const struct {
		const char *what;
		double total;
		struct bl_planner_target target;
		int32_t current;
		int32_t replicas;
		enum bl_planner_outcome outcome;
	} rows[] = {
		/* 40 / (10 x 4) = 1.0: keep. */
		{ "at target", 40, TGT(10), 4, 4, BL_PLANNER_WITHIN },
		/* 43 / 40 = 1.075 within 0.1: keep. */
		{ "within tolerance", 43, TGT(10), 4, 4, BL_PLANNER_WITHIN },
		/* 60 / 40 = 1.5: ceil(60 / 10) = 6. */
		{ "scale up", 60, TGT(10), 4, 6, BL_PLANNER_SCALE },
		/* 12 / 40 = 0.3: ceil(1.2) = 2. */
		{ "scale down", 12, TGT(10), 4, 2, BL_PLANNER_SCALE },
		/* 0 demand: ceil(0) = 0 (the behaviors raise it to min). */
		{ "nothing", 0, TGT(10), 4, 0, BL_PLANNER_SCALE },
		/* No replica yet: any demand scales, ceil(25 / 10) = 3. */
		{ "from zero", 25, TGT(10), 0, 3, BL_PLANNER_SCALE },
		/* Band 5-15 per replica: 56 / 4 = 14 inside, keep. */
		{ "band inside", 56, BAND(5, 15), 4, 4, BL_PLANNER_WITHIN },
		/* 64 / 4 = 16 above: ceil(64 / 10) = 7 (the middle). */
		{ "band above", 64, BAND(5, 15), 4, 7, BL_PLANNER_SCALE },
	};
	struct bl_planner_tolerance t = { 0.1, 0.1 };
	struct bl_planner_average_result out;
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_planner_average_metric m = { rows[i].total, rows[i].target };

		assert_int_equal(bl_planner_average(rows[i].current, &m, &t, &out, err, sizeof err), 0);
		if (out.replicas != rows[i].replicas || out.outcome != rows[i].outcome)
			fail_msg("%s: %d (%d), want %d (%d)", rows[i].what, out.replicas, out.outcome,
				 rows[i].replicas, rows[i].outcome);
	}
	{
		struct bl_planner_average_metric m = { NAN, TGT(10) };

		assert_int_equal(bl_planner_average(1, &m, &t, &out, err, sizeof err), BL_EINVAL);
		assert_contains(err, "total");
		m.total = 1;
		m.target.value = -1;
		assert_int_equal(bl_planner_average(1, &m, &t, &out, err, sizeof err), BL_EINVAL);
	}
}

/* ---- demand window and burst mode ------------------------------------------------- */

static void window_setup(struct bl_planner_window *w)
{
	struct bl_planner_panic_config c;

	bl_planner_panic_config_default(&c);
	assert_int_equal(bl_planner_window_init(w, &c), 0);
}

static void test_window(void **state)
{
	static struct bl_planner_window w; /* 9.6 KB: keep it off the stack */
	struct bl_planner_demand_metric m;
	struct bl_planner_panic_config c;

	(void)state;
	/* 10 each second for a minute: both averages 10. */
	window_setup(&w);
	for (int t = 0; t < 60; t++)
		bl_planner_window_record(&w, t * S, 10);
	bl_planner_window_read(&w, 59 * S + S / 2, &m);
	assert_true(m.has_data);
	assert_true(m.stable_average == 10);
	assert_true(m.panic_average == 10);

	/* A burst in the last 6 s: 54 s at 10 and 6 s at 40. Stable
	 * (540 + 240) / 60 = 13, panic 240 / 6 = 40. */
	window_setup(&w);
	for (int t = 0; t < 60; t++)
		bl_planner_window_record(&w, t * S, t < 54 ? 10 : 40);
	bl_planner_window_read(&w, 59 * S, &m);
	assert_true(m.stable_average == 13);
	assert_true(m.panic_average == 40);

	/* Data for 10 s only: the stable average is over those 10 s
	 * (100 / 10), not the whole minute. */
	window_setup(&w);
	for (int t = 0; t < 10; t++)
		bl_planner_window_record(&w, t * S, 10);
	bl_planner_window_read(&w, 9 * S, &m);
	assert_true(m.stable_average == 10);
	assert_true(m.panic_average == 10);
	/* 5 s later with nothing new: trailing buckets without data do not
	 * count: stable 100 / min(10, 60 - 5) = 10; panic: buckets 4..9 hold
	 * 60, less the 5 slots of the previous lap (50), over min(10, 6 - 5)
	 * = 1: 10. */
	bl_planner_window_read(&w, 14 * S, &m);
	assert_true(m.stable_average == 10);
	assert_true(m.panic_average == 10);
	/* A whole stable window later: no data. */
	bl_planner_window_read(&w, 69 * S, &m);
	assert_false(m.has_data);
	assert_true(m.stable_average == 0);

	/* A gap inside the data counts as 0: 10 at 0 s and at 9 s: 20 / 10. */
	window_setup(&w);
	bl_planner_window_record(&w, 0, 10);
	bl_planner_window_record(&w, 9 * S, 10);
	bl_planner_window_read(&w, 9 * S, &m);
	assert_true(m.stable_average == 2);

	/* Samples in one bucket add up (the pool's total per bucket). */
	window_setup(&w);
	bl_planner_window_record(&w, S / 5, 3);
	bl_planner_window_record(&w, S * 7 / 10, 4);
	bl_planner_window_read(&w, S * 9 / 10, &m);
	assert_true(m.stable_average == 7);

	/* After a full window without data, the window starts over. */
	window_setup(&w);
	for (int t = 0; t < 10; t++)
		bl_planner_window_record(&w, t * S, 10);
	bl_planner_window_record(&w, 100 * S, 20);
	bl_planner_window_read(&w, 100 * S, &m);
	assert_true(m.stable_average == 20);
	/* A sample a whole window older than the last is dropped. */
	bl_planner_window_record(&w, 30 * S, 1000);
	bl_planner_window_record(&w, 40 * S, 1000); /* exactly a window older: its slot is 100 s's */
	bl_planner_window_read(&w, 100 * S, &m);
	assert_true(m.stable_average == 20);
	/* One within the window lands in its own bucket: (20 + 40) / 2 with
	 * the first write moved back to 99 s. */
	bl_planner_window_record(&w, 99 * S, 40);
	bl_planner_window_read(&w, 100 * S, &m);
	assert_true(m.stable_average == 30);

	/* A gap of exactly one window starts over too: 20 / 1, not 20 over
	 * the 60 buckets since 0 s. */
	window_setup(&w);
	for (int t = 0; t < 10; t++)
		bl_planner_window_record(&w, t * S, 10);
	bl_planner_window_record(&w, 69 * S, 20);
	bl_planner_window_read(&w, 69 * S, &m);
	assert_true(m.stable_average == 20);

	/* Negative times bucket by floor: -0.5 s is bucket -1, 0.5 s bucket 0. */
	window_setup(&w);
	bl_planner_window_record(&w, -S / 2, 6);
	bl_planner_window_record(&w, S / 2, 2);
	bl_planner_window_read(&w, S / 2, &m);
	assert_true(m.stable_average == 4);
	/* Values that are not finite or negative are ignored. */
	bl_planner_window_record(&w, S / 2, NAN);
	bl_planner_window_record(&w, S / 2, -1);
	bl_planner_window_read(&w, S / 2, &m);
	assert_true(m.stable_average == 4);

	/* Bad settings. */
	bl_planner_panic_config_default(&c);
	c.panic_window_ns = 61 * S;
	assert_int_equal(bl_planner_window_init(&w, &c), BL_EINVAL);
	bl_planner_panic_config_default(&c);
	c.stable_window_ns = 601 * S;
	assert_int_equal(bl_planner_window_init(&w, &c), BL_EINVAL);
	c.granularity_ns = 2 * S; /* 301 buckets: fine */
	assert_int_equal(bl_planner_window_init(&w, &c), 0);
}

static void test_demand(void **state)
{
	struct bl_planner_panic_config c;
	struct bl_planner_panic_state st = { false, 0, 0 };
	struct bl_planner_demand_result r;
	struct bl_planner_demand_metric m = { true, 12, 12, 4 };
	char err[128];
	bl_time_ns t0 = 500 * S;

	(void)state;
	bl_planner_panic_config_default(&c);

	/* Stable: 12 / 4 = 3 both ways, 3/3 = 1 < 2: stable mode, 3. */
	assert_int_equal(bl_planner_demand(3, &m, &c, &st, t0, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_OFF);
	assert_int_equal(r.replicas, 3);
	assert_false(r.next.panicking);

	/* Burst: the panic window says 30 -> ceil(7.5) = 8, 8/3 = 2.67 >= 2:
	 * panic mode, 8. */
	m.panic_average = 30;
	assert_int_equal(bl_planner_demand(3, &m, &c, &st, t0, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_ENTER);
	assert_int_equal(r.desired_stable, 3);
	assert_int_equal(r.desired_panic, 8);
	assert_int_equal(r.replicas, 8);
	assert_true(r.next.panicking);
	assert_true(r.next.panic_time_ns == t0);
	assert_int_equal(r.next.max_panic_pods, 8);
	st = r.next;

	/* 10 s later the burst is gone (14 -> 4 both, 4/8 < 2): still in
	 * panic mode, and it never goes down: 8. */
	m.stable_average = 14;
	m.panic_average = 14;
	assert_int_equal(bl_planner_demand(8, &m, &c, &st, t0 + 10 * S, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_HOLD);
	assert_int_equal(r.desired_stable, 4);
	assert_int_equal(r.replicas, 8);
	/* The caller did not commit that one; a bigger burst 20 s in: 80 ->
	 * 20, 20/8 = 2.5: extended, 20. */
	m.panic_average = 80;
	assert_int_equal(bl_planner_demand(8, &m, &c, &st, t0 + 20 * S, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_EXTEND);
	assert_int_equal(r.replicas, 20);
	assert_true(r.next.panic_time_ns == t0 + 20 * S);
	st = r.next;
	/* A stable window after the last burst exactly: not yet over (the
	 * panic time must be strictly before now - 60 s). */
	m.panic_average = 14;
	assert_int_equal(bl_planner_demand(20, &m, &c, &st, t0 + 80 * S, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_HOLD);
	assert_int_equal(r.replicas, 20);
	/* One nanosecond more: panic mode ends, back to the stable 4. */
	assert_int_equal(bl_planner_demand(20, &m, &c, &st, t0 + 80 * S + 1, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_EXIT);
	assert_int_equal(r.replicas, 4);
	assert_false(r.next.panicking);
	assert_int_equal(r.next.max_panic_pods, 0);

	/* While panicking, the stable window may ask for more than the
	 * panic window: the larger wins. */
	st = (struct bl_planner_panic_state){ true, t0, 5 };
	m.stable_average = 40; /* 10 */
	m.panic_average = 24;  /* 6, 6/10 < 2 */
	assert_int_equal(bl_planner_demand(10, &m, &c, &st, t0 + S, &r, err, sizeof err), 0);
	assert_int_equal(r.replicas, 10);
	assert_int_equal(r.next.max_panic_pods, 10);

	/* With no replica, ready counts as 1: 10 -> 3, 3/1 >= 2: panic, 3. */
	st = (struct bl_planner_panic_state){ false, 0, 0 };
	m.stable_average = 0;
	m.panic_average = 10;
	assert_int_equal(bl_planner_demand(0, &m, &c, &st, t0, &r, err, sizeof err), 0);
	assert_int_equal(r.move, BL_PLANNER_PANIC_ENTER);
	assert_int_equal(r.replicas, 3);

	/* Knative's rate bounds: scale-down at most to 10 / 2 = 5. */
	c.max_scale_down_rate = 2;
	c.max_scale_up_rate = 1000;
	m.stable_average = 4;
	m.panic_average = 4;
	assert_int_equal(bl_planner_demand(10, &m, &c, &st, t0, &r, err, sizeof err), 0);
	assert_int_equal(r.desired_stable, 5);
	assert_int_equal(r.replicas, 5);

	/* No data yet: the metric fails. */
	m.has_data = false;
	assert_int_equal(bl_planner_demand(3, &m, &c, &st, t0, &r, err, sizeof err), BL_EINVAL);
	assert_contains(err, "no demand sample");
}

/* ---- behaviors ------------------------------------------------------------------------ */

static void test_behaviors(void **state)
{
	struct bl_planner_config c;
	struct bl_planner_rules r;
	int pol;

	(void)state;
	bl_planner_config_default(&c);

	/* Defaults up: Percent 100/15 s and Pods 4/15 s, Max. 10 replicas:
	 * 20 or 14: 20 (policy 0). 2 replicas: 4 or 6: 6 (policy 1). */
	assert_int_equal(bl_planner_scale_up_limit(&c.scale_up, 10, NULL, 0, NOW, &pol), 20);
	assert_int_equal(pol, 0);
	assert_int_equal(bl_planner_scale_up_limit(&c.scale_up, 2, NULL, 0, NOW, &pol), 6);
	assert_int_equal(pol, 1);
	/* From zero: 0 x 2 = 0 or 0 + 4: 4. */
	assert_int_equal(bl_planner_scale_up_limit(&c.scale_up, 0, NULL, 0, NOW, NULL), 4);
	/* Min: the smaller, 14. */
	r = c.scale_up;
	r.select = BL_PLANNER_SELECT_MIN;
	assert_int_equal(bl_planner_scale_up_limit(&r, 10, NULL, 0, NOW, &pol), 14);
	assert_int_equal(pol, 1);
	/* Percent rounds up: 3 x 1.5 = 4.5 -> 5. */
	r.policies[0] = (struct bl_planner_policy){ BL_PLANNER_POLICY_PERCENT, 50, 15 };
	r.policy_count = 1;
	assert_int_equal(bl_planner_scale_up_limit(&r, 3, NULL, 0, NOW, NULL), 5);
	r = c.scale_up;
	/* Disabled: the current count. */
	r.select = BL_PLANNER_SELECT_DISABLED;
	assert_int_equal(bl_planner_scale_up_limit(&r, 10, NULL, 0, NOW, &pol), 10);
	assert_int_equal(pol, -1);
	/* A scale-up of 4 five seconds ago: the period began at 6 replicas:
	 * 12 or 10: 12. At exactly 15 s it is out of the period: 20. A
	 * scale-down of 2 in the period adds back: start 8, 16 or 12. */
	{
		struct bl_planner_event ev[] = { { NOW - 5 * S, 4 } };
		struct bl_planner_event ev15[] = { { NOW - 15 * S, 4 } };
		struct bl_planner_event ev2[] = { { NOW - 5 * S, -2 } };

		assert_int_equal(bl_planner_scale_up_limit(&c.scale_up, 10, ev, 1, NOW, NULL), 12);
		assert_int_equal(bl_planner_scale_up_limit(&c.scale_up, 10, ev15, 1, NOW, NULL), 20);
		assert_int_equal(bl_planner_scale_up_limit(&c.scale_up, 10, ev2, 1, NOW, NULL), 24);
	}

	/* Defaults down: Percent 100/15 s: int(10 x 0) = 0. */
	assert_int_equal(bl_planner_scale_down_limit(&c.scale_down, 10, NULL, 0, NOW, &pol), 0);
	assert_int_equal(pol, 0);
	/* Percent 10/60 s: int(15 x 0.9 = 13.5) = 13, truncated. */
	r = c.scale_down;
	r.policies[0] = (struct bl_planner_policy){ BL_PLANNER_POLICY_PERCENT, 10, 60 };
	assert_int_equal(bl_planner_scale_down_limit(&r, 15, NULL, 0, NOW, NULL), 13);
	/* Pods 2/60 s and Percent 50/60 s, 10 replicas: 8 or 5. Max (the
	 * largest change): 5; Min: 8. */
	r.policies[0] = (struct bl_planner_policy){ BL_PLANNER_POLICY_PODS, 2, 60 };
	r.policies[1] = (struct bl_planner_policy){ BL_PLANNER_POLICY_PERCENT, 50, 60 };
	r.policy_count = 2;
	assert_int_equal(bl_planner_scale_down_limit(&r, 10, NULL, 0, NOW, &pol), 5);
	assert_int_equal(pol, 1);
	r.select = BL_PLANNER_SELECT_MIN;
	assert_int_equal(bl_planner_scale_down_limit(&r, 10, NULL, 0, NOW, &pol), 8);
	assert_int_equal(pol, 0);
	/* 3 removed 30 s ago: the period began at 13: 11 or 6 (Min: 11). */
	{
		struct bl_planner_event ev[] = { { NOW - 30 * S, -3 }, { NOW - 90 * S, -5 } };

		assert_int_equal(bl_planner_scale_down_limit(&r, 10, ev, 2, NOW, NULL), 11);
	}

	/* Stabilization, defaults (up 0 s, down 300 s): current 10, desired
	 * 6; recommendations 9 (100 s ago), 12 (400 s ago, too old), 7 (50 s
	 * ago): the highest of the last 300 s with 6 is 9: 9. */
	{
		struct bl_planner_recommendation recs[] = {
			{ NOW - 100 * S, 9 }, { NOW - 400 * S, 12 }, { NOW - 50 * S, 7 },
		};
		int32_t lo, hi;

		assert_int_equal(bl_planner_stabilize(&c.scale_up, &c.scale_down, 10, 6, recs, 3, NOW, &lo, &hi),
				 9);
		assert_int_equal(lo, 6);
		assert_int_equal(hi, 9);
		/* A recommendation exactly 300 s old is out of the window. */
		recs[0].at_ns = NOW - 300 * S;
		assert_int_equal(bl_planner_stabilize(&c.scale_up, &c.scale_down, 10, 6, recs, 3, NOW, NULL, NULL),
				 7);
	}
	/* Scale-up window 60 s: current 5, desired 10; 7 (30 s ago) and 4
	 * (90 s ago): the lowest of the last 60 s is 7: 7. */
	{
		struct bl_planner_recommendation recs[] = { { NOW - 30 * S, 7 }, { NOW - 90 * S, 4 } };

		r = c.scale_up;
		r.stabilization_s = 60;
		assert_int_equal(bl_planner_stabilize(&r, &c.scale_down, 5, 10, recs, 2, NOW, NULL, NULL), 7);
		/* Exactly 60 s old: out of the window, 10. */
		recs[0].at_ns = NOW - 60 * S;
		assert_int_equal(bl_planner_stabilize(&r, &c.scale_down, 5, 10, recs, 1, NOW, NULL, NULL), 10);
		/* With the default 0 s window even a recommendation made at
		 * this very moment does not hold a scale-up back. */
		recs[0] = (struct bl_planner_recommendation){ NOW, 3 };
		assert_int_equal(bl_planner_stabilize(&c.scale_up, &c.scale_down, 5, 10, recs, 1, NOW, NULL, NULL),
				 10);
		/* No history: the desired count itself. */
		assert_int_equal(bl_planner_stabilize(&r, &c.scale_down, 5, 10, NULL, 0, NOW, NULL, NULL), 10);
	}
}

/* ---- the plan ---------------------------------------------------------------------- */

/* n cpu pods of 1000m at `usage` each, for the plan cases. */
struct pool {
	struct bl_planner_pod pods[16];
	struct bl_planner_usage usage[16];
	char names[16][8];
};

static struct bl_planner_metric cpu_metric(struct pool *p, int n, int64_t usage, double target)
{
	struct bl_planner_metric m;

	memset(&m, 0, sizeof m);
	for (int i = 0; i < n; i++) {
		snprintf(p->names[i], sizeof p->names[i], "w%d", i % 100000);
		p->pods[i] = (struct bl_planner_pod)POD(p->names[i], 1000);
		p->usage[i] = (struct bl_planner_usage)SAMPLE(p->names[i], usage);
	}
	m.kind = BL_PLANNER_METRIC_RESOURCE;
	m.resource.resource = BL_PLANNER_CPU;
	m.resource.target.value = target;
	m.resource.pods = p->pods;
	m.resource.pod_count = (size_t)n;
	m.resource.usage = p->usage;
	m.resource.usage_count = (size_t)n;
	return m;
}

static struct bl_planner_metric avg_metric(const char *name, double total, double target)
{
	struct bl_planner_metric m;

	memset(&m, 0, sizeof m);
	m.kind = BL_PLANNER_METRIC_AVERAGE;
	m.name = name;
	m.average.total = total;
	m.average.target.value = target;
	return m;
}

static struct bl_planner_metric failed_metric(const char *name, const char *why)
{
	struct bl_planner_metric m;

	memset(&m, 0, sizeof m);
	m.kind = BL_PLANNER_METRIC_FAILED;
	m.name = name;
	m.failure = why;
	return m;
}

static struct bl_planner_input input(int32_t current, const struct bl_planner_metric *m, size_t n)
{
	struct bl_planner_input in;

	memset(&in, 0, sizeof in);
	in.current_replicas = current;
	in.now_ns = NOW;
	in.metrics = m;
	in.metric_count = n;
	return in;
}

static struct bl_planner_result res; /* big: not on the stack */
static char why[1024];

static void plan_ok(const struct bl_planner_config *c, const struct bl_planner_input *in)
{
	int rc = bl_planner_plan(c, in, NULL, &res, why, sizeof why);

	if (rc)
		fail_msg("plan: rc %d (%s)", rc, why);
}

/* The issue's example end to end. */
static void test_plan_issue_example(void **state)
{
	struct bl_planner_config c;
	struct pool p;
	struct bl_planner_metric m;
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	m = cpu_metric(&p, 3, 1000, 30);
	for (int i = 0; i < 3; i++)
		p.pods[i].request = 2000;
	in = input(3, &m, 1);

	/* With the default min_replicas 5, 3 replicas is below it: 5, as the
	 * HPA controller does before looking at metrics; the metric is still
	 * computed for the report (50 %, raw 1000, 5). */
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 5);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_MIN_REPLICAS);
	assert_false(res.record);
	assert_int_equal(res.metrics[0].status, 0);
	assert_int_equal(res.metrics[0].replicas, 5);
	assert_int_equal(res.metrics[0].resource.utilization_percent, 50);
	assert_int_equal(res.metrics[0].resource.raw_usage, 1000);
	assert_string_equal(why, "3 replicas is below min_replicas 5 → 5 [also: cpu 50 % > 30 % over 3 "
				 "ready pods → 5]");

	/* With min_replicas 1 the metric decides: ceil(5/3 x 3) = 5, under
	 * the scale-up limit (6 or 7: 7). */
	c.min_replicas = 1;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 5);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.winner, 0);
	assert_true(res.record);
	assert_int_equal(res.recommendation, 5);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_NONE);
	assert_string_equal(why, "cpu 50 % > 30 % over 3 ready pods → 5");
}

static void test_plan_policies(void **state)
{
	struct bl_planner_config c;
	struct pool p;
	struct bl_planner_metric m;
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	c.min_replicas = 1;
	/* 5 pods at 190 % of an 85 % target: 190/85 = 2.235, ceil(11.18) =
	 * 12. Scale-up limit: 10 (100 %) or 9 (+4): Max 10. */
	m = cpu_metric(&p, 5, 1900, 85);
	in = input(5, &m, 1);
	plan_ok(&c, &in);
	assert_int_equal(res.metric_replicas, 12);
	assert_int_equal(res.desired, 10);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_SCALE_UP_POLICY);
	assert_int_equal(res.limit_policy, 0);
	assert_string_equal(why, "cpu 190 % > 85 % over 5 ready pods → 12; capped by scale-up policy "
				 "100 %/15 s → 10");
	/* Select Min: 9, the 4 pods/15 s policy. */
	c.scale_up.select = BL_PLANNER_SELECT_MIN;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 9);
	assert_int_equal(res.limit_policy, 1);
	assert_contains(why, "; capped by scale-up policy 4 pods/15 s → 9");
	/* Disabled: stays at 5. */
	c.scale_up.select = BL_PLANNER_SELECT_DISABLED;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 5);
	assert_contains(why, "; scale-up is disabled → 5");
	c.scale_up.select = BL_PLANNER_SELECT_MAX;

	/* Recent scale-ups use up the period: +4 ten seconds ago on 8
	 * replicas: the period began at 4: 8 or 8; 16 wanted, 8 it stays. */
	{
		struct pool p8;
		struct bl_planner_metric m8 = cpu_metric(&p8, 8, 1000, 50);
		struct bl_planner_event ev[] = { { NOW - 10 * S, 4 } };
		struct bl_planner_input in8 = input(8, &m8, 1);

		in8.events = ev;
		in8.event_count = 1;
		plan_ok(&c, &in8);
		assert_int_equal(res.metric_replicas, 16);
		assert_int_equal(res.desired, 8);
		assert_int_equal(res.limit, BL_PLANNER_LIMIT_SCALE_UP_POLICY);
		/* 25 s later the event is out of the 15 s period: 16. */
		in8.now_ns = NOW + 25 * S;
		plan_ok(&c, &in8);
		assert_int_equal(res.desired, 16);
	}

	/* max_replicas: 6 at 100 % of 50: 12; the policy allows 12 but max
	 * is 8. */
	c.max_replicas = 8;
	m = cpu_metric(&p, 6, 1000, 50);
	in = input(6, &m, 1);
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 8);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_MAX_REPLICAS);
	assert_contains(why, "; capped at max_replicas 8");
	c.max_replicas = 100;

	/* min_replicas: 6 at 10 % of 50: ceil(0.2 x 6 = 1.2) = 2; the
	 * default scale-down policy allows 0, min is 5. */
	bl_planner_config_default(&c);
	m = cpu_metric(&p, 6, 100, 50);
	in = input(6, &m, 1);
	plan_ok(&c, &in);
	assert_int_equal(res.metric_replicas, 2);
	assert_int_equal(res.desired, 5);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_MIN_REPLICAS);
	assert_contains(why, "; raised to min_replicas 5");

	/* Scale-down policy Pods 2/60 s without stabilization: 10 at 20 %:
	 * ceil(0.4 x 10) = 4, at most 2 fewer: 8. */
	c.scale_down.stabilization_s = 0;
	c.scale_down.policies[0] = (struct bl_planner_policy){ BL_PLANNER_POLICY_PODS, 2, 60 };
	m = cpu_metric(&p, 10, 200, 50);
	in = input(10, &m, 1);
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 8);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_SCALE_DOWN_POLICY);
	assert_contains(why, "cpu 20 % < 50 % over 10 ready pods → 4; limited by scale-down policy "
			     "2 pods/60 s → 8");
	/* 2 already removed 30 s ago: the period began at 12, 10 it stays. */
	{
		struct bl_planner_event ev[] = { { NOW - 30 * S, -2 } };

		in.events = ev;
		in.event_count = 1;
		plan_ok(&c, &in);
		assert_int_equal(res.desired, 10);
		in.events = NULL;
		in.event_count = 0;
	}
	/* Scale-down disabled. */
	c.scale_down.select = BL_PLANNER_SELECT_DISABLED;
	c.scale_down.policy_count = 0;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 10);
	assert_contains(why, "; scale-down is disabled → 10");
}

static void test_plan_stabilization(void **state)
{
	struct bl_planner_config c;
	struct pool p;
	struct bl_planner_metric m;
	struct bl_planner_input in;
	struct bl_planner_recommendation recs[] = { { NOW - 60 * S, 9 }, { NOW - 400 * S, 12 } };

	(void)state;
	bl_planner_config_default(&c);
	/* 10 at 20 % of 50: 4. The highest recommendation of the last 300 s
	 * is 9 (12 is older): 9. */
	m = cpu_metric(&p, 10, 200, 50);
	in = input(10, &m, 1);
	in.recommendations = recs;
	in.recommendation_count = 2;
	plan_ok(&c, &in);
	assert_int_equal(res.recommendation, 4);
	assert_true(res.record);
	assert_int_equal(res.stabilized, 9);
	assert_int_equal(res.desired, 9);
	assert_string_equal(why, "cpu 20 % < 50 % over 10 ready pods → 4; scale-down stabilization: 9 is "
				 "the highest recommendation of the last 300 s → 9");

	/* Scale-up stabilization 60 s: 5 at 100 % wants 10; 7 was
	 * recommended 30 s ago: 7. */
	c.min_replicas = 1;
	c.scale_up.stabilization_s = 60;
	m = cpu_metric(&p, 5, 1000, 50);
	in = input(5, &m, 1);
	recs[0] = (struct bl_planner_recommendation){ NOW - 30 * S, 7 };
	in.recommendations = recs;
	in.recommendation_count = 1;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 7);
	assert_contains(why, "; scale-up stabilization: 7 is the lowest recommendation of the last 60 s → 7");
}

static void test_plan_metrics(void **state)
{
	struct bl_planner_config c;
	struct pool p;
	struct bl_planner_metric ms[3];
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);

	/* The largest proposal wins: cpu 40 % of 50 over 6: ceil(4.8) = 5;
	 * queue 80 / (10 x 6) = 1.33: ceil(8) = 8. */
	ms[0] = cpu_metric(&p, 6, 400, 50);
	ms[1] = avg_metric("queue", 80, 10);
	in = input(6, ms, 2);
	plan_ok(&c, &in);
	assert_int_equal(res.winner, 1);
	assert_int_equal(res.metric_replicas, 8);
	assert_int_equal(res.desired, 8);
	assert_int_equal(res.metrics[0].replicas, 5);
	assert_string_equal(why, "queue 13.3333 > 10 per replica over 6 replicas → 8 [also: cpu 40 % < "
				 "50 % over 6 ready pods → 5]");

	/* A failing metric blocks a scale-down: cpu 30 % over 6: ceil(3.6) =
	 * 4 < 6, memory failed: keep 6, nothing recorded. */
	ms[0] = cpu_metric(&p, 6, 300, 50);
	ms[1] = failed_metric("memory", "metrics-server timed out");
	in = input(6, ms, 2);
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 6);
	assert_int_equal(res.status, BL_EINVAL);
	assert_false(res.record);
	assert_int_equal(res.metrics[1].status, BL_EINVAL);
	assert_string_equal(res.metrics[1].message, "metrics-server timed out");
	assert_string_equal(why, "cpu 30 % < 50 % over 6 ready pods → 4; but memory failed "
				 "(metrics-server timed out): a failing metric blocks a scale-down → keep 6");

	/* ... but never a scale-up: cpu 80 % over 6: 1.6 x 6 = 9.6, 10. */
	ms[0] = cpu_metric(&p, 6, 800, 50);
	plan_ok(&c, &in);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.desired, 10);
	assert_string_equal(why, "cpu 80 % > 50 % over 6 ready pods → 10 [also: memory failed "
				 "(metrics-server timed out)]");

	/* All fail: nothing to go on, keep 6. */
	ms[0].resource.usage_count = 0;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 6);
	assert_int_equal(res.status, BL_EINVAL);
	assert_int_equal(res.winner, -1);
	assert_contains(why, "no metric could be computed: cpu failed (did not receive metrics for "
			     "targeted pods");
	assert_contains(why, "; memory failed (metrics-server timed out) → keep 6");

	/* A failing resource metric (a missing request) counts as failed. */
	ms[0] = cpu_metric(&p, 6, 300, 50);
	p.pods[2].has_request = false;
	ms[1] = avg_metric("queue", 30, 10); /* 30/60 = 0.5: ceil(3) = 3 */
	in = input(6, ms, 2);
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 6);
	assert_contains(why, "but cpu failed (missing request for w2");
}

static void test_plan_panic(void **state)
{
	struct bl_planner_config c;
	struct pool p;
	struct bl_planner_metric ms[2];
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	memset(ms, 0, sizeof ms);

	/* Enter: 5 replicas, panic window 40 at 4 per replica -> 10, 10/5 >=
	 * 2: panic mode, 10 (the policies allow 10). */
	ms[0].kind = BL_PLANNER_METRIC_DEMAND;
	ms[0].name = "inflight";
	ms[0].demand = (struct bl_planner_demand_metric){ true, 12, 40, 4 };
	in = input(5, ms, 1);
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 10);
	assert_true(res.panic.panicking);
	assert_true(res.panic.panic_time_ns == NOW);
	assert_int_equal(res.panic.max_panic_pods, 10);
	assert_string_equal(why, "inflight 40 over 6s at 4 per replica → 10, 2× the 5 replicas "
				 "(threshold 2): panic mode → 10");

	/* Hold: 12 replicas (another metric scaled up earlier), in panic mode
	 * since 10 s with at most 8; cpu says ceil(0.5 x 12) = 6, demand 20
	 * -> 5 but holds 8: the largest is 8 < 12 and panic mode forbids a
	 * scale-down: 12. */
	ms[0].demand = (struct bl_planner_demand_metric){ true, 20, 20, 4 };
	ms[1] = cpu_metric(&p, 12, 250, 50);
	in = input(12, ms, 2);
	in.panic = (struct bl_planner_panic_state){ true, NOW - 10 * S, 8 };
	plan_ok(&c, &in);
	assert_int_equal(res.metric_replicas, 8);
	assert_true(res.panic_hold);
	assert_int_equal(res.recommendation, 12);
	assert_int_equal(res.desired, 12);
	assert_true(res.panic.panicking);
	assert_contains(why, "panic mode until 1m without a burst");
	assert_contains(why, "; panic mode: no scale-down → 12");

	/* Exit: 61 s after the last burst, 12 -> 3 both ways: stable mode,
	 * the demand says 3, cpu 6: 6 (now a scale-down is allowed; the
	 * default scale-down policy allows it, min 5). */
	in.panic = (struct bl_planner_panic_state){ true, NOW - 61 * S, 8 };
	ms[0].demand = (struct bl_planner_demand_metric){ true, 12, 12, 4 };
	plan_ok(&c, &in);
	assert_false(res.panic.panicking);
	assert_false(res.panic_hold);
	assert_int_equal(res.metrics[0].demand.move, BL_PLANNER_PANIC_EXIT);
	assert_int_equal(res.desired, 6);

	/* Two demand metrics are refused: one panic state. */
	ms[1] = ms[0];
	in = input(12, ms, 2);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, why, sizeof why), BL_EINVAL);
	assert_contains(why, "a second demand metric");
}

static void test_plan_budget(void **state)
{
	struct bl_planner_config c;
	struct bl_planner_metric m;
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	/* The queue asks for 120 / 10 = 12 over 6 replicas. The budget is
	 * the bottleneck (37 waiting, 91 % >= 90 %) and admits 10/s, a worker
	 * spends 1.25/s: 8 workers keep it busy: 8. */
	m = avg_metric("queue", 120, 10);
	in = input(6, &m, 1);
	in.budget = (struct bl_planner_budget){ "anthropic", 37, 0.91, 0.90, 10, 1.25, 0 };
	plan_ok(&c, &in);
	assert_true(res.budget_capped);
	assert_int_equal(res.budget_workers, 8);
	assert_int_equal(res.recommendation, 8);
	assert_int_equal(res.desired, 8);
	assert_string_equal(why, "queue 20 > 10 per replica over 6 replicas → 12; capped by budget "
				 "anthropic, the bottleneck (37 waiting, 91 % used of a 90 % target): it "
				 "keeps 8 workers busy, more would only wait on the quota → 8");

	/* Nobody waiting: not the bottleneck, 12. */
	in.budget.queue_length = 0;
	plan_ok(&c, &in);
	assert_false(res.budget_capped);
	assert_int_equal(res.budget_workers, -1);
	assert_int_equal(res.desired, 12);
	/* Under its target utilization: not the bottleneck either. */
	in.budget.queue_length = 37;
	in.budget.utilization = 0.85;
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 12);
	in.budget.utilization = 0.91;

	/* Never below the current count: 3 busy workers < 6: 6. */
	in.budget.busy_workers = 3;
	plan_ok(&c, &in);
	assert_true(res.budget_capped);
	assert_int_equal(res.desired, 6);

	/* A scale-down is not touched: 20 / 10 = 2, min 5. */
	m = avg_metric("queue", 20, 10);
	plan_ok(&c, &in);
	assert_false(res.budget_capped);
	assert_int_equal(res.recommendation, 2);
	assert_int_equal(res.desired, 5);

	/* Workers from the rates round up: 10 / 3 = 3.33 -> 4. */
	{
		struct bl_planner_budget b = { "x", 1, 1, 0.9, 10, 3, 0 };

		assert_true(bl_planner_budget_is_bottleneck(&b));
		assert_int_equal(bl_planner_budget_workers(&b), 4);
		b.per_worker_per_s = 0;
		assert_int_equal(bl_planner_budget_workers(&b), -1);
		b.name = NULL;
		assert_false(bl_planner_budget_is_bottleneck(&b));
	}
}

static void test_plan_top_level(void **state)
{
	struct bl_planner_config c;
	struct bl_planner_metric m = avg_metric("queue", 25, 10);
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	/* 0 replicas with min 5: scaling disabled, as the HPA. */
	in = input(0, &m, 1);
	plan_ok(&c, &in);
	assert_true(res.scaling_disabled);
	assert_int_equal(res.desired, 0);
	assert_contains(why, "scaling is disabled");
	/* min 0 allows it: ceil(25 / 10) = 3, within the scale-up limit from
	 * 0 (0 x 2 or 0 + 4: 4). */
	c.min_replicas = 0;
	plan_ok(&c, &in);
	assert_false(res.scaling_disabled);
	assert_int_equal(res.desired, 3);
	/* Above max: straight to max, no behaviors. */
	c.min_replicas = 5;
	in = input(120, &m, 1);
	plan_ok(&c, &in);
	assert_int_equal(res.desired, 100);
	assert_int_equal(res.limit, BL_PLANNER_LIMIT_MAX_REPLICAS);
	assert_contains(why, "120 replicas is above max_replicas 100 → 100");
}

static void test_plan_input_errors(void **state)
{
	struct bl_planner_config c;
	struct bl_planner_metric ms[BL_PLANNER_MAX_METRICS + 1];
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	for (int i = 0; i <= BL_PLANNER_MAX_METRICS; i++)
		ms[i] = avg_metric("q", 1, 1);
	in = input(3, ms, 0);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, why, sizeof why), BL_EINVAL);
	assert_contains(why, "metrics: at least one is needed");
	in = input(3, ms, BL_PLANNER_MAX_METRICS + 1);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, why, sizeof why), BL_EINVAL);
	assert_contains(why, "at most 8");
	in = input(-1, ms, 1);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, why, sizeof why), BL_EINVAL);
	assert_string_equal(why, "current_replicas: -1 must be 0 or more");
	in = input(3, ms, 1);
	in.event_count = 2;
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, why, sizeof why), BL_EINVAL);
	c.max_replicas = 0;
	in = input(3, ms, 1);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, why, sizeof why), BL_EINVAL);
	assert_contains(why, "max_replicas: 0");
}

static void test_config_check(void **state)
{
	static const struct {
		int field;
		const char *msg;
	} rows[] = {
		{ 0, "min_replicas: -1 must be 0 or more (default 5)" },
		{ 1, "max_replicas: 4 must be at least 1 and at least min_replicas (5)" },
		{ 2, "tolerance.up: 1.5 is outside 0..1 (default 0.1)" },
		{ 3, "tolerance.down: nan is outside 0..1 (default 0.1)" },
		{ 4, "scale_up.stabilization_window_s: 4000 is outside 0..3600" },
		{ 5, "scale_down.policies[0].period_s: 0 is outside 1..1800" },
		{ 6, "scale_up.policies[1].value: 0 must be above 0" },
		{ 7, "scale_up.policies: at least one policy is needed unless select_policy is Disabled" },
		{ 8, "panic.threshold: 1 is outside 1.1..10 (such as 2.0)" },
		{ 9, "panic.window: must be above 0 and at most the stable window (such as 6s)" },
		{ 10, "panic.stable_window: more than 600 buckets of the granularity; use a coarser granularity" },
		{ 11, "cpu_initialization_period_s: -1 is outside 0..1e9 (default 300)" },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_planner_config c;

		bl_planner_config_default(&c);
		switch (rows[i].field) {
		case 0: c.min_replicas = -1; break;
		case 1: c.max_replicas = 4; break;
		case 2: c.hpa.tolerance.up = 1.5; break;
		case 3: c.hpa.tolerance.down = NAN; break;
		case 4: c.scale_up.stabilization_s = 4000; break;
		case 5: c.scale_down.policies[0].period_s = 0; break;
		case 6: c.scale_up.policies[1].value = 0; break;
		case 7: c.scale_up.policy_count = 0; break;
		case 8: c.panic.threshold = 1.0; break;
		case 9: c.panic.panic_window_ns = 0; break;
		case 10: c.panic.stable_window_ns = 700 * S; break;
		case 11: c.hpa.cpu_initialization_period_s = -1; break;
		}
		assert_int_equal(bl_planner_config_check(&c, err, sizeof err), BL_EINVAL);
		if (strcmp(err, rows[i].msg) != 0)
			fail_msg("row %zu: \"%s\", want \"%s\"", i, err, rows[i].msg);
	}
	{
		struct bl_planner_config c;

		bl_planner_config_default(&c);
		assert_int_equal(c.min_replicas, 5);
		assert_int_equal(c.max_replicas, 100);
		assert_int_equal(c.scale_up.policy_count, 2);
		assert_int_equal(c.scale_down.stabilization_s, 300);
		assert_int_equal(bl_planner_config_check(&c, err, sizeof err), 0);
		assert_string_equal(err, "");
	}
}

/* Every allocation of a plan may fail: BL_ENOMEM, nothing leaks, and once
 * the allocations succeed the answer is the same as without the hook. */
static void test_plan_alloc(void **state)
{
	struct bl_planner_config c;
	struct pool p1, p2;
	struct bl_planner_metric ms[2];
	struct bl_planner_input in;
	int32_t want;
	long k;

	(void)state;
	bl_planner_config_default(&c);
	ms[0] = cpu_metric(&p1, 6, 800, 50);
	ms[1] = cpu_metric(&p2, 6, 900, 50);
	ms[1].resource.resource = BL_PLANNER_MEMORY;
	in = input(6, ms, 2);
	plan_ok(&c, &in);
	want = res.desired;
	for (k = 1;; k++) {
		int rc;

		memset(&hs, 0, sizeof hs);
		hs.fail_at = k;
		rc = bl_planner_plan(&c, &in, &test_hook, &res, why, sizeof why);
		assert_int_equal(hs.live, 0);
		if (rc == 0)
			break;
		assert_int_equal(rc, BL_ENOMEM);
		assert_contains(why, "out of memory");
	}
	assert_int_equal(k, 3); /* one scratch block per utilization metric */
	assert_int_equal(res.desired, want);
}

/* The reason never overruns its buffer and never ends in half a
 * character. */
static void test_reason_truncation(void **state)
{
	struct bl_planner_config c;
	struct pool p;
	struct bl_planner_metric m;
	struct bl_planner_input in;
	char full[256], small[64];
	const char *arrow;
	size_t k;

	(void)state;
	bl_planner_config_default(&c);
	c.min_replicas = 1;
	m = cpu_metric(&p, 3, 1000, 30);
	for (int i = 0; i < 3; i++)
		p.pods[i].request = 2000;
	in = input(3, &m, 1);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, full, sizeof full), 0);
	assert_string_equal(full, "cpu 50 % > 30 % over 3 ready pods → 5");
	arrow = strstr(full, "→");
	assert_non_null(arrow);
	k = (size_t)(arrow - full);
	/* Room for the text before the arrow and 1 or 2 of its 3 bytes: the
	 * arrow is left out whole. */
	for (size_t extra = 1; extra <= 2; extra++) {
		memset(small, 'X', sizeof small);
		assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, small, k + extra + 1), 0);
		assert_int_equal(strlen(small), k);
		assert_memory_equal(small, full, k);
	}
	memset(small, 'X', sizeof small);
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, small, 1), 0);
	assert_int_equal(small[0], '\0');
	assert_int_equal(small[1], 'X');
	assert_int_equal(bl_planner_plan(&c, &in, NULL, &res, NULL, 0), 0);
	assert_int_equal(res.desired, 5);
}

static void test_history(void **state)
{
	static struct bl_planner_history h;
	struct bl_planner_config c;
	struct bl_planner_input in;

	(void)state;
	bl_planner_config_default(&c);
	bl_planner_history_init(&h);
	/* Recommendations older than both windows (0 s up, 300 s down) are
	 * reused: at 0, 100, 200 s then 400 s: the one at 0 s is replaced. */
	bl_planner_history_record(&h, &c, 0, 5);
	bl_planner_history_record(&h, &c, 100 * S, 6);
	bl_planner_history_record(&h, &c, 200 * S, 7);
	bl_planner_history_record(&h, &c, 400 * S, 8);
	assert_int_equal(h.recommendation_count, 3);
	assert_true(h.recommendations[0].at_ns == 400 * S);
	assert_int_equal(h.recommendations[0].replicas, 8);
	/* Full of recent ones: the oldest goes. */
	bl_planner_history_init(&h);
	for (int i = 0; i < BL_PLANNER_HISTORY_MAX; i++)
		bl_planner_history_record(&h, &c, NOW + i, i);
	bl_planner_history_record(&h, &c, NOW + 1000, 999);
	assert_int_equal(h.recommendation_count, BL_PLANNER_HISTORY_MAX);
	assert_int_equal(h.recommendations[0].replicas, 999);

	/* Scale events: equal counts record nothing; older than the longest
	 * period (15 s) are reused. */
	bl_planner_history_init(&h);
	bl_planner_history_scaled(&h, &c, NOW, 5, 5);
	assert_int_equal(h.event_count, 0);
	bl_planner_history_scaled(&h, &c, NOW, 5, 9);
	bl_planner_history_scaled(&h, &c, NOW + 5 * S, 9, 7);
	assert_int_equal(h.event_count, 2);
	assert_int_equal(h.events[0].change, 4);
	assert_int_equal(h.events[1].change, -2);
	bl_planner_history_scaled(&h, &c, NOW + 30 * S, 7, 10);
	assert_int_equal(h.event_count, 2);
	assert_int_equal(h.events[1].change, 3);

	/* The longest period of either direction counts: with a 60 s
	 * scale-up policy an event 30 s old is still needed. */
	c.scale_up.policies[1].period_s = 60;
	bl_planner_history_init(&h);
	bl_planner_history_scaled(&h, &c, NOW, 5, 9);
	bl_planner_history_scaled(&h, &c, NOW + 30 * S, 9, 12);
	assert_int_equal(h.event_count, 2);

	/* A history feeds a plan as is. */
	memset(&in, 0, sizeof in);
	bl_planner_history_input(&h, &in);
	assert_ptr_equal(in.events, h.events);
	assert_int_equal(in.event_count, 2);
	assert_ptr_equal(in.recommendations, h.recommendations);
}

static void test_names(void **state)
{
	enum bl_planner_phase ph;
	enum bl_planner_resource r;
	enum bl_planner_select sel;

	(void)state;
	assert_int_equal(bl_planner_phase_parse("Running", 7, &ph), 0);
	assert_int_equal(ph, BL_PLANNER_POD_RUNNING);
	assert_int_equal(bl_planner_phase_parse("running", 7, &ph), BL_EINVAL);
	assert_string_equal(bl_planner_phase_name(BL_PLANNER_POD_SUCCEEDED), "Succeeded");
	assert_string_equal(bl_planner_phase_name((enum bl_planner_phase)7), "invalid");
	assert_int_equal(bl_planner_resource_parse("memory", 6, &r), 0);
	assert_int_equal(r, BL_PLANNER_MEMORY);
	assert_int_equal(bl_planner_resource_parse("gpu", 3, &r), BL_EINVAL);
	assert_int_equal(bl_planner_select_parse("Disabled", 8, &sel), 0);
	assert_int_equal(sel, BL_PLANNER_SELECT_DISABLED);
	assert_int_equal(bl_planner_select_parse("min", 3, &sel), 0);
	assert_int_equal(sel, BL_PLANNER_SELECT_MIN);
	assert_int_equal(bl_planner_select_parse("Maximum", 7, &sel), BL_EINVAL);
}

/* ---- property test --------------------------------------------------------------- */

/* Random configurations, metrics, histories, budgets and panic states. The
 * invariants: the call succeeds; the top-level rules hold; a failing
 * metric never lets the pool shrink; otherwise the answer is within
 * [min, max], never above the scale-up limit nor below the scale-down
 * limit, never below the current count in panic mode, and a budget cap
 * never lifts it above max(current, workers). */
static void test_property(void **state)
{
	static struct bl_planner_metric ms[4];
	static struct bl_planner_recommendation recs[8];
	static struct bl_planner_event evs[8];
	uint64_t iters = 20000;
	char line[512];

	(void)state;
	rng_state = 42;
	for (uint64_t it = 0; it < iters; it++) {
		struct bl_planner_config c;
		struct bl_planner_input in;
		size_t nm = 1 + rng() % 4, nr = rng() % 8, ne = rng() % 8;
		int32_t up_lim, down_lim;
		int rc;

		bl_planner_config_default(&c);
		c.min_replicas = (int32_t)(rng() % 6);
		c.max_replicas = c.min_replicas + 1 + (int32_t)(rng() % 40);
		c.scale_up.select = (enum bl_planner_select)(rng() % 3);
		c.scale_down.select = (enum bl_planner_select)(rng() % 3);
		c.scale_down.stabilization_s = (int32_t)(rng() % 400);
		c.scale_up.stabilization_s = (int32_t)(rng() % 100);
		memset(ms, 0, sizeof ms);
		for (size_t i = 0; i < nm; i++) {
			switch (rng() % 4) {
			case 0:
				ms[i] = failed_metric("f", "down");
				break;
			case 1:
				ms[i].kind = BL_PLANNER_METRIC_DEMAND;
				ms[i].demand = (struct bl_planner_demand_metric){ rng() % 5 != 0,
										  (double)(rng() % 200),
										  (double)(rng() % 400), 4 };
				if (i > 0 && ms[0].kind == BL_PLANNER_METRIC_DEMAND)
					ms[i] = avg_metric("q", (double)(rng() % 500), 10);
				break;
			default:
				ms[i] = avg_metric("q", (double)(rng() % 500), 1 + (double)(rng() % 20));
				if (rng() % 3 == 0) {
					ms[i].average.target.band = true;
					ms[i].average.target.low = 5;
					ms[i].average.target.high = 15;
				}
			}
		}
		/* one demand metric at most */
		for (size_t i = 1; i < nm; i++)
			for (size_t j = 0; j < i; j++)
				if (ms[i].kind == BL_PLANNER_METRIC_DEMAND && ms[j].kind == BL_PLANNER_METRIC_DEMAND)
					ms[i] = avg_metric("q", 10, 10);
		for (size_t i = 0; i < nr; i++)
			recs[i] = (struct bl_planner_recommendation){ NOW - (int64_t)(rng() % 400) * S,
								      (int32_t)(rng() % 60) };
		for (size_t i = 0; i < ne; i++)
			evs[i] = (struct bl_planner_event){ NOW - (int64_t)(rng() % 30) * S,
							    (int32_t)(rng() % 11) - 5 };
		in = input((int32_t)(rng() % 50), ms, nm);
		in.recommendations = recs;
		in.recommendation_count = nr;
		in.events = evs;
		in.event_count = ne;
		if (rng() % 3 == 0)
			in.panic = (struct bl_planner_panic_state){ true, NOW - (int64_t)(rng() % 90) * S,
								    (int32_t)(rng() % 30) };
		if (rng() % 2)
			in.budget = (struct bl_planner_budget){ "b", rng() % 3, 0.8 + (double)(rng() % 20) / 100,
								0.9, 10, 1 + (double)(rng() % 4), 0 };

		rc = bl_planner_plan(&c, &in, NULL, &res, line, sizeof line);
		if (rc)
			fail_msg("iteration %llu: rc %d (%s)", (unsigned long long)it, rc, line);
		assert_true(strlen(line) < sizeof line);
		assert_true(line[0] != '\0');
		if (res.scaling_disabled) {
			assert_int_equal(res.desired, 0);
			continue;
		}
		if (in.current_replicas > c.max_replicas) {
			assert_int_equal(res.desired, c.max_replicas);
			continue;
		}
		if (in.current_replicas < c.min_replicas) {
			assert_int_equal(res.desired, c.min_replicas);
			continue;
		}
		if (res.status) {
			assert_int_equal(res.desired, in.current_replicas);
			continue;
		}
		for (size_t i = 0; i < nm; i++)
			if (res.metrics[i].status)
				assert_true(res.desired >= in.current_replicas);
		assert_true(res.desired >= c.min_replicas && res.desired <= c.max_replicas);
		up_lim = bl_planner_scale_up_limit(&c.scale_up, in.current_replicas, evs, ne, NOW, NULL);
		down_lim = bl_planner_scale_down_limit(&c.scale_down, in.current_replicas, evs, ne, NOW, NULL);
		if (res.desired > in.current_replicas)
			assert_true(res.desired <= up_lim);
		if (res.desired < in.current_replicas)
			assert_true(res.desired >= down_lim);
		if (res.panic.panicking)
			assert_true(res.desired >= in.current_replicas);
		if (res.budget_capped)
			assert_true(res.recommendation <= (res.budget_workers > in.current_replicas
								   ? res.budget_workers
								   : in.current_replicas));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resource_table),
		cmocka_unit_test(test_resource_details),
		cmocka_unit_test(test_resource_errors),
		cmocka_unit_test_setup_teardown(test_resource_alloc, reset_hook, check_no_leak),
		cmocka_unit_test(test_resource_many_pods),
		cmocka_unit_test(test_average_table),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_demand),
		cmocka_unit_test(test_behaviors),
		cmocka_unit_test(test_plan_issue_example),
		cmocka_unit_test(test_plan_policies),
		cmocka_unit_test(test_plan_stabilization),
		cmocka_unit_test(test_plan_metrics),
		cmocka_unit_test(test_plan_panic),
		cmocka_unit_test(test_plan_budget),
		cmocka_unit_test(test_plan_top_level),
		cmocka_unit_test(test_plan_input_errors),
		cmocka_unit_test(test_config_check),
		cmocka_unit_test_setup_teardown(test_plan_alloc, reset_hook, check_no_leak),
		cmocka_unit_test(test_reason_truncation),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
