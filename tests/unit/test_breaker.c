/* Unit tests for circuit breakers (breaker.h).
 *
 * Table-driven cases for the trip rules (each row a string of outcomes and
 * the exact outcome that must trip, with the rule named), then the time
 * window, the open period and its backoff, half-open probes, operator states,
 * the pool's panic rule, persistence and the configuration; and a property
 * test: seeded random outcomes against a plain model of each window. Time
 * only moves by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/breaker.h"
#include "ballast/error.h"

#define MS BL_NS_PER_MS
#define S BL_NS_PER_S

/* ---- helpers ------------------------------------------------------------- */

/* xorshift64*: small, seeded, reproducible streams. */
struct rng {
	uint64_t s; /* state, never 0 */
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Uniform in lo..hi inclusive. */
static uint64_t rnd(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(r) % (hi - lo + 1);
}

/* Defaults, with slow_call 1 s so that test latencies read easily. */
static struct bl_breaker_config base_cfg(void)
{
	struct bl_breaker_config c;

	bl_breaker_config_default(&c);
	c.slow_call_ns = 1 * S;
	return c;
}

static struct bl_breaker *mk(const struct bl_breaker_config *c)
{
	struct bl_breaker *b = NULL;
	char err[256];

	assert_int_equal(bl_breaker_config_check(c, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(bl_breaker_create(c, NULL, &b), 0);
	assert_non_null(b);
	return b;
}

/* Admits one call at now (the test fails if refused) and records o. */
static void call(struct bl_breaker *b, enum bl_breaker_outcome o, int64_t latency_ns,
		 bl_time_ns now)
{
	struct bl_breaker_permit p = {0, false};

	assert_true(bl_breaker_allow(b, now, &p));
	assert_int_equal(bl_breaker_record(b, &p, o, latency_ns, now), 0);
}

/* One outcome per letter: s ok, S slow ok, f error, F slow error, t timeout,
 * r rate_limited, c cancelled. Slow means exactly slow_call (1 s). */
static void letter(char ch, enum bl_breaker_outcome *o, int64_t *latency_ns)
{
	*latency_ns = 10 * MS;
	switch (ch) {
	case 's': *o = BL_BREAKER_OK; break;
	case 'S': *o = BL_BREAKER_OK; *latency_ns = 1 * S; break;
	case 'f': *o = BL_BREAKER_ERROR; break;
	case 'F': *o = BL_BREAKER_ERROR; *latency_ns = 1 * S; break;
	case 't': *o = BL_BREAKER_TIMEOUT; break;
	case 'r': *o = BL_BREAKER_RATE_LIMITED; break;
	case 'c': *o = BL_BREAKER_CANCELLED; break;
	default: fail_msg("bad letter '%c'", ch);
	}
}

static struct bl_breaker_stats stats_at(const struct bl_breaker *b, bl_time_ns now)
{
	struct bl_breaker_stats st;

	bl_breaker_stats(b, now, &st);
	return st;
}

/* Trips b (closed, consecutive_failures 1) at now with one failure. */
static void trip_now(struct bl_breaker *b, bl_time_ns now)
{
	call(b, BL_BREAKER_ERROR, 10 * MS, now);
	assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_OPEN);
}

/* ---- names ----------------------------------------------------------------- */

static void test_names(void **state)
{
	enum bl_breaker_state s;
	enum bl_breaker_outcome o;

	(void)state;
	for (int i = 0; i < BL_BREAKER_STATE_COUNT; i++) {
		const char *n = bl_breaker_state_name((enum bl_breaker_state)i);

		assert_int_equal(bl_breaker_state_parse(n, strlen(n), &s), 0);
		assert_int_equal(s, i);
	}
	for (int i = 0; i < BL_BREAKER_OUTCOME_COUNT; i++) {
		const char *n = bl_breaker_outcome_name((enum bl_breaker_outcome)i);

		assert_int_equal(bl_breaker_outcome_parse(n, strlen(n), &o), 0);
		assert_int_equal(o, i);
	}
	assert_string_equal(bl_breaker_state_name(BL_BREAKER_HALF_OPEN), "half_open");
	assert_string_equal(bl_breaker_state_name(BL_BREAKER_FORCED_OPEN), "forced_open");
	assert_string_equal(bl_breaker_state_name((enum bl_breaker_state)7), "unknown");
	assert_string_equal(bl_breaker_outcome_name(BL_BREAKER_OK), "ok");
	assert_string_equal(bl_breaker_outcome_name(BL_BREAKER_RATE_LIMITED), "rate_limited");
	assert_string_equal(bl_breaker_outcome_name((enum bl_breaker_outcome)7), "unknown");
	assert_string_equal(bl_breaker_trip_name(BL_BREAKER_TRIP_CONSECUTIVE), "consecutive_failures");
	assert_string_equal(bl_breaker_trip_name(BL_BREAKER_TRIP_PROBE), "probe");
	assert_string_equal(bl_breaker_trip_name((enum bl_breaker_trip)7), "unknown");

	s = BL_BREAKER_CLOSED;
	assert_int_equal(bl_breaker_state_parse("Open", 4, &s), BL_EINVAL);
	assert_int_equal(bl_breaker_state_parse("open", 3, &s), BL_EINVAL); /* "ope" */
	assert_int_equal(bl_breaker_state_parse("opened", 6, &s), BL_EINVAL);
	assert_int_equal(bl_breaker_state_parse(NULL, 0, &s), BL_EINVAL);
	assert_int_equal(s, BL_BREAKER_CLOSED);
	o = BL_BREAKER_OK;
	assert_int_equal(bl_breaker_outcome_parse("success", 7, &o), BL_EINVAL);
	assert_int_equal(o, BL_BREAKER_OK);
}

/* ---- configuration ----------------------------------------------------------- */

static void test_config_defaults(void **state)
{
	struct bl_breaker_config c;
	char err[256] = "x";

	(void)state;
	bl_breaker_config_default(&c);
	assert_false(c.window_is_time);
	assert_int_equal(c.window_count, 50);
	assert_int_equal(c.window_ns, 60 * S);
	assert_int_equal(c.min_calls, 20);
	assert_true(c.failure_rate == 0.5);
	assert_int_equal(c.slow_call_ns, 20 * S);
	assert_true(c.slow_rate == 0.8);
	assert_int_equal(c.consecutive_failures, 5);
	assert_int_equal(c.open_for_ns, 30 * S);
	assert_int_equal(c.max_open_for_ns, 300 * S);
	assert_int_equal(c.half_open_probes, 3);
	assert_false(c.rate_limited_trips);
	assert_int_equal(bl_breaker_config_check(&c, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(bl_breaker_window_bytes(&c), 50);
	c.window_is_time = true;
	assert_int_equal(bl_breaker_config_check(&c, NULL, 0), 0);
	assert_int_equal(bl_breaker_window_bytes(&c), 60 * 24);
	c.window_ns = 1500 * MS; /* rounded up to 2 buckets */
	assert_int_equal(bl_breaker_window_bytes(&c), 2 * 24);
	c.window_ns = 3600 * S;
	assert_int_equal(bl_breaker_window_bytes(&c), 86400);
}

/* Sets the field the configuration file calls `field` to v. */
static void set_field(struct bl_breaker_config *c, const char *field, double v)
{
	if (strcmp(field, "window.count") == 0) {
		c->window_count = (uint32_t)v;
	} else if (strcmp(field, "window.time") == 0) {
		c->window_is_time = true;
		c->window_ns = (int64_t)v;
	} else if (strcmp(field, "min_calls") == 0) {
		c->min_calls = (uint32_t)v;
	} else if (strcmp(field, "failure_rate") == 0) {
		c->failure_rate = v;
	} else if (strcmp(field, "slow_call") == 0) {
		c->slow_call_ns = (int64_t)v;
	} else if (strcmp(field, "slow_rate") == 0) {
		c->slow_rate = v;
	} else if (strcmp(field, "open_for") == 0) {
		c->open_for_ns = (int64_t)v;
	} else if (strcmp(field, "max_open_for") == 0) {
		c->max_open_for_ns = (int64_t)v;
	} else if (strcmp(field, "half_open_probes") == 0) {
		c->half_open_probes = (uint32_t)v;
	} else {
		fail_msg("no field %s", field);
	}
}

static void test_config_rejects(void **state)
{
	static const struct {
		const char *field;
		double v;
		const char *msg; /* exact message */
	} rows[] = {
		{ "window.count", 0,
		  "window.count: 0 is outside 1..100000"
		  " (the outcomes the window keeps, such as 50)" },
		{ "window.count", 100001,
		  "window.count: 100001 is outside 1..100000"
		  " (the outcomes the window keeps, such as 50)" },
		{ "window.time", 500e6,
		  "window.time: 500ms is outside 1s..1h"
		  " (the span the window keeps, such as 60s)" },
		{ "window.time", 3601e9,
		  "window.time: 1h1s is outside 1s..1h"
		  " (the span the window keeps, such as 60s)" },
		{ "window.time", -1e9,
		  "window.time: -1000000000ns is outside 1s..1h"
		  " (the span the window keeps, such as 60s)" },
		{ "min_calls", 0,
		  "min_calls: 0 must be at least 1"
		  " (the calls needed in the window before the rates can open the breaker, such as 20)" },
		{ "min_calls", 51,
		  "min_calls: 51 exceeds the window of 50 calls, so the breaker could never trip" },
		{ "failure_rate", 1.5,
		  "failure_rate: 1.5 is outside 0..1"
		  " (the share of failed calls that opens the breaker, such as 0.5)" },
		{ "failure_rate", -0.1,
		  "failure_rate: -0.1 is outside 0..1"
		  " (the share of failed calls that opens the breaker, such as 0.5)" },
		{ "failure_rate", NAN,
		  "failure_rate: nan is outside 0..1"
		  " (the share of failed calls that opens the breaker, such as 0.5)" },
		{ "slow_call", 0,
		  "slow_call: 0s must be above 0"
		  " (a call this slow or slower counts as slow, such as 20s)" },
		{ "slow_rate", 2,
		  "slow_rate: 2 is outside 0..1"
		  " (the share of slow calls that opens the breaker, such as 0.8)" },
		{ "open_for", 0,
		  "open_for: 0s must be above 0"
		  " (how long a tripped breaker stays open before probing, such as 30s)" },
		{ "max_open_for", 10e9, "max_open_for: 10s must be at least open_for (30s)" },
		{ "half_open_probes", 0,
		  "half_open_probes: 0 must be at least 1"
		  " (the trial calls let through when half-open, such as 3)" },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_breaker_config c;
		struct bl_breaker b;
		struct bl_breaker *out = (struct bl_breaker *)&err; /* a sentinel */
		alignas(8) unsigned char win[1 << 16];

		bl_breaker_config_default(&c);
		set_field(&c, rows[i].field, rows[i].v);
		assert_int_equal(bl_breaker_config_check(&c, err, sizeof err), BL_EINVAL);
		if (strcmp(err, rows[i].msg) != 0)
			fail_msg("row %zu: got \"%s\", want \"%s\"", i, err, rows[i].msg);
		assert_int_equal(bl_breaker_window_bytes(&c), 0);
		memset(&b, 0xAB, sizeof b);
		assert_int_equal(bl_breaker_init(&b, &c, win, sizeof win), BL_EINVAL);
		assert_int_equal(b.generation, UINT64_C(0xABABABABABABABAB)); /* untouched */
		assert_int_equal(bl_breaker_create(&c, NULL, &out), BL_EINVAL);
		assert_ptr_equal(out, (struct bl_breaker *)&err);
	}
	/* A time window may hold fewer calls than min_calls: no such check. */
	{
		struct bl_breaker_config c = base_cfg();

		c.window_is_time = true;
		c.window_count = 0; /* unused by a time window */
		c.min_calls = 1000;
		assert_int_equal(bl_breaker_config_check(&c, NULL, 0), 0);
	}
	/* A tiny errcap truncates, NUL-terminated. */
	{
		struct bl_breaker_config c = base_cfg();
		char small[8];

		c.half_open_probes = 0;
		assert_int_equal(bl_breaker_config_check(&c, small, sizeof small), BL_EINVAL);
		assert_string_equal(small, "half_op");
	}
}

/* ---- the trip rules, count window ------------------------------------------ */

/* Each row: a breaker with a count window, the outcomes in order (all at one
 * time), and the index of the outcome that must trip it (-1: none may), with
 * the rule it must name. Before that index the breaker is closed, right after
 * it open. */
static void test_trip_rules_table(void **state)
{
	static const struct {
		const char *what;
		uint32_t window, min_calls;
		double failure_rate, slow_rate;
		uint32_t consecutive;
		bool rate_limited_trips;
		const char *seq;
		int trip_at;
		enum bl_breaker_trip why;
	} rows[] = {
		{ "exactly at the failure rate trips", 10, 10, 0.5, 1.0, 0, false,
		  "fsfsfsfsfs", 9, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "just below the failure rate does not", 10, 10, 0.5, 1.0, 0, false,
		  "fsfsfsfsssssssssssss", -1, BL_BREAKER_TRIP_NONE },
		{ "0.3 is exactly 3 of 10", 10, 10, 0.3, 1.0, 0, false,
		  "fffsssssss", 9, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "2 of 10 is under 0.3", 10, 10, 0.3, 1.0, 0, false,
		  "ffssssssssssssssssss", -1, BL_BREAKER_TRIP_NONE },
		{ "no verdict before min_calls, however bad", 20, 5, 0.5, 1.0, 0, false,
		  "ffff", -1, BL_BREAKER_TRIP_NONE },
		{ "reaching min_calls with a success can trip", 20, 5, 0.5, 1.0, 0, false,
		  "ffffs", 4, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "old outcomes leave a count window", 4, 4, 0.75, 1.0, 0, false,
		  "ffsssfff", 7, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "timeouts are failures", 4, 4, 0.5, 1.0, 0, false,
		  "sstt", 3, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "exactly at the slow rate trips", 10, 10, 1.0, 0.8, 0, false,
		  "SSSSSSSSss", 9, BL_BREAKER_TRIP_SLOW_RATE },
		{ "just below the slow rate does not", 10, 10, 1.0, 0.8, 0, false,
		  "SSSSSSSsssssssssss", -1, BL_BREAKER_TRIP_NONE },
		{ "slow failures are slow too", 10, 10, 1.0, 0.8, 0, false,
		  "FFFFSSSSss", 9, BL_BREAKER_TRIP_SLOW_RATE },
		{ "failure rate is named before slow rate", 4, 4, 0.5, 0.5, 0, false,
		  "FFss", 3, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "a rate of 0 trips on the first failure after min_calls", 5, 5, 0.0, 1.0, 0, false,
		  "sssssf", 5, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "consecutive failures trip before min_calls", 50, 20, 0.5, 1.0, 5, false,
		  "ffffsfffff", 9, BL_BREAKER_TRIP_CONSECUTIVE },
		{ "a success breaks the streak, a slow one too", 50, 20, 0.5, 1.0, 3, false,
		  "ffsffSfff", 8, BL_BREAKER_TRIP_CONSECUTIVE },
		{ "cancelled does not break the streak", 50, 20, 0.5, 1.0, 5, false,
		  "ffffcf", 5, BL_BREAKER_TRIP_CONSECUTIVE },
		{ "rate_limited does not break the streak", 50, 20, 0.5, 1.0, 5, false,
		  "ffffrf", 5, BL_BREAKER_TRIP_CONSECUTIVE },
		{ "consecutive 0 is off", 50, 20, 1.0, 1.0, 0, false,
		  "fffffffffffffff", -1, BL_BREAKER_TRIP_NONE },
		{ "consecutive is named first", 4, 4, 0.5, 1.0, 4, false,
		  "ffff", 3, BL_BREAKER_TRIP_CONSECUTIVE },
		{ "rate_limited counts as nothing by default", 4, 4, 0.5, 1.0, 3, false,
		  "rrrrrrrr", -1, BL_BREAKER_TRIP_NONE },
		{ "rate_limited does not dilute the failure rate", 4, 4, 0.5, 1.0, 0, false,
		  "ffrrrrss", 7, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "cancelled does not dilute the failure rate", 4, 4, 0.5, 1.0, 0, false,
		  "ffccccss", 7, BL_BREAKER_TRIP_FAILURE_RATE },
		{ "rate_limited_trips makes 429s failures (streak)", 50, 20, 0.5, 1.0, 3, true,
		  "rrr", 2, BL_BREAKER_TRIP_CONSECUTIVE },
		{ "rate_limited_trips makes 429s failures (rate)", 4, 4, 0.5, 1.0, 0, true,
		  "srsr", 3, BL_BREAKER_TRIP_FAILURE_RATE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_breaker_config c = base_cfg();
		struct bl_breaker *b;
		int tripped_at = -1;
		size_t n = strlen(rows[i].seq);

		c.window_count = rows[i].window;
		c.min_calls = rows[i].min_calls;
		c.failure_rate = rows[i].failure_rate;
		c.slow_rate = rows[i].slow_rate;
		c.consecutive_failures = rows[i].consecutive;
		c.rate_limited_trips = rows[i].rate_limited_trips;
		b = mk(&c);
		for (size_t k = 0; k < n; k++) {
			enum bl_breaker_outcome o;
			int64_t lat;

			letter(rows[i].seq[k], &o, &lat);
			if (bl_breaker_state(b, 0) != BL_BREAKER_CLOSED)
				fail_msg("row %zu (%s): open before outcome %zu", i, rows[i].what, k);
			call(b, o, lat, 0);
			if (bl_breaker_state(b, 0) == BL_BREAKER_OPEN) {
				tripped_at = (int)k;
				break;
			}
		}
		if (tripped_at != rows[i].trip_at || b->last_trip != rows[i].why)
			fail_msg("row %zu (%s): tripped at %d by %s, want %d by %s", i, rows[i].what,
				 tripped_at, bl_breaker_trip_name(b->last_trip), rows[i].trip_at,
				 bl_breaker_trip_name(rows[i].why));
		assert_int_equal(b->trips, tripped_at >= 0 ? 1 : 0);
		bl_breaker_destroy(b);
	}
}

static void test_window_figures(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_stats st;

	(void)state;
	c.window_count = 5;
	c.min_calls = 5;
	c.failure_rate = 1.0;
	c.slow_rate = 1.0;
	c.consecutive_failures = 0;
	b = mk(&c);
	/* s f S c r t s: counted s f S t s; the window keeps the last 5 */
	call(b, BL_BREAKER_OK, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 0);
	call(b, BL_BREAKER_OK, 2 * S, 0);
	call(b, BL_BREAKER_CANCELLED, 5 * S, 0);
	call(b, BL_BREAKER_RATE_LIMITED, 0, 0);
	call(b, BL_BREAKER_TIMEOUT, 0, 0);
	st = stats_at(b, 0);
	assert_int_equal(st.window_calls, 4);
	assert_int_equal(st.window_failures, 2);
	assert_int_equal(st.window_slow, 1);
	assert_true(st.failure_rate == 0.5);
	assert_true(st.slow_rate == 0.25);
	assert_int_equal(st.consecutive_failures, 1);
	call(b, BL_BREAKER_OK, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 0); /* pushes out the first s */
	st = stats_at(b, 0);
	assert_int_equal(st.window_calls, 5);
	assert_int_equal(st.window_failures, 3);
	assert_int_equal(st.window_slow, 1);
	assert_true(st.failure_rate == 0.6);
	assert_int_equal(st.calls, 6);
	assert_int_equal(st.failures, 3);
	assert_int_equal(st.slow, 1);
	assert_int_equal(st.ignored, 2);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.trips, 0);
	assert_int_equal(st.state, BL_BREAKER_CLOSED);
	assert_int_equal(st.retry_after_ns, 0);
	assert_int_equal(st.open_period_ns, 30 * S);
	assert_int_equal(st.open_until_ns, 0);
	bl_breaker_destroy(b);
}

/* ---- the time window ----------------------------------------------------------- */

static struct bl_breaker_config time_cfg(int64_t window_ns, uint32_t min_calls)
{
	struct bl_breaker_config c = base_cfg();

	c.window_is_time = true;
	c.window_ns = window_ns;
	c.min_calls = min_calls;
	c.consecutive_failures = 0;
	c.slow_rate = 1.0;
	return c;
}

static void test_time_window_trips(void **state)
{
	struct bl_breaker_config c = time_cfg(10 * S, 4);
	struct bl_breaker *b;

	(void)state;
	/* Within the window: 2 failures at 0 s and 2 successes at 5 s make 2 of 4. */
	b = mk(&c);
	call(b, BL_BREAKER_ERROR, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 100 * MS);
	call(b, BL_BREAKER_OK, 0, 5 * S);
	assert_int_equal(bl_breaker_state(b, 5 * S), BL_BREAKER_CLOSED);
	call(b, BL_BREAKER_OK, 0, 9999 * MS);
	assert_int_equal(bl_breaker_state(b, 9999 * MS), BL_BREAKER_OPEN);
	assert_int_equal(b->last_trip, BL_BREAKER_TRIP_FAILURE_RATE);
	bl_breaker_destroy(b);

	/* The failures of second 0 have left the window at 10 s: 0 of 2. */
	b = mk(&c);
	call(b, BL_BREAKER_ERROR, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 100 * MS);
	call(b, BL_BREAKER_OK, 0, 10 * S);
	call(b, BL_BREAKER_OK, 0, 10 * S);
	assert_int_equal(bl_breaker_state(b, 10 * S), BL_BREAKER_CLOSED);
	assert_int_equal(stats_at(b, 10 * S).window_calls, 2);
	call(b, BL_BREAKER_ERROR, 0, 10 * S);
	assert_int_equal(bl_breaker_state(b, 10 * S), BL_BREAKER_CLOSED); /* 1 of 3 */
	call(b, BL_BREAKER_ERROR, 0, 19999 * MS);
	assert_int_equal(bl_breaker_state(b, 19999 * MS), BL_BREAKER_OPEN); /* 2 of 4 */
	bl_breaker_destroy(b);
}

static void test_time_window_expiry(void **state)
{
	struct bl_breaker_config c = time_cfg(10 * S, 1000);
	struct bl_breaker *b;
	struct bl_breaker_stats st;

	(void)state;
	b = mk(&c);
	/* One success a second, seconds 0..14: the window keeps seconds 5..14. */
	for (int s = 0; s < 15; s++)
		call(b, s % 3 == 0 ? BL_BREAKER_ERROR : BL_BREAKER_OK, s % 2 ? 2 * S : 0,
		     s * S + 300 * MS);
	st = stats_at(b, 14 * S + 999 * MS);
	assert_int_equal(st.window_calls, 10);
	assert_int_equal(st.window_failures, 3); /* 6, 9, 12 */
	assert_int_equal(st.window_slow, 5);     /* 5, 7, 9, 11, 13 */
	/* The stats look ahead without recording: at 20 s, seconds 11..20. */
	st = stats_at(b, 20 * S);
	assert_int_equal(st.window_calls, 4);
	assert_int_equal(st.window_failures, 1); /* 12 */
	/* A bucket counts until its second leaves: second 14 until 24 s. */
	assert_int_equal(stats_at(b, 23 * S + 999 * MS).window_calls, 1);
	assert_int_equal(stats_at(b, 24 * S).window_calls, 0);
	/* A gap longer than the window empties it. */
	assert_int_equal(stats_at(b, 1000 * S).window_calls, 0);
	call(b, BL_BREAKER_OK, 0, 1000 * S);
	st = stats_at(b, 1000 * S);
	assert_int_equal(st.window_calls, 1);
	assert_int_equal(st.window_failures, 0);
	/* Time going backwards is taken as the latest seen: it lands in second 1000. */
	call(b, BL_BREAKER_ERROR, 0, 3 * S);
	st = stats_at(b, 1000 * S);
	assert_int_equal(st.window_calls, 2);
	assert_int_equal(st.window_failures, 1);
	assert_int_equal(stats_at(b, 1010 * S).window_calls, 0);
	bl_breaker_destroy(b);

	/* Negative times (the clock's origin is the caller's business): second
	 * -1 covers -1 s .. -1 ns. */
	b = mk(&c);
	call(b, BL_BREAKER_OK, 0, -500 * MS);
	assert_int_equal(stats_at(b, 8 * S + 999 * MS).window_calls, 1);
	assert_int_equal(stats_at(b, 9 * S).window_calls, 0);
	bl_breaker_destroy(b);

	/* A window of 1.5 s is two seconds. */
	c = time_cfg(1500 * MS, 1000);
	b = mk(&c);
	call(b, BL_BREAKER_OK, 0, 0);
	assert_int_equal(stats_at(b, 1999 * MS).window_calls, 1);
	assert_int_equal(stats_at(b, 2 * S).window_calls, 0);
	bl_breaker_destroy(b);
}

/* A closed breaker starts with an empty window, and the buckets written before
 * never count again, even when their second comes round in the ring. */
static void test_time_window_reset_on_close(void **state)
{
	struct bl_breaker_config c = time_cfg(10 * S, 1000);
	struct bl_breaker *b;
	struct bl_breaker_permit p;
	struct bl_breaker_stats st;

	(void)state;
	c.consecutive_failures = 3;
	c.open_for_ns = 1 * S;
	c.max_open_for_ns = 1 * S;
	c.half_open_probes = 1;
	b = mk(&c);
	call(b, BL_BREAKER_ERROR, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 0);
	assert_int_equal(bl_breaker_state(b, 0), BL_BREAKER_OPEN);
	assert_int_equal(stats_at(b, 0).window_calls, 3); /* kept while open: why it opened */
	assert_true(bl_breaker_allow(b, 1 * S, &p));
	assert_true(p.probe);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, 0, 1 * S), 0);
	assert_int_equal(bl_breaker_state(b, 1 * S), BL_BREAKER_CLOSED);
	st = stats_at(b, 1 * S);
	assert_int_equal(st.window_calls, 0);
	assert_int_equal(st.consecutive_failures, 0);
	call(b, BL_BREAKER_OK, 0, 1 * S);
	/* Second 10 reuses the slot of second 0, whose 3 failures were reset. */
	st = stats_at(b, 10 * S + 500 * MS);
	assert_int_equal(st.window_calls, 1);
	assert_int_equal(st.window_failures, 0);
	call(b, BL_BREAKER_OK, 0, 10 * S + 500 * MS);
	st = stats_at(b, 11 * S);
	assert_int_equal(st.window_calls, 1);
	assert_int_equal(st.window_failures, 0);
	bl_breaker_destroy(b);
}

/* ---- open period and backoff ---------------------------------------------------- */

static void test_backoff(void **state)
{
	/* The period of each trip in a row: from closed, then from each failed probe. */
	static const int64_t periods_s[] = { 30, 60, 120, 240, 300, 300, 300 };
	static const uint32_t levels[] = { 0, 1, 2, 3, 4, 4, 4 };
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_permit p;
	struct bl_breaker_stats st;
	bl_time_ns now = 1000 * S;

	(void)state;
	c.consecutive_failures = 1;
	c.half_open_probes = 1;
	b = mk(&c);
	assert_int_equal(stats_at(b, now).open_period_ns, 30 * S);
	trip_now(b, now);
	for (size_t i = 0; i < sizeof periods_s / sizeof periods_s[0]; i++) {
		int64_t period = periods_s[i] * S;

		st = stats_at(b, now);
		if (st.state != BL_BREAKER_OPEN || st.open_period_ns != period ||
		    st.open_until_ns != now + period || st.backoff_level != levels[i])
			fail_msg("trip %zu: %s for %lld ns at level %u, want open for %lld at %u", i,
				 bl_breaker_state_name(st.state), (long long)st.open_period_ns,
				 st.backoff_level, (long long)period, levels[i]);
		assert_int_equal(st.trips, i + 1);
		assert_int_equal(bl_breaker_retry_after_ns(b, now), period);
		assert_int_equal(bl_breaker_retry_after_ns(b, now + period - 1), 1);
		assert_true(bl_breaker_is_ejected(b, now + period - 1));
		/* Refused up to the last nanosecond of the period. */
		assert_false(bl_breaker_would_allow(b, now + period - 1));
		assert_false(bl_breaker_allow(b, now + period - 1, &p));
		assert_int_equal(p.generation, 0);
		/* Half-open from its end: a failed probe opens it again, for longer. */
		now += period;
		assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_HALF_OPEN);
		assert_int_equal(bl_breaker_retry_after_ns(b, now), 0);
		assert_false(bl_breaker_is_ejected(b, now));
		assert_int_equal(stats_at(b, now).open_period_ns,
				 periods_s[i + 1 < sizeof periods_s / sizeof periods_s[0] ? i + 1 : i] * S);
		assert_true(bl_breaker_allow(b, now, &p));
		assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_TIMEOUT, 0, now), 0);
		assert_int_equal(b->last_trip, BL_BREAKER_TRIP_PROBE);
	}
	/* A probe that succeeds closes it and resets the backoff: the next trip
	 * is for open_for again. */
	now += 300 * S;
	assert_true(bl_breaker_allow(b, now, &p));
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, 0, now), 0);
	assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_CLOSED);
	assert_int_equal(stats_at(b, now).backoff_level, 0);
	assert_int_equal(stats_at(b, now).open_period_ns, 30 * S);
	trip_now(b, now);
	st = stats_at(b, now);
	assert_int_equal(st.open_period_ns, 30 * S);
	assert_int_equal(st.backoff_level, 0);
	assert_int_equal(st.trips, 9);
	bl_breaker_destroy(b);
}

static void test_backoff_extremes(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_permit p;
	bl_time_ns now = 0;

	(void)state;
	/* open_for = max_open_for: never doubles. */
	c.consecutive_failures = 1;
	c.half_open_probes = 1;
	c.open_for_ns = 10 * S;
	c.max_open_for_ns = 10 * S;
	b = mk(&c);
	trip_now(b, now);
	for (int i = 0; i < 3; i++) {
		now += 10 * S;
		assert_true(bl_breaker_allow(b, now, &p));
		assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, now), 0);
		assert_int_equal(stats_at(b, now).open_period_ns, 10 * S);
		assert_int_equal(stats_at(b, now).backoff_level, 0);
	}
	bl_breaker_destroy(b);

	/* 1 ns doubling up to the largest period: the level stops at 62, and an
	 * open period near the end of time saturates. */
	c.open_for_ns = 1;
	c.max_open_for_ns = INT64_MAX;
	b = mk(&c);
	now = 0;
	trip_now(b, now);
	for (int i = 1; i <= 70; i++) {
		now = b->open_until_ns;
		assert_true(bl_breaker_allow(b, now, &p));
		assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, now), 0);
		if (now == INT64_MAX)
			break;
	}
	assert_int_equal(b->backoff_level, 62);
	assert_int_equal(b->open_period_ns, INT64_C(1) << 62);
	assert_int_equal(b->open_until_ns, INT64_MAX);
	/* Retry-after saturates instead of overflowing. */
	assert_int_equal(bl_breaker_retry_after_ns(b, -1), INT64_MAX);
	assert_int_equal(bl_breaker_retry_after_ns(b, INT64_MIN), INT64_MAX);
	assert_int_equal(bl_breaker_retry_after_ns(b, 0), INT64_MAX);
	assert_int_equal(bl_breaker_retry_after_ns(b, 1), INT64_MAX - 1);
	bl_breaker_destroy(b);
}

/* ---- half-open probes ---------------------------------------------------------- */

static struct bl_breaker *open_breaker(uint32_t probes, bl_time_ns *now)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;

	c.consecutive_failures = 1;
	c.half_open_probes = probes;
	b = mk(&c);
	trip_now(b, *now);
	*now += 30 * S;
	return b;
}

static void test_probes_close(void **state)
{
	bl_time_ns now = 0;
	struct bl_breaker *b = open_breaker(3, &now);
	struct bl_breaker_permit p[5];
	struct bl_breaker_stats st;
	uint64_t gen;

	(void)state;
	/* Lazily half-open: reported, admitting, before any call moves it. */
	assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_HALF_OPEN);
	assert_int_equal(b->state, BL_BREAKER_OPEN);
	assert_true(bl_breaker_would_allow(b, now));
	gen = b->generation;
	/* Three permits, and no fourth. */
	for (int i = 0; i < 3; i++) {
		assert_true(bl_breaker_allow(b, now, &p[i]));
		assert_true(p[i].probe);
		assert_int_equal(p[i].generation, gen + 1);
	}
	assert_false(bl_breaker_would_allow(b, now));
	assert_false(bl_breaker_allow(b, now, &p[3]));
	assert_int_equal(bl_breaker_retry_after_ns(b, now), BL_BREAKER_RETRY_UNKNOWN);
	st = stats_at(b, now);
	assert_int_equal(st.state, BL_BREAKER_HALF_OPEN);
	assert_int_equal(st.probes_in_flight, 3);
	assert_int_equal(st.rejected, 1);
	/* A success does not free a permit: it is one of the three. */
	assert_int_equal(bl_breaker_record(b, &p[0], BL_BREAKER_OK, 0, now), 0);
	assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_HALF_OPEN);
	assert_false(bl_breaker_allow(b, now, &p[3]));
	assert_int_equal(stats_at(b, now).probes_succeeded, 1);
	/* A cancelled probe gives its permit back; so does a 429 by default. */
	assert_int_equal(bl_breaker_record(b, &p[1], BL_BREAKER_CANCELLED, 0, now), 0);
	assert_true(bl_breaker_allow(b, now, &p[3]));
	assert_int_equal(bl_breaker_record(b, &p[2], BL_BREAKER_RATE_LIMITED, 0, now), 0);
	assert_true(bl_breaker_allow(b, now, &p[4]));
	assert_false(bl_breaker_allow(b, now, &p[1]));
	st = stats_at(b, now);
	assert_int_equal(st.probes_in_flight, 2);
	assert_int_equal(st.probes_succeeded, 1);
	assert_int_equal(st.ignored, 2);
	/* The last two succeed: closed. */
	assert_int_equal(bl_breaker_record(b, &p[3], BL_BREAKER_OK, 0, now), 0);
	assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_HALF_OPEN);
	assert_int_equal(bl_breaker_record(b, &p[4], BL_BREAKER_OK, 999 * MS, now), 0);
	assert_int_equal(bl_breaker_state(b, now), BL_BREAKER_CLOSED);
	st = stats_at(b, now);
	assert_int_equal(st.window_calls, 0);
	assert_int_equal(st.probes_in_flight, 0);
	assert_int_equal(st.calls, 1 + 3); /* the failure that tripped it, three probes */
	assert_int_equal(st.trips, 1);
	assert_true(bl_breaker_allow(b, now, &p[0]));
	assert_false(p[0].probe);
	bl_breaker_destroy(b);
}

static void test_probes_reopen(void **state)
{
	static const struct {
		const char *what;
		enum bl_breaker_outcome o;
		int64_t latency_ns;
		bool rate_limited_trips;
		bool reopens;
	} rows[] = {
		{ "error", BL_BREAKER_ERROR, 0, false, true },
		{ "timeout", BL_BREAKER_TIMEOUT, 0, false, true },
		{ "slow success", BL_BREAKER_OK, 1 * S, false, true },
		{ "fast success", BL_BREAKER_OK, 1 * S - 1, false, false },
		{ "429 without rate_limited_trips", BL_BREAKER_RATE_LIMITED, 0, false, false },
		{ "429 with rate_limited_trips", BL_BREAKER_RATE_LIMITED, 0, true, true },
		{ "cancelled", BL_BREAKER_CANCELLED, 5 * S, true, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct bl_breaker_config c = base_cfg();
		struct bl_breaker *b;
		struct bl_breaker_permit p[3];
		bl_time_ns now = 0;

		c.consecutive_failures = 1;
		c.rate_limited_trips = rows[i].rate_limited_trips;
		b = mk(&c);
		trip_now(b, now);
		now = 30 * S;
		for (int k = 0; k < 3; k++)
			assert_true(bl_breaker_allow(b, now, &p[k]));
		assert_int_equal(bl_breaker_record(b, &p[1], rows[i].o, rows[i].latency_ns, now), 0);
		if (rows[i].reopens) {
			struct bl_breaker_stats st = stats_at(b, now);

			if (st.state != BL_BREAKER_OPEN || st.open_period_ns != 60 * S ||
			    st.open_until_ns != now + 60 * S || st.last_trip != BL_BREAKER_TRIP_PROBE)
				fail_msg("row %zu (%s): %s for %lld ns, want open for 60 s", i,
					 rows[i].what, bl_breaker_state_name(st.state),
					 (long long)st.open_period_ns);
			assert_int_equal(st.trips, 2);
			/* The other probes belong to the half-open that ended: ignored. */
			assert_int_equal(bl_breaker_record(b, &p[0], BL_BREAKER_OK, 0, now), 0);
			assert_int_equal(bl_breaker_record(b, &p[2], BL_BREAKER_ERROR, 0, now), 0);
			st = stats_at(b, now);
			assert_int_equal(st.state, BL_BREAKER_OPEN);
			assert_int_equal(st.trips, 2);
			assert_int_equal(st.ignored, 2);
		} else {
			if (bl_breaker_state(b, now) != BL_BREAKER_HALF_OPEN)
				fail_msg("row %zu (%s): left half_open", i, rows[i].what);
		}
		bl_breaker_destroy(b);
	}
}

/* Outcomes from a state that is over are ignored: closed-state calls still in
 * flight when the breaker trips, or when it half-opens. */
static void test_stale_outcomes(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_permit early[3], p;
	struct bl_breaker_stats st;

	(void)state;
	c.consecutive_failures = 2;
	c.half_open_probes = 1;
	b = mk(&c);
	for (int i = 0; i < 3; i++)
		assert_true(bl_breaker_allow(b, 0, &early[i]));
	call(b, BL_BREAKER_ERROR, 0, 0);
	call(b, BL_BREAKER_ERROR, 0, 0);
	assert_int_equal(bl_breaker_state(b, 0), BL_BREAKER_OPEN);
	/* A late failure does not trip it again. */
	assert_int_equal(bl_breaker_record(b, &early[0], BL_BREAKER_ERROR, 0, 1 * S), 0);
	st = stats_at(b, 1 * S);
	assert_int_equal(st.trips, 1);
	assert_int_equal(st.open_until_ns, 30 * S);
	/* A late success in half-open is no probe. */
	assert_true(bl_breaker_allow(b, 30 * S, &p));
	assert_int_equal(bl_breaker_record(b, &early[1], BL_BREAKER_OK, 0, 30 * S), 0);
	assert_int_equal(bl_breaker_state(b, 30 * S), BL_BREAKER_HALF_OPEN);
	assert_int_equal(stats_at(b, 30 * S).probes_in_flight, 1);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, 0, 30 * S), 0);
	assert_int_equal(bl_breaker_state(b, 30 * S), BL_BREAKER_CLOSED);
	/* A late failure after the close does not count in the fresh window. */
	assert_int_equal(bl_breaker_record(b, &early[2], BL_BREAKER_ERROR, 0, 31 * S), 0);
	st = stats_at(b, 31 * S);
	assert_int_equal(st.window_calls, 0);
	assert_int_equal(st.consecutive_failures, 0);
	assert_int_equal(st.ignored, 3);
	/* A zeroed permit is never current. */
	memset(&p, 0, sizeof p);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, 31 * S), 0);
	assert_int_equal(stats_at(b, 31 * S).ignored, 4);
	bl_breaker_destroy(b);
}

static void test_record_rejects(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker before;
	struct bl_breaker_permit p, bad;

	(void)state;
	c.consecutive_failures = 1;
	c.half_open_probes = 2;
	b = mk(&c);
	assert_true(bl_breaker_allow(b, 0, &p));
	memcpy(&before, b, sizeof before);
	assert_int_equal(bl_breaker_record(b, NULL, BL_BREAKER_OK, 0, 0), BL_EINVAL);
	assert_int_equal(bl_breaker_record(b, &p, (enum bl_breaker_outcome)5, 0, 0), BL_EINVAL);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, -1, 0), BL_EINVAL);
	bad = p;
	bad.generation++; /* a generation not reached yet */
	assert_int_equal(bl_breaker_record(b, &bad, BL_BREAKER_OK, 0, 0), BL_EINVAL);
	bad = p;
	bad.probe = true; /* closed hands out no probes */
	assert_int_equal(bl_breaker_record(b, &bad, BL_BREAKER_OK, 0, 0), BL_EINVAL);
	assert_memory_equal(&before, b, sizeof before);

	/* Open hands out no permits at all. */
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, 0), 0);
	bad.generation = b->generation;
	bad.probe = false;
	memcpy(&before, b, sizeof before);
	assert_int_equal(bl_breaker_record(b, &bad, BL_BREAKER_OK, 0, 0), BL_EINVAL);
	assert_memory_equal(&before, b, sizeof before);

	/* Half-open: one outcome per probe. */
	assert_true(bl_breaker_allow(b, 30 * S, &p));
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_CANCELLED, 0, 30 * S), 0);
	memcpy(&before, b, sizeof before);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, 0, 30 * S), BL_EINVAL);
	assert_memory_equal(&before, b, sizeof before);
	bad = p;
	bad.probe = false;
	assert_true(bl_breaker_allow(b, 30 * S, &p));
	assert_int_equal(bl_breaker_record(b, &bad, BL_BREAKER_OK, 0, 30 * S), BL_EINVAL);
	bl_breaker_destroy(b);
}

/* ---- operator states ------------------------------------------------------------- */

static void test_forced_open(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_permit p, early;
	struct bl_breaker_stats st;

	(void)state;
	c.consecutive_failures = 2;
	b = mk(&c);
	assert_true(bl_breaker_allow(b, 0, &early));
	call(b, BL_BREAKER_ERROR, 0, 0);
	assert_int_equal(bl_breaker_force(b, BL_BREAKER_FORCED_OPEN), 0);
	for (bl_time_ns t = 0; t <= 3600 * S; t += 600 * S) {
		assert_int_equal(bl_breaker_state(b, t), BL_BREAKER_FORCED_OPEN);
		assert_false(bl_breaker_would_allow(b, t));
		assert_false(bl_breaker_allow(b, t, &p));
		assert_true(bl_breaker_is_ejected(b, t));
		assert_int_equal(bl_breaker_retry_after_ns(b, t), BL_BREAKER_RETRY_UNKNOWN);
	}
	/* The outcome of a call admitted before is not recorded. */
	assert_int_equal(bl_breaker_record(b, &early, BL_BREAKER_ERROR, 0, 0), 0);
	st = stats_at(b, 0);
	assert_int_equal(st.state, BL_BREAKER_FORCED_OPEN);
	assert_int_equal(st.trips, 0); /* an operator's hold is not a trip */
	assert_int_equal(st.rejected, 7);
	assert_int_equal(st.ignored, 1);
	assert_int_equal(st.consecutive_failures, 1);
	/* Back to closed: empty window, no streak. */
	assert_int_equal(bl_breaker_force(b, BL_BREAKER_CLOSED), 0);
	st = stats_at(b, 0);
	assert_int_equal(st.state, BL_BREAKER_CLOSED);
	assert_int_equal(st.window_calls, 0);
	assert_int_equal(st.consecutive_failures, 0);
	call(b, BL_BREAKER_ERROR, 0, 0);
	assert_int_equal(bl_breaker_state(b, 0), BL_BREAKER_CLOSED);
	bl_breaker_destroy(b);
}

static void test_disabled(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_permit p;
	struct bl_breaker_stats st;

	(void)state;
	c.consecutive_failures = 1;
	b = mk(&c);
	trip_now(b, 0);
	assert_int_equal(bl_breaker_force(b, BL_BREAKER_DISABLED), 0);
	assert_int_equal(bl_breaker_state(b, 0), BL_BREAKER_DISABLED);
	assert_false(bl_breaker_is_ejected(b, 0));
	for (int i = 0; i < 100; i++) {
		assert_true(bl_breaker_allow(b, i * MS, &p));
		assert_false(p.probe);
		assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 5 * S, i * MS), 0);
	}
	st = stats_at(b, 100 * MS);
	assert_int_equal(st.state, BL_BREAKER_DISABLED);
	assert_int_equal(st.retry_after_ns, 0);
	assert_int_equal(st.calls, 1);
	assert_int_equal(st.failures, 1);
	assert_int_equal(st.ignored, 100);
	assert_int_equal(st.trips, 1);
	/* Closed again: the backoff is reset as well; a permit from disabled is stale. */
	assert_int_equal(bl_breaker_force(b, BL_BREAKER_CLOSED), 0);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, 1 * S), 0);
	assert_int_equal(bl_breaker_state(b, 1 * S), BL_BREAKER_CLOSED);
	st = stats_at(b, 1 * S);
	assert_int_equal(st.last_trip, BL_BREAKER_TRIP_NONE);
	assert_int_equal(st.backoff_level, 0);
	assert_int_equal(st.open_period_ns, 30 * S);
	bl_breaker_destroy(b);
}

static void test_force_rules(void **state)
{
	static const enum bl_breaker_state refused[] = {
		BL_BREAKER_OPEN, BL_BREAKER_HALF_OPEN, BL_BREAKER_STATE_COUNT, (enum bl_breaker_state)7,
	};
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker before;
	struct bl_breaker_permit p[2];

	(void)state;
	c.consecutive_failures = 1;
	c.half_open_probes = 1;
	b = mk(&c);
	memcpy(&before, b, sizeof before);
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
		assert_int_equal(bl_breaker_force(b, refused[i]), BL_EINVAL);
	assert_memory_equal(&before, b, sizeof before);

	/* Closing an open breaker by hand resets the backoff it had built up. */
	trip_now(b, 0);
	assert_true(bl_breaker_allow(b, 30 * S, &p[0]));
	assert_int_equal(bl_breaker_record(b, &p[0], BL_BREAKER_ERROR, 0, 30 * S), 0);
	assert_int_equal(stats_at(b, 30 * S).open_period_ns, 60 * S);
	assert_int_equal(bl_breaker_force(b, BL_BREAKER_CLOSED), 0);
	trip_now(b, 31 * S);
	assert_int_equal(stats_at(b, 31 * S).open_until_ns, 61 * S);

	/* An operator state ends probing: the probe's outcome is stale. */
	assert_true(bl_breaker_allow(b, 61 * S, &p[1]));
	assert_int_equal(bl_breaker_force(b, BL_BREAKER_DISABLED), 0);
	assert_int_equal(bl_breaker_record(b, &p[1], BL_BREAKER_ERROR, 0, 61 * S), 0);
	assert_int_equal(bl_breaker_state(b, 61 * S), BL_BREAKER_DISABLED);
	/* Every force is a new generation, even to the same state. */
	{
		uint64_t g = b->generation;

		assert_int_equal(bl_breaker_force(b, BL_BREAKER_DISABLED), 0);
		assert_int_equal(b->generation, g + 1);
	}
	bl_breaker_destroy(b);
}

/* ---- pools: the panic rule ---------------------------------------------------------- */

static void test_panic_table(void **state)
{
	static const struct {
		size_t n, open;
		double max_ejected;
		bool panic;
	} rows[] = {
		{ 2, 1, 0.5, false }, /* exactly half: not more than half */
		{ 3, 2, 0.5, true },
		{ 3, 1, 0.5, false },
		{ 4, 2, 0.5, false },
		{ 4, 3, 0.5, true },
		{ 1, 0, 0.5, false },
		{ 1, 1, 0.5, true },  /* the only backend open: route to it anyway */
		{ 10, 1, 0.1, false },
		{ 10, 2, 0.1, true },
		{ 3, 1, 1.0 / 3.0, false },
		{ 5, 0, 0.0, false },
		{ 5, 1, 0.0, true },  /* 0: breakers only advise */
		{ 5, 5, 1.0, false }, /* 1: never */
		{ 0, 0, 0.5, false }, /* an empty pool */
		{ 2, 5, 0.5, true },  /* more open than backends: all of them */
		{ 2, 1, -1.0, true }, /* below 0: as 0 */
		{ 2, 2, 2.0, false }, /* above 1: as 1 */
		{ 2, 2, NAN, false },
		{ 1000000, 500000, 0.5, false },
		{ 1000000, 500001, 0.5, true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		if (bl_breaker_panic(rows[i].n, rows[i].open, rows[i].max_ejected) != rows[i].panic)
			fail_msg("row %zu: %zu open of %zu at %g: want panic %d", i, rows[i].open,
				 rows[i].n, rows[i].max_ejected, rows[i].panic);
	}
}

/* ---- persistence ------------------------------------------------------------------ */

static void test_state_round_trip(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *a, *b;
	struct bl_breaker_snapshot snap, again;
	struct bl_breaker_permit p;
	struct bl_breaker_stats st;
	bl_time_ns now = 0;

	(void)state;
	c.consecutive_failures = 1;
	c.half_open_probes = 1;
	a = mk(&c);
	/* Open at level 1 (60 s) from 30 s: until 90 s. */
	trip_now(a, now);
	assert_true(bl_breaker_allow(a, 30 * S, &p));
	assert_int_equal(bl_breaker_record(a, &p, BL_BREAKER_ERROR, 0, 30 * S), 0);
	assert_false(bl_breaker_allow(a, 40 * S, &p));
	bl_breaker_state_get(a, &snap);
	assert_int_equal(snap.state, BL_BREAKER_OPEN);
	assert_int_equal(snap.open_until_ns, 90 * S);
	assert_int_equal(snap.backoff_level, 1);
	assert_int_equal(snap.last_trip, BL_BREAKER_TRIP_PROBE);
	assert_int_equal(snap.trips, 2);
	assert_int_equal(snap.calls, 2);
	assert_int_equal(snap.failures, 2);
	assert_int_equal(snap.rejected, 1);

	/* Restored in a run whose clock reads 1000 s more. */
	b = mk(&c);
	snap.open_until_ns += 1000 * S;
	assert_int_equal(bl_breaker_state_set(b, &snap, 1040 * S), 0);
	st = stats_at(b, 1040 * S);
	assert_int_equal(st.state, BL_BREAKER_OPEN);
	assert_int_equal(st.open_until_ns, 1090 * S);
	assert_int_equal(st.retry_after_ns, 50 * S);
	assert_int_equal(st.backoff_level, 1);
	assert_int_equal(st.trips, 2);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(st.generation, a->generation);
	/* And it goes on from there: a failed probe doubles to 120 s. */
	assert_true(bl_breaker_allow(b, 1090 * S, &p));
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, 1090 * S), 0);
	assert_int_equal(stats_at(b, 1090 * S).open_until_ns, 1210 * S);

	/* get(set(x)) == x for a closed breaker. */
	assert_int_equal(bl_breaker_force(a, BL_BREAKER_CLOSED), 0);
	bl_breaker_state_get(a, &snap);
	assert_int_equal(bl_breaker_state_set(b, &snap, 0), 0);
	bl_breaker_state_get(b, &again);
	assert_memory_equal(&snap, &again, sizeof snap);
	/* A permit handed out before the restart still counts in closed. */
	assert_true(bl_breaker_allow(a, 0, &p));
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, 0, 0), 0);
	assert_int_equal(stats_at(b, 0).window_calls, 1);
	bl_breaker_destroy(a);
	bl_breaker_destroy(b);
}

static void test_state_set_adjusts(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker_snapshot snap;
	struct bl_breaker_permit p;
	struct bl_breaker_stats st;

	(void)state;
	c.consecutive_failures = 1;
	c.half_open_probes = 1;
	b = mk(&c);

	/* An open period longer than this configuration gives is cut to it. */
	memset(&snap, 0, sizeof snap);
	snap.state = BL_BREAKER_OPEN;
	snap.open_until_ns = 100000 * S;
	snap.backoff_level = 1;
	snap.generation = 7;
	assert_int_equal(bl_breaker_state_set(b, &snap, 10 * S), 0);
	assert_int_equal(stats_at(b, 10 * S).open_until_ns, 70 * S);

	/* A level past the cap is brought down to the first that reaches it
	 * (30 s x 2^4 = 480 s > 300 s). */
	snap.backoff_level = 40;
	assert_int_equal(bl_breaker_state_set(b, &snap, 10 * S), 0);
	st = stats_at(b, 10 * S);
	assert_int_equal(st.backoff_level, 4);
	assert_int_equal(st.open_until_ns, 310 * S);

	/* A half-open breaker starts its probing over in a new generation:
	 * a probe permit from before the restart is stale. */
	snap.state = BL_BREAKER_HALF_OPEN;
	snap.open_until_ns = 0;
	snap.backoff_level = 0;
	snap.generation = 9;
	assert_int_equal(bl_breaker_state_set(b, &snap, 0), 0);
	assert_int_equal(b->generation, 10);
	p.generation = 9;
	p.probe = true;
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_ERROR, 0, 0), 0);
	assert_int_equal(bl_breaker_state(b, 0), BL_BREAKER_HALF_OPEN);
	assert_true(bl_breaker_allow(b, 0, &p));
	assert_int_equal(p.generation, 10);
	assert_int_equal(bl_breaker_record(b, &p, BL_BREAKER_OK, 0, 0), 0);
	assert_int_equal(bl_breaker_state(b, 0), BL_BREAKER_CLOSED);

	/* Operator states come back as they were. */
	snap.state = BL_BREAKER_FORCED_OPEN;
	assert_int_equal(bl_breaker_state_set(b, &snap, 0), 0);
	assert_false(bl_breaker_allow(b, 1000000 * S, &p));
	bl_breaker_destroy(b);
}

static void test_state_rejects(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b;
	struct bl_breaker before;
	struct bl_breaker_snapshot good, bad;

	(void)state;
	b = mk(&c);
	call(b, BL_BREAKER_ERROR, 0, 0);
	bl_breaker_state_get(b, &good);
	memcpy(&before, b, sizeof before);

	bad = good;
	bad.state = BL_BREAKER_STATE_COUNT;
	assert_int_equal(bl_breaker_state_set(b, &bad, 0), BL_EINVAL);
	bad = good;
	bad.last_trip = BL_BREAKER_TRIP_COUNT;
	assert_int_equal(bl_breaker_state_set(b, &bad, 0), BL_EINVAL);
	bad = good;
	bad.backoff_level = BL_BREAKER_BACKOFF_LEVEL_MAX + 1;
	assert_int_equal(bl_breaker_state_set(b, &bad, 0), BL_EINVAL);
	bad = good;
	bad.generation = 0;
	assert_int_equal(bl_breaker_state_set(b, &bad, 0), BL_EINVAL);
	assert_memory_equal(&before, b, sizeof before);
	bl_breaker_destroy(b);
}

/* ---- memory: create, init, destroy --------------------------------------------------- */

struct hook_state {
	long calls;   /* malloc_fn calls so far */
	long fail_at; /* fail this call (from 1); 0: never */
	long live;    /* allocations not freed */
	size_t bytes; /* their bytes */
};

static void *h_malloc(void *ctx, size_t bytes)
{
	struct hook_state *h = ctx;
	void *p;

	if (++h->calls == h->fail_at)
		return NULL;
	p = malloc(bytes);
	if (p) {
		h->live++;
		h->bytes += bytes;
	}
	return p;
}

static void h_free(void *ctx, void *p, size_t bytes)
{
	struct hook_state *h = ctx;

	h->live--;
	h->bytes -= bytes;
	free(p);
}

static void test_create_destroy(void **state)
{
	struct hook_state hs = { 0, 0, 0, 0 };
	const struct bl_alloc_hook hook = { h_malloc, h_free, &hs };
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker *b = NULL;
	struct bl_breaker *sentinel = (struct bl_breaker *)&hs;

	(void)state;
	bl_breaker_destroy(NULL);

	/* One allocation: the breaker and its window. */
	assert_int_equal(bl_breaker_create(&c, &hook, &b), 0);
	assert_int_equal(hs.calls, 1);
	assert_int_equal(hs.live, 1);
	assert_true(hs.bytes >= sizeof *b + 50);
	call(b, BL_BREAKER_OK, 0, 0);
	bl_breaker_destroy(b);
	assert_int_equal(hs.live, 0);
	assert_int_equal(hs.bytes, 0);

	/* A time window of an hour. */
	c.window_is_time = true;
	c.window_ns = 3600 * S;
	assert_int_equal(bl_breaker_create(&c, &hook, &b), 0);
	assert_true(hs.bytes >= sizeof *b + 86400);
	for (int i = 0; i < 7200; i++)
		call(b, BL_BREAKER_OK, 0, (bl_time_ns)i * S);
	assert_int_equal(stats_at(b, 7199 * S).window_calls, 3600);
	bl_breaker_destroy(b);
	assert_int_equal(hs.live, 0);

	/* The allocation fails: BL_ENOMEM, *out untouched, nothing held. */
	hs.calls = 0;
	hs.fail_at = 1;
	b = sentinel;
	assert_int_equal(bl_breaker_create(&c, &hook, &b), BL_ENOMEM);
	assert_ptr_equal(b, sentinel);
	assert_int_equal(hs.live, 0);
}

static void test_init_with_buffer(void **state)
{
	struct bl_breaker_config c = base_cfg();
	struct bl_breaker b;
	alignas(8) unsigned char buf[24 * 11 + 1];
	struct bl_breaker_stats st;

	(void)state;
	/* A count window of 50 needs 50 bytes. */
	memset(&b, 0xAB, sizeof b);
	assert_int_equal(bl_breaker_init(&b, &c, buf, 49), BL_EINVAL);
	assert_int_equal(bl_breaker_init(&b, &c, NULL, 50), BL_EINVAL);
	assert_int_equal(b.generation, UINT64_C(0xABABABABABABABAB));
	assert_int_equal(bl_breaker_init(&b, &c, buf + 1, 50), 0); /* bytes need no alignment */
	call(&b, BL_BREAKER_ERROR, 0, 0);
	assert_int_equal(stats_at(&b, 0).window_failures, 1);
	bl_breaker_destroy(&b); /* not created: a no-op */

	/* A time window of 11 s: 11 buckets, aligned for int64_t. Garbage in the
	 * buffer is cleared. */
	c = time_cfg(11 * S, 1000);
	memset(buf, 0xFF, sizeof buf);
	memset(&b, 0xAB, sizeof b);
	assert_int_equal(bl_breaker_init(&b, &c, buf, 24 * 11 - 1), BL_EINVAL);
	assert_int_equal(bl_breaker_init(&b, &c, buf + 1, 24 * 11), BL_EINVAL);
	assert_int_equal(b.generation, UINT64_C(0xABABABABABABABAB));
	assert_int_equal(bl_breaker_init(&b, &c, buf, sizeof buf), 0);
	for (int s = 0; s < 30; s++)
		call(&b, BL_BREAKER_ERROR, 0, (bl_time_ns)s * S);
	st = stats_at(&b, 29 * S);
	assert_int_equal(st.window_calls, 11);
	assert_int_equal(st.window_failures, 11);
}

/* ---- property: the window against a plain model -------------------------------------- */

/* floor(t / 1 s), also below 0. */
static int64_t floor_sec(bl_time_ns t)
{
	return t / S - (t % S < 0 ? 1 : 0);
}

struct model_call {
	int64_t sec; /* time windows: its second (after clamping) */
	bool failure, slow;
};

/* Seeded random outcomes, times (forwards, long gaps, backwards) and stats
 * lookups, both windows: the window's figures must always equal a recount of
 * the calls a plain list holds. The rates are set to 1.0 over a full window,
 * so a trip (every call failed, or was slow) is rare; the model then forces
 * the breaker closed and starts over with it. */
static void test_random_against_model(void **state)
{
	static struct model_call calls[20000];
	uint64_t seeds = 40;

	(void)state;
	for (uint64_t seed = 1; seed <= seeds; seed++) {
		struct rng r = { seed * UINT64_C(0x9E3779B97F4A7C15) };
		struct bl_breaker_config c = base_cfg();
		struct bl_breaker *b;
		size_t n = 0;
		bl_time_ns now = (bl_time_ns)rnd(&r, 0, 100) * S;
		int64_t last_sec = INT64_MIN;

		c.window_is_time = seed % 2 == 0;
		c.window_count = (uint32_t)rnd(&r, 1, 40);
		c.window_ns = (int64_t)rnd(&r, 1, 20) * S;
		c.min_calls = c.window_is_time ? 100000 : c.window_count;
		c.failure_rate = 1.0;
		c.slow_rate = 1.0;
		c.consecutive_failures = 0;
		c.rate_limited_trips = rnd(&r, 0, 1);
		b = mk(&c);
		for (int step = 0; step < 2000; step++) {
			enum bl_breaker_outcome o = (enum bl_breaker_outcome)rnd(&r, 0, 4);
			int64_t lat = (int64_t)rnd(&r, 0, 2000) * MS;
			bool failure = o == BL_BREAKER_ERROR || o == BL_BREAKER_TIMEOUT ||
				       (o == BL_BREAKER_RATE_LIMITED && c.rate_limited_trips);
			bool counted = failure || o == BL_BREAKER_OK;
			struct bl_breaker_stats st;
			uint64_t want_calls = 0, want_fail = 0, want_slow = 0;
			int64_t sec;

			/* Mostly small steps, now and then a long one or a step back. */
			switch (rnd(&r, 0, 9)) {
			case 0: now += (int64_t)rnd(&r, 0, 30) * S; break;
			case 1: now -= (int64_t)rnd(&r, 0, 2000) * MS; break;
			default: now += (int64_t)rnd(&r, 0, 700) * MS; break;
			}
			call(b, o, lat, now);
			sec = floor_sec(now);
			if (sec < last_sec)
				sec = last_sec;
			if (counted) {
				last_sec = sec;
				calls[n].sec = sec;
				calls[n].failure = failure;
				calls[n].slow = lat >= c.slow_call_ns;
				n++;
			}
			if (bl_breaker_state(b, now) != BL_BREAKER_CLOSED) {
				/* Every call in the window failed (or was slow): start over. */
				assert_int_equal(bl_breaker_force(b, BL_BREAKER_CLOSED), 0);
				n = 0;
				last_sec = INT64_MIN;
			}
			/* Recount the window at a time at or after now. */
			{
				bl_time_ns at = now + (int64_t)rnd(&r, 0, 3000) * MS;
				int64_t at_sec = floor_sec(at) > last_sec ? floor_sec(at) : last_sec;
				size_t from = 0;

				if (!c.window_is_time)
					from = n > c.window_count ? n - c.window_count : 0;
				for (size_t k = from; k < n; k++) {
					if (c.window_is_time &&
					    calls[k].sec <= at_sec - (int64_t)(c.window_ns / S))
						continue;
					want_calls++;
					want_fail += calls[k].failure;
					want_slow += calls[k].slow;
				}
				bl_breaker_stats(b, at, &st);
				if (st.window_calls != want_calls || st.window_failures != want_fail ||
				    st.window_slow != want_slow)
					fail_msg("seed %llu step %d (%s window): %llu/%llu/%llu, want "
						 "%llu/%llu/%llu",
						 (unsigned long long)seed, step,
						 c.window_is_time ? "time" : "count",
						 (unsigned long long)st.window_calls,
						 (unsigned long long)st.window_failures,
						 (unsigned long long)st.window_slow,
						 (unsigned long long)want_calls,
						 (unsigned long long)want_fail,
						 (unsigned long long)want_slow);
			}
			if (n == sizeof calls / sizeof calls[0])
				fail_msg("model full");
		}
		bl_breaker_destroy(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_rejects),
		cmocka_unit_test(test_trip_rules_table),
		cmocka_unit_test(test_window_figures),
		cmocka_unit_test(test_time_window_trips),
		cmocka_unit_test(test_time_window_expiry),
		cmocka_unit_test(test_time_window_reset_on_close),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_backoff_extremes),
		cmocka_unit_test(test_probes_close),
		cmocka_unit_test(test_probes_reopen),
		cmocka_unit_test(test_stale_outcomes),
		cmocka_unit_test(test_record_rejects),
		cmocka_unit_test(test_forced_open),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_force_rules),
		cmocka_unit_test(test_panic_table),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_set_adjusts),
		cmocka_unit_test(test_state_rejects),
		cmocka_unit_test(test_create_destroy),
		cmocka_unit_test(test_init_with_buffer),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
