/* The scenario loader. See scenario.h and docs/simulator.md.
 *
 * Two passes over one file:
 *  1. libfyaml's event parser builds a small tree whose nodes keep their
 *     line and column (as the daemon's loader does); the scenario's own
 *     sections are read from it, every problem reported, not just the first.
 *  2. The policy blocks (budgets, pools, memory, autoscaler) go to the
 *     daemon's loader: the text with every other top-level section blanked
 *     out (spaces, newlines kept), so its messages point at the right line
 *     and column of the scenario file.
 */
#include "scenario.h"

#include <errno.h>
#include <stdarg.h>
#include <libfyaml.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

#define MAX_FILE_BYTES (16u << 20)   /* scenario files are small; traces are read apart */
#define MAX_TRACE_BYTES (1u << 30)   /* a trace of a few million tasks */
#define MAX_DIAGS 100
#define PATH_CAP 256
#define SHOW_CAP 64
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define S_NS(x) ((int64_t)(x) * BL_NS_PER_S)

/* ---- the located tree -------------------------------------------------- */

enum ykind { Y_SCALAR, Y_MAP, Y_SEQ };

struct ynode {
	enum ykind kind;
	int line, column;         /* 1-based */
	size_t pos;               /* byte offset of the node's start */
	char *text;               /* scalar: NUL-terminated */
	size_t len;               /* scalar: bytes */
	bool plain;               /* scalar: unquoted */
	struct ynode **kids;      /* map: key, value, ...; seq: items */
	size_t n_kids, cap_kids;
	struct ynode *next_alloc; /* every node, for freeing */
};

struct ctx {
	const char *file;
	struct bl_diags *diags;
	int err;                  /* BL_ENOMEM once allocation failed */
	bool invalid;
	size_t n_reported;
	char path[PATH_CAP];
	size_t plen;
	struct ynode *all;        /* every node */
	struct bl_scenario *sc;
};

__attribute__((format(printf, 3, 4)))
static void report(struct ctx *c, const struct ynode *n, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	c->invalid = true;
	if (c->err || c->n_reported++ >= MAX_DIAGS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (bl_diags_add(c->diags, c->file, n ? n->line : 0, n ? n->column : 0, c->path, "%s", msg))
		c->err = BL_ENOMEM;
}

static size_t path_push(struct ctx *c, const char *seg)
{
	size_t mark = c->plen;
	int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s", c->plen ? "." : "",
			 seg);

	if (n > 0)
		c->plen += (size_t)n;
	if (c->plen >= sizeof c->path)
		c->plen = sizeof c->path - 1;
	return mark;
}

static size_t path_index(struct ctx *c, size_t i)
{
	size_t mark = c->plen;
	int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", i);

	if (n > 0)
		c->plen += (size_t)n;
	if (c->plen >= sizeof c->path)
		c->plen = sizeof c->path - 1;
	return mark;
}

static void path_pop(struct ctx *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* State while events arrive. */
struct builder {
	struct ctx *c;
	const char *src;          /* the text being parsed */
	size_t src_len;
	struct ynode *root;
	struct ynode **stack;
	size_t depth, cap;
	int line, column;
};

static struct ynode *node_new(struct builder *b, enum ykind kind, const struct fy_mark *m)
{
	struct ynode *n = calloc(1, sizeof *n);

	if (!n) {
		b->c->err = BL_ENOMEM;
		return NULL;
	}
	n->kind = kind;
	if (m && m->line >= 0) {
		b->line = m->line + 1;
		b->column = m->column + 1;
		n->pos = m->input_pos;
	}
	n->line = b->line;
	n->column = b->column;
	n->next_alloc = b->c->all;
	b->c->all = n;
	return n;
}

static void node_attach(struct builder *b, struct ynode *n)
{
	struct ynode *p;

	if (b->depth == 0) {
		b->root = n;
		return;
	}
	p = b->stack[b->depth - 1];
	if (p->n_kids == p->cap_kids) {
		size_t cap = p->cap_kids ? p->cap_kids * 2 : 8;
		struct ynode **k = realloc(p->kids, cap * sizeof *k);

		if (!k) {
			b->c->err = BL_ENOMEM;
			return;
		}
		p->kids = k;
		p->cap_kids = cap;
	}
	p->kids[p->n_kids++] = n;
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Decodes the content of a single-quoted scalar as YAML 1.2 says ('' is one
 * quote; line breaks fold). libfyaml 0.7.12 can do it (fy_token_get_text) but
 * leaks on several '' escapes, as the config loader found; this is its
 * decoder (src/daemon/config.c). Returns a new string, or NULL. */
static char *single_quoted_decode(const char *raw, size_t n, size_t *out_len)
{
	char *out = malloc(n + 1);
	size_t o = 0, i = 0, pending = 0;
	bool first = true;

	if (!out)
		return NULL;
	while (i <= n) {
		size_t start = i, end, next;
		bool last;

		while (i < n && raw[i] != '\n' && raw[i] != '\r')
			i++;
		end = i;
		last = i == n;
		next = i + (i + 1 < n && raw[i] == '\r' && raw[i + 1] == '\n' ? 2 : 1);
		if (!first)
			while (start < end && is_blank(raw[start]))
				start++;
		if (!last)
			while (end > start && is_blank(raw[end - 1]))
				end--;
		if (!first && !last && start == end) {
			pending++;
		} else {
			if (!first) {
				if (pending == 0)
					out[o++] = ' ';
				for (; pending > 0; pending--)
					out[o++] = '\n';
			}
			for (size_t j = start; j < end; j++) {
				out[o++] = raw[j];
				if (raw[j] == '\'' && j + 1 < end && raw[j + 1] == '\'')
					j++;
			}
		}
		first = false;
		i = next;
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

static void scalar_event(struct builder *b, struct fy_event *e)
{
	struct fy_token *v = e->scalar.value;
	struct ynode *n = node_new(b, Y_SCALAR, v ? fy_token_start_mark(v) : NULL);
	const char *text = "";
	size_t len = 0;

	if (!n)
		return;
	if (v && fy_token_scalar_style(v) == FYSS_SINGLE_QUOTED) {
		const struct fy_mark *from = fy_token_start_mark(v), *to = fy_token_end_mark(v);

		if (from && to && from->input_pos <= to->input_pos && to->input_pos <= b->src_len) {
			n->text = single_quoted_decode(b->src + from->input_pos,
						       to->input_pos - from->input_pos, &n->len);
			if (!n->text) {
				b->c->err = BL_ENOMEM;
				return;
			}
		}
	}
	if (v && !n->text) {
		text = fy_token_get_text(v, &len);
		if (!text) {
			b->c->err = BL_ENOMEM;
			return;
		}
	}
	if (v) {
		n->plain = fy_token_scalar_style(v) == FYSS_PLAIN;
		if ((fy_token_scalar_style(v) == FYSS_SINGLE_QUOTED ||
		     fy_token_scalar_style(v) == FYSS_DOUBLE_QUOTED) && n->column > 1)
			n->column--;
	} else {
		n->plain = true;
	}
	if (!n->text) {
		n->text = dup_n(text, len);
		n->len = len;
		if (!n->text) {
			b->c->err = BL_ENOMEM;
			return;
		}
	}
	if (e->scalar.anchor || e->scalar.tag)
		report(b->c, n, "anchors and tags are not supported in scenarios; write the value "
				"out");
	node_attach(b, n);
}

static void collection_start(struct builder *b, struct fy_event *e, enum ykind kind)
{
	struct ynode *n = node_new(b, kind, fy_event_start_mark(e));

	if (!n)
		return;
	if (kind == Y_MAP ? (e->mapping_start.anchor || e->mapping_start.tag)
			  : (e->sequence_start.anchor || e->sequence_start.tag))
		report(b->c, n, "anchors and tags are not supported in scenarios; write the value "
				"out");
	node_attach(b, n);
	if (b->depth == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct ynode **s = realloc(b->stack, cap * sizeof *s);

		if (!s) {
			b->c->err = BL_ENOMEM;
			return;
		}
		b->stack = s;
		b->cap = cap;
	}
	b->stack[b->depth++] = n;
}

static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one
 * (overlong forms, surrogates, past U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* A YAML stream is printable UTF-8, checked before libfyaml sees it: 0.7.12
 * loops forever on a '%' directive followed by a stray UTF-8 lead byte and
 * crashes on some NUL bytes (the config loader's fuzzer found both; so did
 * this loader's). Control characters but tab, LF and CR are refused. */
static bool check_text(struct ctx *c, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	int line = 1, column = 1;

	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq_len(s + i, len - i);
		struct ynode at = {.line = line, .column = column};

		if (n == 0) {
			report(c, &at, "the file is not valid UTF-8 (byte 0x%02x); save it as UTF-8",
			       s[i]);
			return false;
		}
		if (n == 1 && ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') ||
			       s[i] == 0x7f)) {
			report(c, &at, "control character 0x%02x is not allowed in YAML", s[i]);
			return false;
		}
		if (n == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0 && s[i + 1] != 0x85) {
			report(c, &at, "control character U+%04X is not allowed in YAML", s[i + 1]);
			return false;
		}
		if (s[i] == '\n') {
			line++;
			column = 1;
		} else {
			column++;
		}
		i += n;
	}
	return true;
}

/* Parses text into a tree; NULL (problems reported) when it is not YAML. */
static struct ynode *parse(struct ctx *c, const char *text, size_t len)
{
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg = {0};
	struct fy_diag *diag;
	struct fy_parser *parser = NULL;
	struct fy_event *e;
	struct builder b = {.c = c, .src = text, .src_len = len, .line = 1, .column = 1};
	int docs = 0;

	if (!check_text(c, text, len))
		return NULL;
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.output_fn = diag_discard;
	dcfg.colorize = false;
	diag = fy_diag_create(&dcfg);
	if (!diag) {
		c->err = BL_ENOMEM;
		return NULL;
	}
	fy_diag_set_collect_errors(diag, true);
	pcfg.flags = FYPCF_QUIET;
	pcfg.diag = diag;
	parser = fy_parser_create(&pcfg);
	if (!parser || fy_parser_set_string(parser, len ? text : "", len) != 0) {
		c->err = BL_ENOMEM;
		goto out;
	}
	while (!c->err && (e = fy_parser_parse(parser)) != NULL) {
		switch (e->type) {
		case FYET_DOCUMENT_START:
			if (++docs > 1) {
				const struct fy_mark *m = fy_event_start_mark(e);
				struct ynode at = {.line = m ? m->line + 1 : b.line,
						   .column = m ? m->column + 1 : b.column};

				report(c, &at, "a second YAML document starts here; a scenario is one "
					       "document");
				fy_parser_event_free(parser, e);
				goto out;
			}
			break;
		case FYET_SCALAR:
			scalar_event(&b, e);
			break;
		case FYET_ALIAS: {
			struct ynode at = {.line = b.line, .column = b.column};
			const struct fy_mark *m = fy_event_start_mark(e);

			if (m) {
				at.line = m->line + 1;
				at.column = m->column + 1;
			}
			report(c, &at, "aliases are not supported in scenarios; write the value out");
			fy_parser_event_free(parser, e);
			goto out;
		}
		case FYET_MAPPING_START:
			collection_start(&b, e, Y_MAP);
			break;
		case FYET_SEQUENCE_START:
			collection_start(&b, e, Y_SEQ);
			break;
		case FYET_MAPPING_END:
		case FYET_SEQUENCE_END:
			if (b.depth)
				b.depth--;
			break;
		default:
			break;
		}
		fy_parser_event_free(parser, e);
	}
	if (!c->err && fy_parser_get_stream_error(parser)) {
		struct fy_diag_error *de;
		void *iter = NULL;
		bool any = false;

		while ((de = fy_diag_errors_iterate(diag, &iter)) != NULL) {
			struct ynode at = {.line = de->line, .column = de->column};

			if (de->type < FYET_ERROR)
				continue;
			any = true;
			report(c, &at, "YAML syntax error: %s", de->msg ? de->msg : "malformed");
		}
		if (!any) {
			struct ynode at = {.line = b.line, .column = b.column};

			report(c, &at, "YAML syntax error: the document is malformed");
		}
		b.root = NULL;
	}
out:
	fy_parser_destroy(parser);
	fy_diag_destroy(diag);
	free(b.stack);
	return c->err || c->invalid ? NULL : b.root;
}

static void tree_free(struct ctx *c)
{
	struct ynode *n = c->all;

	while (n) {
		struct ynode *next = n->next_alloc;

		free(n->text);
		free(n->kids);
		free(n);
		n = next;
	}
	c->all = NULL;
}

/* ---- reading nodes ----------------------------------------------------- */

static bool scalar_is(const struct ynode *n, const char *s)
{
	return n && n->kind == Y_SCALAR && strlen(s) == n->len && memcmp(n->text, s, n->len) == 0;
}

static bool is_null(const struct ynode *n)
{
	return !n || (n->kind == Y_SCALAR && n->plain &&
		      (n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null")));
}

static const char *describe(const struct ynode *n, char *buf, size_t cap)
{
	if (is_null(n))
		return "nothing (null)";
	if (n->kind == Y_MAP)
		return "a map";
	if (n->kind == Y_SEQ)
		return "a list";
	snprintf(buf, cap, "'%.*s'", n->len > SHOW_CAP ? SHOW_CAP : (int)n->len, n->text);
	return buf;
}

static void report_type(struct ctx *c, const struct ynode *n, const char *expected)
{
	char buf[SHOW_CAP + 8];

	report(c, n, "expected %s, got %s", expected, describe(n, buf, sizeof buf));
}

static size_t map_size(const struct ynode *m)
{
	return m && m->kind == Y_MAP ? m->n_kids / 2 : 0;
}

static const struct ynode *lookup(const struct ynode *m, const char *key)
{
	for (size_t i = 0; i < map_size(m); i++)
		if (scalar_is(m->kids[2 * i], key))
			return m->kids[2 * i + 1];
	return NULL;
}

/* Reports keys of m not in keys[] (with the accepted ones) and repeated keys. */
static void check_keys(struct ctx *c, const struct ynode *m, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < map_size(m); i++) {
		const struct ynode *k = m->kids[2 * i];
		bool known = false;

		if (k->kind != Y_SCALAR) {
			report(c, k, "keys must be plain words");
			continue;
		}
		for (size_t j = 0; j < n && !known; j++)
			known = scalar_is(k, keys[j]);
		for (size_t j = 0; j < i && known; j++) {
			const struct ynode *o = m->kids[2 * j];

			if (o->kind == Y_SCALAR && o->len == k->len &&
			    memcmp(o->text, k->text, k->len) == 0) {
				report(c, k, "'%s' is given twice (first on line %d)", k->text, o->line);
				break;
			}
		}
		if (!known) {
			char list[512] = "";
			size_t o = 0;

			for (size_t j = 0; j < n && o < sizeof list; j++)
				o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", j ? ", " : "",
						      keys[j]);
			report(c, k, "unknown key '%.*s'; accepted here: %s",
			       k->len > SHOW_CAP ? SHOW_CAP : (int)k->len, k->text, list);
		}
	}
}

/* The map at raw with its keys checked; NULL when absent or null (silently),
 * or another type (reported). */
static const struct ynode *section(struct ctx *c, const struct ynode *raw, const char *const *keys,
				   size_t n)
{
	if (is_null(raw))
		return NULL;
	if (raw->kind != Y_MAP) {
		report_type(c, raw, "a map of settings");
		return NULL;
	}
	check_keys(c, raw, keys, n);
	return raw;
}

static bool numeric(const struct ynode *n, double *out)
{
	char *end;

	if (!n || n->kind != Y_SCALAR || !n->plain || n->len == 0 ||
	    strspn(n->text, "0123456789+-.eE") != n->len)
		return false;
	errno = 0;
	*out = strtod(n->text, &end);
	return *end == '\0' && isfinite(*out) && errno == 0;
}

/* get_*: read key of map m when present (true when read); report problems. */

static bool get_double(struct ctx *c, const struct ynode *m, const char *key, double lo,
		       double hi, double *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	double v;
	bool ok = false;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	if (!numeric(n, &v)) {
		char what[64];

		snprintf(what, sizeof what, "a number in %g..%g", lo, hi);
		report_type(c, n, what);
	} else if (v < lo || v > hi) {
		report(c, n, "%s is outside %g..%g", n->text, lo, hi);
	} else {
		*out = v;
		ok = true;
	}
	path_pop(c, mark);
	return ok;
}

static bool get_u32(struct ctx *c, const struct ynode *m, const char *key, uint32_t lo,
		    uint32_t hi, uint32_t *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	double v;
	bool ok = false;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	if (!numeric(n, &v) || v != floor(v)) {
		char what[64];

		snprintf(what, sizeof what, "a whole number in %u..%u", lo, hi);
		report_type(c, n, what);
	} else if (v < lo || v > hi) {
		report(c, n, "%s is outside %u..%u", n->text, lo, hi);
	} else {
		*out = (uint32_t)v;
		ok = true;
	}
	path_pop(c, mark);
	return ok;
}

static bool read_duration(struct ctx *c, const struct ynode *n, int64_t lo, int64_t hi,
			  int64_t *out)
{
	char los[32], his[32];
	int64_t v;

	if (!n || n->kind != Y_SCALAR || bl_parse_duration(n->text, n->len, &v) != 0) {
		report_type(c, n, "a duration such as 250ms, 30s, 5m or 1h");
		return false;
	}
	if (v < lo || v > hi) {
		bl_format_duration(lo, los, sizeof los);
		bl_format_duration(hi, his, sizeof his);
		report(c, n, "%s is outside %s..%s", n->text, los, his);
		return false;
	}
	*out = v;
	return true;
}

static bool get_duration(struct ctx *c, const struct ynode *m, const char *key, int64_t lo,
			 int64_t hi, int64_t *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	bool ok;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	ok = read_duration(c, n, lo, hi, out);
	path_pop(c, mark);
	return ok;
}

static bool read_size(struct ctx *c, const struct ynode *n, uint64_t *out)
{
	if (!n || n->kind != Y_SCALAR || bl_parse_size(n->text, n->len, out) != 0) {
		report_type(c, n, "a size such as 512KiB, 300MiB or 2GiB");
		return false;
	}
	return true;
}

static bool get_size(struct ctx *c, const struct ynode *m, const char *key, uint64_t *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	bool ok;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	ok = read_size(c, n, out);
	path_pop(c, mark);
	return ok;
}

static bool get_bool(struct ctx *c, const struct ynode *m, const char *key, bool *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	bool ok = true;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	if (scalar_is(n, "true"))
		*out = true;
	else if (scalar_is(n, "false"))
		*out = false;
	else
		ok = false, report_type(c, n, "true or false");
	path_pop(c, mark);
	return ok;
}

/* A name: letters, digits, '_', '-', '.'; 1..64 bytes. */
static bool get_name(struct ctx *c, const struct ynode *m, const char *key, char **out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	bool ok = false;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	if (n->kind != Y_SCALAR || n->len == 0 || n->len > 64 ||
	    strspn(n->text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
		    n->len) {
		report_type(c, n, "a name of 1..64 letters, digits, '_', '-' or '.'");
	} else if (!(*out = dup_n(n->text, n->len))) {
		c->err = BL_ENOMEM;
	} else {
		ok = true;
	}
	path_pop(c, mark);
	return ok;
}

/* One of names[]: its index in *out. */
static bool get_enum(struct ctx *c, const struct ynode *m, const char *key,
		     const char *const *names, size_t n_names, int *out)
{
	const struct ynode *n = lookup(m, key);
	char list[256] = "";
	size_t mark, o = 0;

	if (is_null(n))
		return false;
	for (size_t i = 0; i < n_names; i++) {
		if (scalar_is(n, names[i])) {
			*out = (int)i;
			return true;
		}
		o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", names[i]);
	}
	mark = path_push(c, key);
	if (n->kind == Y_SCALAR)
		report(c, n, "'%.*s' is not accepted; expected one of %s",
		       n->len > SHOW_CAP ? SHOW_CAP : (int)n->len, n->text, list);
	else
		report_type(c, n, list);
	path_pop(c, mark);
	return false;
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

static bool read_value(struct ctx *c, const struct ynode *n, enum vkind k, double *out)
{
	switch (k) {
	case V_DURATION: {
		int64_t v;

		if (!read_duration(c, n, 0, INT64_MAX, &v))
			return false;
		*out = (double)v;
		return true;
	}
	case V_SIZE: {
		uint64_t v;

		if (!read_size(c, n, &v))
			return false;
		*out = (double)v;
		return true;
	}
	case V_COUNT:
	default:
		if (!numeric(n, out) || *out < 0) {
			report_type(c, n, "a number >= 0");
			return false;
		}
		return true;
	}
}

static bool get_value(struct ctx *c, const struct ynode *m, const char *key, enum vkind k,
		      double *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	bool ok;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	ok = read_value(c, n, k, out);
	path_pop(c, mark);
	return ok;
}

/* A distribution: a plain value (constant), or
 *   {dist: constant, value: V} | {dist: uniform, low: V, high: V}
 *   | {dist: exponential, mean: V} | {dist: lognormal, median: V, p99: V}
 * each with optional min / max clamps. */
static void read_dist(struct ctx *c, const struct ynode *raw, enum vkind k, struct bl_sim_dist *d)
{
	static const char *const keys[] = {"dist", "value", "low", "high", "mean",
					   "median", "p99", "min", "max"};
	static const char *const kinds[] = {"constant", "uniform", "exponential", "lognormal"};
	const struct ynode *m;
	int kind = BL_SIM_DIST_CONSTANT;
	double v;

	if (is_null(raw))
		return;
	if (raw->kind == Y_SCALAR) {
		if (read_value(c, raw, k, &v))
			*d = bl_sim_dist_constant(v);
		return;
	}
	if (raw->kind != Y_MAP) {
		char what[160];

		snprintf(what, sizeof what, "%s, or a distribution such as {dist: lognormal, "
					    "median: ..., p99: ...}", vkind_example(k));
		report_type(c, raw, what);
		return;
	}
	m = section(c, raw, keys, NELEMS(keys));
	if (!lookup(m, "dist")) {
		report(c, raw, "a distribution needs 'dist': one of constant, uniform, exponential, "
			       "lognormal");
		return;
	}
	if (!get_enum(c, m, "dist", kinds, NELEMS(kinds), &kind))
		return;
	memset(d, 0, sizeof *d);
	d->kind = (enum bl_sim_dist_kind)kind;
	switch (d->kind) {
	case BL_SIM_DIST_CONSTANT:
		if (!get_value(c, m, "value", k, &d->a))
			report(c, raw, "a constant distribution needs 'value'");
		break;
	case BL_SIM_DIST_UNIFORM:
		if (!get_value(c, m, "low", k, &d->a) || !get_value(c, m, "high", k, &d->b))
			report(c, raw, "a uniform distribution needs 'low' and 'high'");
		else if (d->b < d->a)
			report(c, lookup(m, "high"), "'high' must not be below 'low'");
		break;
	case BL_SIM_DIST_EXPONENTIAL:
		if (!get_value(c, m, "mean", k, &d->a))
			report(c, raw, "an exponential distribution needs 'mean'");
		break;
	case BL_SIM_DIST_LOGNORMAL:
		if (!get_value(c, m, "median", k, &d->a) || !get_value(c, m, "p99", k, &d->b))
			report(c, raw, "a lognormal distribution needs 'median' and 'p99' (its "
				       "99th percentile)");
		else if (d->b < d->a)
			report(c, lookup(m, "p99"), "'p99' must not be below 'median'");
		break;
	}
	get_value(c, m, "min", k, &d->min);
	get_value(c, m, "max", k, &d->max);
}

static void get_dist(struct ctx *c, const struct ynode *m, const char *key, enum vkind k,
		     struct bl_sim_dist *d)
{
	size_t mark = path_push(c, key);

	read_dist(c, lookup(m, key), k, d);
	path_pop(c, mark);
}

/* A rate: a number (per second) or "N/s", "N/m", "N/h". */
static bool get_rate(struct ctx *c, const struct ynode *m, const char *key, double *out)
{
	const struct ynode *n = lookup(m, key);
	size_t mark;
	bool ok = false;
	double v;

	if (is_null(n))
		return false;
	mark = path_push(c, key);
	if (numeric(n, &v)) {
		ok = v > 0;
	} else if (n->kind == Y_SCALAR && n->len > 2 && n->text[n->len - 2] == '/') {
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
		report_type(c, n, "a rate above 0: tasks per second, or 120/m, 2/s, 7200/h");
	path_pop(c, mark);
	return ok;
}

static void read_outages(struct ctx *c, const struct ynode *raw, struct bl_sim_outage *out,
			 size_t *n_out)
{
	static const char *const keys[] = {"at", "for", "error_rate", "latency_factor"};

	*n_out = 0;
	if (is_null(raw))
		return;
	if (raw->kind != Y_SEQ) {
		report_type(c, raw, "a list of outages such as [{at: 1h, for: 5m}]");
		return;
	}
	if (raw->n_kids > BL_SIM_OUTAGES_MAX) {
		report(c, raw, "%zu outages; at most %d are accepted", raw->n_kids, BL_SIM_OUTAGES_MAX);
		return;
	}
	for (size_t i = 0; i < raw->n_kids; i++) {
		const struct ynode *m;
		struct bl_sim_outage *o = &out[(*n_out)++];
		size_t mark = path_index(c, i);

		*o = (struct bl_sim_outage){0, 0, 1.0, 1.0};
		m = section(c, raw->kids[i], keys, NELEMS(keys));
		if (m) {
			if (!get_duration(c, m, "at", 0, INT64_MAX / 4, &o->at_ns) && !lookup(m, "at"))
				report(c, raw->kids[i], "an outage needs 'at' (when it starts)");
			if (!get_duration(c, m, "for", 1, INT64_MAX / 4, &o->for_ns) &&
			    !lookup(m, "for"))
				report(c, raw->kids[i], "an outage needs 'for' (how long it lasts)");
			get_double(c, m, "error_rate", 0, 1, &o->error_rate);
			get_double(c, m, "latency_factor", 0.001, 1000, &o->latency_factor);
		}
		path_pop(c, mark);
	}
}

/* ---- sections ------------------------------------------------------------ */

static void load_fleet(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"replicas", "startup", "tasks_per_worker", "cpu",
					   "memory", "base_memory"};
	struct bl_scenario *sc = c->sc;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));

	if (!m)
		return;
	get_u32(c, m, "replicas", 1, 10000, &sc->replicas);
	get_dist(c, m, "startup", V_DURATION, &sc->startup_ns);
	get_u32(c, m, "tasks_per_worker", 1, 10000, &sc->tasks_per_worker);
	get_double(c, m, "cpu", 0.001, 1024, &sc->cpu_cores);
	get_size(c, m, "memory", &sc->worker_memory);
	get_size(c, m, "base_memory", &sc->base_memory);
	if (sc->worker_memory == 0) {
		report(c, lookup(m, "memory"), "must be above 0");
	} else if (sc->base_memory >= sc->worker_memory) {
		size_t mark = path_push(c, "base_memory");

		report(c, lookup(m, "base_memory"), "must be below the worker's memory");
		path_pop(c, mark);
	}
}

static int tenant_index(const struct bl_scenario *sc, const char *s, size_t len)
{
	for (size_t i = 0; i < sc->n_tenants; i++)
		if (strlen(sc->tenants[i].name) == len && memcmp(sc->tenants[i].name, s, len) == 0)
			return (int)i;
	return -1;
}

static void load_tenants(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"name", "share", "priority"};
	static const char *const classes[] = {"critical", "high", "normal", "low"};
	struct bl_scenario *sc = c->sc;

	if (is_null(raw))
		return;
	if (raw->kind != Y_SEQ) {
		report_type(c, raw, "a list such as [{name: interactive, share: 0.3, priority: high}]");
		return;
	}
	if (raw->n_kids > BL_SIM_TENANTS_MAX) {
		report(c, raw, "%zu tenants; at most %d are accepted", raw->n_kids, BL_SIM_TENANTS_MAX);
		return;
	}
	for (size_t i = 0; i < raw->n_kids; i++) {
		struct bl_sim_tenant *t = &sc->tenants[sc->n_tenants];
		size_t mark = path_index(c, i);
		const struct ynode *m = section(c, raw->kids[i], keys, NELEMS(keys));
		int cls = BL_WAITQ_NORMAL;

		if (m) {
			t->share = 1;
			t->cls = BL_WAITQ_NORMAL;
			if (!get_name(c, m, "name", &t->name)) {
				if (!lookup(m, "name"))
					report(c, raw->kids[i], "a tenant needs 'name'");
			} else if (tenant_index(sc, t->name, strlen(t->name)) >= 0) {
				report(c, lookup(m, "name"), "tenant '%s' is listed twice", t->name);
			}
			get_double(c, m, "share", 0, 1e9, &t->share);
			if (get_enum(c, m, "priority", classes, NELEMS(classes), &cls))
				t->cls = (enum bl_waitq_class)cls;
			sc->n_tenants++;
		}
		path_pop(c, mark);
	}
}

/* Directory part of path, with its trailing '/', or "" (a fresh string). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return dup_n(path, slash ? (size_t)(slash - path) + 1 : 0);
}

/* Reads a CSV trace: time_s,input_tokens,output_tokens[,tenant] per line; a
 * first line that does not start with a number is a header. */
static void load_trace(struct ctx *c, const struct ynode *at, const char *file)
{
	struct bl_scenario *sc = c->sc;
	char *dir = NULL, *full = NULL, line[1024];
	FILE *f = NULL;
	size_t cap = 0, lineno = 0, rows_before = sc->n_trace, bytes = 0;
	bl_time_ns last = 0;
	bool header = false;

	if (!(dir = dir_of(c->file)))
		goto nomem;
	if (file[0] == '/')
		full = dup_n(file, strlen(file));
	else if ((full = malloc(strlen(dir) + strlen(file) + 1)) != NULL)
		sprintf(full, "%s%s", dir, file);
	if (!full)
		goto nomem;
	f = fopen(full, "r");
	if (!f) {
		report(c, at, "cannot open the trace %s: %s", full, strerror(errno));
		goto out;
	}
	while (fgets(line, sizeof line, f)) {
		struct bl_sim_trace_row row = {.tenant = -1};

		bytes += strlen(line);
		if (bytes > MAX_TRACE_BYTES) {
			report(c, at, "the trace %s is larger than 1 GiB; split it", full);
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
		report(c, at, "the trace %s holds no task", full);
	goto out;
nomem:
	c->err = BL_ENOMEM;
out:
	if (f)
		fclose(f);
	free(full);
	free(dir);
}

static void load_arrivals(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"kind", "rate", "bursts", "peak", "low", "period", "file"};
	static const char *const kinds[] = {"constant", "poisson", "diurnal", "trace"};
	static const char *const burst_keys[] = {"at", "for", "factor"};
	struct bl_scenario *sc = c->sc;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys)), *b;
	int kind = BL_SIM_ARRIVALS_POISSON;

	if (!m) {
		if (!raw)
			report(c, NULL, "the workload needs arrivals, such as {kind: poisson, rate: 2/s}");
		return;
	}
	get_enum(c, m, "kind", kinds, NELEMS(kinds), &kind);
	sc->arrivals = (enum bl_sim_arrivals)kind;
	if (sc->arrivals == BL_SIM_ARRIVALS_TRACE) {
		const struct ynode *f = lookup(m, "file");
		size_t mark = path_push(c, "file");

		if (!f || f->kind != Y_SCALAR || f->len == 0)
			report(c, f ? f : raw, "a trace needs 'file': a CSV of "
					       "time_s,input_tokens,output_tokens[,tenant]");
		else
			load_trace(c, f, f->text);
		path_pop(c, mark);
	} else if (!get_rate(c, m, "rate", &sc->rate_per_s) && !lookup(m, "rate")) {
		report(c, raw, "arrivals need 'rate': tasks per second, or 120/m, 2/s, 7200/h");
	}
	if (sc->arrivals == BL_SIM_ARRIVALS_DIURNAL) {
		get_duration(c, m, "peak", 0, S_NS(7 * 86400), &sc->diurnal_peak_ns);
		get_double(c, m, "low", 0, 1, &sc->diurnal_low);
		get_duration(c, m, "period", S_NS(60), S_NS(7 * 86400), &sc->diurnal_period_ns);
	}
	b = lookup(m, "bursts");
	if (!is_null(b)) {
		size_t mark = path_push(c, "bursts");

		if (b->kind != Y_SEQ || b->n_kids > BL_SIM_BURSTS_MAX) {
			report_type(c, b, "a list of at most 64 bursts such as [{at: 30m, for: 30s, "
					  "factor: 10}]");
		} else {
			for (size_t i = 0; i < b->n_kids; i++) {
				struct bl_sim_burst *bu = &sc->bursts[sc->n_bursts++];
				size_t mk = path_index(c, i);
				const struct ynode *bm =
					section(c, b->kids[i], burst_keys, NELEMS(burst_keys));

				*bu = (struct bl_sim_burst){0, 0, 1};
				if (bm) {
					/* Read all three, so that each is reported. */
					bool at = get_duration(c, bm, "at", 0, INT64_MAX / 4, &bu->at_ns);
					bool len = get_duration(c, bm, "for", 1, INT64_MAX / 4, &bu->for_ns);
					bool factor = get_double(c, bm, "factor", 0.001, 1e6, &bu->factor);

					if (!at || !len || !factor)
						if (!c->invalid)
							report(c, b->kids[i], "a burst needs 'at', 'for' "
									      "and 'factor'");
				}
				path_pop(c, mk);
			}
		}
		path_pop(c, mark);
	}
}

static void load_task(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"cpu", "memory", "calls", "input_tokens",
					   "output_tokens", "max_tokens"};
	struct bl_scenario *sc = c->sc;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
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

static void load_workload(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"arrivals", "task", "slo", "max_wait", "max_queue",
					   "tenants", "budget", "pool", "provider"};
	struct bl_scenario *sc = c->sc;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	size_t mark;

	if (!m) {
		report(c, raw, "the scenario needs a workload: arrivals and what a task does");
		return;
	}
	/* Tenants first: a trace refers to them. */
	mark = path_push(c, "tenants");
	load_tenants(c, lookup(m, "tenants"));
	path_pop(c, mark);
	mark = path_push(c, "arrivals");
	load_arrivals(c, lookup(m, "arrivals"));
	path_pop(c, mark);
	mark = path_push(c, "task");
	load_task(c, lookup(m, "task"));
	path_pop(c, mark);
	get_duration(c, m, "slo", BL_NS_PER_MS, S_NS(30 * 86400), &sc->slo_ns);
	get_duration(c, m, "max_wait", BL_NS_PER_MS, S_NS(30 * 86400), &sc->max_wait_ns);
	get_u32(c, m, "max_queue", 1, 100000000, &sc->max_queue);
	get_name(c, m, "budget", &sc->budget);
	get_name(c, m, "pool", &sc->pool);
}

static const char *const dim_keys[BL_DIM_COUNT] = {"requests", "tokens", "input_tokens",
						   "output_tokens"};

static void load_provider(struct ctx *c, const struct ynode *key, const struct ynode *raw,
			  struct bl_sim_provider_spec *p)
{
	static const char *const keys[] = {"limits", "window", "latency", "per_output_token",
					   "error_rate", "outages"};
	static const char *const lkeys[] = {"requests", "tokens", "input_tokens", "output_tokens",
					    "concurrent"};
	static const char *const rkeys[] = {"limit", "per"};
	static const char *const windows[] = {"token_bucket", "fixed_window", "sliding_window"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys)), *lim;
	int window = BL_SIM_WINDOW_TOKEN_BUCKET;
	char why[256];
	size_t mark;
	int64_t per_token = 0;

	bl_sim_provider_config_default(&p->config);
	p->latency_ns = bl_sim_dist_constant(1e9);
	if (!m) {
		report(c, raw ? raw : key, "a provider needs at least its limits");
		return;
	}
	mark = path_push(c, "limits");
	lim = section(c, lookup(m, "limits"), lkeys, NELEMS(lkeys));
	for (int d = 0; d < BL_DIM_COUNT && lim; d++) {
		const struct ynode *r = lookup(lim, dim_keys[d]);
		size_t mk;
		double limit = 0;

		if (is_null(r))
			continue;
		mk = path_push(c, dim_keys[d]);
		if (section(c, r, rkeys, NELEMS(rkeys))) {
			if (!get_double(c, r, "limit", 1, 9e15, &limit) && !lookup(r, "limit"))
				report(c, r, "needs 'limit' (units per window) and 'per' (the window)");
			p->config.rate[d].limit = (uint64_t)limit;
			p->config.rate[d].per_ns = S_NS(60);
			get_duration(c, r, "per", BL_NS_PER_MS, S_NS(31 * 86400),
				     &p->config.rate[d].per_ns);
		}
		path_pop(c, mk);
	}
	if (lim)
		get_u32(c, lim, "concurrent", 0, 100000000, &p->config.concurrent);
	path_pop(c, mark);
	if (get_enum(c, m, "window", windows, NELEMS(windows), &window))
		p->config.window = (enum bl_sim_window)window;
	get_dist(c, m, "latency", V_DURATION, &p->latency_ns);
	if (get_duration(c, m, "per_output_token", 0, S_NS(60), &per_token))
		p->per_output_token_ns = (double)per_token;
	get_double(c, m, "error_rate", 0, 1, &p->config.error_rate);
	mark = path_push(c, "outages");
	read_outages(c, lookup(m, "outages"), p->config.outages, &p->config.n_outages);
	path_pop(c, mark);
	if (!c->invalid && bl_sim_provider_config_check(&p->config, why, sizeof why))
		report(c, raw, "%s", why);
}

static int provider_index(const struct bl_scenario *sc, const char *name)
{
	for (size_t i = 0; i < sc->n_providers; i++)
		if (strcmp(sc->providers[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void load_providers(struct ctx *c, const struct ynode *raw)
{
	struct bl_scenario *sc = c->sc;

	if (is_null(raw) || raw->kind != Y_MAP || map_size(raw) == 0) {
		report_type(c, raw, "a map of providers by name, such as {anthropic: {limits: "
				    "{requests: {limit: 4000, per: 1m}}}}");
		return;
	}
	if (map_size(raw) > BL_SIM_PROVIDERS_MAX) {
		report(c, raw, "%zu providers; at most %d are accepted", map_size(raw),
		       BL_SIM_PROVIDERS_MAX);
		return;
	}
	for (size_t i = 0; i < map_size(raw); i++) {
		const struct ynode *k = raw->kids[2 * i];
		struct bl_sim_provider_spec *p = &sc->providers[sc->n_providers];
		size_t mark;

		if (k->kind != Y_SCALAR || k->len == 0 || k->len > 64) {
			report(c, k, "a provider's name must be a word of 1..64 characters");
			continue;
		}
		mark = path_push(c, k->text);
		if (!(p->name = dup_n(k->text, k->len))) {
			c->err = BL_ENOMEM;
			path_pop(c, mark);
			return;
		}
		sc->n_providers++;
		if (provider_index(sc, p->name) != (int)sc->n_providers - 1)
			report(c, k, "provider '%s' is defined twice", p->name);
		load_provider(c, k, raw->kids[2 * i + 1], p);
		path_pop(c, mark);
	}
}

static void load_backends(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"provider", "latency_factor", "error_rate", "outages"};
	struct bl_scenario *sc = c->sc;

	if (is_null(raw))
		return;
	if (raw->kind != Y_MAP) {
		report_type(c, raw, "a map of backends by name, such as {key-a: {provider: anthropic}}");
		return;
	}
	if (map_size(raw) > BL_SIM_BACKENDS_MAX) {
		report(c, raw, "%zu backends; at most %d are accepted", map_size(raw),
		       BL_SIM_BACKENDS_MAX);
		return;
	}
	for (size_t i = 0; i < map_size(raw); i++) {
		const struct ynode *k = raw->kids[2 * i], *m;
		struct bl_sim_backend_spec *b = &sc->backends[sc->n_backends];
		char *prov = NULL;
		size_t mark;

		if (k->kind != Y_SCALAR || k->len == 0 || k->len > 63) {
			report(c, k, "a backend's name must be a word of 1..63 characters");
			continue;
		}
		mark = path_push(c, k->text);
		if (!(b->name = dup_n(k->text, k->len))) {
			c->err = BL_ENOMEM;
			path_pop(c, mark);
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
					size_t mk = path_push(c, "provider");

					report(c, lookup(m, "provider"),
					       "provider '%s' is not defined under providers", prov);
					path_pop(c, mk);
				}
				free(prov);
			}
			get_double(c, m, "latency_factor", 0.001, 1000, &b->latency_factor);
			get_double(c, m, "error_rate", 0, 1, &b->error_rate);
			{
				size_t mk = path_push(c, "outages");

				read_outages(c, lookup(m, "outages"), b->outages, &b->n_outages);
				path_pop(c, mk);
			}
		}
		if (b->provider < 0 && !lookup(m, "provider")) {
			if (sc->n_providers == 1)
				b->provider = 0;
			else
				report(c, k, "backend '%s' needs 'provider': the provider it fronts",
				       b->name);
		}
		path_pop(c, mark);
	}
}

static void load_baselines(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"retry", "hpa_cpu_target"};
	static const char *const rkeys[] = {"base", "max", "attempts", "error_attempts",
					    "honor_retry_after"};
	struct bl_scenario *sc = c->sc;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys)), *r;
	size_t mark;

	if (!m)
		return;
	mark = path_push(c, "retry");
	r = section(c, lookup(m, "retry"), rkeys, NELEMS(rkeys));
	if (r) {
		get_duration(c, r, "base", BL_NS_PER_MS, S_NS(3600), &sc->retry_base_ns);
		get_duration(c, r, "max", BL_NS_PER_MS, S_NS(3600), &sc->retry_max_ns);
		get_u32(c, r, "attempts", 0, 1000, &sc->retry_attempts);
		get_u32(c, r, "error_attempts", 0, 1000, &sc->error_attempts);
		get_bool(c, r, "honor_retry_after", &sc->honor_retry_after);
	}
	path_pop(c, mark);
	get_double(c, m, "hpa_cpu_target", 0.05, 1.0, &sc->hpa_cpu_target);
}

/* ---- the policy blocks ----------------------------------------------------- */

static const char *const policy_keys[] = {"budgets", "pools", "memory", "autoscaler"};
static const char *const scenario_keys[] = {"name",      "duration", "drain",     "seed",
					    "sample",    "fleet",    "workload",  "providers",
					    "backends",  "baselines"};

static bool is_policy_key(const struct ynode *k)
{
	for (size_t i = 0; i < NELEMS(policy_keys); i++)
		if (scalar_is(k, policy_keys[i]))
			return true;
	return false;
}

/* Hands the policy blocks to the daemon's loader: a copy of the text with
 * every other top-level entry blanked out, lines and columns unchanged. */
static void load_policy(struct ctx *c, const struct ynode *root, const char *text, size_t len)
{
	char *copy;
	bool any = false;
	int rc;

	for (size_t i = 0; i < map_size(root); i++)
		any |= is_policy_key(root->kids[2 * i]);
	if (!any) {
		rc = bl_config_load_string("{}", 2, c->file, &c->sc->policy, c->diags);
		goto out;
	}
	if (!(copy = dup_n(text, len))) {
		c->err = BL_ENOMEM;
		return;
	}
	for (size_t i = 0; i < map_size(root); i++) {
		const struct ynode *k = root->kids[2 * i];
		size_t from = k->pos, to = i + 1 < map_size(root) ? root->kids[2 * i + 2]->pos : len;

		if (is_policy_key(k))
			continue;
		for (size_t j = from; j < to && j < len; j++)
			if (copy[j] != '\n' && copy[j] != '\r')
				copy[j] = ' ';
	}
	rc = bl_config_load_string(copy, len, c->file, &c->sc->policy, c->diags);
	free(copy);
out:
	if (rc == BL_ENOMEM)
		c->err = BL_ENOMEM;
	else if (rc)
		c->invalid = true;
}

/* Cross-references between the scenario and its policies. */
static void resolve(struct ctx *c, const struct ynode *root)
{
	struct bl_scenario *sc = c->sc;
	const struct bl_config *pol = sc->policy;
	const struct ynode *w = lookup(root, "workload");
	size_t mark = path_push(c, "workload");

	if (sc->budget && !bl_config_budget(pol, sc->budget)) {
		size_t mk = path_push(c, "budget");

		report(c, lookup(w, "budget"), "budget '%s' is not defined under budgets",
		       sc->budget);
		path_pop(c, mk);
	} else if (!sc->budget && pol->n_budgets > 1 && !sc->pool) {
		report(c, w, "several budgets are defined: name the one agents acquire from with "
			     "'budget'");
	} else if (!sc->budget && !sc->pool && pol->n_budgets == 1 &&
		   !(sc->budget = dup_n(pol->budgets[0].name, strlen(pol->budgets[0].name)))) {
		c->err = BL_ENOMEM;
	}
	if (sc->pool) {
		const struct bl_cfg_pool *cp = bl_config_pool(pol, sc->pool);
		size_t mk = path_push(c, "pool");

		if (!cp) {
			report(c, lookup(w, "pool"), "pool '%s' is not defined under pools", sc->pool);
		} else {
			for (size_t i = 0; i < cp->n_backends; i++) {
				struct bl_sim_backend_spec b;

				if (bl_scenario_backend(sc, cp->backends[i].name, &b) != 0)
					report(c, lookup(w, "pool"),
					       "backend '%s' of pool '%s' fronts no provider: add "
					       "backends: {%s: {provider: NAME}} or a provider of that "
					       "name", cp->backends[i].name, sc->pool,
					       cp->backends[i].name);
			}
		}
		path_pop(c, mk);
	}
	if (!sc->pool) {
		const struct ynode *pn = lookup(w, "provider");
		size_t mk = path_push(c, "provider");

		if (!is_null(pn)) {
			if (pn->kind != Y_SCALAR ||
			    (sc->provider = provider_index(sc, pn->text)) < 0)
				report(c, pn, "expected the name of a provider defined under providers");
		} else if (sc->n_providers == 1) {
			sc->provider = 0;
		} else if (sc->n_providers > 1) {
			report(c, w, "several providers are defined: name the one agents call "
				     "with 'provider'");
		}
		path_pop(c, mk);
	}
	path_pop(c, mark);
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

static void load_root(struct ctx *c, const struct ynode *root, const char *text, size_t len)
{
	static const char *all_keys[NELEMS(scenario_keys) + NELEMS(policy_keys)];
	struct bl_scenario *sc = c->sc;
	size_t mark;
	double seed;

	for (size_t i = 0; i < NELEMS(scenario_keys); i++)
		all_keys[i] = scenario_keys[i];
	for (size_t i = 0; i < NELEMS(policy_keys); i++)
		all_keys[NELEMS(scenario_keys) + i] = policy_keys[i];
	if (is_null(root) || root->kind != Y_MAP) {
		struct ynode at = {.line = 1, .column = 1};

		report_type(c, root ? root : &at, "a map with fleet, workload, providers and the "
						   "policy blocks (budgets, pools, memory, "
						   "autoscaler) at the top level");
		return;
	}
	if (root->pos < len && text[root->pos] == '{') {
		report(c, root, "write the scenario as a block map, one top-level key per line");
		return;
	}
	check_keys(c, root, all_keys, NELEMS(all_keys));
	{
		const struct ynode *n = lookup(root, "name");

		if (!is_null(n) && n->kind == Y_SCALAR && !(sc->name = dup_n(n->text, n->len)))
			c->err = BL_ENOMEM;
	}
	get_duration(c, root, "duration", S_NS(1), S_NS(31 * 86400), &sc->duration_ns);
	get_duration(c, root, "drain", 0, S_NS(7 * 86400), &sc->drain_ns);
	get_duration(c, root, "sample", BL_NS_PER_S, S_NS(86400), &sc->sample_ns);
	if (get_double(c, root, "seed", 0, 9007199254740991.0, &seed))
		sc->seed = (uint64_t)seed;
	mark = path_push(c, "fleet");
	load_fleet(c, lookup(root, "fleet"));
	path_pop(c, mark);
	mark = path_push(c, "providers");
	load_providers(c, lookup(root, "providers"));
	path_pop(c, mark);
	mark = path_push(c, "workload");
	load_workload(c, lookup(root, "workload"));
	path_pop(c, mark);
	mark = path_push(c, "backends");
	load_backends(c, lookup(root, "backends"));
	path_pop(c, mark);
	mark = path_push(c, "baselines");
	load_baselines(c, lookup(root, "baselines"));
	path_pop(c, mark);
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
	struct ctx c = {.file = name ? name : "<string>", .diags = diags ? diags : &local};
	struct bl_scenario *sc = calloc(1, sizeof *sc);
	const struct ynode *root;
	int rc;

	if (!sc)
		return BL_ENOMEM;
	c.sc = sc;
	set_defaults(sc);
	if (!(sc->path = dup_n(c.file, strlen(c.file)))) {
		bl_scenario_destroy(sc);
		return BL_ENOMEM;
	}
	root = parse(&c, text, len);
	if (root)
		load_root(&c, root, text, len);
	else if (!c.invalid && !c.err)
		report(&c, NULL, "the scenario is empty");
	tree_free(&c);
	if (!sc->name && !c.err) {
		const char *base = strrchr(c.file, '/');
		const char *dot;

		base = base ? base + 1 : c.file;
		dot = strrchr(base, '.');
		if (!(sc->name = dup_n(base, dot && dot != base ? (size_t)(dot - base) : strlen(base))))
			c.err = BL_ENOMEM;
	}
	rc = c.err ? c.err : c.invalid ? BL_EINVAL : 0;
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
