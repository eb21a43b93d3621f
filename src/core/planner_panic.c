/* The Knative half of the planner: the bucketed demand window
 * (pkg/autoscaler/aggregation/bucketing.go, TimedFloat64Buckets) and the
 * stable / panic decision (pkg/autoscaler/scaling/autoscaler.go, Scale). See
 * include/ballast/planner.h and docs/internals/autoscaler.md. */
#include "ballast/planner.h"

#include <math.h>
#include <string.h>

#include "ballast/error.h"

void bl_planner_panic_config_default(struct bl_planner_panic_config *c)
{
	memset(c, 0, sizeof *c);
	c->stable_window_ns = 60 * BL_NS_PER_S;
	c->panic_window_ns = 6 * BL_NS_PER_S;
	c->granularity_ns = BL_NS_PER_S;
	c->threshold = 2.0;
}

/* ---- the bucketed window ---------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if (a % b != 0 && (a < 0) != (b < 0))
		q--;
	return q;
}

static size_t slot(const struct bl_planner_buckets *b, int64_t bucket)
{
	int64_t r = bucket % (int64_t)b->count;

	return (size_t)(r < 0 ? r + (int64_t)b->count : r);
}

/* Buckets a window of window_ns spans: rounded up, as Knative does. */
static uint32_t buckets_for(int64_t window_ns, int64_t granularity_ns)
{
	int64_t n = window_ns / granularity_ns + (window_ns % granularity_ns != 0);

	return n > BL_PLANNER_WINDOW_BUCKETS ? 0 : (uint32_t)n;
}

static void buckets_clear(struct bl_planner_buckets *b)
{
	memset(b->value, 0, sizeof b->value);
}

int bl_planner_window_init(struct bl_planner_window *w, const struct bl_planner_panic_config *c)
{
	uint32_t ns, np;

	if (!w || !c || c->granularity_ns <= 0 || c->stable_window_ns <= 0 || c->panic_window_ns <= 0 ||
	    c->panic_window_ns > c->stable_window_ns)
		return BL_EINVAL;
	ns = buckets_for(c->stable_window_ns, c->granularity_ns);
	np = buckets_for(c->panic_window_ns, c->granularity_ns);
	if (ns == 0 || np == 0)
		return BL_EINVAL;
	memset(w, 0, sizeof *w);
	w->stable.count = ns;
	w->panic.count = np;
	w->granularity_ns = c->granularity_ns;
	return 0;
}

/* Knative's Record: a sample older than the window is dropped; a full window
 * without data starts over; buckets skipped since the last write are
 * emptied (they held the previous lap of the ring). */
static void buckets_record(struct bl_planner_buckets *b, int64_t bucket, double value)
{
	if (!b->has_data) {
		buckets_clear(b);
		b->first = bucket;
		b->last = bucket;
		b->has_data = true;
	} else if (bucket < b->last) {
		/* The unsigned difference is exact for any two int64. */
		if ((uint64_t)b->last - (uint64_t)bucket >= b->count)
			return;
		if (bucket < b->first)
			b->first = bucket;
	} else if (bucket > b->last) {
		uint64_t gap = (uint64_t)bucket - (uint64_t)b->last;

		if (gap >= b->count) {
			buckets_clear(b);
			b->first = bucket;
		} else {
			for (uint64_t k = 1; k <= gap; k++)
				b->value[slot(b, b->last + (int64_t)k)] = 0;
		}
		b->last = bucket;
	}
	b->value[slot(b, bucket)] += value;
}

/* Knative's WindowAverage: over the buckets since data started (gaps inside
 * count as 0), less the trailing buckets without data; 0 once a whole
 * window has passed without any. */
static double buckets_average(const struct bl_planner_buckets *b, int64_t now_bucket, bool *has_data)
{
	double total = 0;
	uint64_t span, gap = 0, n;

	*has_data = false;
	if (!b->has_data)
		return 0;
	if (now_bucket > b->last) {
		gap = (uint64_t)now_bucket - (uint64_t)b->last;
		if (gap >= b->count)
			return 0;
	}
	for (uint32_t i = 0; i < b->count; i++)
		total += b->value[i];
	for (uint64_t k = 1; k <= gap; k++)
		total -= b->value[slot(b, b->last + (int64_t)k)];
	span = (uint64_t)b->last - (uint64_t)b->first + 1;
	n = b->count - gap;
	if (span < n)
		n = span;
	*has_data = true;
	return total / (double)n;
}

void bl_planner_window_record(struct bl_planner_window *w, bl_time_ns now_ns, double value)
{
	int64_t bucket;

	if (!w || w->granularity_ns <= 0 || !(isfinite(value) && value >= 0))
		return;
	bucket = floor_div(now_ns, w->granularity_ns);
	buckets_record(&w->stable, bucket, value);
	buckets_record(&w->panic, bucket, value);
}

void bl_planner_window_read(const struct bl_planner_window *w, bl_time_ns now_ns,
			    struct bl_planner_demand_metric *m)
{
	int64_t bucket;
	bool unused;

	m->has_data = false;
	m->stable_average = 0;
	m->panic_average = 0;
	if (!w || w->granularity_ns <= 0)
		return;
	bucket = floor_div(now_ns, w->granularity_ns);
	m->stable_average = buckets_average(&w->stable, bucket, &m->has_data);
	m->panic_average = buckets_average(&w->panic, bucket, &unused);
}

/* ---- the decision -------------------------------------------------------------- */

static int32_t to_pods(double x)
{
	if (!(x > 0)) /* also NaN */
		return 0;
	if (x >= (double)INT32_MAX)
		return INT32_MAX;
	return (int32_t)x;
}

static int check_panic_config(const struct bl_planner_panic_config *c, char *err, size_t errcap)
{
	if (c->granularity_ns <= 0)
		return bl_errorf(err, errcap, BL_EINVAL, "panic.granularity: must be above 0 (such as 1s)");
	if (c->stable_window_ns <= 0)
		return bl_errorf(err, errcap, BL_EINVAL, "panic.stable_window: must be above 0 (such as 60s)");
	if (c->panic_window_ns <= 0 || c->panic_window_ns > c->stable_window_ns)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "panic.window: must be above 0 and at most the stable window (such as 6s)");
	if (buckets_for(c->stable_window_ns, c->granularity_ns) == 0)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "panic.stable_window: more than %d buckets of the granularity; use a "
				 "coarser granularity", BL_PLANNER_WINDOW_BUCKETS);
	if (!(c->threshold >= 1.1 && c->threshold <= 10))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "panic.threshold: %g is outside 1.1..10 (such as 2.0)", c->threshold);
	if (!(c->max_scale_up_rate == 0 || (isfinite(c->max_scale_up_rate) && c->max_scale_up_rate > 1)))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "panic.max_scale_up_rate: %g must be 0 (none) or above 1 (Knative: 1000)",
				 c->max_scale_up_rate);
	if (!(c->max_scale_down_rate == 0 ||
	      (isfinite(c->max_scale_down_rate) && c->max_scale_down_rate > 1)))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "panic.max_scale_down_rate: %g must be 0 (none) or above 1 (Knative: 2)",
				 c->max_scale_down_rate);
	return 0;
}

int bl_planner_demand(int32_t current, const struct bl_planner_demand_metric *m,
		      const struct bl_planner_panic_config *c, const struct bl_planner_panic_state *s,
		      bl_time_ns now_ns, struct bl_planner_demand_result *out, char *err, size_t errcap)
{
	double ready, dspc, dppc, up = INFINITY, down = 0;
	struct bl_planner_panic_state next;
	bool over;
	int32_t desired;
	int rc;

	if (!m || !c || !s || !out || current < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "a demand metric needs a metric, the burst settings, "
				 "a state and a current replica count of 0 or more");
	if ((rc = check_panic_config(c, err, errcap)) != 0)
		return rc;
	if (!(isfinite(m->target_per_replica) && m->target_per_replica > 0))
		return bl_errorf(err, errcap, BL_EINVAL, "target_per_replica: %g must be above 0",
				 m->target_per_replica);
	if (!(isfinite(m->stable_average) && m->stable_average >= 0 && isfinite(m->panic_average) &&
	      m->panic_average >= 0))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "stable and panic averages: must be finite numbers, 0 or more");
	if (!m->has_data)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "no demand sample in the stable window: nothing to scale on yet");

	ready = current > 1 ? (double)current : 1;
	if (c->max_scale_up_rate > 0)
		up = ceil(c->max_scale_up_rate * ready);
	if (c->max_scale_down_rate > 0)
		down = floor(ready / c->max_scale_down_rate);
	dspc = ceil(m->stable_average / m->target_per_replica);
	dppc = ceil(m->panic_average / m->target_per_replica);

	memset(out, 0, sizeof *out);
	out->desired_stable = to_pods(fmin(fmax(dspc, down), up));
	out->desired_panic = to_pods(fmin(fmax(dppc, down), up));
	out->panic_ratio = dppc / ready;
	over = out->panic_ratio >= c->threshold;

	next = *s;
	if (!next.panicking && over) {
		/* Begin panicking when the panic window crosses the threshold. */
		next.panicking = true;
		next.panic_time_ns = now_ns;
		next.max_panic_pods = 0;
		out->move = BL_PLANNER_PANIC_ENTER;
	} else if (over) {
		/* Still over: panic mode lasts a stable window from now. */
		next.panic_time_ns = now_ns;
		out->move = BL_PLANNER_PANIC_EXTEND;
	} else if (next.panicking && next.panic_time_ns < INT64_MAX - c->stable_window_ns &&
		   next.panic_time_ns + c->stable_window_ns < now_ns) {
		/* The burst has made its way into the stable window. */
		next.panicking = false;
		next.panic_time_ns = 0;
		next.max_panic_pods = 0;
		out->move = BL_PLANNER_PANIC_EXIT;
	} else {
		out->move = next.panicking ? BL_PLANNER_PANIC_HOLD : BL_PLANNER_PANIC_OFF;
	}

	desired = out->desired_stable;
	if (next.panicking) {
		/* Provision for the larger of the two, and never go down. */
		if (desired < out->desired_panic)
			desired = out->desired_panic;
		if (desired > next.max_panic_pods)
			next.max_panic_pods = desired;
		desired = next.max_panic_pods;
	}
	out->replicas = desired;
	out->next = next;
	return 0;
}
