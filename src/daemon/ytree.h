/* The located YAML tree both loaders read: the daemon's config
 * (src/daemon/config.c) and the simulator's scenarios (src/sim/scenario.c).
 *
 * libfyaml's event parser turns the text into a small tree of our own in
 * which every node keeps its line, column and byte offset (libfyaml 0.7 has
 * no public way to ask a document node where it started). Scalars are
 * decoded here, not by libfyaml, where 0.7.12 leaks: single-quoted and block
 * scalars. Problems go to a struct bl_diags as "file:line:col: path: message",
 * and the readers below say what was expected and what was found.
 * See docs/internals/yaml-tree.md.
 */
#ifndef BALLAST_YTREE_H
#define BALLAST_YTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define BL_Y_MAX_EXPANDED_NODES 100000 /* nodes after alias expansion */
#define BL_Y_MAX_DIAGS 200             /* problems reported before giving up */
#define BL_Y_PATH_CAP 512              /* field paths longer than this are truncated */
#define BL_Y_SHOW_CAP 80               /* user text quoted in messages */

/* ---- the tree --------------------------------------------------------- */

enum bl_ykind { BL_Y_SCALAR, BL_Y_MAP, BL_Y_SEQ, BL_Y_ALIAS };

struct bl_ynode {
	enum bl_ykind kind;
	int line;                 /* 1-based */
	int column;               /* 1-based */
	size_t pos;               /* byte offset of the node's start in the text */
	char *text;               /* scalar: the value, NUL-terminated (may hold NULs) */
	size_t len;               /* scalar: bytes in text */
	bool plain;               /* scalar: unquoted, so null/bool/number resolution applies */
	struct bl_ynode **kids;   /* map: key, value, key, value...; seq: the items */
	size_t n_kids;            /* entries in kids */
	size_t cap_kids;          /* allocated entries in kids */
	const struct bl_ynode *target; /* alias: the anchored node, NULL when undefined */
	size_t weight;            /* nodes after alias expansion, saturating */
	char *anchor;             /* collection: its anchor until the collection ends */
	struct bl_ynode *next_alloc; /* every node of the document, for freeing */
};

struct bl_yanchor {
	char *name;                  /* anchor as written, without '&' */
	const struct bl_ynode *node; /* the node it names */
};

struct bl_ydoc {
	struct bl_ynode *root;       /* NULL for an empty document */
	struct bl_ynode *all;        /* list of every node, through next_alloc */
	struct bl_yanchor *anchors;  /* defined anchors, in document order */
	size_t n_anchors;            /* entries in anchors */
	size_t cap_anchors;          /* allocated entries in anchors */
};

/* ---- the reading context ---------------------------------------------- */

/* One load: where problems go and the field path being read. Loaders embed
 * it in their own context. */
struct bl_yctx {
	const char *file;         /* name used in diagnostics */
	struct bl_diags *diags;   /* where problems go */
	int err;                  /* BL_ENOMEM once an allocation failed */
	bool invalid;             /* at least one problem was reported */
	size_t n_reported;        /* problems reported so far */
	char path[BL_Y_PATH_CAP]; /* field path of what is being read */
	size_t plen;              /* bytes used in path */
};

/* What the document is, for the parser's messages. */
struct bl_yparse_opts {
	const char *what;         /* "config", "scenario": "a <what> is one document" */
	bool plain_only;          /* refuse anchors, tags and aliases ("not supported in <what>s") */
};

/* Parses text (len bytes, need not be NUL-terminated) into doc, which must be
 * zeroed. Checks first that the text is printable UTF-8. Returns false when the
 * document cannot be read further (not UTF-8, a syntax error, a second
 * document, an alias when o->plain_only, aliases expanding past
 * BL_Y_MAX_EXPANDED_NODES, out of memory); problems are reported to c, and
 * c->err is BL_ENOMEM when memory ran out. Other problems (a refused tag)
 * are reported and the tree is still returned. The caller frees doc with
 * bl_ydoc_cleanup whatever this returns. */
bool bl_ydoc_parse(struct bl_yctx *c, const char *text, size_t len,
		   const struct bl_yparse_opts *o, struct bl_ydoc *doc);

/* Frees every node and anchor of doc and zeroes it. */
void bl_ydoc_cleanup(struct bl_ydoc *doc);

/* Decodes the content of a single-quoted scalar (what lies between the
 * quotes, n bytes) as YAML 1.2 says. Returns a new NUL-terminated string
 * and its length in *out_len, or NULL when out of memory. */
char *bl_y_single_quoted_decode(const char *raw, size_t n, size_t *out_len);

/* Decodes a block scalar (YAML 1.2 §8.1). header[0..header_len) holds its
 * indicator, '|' or '>', then the chomping and indentation indicators in
 * either order (what follows them is not read). body[0..n) is its content,
 * from the line after the header to where the scalar ends (trailing blank
 * lines included). parent_indent is the indentation of the enclosing block
 * collection (0 at the top level), which an explicit indentation indicator
 * adds to. Returns a new NUL-terminated string and its length in *out_len,
 * or NULL when out of memory. */
char *bl_y_block_scalar_decode(const char *header, size_t header_len, const char *body, size_t n,
			       int parent_indent, size_t *out_len);

/* ---- reporting -------------------------------------------------------- */

/* Reports a problem at node n (no location when n is NULL) under the current
 * path; after BL_Y_MAX_DIAGS problems, one "too many problems" and then none. */
void bl_y_report(struct bl_yctx *c, const struct bl_ynode *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Likewise at a line and column (1-based). */
void bl_y_report_at(struct bl_yctx *c, int line, int column, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Reports "expected <expected>, got <what n is>". */
void bl_y_report_type(struct bl_yctx *c, const struct bl_ynode *n, const char *expected);

/* True once reading should stop: out of memory, or too many problems. */
bool bl_y_stopped(const struct bl_yctx *c);

/* Appends ".seg" (or "seg" at the top; control bytes escaped) to the path.
 * Returns the mark bl_y_path_pop goes back to. */
size_t bl_y_path_push_n(struct bl_yctx *c, const char *seg, size_t len);
size_t bl_y_path_push(struct bl_yctx *c, const char *seg);

/* Appends "[i]" to the path; returns the mark to pop back to. */
size_t bl_y_path_push_index(struct bl_yctx *c, size_t i);

void bl_y_path_pop(struct bl_yctx *c, size_t mark);

/* Reads one section: pushes key on the path, calls load(c, the value of key
 * in map, or NULL when it is absent), pops. */
void bl_y_load_key(struct bl_yctx *c, const struct bl_ynode *map, const char *key,
		   void (*load)(struct bl_yctx *c, const struct bl_ynode *n));

/* Writes len bytes of s into buf (cap bytes) for a message: control bytes as
 * \xNN, long text cut with "...". Returns buf, always NUL-terminated. */
const char *bl_y_show(char *buf, size_t cap, const char *s, size_t len);

/* Writes "a, b, c" into buf (cap bytes); returns buf. */
const char *bl_y_join(char *buf, size_t cap, const char *const *items, size_t n);

/* The candidate closest to s[0..len), when it is close enough to be a
 * likely typo ("did you mean"); else NULL. */
const char *bl_y_suggest(const char *s, size_t len, const char *const *cands, size_t n);

/* A new NUL-terminated copy of s[0..n) (which may hold NULs), or NULL. */
char *bl_y_copy(const char *s, size_t n);

/* ---- reading nodes ---------------------------------------------------- */

/* The node an alias stands for; NULL for an alias to nothing. */
const struct bl_ynode *bl_y_deref(const struct bl_ynode *n);

/* True when n is a scalar whose text is s. */
bool bl_y_scalar_is(const struct bl_ynode *n, const char *s);

/* Null, as YAML's core schema spells it, or absent. */
bool bl_y_is_null(const struct bl_ynode *n);

/* What a node is, for "expected X, got Y": "a map", "the string 'x'"... */
const char *bl_y_describe(const struct bl_ynode *n, char *buf, size_t cap);

/* The map (list) behind n; NULL and a report when n is something else,
 * NULL silently when n is null or absent. */
const struct bl_ynode *bl_y_as_map(struct bl_yctx *c, const struct bl_ynode *n,
				   const char *expected);
const struct bl_ynode *bl_y_as_seq(struct bl_yctx *c, const struct bl_ynode *n,
				   const char *expected);

/* Entries of map m (0 for NULL or a node that is no map), and its i-th key and value. */
size_t bl_y_map_size(const struct bl_ynode *m);
const struct bl_ynode *bl_y_map_key(const struct bl_ynode *m, size_t i);
const struct bl_ynode *bl_y_map_value(const struct bl_ynode *m, size_t i);

/* The scalar behind key k, or NULL when the key is not a scalar. */
const struct bl_ynode *bl_y_key_scalar(const struct bl_ynode *k);

/* The value under key in map m (first occurrence), or NULL. */
const struct bl_ynode *bl_y_lookup(const struct bl_ynode *m, const char *key);

/* A plain decimal number (not inf or nan) in *out; false when n is none. */
bool bl_y_number(const struct bl_ynode *n, double *out);

/* Readers: each reads node n into *out and returns true, or reports what
 * was expected and returns false leaving *out as it was. */
bool bl_y_read_int(struct bl_yctx *c, const struct bl_ynode *n, int64_t lo, int64_t hi,
		   int64_t *out);
bool bl_y_read_u32(struct bl_yctx *c, const struct bl_ynode *n, uint32_t lo, uint32_t hi,
		   uint32_t *out);
bool bl_y_read_double(struct bl_yctx *c, const struct bl_ynode *n, double lo, double hi,
		      double *out);
bool bl_y_read_bool(struct bl_yctx *c, const struct bl_ynode *n, bool *out);
bool bl_y_read_duration(struct bl_yctx *c, const struct bl_ynode *n, int64_t lo, int64_t hi,
			int64_t *out);
bool bl_y_read_size(struct bl_yctx *c, const struct bl_ynode *n, uint64_t lo, uint64_t hi,
		    uint64_t *out);
/* A non-empty string, copied into *out (replacing and freeing what was there). */
bool bl_y_read_string(struct bl_yctx *c, const struct bl_ynode *n, const char *expected,
		      char **out);
/* One of names[]; its index in *out. */
bool bl_y_read_enum(struct bl_yctx *c, const struct bl_ynode *n, const char *const *names,
		    size_t n_names, int *out);

/* The scalar behind n when it can be used as a string (no NUL in it); else
 * NULL and a report. */
const struct bl_ynode *bl_y_string_node(struct bl_yctx *c, const struct bl_ynode *n,
					const char *expected);

/* What a getter found. */
enum bl_y_got { BL_Y_NONE = 0, BL_Y_OK = 1, BL_Y_BAD = -1 };

/* Getters: look key up in map m; BL_Y_NONE when absent or null, else read it
 * with the reader of the same name, the key on the path: BL_Y_OK or BL_Y_BAD. */
enum bl_y_got bl_y_get_u32(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			   uint32_t lo, uint32_t hi, uint32_t *out);
enum bl_y_got bl_y_get_u64(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			   int64_t lo, int64_t hi, uint64_t *out);
enum bl_y_got bl_y_get_double(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			      double lo, double hi, double *out);
enum bl_y_got bl_y_get_bool(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			    bool *out);
enum bl_y_got bl_y_get_duration(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
				int64_t lo, int64_t hi, int64_t *out);
enum bl_y_got bl_y_get_size(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			    uint64_t lo, uint64_t hi, uint64_t *out);
enum bl_y_got bl_y_get_string(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			      const char *expected, char **out);
enum bl_y_got bl_y_get_enum(struct bl_yctx *c, const struct bl_ynode *m, const char *key,
			    const char *const *names, size_t n_names, int *out);

#endif
