/* The scenario loader. See scenario.h and docs/simulator.md.
 *
 * Two passes over one file:
 *  1. The located YAML tree (src/daemon/ytree.h), which the daemon's loader
 *     reads too, gives nodes that keep their line and column; the scenario's
 *     own sections are read from it, every problem reported, not just the first.
 *  2. The policy blocks (budgets, pools, memory, autoscaler) go to the
 *     daemon's loader: the text with every other top-level section blanked
 *     out (spaces, newlines kept), so its messages point at the right line
 *     and column of the scenario file.
 */
#include "scenario.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ytree.h"

#define MAX_FILE_BYTES (16u << 20)   /* scenario files are small; traces are read apart */
#define MAX_TRACE_BYTES (1u << 30)   /* a trace of a few million tasks */
#define SHOW_CAP 64                  /* user text quoted in this loader's own messages */
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define S_NS(x) ((int64_t)(x) * BL_NS_PER_S)

/* One load: the tree reader's context, and the scenario being filled. */
struct load {
	struct bl_yctx y;         /* where diagnostics go, the path being read */
	struct bl_scenario *sc;   /* what is being filled */
};

/* The scenario being filled by the load whose reader context c is. */
static struct bl_scenario *scenario_of(struct bl_yctx *c)
{
	return ((struct load *)((char *)c - offsetof(struct load, y)))->sc;
}

static const struct bl_yparse_opts parse_opts = {.what = "scenario", .plain_only = true};

/* ---- reading nodes ----------------------------------------------------- */

/* Reports keys of m not in keys[] (with the accepted ones) and repeated keys. */
static void check_keys(struct bl_yctx *c, const struct bl_ynode *m, const char *const *keys,
		       size_t n)
{
	for (size_t i = 0; i < bl_y_map_size(m); i++) {
		const struct bl_ynode *k = m->kids[2 * i];
		bool known = false;

		if (k->kind != BL_Y_SCALAR) {
			bl_y_report(c, k, "keys must be plain words");
			continue;
		}
		for (size_t j = 0; j < n && !known; j++)
			known = bl_y_scalar_is(k, keys[j]);
		for (size_t j = 0; j < i && known; j++) {
			const struct bl_ynode *o = m->kids[2 * j];

			if (o->kind == BL_Y_SCALAR && o->len == k->len &&
			    memcmp(o->text, k->text, k->len) == 0) {
				bl_y_report(c, k, "'%s' is given twice (first on line %d)", k->text, o->line);
				break;
			}
		}
		if (!known) {
			char list[512];

			bl_y_report(c, k, "unknown key '%.*s'; accepted here: %s",
				    k->len > SHOW_CAP ? SHOW_CAP : (int)k->len, k->text,
				    bl_y_join(list, sizeof list, keys, n));
		}
	}
}

/* The map at raw with its keys checked; NULL when absent or null (silently),
 * or another type (reported). */
static const struct bl_ynode *section(struct bl_yctx *c, const struct bl_ynode *raw,
				      const char *const *keys, size_t n)
{
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of settings");

	if (m)
		check_keys(c, m, keys, n);
	return m;
}

/* A name: letters, digits, '_', '-', '.'; 1..64 bytes. */
static bool get_name(struct bl_yctx *c, const struct bl_ynode *m, const char *key, char **out)
{
	const struct bl_ynode *n = bl_y_lookup(m, key);
	size_t mark;
	bool ok = false;

	if (bl_y_is_null(n))
		return false;
	mark = bl_y_path_push(c, key);
	if (n->kind != BL_Y_SCALAR || n->len == 0 || n->len > 64 ||
	    strspn(n->text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
		    n->len) {
		bl_y_report_type(c, n, "a name of 1..64 letters, digits, '_', '-' or '.'");
	} else if (!(*out = bl_y_copy(n->text, n->len))) {
		c->err = BL_ENOMEM;
	} else {
		ok = true;
	}
	bl_y_path_pop(c, mark);
	return ok;
}

/* ---- typed values -------------------------------------------------------- */

/* What the numbers of a distribution are. */
enum vkind {
	V_DURATION, /* "250ms": ns */
	V_SIZE,     /* "300MiB": bytes */
	V_COUNT,    /* a plain number >= 0 */
};

static const char *vkind_example(enum vkind k)
{
	return k == V_DURATION ? "a duration such as 800ms"
	       : k == V_SIZE   ? "a size such as 300MiB"
			       : "a number";
}

static bool read_value(struct bl_yctx *c, const struct bl_ynode *n, enum vkind k, double *out)
{
	switch (k) {
	case V_DURATION: {
		int64_t v;

		if (!bl_y_read_duration(c, n, 0, INT64_MAX, &v))
			return false;
		*out = (double)v;
		return true;
	}
	case V_SIZE: {
		uint64_t v;

		if (!bl_y_read_size(c, n, 0, UINT64_MAX, &v))
			return false;
		*out = (double)v;
		return true;
	}
	case V_COUNT:
	default:
		if (!bl_y_number(n, out) || *out < 0) {
			bl_y_report_type(c, n, "a number >= 0");
			return false;
		}
		return true;
	}
}

static bool get_value(struct bl_yctx *c, const struct bl_ynode *m, const char *key, enum vkind k,
		      double *out)
{
	const struct bl_ynode *n = bl_y_lookup(m, key);
	size_t mark;
	bool ok;

	if (bl_y_is_null(n))
		return false;
	mark = bl_y_path_push(c, key);
	ok = read_value(c, n, k, out);
	bl_y_path_pop(c, mark);
	return ok;
}

/* A distribution: a plain value (constant), or
 *   {dist: constant, value: V} | {dist: uniform, low: V, high: V}
 *   | {dist: exponential, mean: V} | {dist: lognormal, median: V, p99: V}
 * each with optional min / max clamps. */
static void read_dist(struct bl_yctx *c, const struct bl_ynode *raw, enum vkind k,
		      struct bl_sim_dist *d)
{
	static const char *const keys[] = {"dist", "value", "low", "high", "mean",
					   "median", "p99", "min", "max"};
	static const char *const kinds[] = {"constant", "uniform", "exponential", "lognormal"};
	const struct bl_ynode *m;
	int kind = BL_SIM_DIST_CONSTANT;
	double v;

	if (bl_y_is_null(raw))
		return;
	if (raw->kind == BL_Y_SCALAR) {
		if (read_value(c, raw, k, &v))
			*d = bl_sim_dist_constant(v);
		return;
	}
	if (raw->kind != BL_Y_MAP) {
		char what[160];

		snprintf(what, sizeof what, "%s, or a distribution such as {dist: lognormal, "
					    "median: ..., p99: ...}", vkind_example(k));
		bl_y_report_type(c, raw, what);
		return;
	}
	m = section(c, raw, keys, NELEMS(keys));
	if (!bl_y_lookup(m, "dist")) {
		bl_y_report(c, raw, "a distribution needs 'dist': one of constant, uniform, exponential, "
				    "lognormal");
		return;
	}
	if (bl_y_get_enum(c, m, "dist", kinds, NELEMS(kinds), &kind) != BL_Y_OK)
		return;
	memset(d, 0, sizeof *d);
	d->kind = (enum bl_sim_dist_kind)kind;
	switch (d->kind) {
	case BL_SIM_DIST_CONSTANT:
		if (!get_value(c, m, "value", k, &d->a))
			bl_y_report(c, raw, "a constant distribution needs 'value'");
		break;
	case BL_SIM_DIST_UNIFORM:
		if (!get_value(c, m, "low", k, &d->a) || !get_value(c, m, "high", k, &d->b))
			bl_y_report(c, raw, "a uniform distribution needs 'low' and 'high'");
		else if (d->b < d->a)
			bl_y_report(c, bl_y_lookup(m, "high"), "'high' must not be below 'low'");
		break;
	case BL_SIM_DIST_EXPONENTIAL:
		if (!get_value(c, m, "mean", k, &d->a))
			bl_y_report(c, raw, "an exponential distribution needs 'mean'");
		break;
	case BL_SIM_DIST_LOGNORMAL:
		if (!get_value(c, m, "median", k, &d->a) || !get_value(c, m, "p99", k, &d->b))
			bl_y_report(c, raw, "a lognormal distribution needs 'median' and 'p99' (its "
					    "99th percentile)");
		else if (d->b < d->a)
			bl_y_report(c, bl_y_lookup(m, "p99"), "'p99' must not be below 'median'");
		break;
	}
	get_value(c, m, "min", k, &d->min);
	get_value(c, m, "max", k, &d->max);
}

static void get_dist(struct bl_yctx *c, const struct bl_ynode *m, const char *key, enum vkind k,
		     struct bl_sim_dist *d)
{
	size_t mark = bl_y_path_push(c, key);

	read_dist(c, bl_y_lookup(m, key), k, d);
	bl_y_path_pop(c, mark);
}

/* A rate: a number (per second) or "N/s", "N/m", "N/h". */
static bool get_rate(struct bl_yctx *c, const struct bl_ynode *m, const char *key, double *out)
{
	const struct bl_ynode *n = bl_y_lookup(m, key);
	size_t mark;
	bool ok = false;
	double v;

	if (bl_y_is_null(n))
		return false;
	mark = bl_y_path_push(c, key);
	if (bl_y_number(n, &v)) {
		ok = v > 0;
	} else if (n->kind == BL_Y_SCALAR && n->len > 2 && n->text[n->len - 2] == '/') {
		char *end;
		char unit = n->text[n->len - 1];

		v = strtod(n->text, &end);
		ok = end == n->text + n->len - 2 && isfinite(v) && v > 0 &&
		     (unit == 's' || unit == 'm' || unit == 'h');
		v /= unit == 'm' ? 60.0 : unit == 'h' ? 3600.0 : 1.0;
	}
	if (ok)
		*out = v;
	else
		bl_y_report_type(c, n, "a rate above 0: tasks per second, or 120/m, 2/s, 7200/h");
	bl_y_path_pop(c, mark);
	return ok;
}

static void read_outages(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_sim_outage *out,
			 size_t *n_out)
{
	static const char *const keys[] = {"at", "for", "error_rate", "latency_factor"};

	*n_out = 0;
	if (bl_y_is_null(raw))
		return;
	if (raw->kind != BL_Y_SEQ) {
		bl_y_report_type(c, raw, "a list of outages such as [{at: 1h, for: 5m}]");
		return;
	}
	if (raw->n_kids > BL_SIM_OUTAGES_MAX) {
		bl_y_report(c, raw, "%zu outages; at most %d are accepted", raw->n_kids, BL_SIM_OUTAGES_MAX);
		return;
	}
	for (size_t i = 0; i < raw->n_kids; i++) {
		const struct bl_ynode *m;
		struct bl_sim_outage *o = &out[(*n_out)++];
		size_t mark = bl_y_path_push_index(c, i);

		*o = (struct bl_sim_outage){0, 0, 1.0, 1.0};
		m = section(c, raw->kids[i], keys, NELEMS(keys));
		if (m) {
			if (bl_y_get_duration(c, m, "at", 0, INT64_MAX / 4, &o->at_ns) != BL_Y_OK &&
			    !bl_y_lookup(m, "at"))
				bl_y_report(c, raw->kids[i], "an outage needs 'at' (when it starts)");
			if (bl_y_get_duration(c, m, "for", 1, INT64_MAX / 4, &o->for_ns) != BL_Y_OK &&
			    !bl_y_lookup(m, "for"))
				bl_y_report(c, raw->kids[i], "an outage needs 'for' (how long it lasts)");
			bl_y_get_double(c, m, "error_rate", 0, 1, &o->error_rate);
			bl_y_get_double(c, m, "latency_factor", 0.001, 1000, &o->latency_factor);
		}
		bl_y_path_pop(c, mark);
	}
}

/* ---- sections ------------------------------------------------------------ */

static void load_fleet(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"replicas", "startup", "tasks_per_worker", "cpu",
					   "memory", "base_memory"};
	struct bl_scenario *sc = scenario_of(c);
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));

	if (!m)
		return;
	bl_y_get_u32(c, m, "replicas", 1, 10000, &sc->replicas);
	get_dist(c, m, "startup", V_DURATION, &sc->startup_ns);
	bl_y_get_u32(c, m, "tasks_per_worker", 1, 10000, &sc->tasks_per_worker);
	bl_y_get_double(c, m, "cpu", 0.001, 1024, &sc->cpu_cores);
	bl_y_get_size(c, m, "memory", 0, UINT64_MAX, &sc->worker_memory);
	bl_y_get_size(c, m, "base_memory", 0, UINT64_MAX, &sc->base_memory);
	if (sc->worker_memory == 0) {
		bl_y_report(c, bl_y_lookup(m, "memory"), "must be above 0");
	} else if (sc->base_memory >= sc->worker_memory) {
		size_t mark = bl_y_path_push(c, "base_memory");

		bl_y_report(c, bl_y_lookup(m, "base_memory"), "must be below the worker's memory");
		bl_y_path_pop(c, mark);
	}
}

static int tenant_index(const struct bl_scenario *sc, const char *s, size_t len)
{
	for (size_t i = 0; i < sc->n_tenants; i++)
		if (strlen(sc->tenants[i].name) == len && memcmp(sc->tenants[i].name, s, len) == 0)
			return (int)i;
	return -1;
}

static void load_tenants(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"name", "share", "priority"};
	static const char *const classes[] = {"critical", "high", "normal", "low"};
	struct bl_scenario *sc = scenario_of(c);

	if (bl_y_is_null(raw))
		return;
	if (raw->kind != BL_Y_SEQ) {
		bl_y_report_type(c, raw, "a list such as [{name: interactive, share: 0.3, priority: high}]");
		return;
	}
	if (raw->n_kids > BL_SIM_TENANTS_MAX) {
		bl_y_report(c, raw, "%zu tenants; at most %d are accepted", raw->n_kids, BL_SIM_TENANTS_MAX);
		return;
	}
	for (size_t i = 0; i < raw->n_kids; i++) {
		struct bl_sim_tenant *t = &sc->tenants[sc->n_tenants];
		size_t mark = bl_y_path_push_index(c, i);
		const struct bl_ynode *m = section(c, raw->kids[i], keys, NELEMS(keys));
		int cls = BL_WAITQ_NORMAL;

		if (m) {
			t->share = 1;
			t->cls = BL_WAITQ_NORMAL;
			if (!get_name(c, m, "name", &t->name)) {
				if (!bl_y_lookup(m, "name"))
					bl_y_report(c, raw->kids[i], "a tenant needs 'name'");
			} else if (tenant_index(sc, t->name, strlen(t->name)) >= 0) {
				bl_y_report(c, bl_y_lookup(m, "name"), "tenant '%s' is listed twice", t->name);
			}
			bl_y_get_double(c, m, "share", 0, 1e9, &t->share);
			if (bl_y_get_enum(c, m, "priority", classes, NELEMS(classes), &cls) == BL_Y_OK)
				t->cls = (enum bl_waitq_class)cls;
			sc->n_tenants++;
		}
		bl_y_path_pop(c, mark);
	}
}

/* Directory part of path, with its trailing '/', or "" (a fresh string). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return bl_y_copy(path, slash ? (size_t)(slash - path) + 1 : 0);
}

/* Reads a CSV trace: time_s,input_tokens,output_tokens[,tenant] per line; a
 * first line that does not start with a number is a header. */
static void load_trace(struct bl_yctx *c, const struct bl_ynode *at, const char *file)
{
	struct bl_scenario *sc = scenario_of(c);
	char *dir = NULL, *full = NULL, line[1024];
	FILE *f = NULL;
	size_t cap = 0, lineno = 0, rows_before = sc->n_trace, bytes = 0;
	bl_time_ns last = 0;
	bool header = false;

	if (!(dir = dir_of(c->file)))
		goto nomem;
	if (file[0] == '/')
		full = bl_y_copy(file, strlen(file));
	else if ((full = malloc(strlen(dir) + strlen(file) + 1)) != NULL)
		sprintf(full, "%s%s", dir, file);
	if (!full)
		goto nomem;
	f = fopen(full, "r");
	if (!f) {
		bl_y_report(c, at, "cannot open the trace %s: %s", full, strerror(errno));
		goto out;
	}
	while (fgets(line, sizeof line, f)) {
		struct bl_sim_trace_row row = {.tenant = -1};

		bytes += strlen(line);
		if (bytes > MAX_TRACE_BYTES) {
			bl_y_report(c, at, "the trace %s is larger than 1 GiB; split it", full);
			goto out;
		}
		char *p = line, *end, *fields[4] = {0};
		size_t nf = 0, l = strlen(line);
		double t, in, outp;

		lineno++;
		while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
			line[--l] = '\0';
		if (l == 0 || line[0] == '#')
			continue;
		while (nf < 4) {
			fields[nf++] = p;
			p = strchr(p, ',');
			if (!p)
				break;
			*p++ = '\0';
		}
		if (!header && rows_before == sc->n_trace && strspn(fields[0], "0123456789.") == 0) {
			header = true; /* the header, before any row */
			continue;
		}
		if (p || nf < 3) {
			diag_trace:
			if (bl_diags_add(c->diags, full, (int)lineno, 1, "",
					 "expected time_s,input_tokens,output_tokens[,tenant] with "
					 "time_s >= 0 not going back, and token counts >= 0") != 0)
				c->err = BL_ENOMEM;
			c->invalid = true;
			goto out;
		}
		t = strtod(fields[0], &end);
		if (*end || !(t >= 0) || !isfinite(t))
			goto diag_trace;
		in = strtod(fields[1], &end);
		if (*end || !(in >= 0) || in > 1e12)
			goto diag_trace;
		outp = strtod(fields[2], &end);
		if (*end || !(outp >= 0) || outp > 1e12)
			goto diag_trace;
		row.at_ns = (bl_time_ns)llround(t * 1e9);
		if (row.at_ns < last)
			goto diag_trace;
		last = row.at_ns;
		row.input_tokens = (uint64_t)in;
		row.output_tokens = (uint64_t)outp;
		if (nf == 4 && fields[3][0]) {
			row.tenant = tenant_index(sc, fields[3], strlen(fields[3]));
			if (row.tenant < 0) {
				if (bl_diags_add(c->diags, full, (int)lineno, 1, "",
						 "tenant '%.64s' is not in workload.tenants", fields[3]))
					c->err = BL_ENOMEM;
				c->invalid = true;
				goto out;
			}
		}
		if (sc->n_trace == cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			struct bl_sim_trace_row *rows = realloc(sc->trace, ncap * sizeof *rows);

			if (!rows)
				goto nomem;
			sc->trace = rows;
			cap = ncap;
		}
		sc->trace[sc->n_trace++] = row;
	}
	if (sc->n_trace == 0)
		bl_y_report(c, at, "the trace %s holds no task", full);
	goto out;
nomem:
	c->err = BL_ENOMEM;
out:
	if (f)
		fclose(f);
	free(full);
	free(dir);
}

static void load_arrivals(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"kind", "rate", "bursts", "peak", "low", "period", "file"};
	static const char *const kinds[] = {"constant", "poisson", "diurnal", "trace"};
	static const char *const burst_keys[] = {"at", "for", "factor"};
	struct bl_scenario *sc = scenario_of(c);
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys)), *b;
	int kind = BL_SIM_ARRIVALS_POISSON;

	if (!m) {
		if (!raw)
			bl_y_report(c, NULL, "the workload needs arrivals, such as {kind: poisson, rate: 2/s}");
		return;
	}
	bl_y_get_enum(c, m, "kind", kinds, NELEMS(kinds), &kind);
	sc->arrivals = (enum bl_sim_arrivals)kind;
	if (sc->arrivals == BL_SIM_ARRIVALS_TRACE) {
		const struct bl_ynode *f = bl_y_lookup(m, "file");
		size_t mark = bl_y_path_push(c, "file");

		if (!f || f->kind != BL_Y_SCALAR || f->len == 0)
			bl_y_report(c, f ? f : raw, "a trace needs 'file': a CSV of "
						    "time_s,input_tokens,output_tokens[,tenant]");
		else
			load_trace(c, f, f->text);
		bl_y_path_pop(c, mark);
	} else if (!get_rate(c, m, "rate", &sc->rate_per_s) && !bl_y_lookup(m, "rate")) {
		bl_y_report(c, raw, "arrivals need 'rate': tasks per second, or 120/m, 2/s, 7200/h");
	}
	if (sc->arrivals == BL_SIM_ARRIVALS_DIURNAL) {
		bl_y_get_duration(c, m, "peak", 0, S_NS(7 * 86400), &sc->diurnal_peak_ns);
		bl_y_get_double(c, m, "low", 0, 1, &sc->diurnal_low);
		bl_y_get_duration(c, m, "period", S_NS(60), S_NS(7 * 86400), &sc->diurnal_period_ns);
	}
	b = bl_y_lookup(m, "bursts");
	if (!bl_y_is_null(b)) {
		size_t mark = bl_y_path_push(c, "bursts");

		if (b->kind != BL_Y_SEQ || b->n_kids > BL_SIM_BURSTS_MAX) {
			bl_y_report_type(c, b, "a list of at most 64 bursts such as [{at: 30m, for: 30s, "
					       "factor: 10}]");
		} else {
			for (size_t i = 0; i < b->n_kids; i++) {
				struct bl_sim_burst *bu = &sc->bursts[sc->n_bursts++];
				size_t mk = bl_y_path_push_index(c, i);
				const struct bl_ynode *bm =
					section(c, b->kids[i], burst_keys, NELEMS(burst_keys));

				*bu = (struct bl_sim_burst){0, 0, 1};
				if (bm) {
					/* Read all three, so that each is reported. */
					enum bl_y_got at, len, factor;

					at = bl_y_get_duration(c, bm, "at", 0, INT64_MAX / 4, &bu->at_ns);
					len = bl_y_get_duration(c, bm, "for", 1, INT64_MAX / 4, &bu->for_ns);
					factor = bl_y_get_double(c, bm, "factor", 0.001, 1e6, &bu->factor);
					if (at != BL_Y_OK || len != BL_Y_OK || factor != BL_Y_OK)
						if (!c->invalid)
							bl_y_report(c, b->kids[i], "a burst needs 'at', 'for' "
										   "and 'factor'");
				}
				bl_y_path_pop(c, mk);
			}
		}
		bl_y_path_pop(c, mark);
	}
}

static void load_task(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"cpu", "memory", "calls", "input_tokens",
					   "output_tokens", "max_tokens"};
	struct bl_scenario *sc = scenario_of(c);
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	double max_tokens;

	if (!m)
		return;
	get_dist(c, m, "cpu", V_DURATION, &sc->task_cpu_ns);
	get_dist(c, m, "memory", V_SIZE, &sc->task_memory);
	get_dist(c, m, "calls", V_COUNT, &sc->calls);
	get_dist(c, m, "input_tokens", V_COUNT, &sc->input_tokens);
	get_dist(c, m, "output_tokens", V_COUNT, &sc->output_tokens);
	if (get_value(c, m, "max_tokens", V_COUNT, &max_tokens))
		sc->max_tokens = (uint64_t)max_tokens;
}

static void load_workload(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"arrivals", "task", "slo", "max_wait", "max_queue",
					   "tenants", "budget", "pool", "provider"};
	struct bl_scenario *sc = scenario_of(c);
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));

	if (!m) {
		bl_y_report(c, raw, "the scenario needs a workload: arrivals and what a task does");
		return;
	}
	/* Tenants first: a trace refers to them. */
	bl_y_load_key(c, m, "tenants", load_tenants);
	bl_y_load_key(c, m, "arrivals", load_arrivals);
	bl_y_load_key(c, m, "task", load_task);
	bl_y_get_duration(c, m, "slo", BL_NS_PER_MS, S_NS(30 * 86400), &sc->slo_ns);
	bl_y_get_duration(c, m, "max_wait", BL_NS_PER_MS, S_NS(30 * 86400), &sc->max_wait_ns);
	bl_y_get_u32(c, m, "max_queue", 1, 100000000, &sc->max_queue);
	get_name(c, m, "budget", &sc->budget);
	get_name(c, m, "pool", &sc->pool);
}

static const char *const dim_keys[BL_DIM_COUNT] = {"requests", "tokens", "input_tokens",
						   "output_tokens"};

static void load_provider(struct bl_yctx *c, const struct bl_ynode *key, const struct bl_ynode *raw,
			  struct bl_sim_provider_spec *p)
{
	static const char *const keys[] = {"limits", "window", "latency", "per_output_token",
					   "error_rate", "outages"};
	static const char *const lkeys[] = {"requests", "tokens", "input_tokens", "output_tokens",
					    "concurrent"};
	static const char *const rkeys[] = {"limit", "per"};
	static const char *const windows[] = {"token_bucket", "fixed_window", "sliding_window"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys)), *lim;
	int window = BL_SIM_WINDOW_TOKEN_BUCKET;
	char why[256];
	size_t mark;
	int64_t per_token = 0;

	bl_sim_provider_config_default(&p->config);
	p->latency_ns = bl_sim_dist_constant(1e9);
	if (!m) {
		bl_y_report(c, raw ? raw : key, "a provider needs at least its limits");
		return;
	}
	mark = bl_y_path_push(c, "limits");
	lim = section(c, bl_y_lookup(m, "limits"), lkeys, NELEMS(lkeys));
	for (int d = 0; d < BL_DIM_COUNT && lim; d++) {
		const struct bl_ynode *r = bl_y_lookup(lim, dim_keys[d]);
		size_t mk;
		double limit = 0;

		if (bl_y_is_null(r))
			continue;
		mk = bl_y_path_push(c, dim_keys[d]);
		if (section(c, r, rkeys, NELEMS(rkeys))) {
			if (bl_y_get_double(c, r, "limit", 1, 9e15, &limit) != BL_Y_OK &&
			    !bl_y_lookup(r, "limit"))
				bl_y_report(c, r, "needs 'limit' (units per window) and 'per' (the window)");
			p->config.rate[d].limit = (uint64_t)limit;
			p->config.rate[d].per_ns = S_NS(60);
			bl_y_get_duration(c, r, "per", BL_NS_PER_MS, S_NS(31 * 86400),
					  &p->config.rate[d].per_ns);
		}
		bl_y_path_pop(c, mk);
	}
	if (lim)
		bl_y_get_u32(c, lim, "concurrent", 0, 100000000, &p->config.concurrent);
	bl_y_path_pop(c, mark);
	if (bl_y_get_enum(c, m, "window", windows, NELEMS(windows), &window) == BL_Y_OK)
		p->config.window = (enum bl_sim_window)window;
	get_dist(c, m, "latency", V_DURATION, &p->latency_ns);
	if (bl_y_get_duration(c, m, "per_output_token", 0, S_NS(60), &per_token) == BL_Y_OK)
		p->per_output_token_ns = (double)per_token;
	bl_y_get_double(c, m, "error_rate", 0, 1, &p->config.error_rate);
	mark = bl_y_path_push(c, "outages");
	read_outages(c, bl_y_lookup(m, "outages"), p->config.outages, &p->config.n_outages);
	bl_y_path_pop(c, mark);
	if (!c->invalid && bl_sim_provider_config_check(&p->config, why, sizeof why))
		bl_y_report(c, raw, "%s", why);
}

static int provider_index(const struct bl_scenario *sc, const char *name)
{
	for (size_t i = 0; i < sc->n_providers; i++)
		if (strcmp(sc->providers[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void load_providers(struct bl_yctx *c, const struct bl_ynode *raw)
{
	struct bl_scenario *sc = scenario_of(c);

	if (bl_y_is_null(raw) || raw->kind != BL_Y_MAP || bl_y_map_size(raw) == 0) {
		bl_y_report_type(c, raw, "a map of providers by name, such as {anthropic: {limits: "
					 "{requests: {limit: 4000, per: 1m}}}}");
		return;
	}
	if (bl_y_map_size(raw) > BL_SIM_PROVIDERS_MAX) {
		bl_y_report(c, raw, "%zu providers; at most %d are accepted", bl_y_map_size(raw),
			    BL_SIM_PROVIDERS_MAX);
		return;
	}
	for (size_t i = 0; i < bl_y_map_size(raw); i++) {
		const struct bl_ynode *k = raw->kids[2 * i];
		struct bl_sim_provider_spec *p = &sc->providers[sc->n_providers];
		size_t mark;

		if (k->kind != BL_Y_SCALAR || k->len == 0 || k->len > 64) {
			bl_y_report(c, k, "a provider's name must be a word of 1..64 characters");
			continue;
		}
		mark = bl_y_path_push(c, k->text);
		if (!(p->name = bl_y_copy(k->text, k->len))) {
			c->err = BL_ENOMEM;
			bl_y_path_pop(c, mark);
			return;
		}
		sc->n_providers++;
		if (provider_index(sc, p->name) != (int)sc->n_providers - 1)
			bl_y_report(c, k, "provider '%s' is defined twice", p->name);
		load_provider(c, k, raw->kids[2 * i + 1], p);
		bl_y_path_pop(c, mark);
	}
}

static void load_backends(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"provider", "latency_factor", "error_rate", "outages"};
	struct bl_scenario *sc = scenario_of(c);

	if (bl_y_is_null(raw))
		return;
	if (raw->kind != BL_Y_MAP) {
		bl_y_report_type(c, raw, "a map of backends by name, such as {key-a: {provider: anthropic}}");
		return;
	}
	if (bl_y_map_size(raw) > BL_SIM_BACKENDS_MAX) {
		bl_y_report(c, raw, "%zu backends; at most %d are accepted", bl_y_map_size(raw),
			    BL_SIM_BACKENDS_MAX);
		return;
	}
	for (size_t i = 0; i < bl_y_map_size(raw); i++) {
		const struct bl_ynode *k = raw->kids[2 * i], *m;
		struct bl_sim_backend_spec *b = &sc->backends[sc->n_backends];
		char *prov = NULL;
		size_t mark;

		if (k->kind != BL_Y_SCALAR || k->len == 0 || k->len > 63) {
			bl_y_report(c, k, "a backend's name must be a word of 1..63 characters");
			continue;
		}
		mark = bl_y_path_push(c, k->text);
		if (!(b->name = bl_y_copy(k->text, k->len))) {
			c->err = BL_ENOMEM;
			bl_y_path_pop(c, mark);
			return;
		}
		sc->n_backends++;
		b->provider = -1;
		b->latency_factor = 1;
		m = section(c, raw->kids[2 * i + 1], keys, NELEMS(keys));
		if (m) {
			if (get_name(c, m, "provider", &prov)) {
				b->provider = provider_index(sc, prov);
				if (b->provider < 0) {
					size_t mk = bl_y_path_push(c, "provider");

					bl_y_report(c, bl_y_lookup(m, "provider"),
						    "provider '%s' is not defined under providers", prov);
					bl_y_path_pop(c, mk);
				}
				free(prov);
			}
			bl_y_get_double(c, m, "latency_factor", 0.001, 1000, &b->latency_factor);
			bl_y_get_double(c, m, "error_rate", 0, 1, &b->error_rate);
			{
				size_t mk = bl_y_path_push(c, "outages");

				read_outages(c, bl_y_lookup(m, "outages"), b->outages, &b->n_outages);
				bl_y_path_pop(c, mk);
			}
		}
		if (b->provider < 0 && !bl_y_lookup(m, "provider")) {
			if (sc->n_providers == 1)
				b->provider = 0;
			else
				bl_y_report(c, k, "backend '%s' needs 'provider': the provider it fronts",
					    b->name);
		}
		bl_y_path_pop(c, mark);
	}
}

static void load_baselines(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"retry", "hpa_cpu_target"};
	static const char *const rkeys[] = {"base", "max", "attempts", "error_attempts",
					    "honor_retry_after"};
	struct bl_scenario *sc = scenario_of(c);
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys)), *r;
	size_t mark;

	if (!m)
		return;
	mark = bl_y_path_push(c, "retry");
	r = section(c, bl_y_lookup(m, "retry"), rkeys, NELEMS(rkeys));
	if (r) {
		bl_y_get_duration(c, r, "base", BL_NS_PER_MS, S_NS(3600), &sc->retry_base_ns);
		bl_y_get_duration(c, r, "max", BL_NS_PER_MS, S_NS(3600), &sc->retry_max_ns);
		bl_y_get_u32(c, r, "attempts", 0, 1000, &sc->retry_attempts);
		bl_y_get_u32(c, r, "error_attempts", 0, 1000, &sc->error_attempts);
		bl_y_get_bool(c, r, "honor_retry_after", &sc->honor_retry_after);
	}
	bl_y_path_pop(c, mark);
	bl_y_get_double(c, m, "hpa_cpu_target", 0.05, 1.0, &sc->hpa_cpu_target);
}

/* ---- the policy blocks ----------------------------------------------------- */

static const char *const policy_keys[] = {"budgets", "pools", "memory", "autoscaler"};
static const char *const scenario_keys[] = {"name",      "duration", "drain",     "seed",
					    "sample",    "fleet",    "workload",  "providers",
					    "backends",  "baselines"};

static bool is_policy_key(const struct bl_ynode *k)
{
	for (size_t i = 0; i < NELEMS(policy_keys); i++)
		if (bl_y_scalar_is(k, policy_keys[i]))
			return true;
	return false;
}

/* Hands the policy blocks to the daemon's loader: a copy of the text with
 * every other top-level entry blanked out, lines and columns unchanged. */
static void load_policy(struct bl_yctx *c, const struct bl_ynode *root, const char *text,
			size_t len)
{
	char *copy;
	bool any = false;
	int rc;

	for (size_t i = 0; i < bl_y_map_size(root); i++)
		any |= is_policy_key(root->kids[2 * i]);
	if (!any) {
		rc = bl_config_load_string("{}", 2, c->file, &scenario_of(c)->policy, c->diags);
		goto out;
	}
	if (!(copy = bl_y_copy(text, len))) {
		c->err = BL_ENOMEM;
		return;
	}
	for (size_t i = 0; i < bl_y_map_size(root); i++) {
		const struct bl_ynode *k = root->kids[2 * i];
		size_t from = k->pos, to = i + 1 < bl_y_map_size(root) ? root->kids[2 * i + 2]->pos : len;

		if (is_policy_key(k))
			continue;
		for (size_t j = from; j < to && j < len; j++)
			if (copy[j] != '\n' && copy[j] != '\r')
				copy[j] = ' ';
	}
	rc = bl_config_load_string(copy, len, c->file, &scenario_of(c)->policy, c->diags);
	free(copy);
out:
	if (rc == BL_ENOMEM)
		c->err = BL_ENOMEM;
	else if (rc)
		c->invalid = true;
}

/* Cross-references between the scenario and its policies. */
static void resolve(struct bl_yctx *c, const struct bl_ynode *root)
{
	struct bl_scenario *sc = scenario_of(c);
	const struct bl_config *pol = sc->policy;
	const struct bl_ynode *w = bl_y_lookup(root, "workload");
	size_t mark = bl_y_path_push(c, "workload");

	if (sc->budget && !bl_config_budget(pol, sc->budget)) {
		size_t mk = bl_y_path_push(c, "budget");

		bl_y_report(c, bl_y_lookup(w, "budget"), "budget '%s' is not defined under budgets",
			    sc->budget);
		bl_y_path_pop(c, mk);
	} else if (!sc->budget && pol->n_budgets > 1 && !sc->pool) {
		bl_y_report(c, w, "several budgets are defined: name the one agents acquire from with "
				  "'budget'");
	} else if (!sc->budget && !sc->pool && pol->n_budgets == 1 &&
		   !(sc->budget = bl_y_copy(pol->budgets[0].name, strlen(pol->budgets[0].name)))) {
		c->err = BL_ENOMEM;
	}
	if (sc->pool) {
		const struct bl_cfg_pool *cp = bl_config_pool(pol, sc->pool);
		size_t mk = bl_y_path_push(c, "pool");

		if (!cp) {
			bl_y_report(c, bl_y_lookup(w, "pool"), "pool '%s' is not defined under pools", sc->pool);
		} else {
			for (size_t i = 0; i < cp->n_backends; i++) {
				struct bl_sim_backend_spec b;

				if (bl_scenario_backend(sc, cp->backends[i].name, &b) != 0)
					bl_y_report(c, bl_y_lookup(w, "pool"),
						    "backend '%s' of pool '%s' fronts no provider: add "
						    "backends: {%s: {provider: NAME}} or a provider of that "
						    "name", cp->backends[i].name, sc->pool,
						    cp->backends[i].name);
			}
		}
		bl_y_path_pop(c, mk);
	}
	if (!sc->pool) {
		const struct bl_ynode *pn = bl_y_lookup(w, "provider");
		size_t mk = bl_y_path_push(c, "provider");

		if (!bl_y_is_null(pn)) {
			if (pn->kind != BL_Y_SCALAR ||
			    (sc->provider = provider_index(sc, pn->text)) < 0)
				bl_y_report(c, pn, "expected the name of a provider defined under providers");
		} else if (sc->n_providers == 1) {
			sc->provider = 0;
		} else if (sc->n_providers > 1) {
			bl_y_report(c, w, "several providers are defined: name the one agents call "
					  "with 'provider'");
		}
		bl_y_path_pop(c, mk);
	}
	bl_y_path_pop(c, mark);
	if (sc->max_tokens == 0) {
		/* Twice the mean output, as an agent sets max_tokens with headroom. */
		double mean = bl_sim_dist_mean(&sc->output_tokens);

		sc->max_tokens = (uint64_t)ceil(2 * mean);
		if (sc->max_tokens == 0)
			sc->max_tokens = 1;
	}
}

static void set_defaults(struct bl_scenario *sc)
{
	sc->duration_ns = S_NS(3600);
	sc->drain_ns = S_NS(600);
	sc->sample_ns = 0; /* chosen from the duration */
	sc->seed = 1;
	sc->replicas = 5;
	sc->startup_ns = bl_sim_dist_constant(30e9);
	sc->tasks_per_worker = 4;
	sc->cpu_cores = 1;
	sc->worker_memory = UINT64_C(2) << 30;
	sc->base_memory = UINT64_C(256) << 20;
	sc->arrivals = BL_SIM_ARRIVALS_POISSON;
	sc->rate_per_s = 1;
	sc->diurnal_low = 0.2;
	sc->diurnal_peak_ns = S_NS(14 * 3600);
	sc->diurnal_period_ns = S_NS(86400);
	sc->task_cpu_ns = bl_sim_dist_constant(1e9);
	sc->task_memory = bl_sim_dist_constant(100.0 * (1 << 20));
	sc->calls = bl_sim_dist_constant(1);
	sc->input_tokens = bl_sim_dist_constant(1000);
	sc->output_tokens = bl_sim_dist_constant(200);
	sc->slo_ns = S_NS(120);
	sc->max_wait_ns = S_NS(1800);
	sc->max_queue = 1000000;
	sc->provider = -1;
	sc->retry_base_ns = S_NS(1);
	sc->retry_max_ns = S_NS(60);
	sc->retry_attempts = 10;
	sc->error_attempts = 3;
	sc->honor_retry_after = true;
	sc->hpa_cpu_target = 0;
}

static void load_root(struct bl_yctx *c, const struct bl_ynode *root, const char *text, size_t len)
{
	static const char *all_keys[NELEMS(scenario_keys) + NELEMS(policy_keys)];
	struct bl_scenario *sc = scenario_of(c);
	double seed;

	for (size_t i = 0; i < NELEMS(scenario_keys); i++)
		all_keys[i] = scenario_keys[i];
	for (size_t i = 0; i < NELEMS(policy_keys); i++)
		all_keys[NELEMS(scenario_keys) + i] = policy_keys[i];
	if (bl_y_is_null(root) || root->kind != BL_Y_MAP) {
		struct bl_ynode at = {.line = 1, .column = 1};

		bl_y_report_type(c, root ? root : &at, "a map with fleet, workload, providers and the "
						       "policy blocks (budgets, pools, memory, "
						       "autoscaler) at the top level");
		return;
	}
	if (root->pos < len && text[root->pos] == '{') {
		bl_y_report(c, root, "write the scenario as a block map, one top-level key per line");
		return;
	}
	check_keys(c, root, all_keys, NELEMS(all_keys));
	{
		const struct bl_ynode *n = bl_y_lookup(root, "name");

		if (!bl_y_is_null(n) && n->kind == BL_Y_SCALAR && !(sc->name = bl_y_copy(n->text, n->len)))
			c->err = BL_ENOMEM;
	}
	bl_y_get_duration(c, root, "duration", S_NS(1), S_NS(31 * 86400), &sc->duration_ns);
	bl_y_get_duration(c, root, "drain", 0, S_NS(7 * 86400), &sc->drain_ns);
	bl_y_get_duration(c, root, "sample", BL_NS_PER_S, S_NS(86400), &sc->sample_ns);
	if (bl_y_get_double(c, root, "seed", 0, 9007199254740991.0, &seed) == BL_Y_OK)
		sc->seed = (uint64_t)seed;
	bl_y_load_key(c, root, "fleet", load_fleet);
	bl_y_load_key(c, root, "providers", load_providers);
	bl_y_load_key(c, root, "workload", load_workload);
	bl_y_load_key(c, root, "backends", load_backends);
	bl_y_load_key(c, root, "baselines", load_baselines);
	if (c->err)
		return;
	load_policy(c, root, text, len);
	if (!c->invalid && !c->err)
		resolve(c, root);
}

/* ---- public ------------------------------------------------------------------ */

void bl_scenario_destroy(struct bl_scenario *sc)
{
	if (!sc)
		return;
	free(sc->path);
	free(sc->name);
	free(sc->trace);
	for (size_t i = 0; i < BL_SIM_TENANTS_MAX; i++)
		free(sc->tenants[i].name);
	for (size_t i = 0; i < BL_SIM_PROVIDERS_MAX; i++)
		free(sc->providers[i].name);
	for (size_t i = 0; i < BL_SIM_BACKENDS_MAX; i++)
		free(sc->backends[i].name);
	free(sc->budget);
	free(sc->pool);
	bl_config_destroy(sc->policy);
	free(sc);
}

int bl_scenario_load_string(const char *text, size_t len, const char *name,
			    struct bl_scenario **out, struct bl_diags *diags)
{
	struct bl_diags local = {0};
	struct load l = {.y.file = name ? name : "<string>", .y.diags = diags ? diags : &local};
	struct bl_yctx *c = &l.y;
	struct bl_ydoc doc = {0};
	struct bl_scenario *sc = calloc(1, sizeof *sc);
	int rc;

	if (!sc)
		return BL_ENOMEM;
	l.sc = sc;
	set_defaults(sc);
	if (!(sc->path = bl_y_copy(c->file, strlen(c->file)))) {
		bl_scenario_destroy(sc);
		return BL_ENOMEM;
	}
	/* A scenario with a problem in its tree (a tag, say) is not read further. */
	if (bl_ydoc_parse(c, text, len, &parse_opts, &doc) && !c->invalid) {
		if (doc.root)
			load_root(c, doc.root, text, len);
		else
			bl_y_report(c, NULL, "the scenario is empty");
	}
	bl_ydoc_cleanup(&doc);
	if (!sc->name && !c->err) {
		const char *base = strrchr(c->file, '/');
		const char *dot;

		base = base ? base + 1 : c->file;
		dot = strrchr(base, '.');
		if (!(sc->name = bl_y_copy(base, dot && dot != base ? (size_t)(dot - base) : strlen(base))))
			c->err = BL_ENOMEM;
	}
	rc = c->err ? c->err : c->invalid ? BL_EINVAL : 0;
	if (rc) {
		bl_scenario_destroy(sc);
		bl_diags_cleanup(&local);
		return rc;
	}
	*out = sc;
	bl_diags_cleanup(&local);
	return 0;
}

int bl_scenario_load_file(const char *path, struct bl_scenario **out, struct bl_diags *diags)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (!f) {
		if (diags && bl_diags_add(diags, path, 0, 0, "", "cannot open: %s", strerror(errno)))
			return BL_ENOMEM;
		return BL_EIO;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 8192;
			if (cap > MAX_FILE_BYTES + 1 || !(nb = realloc(buf, cap))) {
				free(buf);
				fclose(f);
				if (diags && bl_diags_add(diags, path, 0, 0, "",
							  cap > MAX_FILE_BYTES + 1
								  ? "larger than 16 MiB; is this a "
								    "scenario?"
								  : "out of memory"))
					return BL_ENOMEM;
				return cap > MAX_FILE_BYTES + 1 ? BL_EINVAL : BL_ENOMEM;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		if (diags && bl_diags_add(diags, path, 0, 0, "", "cannot read: %s", strerror(errno)))
			return BL_ENOMEM;
		return BL_EIO;
	}
	fclose(f);
	rc = bl_scenario_load_string(buf ? buf : "", len, path, out, diags);
	free(buf);
	return rc;
}

int bl_scenario_backend(const struct bl_scenario *sc, const char *name,
			struct bl_sim_backend_spec *out)
{
	for (size_t i = 0; i < sc->n_backends; i++) {
		if (strcmp(sc->backends[i].name, name) == 0) {
			*out = sc->backends[i];
			return out->provider >= 0 ? 0 : BL_ENOENT;
		}
	}
	memset(out, 0, sizeof *out);
	out->latency_factor = 1;
	out->provider = provider_index(sc, name);
	if (out->provider < 0 && sc->n_providers == 1)
		out->provider = 0;
	return out->provider >= 0 ? 0 : BL_ENOENT;
}

double bl_scenario_rate_factor(const struct bl_scenario *sc, bl_time_ns t)
{
	double f = 1.0;

	if (sc->arrivals == BL_SIM_ARRIVALS_DIURNAL) {
		double phase = (double)(t - sc->diurnal_peak_ns) / (double)sc->diurnal_period_ns;

		f = sc->diurnal_low + (1 - sc->diurnal_low) * (1 + cos(6.283185307179586 * phase)) / 2;
	}
	for (size_t i = 0; i < sc->n_bursts; i++)
		if (t >= sc->bursts[i].at_ns && t - sc->bursts[i].at_ns < sc->bursts[i].for_ns)
			f *= sc->bursts[i].factor;
	return f;
}

double bl_scenario_rate_factor_max(const struct bl_scenario *sc)
{
	double f = 1.0;

	/* Bursts may overlap: their product bounds any moment. */
	for (size_t i = 0; i < sc->n_bursts; i++)
		if (sc->bursts[i].factor > 1)
			f *= sc->bursts[i].factor;
	return f;
}
