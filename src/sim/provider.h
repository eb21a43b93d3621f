/* A simulated model provider: its true limits, enforced as a provider does.
 *
 * The provider knows nothing of ballast. It states limits per window on up
 * to four dimensions (requests, combined tokens, input tokens, output tokens,
 * as enum bl_dim), plus a cap on concurrent calls, and enforces them in one
 * of three ways (docs/simulator.md compares them):
 *
 *   token_bucket   continuous replenishment: each dimension is a bucket of
 *                  `limit` units refilled at limit / per (Anthropic's
 *                  documented algorithm). The bucket starts full.
 *   fixed_window   a counter per aligned window [k x per, (k+1) x per) that
 *                  resets at the window's end (the "per minute" reading of
 *                  OpenAI-style limits).
 *   sliding_window the strictest: over every window (t - per, t], admitted
 *                  units never exceed the limit (an exact log of calls).
 *
 * A call is charged at arrival: 1 request, its input tokens, and its
 * max_tokens as output tokens (the provider cannot know the output yet;
 * tokens = input + max_tokens). When it finishes, the output is corrected to
 * what was really produced: the difference is given back (or charged), as
 * Anthropic does for OTPM. A fixed window corrects only a call that finishes
 * in the window it was charged to; a bucket never refills past full.
 *
 * A call that does not fit every dimension (all or nothing) or finds every
 * concurrency slot taken is answered 429, with the exact time it would
 * conform and the retry-after header a provider sends: that time rounded up
 * to whole seconds (BL_SIM_PROVIDER_RETRY_CONCURRENCY_NS when a slot is
 * what is missing: no provider can say when one frees). A call larger than a
 * dimension's whole limit can never be served (413-like: BL_ETOOBIG).
 *
 * Pure: time is an argument, no clock, no randomness (errors and latency
 * are the simulator's draws). The sliding window's log is the only memory:
 * it grows by doubling, so admission is amortized O(1) and allocation-free
 * once warmed up.
 */
#ifndef BALLAST_SIM_PROVIDER_H
#define BALLAST_SIM_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/budget.h"
#include "ballast/units.h"

/* How a provider enforces its windows. */
enum bl_sim_window {
	BL_SIM_WINDOW_TOKEN_BUCKET = 0, /* "token_bucket" */
	BL_SIM_WINDOW_FIXED = 1,        /* "fixed_window" */
	BL_SIM_WINDOW_SLIDING = 2,      /* "sliding_window" */
};

/* Returns "token_bucket", "fixed_window", "sliding_window", or "unknown". */
const char *bl_sim_window_name(enum bl_sim_window w);

/* Retry-after a provider sends when only concurrency is short: 1 s. */
#define BL_SIM_PROVIDER_RETRY_CONCURRENCY_NS BL_NS_PER_S

/* Most outages a provider's schedule holds. */
#define BL_SIM_OUTAGES_MAX 32

/* One period in which the provider misbehaves. */
struct bl_sim_outage {
	bl_time_ns at_ns;      /* start, virtual time */
	int64_t for_ns;        /* length, > 0 */
	double error_rate;     /* share of calls failing (5xx) during it, 0..1 */
	double latency_factor; /* latency multiplied by this during it, > 0 */
};

/* What a provider states, and how it behaves. */
struct bl_sim_provider_config {
	struct bl_budget_rate rate[BL_DIM_COUNT]; /* per dimension (enum bl_dim); limit 0 = none */
	uint32_t concurrent;          /* calls in flight at once; 0 = not limited */
	enum bl_sim_window window;    /* how the windows are enforced */
	int64_t retry_after_round_ns; /* retry-after is rounded up to a multiple of this;
					 default 1 s (headers carry seconds); 0 = exact */
	double error_rate;            /* share of admitted calls that fail (5xx), 0..1 */
	struct bl_sim_outage outages[BL_SIM_OUTAGES_MAX]; /* schedule, any order */
	size_t n_outages;
};

/* Fills c: nothing limited, token bucket, retry-after in whole seconds, no
 * errors, no outages. */
void bl_sim_provider_config_default(struct bl_sim_provider_config *c);

/* One call as the provider is asked it. */
struct bl_sim_call {
	uint64_t input_tokens;  /* prompt */
	uint64_t max_tokens;    /* output asked for at most: charged at arrival */
};

/* The answer at arrival. */
struct bl_sim_admission {
	uint64_t handle;       /* admitted: pass to bl_sim_provider_finish */
	bl_time_ns at_ns;      /* admitted: when it was charged */
	bl_time_ns conform_at_ns;  /* 429: earliest time the same call would conform on every
				      rate dimension (now when only a slot is missing) */
	int64_t retry_after_ns;    /* 429: what the retry-after header says */
	bool concurrency;          /* 429: every slot was taken */
	enum bl_dim dim;           /* 429 on rates / ETOOBIG: the dimension that refused last */
};

/* One rate dimension's state. Private. */
struct bl_sim_provider_dim {
	double level;          /* token bucket: units in the bucket at `at_ns` */
	bl_time_ns at_ns;      /* token bucket: when level was computed */
	int64_t window;        /* fixed: number of the window counted (-1: none yet) */
	uint64_t count;        /* fixed: units charged in that window; sliding: units in the log */
	uint64_t head;         /* sliding: sequence number of the oldest entry in this window */
};

/* One admitted call in the sliding log. Private. */
struct bl_sim_provider_entry {
	bl_time_ns at_ns;                /* arrival */
	uint64_t units[BL_DIM_COUNT];    /* charged (corrected at finish) */
};

struct bl_sim_provider {
	struct bl_sim_provider_config config;
	struct bl_sim_provider_dim dim[BL_DIM_COUNT];
	uint32_t in_flight;                  /* calls admitted and not finished */
	struct bl_sim_provider_entry *log;   /* sliding: ring of admitted calls */
	size_t log_cap;                      /* entries allocated (a power of two) */
	uint64_t log_head;                   /* sequence number of the oldest entry kept */
	uint64_t log_tail;                   /* sequence number of the next entry */
	uint64_t next_handle;                /* handles for token bucket / fixed */
	uint64_t admitted;                   /* calls admitted */
	uint64_t rejected_429;               /* calls answered 429 */
	uint64_t too_large;                  /* calls that can never fit */
};

/* Checks c. Returns 0, or BL_EINVAL with what is wrong in err. */
int bl_sim_provider_config_check(const struct bl_sim_provider_config *c, char *err, size_t errcap);

/* Sets up p with c (copied). Returns 0, or BL_EINVAL leaving p untouched.
 * Allocates nothing yet; call bl_sim_provider_cleanup when done. */
int bl_sim_provider_init(struct bl_sim_provider *p, const struct bl_sim_provider_config *c);

/* Frees the sliding log. */
void bl_sim_provider_cleanup(struct bl_sim_provider *p);

/* A call arrives at now (non-decreasing across calls). Returns 0 (admitted:
 * out->handle), BL_EAGAIN (429: out->conform_at_ns, retry_after_ns,
 * concurrency, dim), BL_ETOOBIG (some dimension's whole limit is smaller than
 * the call: out->dim) or BL_ENOMEM (the sliding log could not grow). Nothing
 * changes unless it returns 0. */
int bl_sim_provider_admit(struct bl_sim_provider *p, const struct bl_sim_call *call,
			  bl_time_ns now, struct bl_sim_admission *out);

/* The call admitted with *adm finished at now, having produced output_tokens
 * (its max_tokens caps what a provider produces: more is taken as max_tokens).
 * Corrects the output and tokens dimensions and frees its slot. */
void bl_sim_provider_finish(struct bl_sim_provider *p, const struct bl_sim_call *call,
			    const struct bl_sim_admission *adm, uint64_t output_tokens,
			    bl_time_ns now);

/* The conditions at now: the error rate and latency factor in force (an
 * outage's, else the base error rate and 1). */
void bl_sim_provider_conditions(const struct bl_sim_provider *p, bl_time_ns now,
				double *error_rate, double *latency_factor);

/* Units of dimension d a call charges at arrival. */
uint64_t bl_sim_call_units(const struct bl_sim_call *call, enum bl_dim d);

#endif
