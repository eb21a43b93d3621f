#include "jsonreq.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(struct bl_json_error *err, const char *code, size_t offset, const char *fmt,
		    ...) __attribute__((format(printf, 4, 5)));

static void set_err(struct bl_json_error *err, const char *code, size_t offset, const char *fmt,
		    ...)
{
	va_list ap;

	snprintf(err->code, sizeof err->code, "%s", code);
	err->offset = offset;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
}

/* Finds how deep arrays and objects nest, outside strings, without parsing:
 * jansson recurses, so depth is bounded before it sees the text. Returns the
 * offset of the first bracket past max_depth, or len when within it. */
static size_t depth_exceeded_at(const char *s, size_t len, int max_depth)
{
	int depth = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max_depth)
				return i;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return len;
}

json_t *bl_json_decode_object(const char *body, size_t len, bool empty_ok,
			      struct bl_json_error *err)
{
	json_error_t jerr;
	json_t *doc;
	size_t i, at;

	for (i = 0; i < len; i++)
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n')
			break;
	if (i == len) {
		if (empty_ok)
			return json_object();
		set_err(err, "malformed_json", 0, "the request body is empty; a JSON object is expected");
		return NULL;
	}
	if (memchr(body, '\0', len)) {
		at = (size_t)((const char *)memchr(body, '\0', len) - body);
		set_err(err, "malformed_json", at, "malformed JSON at byte %zu: NUL byte", at);
		return NULL;
	}
	at = depth_exceeded_at(body, len, BL_JSON_MAX_DEPTH);
	if (at < len) {
		set_err(err, "too_deep", at,
			"JSON nests deeper than %d levels at byte %zu", BL_JSON_MAX_DEPTH, at);
		return NULL;
	}
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		at = jerr.position > 0 ? (size_t)jerr.position : 0;
		set_err(err, "malformed_json", at, "malformed JSON at byte %zu (line %d, column %d): %s",
			at, jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		set_err(err, "not_an_object", i, "the request body must be a JSON object");
		return NULL;
	}
	return doc;
}

bool bl_json_only_keys(json_t *obj, const char *const *allowed, struct bl_json_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		bool ok = false;
		char list[200];
		size_t n = 0;

		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = true;
		if (ok)
			continue;
		list[0] = '\0';
		for (const char *const *a = allowed; *a && n < sizeof list; a++)
			n += (size_t)snprintf(list + n, sizeof list - n, "%s%s",
					      a == allowed ? "" : ", ", *a);
		set_err(err, "invalid_field", 0, "unknown field '%.64s'; accepted: %s", key,
			*allowed ? list : "none");
		return false;
	}
	return true;
}

int bl_json_get_bool(json_t *obj, const char *key, bool *out, struct bl_json_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 1;
	if (!json_is_boolean(v)) {
		set_err(err, "invalid_field", 0, "field '%s' must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int bl_json_get_string(json_t *obj, const char *key, size_t max_len, const char **out,
		       struct bl_json_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 1;
	if (!json_is_string(v)) {
		set_err(err, "invalid_field", 0, "field '%s' must be a string", key);
		return -1;
	}
	if (json_string_length(v) == 0 || json_string_length(v) > max_len ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		set_err(err, "invalid_field", 0,
			"field '%s' must be a non-empty string of at most %zu bytes without NUL", key,
			max_len);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int bl_json_get_int(json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out,
		    struct bl_json_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 1;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		set_err(err, "invalid_field", 0, "field '%s' must be an integer in %lld..%lld", key,
			(long long)min, (long long)max);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}
