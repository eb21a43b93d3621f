/* Decoding JSON request bodies: bounded, strict, and with errors a client
 * can act on (what was wrong and the byte offset where).
 */
#ifndef BALLAST_JSONREQ_H
#define BALLAST_JSONREQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays and objects accepted in a request body. */
#define BL_JSON_MAX_DEPTH 32

struct bl_json_error {
	char code[32];     /* "malformed_json", "too_deep", "not_an_object", "invalid_field" */
	char message[256]; /* for a person: what, where, what is accepted */
	size_t offset;     /* byte offset of the problem, when known */
};

/* Decodes len bytes of body as one JSON object. An empty body (or only
 * whitespace) gives an empty object when empty_ok. Duplicate keys, nesting
 * deeper than BL_JSON_MAX_DEPTH, NUL bytes and trailing garbage are refused.
 * Returns the object (caller owns it) or NULL with *err filled in. */
json_t *bl_json_decode_object(const char *body, size_t len, bool empty_ok,
			      struct bl_json_error *err);

/* Checks that obj has only keys named in allowed (NULL-terminated). On an
 * unknown key returns false with err naming it and listing what is accepted. */
bool bl_json_only_keys(json_t *obj, const char *const *allowed, struct bl_json_error *err);

/* Field readers. Each returns 0 and stores the value, 1 when the field is
 * absent or null (out untouched), or -1 with err saying which field is wrong,
 * what it was and what is accepted. */
int bl_json_get_bool(json_t *obj, const char *key, bool *out, struct bl_json_error *err);
int bl_json_get_string(json_t *obj, const char *key, size_t max_len, const char **out,
		       struct bl_json_error *err);
int bl_json_get_int(json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out,
		    struct bl_json_error *err);

#endif
