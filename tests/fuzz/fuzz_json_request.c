/* libFuzzer target: the JSON request decoder every POST body goes through,
 * both its in-place fast path and the jansson fallback. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the in-place fast path accepted, jansson must read the same way. */
static void check_against_jansson(const uint8_t *data, size_t size, const struct bl_json_fields *f)
{
	json_error_t je;
	json_t *ref = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);

	if (!json_is_object(ref) || json_object_size(ref) != f->n)
		abort();
	for (size_t i = 0; i < f->n; i++) {
		json_t *v = json_object_get(ref, f->f[i].key);

		if (!v || json_typeof(v) != f->f[i].type)
			abort();
		if (json_is_integer(v) && json_integer_value(v) != f->f[i].num)
			abort();
		if (json_is_string(v) && (json_string_length(v) != f->f[i].str_len ||
					  memcmp(json_string_value(v), f->f[i].str, f->f[i].str_len)))
			abort();
	}
	json_decref(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const allowed[] = {"budget", "tokens", "dry_run", NULL};
	struct bl_json_error err;
	struct bl_json_fields f;
	char *body = malloc(size + 1); /* exact size: ASan sees any overread */
	const char *s;
	json_t *o;
	int64_t n;
	bool b;

	if (!body)
		return 0;
	memcpy(body, data, size);
	body[size] = '\0';
	if (bl_json_fields_decode(body, size, true, &f, &err) == 0) {
		(void)bl_json_only_keys(&f, allowed, &err);
		if (bl_json_get_string(&f, "budget", 128, &s, &err) == 0 && strlen(s) > 128)
			abort();
		(void)bl_json_get_int(&f, "tokens", 0, 1000000, &n, &err);
		(void)bl_json_get_bool(&f, "dry_run", &b, &err);
		(void)bl_json_get_object(&f, "provider_headers", &o, &err);
		for (size_t i = 0; i < f.n; i++)
			if (f.f[i].type == JSON_STRING && f.f[i].str[f.f[i].str_len] != '\0')
				abort();
		if (!f.doc)
			check_against_jansson(data, size, &f);
	}
	bl_json_fields_cleanup(&f);
	free(body);
	return 0;
}
