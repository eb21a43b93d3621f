/* Provider rate-limit headers: OpenAI's x-ratelimit-*, Anthropic's
 * anthropic-ratelimit-*, and retry-after. Every value is outside input, so
 * every parser here checks lengths itself (no NUL is assumed), checks every
 * arithmetic step for overflow, and refuses rather than guesses.
 */
#include "ballast/ratelimit_headers.h"

#include <string.h>

#include "ballast/error.h"
#include "ballast/units.h"
#include "ascii.h"

#define MS_PER_DAY INT64_C(86400000)

/* ---- small readers ------------------------------------------------------ */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Drops HTTP optional whitespace (spaces and tabs) from both ends. */
static void trim(const char **s, size_t *len)
{
	while (*len && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

/* A cursor over len bytes. */
struct cur {
	const char *s; /* the text */
	size_t len;    /* its length */
	size_t pos;    /* next byte to read */
};

static bool cur_char(struct cur *c, char want)
{
	if (c->pos < c->len && c->s[c->pos] == want) {
		c->pos++;
		return true;
	}
	return false;
}

/* Reads exactly n digits. */
static bool cur_digits(struct cur *c, int n, int *out)
{
	int v = 0;

	if (c->len - c->pos < (size_t)n)
		return false;
	for (int i = 0; i < n; i++) {
		char ch = c->s[c->pos + (size_t)i];

		if (!is_digit(ch))
			return false;
		v = v * 10 + (ch - '0');
	}
	c->pos += (size_t)n;
	*out = v;
	return true;
}

/* Reads one of words[0..n) (case-sensitive) and returns its index, or -1. */
static int cur_word(struct cur *c, const char *const *words, int n)
{
	for (int i = 0; i < n; i++) {
		size_t wl = strlen(words[i]);

		if (c->len - c->pos >= wl && memcmp(c->s + c->pos, words[i], wl) == 0) {
			c->pos += wl;
			return i;
		}
	}
	return -1;
}

/* Reads "123" or "123.456" and returns value * scale, the fraction rounded
 * up (or down when round_up is false). Returns false on syntax or overflow. */
static bool cur_decimal(struct cur *c, uint64_t scale, bool round_up, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, frac_div = 1, v;
	bool rest_nonzero = false, any = false;

	while (c->pos < c->len && is_digit(c->s[c->pos])) {
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(c->s[c->pos] - '0'), &whole))
			return false;
		c->pos++;
		any = true;
	}
	if (!any)
		return false;
	if (cur_char(c, '.')) {
		any = false;
		while (c->pos < c->len && is_digit(c->s[c->pos])) {
			/* Digits beyond the scale's precision only decide rounding. */
			if (frac_div < scale) {
				frac = frac * 10 + (uint64_t)(c->s[c->pos] - '0');
				frac_div *= 10;
			} else if (c->s[c->pos] != '0') {
				rest_nonzero = true;
			}
			c->pos++;
			any = true;
		}
		if (!any)
			return false;
	}
	/* frac < frac_div <= 10 * scale: frac * scale fits for scale <= 1000. */
	if (__builtin_mul_overflow(whole, scale, &v))
		return false;
	if (frac || rest_nonzero) {
		uint64_t part = frac * scale / frac_div;

		if (round_up && (part * frac_div != frac * scale || rest_nonzero))
			part++;
		if (__builtin_add_overflow(v, part, &v))
			return false;
	}
	*out = v;
	return true;
}

/* ---- dates -------------------------------------------------------------- */

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Epoch ms of a broken-down UTC time, after checking every field. sec may be
 * 60 (a leap second), which lands on the next minute's first second. */
static bool civil_ms(int y, int mon, int d, int h, int min, int sec, int64_t *out)
{
	if (y < 1970 || y > 9999 || mon < 1 || mon > 12 || d < 1 || d > days_in_month(y, mon) ||
	    h > 23 || min > 59 || sec > 60)
		return false;
	*out = days_from_civil(y, mon, d) * MS_PER_DAY +
	       ((int64_t)h * 3600 + (int64_t)min * 60 + sec) * 1000;
	return true;
}

/* Reads the digits after a decimal point as milliseconds, rounded up. */
static bool cur_fraction_ms(struct cur *c, int64_t *out)
{
	int64_t ms = 0, div = 1;
	bool rest = false, any = false;

	while (c->pos < c->len && is_digit(c->s[c->pos])) {
		if (div < 1000) {
			ms = ms * 10 + (c->s[c->pos] - '0');
			div *= 10;
		} else if (c->s[c->pos] != '0') {
			rest = true;
		}
		c->pos++;
		any = true;
	}
	*out = ms * (1000 / div) + rest;
	return any;
}

int bl_ratelimit_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
	struct cur c = {s, len, 0};
	int y, mon, d, h, min, sec, off = 0;
	int64_t ms, frac_ms = 0;

	if (!cur_digits(&c, 4, &y) || !cur_char(&c, '-') || !cur_digits(&c, 2, &mon) ||
	    !cur_char(&c, '-') || !cur_digits(&c, 2, &d))
		return BL_ESYNTAX;
	if (!cur_char(&c, 'T') && !cur_char(&c, 't') && !cur_char(&c, ' '))
		return BL_ESYNTAX;
	if (!cur_digits(&c, 2, &h) || !cur_char(&c, ':') || !cur_digits(&c, 2, &min) ||
	    !cur_char(&c, ':') || !cur_digits(&c, 2, &sec))
		return BL_ESYNTAX;
	if (cur_char(&c, '.') && !cur_fraction_ms(&c, &frac_ms))
		return BL_ESYNTAX;
	if (cur_char(&c, 'Z') || cur_char(&c, 'z')) {
		off = 0;
	} else {
		int sign, oh, om;

		if (cur_char(&c, '+'))
			sign = 1;
		else if (cur_char(&c, '-'))
			sign = -1;
		else
			return BL_ESYNTAX;
		if (!cur_digits(&c, 2, &oh) || !cur_char(&c, ':') || !cur_digits(&c, 2, &om) ||
		    oh > 23 || om > 59)
			return BL_ESYNTAX;
		off = sign * (oh * 60 + om);
	}
	if (c.pos != c.len || !civil_ms(y, mon, d, h, min, sec, &ms))
		return BL_ESYNTAX;
	/* Local time = UTC + offset, so UTC = local - offset. */
	*out_ms = ms + frac_ms - (int64_t)off * 60000;
	return 0;
}

static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const short_days[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
/* Longest first where one is a prefix of another: none is here. */
static const char *const long_days[7] = {"Monday", "Tuesday", "Wednesday", "Thursday",
					 "Friday", "Saturday", "Sunday"};

/* "HH:MM:SS" */
static bool read_time(struct cur *c, int *h, int *min, int *sec)
{
	return cur_digits(c, 2, h) && cur_char(c, ':') && cur_digits(c, 2, min) &&
	       cur_char(c, ':') && cur_digits(c, 2, sec);
}

int bl_ratelimit_parse_http_date(const char *s, size_t len, int64_t *out_ms)
{
	struct cur c = {s, len, 0};
	int y, mon, d, h, min, sec;
	int64_t ms;

	if (cur_word(&c, long_days, 7) >= 0) {
		/* RFC 850: "Friday, 27-Nov-26 21:40:01 GMT" */
		if (!cur_char(&c, ',') || !cur_char(&c, ' ') || !cur_digits(&c, 2, &d) ||
		    !cur_char(&c, '-') || (mon = cur_word(&c, months, 12) + 1) == 0 ||
		    !cur_char(&c, '-') || !cur_digits(&c, 2, &y) || !cur_char(&c, ' ') ||
		    !read_time(&c, &h, &min, &sec) || !cur_char(&c, ' ') ||
		    cur_word(&c, (const char *const[]){"GMT"}, 1) < 0)
			return BL_ESYNTAX;
		y += y < 70 ? 2000 : 1900;
	} else if (cur_word(&c, short_days, 7) >= 0) {
		if (cur_char(&c, ',')) {
			/* IMF-fixdate: "Fri, 27 Nov 2026 21:40:01 GMT" */
			if (!cur_char(&c, ' ') || !cur_digits(&c, 2, &d) || !cur_char(&c, ' ') ||
			    (mon = cur_word(&c, months, 12) + 1) == 0 || !cur_char(&c, ' ') ||
			    !cur_digits(&c, 4, &y) || !cur_char(&c, ' ') ||
			    !read_time(&c, &h, &min, &sec) || !cur_char(&c, ' ') ||
			    cur_word(&c, (const char *const[]){"GMT"}, 1) < 0)
				return BL_ESYNTAX;
		} else {
			/* asctime: "Fri Nov 27 21:40:01 2026", "Sun Nov  6 ..." */
			if (!cur_char(&c, ' ') || (mon = cur_word(&c, months, 12) + 1) == 0 ||
			    !cur_char(&c, ' '))
				return BL_ESYNTAX;
			if (cur_char(&c, ' ')) {
				if (!cur_digits(&c, 1, &d))
					return BL_ESYNTAX;
			} else if (!cur_digits(&c, 2, &d)) {
				return BL_ESYNTAX;
			}
			if (!cur_char(&c, ' ') || !read_time(&c, &h, &min, &sec) ||
			    !cur_char(&c, ' ') || !cur_digits(&c, 4, &y))
				return BL_ESYNTAX;
		}
	} else {
		return BL_ESYNTAX;
	}
	if (c.pos != c.len || !civil_ms(y, mon, d, h, min, sec, &ms))
		return BL_ESYNTAX;
	*out_ms = ms;
	return 0;
}

/* ---- the headers -------------------------------------------------------- */

/* How a recognised header's value is read. */
enum kind {
	LIMIT,          /* count: the dimension's limit */
	REMAINING,      /* count: what is left */
	RESET_DURATION, /* Go duration until reset (OpenAI) */
	RESET_DATE,     /* RFC 3339 time of reset (Anthropic) */
	RETRY_AFTER,    /* delta seconds or HTTP-date */
	RETRY_AFTER_MS, /* milliseconds */
};

struct known {
	const char *name; /* lower case */
	enum kind kind;   /* how to read the value */
	int dim;          /* enum bl_ratelimit_dim, or -1 */
};

static const struct known known_headers[] = {
	{"x-ratelimit-limit-requests", LIMIT, BL_RATELIMIT_REQUESTS},
	{"x-ratelimit-limit-tokens", LIMIT, BL_RATELIMIT_TOKENS},
	{"x-ratelimit-remaining-requests", REMAINING, BL_RATELIMIT_REQUESTS},
	{"x-ratelimit-remaining-tokens", REMAINING, BL_RATELIMIT_TOKENS},
	{"x-ratelimit-reset-requests", RESET_DURATION, BL_RATELIMIT_REQUESTS},
	{"x-ratelimit-reset-tokens", RESET_DURATION, BL_RATELIMIT_TOKENS},
	{"anthropic-ratelimit-requests-limit", LIMIT, BL_RATELIMIT_REQUESTS},
	{"anthropic-ratelimit-requests-remaining", REMAINING, BL_RATELIMIT_REQUESTS},
	{"anthropic-ratelimit-requests-reset", RESET_DATE, BL_RATELIMIT_REQUESTS},
	{"anthropic-ratelimit-tokens-limit", LIMIT, BL_RATELIMIT_TOKENS},
	{"anthropic-ratelimit-tokens-remaining", REMAINING, BL_RATELIMIT_TOKENS},
	{"anthropic-ratelimit-tokens-reset", RESET_DATE, BL_RATELIMIT_TOKENS},
	{"anthropic-ratelimit-input-tokens-limit", LIMIT, BL_RATELIMIT_INPUT_TOKENS},
	{"anthropic-ratelimit-input-tokens-remaining", REMAINING, BL_RATELIMIT_INPUT_TOKENS},
	{"anthropic-ratelimit-input-tokens-reset", RESET_DATE, BL_RATELIMIT_INPUT_TOKENS},
	{"anthropic-ratelimit-output-tokens-limit", LIMIT, BL_RATELIMIT_OUTPUT_TOKENS},
	{"anthropic-ratelimit-output-tokens-remaining", REMAINING, BL_RATELIMIT_OUTPUT_TOKENS},
	{"anthropic-ratelimit-output-tokens-reset", RESET_DATE, BL_RATELIMIT_OUTPUT_TOKENS},
	{"retry-after", RETRY_AFTER, -1},
	{"retry-after-ms", RETRY_AFTER_MS, -1},
};

static const struct known *find_known(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof known_headers / sizeof known_headers[0]; i++)
		if (bl_ascii_eq_nocase(name, len, known_headers[i].name))
			return &known_headers[i];
	return NULL;
}

/* A count: "123", or "123.9" rounded down. At most INT64_MAX. */
static bool parse_count(const char *s, size_t len, uint64_t *out)
{
	struct cur c = {s, len, 0};
	uint64_t v;

	if (!cur_decimal(&c, 1, false, &v) || c.pos != len || v > (uint64_t)INT64_MAX)
		return false;
	*out = v;
	return true;
}

/* A delay from now in ms, checked against the horizon. */
static bool delay_ok(uint64_t ms, int64_t *out)
{
	if (ms > (uint64_t)BL_RATELIMIT_HORIZON_MS)
		return false;
	*out = (int64_t)ms;
	return true;
}

/* An absolute time in epoch ms turned into a delay from now: 0 if past, and
 * refused if further than the horizon either way. */
static bool until_ok(int64_t at_ms, int64_t now_ms, int64_t *out)
{
	int64_t d;

	if (__builtin_sub_overflow(at_ms, now_ms, &d) || d > BL_RATELIMIT_HORIZON_MS ||
	    d < -BL_RATELIMIT_HORIZON_MS)
		return false;
	*out = d < 0 ? 0 : d;
	return true;
}

static bool parse_duration_ms(const char *s, size_t len, int64_t *out)
{
	int64_t ns;

	if (bl_parse_duration(s, len, &ns) != 0)
		return false;
	/* Round up: never tell the budget the window refills earlier than it does. */
	return delay_ok((uint64_t)(ns / BL_NS_PER_MS + (ns % BL_NS_PER_MS != 0)), out);
}

static bool parse_retry_after(const char *s, size_t len, int64_t now_ms, int64_t *out)
{
	if (is_digit(s[0])) {
		struct cur c = {s, len, 0};
		uint64_t ms;

		return cur_decimal(&c, 1000, true, &ms) && c.pos == len && delay_ok(ms, out);
	} else {
		int64_t at;

		return bl_ratelimit_parse_http_date(s, len, &at) == 0 && until_ok(at, now_ms, out);
	}
}

static bool parse_retry_after_ms(const char *s, size_t len, int64_t *out)
{
	struct cur c = {s, len, 0};
	uint64_t ms;

	return cur_decimal(&c, 1, true, &ms) && c.pos == len && delay_ok(ms, out);
}

static void keep_min(bool *has, uint64_t *slot, uint64_t v)
{
	if (!*has || v < *slot)
		*slot = v;
	*has = true;
}

static void keep_max(bool *has, int64_t *slot, int64_t v)
{
	if (!*has || v > *slot)
		*slot = v;
	*has = true;
}

/* Reads one recognised header into r; returns false if its value is bad. */
static bool take(const struct known *k, const char *v, size_t vlen, int64_t now_ms,
		 struct bl_ratelimit_headers *r)
{
	struct bl_ratelimit_dim_info *d = k->dim >= 0 ? &r->dim[k->dim] : NULL;
	uint64_t count;
	int64_t ms, at;

	trim(&v, &vlen);
	if (vlen == 0)
		return false;
	switch (k->kind) {
	case LIMIT:
		if (!parse_count(v, vlen, &count))
			return false;
		keep_min(&d->has_limit, &d->limit, count);
		return true;
	case REMAINING:
		if (!parse_count(v, vlen, &count))
			return false;
		keep_min(&d->has_remaining, &d->remaining, count);
		return true;
	case RESET_DURATION:
		if (!parse_duration_ms(v, vlen, &ms))
			return false;
		keep_max(&d->has_reset, &d->reset_after_ms, ms);
		return true;
	case RESET_DATE:
		if (bl_ratelimit_parse_rfc3339(v, vlen, &at) != 0 || !until_ok(at, now_ms, &ms))
			return false;
		keep_max(&d->has_reset, &d->reset_after_ms, ms);
		return true;
	case RETRY_AFTER:
		if (!parse_retry_after(v, vlen, now_ms, &ms))
			return false;
		keep_max(&r->has_retry_after, &r->retry_after_ms, ms);
		return true;
	case RETRY_AFTER_MS:
		if (!parse_retry_after_ms(v, vlen, &ms))
			return false;
		keep_max(&r->has_retry_after, &r->retry_after_ms, ms);
		return true;
	}
	return false;
}

int bl_ratelimit_headers_parse(const struct bl_ratelimit_header *headers, size_t n,
			       int64_t now_wall_ms, struct bl_ratelimit_headers *out)
{
	struct bl_ratelimit_headers r;

	if (!out || (n && !headers))
		return BL_EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((!headers[i].name && headers[i].name_len) ||
		    (!headers[i].value && headers[i].value_len))
			return BL_EINVAL;

	memset(&r, 0, sizeof r);
	for (size_t i = 0; i < n; i++) {
		const struct known *k = find_known(headers[i].name, headers[i].name_len);

		if (!k)
			continue;
		if (take(k, headers[i].value, headers[i].value_len, now_wall_ms, &r))
			r.used++;
		else
			r.malformed++;
	}
	*out = r;
	return 0;
}
