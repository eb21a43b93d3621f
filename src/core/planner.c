/* Autoscaling planner: the decision that ties the metrics, burst mode, the
 * budget cap and the behaviors together, with its reason in words. See
 * include/ballast/planner.h and docs/internals/autoscaler.md. */
#include "ballast/planner.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ballast/error.h"

/* ---- configuration ------------------------------------------------------------ */

static void policy_set(struct bl_planner_policy *p, enum bl_planner_policy_type t, int32_t value,
		       int32_t period_s)
{
	p->type = t;
	p->value = value;
	p->period_s = period_s;
}

void bl_planner_config_default(struct bl_planner_config *c)
{
	memset(c, 0, sizeof *c);
	c->min_replicas = 5;
	c->max_replicas = 100;
	c->hpa.tolerance.up = 0.1;
	c->hpa.tolerance.down = 0.1;
	c->hpa.cpu_initialization_period_s = 300;
	c->hpa.initial_readiness_delay_s = 30;
	/* Kubernetes' defaults (autoscaling/v2 HPAScalingRules). */
	c->scale_up.stabilization_s = 0;
	c->scale_up.select = BL_PLANNER_SELECT_MAX;
	policy_set(&c->scale_up.policies[0], BL_PLANNER_POLICY_PERCENT, 100, 15);
	policy_set(&c->scale_up.policies[1], BL_PLANNER_POLICY_PODS, 4, 15);
	c->scale_up.policy_count = 2;
	c->scale_down.stabilization_s = 300;
	c->scale_down.select = BL_PLANNER_SELECT_MAX;
	policy_set(&c->scale_down.policies[0], BL_PLANNER_POLICY_PERCENT, 100, 15);
	c->scale_down.policy_count = 1;
	bl_planner_panic_config_default(&c->panic);
}

static int check_rules(const struct bl_planner_rules *r, const char *dir, char *err, size_t errcap)
{
	if (r->stabilization_s < 0 || r->stabilization_s > 3600)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "%s.stabilization_window_s: %d is outside 0..3600", dir, (int)r->stabilization_s);
	if ((unsigned)r->select > BL_PLANNER_SELECT_DISABLED)
		return bl_errorf(err, errcap, BL_EINVAL, "%s.select_policy: %d is not Max, Min or Disabled",
				 dir, (int)r->select);
	if (r->policy_count > BL_PLANNER_MAX_POLICIES)
		return bl_errorf(err, errcap, BL_EINVAL, "%s.policies: %zu policies, at most %d", dir,
				 r->policy_count, BL_PLANNER_MAX_POLICIES);
	if (r->policy_count == 0 && r->select != BL_PLANNER_SELECT_DISABLED)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "%s.policies: at least one policy is needed unless select_policy is Disabled",
				 dir);
	for (size_t i = 0; i < r->policy_count; i++) {
		const struct bl_planner_policy *p = &r->policies[i];

		if ((unsigned)p->type > BL_PLANNER_POLICY_PERCENT)
			return bl_errorf(err, errcap, BL_EINVAL, "%s.policies[%zu].type: %d is not Pods or Percent",
					 dir, i, (int)p->type);
		if (p->value <= 0)
			return bl_errorf(err, errcap, BL_EINVAL, "%s.policies[%zu].value: %d must be above 0", dir,
					 i, (int)p->value);
		if (p->period_s < 1 || p->period_s > 1800)
			return bl_errorf(err, errcap, BL_EINVAL,
					 "%s.policies[%zu].period_s: %d is outside 1..1800", dir, i,
					 (int)p->period_s);
	}
	return 0;
}

int bl_planner_config_check(const struct bl_planner_config *c, char *err, size_t errcap)
{
	struct bl_planner_demand_metric probe = { true, 0, 0, 1 };
	struct bl_planner_panic_state st = { false, 0, 0 };
	struct bl_planner_demand_result unused;
	int rc;

	if (c->min_replicas < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "min_replicas: %d must be 0 or more (default 5)",
				 (int)c->min_replicas);
	if (c->max_replicas < 1 || c->max_replicas < c->min_replicas)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "max_replicas: %d must be at least 1 and at least min_replicas (%d)",
				 (int)c->max_replicas, (int)c->min_replicas);
	if (!(c->hpa.tolerance.up >= 0 && c->hpa.tolerance.up <= 1))
		return bl_errorf(err, errcap, BL_EINVAL, "tolerance.up: %g is outside 0..1 (default 0.1)",
				 c->hpa.tolerance.up);
	if (!(c->hpa.tolerance.down >= 0 && c->hpa.tolerance.down <= 1))
		return bl_errorf(err, errcap, BL_EINVAL, "tolerance.down: %g is outside 0..1 (default 0.1)",
				 c->hpa.tolerance.down);
	if (!(c->hpa.cpu_initialization_period_s >= 0 && c->hpa.cpu_initialization_period_s <= 1e9))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "cpu_initialization_period_s: %g is outside 0..1e9 (default 300)",
				 c->hpa.cpu_initialization_period_s);
	if (!(c->hpa.initial_readiness_delay_s >= 0 && c->hpa.initial_readiness_delay_s <= 1e9))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "initial_readiness_delay_s: %g is outside 0..1e9 (default 30)",
				 c->hpa.initial_readiness_delay_s);
	if ((rc = check_rules(&c->scale_up, "scale_up", err, errcap)) != 0)
		return rc;
	if ((rc = check_rules(&c->scale_down, "scale_down", err, errcap)) != 0)
		return rc;
	/* The burst settings are checked where they are used. */
	if ((rc = bl_planner_demand(0, &probe, &c->panic, &st, 0, &unused, err, errcap)) != 0)
		return rc;
	if (err && errcap)
		err[0] = '\0';
	return 0;
}

/* ---- budget ---------------------------------------------------------------------- */

bool bl_planner_budget_is_bottleneck(const struct bl_planner_budget *b)
{
	return b && b->name && b->queue_length > 0 && isfinite(b->utilization) &&
	       isfinite(b->target_utilization) && b->utilization >= b->target_utilization;
}

int32_t bl_planner_budget_workers(const struct bl_planner_budget *b)
{
	double n;

	if (!b)
		return -1;
	if (b->busy_workers > 0)
		return b->busy_workers;
	if (!(isfinite(b->admitted_per_s) && isfinite(b->per_worker_per_s) && b->admitted_per_s > 0 &&
	      b->per_worker_per_s > 0))
		return -1;
	/* Rounded up: the last worker may be partly idle, but no quota goes unused. */
	n = ceil(b->admitted_per_s / b->per_worker_per_s);
	return n >= (double)INT32_MAX ? INT32_MAX : n < 1 ? 1 : (int32_t)n;
}

/* ---- the reason -------------------------------------------------------------------- */

/* A line in a fixed buffer: appends what fits and never overruns. */
struct line {
	char *buf;
	size_t cap;
	size_t len;
	bool full;
};

static void say(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!l->buf || l->cap == 0 || l->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->len, l->cap - l->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= l->cap - l->len) {
		/* Truncated: do not leave half a UTF-8 character at the end. */
		size_t end = l->cap - 1, k = end;

		while (k > 0 && ((unsigned char)l->buf[k - 1] & 0xC0) == 0x80)
			k--;
		if (k > 0 && ((unsigned char)l->buf[k - 1] & 0x80)) {
			unsigned char lead = (unsigned char)l->buf[k - 1];
			size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;

			if (end - (k - 1) < need)
				end = k - 1;
		}
		l->buf[end] = '\0';
		l->len = end;
		l->full = true;
		return;
	}
	l->len += (size_t)n;
}

static const char *pl(int64_t n)
{
	return n == 1 ? "" : "s";
}

static const char *metric_name(const struct bl_planner_metric *m)
{
	if (m->name && m->name[0])
		return m->name;
	switch (m->kind) {
	case BL_PLANNER_METRIC_RESOURCE:
		return bl_planner_resource_name(m->resource.resource);
	case BL_PLANNER_METRIC_AVERAGE:
		return "average";
	case BL_PLANNER_METRIC_DEMAND:
		return "demand";
	default:
		return "metric";
	}
}

static double mid_of(const struct bl_planner_target *t)
{
	return t->band ? t->low + (t->high - t->low) / 2 : t->value;
}

/* "120 % > 85 %", "60 % below band 70–85 %" */
static void say_vs_target(struct line *l, double x, const struct bl_planner_target *t, bool pct)
{
	const char *u = pct ? " %" : "";

	if (t->band)
		say(l, "%g%s %s band %g–%g%s", x, u, x > t->high ? "above" : "below", t->low, t->high, u);
	else
		say(l, "%g%s %s %g%s", x, u, x > t->value ? ">" : "<", t->value, u);
}

static void say_within(struct line *l, const struct bl_planner_target *t, bool pct)
{
	const char *u = pct ? " %" : "";

	if (t->band)
		say(l, "inside band %g–%g%s", t->low, t->high, u);
	else
		say(l, "within tolerance of %g%s", t->value, u);
}

static void say_resource(struct line *l, const char *name, const struct bl_planner_resource_metric *m,
			 const struct bl_planner_resource_result *r, int32_t current)
{
	const struct bl_planner_target *t = &m->target;
	bool filled = r->missing_fill_percent >= 0 || r->unready_filled;

	if (r->outcome == BL_PLANNER_WITHIN) {
		say(l, "%s %d %% ", name, (int)r->utilization_percent);
		say_within(l, t, true);
		say(l, " over %u ready pod%s → keep %d", r->ready_pods, pl(r->ready_pods), (int)current);
		return;
	}
	say(l, "%s ", name);
	say_vs_target(l, r->utilization_percent, t, true);
	say(l, " over %u ready pod%s", r->ready_pods, pl(r->ready_pods));
	if (t->band)
		say(l, ", aiming at %g %%", mid_of(t));
	if (!filled) {
		say(l, " → %d", (int)r->replicas);
		return;
	}
	say(l, "; counting ");
	if (r->missing_fill_percent >= 0)
		say(l, "%u missing pod%s at %d %%", r->missing_pods, pl(r->missing_pods),
		    (int)r->missing_fill_percent);
	if (r->missing_fill_percent >= 0 && r->unready_filled)
		say(l, " and ");
	if (r->unready_filled)
		say(l, "%u unready pod%s at 0 %%", r->unready_pods, pl(r->unready_pods));
	say(l, " it is %d %% over %u pods", (int)r->new_utilization_percent, r->filled_pods);
	switch (r->outcome) {
	case BL_PLANNER_FILL_WITHIN:
		say(l, ", ");
		say_within(l, t, true);
		say(l, " → keep %d", (int)current);
		break;
	case BL_PLANNER_FILL_REVERSED:
		say(l, ", which points the other way → keep %d", (int)current);
		break;
	case BL_PLANNER_COUNT_REVERSED:
		say(l, ", whose count points the other way → keep %d", (int)current);
		break;
	default:
		say(l, " → %d", (int)r->replicas);
	}
}

static void say_average(struct line *l, const char *name, const struct bl_planner_average_metric *m,
			const struct bl_planner_average_result *r, int32_t current)
{
	if (r->outcome == BL_PLANNER_WITHIN) {
		say(l, "%s %g per replica ", name, r->average);
		say_within(l, &m->target, false);
		say(l, " → keep %d", (int)current);
		return;
	}
	if (current == 0) {
		say(l, "%s %g with no replica, %g per replica → %d", name, m->total, mid_of(&m->target),
		    (int)r->replicas);
		return;
	}
	say(l, "%s ", name);
	say_vs_target(l, r->average, &m->target, false);
	say(l, " per replica over %d replica%s", (int)current, pl(current));
	if (m->target.band)
		say(l, ", aiming at %g", mid_of(&m->target));
	say(l, " → %d", (int)r->replicas);
}

static void say_demand(struct line *l, const char *name, const struct bl_planner_demand_metric *m,
		       const struct bl_planner_demand_result *r, const struct bl_planner_panic_config *c,
		       int32_t current)
{
	char stable[32], panic[32];

	if (bl_format_duration(c->stable_window_ns, stable, sizeof stable) < 0)
		snprintf(stable, sizeof stable, "stable window");
	if (bl_format_duration(c->panic_window_ns, panic, sizeof panic) < 0)
		snprintf(panic, sizeof panic, "panic window");
	switch (r->move) {
	case BL_PLANNER_PANIC_ENTER:
		say(l, "%s %g over %s at %g per replica → %d, %.3g× the %d replica%s (threshold %g): "
		    "panic mode → %d", name, m->panic_average, panic, m->target_per_replica,
		    (int)r->desired_panic, r->panic_ratio, (int)current, pl(current), c->threshold,
		    (int)r->replicas);
		break;
	case BL_PLANNER_PANIC_EXTEND:
		say(l, "panic mode goes on: %s %g over %s at %g per replica → %d, %.3g× the %d "
		    "replica%s; never scaling down while panicking → %d", name, m->panic_average, panic,
		    m->target_per_replica, (int)r->desired_panic, r->panic_ratio, (int)current, pl(current),
		    (int)r->replicas);
		break;
	case BL_PLANNER_PANIC_HOLD:
		say(l, "panic mode until %s without a burst (%s %g over %s → %d, over %s → %d); never "
		    "scaling down while panicking → %d", stable, name, m->stable_average, stable,
		    (int)r->desired_stable, panic, (int)r->desired_panic, (int)r->replicas);
		break;
	case BL_PLANNER_PANIC_EXIT:
		say(l, "%s %g over %s at %g per replica → %d; panic mode over after %s without a burst",
		    name, m->stable_average, stable, m->target_per_replica, (int)r->replicas, stable);
		break;
	default:
		say(l, "%s %g over %s at %g per replica → %d", name, m->stable_average, stable,
		    m->target_per_replica, (int)r->replicas);
	}
}

static void say_metric(struct line *l, const struct bl_planner_config *c, const struct bl_planner_metric *m,
		       const struct bl_planner_metric_result *r, int32_t current)
{
	const char *name = metric_name(m);

	if (r->status) {
		say(l, "%s failed (%s)", name, r->message);
		return;
	}
	switch (m->kind) {
	case BL_PLANNER_METRIC_RESOURCE:
		say_resource(l, name, &m->resource, &r->resource, current);
		break;
	case BL_PLANNER_METRIC_AVERAGE:
		say_average(l, name, &m->average, &r->average, current);
		break;
	case BL_PLANNER_METRIC_DEMAND:
		say_demand(l, name, &m->demand, &r->demand, &c->panic, current);
		break;
	default:
		break;
	}
}

static void say_policy(struct line *l, const struct bl_planner_rules *r, int i)
{
	const struct bl_planner_policy *p;

	if (i < 0 || (size_t)i >= r->policy_count)
		return;
	p = &r->policies[i];
	if (p->type == BL_PLANNER_POLICY_PODS)
		say(l, " %d pod%s/%d s", (int)p->value, pl(p->value), (int)p->period_s);
	else
		say(l, " %d %%/%d s", (int)p->value, (int)p->period_s);
}

/* The steps after the metrics: panic hold, budget, stabilization, limits. */
static void say_steps(struct line *l, const struct bl_planner_config *c, const struct bl_planner_input *in,
		      const struct bl_planner_result *o)
{
	if (o->panic_hold)
		say(l, "; panic mode: no scale-down → %d", (int)o->recommendation);
	if (o->budget_capped) {
		const struct bl_planner_budget *b = &in->budget;

		say(l, "; capped by budget %s, the bottleneck (%llu waiting, %.0f %% used of a %.0f %% "
		    "target): it keeps %d worker%s busy, more would only wait on the quota → %d",
		    b->name, (unsigned long long)b->queue_length, b->utilization * 100,
		    b->target_utilization * 100, (int)o->budget_workers, pl(o->budget_workers),
		    (int)o->recommendation);
	}
	if (o->stabilized > o->recommendation)
		say(l, "; scale-down stabilization: %d is the highest recommendation of the last %d s → %d",
		    (int)o->down_bound, (int)c->scale_down.stabilization_s, (int)o->stabilized);
	else if (o->stabilized < o->recommendation)
		say(l, "; scale-up stabilization: %d is the lowest recommendation of the last %d s → %d",
		    (int)o->up_bound, (int)c->scale_up.stabilization_s, (int)o->stabilized);
	switch (o->limit) {
	case BL_PLANNER_LIMIT_SCALE_UP_POLICY:
		if (c->scale_up.select == BL_PLANNER_SELECT_DISABLED) {
			say(l, "; scale-up is disabled → %d", (int)o->desired);
		} else {
			say(l, "; capped by scale-up policy");
			say_policy(l, &c->scale_up, o->limit_policy);
			say(l, " → %d", (int)o->desired);
		}
		break;
	case BL_PLANNER_LIMIT_SCALE_DOWN_POLICY:
		if (c->scale_down.select == BL_PLANNER_SELECT_DISABLED) {
			say(l, "; scale-down is disabled → %d", (int)o->desired);
		} else {
			say(l, "; limited by scale-down policy");
			say_policy(l, &c->scale_down, o->limit_policy);
			say(l, " → %d", (int)o->desired);
		}
		break;
	case BL_PLANNER_LIMIT_MAX_REPLICAS:
		say(l, "; capped at max_replicas %d", (int)o->desired);
		break;
	case BL_PLANNER_LIMIT_MIN_REPLICAS:
		say(l, "; raised to min_replicas %d", (int)o->desired);
		break;
	default:
		break;
	}
}

/* The metrics not named yet (skip and skip2 are), in brackets. */
static void say_others(struct line *l, const struct bl_planner_config *c, const struct bl_planner_input *in,
		       const struct bl_planner_result *o, int skip, int skip2)
{
	bool first = true;

	for (size_t i = 0; i < o->metric_count; i++) {
		if ((int)i == skip || (int)i == skip2)
			continue;
		say(l, first ? " [also: " : "; ");
		say_metric(l, c, &in->metrics[i], &o->metrics[i], o->current);
		first = false;
	}
	if (!first)
		say(l, "]");
}

/* ---- the plan ---------------------------------------------------------------------- */

static int check_input(const struct bl_planner_input *in, char *err, size_t errcap)
{
	size_t demand = 0;

	if (in->current_replicas < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "current_replicas: %d must be 0 or more",
				 (int)in->current_replicas);
	if (in->metric_count == 0 || !in->metrics)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "metrics: at least one is needed (cpu, memory, an average value or demand)");
	if (in->metric_count > BL_PLANNER_MAX_METRICS)
		return bl_errorf(err, errcap, BL_EINVAL, "metrics: %zu given, at most %d", in->metric_count,
				 BL_PLANNER_MAX_METRICS);
	for (size_t i = 0; i < in->metric_count; i++) {
		if ((unsigned)in->metrics[i].kind > BL_PLANNER_METRIC_FAILED)
			return bl_errorf(err, errcap, BL_EINVAL, "metrics[%zu].kind: %d is not a metric kind", i,
					 (int)in->metrics[i].kind);
		if (in->metrics[i].kind == BL_PLANNER_METRIC_DEMAND && ++demand > 1)
			return bl_errorf(err, errcap, BL_EINVAL,
					 "metrics[%zu]: a second demand metric; burst mode has one state", i);
	}
	if ((in->recommendation_count && !in->recommendations) || (in->event_count && !in->events))
		return bl_errorf(err, errcap, BL_EINVAL, "history: an array is missing");
	if (in->panic.max_panic_pods < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "panic.max_panic_pods: %d must be 0 or more",
				 (int)in->panic.max_panic_pods);
	return 0;
}

/* Runs metric i; BL_ENOMEM is the only error passed up. */
static int run_metric(const struct bl_planner_config *c, const struct bl_planner_input *in,
		      const struct bl_alloc_hook *hook, size_t i, struct bl_planner_result *out)
{
	const struct bl_planner_metric *m = &in->metrics[i];
	struct bl_planner_metric_result *r = &out->metrics[i];
	int32_t cur = in->current_replicas;
	int rc = 0;

	r->message[0] = '\0';
	r->replicas = -1;
	switch (m->kind) {
	case BL_PLANNER_METRIC_RESOURCE:
		rc = bl_planner_resource(cur, &m->resource, &c->hpa, hook, &r->resource, r->message,
					 sizeof r->message);
		if (rc == BL_ENOMEM)
			return rc;
		if (!rc)
			r->replicas = r->resource.replicas;
		break;
	case BL_PLANNER_METRIC_AVERAGE:
		rc = bl_planner_average(cur, &m->average, &c->hpa.tolerance, &r->average, r->message,
					sizeof r->message);
		if (!rc)
			r->replicas = r->average.replicas;
		break;
	case BL_PLANNER_METRIC_DEMAND:
		rc = bl_planner_demand(cur, &m->demand, &c->panic, &in->panic, in->now_ns, &r->demand,
				       r->message, sizeof r->message);
		if (!rc) {
			r->replicas = r->demand.replicas;
			out->panic = r->demand.next;
		}
		break;
	default:
		rc = bl_errorf(r->message, sizeof r->message, BL_EINVAL, "%s",
			       m->failure && m->failure[0] ? m->failure : "the metric could not be read");
	}
	r->status = rc;
	return 0;
}

/* convertDesiredReplicasWithBehaviorRate: the policies, then min/max. */
static int32_t apply_rate(const struct bl_planner_config *c, const struct bl_planner_input *in,
			  int32_t current, int32_t desired, struct bl_planner_result *o)
{
	int policy;

	if (desired > current) {
		int32_t up = bl_planner_scale_up_limit(&c->scale_up, current, in->events, in->event_count,
						       in->now_ns, &policy);
		int32_t allowed = c->max_replicas;
		enum bl_planner_limit why = BL_PLANNER_LIMIT_MAX_REPLICAS;

		if (up < current)
			up = current; /* no further scale-up until the events age out */
		if (allowed > up) {
			allowed = up;
			why = BL_PLANNER_LIMIT_SCALE_UP_POLICY;
		}
		if (desired > allowed) {
			o->limit = why;
			o->limit_policy = why == BL_PLANNER_LIMIT_SCALE_UP_POLICY ? policy : -1;
			o->limit_replicas = allowed;
			return allowed;
		}
	} else if (desired < current) {
		int32_t down = bl_planner_scale_down_limit(&c->scale_down, current, in->events,
							   in->event_count, in->now_ns, &policy);
		int32_t allowed = c->min_replicas;
		enum bl_planner_limit why = BL_PLANNER_LIMIT_MIN_REPLICAS;

		if (down > current)
			down = current;
		if (allowed < down) {
			allowed = down;
			why = BL_PLANNER_LIMIT_SCALE_DOWN_POLICY;
		}
		if (desired < allowed) {
			o->limit = why;
			o->limit_policy = why == BL_PLANNER_LIMIT_SCALE_DOWN_POLICY ? policy : -1;
			o->limit_replicas = allowed;
			return allowed;
		}
	}
	return desired;
}

static void first_failure(const struct bl_planner_result *o, size_t *idx)
{
	for (size_t i = 0; i < o->metric_count; i++) {
		if (o->metrics[i].status) {
			*idx = i;
			return;
		}
	}
}

int bl_planner_plan(const struct bl_planner_config *c, const struct bl_planner_input *in,
		    const struct bl_alloc_hook *hook, struct bl_planner_result *out,
		    char *reason, size_t reasoncap)
{
	struct line l = { reason, reasoncap, 0, false };
	int32_t cur, rec;
	size_t failed = 0, first = 0;
	int rc;

	if (reason && reasoncap)
		reason[0] = '\0';
	if (!c || !in || !out)
		return bl_errorf(reason, reasoncap, BL_EINVAL, "a plan needs a config, an input and a result");
	if ((rc = bl_planner_config_check(c, reason, reasoncap)) != 0)
		return rc;
	if ((rc = check_input(in, reason, reasoncap)) != 0)
		return rc;

	memset(out, 0, sizeof *out);
	cur = in->current_replicas;
	out->current = cur;
	out->desired = cur;
	out->winner = -1;
	out->metric_replicas = -1;
	out->budget_workers = -1;
	out->recommendation = cur;
	out->up_bound = cur;
	out->down_bound = cur;
	out->stabilized = cur;
	out->limit_policy = -1;
	out->limit_replicas = -1;
	out->panic = in->panic;
	out->metric_count = in->metric_count;

	/* Every metric is computed, even where the top-level rules decide,
	 * so that the plan shows what they say. */
	for (size_t i = 0; i < in->metric_count; i++) {
		if ((rc = run_metric(c, in, hook, i, out)) != 0) {
			memset(out, 0, sizeof *out);
			return bl_errorf(reason, reasoncap, rc, "out of memory while computing metrics[%zu]", i);
		}
		if (out->metrics[i].status) {
			failed++;
			continue;
		}
		if (out->winner < 0 || out->metrics[i].replicas > out->metric_replicas) {
			out->winner = (int)i;
			out->metric_replicas = out->metrics[i].replicas;
		}
	}

	/* The HPA controller's top-level rules. */
	if (cur == 0 && c->min_replicas != 0) {
		out->scaling_disabled = true;
		out->panic = in->panic;
		out->desired = 0;
		say(&l, "scaling is disabled: the pool has 0 replicas and min_replicas is %d (as in "
		    "Kubernetes; min_replicas 0 allows scaling from zero)", (int)c->min_replicas);
		return 0;
	}
	if (cur > c->max_replicas || cur < c->min_replicas) {
		bool above = cur > c->max_replicas;

		out->desired = above ? c->max_replicas : c->min_replicas;
		out->limit = above ? BL_PLANNER_LIMIT_MAX_REPLICAS : BL_PLANNER_LIMIT_MIN_REPLICAS;
		out->limit_replicas = out->desired;
		out->stabilized = out->desired;
		say(&l, "%d replica%s is %s %s %d → %d", (int)cur, pl(cur), above ? "above" : "below",
		    above ? "max_replicas" : "min_replicas", (int)out->desired, (int)out->desired);
		say_others(&l, c, in, out, -1, -1);
		return 0;
	}

	first_failure(out, &first);
	if (failed == in->metric_count) {
		out->status = out->metrics[first].status;
		say(&l, "no metric could be computed: ");
		for (size_t i = 0; i < in->metric_count; i++) {
			say(&l, i ? "; " : "");
			say_metric(&l, c, &in->metrics[i], &out->metrics[i], cur);
		}
		say(&l, " → keep %d", (int)cur);
		return 0;
	}
	say_metric(&l, c, &in->metrics[out->winner], &out->metrics[out->winner], cur);
	if (failed > 0 && out->metric_replicas < cur) {
		/* The HPA rule: a metric that fails may hide a need for more. */
		out->status = out->metrics[first].status;
		say(&l, "; but %s failed (%s): a failing metric blocks a scale-down → keep %d",
		    metric_name(&in->metrics[first]), out->metrics[first].message, (int)cur);
		say_others(&l, c, in, out, out->winner, (int)first);
		return 0;
	}

	rec = out->metric_replicas;
	if (out->panic.panicking && rec < cur) {
		rec = cur;
		out->panic_hold = true;
	}
	if (bl_planner_budget_is_bottleneck(&in->budget)) {
		out->budget_workers = bl_planner_budget_workers(&in->budget);
		if (rec > cur && out->budget_workers >= 0) {
			int32_t cap = out->budget_workers > cur ? out->budget_workers : cur;

			if (rec > cap) {
				rec = cap;
				out->budget_capped = true;
			}
		}
	}
	out->recommendation = rec;
	out->record = true;
	out->stabilized = bl_planner_stabilize(&c->scale_up, &c->scale_down, cur, rec, in->recommendations,
					       in->recommendation_count, in->now_ns, &out->up_bound,
					       &out->down_bound);
	out->desired = apply_rate(c, in, cur, out->stabilized, out);
	say_steps(&l, c, in, out);
	say_others(&l, c, in, out, out->winner, -1);
	return 0;
}

/* ---- history --------------------------------------------------------------------- */

void bl_planner_history_init(struct bl_planner_history *h)
{
	memset(h, 0, sizeof *h);
}

static int64_t longest_period_ns(const struct bl_planner_config *c)
{
	int32_t p = 0;

	for (size_t i = 0; i < c->scale_up.policy_count && i < BL_PLANNER_MAX_POLICIES; i++)
		if (c->scale_up.policies[i].period_s > p)
			p = c->scale_up.policies[i].period_s;
	for (size_t i = 0; i < c->scale_down.policy_count && i < BL_PLANNER_MAX_POLICIES; i++)
		if (c->scale_down.policies[i].period_s > p)
			p = c->scale_down.policies[i].period_s;
	return (int64_t)p * BL_NS_PER_S;
}

static bl_time_ns minus(bl_time_ns now, int64_t d)
{
	return now < INT64_MIN + d ? INT64_MIN : now - d;
}

void bl_planner_history_record(struct bl_planner_history *h, const struct bl_planner_config *c,
			       bl_time_ns now_ns, int32_t recommendation)
{
	int64_t up = (int64_t)c->scale_up.stabilization_s * BL_NS_PER_S;
	int64_t down = (int64_t)c->scale_down.stabilization_s * BL_NS_PER_S;
	bl_time_ns up_cut = minus(now_ns, up), down_cut = minus(now_ns, down);
	struct bl_planner_recommendation r = { now_ns, recommendation };
	size_t slot = SIZE_MAX, oldest = 0;

	for (size_t i = 0; i < h->recommendation_count; i++) {
		if (h->recommendations[i].at_ns < up_cut && h->recommendations[i].at_ns < down_cut)
			slot = i; /* the last obsolete one, as Kubernetes */
		if (h->recommendations[i].at_ns < h->recommendations[oldest].at_ns)
			oldest = i;
	}
	if (slot == SIZE_MAX) {
		if (h->recommendation_count < BL_PLANNER_HISTORY_MAX) {
			h->recommendations[h->recommendation_count++] = r;
			return;
		}
		slot = oldest;
	}
	h->recommendations[slot] = r;
}

void bl_planner_history_scaled(struct bl_planner_history *h, const struct bl_planner_config *c,
			       bl_time_ns now_ns, int32_t from, int32_t to)
{
	bl_time_ns cut = minus(now_ns, longest_period_ns(c));
	int64_t change = (int64_t)to - from;
	struct bl_planner_event e;
	size_t slot = SIZE_MAX, oldest = 0;

	if (change == 0)
		return;
	e.at_ns = now_ns;
	e.change = change > INT32_MAX ? INT32_MAX : change < -INT32_MAX ? -INT32_MAX : (int32_t)change;
	for (size_t i = 0; i < h->event_count; i++) {
		if (h->events[i].at_ns < cut)
			slot = i;
		if (h->events[i].at_ns < h->events[oldest].at_ns)
			oldest = i;
	}
	if (slot == SIZE_MAX) {
		if (h->event_count < BL_PLANNER_HISTORY_MAX) {
			h->events[h->event_count++] = e;
			return;
		}
		slot = oldest;
	}
	h->events[slot] = e;
}

void bl_planner_history_input(const struct bl_planner_history *h, struct bl_planner_input *in)
{
	in->recommendations = h->recommendations;
	in->recommendation_count = h->recommendation_count;
	in->events = h->events;
	in->event_count = h->event_count;
}
