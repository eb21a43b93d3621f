/* Unit tests of durations and sizes (src/core/units.c): table-driven, good
 * and bad inputs, overflow at the edges, and formatting that parses back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ballast/error.h"
#include "ballast/units.h"

#define NS INT64_C(1)
#define US (1000 * NS)
#define MS (1000 * US)
#define SEC (1000 * MS)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

struct duration_case {
	const char *text;
	int err;    /* 0, BL_ESYNTAX or BL_ERANGE */
	int64_t ns; /* when err is 0 */
};

static const struct duration_case duration_cases[] = {
	{"0", 0, 0},
	{"0s", 0, 0},
	{"250ms", 0, 250 * MS},
	{"30s", 0, 30 * SEC},
	{"5m", 0, 5 * MIN},
	{"1h", 0, HOUR},
	{"1d", 0, DAY},
	{"1ns", 0, 1},
	{"7us", 0, 7 * US},
	{"7\xc2\xb5s", 0, 7 * US}, /* µs */
	{"1.5s", 0, 1500 * MS},
	{".5s", 0, 500 * MS},
	{"0.001ms", 0, 1 * US},
	{"1h30m", 0, HOUR + 30 * MIN},
	{"6m0s", 0, 6 * MIN},
	{"1h1m1s1ms1us1ns", 0, HOUR + MIN + SEC + MS + US + 1},
	{"2s500ms", 0, 2 * SEC + 500 * MS},
	{"1.0000000000000000001s", 0, SEC}, /* fraction digits beyond 18 are dropped */
	{"0.1ns", 0, 0},                    /* fractions round down */
	{"9223372036854775807ns", 0, INT64_MAX},
	{"9223372036s", 0, 9223372036 * SEC},
	{"106751d", 0, 106751 * DAY},

	{"", BL_ESYNTAX, 0},
	{"5", BL_ESYNTAX, 0}, /* a number without unit */
	{"00", BL_ESYNTAX, 0},
	{"s", BL_ESYNTAX, 0},
	{"-5s", BL_ESYNTAX, 0},
	{"+5s", BL_ESYNTAX, 0},
	{"5 s", BL_ESYNTAX, 0},
	{" 5s", BL_ESYNTAX, 0},
	{"5s ", BL_ESYNTAX, 0},
	{"5sec", BL_ESYNTAX, 0},
	{"5S", BL_ESYNTAX, 0},
	{"5H", BL_ESYNTAX, 0},
	{"1y", BL_ESYNTAX, 0},
	{"1.s.5", BL_ESYNTAX, 0},
	{"1..5s", BL_ESYNTAX, 0},
	{".s", BL_ESYNTAX, 0},
	{"1e3s", BL_ESYNTAX, 0},
	{"5s5", BL_ESYNTAX, 0},
	{"0x10s", BL_ESYNTAX, 0},

	{"9223372036854775808ns", BL_ERANGE, 0},
	{"9223372037s", BL_ERANGE, 0},
	{"106752d", BL_ERANGE, 0},
	{"99999999999999999999s", BL_ERANGE, 0},
	{"18446744073709551616ns", BL_ERANGE, 0},
	{"9223372036854775807ns1ns", BL_ERANGE, 0},
	{"5000000h5000000h", BL_ERANGE, 0},
};

static void test_parse_duration(void **state)
{
	for (size_t i = 0; i < sizeof duration_cases / sizeof duration_cases[0]; i++) {
		const struct duration_case *tc = &duration_cases[i];
		int64_t ns = -42;
		int err = bl_parse_duration(tc->text, strlen(tc->text), &ns);

		if (err != tc->err || (err == 0 && ns != tc->ns))
			fprintf(stderr, "'%s': got %s %lld, expected %s %lld\n", tc->text,
				bl_errname(err), (long long)ns, bl_errname(tc->err), (long long)tc->ns);
		assert_int_equal(err, tc->err);
		if (err == 0)
			assert_int_equal(ns, tc->ns);
		else
			assert_int_equal(ns, -42); /* untouched on failure */
	}
}

static void test_parse_duration_length(void **state)
{
	int64_t ns = 0;

	/* len is honoured: the text need not be NUL-terminated. */
	assert_int_equal(bl_parse_duration("30s trailing", 3, &ns), 0);
	assert_int_equal(ns, 30 * SEC);
	assert_int_equal(bl_parse_duration("1h30m", 2, &ns), 0);
	assert_int_equal(ns, HOUR);
	assert_int_equal(bl_parse_duration("5", 1, &ns), BL_ESYNTAX);
	assert_int_equal(bl_parse_duration(NULL, 0, &ns), BL_ESYNTAX);
}

struct size_case {
	const char *text;
	int err;
	uint64_t bytes;
};

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

static const struct size_case size_cases[] = {
	{"0", 0, 0},
	{"4096", 0, 4096},
	{"4096B", 0, 4096},
	{"512KiB", 0, 512 * KIB},
	{"64MiB", 0, 64 * MIB},
	{"16GiB", 0, 16 * GIB},
	{"2TiB", 0, 2 * TIB},
	{"512Ki", 0, 512 * KIB},
	{"64Mi", 0, 64 * MIB},
	{"16Gi", 0, 16 * GIB},
	{"1Ti", 0, TIB},
	{"1KB", 0, 1000},
	{"1kB", 0, 1000},
	{"1K", 0, 1000},
	{"1k", 0, 1000},
	{"1MB", 0, 1000000},
	{"1M", 0, 1000000},
	{"1GB", 0, 1000000000},
	{"1G", 0, 1000000000},
	{"1TB", 0, UINT64_C(1000000000000)},
	{"1T", 0, UINT64_C(1000000000000)},
	{"1.5GiB", 0, GIB + GIB / 2},
	{"0.5KiB", 0, 512},
	{".5KiB", 0, 512},
	{"1.5", 0, 1}, /* whole bytes: the fraction rounds down */
	{"18446744073709551615", 0, UINT64_MAX},
	{"16777215TiB", 0, UINT64_C(16777215) * TIB},

	{"", BL_ESYNTAX, 0},
	{"KiB", BL_ESYNTAX, 0},
	{"-1", BL_ESYNTAX, 0},
	{"+1", BL_ESYNTAX, 0},
	{"64 MiB", BL_ESYNTAX, 0},
	{" 64MiB", BL_ESYNTAX, 0},
	{"64MiB ", BL_ESYNTAX, 0},
	{"64mib", BL_ESYNTAX, 0},
	{"64MIB", BL_ESYNTAX, 0},
	{"64XB", BL_ESYNTAX, 0},
	{"1PiB", BL_ESYNTAX, 0},
	{"1KiB1KiB", BL_ESYNTAX, 0},
	{"1e3", BL_ESYNTAX, 0},
	{"1..5KiB", BL_ESYNTAX, 0},

	{"18446744073709551616", BL_ERANGE, 0},
	{"16777216TiB", BL_ERANGE, 0},
	{"99999999999999999999999", BL_ERANGE, 0},
	{"18446744073709551615.5KiB", BL_ERANGE, 0},
};

static void test_parse_size(void **state)
{
	for (size_t i = 0; i < sizeof size_cases / sizeof size_cases[0]; i++) {
		const struct size_case *tc = &size_cases[i];
		uint64_t bytes = 42;
		int err = bl_parse_size(tc->text, strlen(tc->text), &bytes);

		if (err != tc->err || (err == 0 && bytes != tc->bytes))
			fprintf(stderr, "'%s': got %s %llu, expected %s %llu\n", tc->text,
				bl_errname(err), (unsigned long long)bytes, bl_errname(tc->err),
				(unsigned long long)tc->bytes);
		assert_int_equal(err, tc->err);
		if (err == 0)
			assert_int_equal(bytes, tc->bytes);
		else
			assert_int_equal(bytes, 42);
	}
}

static void test_parse_size_length(void **state)
{
	uint64_t bytes = 0;

	assert_int_equal(bl_parse_size("64MiB of memory", 5, &bytes), 0);
	assert_int_equal(bytes, 64 * MIB);
	assert_int_equal(bl_parse_size("64MiB", 4, &bytes), 0); /* "64Mi" */
	assert_int_equal(bytes, 64 * MIB);
	assert_int_equal(bl_parse_size(NULL, 0, &bytes), BL_ESYNTAX);
}

struct format_duration_case {
	int64_t ns;
	const char *text;
};

static const struct format_duration_case format_duration_cases[] = {
	{0, "0s"},
	{1, "1ns"},
	{999, "999ns"},
	{US, "1us"},
	{1500 * NS, "1500ns"},
	{250 * MS, "250ms"},
	{999 * MS, "999ms"},
	{1500 * MS, "1500ms"},
	{SEC + US, "1000001us"},
	{SEC, "1s"},
	{30 * SEC, "30s"},
	{MIN, "1m"},
	{90 * SEC, "1m30s"},
	{HOUR, "1h"},
	{HOUR + 30 * MIN, "1h30m"},
	{HOUR + SEC, "1h1s"},
	{DAY, "24h"},
	{INT64_MAX, "9223372036854775807ns"},
	{9223372036 * SEC, "2562047h47m16s"},
};

static void test_format_duration(void **state)
{
	for (size_t i = 0; i < sizeof format_duration_cases / sizeof format_duration_cases[0]; i++) {
		const struct format_duration_case *tc = &format_duration_cases[i];
		char buf[64];
		int64_t back = -1;
		int n = bl_format_duration(tc->ns, buf, sizeof buf);

		assert_int_equal(n, (int)strlen(tc->text));
		assert_string_equal(buf, tc->text);
		/* What is written parses back to the same value. */
		assert_int_equal(bl_parse_duration(buf, (size_t)n, &back), 0);
		assert_int_equal(back, tc->ns);
	}
}

static void test_format_duration_small_buffers(void **state)
{
	char buf[8];

	assert_int_equal(bl_format_duration(30 * SEC, buf, 4), 3);
	assert_string_equal(buf, "30s");
	assert_int_equal(bl_format_duration(30 * SEC, buf, 3), BL_ETOOBIG);
	assert_int_equal(bl_format_duration(HOUR + 30 * MIN, buf, 3), BL_ETOOBIG);
	assert_int_equal(bl_format_duration(HOUR + 30 * MIN, buf, 4), BL_ETOOBIG);
	assert_int_equal(bl_format_duration(HOUR + 30 * MIN, buf, 6), 5);
	assert_string_equal(buf, "1h30m");
	assert_int_equal(bl_format_duration(250 * MS, buf, 5), BL_ETOOBIG);
	assert_int_equal(bl_format_duration(0, buf, 0), BL_ETOOBIG);
	assert_int_equal(bl_format_duration(-1, buf, sizeof buf), BL_EINVAL);
	assert_string_equal(buf, "");
}

struct format_size_case {
	uint64_t bytes;
	const char *text;
};

static const struct format_size_case format_size_cases[] = {
	{0, "0"},
	{1, "1"},
	{1000, "1000"},
	{1023, "1023"},
	{KIB, "1KiB"},
	{1536, "1536"},
	{3 * KIB, "3KiB"},
	{64 * KIB, "64KiB"},
	{MIB, "1MiB"},
	{MIB + KIB, "1025KiB"},
	{256 * MIB, "256MiB"},
	{16 * GIB, "16GiB"},
	{TIB, "1TiB"},
	{1024 * TIB, "1024TiB"},
	{UINT64_MAX, "18446744073709551615"},
};

static void test_format_size(void **state)
{
	for (size_t i = 0; i < sizeof format_size_cases / sizeof format_size_cases[0]; i++) {
		const struct format_size_case *tc = &format_size_cases[i];
		char buf[64];
		uint64_t back = 1;
		int n = bl_format_size(tc->bytes, buf, sizeof buf);

		assert_int_equal(n, (int)strlen(tc->text));
		assert_string_equal(buf, tc->text);
		assert_int_equal(bl_parse_size(buf, (size_t)n, &back), 0);
		assert_int_equal(back, tc->bytes);
	}
}

static void test_format_size_small_buffers(void **state)
{
	char buf[8];

	assert_int_equal(bl_format_size(64 * KIB, buf, 6), 5);
	assert_string_equal(buf, "64KiB");
	assert_int_equal(bl_format_size(64 * KIB, buf, 5), BL_ETOOBIG);
	assert_int_equal(bl_format_size(1000, buf, 4), BL_ETOOBIG);
	assert_int_equal(bl_format_size(0, buf, 0), BL_ETOOBIG);
}

/* Property: every value formats to a string that parses back to it. */
static void test_round_trip_property(void **state)
{
	uint64_t x = UINT64_C(0x9e3779b97f4a7c15);

	for (int i = 0; i < 100000; i++) {
		char buf[64];
		int64_t ns, back_ns = -1;
		uint64_t bytes, back_bytes = 1;
		int n;

		/* xorshift64: deterministic, so a failure reproduces. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ns = (int64_t)(x >> (1 + i % 63));
		bytes = x >> (i % 64);
		n = bl_format_duration(ns, buf, sizeof buf);
		assert_true(n > 0);
		assert_int_equal(bl_parse_duration(buf, (size_t)n, &back_ns), 0);
		assert_int_equal(back_ns, ns);
		n = bl_format_size(bytes, buf, sizeof buf);
		assert_true(n > 0);
		assert_int_equal(bl_parse_size(buf, (size_t)n, &back_bytes), 0);
		assert_int_equal(back_bytes, bytes);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_duration_length),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_size_length),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_format_duration_small_buffers),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_format_size_small_buffers),
		cmocka_unit_test(test_round_trip_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
