#include "jsonreq.h"

#include <stdarg.h>
#include <stdio.h>
#include <math.h>
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

/* ---- the fast path: a flat object scanned in place ---------------------- */

static size_t skip_ws(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* A string with no escape, control or non-ASCII byte, starting after its
 * opening quote at i. Returns the index of the closing quote, or 0. */
static size_t plain_string(const char *s, size_t i, size_t len)
{
	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"')
			return i;
		if (c == '\\' || c < 0x20 || c >= 0x80)
			return 0;
	}
	return 0;
}

/* Scans a flat object of plain strings, integers, booleans and nulls. Returns
 * false for anything else, without having changed body. */
static bool scan_flat(char *s, size_t len, struct bl_json_fields *out)
{
	size_t ends[2 * BL_JSON_FIELDS_MAX], n_ends = 0, i = skip_ws(s, 0, len);

	out->n = 0;
	if (i == len || s[i] != '{')
		return false;
	i = skip_ws(s, i + 1, len);
	if (i < len && s[i] == '}')
		return skip_ws(s, i + 1, len) == len;
	for (;;) {
		struct bl_json_field *f;
		size_t end;

		if (out->n == BL_JSON_FIELDS_MAX || i == len || s[i] != '"')
			return false;
		end = plain_string(s, i + 1, len);
		if (!end)
			return false;
		f = &out->f[out->n];
		*f = (struct bl_json_field){.key = s + i + 1};
		for (size_t k = 0; k < out->n; k++) /* duplicates: jansson words the error */
			if ((size_t)(ends[2 * k] - (size_t)(out->f[k].key - s)) == end - i - 1 &&
			    memcmp(out->f[k].key, f->key, end - i - 1) == 0)
				return false;
		ends[n_ends++] = end;
		i = skip_ws(s, end + 1, len);
		if (i == len || s[i] != ':')
			return false;
		i = skip_ws(s, i + 1, len);
		if (i == len)
			return false;
		if (s[i] == '"') {
			end = plain_string(s, i + 1, len);
			if (!end)
				return false;
			f->type = JSON_STRING;
			f->str = s + i + 1;
			f->str_len = end - i - 1;
			ends[n_ends++] = end;
			i = end + 1;
		} else if (len - i >= 4 && memcmp(s + i, "true", 4) == 0) {
			f->type = JSON_TRUE;
			ends[n_ends++] = SIZE_MAX;
			i += 4;
		} else if (len - i >= 5 && memcmp(s + i, "false", 5) == 0) {
			f->type = JSON_FALSE;
			ends[n_ends++] = SIZE_MAX;
			i += 5;
		} else if (len - i >= 4 && memcmp(s + i, "null", 4) == 0) {
			f->type = JSON_NULL;
			ends[n_ends++] = SIZE_MAX;
			i += 4;
		} else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
			bool neg = s[i] == '-';
			uint64_t v = 0;
			size_t start;

			i += neg;
			start = i;
			while (i < len && s[i] >= '0' && s[i] <= '9') {
				if (v > (UINT64_C(1) << 62) / 10)
					return false; /* large: let jansson judge it */
				v = v * 10 + (uint64_t)(s[i] - '0');
				i++;
			}
			if (i == start || (s[start] == '0' && i - start > 1) ||
			    (i < len && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')))
				return false;
			f->type = JSON_INTEGER;
			f->num = neg ? -(int64_t)v : (int64_t)v;
			ends[n_ends++] = SIZE_MAX;
		} else {
			return false; /* objects, arrays, garbage */
		}
		out->n++;
		i = skip_ws(s, i, len);
		if (i < len && s[i] == ',') {
			i = skip_ws(s, i + 1, len);
			continue;
		}
		if (i < len && s[i] == '}' && skip_ws(s, i + 1, len) == len)
			break;
		return false;
	}
	/* Accepted: only now terminate keys and strings in place. */
	for (size_t k = 0; k < n_ends; k++)
		if (ends[k] != SIZE_MAX)
			s[ends[k]] = '\0';
	return true;
}

int bl_json_fields_decode(char *body, size_t len, bool empty_ok, struct bl_json_fields *out,
			  struct bl_json_error *err)
{
	const char *key;
	json_t *v;

	out->n = 0;
	out->doc = NULL;
	if (scan_flat(body, len, out))
		return 0;
	out->n = 0;
	out->doc = bl_json_decode_object(body, len, empty_ok, err);
	if (!out->doc)
		return -1;
	if (json_object_size(out->doc) > BL_JSON_FIELDS_MAX) {
		set_err(err, "invalid_field", 0, "the request has %zu fields; at most %d are accepted",
			json_object_size(out->doc), BL_JSON_FIELDS_MAX);
		bl_json_fields_cleanup(out);
		return -1;
	}
	json_object_foreach(out->doc, key, v) {
		struct bl_json_field *f = &out->f[out->n++];

		*f = (struct bl_json_field){.key = key, .type = json_typeof(v), .value = v};
		if (json_is_string(v)) {
			f->str = json_string_value(v);
			f->str_len = json_string_length(v);
		} else if (json_is_integer(v)) {
			f->num = json_integer_value(v);
		}
	}
	return 0;
}

void bl_json_fields_cleanup(struct bl_json_fields *fields)
{
	json_decref(fields->doc);
	fields->doc = NULL;
	fields->n = 0;
}

static const struct bl_json_field *field(const struct bl_json_fields *obj, const char *key)
{
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->f[i].key, key) == 0)
			return &obj->f[i];
	return NULL;
}

bool bl_json_has(const struct bl_json_fields *obj, const char *key)
{
	return field(obj, key) != NULL;
}

bool bl_json_only_keys(const struct bl_json_fields *obj, const char *const *allowed,
		       struct bl_json_error *err)
{
	for (size_t i = 0; i < obj->n; i++) {
		const char *key = obj->f[i].key;
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

int bl_json_get_bool(const struct bl_json_fields *obj, const char *key, bool *out,
		     struct bl_json_error *err)
{
	const struct bl_json_field *f = field(obj, key);

	if (!f || f->type == JSON_NULL)
		return 1;
	if (f->type != JSON_TRUE && f->type != JSON_FALSE) {
		set_err(err, "invalid_field", 0, "field '%s' must be true or false", key);
		return -1;
	}
	*out = f->type == JSON_TRUE;
	return 0;
}

int bl_json_get_string(const struct bl_json_fields *obj, const char *key, size_t max_len,
		       const char **out, struct bl_json_error *err)
{
	const struct bl_json_field *f = field(obj, key);

	if (!f || f->type == JSON_NULL)
		return 1;
	if (f->type != JSON_STRING) {
		set_err(err, "invalid_field", 0, "field '%s' must be a string", key);
		return -1;
	}
	if (f->str_len == 0 || f->str_len > max_len || strlen(f->str) != f->str_len) {
		set_err(err, "invalid_field", 0,
			"field '%s' must be a non-empty string of at most %zu bytes without NUL", key,
			max_len);
		return -1;
	}
	*out = f->str;
	return 0;
}

int bl_json_get_int(const struct bl_json_fields *obj, const char *key, int64_t min, int64_t max,
		    int64_t *out, struct bl_json_error *err)
{
	const struct bl_json_field *f = field(obj, key);

	if (!f || f->type == JSON_NULL)
		return 1;
	if (f->type != JSON_INTEGER || f->num < min || f->num > max) {
		set_err(err, "invalid_field", 0, "field '%s' must be an integer in %lld..%lld", key,
			(long long)min, (long long)max);
		return -1;
	}
	*out = f->num;
	return 0;
}

int bl_json_get_double(const struct bl_json_fields *obj, const char *key, double min, double max,
		       double *out, struct bl_json_error *err)
{
	const struct bl_json_field *f = field(obj, key);
	double v;

	if (!f || f->type == JSON_NULL)
		return 1;
	if (f->type == JSON_INTEGER)
		v = (double)f->num;
	else if (f->type == JSON_REAL)
		v = json_real_value(f->value);
	else
		v = NAN;
	if (!(v >= min && v <= max)) {
		set_err(err, "invalid_field", 0, "field '%s' must be a number in %g..%g", key, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int bl_json_get_object(const struct bl_json_fields *obj, const char *key, json_t **out,
		       struct bl_json_error *err)
{
	const struct bl_json_field *f = field(obj, key);

	if (!f || f->type == JSON_NULL)
		return 1;
	if (f->type != JSON_OBJECT) {
		set_err(err, "invalid_field", 0, "field '%s' must be an object", key);
		return -1;
	}
	*out = f->value;
	return 0;
}
