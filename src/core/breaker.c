/* Circuit breakers: see include/ballast/breaker.h and
 * docs/internals/breakers.md. */
#include "ballast/breaker.h"

#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "ballast/error.h"

/* One second of a time window. A bucket counts only while its window_gen is
 * the breaker's and its second is in the window; anything else is empty, so
 * the window is emptied in O(1) by changing window_gen. */
struct bucket {
	int64_t sec;       /* the second it counts: floor(now / 1 s) */
	uint32_t window_gen; /* the breaker's window_gen when it was written */
	uint32_t calls;    /* calls in that second */
	uint32_t failures; /* of them, failures */
	uint32_t slow;     /* of them, slow */
};

_Static_assert(sizeof(struct bucket) == 24, "bl_breaker_window_bytes documents 24 bytes a bucket");

/* A count window's slot: what one outcome was. */
#define SLOT_FAILURE 0x1
#define SLOT_SLOW 0x2

static const char *const state_names[BL_BREAKER_STATE_COUNT] = {
	"closed", "open", "half_open", "forced_open", "disabled",
};

static const char *const outcome_names[BL_BREAKER_OUTCOME_COUNT] = {
	"ok", "error", "timeout", "rate_limited", "cancelled",
};

static const char *const trip_names[BL_BREAKER_TRIP_COUNT] = {
	"none", "consecutive_failures", "failure_rate", "slow_rate", "probe",
};

static int parse_name(const char *const *names, int n, const char *s, size_t len, int *out)
{
	if (!s)
		return BL_EINVAL;
	for (int i = 0; i < n; i++) {
		if (strlen(names[i]) == len && memcmp(s, names[i], len) == 0) {
			*out = i;
			return 0;
		}
	}
	return BL_EINVAL;
}

const char *bl_breaker_state_name(enum bl_breaker_state s)
{
	return (unsigned)s < BL_BREAKER_STATE_COUNT ? state_names[s] : "unknown";
}

int bl_breaker_state_parse(const char *s, size_t len, enum bl_breaker_state *out)
{
	int i;

	if (parse_name(state_names, BL_BREAKER_STATE_COUNT, s, len, &i))
		return BL_EINVAL;
	*out = (enum bl_breaker_state)i;
	return 0;
}

const char *bl_breaker_outcome_name(enum bl_breaker_outcome o)
{
	return (unsigned)o < BL_BREAKER_OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

int bl_breaker_outcome_parse(const char *s, size_t len, enum bl_breaker_outcome *out)
{
	int i;

	if (parse_name(outcome_names, BL_BREAKER_OUTCOME_COUNT, s, len, &i))
		return BL_EINVAL;
	*out = (enum bl_breaker_outcome)i;
	return 0;
}

const char *bl_breaker_trip_name(enum bl_breaker_trip t)
{
	return (unsigned)t < BL_BREAKER_TRIP_COUNT ? trip_names[t] : "unknown";
}

/* ---- configuration ------------------------------------------------------ */

void bl_breaker_config_default(struct bl_breaker_config *c)
{
	memset(c, 0, sizeof *c);
	c->window_is_time = false;
	c->window_count = 50;
	c->window_ns = 60 * BL_NS_PER_S;
	c->min_calls = 20;
	c->failure_rate = 0.5;
	c->slow_call_ns = 20 * BL_NS_PER_S;
	c->slow_rate = 0.8;
	c->consecutive_failures = 5;
	c->open_for_ns = 30 * BL_NS_PER_S;
	c->max_open_for_ns = 300 * BL_NS_PER_S;
	c->half_open_probes = 3;
	c->rate_limited_trips = false;
}

/* Writes ns as a person reads it ("30s", "1m30s"); a negative value in ns. */
static const char *fmt_dur(char *buf, size_t cap, int64_t ns)
{
	if (ns < 0 || bl_format_duration(ns, buf, cap) < 0)
		snprintf(buf, cap, "%lldns", (long long)ns);
	return buf;
}

/* Buckets of a time window: its span in whole seconds, rounded up. */
static uint32_t time_buckets(int64_t window_ns)
{
	return (uint32_t)((window_ns + BL_BREAKER_BUCKET_NS - 1) / BL_BREAKER_BUCKET_NS);
}

int bl_breaker_config_check(const struct bl_breaker_config *c, char *err, size_t errcap)
{
	char a[48], b[48];

	if (!c->window_is_time && (c->window_count < 1 || c->window_count > BL_BREAKER_WINDOW_COUNT_MAX))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "window.count: %lu is outside 1..%lu (the outcomes the window keeps, "
				 "such as 50)",
				 (unsigned long)c->window_count,
				 (unsigned long)BL_BREAKER_WINDOW_COUNT_MAX);
	if (c->window_is_time &&
	    (c->window_ns < BL_BREAKER_WINDOW_NS_MIN || c->window_ns > BL_BREAKER_WINDOW_NS_MAX))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "window.time: %s is outside 1s..1h (the span the window keeps, such "
				 "as 60s)",
				 fmt_dur(a, sizeof a, c->window_ns));
	if (c->min_calls < 1)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "min_calls: 0 must be at least 1 (the calls needed in the window "
				 "before the rates can open the breaker, such as 20)");
	if (!c->window_is_time && c->min_calls > c->window_count)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "min_calls: %lu exceeds the window of %lu calls, so the breaker could "
				 "never trip",
				 (unsigned long)c->min_calls, (unsigned long)c->window_count);
	if (!(c->failure_rate >= 0.0 && c->failure_rate <= 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "failure_rate: %g is outside 0..1 (the share of failed calls that "
				 "opens the breaker, such as 0.5)",
				 c->failure_rate);
	if (c->slow_call_ns <= 0)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "slow_call: %s must be above 0 (a call this slow or slower counts as "
				 "slow, such as 20s)",
				 fmt_dur(a, sizeof a, c->slow_call_ns));
	if (!(c->slow_rate >= 0.0 && c->slow_rate <= 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
				 "slow_rate: %g is outside 0..1 (the share of slow calls that opens the "
				 "breaker, such as 0.8)",
				 c->slow_rate);
	if (c->open_for_ns <= 0)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "open_for: %s must be above 0 (how long a tripped breaker stays open "
				 "before probing, such as 30s)",
				 fmt_dur(a, sizeof a, c->open_for_ns));
	if (c->max_open_for_ns < c->open_for_ns)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "max_open_for: %s must be at least open_for (%s)",
				 fmt_dur(a, sizeof a, c->max_open_for_ns),
				 fmt_dur(b, sizeof b, c->open_for_ns));
	if (c->half_open_probes < 1)
		return bl_errorf(err, errcap, BL_EINVAL,
				 "half_open_probes: 0 must be at least 1 (the trial calls let through "
				 "when half-open, such as 3)");
	if (err && errcap)
		err[0] = '\0';
	return 0;
}

/* ---- time and periods --------------------------------------------------- */

/* floor(t / 1 s), also for times before 0. */
static int64_t sec_of(bl_time_ns t)
{
	int64_t s = t / BL_BREAKER_BUCKET_NS;

	if (t % BL_BREAKER_BUCKET_NS < 0)
		s--;
	return s;
}

static uint32_t slot_of(int64_t sec, uint32_t n)
{
	int64_t m = sec % (int64_t)n;

	return (uint32_t)(m < 0 ? m + n : m);
}

static bl_time_ns add_sat(bl_time_ns t, int64_t d)
{
	return t > INT64_MAX - d ? INT64_MAX : t + d;
}

/* open_for x 2^level, capped at max_open_for. */
static int64_t period_at(const struct bl_breaker_config *c, uint32_t level)
{
	if (level >= 63 || c->open_for_ns > (c->max_open_for_ns >> level))
		return c->max_open_for_ns;
	return c->open_for_ns << level;
}

/* The level after a repeated trip: one more doubling, unless the cap is
 * already reached (so the level says how many doublings really apply). */
static uint32_t next_level(const struct bl_breaker_config *c, uint32_t level)
{
	if (level >= BL_BREAKER_BACKOFF_LEVEL_MAX || period_at(c, level) >= c->max_open_for_ns)
		return level;
	return level + 1;
}

/* The smallest level giving the same period as `level`. */
static uint32_t normalize_level(const struct bl_breaker_config *c, uint32_t level)
{
	while (level > 0 && period_at(c, level - 1) >= c->max_open_for_ns)
		level--;
	return level;
}

/* ---- the window ---------------------------------------------------------- */

struct totals {
	uint64_t calls;    /* in the window */
	uint64_t failures; /* of them, failed */
	uint64_t slow;     /* of them, slow */
};

/* The window's totals once it has reached second `sec`: the buckets of the
 * seconds that fall out between last_sec and sec are taken off. Each second
 * passed costs one bucket, at most n_slots in all. Changes nothing. */
static void time_totals_at(const struct bl_breaker *b, int64_t sec, struct totals *t)
{
	const struct bucket *buckets = b->window;
	int64_t n = b->n_slots;

	t->calls = b->win_calls;
	t->failures = b->win_failures;
	t->slow = b->win_slow;
	if (!b->started || sec <= b->last_sec)
		return;
	if (sec - b->last_sec >= n) {
		/* Every bucket in the window is older than the window now. */
		memset(t, 0, sizeof *t);
		return;
	}
	for (int64_t s = b->last_sec + 1; s <= sec; s++) {
		/* Second s reuses the slot of second s - n, which leaves the window. */
		const struct bucket *k = &buckets[slot_of(s, b->n_slots)];

		if (k->window_gen == b->window_gen && k->sec == s - n) {
			t->calls -= k->calls;
			t->failures -= k->failures;
			t->slow -= k->slow;
		}
	}
}

static void window_totals(const struct bl_breaker *b, bl_time_ns now, struct totals *t)
{
	if (b->config.window_is_time) {
		time_totals_at(b, sec_of(now), t);
	} else {
		t->calls = b->win_calls;
		t->failures = b->win_failures;
		t->slow = b->win_slow;
	}
}

/* Empties the window in O(1). */
static void window_reset(struct bl_breaker *b)
{
	b->head = 0;
	b->filled = 0;
	b->window_gen++;
	if (b->window_gen == 0)
		b->window_gen = 1; /* 0 marks the buckets init cleared */
	b->started = false;
	b->last_sec = 0;
	b->win_calls = 0;
	b->win_failures = 0;
	b->win_slow = 0;
}

static void count_push(struct bl_breaker *b, bool failure, bool slow)
{
	uint8_t *ring = b->window;
	uint8_t flags = (uint8_t)((failure ? SLOT_FAILURE : 0) | (slow ? SLOT_SLOW : 0));

	if (b->filled == b->n_slots) {
		uint8_t old = ring[b->head];

		b->win_calls--;
		b->win_failures -= (old & SLOT_FAILURE) ? 1 : 0;
		b->win_slow -= (old & SLOT_SLOW) ? 1 : 0;
	} else {
		b->filled++;
	}
	ring[b->head] = flags;
	b->head = b->head + 1 == b->n_slots ? 0 : b->head + 1;
	b->win_calls++;
	b->win_failures += failure;
	b->win_slow += slow;
}

static void time_push(struct bl_breaker *b, bl_time_ns now, bool failure, bool slow)
{
	struct bucket *buckets = b->window;
	int64_t sec = sec_of(now);
	struct totals t;
	struct bucket *k;

	if (b->started && sec < b->last_sec)
		sec = b->last_sec; /* time never goes backwards */
	time_totals_at(b, sec, &t);
	b->win_calls = t.calls;
	b->win_failures = t.failures;
	b->win_slow = t.slow;
	b->started = true;
	b->last_sec = sec;

	k = &buckets[slot_of(sec, b->n_slots)];
	if (k->window_gen != b->window_gen || k->sec != sec) {
		memset(k, 0, sizeof *k);
		k->sec = sec;
		k->window_gen = b->window_gen;
	}
	if (k->calls == UINT32_MAX)
		return; /* over 4 billion calls in one second: the bucket is full */
	k->calls++;
	k->failures += failure;
	k->slow += slow;
	b->win_calls++;
	b->win_failures += failure;
	b->win_slow += slow;
}

/* ---- the breaker --------------------------------------------------------- */

size_t bl_breaker_window_bytes(const struct bl_breaker_config *c)
{
	if (bl_breaker_config_check(c, NULL, 0))
		return 0;
	if (c->window_is_time)
		return (size_t)time_buckets(c->window_ns) * sizeof(struct bucket);
	return c->window_count;
}

int bl_breaker_init(struct bl_breaker *b, const struct bl_breaker_config *c, void *window,
		    size_t window_bytes)
{
	size_t need = bl_breaker_window_bytes(c);

	if (need == 0 || !window || window_bytes < need)
		return BL_EINVAL;
	if (c->window_is_time && (uintptr_t)window % alignof(struct bucket) != 0)
		return BL_EINVAL;
	memset(b, 0, sizeof *b);
	memset(window, 0, need);
	b->config = *c;
	b->state = BL_BREAKER_CLOSED;
	b->last_trip = BL_BREAKER_TRIP_NONE;
	b->generation = 1;
	b->window = window;
	b->n_slots = c->window_is_time ? time_buckets(c->window_ns) : c->window_count;
	b->window_gen = 1; /* the cleared buckets carry 0: empty */
	b->open_period_ns = period_at(c, 0);
	return 0;
}

/* Where the window starts in a created breaker: after the struct, aligned
 * for a bucket. */
static size_t window_offset(void)
{
	size_t a = alignof(struct bucket);

	return (sizeof(struct bl_breaker) + a - 1) / a * a;
}

int bl_breaker_create(const struct bl_breaker_config *c, const struct bl_alloc_hook *hook,
		      struct bl_breaker **out)
{
	size_t need = bl_breaker_window_bytes(c);
	size_t bytes = window_offset() + need;
	struct bl_breaker *b;

	if (need == 0)
		return BL_EINVAL;
	if (!hook)
		hook = &bl_alloc_malloc;
	b = hook->malloc_fn(hook->ctx, bytes);
	if (!b)
		return BL_ENOMEM;
	if (bl_breaker_init(b, c, (char *)b + window_offset(), need)) {
		/* Cannot happen: the config passed and the buffer fits. */
		hook->free_fn(hook->ctx, b, bytes);
		return BL_EINVAL;
	}
	b->hook = *hook;
	b->alloc_bytes = bytes;
	*out = b;
	return 0;
}

void bl_breaker_destroy(struct bl_breaker *b)
{
	struct bl_alloc_hook hook;

	if (!b || b->alloc_bytes == 0)
		return;
	hook = b->hook;
	hook.free_fn(hook.ctx, b, b->alloc_bytes);
}

/* ---- transitions ----------------------------------------------------------- */

static void new_generation(struct bl_breaker *b)
{
	b->generation++;
	b->probes_out = 0;
	b->probes_ok = 0;
}

/* Opens b at now. A trip from half_open is a repeated trip: the period
 * doubles. */
static void trip(struct bl_breaker *b, bl_time_ns now, enum bl_breaker_trip why)
{
	if (b->state == BL_BREAKER_HALF_OPEN)
		b->backoff_level = next_level(&b->config, b->backoff_level);
	b->open_period_ns = period_at(&b->config, b->backoff_level);
	b->open_until_ns = add_sat(now, b->open_period_ns);
	b->state = BL_BREAKER_OPEN;
	b->last_trip = why;
	b->trips++;
	new_generation(b);
}

/* Back to normal: empty window, no streak, backoff reset. */
static void close_breaker(struct bl_breaker *b)
{
	b->state = BL_BREAKER_CLOSED;
	b->backoff_level = 0;
	b->open_until_ns = 0;
	b->consecutive = 0;
	window_reset(b);
	new_generation(b);
}

/* Is the open period over at now? */
static bool open_over(const struct bl_breaker *b, bl_time_ns now)
{
	return b->state == BL_BREAKER_OPEN && now >= b->open_until_ns;
}

enum bl_breaker_state bl_breaker_state(const struct bl_breaker *b, bl_time_ns now)
{
	return open_over(b, now) ? BL_BREAKER_HALF_OPEN : b->state;
}

bool bl_breaker_is_ejected(const struct bl_breaker *b, bl_time_ns now)
{
	enum bl_breaker_state s = bl_breaker_state(b, now);

	return s == BL_BREAKER_OPEN || s == BL_BREAKER_FORCED_OPEN;
}

/* Probe permits still free in half_open. */
static bool probe_free(const struct bl_breaker *b)
{
	return b->probes_out + b->probes_ok < b->config.half_open_probes;
}

bool bl_breaker_would_allow(const struct bl_breaker *b, bl_time_ns now)
{
	switch (b->state) {
	case BL_BREAKER_CLOSED:
	case BL_BREAKER_DISABLED:
		return true;
	case BL_BREAKER_OPEN:
		return open_over(b, now); /* the first probe of a new half_open */
	case BL_BREAKER_HALF_OPEN:
		return probe_free(b);
	default:
		return false;
	}
}

bool bl_breaker_allow(struct bl_breaker *b, bl_time_ns now, struct bl_breaker_permit *permit)
{
	memset(permit, 0, sizeof *permit);
	if (!bl_breaker_would_allow(b, now)) {
		b->rejected++;
		return false;
	}
	if (b->state == BL_BREAKER_OPEN) {
		b->state = BL_BREAKER_HALF_OPEN;
		new_generation(b);
	}
	if (b->state == BL_BREAKER_HALF_OPEN) {
		b->probes_out++;
		permit->probe = true;
	}
	permit->generation = b->generation;
	return true;
}

int64_t bl_breaker_retry_after_ns(const struct bl_breaker *b, bl_time_ns now)
{
	switch (b->state) {
	case BL_BREAKER_OPEN:
		if (open_over(b, now))
			return 0;
		/* now < open_until here; the difference overflows only from far below 0. */
		if (b->open_until_ns >= 0 && now < b->open_until_ns - INT64_MAX)
			return INT64_MAX;
		return b->open_until_ns - now;
	case BL_BREAKER_HALF_OPEN:
		return probe_free(b) ? 0 : BL_BREAKER_RETRY_UNKNOWN;
	case BL_BREAKER_FORCED_OPEN:
		return BL_BREAKER_RETRY_UNKNOWN;
	default:
		return 0;
	}
}

/* Does a current permit match what b hands out in its state? */
static bool permit_plausible(const struct bl_breaker *b, const struct bl_breaker_permit *p)
{
	switch (b->state) {
	case BL_BREAKER_CLOSED:
	case BL_BREAKER_DISABLED:
		return !p->probe;
	case BL_BREAKER_HALF_OPEN:
		return p->probe && b->probes_out > 0;
	default:
		return false; /* open and forced_open hand out no permits */
	}
}

/* Should a closed breaker trip now? Returns the first rule that holds. */
static enum bl_breaker_trip verdict(const struct bl_breaker *b)
{
	const struct bl_breaker_config *c = &b->config;
	double calls = (double)b->win_calls;

	if (c->consecutive_failures && b->consecutive >= c->consecutive_failures)
		return BL_BREAKER_TRIP_CONSECUTIVE;
	if (b->win_calls < c->min_calls)
		return BL_BREAKER_TRIP_NONE;
	/* failures / calls, correctly rounded, against the threshold as written:
	 * exact at the threshold (10 of 20 against 0.5, 3 of 10 against 0.3). */
	if (b->win_failures > 0 && (double)b->win_failures / calls >= c->failure_rate)
		return BL_BREAKER_TRIP_FAILURE_RATE;
	if (b->win_slow > 0 && (double)b->win_slow / calls >= c->slow_rate)
		return BL_BREAKER_TRIP_SLOW_RATE;
	return BL_BREAKER_TRIP_NONE;
}

int bl_breaker_record(struct bl_breaker *b, const struct bl_breaker_permit *permit,
		      enum bl_breaker_outcome outcome, int64_t latency_ns, bl_time_ns now)
{
	bool current, failure, counted, slow;
	enum bl_breaker_trip why;

	if (!permit || (unsigned)outcome >= BL_BREAKER_OUTCOME_COUNT || latency_ns < 0 ||
	    permit->generation > b->generation)
		return BL_EINVAL;
	current = permit->generation == b->generation;
	if (current && !permit_plausible(b, permit))
		return BL_EINVAL;

	failure = outcome == BL_BREAKER_ERROR || outcome == BL_BREAKER_TIMEOUT ||
		  (outcome == BL_BREAKER_RATE_LIMITED && b->config.rate_limited_trips);
	counted = failure || outcome == BL_BREAKER_OK;
	slow = latency_ns >= b->config.slow_call_ns;

	if (!current || !counted ||
	    (b->state != BL_BREAKER_CLOSED && b->state != BL_BREAKER_HALF_OPEN)) {
		if (current && b->state == BL_BREAKER_HALF_OPEN)
			b->probes_out--; /* a probe that told nothing: its permit is free again */
		b->ignored++;
		return 0;
	}

	b->calls++;
	b->failures += failure;
	b->slow += slow;

	if (b->state == BL_BREAKER_HALF_OPEN) {
		b->probes_out--;
		if (failure || slow) {
			trip(b, now, BL_BREAKER_TRIP_PROBE);
		} else if (++b->probes_ok == b->config.half_open_probes) {
			close_breaker(b);
		}
		return 0;
	}

	/* closed */
	if (b->config.window_is_time)
		time_push(b, now, failure, slow);
	else
		count_push(b, failure, slow);
	if (failure) {
		if (b->consecutive < UINT32_MAX)
			b->consecutive++;
	} else {
		b->consecutive = 0;
	}
	why = verdict(b);
	if (why != BL_BREAKER_TRIP_NONE)
		trip(b, now, why);
	return 0;
}

int bl_breaker_force(struct bl_breaker *b, enum bl_breaker_state s)
{
	switch (s) {
	case BL_BREAKER_CLOSED:
		close_breaker(b);
		b->last_trip = BL_BREAKER_TRIP_NONE;
		b->open_period_ns = period_at(&b->config, 0);
		return 0;
	case BL_BREAKER_FORCED_OPEN:
	case BL_BREAKER_DISABLED:
		b->state = s;
		b->open_until_ns = 0;
		new_generation(b);
		return 0;
	default:
		return BL_EINVAL;
	}
}

/* ---- observability ------------------------------------------------------- */

void bl_breaker_stats(const struct bl_breaker *b, bl_time_ns now, struct bl_breaker_stats *out)
{
	struct totals t;

	memset(out, 0, sizeof *out);
	window_totals(b, now, &t);
	out->state = bl_breaker_state(b, now);
	out->last_trip = b->last_trip;
	out->window_calls = t.calls;
	out->window_failures = t.failures;
	out->window_slow = t.slow;
	if (t.calls) {
		out->failure_rate = (double)t.failures / (double)t.calls;
		out->slow_rate = (double)t.slow / (double)t.calls;
	}
	out->consecutive_failures = b->consecutive;
	if (b->state == BL_BREAKER_HALF_OPEN) {
		out->probes_in_flight = b->probes_out;
		out->probes_succeeded = b->probes_ok;
	}
	out->backoff_level = b->backoff_level;
	switch (out->state) {
	case BL_BREAKER_OPEN:
		out->open_period_ns = b->open_period_ns;
		out->open_until_ns = b->open_until_ns;
		break;
	case BL_BREAKER_HALF_OPEN:
		/* A failed probe doubles the period. */
		out->open_period_ns = period_at(&b->config, next_level(&b->config, b->backoff_level));
		break;
	default:
		out->open_period_ns = period_at(&b->config, b->backoff_level);
		break;
	}
	out->retry_after_ns = bl_breaker_retry_after_ns(b, now);
	out->generation = b->generation;
	out->trips = b->trips;
	out->calls = b->calls;
	out->failures = b->failures;
	out->slow = b->slow;
	out->rejected = b->rejected;
	out->ignored = b->ignored;
}

/* ---- persistence ---------------------------------------------------------- */

void bl_breaker_state_get(const struct bl_breaker *b, struct bl_breaker_snapshot *out)
{
	memset(out, 0, sizeof *out);
	out->state = b->state;
	out->last_trip = b->last_trip;
	out->open_until_ns = b->state == BL_BREAKER_OPEN ? b->open_until_ns : 0;
	out->backoff_level = b->backoff_level;
	out->generation = b->generation;
	out->trips = b->trips;
	out->calls = b->calls;
	out->failures = b->failures;
	out->slow = b->slow;
	out->rejected = b->rejected;
	out->ignored = b->ignored;
}

int bl_breaker_state_set(struct bl_breaker *b, const struct bl_breaker_snapshot *st,
			 bl_time_ns now)
{
	uint32_t level;
	int64_t period;

	if ((unsigned)st->state >= BL_BREAKER_STATE_COUNT ||
	    (unsigned)st->last_trip >= BL_BREAKER_TRIP_COUNT ||
	    st->backoff_level > BL_BREAKER_BACKOFF_LEVEL_MAX || st->generation == 0 ||
	    st->generation == UINT64_MAX)
		return BL_EINVAL;
	level = normalize_level(&b->config, st->backoff_level);
	period = period_at(&b->config, level);

	b->state = st->state;
	b->last_trip = st->last_trip;
	b->backoff_level = level;
	b->open_period_ns = period;
	b->open_until_ns = 0;
	if (st->state == BL_BREAKER_OPEN) {
		bl_time_ns latest = add_sat(now, period);

		b->open_until_ns = st->open_until_ns < latest ? st->open_until_ns : latest;
	}
	b->generation = st->generation;
	b->probes_out = 0;
	b->probes_ok = 0;
	if (st->state == BL_BREAKER_HALF_OPEN)
		b->generation++; /* probes in flight before the restart are not waited for */
	b->consecutive = 0;
	window_reset(b);
	b->trips = st->trips;
	b->calls = st->calls;
	b->failures = st->failures;
	b->slow = st->slow;
	b->rejected = st->rejected;
	b->ignored = st->ignored;
	return 0;
}

/* ---- pools --------------------------------------------------------------- */

bool bl_breaker_panic(size_t n_backends, size_t n_open, double max_ejected)
{
	if (n_backends == 0 || isnan(max_ejected))
		return false;
	if (n_open > n_backends)
		n_open = n_backends;
	if (max_ejected < 0.0)
		max_ejected = 0.0;
	if (max_ejected > 1.0)
		max_ejected = 1.0;
	/* The share ejected, correctly rounded, against max_ejected as written:
	 * exactly at the share (1 of 2 against 0.5) is not panic. */
	return (double)n_open / (double)n_backends > max_ejected;
}
