/* Rate budgets: one provider quota shared by a fleet, spent at 85-95 % of the
 * provider's limit without ever going over it.
 *
 * A budget has up to four rate dimensions as the provider states them (each a
 * limit per window: requests, combined tokens, input tokens, output tokens)
 * plus a cap on concurrent leases. Each rate dimension is a GCRA
 * (ballast/gcra.h) refilled at target_utilization of the stated rate, with a
 * burst capacity of `burst` of the limit. An acquire takes from every limited
 * dimension it names and a concurrency slot, all or nothing; a release
 * reconciles the estimate with what was actually used (refund or charge) and
 * frees the slot. Provider 429s slow the budget down (multiplicative decrease,
 * additive recovery, a pause until the provider's retry-after) and provider
 * rate-limit headers can only tighten it.
 *
 * The guarantee, derived in docs/internals/rate-budgets.md: over any window of
 * the provider's length, units admitted (counted as actually used, at the time
 * of admission) never exceed the limit, except by what leases used beyond
 * their own estimates; under saturating demand every window gets at least
 * target x limit minus one request.
 *
 * Pure: no I/O, no clock reads, no globals, no allocation. Time is an argument
 * (monotonic ns; "0" is used for "never" in a few fields, so run the clock from
 * 0 or later). The daemon's loop thread owns a budget: no locks. A function
 * that fails leaves the budget as it was, except that a refused acquire counts
 * itself in `denials`.
 */
#ifndef BALLAST_BUDGET_H
#define BALLAST_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/gcra.h"
#include "ballast/units.h"

/* The rate dimensions a budget can limit. */
enum bl_dim {
	BL_DIM_REQUESTS,      /* calls to the provider (RPM) */
	BL_DIM_TOKENS,        /* input + output tokens combined (OpenAI TPM) */
	BL_DIM_INPUT_TOKENS,  /* input tokens (Anthropic ITPM) */
	BL_DIM_OUTPUT_TOKENS, /* output tokens (Anthropic OTPM) */
	BL_DIM_COUNT
};

/* An amount in every dimension: what a request asks for, reserved or used. */
struct bl_amounts {
	uint64_t n[BL_DIM_COUNT]; /* units per dimension, indexed by enum bl_dim; 0 = not named */
};

/* Returns the dimension's name as the configuration spells it ("requests",
 * "tokens", "input_tokens", "output_tokens"), or "unknown". */
const char *bl_dim_name(enum bl_dim d);

/* The tokens rule: providers count combined tokens as input + output, so a
 * request that names input/output tokens is charged at least their sum on the
 * tokens dimension. Sets a->n[BL_DIM_TOKENS] to max(tokens, input + output)
 * (saturating). Acquire and release apply it themselves; this is for callers
 * that want to show the amounts the budget uses. */
void bl_amounts_normalize(struct bl_amounts *a);

/* ---- configuration ------------------------------------------------------ */

/* Bounds of the configuration (see bl_budget_limits_check). */
#define BL_BUDGET_TARGET_MIN 0.85
#define BL_BUDGET_TARGET_MAX 0.95
#define BL_BUDGET_DECREASE_MIN 0.1
#define BL_BUDGET_DECREASE_MAX 0.99
#define BL_BUDGET_PERIOD_MIN_NS INT64_C(1000000)           /* 1 ms */
#define BL_BUDGET_PERIOD_MAX_NS (INT64_C(86400) * 1000000000) /* 1 day */

/* The lowest the adaptive rate factor goes, however many 429s arrive. */
#define BL_BUDGET_FACTOR_FLOOR 0.1

/* One rate dimension as the provider states it. */
struct bl_budget_rate {
	uint64_t limit; /* units per window; 0 = this dimension is not limited */
	int64_t per_ns; /* window length in ns (1 ms .. 31 days); ignored when limit is 0 */
};

/* A budget's configuration. Start from bl_budget_limits_default. */
struct bl_budget_limits {
	struct bl_budget_rate rate[BL_DIM_COUNT]; /* per dimension, indexed by enum bl_dim */
	uint32_t concurrent;        /* most leases in flight at once; 0 = not limited */
	double target_utilization;  /* share of each limit the budget refills at, 0.85..0.95 */
	double burst;               /* share of each limit spendable at once, 0..1 - target */
	double adaptive_decrease;   /* rate factor multiplier on a provider 429, 0.1..0.99 */
	double adaptive_increase;   /* factor regained per period without a 429, (0, 1] */
	int64_t adaptive_period_ns; /* recovery step length in ns, 1 ms .. 1 day */
};

/* Fills l with the defaults: nothing limited, target 0.90, burst 0.05,
 * decrease 0.8, increase 0.05 per 10 s. */
void bl_budget_limits_default(struct bl_budget_limits *l);

/* Checks l. Returns 0, or BL_EINVAL and writes what is wrong and what is
 * accepted into err (errcap bytes, NUL-terminated, truncated if need be; err
 * may be NULL when errcap is 0), such as "tokens.per_ns: 0 is outside 1 ms .. 31
 * days (the window the provider states, such as 60 s)". */
int bl_budget_limits_check(const struct bl_budget_limits *l, char *err, size_t errcap);

/* ---- the budget ---------------------------------------------------------- */

/* Refund marks kept per dimension (see docs/internals/rate-budgets.md). */
#define BL_BUDGET_MARKS 16

/* Utilization slices per dimension: the last window in slices of per / 60. */
#define BL_BUDGET_SLICES 60

/* One refund mark: after event `seq`, the dimension was never less than
 * `slack` units ahead of the clock. Releases read them to cap refunds. */
struct bl_budget_mark {
	uint64_t seq;   /* event sequence number (a ticket) */
	uint64_t slack; /* units, rounded down */
};

/* One rate dimension of a budget. Private: read it through bl_budget_stats. */
struct bl_budget_dim {
	struct bl_gcra gcra;          /* the shaping state */
	uint64_t limited_since_seq;   /* first ticket that reserved on this dimension */
	uint64_t refunded;            /* units given back by releases, cumulative */
	uint64_t charged;             /* units charged beyond estimates, cumulative */
	uint32_t n_marks;             /* marks in use */
	struct bl_budget_mark marks[BL_BUDGET_MARKS]; /* oldest first; seq and slack ascending */
	int64_t slice_ns;             /* length of one utilization slice */
	int64_t head_slice;           /* absolute number of the newest slice written */
	int64_t slices[BL_BUDGET_SLICES]; /* net units admitted per slice, ring by absolute number */
};

/* A rate budget. Embed it and set it up with bl_budget_init; it owns no
 * memory, so there is nothing to clean up. Fields are private. */
struct bl_budget {
	struct bl_budget_limits limits;        /* configuration in force */
	struct bl_budget_dim dim[BL_DIM_COUNT]; /* rate state per dimension */
	uint64_t seq;                 /* last event sequence number handed out */
	uint32_t in_flight;           /* leases acquired and not yet released or expired */
	double factor;                /* rate factor applied to the GCRAs, 0.1..1 */
	double factor_base;           /* factor set by the last 429, recovering from recover_from_ns */
	bl_time_ns recover_from_ns;   /* when recovery starts counting periods; 0 = never decreased */
	bl_time_ns paused_until_ns;   /* nothing admitted before this; 0 = not paused */
	uint64_t grants;              /* acquires admitted */
	uint64_t denials;             /* acquires refused with BL_EAGAIN */
	uint64_t releases;            /* leases released */
	uint64_t expired;             /* leases expired (TTL) */
	uint64_t provider_429s;       /* provider rate-limit answers reported */
	uint64_t resyncs;             /* provider headers that tightened the budget */
};

/* Sets up b with limits l (copied). Every limited dimension starts idle, with
 * its full burst available. Returns 0 or BL_EINVAL (l does not pass
 * bl_budget_limits_check) leaving b untouched. */
int bl_budget_init(struct bl_budget *b, const struct bl_budget_limits *l);

/* Applies new limits to a live budget on config reload. Spent units stay
 * spent: what each dimension still owes is kept in units (so a lower limit can
 * leave the budget in debt), never re-granted. A dimension that becomes
 * limited starts idle and charges leases acquired before only their usage; one
 * that stops being limited is dropped. Leases in flight keep their slots even
 * above a lower `concurrent`. Returns 0 or BL_EINVAL leaving b unchanged. */
int bl_budget_reconfigure(struct bl_budget *b, const struct bl_budget_limits *l, bl_time_ns now);

/* Why an acquire was refused: bits of bl_budget_decision.wait. */
enum bl_budget_wait {
	BL_BUDGET_WAIT_RATE = 1 << 0,        /* a rate dimension does not conform yet */
	BL_BUDGET_WAIT_CONCURRENCY = 1 << 1, /* all concurrency slots are taken: wait for a release */
	BL_BUDGET_WAIT_PAUSE = 1 << 2,       /* paused after a provider 429 */
};

/* The answer to an acquire. */
struct bl_budget_decision {
	uint64_t ticket;         /* admitted: the lease's ticket, to pass to release */
	bl_time_ns retry_at_ns;  /* BL_EAGAIN: earliest time the same request conforms on every
				    rate dimension and the pause is over; 0 when only a
				    release can help (wait is exactly WAIT_CONCURRENCY) */
	unsigned wait;           /* BL_EAGAIN: enum bl_budget_wait bits */
	enum bl_dim dim;         /* BL_EAGAIN with WAIT_RATE: the dimension that conforms last;
				    BL_ETOOBIG: the dimension the request can never fit */
	uint64_t max;            /* BL_ETOOBIG: the most that dimension ever admits at once */
};

/* Acquires `req` (normalized by the tokens rule) at now: takes from every
 * limited dimension it names and one concurrency slot, all or nothing.
 *
 * Returns 0 and sets out->ticket; or BL_EAGAIN with out->retry_at_ns, wait and
 * dim saying when and why (nothing is taken; `denials` counts it); or
 * BL_ETOOBIG when some dimension's burst capacity is below the request, with
 * out->dim and out->max (nothing changes: the request can never be admitted).
 *
 * retry_at_ns is exact: retried then, with nothing else having happened to
 * the budget, the same request is admitted. (A recovery step after a 429 is
 * put in force by the next call that changes the budget, so while nothing
 * happens the refill stays at the rate the answer was computed with.) */
int bl_budget_acquire(struct bl_budget *b, const struct bl_amounts *req, bl_time_ns now,
		      struct bl_budget_decision *out);

/* What a release did per dimension. */
struct bl_budget_reconcile {
	uint64_t refunded[BL_DIM_COUNT]; /* units given back (estimate above usage) */
	uint64_t charged[BL_DIM_COUNT];  /* units charged (usage above estimate) */
	uint64_t lapsed[BL_DIM_COUNT];   /* unused units not given back: their time had passed */
};

/* Releases a lease acquired with `ticket`, reconciling `reserved` (what its
 * acquire asked for) with `used` (what it really used; NULL = exactly the
 * estimate), both normalized by the tokens rule, and frees its slot.
 *
 * Usage above the estimate is charged now, even into debt: the budget then
 * admits nothing until time has repaid it. Usage below is refunded, but only
 * as far as the estimate is still holding the budget back: units the clock has
 * already paid for since the acquire (the budget would have been full anyway)
 * are not given back (`lapsed`). out may be NULL.
 *
 * Returns 0, or BL_EINVAL (no lease in flight, or a ticket never handed out)
 * leaving b unchanged. */
int bl_budget_release(struct bl_budget *b, const struct bl_amounts *reserved,
		      const struct bl_amounts *used, uint64_t ticket, bl_time_ns now,
		      struct bl_budget_reconcile *out);

/* A lease's TTL ran out: frees its slot, counts it in `expired`; its estimate
 * stays spent. Returns 0 or BL_EINVAL (no lease in flight). */
int bl_budget_expire(struct bl_budget *b, bl_time_ns now);

/* The provider answered 429: multiplies the rate factor by adaptive_decrease
 * (not below BL_BUDGET_FACTOR_FLOOR) and, when retry_after_ns > 0, pauses the
 * budget until now + retry_after_ns (a later pause already set stays). The
 * factor then regains adaptive_increase per adaptive_period without a 429,
 * counted from the end of the pause, up to 1: computed from `now` on each
 * call, no timers. Units already outstanding stay outstanding. Returns 0 or
 * BL_EINVAL (retry_after_ns negative) leaving b unchanged. */
int bl_budget_on_rate_limited(struct bl_budget *b, bl_time_ns now, int64_t retry_after_ns);

/* The provider answered 429 to a call admitted before the budget last slowed
 * down: that call went out at the old rate and says nothing about the new
 * one, so the rate is not decreased again (many calls in flight at one 429
 * would otherwise drive it to the floor at once). Honours retry_after_ns as
 * bl_budget_on_rate_limited does and counts the 429. Returns 0 or BL_EINVAL
 * (retry_after_ns negative) leaving b unchanged. */
int bl_budget_on_rate_limited_stale(struct bl_budget *b, bl_time_ns now, int64_t retry_after_ns);

/* The provider reports `remaining` units of dimension dim until reset_at_ns
 * (when its quota is whole again; 0 or a past time = now). When that is less
 * than the budget would admit before then, the budget moves so that it admits
 * at most `remaining` before reset_at_ns, and counts a resync; it never
 * loosens. A dimension the budget does not limit is ignored. Returns 0, or
 * BL_EINVAL (dim out of range) or BL_ERANGE (reset_at_ns more than two windows
 * after now) leaving b unchanged. */
int bl_budget_sync_remaining(struct bl_budget *b, enum bl_dim dim, uint64_t remaining,
			     bl_time_ns reset_at_ns, bl_time_ns now);

/* Starts as if the whole limit of every dimension had just been spent: nothing
 * is admitted for one window from now, then the budget refills from empty.
 * For a restart whose snapshot is too old to trust. */
void bl_budget_assume_spent(struct bl_budget *b, bl_time_ns now);

/* ---- observability ------------------------------------------------------- */

/* One dimension as the daemon shows it. */
struct bl_budget_dim_stats {
	uint64_t limit;            /* units per window as stated; 0 = not limited (rest is 0) */
	int64_t per_ns;            /* window length */
	uint64_t capacity;         /* burst: the largest request this dimension admits */
	double target_rate_per_s;  /* target_utilization x limit / per, units per second */
	double rate_per_s;         /* rate in force after adaptation, units per second */
	uint64_t available;        /* units an acquire could take now */
	uint64_t debt;             /* units owed beyond an empty burst */
	uint64_t window_units;     /* net units admitted over the last window (estimates,
				      corrected by reconciliations when they happen) */
	double utilization;        /* window_units / limit */
	uint64_t refunded;         /* units given back by releases, cumulative */
	uint64_t charged;          /* units charged beyond estimates, cumulative */
};

/* A budget as the daemon shows it. */
struct bl_budget_stats {
	struct bl_budget_dim_stats dim[BL_DIM_COUNT]; /* indexed by enum bl_dim */
	uint32_t concurrent;        /* slot limit; 0 = not limited */
	uint32_t in_flight;         /* leases holding a slot */
	double rate_factor;         /* adaptive factor at now, 0.1..1 */
	bl_time_ns paused_until_ns; /* paused until then when after now; 0 = never paused */
	uint64_t grants;            /* acquires admitted */
	uint64_t denials;           /* acquires refused with BL_EAGAIN */
	uint64_t releases;          /* leases released */
	uint64_t expired;           /* leases expired */
	uint64_t provider_429s;     /* provider 429s reported */
	uint64_t resyncs;           /* provider headers that tightened the budget */
};

/* Fills *out with b's state at now. Changes nothing. */
void bl_budget_stats(const struct bl_budget *b, bl_time_ns now, struct bl_budget_stats *out);

/* ---- persistence ---------------------------------------------------------- */

/* One dimension's persistent state. An interval of 0 ns and 0 frac means the
 * dimension was not limited; everything else in it is then 0. */
struct bl_budget_dim_state {
	int64_t tat_ns;             /* theoretical arrival time, monotonic ns (never before the
				       export's now) */
	uint32_t tat_frac;          /* TAT fraction, 2^-32 ns */
	int64_t interval_ns;        /* emission interval the TAT is expressed in, whole ns */
	uint32_t interval_frac;     /* its fraction, 2^-32 ns */
	uint64_t limited_since_seq; /* first ticket that reserved on this dimension */
	uint32_t n_marks;           /* refund marks in use, 0..BL_BUDGET_MARKS */
	struct bl_budget_mark marks[BL_BUDGET_MARKS]; /* seq and slack strictly ascending */
	uint64_t refunded;          /* counter */
	uint64_t charged;           /* counter */
};

/* A budget's persistent state: plain data for a snapshot. The daemon converts
 * the monotonic times (tat_ns, recover_from_ns, paused_until_ns; 0 means
 * never for the last two) to wall clock and back. Limits are not in it: a
 * restored budget keeps the configuration it was initialized with, and
 * bl_budget_state_set converts the spent units across a change. */
struct bl_budget_state {
	struct bl_budget_dim_state dim[BL_DIM_COUNT]; /* indexed by enum bl_dim */
	uint64_t seq;               /* last ticket handed out */
	uint32_t in_flight;         /* leases holding a slot (the daemon restores them) */
	double factor;              /* rate factor applied, 0.1..1 */
	double factor_base;         /* factor after the last 429, 0.1..1 */
	bl_time_ns recover_from_ns; /* recovery counts periods from here; 0 = never */
	bl_time_ns paused_until_ns; /* paused until; 0 = never */
	uint64_t grants;            /* counter */
	uint64_t denials;           /* counter */
	uint64_t releases;          /* counter */
	uint64_t expired;           /* counter */
	uint64_t provider_429s;     /* counter */
	uint64_t resyncs;           /* counter */
};

/* Exports b's state at now into *out. Changes nothing. */
void bl_budget_state_get(const struct bl_budget *b, bl_time_ns now, struct bl_budget_state *out);

/* Imports a state exported by bl_budget_state_get (possibly by another run, its
 * times converted to this run's clock). Units outstanding in each dimension
 * stay outstanding under b's limits; a dimension b limits that the state does
 * not starts idle. Utilization history starts empty. Returns 0, or BL_EINVAL
 * when the state is inconsistent (factors out of range, marks out of order,
 * a ticket beyond seq, fields set on a dimension without interval ...),
 * leaving b unchanged. */
int bl_budget_state_set(struct bl_budget *b, const struct bl_budget_state *st, bl_time_ns now);

#endif
