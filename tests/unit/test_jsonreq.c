/* Request body decoding: the in-place fast path and the jansson fallback must
 * read every body the same way, and refuse the same bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonreq.h"

/* Decodes text (copied: decoding writes into it) and returns 0 or -1. */
static int decode(const char *text, struct bl_json_fields *f, struct bl_json_error *e, char **keep)
{
	size_t len = strlen(text);

	*keep = malloc(len + 1);
	memcpy(*keep, text, len + 1);
	return bl_json_fields_decode(*keep, len, true, f, e);
}

static void test_same_reading_both_paths(void **state)
{
	static const char *bodies[] = {
		"{\"budget\":\"anthropic\",\"tokens\":1200,\"tenant\":\"agent-17\",\"wait_ms\":2000}",
		" { \"a\" : 1 , \"b\" : -2 , \"c\" : true , \"d\" : false , \"e\" : null } \n",
		"{}",
		"{\"big\":4611686018427387904}",     /* past the fast path's range: fallback */
		"{\"esc\":\"a\\\"b\\u00e9\"}",        /* escapes: fallback */
		"{\"real\":1.5,\"exp\":1e3}",          /* reals: fallback */
		"{\"nested\":{\"x\":\"y\"},\"n\":1}",  /* objects: fallback */
		"{\"utf8\":\"\xc3\xa9t\xc3\xa9\"}",     /* non-ASCII: fallback */
		"{\"zero\":0,\"neg\":-0}",
	};
	(void)state;

	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		struct bl_json_fields f;
		struct bl_json_error e;
		json_error_t je;
		char *buf;
		json_t *ref = json_loads(bodies[i], JSON_REJECT_DUPLICATES, &je);

		assert_non_null(ref);
		assert_int_equal(decode(bodies[i], &f, &e, &buf), 0);
		assert_int_equal(f.n, json_object_size(ref));
		for (size_t k = 0; k < f.n; k++) {
			json_t *v = json_object_get(ref, f.f[k].key);

			assert_non_null(v);
			assert_int_equal(json_typeof(v), f.f[k].type);
			if (json_is_integer(v))
				assert_int_equal(json_integer_value(v), f.f[k].num);
			if (json_is_string(v)) {
				assert_int_equal(json_string_length(v), f.f[k].str_len);
				assert_memory_equal(json_string_value(v), f.f[k].str, f.f[k].str_len);
			}
		}
		bl_json_fields_cleanup(&f);
		json_decref(ref);
		free(buf);
	}
}

static void test_fast_path_allocates_nothing(void **state)
{
	struct bl_json_fields f;
	struct bl_json_error e;
	char *buf;
	const char *s;
	int64_t n;
	(void)state;

	assert_int_equal(decode("{\"budget\":\"a\",\"tokens\":7}", &f, &e, &buf), 0);
	assert_null(f.doc); /* scanned in place */
	assert_int_equal(bl_json_get_string(&f, "budget", 64, &s, &e), 0);
	assert_string_equal(s, "a");
	assert_int_equal(bl_json_get_int(&f, "tokens", 0, 10, &n, &e), 0);
	assert_int_equal(n, 7);
	assert_int_equal(bl_json_get_int(&f, "tokens", 0, 5, &n, &e), -1);
	assert_non_null(strstr(e.message, "tokens"));
	assert_int_equal(bl_json_get_int(&f, "absent", 0, 5, &n, &e), 1);
	assert_int_equal(bl_json_get_string(&f, "tokens", 64, &s, &e), -1);
	bl_json_fields_cleanup(&f);
	free(buf);
}

static void test_refusals(void **state)
{
	static const struct {
		const char *body;
		const char *code;
		size_t offset; /* SIZE_MAX: not checked */
	} cases[] = {
		{"{\"dry_run\": tru}", "malformed_json", 15},
		{"{\"a\":1,\"a\":2}", "malformed_json", SIZE_MAX},
		{"[1,2]", "not_an_object", SIZE_MAX},
		{"{\"a\":1} x", "malformed_json", SIZE_MAX},
		{"{\"a\":01}", "malformed_json", SIZE_MAX},
		{"{\"a\":-}", "malformed_json", SIZE_MAX},
		{"{\"a\":1,}", "malformed_json", SIZE_MAX},
		{"{\"a\"1}", "malformed_json", SIZE_MAX},
		{"{\"a\":\"x", "malformed_json", SIZE_MAX},
		{"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "too_deep", 32},
	};
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct bl_json_fields f;
		struct bl_json_error e;
		char *buf;

		assert_int_equal(decode(cases[i].body, &f, &e, &buf), -1);
		assert_string_equal(e.code, cases[i].code);
		if (cases[i].offset != SIZE_MAX)
			assert_int_equal(e.offset, cases[i].offset);
		assert_int_equal(f.n, 0);
		bl_json_fields_cleanup(&f);
		free(buf);
	}
}

static void test_a_failed_fast_scan_leaves_the_body_intact(void **state)
{
	/* The fast path gives up at the nested value after seeing plain strings:
	 * it must not have NUL-terminated them, or jansson would read garbage. */
	struct bl_json_fields f;
	struct bl_json_error e;
	char *buf;
	const char *s;
	json_t *o;
	(void)state;

	assert_int_equal(decode("{\"lease\":\"abc\",\"provider_headers\":{\"retry-after\":\"2\"}}", &f,
				&e, &buf),
			 0);
	assert_non_null(f.doc);
	assert_int_equal(bl_json_get_string(&f, "lease", 64, &s, &e), 0);
	assert_string_equal(s, "abc");
	assert_int_equal(bl_json_get_object(&f, "provider_headers", &o, &e), 0);
	assert_string_equal(json_string_value(json_object_get(o, "retry-after")), "2");
	bl_json_fields_cleanup(&f);
	free(buf);
}

static void test_only_keys_and_limits(void **state)
{
	static const char *const allowed[] = {"a", "b", NULL};
	struct bl_json_fields f;
	struct bl_json_error e;
	char *buf, big[4096];
	size_t n = 0;
	(void)state;

	assert_int_equal(decode("{\"a\":1,\"c\":2}", &f, &e, &buf), 0);
	assert_false(bl_json_only_keys(&f, allowed, &e));
	assert_non_null(strstr(e.message, "'c'"));
	assert_non_null(strstr(e.message, "a, b"));
	bl_json_fields_cleanup(&f);
	free(buf);
	/* more members than BL_JSON_FIELDS_MAX: refused on both paths */
	n += (size_t)snprintf(big + n, sizeof big - n, "{");
	for (int i = 0; i <= BL_JSON_FIELDS_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "", i, i);
	snprintf(big + n, sizeof big - n, "}");
	assert_int_equal(decode(big, &f, &e, &buf), -1);
	assert_string_equal(e.code, "invalid_field");
	bl_json_fields_cleanup(&f);
	free(buf);
	/* an empty body is {} when allowed */
	assert_int_equal(decode("  ", &f, &e, &buf), 0);
	assert_int_equal(f.n, 0);
	bl_json_fields_cleanup(&f);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_reading_both_paths),
		cmocka_unit_test(test_fast_path_allocates_nothing),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_a_failed_fast_scan_leaves_the_body_intact),
		cmocka_unit_test(test_only_keys_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
