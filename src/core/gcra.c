/* GCRA for one rate dimension: see include/ballast/gcra.h and
 * docs/internals/rate-budgets.md for the bound it keeps.
 *
 * Internally every instant and interval is one signed 128-bit fixed-point
 * number of 2^-32 ns ("ticks"). Times are int64 ns (2^63) and intervals at most
 * about 2^57 ns, so products of an interval and a take (capacity <= 2^53) stay
 * far inside 2^127; charges of arbitrary size saturate.
 */
#include "ballast/gcra.h"

#include <math.h>

#include "ballast/error.h"

#ifndef __SIZEOF_INT128__
#error "ballast's GCRA needs a compiler with 128-bit integers (gcc or clang on a 64-bit target)"
#endif

__extension__ typedef __int128 fx;

#define FX_BITS 32
#define FX_ONE ((fx)1 << FX_BITS)
/* The latest TAT we keep: INT64_MAX whole ns, so it always exports as int64. */
#define FX_MAX ((fx)INT64_MAX * FX_ONE)
/* A little more than double rounding error, to push float results upwards. */
#define UP_BIAS (1.0 + 0x1p-50)

static fx fx_make(int64_t ns, uint32_t frac)
{
	return (fx)ns * FX_ONE + (fx)frac;
}

static fx fx_time(int64_t ns)
{
	return (fx)ns * FX_ONE;
}

/* Splits v into whole ns rounded down and the fraction. v must lie within the
 * int64 ns range. */
static void fx_split(fx v, int64_t *ns, uint32_t *frac)
{
	fx q = v / FX_ONE, r = v % FX_ONE;

	if (r < 0) {
		q -= 1;
		r += FX_ONE;
	}
	*ns = (int64_t)q;
	*frac = (uint32_t)r;
}

/* Smallest whole ns at or after v, saturated to the int64 range. */
static int64_t fx_ceil_ns(fx v)
{
	fx q = v / FX_ONE, r = v % FX_ONE;

	if (r > 0)
		q += 1;
	if (q > INT64_MAX)
		return INT64_MAX;
	if (q < INT64_MIN)
		return INT64_MIN;
	return (int64_t)q;
}

static fx fx_min(fx a, fx b)
{
	return a < b ? a : b;
}

static fx fx_max(fx a, fx b)
{
	return a > b ? a : b;
}

/* Converts a positive double number of ticks to fx, rounded up (the bias
 * covers the rounding of the double arithmetic that produced it). */
static fx fx_from_double_up(double ticks)
{
	double c = ceil(ticks * UP_BIAS);

	if (!(c < 0x1p126))
		return (fx)1 << 126;
	return (fx)c;
}

static fx tat(const struct bl_gcra *g)
{
	return fx_make(g->tat_ns, g->tat_frac);
}

static void set_tat(struct bl_gcra *g, fx v)
{
	fx_split(fx_min(v, FX_MAX), &g->tat_ns, &g->tat_frac);
}

static fx interval(const struct bl_gcra *g)
{
	return fx_make(g->interval_ns, g->interval_frac);
}

static fx tolerance(const struct bl_gcra *g)
{
	return (fx)g->capacity * interval(g);
}

/* n x t, saturated at FX_MAX. t > 0. */
static fx mul_sat(uint64_t n, fx t)
{
	if (n != 0 && t > FX_MAX / (fx)n)
		return FX_MAX;
	return (fx)n * t;
}

/* Whole units in a span of ticks, rounded down (0 for a negative span),
 * saturated at UINT64_MAX. */
static uint64_t units_down(fx span, fx t)
{
	fx q;

	if (span <= 0)
		return 0;
	q = span / t;
	return q > (fx)UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

/* Whole units in a span of ticks, rounded up. */
static uint64_t units_up(fx span, fx t)
{
	fx q;

	if (span <= 0)
		return 0;
	q = (span + t - 1) / t;
	return q > (fx)UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

int bl_gcra_init(struct bl_gcra *g, uint64_t limit, int64_t per_ns, double target, double burst)
{
	uint64_t cap;
	fx by_target, by_bound, t;
	double c;

	if (limit == 0 || limit > BL_GCRA_LIMIT_MAX)
		return BL_EINVAL;
	if (per_ns < BL_GCRA_PER_MIN_NS || per_ns > BL_GCRA_PER_MAX_NS)
		return BL_EINVAL;
	if (!(target >= BL_GCRA_TARGET_MIN && target <= 1.0) || !(burst >= 0.0 && burst < 1.0))
		return BL_EINVAL;
	if ((double)limit > (double)per_ns * BL_GCRA_UNITS_PER_NS_MAX)
		return BL_EINVAL;

	/* A hair of slack so that 0.05 x 4000 gives 200, not 199; the interval
	 * below is what keeps the bound, whatever the capacity. */
	c = floor(burst * (double)limit + 1e-6);
	cap = c < 1.0 ? 1 : (uint64_t)c;
	if (cap > limit)
		return BL_EINVAL;

	/* The target rate: per / (target x limit), rounded up. */
	by_target = fx_from_double_up((double)per_ns * 0x1p32 / (target * (double)limit));
	/* The bound, in exact integers: per / T + cap < limit + 1, i.e.
	 * T > per / (limit + 1 - cap). */
	by_bound = fx_time(per_ns) / (fx)(limit + 1 - cap) + 1;
	t = fx_max(by_target, by_bound);

	g->tat_ns = INT64_MIN;
	g->tat_frac = 0;
	g->capacity = cap;
	fx_split(t, &g->interval_ns, &g->interval_frac);
	g->base_interval_ns = g->interval_ns;
	g->base_interval_frac = g->interval_frac;
	return 0;
}

bool bl_gcra_conforms(const struct bl_gcra *g, uint64_t n, bl_time_ns now, bl_time_ns *retry_at_ns)
{
	fx t = interval(g), cur = tat(g), at = fx_time(now), next;

	if (n > g->capacity) {
		if (retry_at_ns)
			*retry_at_ns = INT64_MAX;
		return false;
	}
	next = fx_max(cur, at) + (fx)n * t;
	if (next - at <= (fx)g->capacity * t)
		return true;
	/* Not yet: the take conforms once now reaches TAT + n T - tolerance
	 * (which is then still before the TAT, so the max stays the TAT). */
	if (retry_at_ns)
		*retry_at_ns = fx_ceil_ns(cur + (fx)n * t - (fx)g->capacity * t);
	return false;
}

int bl_gcra_take(struct bl_gcra *g, uint64_t n, bl_time_ns now, bl_time_ns *retry_at_ns)
{
	if (n > g->capacity) {
		if (retry_at_ns)
			*retry_at_ns = INT64_MAX;
		return BL_ETOOBIG;
	}
	if (!bl_gcra_conforms(g, n, now, retry_at_ns))
		return BL_EAGAIN;
	set_tat(g, fx_max(tat(g), fx_time(now)) + (fx)n * interval(g));
	return 0;
}

void bl_gcra_charge(struct bl_gcra *g, uint64_t n, bl_time_ns now)
{
	fx base = fx_max(tat(g), fx_time(now));
	fx add = mul_sat(n, interval(g));

	set_tat(g, add > FX_MAX - base ? FX_MAX : base + add);
}

uint64_t bl_gcra_refund(struct bl_gcra *g, uint64_t n, bl_time_ns now)
{
	uint64_t ahead = bl_gcra_ahead(g, now);
	uint64_t give = n < ahead ? n : ahead;

	if (give)
		set_tat(g, tat(g) - (fx)give * interval(g));
	return give;
}

uint64_t bl_gcra_ahead(const struct bl_gcra *g, bl_time_ns at_ns)
{
	return units_down(tat(g) - fx_time(at_ns), interval(g));
}

uint64_t bl_gcra_available(const struct bl_gcra *g, bl_time_ns now)
{
	uint64_t out = units_up(tat(g) - fx_time(now), interval(g));

	return out >= g->capacity ? 0 : g->capacity - out;
}

uint64_t bl_gcra_debt(const struct bl_gcra *g, bl_time_ns now)
{
	return units_up(tat(g) - fx_time(now) - tolerance(g), interval(g));
}

/* Re-expresses the span of cur ahead of now, measured in interval `from`, in
 * interval `to`, rounded up. Returns the new TAT (cur itself when not ahead). */
static fx rescale(fx cur, fx from, fx to, bl_time_ns now)
{
	fx at = fx_time(now), span = cur - at, whole, rest;

	if (span <= 0 || from == to)
		return cur;
	/* Whole units exactly, the fraction of one in floating point. */
	whole = span / from;
	if (whole > FX_MAX / to)
		return FX_MAX;
	rest = span % from;
	whole = whole * to;
	if (rest)
		whole += fx_from_double_up((double)rest / (double)from * (double)to);
	return whole > FX_MAX - at ? FX_MAX : at + whole;
}

int bl_gcra_set_factor(struct bl_gcra *g, double factor, bl_time_ns now)
{
	fx base = fx_make(g->base_interval_ns, g->base_interval_frac), t;

	if (!(factor >= BL_GCRA_FACTOR_MIN && factor <= 1.0))
		return BL_EINVAL;
	t = factor == 1.0 ? base : fx_max(base, fx_from_double_up((double)base / factor));
	set_tat(g, rescale(tat(g), interval(g), t, now));
	fx_split(t, &g->interval_ns, &g->interval_frac);
	return 0;
}

int bl_gcra_adopt(struct bl_gcra *g, int64_t tat_ns, uint32_t tat_frac, int64_t interval_ns,
		  uint32_t interval_frac, bl_time_ns now)
{
	fx from = fx_make(interval_ns, interval_frac);

	if (from <= 0)
		return BL_EINVAL;
	set_tat(g, rescale(fx_make(tat_ns, tat_frac), from, interval(g), now));
	return 0;
}

uint64_t bl_gcra_hold(struct bl_gcra *g, uint64_t remaining, bl_time_ns until_ns)
{
	fx t = interval(g), cur = tat(g);
	fx floor_at = fx_time(until_ns) + tolerance(g) - mul_sat(remaining, t);

	if (cur >= floor_at)
		return units_down(cur - floor_at, t);
	set_tat(g, floor_at);
	return 0;
}

double bl_gcra_rate(const struct bl_gcra *g)
{
	return 1e9 * 0x1p32 / (double)interval(g);
}
