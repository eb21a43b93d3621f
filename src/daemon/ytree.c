/* The located YAML tree. See ytree.h and docs/internals/yaml-tree.md. */
#include "ytree.h"

#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/units.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_NAME_LEN 64 /* longest candidate suggest() compares */

char *bl_y_copy(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Writes len bytes of s into buf for a message: control bytes as \xNN, long
 * text cut with "...". Always NUL-terminated. */
const char *bl_y_show(char *buf, size_t cap, const char *s, size_t len)
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

void bl_ydoc_cleanup(struct bl_ydoc *doc)
{
	struct bl_ynode *n = doc->all;

	while (n) {
		struct bl_ynode *next = n->next_alloc;

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

	return s < a || s > BL_Y_MAX_EXPANDED_NODES + 1 ? BL_Y_MAX_EXPANDED_NODES + 1 : s;
}


__attribute__((format(printf, 4, 0)))
static void vreport_at(struct bl_yctx *c, int line, int column, const char *fmt, va_list ap)
{
	c->invalid = true;
	if (c->err || c->n_reported > BL_Y_MAX_DIAGS)
		return;
	if (c->n_reported++ == BL_Y_MAX_DIAGS) {
		if (bl_diags_add(c->diags, c->file, line, column, "",
				 "too many problems; stopping after %d", BL_Y_MAX_DIAGS))
			c->err = BL_ENOMEM;
		return;
	}
	if (bl_diags_vadd(c->diags, c->file, line, column, c->path, fmt, ap))
		c->err = BL_ENOMEM;
}

/* Reports a problem at node n (or with no location when n is NULL) under the current path. */
__attribute__((format(printf, 3, 4)))
void bl_y_report(struct bl_yctx *c, const struct bl_ynode *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport_at(c, n ? n->line : 0, n ? n->column : 0, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 4, 5)))
void bl_y_report_at(struct bl_yctx *c, int line, int column, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport_at(c, line, column, fmt, ap);
	va_end(ap);
}

bool bl_y_stopped(const struct bl_yctx *c)
{
	return c->err != 0 || c->n_reported > BL_Y_MAX_DIAGS;
}

/* Appends ".seg" (or "seg" at the top) to the path; returns what to pop back to. */
size_t bl_y_path_push_n(struct bl_yctx *c, const char *seg, size_t len)
{
	size_t mark = c->plen;
	char shown[BL_Y_SHOW_CAP];

	bl_y_show(shown, sizeof shown, seg, len);
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

size_t bl_y_path_push(struct bl_yctx *c, const char *seg)
{
	return bl_y_path_push_n(c, seg, strlen(seg));
}

void bl_y_load_key(struct bl_yctx *c, const struct bl_ynode *map, const char *key,
		   void (*load)(struct bl_yctx *c, const struct bl_ynode *n))
{
	size_t mark = bl_y_path_push(c, key);

	load(c, bl_y_lookup(map, key));
	bl_y_path_pop(c, mark);
}

size_t bl_y_path_push_index(struct bl_yctx *c, size_t i)
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

void bl_y_path_pop(struct bl_yctx *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

/* ---- parsing: events to tree ------------------------------------------ */

static const char yaml_tag_prefix[] = "tag:yaml.org,2002:";

/* State of the parse while events arrive. */
struct builder {
	struct bl_yctx *c;              /* where problems are reported */
	const struct bl_yparse_opts *o; /* what the document is */
	struct bl_ydoc *doc;            /* the tree being built */
	const char *src;                /* the YAML text being parsed */
	size_t src_len;                 /* bytes in src */
	struct bl_ynode **stack;        /* open collections */
	size_t depth;                   /* entries in stack */
	size_t cap;                     /* allocated entries in stack */
	int line;                       /* 1-based position of the last event with a mark ... */
	int column;                     /* ... for events that carry none (empty values) */
	size_t last_end;                /* byte offset where the last event's tokens end */
	int documents;                  /* documents started */
};

static struct bl_ynode *node_new(struct builder *b, enum bl_ykind kind, const struct fy_mark *m)
{
	struct bl_ynode *n = calloc(1, sizeof *n);

	if (!n) {
		b->c->err = BL_ENOMEM;
		return NULL;
	}
	n->kind = kind;
	n->weight = 1;
	if (m && m->line >= 0) {
		b->line = m->line + 1;
		b->column = m->column + 1;
		n->pos = m->input_pos;
	}
	n->line = b->line;
	n->column = b->column;
	n->next_alloc = b->doc->all;
	b->doc->all = n;
	return n;
}

/* Hangs n under the innermost open collection, or makes it the root. */
static int node_attach(struct builder *b, struct bl_ynode *n)
{
	struct bl_ynode *p;

	if (b->depth == 0) {
		b->doc->root = n;
		return 0;
	}
	p = b->stack[b->depth - 1];
	if (p->n_kids == p->cap_kids) {
		size_t cap = p->cap_kids ? p->cap_kids * 2 : 4;
		struct bl_ynode **kids = realloc(p->kids, cap * sizeof *kids);

		if (!kids)
			return b->c->err = BL_ENOMEM;
		p->kids = kids;
		p->cap_kids = cap;
	}
	p->kids[p->n_kids++] = n;
	return 0;
}

static int stack_push(struct builder *b, struct bl_ynode *n)
{
	if (b->depth == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct bl_ynode **s = realloc(b->stack, cap * sizeof *s);

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
	if (!text || !(*name = bl_y_copy(text, len)))
		return b->c->err = BL_ENOMEM;
	return 0;
}

/* Records that name (taken over, may be NULL) names n. */
static int anchor_define(struct builder *b, char *name, const struct bl_ynode *n)
{
	struct bl_ydoc *doc = b->doc;

	if (!name)
		return 0;
	if (doc->n_anchors == doc->cap_anchors) {
		size_t cap = doc->cap_anchors ? doc->cap_anchors * 2 : 8;
		struct bl_yanchor *a = realloc(doc->anchors, cap * sizeof *a);

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
static const struct bl_ynode *anchor_find(const struct bl_ydoc *doc, const char *name, size_t len)
{
	for (size_t i = doc->n_anchors; i-- > 0;)
		if (strlen(doc->anchors[i].name) == len && memcmp(doc->anchors[i].name, name, len) == 0)
			return doc->anchors[i].node;
	return NULL;
}

/* Applies a node's tag: !!str makes a scalar a string whatever it looks like;
 * the other core tags are accepted; anything else is refused. */
static void apply_tag(struct builder *b, struct fy_token *tag, struct bl_ynode *n)
{
	static const char *const scalar_tags[] = {"int", "float", "bool", "null"};
	const char *text;
	size_t len = 0, plen = sizeof yaml_tag_prefix - 1;
	char shown[BL_Y_SHOW_CAP];

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

		if (n->kind == BL_Y_SCALAR && tl == 3 && memcmp(t, "str", 3) == 0) {
			n->plain = false;
			return;
		}
		for (size_t i = 0; n->kind == BL_Y_SCALAR && i < NELEMS(scalar_tags); i++) {
			if (strlen(scalar_tags[i]) == tl && memcmp(t, scalar_tags[i], tl) == 0) {
				n->plain = true;
				return;
			}
		}
		if ((n->kind == BL_Y_MAP && tl == 3 && memcmp(t, "map", 3) == 0) ||
		    (n->kind == BL_Y_SEQ && tl == 3 && memcmp(t, "seq", 3) == 0))
			return;
	}
	bl_y_report(b->c, n, "the tag '%s' is not supported here; remove it",
		    bl_y_show(shown, sizeof shown, text, len));
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
char *bl_y_single_quoted_decode(const char *raw, size_t n, size_t *out_len)
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

/* One line of a block scalar's body, as the decoder classifies it. */
struct bline {
	const char *text;         /* after the indentation */
	size_t len;               /* bytes in text, the line break not counted */
	bool empty;               /* no content: spaces up to the indentation only */
	bool last;                /* ends the body without a line break */
};

/* Reads the line at body[*i..n) and moves *i past its break (LF, CRLF or CR). */
static struct bline block_line(const char *body, size_t n, size_t *i, size_t indent)
{
	struct bline l = {0};
	size_t start = *i, end = start, sp = 0;

	while (end < n && body[end] != '\n' && body[end] != '\r')
		end++;
	while (start + sp < end && body[start + sp] == ' ')
		sp++;
	l.last = end == n;
	*i = end + (end + 1 < n && body[end] == '\r' && body[end + 1] == '\n' ? 2 : 1);
	l.empty = start + sp == end && sp <= indent;
	sp = sp < indent ? sp : indent;
	l.text = body + start + sp;
	l.len = end - start - sp;
	return l;
}

char *bl_y_block_scalar_decode(const char *header, size_t header_len, const char *body, size_t n,
			       int parent_indent, size_t *out_len)
{
	bool folded = header_len > 0 && header[0] == '>', any = false, prev_spaced = false;
	char chomp = 'c'; /* clip, '-' strip, '+' keep */
	size_t indent = SIZE_MAX, empties = 0, o = 0, i;
	char *out = malloc(n + 3);

	if (!out)
		return NULL;
	for (i = 1; i < 3 && i < header_len; i++) {
		if (header[i] == '-' || header[i] == '+')
			chomp = header[i];
		else if (header[i] >= '1' && header[i] <= '9')
			indent = (size_t)(parent_indent > 0 ? parent_indent : 0) +
				 (size_t)(header[i] - '0');
		else
			break;
	}
	/* Auto-detected: the indentation of the first line with content. */
	for (i = 0; indent == SIZE_MAX && i < n;) {
		size_t start = i;
		struct bline l = block_line(body, n, &i, SIZE_MAX - 1);

		if (!l.empty)
			indent = (size_t)(l.text - (body + start));
	}
	for (i = 0; i < n;) {
		struct bline l = block_line(body, n, &i, indent);
		bool spaced = l.len > 0 && (l.text[0] == ' ' || l.text[0] == '\t');

		if (l.last && l.empty)
			break; /* the next line's indentation, not a line of this scalar */
		if (l.empty) {
			empties++;
			continue;
		}
		if (!any) {
			for (; empties > 0; empties--)
				out[o++] = '\n';
		} else if (folded && !prev_spaced && !spaced) {
			/* Folding: one break is a space; n empty lines are n newlines. */
			if (empties == 0)
				out[o++] = ' ';
			for (; empties > 0; empties--)
				out[o++] = '\n';
		} else {
			/* Literal, or next to a more-indented line: breaks are kept. */
			out[o++] = '\n';
			for (; empties > 0; empties--)
				out[o++] = '\n';
		}
		memcpy(out + o, l.text, l.len);
		o += l.len;
		any = true;
		prev_spaced = spaced;
	}
	if (any && chomp != '-')
		out[o++] = '\n';
	if (chomp == '+')
		for (; empties > 0; empties--)
			out[o++] = '\n';
	out[o] = '\0';
	*out_len = o;
	return out;
}

static size_t token_end(struct fy_token *t)
{
	const struct fy_mark *m = t ? fy_token_end_mark(t) : NULL;

	return m ? m->input_pos : 0;
}

/* Where the block scalar whose content starts at `from` has its indicator
 * ('|' or '>'): the first one after the tokens before it (the key, the '-',
 * the scalar's own tag and anchor), skipping comments; SIZE_MAX when none. */
static size_t block_header(const struct builder *b, const struct fy_event *e, size_t from)
{
	size_t i = b->last_end, t;

	if ((t = token_end(e->scalar.tag)) > i)
		i = t;
	if ((t = token_end(e->scalar.anchor)) > i)
		i = t;
	for (; i < from && i < b->src_len; i++) {
		if (b->src[i] == '|' || b->src[i] == '>')
			return i;
		if (b->src[i] == '#')
			while (i + 1 < from && b->src[i + 1] != '\n' && b->src[i + 1] != '\r')
				i++;
	}
	return SIZE_MAX;
}

/* Decodes the text of scalar token v into n. Single-quoted and block scalars
 * are decoded from the source between the token's marks: libfyaml 0.7.12's
 * own decoder (fy_token_get_text) leaks on them (several '' escapes; a
 * block scalar followed by whitespace-only lines). */
static int scalar_text(struct builder *b, const struct fy_event *e, struct bl_ynode *n)
{
	struct fy_token *v = e->scalar.value;
	enum fy_scalar_style style = fy_token_scalar_style(v);
	const struct fy_mark *from = fy_token_start_mark(v), *to = fy_token_end_mark(v);
	bool marked = from && to && from->input_pos <= to->input_pos && to->input_pos <= b->src_len;
	const char *text;
	size_t len = 0;

	if (marked && style == FYSS_SINGLE_QUOTED) {
		n->text = bl_y_single_quoted_decode(b->src + from->input_pos,
						    to->input_pos - from->input_pos, &n->len);
		return n->text ? 0 : (b->c->err = BL_ENOMEM);
	}
	if (marked && (style == FYSS_LITERAL || style == FYSS_FOLDED)) {
		size_t hdr = block_header(b, e, from->input_pos);
		int parent = b->depth ? b->stack[b->depth - 1]->column - 1 : 0;

		if (hdr != SIZE_MAX) {
			n->text = bl_y_block_scalar_decode(b->src + hdr, from->input_pos - hdr,
							   b->src + from->input_pos,
							   to->input_pos - from->input_pos,
							   parent, &n->len);
			return n->text ? 0 : (b->c->err = BL_ENOMEM);
		}
	}
	text = fy_token_get_text(v, &len);
	if (!text || !(n->text = bl_y_copy(text, len)))
		return b->c->err = BL_ENOMEM;
	n->len = len;
	return 0;
}

static void refuse_properties(struct builder *b, const struct bl_ynode *n)
{
	bl_y_report(b->c, n, "anchors and tags are not supported in %ss; write the value out",
		    b->o->what);
}

static void scalar_event(struct builder *b, struct fy_event *e)
{
	struct fy_token *v = e->scalar.value;
	struct bl_ynode *n = node_new(b, BL_Y_SCALAR, v ? fy_token_start_mark(v) : NULL);

	if (!n)
		return;
	if (v) {
		if (scalar_text(b, e, n))
			return;
		n->plain = fy_token_scalar_style(v) == FYSS_PLAIN;
		/* libfyaml marks the content; point at the opening quote, right before it. */
		if ((fy_token_scalar_style(v) == FYSS_SINGLE_QUOTED ||
		     fy_token_scalar_style(v) == FYSS_DOUBLE_QUOTED) && n->column > 1)
			n->column--;
	} else {
		n->plain = true; /* an empty value: null */
		if (!(n->text = bl_y_copy("", 0))) {
			b->c->err = BL_ENOMEM;
			return;
		}
	}
	if (b->o->plain_only) {
		if (e->scalar.anchor || e->scalar.tag)
			refuse_properties(b, n);
		node_attach(b, n);
		return;
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
	struct bl_ynode *n = node_new(b, BL_Y_ALIAS, fy_event_start_mark(e));
	const char *name;
	size_t len = 0;
	char shown[BL_Y_SHOW_CAP];

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
		bl_y_report(b->c, n, "alias '*%s' refers to no anchor defined before it",
			    bl_y_show(shown, sizeof shown, name, len));
	node_attach(b, n);
}

static void collection_start(struct builder *b, struct fy_event *e, enum bl_ykind kind)
{
	struct fy_token *tag = kind == BL_Y_MAP ? e->mapping_start.tag : e->sequence_start.tag;
	struct fy_token *anchor = kind == BL_Y_MAP ? e->mapping_start.anchor : e->sequence_start.anchor;
	struct bl_ynode *n = node_new(b, kind, fy_event_start_mark(e));

	if (!n)
		return;
	if (b->o->plain_only) {
		if (tag || anchor)
			refuse_properties(b, n);
		if (node_attach(b, n) == 0)
			stack_push(b, n);
		return;
	}
	apply_tag(b, tag, n);
	if (anchor_text(b, anchor, &n->anchor) == 0 && node_attach(b, n) == 0)
		stack_push(b, n);
}

static void collection_end(struct builder *b)
{
	struct bl_ynode *n;
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
static bool syntax_errors(struct bl_yctx *c, struct fy_diag *diag)
{
	struct fy_diag_error *de;
	void *iter = NULL;
	bool any = false;

	while ((de = fy_diag_errors_iterate(diag, &iter)) != NULL) {
		const char *msg = de->msg ? de->msg : "malformed";
		char shown[BL_Y_SHOW_CAP * 2];

		if (de->type < FYET_ERROR)
			continue;
		any = true;
		/* libfyaml's collected errors are already 1-based. */
		bl_y_report_at(c, de->line, de->column, "YAML syntax error: %s",
			       bl_y_show(shown, sizeof shown, msg, strlen(msg)));
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
static bool check_text(struct bl_yctx *c, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	int line = 1, column = 1;

	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq_len(s + i, len - i);
		uint32_t cp;

		if (n == 0) {
			bl_y_report_at(c, line, column, "the file is not valid UTF-8 (byte 0x%02x); save "
							"it as UTF-8", s[i]);
			return false;
		}
		cp = utf8_decode(s + i, n);
		if (!yaml_printable(cp)) {
			bl_y_report_at(c, line, column, "control character U+%04X is not allowed in YAML; "
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

bool bl_ydoc_parse(struct bl_yctx *c, const char *text, size_t len,
		   const struct bl_yparse_opts *o, struct bl_ydoc *doc)
{
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg = {0};
	struct fy_diag *diag = NULL;
	struct fy_parser *parser = NULL;
	struct fy_event *e;
	struct builder b = {.c = c, .o = o, .doc = doc, .src = text, .src_len = len,
			    .line = 1, .column = 1};
	const struct fy_mark *end;
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

				bl_y_report_at(c, m ? m->line + 1 : b.line, m ? m->column + 1 : b.column,
					       "a second YAML document starts here; a %s is one "
					       "document", o->what);
				fy_parser_event_free(parser, e);
				goto out_parser;
			}
			break;
		case FYET_SCALAR:
			scalar_event(&b, e);
			break;
		case FYET_ALIAS:
			if (o->plain_only) {
				const struct fy_mark *m = fy_event_start_mark(e);

				bl_y_report_at(c, m ? m->line + 1 : b.line, m ? m->column + 1 : b.column,
					       "aliases are not supported in %ss; write the value out",
					       o->what);
				fy_parser_event_free(parser, e);
				goto out_parser;
			}
			alias_event(&b, e);
			break;
		case FYET_MAPPING_START:
			collection_start(&b, e, BL_Y_MAP);
			break;
		case FYET_SEQUENCE_START:
			collection_start(&b, e, BL_Y_SEQ);
			break;
		case FYET_MAPPING_END:
		case FYET_SEQUENCE_END:
			collection_end(&b);
			break;
		default:
			break;
		}
		end = fy_event_end_mark(e);
		if (end && end->input_pos > b.last_end)
			b.last_end = end->input_pos;
		fy_parser_event_free(parser, e);
	}
	if (c->err)
		goto out_parser;
	if (fy_parser_get_stream_error(parser)) {
		if (!syntax_errors(c, diag))
			bl_y_report_at(c, b.line, b.column, "YAML syntax error: the document is malformed");
		goto out_parser;
	}
	if (doc->root && doc->root->weight > BL_Y_MAX_EXPANDED_NODES) {
		bl_y_report(c, doc->root, "aliases expand the document to more than %d nodes",
			    BL_Y_MAX_EXPANDED_NODES);
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

/* ---- reading nodes ---------------------------------------------------- */

/* The node an alias stands for; NULL for an alias to nothing. */
const struct bl_ynode *bl_y_deref(const struct bl_ynode *n)
{
	return n && n->kind == BL_Y_ALIAS ? n->target : n;
}

bool bl_y_scalar_is(const struct bl_ynode *n, const char *s)
{
	return n && n->kind == BL_Y_SCALAR && strlen(s) == n->len && memcmp(n->text, s, n->len) == 0;
}

/* Null, as YAML's core schema spells it, or absent. */
bool bl_y_is_null(const struct bl_ynode *raw)
{
	const struct bl_ynode *n = bl_y_deref(raw);

	if (!n)
		return true;
	if (n->kind != BL_Y_SCALAR || !n->plain)
		return false;
	return n->len == 0 || bl_y_scalar_is(n, "~") || bl_y_scalar_is(n, "null") ||
	       bl_y_scalar_is(n, "Null") || bl_y_scalar_is(n, "NULL");
}

/* Describes what a node is, for "expected X, got Y". */
const char *bl_y_describe(const struct bl_ynode *raw, char *buf, size_t cap)
{
	const struct bl_ynode *n = bl_y_deref(raw);
	char shown[BL_Y_SHOW_CAP];

	if (bl_y_is_null(n))
		return "nothing (null)";
	if (n->kind == BL_Y_MAP)
		return "a map";
	if (n->kind == BL_Y_SEQ)
		return "a list";
	snprintf(buf, cap, "%s'%s'", n->plain ? "" : "the string ",
		 bl_y_show(shown, sizeof shown, n->text, n->len));
	return buf;
}

void bl_y_report_type(struct bl_yctx *c, const struct bl_ynode *n, const char *expected)
{
	char buf[BL_Y_SHOW_CAP + 16];

	bl_y_report(c, n, "expected %s, got %s", expected, bl_y_describe(n, buf, sizeof buf));
}

const struct bl_ynode *bl_y_as_map(struct bl_yctx *c, const struct bl_ynode *raw,
				   const char *expected)
{
	const struct bl_ynode *n = bl_y_deref(raw);

	if (bl_y_is_null(n))
		return NULL;
	if (n->kind != BL_Y_MAP) {
		bl_y_report_type(c, raw, expected);
		return NULL;
	}
	return n;
}

const struct bl_ynode *bl_y_as_seq(struct bl_yctx *c, const struct bl_ynode *raw,
				   const char *expected)
{
	const struct bl_ynode *n = bl_y_deref(raw);

	if (bl_y_is_null(n))
		return NULL;
	if (n->kind != BL_Y_SEQ) {
		bl_y_report_type(c, raw, expected);
		return NULL;
	}
	return n;
}

size_t bl_y_map_size(const struct bl_ynode *m)
{
	return m && m->kind == BL_Y_MAP ? m->n_kids / 2 : 0;
}

const struct bl_ynode *bl_y_map_key(const struct bl_ynode *m, size_t i)
{
	return m->kids[2 * i];
}

const struct bl_ynode *bl_y_map_value(const struct bl_ynode *m, size_t i)
{
	return m->kids[2 * i + 1];
}

/* The scalar text of a key, or NULL when the key is not a scalar. */
const struct bl_ynode *bl_y_key_scalar(const struct bl_ynode *k)
{
	k = bl_y_deref(k);
	return k && k->kind == BL_Y_SCALAR ? k : NULL;
}

/* The value under key in map m (first occurrence), or NULL. */
const struct bl_ynode *bl_y_lookup(const struct bl_ynode *m, const char *key)
{
	for (size_t i = 0; i < bl_y_map_size(m); i++) {
		const struct bl_ynode *k = bl_y_key_scalar(bl_y_map_key(m, i));

		if (k && bl_y_scalar_is(k, key))
			return bl_y_map_value(m, i);
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
const char *bl_y_suggest(const char *s, size_t len, const char *const *cands, size_t n)
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
const char *bl_y_join(char *buf, size_t cap, const char *const *items, size_t n)
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

static bool is_numeric(const struct bl_ynode *n)
{
	return n && n->kind == BL_Y_SCALAR && n->plain && n->len > 0 && strlen(n->text) == n->len &&
	       strspn(n->text, "0123456789+-.eE") == n->len;
}

bool bl_y_number(const struct bl_ynode *raw, double *out)
{
	const struct bl_ynode *n = bl_y_deref(raw);
	char *end;
	double d;

	if (!is_numeric(n))
		return false;
	d = strtod(n->text, &end);
	if (*end != '\0' || !isfinite(d))
		return false;
	*out = d;
	return true;
}

/* A whole number in plain decimal, within lo..hi. */
bool bl_y_read_int(struct bl_yctx *c, const struct bl_ynode *raw, int64_t lo, int64_t hi,
		   int64_t *out)
{
	const struct bl_ynode *n = bl_y_deref(raw);
	char what[80];
	uint64_t mag = 0;
	int64_t v;
	size_t i = 0;

	snprintf(what, sizeof what, "a whole number in %lld..%lld", (long long)lo, (long long)hi);
	if (!is_numeric(n)) {
		bl_y_report_type(c, raw, what);
		return false;
	}
	if (n->text[0] == '-' || n->text[0] == '+')
		i++;
	if (i == n->len || strspn(n->text + i, "0123456789") != n->len - i) {
		char *end;
		double d = strtod(n->text, &end);

		if (*end == '\0' && isfinite(d))
			bl_y_report(c, raw, "%s is not a whole number; expected %s", n->text, what);
		else
			bl_y_report_type(c, raw, what);
		return false;
	}
	for (; i < n->len; i++) {
		if (mag > ((uint64_t)INT64_MAX - 9) / 10) {
			bl_y_report(c, raw, "%s is outside %lld..%lld", n->text, (long long)lo, (long long)hi);
			return false;
		}
		mag = mag * 10 + (uint64_t)(n->text[i] - '0');
	}
	v = n->text[0] == '-' ? -(int64_t)mag : (int64_t)mag;
	if (v < lo || v > hi) {
		bl_y_report(c, raw, "%s is outside %lld..%lld", n->text, (long long)lo, (long long)hi);
		return false;
	}
	*out = v;
	return true;
}

bool bl_y_read_u32(struct bl_yctx *c, const struct bl_ynode *n, uint32_t lo, uint32_t hi,
		   uint32_t *out)
{
	int64_t v;

	if (!bl_y_read_int(c, n, lo, hi, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A plain decimal number (integer or fraction); inf and nan are refused. */
bool bl_y_read_double(struct bl_yctx *c, const struct bl_ynode *raw, double lo, double hi,
		      double *out)
{
	double d;

	if (bl_y_number(raw, &d)) {
		if (d < lo || d > hi) {
			bl_y_report(c, raw, "%s is outside %g..%g", bl_y_deref(raw)->text, lo, hi);
			return false;
		}
		*out = d;
		return true;
	}
	{
		char what[80];

		snprintf(what, sizeof what, "a number in %g..%g", lo, hi);
		bl_y_report_type(c, raw, what);
	}
	return false;
}

bool bl_y_read_bool(struct bl_yctx *c, const struct bl_ynode *raw, bool *out)
{
	const struct bl_ynode *n = bl_y_deref(raw);

	if (n && n->kind == BL_Y_SCALAR && n->plain) {
		if (bl_y_scalar_is(n, "true") || bl_y_scalar_is(n, "True") || bl_y_scalar_is(n, "TRUE")) {
			*out = true;
			return true;
		}
		if (bl_y_scalar_is(n, "false") || bl_y_scalar_is(n, "False") || bl_y_scalar_is(n, "FALSE")) {
			*out = false;
			return true;
		}
	}
	bl_y_report_type(c, raw, "true or false");
	return false;
}

/* The text of a scalar that is used as a string: not a map or list, no NUL. */
const struct bl_ynode *bl_y_string_node(struct bl_yctx *c, const struct bl_ynode *raw,
					const char *expected)
{
	const struct bl_ynode *n = bl_y_deref(raw);

	if (!n || n->kind != BL_Y_SCALAR) {
		bl_y_report_type(c, raw, expected);
		return NULL;
	}
	if (strlen(n->text) != n->len) {
		bl_y_report(c, raw, "contains a NUL character; expected %s", expected);
		return NULL;
	}
	return n;
}

bool bl_y_read_duration(struct bl_yctx *c, const struct bl_ynode *raw, int64_t lo, int64_t hi,
			int64_t *out)
{
	const struct bl_ynode *n = bl_y_string_node(c, raw, "a duration such as 250ms, 30s, 5m or 1h");
	char shown[BL_Y_SHOW_CAP], los[32], his[32];
	int64_t v;
	int err;

	if (!n)
		return false;
	err = bl_parse_duration(n->text, n->len, &v);
	bl_y_show(shown, sizeof shown, n->text, n->len);
	if (err == BL_ERANGE) {
		bl_y_report(c, raw, "'%s' is too long a duration", shown);
		return false;
	}
	if (err) {
		bl_y_report(c, raw, "'%s' is not a duration; write a number with a unit: 250ms, 30s, "
				    "5m, 1h (units ns, us, ms, s, m, h, d)", shown);
		return false;
	}
	if (v < lo || v > hi) {
		bl_format_duration(lo, los, sizeof los);
		bl_format_duration(hi, his, sizeof his);
		bl_y_report(c, raw, "%s is outside %s..%s", shown, los, his);
		return false;
	}
	*out = v;
	return true;
}

bool bl_y_read_size(struct bl_yctx *c, const struct bl_ynode *raw, uint64_t lo, uint64_t hi,
		    uint64_t *out)
{
	const struct bl_ynode *n = bl_y_string_node(c, raw, "a size such as 512KiB, 64MiB or 16GiB");
	char shown[BL_Y_SHOW_CAP], los[32], his[32];
	uint64_t v;
	int err;

	if (!n)
		return false;
	err = bl_parse_size(n->text, n->len, &v);
	bl_y_show(shown, sizeof shown, n->text, n->len);
	if (err == BL_ERANGE) {
		bl_y_report(c, raw, "'%s' is too large a size", shown);
		return false;
	}
	if (err) {
		bl_y_report(c, raw, "'%s' is not a size; write bytes or a number with a unit: "
				    "512KiB, 64MiB, 16GiB (also KB, MB, GB, TiB)", shown);
		return false;
	}
	if (v < lo || v > hi) {
		bl_format_size(lo, los, sizeof los);
		bl_format_size(hi, his, sizeof his);
		bl_y_report(c, raw, "%s is outside %s..%s", shown, los, his);
		return false;
	}
	*out = v;
	return true;
}

/* A non-empty string, copied into *out (replacing what was there). */
bool bl_y_read_string(struct bl_yctx *c, const struct bl_ynode *raw, const char *expected,
		      char **out)
{
	const struct bl_ynode *n = bl_y_string_node(c, raw, expected);
	char *s;

	if (!n)
		return false;
	if (n->len == 0) {
		bl_y_report(c, raw, "must not be empty; expected %s", expected);
		return false;
	}
	s = bl_y_copy(n->text, n->len);
	if (!s) {
		c->err = BL_ENOMEM;
		return false;
	}
	free(*out);
	*out = s;
	return true;
}

/* One of names[]; sets *out to its index. */
bool bl_y_read_enum(struct bl_yctx *c, const struct bl_ynode *raw, const char *const *names,
		    size_t n_names, int *out)
{
	const struct bl_ynode *n = bl_y_deref(raw);
	char shown[BL_Y_SHOW_CAP], list[256];
	const char *hint;

	bl_y_join(list, sizeof list, names, n_names);
	if (!n || n->kind != BL_Y_SCALAR) {
		char what[300];

		snprintf(what, sizeof what, "one of %s", list);
		bl_y_report_type(c, raw, what);
		return false;
	}
	for (size_t i = 0; i < n_names; i++) {
		if (bl_y_scalar_is(n, names[i])) {
			*out = (int)i;
			return true;
		}
	}
	bl_y_show(shown, sizeof shown, n->text, n->len);
	hint = bl_y_suggest(n->text, n->len, names, n_names);
	if (hint)
		bl_y_report(c, raw, "'%s' is not accepted; did you mean '%s'? (one of %s)", shown, hint,
			    list);
	else
		bl_y_report(c, raw, "'%s' is not accepted; expected one of %s", shown, list);
	return false;
}

/* Names of budgets, pools, backends and tenants go into URLs and metrics. */
/* ---- field getters: key lookup + path + reader ------------------------ */

#define FIELD(c, m, key, body)                                                \
	do {                                                                  \
		const struct bl_ynode *v_ = bl_y_lookup((m), (key));          \
		size_t mark_;                                                 \
		if (!v_ || bl_y_is_null(v_))                                  \
			return BL_Y_NONE;                                     \
		mark_ = bl_y_path_push((c), (key));                           \
		bool ok_ = (body);                                            \
		bl_y_path_pop((c), mark_);                                    \
		return ok_ ? BL_Y_OK : BL_Y_BAD;                              \
	} while (0)

enum bl_y_got bl_y_get_u32(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			   uint32_t lo, uint32_t hi, uint32_t *out)
{
	FIELD(c, m, key, bl_y_read_u32(c, v_, lo, hi, out));
}

enum bl_y_got bl_y_get_u64(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			   int64_t lo, int64_t hi, uint64_t *out)
{
	int64_t v = 0;

	FIELD(c, m, key, bl_y_read_int(c, v_, lo, hi, &v) && ((*out = (uint64_t)v), true));
}

enum bl_y_got bl_y_get_double(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			      double lo, double hi, double *out)
{
	FIELD(c, m, key, bl_y_read_double(c, v_, lo, hi, out));
}

enum bl_y_got bl_y_get_bool(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			    bool *out)
{
	FIELD(c, m, key, bl_y_read_bool(c, v_, out));
}

enum bl_y_got bl_y_get_duration(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
				int64_t lo, int64_t hi, int64_t *out)
{
	FIELD(c, m, key, bl_y_read_duration(c, v_, lo, hi, out));
}

enum bl_y_got bl_y_get_size(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			    uint64_t lo, uint64_t hi, uint64_t *out)
{
	FIELD(c, m, key, bl_y_read_size(c, v_, lo, hi, out));
}

enum bl_y_got bl_y_get_string(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			      const char *expected, char **out)
{
	FIELD(c, m, key, bl_y_read_string(c, v_, expected, out));
}

enum bl_y_got bl_y_get_enum(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			    const char *const *names, size_t n_names, int *out)
{
	FIELD(c, m, key, bl_y_read_enum(c, v_, names, n_names, out));
}
