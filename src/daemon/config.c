/* The YAML configuration loader.
 *
 * Three stages:
 *  1. The located YAML tree (ytree.h) turns the text into nodes that keep
 *     their line and column; syntax errors are reported there.
 *  2. A schema walk reads the tree into struct bl_config, filling defaults and
 *     reporting every problem it meets (it never stops at the first one).
 *  3. The diagnostics are put in document order.
 *
 * Anchors and aliases are honoured; an alias is a pointer to the anchored
 * node, and the document is refused when aliases would expand it past
 * BL_Y_MAX_EXPANDED_NODES (the "billion laughs" guard).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ballast/error.h"
#include "ballast/units.h"
#include "ytree.h"

#define MAX_FILE_BYTES (16u << 20)    /* config files are small */
#define MAX_NAME_LEN 64               /* budget, pool, backend and tenant names */

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- diagnostics ------------------------------------------------------ */

static char *dup_s(const char *s)
{
	return bl_y_copy(s, strlen(s));
}

__attribute__((format(printf, 1, 0)))
static char *vformat(const char *fmt, va_list ap)
{
	va_list ap2;
	char *buf;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return NULL;
	buf = malloc((size_t)n + 1);
	if (!buf)
		return NULL;
	vsnprintf(buf, (size_t)n + 1, fmt, ap);
	return buf;
}

static void diag_free(struct bl_diag *g)
{
	free(g->file);
	free(g->path);
	free(g->message);
}

int bl_diags_vadd(struct bl_diags *d, const char *file, int line, int column, const char *path,
		  const char *fmt, va_list ap)
{
	struct bl_diag g = {.line = line, .column = column};

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct bl_diag *items = realloc(d->items, cap * sizeof *items);

		if (!items)
			return BL_ENOMEM;
		d->items = items;
		d->cap = cap;
	}
	g.file = dup_s(file ? file : "<string>");
	g.path = dup_s(path ? path : "");
	g.message = vformat(fmt, ap);
	if (!g.file || !g.path || !g.message) {
		diag_free(&g);
		return BL_ENOMEM;
	}
	d->items[d->n++] = g;
	return 0;
}

int bl_diags_add(struct bl_diags *d, const char *file, int line, int column, const char *path,
		 const char *fmt, ...)
{
	va_list ap;
	int err;

	va_start(ap, fmt);
	err = bl_diags_vadd(d, file, line, column, path, fmt, ap);
	va_end(ap);
	return err;
}

/* Frees the entries from index `keep` on. */
static void diags_truncate(struct bl_diags *d, size_t keep)
{
	while (d->n > keep)
		diag_free(&d->items[--d->n]);
}

void bl_diags_cleanup(struct bl_diags *d)
{
	if (!d)
		return;
	diags_truncate(d, 0);
	free(d->items);
	d->items = NULL;
	d->cap = 0;
}

void bl_diags_print(const struct bl_diags *d, FILE *f)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct bl_diag *g = &d->items[i];

		fputs(g->file, f);
		if (g->line > 0)
			fprintf(f, ":%d:%d", g->line, g->column);
		fputs(": ", f);
		if (g->path[0])
			fprintf(f, "%s: ", g->path);
		fprintf(f, "%s\n", g->message);
	}
}

/* Stable insertion sort of items[from..n) by line, then column: document order.
 * The number of diagnostics is capped, so quadratic is fine. */
static void diags_sort(struct bl_diags *d, size_t from)
{
	for (size_t i = from + 1; i < d->n; i++) {
		struct bl_diag g = d->items[i];
		size_t j = i;

		while (j > from && (d->items[j - 1].line > g.line ||
				    (d->items[j - 1].line == g.line &&
				     d->items[j - 1].column > g.column))) {
			d->items[j] = d->items[j - 1];
			j--;
		}
		d->items[j] = g;
	}
}

/* ---- the loader's context --------------------------------------------- */

/* One load: the tree reader's context, and the config being filled. */
struct load {
	struct bl_yctx y;               /* where diagnostics go, the path being read */
	struct bl_config *cfg;          /* what is being filled */
	const struct bl_ynode *budgets; /* the budgets map, to check references */
};

/* The load whose reader context c is. */
static struct load *load_of(struct bl_yctx *c)
{
	return (struct load *)((char *)c - offsetof(struct load, y));
}

/* ---- keys of a fixed-schema map --------------------------------------- */

struct keyref {
	const struct bl_ynode *key; /* a scalar key */
	size_t index;               /* its place in the map */
};

static int keyref_cmp(const void *pa, const void *pb)
{
	const struct keyref *a = pa, *b = pb;
	size_t l = a->key->len < b->key->len ? a->key->len : b->key->len;
	int r = memcmp(a->key->text, b->key->text, l);

	if (r)
		return r;
	if (a->key->len != b->key->len)
		return a->key->len < b->key->len ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* Reports every key of m that repeats an earlier one. `what` names the key
 * in messages ("key", "budget", ...). Sorting keeps this n log n. */
static void check_duplicates(struct bl_yctx *c, const struct bl_ynode *m, const char *what)
{
	size_t n = bl_y_map_size(m), k = 0;
	struct keyref *refs;

	if (n < 2 || bl_y_stopped(c))
		return;
	refs = malloc(n * sizeof *refs);
	if (!refs) {
		c->err = BL_ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct bl_ynode *key = bl_y_key_scalar(bl_y_map_key(m, i));

		if (key)
			refs[k++] = (struct keyref){key, i};
	}
	qsort(refs, k, sizeof *refs, keyref_cmp);
	/* Equal keys are now adjacent, the first written first in each run. */
	for (size_t i = 1, first = 0; i < k && !bl_y_stopped(c); i++) {
		char shown[BL_Y_SHOW_CAP];
		size_t mark;

		if (refs[i].key->len != refs[first].key->len ||
		    memcmp(refs[i].key->text, refs[first].key->text, refs[i].key->len) != 0) {
			first = i;
			continue;
		}
		bl_y_show(shown, sizeof shown, refs[i].key->text, refs[i].key->len);
		mark = bl_y_path_push_n(c, refs[i].key->text, refs[i].key->len);
		bl_y_report(c, bl_y_map_key(m, refs[i].index), "duplicate %s '%s'; the first is at line %d",
			    what, shown, refs[first].key->line);
		bl_y_path_pop(c, mark);
	}
	free(refs);
}

/* Checks the keys of a fixed-schema map: scalars, known, not repeated. */
static void check_keys(struct bl_yctx *c, const struct bl_ynode *m, const char *const *keys,
		       size_t n_keys)
{
	for (size_t i = 0; i < bl_y_map_size(m) && !bl_y_stopped(c); i++) {
		const struct bl_ynode *raw = bl_y_map_key(m, i), *k = bl_y_key_scalar(raw);
		char shown[BL_Y_SHOW_CAP], list[512];
		const char *hint;
		size_t mark;
		bool known = false;

		if (!k) {
			bl_y_report(c, raw, "keys must be plain words, not %s",
				    bl_y_deref(raw) && bl_y_deref(raw)->kind == BL_Y_MAP ? "maps" : "lists");
			continue;
		}
		for (size_t j = 0; j < n_keys && !known; j++)
			known = bl_y_scalar_is(k, keys[j]);
		if (known)
			continue;
		bl_y_show(shown, sizeof shown, k->text, k->len);
		mark = bl_y_path_push_n(c, k->text, k->len);
		hint = bl_y_suggest(k->text, k->len, keys, n_keys);
		if (k->len == 2 && memcmp(k->text, "<<", 2) == 0)
			bl_y_report(c, raw, "merge keys (<<) are not supported; repeat the settings or "
					    "use an alias for the whole value");
		else if (hint)
			bl_y_report(c, raw, "unknown key '%s'; did you mean '%s'?", shown, hint);
		else
			bl_y_report(c, raw, "unknown key '%s'; accepted here: %s", shown,
				    bl_y_join(list, sizeof list, keys, n_keys));
		bl_y_path_pop(c, mark);
	}
	check_duplicates(c, m, "key");
}

/* A fixed-schema section: the map (or NULL when absent, null or the wrong
 * type, which is reported), with its keys checked. */
static const struct bl_ynode *section(struct bl_yctx *c, const struct bl_ynode *raw,
				      const char *const *keys, size_t n_keys)
{
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of settings");

	if (m)
		check_keys(c, m, keys, n_keys);
	return m;
}


/* Names of budgets, pools, backends and tenants go into URLs and metrics. */
static bool name_ok(const struct bl_ynode *n)
{
	if (!n || n->kind != BL_Y_SCALAR || n->len == 0 || n->len > MAX_NAME_LEN)
		return false;
	for (size_t i = 0; i < n->len; i++) {
		char ch = n->text[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

static bool check_name(struct bl_yctx *c, const struct bl_ynode *raw, const char *what)
{
	const struct bl_ynode *n = bl_y_deref(raw);
	char shown[BL_Y_SHOW_CAP];

	if (name_ok(n))
		return true;
	if (!n || n->kind != BL_Y_SCALAR) {
		char buf[BL_Y_SHOW_CAP + 16];

		bl_y_report(c, raw, "a %s name must be a word, got %s", what,
			    bl_y_describe(raw, buf, sizeof buf));
		return false;
	}
	bl_y_report(c, raw, "%s name '%s' is not accepted: use 1..%d letters, digits, '_', '-' or '.'",
		    what, bl_y_show(shown, sizeof shown, n->text, n->len), MAX_NAME_LEN);
	return false;
}

/* The value under key in m, for locating problems about it; else m itself. */
static const struct bl_ynode *where(const struct bl_ynode *m, const char *key)
{
	const struct bl_ynode *v = bl_y_lookup(m, key);

	return v ? v : m;
}

/* ---- listen, URLs, Kubernetes names ----------------------------------- */

/* Splits "host:port" / "[v6]:port". Returns 0, BL_EINVAL with why filled in, or BL_ENOMEM. */
static int parse_listen(const char *s, char **host_out, uint16_t *port_out, char *why, size_t cap)
{
	const char *host, *port;
	size_t hlen;
	char hbuf[64], shown[BL_Y_SHOW_CAP];
	unsigned char addr[16];
	unsigned long p = 0;
	char *h;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close) {
			snprintf(why, cap, "missing ']' after the IPv6 address; write it as [::1]:7070");
			return BL_EINVAL;
		}
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close[1] != ':') {
			snprintf(why, cap, "expected ':' and a port after ']', such as [::1]:7070");
			return BL_EINVAL;
		}
		port = close + 2;
		if (hlen >= sizeof hbuf || (memcpy(hbuf, host, hlen), hbuf[hlen] = '\0',
					    inet_pton(AF_INET6, hbuf, addr) != 1)) {
			snprintf(why, cap, "'%s' is not an IPv6 address",
				 bl_y_show(shown, sizeof shown, host, hlen));
			return BL_EINVAL;
		}
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon) {
			snprintf(why, cap, "'%s' has no port; expected host:port such as "
					   "127.0.0.1:7070 or [::1]:7070",
				 bl_y_show(shown, sizeof shown, s, strlen(s)));
			return BL_EINVAL;
		}
		host = s;
		hlen = (size_t)(colon - s);
		port = colon + 1;
		if (memchr(s, ':', hlen)) {
			snprintf(why, cap, "an IPv6 address needs brackets, such as [::1]:7070");
			return BL_EINVAL;
		}
		if (hlen == 0) {
			snprintf(why, cap, "the host is empty; write 0.0.0.0:%s to listen on every "
					   "interface, 127.0.0.1:%s for loopback only", port, port);
			return BL_EINVAL;
		}
		if (!(hlen == 9 && memcmp(host, "localhost", 9) == 0) &&
		    (hlen >= sizeof hbuf || (memcpy(hbuf, host, hlen), hbuf[hlen] = '\0',
					     inet_pton(AF_INET, hbuf, addr) != 1))) {
			snprintf(why, cap, "'%s' is not an IPv4 address, a bracketed IPv6 address or "
					   "localhost", bl_y_show(shown, sizeof shown, host, hlen));
			return BL_EINVAL;
		}
	}
	if (port[0] == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
	    (p = strtoul(port, NULL, 10)) > 65535) {
		snprintf(why, cap, "port '%s' is not a number in 0..65535",
			 bl_y_show(shown, sizeof shown, port, strlen(port)));
		return BL_EINVAL;
	}
	h = bl_y_copy(host, hlen);
	if (!h)
		return BL_ENOMEM;
	free(*host_out);
	*host_out = h;
	*port_out = (uint16_t)p;
	return 0;
}

/* The authority of an http(s) URL: [start, end) after "scheme://". */
static bool url_authority(const char *u, const char **start, const char **end)
{
	const char *p;

	if (strncasecmp(u, "http://", 7) == 0)
		p = u + 7;
	else if (strncasecmp(u, "https://", 8) == 0)
		p = u + 8;
	else
		return false;
	*start = p;
	*end = p + strcspn(p, "/?#");
	return true;
}

static bool read_url(struct bl_yctx *c, const struct bl_ynode *raw, char **out)
{
	const char *a, *e, *at, *host;
	char shown[BL_Y_SHOW_CAP];

	if (!bl_y_read_string(c, raw, "an http:// or https:// URL", out))
		return false;
	bl_y_show(shown, sizeof shown, *out, strlen(*out));
	if (!url_authority(*out, &a, &e)) {
		bl_y_report(c, raw, "'%s' is not an http:// or https:// URL", shown);
		return false;
	}
	for (const char *p = *out; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			bl_y_report(c, raw, "'%s' contains a space or control character; URLs must "
					    "percent-encode them", shown);
			return false;
		}
	}
	at = NULL;
	for (const char *p = a; p < e; p++)
		if (*p == '@')
			at = p;
	host = at ? at + 1 : a;
	if (host == e || *host == ':') {
		bl_y_report(c, raw, "'%s' has no host", shown);
		return false;
	}
	return true;
}

bool bl_cfg_k8s_name_ok(const char *s, size_t max, bool dots)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (!alnum && !(ch == '-' || (dots && ch == '.')))
			return false;
		if ((i == 0 || i == n - 1) && !alnum)
			return false;
	}
	return true;
}

/* ---- sections ---------------------------------------------------------- */

static const char *const dim_names[BL_CFG_DIM_COUNT] = {"requests", "tokens", "input_tokens",
							 "output_tokens"};
static const char *const strategy_names[] = {"round_robin",    "weighted", "random",
					     "least_inflight", "p2c",      "peak_ewma",
					     "consistent_hash"};
static const char *const actuator_names[] = {"none", "local", "exec", "kubernetes"};
static const char *const level_names[] = {"debug", "info", "warn", "error"};

#define S(x) ((int64_t)(x) * BL_NS_PER_S)
#define MS(x) ((int64_t)(x) * BL_NS_PER_MS)
#define KIB(x) ((uint64_t)(x) << 10)
#define MIB(x) ((uint64_t)(x) << 20)
#define GIB(x) ((uint64_t)(x) << 30)
#define TIB(x) ((uint64_t)(x) << 40)

/* Slack for comparing shares such as burst against 1 - target_utilization. */
#define SHARE_EPSILON 1e-9

static void load_log(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"level", "access"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	struct bl_config *cfg = load_of(c)->cfg;
	int level;

	if (bl_y_get_enum(c, m, "level", level_names, NELEMS(level_names), &level) == BL_Y_OK)
		cfg->log_level = (enum bl_log_level)level;
	bl_y_get_bool(c, m, "access", &cfg->log_access);
}

static void load_limits(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"max_connections", "max_body", "max_header",
					   "request_timeout", "daemon_memory"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	struct bl_config *cfg = load_of(c)->cfg;

	bl_y_get_u32(c, m, "max_connections", 1, 1000000, &cfg->max_connections);
	bl_y_get_size(c, m, "max_body", KIB(1), GIB(1), &cfg->max_body);
	bl_y_get_size(c, m, "max_header", KIB(1), MIB(1), &cfg->max_header);
	bl_y_get_duration(c, m, "request_timeout", MS(100), S(3600), &cfg->request_timeout_ns);
	bl_y_get_size(c, m, "daemon_memory", MIB(16), TIB(1), &cfg->daemon_memory);
}

static void load_listen(struct bl_yctx *c, const struct bl_ynode *m)
{
	const struct bl_ynode *v = bl_y_lookup(m, "listen");
	struct bl_config *cfg = load_of(c)->cfg;
	char why[256];
	size_t mark;
	int err;

	if (!v || bl_y_is_null(v))
		return;
	mark = bl_y_path_push(c, "listen");
	if (bl_y_read_string(c, v, "host:port such as 127.0.0.1:7070", &cfg->listen)) {
		err = parse_listen(cfg->listen, &cfg->listen_host, &cfg->listen_port, why, sizeof why);
		if (err == BL_ENOMEM)
			c->err = err;
		else if (err)
			bl_y_report(c, v, "%s", why);
	}
	bl_y_path_pop(c, mark);
}

static void load_rate(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_cfg_rate *r)
{
	static const char *const keys[] = {"limit", "per"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	enum bl_y_got gl, gp;

	if (!m) {
		if (!bl_y_deref(raw) || bl_y_deref(raw)->kind == BL_Y_MAP)
			bl_y_report(c, raw, "needs limit and per, such as {limit: 4000, per: 1m}");
		return;
	}
	gl = bl_y_get_u64(c, m, "limit", 1, INT64_C(1000000000000000), &r->limit);
	gp = bl_y_get_duration(c, m, "per", S(1), S(7 * 86400), &r->per_ns);
	if (gl == BL_Y_NONE)
		bl_y_report(c, m, "missing 'limit': the units the provider allows per window");
	if (gp == BL_Y_NONE)
		bl_y_report(c, m, "missing 'per': the window the provider states, such as 1m");
	r->set = gl == BL_Y_OK && gp == BL_Y_OK;
}

static void load_budget_limits(struct bl_yctx *c, const struct bl_ynode *budget,
			       struct bl_cfg_budget *b)
{
	static const char *const keys[] = {"requests", "tokens", "input_tokens", "output_tokens",
					   "concurrent"};
	const struct bl_ynode *raw = bl_y_lookup(budget, "limits");
	size_t mark = bl_y_path_push(c, "limits");
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	bool any = false;

	for (int d = 0; d < BL_CFG_DIM_COUNT; d++) {
		const struct bl_ynode *v = bl_y_lookup(m, dim_names[d]);
		size_t dmark;

		if (!v || bl_y_is_null(v))
			continue;
		any = true;
		dmark = bl_y_path_push(c, dim_names[d]);
		load_rate(c, v, &b->limits[d]);
		bl_y_path_pop(c, dmark);
	}
	if (bl_y_get_u32(c, m, "concurrent", 0, 1000000, &b->concurrent) != BL_Y_NONE)
		any = true;
	/* A misspelt dimension was reported as such: that is the problem to fix. */
	for (size_t i = 0; i < bl_y_map_size(m) && !any; i++) {
		const struct bl_ynode *k = bl_y_key_scalar(bl_y_map_key(m, i));
		bool known = false;

		for (size_t j = 0; k && j < NELEMS(keys); j++)
			known = known || bl_y_scalar_is(k, keys[j]);
		any = !known;
	}
	if (!any && !(raw && !bl_y_is_null(raw) && !m))
		bl_y_report(c, m ? m : (raw ? raw : budget),
			    "a budget needs at least one limit: requests, tokens, input_tokens, "
			    "output_tokens ({limit: N, per: 1m}) or concurrent");
	bl_y_path_pop(c, mark);
}

static void load_tenants(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_cfg_budget *b)
{
	static const char *const keys[] = {"weight"};
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of tenant names to {weight: N}");
	size_t n = bl_y_map_size(m);

	if (!n)
		return;
	b->tenants = calloc(n, sizeof *b->tenants);
	if (!b->tenants) {
		c->err = BL_ENOMEM;
		return;
	}
	b->n_tenants = n;
	check_duplicates(c, m, "tenant");
	for (size_t i = 0; i < n && !bl_y_stopped(c); i++) {
		const struct bl_ynode *k = bl_y_map_key(m, i), *ks = bl_y_key_scalar(k);
		struct bl_cfg_tenant *t = &b->tenants[i];
		size_t mark;

		t->weight = 1;
		if (!check_name(c, k, "tenant"))
			continue;
		t->name = bl_y_copy(ks->text, ks->len);
		if (!t->name) {
			c->err = BL_ENOMEM;
			return;
		}
		mark = bl_y_path_push(c, t->name);
		bl_y_get_u32(c, section(c, bl_y_map_value(m, i), keys, NELEMS(keys)), "weight", 1, 1000,
			     &t->weight);
		bl_y_path_pop(c, mark);
	}
}

static void load_budget(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_cfg_budget *b)
{
	static const char *const keys[] = {"limits",    "target_utilization", "burst",
					   "lease_ttl", "max_queue",          "adaptive",
					   "tenants"};
	static const char *const adaptive_keys[] = {"decrease", "increase", "period"};
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of budget settings");
	const struct bl_ynode *adaptive, *v;
	bool target_ok = true;
	size_t mark;

	b->target_utilization = 0.90;
	b->lease_ttl_ns = S(120);
	b->max_queue = 10000;
	b->adaptive_decrease = 0.8;
	b->adaptive_increase = 0.05;
	b->adaptive_period_ns = S(10);
	if (m)
		check_keys(c, m, keys, NELEMS(keys));
	else if (raw && !bl_y_is_null(raw))
		return;
	load_budget_limits(c, m ? m : raw, b);
	if (bl_y_get_double(c, m, "target_utilization", 0.85, 0.95, &b->target_utilization) == BL_Y_BAD)
		target_ok = false;
	b->burst = 1.0 - b->target_utilization < 0.05 ? 1.0 - b->target_utilization : 0.05;
	v = bl_y_lookup(m, "burst");
	if (v && !bl_y_is_null(v)) {
		double hi = 1.0 - b->target_utilization, burst;

		mark = bl_y_path_push(c, "burst");
		/* Against the headroom only when target_utilization itself is valid. */
		if (bl_y_read_double(c, v, 0.0, 1.0, &burst) && target_ok) {
			if (burst > hi + SHARE_EPSILON)
				bl_y_report(c, v, "%s is outside 0..%g (1 - target_utilization: the "
						  "burst may only spend the headroom)",
					    bl_y_deref(v)->text, hi);
			else
				b->burst = burst < hi ? burst : hi;
		}
		bl_y_path_pop(c, mark);
	}
	bl_y_get_duration(c, m, "lease_ttl", S(1), S(86400), &b->lease_ttl_ns);
	bl_y_get_u32(c, m, "max_queue", 0, 1000000, &b->max_queue);
	mark = bl_y_path_push(c, "adaptive");
	adaptive = section(c, bl_y_lookup(m, "adaptive"), adaptive_keys, NELEMS(adaptive_keys));
	bl_y_get_double(c, adaptive, "decrease", 0.1, 0.99, &b->adaptive_decrease);
	bl_y_get_double(c, adaptive, "increase", 0.001, 1.0, &b->adaptive_increase);
	bl_y_get_duration(c, adaptive, "period", MS(100), S(3600), &b->adaptive_period_ns);
	bl_y_path_pop(c, mark);
	mark = bl_y_path_push(c, "tenants");
	load_tenants(c, bl_y_lookup(m, "tenants"), b);
	bl_y_path_pop(c, mark);
}

static void load_budgets(struct bl_yctx *c, const struct bl_ynode *raw)
{
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of budget names to budget settings");
	struct bl_config *cfg = load_of(c)->cfg;
	size_t n = bl_y_map_size(m);

	load_of(c)->budgets = m;
	if (!n)
		return;
	cfg->budgets = calloc(n, sizeof *cfg->budgets);
	if (!cfg->budgets) {
		c->err = BL_ENOMEM;
		return;
	}
	cfg->n_budgets = n;
	check_duplicates(c, m, "budget");
	for (size_t i = 0; i < n && !bl_y_stopped(c); i++) {
		const struct bl_ynode *k = bl_y_map_key(m, i), *ks = bl_y_key_scalar(k);
		struct bl_cfg_budget *b = &cfg->budgets[i];
		size_t mark;

		if (!ks) {
			check_name(c, k, "budget");
			continue;
		}
		b->name = bl_y_copy(ks->text, ks->len);
		if (!b->name) {
			c->err = BL_ENOMEM;
			return;
		}
		mark = bl_y_path_push_n(c, ks->text, ks->len);
		check_name(c, k, "budget");
		load_budget(c, bl_y_map_value(m, i), b);
		bl_y_path_pop(c, mark);
	}
}

/* Checks that a reference names a configured budget. */
static void check_budget_ref(struct bl_yctx *c, const struct bl_ynode *at, const char *name)
{
	const struct bl_ynode *budgets = load_of(c)->budgets;
	char shown[BL_Y_SHOW_CAP];
	const char *cands[16] = {0};
	size_t n = 0;
	const char *hint;

	if (bl_y_lookup(budgets, name))
		return;
	for (size_t i = 0; i < bl_y_map_size(budgets) && n < NELEMS(cands); i++) {
		const struct bl_ynode *k = bl_y_key_scalar(bl_y_map_key(budgets, i));

		if (k && strlen(k->text) == k->len)
			cands[n++] = k->text;
	}
	bl_y_show(shown, sizeof shown, name, strlen(name));
	hint = bl_y_suggest(name, strlen(name), cands, n);
	if (hint)
		bl_y_report(c, at, "budget '%s' is not configured; did you mean '%s'?", shown, hint);
	else if (n)
		bl_y_report(c, at, "budget '%s' is not configured under budgets", shown);
	else
		bl_y_report(c, at, "budget '%s' is not configured: there are no budgets", shown);
}

static void load_backend(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_cfg_backend *be)
{
	static const char *const keys[] = {"name", "url", "weight", "budget", "metrics_url"};
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map such as {name: a, url: \"https://...\"}");
	const struct bl_ynode *v;
	size_t mark;

	be->weight = 1;
	if (!m) {
		if (!raw || bl_y_is_null(raw))
			bl_y_report(c, raw, "expected a backend such as {name: a, url: \"https://...\"}, "
					    "got nothing");
		return;
	}
	check_keys(c, m, keys, NELEMS(keys));
	v = bl_y_lookup(m, "name");
	if (!v || bl_y_is_null(v)) {
		bl_y_report(c, m, "missing 'name'");
	} else {
		mark = bl_y_path_push(c, "name");
		if (check_name(c, v, "backend")) {
			be->name = bl_y_copy(bl_y_deref(v)->text, bl_y_deref(v)->len);
			if (!be->name)
				c->err = BL_ENOMEM;
		}
		bl_y_path_pop(c, mark);
	}
	v = bl_y_lookup(m, "url");
	if (!v || bl_y_is_null(v)) {
		bl_y_report(c, m, "missing 'url': where agents send calls for this backend");
	} else {
		mark = bl_y_path_push(c, "url");
		read_url(c, v, &be->url);
		bl_y_path_pop(c, mark);
	}
	bl_y_get_u32(c, m, "weight", 1, 10000, &be->weight);
	if (bl_y_get_string(c, m, "budget", "a budget name", &be->budget) == BL_Y_OK) {
		mark = bl_y_path_push(c, "budget");
		check_budget_ref(c, bl_y_lookup(m, "budget"), be->budget);
		bl_y_path_pop(c, mark);
	}
	v = bl_y_lookup(m, "metrics_url");
	if (v && !bl_y_is_null(v)) {
		mark = bl_y_path_push(c, "metrics_url");
		read_url(c, v, &be->metrics_url);
		bl_y_path_pop(c, mark);
	}
}

/* Backends are a list: names must still be unique within the pool. */
static void check_backend_names(struct bl_yctx *c, const struct bl_cfg_pool *p,
				const struct bl_ynode *seq)
{
	for (size_t i = 1; i < p->n_backends && !bl_y_stopped(c); i++) {
		if (!p->backends[i].name)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct bl_ynode *first, *item;
			size_t mark;

			if (!p->backends[j].name || strcmp(p->backends[i].name, p->backends[j].name))
				continue;
			first = bl_y_deref(seq->kids[j]);
			item = bl_y_deref(seq->kids[i]);
			mark = bl_y_path_push_index(c, i);
			bl_y_path_push(c, "name");
			bl_y_report(c, where(item, "name"),
				    "duplicate backend '%s'; the first is backends[%zu] at line %d",
				    p->backends[i].name, j, where(first, "name")->line);
			bl_y_path_pop(c, mark);
			break;
		}
	}
}

static void load_breaker(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_cfg_breaker *br)
{
	static const char *const keys[] = {"window",       "min_calls",
					   "failure_rate", "slow_call",
					   "slow_rate",    "consecutive_failures",
					   "open_for",     "max_open_for",
					   "half_open_probes", "rate_limited_trips"};
	static const char *const window_keys[] = {"count", "time"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct bl_ynode *w;
	enum bl_y_got gc = BL_Y_NONE, gt = BL_Y_NONE, gmax;
	size_t mark;

	br->window_count = 50;
	br->min_calls = 20;
	br->failure_rate = 0.5;
	br->slow_call_ns = S(20);
	br->slow_rate = 0.8;
	br->consecutive_failures = 5;
	br->open_for_ns = S(30);
	br->max_open_for_ns = S(300);
	br->half_open_probes = 3;
	br->rate_limited_trips = false;

	mark = bl_y_path_push(c, "window");
	w = bl_y_lookup(m, "window");
	if (w && !bl_y_is_null(w)) {
		const struct bl_ynode *wm = section(c, w, window_keys, NELEMS(window_keys));

		if (wm) {
			uint32_t count = br->window_count;
			int64_t span = 0;

			gc = bl_y_get_u32(c, wm, "count", 1, 100000, &count);
			gt = bl_y_get_duration(c, wm, "time", S(1), S(3600), &span);
			if (gc != BL_Y_NONE && gt != BL_Y_NONE) {
				bl_y_report(c, wm, "give either count (outcomes kept) or time (span "
						   "kept), not both");
			} else if (gc == BL_Y_NONE && gt == BL_Y_NONE) {
				bl_y_report(c, wm, "needs count (such as {count: 50}) or time (such as "
						   "{time: 60s})");
			} else if (gt == BL_Y_OK) {
				br->window_is_time = true;
				br->window_ns = span;
			} else if (gc == BL_Y_OK) {
				br->window_count = count;
			}
		}
	}
	bl_y_path_pop(c, mark);
	if (bl_y_get_u32(c, m, "min_calls", 1, 100000, &br->min_calls) == BL_Y_OK && !br->window_is_time &&
	    gt == BL_Y_NONE && br->min_calls > br->window_count) {
		mark = bl_y_path_push(c, "min_calls");
		bl_y_report(c, where(m, "min_calls"),
			    "%u exceeds the window of %u calls, so the breaker could never trip",
			    br->min_calls, br->window_count);
		bl_y_path_pop(c, mark);
	}
	bl_y_get_double(c, m, "failure_rate", 0.0, 1.0, &br->failure_rate);
	bl_y_get_duration(c, m, "slow_call", MS(1), S(3600), &br->slow_call_ns);
	bl_y_get_double(c, m, "slow_rate", 0.0, 1.0, &br->slow_rate);
	bl_y_get_u32(c, m, "consecutive_failures", 0, 100000, &br->consecutive_failures);
	bl_y_get_duration(c, m, "open_for", MS(100), S(3600), &br->open_for_ns);
	gmax = bl_y_get_duration(c, m, "max_open_for", MS(100), S(86400), &br->max_open_for_ns);
	if (gmax == BL_Y_NONE && br->max_open_for_ns < br->open_for_ns)
		br->max_open_for_ns = br->open_for_ns;
	if (gmax == BL_Y_OK && br->max_open_for_ns < br->open_for_ns) {
		char a[32], b[32];

		bl_format_duration(br->max_open_for_ns, a, sizeof a);
		bl_format_duration(br->open_for_ns, b, sizeof b);
		mark = bl_y_path_push(c, "max_open_for");
		bl_y_report(c, where(m, "max_open_for"), "%s is shorter than open_for (%s); it must be "
							 "at least as long", a, b);
		bl_y_path_pop(c, mark);
	}
	bl_y_get_u32(c, m, "half_open_probes", 1, 1000, &br->half_open_probes);
	bl_y_get_bool(c, m, "rate_limited_trips", &br->rate_limited_trips);
}

static void load_pool(struct bl_yctx *c, const struct bl_ynode *raw, struct bl_cfg_pool *p)
{
	static const char *const keys[] = {"strategy",    "backends",   "breaker",
					   "max_ejected", "slow_start", "ewma_decay",
					   "metrics_interval"};
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of pool settings");
	const struct bl_ynode *v, *seq;
	int strategy;
	size_t mark;

	p->strategy = BL_STRATEGY_PEAK_EWMA;
	p->max_ejected = 0.5;
	p->slow_start_ns = 0;
	p->ewma_decay_ns = S(10);
	p->metrics_interval_ns = S(5);
	if (m)
		check_keys(c, m, keys, NELEMS(keys));
	else if (raw && !bl_y_is_null(raw))
		return;
	if (bl_y_get_enum(c, m, "strategy", strategy_names, NELEMS(strategy_names), &strategy) == BL_Y_OK)
		p->strategy = (enum bl_cfg_strategy)strategy;

	mark = bl_y_path_push(c, "backends");
	v = bl_y_lookup(m, "backends");
	seq = bl_y_as_seq(c, v, "a list of backends such as [{name: a, url: \"https://...\"}]");
	if (!seq && (!v || bl_y_is_null(v)))
		bl_y_report(c, v ? v : raw, "a pool needs at least one backend, such as "
					    "backends: [{name: a, url: \"https://...\"}]");
	else if (seq && seq->n_kids == 0)
		bl_y_report(c, seq, "a pool needs at least one backend; the list is empty");
	if (seq && seq->n_kids) {
		p->backends = calloc(seq->n_kids, sizeof *p->backends);
		if (!p->backends) {
			c->err = BL_ENOMEM;
			bl_y_path_pop(c, mark);
			return;
		}
		p->n_backends = seq->n_kids;
		for (size_t i = 0; i < seq->n_kids && !bl_y_stopped(c); i++) {
			size_t imark = bl_y_path_push_index(c, i);

			load_backend(c, seq->kids[i], &p->backends[i]);
			bl_y_path_pop(c, imark);
		}
		check_backend_names(c, p, seq);
	}
	bl_y_path_pop(c, mark);

	mark = bl_y_path_push(c, "breaker");
	load_breaker(c, bl_y_lookup(m, "breaker"), &p->breaker);
	bl_y_path_pop(c, mark);
	bl_y_get_double(c, m, "max_ejected", 0.0, 1.0, &p->max_ejected);
	bl_y_get_duration(c, m, "slow_start", 0, S(3600), &p->slow_start_ns);
	bl_y_get_duration(c, m, "ewma_decay", MS(100), S(3600), &p->ewma_decay_ns);
	bl_y_get_duration(c, m, "metrics_interval", MS(100), S(3600), &p->metrics_interval_ns);
}

static void load_pools(struct bl_yctx *c, const struct bl_ynode *raw)
{
	const struct bl_ynode *m = bl_y_as_map(c, raw, "a map of pool names to pool settings");
	struct bl_config *cfg = load_of(c)->cfg;
	size_t n = bl_y_map_size(m);

	if (!n)
		return;
	cfg->pools = calloc(n, sizeof *cfg->pools);
	if (!cfg->pools) {
		c->err = BL_ENOMEM;
		return;
	}
	cfg->n_pools = n;
	check_duplicates(c, m, "pool");
	for (size_t i = 0; i < n && !bl_y_stopped(c); i++) {
		const struct bl_ynode *k = bl_y_map_key(m, i), *ks = bl_y_key_scalar(k);
		struct bl_cfg_pool *p = &cfg->pools[i];
		size_t mark;

		if (!ks) {
			check_name(c, k, "pool");
			continue;
		}
		p->name = bl_y_copy(ks->text, ks->len);
		if (!p->name) {
			c->err = BL_ENOMEM;
			return;
		}
		mark = bl_y_path_push_n(c, ks->text, ks->len);
		check_name(c, k, "pool");
		load_pool(c, bl_y_map_value(m, i), p);
		bl_y_path_pop(c, mark);
	}
}

/* low and high of a band such as watermarks or a CPU target: 0 < low < high <= 1. */
static void load_band(struct bl_yctx *c, const struct bl_ynode *raw, double *low, double *high)
{
	static const char *const keys[] = {"low", "high"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	enum bl_y_got gl, gh;

	gl = bl_y_get_double(c, m, "low", 0.0, 1.0, low);
	gh = bl_y_get_double(c, m, "high", 0.0, 1.0, high);
	if (gl != BL_Y_BAD && gh != BL_Y_BAD && *low >= *high) {
		size_t mark = bl_y_path_push(c, gl == BL_Y_OK ? "low" : "high");

		bl_y_report(c, where(m, gl == BL_Y_OK ? "low" : "high"),
			    "low (%g) must be below high (%g)", *low, *high);
		bl_y_path_pop(c, mark);
	}
}

static void load_memory(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"capacity", "safety_buffer", "watermarks", "lease_ttl",
					   "max_queue"};
	struct bl_cfg_memory *mem = &load_of(c)->cfg->memory;
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct bl_ynode *v;
	size_t mark;

	if (!m)
		return;
	mem->configured = true;
	v = bl_y_lookup(m, "capacity");
	if (v && !bl_y_is_null(v)) {
		const struct bl_ynode *n = bl_y_deref(v);

		mark = bl_y_path_push(c, "capacity");
		if (n && n->kind == BL_Y_SCALAR && bl_y_scalar_is(n, "auto")) {
			mem->capacity_auto = true;
		} else if (bl_y_read_size(c, v, MIB(1), UINT64_MAX, &mem->capacity)) {
			mem->capacity_auto = false;
		}
		bl_y_path_pop(c, mark);
	}
	bl_y_get_double(c, m, "safety_buffer", 0.0, 0.9, &mem->safety_buffer);
	bl_y_get_duration(c, m, "lease_ttl", S(1), S(86400), &mem->lease_ttl_ns);
	bl_y_get_u32(c, m, "max_queue", 0, 1000000, &mem->max_queue);
	mark = bl_y_path_push(c, "watermarks");
	load_band(c, bl_y_lookup(m, "watermarks"), &mem->low, &mem->high);
	bl_y_path_pop(c, mark);
}

static void load_actuator(struct bl_yctx *c, const struct bl_ynode *raw,
			  struct bl_cfg_autoscaler *a)
{
	static const char *const keys[] = {"kind",       "command",     "grace",   "env",
					   "cwd",        "namespace",   "deployment", "statefulset",
					   "api_url",    "token_file",  "ca_file"};
	static const char *const kinds[] = {"local", "exec", "kubernetes"};
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct bl_ynode *v, *seq;
	int kind;
	enum bl_y_got gk;
	size_t mark;

	if (!m)
		return;
	gk = bl_y_get_enum(c, m, "kind", kinds, NELEMS(kinds), &kind);
	if (gk == BL_Y_NONE)
		bl_y_report(c, m, "missing 'kind': one of local, exec, kubernetes");
	if (gk != BL_Y_OK)
		return;
	a->actuator = (enum bl_cfg_actuator)(kind + 1);
	bl_y_get_duration(c, m, "grace", 0, S(3600), &a->grace_ns);

	v = bl_y_lookup(m, "command");
	mark = bl_y_path_push(c, "command");
	if (a->actuator == BL_ACTUATOR_KUBERNETES) {
		if (v && !bl_y_is_null(v))
			bl_y_report(c, v, "is only used by kind local or exec; kubernetes scales "
					  "a deployment");
	} else {
		seq = bl_y_as_seq(c, v, "a list of strings, such as [\"python3\", \"agent.py\"]");
		if (!seq && (!v || bl_y_is_null(v)))
			bl_y_report(c, v ? v : m, "kind %s needs a command, such as "
						  "[\"python3\", \"agent.py\"]",
				    actuator_names[a->actuator]);
		else if (seq && seq->n_kids == 0)
			bl_y_report(c, seq, "must not be empty: the program and its arguments");
		if (seq && seq->n_kids) {
			a->command = calloc(seq->n_kids + 1, sizeof *a->command);
			if (!a->command) {
				c->err = BL_ENOMEM;
				bl_y_path_pop(c, mark);
				return;
			}
			a->n_command = seq->n_kids;
			for (size_t i = 0; i < seq->n_kids; i++) {
				size_t imark = bl_y_path_push_index(c, i);

				bl_y_read_string(c, seq->kids[i], "a string", &a->command[i]);
				bl_y_path_pop(c, imark);
			}
		}
	}
	bl_y_path_pop(c, mark);

	/* env: extra variables for the command (local and exec), as a map. */
	v = bl_y_lookup(m, "env");
	if (v && !bl_y_is_null(v)) {
		const struct bl_ynode *em;

		mark = bl_y_path_push(c, "env");
		if (a->actuator == BL_ACTUATOR_KUBERNETES) {
			bl_y_report(c, v, "is only used by kind local or exec");
		} else if ((em = bl_y_as_map(c, v, "a map of NAME: value, such as {LOG_LEVEL: info}"))) {
			size_t n = bl_y_map_size(em);

			a->env = calloc(n + 1, sizeof *a->env);
			if (!a->env) {
				c->err = BL_ENOMEM;
				bl_y_path_pop(c, mark);
				return;
			}
			for (size_t i = 0; i < n; i++) {
				const struct bl_ynode *k = bl_y_key_scalar(bl_y_map_key(em, i));
				const struct bl_ynode *val = bl_y_deref(bl_y_map_value(em, i));
				bool name_ok = k && k->len > 0 && strcspn(k->text, "=") == k->len &&
					       !(k->text[0] >= '0' && k->text[0] <= '9');

				if (!name_ok) {
					bl_y_report(c, bl_y_map_key(em, i), "'%s' is not an environment variable "
									    "name: letters, digits and '_', not "
									    "starting with a digit, no '='",
							 k ? k->text : "?");
					continue;
				}
				if (!val || val->kind != BL_Y_SCALAR) {
					bl_y_report(c, bl_y_map_value(em, i), "%s: expected a string value", k->text);
					continue;
				}
				a->env[a->n_env] = malloc(k->len + val->len + 2);
				if (!a->env[a->n_env]) {
					c->err = BL_ENOMEM;
					break;
				}
				memcpy(a->env[a->n_env], k->text, k->len);
				a->env[a->n_env][k->len] = '=';
				memcpy(a->env[a->n_env] + k->len + 1, val->text, val->len);
				a->env[a->n_env][k->len + 1 + val->len] = '\0';
				a->n_env++;
			}
		}
		bl_y_path_pop(c, mark);
	}
	if (bl_y_get_string(c, m, "cwd", "a directory", &a->cwd) == BL_Y_OK &&
	    a->actuator == BL_ACTUATOR_KUBERNETES) {
		mark = bl_y_path_push(c, "cwd");
		bl_y_report(c, where(m, "cwd"), "is only used by kind local or exec");
		bl_y_path_pop(c, mark);
	}

	if (a->actuator != BL_ACTUATOR_KUBERNETES) {
		static const char *const k8s_keys[] = {"namespace", "deployment", "statefulset",
						       "api_url",   "token_file", "ca_file"};

		for (size_t i = 0; i < NELEMS(k8s_keys); i++) {
			v = bl_y_lookup(m, k8s_keys[i]);
			if (v && !bl_y_is_null(v)) {
				mark = bl_y_path_push(c, k8s_keys[i]);
				bl_y_report(c, v, "is only used by kind kubernetes");
				bl_y_path_pop(c, mark);
			}
		}
		return;
	}
	bl_y_get_string(c, m, "api_url", "the Kubernetes API's URL", &a->k8s_api_url);
	bl_y_get_string(c, m, "token_file", "a file holding a bearer token", &a->k8s_token_file);
	bl_y_get_string(c, m, "ca_file", "a PEM file of CA certificates", &a->k8s_ca_file);
	if (a->k8s_api_url && strncmp(a->k8s_api_url, "https://", 8) != 0 &&
	    strncmp(a->k8s_api_url, "http://", 7) != 0) {
		mark = bl_y_path_push(c, "api_url");
		bl_y_report(c, where(m, "api_url"), "'%s' is not an http:// or https:// URL",
			    a->k8s_api_url);
		bl_y_path_pop(c, mark);
	}
	if (bl_y_get_string(c, m, "namespace", "a Kubernetes namespace", &a->k8s_namespace) == BL_Y_OK &&
	    !bl_cfg_k8s_name_ok(a->k8s_namespace, 63, false)) {
		mark = bl_y_path_push(c, "namespace");
		bl_y_report(c, where(m, "namespace"), "'%s' is not a Kubernetes namespace: 1..63 "
						      "lowercase letters, digits or '-', starting and "
						      "ending with a letter or digit",
			    a->k8s_namespace);
		bl_y_path_pop(c, mark);
	}
	if (bl_y_lookup(m, "statefulset") && !bl_y_is_null(bl_y_lookup(m, "statefulset"))) {
		if (bl_y_lookup(m, "deployment") && !bl_y_is_null(bl_y_lookup(m, "deployment"))) {
			mark = bl_y_path_push(c, "statefulset");
			bl_y_report(c, where(m, "statefulset"),
				    "give 'deployment' or 'statefulset', not both");
			bl_y_path_pop(c, mark);
			return;
		}
		a->k8s_statefulset = true;
	}
	switch (bl_y_get_string(c, m, a->k8s_statefulset ? "statefulset" : "deployment",
				"a Kubernetes object name", &a->k8s_deployment)) {
	case BL_Y_NONE:
		bl_y_report(c, m, "kind kubernetes needs 'deployment' (or 'statefulset'): the name of "
				  "the object to scale");
		break;
	case BL_Y_OK:
		if (!bl_cfg_k8s_name_ok(a->k8s_deployment, 253, true)) {
			mark = bl_y_path_push(c, a->k8s_statefulset ? "statefulset" : "deployment");
			bl_y_report(c, where(m, "deployment"),
				    "'%s' is not a Kubernetes name: 1..253 lowercase letters, digits, "
				    "'-' or '.', starting and ending with a letter or digit",
				    a->k8s_deployment);
			bl_y_path_pop(c, mark);
		}
		break;
	case BL_Y_BAD:
		break;
	}
}

static void load_autoscaler(struct bl_yctx *c, const struct bl_ynode *raw)
{
	static const char *const keys[] = {"min_replicas",  "max_replicas", "interval",
					   "targets",       "panic",        "stable_window",
					   "stabilization", "budget",       "actuator"};
	static const char *const target_keys[] = {"cpu", "memory", "inflight_per_replica",
						  "queue_per_replica"};
	static const char *const panic_keys[] = {"window", "threshold"};
	static const char *const stab_keys[] = {"up", "down"};
	struct bl_cfg_autoscaler *a = &load_of(c)->cfg->autoscaler;
	const struct bl_ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct bl_ynode *t, *sub;
	enum bl_y_got gmin, gmax, gpanic;
	size_t mark, tmark;

	if (!m)
		return;
	a->configured = true;
	a->cpu.set = true;
	a->memory.set = true;
	gmin = bl_y_get_u32(c, m, "min_replicas", 0, 10000, &a->min_replicas);
	gmax = bl_y_get_u32(c, m, "max_replicas", 1, 10000, &a->max_replicas);
	if (gmin != BL_Y_BAD && gmax != BL_Y_BAD && a->min_replicas > a->max_replicas) {
		const char *key = gmin == BL_Y_OK ? "min_replicas" : "max_replicas";

		mark = bl_y_path_push(c, key);
		bl_y_report(c, where(m, key), "min_replicas (%u) must not exceed max_replicas (%u)",
			    a->min_replicas, a->max_replicas);
		bl_y_path_pop(c, mark);
	}
	bl_y_get_duration(c, m, "interval", S(1), S(3600), &a->interval_ns);

	tmark = bl_y_path_push(c, "targets");
	t = section(c, bl_y_lookup(m, "targets"), target_keys, NELEMS(target_keys));
	mark = bl_y_path_push(c, "cpu");
	load_band(c, bl_y_lookup(t, "cpu"), &a->cpu.low, &a->cpu.high);
	bl_y_path_pop(c, mark);
	mark = bl_y_path_push(c, "memory");
	load_band(c, bl_y_lookup(t, "memory"), &a->memory.low, &a->memory.high);
	bl_y_path_pop(c, mark);
	bl_y_get_double(c, t, "inflight_per_replica", 0.0, 1e6, &a->inflight_per_replica);
	bl_y_get_double(c, t, "queue_per_replica", 0.0, 1e6, &a->queue_per_replica);
	bl_y_path_pop(c, tmark);

	bl_y_get_duration(c, m, "stable_window", S(1), S(3600), &a->stable_window_ns);
	mark = bl_y_path_push(c, "panic");
	sub = section(c, bl_y_lookup(m, "panic"), panic_keys, NELEMS(panic_keys));
	gpanic = bl_y_get_duration(c, sub, "window", S(1), S(3600), &a->panic_window_ns);
	bl_y_get_double(c, sub, "threshold", 1.0, 100.0, &a->panic_threshold);
	if (gpanic != BL_Y_BAD && a->panic_window_ns > a->stable_window_ns) {
		char pw[32], sw[32];

		bl_format_duration(a->panic_window_ns, pw, sizeof pw);
		bl_format_duration(a->stable_window_ns, sw, sizeof sw);
		tmark = bl_y_path_push(c, "window");
		bl_y_report(c, sub ? where(sub, "window") : m,
			    "%s is longer than stable_window (%s); the panic window must be the "
			    "shorter one", pw, sw);
		bl_y_path_pop(c, tmark);
	}
	bl_y_path_pop(c, mark);

	mark = bl_y_path_push(c, "stabilization");
	sub = section(c, bl_y_lookup(m, "stabilization"), stab_keys, NELEMS(stab_keys));
	bl_y_get_duration(c, sub, "up", 0, S(3600), &a->scale_up_stabilization_ns);
	bl_y_get_duration(c, sub, "down", 0, S(86400), &a->scale_down_stabilization_ns);
	bl_y_path_pop(c, mark);

	if (bl_y_get_string(c, m, "budget", "a budget name", &a->budget) == BL_Y_OK) {
		mark = bl_y_path_push(c, "budget");
		check_budget_ref(c, bl_y_lookup(m, "budget"), a->budget);
		bl_y_path_pop(c, mark);
	}
	mark = bl_y_path_push(c, "actuator");
	load_actuator(c, bl_y_lookup(m, "actuator"), a);
	bl_y_path_pop(c, mark);
}

/* Every default, so a config with no sections is complete. */
static int set_defaults(struct bl_config *cfg)
{
	struct bl_cfg_autoscaler *a = &cfg->autoscaler;

	cfg->listen = dup_s("127.0.0.1:7070");
	cfg->listen_host = dup_s("127.0.0.1");
	cfg->state_dir = dup_s("./ballast-state");
	if (!cfg->listen || !cfg->listen_host || !cfg->state_dir)
		return BL_ENOMEM;
	cfg->listen_port = 7070;
	cfg->log_level = BL_LOG_INFO;
	cfg->log_access = false;
	cfg->max_connections = 10000;
	cfg->max_body = KIB(64);
	cfg->max_header = KIB(16);
	cfg->request_timeout_ns = S(10);
	cfg->daemon_memory = MIB(256);
	cfg->snapshot_interval_ns = S(5);
	cfg->memory.capacity_auto = true;
	cfg->memory.safety_buffer = 0.20;
	cfg->memory.low = 0.80;
	cfg->memory.high = 0.90;
	cfg->memory.lease_ttl_ns = S(600);
	cfg->memory.max_queue = 1000;
	a->min_replicas = 5;
	a->max_replicas = 100;
	a->interval_ns = S(15);
	a->cpu = (struct bl_cfg_band){.set = false, .low = 0.70, .high = 0.85};
	a->memory = (struct bl_cfg_band){.set = false, .low = 0.80, .high = 0.90};
	a->panic_window_ns = S(6);
	a->panic_threshold = 2.0;
	a->stable_window_ns = S(60);
	a->scale_up_stabilization_ns = 0;
	a->scale_down_stabilization_ns = S(300);
	a->actuator = BL_ACTUATOR_NONE;
	a->grace_ns = S(30);
	return 0;
}

static void load_root(struct bl_yctx *c, const struct bl_ynode *root)
{
	static const char *const keys[] = {"listen", "state_dir", "log",    "auth",   "limits",
					   "snapshot", "budgets", "pools",  "memory", "autoscaler"};
	static const char *const auth_keys[] = {"token_file"};
	static const char *const snapshot_keys[] = {"interval"};
	const struct bl_ynode *m = bl_y_deref(root);
	struct bl_config *cfg = load_of(c)->cfg;
	size_t mark;

	if (!m || bl_y_is_null(m)) {
		bl_y_report_at(c, root ? root->line : 1, root ? root->column : 1,
			       "the document is empty; expected a map of settings such as "
			       "listen: 127.0.0.1:7070");
		return;
	}
	if (m->kind != BL_Y_MAP) {
		bl_y_report_type(c, root, "a map of settings (listen, state_dir, log, auth, limits, "
					  "snapshot, budgets, pools, memory, autoscaler) at the top level");
		return;
	}
	check_keys(c, m, keys, NELEMS(keys));
	/* Budgets first: pools and the autoscaler refer to them. */
	bl_y_load_key(c, m, "budgets", load_budgets);
	load_listen(c, m);
	bl_y_get_string(c, m, "state_dir", "a directory path", &cfg->state_dir);
	bl_y_load_key(c, m, "log", load_log);
	mark = bl_y_path_push(c, "auth");
	bl_y_get_string(c, section(c, bl_y_lookup(m, "auth"), auth_keys, NELEMS(auth_keys)), "token_file",
			"the path of a file holding the bearer token", &cfg->auth_token_file);
	bl_y_path_pop(c, mark);
	bl_y_load_key(c, m, "limits", load_limits);
	mark = bl_y_path_push(c, "snapshot");
	bl_y_get_duration(c, section(c, bl_y_lookup(m, "snapshot"), snapshot_keys, NELEMS(snapshot_keys)),
			  "interval", MS(100), S(3600), &cfg->snapshot_interval_ns);
	bl_y_path_pop(c, mark);
	bl_y_load_key(c, m, "pools", load_pools);
	bl_y_load_key(c, m, "memory", load_memory);
	bl_y_load_key(c, m, "autoscaler", load_autoscaler);
}

/* ---- public: loading --------------------------------------------------- */

void bl_config_destroy(struct bl_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->source);
	free(cfg->listen);
	free(cfg->listen_host);
	free(cfg->state_dir);
	free(cfg->auth_token_file);
	for (size_t i = 0; i < cfg->n_budgets; i++) {
		struct bl_cfg_budget *b = &cfg->budgets[i];

		free(b->name);
		for (size_t j = 0; j < b->n_tenants; j++)
			free(b->tenants[j].name);
		free(b->tenants);
	}
	free(cfg->budgets);
	for (size_t i = 0; i < cfg->n_pools; i++) {
		struct bl_cfg_pool *p = &cfg->pools[i];

		free(p->name);
		for (size_t j = 0; j < p->n_backends; j++) {
			free(p->backends[j].name);
			free(p->backends[j].url);
			free(p->backends[j].budget);
			free(p->backends[j].metrics_url);
		}
		free(p->backends);
	}
	free(cfg->pools);
	if (cfg->autoscaler.command) {
		for (size_t i = 0; i < cfg->autoscaler.n_command; i++)
			free(cfg->autoscaler.command[i]);
		free(cfg->autoscaler.command);
	}
	free(cfg->autoscaler.budget);
	free(cfg->autoscaler.k8s_namespace);
	free(cfg->autoscaler.k8s_deployment);
	free(cfg->autoscaler.k8s_api_url);
	for (size_t i = 0; i < cfg->autoscaler.n_env; i++)
		free(cfg->autoscaler.env[i]);
	free(cfg->autoscaler.env);
	free(cfg->autoscaler.cwd);
	free(cfg->autoscaler.k8s_token_file);
	free(cfg->autoscaler.k8s_ca_file);
	free(cfg);
}

static const struct bl_yparse_opts parse_opts = {.what = "config"};

int bl_config_load_string(const char *text, size_t len, const char *name,
			  struct bl_config **out, struct bl_diags *diags)
{
	struct bl_diags local = {0};
	struct load l = {.y.file = name ? name : "<string>"};
	struct bl_yctx *c = &l.y;
	struct bl_ydoc doc = {0};
	struct bl_config *cfg;
	size_t base;
	int err;

	c->diags = diags ? diags : &local;
	base = c->diags->n;
	cfg = calloc(1, sizeof *cfg);
	if (!cfg) {
		err = BL_ENOMEM;
		goto out;
	}
	l.cfg = cfg;
	if (set_defaults(cfg) || !(cfg->source = dup_s(c->file))) {
		err = BL_ENOMEM;
		goto out_cfg;
	}
	if (bl_ydoc_parse(c, text, len, &parse_opts, &doc))
		load_root(c, doc.root);
	if (c->err) {
		err = c->err;
		goto out_doc;
	}
	if (c->invalid) {
		diags_sort(c->diags, base);
		err = BL_EINVAL;
		goto out_doc;
	}
	bl_ydoc_cleanup(&doc);
	*out = cfg;
	bl_diags_cleanup(&local);
	return 0;

out_doc:
	bl_ydoc_cleanup(&doc);
out_cfg:
	bl_config_destroy(cfg);
out:
	if (err == BL_ENOMEM)
		diags_truncate(c->diags, base); /* what was added may be half-made */
	bl_diags_cleanup(&local);
	return err;
}

int bl_config_load_file(const char *path, struct bl_config **out, struct bl_diags *diags)
{
	struct bl_diags local = {0};
	struct bl_diags *d = diags ? diags : &local;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *f;
	int err;

	f = fopen(path, "rb");
	if (!f) {
		err = bl_diags_add(d, path, 0, 0, "", "cannot open: %s", strerror(errno));
		err = err ? err : BL_EIO;
		goto out;
	}
	for (;;) {
		size_t got;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			char *nbuf;

			if (cap >= MAX_FILE_BYTES) {
				err = bl_diags_add(d, path, 0, 0, "",
						   "the file is larger than %uMiB; a config is "
						   "much smaller", MAX_FILE_BYTES >> 20);
				err = err ? err : BL_EIO;
				goto out_file;
			}
			nbuf = realloc(buf, ncap);
			if (!nbuf) {
				err = BL_ENOMEM;
				goto out_file;
			}
			buf = nbuf;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		err = bl_diags_add(d, path, 0, 0, "", "cannot read: %s", strerror(errno));
		err = err ? err : BL_EIO;
		goto out_file;
	}
	err = bl_config_load_string(buf, len, path, out, d);
out_file:
	fclose(f);
	free(buf);
out:
	bl_diags_cleanup(&local);
	return err;
}

int bl_config_load_default(struct bl_config **out, struct bl_diags *diags)
{
	return bl_config_load_string(bl_default_config_yaml, strlen(bl_default_config_yaml),
				     "<default>", out, diags);
}

int bl_config_set_listen(struct bl_config *cfg, const char *listen, struct bl_diags *diags)
{
	char why[256];
	char *copy, *host = NULL;
	uint16_t port = 0;
	int err;

	err = parse_listen(listen, &host, &port, why, sizeof why);
	if (err == BL_EINVAL) {
		if (diags && bl_diags_add(diags, "--listen", 0, 0, "listen", "%s", why))
			return BL_ENOMEM;
		return BL_EINVAL;
	}
	if (err)
		return err;
	copy = dup_s(listen);
	if (!copy) {
		free(host);
		return BL_ENOMEM;
	}
	free(cfg->listen);
	free(cfg->listen_host);
	cfg->listen = copy;
	cfg->listen_host = host;
	cfg->listen_port = port;
	return 0;
}

const struct bl_cfg_budget *bl_config_budget(const struct bl_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && name && i < cfg->n_budgets; i++)
		if (strcmp(cfg->budgets[i].name, name) == 0)
			return &cfg->budgets[i];
	return NULL;
}

const struct bl_cfg_pool *bl_config_pool(const struct bl_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && name && i < cfg->n_pools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

const char *bl_cfg_dim_name(enum bl_cfg_dim dim)
{
	return (unsigned)dim < BL_CFG_DIM_COUNT ? dim_names[dim] : "unknown";
}

const char *bl_cfg_strategy_name(enum bl_cfg_strategy s)
{
	return (unsigned)s < NELEMS(strategy_names) ? strategy_names[s] : "unknown";
}

const char *bl_cfg_actuator_name(enum bl_cfg_actuator a)
{
	return (unsigned)a < NELEMS(actuator_names) ? actuator_names[a] : "unknown";
}

char *bl_config_redact_url(const char *url)
{
	static const char mask[] = "<redacted>";
	const char *a, *e, *at = NULL;
	char *out;
	size_t head, tail;

	if (!url_authority(url, &a, &e))
		return dup_s(url);
	for (const char *p = a; p < e; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return dup_s(url);
	head = (size_t)(a - url);
	tail = strlen(at);
	out = malloc(head + sizeof mask - 1 + tail + 1);
	if (!out)
		return NULL;
	memcpy(out, url, head);
	memcpy(out + head, mask, sizeof mask - 1);
	memcpy(out + head + sizeof mask - 1, at, tail + 1);
	return out;
}

/* ---- public: effective config as JSON ---------------------------------- */

static json_t *j_duration(int64_t ns)
{
	char buf[40];

	if (bl_format_duration(ns, buf, sizeof buf) < 0)
		return NULL;
	return json_string(buf);
}

static json_t *j_size(uint64_t bytes)
{
	char buf[40];

	if (bl_format_size(bytes, buf, sizeof buf) < 0)
		return NULL;
	return json_string(buf);
}

/* A string or null; json_string(NULL) would be an allocation-like failure. */
static json_t *j_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *j_url(const char *url, bool redact)
{
	json_t *j;
	char *r;

	if (!url)
		return json_null();
	if (!redact)
		return json_string(url);
	r = bl_config_redact_url(url);
	if (!r)
		return NULL;
	j = json_string(r);
	free(r);
	return j;
}

/* json_object_set_new() takes the value even when it fails; a NULL value fails. */
#define SET(obj, key, val)                                                    \
	do {                                                                  \
		if (json_object_set_new((obj), (key), (val)))                 \
			goto fail;                                            \
	} while (0)

static json_t *j_band(double low, double high)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	SET(o, "low", json_real(low));
	SET(o, "high", json_real(high));
	return o;
fail:
	json_decref(o);
	return NULL;
}

/* Each builder attaches a child to its parent before filling it in, so one
 * json_decref() of the outermost object frees everything on failure. */
static json_t *j_budget(const struct bl_cfg_budget *b)
{
	json_t *o = json_object(), *limits, *sub;

	if (!o)
		return NULL;
	limits = json_object();
	SET(o, "limits", limits);
	for (int d = 0; d < BL_CFG_DIM_COUNT; d++) {
		const struct bl_cfg_rate *r = &b->limits[d];

		if (!r->set) {
			SET(limits, dim_names[d], json_null());
			continue;
		}
		sub = json_object();
		SET(limits, dim_names[d], sub);
		SET(sub, "limit", json_integer((json_int_t)r->limit));
		SET(sub, "per", j_duration(r->per_ns));
	}
	SET(limits, "concurrent", json_integer(b->concurrent));
	SET(o, "target_utilization", json_real(b->target_utilization));
	SET(o, "burst", json_real(b->burst));
	SET(o, "lease_ttl", j_duration(b->lease_ttl_ns));
	SET(o, "max_queue", json_integer(b->max_queue));
	sub = json_object();
	SET(o, "adaptive", sub);
	SET(sub, "decrease", json_real(b->adaptive_decrease));
	SET(sub, "increase", json_real(b->adaptive_increase));
	SET(sub, "period", j_duration(b->adaptive_period_ns));
	sub = json_object();
	SET(o, "tenants", sub);
	for (size_t i = 0; i < b->n_tenants; i++) {
		json_t *t = json_object();

		SET(sub, b->tenants[i].name, t);
		SET(t, "weight", json_integer(b->tenants[i].weight));
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *j_breaker(const struct bl_cfg_breaker *br)
{
	json_t *o = json_object(), *w;

	if (!o)
		return NULL;
	w = json_object();
	SET(o, "window", w);
	if (br->window_is_time)
		SET(w, "time", j_duration(br->window_ns));
	else
		SET(w, "count", json_integer(br->window_count));
	SET(o, "min_calls", json_integer(br->min_calls));
	SET(o, "failure_rate", json_real(br->failure_rate));
	SET(o, "slow_call", j_duration(br->slow_call_ns));
	SET(o, "slow_rate", json_real(br->slow_rate));
	SET(o, "consecutive_failures", json_integer(br->consecutive_failures));
	SET(o, "open_for", j_duration(br->open_for_ns));
	SET(o, "max_open_for", j_duration(br->max_open_for_ns));
	SET(o, "half_open_probes", json_integer(br->half_open_probes));
	SET(o, "rate_limited_trips", json_boolean(br->rate_limited_trips));
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *j_pool(const struct bl_cfg_pool *p, bool redact)
{
	json_t *o = json_object(), *list;

	if (!o)
		return NULL;
	SET(o, "strategy", json_string(bl_cfg_strategy_name(p->strategy)));
	list = json_array();
	SET(o, "backends", list);
	for (size_t i = 0; i < p->n_backends; i++) {
		const struct bl_cfg_backend *be = &p->backends[i];
		json_t *b = json_object();

		if (json_array_append_new(list, b))
			goto fail;
		SET(b, "name", j_str(be->name));
		SET(b, "url", j_url(be->url, redact));
		SET(b, "weight", json_integer(be->weight));
		SET(b, "budget", j_str(be->budget));
		SET(b, "metrics_url", j_url(be->metrics_url, redact));
	}
	SET(o, "breaker", j_breaker(&p->breaker));
	SET(o, "max_ejected", json_real(p->max_ejected));
	SET(o, "slow_start", j_duration(p->slow_start_ns));
	SET(o, "ewma_decay", j_duration(p->ewma_decay_ns));
	SET(o, "metrics_interval", j_duration(p->metrics_interval_ns));
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *j_memory(const struct bl_cfg_memory *m)
{
	json_t *o;

	if (!m->configured)
		return json_null();
	o = json_object();
	if (!o)
		return NULL;
	SET(o, "capacity", m->capacity_auto ? json_string("auto") : j_size(m->capacity));
	SET(o, "safety_buffer", json_real(m->safety_buffer));
	SET(o, "lease_ttl", j_duration(m->lease_ttl_ns));
	SET(o, "max_queue", json_integer(m->max_queue));
	SET(o, "watermarks", j_band(m->low, m->high));
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *j_actuator(const struct bl_cfg_autoscaler *a, bool redact)
{
	json_t *o, *cmd;

	if (a->actuator == BL_ACTUATOR_NONE)
		return json_null();
	o = json_object();
	if (!o)
		return NULL;
	SET(o, "kind", json_string(bl_cfg_actuator_name(a->actuator)));
	if (a->command) {
		cmd = json_array();
		SET(o, "command", cmd);
		for (size_t i = 0; i < a->n_command; i++)
			if (json_array_append_new(cmd, j_str(a->command[i])))
				goto fail;
	} else {
		SET(o, "command", json_null());
	}
	SET(o, "grace", j_duration(a->grace_ns));
	{
		/* Values may be credentials: redacted where the config is shown. */
		json_t *env = json_object();

		SET(o, "env", env);
		for (size_t i = 0; i < a->n_env; i++) {
			size_t n = strcspn(a->env[i], "=");
			char name[256];

			snprintf(name, sizeof name, "%.*s", (int)(n < 255 ? n : 255), a->env[i]);
			if (json_object_set_new(env, name,
						json_string(redact ? "<redacted>" : a->env[i] + n + 1)))
				goto fail;
		}
	}
	SET(o, "cwd", j_str(a->cwd));
	SET(o, "namespace", j_str(a->k8s_namespace));
	SET(o, a->k8s_statefulset ? "statefulset" : "deployment", j_str(a->k8s_deployment));
	SET(o, "api_url", j_str(a->k8s_api_url));
	SET(o, "token_file", j_str(a->k8s_token_file));
	SET(o, "ca_file", j_str(a->k8s_ca_file));
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *j_autoscaler(const struct bl_cfg_autoscaler *a, bool redact)
{
	json_t *o, *sub;

	if (!a->configured)
		return json_null();
	o = json_object();
	if (!o)
		return NULL;
	SET(o, "min_replicas", json_integer(a->min_replicas));
	SET(o, "max_replicas", json_integer(a->max_replicas));
	SET(o, "interval", j_duration(a->interval_ns));
	sub = json_object();
	SET(o, "targets", sub);
	SET(sub, "cpu", j_band(a->cpu.low, a->cpu.high));
	SET(sub, "memory", j_band(a->memory.low, a->memory.high));
	SET(sub, "inflight_per_replica", json_real(a->inflight_per_replica));
	SET(sub, "queue_per_replica", json_real(a->queue_per_replica));
	sub = json_object();
	SET(o, "panic", sub);
	SET(sub, "window", j_duration(a->panic_window_ns));
	SET(sub, "threshold", json_real(a->panic_threshold));
	SET(o, "stable_window", j_duration(a->stable_window_ns));
	sub = json_object();
	SET(o, "stabilization", sub);
	SET(sub, "up", j_duration(a->scale_up_stabilization_ns));
	SET(sub, "down", j_duration(a->scale_down_stabilization_ns));
	SET(o, "budget", j_str(a->budget));
	SET(o, "actuator", j_actuator(a, redact));
	return o;
fail:
	json_decref(o);
	return NULL;
}

json_t *bl_config_to_json(const struct bl_config *cfg, bool redact)
{
	json_t *o, *sub;

	if (!cfg)
		return NULL;
	o = json_object();
	if (!o)
		return NULL;
	SET(o, "listen", json_string(cfg->listen));
	SET(o, "state_dir", json_string(cfg->state_dir));
	sub = json_object();
	SET(o, "log", sub);
	SET(sub, "level", json_string(bl_log_level_name(cfg->log_level)));
	SET(sub, "access", json_boolean(cfg->log_access));
	sub = json_object();
	SET(o, "auth", sub);
	SET(sub, "token_file", j_str(cfg->auth_token_file));
	sub = json_object();
	SET(o, "limits", sub);
	SET(sub, "max_connections", json_integer(cfg->max_connections));
	SET(sub, "max_body", j_size(cfg->max_body));
	SET(sub, "max_header", j_size(cfg->max_header));
	SET(sub, "request_timeout", j_duration(cfg->request_timeout_ns));
	SET(sub, "daemon_memory", j_size(cfg->daemon_memory));
	sub = json_object();
	SET(o, "snapshot", sub);
	SET(sub, "interval", j_duration(cfg->snapshot_interval_ns));
	sub = json_object();
	SET(o, "budgets", sub);
	for (size_t i = 0; i < cfg->n_budgets; i++)
		SET(sub, cfg->budgets[i].name, j_budget(&cfg->budgets[i]));
	sub = json_object();
	SET(o, "pools", sub);
	for (size_t i = 0; i < cfg->n_pools; i++)
		SET(sub, cfg->pools[i].name, j_pool(&cfg->pools[i], redact));
	SET(o, "memory", j_memory(&cfg->memory));
	SET(o, "autoscaler", j_autoscaler(&cfg->autoscaler, redact));
	return o;
fail:
	json_decref(o);
	return NULL;
}
