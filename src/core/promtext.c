/* Prometheus text exposition format 0.0.4. The text is outside input (a
 * backend's /metrics body, whatever it holds), so every read is bounded by a
 * length, no NUL is assumed, and nothing is guessed: a line that is not the
 * format makes the text malformed.
 */
#include "ballast/promtext.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ascii.h"

/* Bytes of the offending line quoted in an error message. */
#define EXCERPT_MAX 48

/* ---- small readers ------------------------------------------------------ */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha_(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool equals(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* A cursor over one line (without its LF or CR). */
struct cur {
	const char *s; /* the line */
	size_t len;    /* its length */
	size_t pos;    /* next byte to read */
};

static bool at_end(const struct cur *c)
{
	return c->pos >= c->len;
}

static char peek(const struct cur *c)
{
	return c->pos < c->len ? c->s[c->pos] : '\0';
}

/* Skips spaces and tabs; returns how many. */
static size_t skip_blanks(struct cur *c)
{
	size_t from = c->pos;

	while (c->pos < c->len && is_blank(c->s[c->pos]))
		c->pos++;
	return c->pos - from;
}

/* Reads a run of non-blank bytes; returns its length (0 at a blank or end). */
static size_t read_token(struct cur *c, const char **tok)
{
	size_t from = c->pos;

	while (c->pos < c->len && !is_blank(c->s[c->pos]))
		c->pos++;
	*tok = c->s + from;
	return c->pos - from;
}

/* Reads a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, without colons, a label
 * name; returns its length, 0 when none starts here. */
static size_t read_name(struct cur *c, bool colons)
{
	size_t from = c->pos;

	if (c->pos < c->len && (is_alpha_(c->s[c->pos]) || (colons && c->s[c->pos] == ':')))
		c->pos++;
	else
		return 0;
	while (c->pos < c->len && (is_alpha_(c->s[c->pos]) || is_digit(c->s[c->pos]) ||
				   (colons && c->s[c->pos] == ':')))
		c->pos++;
	return c->pos - from;
}

/* ---- errors ------------------------------------------------------------- */

/* The start of a line, printable: other bytes as \xNN, cut with "..." */
static void excerpt(char *buf, size_t cap, const char *s, size_t len)
{
	size_t o = 0, i;

	for (i = 0; i < len && i < EXCERPT_MAX && o + 5 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\'') {
			buf[o++] = (char)ch;
		} else {
			snprintf(buf + o, cap - o, "\\x%02x", ch);
			o += 4;
		}
	}
	if (i < len && o + 4 <= cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o < cap ? o : cap - 1] = '\0';
}

/* Where a line went wrong. */
struct fault {
	size_t column; /* 1-based */
	char what[160]; /* what was wrong and what is accepted */
};

static bool failf(struct fault *f, const struct cur *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool failf(struct fault *f, const struct cur *c, const char *fmt, ...)
{
	va_list ap;

	f->column = c->pos + 1;
	va_start(ap, fmt);
	vsnprintf(f->what, sizeof f->what, fmt, ap);
	va_end(ap);
	return false;
}

/* ---- numbers ------------------------------------------------------------ */

/* Parses a sample value. Decimal syntax is checked here, then strtod
 * converts (it would also take hex, "nan(...)" and spaces, which the format
 * does not). */
static bool parse_value(const char *s, size_t n, double *out, struct fault *f,
			const struct cur *c)
{
	char buf[BL_PROMTEXT_LITERAL_MAX + 1];
	size_t i = 0, digits = 0;
	bool neg = false;
	char *end;
	double v;

	if (n > BL_PROMTEXT_LITERAL_MAX)
		return failf(f, c, "the value is longer than %d bytes", BL_PROMTEXT_LITERAL_MAX);
	if (bl_ascii_eq_nocase(s, n, "nan")) {
		*out = NAN;
		return true;
	}
	if (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-';
		i = 1;
	}
	if (bl_ascii_eq_nocase(s + i, n - i, "inf") || bl_ascii_eq_nocase(s + i, n - i, "infinity")) {
		*out = neg ? -INFINITY : INFINITY;
		return true;
	}
	while (i < n && is_digit(s[i])) {
		i++;
		digits++;
	}
	if (i < n && s[i] == '.') {
		i++;
		while (i < n && is_digit(s[i])) {
			i++;
			digits++;
		}
	}
	if (digits > 0 && i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t exp_digits = 0;

		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		while (i < n && is_digit(s[i])) {
			i++;
			exp_digits++;
		}
		if (exp_digits == 0)
			digits = 0;
	}
	if (digits == 0 || i != n)
		return failf(f, c, "the value is not a number: a decimal such as 12, -0.5 or "
				   "1.5e+06, or NaN, +Inf, -Inf");
	memcpy(buf, s, n);
	buf[n] = '\0';
	v = strtod(buf, &end);
	if (end != buf + n)
		return failf(f, c, "the value is not a number (is the locale's decimal point '.'?)");
	if (isinf(v))
		return failf(f, c, "the value is beyond the range of a double");
	*out = v;
	return true;
}

/* Parses a timestamp: a signed 64-bit count of milliseconds. */
static bool parse_timestamp(const char *s, size_t n, int64_t *out, struct fault *f,
			    const struct cur *c)
{
	size_t i = 0;
	bool neg = false;
	uint64_t v = 0, limit;

	if (n > BL_PROMTEXT_LITERAL_MAX)
		return failf(f, c, "the timestamp is longer than %d bytes", BL_PROMTEXT_LITERAL_MAX);
	if (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == n)
		return failf(f, c, "the timestamp is not an integer of milliseconds");
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		unsigned d;

		if (!is_digit(s[i]))
			return failf(f, c, "the timestamp is not an integer of milliseconds");
		d = (unsigned)(s[i] - '0');
		if (v > (limit - d) / 10)
			return failf(f, c, "the timestamp is beyond 64 bits");
		v = v * 10 + d;
	}
	*out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return true;
}

/* ---- labels ------------------------------------------------------------- */

/* One label as it stands in the text. */
struct label {
	const char *name;  /* label name */
	size_t name_len;
	const char *value; /* between the quotes, still escaped */
	size_t value_len;
};

/* Reads `name = "value"` at c (blanks around each token allowed). */
static bool read_label(struct cur *c, struct label *l, struct fault *f)
{
	skip_blanks(c);
	l->name = c->s + c->pos;
	l->name_len = read_name(c, false);
	if (l->name_len == 0)
		return failf(f, c, "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or '}'");
	skip_blanks(c);
	if (peek(c) != '=')
		return failf(f, c, "expected '=' after the label name '%.*s'", (int)l->name_len,
			     l->name);
	c->pos++;
	skip_blanks(c);
	if (peek(c) != '"')
		return failf(f, c, "expected '\"' to open the value of label '%.*s'",
			     (int)l->name_len, l->name);
	c->pos++;
	l->value = c->s + c->pos;
	for (;;) {
		if (at_end(c))
			return failf(f, c, "the value of label '%.*s' has no closing '\"'",
				     (int)l->name_len, l->name);
		char ch = c->s[c->pos];
		if (ch == '"')
			break;
		if (ch == '\\') {
			char e = c->pos + 1 < c->len ? c->s[c->pos + 1] : '\0';

			if (e != '\\' && e != '"' && e != 'n')
				return failf(f, c, "unknown escape in the value of label '%.*s': "
						   "only \\\\, \\\" and \\n are allowed",
					     (int)l->name_len, l->name);
			c->pos++;
		}
		c->pos++;
	}
	l->value_len = (size_t)(c->s + c->pos - l->value);
	c->pos++; /* the closing quote */
	return true;
}

/* Reads the label set after '{' up to and including '}'. */
static bool read_labels(struct cur *c, struct fault *f)
{
	struct label l;

	for (;;) {
		skip_blanks(c);
		if (peek(c) == '}') {
			c->pos++;
			return true;
		}
		if (!read_label(c, &l, f))
			return false;
		skip_blanks(c);
		if (at_end(c))
			return failf(f, c, "the label set has no closing '}'");
		if (peek(c) == ',') {
			c->pos++;
			continue;
		}
		if (peek(c) != '}')
			return failf(f, c, "expected ',' or '}' after the value of label '%.*s'",
				     (int)l.name_len, l.name);
	}
}

/* True when the escaped value equals the NUL-terminated want. */
static bool value_equals(const char *raw, size_t n, const char *want)
{
	size_t i = 0;

	while (i < n) {
		char ch = raw[i++];

		if (ch == '\\' && i < n) {
			ch = raw[i++];
			if (ch == 'n')
				ch = '\n';
		}
		if (*want == '\0' || *want != ch)
			return false;
		want++;
	}
	return *want == '\0';
}

/* ---- lines -------------------------------------------------------------- */

static bool read_comment(struct cur *c, struct fault *f)
{
	const char *tok, *name;
	size_t n, name_len;

	c->pos++; /* '#' */
	skip_blanks(c);
	n = read_token(c, &tok);
	if (!equals(tok, n, "HELP") && !equals(tok, n, "TYPE"))
		return true; /* a plain comment */
	if (skip_blanks(c) == 0)
		return failf(f, c, "expected a metric name after '# %.*s'", (int)n, tok);
	name = c->s + c->pos;
	name_len = read_name(c, true);
	if (name_len == 0 || (!at_end(c) && !is_blank(peek(c))))
		return failf(f, c, "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) after "
				   "'# %.*s'", (int)n, tok);
	if (tok[0] == 'H')
		return true; /* the help text is free */
	skip_blanks(c);
	n = read_token(c, &tok);
	if (!equals(tok, n, "counter") && !equals(tok, n, "gauge") &&
	    !equals(tok, n, "histogram") && !equals(tok, n, "summary") &&
	    !equals(tok, n, "untyped")) {
		c->pos -= n;
		return failf(f, c, "the type of '%.*s' must be counter, gauge, histogram, summary "
				   "or untyped", (int)name_len, name);
	}
	skip_blanks(c);
	if (!at_end(c))
		return failf(f, c, "unexpected text after the type of '%.*s'", (int)name_len, name);
	return true;
}

static bool read_sample(struct cur *c, struct bl_promtext_sample *s, struct fault *f)
{
	const char *tok;
	size_t n;

	s->name = c->s + c->pos;
	s->name_len = read_name(c, true);
	if (s->name_len == 0)
		return failf(f, c, "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), '#' or "
				   "an empty line");
	s->labels = NULL;
	s->labels_len = 0;
	skip_blanks(c);
	if (peek(c) == '{') {
		c->pos++;
		s->labels = c->s + c->pos;
		if (!read_labels(c, f))
			return false;
		s->labels_len = (size_t)(c->s + c->pos - 1 - s->labels);
		skip_blanks(c);
	} else if (c->pos == (size_t)(s->name + s->name_len - c->s) && !at_end(c)) {
		return failf(f, c, "unexpected '%c' in the metric name '%.*s'",
			     (unsigned char)peek(c) >= 0x20 && (unsigned char)peek(c) < 0x7f
				     ? peek(c) : '?',
			     (int)s->name_len, s->name);
	}
	n = read_token(c, &tok);
	if (n == 0)
		return failf(f, c, "expected a value after '%.*s'", (int)s->name_len, s->name);
	c->pos -= n; /* errors point at the start of the token */
	if (!parse_value(tok, n, &s->value, f, c))
		return false;
	c->pos += n;
	s->has_timestamp = false;
	s->timestamp_ms = 0;
	skip_blanks(c);
	if (at_end(c))
		return true;
	n = read_token(c, &tok);
	c->pos -= n;
	if (!parse_timestamp(tok, n, &s->timestamp_ms, f, c))
		return false;
	c->pos += n;
	s->has_timestamp = true;
	skip_blanks(c);
	if (!at_end(c))
		return failf(f, c, "unexpected text after the timestamp");
	return true;
}

/* ---- API ---------------------------------------------------------------- */

void bl_promtext_iter_init(struct bl_promtext_iter *it, const char *text, size_t len)
{
	it->text = text;
	it->len = text ? len : 0;
	it->pos = 0;
	it->line = 0;
	it->failed = false;
}

/* The line that starts at `from`, without its LF and a CR before it. */
static void line_at(const struct bl_promtext_iter *it, size_t from, struct cur *c)
{
	const char *p = it->text + from;
	const char *nl = memchr(p, '\n', it->len - from);

	c->s = p;
	c->len = nl ? (size_t)(nl - p) : it->len - from;
	c->pos = 0;
	if (c->len && p[c->len - 1] == '\r')
		c->len--;
}

enum line_kind { LINE_SKIP, LINE_SAMPLE, LINE_BAD };

/* Reads one line: blank or comment (skip), a sample (in *out) or malformed
 * (*f says why). */
static enum line_kind read_line(struct cur *c, struct bl_promtext_sample *out, struct fault *f)
{
	skip_blanks(c);
	if (at_end(c))
		return LINE_SKIP;
	if (peek(c) == '#')
		return read_comment(c, f) ? LINE_SKIP : LINE_BAD;
	return read_sample(c, out, f) ? LINE_SAMPLE : LINE_BAD;
}

static int report(const struct bl_promtext_iter *it, const struct cur *c, const struct fault *f,
		  char *err, size_t errcap)
{
	char quoted[EXCERPT_MAX * 4 + 8];

	excerpt(quoted, sizeof quoted, c->s, c->len);
	return bl_errorf(err, errcap, BL_EINVAL, "line %zu, column %zu: %s (the line reads '%s')",
			 it->line, f->column, f->what, quoted);
}

int bl_promtext_next(struct bl_promtext_iter *it, struct bl_promtext_sample *out, char *err,
		     size_t errcap)
{
	struct bl_promtext_sample scratch;
	struct fault f;
	struct cur c;

	if (it->failed) {
		/* Still on the bad line: read it again for the same message. */
		line_at(it, it->pos, &c);
		read_line(&c, &scratch, &f);
		return report(it, &c, &f, err, errcap);
	}
	while (it->pos < it->len) {
		enum line_kind kind;

		line_at(it, it->pos, &c);
		it->line++;
		kind = read_line(&c, out, &f);
		if (kind == LINE_BAD) {
			it->failed = true;
			return report(it, &c, &f, err, errcap);
		}
		/* Past the LF, wherever the CR trim left c.len. */
		{
			const char *nl = memchr(it->text + it->pos, '\n', it->len - it->pos);

			it->pos = nl ? (size_t)(nl - it->text) + 1 : it->len;
		}
		if (kind == LINE_SAMPLE) {
			out->line = it->line;
			return BL_PROMTEXT_SAMPLE;
		}
	}
	return BL_PROMTEXT_END;
}

bool bl_promtext_matches(const struct bl_promtext_sample *s, const struct bl_promtext_match *labels,
			 size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct cur c = {.s = s->labels, .len = s->labels ? s->labels_len : 0};
		bool found = false, equal = false;
		struct label l;
		struct fault f;

		while (!found) {
			skip_blanks(&c);
			if (at_end(&c) || !read_label(&c, &l, &f))
				break;
			if (equals(l.name, l.name_len, labels[i].name)) {
				found = true;
				equal = value_equals(l.value, l.value_len, labels[i].value);
			}
			skip_blanks(&c);
			if (peek(&c) == ',')
				c.pos++;
		}
		if (!found)
			equal = labels[i].value[0] == '\0';
		if (!equal)
			return false;
	}
	return true;
}

int bl_promtext_sum(const char *text, size_t len, const char *name,
		    const struct bl_promtext_match *labels, size_t n_labels, double *out,
		    size_t *n_series, char *err, size_t errcap)
{
	struct bl_promtext_iter it;
	struct bl_promtext_sample s;
	size_t name_len, count = 0, bad_line = 0;
	double sum = 0;
	bool bad_value = false;
	int rc;

	if (!name || !out || (!labels && n_labels > 0) || (!text && len > 0))
		return bl_errorf(err, errcap, BL_EINVAL, "invalid arguments");
	for (size_t i = 0; i < n_labels; i++)
		if (!labels[i].name || !labels[i].value)
			return bl_errorf(err, errcap, BL_EINVAL, "matcher %zu has a NULL name or value",
					 i);
	name_len = strlen(name);
	bl_promtext_iter_init(&it, text, len);
	while ((rc = bl_promtext_next(&it, &s, err, errcap)) == BL_PROMTEXT_SAMPLE) {
		if (s.name_len != name_len || memcmp(s.name, name, name_len) != 0 ||
		    !bl_promtext_matches(&s, labels, n_labels))
			continue;
		count++;
		if (!isfinite(s.value)) {
			if (!bad_value) {
				bad_value = true;
				bad_line = s.line;
			}
			continue;
		}
		sum += s.value;
		if (!isfinite(sum) && !bad_value) {
			bad_value = true;
			bad_line = s.line;
		}
	}
	if (rc != BL_PROMTEXT_END)
		return rc;
	if (count == 0)
		return bl_errorf(err, errcap, BL_ENOENT, "no sample of '%s'%s", name,
				 n_labels ? " with the labels asked for" : "");
	if (bad_value)
		return bl_errorf(err, errcap, BL_ERANGE,
				 "line %zu: a sample of '%s' is NaN or infinite, or the sum "
				 "overflows: the value is unknown", bad_line, name);
	*out = sum;
	if (n_series)
		*n_series = count;
	return 0;
}
