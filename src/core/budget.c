/* Rate budgets: see include/ballast/budget.h, and docs/internals/rate-budgets.md
 * for why refunds are capped by "marks" and why every rounding goes the way it
 * does.
 *
 * Vocabulary used below:
 *   event  - anything that may move a dimension's TAT up to at least some
 *            instant x (an admission, a charge, a change of rate, a resync).
 *            Each gets the next sequence number; an admission's number is the
 *            lease's ticket.
 *   slack  - at an event, how many whole units the TAT was ahead of x.
 *   marks  - per dimension, the suffix minima of the slack over events, so that
 *            "the least slack since ticket t" is one scan of at most
 *            BL_BUDGET_MARKS entries. A refund never exceeds it.
 */
#include "ballast/budget.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ballast/error.h"

/* Slack for comparing shares such as burst against 1 - target_utilization,
 * the same the config loader allows. */
#define SHARE_EPSILON 1e-9

static const char *const dim_names[BL_DIM_COUNT] = {
	"requests",
	"tokens",
	"input_tokens",
	"output_tokens",
};

const char *bl_dim_name(enum bl_dim d)
{
	if ((unsigned)d >= BL_DIM_COUNT)
		return "unknown";
	return dim_names[d];
}

static uint64_t sat_add_u64(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int64_t sat_add_i64(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

void bl_amounts_normalize(struct bl_amounts *a)
{
	uint64_t sum = sat_add_u64(a->n[BL_DIM_INPUT_TOKENS], a->n[BL_DIM_OUTPUT_TOKENS]);

	if (sum > a->n[BL_DIM_TOKENS])
		a->n[BL_DIM_TOKENS] = sum;
}

/* ---- configuration ------------------------------------------------------ */

void bl_budget_limits_default(struct bl_budget_limits *l)
{
	memset(l, 0, sizeof *l);
	l->target_utilization = 0.90;
	l->burst = 0.05;
	l->adaptive_decrease = 0.8;
	l->adaptive_increase = 0.05;
	l->adaptive_period_ns = INT64_C(10) * BL_NS_PER_S;
}

int bl_budget_limits_check(const struct bl_budget_limits *l, char *err, size_t errcap)
{
	double t = l->target_utilization;

	for (int d = 0; d < BL_DIM_COUNT; d++) {
		const struct bl_budget_rate *r = &l->rate[d];

		if (r->limit == 0)
			continue;
		if (r->limit > BL_GCRA_LIMIT_MAX)
			return bl_errorf(err, errcap, BL_EINVAL,
				    "%s.limit: %llu is above the largest supported limit, 2^53 units "
				    "per window",
				    dim_names[d], (unsigned long long)r->limit);
		if (r->per_ns < BL_GCRA_PER_MIN_NS || r->per_ns > BL_GCRA_PER_MAX_NS)
			return bl_errorf(err, errcap, BL_EINVAL,
				    "%s.per_ns: %lld is outside 1 ms .. 31 days (the window the "
				    "provider states, such as 60 s)",
				    dim_names[d], (long long)r->per_ns);
		if ((double)r->limit > (double)r->per_ns * BL_GCRA_UNITS_PER_NS_MAX)
			return bl_errorf(err, errcap, BL_EINVAL,
				    "%s.limit: %llu per %lld ns is above the highest supported rate, "
				    "about 4e15 units per second",
				    dim_names[d], (unsigned long long)r->limit, (long long)r->per_ns);
	}
	if (!(t >= BL_BUDGET_TARGET_MIN - SHARE_EPSILON && t <= BL_BUDGET_TARGET_MAX + SHARE_EPSILON))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "target_utilization: %g is outside 0.85..0.95 (the share of each limit "
			    "the budget refills at)",
			    t);
	if (!(l->burst >= 0.0 && l->burst <= 1.0 - t + SHARE_EPSILON))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "burst: %g is outside 0..%g (1 - target_utilization: the burst may "
			    "only spend the headroom the target leaves)",
			    l->burst, 1.0 - t);
	if (!(l->adaptive_decrease >= BL_BUDGET_DECREASE_MIN &&
	      l->adaptive_decrease <= BL_BUDGET_DECREASE_MAX))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "adaptive_decrease: %g is outside 0.1..0.99 (the rate factor is "
			    "multiplied by it on a provider 429)",
			    l->adaptive_decrease);
	if (!(l->adaptive_increase > 0.0 && l->adaptive_increase <= 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "adaptive_increase: %g is outside (0, 1] (the rate factor regained "
			    "per period)",
			    l->adaptive_increase);
	if (l->adaptive_period_ns < BL_BUDGET_PERIOD_MIN_NS ||
	    l->adaptive_period_ns > BL_BUDGET_PERIOD_MAX_NS)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "adaptive_period_ns: %lld is outside 1 ms .. 1 day (how often the rate "
			    "factor regains adaptive_increase)",
			    (long long)l->adaptive_period_ns);
	if (err && errcap)
		err[0] = '\0';
	return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static bool limited(const struct bl_budget *b, int d)
{
	return b->limits.rate[d].limit != 0;
}

static int64_t floor_div(int64_t a, int64_t m)
{
	int64_t q = a / m;

	if (a % m != 0 && a < 0)
		q -= 1;
	return q;
}

static size_t ring_pos(int64_t slice)
{
	int64_t r = slice % BL_BUDGET_SLICES;

	return (size_t)(r < 0 ? r + BL_BUDGET_SLICES : r);
}

static void ring_reset(struct bl_budget_dim *dim, int64_t per_ns)
{
	dim->slice_ns = (per_ns + BL_BUDGET_SLICES - 1) / BL_BUDGET_SLICES;
	dim->head_slice = INT64_MIN;
	memset(dim->slices, 0, sizeof dim->slices);
}

/* Adds units (negative for refunds) to the slice of now. A time before the
 * newest slice (the clock never goes back, but be safe) lands in the newest. */
static void ring_add(struct bl_budget_dim *dim, bl_time_ns now, int64_t units)
{
	int64_t k, *slot;

	/* Most calls land in the newest slice: no division for them. */
	if (dim->head_slice != INT64_MIN) {
		int64_t start = dim->head_slice * dim->slice_ns;

		if (now >= start && now - start < dim->slice_ns)
			goto add;
	}
	k = floor_div(now, dim->slice_ns);
	if (k > dim->head_slice) {
		if (dim->head_slice == INT64_MIN || k - dim->head_slice >= BL_BUDGET_SLICES) {
			memset(dim->slices, 0, sizeof dim->slices);
		} else {
			for (int64_t j = dim->head_slice + 1; j <= k; j++)
				dim->slices[ring_pos(j)] = 0;
		}
		dim->head_slice = k;
	}
add:
	slot = &dim->slices[ring_pos(dim->head_slice)];
	*slot = sat_add_i64(*slot, units);
}

/* Net units in the slices of the last window before now, at least 0. */
static uint64_t ring_sum(const struct bl_budget_dim *dim, bl_time_ns now)
{
	int64_t k = floor_div(now, dim->slice_ns);
	int64_t sum = 0;

	if (dim->head_slice == INT64_MIN)
		return 0;
	for (int i = 0; i < BL_BUDGET_SLICES; i++) {
		int64_t j = dim->head_slice - i;

		if (j <= k - BL_BUDGET_SLICES)
			break;
		sum = sat_add_i64(sum, dim->slices[ring_pos(j)]);
	}
	return sum < 0 ? 0 : (uint64_t)sum;
}

/* Records an event's slack. The marks stay the suffix minima: a new slack
 * makes every newer-or-equal one above it irrelevant. When full, the two
 * neighbours closest in slack merge, keeping the lower slack under the newer
 * sequence number: tickets between them then see a lower (safe) bound. */
static void push_mark(struct bl_budget_dim *dim, uint64_t seq, uint64_t slack)
{
	struct bl_budget_mark *m = dim->marks;

	while (dim->n_marks > 0 && m[dim->n_marks - 1].slack >= slack)
		dim->n_marks--;
	if (dim->n_marks == BL_BUDGET_MARKS) {
		uint32_t best = 0;
		uint64_t gap = UINT64_MAX;

		for (uint32_t i = 0; i + 1 < dim->n_marks; i++) {
			if (m[i + 1].slack - m[i].slack < gap) {
				gap = m[i + 1].slack - m[i].slack;
				best = i;
			}
		}
		m[best].seq = m[best + 1].seq;
		memmove(&m[best + 1], &m[best + 2],
			(dim->n_marks - best - 2) * sizeof m[0]);
		dim->n_marks--;
	}
	m[dim->n_marks].seq = seq;
	m[dim->n_marks].slack = slack;
	dim->n_marks++;
}

/* A lease with `ticket` got `units` back. From now on the budget behaves as
 * if that lease had taken that much less from the start; the marks must say
 * what the slack was in that history, which is `units` less at every event
 * after its ticket (the refund never exceeded any of them). Lowering a suffix
 * can leave older marks no longer below newer ones: those drop out, their
 * tickets now reading the lower newer mark. */
static void refund_marks(struct bl_budget_dim *dim, uint64_t ticket, uint64_t units)
{
	struct bl_budget_mark *m = dim->marks;
	uint64_t least = UINT64_MAX;
	uint32_t kept = 0;

	for (uint32_t i = 0; i < dim->n_marks; i++)
		if (m[i].seq > ticket)
			m[i].slack = m[i].slack > units ? m[i].slack - units : 0;
	/* Keep, newest first, each mark strictly below every newer one. */
	for (uint32_t i = dim->n_marks; i-- > 0;) {
		if (m[i].slack < least) {
			least = m[i].slack;
			m[BL_BUDGET_MARKS - 1 - kept++] = m[i];
		}
	}
	memmove(m, &m[BL_BUDGET_MARKS - kept], kept * sizeof m[0]);
	dim->n_marks = kept;
}

/* The least slack of any event after ticket, UINT64_MAX when none. */
static uint64_t least_slack_since(const struct bl_budget_dim *dim, uint64_t ticket)
{
	for (uint32_t i = 0; i < dim->n_marks; i++)
		if (dim->marks[i].seq > ticket)
			return dim->marks[i].slack;
	return UINT64_MAX;
}

/* The rate factor at now: the factor set by the last 429, plus one increase
 * per whole period since recovery began, up to 1. */
static double factor_at(const struct bl_budget *b, bl_time_ns now)
{
	double f = b->factor_base;

	if (f >= 1.0)
		return 1.0;
	if (now > b->recover_from_ns) {
		uint64_t span = (uint64_t)now - (uint64_t)b->recover_from_ns;
		uint64_t steps = span / (uint64_t)b->limits.adaptive_period_ns;

		f += b->limits.adaptive_increase * (double)steps;
	}
	return f >= 1.0 ? 1.0 : f;
}

/* Puts factor f in force at now: an event in every limited dimension (units
 * outstanding are kept, which is a "max(TAT, now)" for the refund argument). */
static void apply_factor(struct bl_budget *b, double f, bl_time_ns now)
{
	uint64_t seq = ++b->seq;

	for (int d = 0; d < BL_DIM_COUNT; d++) {
		struct bl_budget_dim *dim = &b->dim[d];

		if (!limited(b, d))
			continue;
		push_mark(dim, seq, bl_gcra_ahead(&dim->gcra, now));
		bl_gcra_set_factor(&dim->gcra, f, now);
	}
	b->factor = f;
}

/* Applies any recovery step due by now. */
static void refresh(struct bl_budget *b, bl_time_ns now)
{
	double f = factor_at(b, now);

	if (f != b->factor)
		apply_factor(b, f, now);
}

/* A fresh dimension under limits l at rate factor f; sequence numbers from
 * `since` on reserve on it. */
static void dim_setup(struct bl_budget_dim *dim, const struct bl_budget_limits *l, int d, double f,
		      uint64_t since, bl_time_ns now)
{
	memset(dim, 0, sizeof *dim);
	/* Cannot fail: the limits passed bl_budget_limits_check. */
	bl_gcra_init(&dim->gcra, l->rate[d].limit, l->rate[d].per_ns, l->target_utilization,
		     l->burst);
	bl_gcra_set_factor(&dim->gcra, f, now);
	dim->limited_since_seq = since;
	ring_reset(dim, l->rate[d].per_ns);
}

/* ---- the budget ---------------------------------------------------------- */

int bl_budget_init(struct bl_budget *b, const struct bl_budget_limits *l)
{
	if (bl_budget_limits_check(l, NULL, 0))
		return BL_EINVAL;
	memset(b, 0, sizeof *b);
	b->limits = *l;
	b->factor = 1.0;
	b->factor_base = 1.0;
	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (limited(b, d))
			dim_setup(&b->dim[d], l, d, 1.0, 1, 0);
	return 0;
}

int bl_budget_reconfigure(struct bl_budget *b, const struct bl_budget_limits *l, bl_time_ns now)
{
	struct bl_budget nb;
	uint64_t seq;

	if (bl_budget_limits_check(l, NULL, 0))
		return BL_EINVAL;
	nb = *b;
	refresh(&nb, now);
	seq = ++nb.seq;
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		struct bl_budget_dim *dim = &nb.dim[d];
		struct bl_gcra g, cur = dim->gcra; /* cur: with the refresh applied */

		if (l->rate[d].limit == 0) {
			memset(dim, 0, sizeof *dim);
			continue;
		}
		if (!limited(b, d)) {
			dim_setup(dim, l, d, nb.factor, seq + 1, now);
			continue;
		}
		/* Same units outstanding, expressed in the new interval: an event
		 * like a change of rate. */
		bl_gcra_init(&g, l->rate[d].limit, l->rate[d].per_ns, l->target_utilization, l->burst);
		bl_gcra_set_factor(&g, nb.factor, now);
		push_mark(dim, seq, bl_gcra_ahead(&cur, now));
		bl_gcra_adopt(&g, cur.tat_ns, cur.tat_frac, cur.interval_ns, cur.interval_frac, now);
		dim->gcra = g;
		if (l->rate[d].per_ns != b->limits.rate[d].per_ns)
			ring_reset(dim, l->rate[d].per_ns);
	}
	nb.limits = *l;
	*b = nb;
	return 0;
}

/* Refusal bits that are not about rates: the pause and the slots. */
static unsigned other_waits(const struct bl_budget *b, bl_time_ns now)
{
	unsigned wait = 0;

	if (now < b->paused_until_ns)
		wait |= BL_BUDGET_WAIT_PAUSE;
	if ((b->limits.concurrent && b->in_flight >= b->limits.concurrent) ||
	    b->in_flight == UINT32_MAX)
		wait |= BL_BUDGET_WAIT_CONCURRENCY;
	return wait;
}

/* Fills a refusal: counts it, says when and why. */
static int refuse(struct bl_budget *b, unsigned wait, bl_time_ns retry, int last,
		  struct bl_budget_decision *out)
{
	b->denials++;
	if ((wait & BL_BUDGET_WAIT_PAUSE) && retry < b->paused_until_ns)
		retry = b->paused_until_ns;
	out->retry_at_ns = (wait & (BL_BUDGET_WAIT_RATE | BL_BUDGET_WAIT_PAUSE)) ? retry : 0;
	out->wait = wait;
	out->dim = last >= 0 ? (enum bl_dim)last : BL_DIM_REQUESTS;
	return BL_EAGAIN;
}

int bl_budget_acquire(struct bl_budget *b, const struct bl_amounts *req, bl_time_ns now,
		      struct bl_budget_decision *out)
{
	struct bl_amounts a = *req;
	struct bl_gcra saved[BL_DIM_COUNT];
	bl_time_ns retry = 0, r;
	unsigned wait, taken = 0;
	int last = -1;
	uint64_t seq;

	bl_amounts_normalize(&a);
	memset(out, 0, sizeof *out);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		if (limited(b, d) && a.n[d] > b->dim[d].gcra.capacity) {
			out->dim = (enum bl_dim)d;
			out->max = b->dim[d].gcra.capacity;
			return BL_ETOOBIG;
		}
	}

	/* Take from each dimension, and put everything back on any refusal:
	 * one conformance test per dimension. The decision uses the rate in
	 * force; a recovery step due by now is put in force after admitting
	 * (at now it changes no unit outstanding, only the refill from now
	 * on), so a refusal changes nothing but the denial count and the
	 * retry time it gives holds until something else happens. */
	wait = other_waits(b, now);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		if (!limited(b, d) || a.n[d] == 0)
			continue;
		saved[d] = b->dim[d].gcra;
		if (bl_gcra_take(&b->dim[d].gcra, a.n[d], now, &r) == 0) {
			taken |= 1u << d;
			continue;
		}
		wait |= BL_BUDGET_WAIT_RATE;
		if (last < 0 || r > retry) {
			retry = r;
			last = d;
		}
	}
	if (wait) {
		for (int d = 0; d < BL_DIM_COUNT; d++)
			if (taken & (1u << d))
				b->dim[d].gcra = saved[d];
		return refuse(b, wait, retry, last, out);
	}

	/* Admitted: an event whose slack is measured before the take. */
	seq = ++b->seq;
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		struct bl_budget_dim *dim = &b->dim[d];

		if (!(taken & (1u << d)))
			continue;
		push_mark(dim, seq, bl_gcra_ahead(&saved[d], now));
		ring_add(dim, now, (int64_t)a.n[d]);
	}
	b->in_flight++;
	b->grants++;
	refresh(b, now);
	out->ticket = seq;
	return 0;
}

int bl_budget_release(struct bl_budget *b, const struct bl_amounts *reserved,
		      const struct bl_amounts *used, uint64_t ticket, bl_time_ns now,
		      struct bl_budget_reconcile *out)
{
	struct bl_amounts res = *reserved, use = used ? *used : *reserved;
	struct bl_budget_reconcile rec;
	uint64_t charge_seq = 0;

	if (b->in_flight == 0 || ticket == 0 || ticket > b->seq)
		return BL_EINVAL;
	memset(&rec, 0, sizeof rec);
	bl_amounts_normalize(&res);
	bl_amounts_normalize(&use);
	refresh(b, now);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		struct bl_budget_dim *dim = &b->dim[d];
		uint64_t r, u;

		if (!limited(b, d))
			continue;
		/* A dimension limited only after the acquire reserved nothing. */
		r = ticket >= dim->limited_since_seq ? res.n[d] : 0;
		u = use.n[d];
		if (u < r) {
			uint64_t want = r - u, cap = least_slack_since(dim, ticket);
			uint64_t given = bl_gcra_refund(&dim->gcra, want < cap ? want : cap, now);

			if (given)
				refund_marks(dim, ticket, given);
			rec.refunded[d] = given;
			rec.lapsed[d] = want - given;
			dim->refunded = sat_add_u64(dim->refunded, given);
			ring_add(dim, now, -(int64_t)given);
		} else if (u > r) {
			uint64_t extra = u - r;

			if (charge_seq == 0)
				charge_seq = ++b->seq;
			push_mark(dim, charge_seq, bl_gcra_ahead(&dim->gcra, now));
			bl_gcra_charge(&dim->gcra, extra, now);
			rec.charged[d] = extra;
			dim->charged = sat_add_u64(dim->charged, extra);
			ring_add(dim, now, extra > INT64_MAX ? INT64_MAX : (int64_t)extra);
		}
	}
	b->in_flight--;
	b->releases++;
	if (out)
		*out = rec;
	return 0;
}

int bl_budget_expire(struct bl_budget *b, bl_time_ns now)
{
	(void)now;
	if (b->in_flight == 0)
		return BL_EINVAL;
	b->in_flight--;
	b->expired++;
	return 0;
}

/* Pauses b until now + retry_after_ns unless a later pause is set. */
static void pause_for(struct bl_budget *b, bl_time_ns now, int64_t retry_after_ns)
{
	if (retry_after_ns > 0) {
		bl_time_ns until = sat_add_i64(now, retry_after_ns);

		if (until > b->paused_until_ns)
			b->paused_until_ns = until;
	}
}

int bl_budget_on_rate_limited_stale(struct bl_budget *b, bl_time_ns now, int64_t retry_after_ns)
{
	if (retry_after_ns < 0)
		return BL_EINVAL;
	refresh(b, now);
	pause_for(b, now, retry_after_ns);
	b->provider_429s++;
	return 0;
}

int bl_budget_on_rate_limited(struct bl_budget *b, bl_time_ns now, int64_t retry_after_ns)
{
	double f;

	if (retry_after_ns < 0)
		return BL_EINVAL;
	refresh(b, now);
	f = b->factor * b->limits.adaptive_decrease;
	if (f < BL_BUDGET_FACTOR_FLOOR)
		f = BL_BUDGET_FACTOR_FLOOR;
	pause_for(b, now, retry_after_ns);
	b->factor_base = f;
	b->recover_from_ns = now > b->paused_until_ns ? now : b->paused_until_ns;
	if (f != b->factor)
		apply_factor(b, f, now);
	b->provider_429s++;
	return 0;
}

int bl_budget_sync_remaining(struct bl_budget *b, enum bl_dim dim, uint64_t remaining,
			     bl_time_ns reset_at_ns, bl_time_ns now)
{
	struct bl_budget_dim *bd;
	int64_t tat_ns;
	uint32_t tat_frac;
	uint64_t slack, seq;

	if ((unsigned)dim >= BL_DIM_COUNT)
		return BL_EINVAL;
	if (!limited(b, (int)dim))
		return 0;
	if (reset_at_ns > now &&
	    (uint64_t)reset_at_ns - (uint64_t)now > 2 * (uint64_t)b->limits.rate[dim].per_ns)
		return BL_ERANGE;
	refresh(b, now);
	bd = &b->dim[dim];
	tat_ns = bd->gcra.tat_ns;
	tat_frac = bd->gcra.tat_frac;
	seq = ++b->seq;
	slack = bl_gcra_hold(&bd->gcra, remaining, reset_at_ns > now ? reset_at_ns : now);
	push_mark(bd, seq, slack);
	if (bd->gcra.tat_ns != tat_ns || bd->gcra.tat_frac != tat_frac)
		b->resyncs++;
	return 0;
}

void bl_budget_assume_spent(struct bl_budget *b, bl_time_ns now)
{
	uint64_t seq;

	refresh(b, now);
	seq = ++b->seq;
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		struct bl_budget_dim *dim = &b->dim[d];

		if (!limited(b, d))
			continue;
		push_mark(dim, seq,
			  bl_gcra_hold(&dim->gcra, 0, sat_add_i64(now, b->limits.rate[d].per_ns)));
	}
}

/* ---- observability ------------------------------------------------------- */

void bl_budget_stats(const struct bl_budget *b, bl_time_ns now, struct bl_budget_stats *out)
{
	double f = factor_at(b, now);

	memset(out, 0, sizeof *out);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		const struct bl_budget_dim *dim = &b->dim[d];
		struct bl_budget_dim_stats *s = &out->dim[d];
		const struct bl_budget_rate *r = &b->limits.rate[d];
		struct bl_gcra g;

		if (!limited(b, d))
			continue;
		g = dim->gcra;
		if (f != b->factor)
			bl_gcra_set_factor(&g, f, now);
		s->limit = r->limit;
		s->per_ns = r->per_ns;
		s->capacity = g.capacity;
		s->target_rate_per_s =
			b->limits.target_utilization * (double)r->limit * 1e9 / (double)r->per_ns;
		s->rate_per_s = bl_gcra_rate(&g);
		s->available = bl_gcra_available(&g, now);
		s->debt = bl_gcra_debt(&g, now);
		s->window_units = ring_sum(dim, now);
		s->utilization = (double)s->window_units / (double)r->limit;
		s->refunded = dim->refunded;
		s->charged = dim->charged;
	}
	out->concurrent = b->limits.concurrent;
	out->in_flight = b->in_flight;
	out->rate_factor = f;
	out->paused_until_ns = b->paused_until_ns;
	out->grants = b->grants;
	out->denials = b->denials;
	out->releases = b->releases;
	out->expired = b->expired;
	out->provider_429s = b->provider_429s;
	out->resyncs = b->resyncs;
}

/* ---- persistence ---------------------------------------------------------- */

void bl_budget_state_get(const struct bl_budget *b, bl_time_ns now, struct bl_budget_state *out)
{
	memset(out, 0, sizeof *out);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		const struct bl_budget_dim *dim = &b->dim[d];
		struct bl_budget_dim_state *s = &out->dim[d];

		if (!limited(b, d))
			continue;
		/* A TAT in the past means "idle": say now, which means the same
		 * and converts to wall clock without surprises. */
		if (dim->gcra.tat_ns < now) {
			s->tat_ns = now;
			s->tat_frac = 0;
		} else {
			s->tat_ns = dim->gcra.tat_ns;
			s->tat_frac = dim->gcra.tat_frac;
		}
		s->interval_ns = dim->gcra.interval_ns;
		s->interval_frac = dim->gcra.interval_frac;
		s->limited_since_seq = dim->limited_since_seq;
		s->n_marks = dim->n_marks;
		memcpy(s->marks, dim->marks, sizeof s->marks);
		s->refunded = dim->refunded;
		s->charged = dim->charged;
	}
	out->seq = b->seq;
	out->in_flight = b->in_flight;
	out->factor = b->factor;
	out->factor_base = b->factor_base;
	out->recover_from_ns = b->recover_from_ns;
	out->paused_until_ns = b->paused_until_ns;
	out->grants = b->grants;
	out->denials = b->denials;
	out->releases = b->releases;
	out->expired = b->expired;
	out->provider_429s = b->provider_429s;
	out->resyncs = b->resyncs;
}

static bool factor_ok(double f)
{
	return f >= BL_BUDGET_FACTOR_FLOOR && f <= 1.0;
}

/* Largest interval a state may carry: far above any the limits produce. */
#define STATE_INTERVAL_MAX_NS (INT64_C(1) << 60)

static bool dim_state_ok(const struct bl_budget_dim_state *s, uint64_t seq)
{
	if (s->interval_ns == 0 && s->interval_frac == 0) {
		return s->tat_ns == 0 && s->tat_frac == 0 && s->limited_since_seq == 0 &&
		       s->n_marks == 0 && s->refunded == 0 && s->charged == 0;
	}
	if (s->interval_ns < 0 || s->interval_ns > STATE_INTERVAL_MAX_NS)
		return false;
	if (s->limited_since_seq == 0 || s->limited_since_seq - 1 > seq)
		return false;
	if (s->n_marks > BL_BUDGET_MARKS)
		return false;
	for (uint32_t i = 0; i < s->n_marks; i++) {
		const struct bl_budget_mark *m = &s->marks[i];

		if (m->seq == 0 || m->seq > seq)
			return false;
		if (i > 0 && (m->seq <= m[-1].seq || m->slack <= m[-1].slack))
			return false;
	}
	return true;
}

int bl_budget_state_set(struct bl_budget *b, const struct bl_budget_state *st, bl_time_ns now)
{
	struct bl_budget nb;

	if (!factor_ok(st->factor) || !factor_ok(st->factor_base))
		return BL_EINVAL;
	if (st->seq == UINT64_MAX)
		return BL_EINVAL;
	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (!dim_state_ok(&st->dim[d], st->seq))
			return BL_EINVAL;

	nb = *b;
	nb.seq = st->seq;
	nb.in_flight = st->in_flight;
	nb.factor = st->factor;
	nb.factor_base = st->factor_base;
	nb.recover_from_ns = st->recover_from_ns;
	nb.paused_until_ns = st->paused_until_ns;
	nb.grants = st->grants;
	nb.denials = st->denials;
	nb.releases = st->releases;
	nb.expired = st->expired;
	nb.provider_429s = st->provider_429s;
	nb.resyncs = st->resyncs;
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		const struct bl_budget_dim_state *s = &st->dim[d];
		struct bl_budget_dim *dim = &nb.dim[d];
		struct bl_gcra saved;

		if (!limited(&nb, d))
			continue;
		dim_setup(dim, &nb.limits, d, st->factor, st->seq + 1, now);
		if (s->interval_ns == 0 && s->interval_frac == 0)
			continue; /* not limited when saved: starts idle */
		dim->limited_since_seq = s->limited_since_seq;
		dim->n_marks = s->n_marks;
		memcpy(dim->marks, s->marks, sizeof dim->marks);
		dim->refunded = s->refunded;
		dim->charged = s->charged;
		saved = dim->gcra;
		saved.tat_ns = s->tat_ns;
		saved.tat_frac = s->tat_frac;
		saved.interval_ns = s->interval_ns;
		saved.interval_frac = s->interval_frac;
		if (saved.interval_ns != dim->gcra.interval_ns ||
		    saved.interval_frac != dim->gcra.interval_frac) {
			/* Re-expressing units in another interval is an event
			 * for the refund argument, like a change of rate. */
			if (nb.seq == st->seq)
				nb.seq++;
			push_mark(dim, nb.seq, bl_gcra_ahead(&saved, now));
		}
		bl_gcra_adopt(&dim->gcra, s->tat_ns, s->tat_frac, s->interval_ns, s->interval_frac,
			      now);
	}
	*b = nb;
	return 0;
}
