/* The YAML configuration loader.
 *
 * Three stages:
 *  1. libfyaml's event parser turns the text into a small tree of our own
 *     (struct ynode) in which every node keeps its line and column. libfyaml
 *     0.7 has no public way to ask a document node where it started, but
 *     every parser event carries a mark. Syntax errors come from libfyaml's
 *     diagnostic object, collected rather than printed.
 *  2. A schema walk reads the tree into struct bl_config, filling defaults and
 *     reporting every problem it meets (it never stops at the first one).
 *  3. The diagnostics are put in document order.
 *
 * Anchors and aliases are honoured; an alias is a pointer to the anchored
 * node, and the document is refused when aliases would expand it past
 * MAX_EXPANDED_NODES (the "billion laughs" guard).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ballast/error.h"
#include "ballast/units.h"

#define MAX_EXPANDED_NODES 100000     /* nodes after alias expansion */
#define MAX_DIAGS 200                 /* problems reported before giving up */
#define MAX_FILE_BYTES (16u << 20)    /* config files are small */
#define MAX_NAME_LEN 64               /* budget, pool, backend and tenant names */
#define PATH_CAP 512                  /* field paths longer than this are truncated */
#define SHOW_CAP 80                   /* user text quoted in messages */

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- diagnostics ------------------------------------------------------ */

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *dup_s(const char *s)
{
	return dup_n(s, strlen(s));
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

__attribute__((format(printf, 6, 0)))
static int diag_vadd(struct bl_diags *d, const char *file, int line, int column,
		     const char *path, const char *fmt, va_list ap)
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
	err = diag_vadd(d, file, line, column, path, fmt, ap);
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

/* Writes len bytes of s into buf for a message: control bytes as \xNN, long
 * text cut with "...". Always NUL-terminated. */
static const char *show(char *buf, size_t cap, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (o + 8 >= cap) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (ch < 0x20 || ch == 0x7f) {
			snprintf(buf + o, cap - o, "\\x%02x", ch);
			o += 4;
		} else {
			buf[o++] = (char)ch;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* ---- the located YAML tree -------------------------------------------- */

enum ykind { Y_SCALAR, Y_MAP, Y_SEQ, Y_ALIAS };

struct ynode {
	enum ykind kind;
	int line;                 /* 1-based */
	int column;               /* 1-based */
	char *text;               /* scalar: the value, NUL-terminated (may hold NULs) */
	size_t len;               /* scalar: bytes in text */
	bool plain;               /* scalar: unquoted, so null/bool/number resolution applies */
	struct ynode **kids;      /* map: key, value, key, value...; seq: the items */
	size_t n_kids;            /* entries in kids */
	size_t cap_kids;          /* allocated entries in kids */
	const struct ynode *target; /* alias: the anchored node, NULL when undefined */
	size_t weight;            /* nodes after alias expansion, saturating */
	char *anchor;             /* collection: its anchor until the collection ends */
	struct ynode *next_alloc; /* every node of the document, for freeing */
};

struct anchor {
	char *name;               /* anchor as written, without '&' */
	const struct ynode *node; /* the node it names */
};

struct ydoc {
	struct ynode *root;       /* NULL for an empty document */
	struct ynode *all;        /* list of every node, through next_alloc */
	struct anchor *anchors;   /* defined anchors, in document order */
	size_t n_anchors;         /* entries in anchors */
	size_t cap_anchors;       /* allocated entries in anchors */
};

static void ydoc_cleanup(struct ydoc *doc)
{
	struct ynode *n = doc->all;

	while (n) {
		struct ynode *next = n->next_alloc;

		free(n->text);
		free(n->kids);
		free(n->anchor);
		free(n);
		n = next;
	}
	for (size_t i = 0; i < doc->n_anchors; i++)
		free(doc->anchors[i].name);
	free(doc->anchors);
	memset(doc, 0, sizeof *doc);
}

static size_t add_weight(size_t a, size_t b)
{
	size_t s = a + b;

	return s < a || s > MAX_EXPANDED_NODES + 1 ? MAX_EXPANDED_NODES + 1 : s;
}

/* ---- the loader's context --------------------------------------------- */

/* One load: where diagnostics go, the path being read, the config being filled. */
struct ctx {
	const char *file;         /* name used in diagnostics */
	struct bl_diags *diags;   /* where problems go */
	int err;                  /* BL_ENOMEM once an allocation failed */
	bool invalid;             /* at least one problem was reported */
	size_t n_reported;        /* problems reported so far */
	char path[PATH_CAP];      /* field path of what is being read */
	size_t plen;              /* bytes used in path */
	struct bl_config *cfg;    /* what is being filled */
	const struct ynode *budgets; /* the budgets map, to check references */
};

__attribute__((format(printf, 4, 0)))
static void vreport_at(struct ctx *c, int line, int column, const char *fmt, va_list ap)
{
	c->invalid = true;
	if (c->err || c->n_reported > MAX_DIAGS)
		return;
	if (c->n_reported++ == MAX_DIAGS) {
		if (bl_diags_add(c->diags, c->file, line, column, "",
				 "too many problems; stopping after %d", MAX_DIAGS))
			c->err = BL_ENOMEM;
		return;
	}
	if (diag_vadd(c->diags, c->file, line, column, c->path, fmt, ap))
		c->err = BL_ENOMEM;
}

/* Reports a problem at node n (or with no location when n is NULL) under the current path. */
__attribute__((format(printf, 3, 4)))
static void report(struct ctx *c, const struct ynode *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport_at(c, n ? n->line : 0, n ? n->column : 0, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 4, 5)))
static void report_at(struct ctx *c, int line, int column, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport_at(c, line, column, fmt, ap);
	va_end(ap);
}

static bool stopped(const struct ctx *c)
{
	return c->err != 0 || c->n_reported > MAX_DIAGS;
}

/* Appends ".seg" (or "seg" at the top) to the path; returns what to pop back to. */
static size_t path_push_n(struct ctx *c, const char *seg, size_t len)
{
	size_t mark = c->plen;
	char shown[SHOW_CAP];

	show(shown, sizeof shown, seg, len);
	if (c->plen < sizeof c->path) {
		int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s",
				 c->plen ? "." : "", shown);

		if (n > 0)
			c->plen += (size_t)n;
		if (c->plen >= sizeof c->path)
			c->plen = sizeof c->path - 1;
	}
	return mark;
}

static size_t path_push(struct ctx *c, const char *seg)
{
	return path_push_n(c, seg, strlen(seg));
}

static size_t path_push_index(struct ctx *c, size_t i)
{
	size_t mark = c->plen;

	if (c->plen < sizeof c->path) {
		int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", i);

		if (n > 0)
			c->plen += (size_t)n;
		if (c->plen >= sizeof c->path)
			c->plen = sizeof c->path - 1;
	}
	return mark;
}

static void path_pop(struct ctx *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

/* ---- stage 1: events to tree ------------------------------------------ */

static const char yaml_tag_prefix[] = "tag:yaml.org,2002:";

/* State of stage 1 while events arrive. */
struct builder {
	struct ctx *c;            /* where problems are reported */
	struct ydoc *doc;         /* the tree being built */
	const char *src;          /* the YAML text being parsed */
	size_t src_len;           /* bytes in src */
	struct ynode **stack;     /* open collections */
	size_t depth;             /* entries in stack */
	size_t cap;               /* allocated entries in stack */
	int line;                 /* 1-based position of the last event with a mark ... */
	int column;               /* ... for events that carry none (empty values) */
	int documents;            /* documents started */
};

static struct ynode *node_new(struct builder *b, enum ykind kind, const struct fy_mark *m)
{
	struct ynode *n = calloc(1, sizeof *n);

	if (!n) {
		b->c->err = BL_ENOMEM;
		return NULL;
	}
	n->kind = kind;
	n->weight = 1;
	if (m && m->line >= 0) {
		b->line = m->line + 1;
		b->column = m->column + 1;
	}
	n->line = b->line;
	n->column = b->column;
	n->next_alloc = b->doc->all;
	b->doc->all = n;
	return n;
}

/* Hangs n under the innermost open collection, or makes it the root. */
static int node_attach(struct builder *b, struct ynode *n)
{
	struct ynode *p;

	if (b->depth == 0) {
		b->doc->root = n;
		return 0;
	}
	p = b->stack[b->depth - 1];
	if (p->n_kids == p->cap_kids) {
		size_t cap = p->cap_kids ? p->cap_kids * 2 : 4;
		struct ynode **kids = realloc(p->kids, cap * sizeof *kids);

		if (!kids)
			return b->c->err = BL_ENOMEM;
		p->kids = kids;
		p->cap_kids = cap;
	}
	p->kids[p->n_kids++] = n;
	return 0;
}

static int stack_push(struct builder *b, struct ynode *n)
{
	if (b->depth == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct ynode **s = realloc(b->stack, cap * sizeof *s);

		if (!s)
			return b->c->err = BL_ENOMEM;
		b->stack = s;
		b->cap = cap;
	}
	b->stack[b->depth++] = n;
	return 0;
}

/* Copies the text of an anchor token; *name stays NULL when there is none. */
static int anchor_text(struct builder *b, struct fy_token *tok, char **name)
{
	const char *text;
	size_t len = 0;

	*name = NULL;
	if (!tok)
		return 0;
	text = fy_token_get_text(tok, &len);
	if (!text || !(*name = dup_n(text, len)))
		return b->c->err = BL_ENOMEM;
	return 0;
}

/* Records that name (taken over, may be NULL) names n. */
static int anchor_define(struct builder *b, char *name, const struct ynode *n)
{
	struct ydoc *doc = b->doc;

	if (!name)
		return 0;
	if (doc->n_anchors == doc->cap_anchors) {
		size_t cap = doc->cap_anchors ? doc->cap_anchors * 2 : 8;
		struct anchor *a = realloc(doc->anchors, cap * sizeof *a);

		if (!a) {
			free(name);
			return b->c->err = BL_ENOMEM;
		}
		doc->anchors = a;
		doc->cap_anchors = cap;
	}
	doc->anchors[doc->n_anchors].name = name;
	doc->anchors[doc->n_anchors].node = n;
	doc->n_anchors++;
	return 0;
}

/* A later anchor of the same name shadows an earlier one, as YAML says. */
static const struct ynode *anchor_find(const struct ydoc *doc, const char *name, size_t len)
{
	for (size_t i = doc->n_anchors; i-- > 0;)
		if (strlen(doc->anchors[i].name) == len && memcmp(doc->anchors[i].name, name, len) == 0)
			return doc->anchors[i].node;
	return NULL;
}

/* Applies a node's tag: !!str makes a scalar a string whatever it looks like;
 * the other core tags are accepted; anything else is refused. */
static void apply_tag(struct builder *b, struct fy_token *tag, struct ynode *n)
{
	static const char *const scalar_tags[] = {"int", "float", "bool", "null"};
	const char *text;
	size_t len = 0, plen = sizeof yaml_tag_prefix - 1;
	char shown[SHOW_CAP];

	if (!tag)
		return;
	text = fy_token_get_text(tag, &len);
	if (!text) {
		b->c->err = BL_ENOMEM;
		return;
	}
	if (len > plen && memcmp(text, yaml_tag_prefix, plen) == 0) {
		const char *t = text + plen;
		size_t tl = len - plen;

		if (n->kind == Y_SCALAR && tl == 3 && memcmp(t, "str", 3) == 0) {
			n->plain = false;
			return;
		}
		for (size_t i = 0; n->kind == Y_SCALAR && i < NELEMS(scalar_tags); i++) {
			if (strlen(scalar_tags[i]) == tl && memcmp(t, scalar_tags[i], tl) == 0) {
				n->plain = true;
				return;
			}
		}
		if ((n->kind == Y_MAP && tl == 3 && memcmp(t, "map", 3) == 0) ||
		    (n->kind == Y_SEQ && tl == 3 && memcmp(t, "seq", 3) == 0))
			return;
	}
	report(b->c, n, "the tag '%s' is not supported here; remove it",
	       show(shown, sizeof shown, text, len));
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Decodes the content of a single-quoted scalar (what lies between the
 * quotes) as YAML 1.2 says: '' is one quote; across lines, whitespace around
 * line breaks goes, a single break folds into a space and n empty lines
 * into n newlines. Returns a new string and its length in *out_len, or NULL.
 *
 * libfyaml 0.7.12 can do this itself (fy_token_get_text), but leaks when a
 * scalar has several '' escapes; the fuzzer found it. */
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
			pending++; /* an empty line: kept as a newline */
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
	if (v) {
		if (!n->text) {
			text = fy_token_get_text(v, &len);
			if (!text) {
				b->c->err = BL_ENOMEM;
				return;
			}
		}
		n->plain = fy_token_scalar_style(v) == FYSS_PLAIN;
		/* libfyaml marks the content; point at the opening quote, right before it. */
		if ((fy_token_scalar_style(v) == FYSS_SINGLE_QUOTED ||
		     fy_token_scalar_style(v) == FYSS_DOUBLE_QUOTED) && n->column > 1)
			n->column--;
	} else {
		n->plain = true; /* an empty value: null */
	}
	if (!n->text) {
		n->text = dup_n(text, len);
		if (!n->text) {
			b->c->err = BL_ENOMEM;
			return;
		}
		n->len = len;
	}
	apply_tag(b, e->scalar.tag, n);
	if (node_attach(b, n) == 0) {
		char *name;

		if (anchor_text(b, e->scalar.anchor, &name) == 0)
			anchor_define(b, name, n);
	}
}

static void alias_event(struct builder *b, struct fy_event *e)
{
	struct fy_token *a = e->alias.anchor;
	struct ynode *n = node_new(b, Y_ALIAS, fy_event_start_mark(e));
	const char *name;
	size_t len = 0;
	char shown[SHOW_CAP];

	if (!n)
		return;
	if (n->column > 1)
		n->column--; /* libfyaml marks the name; point at the '*' before it */
	name = a ? fy_token_get_text(a, &len) : "";
	if (!name) {
		b->c->err = BL_ENOMEM;
		return;
	}
	n->target = anchor_find(b->doc, name, len);
	if (n->target)
		n->weight = n->target->weight;
	else
		report(b->c, n, "alias '*%s' refers to no anchor defined before it",
		       show(shown, sizeof shown, name, len));
	node_attach(b, n);
}

static void collection_start(struct builder *b, struct fy_event *e, enum ykind kind)
{
	struct fy_token *tag = kind == Y_MAP ? e->mapping_start.tag : e->sequence_start.tag;
	struct fy_token *anchor = kind == Y_MAP ? e->mapping_start.anchor : e->sequence_start.anchor;
	struct ynode *n = node_new(b, kind, fy_event_start_mark(e));

	if (!n)
		return;
	apply_tag(b, tag, n);
	if (anchor_text(b, anchor, &n->anchor) == 0 && node_attach(b, n) == 0)
		stack_push(b, n);
}

static void collection_end(struct builder *b)
{
	struct ynode *n;
	char *name;

	if (b->depth == 0)
		return;
	n = b->stack[--b->depth];
	for (size_t i = 0; i < n->n_kids; i++)
		n->weight = add_weight(n->weight, n->kids[i]->weight);
	/* Defined only now, so an alias inside its own anchor cannot make a cycle. */
	name = n->anchor;
	n->anchor = NULL;
	anchor_define(b, name, n);
}

/* Collects libfyaml's error diagnostics as ours. Returns whether there were any. */
static bool syntax_errors(struct ctx *c, struct fy_diag *diag)
{
	struct fy_diag_error *de;
	void *iter = NULL;
	bool any = false;

	while ((de = fy_diag_errors_iterate(diag, &iter)) != NULL) {
		const char *msg = de->msg ? de->msg : "malformed";
		char shown[SHOW_CAP * 2];

		if (de->type < FYET_ERROR)
			continue;
		any = true;
		/* libfyaml's collected errors are already 1-based. */
		report_at(c, de->line, de->column, "YAML syntax error: %s",
			  show(shown, sizeof shown, msg, strlen(msg)));
	}
	return any;
}

static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one:
 * overlong forms, surrogates and code points past U+10FFFF are refused. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

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
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* past U+10FFFF */
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static uint32_t utf8_decode(const unsigned char *s, size_t n)
{
	static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
	uint32_t cp = s[0] & lead_mask[n];

	for (size_t i = 1; i < n; i++)
		cp = cp << 6 | (s[i] & 0x3f);
	return cp;
}

/* YAML 1.2's c-printable: no control characters but tab, LF, CR and NEL. */
static bool yaml_printable(uint32_t cp)
{
	return cp == 0x09 || cp == 0x0a || cp == 0x0d || (cp >= 0x20 && cp <= 0x7e) || cp == 0x85 ||
	       (cp >= 0xa0 && cp != 0xfffe && cp != 0xffff);
}

/* A YAML stream is printable Unicode; we take UTF-8. Checked before
 * libfyaml sees the text, which 0.7.12 needs: it loops forever on a '%'
 * directive followed by a stray UTF-8 lead byte, and crashes on some NUL
 * bytes (both found by fuzzing). */
static bool check_text(struct ctx *c, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	int line = 1, column = 1;

	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq_len(s + i, len - i);
		uint32_t cp;

		if (n == 0) {
			report_at(c, line, column, "the file is not valid UTF-8 (byte 0x%02x); save "
						   "it as UTF-8", s[i]);
			return false;
		}
		cp = utf8_decode(s + i, n);
		if (!yaml_printable(cp)) {
			report_at(c, line, column, "control character U+%04X is not allowed in YAML; "
						   "remove it, or write it as an escape inside "
						   "double quotes (\"\\x%02X\")",
				  (unsigned)cp, (unsigned)cp & 0xff);
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

/* Parses text into doc. Returns false when the document cannot be validated
 * (syntax error, too many alias expansions, out of memory); problems are reported. */
static bool ydoc_build(struct ctx *c, const char *text, size_t len, struct ydoc *doc)
{
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg = {0};
	struct fy_diag *diag = NULL;
	struct fy_parser *parser = NULL;
	struct fy_event *e;
	struct builder b = {.c = c, .doc = doc, .src = text, .src_len = len, .line = 1, .column = 1};
	bool ok = false;

	if (!check_text(c, text, len))
		return false;
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.output_fn = diag_discard;
	dcfg.colorize = false;
	diag = fy_diag_create(&dcfg);
	if (!diag) {
		c->err = BL_ENOMEM;
		goto out;
	}
	fy_diag_set_collect_errors(diag, true);
	pcfg.flags = FYPCF_QUIET;
	pcfg.diag = diag;
	parser = fy_parser_create(&pcfg);
	if (!parser || fy_parser_set_string(parser, len ? text : "", len) != 0) {
		c->err = BL_ENOMEM;
		goto out_parser;
	}
	while (!c->err && (e = fy_parser_parse(parser)) != NULL) {
		switch (e->type) {
		case FYET_DOCUMENT_START:
			if (++b.documents > 1) {
				const struct fy_mark *m = fy_event_start_mark(e);

				report_at(c, m ? m->line + 1 : b.line, m ? m->column + 1 : b.column,
					  "a second YAML document starts here; a config is one document");
				fy_parser_event_free(parser, e);
				goto out_parser;
			}
			break;
		case FYET_SCALAR:
			scalar_event(&b, e);
			break;
		case FYET_ALIAS:
			alias_event(&b, e);
			break;
		case FYET_MAPPING_START:
			collection_start(&b, e, Y_MAP);
			break;
		case FYET_SEQUENCE_START:
			collection_start(&b, e, Y_SEQ);
			break;
		case FYET_MAPPING_END:
		case FYET_SEQUENCE_END:
			collection_end(&b);
			break;
		default:
			break;
		}
		fy_parser_event_free(parser, e);
	}
	if (c->err)
		goto out_parser;
	if (fy_parser_get_stream_error(parser)) {
		if (!syntax_errors(c, diag))
			report_at(c, b.line, b.column, "YAML syntax error: the document is malformed");
		goto out_parser;
	}
	if (doc->root && doc->root->weight > MAX_EXPANDED_NODES) {
		report(c, doc->root, "aliases expand the document to more than %d nodes",
		       MAX_EXPANDED_NODES);
		goto out_parser;
	}
	ok = true;
out_parser:
	fy_parser_destroy(parser);
	fy_diag_destroy(diag);
out:
	free(b.stack);
	return ok && !c->err;
}

/* ---- stage 2: reading nodes ------------------------------------------- */

/* The node an alias stands for; NULL for an alias to nothing. */
static const struct ynode *deref(const struct ynode *n)
{
	return n && n->kind == Y_ALIAS ? n->target : n;
}

static bool scalar_is(const struct ynode *n, const char *s)
{
	return strlen(s) == n->len && memcmp(n->text, s, n->len) == 0;
}

/* Null, as YAML's core schema spells it, or absent. */
static bool is_null(const struct ynode *raw)
{
	const struct ynode *n = deref(raw);

	if (!n)
		return true;
	if (n->kind != Y_SCALAR || !n->plain)
		return false;
	return n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") ||
	       scalar_is(n, "NULL");
}

/* Describes what a node is, for "expected X, got Y". */
static const char *describe(const struct ynode *raw, char *buf, size_t cap)
{
	const struct ynode *n = deref(raw);
	char shown[SHOW_CAP];

	if (is_null(n))
		return "nothing (null)";
	if (n->kind == Y_MAP)
		return "a map";
	if (n->kind == Y_SEQ)
		return "a list";
	snprintf(buf, cap, "%s'%s'", n->plain ? "" : "the string ",
		 show(shown, sizeof shown, n->text, n->len));
	return buf;
}

static void report_type(struct ctx *c, const struct ynode *n, const char *expected)
{
	char buf[SHOW_CAP + 16];

	report(c, n, "expected %s, got %s", expected, describe(n, buf, sizeof buf));
}

/* The map behind n; NULL (and a report) when n is something else, NULL
 * silently when n is null or absent. */
static const struct ynode *as_map(struct ctx *c, const struct ynode *raw, const char *expected)
{
	const struct ynode *n = deref(raw);

	if (is_null(n))
		return NULL;
	if (n->kind != Y_MAP) {
		report_type(c, raw, expected);
		return NULL;
	}
	return n;
}

static const struct ynode *as_seq(struct ctx *c, const struct ynode *raw, const char *expected)
{
	const struct ynode *n = deref(raw);

	if (is_null(n))
		return NULL;
	if (n->kind != Y_SEQ) {
		report_type(c, raw, expected);
		return NULL;
	}
	return n;
}

static size_t map_size(const struct ynode *m)
{
	return m ? m->n_kids / 2 : 0;
}

static const struct ynode *map_key(const struct ynode *m, size_t i)
{
	return m->kids[2 * i];
}

static const struct ynode *map_value(const struct ynode *m, size_t i)
{
	return m->kids[2 * i + 1];
}

/* The scalar text of a key, or NULL when the key is not a scalar. */
static const struct ynode *key_scalar(const struct ynode *k)
{
	k = deref(k);
	return k && k->kind == Y_SCALAR ? k : NULL;
}

/* The value under key in map m (first occurrence), or NULL. */
static const struct ynode *lookup(const struct ynode *m, const char *key)
{
	for (size_t i = 0; i < map_size(m); i++) {
		const struct ynode *k = key_scalar(map_key(m, i));

		if (k && scalar_is(k, key))
			return map_value(m, i);
	}
	return NULL;
}

/* Optimal string alignment distance (edits and adjacent swaps), for "did you mean". */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	size_t rows[3][MAX_NAME_LEN + 1];
	size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

	if (la > MAX_NAME_LEN || lb > MAX_NAME_LEN)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t *t;

		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t v = prev[j] + 1;

			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			cur[j] = v;
		}
		t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb];
}

/* The candidate closest to s, when it is close enough to be a likely typo. */
static const char *suggest(const char *s, size_t len, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;

	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(s, len, cands[i]);

		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	if (best && best_d <= 2 && 3 * best_d <= strlen(best))
		return best;
	return NULL;
}

/* Writes "a, b, c" into buf. */
static const char *join(char *buf, size_t cap, const char *const *items, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && o < cap; i++) {
		int w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", items[i]);

		if (w < 0)
			break;
		o += (size_t)w;
	}
	return buf;
}

struct keyref {
	const struct ynode *key; /* a scalar key */
	size_t index;            /* its place in the map */
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
static void check_duplicates(struct ctx *c, const struct ynode *m, const char *what)
{
	size_t n = map_size(m), k = 0;
	struct keyref *refs;

	if (n < 2 || stopped(c))
		return;
	refs = malloc(n * sizeof *refs);
	if (!refs) {
		c->err = BL_ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ynode *key = key_scalar(map_key(m, i));

		if (key)
			refs[k++] = (struct keyref){key, i};
	}
	qsort(refs, k, sizeof *refs, keyref_cmp);
	/* Equal keys are now adjacent, the first written first in each run. */
	for (size_t i = 1, first = 0; i < k && !stopped(c); i++) {
		char shown[SHOW_CAP];
		size_t mark;

		if (refs[i].key->len != refs[first].key->len ||
		    memcmp(refs[i].key->text, refs[first].key->text, refs[i].key->len) != 0) {
			first = i;
			continue;
		}
		show(shown, sizeof shown, refs[i].key->text, refs[i].key->len);
		mark = path_push_n(c, refs[i].key->text, refs[i].key->len);
		report(c, map_key(m, refs[i].index), "duplicate %s '%s'; the first is at line %d",
		       what, shown, refs[first].key->line);
		path_pop(c, mark);
	}
	free(refs);
}

/* Checks the keys of a fixed-schema map: scalars, known, not repeated. */
static void check_keys(struct ctx *c, const struct ynode *m, const char *const *keys, size_t n_keys)
{
	for (size_t i = 0; i < map_size(m) && !stopped(c); i++) {
		const struct ynode *raw = map_key(m, i), *k = key_scalar(raw);
		char shown[SHOW_CAP], list[512];
		const char *hint;
		size_t mark;
		bool known = false;

		if (!k) {
			report(c, raw, "keys must be plain words, not %s",
			       deref(raw) && deref(raw)->kind == Y_MAP ? "maps" : "lists");
			continue;
		}
		for (size_t j = 0; j < n_keys && !known; j++)
			known = scalar_is(k, keys[j]);
		if (known)
			continue;
		show(shown, sizeof shown, k->text, k->len);
		mark = path_push_n(c, k->text, k->len);
		hint = suggest(k->text, k->len, keys, n_keys);
		if (k->len == 2 && memcmp(k->text, "<<", 2) == 0)
			report(c, raw, "merge keys (<<) are not supported; repeat the settings or "
				       "use an alias for the whole value");
		else if (hint)
			report(c, raw, "unknown key '%s'; did you mean '%s'?", shown, hint);
		else
			report(c, raw, "unknown key '%s'; accepted here: %s", shown,
			       join(list, sizeof list, keys, n_keys));
		path_pop(c, mark);
	}
	check_duplicates(c, m, "key");
}

/* A fixed-schema section: the map (or NULL when absent, null or the wrong
 * type, which is reported), with its keys checked. */
static const struct ynode *section(struct ctx *c, const struct ynode *raw,
				   const char *const *keys, size_t n_keys)
{
	const struct ynode *m = as_map(c, raw, "a map of settings");

	if (m)
		check_keys(c, m, keys, n_keys);
	return m;
}

static bool is_numeric(const struct ynode *n)
{
	return n && n->kind == Y_SCALAR && n->plain && n->len > 0 && strlen(n->text) == n->len &&
	       strspn(n->text, "0123456789+-.eE") == n->len;
}

/* A whole number in plain decimal, within lo..hi. */
static bool read_int(struct ctx *c, const struct ynode *raw, int64_t lo, int64_t hi, int64_t *out)
{
	const struct ynode *n = deref(raw);
	char what[80];
	uint64_t mag = 0;
	int64_t v;
	size_t i = 0;

	snprintf(what, sizeof what, "a whole number in %lld..%lld", (long long)lo, (long long)hi);
	if (!is_numeric(n)) {
		report_type(c, raw, what);
		return false;
	}
	if (n->text[0] == '-' || n->text[0] == '+')
		i++;
	if (i == n->len || strspn(n->text + i, "0123456789") != n->len - i) {
		char *end;
		double d = strtod(n->text, &end);

		if (*end == '\0' && isfinite(d))
			report(c, raw, "%s is not a whole number; expected %s", n->text, what);
		else
			report_type(c, raw, what);
		return false;
	}
	for (; i < n->len; i++) {
		if (mag > ((uint64_t)INT64_MAX - 9) / 10) {
			report(c, raw, "%s is outside %lld..%lld", n->text, (long long)lo, (long long)hi);
			return false;
		}
		mag = mag * 10 + (uint64_t)(n->text[i] - '0');
	}
	v = n->text[0] == '-' ? -(int64_t)mag : (int64_t)mag;
	if (v < lo || v > hi) {
		report(c, raw, "%s is outside %lld..%lld", n->text, (long long)lo, (long long)hi);
		return false;
	}
	*out = v;
	return true;
}

static bool read_u32(struct ctx *c, const struct ynode *n, uint32_t lo, uint32_t hi, uint32_t *out)
{
	int64_t v;

	if (!read_int(c, n, lo, hi, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A plain decimal number (integer or fraction); inf and nan are refused. */
static bool read_double(struct ctx *c, const struct ynode *raw, double lo, double hi, double *out)
{
	const struct ynode *n = deref(raw);
	char *end;
	double d;

	if (is_numeric(n)) {
		d = strtod(n->text, &end);
		if (*end == '\0' && isfinite(d)) {
			if (d < lo || d > hi) {
				report(c, raw, "%s is outside %g..%g", n->text, lo, hi);
				return false;
			}
			*out = d;
			return true;
		}
	}
	{
		char what[80];

		snprintf(what, sizeof what, "a number in %g..%g", lo, hi);
		report_type(c, raw, what);
	}
	return false;
}

static bool read_bool(struct ctx *c, const struct ynode *raw, bool *out)
{
	const struct ynode *n = deref(raw);

	if (n && n->kind == Y_SCALAR && n->plain) {
		if (scalar_is(n, "true") || scalar_is(n, "True") || scalar_is(n, "TRUE")) {
			*out = true;
			return true;
		}
		if (scalar_is(n, "false") || scalar_is(n, "False") || scalar_is(n, "FALSE")) {
			*out = false;
			return true;
		}
	}
	report_type(c, raw, "true or false");
	return false;
}

/* The text of a scalar that is used as a string: not a map or list, no NUL. */
static const struct ynode *string_node(struct ctx *c, const struct ynode *raw, const char *expected)
{
	const struct ynode *n = deref(raw);

	if (!n || n->kind != Y_SCALAR) {
		report_type(c, raw, expected);
		return NULL;
	}
	if (strlen(n->text) != n->len) {
		report(c, raw, "contains a NUL character; expected %s", expected);
		return NULL;
	}
	return n;
}

static bool read_duration(struct ctx *c, const struct ynode *raw, int64_t lo, int64_t hi,
			  int64_t *out)
{
	const struct ynode *n = string_node(c, raw, "a duration such as 250ms, 30s, 5m or 1h");
	char shown[SHOW_CAP], los[32], his[32];
	int64_t v;
	int err;

	if (!n)
		return false;
	err = bl_parse_duration(n->text, n->len, &v);
	show(shown, sizeof shown, n->text, n->len);
	if (err == BL_ERANGE) {
		report(c, raw, "'%s' is too long a duration", shown);
		return false;
	}
	if (err) {
		report(c, raw, "'%s' is not a duration; write a number with a unit: 250ms, 30s, "
			       "5m, 1h (units ns, us, ms, s, m, h, d)", shown);
		return false;
	}
	if (v < lo || v > hi) {
		bl_format_duration(lo, los, sizeof los);
		bl_format_duration(hi, his, sizeof his);
		report(c, raw, "%s is outside %s..%s", shown, los, his);
		return false;
	}
	*out = v;
	return true;
}

static bool read_size(struct ctx *c, const struct ynode *raw, uint64_t lo, uint64_t hi,
		      uint64_t *out)
{
	const struct ynode *n = string_node(c, raw, "a size such as 512KiB, 64MiB or 16GiB");
	char shown[SHOW_CAP], los[32], his[32];
	uint64_t v;
	int err;

	if (!n)
		return false;
	err = bl_parse_size(n->text, n->len, &v);
	show(shown, sizeof shown, n->text, n->len);
	if (err == BL_ERANGE) {
		report(c, raw, "'%s' is too large a size", shown);
		return false;
	}
	if (err) {
		report(c, raw, "'%s' is not a size; write bytes or a number with a unit: "
			       "512KiB, 64MiB, 16GiB (also KB, MB, GB, TiB)", shown);
		return false;
	}
	if (v < lo || v > hi) {
		bl_format_size(lo, los, sizeof los);
		bl_format_size(hi, his, sizeof his);
		report(c, raw, "%s is outside %s..%s", shown, los, his);
		return false;
	}
	*out = v;
	return true;
}

/* A non-empty string, copied into *out (replacing what was there). */
static bool read_string(struct ctx *c, const struct ynode *raw, const char *expected, char **out)
{
	const struct ynode *n = string_node(c, raw, expected);
	char *s;

	if (!n)
		return false;
	if (n->len == 0) {
		report(c, raw, "must not be empty; expected %s", expected);
		return false;
	}
	s = dup_n(n->text, n->len);
	if (!s) {
		c->err = BL_ENOMEM;
		return false;
	}
	free(*out);
	*out = s;
	return true;
}

/* One of names[]; sets *out to its index. */
static bool read_enum(struct ctx *c, const struct ynode *raw, const char *const *names,
		      size_t n_names, int *out)
{
	const struct ynode *n = deref(raw);
	char shown[SHOW_CAP], list[256];
	const char *hint;

	join(list, sizeof list, names, n_names);
	if (!n || n->kind != Y_SCALAR) {
		char what[300];

		snprintf(what, sizeof what, "one of %s", list);
		report_type(c, raw, what);
		return false;
	}
	for (size_t i = 0; i < n_names; i++) {
		if (scalar_is(n, names[i])) {
			*out = (int)i;
			return true;
		}
	}
	show(shown, sizeof shown, n->text, n->len);
	hint = suggest(n->text, n->len, names, n_names);
	if (hint)
		report(c, raw, "'%s' is not accepted; did you mean '%s'? (one of %s)", shown, hint,
		       list);
	else
		report(c, raw, "'%s' is not accepted; expected one of %s", shown, list);
	return false;
}

/* Names of budgets, pools, backends and tenants go into URLs and metrics. */
static bool name_ok(const struct ynode *n)
{
	if (!n || n->kind != Y_SCALAR || n->len == 0 || n->len > MAX_NAME_LEN)
		return false;
	for (size_t i = 0; i < n->len; i++) {
		char ch = n->text[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

static bool check_name(struct ctx *c, const struct ynode *raw, const char *what)
{
	const struct ynode *n = deref(raw);
	char shown[SHOW_CAP];

	if (name_ok(n))
		return true;
	if (!n || n->kind != Y_SCALAR) {
		char buf[SHOW_CAP + 16];

		report(c, raw, "a %s name must be a word, got %s", what, describe(raw, buf, sizeof buf));
		return false;
	}
	report(c, raw, "%s name '%s' is not accepted: use 1..%d letters, digits, '_', '-' or '.'",
	       what, show(shown, sizeof shown, n->text, n->len), MAX_NAME_LEN);
	return false;
}

/* ---- field getters: key lookup + path + reader ------------------------ */

/* What a getter found. */
enum got { GOT_NONE = 0, GOT_OK = 1, GOT_BAD = -1 };

#define FIELD(c, m, key, body)                                                \
	do {                                                                  \
		const struct ynode *v_ = lookup((m), (key));                  \
		size_t mark_;                                                 \
		if (!v_ || is_null(v_))                                       \
			return GOT_NONE;                                      \
		mark_ = path_push((c), (key));                                \
		bool ok_ = (body);                                            \
		path_pop((c), mark_);                                         \
		return ok_ ? GOT_OK : GOT_BAD;                                \
	} while (0)

static enum got get_u32(struct ctx *c, const struct ynode *m, const char *key, uint32_t lo,
			uint32_t hi, uint32_t *out)
{
	FIELD(c, m, key, read_u32(c, v_, lo, hi, out));
}

static enum got get_u64(struct ctx *c, const struct ynode *m, const char *key, int64_t lo,
			int64_t hi, uint64_t *out)
{
	int64_t v = 0;

	FIELD(c, m, key, read_int(c, v_, lo, hi, &v) && ((*out = (uint64_t)v), true));
}

static enum got get_double(struct ctx *c, const struct ynode *m, const char *key, double lo,
			   double hi, double *out)
{
	FIELD(c, m, key, read_double(c, v_, lo, hi, out));
}

static enum got get_bool(struct ctx *c, const struct ynode *m, const char *key, bool *out)
{
	FIELD(c, m, key, read_bool(c, v_, out));
}

static enum got get_duration(struct ctx *c, const struct ynode *m, const char *key, int64_t lo,
			     int64_t hi, int64_t *out)
{
	FIELD(c, m, key, read_duration(c, v_, lo, hi, out));
}

static enum got get_size(struct ctx *c, const struct ynode *m, const char *key, uint64_t lo,
			 uint64_t hi, uint64_t *out)
{
	FIELD(c, m, key, read_size(c, v_, lo, hi, out));
}

static enum got get_string(struct ctx *c, const struct ynode *m, const char *key,
			   const char *expected, char **out)
{
	FIELD(c, m, key, read_string(c, v_, expected, out));
}

static enum got get_enum(struct ctx *c, const struct ynode *m, const char *key,
			 const char *const *names, size_t n_names, int *out)
{
	FIELD(c, m, key, read_enum(c, v_, names, n_names, out));
}

/* The value under key in m, for locating problems about it; else m itself. */
static const struct ynode *where(const struct ynode *m, const char *key)
{
	const struct ynode *v = lookup(m, key);

	return v ? v : m;
}

/* ---- listen, URLs, Kubernetes names ----------------------------------- */

/* Splits "host:port" / "[v6]:port". Returns 0, BL_EINVAL with why filled in, or BL_ENOMEM. */
static int parse_listen(const char *s, char **host_out, uint16_t *port_out, char *why, size_t cap)
{
	const char *host, *port;
	size_t hlen;
	char hbuf[64], shown[SHOW_CAP];
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
				 show(shown, sizeof shown, host, hlen));
			return BL_EINVAL;
		}
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon) {
			snprintf(why, cap, "'%s' has no port; expected host:port such as "
					   "127.0.0.1:7070 or [::1]:7070",
				 show(shown, sizeof shown, s, strlen(s)));
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
					   "localhost", show(shown, sizeof shown, host, hlen));
			return BL_EINVAL;
		}
	}
	if (port[0] == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
	    (p = strtoul(port, NULL, 10)) > 65535) {
		snprintf(why, cap, "port '%s' is not a number in 0..65535",
			 show(shown, sizeof shown, port, strlen(port)));
		return BL_EINVAL;
	}
	h = dup_n(host, hlen);
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

static bool read_url(struct ctx *c, const struct ynode *raw, char **out)
{
	const char *a, *e, *at, *host;
	char shown[SHOW_CAP];

	if (!read_string(c, raw, "an http:// or https:// URL", out))
		return false;
	show(shown, sizeof shown, *out, strlen(*out));
	if (!url_authority(*out, &a, &e)) {
		report(c, raw, "'%s' is not an http:// or https:// URL", shown);
		return false;
	}
	for (const char *p = *out; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			report(c, raw, "'%s' contains a space or control character; URLs must "
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
		report(c, raw, "'%s' has no host", shown);
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

static void load_log(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"level", "access"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	int level;

	if (get_enum(c, m, "level", level_names, NELEMS(level_names), &level) == GOT_OK)
		c->cfg->log_level = (enum bl_log_level)level;
	get_bool(c, m, "access", &c->cfg->log_access);
}

static void load_limits(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"max_connections", "max_body", "max_header",
					   "request_timeout", "daemon_memory"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	struct bl_config *cfg = c->cfg;

	get_u32(c, m, "max_connections", 1, 1000000, &cfg->max_connections);
	get_size(c, m, "max_body", KIB(1), GIB(1), &cfg->max_body);
	get_size(c, m, "max_header", KIB(1), MIB(1), &cfg->max_header);
	get_duration(c, m, "request_timeout", MS(100), S(3600), &cfg->request_timeout_ns);
	get_size(c, m, "daemon_memory", MIB(16), TIB(1), &cfg->daemon_memory);
}

static void load_listen(struct ctx *c, const struct ynode *m)
{
	const struct ynode *v = lookup(m, "listen");
	char why[256];
	size_t mark;
	int err;

	if (!v || is_null(v))
		return;
	mark = path_push(c, "listen");
	if (read_string(c, v, "host:port such as 127.0.0.1:7070", &c->cfg->listen)) {
		err = parse_listen(c->cfg->listen, &c->cfg->listen_host, &c->cfg->listen_port, why,
				   sizeof why);
		if (err == BL_ENOMEM)
			c->err = err;
		else if (err)
			report(c, v, "%s", why);
	}
	path_pop(c, mark);
}

static void load_rate(struct ctx *c, const struct ynode *raw, struct bl_cfg_rate *r)
{
	static const char *const keys[] = {"limit", "per"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	enum got gl, gp;

	if (!m) {
		if (!deref(raw) || deref(raw)->kind == Y_MAP)
			report(c, raw, "needs limit and per, such as {limit: 4000, per: 1m}");
		return;
	}
	gl = get_u64(c, m, "limit", 1, INT64_C(1000000000000000), &r->limit);
	gp = get_duration(c, m, "per", S(1), S(7 * 86400), &r->per_ns);
	if (gl == GOT_NONE)
		report(c, m, "missing 'limit': the units the provider allows per window");
	if (gp == GOT_NONE)
		report(c, m, "missing 'per': the window the provider states, such as 1m");
	r->set = gl == GOT_OK && gp == GOT_OK;
}

static void load_budget_limits(struct ctx *c, const struct ynode *budget, struct bl_cfg_budget *b)
{
	static const char *const keys[] = {"requests", "tokens", "input_tokens", "output_tokens",
					   "concurrent"};
	const struct ynode *raw = lookup(budget, "limits");
	size_t mark = path_push(c, "limits");
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	bool any = false;

	for (int d = 0; d < BL_CFG_DIM_COUNT; d++) {
		const struct ynode *v = lookup(m, dim_names[d]);
		size_t dmark;

		if (!v || is_null(v))
			continue;
		any = true;
		dmark = path_push(c, dim_names[d]);
		load_rate(c, v, &b->limits[d]);
		path_pop(c, dmark);
	}
	if (get_u32(c, m, "concurrent", 0, 1000000, &b->concurrent) != GOT_NONE)
		any = true;
	/* A misspelt dimension was reported as such: that is the problem to fix. */
	for (size_t i = 0; i < map_size(m) && !any; i++) {
		const struct ynode *k = key_scalar(map_key(m, i));
		bool known = false;

		for (size_t j = 0; k && j < NELEMS(keys); j++)
			known = known || scalar_is(k, keys[j]);
		any = !known;
	}
	if (!any && !(raw && !is_null(raw) && !m))
		report(c, m ? m : (raw ? raw : budget),
		       "a budget needs at least one limit: requests, tokens, input_tokens, "
		       "output_tokens ({limit: N, per: 1m}) or concurrent");
	path_pop(c, mark);
}

static void load_tenants(struct ctx *c, const struct ynode *raw, struct bl_cfg_budget *b)
{
	static const char *const keys[] = {"weight"};
	const struct ynode *m = as_map(c, raw, "a map of tenant names to {weight: N}");
	size_t n = map_size(m);

	if (!n)
		return;
	b->tenants = calloc(n, sizeof *b->tenants);
	if (!b->tenants) {
		c->err = BL_ENOMEM;
		return;
	}
	b->n_tenants = n;
	check_duplicates(c, m, "tenant");
	for (size_t i = 0; i < n && !stopped(c); i++) {
		const struct ynode *k = map_key(m, i), *ks = key_scalar(k);
		struct bl_cfg_tenant *t = &b->tenants[i];
		size_t mark;

		t->weight = 1;
		if (!check_name(c, k, "tenant"))
			continue;
		t->name = dup_n(ks->text, ks->len);
		if (!t->name) {
			c->err = BL_ENOMEM;
			return;
		}
		mark = path_push(c, t->name);
		get_u32(c, section(c, map_value(m, i), keys, NELEMS(keys)), "weight", 1, 1000,
			&t->weight);
		path_pop(c, mark);
	}
}

static void load_budget(struct ctx *c, const struct ynode *raw, struct bl_cfg_budget *b)
{
	static const char *const keys[] = {"limits",    "target_utilization", "burst",
					   "lease_ttl", "max_queue",          "adaptive",
					   "tenants"};
	static const char *const adaptive_keys[] = {"decrease", "increase", "period"};
	const struct ynode *m = as_map(c, raw, "a map of budget settings");
	const struct ynode *adaptive, *v;
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
	else if (raw && !is_null(raw))
		return;
	load_budget_limits(c, m ? m : raw, b);
	if (get_double(c, m, "target_utilization", 0.85, 0.95, &b->target_utilization) == GOT_BAD)
		target_ok = false;
	b->burst = 1.0 - b->target_utilization < 0.05 ? 1.0 - b->target_utilization : 0.05;
	v = lookup(m, "burst");
	if (v && !is_null(v)) {
		double hi = 1.0 - b->target_utilization, burst;

		mark = path_push(c, "burst");
		/* Against the headroom only when target_utilization itself is valid. */
		if (read_double(c, v, 0.0, 1.0, &burst) && target_ok) {
			if (burst > hi + SHARE_EPSILON)
				report(c, v, "%s is outside 0..%g (1 - target_utilization: the "
					     "burst may only spend the headroom)",
				       deref(v)->text, hi);
			else
				b->burst = burst < hi ? burst : hi;
		}
		path_pop(c, mark);
	}
	get_duration(c, m, "lease_ttl", S(1), S(86400), &b->lease_ttl_ns);
	get_u32(c, m, "max_queue", 0, 1000000, &b->max_queue);
	mark = path_push(c, "adaptive");
	adaptive = section(c, lookup(m, "adaptive"), adaptive_keys, NELEMS(adaptive_keys));
	get_double(c, adaptive, "decrease", 0.1, 0.99, &b->adaptive_decrease);
	get_double(c, adaptive, "increase", 0.001, 1.0, &b->adaptive_increase);
	get_duration(c, adaptive, "period", MS(100), S(3600), &b->adaptive_period_ns);
	path_pop(c, mark);
	mark = path_push(c, "tenants");
	load_tenants(c, lookup(m, "tenants"), b);
	path_pop(c, mark);
}

static void load_budgets(struct ctx *c, const struct ynode *raw)
{
	const struct ynode *m = as_map(c, raw, "a map of budget names to budget settings");
	struct bl_config *cfg = c->cfg;
	size_t n = map_size(m);

	c->budgets = m;
	if (!n)
		return;
	cfg->budgets = calloc(n, sizeof *cfg->budgets);
	if (!cfg->budgets) {
		c->err = BL_ENOMEM;
		return;
	}
	cfg->n_budgets = n;
	check_duplicates(c, m, "budget");
	for (size_t i = 0; i < n && !stopped(c); i++) {
		const struct ynode *k = map_key(m, i), *ks = key_scalar(k);
		struct bl_cfg_budget *b = &cfg->budgets[i];
		size_t mark;

		if (!ks) {
			check_name(c, k, "budget");
			continue;
		}
		b->name = dup_n(ks->text, ks->len);
		if (!b->name) {
			c->err = BL_ENOMEM;
			return;
		}
		mark = path_push_n(c, ks->text, ks->len);
		check_name(c, k, "budget");
		load_budget(c, map_value(m, i), b);
		path_pop(c, mark);
	}
}

/* Checks that a reference names a configured budget. */
static void check_budget_ref(struct ctx *c, const struct ynode *at, const char *name)
{
	char shown[SHOW_CAP];
	const char *cands[16] = {0};
	size_t n = 0;
	const char *hint;

	if (lookup(c->budgets, name))
		return;
	for (size_t i = 0; i < map_size(c->budgets) && n < NELEMS(cands); i++) {
		const struct ynode *k = key_scalar(map_key(c->budgets, i));

		if (k && strlen(k->text) == k->len)
			cands[n++] = k->text;
	}
	show(shown, sizeof shown, name, strlen(name));
	hint = suggest(name, strlen(name), cands, n);
	if (hint)
		report(c, at, "budget '%s' is not configured; did you mean '%s'?", shown, hint);
	else if (n)
		report(c, at, "budget '%s' is not configured under budgets", shown);
	else
		report(c, at, "budget '%s' is not configured: there are no budgets", shown);
}

static void load_backend(struct ctx *c, const struct ynode *raw, struct bl_cfg_backend *be)
{
	static const char *const keys[] = {"name", "url", "weight", "budget", "metrics_url"};
	const struct ynode *m = as_map(c, raw, "a map such as {name: a, url: \"https://...\"}");
	const struct ynode *v;
	size_t mark;

	be->weight = 1;
	if (!m) {
		if (!raw || is_null(raw))
			report(c, raw, "expected a backend such as {name: a, url: \"https://...\"}, "
				       "got nothing");
		return;
	}
	check_keys(c, m, keys, NELEMS(keys));
	v = lookup(m, "name");
	if (!v || is_null(v)) {
		report(c, m, "missing 'name'");
	} else {
		mark = path_push(c, "name");
		if (check_name(c, v, "backend")) {
			be->name = dup_n(deref(v)->text, deref(v)->len);
			if (!be->name)
				c->err = BL_ENOMEM;
		}
		path_pop(c, mark);
	}
	v = lookup(m, "url");
	if (!v || is_null(v)) {
		report(c, m, "missing 'url': where agents send calls for this backend");
	} else {
		mark = path_push(c, "url");
		read_url(c, v, &be->url);
		path_pop(c, mark);
	}
	get_u32(c, m, "weight", 1, 10000, &be->weight);
	if (get_string(c, m, "budget", "a budget name", &be->budget) == GOT_OK) {
		mark = path_push(c, "budget");
		check_budget_ref(c, lookup(m, "budget"), be->budget);
		path_pop(c, mark);
	}
	v = lookup(m, "metrics_url");
	if (v && !is_null(v)) {
		mark = path_push(c, "metrics_url");
		read_url(c, v, &be->metrics_url);
		path_pop(c, mark);
	}
}

/* Backends are a list: names must still be unique within the pool. */
static void check_backend_names(struct ctx *c, const struct bl_cfg_pool *p, const struct ynode *seq)
{
	for (size_t i = 1; i < p->n_backends && !stopped(c); i++) {
		if (!p->backends[i].name)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct ynode *first, *item;
			size_t mark;

			if (!p->backends[j].name || strcmp(p->backends[i].name, p->backends[j].name))
				continue;
			first = deref(seq->kids[j]);
			item = deref(seq->kids[i]);
			mark = path_push_index(c, i);
			path_push(c, "name");
			report(c, where(item, "name"),
			       "duplicate backend '%s'; the first is backends[%zu] at line %d",
			       p->backends[i].name, j, where(first, "name")->line);
			path_pop(c, mark);
			break;
		}
	}
}

static void load_breaker(struct ctx *c, const struct ynode *raw, struct bl_cfg_breaker *br)
{
	static const char *const keys[] = {"window",       "min_calls",
					   "failure_rate", "slow_call",
					   "slow_rate",    "consecutive_failures",
					   "open_for",     "max_open_for",
					   "half_open_probes", "rate_limited_trips"};
	static const char *const window_keys[] = {"count", "time"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct ynode *w;
	enum got gc = GOT_NONE, gt = GOT_NONE, gmax;
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

	mark = path_push(c, "window");
	w = lookup(m, "window");
	if (w && !is_null(w)) {
		const struct ynode *wm = section(c, w, window_keys, NELEMS(window_keys));

		if (wm) {
			uint32_t count = br->window_count;
			int64_t span = 0;

			gc = get_u32(c, wm, "count", 1, 100000, &count);
			gt = get_duration(c, wm, "time", S(1), S(3600), &span);
			if (gc != GOT_NONE && gt != GOT_NONE) {
				report(c, wm, "give either count (outcomes kept) or time (span "
					      "kept), not both");
			} else if (gc == GOT_NONE && gt == GOT_NONE) {
				report(c, wm, "needs count (such as {count: 50}) or time (such as "
					      "{time: 60s})");
			} else if (gt == GOT_OK) {
				br->window_is_time = true;
				br->window_ns = span;
			} else if (gc == GOT_OK) {
				br->window_count = count;
			}
		}
	}
	path_pop(c, mark);
	if (get_u32(c, m, "min_calls", 1, 100000, &br->min_calls) == GOT_OK && !br->window_is_time &&
	    gt == GOT_NONE && br->min_calls > br->window_count) {
		mark = path_push(c, "min_calls");
		report(c, where(m, "min_calls"),
		       "%u exceeds the window of %u calls, so the breaker could never trip",
		       br->min_calls, br->window_count);
		path_pop(c, mark);
	}
	get_double(c, m, "failure_rate", 0.0, 1.0, &br->failure_rate);
	get_duration(c, m, "slow_call", MS(1), S(3600), &br->slow_call_ns);
	get_double(c, m, "slow_rate", 0.0, 1.0, &br->slow_rate);
	get_u32(c, m, "consecutive_failures", 0, 100000, &br->consecutive_failures);
	get_duration(c, m, "open_for", MS(100), S(3600), &br->open_for_ns);
	gmax = get_duration(c, m, "max_open_for", MS(100), S(86400), &br->max_open_for_ns);
	if (gmax == GOT_NONE && br->max_open_for_ns < br->open_for_ns)
		br->max_open_for_ns = br->open_for_ns;
	if (gmax == GOT_OK && br->max_open_for_ns < br->open_for_ns) {
		char a[32], b[32];

		bl_format_duration(br->max_open_for_ns, a, sizeof a);
		bl_format_duration(br->open_for_ns, b, sizeof b);
		mark = path_push(c, "max_open_for");
		report(c, where(m, "max_open_for"), "%s is shorter than open_for (%s); it must be "
						    "at least as long", a, b);
		path_pop(c, mark);
	}
	get_u32(c, m, "half_open_probes", 1, 1000, &br->half_open_probes);
	get_bool(c, m, "rate_limited_trips", &br->rate_limited_trips);
}

static void load_pool(struct ctx *c, const struct ynode *raw, struct bl_cfg_pool *p)
{
	static const char *const keys[] = {"strategy",    "backends",   "breaker",
					   "max_ejected", "slow_start", "ewma_decay",
					   "metrics_interval"};
	const struct ynode *m = as_map(c, raw, "a map of pool settings");
	const struct ynode *v, *seq;
	int strategy;
	size_t mark;

	p->strategy = BL_STRATEGY_PEAK_EWMA;
	p->max_ejected = 0.5;
	p->slow_start_ns = 0;
	p->ewma_decay_ns = S(10);
	p->metrics_interval_ns = S(5);
	if (m)
		check_keys(c, m, keys, NELEMS(keys));
	else if (raw && !is_null(raw))
		return;
	if (get_enum(c, m, "strategy", strategy_names, NELEMS(strategy_names), &strategy) == GOT_OK)
		p->strategy = (enum bl_cfg_strategy)strategy;

	mark = path_push(c, "backends");
	v = lookup(m, "backends");
	seq = as_seq(c, v, "a list of backends such as [{name: a, url: \"https://...\"}]");
	if (!seq && (!v || is_null(v)))
		report(c, v ? v : raw, "a pool needs at least one backend, such as "
				      "backends: [{name: a, url: \"https://...\"}]");
	else if (seq && seq->n_kids == 0)
		report(c, seq, "a pool needs at least one backend; the list is empty");
	if (seq && seq->n_kids) {
		p->backends = calloc(seq->n_kids, sizeof *p->backends);
		if (!p->backends) {
			c->err = BL_ENOMEM;
			path_pop(c, mark);
			return;
		}
		p->n_backends = seq->n_kids;
		for (size_t i = 0; i < seq->n_kids && !stopped(c); i++) {
			size_t imark = path_push_index(c, i);

			load_backend(c, seq->kids[i], &p->backends[i]);
			path_pop(c, imark);
		}
		check_backend_names(c, p, seq);
	}
	path_pop(c, mark);

	mark = path_push(c, "breaker");
	load_breaker(c, lookup(m, "breaker"), &p->breaker);
	path_pop(c, mark);
	get_double(c, m, "max_ejected", 0.0, 1.0, &p->max_ejected);
	get_duration(c, m, "slow_start", 0, S(3600), &p->slow_start_ns);
	get_duration(c, m, "ewma_decay", MS(100), S(3600), &p->ewma_decay_ns);
	get_duration(c, m, "metrics_interval", MS(100), S(3600), &p->metrics_interval_ns);
}

static void load_pools(struct ctx *c, const struct ynode *raw)
{
	const struct ynode *m = as_map(c, raw, "a map of pool names to pool settings");
	struct bl_config *cfg = c->cfg;
	size_t n = map_size(m);

	if (!n)
		return;
	cfg->pools = calloc(n, sizeof *cfg->pools);
	if (!cfg->pools) {
		c->err = BL_ENOMEM;
		return;
	}
	cfg->n_pools = n;
	check_duplicates(c, m, "pool");
	for (size_t i = 0; i < n && !stopped(c); i++) {
		const struct ynode *k = map_key(m, i), *ks = key_scalar(k);
		struct bl_cfg_pool *p = &cfg->pools[i];
		size_t mark;

		if (!ks) {
			check_name(c, k, "pool");
			continue;
		}
		p->name = dup_n(ks->text, ks->len);
		if (!p->name) {
			c->err = BL_ENOMEM;
			return;
		}
		mark = path_push_n(c, ks->text, ks->len);
		check_name(c, k, "pool");
		load_pool(c, map_value(m, i), p);
		path_pop(c, mark);
	}
}

/* low and high of a band such as watermarks or a CPU target: 0 < low < high <= 1. */
static void load_band(struct ctx *c, const struct ynode *raw, double *low, double *high)
{
	static const char *const keys[] = {"low", "high"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	enum got gl, gh;

	gl = get_double(c, m, "low", 0.0, 1.0, low);
	gh = get_double(c, m, "high", 0.0, 1.0, high);
	if (gl != GOT_BAD && gh != GOT_BAD && *low >= *high) {
		size_t mark = path_push(c, gl == GOT_OK ? "low" : "high");

		report(c, where(m, gl == GOT_OK ? "low" : "high"),
		       "low (%g) must be below high (%g)", *low, *high);
		path_pop(c, mark);
	}
}

static void load_memory(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"capacity", "safety_buffer", "watermarks", "lease_ttl",
					   "max_queue"};
	struct bl_cfg_memory *mem = &c->cfg->memory;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct ynode *v;
	size_t mark;

	if (!m)
		return;
	mem->configured = true;
	v = lookup(m, "capacity");
	if (v && !is_null(v)) {
		const struct ynode *n = deref(v);

		mark = path_push(c, "capacity");
		if (n && n->kind == Y_SCALAR && scalar_is(n, "auto")) {
			mem->capacity_auto = true;
		} else if (read_size(c, v, MIB(1), UINT64_MAX, &mem->capacity)) {
			mem->capacity_auto = false;
		}
		path_pop(c, mark);
	}
	get_double(c, m, "safety_buffer", 0.0, 0.9, &mem->safety_buffer);
	get_duration(c, m, "lease_ttl", S(1), S(86400), &mem->lease_ttl_ns);
	get_u32(c, m, "max_queue", 0, 1000000, &mem->max_queue);
	mark = path_push(c, "watermarks");
	load_band(c, lookup(m, "watermarks"), &mem->low, &mem->high);
	path_pop(c, mark);
}

static void load_actuator(struct ctx *c, const struct ynode *raw, struct bl_cfg_autoscaler *a)
{
	static const char *const keys[] = {"kind",       "command",     "grace",   "env",
					   "cwd",        "namespace",   "deployment", "statefulset",
					   "api_url",    "token_file",  "ca_file"};
	static const char *const kinds[] = {"local", "exec", "kubernetes"};
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct ynode *v, *seq;
	int kind;
	enum got gk;
	size_t mark;

	if (!m)
		return;
	gk = get_enum(c, m, "kind", kinds, NELEMS(kinds), &kind);
	if (gk == GOT_NONE)
		report(c, m, "missing 'kind': one of local, exec, kubernetes");
	if (gk != GOT_OK)
		return;
	a->actuator = (enum bl_cfg_actuator)(kind + 1);
	get_duration(c, m, "grace", 0, S(3600), &a->grace_ns);

	v = lookup(m, "command");
	mark = path_push(c, "command");
	if (a->actuator == BL_ACTUATOR_KUBERNETES) {
		if (v && !is_null(v))
			report(c, v, "is only used by kind local or exec; kubernetes scales "
				     "a deployment");
	} else {
		seq = as_seq(c, v, "a list of strings, such as [\"python3\", \"agent.py\"]");
		if (!seq && (!v || is_null(v)))
			report(c, v ? v : m, "kind %s needs a command, such as "
					     "[\"python3\", \"agent.py\"]",
			       actuator_names[a->actuator]);
		else if (seq && seq->n_kids == 0)
			report(c, seq, "must not be empty: the program and its arguments");
		if (seq && seq->n_kids) {
			a->command = calloc(seq->n_kids + 1, sizeof *a->command);
			if (!a->command) {
				c->err = BL_ENOMEM;
				path_pop(c, mark);
				return;
			}
			a->n_command = seq->n_kids;
			for (size_t i = 0; i < seq->n_kids; i++) {
				size_t imark = path_push_index(c, i);

				read_string(c, seq->kids[i], "a string", &a->command[i]);
				path_pop(c, imark);
			}
		}
	}
	path_pop(c, mark);

	/* env: extra variables for the command (local and exec), as a map. */
	v = lookup(m, "env");
	if (v && !is_null(v)) {
		const struct ynode *em;

		mark = path_push(c, "env");
		if (a->actuator == BL_ACTUATOR_KUBERNETES) {
			report(c, v, "is only used by kind local or exec");
		} else if ((em = as_map(c, v, "a map of NAME: value, such as {LOG_LEVEL: info}"))) {
			size_t n = map_size(em);

			a->env = calloc(n + 1, sizeof *a->env);
			if (!a->env) {
				c->err = BL_ENOMEM;
				path_pop(c, mark);
				return;
			}
			for (size_t i = 0; i < n; i++) {
				const struct ynode *k = key_scalar(map_key(em, i));
				const struct ynode *val = deref(map_value(em, i));
				bool name_ok = k && k->len > 0 && strcspn(k->text, "=") == k->len &&
					       !(k->text[0] >= '0' && k->text[0] <= '9');

				if (!name_ok) {
					report(c, map_key(em, i), "'%s' is not an environment variable "
								  "name: letters, digits and '_', not "
								  "starting with a digit, no '='",
					       k ? k->text : "?");
					continue;
				}
				if (!val || val->kind != Y_SCALAR) {
					report(c, map_value(em, i), "%s: expected a string value", k->text);
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
		path_pop(c, mark);
	}
	if (get_string(c, m, "cwd", "a directory", &a->cwd) == GOT_OK &&
	    a->actuator == BL_ACTUATOR_KUBERNETES) {
		mark = path_push(c, "cwd");
		report(c, where(m, "cwd"), "is only used by kind local or exec");
		path_pop(c, mark);
	}

	if (a->actuator != BL_ACTUATOR_KUBERNETES) {
		static const char *const k8s_keys[] = {"namespace", "deployment", "statefulset",
						       "api_url",   "token_file", "ca_file"};

		for (size_t i = 0; i < NELEMS(k8s_keys); i++) {
			v = lookup(m, k8s_keys[i]);
			if (v && !is_null(v)) {
				mark = path_push(c, k8s_keys[i]);
				report(c, v, "is only used by kind kubernetes");
				path_pop(c, mark);
			}
		}
		return;
	}
	get_string(c, m, "api_url", "the Kubernetes API's URL", &a->k8s_api_url);
	get_string(c, m, "token_file", "a file holding a bearer token", &a->k8s_token_file);
	get_string(c, m, "ca_file", "a PEM file of CA certificates", &a->k8s_ca_file);
	if (a->k8s_api_url && strncmp(a->k8s_api_url, "https://", 8) != 0 &&
	    strncmp(a->k8s_api_url, "http://", 7) != 0) {
		mark = path_push(c, "api_url");
		report(c, where(m, "api_url"), "'%s' is not an http:// or https:// URL",
		       a->k8s_api_url);
		path_pop(c, mark);
	}
	if (get_string(c, m, "namespace", "a Kubernetes namespace", &a->k8s_namespace) == GOT_OK &&
	    !bl_cfg_k8s_name_ok(a->k8s_namespace, 63, false)) {
		mark = path_push(c, "namespace");
		report(c, where(m, "namespace"), "'%s' is not a Kubernetes namespace: 1..63 "
						 "lowercase letters, digits or '-', starting and "
						 "ending with a letter or digit",
		       a->k8s_namespace);
		path_pop(c, mark);
	}
	if (lookup(m, "statefulset") && !is_null(lookup(m, "statefulset"))) {
		if (lookup(m, "deployment") && !is_null(lookup(m, "deployment"))) {
			mark = path_push(c, "statefulset");
			report(c, where(m, "statefulset"),
			       "give 'deployment' or 'statefulset', not both");
			path_pop(c, mark);
			return;
		}
		a->k8s_statefulset = true;
	}
	switch (get_string(c, m, a->k8s_statefulset ? "statefulset" : "deployment",
			   "a Kubernetes object name", &a->k8s_deployment)) {
	case GOT_NONE:
		report(c, m, "kind kubernetes needs 'deployment' (or 'statefulset'): the name of "
			     "the object to scale");
		break;
	case GOT_OK:
		if (!bl_cfg_k8s_name_ok(a->k8s_deployment, 253, true)) {
			mark = path_push(c, a->k8s_statefulset ? "statefulset" : "deployment");
			report(c, where(m, "deployment"),
			       "'%s' is not a Kubernetes name: 1..253 lowercase letters, digits, "
			       "'-' or '.', starting and ending with a letter or digit",
			       a->k8s_deployment);
			path_pop(c, mark);
		}
		break;
	case GOT_BAD:
		break;
	}
}

static void load_autoscaler(struct ctx *c, const struct ynode *raw)
{
	static const char *const keys[] = {"min_replicas",  "max_replicas", "interval",
					   "targets",       "panic",        "stable_window",
					   "stabilization", "budget",       "actuator"};
	static const char *const target_keys[] = {"cpu", "memory", "inflight_per_replica",
						  "queue_per_replica"};
	static const char *const panic_keys[] = {"window", "threshold"};
	static const char *const stab_keys[] = {"up", "down"};
	struct bl_cfg_autoscaler *a = &c->cfg->autoscaler;
	const struct ynode *m = section(c, raw, keys, NELEMS(keys));
	const struct ynode *t, *sub;
	enum got gmin, gmax, gpanic;
	size_t mark, tmark;

	if (!m)
		return;
	a->configured = true;
	a->cpu.set = true;
	a->memory.set = true;
	gmin = get_u32(c, m, "min_replicas", 0, 10000, &a->min_replicas);
	gmax = get_u32(c, m, "max_replicas", 1, 10000, &a->max_replicas);
	if (gmin != GOT_BAD && gmax != GOT_BAD && a->min_replicas > a->max_replicas) {
		const char *key = gmin == GOT_OK ? "min_replicas" : "max_replicas";

		mark = path_push(c, key);
		report(c, where(m, key), "min_replicas (%u) must not exceed max_replicas (%u)",
		       a->min_replicas, a->max_replicas);
		path_pop(c, mark);
	}
	get_duration(c, m, "interval", S(1), S(3600), &a->interval_ns);

	tmark = path_push(c, "targets");
	t = section(c, lookup(m, "targets"), target_keys, NELEMS(target_keys));
	mark = path_push(c, "cpu");
	load_band(c, lookup(t, "cpu"), &a->cpu.low, &a->cpu.high);
	path_pop(c, mark);
	mark = path_push(c, "memory");
	load_band(c, lookup(t, "memory"), &a->memory.low, &a->memory.high);
	path_pop(c, mark);
	get_double(c, t, "inflight_per_replica", 0.0, 1e6, &a->inflight_per_replica);
	get_double(c, t, "queue_per_replica", 0.0, 1e6, &a->queue_per_replica);
	path_pop(c, tmark);

	get_duration(c, m, "stable_window", S(1), S(3600), &a->stable_window_ns);
	mark = path_push(c, "panic");
	sub = section(c, lookup(m, "panic"), panic_keys, NELEMS(panic_keys));
	gpanic = get_duration(c, sub, "window", S(1), S(3600), &a->panic_window_ns);
	get_double(c, sub, "threshold", 1.0, 100.0, &a->panic_threshold);
	if (gpanic != GOT_BAD && a->panic_window_ns > a->stable_window_ns) {
		char pw[32], sw[32];

		bl_format_duration(a->panic_window_ns, pw, sizeof pw);
		bl_format_duration(a->stable_window_ns, sw, sizeof sw);
		tmark = path_push(c, "window");
		report(c, sub ? where(sub, "window") : m,
		       "%s is longer than stable_window (%s); the panic window must be the "
		       "shorter one", pw, sw);
		path_pop(c, tmark);
	}
	path_pop(c, mark);

	mark = path_push(c, "stabilization");
	sub = section(c, lookup(m, "stabilization"), stab_keys, NELEMS(stab_keys));
	get_duration(c, sub, "up", 0, S(3600), &a->scale_up_stabilization_ns);
	get_duration(c, sub, "down", 0, S(86400), &a->scale_down_stabilization_ns);
	path_pop(c, mark);

	if (get_string(c, m, "budget", "a budget name", &a->budget) == GOT_OK) {
		mark = path_push(c, "budget");
		check_budget_ref(c, lookup(m, "budget"), a->budget);
		path_pop(c, mark);
	}
	mark = path_push(c, "actuator");
	load_actuator(c, lookup(m, "actuator"), a);
	path_pop(c, mark);
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

static void load_root(struct ctx *c, const struct ynode *root)
{
	static const char *const keys[] = {"listen", "state_dir", "log",    "auth",   "limits",
					   "snapshot", "budgets", "pools",  "memory", "autoscaler"};
	static const char *const auth_keys[] = {"token_file"};
	static const char *const snapshot_keys[] = {"interval"};
	const struct ynode *m = deref(root);
	struct bl_config *cfg = c->cfg;
	size_t mark;

	if (!m || is_null(m)) {
		report_at(c, root ? root->line : 1, root ? root->column : 1,
			  "the document is empty; expected a map of settings such as "
			  "listen: 127.0.0.1:7070");
		return;
	}
	if (m->kind != Y_MAP) {
		report_type(c, root, "a map of settings (listen, state_dir, log, auth, limits, "
				     "snapshot, budgets, pools, memory, autoscaler) at the top level");
		return;
	}
	check_keys(c, m, keys, NELEMS(keys));
	/* Budgets first: pools and the autoscaler refer to them. */
	mark = path_push(c, "budgets");
	load_budgets(c, lookup(m, "budgets"));
	path_pop(c, mark);
	load_listen(c, m);
	get_string(c, m, "state_dir", "a directory path", &cfg->state_dir);
	mark = path_push(c, "log");
	load_log(c, lookup(m, "log"));
	path_pop(c, mark);
	mark = path_push(c, "auth");
	get_string(c, section(c, lookup(m, "auth"), auth_keys, NELEMS(auth_keys)), "token_file",
		   "the path of a file holding the bearer token", &cfg->auth_token_file);
	path_pop(c, mark);
	mark = path_push(c, "limits");
	load_limits(c, lookup(m, "limits"));
	path_pop(c, mark);
	mark = path_push(c, "snapshot");
	get_duration(c, section(c, lookup(m, "snapshot"), snapshot_keys, NELEMS(snapshot_keys)),
		     "interval", MS(100), S(3600), &cfg->snapshot_interval_ns);
	path_pop(c, mark);
	mark = path_push(c, "pools");
	load_pools(c, lookup(m, "pools"));
	path_pop(c, mark);
	mark = path_push(c, "memory");
	load_memory(c, lookup(m, "memory"));
	path_pop(c, mark);
	mark = path_push(c, "autoscaler");
	load_autoscaler(c, lookup(m, "autoscaler"));
	path_pop(c, mark);
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

int bl_config_load_string(const char *text, size_t len, const char *name,
			  struct bl_config **out, struct bl_diags *diags)
{
	struct bl_diags local = {0};
	struct ctx c = {.file = name ? name : "<string>"};
	struct ydoc doc = {0};
	struct bl_config *cfg;
	size_t base;
	int err;

	c.diags = diags ? diags : &local;
	base = c.diags->n;
	cfg = calloc(1, sizeof *cfg);
	if (!cfg) {
		err = BL_ENOMEM;
		goto out;
	}
	c.cfg = cfg;
	if (set_defaults(cfg) || !(cfg->source = dup_s(c.file))) {
		err = BL_ENOMEM;
		goto out_cfg;
	}
	if (ydoc_build(&c, text, len, &doc))
		load_root(&c, doc.root);
	if (c.err) {
		err = c.err;
		goto out_doc;
	}
	if (c.invalid) {
		diags_sort(c.diags, base);
		err = BL_EINVAL;
		goto out_doc;
	}
	ydoc_cleanup(&doc);
	*out = cfg;
	bl_diags_cleanup(&local);
	return 0;

out_doc:
	ydoc_cleanup(&doc);
out_cfg:
	bl_config_destroy(cfg);
out:
	if (err == BL_ENOMEM)
		diags_truncate(c.diags, base); /* what was added may be half-made */
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
