/* One rate dimension shaped by GCRA, the generic cell rate algorithm.
 *
 * A GCRA keeps one instant, the theoretical arrival time (TAT): the moment at
 * which everything admitted so far would have been paid for at the shaped rate.
 * Taking n units moves it n emission intervals (T) later; a take conforms when
 * the new TAT is at most the burst tolerance (capacity x T) ahead of now. That
 * admits exactly what a token bucket of `capacity` units refilled every T
 * admits, with one stored instant, no refill arithmetic, and the time at which a
 * refused take would conform falling straight out of the TAT.
 *
 * Times and intervals are fixed point: whole nanoseconds plus a 32-bit binary
 * fraction (x_ns + x_frac / 2^32 ns), so that rates of billions of units per
 * second keep their precision. Every rounding goes the conservative way: the
 * interval up, retry times up, refunds and outstanding units down.
 *
 * docs/internals/rate-budgets.md derives the bound: over any closed window of
 * `per_ns`, a GCRA built by bl_gcra_init admits at most `limit` units.
 *
 * Pure: reads no clock, allocates nothing, keeps no globals. Functions that
 * fail leave the GCRA as it was.
 */
#ifndef BALLAST_GCRA_H
#define BALLAST_GCRA_H

#include <stdbool.h>
#include <stdint.h>

#include "ballast/units.h"

/* Largest limit a dimension may state (2^53 units per window). */
#define BL_GCRA_LIMIT_MAX (UINT64_C(1) << 53)

/* Shortest and longest window a dimension may state: 1 ms and 31 days. */
#define BL_GCRA_PER_MIN_NS INT64_C(1000000)
#define BL_GCRA_PER_MAX_NS (INT64_C(31) * 86400 * 1000000000)

/* Highest stated rate, in units per ns (about 4.2e15 units per second): the
 * emission interval then still spans 1024 ticks of 2^-32 ns, so rounding it up
 * costs under 0.1 % of the rate. */
#define BL_GCRA_UNITS_PER_NS_MAX 4194304.0

/* Smallest target share bl_gcra_init accepts. */
#define BL_GCRA_TARGET_MIN 0.01

/* Smallest rate factor bl_gcra_set_factor accepts. */
#define BL_GCRA_FACTOR_MIN 0.01

/* One rate dimension. Embed it and set it up with bl_gcra_init; the fields are
 * readable (the budget persists them) but change them only through the
 * functions below. */
struct bl_gcra {
	int64_t tat_ns;             /* theoretical arrival time, whole ns (INT64_MIN: idle since init) */
	int64_t interval_ns;        /* emission interval in force (time one unit costs), whole ns */
	int64_t base_interval_ns;   /* emission interval at rate factor 1, whole ns */
	uint64_t capacity;          /* burst: most units admissible at once, and the largest take */
	uint32_t tat_frac;          /* TAT fraction, in 2^-32 ns */
	uint32_t interval_frac;     /* emission interval fraction, in 2^-32 ns */
	uint32_t base_interval_frac; /* base emission interval fraction, in 2^-32 ns */
};

/* Sets up g for `limit` units per `per_ns` as a provider states it, shaped at
 * `target` (BL_GCRA_TARGET_MIN..1) of that rate, with a burst of `burst` (0 <= burst
 * < 1) of the limit spendable at once.
 *
 * capacity = max(1, floor(burst x limit)). The emission interval is
 * per / (target x limit) rounded up, and raised if needed so that
 * per / interval + capacity < limit + 1: no closed window of per_ns ever holds
 * more than `limit` admitted units. g starts idle (a full burst available).
 *
 * Returns 0, or BL_EINVAL (limit 0 or above BL_GCRA_LIMIT_MAX, per_ns outside
 * BL_GCRA_PER_MIN_NS..BL_GCRA_PER_MAX_NS, a rate above BL_GCRA_UNITS_PER_NS_MAX,
 * target or burst out of range or NaN) leaving g untouched. */
int bl_gcra_init(struct bl_gcra *g, uint64_t limit, int64_t per_ns, double target, double burst);

/* Predicate: would taking n units at now conform? When it would not, sets
 * *retry_at_ns (if not NULL) to the earliest whole nanosecond at which the
 * same take conforms, supposing nothing else changes; for n above the capacity
 * (never conforms) that is INT64_MAX. */
bool bl_gcra_conforms(const struct bl_gcra *g, uint64_t n, bl_time_ns now, bl_time_ns *retry_at_ns);

/* Takes n units at now. Returns 0; or BL_EAGAIN with *retry_at_ns set as by
 * bl_gcra_conforms; or BL_ETOOBIG when n exceeds the capacity. On failure g is
 * unchanged. retry_at_ns may be NULL. */
int bl_gcra_take(struct bl_gcra *g, uint64_t n, bl_time_ns now, bl_time_ns *retry_at_ns);

/* Charges n units at now whether or not they conform: usage found after the
 * fact. The TAT may run past the tolerance: the GCRA is then in debt and
 * admits nothing until time has repaid it. Saturates rather than overflows
 * (the TAT never passes INT64_MAX ns). */
void bl_gcra_charge(struct bl_gcra *g, uint64_t n, bl_time_ns now);

/* Gives back up to n units at now, but never more than the TAT is ahead of
 * now (bl_gcra_ahead): units whose time has already passed cannot be returned.
 * Returns the units given back. */
uint64_t bl_gcra_refund(struct bl_gcra *g, uint64_t n, bl_time_ns now);

/* Returns how many whole units the TAT is ahead of at_ns, rounded down; 0 when
 * it is not ahead. (At at_ns = now: the units still being paid off.) */
uint64_t bl_gcra_ahead(const struct bl_gcra *g, bl_time_ns at_ns);

/* Returns the whole units a take at now could have, 0 when none. */
uint64_t bl_gcra_available(const struct bl_gcra *g, bl_time_ns now);

/* Returns the units owed at now: how far, in units rounded up, the TAT is past
 * the tolerance. 0 when not in debt. */
uint64_t bl_gcra_debt(const struct bl_gcra *g, bl_time_ns now);

/* Shapes at `factor` (BL_GCRA_FACTOR_MIN..1) of the base rate from now on:
 * the interval becomes base / factor, rounded up and never below the base.
 * Units outstanding at now are kept (the TAT is re-expressed in the new
 * interval, rounded up); the capacity in units does not change. Returns 0 or
 * BL_EINVAL (factor out of range) leaving g unchanged. */
int bl_gcra_set_factor(struct bl_gcra *g, double factor, bl_time_ns now);

/* Adopts a TAT that was computed under another emission interval (a snapshot
 * written with other limits or another rate factor): the units it was ahead of
 * now stay outstanding, re-expressed in g's interval and rounded up. With the
 * same interval the TAT is taken as it is. Returns 0 or BL_EINVAL (interval
 * zero or negative) leaving g unchanged. */
int bl_gcra_adopt(struct bl_gcra *g, int64_t tat_ns, uint32_t tat_frac, int64_t interval_ns,
		  uint32_t interval_frac, bl_time_ns now);

/* Tightens g so that at most `remaining` units are admitted before until_ns
 * (the TAT moves to at least until + tolerance - remaining x T; it never moves
 * back). Returns how many whole units the TAT was already beyond that point,
 * rounded down (0 when g had to move). With remaining = 0 and until = now +
 * per, nothing is admitted for a window. */
uint64_t bl_gcra_hold(struct bl_gcra *g, uint64_t remaining, bl_time_ns until_ns);

/* Returns the rate in force, in units per second. */
double bl_gcra_rate(const struct bl_gcra *g);

#endif
