/* What-if autoscaling plans: the JSON request to bl_planner_plan and back.
 * See plan.h and docs/autoscaler.md (the schema, with examples). */
#include "plan.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/planner.h"
#include "jsonreq.h"

/* Longest "name" of a target or a budget, in bytes (it shows in reasons). */
#define NAME_MAX_BYTES 64
/* Most entries in each history array. */
#define HISTORY_ITEMS_MAX 4096
/* Most demand samples. */
#define SAMPLES_MAX 1000000
/* Scratch allocations one plan keeps track of. */
#define ALLOCS_MAX (4 * BL_PLANNER_MAX_METRICS + 8)
/* Bytes of the reason line. */
#define REASON_MAX 4096
/* Longest window or period of the burst settings, in seconds. */
#define PANIC_WINDOW_MAX_S 3600.0

/* ---- errors ------------------------------------------------------------------ */

struct plan_error {
	int status;            /* HTTP status: 400, 422, 503 */
	const char *code;      /* "invalid_field", "cannot_plan", "overloaded" */
	char path[512];        /* JSON path of the problem, "" when none */
	char message[1400];    /* for a person: what, where, what is accepted */
};

/* Where the parser is in the request, for messages: "targets[1].pods[2]". */
struct ctx {
	char path[512];
	size_t len;
	struct plan_error *e;
};

/* Drops what is not valid UTF-8 (a sequence cut by truncation) from s, in
 * place, so that a message always makes a JSON string. */
static void utf8_clean(char *s)
{
	unsigned char *r = (unsigned char *)s, *w = r;

	while (*r) {
		unsigned char c = *r;
		size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
					: (c & 0xF8) == 0xF0 ? 4 : 0;
		size_t k = 1;

		while (n > 1 && k < n && (r[k] & 0xC0) == 0x80)
			k++;
		if (n == 0 || k < n) { /* a stray byte, or a sequence cut short */
			r += n == 0 ? 1 : k;
			continue;
		}
		memmove(w, r, n);
		w += n;
		r += n;
	}
	*w = '\0';
}

static size_t enter_key(struct ctx *c, const char *key)
{
	size_t old = c->len;
	int n = snprintf(c->path + c->len, sizeof c->path - c->len, "%s%s", c->len ? "." : "", key);

	if (n > 0)
		c->len += (size_t)n < sizeof c->path - c->len ? (size_t)n : sizeof c->path - c->len - 1;
	return old;
}

static size_t enter_index(struct ctx *c, size_t i)
{
	size_t old = c->len;
	int n = snprintf(c->path + c->len, sizeof c->path - c->len, "[%zu]", i);

	if (n > 0)
		c->len += (size_t)n < sizeof c->path - c->len ? (size_t)n : sizeof c->path - c->len - 1;
	return old;
}

static void leave(struct ctx *c, size_t old)
{
	c->len = old;
	c->path[old] = '\0';
}

static int bad(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A 400 for the current path: "<path>: <what>". Returns BL_EINVAL. */
static int bad(struct ctx *c, const char *fmt, ...)
{
	struct plan_error *e = c->e;
	char what[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	e->status = 400;
	e->code = "invalid_field";
	snprintf(e->path, sizeof e->path, "%s", c->path);
	if (c->len)
		snprintf(e->message, sizeof e->message, "%s: %s", c->path, what);
	else
		snprintf(e->message, sizeof e->message, "%s", what);
	return BL_EINVAL;
}

/* What a value was, for "must be …, not <this>". */
static const char *describe(const json_t *v, char *buf, size_t cap)
{
	switch (json_typeof(v)) {
	case JSON_STRING: {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);

		if (n > 40) { /* cut at a character boundary */
			n = 40;
			while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
				n--;
			snprintf(buf, cap, "the string \"%.*s…\"", (int)n, s);
		} else {
			snprintf(buf, cap, "the string \"%.*s\"", (int)n, s);
		}
		break;
	}
	case JSON_INTEGER:
		snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(buf, cap, "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
		snprintf(buf, cap, "true");
		break;
	case JSON_FALSE:
		snprintf(buf, cap, "false");
		break;
	case JSON_NULL:
		snprintf(buf, cap, "null");
		break;
	case JSON_OBJECT:
		snprintf(buf, cap, "an object");
		break;
	default:
		snprintf(buf, cap, "an array");
	}
	return buf;
}

/* "<path>.<key>: must be <accepted>, not <v>". */
static int bad_value(struct ctx *c, const char *key, const json_t *v, const char *accepted)
{
	char what[80];
	size_t old = key ? enter_key(c, key) : c->len;
	int rc = bad(c, "must be %s, not %s", accepted, describe(v, what, sizeof what));

	leave(c, old);
	return rc;
}

static int missing(struct ctx *c, const char *key, const char *accepted)
{
	size_t old = enter_key(c, key);
	int rc = bad(c, "is required: %s", accepted);

	leave(c, old);
	return rc;
}

/* Refuses a member of obj not named in allowed (NULL-terminated). */
static int only_keys(struct ctx *c, const json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		char list[512], k[80];
		size_t n = 0, old;
		bool ok = false;
		int rc;

		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = true;
		if (ok)
			continue;
		list[0] = '\0';
		for (const char *const *a = allowed; *a && n < sizeof list; a++)
			n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", a == allowed ? "" : ", ", *a);
		snprintf(k, sizeof k, "%.64s", key);
		utf8_clean(k);
		/* The message is at the object ("pods[0]: unknown field 'x'"), the
		 * path names the field itself ("pods[0].x"). */
		rc = bad(c, "unknown field '%s'; accepted: %s", k, list);
		old = enter_key(c, k);
		snprintf(c->e->path, sizeof c->e->path, "%s", c->path);
		leave(c, old);
		return rc;
	}
	return 0;
}

/* ---- field readers: 1 read, 0 absent or null, BL_EINVAL ------------------- */

/* True when obj has key with a value other than null (null means absent). */
static bool present(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return v && !json_is_null(v);
}

static int get_num(struct ctx *c, const json_t *obj, const char *key, bool required, double lo,
		   double hi, bool lo_open, const char *accepted, double *out)
{
	json_t *v = json_object_get(obj, key);
	double x;

	if (!v || json_is_null(v))
		return required ? missing(c, key, accepted) : 0;
	x = json_number_value(v);
	if (!json_is_number(v) || !(lo_open ? x > lo : x >= lo) || !(x <= hi))
		return bad_value(c, key, v, accepted);
	*out = x;
	return 1;
}

static int get_int(struct ctx *c, const json_t *obj, const char *key, bool required, int64_t lo,
		   int64_t hi, const char *accepted, int64_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return required ? missing(c, key, accepted) : 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return bad_value(c, key, v, accepted);
	*out = json_integer_value(v);
	return 1;
}

static int get_i32(struct ctx *c, const json_t *obj, const char *key, bool required, int32_t lo,
		   int32_t hi, const char *accepted, int32_t *out)
{
	int64_t x;
	int rc = get_int(c, obj, key, required, lo, hi, accepted, &x);

	if (rc == 1)
		*out = (int32_t)x;
	return rc;
}

static int get_bool(struct ctx *c, const json_t *obj, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return bad_value(c, key, v, "true or false");
	*out = json_is_true(v);
	return 1;
}

/* A string of 1..max bytes without NUL; *out is borrowed from obj. */
static int get_str(struct ctx *c, const json_t *obj, const char *key, bool required, size_t max,
		   const char *accepted, const char **out, size_t *len)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return required ? missing(c, key, accepted) : 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return bad_value(c, key, v, accepted);
	*out = json_string_value(v);
	if (len)
		*len = json_string_length(v);
	return 1;
}

/* An object or an array member: 1 with *out borrowed, 0 absent or null. */
static int get_typed(struct ctx *c, const json_t *obj, const char *key, bool required,
		     json_type type, const char *accepted, json_t **out)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return required ? missing(c, key, accepted) : 0;
	if (json_typeof(v) != type)
		return bad_value(c, key, v, accepted);
	*out = v;
	return 1;
}

/* A time in seconds relative to now; null or absent: unset (*has false). */
static int get_time(struct ctx *c, const json_t *obj, const char *key, bool *has, double *s)
{
	int rc = get_num(c, obj, key, false, -HUGE_VAL, HUGE_VAL, false,
			 "a number of seconds relative to now (negative: in the past) or null", s);

	if (rc < 0)
		return rc;
	*has = rc == 1;
	return 0;
}

/* Seconds relative to now (time 0) to nanoseconds, rounded, saturating. */
static bl_time_ns to_ns(double s)
{
	double ns = s * 1e9;

	if (ns >= 9223372036854775808.0)
		return INT64_MAX;
	if (ns <= -9223372036854775808.0)
		return INT64_MIN;
	return (bl_time_ns)llround(ns);
}

/* ---- the plan being built ------------------------------------------------------- */

/* A demand sample: value at t_s; idx keeps equal times in request order. */
struct timed {
	double t_s;
	double value;
	size_t idx;
};

enum target_type { T_RESOURCE, T_AVERAGE, T_DEMAND, T_FAILED };

static const char *const type_names[] = { "resource", "average", "demand", "failed" };

struct plan {
	const struct bl_alloc_hook *hook;
	struct { void *p; size_t bytes; } allocs[ALLOCS_MAX];
	size_t n_allocs;
	struct bl_planner_config cfg;
	struct bl_planner_input in;
	struct bl_planner_metric metrics[BL_PLANNER_MAX_METRICS];
	enum target_type types[BL_PLANNER_MAX_METRICS];
	bool behaviors;              /* stabilization and policies apply */
	bool has_budget;
	struct bl_planner_window window; /* the demand target's samples */
	struct timed *demand;        /* its samples by time, recorded once the burst
					settings are read */
	size_t demand_count;
	int demand_index;            /* the demand target, -1 when none */
	struct bl_planner_result result;
	char reason[REASON_MAX];
};

static void *plan_alloc(struct plan *p, size_t n, size_t size)
{
	void *m;

	if (n == 0)
		return NULL;
	if (n > SIZE_MAX / size || p->n_allocs == ALLOCS_MAX)
		return NULL;
	m = p->hook->malloc_fn(p->hook->ctx, n * size);
	if (!m)
		return NULL;
	memset(m, 0, n * size);
	p->allocs[p->n_allocs].p = m;
	p->allocs[p->n_allocs].bytes = n * size;
	p->n_allocs++;
	return m;
}

static void plan_free_all(struct plan *p)
{
	while (p->n_allocs > 0) {
		p->n_allocs--;
		p->hook->free_fn(p->hook->ctx, p->allocs[p->n_allocs].p, p->allocs[p->n_allocs].bytes);
	}
}

static int oom(struct ctx *c)
{
	c->e->status = 503;
	c->e->code = "overloaded";
	c->e->path[0] = '\0';
	snprintf(c->e->message, sizeof c->e->message, "out of memory while reading the plan");
	return BL_ENOMEM;
}

/* ---- pods and samples ------------------------------------------------------------ */

struct name_key {
	const char *s;
	size_t len;
	size_t idx;
};

static int name_key_cmp(const void *pa, const void *pb)
{
	const struct name_key *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int d = memcmp(a->s, b->s, n);

	if (d)
		return d;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Refuses a name given twice in an array, naming both places. */
static int check_unique(struct ctx *c, struct plan *p, struct name_key *k, size_t n,
			const char *what)
{
	(void)p;
	qsort(k, n, sizeof *k, name_key_cmp);
	for (size_t i = 1; i < n; i++) {
		if (k[i].len == k[i - 1].len && memcmp(k[i].s, k[i - 1].s, k[i].len) == 0) {
			char first[sizeof c->path + 24];
			size_t old;
			int rc;

			snprintf(first, sizeof first, "%s[%zu]", c->path, k[i - 1].idx);
			old = enter_index(c, k[i].idx);
			rc = bad(c, "%s \"%.64s\" is given twice (also at %s); %s", what, k[i].s, first,
				 strcmp(what, "pod") == 0 ? "pod names are unique"
							  : "one sample per pod");
			utf8_clean(c->e->message);
			leave(c, old);
			return rc;
		}
	}
	return 0;
}

static int parse_ready(struct ctx *c, const json_t *pod, enum bl_planner_ready *out)
{
	json_t *v = json_object_get(pod, "ready");
	const char *s;

	*out = BL_PLANNER_READY_NONE;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v) ? BL_PLANNER_READY_TRUE : BL_PLANNER_READY_FALSE;
		return 0;
	}
	s = json_is_string(v) ? json_string_value(v) : "";
	if (strcmp(s, "True") == 0)
		*out = BL_PLANNER_READY_TRUE;
	else if (strcmp(s, "False") == 0)
		*out = BL_PLANNER_READY_FALSE;
	else if (strcmp(s, "Unknown") == 0)
		*out = BL_PLANNER_READY_UNKNOWN;
	else
		return bad_value(c, "ready", v,
				 "true, false, null (no Ready condition) or \"Unknown\" (also \"True\", "
				 "\"False\")");
	return 0;
}

/* A pod's request for resource r: an integer, null, or {"cpu": …, "memory": …}. */
static int parse_request(struct ctx *c, const json_t *pod, enum bl_planner_resource r,
			 struct bl_planner_pod *out)
{
	static const char *const keys[] = { "cpu", "memory", NULL };
	static const char accepted[] =
		"an integer ≥ 0 or null (millicores for cpu, bytes for memory), or an object "
		"{\"cpu\": …, \"memory\": …} of those";
	json_t *v = json_object_get(pod, "request");
	size_t old;
	int64_t x;
	int rc;

	out->has_request = false;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return bad_value(c, "request", v, "an integer ≥ 0 or null");
		out->has_request = true;
		out->request = json_integer_value(v);
		return 0;
	}
	if (!json_is_object(v))
		return bad_value(c, "request", v, accepted);
	old = enter_key(c, "request");
	rc = only_keys(c, v, keys);
	if (!rc) { /* check both, use the one of r */
		for (size_t i = 0; keys[i] && !rc; i++) {
			rc = get_int(c, v, keys[i], false, 0, INT64_MAX, "an integer ≥ 0 or null", &x);
			if (rc == 1 && strcmp(keys[i], bl_planner_resource_name(r)) == 0) {
				out->has_request = true;
				out->request = x;
			}
			rc = rc < 0 ? rc : 0;
		}
	}
	leave(c, old);
	return rc;
}

static int parse_pod(struct ctx *c, const json_t *v, enum bl_planner_resource r,
		     struct bl_planner_pod *out)
{
	static const char *const keys[] = { "name", "phase", "ready", "deleting", "start_time_s",
					    "ready_transition_time_s", "request", NULL };
	const char *phase = "Running";
	size_t phase_len = 7;
	int rc;

	if (!json_is_object(v))
		return bad_value(c, NULL, v, "an object {\"name\": …, \"phase\": …, …}");
	if ((rc = only_keys(c, v, keys)) != 0)
		return rc;
	if ((rc = get_str(c, v, "name", true, BL_PLANNER_NAME_MAX, "a pod name of 1..1024 bytes",
			  &out->name, &out->name_len)) < 0)
		return rc;
	rc = get_str(c, v, "phase", false, 16,
		     "one of Pending, Running, Succeeded, Failed, Unknown", &phase, &phase_len);
	if (rc < 0)
		return rc;
	if (bl_planner_phase_parse(phase, phase_len, &out->phase) != 0)
		return bad_value(c, "phase", json_object_get(v, "phase"),
				 "one of Pending, Running, Succeeded, Failed, Unknown");
	if ((rc = parse_ready(c, v, &out->ready)) < 0)
		return rc;
	if ((rc = get_bool(c, v, "deleting", &out->deleting)) < 0)
		return rc;
	if ((rc = get_time(c, v, "start_time_s", &out->has_start_time, &out->start_time_s)) < 0)
		return rc;
	if ((rc = get_time(c, v, "ready_transition_time_s", &out->has_ready_transition,
			   &out->ready_transition_s)) < 0)
		return rc;
	return parse_request(c, v, r, out);
}

/* Reads the array of pods at `key` of obj for resource r. */
static int parse_pods(struct ctx *c, struct plan *p, const json_t *arr, enum bl_planner_resource r,
		      struct bl_planner_pod **out, size_t *count)
{
	size_t n = json_array_size(arr);
	struct bl_planner_pod *pods;
	struct name_key *keys;
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (n > BL_PLANNER_MAX_PODS)
		return bad(c, "%zu pods; at most %d", n, BL_PLANNER_MAX_PODS);
	if (n == 0)
		return 0;
	pods = plan_alloc(p, n, sizeof *pods);
	keys = plan_alloc(p, n, sizeof *keys);
	if (!pods || !keys)
		return oom(c);
	for (size_t i = 0; i < n && !rc; i++) {
		size_t old = enter_index(c, i);

		rc = parse_pod(c, json_array_get(arr, i), r, &pods[i]);
		leave(c, old);
		keys[i] = (struct name_key){ pods[i].name, pods[i].name_len, i };
	}
	if (!rc)
		rc = check_unique(c, p, keys, n, "pod");
	if (rc)
		return rc;
	*out = pods;
	*count = n;
	return 0;
}

static int parse_sample(struct ctx *c, const json_t *v, struct bl_planner_usage *out)
{
	static const char *const keys[] = { "pod", "usage", "timestamp_s", "window_s", NULL };
	int rc;

	if (!json_is_object(v))
		return bad_value(c, NULL, v, "an object {\"pod\": …, \"usage\": …, …}");
	if ((rc = only_keys(c, v, keys)) != 0)
		return rc;
	if ((rc = get_str(c, v, "pod", true, BL_PLANNER_NAME_MAX,
			  "the name of a pod of 1..1024 bytes", &out->pod, &out->pod_len)) < 0)
		return rc;
	if ((rc = get_int(c, v, "usage", true, 0, INT64_MAX,
			  "an integer ≥ 0 (millicores for cpu, bytes for memory)", &out->usage)) < 0)
		return rc;
	if ((rc = get_time(c, v, "timestamp_s", &out->has_timestamp, &out->timestamp_s)) < 0)
		return rc;
	out->window_s = 0;
	rc = get_num(c, v, "window_s", false, 0, 1e9, false, "a number of seconds in 0..1e9",
		     &out->window_s);
	return rc < 0 ? rc : 0;
}

static int parse_samples(struct ctx *c, struct plan *p, const json_t *arr,
			 struct bl_planner_usage **out, size_t *count)
{
	size_t n = json_array_size(arr);
	struct bl_planner_usage *u;
	struct name_key *keys;
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (n > BL_PLANNER_MAX_PODS)
		return bad(c, "%zu samples; at most %d", n, BL_PLANNER_MAX_PODS);
	if (n == 0)
		return 0;
	u = plan_alloc(p, n, sizeof *u);
	keys = plan_alloc(p, n, sizeof *keys);
	if (!u || !keys)
		return oom(c);
	for (size_t i = 0; i < n && !rc; i++) {
		size_t old = enter_index(c, i);

		rc = parse_sample(c, json_array_get(arr, i), &u[i]);
		leave(c, old);
		keys[i] = (struct name_key){ u[i].pod, u[i].pod_len, i };
	}
	if (!rc)
		rc = check_unique(c, p, keys, n, "a sample for pod");
	if (rc)
		return rc;
	*out = u;
	*count = n;
	return 0;
}

/* ---- targets -------------------------------------------------------------------- */

/* "utilization_percent" (or value_key) or "band": exactly one. */
static int parse_target_value(struct ctx *c, const json_t *obj, const char *value_key,
			      const char *accepted, struct bl_planner_target *t)
{
	static const char *const band_keys[] = { "low", "high", NULL };
	json_t *band = NULL;
	bool has_value;
	size_t old;
	int rc;

	rc = get_num(c, obj, value_key, false, 0, HUGE_VAL, true, accepted, &t->value);
	if (rc < 0)
		return rc;
	has_value = rc == 1;
	rc = get_typed(c, obj, "band", false, JSON_OBJECT, "an object {\"low\": …, \"high\": …}",
		       &band);
	if (rc < 0)
		return rc;
	if (has_value == (band != NULL))
		return bad(c, "give either '%s' (%s) or 'band' ({\"low\": …, \"high\": …}), %s",
			   value_key, accepted, has_value ? "not both" : "one of them is required");
	if (!band)
		return 0;
	t->band = true;
	old = enter_key(c, "band");
	rc = only_keys(c, band, band_keys);
	if (!rc)
		rc = get_num(c, band, "low", true, 0, HUGE_VAL, true, "a number > 0", &t->low);
	if (rc >= 0)
		rc = get_num(c, band, "high", true, 0, HUGE_VAL, true, "a number > low", &t->high);
	if (rc >= 0 && !(t->high > t->low))
		rc = bad(c, "low %g must be below high %g (such as {\"low\": 70, \"high\": 85})", t->low,
			 t->high);
	leave(c, old);
	return rc < 0 ? rc : 0;
}

static int parse_name(struct ctx *c, const json_t *obj, const char **name)
{
	int rc = get_str(c, obj, "name", false, NAME_MAX_BYTES,
			 "a name of 1..64 bytes (shown in the reason)", name, NULL);

	return rc < 0 ? rc : 0;
}

static int parse_resource_kind(struct ctx *c, const json_t *obj, enum bl_planner_resource *r)
{
	const char *s = NULL;
	size_t len = 0;
	int rc = get_str(c, obj, "resource", true, 16, "\"cpu\" or \"memory\"", &s, &len);

	if (rc < 0)
		return rc;
	if (bl_planner_resource_parse(s, len, r) != 0)
		return bad_value(c, "resource", json_object_get(obj, "resource"), "\"cpu\" or \"memory\"");
	return 0;
}

static const char pods_accepted[] =
	"an array of pods [{\"name\": …, \"phase\": …, \"ready\": …, \"request\": …}, …]";
static const char samples_accepted[] =
	"an array of samples [{\"pod\": …, \"usage\": …, \"timestamp_s\": …, \"window_s\": …}, …]";

/* One resource metric: its target from obj, pods from pods_arr (NULL:
 * none given) read at pods_ctx's path, samples from samples_arr. */
static int build_resource(struct ctx *c, struct plan *p, struct bl_planner_metric *m,
			  const json_t *obj, const json_t *pods_arr, struct ctx *pods_ctx,
			  const json_t *samples_arr, struct ctx *samples_ctx)
{
	struct bl_planner_resource_metric *rm = &m->resource;
	int rc;

	m->kind = BL_PLANNER_METRIC_RESOURCE;
	if ((rc = parse_resource_kind(c, obj, &rm->resource)) != 0)
		return rc;
	if ((rc = parse_target_value(c, obj, "utilization_percent",
				     "a number > 0, percent of the request", &rm->target)) != 0)
		return rc;
	if ((rc = parse_name(c, obj, &m->name)) != 0)
		return rc;
	if (!pods_arr)
		return missing(c, "pods", "the pods of this resource target, or a top-level 'pods' "
			       "shared by the resource targets");
	if ((rc = parse_pods(pods_ctx, p, pods_arr, rm->resource,
			     (struct bl_planner_pod **)&rm->pods, &rm->pod_count)) != 0)
		return rc;
	if (!samples_arr)
		return missing(c, "metrics", samples_accepted);
	if ((rc = parse_samples(samples_ctx, p, samples_arr, (struct bl_planner_usage **)&rm->usage,
				&rm->usage_count)) != 0)
		return rc;
	return 0;
}

/* A sub-context at key of c (for arrays read by a helper). */
static void sub_ctx(struct ctx *sub, const struct ctx *c, const char *key)
{
	*sub = *c;
	enter_key(sub, key);
}

/* The single-target form: "target", "pods", "metrics" at the top level. */
static int parse_single(struct ctx *c, struct plan *p, const json_t *req, const json_t *target)
{
	static const char *const keys[] = { "resource", "utilization_percent", "band", "name", NULL };
	struct ctx pc, sc;
	json_t *pods = NULL, *samples = NULL;
	size_t old;
	int rc;

	if ((rc = get_typed(c, req, "pods", true, JSON_ARRAY, pods_accepted, &pods)) < 0)
		return rc;
	if ((rc = get_typed(c, req, "metrics", true, JSON_ARRAY, samples_accepted, &samples)) < 0)
		return rc;
	sub_ctx(&pc, c, "pods");
	sub_ctx(&sc, c, "metrics");
	old = enter_key(c, "target");
	rc = only_keys(c, target, keys);
	if (!rc)
		rc = build_resource(c, p, &p->metrics[0], target, pods, &pc, samples, &sc);
	leave(c, old);
	if (rc)
		return rc;
	p->types[0] = T_RESOURCE;
	p->in.metric_count = 1;
	return 0;
}

static int parse_demand_samples(struct ctx *c, struct plan *p, const json_t *arr);

static int parse_one_target(struct ctx *c, struct plan *p, const json_t *t, const json_t *top_pods,
			    struct ctx *top_pods_ctx, size_t i, bool *seen_demand)
{
	static const char *const res_keys[] = { "type", "name", "resource", "utilization_percent",
						"band", "pods", "metrics", NULL };
	static const char *const avg_keys[] = { "type", "name", "total", "target", "band", NULL };
	static const char *const dem_keys[] = { "type", "name", "target_per_replica", "samples", NULL };
	static const char *const fail_keys[] = { "type", "name", "error", NULL };
	static const char types_accepted[] = "one of \"resource\", \"average\", \"demand\", \"failed\"";
	struct bl_planner_metric *m = &p->metrics[i];
	const char *type = NULL;
	json_t *arr = NULL;
	size_t k;
	int rc;

	if (!json_is_object(t))
		return bad_value(c, NULL, t, "an object {\"type\": …, …}");
	if ((rc = get_str(c, t, "type", true, 16, types_accepted, &type, NULL)) < 0)
		return rc;
	for (k = 0; k < 4 && strcmp(type, type_names[k]) != 0; k++)
		;
	if (k == 4)
		return bad_value(c, "type", json_object_get(t, "type"), types_accepted);
	p->types[i] = (enum target_type)k;
	switch (p->types[i]) {
	case T_RESOURCE: {
		struct ctx pc, sc;
		json_t *pods = NULL;

		if ((rc = only_keys(c, t, res_keys)) != 0)
			return rc;
		if ((rc = get_typed(c, t, "metrics", false, JSON_ARRAY, samples_accepted, &arr)) < 0)
			return rc;
		if ((rc = get_typed(c, t, "pods", false, JSON_ARRAY, pods_accepted, &pods)) < 0)
			return rc;
		if (pods) {
			sub_ctx(&pc, c, "pods");
		} else if (top_pods) {
			pc = *top_pods_ctx;
			pods = (json_t *)top_pods;
		}
		sub_ctx(&sc, c, "metrics");
		return build_resource(c, p, m, t, pods, &pc, arr, &sc);
	}
	case T_AVERAGE:
		m->kind = BL_PLANNER_METRIC_AVERAGE;
		if ((rc = only_keys(c, t, avg_keys)) != 0 || (rc = parse_name(c, t, &m->name)) != 0)
			return rc;
		rc = get_num(c, t, "total", true, 0, HUGE_VAL, false,
			     "a number ≥ 0, the metric summed over the pool", &m->average.total);
		if (rc < 0)
			return rc;
		return parse_target_value(c, t, "target", "a number > 0 per replica",
					  &m->average.target);
	case T_DEMAND:
		m->kind = BL_PLANNER_METRIC_DEMAND;
		if (*seen_demand)
			return bad(c, "a second demand target; burst mode keeps one state, so a plan "
				   "takes at most one");
		*seen_demand = true;
		if ((rc = only_keys(c, t, dem_keys)) != 0 || (rc = parse_name(c, t, &m->name)) != 0)
			return rc;
		rc = get_num(c, t, "target_per_replica", true, 0, HUGE_VAL, true,
			     "a number > 0, the demand one replica should carry",
			     &m->demand.target_per_replica);
		if (rc < 0)
			return rc;
		rc = get_typed(c, t, "samples", true, JSON_ARRAY,
			       "an array [{\"t_s\": …, \"value\": …}, …] of demand samples", &arr);
		if (rc < 0)
			return rc;
		{
			struct ctx sc;

			p->demand_index = (int)i;
			sub_ctx(&sc, c, "samples");
			return parse_demand_samples(&sc, p, arr);
		}
	default:
		m->kind = BL_PLANNER_METRIC_FAILED;
		if ((rc = only_keys(c, t, fail_keys)) != 0 || (rc = parse_name(c, t, &m->name)) != 0)
			return rc;
		rc = get_str(c, t, "error", false, 200, "a message of 1..200 bytes", &m->failure, NULL);
		return rc < 0 ? rc : 0;
	}
}

static int parse_targets(struct ctx *c, struct plan *p, const json_t *req, const json_t *targets)
{
	json_t *top_pods = NULL;
	struct ctx pc;
	bool seen_demand = false;
	size_t n = json_array_size(targets);
	size_t old;
	int rc;

	if (json_object_get(req, "metrics")) {
		size_t o = enter_key(c, "metrics");

		rc = bad(c, "not with 'targets': each resource target carries its own 'metrics'");
		leave(c, o);
		return rc;
	}
	if ((rc = get_typed(c, req, "pods", false, JSON_ARRAY, pods_accepted, &top_pods)) < 0)
		return rc;
	sub_ctx(&pc, c, "pods");
	old = enter_key(c, "targets");
	if (n == 0 || n > BL_PLANNER_MAX_METRICS)
		rc = bad(c, "%zu targets; give 1..%d", n, BL_PLANNER_MAX_METRICS);
	else
		rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		size_t o2 = enter_index(c, i);

		rc = parse_one_target(c, p, json_array_get(targets, i), top_pods, &pc, i, &seen_demand);
		leave(c, o2);
	}
	leave(c, old);
	if (rc)
		return rc;
	if (top_pods) {
		/* Shared pods no resource target used are still checked. */
		bool used = false;

		for (size_t i = 0; i < n; i++)
			used |= p->types[i] == T_RESOURCE && !present(json_array_get(targets, i), "pods");
		if (!used) {
			struct bl_planner_pod *unused;
			size_t cnt;

			if ((rc = parse_pods(&pc, p, top_pods, BL_PLANNER_CPU, &unused, &cnt)) != 0)
				return rc;
		}
	}
	p->in.metric_count = n;
	return 0;
}

/* ---- demand ------------------------------------------------------------------- */

static int timed_cmp(const void *pa, const void *pb)
{
	const struct timed *a = pa, *b = pb;

	if (a->t_s != b->t_s)
		return a->t_s < b->t_s ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Reads the samples into p->demand, in time order; they go into the
 * window once the burst settings (the window sizes) are known. */
static int parse_demand_samples(struct ctx *c, struct plan *p, const json_t *arr)
{
	static const char *const keys[] = { "t_s", "value", NULL };
	size_t n = json_array_size(arr);
	struct timed *s;
	int rc = 0;

	if (n > SAMPLES_MAX)
		return bad(c, "%zu samples; at most %d", n, SAMPLES_MAX);
	if (n == 0)
		return 0;
	s = plan_alloc(p, n, sizeof *s);
	if (!s)
		return oom(c);
	for (size_t i = 0; i < n && !rc; i++) {
		json_t *v = json_array_get(arr, i);
		size_t old = enter_index(c, i);

		s[i].idx = i;
		if (!json_is_object(v))
			rc = bad_value(c, NULL, v, "an object {\"t_s\": …, \"value\": …}");
		if (!rc)
			rc = only_keys(c, v, keys);
		if (!rc)
			rc = get_num(c, v, "t_s", true, -HUGE_VAL, HUGE_VAL, false,
				     "a number of seconds relative to now (negative: in the past)", &s[i].t_s);
		if (rc >= 0)
			rc = get_num(c, v, "value", true, 0, HUGE_VAL, false,
				     "a number ≥ 0, the pool's demand at that time", &s[i].value);
		rc = rc < 0 ? rc : 0;
		leave(c, old);
	}
	if (rc)
		return rc;
	/* As the daemon would have recorded them: oldest first. */
	qsort(s, n, sizeof *s, timed_cmp);
	p->demand = s;
	p->demand_count = n;
	return 0;
}

/* Fills the demand target's averages from its samples, read at now (0). */
static void record_demand(struct plan *p)
{
	struct bl_planner_demand_metric *d;

	if (p->demand_index < 0)
		return;
	d = &p->metrics[p->demand_index].demand;
	if (bl_planner_window_init(&p->window, &p->cfg.panic) != 0) {
		d->has_data = false; /* checked in parse_panic: cannot happen */
		return;
	}
	for (size_t i = 0; i < p->demand_count; i++)
		bl_planner_window_record(&p->window, to_ns(p->demand[i].t_s), p->demand[i].value);
	bl_planner_window_read(&p->window, 0, d);
}

/* ---- settings ------------------------------------------------------------------ */

static int parse_tolerance(struct ctx *c, const json_t *req, struct bl_planner_tolerance *t)
{
	static const char *const keys[] = { "scale_up", "scale_down", NULL };
	static const char accepted[] =
		"a number in 0..1, or {\"scale_up\": …, \"scale_down\": …} of those";
	json_t *v = json_object_get(req, "tolerance");
	size_t old;
	int rc;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_number(v)) {
		rc = get_num(c, req, "tolerance", false, 0, 1, false, accepted, &t->up);
		t->down = t->up;
		return rc < 0 ? rc : 0;
	}
	if (!json_is_object(v))
		return bad_value(c, "tolerance", v, accepted);
	old = enter_key(c, "tolerance");
	rc = only_keys(c, v, keys);
	if (!rc)
		rc = get_num(c, v, "scale_up", false, 0, 1, false, "a number in 0..1 (default 0.1)",
			     &t->up);
	if (rc >= 0)
		rc = get_num(c, v, "scale_down", false, 0, 1, false, "a number in 0..1 (default 0.1)",
			     &t->down);
	leave(c, old);
	return rc < 0 ? rc : 0;
}

/* Seconds in 0.001..PANIC_WINDOW_MAX_S to ns; *ns untouched when absent. */
static int get_window(struct ctx *c, const json_t *obj, const char *key, const char *accepted,
		      int64_t *ns)
{
	double s;
	int rc = get_num(c, obj, key, false, 0.001, PANIC_WINDOW_MAX_S, false, accepted, &s);

	if (rc == 1)
		*ns = to_ns(s);
	return rc < 0 ? rc : 0;
}

static int parse_panic(struct ctx *c, struct plan *p, const json_t *req)
{
	static const char *const keys[] = { "window_s", "stable_window_s", "granularity_s",
					    "threshold", "max_scale_up_rate", "max_scale_down_rate",
					    "panicking", "panic_time_s", "max_panic_pods", NULL };
	struct bl_planner_panic_config *pc = &p->cfg.panic;
	struct bl_planner_panic_state *st = &p->in.panic;
	struct bl_planner_window probe;
	json_t *v = NULL;
	double t;
	size_t old;
	int rc;

	if ((rc = get_typed(c, req, "panic", false, JSON_OBJECT,
			    "an object {\"window_s\": …, \"threshold\": …, \"panicking\": …, …}", &v)) <= 0)
		return rc;
	old = enter_key(c, "panic");
	rc = only_keys(c, v, keys);
	if (!rc)
		rc = get_window(c, v, "window_s", "a number of seconds in 0.001..3600 (default 6)",
				&pc->panic_window_ns);
	if (!rc)
		rc = get_window(c, v, "stable_window_s", "a number of seconds in 0.001..3600 (default 60)",
				&pc->stable_window_ns);
	if (!rc)
		rc = get_window(c, v, "granularity_s", "a number of seconds in 0.001..3600 (default 1)",
				&pc->granularity_ns);
	if (!rc && pc->panic_window_ns > pc->stable_window_ns)
		rc = bad(c, "window_s (%g s) must be at most stable_window_s (%g s)",
			 (double)pc->panic_window_ns / 1e9, (double)pc->stable_window_ns / 1e9);
	if (!rc && bl_planner_window_init(&probe, pc) != 0)
		rc = bad(c, "stable_window_s / granularity_s must be at most %d buckets (such as 60 s at "
			 "1 s)", BL_PLANNER_WINDOW_BUCKETS);
	if (!rc)
		rc = get_num(c, v, "threshold", false, 1.1, 10, false, "a number in 1.1..10 (default 2)",
			     &pc->threshold);
	if (rc >= 0) {
		rc = get_num(c, v, "max_scale_up_rate", false, 0, HUGE_VAL, false,
			     "0 (no bound, the default) or a number above 1", &pc->max_scale_up_rate);
		if (rc == 1 && pc->max_scale_up_rate > 0 && pc->max_scale_up_rate <= 1)
			rc = bad_value(c, "max_scale_up_rate", json_object_get(v, "max_scale_up_rate"),
				       "0 (no bound, the default) or a number above 1");
	}
	if (rc >= 0) {
		rc = get_num(c, v, "max_scale_down_rate", false, 0, HUGE_VAL, false,
			     "0 (no bound, the default) or a number above 1", &pc->max_scale_down_rate);
		if (rc == 1 && pc->max_scale_down_rate > 0 && pc->max_scale_down_rate <= 1)
			rc = bad_value(c, "max_scale_down_rate", json_object_get(v, "max_scale_down_rate"),
				       "0 (no bound, the default) or a number above 1");
	}
	if (rc >= 0)
		rc = get_bool(c, v, "panicking", &st->panicking);
	if (rc >= 0 && st->panicking) {
		rc = get_num(c, v, "panic_time_s", true, -HUGE_VAL, HUGE_VAL, false,
			     "a number of seconds relative to now, the last time the panic window was "
			     "over the threshold, when panicking", &t);
		if (rc == 1)
			st->panic_time_ns = to_ns(t);
	} else if (rc >= 0 && present(v, "panic_time_s")) {
		size_t o = enter_key(c, "panic_time_s");

		rc = bad(c, "only with \"panicking\": true");
		leave(c, o);
	}
	if (rc >= 0)
		rc = get_i32(c, v, "max_panic_pods", false, 0, INT32_MAX,
			     "an integer ≥ 0, the most replicas asked for since panic mode began",
			     &st->max_panic_pods);
	leave(c, old);
	return rc < 0 ? rc : 0;
}

static int parse_history(struct ctx *c, struct plan *p, const json_t *req, bool *given)
{
	static const char *const keys[] = { "recommendations", "events", NULL };
	static const char *const rec_keys[] = { "t_s", "replicas", NULL };
	static const char *const ev_keys[] = { "t_s", "change", NULL };
	json_t *v = NULL, *recs = NULL, *evs = NULL;
	size_t old;
	int rc;

	*given = false;
	if ((rc = get_typed(c, req, "history", false, JSON_OBJECT,
			    "an object {\"recommendations\": […], \"events\": […]}", &v)) <= 0)
		return rc;
	*given = true;
	old = enter_key(c, "history");
	rc = only_keys(c, v, keys);
	if (!rc)
		rc = get_typed(c, v, "recommendations", false, JSON_ARRAY,
			       "an array [{\"t_s\": …, \"replicas\": …}, …]", &recs);
	if (rc >= 0)
		rc = get_typed(c, v, "events", false, JSON_ARRAY,
			       "an array [{\"t_s\": …, \"change\": …}, …]", &evs);
	rc = rc < 0 ? rc : 0;
	if (!rc && (json_array_size(recs) > HISTORY_ITEMS_MAX ||
		    json_array_size(evs) > HISTORY_ITEMS_MAX))
		rc = bad(c, "at most %d recommendations and %d events", HISTORY_ITEMS_MAX,
			 HISTORY_ITEMS_MAX);
	if (!rc && json_array_size(recs)) {
		struct bl_planner_recommendation *r = plan_alloc(p, json_array_size(recs), sizeof *r);
		size_t o = enter_key(c, "recommendations");

		if (!r)
			rc = oom(c);
		for (size_t i = 0; !rc && i < json_array_size(recs); i++) {
			json_t *e = json_array_get(recs, i);
			size_t o2 = enter_index(c, i);
			double t = 0;

			if (!json_is_object(e))
				rc = bad_value(c, NULL, e, "an object {\"t_s\": …, \"replicas\": …}");
			if (!rc)
				rc = only_keys(c, e, rec_keys);
			if (!rc)
				rc = get_num(c, e, "t_s", true, -HUGE_VAL, HUGE_VAL, false,
					     "a number of seconds relative to now (negative: in the past)",
					     &t);
			if (rc >= 0)
				rc = get_i32(c, e, "replicas", true, 0, INT32_MAX,
					     "an integer ≥ 0, the replicas recommended then",
					     &r[i].replicas);
			r[i].at_ns = to_ns(t);
			rc = rc < 0 ? rc : 0;
			leave(c, o2);
		}
		leave(c, o);
		p->in.recommendations = r;
		p->in.recommendation_count = json_array_size(recs);
	}
	if (!rc && json_array_size(evs)) {
		struct bl_planner_event *ev = plan_alloc(p, json_array_size(evs), sizeof *ev);
		size_t o = enter_key(c, "events");

		if (!ev)
			rc = oom(c);
		for (size_t i = 0; !rc && i < json_array_size(evs); i++) {
			json_t *e = json_array_get(evs, i);
			size_t o2 = enter_index(c, i);
			double t = 0;

			if (!json_is_object(e))
				rc = bad_value(c, NULL, e, "an object {\"t_s\": …, \"change\": …}");
			if (!rc)
				rc = only_keys(c, e, ev_keys);
			if (!rc)
				rc = get_num(c, e, "t_s", true, -HUGE_VAL, HUGE_VAL, false,
					     "a number of seconds relative to now (negative: in the past)",
					     &t);
			if (rc >= 0)
				rc = get_i32(c, e, "change", true, -INT32_MAX, INT32_MAX,
					     "a non-zero integer: replicas added (> 0) or removed (< 0)",
					     &ev[i].change);
			if (rc >= 0 && ev[i].change == 0)
				rc = bad_value(c, "change", json_object_get(e, "change"),
					       "a non-zero integer: replicas added (> 0) or removed (< 0)");
			ev[i].at_ns = to_ns(t);
			rc = rc < 0 ? rc : 0;
			leave(c, o2);
		}
		leave(c, o);
		p->in.events = ev;
		p->in.event_count = json_array_size(evs);
	}
	leave(c, old);
	return rc;
}

/* One direction of autoscaling/v2 HPAScalingRules, over r's defaults. */
static int parse_rules(struct ctx *c, const json_t *v, struct bl_planner_rules *r)
{
	static const char *const keys[] = { "stabilizationWindowSeconds", "selectPolicy", "policies",
					    NULL };
	static const char *const pol_keys[] = { "type", "value", "periodSeconds", NULL };
	json_t *pols = NULL;
	const char *sel = NULL;
	size_t sel_len = 0;
	int rc;

	if (!json_is_object(v))
		return bad_value(c, NULL, v,
				 "an object {\"stabilizationWindowSeconds\": …, \"selectPolicy\": …, "
				 "\"policies\": […]}");
	if ((rc = only_keys(c, v, keys)) != 0)
		return rc;
	rc = get_i32(c, v, "stabilizationWindowSeconds", false, 0, 3600, "an integer in 0..3600",
		     &r->stabilization_s);
	if (rc < 0)
		return rc;
	rc = get_str(c, v, "selectPolicy", false, 16, "\"Max\", \"Min\" or \"Disabled\"", &sel, &sel_len);
	if (rc < 0)
		return rc;
	if (rc == 1 && bl_planner_select_parse(sel, sel_len, &r->select) != 0)
		return bad_value(c, "selectPolicy", json_object_get(v, "selectPolicy"),
				 "\"Max\", \"Min\" or \"Disabled\"");
	rc = get_typed(c, v, "policies", false, JSON_ARRAY,
		       "an array [{\"type\": \"Pods\"|\"Percent\", \"value\": …, \"periodSeconds\": …}, …]",
		       &pols);
	if (rc < 0)
		return rc;
	rc = 0;
	if (pols) {
		size_t n = json_array_size(pols), old = enter_key(c, "policies");

		if (n > BL_PLANNER_MAX_POLICIES)
			rc = bad(c, "%zu policies; at most %d", n, BL_PLANNER_MAX_POLICIES);
		else if (n == 0 && r->select != BL_PLANNER_SELECT_DISABLED)
			rc = bad(c, "at least one policy is needed unless selectPolicy is \"Disabled\"");
		for (size_t i = 0; !rc && i < n; i++) {
			json_t *e = json_array_get(pols, i);
			struct bl_planner_policy *pol = &r->policies[i];
			size_t o2 = enter_index(c, i);
			const char *type = NULL;

			if (!json_is_object(e))
				rc = bad_value(c, NULL, e, "an object {\"type\": …, \"value\": …, "
						   "\"periodSeconds\": …}");
			if (!rc)
				rc = only_keys(c, e, pol_keys);
			if (!rc)
				rc = get_str(c, e, "type", true, 16, "\"Pods\" or \"Percent\"", &type, NULL);
			if (rc >= 0) {
				if (strcmp(type, "Pods") == 0)
					pol->type = BL_PLANNER_POLICY_PODS;
				else if (strcmp(type, "Percent") == 0)
					pol->type = BL_PLANNER_POLICY_PERCENT;
				else
					rc = bad_value(c, "type", json_object_get(e, "type"),
						       "\"Pods\" or \"Percent\"");
			}
			if (rc >= 0)
				rc = get_i32(c, e, "value", true, 1, INT32_MAX, "an integer > 0", &pol->value);
			if (rc >= 0)
				rc = get_i32(c, e, "periodSeconds", true, 1, 1800, "an integer in 1..1800",
					     &pol->period_s);
			rc = rc < 0 ? rc : 0;
			leave(c, o2);
		}
		leave(c, old);
		if (rc)
			return rc;
		r->policy_count = n;
	}
	return 0;
}

/* Stabilization and policies: Kubernetes' defaults, as "behavior" changes
 * them, when the request brings "behavior" or "history"; else none, so the
 * plan is the replica calculation alone. */
static int parse_behavior(struct ctx *c, struct plan *p, const json_t *req, bool history)
{
	static const char *const keys[] = { "scaleUp", "scaleDown", NULL };
	struct bl_planner_config defaults;
	json_t *v = NULL, *dir;
	size_t old;
	int rc;

	rc = get_typed(c, req, "behavior", false, JSON_OBJECT,
		       "an object {\"scaleUp\": {…}, \"scaleDown\": {…}} (autoscaling/v2)", &v);
	if (rc < 0)
		return rc;
	p->behaviors = v || history;
	if (!p->behaviors) {
		/* No stabilization, and policies that never bind. */
		memset(&p->cfg.scale_up, 0, sizeof p->cfg.scale_up);
		p->cfg.scale_up.select = BL_PLANNER_SELECT_MAX;
		p->cfg.scale_up.policies[0] =
			(struct bl_planner_policy){ BL_PLANNER_POLICY_PODS, INT32_MAX, 1 };
		p->cfg.scale_up.policy_count = 1;
		memset(&p->cfg.scale_down, 0, sizeof p->cfg.scale_down);
		p->cfg.scale_down.select = BL_PLANNER_SELECT_MAX;
		p->cfg.scale_down.policies[0] =
			(struct bl_planner_policy){ BL_PLANNER_POLICY_PERCENT, 100, 1 };
		p->cfg.scale_down.policy_count = 1;
		return 0;
	}
	bl_planner_config_default(&defaults);
	p->cfg.scale_up = defaults.scale_up;
	p->cfg.scale_down = defaults.scale_down;
	if (!v)
		return 0;
	old = enter_key(c, "behavior");
	rc = only_keys(c, v, keys);
	if (!rc && (dir = json_object_get(v, "scaleUp")) && !json_is_null(dir)) {
		size_t o = enter_key(c, "scaleUp");

		rc = parse_rules(c, dir, &p->cfg.scale_up);
		leave(c, o);
	}
	if (!rc && (dir = json_object_get(v, "scaleDown")) && !json_is_null(dir)) {
		size_t o = enter_key(c, "scaleDown");

		rc = parse_rules(c, dir, &p->cfg.scale_down);
		leave(c, o);
	}
	leave(c, old);
	return rc;
}

static int parse_budget(struct ctx *c, struct plan *p, const json_t *req)
{
	static const char *const keys[] = { "name", "queue_length", "utilization",
					    "target_utilization", "admitted_per_s",
					    "per_worker_per_s", "busy_workers", NULL };
	struct bl_planner_budget *b = &p->in.budget;
	json_t *v = NULL;
	int64_t q = 0;
	size_t old;
	int rc;

	if ((rc = get_typed(c, req, "budget", false, JSON_OBJECT,
			    "an object {\"queue_length\": …, \"utilization\": …, …}", &v)) <= 0)
		return rc;
	p->has_budget = true;
	b->name = "budget";
	b->target_utilization = 0.9;
	old = enter_key(c, "budget");
	rc = only_keys(c, v, keys);
	if (!rc)
		rc = get_str(c, v, "name", false, NAME_MAX_BYTES, "a name of 1..64 bytes", &b->name, NULL);
	if (rc >= 0)
		rc = get_int(c, v, "queue_length", true, 0, INT64_MAX,
			     "an integer ≥ 0, acquires waiting in the budget's queue", &q);
	b->queue_length = (uint64_t)q;
	if (rc >= 0)
		rc = get_num(c, v, "utilization", true, 0, HUGE_VAL, false,
			     "a number ≥ 0, spent / refill rate over the budget's recent window (0.93)",
			     &b->utilization);
	if (rc >= 0)
		rc = get_num(c, v, "target_utilization", false, 0, 1, true,
			     "a number in (0, 1] (default 0.9)", &b->target_utilization);
	if (rc >= 0)
		rc = get_num(c, v, "admitted_per_s", false, 0, HUGE_VAL, true,
			     "a number > 0, units the budget admits per second", &b->admitted_per_s);
	if (rc >= 0)
		rc = get_num(c, v, "per_worker_per_s", false, 0, HUGE_VAL, true,
			     "a number > 0, units one busy worker spends per second",
			     &b->per_worker_per_s);
	if (rc >= 0)
		rc = get_i32(c, v, "busy_workers", false, 1, INT32_MAX,
			     "an integer > 0, the workers the budget keeps busy", &b->busy_workers);
	if (rc >= 0 && b->busy_workers == 0 && !(b->admitted_per_s > 0 && b->per_worker_per_s > 0))
		rc = bad(c, "give busy_workers, or admitted_per_s and per_worker_per_s: the cap is the "
			 "workers the budget keeps busy");
	leave(c, old);
	return rc < 0 ? rc : 0;
}

static int parse_request_obj(struct ctx *c, struct plan *p, const json_t *req)
{
	static const char *const keys[] = { "current_replicas", "min_replicas", "max_replicas",
					    "tolerance", "cpu_initialization_period_s",
					    "initial_readiness_delay_s", "target", "pods", "metrics",
					    "targets", "history", "behavior", "panic", "budget", NULL };
	json_t *target = NULL, *targets = NULL;
	bool history = false;
	int rc;

	if ((rc = only_keys(c, req, keys)) != 0)
		return rc;
	if ((rc = get_i32(c, req, "current_replicas", true, 0, INT32_MAX,
			  "an integer ≥ 0, the replicas the pool runs now",
			  &p->in.current_replicas)) < 0)
		return rc;
	if ((rc = get_i32(c, req, "min_replicas", false, 0, INT32_MAX,
			  "an integer ≥ 0 (default 1; 0 allows scaling from zero)",
			  &p->cfg.min_replicas)) < 0)
		return rc;
	if ((rc = get_i32(c, req, "max_replicas", false, 1, INT32_MAX,
			  "an integer ≥ 1 (default 2147483647: no cap)", &p->cfg.max_replicas)) < 0)
		return rc;
	if (p->cfg.max_replicas < p->cfg.min_replicas) {
		size_t o = enter_key(c, "max_replicas");

		rc = bad(c, "%d is below min_replicas %d", (int)p->cfg.max_replicas,
			 (int)p->cfg.min_replicas);
		leave(c, o);
		return rc;
	}
	if ((rc = parse_tolerance(c, req, &p->cfg.hpa.tolerance)) != 0)
		return rc;
	if ((rc = get_num(c, req, "cpu_initialization_period_s", false, 0, 1e9, false,
			  "a number of seconds in 0..1e9 (default 300)",
			  &p->cfg.hpa.cpu_initialization_period_s)) < 0)
		return rc;
	if ((rc = get_num(c, req, "initial_readiness_delay_s", false, 0, 1e9, false,
			  "a number of seconds in 0..1e9 (default 30)",
			  &p->cfg.hpa.initial_readiness_delay_s)) < 0)
		return rc;

	if ((rc = get_typed(c, req, "target", false, JSON_OBJECT,
			    "an object {\"resource\": \"cpu\", \"utilization_percent\": …}", &target)) < 0)
		return rc;
	if ((rc = get_typed(c, req, "targets", false, JSON_ARRAY,
			    "an array of targets [{\"type\": \"resource\"|\"average\"|\"demand\"|"
			    "\"failed\", …}, …]", &targets)) < 0)
		return rc;
	if (target && targets)
		return bad(c, "give 'target' (one resource target, with top-level 'pods' and "
			   "'metrics') or 'targets' (several), not both");
	if (target)
		rc = parse_single(c, p, req, target);
	else if (targets)
		rc = parse_targets(c, p, req, targets);
	else
		rc = missing(c, "target", "'target' (one resource target, with 'pods' and 'metrics') "
			     "or 'targets' (several targets)");
	if (rc)
		return rc;

	if ((rc = parse_panic(c, p, req)) != 0)
		return rc;
	record_demand(p);
	if ((rc = parse_history(c, p, req, &history)) != 0)
		return rc;
	if ((rc = parse_behavior(c, p, req, history)) != 0)
		return rc;
	return parse_budget(c, p, req);
}

/* ---- the answer ------------------------------------------------------------------ */

/* Sets key to v in o; a NULL v (out of memory) makes *ok false. */
static void put(json_t *o, const char *key, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(o, key, v) != 0)
		*ok = false;
}

static json_t *jreal(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static json_t *jint_or_null(int64_t x, bool known)
{
	return known ? json_integer((json_int_t)x) : json_null();
}

static json_t *jstr(const char *s)
{
	char buf[REASON_MAX];

	snprintf(buf, sizeof buf, "%s", s);
	utf8_clean(buf);
	return json_string(buf);
}

static const char *target_name(const struct plan *p, size_t i)
{
	const struct bl_planner_metric *m = &p->metrics[i];

	if (m->name)
		return m->name;
	switch (m->kind) {
	case BL_PLANNER_METRIC_RESOURCE:
		return bl_planner_resource_name(m->resource.resource);
	case BL_PLANNER_METRIC_AVERAGE:
		return "average";
	case BL_PLANNER_METRIC_DEMAND:
		return "demand";
	default:
		return "metric";
	}
}

static const char *outcome_name(enum bl_planner_outcome o)
{
	static const char *const names[] = { "within", "scale", "fill_within", "fill_reversed",
					     "count_reversed" };

	return (unsigned)o < 5 ? names[o] : "invalid";
}

static const char *move_name(enum bl_planner_panic_move m)
{
	static const char *const names[] = { "off", "enter", "extend", "hold", "exit" };

	return (unsigned)m < 5 ? names[m] : "invalid";
}

static const char *limit_name(enum bl_planner_limit l)
{
	static const char *const names[] = { "none", "scale_up_policy", "scale_down_policy",
					     "max_replicas", "min_replicas" };

	return (unsigned)l < 5 ? names[l] : "invalid";
}

static json_t *target_json(const struct plan *p, size_t i)
{
	const struct bl_planner_metric *m = &p->metrics[i];
	const struct bl_planner_metric_result *r = &p->result.metrics[i];
	json_t *o = json_object();
	bool ok = o != NULL;

	if (!o)
		return NULL;
	put(o, "type", json_string(type_names[p->types[i]]), &ok);
	put(o, "name", jstr(target_name(p, i)), &ok);
	if (m->kind == BL_PLANNER_METRIC_RESOURCE)
		put(o, "resource", json_string(bl_planner_resource_name(m->resource.resource)), &ok);
	put(o, "status", json_string(r->status ? "failed" : "ok"), &ok);
	put(o, "replicas", jint_or_null(r->replicas, r->status == 0), &ok);
	if (r->status) {
		put(o, "error", jstr(r->message), &ok);
		if (!ok) {
			json_decref(o);
			return NULL;
		}
		return o;
	}
	switch (m->kind) {
	case BL_PLANNER_METRIC_RESOURCE: {
		const struct bl_planner_resource_result *x = &r->resource;

		put(o, "outcome", json_string(outcome_name(x->outcome)), &ok);
		put(o, "utilization_percent", json_integer(x->utilization_percent), &ok);
		put(o, "raw_usage", json_integer(x->raw_usage), &ok);
		put(o, "usage_ratio", jreal(x->usage_ratio), &ok);
		put(o, "new_utilization_percent", json_integer(x->new_utilization_percent), &ok);
		put(o, "new_usage_ratio", jreal(x->new_usage_ratio), &ok);
		put(o, "ready_pods", json_integer(x->ready_pods), &ok);
		put(o, "unready_pods", json_integer(x->unready_pods), &ok);
		put(o, "missing_pods", json_integer(x->missing_pods), &ok);
		put(o, "ignored_pods", json_integer(x->ignored_pods), &ok);
		put(o, "unmatched_samples", json_integer(x->unmatched_samples), &ok);
		put(o, "filled_pods", json_integer(x->filled_pods), &ok);
		put(o, "missing_fill_percent",
		    jint_or_null(x->missing_fill_percent, x->missing_fill_percent >= 0), &ok);
		put(o, "unready_filled", json_boolean(x->unready_filled), &ok);
		break;
	}
	case BL_PLANNER_METRIC_AVERAGE:
		put(o, "outcome", json_string(outcome_name(r->average.outcome)), &ok);
		put(o, "average", jreal(r->average.average), &ok);
		put(o, "usage_ratio", jreal(r->average.usage_ratio), &ok);
		break;
	case BL_PLANNER_METRIC_DEMAND:
		put(o, "stable_average", jreal(m->demand.stable_average), &ok);
		put(o, "panic_average", jreal(m->demand.panic_average), &ok);
		put(o, "desired_stable", json_integer(r->demand.desired_stable), &ok);
		put(o, "desired_panic", json_integer(r->demand.desired_panic), &ok);
		put(o, "panic_ratio", jreal(r->demand.panic_ratio), &ok);
		put(o, "panic_move", json_string(move_name(r->demand.move)), &ok);
		break;
	default:
		break;
	}
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *targets_json(const struct plan *p)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < p->result.metric_count; i++) {
		if (json_array_append_new(a, target_json(p, i)) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The first resource target that computed, for the top-level figures. */
static const struct bl_planner_resource_result *first_resource(const struct plan *p)
{
	for (size_t i = 0; i < p->result.metric_count; i++)
		if (p->metrics[i].kind == BL_PLANNER_METRIC_RESOURCE && p->result.metrics[i].status == 0)
			return &p->result.metrics[i].resource;
	return NULL;
}

static json_t *answer_json(const struct plan *p)
{
	const struct bl_planner_result *r = &p->result;
	const struct bl_planner_resource_result *res = first_resource(p);
	json_t *o = json_object(), *x;
	bool ok = o != NULL;

	if (!o)
		return NULL;
	put(o, "desired_replicas", json_integer(r->desired), &ok);
	put(o, "current_replicas", json_integer(r->current), &ok);
	put(o, "utilization_percent", jint_or_null(res ? res->utilization_percent : 0, res), &ok);
	put(o, "raw_usage", jint_or_null(res ? res->raw_usage : 0, res), &ok);
	put(o, "reason", jstr(p->reason), &ok);
	put(o, "min_replicas", json_integer(p->cfg.min_replicas), &ok);
	put(o, "max_replicas", json_integer(p->cfg.max_replicas), &ok);
	put(o, "behaviors", json_boolean(p->behaviors), &ok);
	put(o, "scaling_disabled", json_boolean(r->scaling_disabled), &ok);
	put(o, "blocked_by_failure", json_boolean(r->status != 0), &ok);
	put(o, "winner", jint_or_null(r->winner, r->winner >= 0), &ok);
	put(o, "metric_replicas", jint_or_null(r->metric_replicas, r->metric_replicas >= 0), &ok);
	put(o, "panic_hold", json_boolean(r->panic_hold), &ok);
	put(o, "recommendation", json_integer(r->recommendation), &ok);
	put(o, "record", json_boolean(r->record), &ok);
	x = json_pack("{s:i,s:i,s:i}", "up_bound", (int)r->up_bound, "down_bound", (int)r->down_bound,
		      "stabilized", (int)r->stabilized);
	put(o, "stabilization", x, &ok);
	if (r->limit == BL_PLANNER_LIMIT_NONE) {
		put(o, "limit", json_null(), &ok);
	} else {
		x = json_pack("{s:s,s:i,s:o}", "kind", limit_name(r->limit), "replicas",
			      (int)r->limit_replicas, "policy",
			      jint_or_null(r->limit_policy, r->limit_policy >= 0));
		put(o, "limit", x, &ok);
	}
	if (!p->has_budget) {
		put(o, "budget", json_null(), &ok);
	} else {
		x = json_pack("{s:o,s:b,s:o,s:b}", "name", jstr(p->in.budget.name), "bottleneck",
			      bl_planner_budget_is_bottleneck(&p->in.budget), "workers",
			      jint_or_null(r->budget_workers, r->budget_workers >= 0), "capped",
			      r->budget_capped);
		put(o, "budget", x, &ok);
	}
	x = json_pack("{s:b,s:o,s:i}", "panicking", r->panic.panicking, "panic_time_s",
		      r->panic.panicking ? jreal((double)r->panic.panic_time_ns / 1e9) : json_null(),
		      "max_panic_pods", (int)r->panic.max_panic_pods);
	put(o, "panic", x, &ok);
	put(o, "targets", targets_json(p), &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* {"error":{"code","message"}} with the path, or the 422's detail. */
static json_t *error_json(const struct plan_error *e, const struct plan *p)
{
	char msg[sizeof e->message];
	json_t *o;

	snprintf(msg, sizeof msg, "%s", e->message);
	utf8_clean(msg);
	o = json_pack("{s:{s:s,s:s}}", "error", "code", e->code, "message", msg);
	if (!o)
		return NULL;
	if (e->path[0]) {
		char path[sizeof e->path];

		snprintf(path, sizeof path, "%s", e->path);
		utf8_clean(path);
		if (json_object_set_new(o, "path", json_string(path)) != 0)
			goto fail;
	}
	if (e->status == 422 && p) {
		if (json_object_set_new(o, "reason", jstr(p->reason)) != 0 ||
		    json_object_set_new(o, "targets", targets_json(p)) != 0)
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

/* ---- entry points ------------------------------------------------------------------ */

static void plan_init(struct plan *p, const struct bl_alloc_hook *hook)
{
	memset(p, 0, sizeof *p);
	p->hook = hook ? hook : &bl_alloc_malloc;
	bl_planner_config_default(&p->cfg);
	/* A what-if plan is the replica calculation unless the request says
	 * otherwise: no floor but 1 (Kubernetes' default), no ceiling. */
	p->cfg.min_replicas = 1;
	p->cfg.max_replicas = INT32_MAX;
	p->in.now_ns = 0;
	p->in.metrics = p->metrics;
	p->demand_index = -1;
}

/* "no target can be computed: cpu: missing request …; memory: …". */
static void cannot_plan(struct plan_error *e, const struct plan *p)
{
	size_t n;

	e->status = 422;
	e->code = "cannot_plan";
	e->path[0] = '\0';
	n = (size_t)snprintf(e->message, sizeof e->message, "nothing can be computed: ");
	for (size_t i = 0; i < p->result.metric_count && n < sizeof e->message; i++)
		n += (size_t)snprintf(e->message + n, sizeof e->message - n, "%s%s: %s", i ? "; " : "",
				      target_name(p, i), p->result.metrics[i].message);
}

int bl_plan_from_json(const json_t *in, const struct bl_alloc_hook *hook, json_t **out,
		      int *status)
{
	struct plan_error e = { 0 };
	struct ctx c = { .e = &e };
	struct plan *p;
	int rc;

	*out = NULL;
	*status = 503;
	if (!hook)
		hook = &bl_alloc_malloc;
	p = hook->malloc_fn(hook->ctx, sizeof *p);
	if (!p) {
		oom(&c);
		*out = error_json(&e, NULL);
		return BL_ENOMEM;
	}
	plan_init(p, hook);
	if (!json_is_object(in)) {
		rc = bad(&c, "the request must be a JSON object");
		goto answer;
	}
	rc = parse_request_obj(&c, p, in);
	if (rc)
		goto answer;
	rc = bl_planner_plan(&p->cfg, &p->in, hook, &p->result, p->reason, sizeof p->reason);
	if (rc == BL_ENOMEM) {
		rc = oom(&c);
	} else if (rc) {
		/* The request was checked above: this would be a gap in the checks. */
		e.status = 400;
		e.code = "invalid_field";
		snprintf(e.message, sizeof e.message, "%.*s", (int)sizeof e.message - 1, p->reason);
	} else if (p->result.status && p->result.winner < 0) {
		cannot_plan(&e, p);
		rc = BL_EINVAL;
	}
answer:
	if (rc != 0 && !e.code) { /* a reader that failed without saying why: a bug */
		e.status = 500;
		e.code = "internal";
		snprintf(e.message, sizeof e.message, "the plan request could not be read (a bug in "
			 "ballast: please report it with the request)");
	}
	if (rc == 0) {
		*out = answer_json(p);
		*status = 200;
		if (!*out) {
			rc = oom(&c);
			*out = error_json(&e, NULL);
			*status = 503;
		}
	} else {
		*out = error_json(&e, p);
		*status = e.status;
	}
	plan_free_all(p);
	hook->free_fn(hook->ctx, p, sizeof *p);
	return rc;
}

int bl_plan_from_text(const char *body, size_t len, const struct bl_alloc_hook *hook,
		      json_t **out, int *status)
{
	struct bl_json_error err = { 0 };
	json_t *req = bl_json_decode_object(body ? body : "", body ? len : 0, false, &err);
	int rc;

	if (!req) {
		bool at = strcmp(err.code, "malformed_json") == 0 || strcmp(err.code, "too_deep") == 0;

		*status = 400;
		*out = json_pack("{s:{s:s,s:s}}", "error", "code", err.code, "message", err.message);
		if (*out && at)
			json_object_set_new(*out, "offset", json_integer((json_int_t)err.offset));
		return BL_ESYNTAX;
	}
	rc = bl_plan_from_json(req, hook, out, status);
	json_decref(req);
	return rc;
}
