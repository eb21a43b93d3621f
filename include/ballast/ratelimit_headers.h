/* Model providers' rate-limit response headers, parsed into one plain struct.
 *
 * The agent passes the provider's response headers to ballast on release;
 * the budget resyncs when the provider reports less remaining than ballast
 * believes, and pauses for retry-after. This module only reads the headers:
 *
 *   OpenAI      x-ratelimit-limit-{requests,tokens}
 *               x-ratelimit-remaining-{requests,tokens}
 *               x-ratelimit-reset-{requests,tokens}   Go durations: "1s", "6m0s",
 *                                                     "20ms", "1m30.5s"
 *   Anthropic   anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
 *                 {limit,remaining,reset}             reset as RFC 3339:
 *                                                     "2026-11-27T21:40:01Z",
 *                                                     "...01.5+02:00"
 *   Both        retry-after                           delta seconds ("30", "1.5")
 *                                                     or an HTTP-date ("Fri, 27
 *                                                     Nov 2026 21:40:01 GMT")
 *               retry-after-ms                        milliseconds ("1500", "20.5")
 *
 * Header names match case-insensitively; values may carry surrounding spaces
 * or tabs. Unknown headers are ignored. A recognised header whose value is
 * malformed is ignored and counted, never trusted: empty, negative, not a
 * number, trailing garbage, overflow, an impossible or absurd date, or a time
 * further than BL_RATELIMIT_HORIZON_MS from now. When a header appears more
 * than once, the most cautious value wins (the smallest limit and remaining,
 * the latest reset and retry).
 *
 * Pure: no clock (the caller passes the wall time to turn absolute dates into
 * delays), no locale, no allocation, no globals.
 */
#ifndef BALLAST_RATELIMIT_HEADERS_H
#define BALLAST_RATELIMIT_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dimensions, in the same order as the budget's BL_DIM_* (requests, tokens,
 * input tokens, output tokens), so an index means the same in both. */
enum bl_ratelimit_dim {
	BL_RATELIMIT_REQUESTS = 0,      /* requests per window */
	BL_RATELIMIT_TOKENS = 1,        /* combined tokens (OpenAI TPM, Anthropic tokens) */
	BL_RATELIMIT_INPUT_TOKENS = 2,  /* input tokens (Anthropic ITPM) */
	BL_RATELIMIT_OUTPUT_TOKENS = 3, /* output tokens (Anthropic OTPM) */
};

/* Number of dimensions. */
#define BL_RATELIMIT_DIMS 4

/* Furthest a reset or retry may lie from now (7 days, in ms); any further,
 * in the future or (for dates) in the past, and the value is malformed. */
#define BL_RATELIMIT_HORIZON_MS (INT64_C(7) * 24 * 3600 * 1000)

/* One response header as the agent passed it. Neither string needs a NUL;
 * a NULL pointer is allowed only with length 0. */
struct bl_ratelimit_header {
	const char *name;  /* header name, any case */
	size_t name_len;   /* bytes at name */
	const char *value; /* header value */
	size_t value_len;  /* bytes at value */
};

/* What the provider said about one dimension. Each value is valid only when
 * its has_ flag is set. */
struct bl_ratelimit_dim_info {
	bool has_limit;         /* limit was given */
	bool has_remaining;     /* remaining was given */
	bool has_reset;         /* reset_after_ms was given */
	uint64_t limit;         /* units per window, as the provider counts them */
	uint64_t remaining;     /* units left in the current window */
	int64_t reset_after_ms; /* ms from now until the window refills; 0 if past */
};

/* Everything the headers said. */
struct bl_ratelimit_headers {
	struct bl_ratelimit_dim_info dim[BL_RATELIMIT_DIMS]; /* by enum bl_ratelimit_dim */
	bool has_retry_after;   /* retry_after_ms was given */
	int64_t retry_after_ms; /* ms from now before the next request; 0 if past */
	uint32_t used;          /* recognised headers whose values were taken */
	uint32_t malformed;     /* recognised headers ignored for a bad value */
};

/* Parses headers[0..n) with now_wall_ms (milliseconds since the Unix epoch)
 * as the present, and fills *out (every field; nothing is accumulated from a
 * previous call). Fractional counts round down, delays round up to the next
 * millisecond: both the cautious side. Returns 0 (malformed values do not
 * make it fail: they are counted in out->malformed), or BL_EINVAL for a NULL
 * out, NULL headers with n > 0, or a NULL name or value with a non-zero
 * length, leaving *out untouched. */
int bl_ratelimit_headers_parse(const struct bl_ratelimit_header *headers, size_t n,
			       int64_t now_wall_ms, struct bl_ratelimit_headers *out);

/* Parses an RFC 3339 date-time of len bytes at s ("2026-11-27T21:40:01Z",
 * "2026-11-27t21:40:01.250+02:00"; 'T' may also be a space) into milliseconds
 * since the epoch, fractions rounded up. Years 1970..9999; a leap second
 * (:60) counts as the next second. Returns 0 and sets *out_ms, or
 * BL_ESYNTAX (malformed, impossible date) leaving it. */
int bl_ratelimit_parse_rfc3339(const char *s, size_t len, int64_t *out_ms);

/* Parses an HTTP-date of len bytes at s into milliseconds since the epoch:
 * IMF-fixdate ("Fri, 27 Nov 2026 21:40:01 GMT") and the two obsolete forms
 * a recipient must accept, RFC 850 ("Friday, 27-Nov-26 21:40:01 GMT", years
 * 00-69 read as 20xx) and asctime ("Fri Nov 27 21:40:01 2026"). Names match
 * case-sensitively as the grammar states. Returns 0 and sets *out_ms, or
 * BL_ESYNTAX leaving it. */
int bl_ratelimit_parse_http_date(const char *s, size_t len, int64_t *out_ms);

#endif
