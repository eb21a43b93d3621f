/* Decoding JSON request bodies: bounded, strict, and with errors a client
 * can act on (what was wrong and the byte offset where).
 *
 * Request bodies are small flat objects ({"budget":"a","tokens":1200}), read
 * on the hot path. bl_json_fields_decode scans such a body in place without
 * allocating; anything else (escapes, nesting, reals, non-ASCII, errors) goes
 * through jansson, which also words the errors. Either way the handler reads
 * the same struct bl_json_fields.
 */
#ifndef BALLAST_JSONREQ_H
#define BALLAST_JSONREQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays and objects accepted in a request body. */
#define BL_JSON_MAX_DEPTH 32

/* Most members a request object may have. */
#define BL_JSON_FIELDS_MAX 32

struct bl_json_error {
	char code[32];     /* "malformed_json", "too_deep", "not_an_object", "invalid_field" */
	char message[256]; /* for a person: what, where, what is accepted */
	size_t offset;     /* byte offset of the problem, when known */
};

/* One member of the request object. */
struct bl_json_field {
	const char *key;   /* NUL-terminated */
	json_type type;    /* JSON_STRING, JSON_INTEGER, JSON_TRUE, JSON_FALSE, JSON_NULL,
			      JSON_REAL, JSON_OBJECT or JSON_ARRAY */
	const char *str;   /* JSON_STRING: the value, NUL-terminated */
	size_t str_len;    /* its length (may differ from strlen if it holds NUL) */
	int64_t num;       /* JSON_INTEGER: the value */
	json_t *value;     /* objects and arrays (and everything when decoded by jansson) */
};

/* A decoded request object. */
struct bl_json_fields {
	struct bl_json_field f[BL_JSON_FIELDS_MAX]; /* members, in body order */
	size_t n;                                   /* members used */
	json_t *doc;                                /* jansson's tree when it was used, else NULL */
};

/* Decodes len bytes of body as one JSON object into *out. An empty body (or
 * only whitespace) is an empty object when empty_ok. Duplicate keys, nesting
 * deeper than BL_JSON_MAX_DEPTH, NUL bytes, trailing garbage and more than
 * BL_JSON_FIELDS_MAX members are refused. body must be writable and stay
 * alive while *out is used: the fast path NUL-terminates strings in place.
 * Returns 0, or -1 with *err filled in (out is then empty). Release with
 * bl_json_fields_cleanup either way. */
int bl_json_fields_decode(char *body, size_t len, bool empty_ok, struct bl_json_fields *out,
			  struct bl_json_error *err);

/* Frees what decoding kept. */
void bl_json_fields_cleanup(struct bl_json_fields *fields);

/* Decodes len bytes as one JSON object with jansson (the slow path above).
 * Returns the object (caller owns it) or NULL with *err filled in. */
json_t *bl_json_decode_object(const char *body, size_t len, bool empty_ok,
			      struct bl_json_error *err);

/* Checks that the object has only keys named in allowed (NULL-terminated). On
 * an unknown key returns false with err naming it and listing what is accepted. */
bool bl_json_only_keys(const struct bl_json_fields *obj, const char *const *allowed,
		       struct bl_json_error *err);

/* True if key is present (null included). */
bool bl_json_has(const struct bl_json_fields *obj, const char *key);

/* Field readers. Each returns 0 and stores the value, 1 when the field is
 * absent or null (out untouched), or -1 with err saying which field is wrong,
 * what it was and what is accepted. */
int bl_json_get_bool(const struct bl_json_fields *obj, const char *key, bool *out,
		     struct bl_json_error *err);
int bl_json_get_string(const struct bl_json_fields *obj, const char *key, size_t max_len,
		       const char **out, struct bl_json_error *err);
int bl_json_get_int(const struct bl_json_fields *obj, const char *key, int64_t min, int64_t max,
		    int64_t *out, struct bl_json_error *err);
/* A number (integer or not) in min..max. */
int bl_json_get_double(const struct bl_json_fields *obj, const char *key, double min, double max,
		       double *out, struct bl_json_error *err);
/* An object member; *out is borrowed from obj. */
int bl_json_get_object(const struct bl_json_fields *obj, const char *key, json_t **out,
		       struct bl_json_error *err);

#endif
