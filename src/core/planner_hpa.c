/* The Kubernetes half of the planner: utilization and average-value
 * proposals (pkg/controller/podautoscaler/replica_calculator.go) and the
 * behaviors (horizontal.go). See include/ballast/planner.h and
 * docs/internals/autoscaler.md. */
#include "ballast/planner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

/* Exact sums of int64 values, as Kubernetes falls back to big.Int. */
__extension__ typedef __int128 i128;

#define LONGEST_PERIOD_S 1.0e9 /* bound on the cpu periods: finite sums of times */

/* ---- names ------------------------------------------------------------------ */

static const char *const phase_names[] = { "Pending", "Running", "Succeeded", "Failed", "Unknown" };

static bool name_is(const char *s, size_t len, const char *name)
{
	return strlen(name) == len && memcmp(s, name, len) == 0;
}

int bl_planner_phase_parse(const char *s, size_t len, enum bl_planner_phase *out)
{
	if (!s)
		return BL_EINVAL;
	for (size_t i = 0; i < sizeof phase_names / sizeof phase_names[0]; i++) {
		if (name_is(s, len, phase_names[i])) {
			*out = (enum bl_planner_phase)i;
			return 0;
		}
	}
	return BL_EINVAL;
}

const char *bl_planner_phase_name(enum bl_planner_phase p)
{
	if ((unsigned)p >= sizeof phase_names / sizeof phase_names[0])
		return "invalid";
	return phase_names[p];
}

int bl_planner_resource_parse(const char *s, size_t len, enum bl_planner_resource *out)
{
	if (s && name_is(s, len, "cpu")) {
		*out = BL_PLANNER_CPU;
		return 0;
	}
	if (s && name_is(s, len, "memory")) {
		*out = BL_PLANNER_MEMORY;
		return 0;
	}
	return BL_EINVAL;
}

const char *bl_planner_resource_name(enum bl_planner_resource r)
{
	switch (r) {
	case BL_PLANNER_CPU:
		return "cpu";
	case BL_PLANNER_MEMORY:
		return "memory";
	}
	return "invalid";
}

int bl_planner_select_parse(const char *s, size_t len, enum bl_planner_select *out)
{
	if (!s)
		return BL_EINVAL;
	if (name_is(s, len, "Max") || name_is(s, len, "max"))
		*out = BL_PLANNER_SELECT_MAX;
	else if (name_is(s, len, "Min") || name_is(s, len, "min"))
		*out = BL_PLANNER_SELECT_MIN;
	else if (name_is(s, len, "Disabled") || name_is(s, len, "disabled"))
		*out = BL_PLANNER_SELECT_DISABLED;
	else
		return BL_EINVAL;
	return 0;
}

/* ---- small helpers ---------------------------------------------------------- */

static int32_t sat32(double x)
{
	if (!(x > (double)INT32_MIN)) /* also NaN */
		return x > 0 ? INT32_MAX : INT32_MIN;
	if (x >= (double)INT32_MAX)
		return INT32_MAX;
	return (int32_t)x;
}

static int32_t clamp32(int64_t x)
{
	return x > INT32_MAX ? INT32_MAX : x < INT32_MIN ? INT32_MIN : (int32_t)x;
}

static bl_time_ns sub_sat(bl_time_ns a, int64_t b)
{
	if (b > 0 && a < INT64_MIN + b)
		return INT64_MIN;
	return a - b;
}

/* The target the ratio is computed against: the value, or the band's middle. */
static double target_mid(const struct bl_planner_target *t)
{
	return t->band ? t->low + (t->high - t->low) / 2 : t->value;
}

static int check_target(const struct bl_planner_target *t, const char *what, char *err, size_t errcap)
{
	if (t->band) {
		if (!(isfinite(t->low) && isfinite(t->high) && t->low > 0 && t->low < t->high))
			return bl_errorf(err, errcap, BL_EINVAL,
					 "%s: band %g..%g must have 0 < low < high (such as 70..85)",
					 what, t->low, t->high);
		return 0;
	}
	if (!(isfinite(t->value) && t->value > 0))
		return bl_errorf(err, errcap, BL_EINVAL, "%s: %g must be above 0", what, t->value);
	return 0;
}

static int check_tolerance(const struct bl_planner_tolerance *t, char *err, size_t errcap)
{
	if (!(t->up >= 0 && t->up <= 1))
		return bl_errorf(err, errcap, BL_EINVAL, "tolerance.up: %g is outside 0..1 (such as 0.1)", t->up);
	if (!(t->down >= 0 && t->down <= 1))
		return bl_errorf(err, errcap, BL_EINVAL, "tolerance.down: %g is outside 0..1 (such as 0.1)",
				 t->down);
	return 0;
}

/* Kubernetes' Tolerances.isWithin, or "inside the band" for a band, where x
 * is the metric (a utilization percentage or a per-replica value). */
static bool is_within(const struct bl_planner_target *t, const struct bl_planner_tolerance *tol,
		      double x, double ratio)
{
	if (t->band)
		return t->low <= x && x <= t->high;
	return (1.0 - tol->down) <= ratio && ratio <= (1.0 + tol->up);
}

/* ---- Kubernetes times ---------------------------------------------------- */

/* A time as Kubernetes compares it: an unset time is the zero time, earlier
 * than any time that is set; adding a duration to it stays "zero-based". */
struct ktime {
	bool zero; /* the zero time plus s */
	double s;  /* seconds relative to now, or past the zero time */
};

static bool kbefore(struct ktime a, struct ktime b)
{
	if (a.zero != b.zero)
		return a.zero;
	return a.s < b.s;
}

/* ---- utilization (GetResourceReplicas) ---------------------------------------- */

enum pod_class { CLS_READY, CLS_UNREADY, CLS_MISSING, CLS_IGNORED };

struct key {
	const char *s;
	size_t len;
	uint32_t idx; /* position in the caller's array */
};

static int name_cmp(const struct key *a, const struct key *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->s, b->s, n);

	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

/* By name, then by position: the first of equal names is the earliest. */
static int key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;
	int c = name_cmp(a, b);

	if (c)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static bool key_eq(const struct key *a, const struct key *b)
{
	return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

/* Resolves a name (len 0: NUL-terminated) and checks its size. */
static int name_of(const char *s, size_t len, const char *what, size_t i, struct key *k,
		   char *err, size_t errcap)
{
	if (!s)
		return bl_errorf(err, errcap, BL_EINVAL, "%s[%zu]: the name is missing", what, i);
	if (len == 0) /* NUL-terminated: measured up to one byte past the cap */
		while (len <= BL_PLANNER_NAME_MAX && s[len])
			len++;
	if (len == 0 || len > BL_PLANNER_NAME_MAX)
		return bl_errorf(err, errcap, BL_EINVAL, "%s[%zu]: the name must have 1..%d bytes", what, i,
				 BL_PLANNER_NAME_MAX);
	k->s = s;
	k->len = len;
	k->idx = (uint32_t)i;
	return 0;
}

static int check_pod(const struct bl_planner_pod *p, size_t i, char *err, size_t errcap)
{
	if ((unsigned)p->phase > BL_PLANNER_POD_UNKNOWN)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "pods[%zu].phase: %d is not a phase (Pending, Running, Succeeded, Failed, Unknown)",
				 i, (int)p->phase);
	if ((unsigned)p->ready > BL_PLANNER_READY_UNKNOWN)
		return bl_errorf(err, errcap, BL_EINVAL, "pods[%zu].ready: %d is not a readiness", i,
				 (int)p->ready);
	if (p->has_start_time && !isfinite(p->start_time_s))
		return bl_errorf(err, errcap, BL_EINVAL, "pods[%zu].start_time_s: must be a finite number", i);
	if (p->has_ready_transition && !isfinite(p->ready_transition_s))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "pods[%zu].ready_transition_time_s: must be a finite number", i);
	if (p->has_request && p->request < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "pods[%zu].request: %lld must be 0 or more", i,
				 (long long)p->request);
	return 0;
}

static int check_usage(const struct bl_planner_usage *u, size_t i, char *err, size_t errcap)
{
	if (u->usage < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "metrics[%zu].usage: %lld must be 0 or more", i,
				 (long long)u->usage);
	if (u->has_timestamp && !isfinite(u->timestamp_s))
		return bl_errorf(err, errcap, BL_EINVAL, "metrics[%zu].timestamp_s: must be a finite number", i);
	if (!(isfinite(u->window_s) && u->window_s >= 0 && u->window_s <= LONGEST_PERIOD_S))
		return bl_errorf(err, errcap, BL_EINVAL, "metrics[%zu].window_s: %g is outside 0..1e9", i,
				 u->window_s);
	return 0;
}

static int check_hpa_options(const struct bl_planner_hpa_options *o, char *err, size_t errcap)
{
	int rc = check_tolerance(&o->tolerance, err, errcap);

	if (rc)
		return rc;
	if (!(o->cpu_initialization_period_s >= 0 && o->cpu_initialization_period_s <= LONGEST_PERIOD_S))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "cpu_initialization_period_s: %g is outside 0..1e9 (default 300)",
				 o->cpu_initialization_period_s);
	if (!(o->initial_readiness_delay_s >= 0 && o->initial_readiness_delay_s <= LONGEST_PERIOD_S))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "initial_readiness_delay_s: %g is outside 0..1e9 (default 30)",
				 o->initial_readiness_delay_s);
	return 0;
}

/* groupPods for one pod: how it counts. u is its sample or NULL. */
static enum pod_class classify(const struct bl_planner_pod *p, const struct bl_planner_usage *u,
			       enum bl_planner_resource r, const struct bl_planner_hpa_options *o)
{
	bool unready;

	if (p->deleting || p->phase == BL_PLANNER_POD_FAILED)
		return CLS_IGNORED;
	if (p->phase == BL_PLANNER_POD_PENDING)
		return CLS_UNREADY;
	if (!u)
		return CLS_MISSING;
	if (r != BL_PLANNER_CPU)
		return CLS_READY;
	if (p->ready == BL_PLANNER_READY_NONE || !p->has_start_time) {
		unready = true;
	} else {
		struct ktime transition = { !p->has_ready_transition,
					    p->has_ready_transition ? p->ready_transition_s : 0 };

		if (p->start_time_s + o->cpu_initialization_period_s > 0) {
			/* Within the initialization period: unready unless ready
			 * and a whole sample window has passed since then. */
			struct ktime ts = { !u->has_timestamp, u->has_timestamp ? u->timestamp_s : 0 };
			struct ktime since = transition;

			since.s += u->window_s;
			unready = p->ready == BL_PLANNER_READY_FALSE || kbefore(ts, since);
		} else {
			/* After it: unready only if not ready and never was. */
			struct ktime start_delay = { false, p->start_time_s + o->initial_readiness_delay_s };

			unready = p->ready == BL_PLANNER_READY_FALSE && kbefore(transition, start_delay);
		}
	}
	return unready ? CLS_UNREADY : CLS_READY;
}

/* GetResourceUtilizationRatio over sums already made; request > 0. */
static int utilization_ratio(i128 usage, i128 request, double target, const char *rname,
			     int32_t *util, double *ratio, char *err, size_t errcap)
{
	i128 pct = usage * 100 / request;

	if (pct > INT32_MAX) {
		long double v = (long double)pct;

		return bl_errorf(err, errcap, BL_ERANGE, "%s utilization %.0Lf %% is outside the int32 range",
				 rname, v);
	}
	*util = (int32_t)pct;
	*ratio = (double)*util / target;
	return 0;
}

static const char *plural(uint32_t n)
{
	return n == 1 ? "" : "s";
}

int bl_planner_resource(int32_t current, const struct bl_planner_resource_metric *m,
			const struct bl_planner_hpa_options *o, const struct bl_alloc_hook *hook,
			struct bl_planner_resource_result *out, char *err, size_t errcap)
{
	const char *rname;
	size_t np, nu, bytes;
	struct key *pk, *uk;
	int32_t *sample_of;
	unsigned char *cls;
	void *mem;
	i128 usage_sum = 0, request_sum = 0;
	/* Set by utilization_ratio before any use; initialized for gcc -O3,
	 * whose -Wmaybe-uninitialized cannot see through the error returns. */
	double target, ratio = 0, new_ratio = 0;
	int32_t util = 0, new_util = 0;
	uint32_t ready = 0, unready = 0, missing = 0, ignored = 0, unmatched = 0, filled;
	bool fill_unready;
	int32_t fill_pct = -1;
	int rc;

	if (!m || !o || !out || current < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "a utilization metric needs a metric, options and "
				 "a current replica count of 0 or more");
	rname = bl_planner_resource_name(m->resource);
	if ((unsigned)m->resource > BL_PLANNER_MEMORY)
		return bl_errorf(err, errcap, BL_EINVAL, "resource: %d is not cpu or memory", (int)m->resource);
	if ((rc = check_target(&m->target, "target", err, errcap)) != 0)
		return rc;
	if ((rc = check_hpa_options(o, err, errcap)) != 0)
		return rc;
	np = m->pod_count;
	nu = m->usage_count;
	if (np == 0)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "no pods returned by selector while calculating replica count: a %s "
				 "utilization metric needs the pool's pods", rname);
	if (np > BL_PLANNER_MAX_PODS || nu > BL_PLANNER_MAX_PODS)
		return bl_errorf(err, errcap, BL_EINVAL, "%zu pods and %zu metrics: at most %d of each", np, nu,
				 BL_PLANNER_MAX_PODS);
	if (!m->pods || (nu && !m->usage))
		return bl_errorf(err, errcap, BL_EINVAL, "pods or metrics: the array is missing");
	for (size_t i = 0; i < np; i++)
		if ((rc = check_pod(&m->pods[i], i, err, errcap)) != 0)
			return rc;
	for (size_t i = 0; i < nu; i++)
		if ((rc = check_usage(&m->usage[i], i, err, errcap)) != 0)
			return rc;

	if (!hook)
		hook = &bl_alloc_malloc;
	bytes = (np + nu) * sizeof(struct key) + np * sizeof(int32_t) + np;
	mem = hook->malloc_fn(hook->ctx, bytes);
	if (!mem)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory for %zu pods and %zu metrics", np, nu);
	pk = mem;
	uk = pk + np;
	sample_of = (int32_t *)(uk + nu);
	cls = (unsigned char *)(sample_of + np);

	for (size_t i = 0; i < np; i++) {
		rc = name_of(m->pods[i].name, m->pods[i].name_len, "pods", i, &pk[i], err, errcap);
		if (rc)
			goto out_free;
		sample_of[i] = -1;
	}
	for (size_t i = 0; i < nu; i++) {
		rc = name_of(m->usage[i].pod, m->usage[i].pod_len, "metrics", i, &uk[i], err, errcap);
		if (rc)
			goto out_free;
	}
	qsort(pk, np, sizeof *pk, key_cmp);
	qsort(uk, nu, sizeof *uk, key_cmp);
	for (size_t i = 1; i < np; i++) {
		if (key_eq(&pk[i - 1], &pk[i])) {
			rc = bl_errorf(err, errcap, BL_EINVAL, "pods[%u]: the name \"%.*s\" repeats pods[%u]",
				       pk[i].idx, (int)pk[i].len, pk[i].s, pk[i - 1].idx);
			goto out_free;
		}
	}
	for (size_t i = 1; i < nu; i++) {
		if (key_eq(&uk[i - 1], &uk[i])) {
			rc = bl_errorf(err, errcap, BL_EINVAL,
				       "metrics[%u]: a second sample for pod \"%.*s\" (after metrics[%u])",
				       uk[i].idx, (int)uk[i].len, uk[i].s, uk[i - 1].idx);
			goto out_free;
		}
	}
	/* Merge the two sorted lists: each sample finds its pod. */
	for (size_t i = 0, j = 0; j < nu; j++) {
		while (i < np && name_cmp(&pk[i], &uk[j]) < 0)
			i++;
		if (i < np && key_eq(&pk[i], &uk[j]))
			sample_of[pk[i].idx] = (int32_t)uk[j].idx;
		else
			unmatched++;
	}

	/* groupPods, in the pods' order. */
	for (size_t i = 0; i < np; i++) {
		const struct bl_planner_usage *u = sample_of[i] >= 0 ? &m->usage[sample_of[i]] : NULL;

		cls[i] = (unsigned char)classify(&m->pods[i], u, m->resource, o);
		switch (cls[i]) {
		case CLS_READY:
			ready++;
			break;
		case CLS_UNREADY:
			unready++;
			break;
		case CLS_MISSING:
			missing++;
			break;
		default:
			ignored++;
		}
	}
	if (ready == 0) {
		rc = bl_errorf(err, errcap, BL_EINVAL,
			       "did not receive metrics for targeted pods (pods might be unready): none of "
			       "the %zu pods has a %s sample that counts (%u unready, %u missing, %u "
			       "deleting or failed)",
			       np, rname, unready, missing, ignored);
		goto out_free;
	}
	/* calculateRequests: every pod needs a request, as in Kubernetes. */
	for (size_t i = 0; i < np; i++) {
		if (!m->pods[i].has_request) {
			struct key k = { "", 0, 0 }; /* name_of checked these names above */

			name_of(m->pods[i].name, m->pods[i].name_len, "pods", i, &k, NULL, 0);
			rc = bl_errorf(err, errcap, BL_EINVAL,
				       "missing request for %.*s: pods[%zu] has no %s request (every pod "
				       "of the pool needs one, as in Kubernetes)",
				       (int)k.len, k.s, i, rname);
			goto out_free;
		}
	}

	for (size_t i = 0; i < np; i++) {
		if (cls[i] == CLS_READY) {
			usage_sum += m->usage[sample_of[i]].usage;
			request_sum += m->pods[i].request;
		}
	}
	if (request_sum == 0) {
		rc = bl_errorf(err, errcap, BL_EINVAL,
			       "no metrics returned matched known pods: the %s requests of the %u ready "
			       "pod%s add up to 0",
			       rname, ready, plural(ready));
		goto out_free;
	}
	target = target_mid(&m->target);
	rc = utilization_ratio(usage_sum, request_sum, target, rname, &util, &ratio, err, errcap);
	if (rc)
		goto out_free;

	memset(out, 0, sizeof *out);
	out->utilization_percent = util;
	out->raw_usage = (int64_t)(usage_sum / ready);
	out->usage_ratio = ratio;
	out->new_utilization_percent = util;
	out->new_usage_ratio = ratio;
	out->ready_pods = ready;
	out->unready_pods = unready;
	out->missing_pods = missing;
	out->ignored_pods = ignored;
	out->unmatched_samples = unmatched;
	out->filled_pods = ready;
	out->missing_fill_percent = -1;

	fill_unready = unready > 0 && ratio > 1.0;
	if (!fill_unready && missing == 0) {
		if (is_within(&m->target, &o->tolerance, util, ratio)) {
			out->outcome = BL_PLANNER_WITHIN;
			out->replicas = current;
		} else {
			out->outcome = BL_PLANNER_SCALE;
			out->replicas = sat32(ceil(ratio * (double)ready));
		}
		rc = 0;
		goto out_free;
	}

	/* Fill in: missing pods at max(100, target) % of their request on a
	 * scale-down and 0 on a scale-up; unready pods at 0 on a scale-up. */
	filled = ready;
	if (missing > 0 && ratio != 1.0) {
		fill_pct = ratio < 1.0 ? (int32_t)(target > 100 ? floor(target) : 100) : 0;
		for (size_t i = 0; i < np; i++) {
			if (cls[i] == CLS_MISSING) {
				usage_sum += (i128)m->pods[i].request * fill_pct / 100;
				request_sum += m->pods[i].request;
				filled++;
			}
		}
	}
	if (fill_unready) {
		for (size_t i = 0; i < np; i++) {
			if (cls[i] == CLS_UNREADY) {
				request_sum += m->pods[i].request;
				filled++;
			}
		}
	}
	out->missing_fill_percent = fill_pct;
	out->unready_filled = fill_unready;
	out->filled_pods = filled;
	rc = utilization_ratio(usage_sum, request_sum, target, rname, &new_util, &new_ratio, err, errcap);
	if (rc)
		goto out_free; /* only BL_ERANGE: the requests were not 0 before */
	out->new_utilization_percent = new_util;
	out->new_usage_ratio = new_ratio;
	out->replicas = current;
	if (is_within(&m->target, &o->tolerance, new_util, new_ratio)) {
		out->outcome = BL_PLANNER_FILL_WITHIN;
	} else if ((ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0)) {
		out->outcome = BL_PLANNER_FILL_REVERSED;
	} else {
		int32_t n = sat32(ceil(new_ratio * (double)filled));

		if ((new_ratio < 1.0 && n > current) || (new_ratio > 1.0 && n < current)) {
			out->outcome = BL_PLANNER_COUNT_REVERSED;
		} else {
			out->outcome = BL_PLANNER_SCALE;
			out->replicas = n;
		}
	}
	rc = 0;
out_free:
	hook->free_fn(hook->ctx, mem, bytes);
	return rc;
}

/* ---- average value (GetExternalPerPodMetricReplicas) ------------------------- */

int bl_planner_average(int32_t current, const struct bl_planner_average_metric *m,
		       const struct bl_planner_tolerance *t, struct bl_planner_average_result *out,
		       char *err, size_t errcap)
{
	double target, avg, ratio;
	int rc;

	if (!m || !t || !out || current < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "an average metric needs a metric, tolerances and "
				 "a current replica count of 0 or more");
	if ((rc = check_target(&m->target, "target", err, errcap)) != 0)
		return rc;
	if ((rc = check_tolerance(t, err, errcap)) != 0)
		return rc;
	if (!(isfinite(m->total) && m->total >= 0))
		return bl_errorf(err, errcap, BL_EINVAL, "total: %g must be a finite number, 0 or more",
				 m->total);
	target = target_mid(&m->target);
	memset(out, 0, sizeof *out);
	if (current > 0) {
		avg = m->total / (double)current;
		ratio = m->total / (target * (double)current);
	} else {
		avg = m->total;
		ratio = INFINITY;
	}
	out->average = avg;
	out->usage_ratio = ratio;
	if (current > 0 && is_within(&m->target, t, avg, ratio)) {
		out->outcome = BL_PLANNER_WITHIN;
		out->replicas = current;
	} else {
		out->outcome = BL_PLANNER_SCALE;
		out->replicas = sat32(ceil(m->total / target));
	}
	return 0;
}

/* ---- behaviors ---------------------------------------------------------------- */

/* Replicas added and removed by the events newer than now - period. */
static void changes_in_period(int32_t period_s, const struct bl_planner_event *ev, size_t n,
			      bl_time_ns now, int64_t *added, int64_t *removed)
{
	bl_time_ns cutoff = sub_sat(now, (int64_t)period_s * BL_NS_PER_S);

	*added = 0;
	*removed = 0;
	for (size_t i = 0; i < n; i++) {
		if (ev[i].at_ns > cutoff) {
			if (ev[i].change > 0)
				*added += ev[i].change;
			else
				*removed -= (int64_t)ev[i].change;
		}
	}
}

int32_t bl_planner_scale_up_limit(const struct bl_planner_rules *r, int32_t current,
				  const struct bl_planner_event *events, size_t event_count,
				  bl_time_ns now_ns, int *policy)
{
	bool pick_min = r->select == BL_PLANNER_SELECT_MIN;
	int64_t result = pick_min ? INT32_MAX : INT32_MIN;
	int chosen = -1;

	if (r->select == BL_PLANNER_SELECT_DISABLED) {
		if (policy)
			*policy = -1;
		return current;
	}
	for (size_t i = 0; i < r->policy_count && i < BL_PLANNER_MAX_POLICIES; i++) {
		const struct bl_planner_policy *p = &r->policies[i];
		int64_t added, removed, start, proposed;

		changes_in_period(p->period_s, events, event_count, now_ns, &added, &removed);
		start = (int64_t)current - added + removed;
		if (p->type == BL_PLANNER_POLICY_PODS)
			proposed = start + p->value;
		else /* rounded up, or a small pool would never grow */
			proposed = sat32(ceil((double)start * (1 + (double)p->value / 100)));
		proposed = clamp32(proposed);
		if (chosen < 0 || (pick_min ? proposed < result : proposed > result)) {
			result = proposed;
			chosen = (int)i;
		}
	}
	if (policy)
		*policy = chosen;
	return (int32_t)result;
}

int32_t bl_planner_scale_down_limit(const struct bl_planner_rules *r, int32_t current,
				    const struct bl_planner_event *events, size_t event_count,
				    bl_time_ns now_ns, int *policy)
{
	/* Max (the largest change) is the smallest count here. */
	bool pick_max = r->select == BL_PLANNER_SELECT_MIN;
	int64_t result = pick_max ? INT32_MIN : INT32_MAX;
	int chosen = -1;

	if (r->select == BL_PLANNER_SELECT_DISABLED) {
		if (policy)
			*policy = -1;
		return current;
	}
	for (size_t i = 0; i < r->policy_count && i < BL_PLANNER_MAX_POLICIES; i++) {
		const struct bl_planner_policy *p = &r->policies[i];
		int64_t added, removed, start, proposed;

		changes_in_period(p->period_s, events, event_count, now_ns, &added, &removed);
		start = (int64_t)current - added + removed;
		if (p->type == BL_PLANNER_POLICY_PODS)
			proposed = start - p->value;
		else /* Go's int32(float64): truncated toward zero */
			proposed = sat32((double)start * (1 - (double)p->value / 100));
		proposed = clamp32(proposed);
		if (chosen < 0 || (pick_max ? proposed > result : proposed < result)) {
			result = proposed;
			chosen = (int)i;
		}
	}
	if (policy)
		*policy = chosen;
	return (int32_t)result;
}

int32_t bl_planner_stabilize(const struct bl_planner_rules *up, const struct bl_planner_rules *down,
			     int32_t current, int32_t desired,
			     const struct bl_planner_recommendation *recs, size_t rec_count,
			     bl_time_ns now_ns, int32_t *up_bound, int32_t *down_bound)
{
	bl_time_ns up_cut = sub_sat(now_ns, (int64_t)up->stabilization_s * BL_NS_PER_S);
	bl_time_ns down_cut = sub_sat(now_ns, (int64_t)down->stabilization_s * BL_NS_PER_S);
	int32_t lo = desired, hi = desired, r = current;

	for (size_t i = 0; i < rec_count; i++) {
		if (recs[i].at_ns > up_cut && recs[i].replicas < lo)
			lo = recs[i].replicas;
		if (recs[i].at_ns > down_cut && recs[i].replicas > hi)
			hi = recs[i].replicas;
	}
	if (r < lo)
		r = lo;
	if (r > hi)
		r = hi;
	if (up_bound)
		*up_bound = lo;
	if (down_bound)
		*down_bound = hi;
	return r;
}
