/* Autoscaling planner: how many workers a pool should run, and why.
 *
 * The planner answers one question: given the pool's current size, what its
 * workers report and what the autoscaler decided lately, how many replicas
 * should run now? docs/internals/autoscaler.md explains the algorithm; in
 * short, one call of bl_planner_plan does what one sync of the Kubernetes
 * HorizontalPodAutoscaler does, with Knative's burst ("panic") mode and
 * ballast's own additions:
 *
 *   1. each metric proposes a replica count:
 *        cpu / memory utilization   exactly as Kubernetes' GetResourceReplicas
 *                                   (pod grouping, missing and unready pods,
 *                                   the re-check after filling them in)
 *        average value per replica  as the HPA's AverageValue targets
 *                                   (in-flight calls, queue depth)
 *        demand (burst mode)        as Knative's KPA: a stable and a panic
 *                                   window over observed demand
 *      a target may be a band {low, high} instead of one value;
 *   2. the largest proposal wins; a metric that fails blocks a scale-down,
 *      never a scale-up (the HPA rule);
 *   3. while in panic mode nothing scales down;
 *   4. a rate budget that is the bottleneck caps a scale-up at the workers it
 *      can keep busy;
 *   5. the HPA behaviors: stabilization windows, then the Pods / Percent
 *      policies against recent scale events, then min/max replicas.
 *
 * Every decision comes with its reason in words, such as
 * "cpu 190 % > 85 % over 5 ready pods → 12; capped by scale-up policy 100 %/15 s → 10".
 *
 * Pure: no I/O, no clock, no globals. Times are arguments: the autoscaler's
 * own history (recommendations, scale events, panic state, demand samples)
 * in bl_time_ns on the caller's monotonic clock, and what pods report in
 * seconds relative to the moment of the call (negative: in the past). The
 * only memory allocated is per-call scratch for the pod look-ups of a
 * utilization metric, through the given hook (NULL: malloc), all of it freed
 * before the call returns. Nothing the caller passes is modified: the state
 * to keep (the recommendation to record, the panic state) comes back in the
 * result, so a what-if plan is just a call whose result is not committed.
 */
#ifndef BALLAST_PLANNER_H
#define BALLAST_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/alloc.h"
#include "ballast/units.h"

/* ---- limits ------------------------------------------------------------- */

#define BL_PLANNER_MAX_METRICS 8        /* metrics in one plan */
#define BL_PLANNER_MAX_POLICIES 8       /* policies per direction */
#define BL_PLANNER_MAX_PODS 1000000     /* pods, and usage samples, per metric */
#define BL_PLANNER_NAME_MAX 1024        /* bytes in a pod name */
#define BL_PLANNER_MESSAGE_MAX 256      /* bytes of a per-metric message, NUL included */
#define BL_PLANNER_WINDOW_BUCKETS 600   /* buckets in a demand window (60 s at 100 ms, 10 min at 1 s) */
#define BL_PLANNER_HISTORY_MAX 256      /* recommendations, and scale events, a history keeps */

/* ---- pods and what they report (the Kubernetes view) ---------------------- */

/* A pod's phase, as Kubernetes reports it. */
enum bl_planner_phase {
	BL_PLANNER_POD_PENDING = 0,
	BL_PLANNER_POD_RUNNING = 1,
	BL_PLANNER_POD_SUCCEEDED = 2,
	BL_PLANNER_POD_FAILED = 3,
	BL_PLANNER_POD_UNKNOWN = 4,
};

/* A pod's Ready condition. Kubernetes tells "no condition at all" (the pod is
 * unready for cpu) from a condition whose status is Unknown (which, not
 * being False, counts like True). */
enum bl_planner_ready {
	BL_PLANNER_READY_NONE = 0,    /* no Ready condition (JSON null or absent) */
	BL_PLANNER_READY_TRUE = 1,
	BL_PLANNER_READY_FALSE = 2,
	BL_PLANNER_READY_UNKNOWN = 3, /* condition present, status Unknown */
};

/* Parses a phase name as Kubernetes writes it ("Pending", "Running",
 * "Succeeded", "Failed", "Unknown"; exact) of len bytes. Returns 0 and sets
 * *out, or BL_EINVAL leaving *out untouched. */
int bl_planner_phase_parse(const char *s, size_t len, enum bl_planner_phase *out);

/* Returns the name of p ("Pending" ...), or "invalid". */
const char *bl_planner_phase_name(enum bl_planner_phase p);

/* One pod of the pool. A name is name_len bytes at name, or a NUL-terminated
 * string when name_len is 0. Times are seconds relative to the call (-600:
 * ten minutes ago), finite, of any magnitude; a has_ flag at false is
 * Kubernetes' unset time. */
struct bl_planner_pod {
	const char *name;               /* unique in the list, 1..BL_PLANNER_NAME_MAX bytes */
	size_t name_len;                /* bytes at name; 0: NUL-terminated */
	enum bl_planner_phase phase;
	enum bl_planner_ready ready;    /* the Ready condition */
	bool deleting;                  /* deletionTimestamp is set */
	bool has_start_time;            /* false: status.startTime unset */
	double start_time_s;            /* when the pod started, s relative to now */
	bool has_ready_transition;      /* false: lastTransitionTime unset (the zero time) */
	double ready_transition_s;      /* last transition of Ready, s relative to now */
	bool has_request;               /* false: a container has no request for the resource */
	int64_t request;                /* the pod's request, >= 0, in the unit of the usage
					   (millicores for cpu, bytes for memory) */
};

/* One usage sample: what the metrics API reports for a pod. */
struct bl_planner_usage {
	const char *pod;                /* the pod's name; samples for pods not in the list are ignored */
	size_t pod_len;                 /* bytes at pod; 0: NUL-terminated */
	int64_t usage;                  /* >= 0, unit of the request */
	bool has_timestamp;             /* false: the zero time */
	double timestamp_s;             /* end of the sample's window, s relative to now */
	double window_s;                /* the window the sample averages over, s, >= 0 */
};

/* ---- targets ---------------------------------------------------------------- */

/* The resource a utilization metric measures. Readiness only matters for cpu
 * (the cpu initialization period), as in Kubernetes. */
enum bl_planner_resource {
	BL_PLANNER_CPU = 0,
	BL_PLANNER_MEMORY = 1,
};

/* Parses "cpu" or "memory" (exact) of len bytes: 0 and *out, or BL_EINVAL. */
int bl_planner_resource_parse(const char *s, size_t len, enum bl_planner_resource *out);

/* Returns "cpu", "memory", or "invalid". */
const char *bl_planner_resource_name(enum bl_planner_resource r);

/* A target: one value, or a band. Utilization targets are in percent of the
 * request (85 means 85 %); average-value targets in the metric's unit per
 * replica (4 in-flight calls per worker). With a band, nothing happens while
 * the metric is inside [low, high] (the band replaces the tolerances), and
 * outside it the planner aims at the middle, (low + high) / 2. */
struct bl_planner_target {
	double value;                   /* > 0; ignored with a band */
	bool band;                      /* true: low and high are used */
	double low;                     /* band, 0 < low < high */
	double high;
};

/* How far the usage ratio may stray from 1 before the HPA acts (without a
 * band): it keeps the current count while 1 - down <= ratio <= 1 + up. */
struct bl_planner_tolerance {
	double up;                      /* 0..1, default 0.1 */
	double down;                    /* 0..1, default 0.1 */
};

/* The HPA controller's settings (kube-controller-manager flags). */
struct bl_planner_hpa_options {
	struct bl_planner_tolerance tolerance;
	double cpu_initialization_period_s; /* default 300 (5 minutes) */
	double initial_readiness_delay_s;   /* default 30 */
};

/* ---- utilization metrics (Kubernetes' GetResourceReplicas) ----------------- */

/* A cpu or memory utilization metric over a list of pods. */
struct bl_planner_resource_metric {
	enum bl_planner_resource resource;
	struct bl_planner_target target;          /* percent of the request */
	const struct bl_planner_pod *pods;        /* the pods the pool runs */
	size_t pod_count;
	const struct bl_planner_usage *usage;     /* one sample per pod at most */
	size_t usage_count;
};

/* How a proposal came about. */
enum bl_planner_outcome {
	BL_PLANNER_WITHIN = 0,         /* inside the tolerance or band: keep the current count */
	BL_PLANNER_SCALE = 1,          /* the proposal is `replicas` */
	BL_PLANNER_FILL_WITHIN = 2,    /* with missing/unready pods filled in it is within: keep */
	BL_PLANNER_FILL_REVERSED = 3,  /* filling them in reverses the direction: keep */
	BL_PLANNER_COUNT_REVERSED = 4, /* the count over the filled-in pods goes the other way: keep */
};

/* The answer for a utilization metric, with the figures behind it. */
struct bl_planner_resource_result {
	int32_t replicas;              /* the proposal */
	enum bl_planner_outcome outcome;
	int32_t utilization_percent;   /* sum(usage) x 100 / sum(request) over the ready pods
					  with usage, truncated (before any fill-in) */
	int64_t raw_usage;             /* sum(usage) / their number, truncated */
	double usage_ratio;            /* utilization / target (the band's middle) */
	int32_t new_utilization_percent; /* after the fill-in (= utilization without one) */
	double new_usage_ratio;        /* after the fill-in (= usage_ratio without one) */
	uint32_t ready_pods;           /* pods whose usage counts */
	uint32_t unready_pods;         /* pending, or cpu readiness rules: 0 % on a scale-up */
	uint32_t missing_pods;         /* no usage sample: 100 % down, 0 % up */
	uint32_t ignored_pods;         /* deleting or failed */
	uint32_t unmatched_samples;    /* usage samples for pods not in the list */
	uint32_t filled_pods;          /* pods counted after the fill-in (ready + filled) */
	int32_t missing_fill_percent;  /* what missing pods were filled in at: -1 not filled,
					  0, or max(100, target) */
	bool unready_filled;           /* unready pods were filled in at 0 % */
};

/* Computes the replica count Kubernetes' HPA proposes for a utilization
 * target, for a pool of `current` replicas: pods deleting or failed are
 * ignored; pending pods are unready; for cpu, a pod is unready within
 * cpu_initialization_period_s of its start if it is not ready or its sample
 * began before it became ready, and after that period if it is not ready
 * and never was (its readiness changed within initial_readiness_delay_s of
 * its start); pods without a sample are missing. When there are none
 * missing and none unready to account for on a scale-up, the proposal is
 * ceil(ratio x ready pods) unless the ratio is within tolerance (or inside
 * the band). Otherwise missing pods count at 100 % of their request
 * (max(100, target) %) on a scale-down and 0 on a scale-up, unready pods at 0
 * on a scale-up, and the ratio is computed again: the count stays as it is
 * when the new ratio is within tolerance or points the other way, else it is
 * ceil(new ratio x pods counted). Integer and float details follow
 * Kubernetes (int64 sums made exact, a truncated int32 percentage,
 * float64 ratios, math.Ceil).
 *
 * Returns 0 and fills *out; or BL_EINVAL with a message in err (errcap bytes,
 * NUL-terminated, truncated if need be; err may be NULL when errcap is 0):
 * malformed input (a name repeated, a time not finite, a negative usage ...),
 * no pods, no usage for any pod that counts ("did not receive metrics for
 * targeted pods"), a pod without a request ("missing request for p3"),
 * requests adding up to 0; BL_ERANGE when the utilization does not fit an
 * int32; BL_ENOMEM when scratch memory could not be had. Nothing is left
 * allocated on any return. */
int bl_planner_resource(int32_t current, const struct bl_planner_resource_metric *m,
			const struct bl_planner_hpa_options *o, const struct bl_alloc_hook *hook,
			struct bl_planner_resource_result *out, char *err, size_t errcap);

/* ---- average-value metrics (the HPA's AverageValue) ------------------------- */

/* A metric summed over the pool, with a target per replica (in-flight calls,
 * queue depth). */
struct bl_planner_average_metric {
	double total;                  /* summed over all replicas, >= 0 */
	struct bl_planner_target target; /* per replica */
};

struct bl_planner_average_result {
	int32_t replicas;              /* the proposal */
	enum bl_planner_outcome outcome; /* WITHIN or SCALE */
	double average;                /* total / current (total when current is 0) */
	double usage_ratio;            /* total / (target x current); +inf when current is 0 */
};

/* Computes the HPA's proposal for an average-value target: keep `current`
 * while total / (target x current) is within tolerance (or total / current
 * inside the band), else ceil(total / target) (the band's middle), capped at
 * INT32_MAX. With current 0 any demand scales (ceil(total / target)).
 * Returns 0, or BL_EINVAL (a value not finite, a negative total, a bad
 * target) with a message in err. */
int bl_planner_average(int32_t current, const struct bl_planner_average_metric *m,
		       const struct bl_planner_tolerance *t, struct bl_planner_average_result *out,
		       char *err, size_t errcap);

/* ---- demand and burst ("panic") mode (Knative's KPA) ------------------------ */

/* Burst mode settings. */
struct bl_planner_panic_config {
	int64_t stable_window_ns;      /* default 60 s: the stable average, and how long
					  panic mode lasts after the last burst */
	int64_t panic_window_ns;       /* default 6 s, <= stable_window_ns */
	int64_t granularity_ns;        /* demand window bucket, default 1 s; the stable
					  window must fit BL_PLANNER_WINDOW_BUCKETS buckets */
	double threshold;              /* default 2.0: panic when the panic window asks
					  for threshold x the ready replicas; 1.1..10 */
	double max_scale_up_rate;      /* Knative's bound on one step up, x ready; 0: none
					  (the default: the behaviors bound steps) */
	double max_scale_down_rate;    /* Knative's bound on one step down, ready / rate;
					  0: none (the default) */
};

/* Burst mode state, kept by the caller between decisions (all zero at first). */
struct bl_planner_panic_state {
	bool panicking;
	bl_time_ns panic_time_ns;      /* last time the panic window was over the threshold */
	int32_t max_panic_pods;        /* the most asked for since panic mode began */
};

/* One bucketed window of demand samples, Knative's TimedFloat64Buckets:
 * values recorded in the same bucket add up, the average is over the buckets
 * since data started (gaps inside count as 0), and a full window without
 * data starts over. Fields are private. */
struct bl_planner_buckets {
	double value[BL_PLANNER_WINDOW_BUCKETS]; /* sum per bucket, ring */
	int64_t first;                 /* bucket number of the first write since data started */
	int64_t last;                  /* bucket number of the last write */
	uint32_t count;                /* buckets in the window, 1..BL_PLANNER_WINDOW_BUCKETS */
	bool has_data;
};

/* The demand window: a stable and a panic window fed with the same samples.
 * Embed it; it owns no memory. */
struct bl_planner_window {
	struct bl_planner_buckets stable;
	struct bl_planner_buckets panic;
	int64_t granularity_ns;        /* bucket width */
};

/* What the demand metric reads from a window at one moment. */
struct bl_planner_demand_metric {
	bool has_data;                 /* false: nothing in the stable window (the metric fails) */
	double stable_average;         /* demand averaged over the stable window */
	double panic_average;          /* demand averaged over the panic window */
	double target_per_replica;     /* demand one replica should carry, > 0 */
};

/* How panic mode moved in one decision. */
enum bl_planner_panic_move {
	BL_PLANNER_PANIC_OFF = 0,      /* stable mode, stays so */
	BL_PLANNER_PANIC_ENTER = 1,    /* entered panic mode now */
	BL_PLANNER_PANIC_EXTEND = 2,   /* in panic mode and over the threshold again */
	BL_PLANNER_PANIC_HOLD = 3,     /* in panic mode, under the threshold, not for long enough */
	BL_PLANNER_PANIC_EXIT = 4,     /* left panic mode now */
};

struct bl_planner_demand_result {
	int32_t replicas;              /* the proposal */
	int32_t desired_stable;        /* ceil(stable average / target), within the Knative rates */
	int32_t desired_panic;         /* ceil(panic average / target), within the rates */
	double panic_ratio;            /* ceil(panic average / target) / max(1, current) */
	enum bl_planner_panic_move move;
	struct bl_planner_panic_state next; /* the state to keep if this decision is taken */
};

/* Fills c with the defaults: windows 60 s and 6 s, 1 s buckets, threshold
 * 2.0, no Knative rate bounds. */
void bl_planner_panic_config_default(struct bl_planner_panic_config *c);

/* Sets up w, empty, for c's windows. Returns 0, or BL_EINVAL (a window or
 * granularity not above 0, the panic window longer than the stable one, the
 * stable window over BL_PLANNER_WINDOW_BUCKETS buckets) leaving w untouched. */
int bl_planner_window_init(struct bl_planner_window *w, const struct bl_planner_panic_config *c);

/* Records demand `value` (>= 0, finite; anything else is ignored) observed
 * at now_ns. Samples in the same bucket add up (record the pool's total
 * once per bucket). A sample older than the window is ignored. */
void bl_planner_window_record(struct bl_planner_window *w, bl_time_ns now_ns, double value);

/* Reads both averages at now_ns into m (has_data, stable_average,
 * panic_average; target_per_replica is left as it is). Changes nothing. */
void bl_planner_window_read(const struct bl_planner_window *w, bl_time_ns now_ns,
			    struct bl_planner_demand_metric *m);

/* Knative's scale decision for a pool of `current` replicas at now_ns, from
 * panic state s: desired_stable = ceil(stable / target), desired_panic =
 * ceil(panic / target); panic mode begins when desired_panic / max(1,
 * current) >= threshold, is extended each time that holds again, and ends
 * when it has not held for the stable window. In stable mode the proposal is
 * desired_stable; in panic mode it is the largest of desired_stable and
 * desired_panic ever asked for since panic mode began: it never goes down.
 * Returns 0 and fills *out; or BL_EINVAL (no data in the window, a value not
 * finite or negative, a target not above 0) with a message in err. s is not
 * changed: out->next is the state to keep. */
int bl_planner_demand(int32_t current, const struct bl_planner_demand_metric *m,
		      const struct bl_planner_panic_config *c, const struct bl_planner_panic_state *s,
		      bl_time_ns now_ns, struct bl_planner_demand_result *out, char *err, size_t errcap);

/* ---- behaviors (autoscaling/v2 HPAScalingRules) --------------------------- */

enum bl_planner_policy_type {
	BL_PLANNER_POLICY_PODS = 0,    /* add or remove up to `value` replicas per period */
	BL_PLANNER_POLICY_PERCENT = 1, /* add or remove up to `value` % per period */
};

struct bl_planner_policy {
	enum bl_planner_policy_type type;
	int32_t value;                 /* > 0 */
	int32_t period_s;              /* 1..1800 */
};

enum bl_planner_select {
	BL_PLANNER_SELECT_MAX = 0,     /* the policy allowing the largest change (default) */
	BL_PLANNER_SELECT_MIN = 1,     /* the policy allowing the smallest change */
	BL_PLANNER_SELECT_DISABLED = 2,/* no change in this direction */
};

/* Parses "Max", "Min", "Disabled" (Kubernetes' spelling; also lower case). */
int bl_planner_select_parse(const char *s, size_t len, enum bl_planner_select *out);

/* Scaling rules for one direction. */
struct bl_planner_rules {
	int32_t stabilization_s;       /* 0..3600: up default 0, down default 300 */
	enum bl_planner_select select;
	struct bl_planner_policy policies[BL_PLANNER_MAX_POLICIES];
	size_t policy_count;           /* 1..BL_PLANNER_MAX_POLICIES unless disabled */
};

/* A past recommendation: what the metrics asked for at at_ns (before the
 * stabilization window, the policies and the min/max clamp). */
struct bl_planner_recommendation {
	bl_time_ns at_ns;
	int32_t replicas;
};

/* A past scale event: the pool was resized by `change` at at_ns. */
struct bl_planner_event {
	bl_time_ns at_ns;
	int32_t change;                /* > 0 scale-up by change, < 0 scale-down by -change */
};

/* Kubernetes' stabilizeRecommendationWithBehaviors: the lowest of `desired`
 * and the recommendations newer than now - up->stabilization_s, and the
 * highest of `desired` and those newer than now - down->stabilization_s,
 * bound the answer: current raised to the first, then lowered to the second.
 * So a scale-down takes the highest recommendation of the last 300 s and a
 * scale-up the lowest of its window. Writes the two bounds to *up_bound and
 * *down_bound (either may be NULL). */
int32_t bl_planner_stabilize(const struct bl_planner_rules *up, const struct bl_planner_rules *down,
			     int32_t current, int32_t desired,
			     const struct bl_planner_recommendation *recs, size_t rec_count,
			     bl_time_ns now_ns, int32_t *up_bound, int32_t *down_bound);

/* Kubernetes' calculateScaleUpLimitWithScalingRules: for each policy, the
 * replicas at the start of its period (current - added + removed by the
 * events newer than now - period) plus value (Pods) or times 1 + value/100
 * rounded up (Percent); the largest (select Max) or smallest (Min) of those,
 * or current when disabled. Sets *policy (may be NULL) to the index of the
 * policy that gave the answer, -1 when disabled. Saturates at INT32_MAX. */
int32_t bl_planner_scale_up_limit(const struct bl_planner_rules *r, int32_t current,
				  const struct bl_planner_event *events, size_t event_count,
				  bl_time_ns now_ns, int *policy);

/* Kubernetes' calculateScaleDownLimitWithBehaviors: as the scale-up limit,
 * with period start - value (Pods) or times 1 - value/100 truncated
 * (Percent); the smallest (Max: the largest change) or the largest (Min). */
int32_t bl_planner_scale_down_limit(const struct bl_planner_rules *r, int32_t current,
				    const struct bl_planner_event *events, size_t event_count,
				    bl_time_ns now_ns, int *policy);

/* ---- budget awareness ----------------------------------------------------- */

/* The rate budget linked to the pool, as the budget sees itself now. When it
 * is the bottleneck (queue_length > 0 and utilization >= its target) more
 * workers would only wait on the quota, so a scale-up stops at the workers
 * the budget keeps busy: busy_workers when given, else
 * ceil(admitted_per_s / per_worker_per_s). It never caps below the current
 * count, and never touches a scale-down. */
struct bl_planner_budget {
	const char *name;              /* the budget, shown in reasons; NULL: none linked */
	uint64_t queue_length;         /* acquires waiting in its queue */
	double utilization;            /* spent / refill rate over its recent window */
	double target_utilization;     /* its target_utilization (0.85..0.95) */
	double admitted_per_s;         /* units it admits per second (its refill rate) */
	double per_worker_per_s;       /* units one busy worker spends per second */
	int32_t busy_workers;          /* > 0: workers it keeps busy, given directly */
};

/* Returns true when b is linked and the bottleneck now. */
bool bl_planner_budget_is_bottleneck(const struct bl_planner_budget *b);

/* Returns the workers b keeps busy (>= 1), or -1 when that is unknown (no
 * busy_workers and no positive rates). */
int32_t bl_planner_budget_workers(const struct bl_planner_budget *b);

/* ---- configuration -------------------------------------------------------- */

struct bl_planner_config {
	int32_t min_replicas;          /* default 5; 0 allows scaling from zero */
	int32_t max_replicas;          /* default 100, >= max(1, min_replicas) */
	struct bl_planner_hpa_options hpa;
	struct bl_planner_rules scale_up;   /* default: 0 s, Max of Percent 100/15 s, Pods 4/15 s */
	struct bl_planner_rules scale_down; /* default: 300 s, Max of Percent 100/15 s */
	struct bl_planner_panic_config panic;
};

/* Fills c with the defaults: 5..100 replicas, tolerances 0.1/0.1, cpu
 * initialization 300 s, readiness delay 30 s, Kubernetes' default behaviors
 * and the burst defaults. */
void bl_planner_config_default(struct bl_planner_config *c);

/* Checks c. Returns 0, or BL_EINVAL and writes what is wrong and what is
 * accepted into err (errcap bytes, NUL-terminated, truncated if need be),
 * such as "scale_up.policies[1].period_s: 0 is outside 1..1800". */
int bl_planner_config_check(const struct bl_planner_config *c, char *err, size_t errcap);

/* ---- the plan -------------------------------------------------------------- */

enum bl_planner_metric_kind {
	BL_PLANNER_METRIC_RESOURCE = 0, /* cpu / memory utilization over pods */
	BL_PLANNER_METRIC_AVERAGE = 1,  /* a total with a per-replica target */
	BL_PLANNER_METRIC_DEMAND = 2,   /* demand with burst mode (at most one per plan) */
	BL_PLANNER_METRIC_FAILED = 3,   /* a metric the caller could not read */
};

/* One metric of a plan: the member matching `kind` is read. */
struct bl_planner_metric {
	enum bl_planner_metric_kind kind;
	const char *name;              /* shown in reasons ("inflight", "queue"); NULL: the
					  resource name, "average", "demand" or "metric" */
	struct bl_planner_resource_metric resource;
	struct bl_planner_average_metric average;
	struct bl_planner_demand_metric demand;
	const char *failure;           /* FAILED: why it could not be read (may be NULL) */
};

/* Everything one decision reads. Only current_replicas and the metrics are
 * required; the history may be empty. */
struct bl_planner_input {
	int32_t current_replicas;      /* >= 0 */
	bl_time_ns now_ns;             /* the moment of the decision, on the history's clock */
	const struct bl_planner_metric *metrics;
	size_t metric_count;           /* 1..BL_PLANNER_MAX_METRICS */
	const struct bl_planner_recommendation *recommendations; /* any order */
	size_t recommendation_count;
	const struct bl_planner_event *events; /* any order */
	size_t event_count;
	struct bl_planner_panic_state panic; /* burst state before this decision */
	struct bl_planner_budget budget;     /* name NULL: no budget linked */
};

/* One metric's answer. */
struct bl_planner_metric_result {
	int status;                    /* 0, or why the metric failed (BL_E*) */
	char message[BL_PLANNER_MESSAGE_MAX]; /* status != 0: the failure; else empty */
	int32_t replicas;              /* the proposal when status is 0 */
	struct bl_planner_resource_result resource; /* kind RESOURCE */
	struct bl_planner_average_result average;   /* kind AVERAGE */
	struct bl_planner_demand_result demand;     /* kind DEMAND */
};

/* What limited the final count, if anything did. */
enum bl_planner_limit {
	BL_PLANNER_LIMIT_NONE = 0,
	BL_PLANNER_LIMIT_SCALE_UP_POLICY = 1,
	BL_PLANNER_LIMIT_SCALE_DOWN_POLICY = 2,
	BL_PLANNER_LIMIT_MAX_REPLICAS = 3,
	BL_PLANNER_LIMIT_MIN_REPLICAS = 4,
};

/* The decision. */
struct bl_planner_result {
	int32_t desired;               /* replicas to run */
	int32_t current;               /* as given */
	int status;                    /* 0; or the first failing metric's code when the
					  metrics could not decide (all failed, or a failure
					  blocked a scale-down): desired is then current */
	bool scaling_disabled;         /* current 0 with min_replicas > 0: nothing to do */
	int winner;                    /* index of the metric with the largest proposal, -1 */
	int32_t metric_replicas;       /* that proposal, -1 when none */
	bool panic_hold;               /* panic mode kept a scale-down from happening */
	bool budget_capped;            /* the budget cap lowered the recommendation */
	int32_t budget_workers;        /* workers the budget keeps busy when it is the
					  bottleneck, else -1 */
	bool record;                   /* record `recommendation` at now (the HPA does on
					  every normal decision) */
	int32_t recommendation;        /* after panic hold and budget cap, before stabilization */
	int32_t up_bound;              /* stabilization bounds (see bl_planner_stabilize) */
	int32_t down_bound;
	int32_t stabilized;            /* after the stabilization windows */
	enum bl_planner_limit limit;   /* what lowered or raised `stabilized`, if anything */
	int limit_policy;              /* the policy index for a policy limit, else -1 */
	int32_t limit_replicas;        /* the bound that applied (policy limit, min or max) */
	struct bl_planner_panic_state panic; /* burst state to keep after this decision */
	size_t metric_count;
	struct bl_planner_metric_result metrics[BL_PLANNER_MAX_METRICS];
};

/* Decides how many replicas the pool should run (see the top of this file
 * and docs/internals/autoscaler.md). Top-level rules as the HPA controller:
 * current 0 with min_replicas > 0 disables scaling (desired 0); current above
 * max_replicas goes to max, below min_replicas to min, without behaviors (the
 * metrics are still computed, for the report). Whatever is wrong with one
 * metric (no pods, no usage, a missing request, no demand data, FAILED, but
 * also a repeated pod name, a time that is not finite, a bad target) does
 * not fail the call: that metric fails, with its code and message in
 * out->metrics[i], and when failures keep the plan from deciding, out->status
 * is the first one's code. The reason, one line for a person, goes to reason
 * (reasoncap bytes, NUL-terminated, truncated if need be, never in the middle
 * of a UTF-8 character; may be NULL when reasoncap is 0).
 *
 * Returns 0 and fills *out; BL_EINVAL when c does not pass
 * bl_planner_config_check or the plan itself is malformed (no metric, more
 * than BL_PLANNER_MAX_METRICS, two demand metrics, a negative current count,
 * a history array missing), with the message in reason; or BL_ENOMEM (*out
 * zeroed). Reads no clock and changes nothing it is
 * given: to act on the decision, record out->recommendation when out->record
 * (bl_planner_history_record), the scale event once the pool is resized
 * (bl_planner_history_scaled), and keep out->panic. */
int bl_planner_plan(const struct bl_planner_config *c, const struct bl_planner_input *in,
		    const struct bl_alloc_hook *hook, struct bl_planner_result *out,
		    char *reason, size_t reasoncap);

/* ---- history ---------------------------------------------------------------- */

/* The autoscaler's memory between decisions, in fixed arrays: what it
 * recommended and how it resized the pool. Embed it; it owns no memory. */
struct bl_planner_history {
	struct bl_planner_recommendation recommendations[BL_PLANNER_HISTORY_MAX];
	size_t recommendation_count;
	struct bl_planner_event events[BL_PLANNER_HISTORY_MAX];
	size_t event_count;
};

/* Empties h. Kubernetes records the current count as a first recommendation
 * when it first sees a pool (so that nothing scales down on the first sync):
 * do the same with bl_planner_history_record(h, c, now, current). */
void bl_planner_history_init(struct bl_planner_history *h);

/* Records a recommendation made at now_ns. As Kubernetes does, it takes the
 * place of one older than both stabilization windows if there is one; else
 * it is appended, or, when h is full, takes the place of the oldest. */
void bl_planner_history_record(struct bl_planner_history *h, const struct bl_planner_config *c,
			       bl_time_ns now_ns, int32_t recommendation);

/* Records that the pool went from `from` to `to` replicas at now_ns (nothing
 * when they are equal). An event older than the longest policy period of
 * either direction is reused, else appended, or, when h is full, the oldest
 * is replaced. */
void bl_planner_history_scaled(struct bl_planner_history *h, const struct bl_planner_config *c,
			       bl_time_ns now_ns, int32_t from, int32_t to);

/* Points in's recommendation and event arrays at h's. */
void bl_planner_history_input(const struct bl_planner_history *h, struct bl_planner_input *in);

#endif
