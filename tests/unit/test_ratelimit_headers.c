/* Unit tests for provider rate-limit header parsing: real-looking header sets
 * from OpenAI and Anthropic, case and whitespace variations, every kind of
 * malformed value, retry-after in both forms, past and fractional times, and
 * the date parsers checked against the C library's gmtime_r.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ballast/error.h"
#include "ballast/ratelimit_headers.h"

/* 2026-11-27T21:40:00Z, a Friday. */
#define NOW INT64_C(1795815600000)

#define R BL_RATELIMIT_REQUESTS
#define T BL_RATELIMIT_TOKENS
#define I BL_RATELIMIT_INPUT_TOKENS
#define O BL_RATELIMIT_OUTPUT_TOKENS

#define MAX_H 24

/* One table row: headers in, the whole parsed struct out. */
struct tcase {
	const char *desc;                   /* what the row shows */
	const char *h[MAX_H][2];            /* name, value; ends at a NULL name */
	struct bl_ratelimit_headers want;   /* expected result */
};

/* Shorthands for expected dimensions. */
#define LIM(v) .has_limit = true, .limit = (v)
#define REM(v) .has_remaining = true, .remaining = (v)
#define RST(v) .has_reset = true, .reset_after_ms = (v)
#define RETRY(v) .has_retry_after = true, .retry_after_ms = (v)

static const struct tcase cases[] = {
	{"openai: a full real response",
	 {{"date", "Fri, 27 Nov 2026 21:40:00 GMT"},
	  {"content-type", "application/json"},
	  {"openai-processing-ms", "320"},
	  {"x-ratelimit-limit-requests", "10000"},
	  {"x-ratelimit-limit-tokens", "2000000"},
	  {"x-ratelimit-remaining-requests", "9999"},
	  {"x-ratelimit-remaining-tokens", "1999468"},
	  {"x-ratelimit-reset-requests", "6ms"},
	  {"x-ratelimit-reset-tokens", "15ms"},
	  {"x-request-id", "req_abc123"}},
	 {.dim = {[R] = {LIM(10000), REM(9999), RST(6)},
		  [T] = {LIM(2000000), REM(1999468), RST(15)}},
	  .used = 6}},
	{"openai: Go durations",
	 {{"x-ratelimit-reset-requests", "6m0s"}, {"x-ratelimit-reset-tokens", "1m30.5s"}},
	 {.dim = {[R] = {RST(360000)}, [T] = {RST(90500)}}, .used = 2}},
	{"openai: more durations, rounded up to the ms",
	 {{"x-ratelimit-reset-requests", "7.66s"}, {"x-ratelimit-reset-tokens", "1.0001ms"}},
	 {.dim = {[R] = {RST(7660)}, [T] = {RST(2)}}, .used = 2}},
	{"openai: zero and sub-ms durations",
	 {{"x-ratelimit-reset-requests", "0s"}, {"x-ratelimit-reset-tokens", "250us"}},
	 {.dim = {[R] = {RST(0)}, [T] = {RST(1)}}, .used = 2}},
	{"openai: a 429 with retry-after",
	 {{"x-ratelimit-limit-tokens", "30000"},
	  {"x-ratelimit-remaining-tokens", "0"},
	  {"x-ratelimit-reset-tokens", "20ms"},
	  {"retry-after", "1"},
	  {"retry-after-ms", "20"}},
	 {.dim = {[T] = {LIM(30000), REM(0), RST(20)}}, RETRY(1000), .used = 5}},
	{"anthropic: a full real response",
	 {{"request-id", "req_01XYZ"},
	  {"anthropic-organization-id", "2f0c5d2e-0000-4000-8000-000000000000"},
	  {"anthropic-ratelimit-requests-limit", "4000"},
	  {"anthropic-ratelimit-requests-remaining", "3999"},
	  {"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01Z"},
	  {"anthropic-ratelimit-tokens-limit", "480000"},
	  {"anthropic-ratelimit-tokens-remaining", "479000"},
	  {"anthropic-ratelimit-tokens-reset", "2026-11-27T21:40:06Z"},
	  {"anthropic-ratelimit-input-tokens-limit", "400000"},
	  {"anthropic-ratelimit-input-tokens-remaining", "399000"},
	  {"anthropic-ratelimit-input-tokens-reset", "2026-11-27T21:40:06Z"},
	  {"anthropic-ratelimit-output-tokens-limit", "80000"},
	  {"anthropic-ratelimit-output-tokens-remaining", "80000"},
	  {"anthropic-ratelimit-output-tokens-reset", "2026-11-27T21:40:00Z"},
	  {"via", "1.1 google"}},
	 {.dim = {[R] = {LIM(4000), REM(3999), RST(1000)},
		  [T] = {LIM(480000), REM(479000), RST(6000)},
		  [I] = {LIM(400000), REM(399000), RST(6000)},
		  [O] = {LIM(80000), REM(80000), RST(0)}},
	  .used = 12}},
	{"anthropic: a 429",
	 {{"retry-after", "12"},
	  {"anthropic-ratelimit-output-tokens-remaining", "0"},
	  {"anthropic-ratelimit-output-tokens-reset", "2026-11-27T21:40:12Z"}},
	 {.dim = {[O] = {REM(0), RST(12000)}}, RETRY(12000), .used = 3}},
	{"anthropic: RFC 3339 fractions and offsets",
	 {{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01.5Z"},
	  {"anthropic-ratelimit-tokens-reset", "2026-11-27T23:40:02+02:00"},
	  {"anthropic-ratelimit-input-tokens-reset", "2026-11-27T20:10:03-01:30"},
	  {"anthropic-ratelimit-output-tokens-reset", "2026-11-27T21:40:01.123456789Z"}},
	 {.dim = {[R] = {RST(1500)}, [T] = {RST(2000)}, [I] = {RST(3000)}, [O] = {RST(1124)}},
	  .used = 4}},
	{"anthropic: lower-case t and z, space separator, -00:00",
	 {{"anthropic-ratelimit-requests-reset", "2026-11-27t21:40:01z"},
	  {"anthropic-ratelimit-tokens-reset", "2026-11-27 21:40:02Z"},
	  {"anthropic-ratelimit-input-tokens-reset", "2026-11-27T21:40:03-00:00"}},
	 {.dim = {[R] = {RST(1000)}, [T] = {RST(2000)}, [I] = {RST(3000)}}, .used = 3}},
	{"resets in the past are 0",
	 {{"anthropic-ratelimit-requests-reset", "2026-11-27T21:39:00Z"},
	  {"anthropic-ratelimit-tokens-reset", "2026-11-26T21:40:00Z"},
	  {"retry-after", "Fri, 27 Nov 2026 21:00:00 GMT"}},
	 {.dim = {[R] = {RST(0)}, [T] = {RST(0)}}, RETRY(0), .used = 3}},
	{"header names in any case",
	 {{"X-RateLimit-Remaining-Tokens", "5"},
	  {"X-RATELIMIT-LIMIT-REQUESTS", "7"},
	  {"Anthropic-RateLimit-Input-Tokens-Limit", "9"},
	  {"Retry-After", "2"}},
	 {.dim = {[R] = {LIM(7)}, [T] = {REM(5)}, [I] = {LIM(9)}}, RETRY(2000), .used = 4}},
	{"values with surrounding spaces and tabs",
	 {{"x-ratelimit-remaining-requests", "  42 "},
	  {"x-ratelimit-reset-requests", "\t1s\t"},
	  {"anthropic-ratelimit-tokens-reset", " 2026-11-27T21:40:05Z "}},
	 {.dim = {[R] = {REM(42), RST(1000)}, [T] = {RST(5000)}}, .used = 3}},
	{"fractional counts round down",
	 {{"x-ratelimit-remaining-tokens", "59.9"}, {"x-ratelimit-limit-tokens", "100.0"}},
	 {.dim = {[T] = {LIM(100), REM(59)}}, .used = 2}},
	{"retry-after: delta seconds, fractional, rounded up",
	 {{"retry-after", "1.5"}}, {RETRY(1500), .used = 1}},
	{"retry-after: tiny fraction rounds up",
	 {{"retry-after", "0.0001"}}, {RETRY(1), .used = 1}},
	{"retry-after: zero", {{"retry-after", "0"}}, {RETRY(0), .used = 1}},
	{"retry-after: IMF-fixdate",
	 {{"retry-after", "Fri, 27 Nov 2026 21:40:30 GMT"}}, {RETRY(30000), .used = 1}},
	{"retry-after: RFC 850 date",
	 {{"retry-after", "Friday, 27-Nov-26 21:40:30 GMT"}}, {RETRY(30000), .used = 1}},
	{"retry-after: asctime date",
	 {{"retry-after", "Fri Nov 27 21:40:30 2026"}}, {RETRY(30000), .used = 1}},
	{"retry-after-ms, fractional",
	 {{"retry-after-ms", "20.5"}}, {RETRY(21), .used = 1}},
	{"repeated headers: the cautious value wins",
	 {{"x-ratelimit-remaining-tokens", "500"},
	  {"x-ratelimit-remaining-tokens", "300"},
	  {"x-ratelimit-remaining-tokens", "400"},
	  {"x-ratelimit-limit-tokens", "1000"},
	  {"x-ratelimit-limit-tokens", "900"},
	  {"x-ratelimit-reset-tokens", "2s"},
	  {"x-ratelimit-reset-tokens", "5s"},
	  {"retry-after", "3"},
	  {"retry-after-ms", "4500"}},
	 {.dim = {[T] = {LIM(900), REM(300), RST(5000)}}, RETRY(4500), .used = 9}},
	{"a malformed repeat does not spoil a good value",
	 {{"x-ratelimit-remaining-tokens", "garbage"}, {"x-ratelimit-remaining-tokens", "10"}},
	 {.dim = {[T] = {REM(10)}}, .used = 1, .malformed = 1}},
	{"unknown headers are ignored, not counted",
	 {{"x-ratelimit-limit-foo", "1"},
	  {"x-ratelimit-remaining-tokens-extra", "1"},
	  {"anthropic-ratelimit-unified-status", "allowed"},
	  {"anthropic-ratelimit-tokens", "1"},
	  {"ratelimit-remaining", "1"},
	  {"x-ratelimit-remaining-tokens ", "1"},
	  {"", "1"},
	  {"retry-afte", "1"}},
	 {.used = 0}},
	{"no headers at all", {{NULL, NULL}}, {.used = 0}},
};

/* Values that must each be refused for the named header. */
struct bad {
	const char *name;  /* a recognised header */
	const char *value; /* a value it must not trust */
};

static const struct bad bad_values[] = {
	/* counts */
	{"x-ratelimit-remaining-tokens", ""},
	{"x-ratelimit-remaining-tokens", "   "},
	{"x-ratelimit-remaining-tokens", "-5"},
	{"x-ratelimit-remaining-tokens", "+5"},
	{"x-ratelimit-remaining-tokens", "abc"},
	{"x-ratelimit-remaining-tokens", "12abc"},
	{"x-ratelimit-remaining-tokens", "1 2"},
	{"x-ratelimit-remaining-tokens", "1e3"},
	{"x-ratelimit-remaining-tokens", "0x10"},
	{"x-ratelimit-remaining-tokens", "12."},
	{"x-ratelimit-remaining-tokens", ".5"},
	{"x-ratelimit-remaining-tokens", "1,000"},
	{"x-ratelimit-limit-requests", "99999999999999999999"},
	{"x-ratelimit-limit-requests", "9223372036854775808"},
	{"anthropic-ratelimit-requests-limit", "NaN"},
	{"anthropic-ratelimit-tokens-remaining", "inf"},
	{"anthropic-ratelimit-input-tokens-remaining", "\xff\xfe"},
	/* OpenAI resets */
	{"x-ratelimit-reset-requests", "-1s"},
	{"x-ratelimit-reset-requests", "1"},
	{"x-ratelimit-reset-requests", "s"},
	{"x-ratelimit-reset-requests", "1x"},
	{"x-ratelimit-reset-requests", "1s2"},
	{"x-ratelimit-reset-requests", "9999h"},
	{"x-ratelimit-reset-requests", "99999999999999999999s"},
	{"x-ratelimit-reset-tokens", "2026-11-27T21:40:01Z"},
	{"x-ratelimit-reset-tokens", ""},
	/* Anthropic resets */
	{"anthropic-ratelimit-requests-reset", "2026-13-01T00:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-00-10T00:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-02-29T00:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-31T00:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-00T00:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T24:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:60:00Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:61Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01+25:00"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01+02"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01.Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27T21:40:01Zjunk"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27"},
	{"anthropic-ratelimit-requests-reset", "26-11-27T21:40:01Z"},
	{"anthropic-ratelimit-requests-reset", "2026-11-27X21:40:01Z"},
	{"anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"},
	{"anthropic-ratelimit-requests-reset", "1969-12-31T23:59:59Z"},
	{"anthropic-ratelimit-requests-reset", "2001-01-01T00:00:00Z"},
	{"anthropic-ratelimit-requests-reset", "1795815601"},
	{"anthropic-ratelimit-requests-reset", "1s"},
	{"anthropic-ratelimit-output-tokens-reset", ""},
	/* retry-after */
	{"retry-after", ""},
	{"retry-after", "-1"},
	{"retry-after", "soon"},
	{"retry-after", "1.5.2"},
	{"retry-after", "1s"},
	{"retry-after", "99999999999"},
	{"retry-after", "18446744073709551616"},
	{"retry-after", "Fri, 32 Nov 2026 21:40:30 GMT"},
	{"retry-after", "Fri, 27 Nov 2026 21:40:30 UTC"},
	{"retry-after", "Fri, 27 Nov 2026 21:40:30"},
	{"retry-after", "Fri, 27 nov 2026 21:40:30 GMT"},
	{"retry-after", "Fri, 7 Nov 2026 21:40:30 GMT"},
	{"retry-after", "Fri,  27 Nov 2026 21:40:30 GMT"},
	{"retry-after", "Fri 27 Nov 2026 21:40:30 GMT"},
	{"retry-after", "Fri, 27 Nov 2036 21:40:30 GMT"},
	{"retry-after", "Thu, 01 Jan 1970 00:00:00 GMT"},
	{"retry-after", "Fri, 29 Feb 2026 21:40:30 GMT"},
	{"retry-after", "Friday, 27-Nov-2026 21:40:30 GMT"},
	{"retry-after", "Fri Nov 27 21:40:30"},
	{"retry-after", "2026-11-27T21:40:30Z"},
	{"retry-after-ms", "-3"},
	{"retry-after-ms", "3ms"},
	{"retry-after-ms", "999999999999"},
	{"retry-after-ms", ""},
};

static void fill(struct bl_ratelimit_header *hs, size_t *n, const char *const h[][2])
{
	*n = 0;
	for (size_t i = 0; i < MAX_H && h[i][0]; i++) {
		hs[i].name = h[i][0];
		hs[i].name_len = strlen(h[i][0]);
		hs[i].value = h[i][1];
		hs[i].value_len = strlen(h[i][1]);
		(*n)++;
	}
}

/* Compares field by field, naming the first difference. */
static void check(const char *desc, const struct bl_ratelimit_headers *got,
		  const struct bl_ratelimit_headers *want)
{
	static const char *const dims[] = {"requests", "tokens", "input_tokens", "output_tokens"};

	for (int d = 0; d < BL_RATELIMIT_DIMS; d++) {
		const struct bl_ratelimit_dim_info *g = &got->dim[d], *w = &want->dim[d];

		if (g->has_limit != w->has_limit || (w->has_limit && g->limit != w->limit))
			fail_msg("%s: %s limit: got %d/%llu want %d/%llu", desc, dims[d],
				 g->has_limit, (unsigned long long)g->limit, w->has_limit,
				 (unsigned long long)w->limit);
		if (g->has_remaining != w->has_remaining ||
		    (w->has_remaining && g->remaining != w->remaining))
			fail_msg("%s: %s remaining: got %d/%llu want %d/%llu", desc, dims[d],
				 g->has_remaining, (unsigned long long)g->remaining,
				 w->has_remaining, (unsigned long long)w->remaining);
		if (g->has_reset != w->has_reset ||
		    (w->has_reset && g->reset_after_ms != w->reset_after_ms))
			fail_msg("%s: %s reset: got %d/%lld want %d/%lld", desc, dims[d],
				 g->has_reset, (long long)g->reset_after_ms, w->has_reset,
				 (long long)w->reset_after_ms);
	}
	if (got->has_retry_after != want->has_retry_after ||
	    (want->has_retry_after && got->retry_after_ms != want->retry_after_ms))
		fail_msg("%s: retry-after: got %d/%lld want %d/%lld", desc, got->has_retry_after,
			 (long long)got->retry_after_ms, want->has_retry_after,
			 (long long)want->retry_after_ms);
	if (got->used != want->used || got->malformed != want->malformed)
		fail_msg("%s: used/malformed: got %u/%u want %u/%u", desc, got->used,
			 got->malformed, want->used, want->malformed);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct bl_ratelimit_header hs[MAX_H];
		struct bl_ratelimit_headers got;
		size_t n;

		fill(hs, &n, cases[c].h);
		memset(&got, 0xa5, sizeof got); /* every field must be written */
		assert_int_equal(bl_ratelimit_headers_parse(hs, n, NOW, &got), 0);
		check(cases[c].desc, &got, &cases[c].want);
	}
}

static void test_malformed_values(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
		struct bl_ratelimit_header h = {bad_values[i].name, strlen(bad_values[i].name),
						bad_values[i].value, strlen(bad_values[i].value)};
		struct bl_ratelimit_headers got, want;
		char desc[160];

		memset(&want, 0, sizeof want);
		want.malformed = 1;
		snprintf(desc, sizeof desc, "%s: \"%s\"", bad_values[i].name, bad_values[i].value);
		assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), 0);
		check(desc, &got, &want);
	}
}

/* Values are not NUL-terminated: a length cuts them, and bytes after it
 * (here a valid-looking tail) are never read. */
static void test_lengths_not_nul(void **state)
{
	const char buf[] = "x-ratelimit-remaining-tokens123456";
	struct bl_ratelimit_header h = {buf, 28, buf + 28, 3};
	struct bl_ratelimit_headers got;

	(void)state;
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), 0);
	assert_true(got.dim[T].has_remaining);
	assert_int_equal(got.dim[T].remaining, 123);

	/* A NULL value with length 0 is an empty value: malformed, not a crash. */
	h.value = NULL;
	h.value_len = 0;
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), 0);
	assert_int_equal(got.malformed, 1);
	h.name = NULL;
	h.name_len = 0;
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), 0);
	assert_int_equal(got.malformed, 0);
	assert_int_equal(got.used, 0);
}

static void test_invalid_arguments(void **state)
{
	struct bl_ratelimit_header h = {"retry-after", 11, "1", 1};
	struct bl_ratelimit_headers got, before;

	(void)state;
	memset(&got, 0x5a, sizeof got);
	before = got;
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, NULL), BL_EINVAL);
	assert_int_equal(bl_ratelimit_headers_parse(NULL, 1, NOW, &got), BL_EINVAL);
	h.value = NULL;
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), BL_EINVAL);
	h.value = "1";
	h.name = NULL;
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), BL_EINVAL);
	assert_memory_equal(&got, &before, sizeof got);
	assert_int_equal(bl_ratelimit_headers_parse(NULL, 0, NOW, &got), 0);
	assert_int_equal(got.used, 0);
	assert_false(got.has_retry_after);
}

/* The horizon: a date or delay just inside is taken, just outside refused;
 * absurd clocks on our side make dates untrusted, not wrong. */
static void test_horizon(void **state)
{
	struct bl_ratelimit_header h = {"retry-after", 11, NULL, 0};
	struct bl_ratelimit_headers got;
	char v[32];

	(void)state;
	snprintf(v, sizeof v, "%lld", (long long)(BL_RATELIMIT_HORIZON_MS / 1000));
	h.value = v;
	h.value_len = strlen(v);
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), 0);
	assert_int_equal(got.retry_after_ms, BL_RATELIMIT_HORIZON_MS);
	snprintf(v, sizeof v, "%lld", (long long)(BL_RATELIMIT_HORIZON_MS / 1000 + 1));
	h.value_len = strlen(v);
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, NOW, &got), 0);
	assert_int_equal(got.malformed, 1);

	h.value = "Fri, 27 Nov 2026 21:40:30 GMT";
	h.value_len = strlen(h.value);
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, INT64_MIN, &got), 0);
	assert_int_equal(got.malformed, 1);
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, INT64_MAX, &got), 0);
	assert_int_equal(got.malformed, 1);
	assert_int_equal(bl_ratelimit_headers_parse(&h, 1, 0, &got), 0);
	assert_int_equal(got.malformed, 1);
}

static void test_rfc3339_direct(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{"1970-01-01T00:00:00Z", 0},
		{"1970-01-01T00:00:00.001Z", 1},
		{"2000-02-29T12:00:00Z", INT64_C(951825600000)},
		{"2024-02-29T00:00:00Z", INT64_C(1709164800000)},
		{"9999-12-31T23:59:59Z", INT64_C(253402300799000)},
		{"2026-12-31T23:59:60Z", INT64_C(1798761600000)}, /* = 2027-01-01 */
		{"2026-11-27T21:40:00+23:59", NOW - (23 * 60 + 59) * 60000},
		{"2026-11-27T21:40:00.999999Z", NOW + 1000},
	};
	static const char *const bad[] = {
		"", "2100-02-29T00:00:00Z", "1900-01-01T00:00:00Z", "2026-11-27T21:40:00+24:00",
		"2026-11-27T21:40:00+00:60", "2026-11-27T21:40:00 Z", "2026-1-27T21:40:00Z",
		"2026-11-27T21:40Z", "2026-11-27T21:40:00.5", "-026-11-27T21:40:00Z",
	};
	int64_t ms = 77;

	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		assert_int_equal(bl_ratelimit_parse_rfc3339(ok[i].s, strlen(ok[i].s), &ms), 0);
		if (ms != ok[i].ms)
			fail_msg("%s: %lld, want %lld", ok[i].s, (long long)ms, (long long)ok[i].ms);
	}
	ms = 77;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (bl_ratelimit_parse_rfc3339(bad[i], strlen(bad[i]), &ms) != BL_ESYNTAX)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_int_equal(ms, 77);
	}
}

static void test_http_date_direct(void **state)
{
	/* RFC 9110's example, in its three forms. */
	static const char *const same[] = {
		"Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994",
	};
	int64_t ms = 0;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(bl_ratelimit_parse_http_date(same[i], strlen(same[i]), &ms), 0);
		assert_int_equal(ms, INT64_C(784111777000));
	}
	assert_int_equal(bl_ratelimit_parse_http_date("Sunday, 06-Nov-27 08:49:37 GMT", 30, &ms),
			 0);
	assert_int_equal(ms / 1000 / 86400 / 365, 57); /* 2027, not 1927 */
	assert_int_equal(bl_ratelimit_parse_http_date("Sun Nov 16 08:49:37 1994", 24, &ms), 0);
	assert_int_equal(ms, INT64_C(784111777000) + 10 * 86400000);
	ms = 5;
	assert_int_equal(bl_ratelimit_parse_http_date("Sun Nov 6 08:49:37 1994", 23, &ms),
			 BL_ESYNTAX);
	assert_int_equal(bl_ratelimit_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", 28, &ms),
			 BL_ESYNTAX);
	assert_int_equal(bl_ratelimit_parse_http_date("Sunday", 6, &ms), BL_ESYNTAX);
	assert_int_equal(bl_ratelimit_parse_http_date("", 0, &ms), BL_ESYNTAX);
	assert_int_equal(ms, 5);
}

static uint64_t rng_state = 12345;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Our calendar arithmetic against the C library's, over random instants from
 * 1970 to 9999, through both date formats. */
static void test_dates_against_gmtime(void **state)
{
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	const int64_t max_s = INT64_C(253402300799);

	(void)state;
	for (int i = 0; i < 20000; i++) {
		int64_t s = (int64_t)(rng() % (uint64_t)(max_s + 1));
		int frac = (int)(rng() % 1000);
		time_t t = (time_t)s;
		struct tm tm;
		char buf[64];
		int64_t ms;
		int len;

		assert_non_null(gmtime_r(&t, &tm));
		len = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
			       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			       tm.tm_sec, frac);
		assert_int_equal(bl_ratelimit_parse_rfc3339(buf, (size_t)len, &ms), 0);
		if (ms != s * 1000 + frac)
			fail_msg("%s: %lld, want %lld", buf, (long long)ms,
				 (long long)(s * 1000 + frac));
		len = snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT",
			       wday[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900,
			       tm.tm_hour, tm.tm_min, tm.tm_sec);
		assert_int_equal(bl_ratelimit_parse_http_date(buf, (size_t)len, &ms), 0);
		assert_int_equal(ms, s * 1000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_malformed_values),
		cmocka_unit_test(test_lengths_not_nul),
		cmocka_unit_test(test_invalid_arguments),
		cmocka_unit_test(test_horizon),
		cmocka_unit_test(test_rfc3339_direct),
		cmocka_unit_test(test_http_date_direct),
		cmocka_unit_test(test_dates_against_gmtime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
