/* Unit tests for the Prometheus text parser: a real-looking vLLM /metrics
 * page, label matchers and escapes, several series summed, a missing metric,
 * malformed lines reported with their line and column, huge and special
 * values, CRLF line endings, and the iterator on its own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/promtext.h"

/* What vLLM 0.8 serves (trimmed): two engines of one model, HELP and TYPE
 * lines, counters with _total and _created, a histogram, and the Python
 * client's process metrics. */
static const char vllm[] =
	"# HELP python_gc_objects_collected_total Objects collected during gc\n"
	"# TYPE python_gc_objects_collected_total counter\n"
	"python_gc_objects_collected_total{generation=\"0\"} 12093.0\n"
	"python_gc_objects_collected_total{generation=\"1\"} 1881.0\n"
	"# HELP python_info Python platform information\n"
	"# TYPE python_info gauge\n"
	"python_info{implementation=\"CPython\",major=\"3\",minor=\"12\",patchlevel=\"9\","
	"version=\"3.12.9\"} 1.0\n"
	"# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
	"# TYPE process_virtual_memory_bytes gauge\n"
	"process_virtual_memory_bytes 1.2345678848e+010\n"
	"# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
	"# TYPE vllm:num_requests_running gauge\n"
	"vllm:num_requests_running{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 12.0\n"
	"vllm:num_requests_running{engine=\"1\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 9.0\n"
	"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
	"# TYPE vllm:num_requests_waiting gauge\n"
	"vllm:num_requests_waiting{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 7.0\n"
	"vllm:num_requests_waiting{engine=\"1\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 4.0\n"
	"# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.\n"
	"# TYPE vllm:gpu_cache_usage_perc gauge\n"
	"vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.875\n"
	"vllm:gpu_cache_usage_perc{engine=\"1\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.625\n"
	"# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
	"# TYPE vllm:prompt_tokens_total counter\n"
	"vllm:prompt_tokens_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 1.234567e+06\n"
	"# HELP vllm:prompt_tokens_created Number of prefill tokens processed.\n"
	"# TYPE vllm:prompt_tokens_created gauge\n"
	"vllm:prompt_tokens_created{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 1.7401e+09\n"
	"# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
	"# TYPE vllm:time_to_first_token_seconds histogram\n"
	"vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"m\"} 0.0\n"
	"vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.5\",model_name=\"m\"} 88.0\n"
	"vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 90.0\n"
	"vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 90.0\n"
	"vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"m\"} 21.5\n";

#define MODEL "meta-llama/Llama-3.1-8B-Instruct"

static int sum(const char *text, const char *name, const struct bl_promtext_match *m, size_t n,
	       double *out, size_t *series, char *err)
{
	return bl_promtext_sum(text, strlen(text), name, m, n, out, series, err, 256);
}

static void test_vllm(void **state)
{
	char err[256];
	double v = -1;
	size_t n = 0;

	(void)state;
	assert_int_equal(sum(vllm, "vllm:num_requests_waiting", NULL, 0, &v, &n, err), 0);
	assert_true(v == 11.0);
	assert_int_equal(n, 2);
	assert_int_equal(sum(vllm, "vllm:num_requests_running", NULL, 0, &v, &n, err), 0);
	assert_true(v == 21.0);
	/* A share per engine: the caller takes the mean. */
	assert_int_equal(sum(vllm, "vllm:gpu_cache_usage_perc", NULL, 0, &v, &n, err), 0);
	assert_true(v / (double)n == 0.75);
	assert_int_equal(sum(vllm, "process_virtual_memory_bytes", NULL, 0, &v, &n, err), 0);
	assert_true(v == 12345678848.0);
	assert_int_equal(n, 1);
	/* A histogram's series have their own names; le="+Inf" is a label. */
	assert_int_equal(sum(vllm, "vllm:time_to_first_token_seconds_count", NULL, 0, &v, &n, err),
			 0);
	assert_true(v == 90.0);
	assert_int_equal(sum(vllm, "vllm:time_to_first_token_seconds", NULL, 0, &v, &n, err),
			 BL_ENOENT);
}

static void test_label_matchers(void **state)
{
	const struct bl_promtext_match engine0[] = {{"engine", "0"}};
	const struct bl_promtext_match both[] = {{"model_name", MODEL}, {"engine", "1"}};
	const struct bl_promtext_match other[] = {{"model_name", "other"}};
	const struct bl_promtext_match absent[] = {{"lora", ""}};
	const struct bl_promtext_match absent_v[] = {{"lora", "x"}};
	const struct bl_promtext_match le[] = {{"le", "+Inf"}};
	char err[256];
	double v = -1;
	size_t n = 0;

	(void)state;
	assert_int_equal(sum(vllm, "vllm:num_requests_waiting", engine0, 1, &v, &n, err), 0);
	assert_true(v == 7.0);
	assert_int_equal(n, 1);
	assert_int_equal(sum(vllm, "vllm:num_requests_waiting", both, 2, &v, &n, err), 0);
	assert_true(v == 4.0);
	v = -1;
	n = 99;
	assert_int_equal(sum(vllm, "vllm:num_requests_waiting", other, 1, &v, &n, err), BL_ENOENT);
	assert_true(v == -1 && n == 99); /* untouched */
	assert_non_null(strstr(err, "vllm:num_requests_waiting"));
	/* A missing label reads as "", as in PromQL. */
	assert_int_equal(sum(vllm, "vllm:num_requests_waiting", absent, 1, &v, &n, err), 0);
	assert_true(v == 11.0);
	assert_int_equal(sum(vllm, "vllm:num_requests_waiting", absent_v, 1, &v, &n, err),
			 BL_ENOENT);
	assert_int_equal(sum(vllm, "vllm:time_to_first_token_seconds_bucket", le, 1, &v, &n, err),
			 0);
	assert_true(v == 90.0);
}

static void test_escapes_and_spacing(void **state)
{
	static const char text[] =
		"q{path=\"C:\\\\dir\",msg=\"say \\\"hi\\\"\",nl=\"a\\nb\"} 1\n"
		"q{path=\"C:\\\\dir\",msg=\"other\"} 2\n"
		"q { path = \"x,y}\" , } 4\n"
		"\t q{}\t8\t \n"
		"q{a=\"\"} 16 1700000000000\n"
		"q{a=\"z\"} 32 -5\n";
	const struct bl_promtext_match m1[] = {{"path", "C:\\dir"}, {"msg", "say \"hi\""},
					       {"nl", "a\nb"}};
	const struct bl_promtext_match m2[] = {{"path", "C:\\dir"}};
	const struct bl_promtext_match m3[] = {{"path", "x,y}"}};
	const struct bl_promtext_match m4[] = {{"nl", "a\\nb"}}; /* escaped form: no match */
	const struct bl_promtext_match m5[] = {{"path", "C:\\"}}; /* a prefix: no match */
	const struct bl_promtext_match m6[] = {{"a", ""}};
	char err[256];
	double v;
	size_t n;

	(void)state;
	assert_int_equal(sum(text, "q", NULL, 0, &v, &n, err), 0);
	assert_true(v == 63.0);
	assert_int_equal(n, 6);
	assert_int_equal(sum(text, "q", m1, 3, &v, &n, err), 0);
	assert_true(v == 1.0);
	assert_int_equal(sum(text, "q", m2, 1, &v, &n, err), 0);
	assert_true(v == 3.0);
	assert_int_equal(sum(text, "q", m3, 1, &v, &n, err), 0);
	assert_true(v == 4.0);
	assert_int_equal(sum(text, "q", m4, 1, &v, &n, err), BL_ENOENT);
	assert_int_equal(sum(text, "q", m5, 1, &v, &n, err), BL_ENOENT);
	/* Series without label a, and the one with a="". */
	assert_int_equal(sum(text, "q", m6, 1, &v, &n, err), 0);
	assert_true(v == 31.0);
}

static void test_crlf_and_last_line(void **state)
{
	static const char crlf[] = "# HELP a Help.\r\n# TYPE a gauge\r\na{x=\"1\"} 2\r\n\r\na 3 17\r\n";
	static const char no_lf[] = "a 1\na 2";
	char err[256];
	double v;
	size_t n;

	(void)state;
	assert_int_equal(sum(crlf, "a", NULL, 0, &v, &n, err), 0);
	assert_true(v == 5.0);
	assert_int_equal(sum(no_lf, "a", NULL, 0, &v, &n, err), 0);
	assert_true(v == 3.0);
	/* Empty and blank texts are well-formed and hold nothing. */
	assert_int_equal(sum("", "a", NULL, 0, &v, &n, err), BL_ENOENT);
	assert_int_equal(sum("\n \n\t\r\n# just a comment\n# EOF\n", "a", NULL, 0, &v, &n, err),
			 BL_ENOENT);
	assert_int_equal(bl_promtext_sum(NULL, 0, "a", NULL, 0, &v, &n, err, sizeof err),
			 BL_ENOENT);
}

static void test_values(void **state)
{
	static const struct {
		const char *text;
		double want;
	} ok[] = {
		{"v 0\n", 0.0},
		{"v -0.5\n", -0.5},
		{"v +3\n", 3.0},
		{"v .25\n", 0.25},
		{"v 7.\n", 7.0},
		{"v 1e3\n", 1000.0},
		{"v 1E-3\n", 0.001},
		{"v 1.5e+06\n", 1.5e6},
		{"v 1e308\n", 1e308},
		{"v 1.7976931348623157e308\n", DBL_MAX},
		{"v -1.7976931348623157e308\n", -DBL_MAX},
		{"v 1e-400\n", 0.0},                                /* underflow reads as 0 */
		{"v 123456789012345678901234567890\n", 1.2345678901234568e29},
		{"v 9007199254740993\n", 9007199254740992.0},       /* rounded to a double */
	};
	char err[256];
	double v;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		int rc = sum(ok[i].text, "v", NULL, 0, &v, &n, err);

		if (rc != 0)
			fail_msg("%s: %s", ok[i].text, err);
		if (v != ok[i].want)
			fail_msg("%s: %.17g, want %.17g", ok[i].text, v, ok[i].want);
	}
	/* Two maxima overflow the sum: unknown, not infinite. */
	assert_int_equal(sum("v 1.7976931348623157e308\nv 1.7976931348623157e308\n", "v", NULL, 0,
			     &v, &n, err),
			 BL_ERANGE);
	assert_non_null(strstr(err, "line 2"));
}

static void test_special_values(void **state)
{
	static const char *const special[] = {"NaN", "nan", "+Inf", "-Inf", "Inf", "inf",
					      "+infinity", "-Infinity"};
	char text[64], err[256];
	double v = 42;
	size_t n = 7;

	(void)state;
	for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
		struct bl_promtext_iter it;
		struct bl_promtext_sample s;

		snprintf(text, sizeof text, "ok 1\nv{a=\"b\"} %s\n", special[i]);
		/* The parser reads them... */
		bl_promtext_iter_init(&it, text, strlen(text));
		assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_SAMPLE);
		assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_SAMPLE);
		assert_false(isfinite(s.value));
		assert_int_equal(isnan(s.value) != 0, special[i][0] == 'N' || special[i][0] == 'n');
		assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_END);
		/* ...a sum over one is unknown... */
		assert_int_equal(sum(text, "v", NULL, 0, &v, &n, err), BL_ERANGE);
		assert_non_null(strstr(err, "line 2"));
		assert_true(v == 42 && n == 7);
		/* ...and other metrics do not care. */
		assert_int_equal(sum(text, "ok", NULL, 0, &v, &n, err), 0);
		assert_true(v == 1.0);
		v = 42;
		n = 7;
	}
}

static void test_timestamps(void **state)
{
	static const char text[] = "a 1 0\na 2 -1\na 3 9223372036854775807\na 4 -9223372036854775808\n"
				   "a 5 +12\n";
	static const int64_t want[] = {0, -1, INT64_MAX, INT64_MIN, 12};
	struct bl_promtext_iter it;
	struct bl_promtext_sample s;
	char err[256];

	(void)state;
	bl_promtext_iter_init(&it, text, strlen(text));
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_SAMPLE);
		assert_true(s.has_timestamp);
		assert_true(s.timestamp_ms == want[i]);
		assert_int_equal(s.line, i + 1);
	}
	assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_END);
}

/* Each malformed text, the line and column it is reported at, and a word of
 * the message. */
static const struct {
	const char *text;
	size_t len;        /* bytes of text, or 0 for strlen */
	const char *where; /* "line L, column C" */
	const char *says;
} malformed[] = {
	{"a 1\nb\n", 0, "line 2, column 2", "expected a value"},
	{"a 1\n\n9lives 1\n", 0, "line 3, column 1", "expected a metric name"},
	{"a-b 1\n", 0, "line 1, column 2", "unexpected '-'"},
	{"a{b=\"c\" 1\n", 0, "line 1, column 9", "expected ',' or '}'"},
	{"a{b=\"c\n", 0, "line 1, column 7", "no closing '\"'"},
	{"a{b=c} 1\n", 0, "line 1, column 5", "expected '\"'"},
	{"a{b\"c\"} 1\n", 0, "line 1, column 4", "expected '='"},
	{"a{,} 1\n", 0, "line 1, column 3", "expected a label name"},
	{"a{b:c=\"d\"} 1\n", 0, "line 1, column 4", "expected '='"},
	{"a{b=\"\\t\"} 1\n", 0, "line 1, column 6", "unknown escape"},
	{"a{b=\"c\",\n", 0, "line 1, column 9", "expected a label name"},
	{"a{b=\"c\"\n", 0, "line 1, column 8", "no closing '}'"},
	{"a one\n", 0, "line 1, column 3", "not a number"},
	{"a 0x10\n", 0, "line 1, column 3", "not a number"},
	{"a 1e\n", 0, "line 1, column 3", "not a number"},
	{"a 1,5\n", 0, "line 1, column 3", "not a number"},
	{"a +NaN\n", 0, "line 1, column 3", "not a number"},
	{"a 1_000\n", 0, "line 1, column 3", "not a number"},
	{"a 1e309\n", 0, "line 1, column 3", "beyond the range"},
	{"a -1e309\n", 0, "line 1, column 3", "beyond the range"},
	{"a 1 x\n", 0, "line 1, column 5", "not an integer"},
	{"a 1 1.5\n", 0, "line 1, column 5", "not an integer"},
	{"a 1 9223372036854775808\n", 0, "line 1, column 5", "beyond 64 bits"},
	{"a 1 2 3\n", 0, "line 1, column 7", "after the timestamp"},
	{"# TYPE a gauges\n", 0, "line 1, column 10", "counter, gauge"},
	{"# TYPE a\n", 0, "line 1, column 9", "counter, gauge"},
	{"# TYPE a gauge extra\n", 0, "line 1, column 16", "after the type"},
	{"# TYPE 1a gauge\n", 0, "line 1, column 8", "expected a metric name"},
	{"# HELP\n", 0, "line 1, column 7", "expected a metric name"},
	{"# HELP a-b text\n", 0, "line 1, column 9", "expected a metric name"},
	{"ok 1\r\nok 2\r\nbad\r\n", 0, "line 3, column 4", "expected a value"},
	{"a\x00 1\n", 5, "line 1, column 2", "unexpected '?'"},
};

static void test_malformed(void **state)
{
	char err[256];
	double v = 5;
	size_t n = 6;

	(void)state;
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		size_t len = malformed[i].len ? malformed[i].len : strlen(malformed[i].text);
		int rc;

		rc = bl_promtext_sum(malformed[i].text, len, "a", NULL, 0, &v, &n, err, sizeof err);
		if (rc != BL_EINVAL || !strstr(err, malformed[i].where) ||
		    !strstr(err, malformed[i].says))
			fail_msg("case %zu: rc %d, message '%s'; want %s and '%s'", i, rc, err,
				 malformed[i].where, malformed[i].says);
		assert_true(v == 5 && n == 6);
	}
	/* A malformed line after the metric still makes the whole text malformed,
	 * and the message quotes the line, control bytes escaped. */
	assert_int_equal(sum("a 1\nb{x=\"\x01\"} z\n", "a", NULL, 0, &v, &n, err), BL_EINVAL);
	assert_string_equal(err, "line 2, column 10: the value is not a number: a decimal such as "
				 "12, -0.5 or 1.5e+06, or NaN, +Inf, -Inf (the line reads "
				 "'b{x=\"\\x01\"} z')");
}

static void test_iterator(void **state)
{
	static const char text[] = "# TYPE x gauge\nx{a=\"1\"} 1\nbroken\nx 3\n";
	struct bl_promtext_iter it;
	struct bl_promtext_sample s;
	char err[256], err2[256];

	(void)state;
	bl_promtext_iter_init(&it, text, strlen(text));
	assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_SAMPLE);
	assert_int_equal(s.line, 2);
	assert_int_equal(s.name_len, 1);
	assert_memory_equal(s.name, "x", 1);
	assert_int_equal(s.labels_len, 5);
	assert_memory_equal(s.labels, "a=\"1\"", 5);
	assert_false(s.has_timestamp);
	assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "line 3, column 7"));
	/* The cursor stays on the bad line. */
	assert_int_equal(bl_promtext_next(&it, &s, err2, sizeof err2), BL_EINVAL);
	assert_string_equal(err, err2);
	/* err may be NULL, and a short buffer is truncated, NUL-terminated. */
	assert_int_equal(bl_promtext_next(&it, &s, NULL, 0), BL_EINVAL);
	assert_int_equal(bl_promtext_next(&it, &s, err2, 8), BL_EINVAL);
	assert_string_equal(err2, "line 3,");
	/* No braces: labels NULL, and any matcher for "" holds. */
	bl_promtext_iter_init(&it, "y 1\n", 4);
	assert_int_equal(bl_promtext_next(&it, &s, err, sizeof err), BL_PROMTEXT_SAMPLE);
	assert_null(s.labels);
	assert_true(bl_promtext_matches(&s, (const struct bl_promtext_match[]){{"a", ""}}, 1));
	assert_false(bl_promtext_matches(&s, (const struct bl_promtext_match[]){{"a", "1"}}, 1));
	assert_true(bl_promtext_matches(&s, NULL, 0));
}

static void test_repeated_label(void **state)
{
	const struct bl_promtext_match first[] = {{"a", "1"}};
	const struct bl_promtext_match second[] = {{"a", "2"}};
	char err[256];
	double v;
	size_t n;

	(void)state;
	assert_int_equal(sum("m{a=\"1\",a=\"2\"} 5\n", "m", first, 1, &v, &n, err), 0);
	assert_int_equal(sum("m{a=\"1\",a=\"2\"} 5\n", "m", second, 1, &v, &n, err), BL_ENOENT);
}

static void test_invalid_arguments(void **state)
{
	const struct bl_promtext_match null_value[] = {{"a", NULL}};
	char err[256];
	double v;

	(void)state;
	assert_int_equal(bl_promtext_sum("a 1\n", 4, NULL, NULL, 0, &v, NULL, err, sizeof err),
			 BL_EINVAL);
	assert_int_equal(bl_promtext_sum("a 1\n", 4, "a", NULL, 0, NULL, NULL, err, sizeof err),
			 BL_EINVAL);
	assert_int_equal(bl_promtext_sum("a 1\n", 4, "a", NULL, 1, &v, NULL, err, sizeof err),
			 BL_EINVAL);
	assert_int_equal(bl_promtext_sum(NULL, 4, "a", NULL, 0, &v, NULL, err, sizeof err),
			 BL_EINVAL);
	assert_int_equal(bl_promtext_sum("a 1\n", 4, "a", null_value, 1, &v, NULL, err, sizeof err),
			 BL_EINVAL);
	/* n_series and err may be NULL. */
	assert_int_equal(bl_promtext_sum("a 1\n", 4, "a", NULL, 0, &v, NULL, NULL, 0), 0);
	assert_true(v == 1.0);
}

/* Only the bytes given are read: the text is cut at every length, in an
 * exactly sized heap copy, so AddressSanitizer sees any read past it. */
static void test_every_prefix(void **state)
{
	size_t len = sizeof vllm - 1;

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		char *copy = malloc(cut ? cut : 1);
		double v;
		int rc;

		assert_non_null(copy);
		memcpy(copy, vllm, cut);
		rc = bl_promtext_sum(copy, cut, "vllm:num_requests_waiting", NULL, 0, &v, NULL, NULL,
				     0);
		assert_true(rc == 0 || rc == BL_ENOENT || rc == BL_EINVAL);
		free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vllm),
		cmocka_unit_test(test_label_matchers),
		cmocka_unit_test(test_escapes_and_spacing),
		cmocka_unit_test(test_crlf_and_last_line),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_special_values),
		cmocka_unit_test(test_timestamps),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_iterator),
		cmocka_unit_test(test_repeated_label),
		cmocka_unit_test(test_invalid_arguments),
		cmocka_unit_test(test_every_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
