/* Unit tests of the located YAML tree (src/daemon/ytree.c): block scalars
 * decoded by our own code (YAML 1.2 §8.1), checked against the spec and, where
 * libfyaml 0.7.12 gets them right and does not leak, against what its
 * fy_token_get_text returns; node locations; the scenario loader's refusal of
 * anchors, tags and aliases. Runs under ASan: a libfyaml leak fails it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libfyaml.h>

#include "ballast/error.h"
#include "ytree.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const struct bl_yparse_opts config_opts = {.what = "config"};
static const struct bl_yparse_opts scenario_opts = {.what = "scenario", .plain_only = true};

struct parsed {
	struct bl_diags diags;
	struct bl_yctx c;
	struct bl_ydoc doc;
	bool ok;
};

static void parse(struct parsed *p, const char *text, size_t len,
		  const struct bl_yparse_opts *o)
{
	memset(p, 0, sizeof *p);
	p->c.file = "t.yaml";
	p->c.diags = &p->diags;
	p->ok = bl_ydoc_parse(&p->c, text, len, o, &p->doc);
	if (!p->ok || p->c.invalid)
		bl_diags_print(&p->diags, stderr);
}

static void parsed_cleanup(struct parsed *p)
{
	bl_ydoc_cleanup(&p->doc);
	bl_diags_cleanup(&p->diags);
}

/* The value of the first block scalar: under key "a" (a[0] for a list, a.b
 * for a map), or the root itself. */
static const struct bl_ynode *value_of(const struct bl_ynode *root)
{
	const struct bl_ynode *n = root;

	if (root->kind == BL_Y_SEQ)
		return root->kids[0];
	if (root->kind == BL_Y_MAP) {
		n = bl_y_deref(bl_y_lookup(root, "a"));
		if (n->kind == BL_Y_SEQ)
			return n->kids[0];
		if (n->kind == BL_Y_MAP)
			return bl_y_lookup(n, "b");
	}
	return n;
}

static void assert_text(const struct bl_ynode *n, const char *want, size_t want_len)
{
	assert_non_null(n);
	assert_int_equal(n->kind, BL_Y_SCALAR);
	if (n->len != want_len || memcmp(n->text, want, want_len) != 0)
		fprintf(stderr, "got %zu bytes '%.*s', want %zu bytes '%.*s'\n", n->len,
			(int)n->len, n->text, want_len, (int)want_len, want);
	assert_int_equal(n->len, want_len);
	assert_memory_equal(n->text, want, want_len);
	assert_int_equal(n->text[n->len], '\0');
	assert_false(n->plain);
}

struct block_case {
	const char *yaml;
	const char *want;
	bool libfyaml_agrees; /* compared with fy_token_get_text too */
};

static const struct block_case block_cases[] = {
	/* Literal, with clip, strip and keep. */
	{"a: |\n  x\n  y\n", "x\ny\n", true},
	{"a: |-\n  x\n\n", "x", true},
	{"a: |+\n  x\n\n\n", "x\n\n\n", true},
	{"a: |\n  x\n\n\n", "x\n", true},
	{"a: |\n\n  x\n", "\nx\n", true},
	{"a: |\n  x\n\n  y\n", "x\n\ny\n", true},
	{"a: |\n  x\n    indented\n  y\n", "x\n  indented\ny\n", true},
	{"a: |\n  x", "x\n", true},  /* the end of input ends the last line */
	{"a: |-\n  x", "x", true},
	{"a: |   # a comment\n  x\n", "x\n", true},
	{"a: |\r\n  x\r\n  y\r\n", "x\ny\n", true},
	{"a: |\n  x\n\n# c\nb: 1\n", "x\n", true},
	{"a:\n  b: |\n    x\n  c: 1\n", "x\n", true},
	{"a: !!str |\n  x\n", "x\n", true},
	{"a: # | not this one\n  >\n  x\n", "x\n", true},
	{"a: |\n  x\n # not a comment of the scalar\n", "x\n", true},
	/* Folded: single breaks fold, empty lines are newlines, more-indented
	 * lines and their neighbours keep their breaks. */
	{"a: >\n  x\n  y\n\n  z\n", "x y\nz\n", true},
	{"a: >-\n  x\n  y\n", "x y", true},
	{"a: >+\n  x\n  y\n\n", "x y\n\n", true},
	{"a: >\n  x\n    more\n  y\n", "x\n  more\ny\n", true},
	{"a: >\n  x\n  \ty\n  z\n", "x\n\ty\nz\n", true},
	{"a: >\n \tx\n  y\n", "\tx\n y\n", true},
	{"- >\n x\n\n- y\n", "x\n", true},
	/* libfyaml writes "x\n\n y\nz\n\0" for this one; the spec says: */
	{"a: >\n  x\n\n\n   y\n  z\n\n", "x\n\n\n y\nz\n", false},
	/* YAML 1.2 example 8.10. */
	{">\n\n folded\n line\n\n next\n line\n   * bullet\n\n   * list\n   * lines\n\n last\n"
	 " line\n\n# Comment\n",
	 "\nfolded line\nnext line\n  * bullet\n\n  * list\n  * lines\n\nlast line\n", false},
	/* Explicit indentation: added to the enclosing block collection's. */
	{"- |2\n    x\n   y\n", "  x\n y\n", true},
	{"|1\n  x\n", " x\n", true},
	{"a: &x\n  b: |2\n     y\n", " y\n", true},
	{"a:\n- |1\n  y\n", " y\n", true},
	{"a: # c\n  |1\n   y\n", "  y\n", true},
	{"a: |-2\n    x\n", "  x", true},
	{"a: |2+\n    x\n\n", "  x\n\n", true},
	/* At the end of the input, right after the header (found by fuzz_config
	 * and fuzz_scenario: the header was read past the end). */
	{"|", "", false},
	{"a: |", "", false},
	{"a: >-", "", false},
	/* Whitespace-only lines (libfyaml leaks on some of these). */
	{"a: |\n  x\n   \n  \n", "x\n \n", false},
	{"a: |\n  x\n     ", "x\n   \n", false},
	{"a: |+\n  x\n  ", "x\n", false},
	{"a: >\n  x\n   \n  y\n", "x\n \ny\n", false},
	{"a: >\n\n  \n", "", false},
	{"a: |+\n\n  \n", "\n\n", false},
	{"a: >+\n\n  \n\n", "\n\n\n", false},
};

static void test_block_scalars(void **state)
{
	for (size_t i = 0; i < NELEMS(block_cases); i++) {
		const struct block_case *bc = &block_cases[i];
		struct parsed p;

		parse(&p, bc->yaml, strlen(bc->yaml), &config_opts);
		assert_true(p.ok);
		assert_false(p.c.invalid);
		assert_text(value_of(p.doc.root), bc->want, strlen(bc->want));
		parsed_cleanup(&p);
	}
}

/* What libfyaml's own decoder makes of the first block scalar in text. */
static char *libfyaml_block_text(const char *text, size_t *pos, size_t *len)
{
	struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET};
	struct fy_parser *parser = fy_parser_create(&cfg);
	struct fy_event *e;
	char *out = NULL;

	assert_non_null(parser);
	assert_int_equal(fy_parser_set_string(parser, text, strlen(text)), 0);
	while (!out && (e = fy_parser_parse(parser)) != NULL) {
		if (e->type == FYET_SCALAR &&
		    (fy_token_scalar_style(e->scalar.value) == FYSS_LITERAL ||
		     fy_token_scalar_style(e->scalar.value) == FYSS_FOLDED)) {
			const char *t = fy_token_get_text(e->scalar.value, len);

			out = malloc(*len + 1);
			assert_non_null(out);
			memcpy(out, t, *len);
			*pos = fy_token_start_mark(e->scalar.value)->input_pos;
		}
		fy_parser_event_free(parser, e);
	}
	fy_parser_destroy(parser);
	return out;
}

static void test_block_scalars_as_libfyaml(void **state)
{
	for (size_t i = 0; i < NELEMS(block_cases); i++) {
		const struct block_case *bc = &block_cases[i];
		const struct bl_ynode *n;
		struct parsed p;
		size_t pos = 0, len = 0;
		char *theirs;

		if (!bc->libfyaml_agrees)
			continue;
		theirs = libfyaml_block_text(bc->yaml, &pos, &len);
		assert_non_null(theirs);
		parse(&p, bc->yaml, strlen(bc->yaml), &config_opts);
		assert_true(p.ok);
		for (n = p.doc.all; n && !(n->kind == BL_Y_SCALAR && n->pos == pos); n = n->next_alloc)
			;
		assert_text(n, theirs, len);
		free(theirs);
		parsed_cleanup(&p);
	}
}

/* The input fuzz_scenario found libfyaml leaking 512 bytes on (it was
 * suppressed in tests/fuzz/lsan.supp): a folded scalar that, by libfyaml's
 * reading, runs on over whitespace-only lines to the end of the input. */
static void test_block_scalar_leak_input(void **state)
{
	char text[256], want[256];
	size_t n = 0, w = 0;
	struct parsed p;

	n += (size_t)snprintf(text + n, sizeof text - n, "  min_replicas: >\n  targets:\n\n");
	memset(text + n, ' ', 78), n += 78, text[n++] = '\n';
	memset(text + n, ' ', 27), n += 27, text[n++] = '\n';
	memset(text + n, ' ', 27), n += 27;
	text[n] = '\0';
	w += (size_t)snprintf(want + w, sizeof want - w, "targets:\n\n");
	memset(want + w, ' ', 76), w += 76, want[w++] = '\n';
	memset(want + w, ' ', 25), w += 25, want[w++] = '\n';
	memset(want + w, ' ', 25), w += 25, want[w++] = '\n';
	parse(&p, text, n, &config_opts);
	assert_true(p.ok);
	assert_text(bl_y_lookup(p.doc.root, "min_replicas"), want, w);
	parsed_cleanup(&p);
}

/* The decoder on its own, with the header and the parent's indentation given. */
static void test_block_scalar_decode(void **state)
{
	static const struct {
		const char *header, *body;
		int parent;
		const char *want;
	} cases[] = {
		{"|", "", 0, ""},
		{"|+", "", 0, ""},
		{"|+", "\n\n", 0, "\n\n"},
		{">", "  a\n  b\n", 0, "a b\n"},
		{"|3", "     a\n", 0, "  a\n"},
		{"|3", "     a\n", 2, "a\n"},
		{"|1-", "  a\n\n", 0, " a"},
		{">", "  a\n   b\n  c\n", 4, "a\n b\nc\n"},
		{"|", "  a\n b\n", 0, "a\nb\n"}, /* less indented than the first: kept whole */
	};

	for (size_t i = 0; i < NELEMS(cases); i++) {
		size_t len = 0;
		char *out = bl_y_block_scalar_decode(cases[i].header, strlen(cases[i].header),
						     cases[i].body, strlen(cases[i].body),
						     cases[i].parent, &len);

		assert_non_null(out);
		if (strcmp(out, cases[i].want) != 0)
			fprintf(stderr, "case %zu: got '%s', want '%s'\n", i, out, cases[i].want);
		assert_int_equal(len, strlen(cases[i].want));
		assert_string_equal(out, cases[i].want);
		free(out);
	}
}

static void test_single_quoted(void **state)
{
	static const char text[] = "a: 'it''s ''quoted'''\nb: 'one\n  two\n\n  three'\n";
	struct parsed p;

	parse(&p, text, strlen(text), &config_opts);
	assert_true(p.ok);
	assert_text(bl_y_lookup(p.doc.root, "a"), "it's 'quoted'", 13);
	assert_text(bl_y_lookup(p.doc.root, "b"), "one two\nthree", 13);
	parsed_cleanup(&p);
}

/* Nodes keep line, column and byte offset; a quoted scalar points at its quote. */
static void test_locations(void **state)
{
	static const char text[] = "a: 1\nb:\n  c: 'x'\n  d: |\n    y\n";
	const struct bl_ynode *b, *c, *d;
	struct parsed p;

	parse(&p, text, strlen(text), &config_opts);
	assert_true(p.ok);
	assert_int_equal(p.doc.root->kind, BL_Y_MAP);
	assert_int_equal(bl_y_map_size(p.doc.root), 2);
	b = bl_y_map_key(p.doc.root, 1);
	assert_int_equal(b->line, 2);
	assert_int_equal(b->column, 1);
	assert_int_equal(b->pos, 5);
	c = bl_y_lookup(bl_y_lookup(p.doc.root, "b"), "c");
	assert_int_equal(c->line, 3);
	assert_int_equal(c->column, 6);
	d = bl_y_lookup(bl_y_lookup(p.doc.root, "b"), "d");
	assert_int_equal(d->line, 5); /* a block scalar: where its content starts */
	assert_int_equal(d->column, 1);
	assert_int_equal(d->pos, 24);
	parsed_cleanup(&p);
}

/* Reports diagnostics of p as one string. */
static char *printed(struct parsed *p)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	bl_diags_print(&p->diags, f);
	fclose(f);
	return buf;
}

static void expect(const char *text, const struct bl_yparse_opts *o, bool ok, const char *want)
{
	struct parsed p;
	char *out;

	parse(&p, text, strlen(text), o);
	out = printed(&p);
	if (!strstr(out, want))
		fprintf(stderr, "expected '%s' in:\n%s", want, out);
	assert_non_null(strstr(out, want));
	assert_int_equal(p.ok, ok);
	assert_true(p.c.invalid);
	free(out);
	parsed_cleanup(&p);
}

static void test_problems(void **state)
{
	expect("a: &x 1\n", &scenario_opts, true,
	       "t.yaml:1:7: anchors and tags are not supported in scenarios; write the value out");
	expect("a: !!str 1\n", &scenario_opts, true, "anchors and tags are not supported");
	expect("a: 1\nb: *x\n", &scenario_opts, false,
	       "t.yaml:2:5: aliases are not supported in scenarios; write the value out");
	expect("a: 1\nb: *x\n", &config_opts, true,
	       "t.yaml:2:4: alias '*x' refers to no anchor defined before it");
	expect("a: !!bogus 1\n", &config_opts, true, "the tag 'tag:yaml.org,2002:bogus' is not "
						     "supported here; remove it");
	expect("a: 1\n---\nb: 2\n", &scenario_opts, false,
	       "t.yaml:2:1: a second YAML document starts here; a scenario is one document");
	expect("a: 1\n---\nb: 2\n", &config_opts, false, "a config is one document");
	expect("a: [1\n", &config_opts, false, "t.yaml:");
	expect("a: \x01\n", &config_opts, false, "t.yaml:1:4: control character U+0001 is not "
						 "allowed in YAML");
	expect("a: \xff\n", &config_opts, false, "t.yaml:1:4: the file is not valid UTF-8 (byte "
						 "0xff)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_scalars),
		cmocka_unit_test(test_block_scalars_as_libfyaml),
		cmocka_unit_test(test_block_scalar_leak_input),
		cmocka_unit_test(test_block_scalar_decode),
		cmocka_unit_test(test_single_quoted),
		cmocka_unit_test(test_locations),
		cmocka_unit_test(test_problems),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
