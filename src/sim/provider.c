/* The simulated provider's limits. See provider.h and docs/simulator.md. */
#include "provider.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

/* Slack for floating-point bucket levels: a unit short by less than this
 * still fits (levels are exact for the rates scenarios state). */
#define LEVEL_EPS 1e-6

const char *bl_sim_window_name(enum bl_sim_window w)
{
	static const char *const names[] = {"token_bucket", "fixed_window", "sliding_window"};

	return (unsigned)w < sizeof names / sizeof names[0] ? names[w] : "unknown";
}

void bl_sim_provider_config_default(struct bl_sim_provider_config *c)
{
	memset(c, 0, sizeof *c);
	c->window = BL_SIM_WINDOW_TOKEN_BUCKET;
	c->retry_after_round_ns = BL_NS_PER_S;
}

int bl_sim_provider_config_check(const struct bl_sim_provider_config *c, char *err, size_t errcap)
{
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		if (!c->rate[d].limit)
			continue;
		if (c->rate[d].per_ns < BL_NS_PER_MS)
			return bl_errorf(err, errcap, BL_EINVAL,
					 "%s.per: the window must be at least 1ms", bl_dim_name(d));
	}
	if ((unsigned)c->window > BL_SIM_WINDOW_SLIDING)
		return bl_errorf(err, errcap, BL_EINVAL, "window: unknown enforcement");
	if (c->retry_after_round_ns < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "retry_after_round: must not be negative");
	if (!(c->error_rate >= 0 && c->error_rate <= 1))
		return bl_errorf(err, errcap, BL_EINVAL, "error_rate: %g is outside 0..1",
				 c->error_rate);
	if (c->n_outages > BL_SIM_OUTAGES_MAX)
		return bl_errorf(err, errcap, BL_EINVAL, "outages: at most %d", BL_SIM_OUTAGES_MAX);
	for (size_t i = 0; i < c->n_outages; i++) {
		const struct bl_sim_outage *o = &c->outages[i];

		if (o->for_ns <= 0 || o->at_ns < 0 || !(o->error_rate >= 0 && o->error_rate <= 1) ||
		    !(o->latency_factor > 0))
			return bl_errorf(err, errcap, BL_EINVAL,
					 "outages[%zu]: needs at >= 0, for > 0, error_rate in 0..1 "
					 "and latency_factor > 0", i);
	}
	return 0;
}

int bl_sim_provider_init(struct bl_sim_provider *p, const struct bl_sim_provider_config *c)
{
	if (bl_sim_provider_config_check(c, NULL, 0))
		return BL_EINVAL;
	memset(p, 0, sizeof *p);
	p->config = *c;
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		p->dim[d].level = (double)c->rate[d].limit;
		p->dim[d].window = -1;
	}
	return 0;
}

void bl_sim_provider_cleanup(struct bl_sim_provider *p)
{
	free(p->log);
	p->log = NULL;
	p->log_cap = 0;
}

uint64_t bl_sim_call_units(const struct bl_sim_call *call, enum bl_dim d)
{
	switch (d) {
	case BL_DIM_REQUESTS: return 1;
	case BL_DIM_TOKENS: return call->input_tokens + call->max_tokens;
	case BL_DIM_INPUT_TOKENS: return call->input_tokens;
	case BL_DIM_OUTPUT_TOKENS: return call->max_tokens;
	default: return 0;
	}
}

/* ---- token bucket ---------------------------------------------------------- */

static double bucket_level(const struct bl_sim_provider *p, int d, bl_time_ns now)
{
	const struct bl_sim_provider_dim *s = &p->dim[d];
	double limit = (double)p->config.rate[d].limit;
	double level;

	if (now <= s->at_ns)
		return s->level;
	level = s->level + (double)(now - s->at_ns) * limit / (double)p->config.rate[d].per_ns;
	return level > limit ? limit : level;
}

/* Earliest time `need` units are in the bucket (now when they are). */
static bl_time_ns bucket_conform(const struct bl_sim_provider *p, int d, double level,
				 uint64_t need, bl_time_ns now)
{
	double missing = (double)need - level;
	double ns;

	if (missing <= LEVEL_EPS)
		return now;
	ns = ceil(missing * (double)p->config.rate[d].per_ns / (double)p->config.rate[d].limit -
		  1e-9);
	return now + (bl_time_ns)ns;
}

/* ---- sliding log ------------------------------------------------------------- */

static struct bl_sim_provider_entry *entry_of(const struct bl_sim_provider *p, uint64_t seq)
{
	return &p->log[seq & (p->log_cap - 1)];
}

/* Drops from dimension d's window the entries at least `per` old at now. */
static void slide(struct bl_sim_provider *p, int d, bl_time_ns now)
{
	struct bl_sim_provider_dim *s = &p->dim[d];
	int64_t per = p->config.rate[d].per_ns;

	while (s->head < p->log_tail) {
		const struct bl_sim_provider_entry *e = entry_of(p, s->head);

		if (e->at_ns + per > now)
			break;
		s->count -= e->units[d];
		s->head++;
	}
}

/* Earliest time dimension d's window has room for `need` more units. */
static bl_time_ns slide_conform(const struct bl_sim_provider *p, int d, uint64_t need,
				bl_time_ns now)
{
	const struct bl_sim_provider_dim *s = &p->dim[d];
	uint64_t limit = p->config.rate[d].limit, freed = 0, excess;

	if (s->count + need <= limit)
		return now;
	excess = s->count + need - limit;
	for (uint64_t q = s->head; q < p->log_tail; q++) {
		const struct bl_sim_provider_entry *e = entry_of(p, q);

		freed += e->units[d];
		if (freed >= excess)
			return e->at_ns + p->config.rate[d].per_ns;
	}
	return now; /* not reached: need <= limit */
}

static int log_reserve(struct bl_sim_provider *p)
{
	uint64_t oldest = p->log_tail, n;
	struct bl_sim_provider_entry *log;
	size_t cap;

	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (p->config.rate[d].limit && p->dim[d].head < oldest)
			oldest = p->dim[d].head;
	p->log_head = oldest;
	n = p->log_tail - p->log_head;
	if (n < p->log_cap)
		return 0;
	cap = p->log_cap ? p->log_cap * 2 : 1024;
	log = malloc(cap * sizeof *log);
	if (!log)
		return BL_ENOMEM;
	for (uint64_t q = p->log_head; q < p->log_tail; q++)
		log[q & (cap - 1)] = *entry_of(p, q);
	free(p->log);
	p->log = log;
	p->log_cap = cap;
	return 0;
}

/* ---- admission ------------------------------------------------------------------- */

int bl_sim_provider_admit(struct bl_sim_provider *p, const struct bl_sim_call *call,
			  bl_time_ns now, struct bl_sim_admission *out)
{
	const struct bl_sim_provider_config *c = &p->config;
	bl_time_ns conform = now;
	double levels[BL_DIM_COUNT] = {0};
	bool rate_short = false;
	int last = -1;

	memset(out, 0, sizeof *out);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		uint64_t need = bl_sim_call_units(call, (enum bl_dim)d);
		bl_time_ns at = now;

		if (!c->rate[d].limit)
			continue;
		if (c->window == BL_SIM_WINDOW_SLIDING)
			slide(p, d, now);
		if (!need)
			continue;
		if (need > c->rate[d].limit) {
			out->dim = (enum bl_dim)d;
			p->too_large++;
			return BL_ETOOBIG;
		}
		switch (c->window) {
		case BL_SIM_WINDOW_TOKEN_BUCKET:
			levels[d] = bucket_level(p, d, now);
			at = bucket_conform(p, d, levels[d], need, now);
			break;
		case BL_SIM_WINDOW_FIXED: {
			int64_t w = now / c->rate[d].per_ns;
			uint64_t count = p->dim[d].window == w ? p->dim[d].count : 0;

			if (count + need > c->rate[d].limit)
				at = (w + 1) * c->rate[d].per_ns;
			break;
		}
		case BL_SIM_WINDOW_SLIDING:
			at = slide_conform(p, d, need, now);
			break;
		}
		if (at > now) {
			rate_short = true;
			if (at >= conform) {
				conform = at;
				last = d;
			}
		}
	}
	out->concurrency = c->concurrent && p->in_flight >= c->concurrent;
	if (rate_short || out->concurrency) {
		int64_t wait = conform - now, round = c->retry_after_round_ns;

		out->conform_at_ns = conform;
		out->dim = last >= 0 ? (enum bl_dim)last : BL_DIM_REQUESTS;
		if (!rate_short)
			wait = BL_SIM_PROVIDER_RETRY_CONCURRENCY_NS;
		if (round > 0)
			wait = (wait + round - 1) / round * round;
		out->retry_after_ns = wait;
		p->rejected_429++;
		return BL_EAGAIN;
	}
	if (c->window == BL_SIM_WINDOW_SLIDING) {
		struct bl_sim_provider_entry *e;

		if (log_reserve(p))
			return BL_ENOMEM;
		e = entry_of(p, p->log_tail);
		e->at_ns = now;
		for (int d = 0; d < BL_DIM_COUNT; d++) {
			e->units[d] = c->rate[d].limit ? bl_sim_call_units(call, (enum bl_dim)d) : 0;
			p->dim[d].count += e->units[d];
		}
		out->handle = p->log_tail++;
	} else {
		for (int d = 0; d < BL_DIM_COUNT; d++) {
			uint64_t need = bl_sim_call_units(call, (enum bl_dim)d);

			if (!c->rate[d].limit)
				continue;
			if (c->window == BL_SIM_WINDOW_TOKEN_BUCKET) {
				p->dim[d].level = levels[d] - (double)need;
				p->dim[d].at_ns = now > p->dim[d].at_ns ? now : p->dim[d].at_ns;
			} else {
				int64_t w = now / c->rate[d].per_ns;

				if (p->dim[d].window != w) {
					p->dim[d].window = w;
					p->dim[d].count = 0;
				}
				p->dim[d].count += need;
			}
		}
		out->handle = p->next_handle++;
	}
	out->at_ns = now;
	p->in_flight++;
	p->admitted++;
	return 0;
}

void bl_sim_provider_finish(struct bl_sim_provider *p, const struct bl_sim_call *call,
			    const struct bl_sim_admission *adm, uint64_t output_tokens,
			    bl_time_ns now)
{
	const struct bl_sim_provider_config *c = &p->config;
	uint64_t refund = output_tokens < call->max_tokens ? call->max_tokens - output_tokens : 0;
	static const int corrected[] = {BL_DIM_TOKENS, BL_DIM_OUTPUT_TOKENS};

	if (p->in_flight)
		p->in_flight--;
	for (size_t i = 0; refund && i < 2; i++) {
		int d = corrected[i];
		struct bl_sim_provider_dim *s = &p->dim[d];

		if (!c->rate[d].limit)
			continue;
		switch (c->window) {
		case BL_SIM_WINDOW_TOKEN_BUCKET: {
			double level = bucket_level(p, d, now) + (double)refund;
			double limit = (double)c->rate[d].limit;

			s->level = level > limit ? limit : level;
			s->at_ns = now > s->at_ns ? now : s->at_ns;
			break;
		}
		case BL_SIM_WINDOW_FIXED:
			if (s->window == adm->at_ns / c->rate[d].per_ns &&
			    now / c->rate[d].per_ns == s->window)
				s->count -= refund <= s->count ? refund : s->count;
			break;
		case BL_SIM_WINDOW_SLIDING:
			if (adm->handle >= s->head && adm->handle < p->log_tail) {
				struct bl_sim_provider_entry *e = entry_of(p, adm->handle);
				uint64_t r = refund <= e->units[d] ? refund : e->units[d];

				e->units[d] -= r;
				s->count -= r;
			}
			break;
		}
	}
}

void bl_sim_provider_conditions(const struct bl_sim_provider *p, bl_time_ns now,
				double *error_rate, double *latency_factor)
{
	*error_rate = p->config.error_rate;
	*latency_factor = 1.0;
	for (size_t i = 0; i < p->config.n_outages; i++) {
		const struct bl_sim_outage *o = &p->config.outages[i];

		if (now >= o->at_ns && now - o->at_ns < o->for_ns) {
			*error_rate = o->error_rate;
			*latency_factor = o->latency_factor;
			return;
		}
	}
}
